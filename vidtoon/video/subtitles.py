"""Text subtitles converted between formats: SubRip, ASS/SSA or WebVTT into MP4's mov_text, and back.

FFmpeg's text subtitle decoders all produce ASS events; its text encoders take ASS events. A cue is
therefore decoded and re-encoded one packet at a time, as ffmpeg and HandBrake do, and keeps its input
packet's timestamps and duration exactly (only the container's time base may differ). What each format
can express decides what survives of the styling: into mov_text, bold, italic, underline, colour and font
size are kept and ASS positioning, karaoke and effects are dropped (the text itself always survives).
"""
from __future__ import annotations

from fractions import Fraction

import av
from av.subtitles.subtitle import SubtitleSet

__all__ = ["TextSubtitleTrack"]


class TextSubtitleTrack:
    """Decodes one input text subtitle stream and re-encodes each cue as ``codec`` (mov_text, ass, webvtt)."""

    def __init__(self, out: av.container.OutputContainer, source: av.subtitles.stream.SubtitleStream,
                 codec: str, name: str = "") -> None:
        self.out = out
        self.source = source
        self.index = source.index
        self.name = name or "subtitle track"  # as messages name it: "subtitle track 1 of 2"
        self.time_base = source.time_base or Fraction(1, 1000)
        self.lost = 0  # cues that could not be decoded or encoded (left out)
        self.retimed = 0  # cues whose time went back before the previous one's (moved forward)
        self.last_pts: int | None = None
        decoder = source.codec_context
        decoder.open(strict=False)  # its ASS header (the script's styles) exists once it is open
        self.stream = out.add_stream(codec)
        encoder = self.stream.codec_context
        encoder.time_base = self.time_base
        if decoder.subtitle_header:
            encoder.subtitle_header = decoder.subtitle_header
        # opened now, before the muxer writes the file header: Matroska stores the ASS header from it
        encoder.open()
        self.encoder = encoder

    def push(self, packet: av.Packet) -> None:
        """Convert one input cue and mux it (empty cues, such as MP4's gap fillers, are skipped)."""
        if packet.pts is None:  # a cue needs a time: nothing to place it at
            self.lost += 1
            return
        try:
            cue = self.source.decode2(packet)
            dialogue = _dialogue(cue)
            if dialogue is None:
                return
            pts = packet.pts + self._ms(cue.start_display_time)
            duration = packet.duration or self._ms(cue.end_display_time - cue.start_display_time)
            encoded = self.encoder.encode_subtitle(SubtitleSet.create(dialogue, 0, duration, pts))
        except av.FFmpegError:
            self.lost += 1
            return
        if self.last_pts is not None and pts < self.last_pts:  # a damaged time: muxers refuse going back
            pts = self.last_pts + 1
            self.retimed += 1
        self.last_pts = pts
        encoded.stream = self.stream
        encoded.time_base = self.time_base
        encoded.pts = encoded.dts = pts
        encoded.duration = duration
        self.out.mux(encoded)

    def flush(self) -> None:
        """Nothing is buffered: text subtitle decoders and encoders have no delay."""

    def damage(self) -> str:
        """A warning about the cues this track lost or moved, or ""."""
        parts = [f"{self.lost} cues could not be converted and were left out"] if self.lost else []
        parts += [f"{self.retimed} cues went back in time (moved forward)"] if self.retimed else []
        return f"{self.name}: {', '.join(parts)}" if parts else ""

    def _ms(self, milliseconds: int) -> int:
        """Milliseconds (AVSubtitle display times) in the stream's time base."""
        return int(round(Fraction(milliseconds, 1000) / self.time_base))


def _dialogue(cue: SubtitleSet | None) -> bytes | None:
    """The ASS dialogue line of a decoded cue (several rects joined as lines), None for an empty cue.

    A line is ``ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text``: the fields of the first
    rect are kept and the texts of the others appended after ASS line breaks.
    """
    if cue is None:
        return None
    # bitmap rects have no text; FFmpeg's text decoders all fill ``ass``
    fields = [r.ass.split(b",", 8) for r in cue.rects if getattr(r, "ass", b"")]
    fields = [f for f in fields if len(f) == 9]
    if not any(f[8].strip() for f in fields):
        return None
    return b",".join(fields[0][:8] + [b"\\N".join(f[8] for f in fields)])
