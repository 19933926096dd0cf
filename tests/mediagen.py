"""Small synthetic media clips for tests, written with PyAV (no files shipped, nothing downloaded).

:func:`make_video` writes a clip whose frames all differ (a moving gradient and a moving square), with an
optional sine-wave audio track, odd sizes, display rotation, variable frame rate, audio as stream 0 and a
mov_text / subrip subtitle track; :func:`add_subtitles` adds a track of given cues in any text format (or
a bitmap one) to a copy of a clip. Other test modules import it: keep its signature stable.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.subtitles.subtitle import SubtitleSet

#: audio codecs whose encoder wants planar float samples (the rest get packed/planar s16 as noted)
_AUDIO_FORMATS = {
    "aac": "fltp",
    "libopus": "flt",
    "opus": "flt",
    "libvorbis": "fltp",
    "vorbis": "fltp",
    "libmp3lame": "fltp",
    "mp3": "fltp",
    "ac3": "fltp",
    "flac": "s16",
    "pcm_s16le": "s16",
}

#: the sample rates Opus accepts (its encoder refuses others)
_OPUS_RATES = (48000, 24000, 16000, 12000, 8000)


def frame_image(index: int, width: int, height: int, pattern: str = "moving") -> np.ndarray:
    """The RGB picture of frame ``index``: a diagonal gradient shifted per frame and a moving square.

    ``pattern="still"`` returns the same picture for every index (for tests of static content);
    ``"flicker"`` that picture 2 levels brighter and darker in turn (flicker for a stabilizer to remove);
    ``"face"`` a drawn face (:func:`face_image`) half the frame's height, moving right a pixel a frame.
    """
    if pattern == "face":
        return face_image(width, height, size=min(width, height) * 0.5, center=(width // 3 + index, height // 2))
    t = 0 if pattern in ("still", "flicker") else index
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[..., 0] = (x * 255 // max(width - 1, 1) + 7 * t) % 256
    img[..., 1] = (y * 255 // max(height - 1, 1) + 3 * t) % 256
    img[..., 2] = ((x + y) * 2 + 11 * t) % 256
    side = max(2, min(width, height) // 4)
    x0 = (3 * t) % max(width - side, 1)
    y0 = (2 * t) % max(height - side, 1)
    img[y0 : y0 + side, x0 : x0 + side] = (255, 255, 255)
    if pattern == "flicker":
        img = np.clip(img.astype(np.int16) + (2 if index % 2 else -2), 0, 255).astype(np.uint8)
    return img


def face_image(width: int, height: int, size: float, center: tuple[int, int] | None = None) -> np.ndarray:
    """A drawn face ``size`` pixels wide (skin oval, hair, eyes with pupils, brows, nose, mouth) on a blue
    background: MTCNN finds it with probability > 0.99 from 40 to 140 px wide."""
    img = np.full((height, width, 3), (60, 90, 140), np.uint8)
    cx, cy = center if center is not None else (width // 2, height // 2)
    s = size / 80.0  # the face oval is 80 units wide

    def p(dx: float, dy: float) -> tuple[int, int]:
        return int(cx + dx * s), int(cy + dy * s)

    def r(a: float, b: float) -> tuple[int, int]:
        return max(1, int(a * s)), max(1, int(b * s))

    aa, thick = cv2.LINE_AA, lambda t: max(1, int(t * s))
    cv2.ellipse(img, p(0, 0), r(40, 52), 0, 0, 360, (225, 180, 150), -1, aa)
    cv2.ellipse(img, p(0, -50), r(44, 22), 0, 180, 360, (60, 40, 20), -1, aa)
    for dx in (-16, 16):
        cv2.ellipse(img, p(dx, -8), r(8, 4), 0, 0, 360, (250, 250, 250), -1, aa)
        cv2.circle(img, p(dx, -8), r(3.5, 0)[0], (30, 20, 10), -1, aa)
        cv2.line(img, p(dx - 9, -18), p(dx + 9, -19), (70, 45, 30), thick(3), aa)
    cv2.line(img, p(0, -4), p(-4, 12), (170, 120, 100), thick(2), aa)
    cv2.ellipse(img, p(0, 24), r(14, 6), 0, 0, 180, (150, 50, 50), thick(3), aa)
    return cv2.GaussianBlur(img, (0, 0), 1.0)


def _vfr_pts(frames: int, fps: Fraction, time_base: Fraction) -> list[int]:
    """Irregular, strictly increasing pts: frame gaps cycle through 1, 2 and 0.5 nominal durations."""
    step = 1 / fps / time_base  # one nominal frame duration in time_base units
    gaps = (1.0, 2.0, 0.5, 1.5)
    pts, t = [], 0.0
    for i in range(frames):
        pts.append(int(round(t)))
        t += step * gaps[i % len(gaps)]
    return pts


def _add_audio(out: av.container.OutputContainer, codec: str, rate: int, layout: str) -> av.audio.stream.AudioStream:
    if codec in ("libopus", "opus") and rate not in _OPUS_RATES:
        rate = 48000
    if codec == "libvorbis":
        codec = "vorbis"  # FFmpeg's own encoder: PyAV wheels do not ship libvorbis
    stream = out.add_stream(codec, rate=rate, layout=layout)
    if codec == "vorbis":
        stream.codec_context.options = {"strict": "experimental"}
    fmt = _AUDIO_FORMATS.get(codec)
    if fmt is not None:
        stream.format = fmt
    return stream


def _audio_frames(stream: av.audio.stream.AudioStream, seconds: float, freq: float = 440.0):
    """Yield AudioFrames of a sine wave covering ``seconds``, sized for the encoder."""
    rate = stream.rate
    layout = stream.layout.name
    channels = stream.layout.nb_channels
    fmt = stream.format.name
    chunk = stream.codec_context.frame_size or 1024
    total = int(round(seconds * rate))
    done = 0
    while done < total:
        n = min(chunk, total - done) if stream.codec_context.frame_size == 0 else chunk
        t = (np.arange(done, done + n) / rate).astype(np.float64)
        wave = 0.3 * np.sin(2 * np.pi * freq * t)
        planes = np.stack([wave * (1 + 0.1 * c) for c in range(channels)])  # channels differ a little
        if fmt in ("s16", "s16p"):
            data = (planes * 32767).astype(np.int16)
        else:
            data = planes.astype(np.float32)
        if not fmt.endswith("p"):
            data = data.T.reshape(1, -1)  # packed: samples interleaved in one plane
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=layout)
        frame.sample_rate = rate
        frame.pts = done
        frame.time_base = Fraction(1, rate)
        yield frame
        done += n


def make_video(
    path: str | Path,
    frames: int = 24,
    size: tuple[int, int] = (64, 48),
    fps: Fraction = Fraction(25),
    codec: str = "libx264",
    audio: str | None = "aac",
    audio_rate: int = 44100,
    audio_layout: str = "stereo",
    vfr: bool = False,
    rotation: int = 0,
    audio_first: bool = False,
    pattern: str = "moving",
    subtitles: bool = False,
    pix_fmt: str | None = None,
    audio_tracks: int = 1,
    sar: Fraction | None = None,
    color_range: int | None = None,
    colors: tuple[int, int, int] | None = None,
) -> Path:
    """Write a small test clip and return its path.

    ``size`` is (width, height); odd sizes are written as yuv444p (yuv420p needs even dimensions) unless
    ``pix_fmt`` says otherwise. ``audio`` is an encoder name (``aac``, ``pcm_s16le``, ``libopus``,
    ``libvorbis``, ``libmp3lame``, ``ac3``, ``flac``) or None. ``vfr`` gives irregular frame gaps;
    ``rotation`` writes a display matrix (counter-clockwise degrees, as ``VideoFrame.rotation`` reads
    it); ``audio_first`` makes audio stream 0 and video stream 1; ``subtitles`` adds a text subtitle
    track (mov_text in MP4/MOV, subrip elsewhere); ``audio_tracks`` adds further sine tracks at other
    pitches; ``sar`` sets the sample aspect ratio; ``colors`` the (colorspace, primaries, transfer) tags.
    """
    path = Path(path)
    width, height = size
    fps = Fraction(fps)
    if pix_fmt is None:
        pix_fmt = "yuv444p" if (width % 2 or height % 2) else "yuv420p"

    with av.open(str(path), "w") as out:
        audio_streams = []
        if audio and audio_first:
            audio_streams = [_add_audio(out, audio, audio_rate, audio_layout) for _ in range(audio_tracks)]
        video = _add_video(out, codec, fps, size, pix_fmt, vfr)
        ctx = video.codec_context
        if sar is not None:
            ctx.sample_aspect_ratio = sar
        if color_range is not None:
            ctx.color_range = color_range
        if colors is not None:
            ctx.colorspace, ctx.color_primaries, ctx.color_trc = colors
        if rotation:
            video.set_display_rotation(rotation)
        if audio and not audio_first:
            audio_streams = [_add_audio(out, audio, audio_rate, audio_layout) for _ in range(audio_tracks)]
        sub = None
        if subtitles:
            sub_codec = "mov_text" if path.suffix.lower() in (".mp4", ".mov", ".m4v") else "subrip"
            # a stream without an encoder: the cues are written as ready-made packets
            sub = out.add_mux_stream(sub_codec)
            sub.time_base = Fraction(1, 1000)

        tb = video.codec_context.time_base
        pts_list = _vfr_pts(frames, fps, tb) if vfr else list(range(frames))
        duration = float(frames / fps) if not vfr else float((pts_list[-1] + 1 / fps / tb) * tb) if frames else 0.0

        _write_interleaved(out, video, audio_streams, pts_list, duration, pattern)
        if sub is not None:
            _write_subtitles(out, sub, sub_codec, duration)
    return path


def _add_video(out: av.container.OutputContainer, codec: str, fps: Fraction, size: tuple[int, int], pix_fmt: str,
               vfr: bool) -> av.video.stream.VideoStream:
    video = out.add_stream(codec, rate=fps)
    video.width, video.height = size
    video.pix_fmt = pix_fmt
    # a fine time base so VFR pts and 30000/1001 are exact
    video.codec_context.time_base = Fraction(1, 90000) if vfr else 1 / fps
    video.time_base = video.codec_context.time_base
    if codec in ("libx264", "libx265"):
        video.options = {"preset": "ultrafast"}
    if codec.startswith("libx264"):
        video.options["bf"] = "0" if vfr else "2"
    return video


def _write_interleaved(out: av.container.OutputContainer, video: av.video.stream.VideoStream, audio_streams: list,
                       pts_list: list[int], duration: float, pattern: str) -> None:
    """Encode the frames at ``pts_list`` and a sine per audio stream, each audio frame written before the first
    video frame after it (as a real muxer input would look), then flush every encoder."""
    tb = video.codec_context.time_base
    audio_iters = [_audio_frames(s, duration, freq=440.0 * (k + 1)) for k, s in enumerate(audio_streams)]
    pending: list[av.AudioFrame | None] = [next(it, None) for it in audio_iters]

    def write_audio_until(t: float) -> None:
        for k, s in enumerate(audio_streams):
            while pending[k] is not None and float(pending[k].pts / s.rate) <= t:
                out.mux(s.encode(pending[k]))
                pending[k] = next(audio_iters[k], None)

    for i, pts in enumerate(pts_list):
        frame = av.VideoFrame.from_ndarray(frame_image(i, video.width, video.height, pattern), format="rgb24")
        frame = frame.reformat(format=video.pix_fmt)
        frame.pts = pts
        frame.time_base = tb
        write_audio_until(float(pts * tb))
        out.mux(video.encode(frame))
    write_audio_until(float("inf"))
    out.mux(video.encode(None))
    for s in audio_streams:
        out.mux(s.encode(None))


def _write_subtitles(out: av.container.OutputContainer, stream: av.stream.Stream, codec: str, seconds: float) -> None:
    """Write two text cues, as ready-made packets (no encoder involved)."""
    cues = [(0.0, seconds / 2, "hello"), (seconds / 2, seconds, "world")]
    for start, end, text in cues:
        if codec == "mov_text":
            raw = text.encode()
            data = len(raw).to_bytes(2, "big") + raw  # mov_text sample: 16-bit length + UTF-8 text
        else:
            data = text.encode()
        packet = av.Packet(data)
        packet.stream = stream
        packet.time_base = stream.time_base
        packet.pts = packet.dts = int(start * 1000)
        packet.duration = int((end - start) * 1000)
        out.mux(packet)


#: a minimal ASS script header: the styles a ``.ass`` subtitle track carries in its codec private data
ASS_HEADER = "\n".join([
    "[Script Info]", "ScriptType: v4.00+", "PlayResX: 384", "PlayResY: 288", "",
    "[V4+ Styles]",
    "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
    "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, "
    "MarginR, MarginV, Encoding",
    "Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1", "",
    "[Events]", "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text", "",
]).encode()


def add_subtitles(src: str | Path, dst: str | Path, codec: str, cues: list[tuple[int, int, str]]) -> Path:
    """Copy every stream of ``src`` into ``dst`` (Matroska or MP4) and add a subtitle track of ``cues``.

    ``cues`` are (start ms, end ms, text) in the format's own markup: SubRip/WebVTT text (``<i>..</i>``,
    newlines), ASS dialogue text (``{\\b1}``, ``\\N``), mov_text plain text. ``codec`` is ``subrip``,
    ``webvtt``, ``ass``, ``mov_text`` or ``dvd_subtitle`` (whose cues are written as meaningless bytes: a
    bitmap track for tests that only copy or drop it). ASS goes through FFmpeg's encoder, which stores the
    script header; the others are written as ready-made packets.
    """
    dst = Path(dst)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        if codec == "ass":
            sub = out.add_stream("ass")
            sub.codec_context.time_base = Fraction(1, 1000)
            sub.codec_context.subtitle_header = ASS_HEADER
            sub.codec_context.open()  # before the file header is written: it carries the ASS header
        else:
            sub = out.add_mux_stream(codec)
        sub.time_base = Fraction(1, 1000)
        for packet in inp.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
        for n, (start, end, text) in enumerate(cues):
            if codec == "ass":
                cue = SubtitleSet.create(f"{n},0,Default,,0,0,0,,{text}".encode(), 0, end - start, start)
                packet = sub.codec_context.encode_subtitle(cue)
            elif codec == "mov_text":
                raw = text.encode()
                packet = av.Packet(len(raw).to_bytes(2, "big") + raw)
            else:
                packet = av.Packet(text.encode())
            packet.stream = sub
            packet.time_base = sub.time_base
            packet.pts = packet.dts = start
            packet.duration = end - start
            out.mux(packet)
    return dst


def _silence(stream: av.audio.stream.AudioStream, frames: int) -> list[av.AudioFrame]:
    out = []
    for i in range(frames):
        f = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        f.sample_rate = stream.rate
        f.pts = i * 1024
        out.append(f)
    return out


def make_audio_only(path: str | Path, seconds: float = 0.5) -> Path:
    """An AAC file with no video stream at all (.m4a/.mp4/.mkv)."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=44100, layout="stereo")
        for f in _silence(a, int(seconds * 44100 / 1024)):
            out.mux(a.encode(f))
        out.mux(a.encode(None))
    return path


