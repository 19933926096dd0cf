"""How samples/bbb.mp4 was made: the first 4 s of Big Buck Bunny, scaled to 640x360, sound copied untouched.

    python samples/make_bbb.py SOURCE.mp4 samples/bbb.mp4

SOURCE is the 1280x720 25 fps H.264 + AAC 5.1 cut of Big Buck Bunny (the clip begins with the bunny
coming out of his burrow). The video is re-encoded (x264, CRF 20, preset slow); the 5.1 AAC packets of the
first 4 s are copied byte for byte.
"""
from __future__ import annotations

import sys
from fractions import Fraction

import av

SECONDS = Fraction(4)
SIZE = (640, 360)
CREDIT = "Big Buck Bunny (c) copyright 2008, Blender Foundation, www.bigbuckbunny.org, CC-BY 3.0"


def main(src: str, dst: str) -> None:
    with av.open(src) as inp, av.open(dst, "w", options={"movflags": "+faststart"}) as out:
        v_in, a_in = inp.streams.video[0], inp.streams.audio[0]
        out.metadata["title"] = "Big Buck Bunny (first 4 s)"
        out.metadata["comment"] = CREDIT
        v_out = out.add_stream("libx264", rate=v_in.average_rate)
        v_out.width, v_out.height = SIZE
        v_out.pix_fmt = "yuv420p"
        v_out.codec_context.time_base = v_in.time_base
        v_out.time_base = v_in.time_base
        v_out.options = {"crf": "20", "preset": "slow"}
        a_out = out.add_stream_from_template(a_in)
        for packet in inp.demux(v_in, a_in):
            if packet.pts is None or packet.pts * packet.time_base >= SECONDS:
                continue
            if packet.stream is a_in:
                if packet.size:
                    packet.stream = a_out
                    out.mux(packet)
                continue
            for frame in packet.decode():
                if frame.pts * frame.time_base < SECONDS:
                    small = frame.reformat(width=SIZE[0], height=SIZE[1], format="yuv420p", interpolation="AREA")
                    small.pts, small.time_base = frame.pts, frame.time_base
                    out.mux(v_out.encode(small))
        out.mux(v_out.encode(None))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