def make_empty_video(path: str | Path) -> Path:
    """A Matroska file with a video stream that holds zero frames (and some audio, so the file is valid)."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("aac", rate=44100, layout="stereo")
        for f in _silence(a, 10):
            out.mux(a.encode(f))
        out.mux(a.encode(None))
        out.mux(v.encode(None))
    return path


def corrupt_video_packets(src: str | Path, dst: str | Path, first: int, count: int, seed: int = 0) -> Path:
    """Copy ``src`` to ``dst`` with the payload of video packets [first, first+count) replaced by noise.

    Only packet payloads are touched (their first 4 bytes kept), so the container stays readable and the
    decoder is what fails: the "decode errors mid-stream" case.
    """
    raw = Path(src).read_bytes()
    with av.open(str(src)) as c:
        payloads = [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]
    data = bytearray(raw)
    rng = np.random.default_rng(seed)
    for payload in payloads[first : first + count]:
        at = raw.find(payload)
        if at < 0:
            raise ValueError("packet payload not found verbatim in the file")
        data[at + 4 : at + len(payload)] = rng.integers(0, 256, len(payload) - 4, dtype=np.uint8).tobytes()
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def truncate_file(src: str | Path, dst: str | Path, fraction: float) -> Path:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dst`` (a download cut short)."""
    raw = Path(src).read_bytes()
    Path(dst).write_bytes(raw[: int(len(raw) * fraction)])
    return Path(dst)
