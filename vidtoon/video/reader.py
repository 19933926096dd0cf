"""Reading videos: the facts about an input (:func:`probe`) and its frames and packets (:class:`Reader`).

The reader yields, in the input's own demux order, decoded video frames as RGB arrays (:class:`VideoItem`,
with the frame's own pts and duration) and the untouched packets of the other streams that are kept. Keeping
demux order is what lets the writer interleave audio with video by time instead of appending it.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vidtoon.errors import VidtoonError


@dataclass(frozen=True)
class StreamInfo:
    """An audio or subtitle stream of the input."""

    index: int  # stream index in the input container
    type: str  # "audio" or "subtitle"
    codec: str  # canonical codec name ("aac", "mp3", "pcm_s16le", "mov_text", ...)
    rate: int = 0  # audio sample rate (0 for subtitles)
    layout: str = ""  # audio channel layout name ("stereo", "5.1(side)")
    channels: int = 0  # audio channel count
    problem: str = ""  # why the track cannot be used (a damaged header, an unknown codec); "" when it can


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about an input, read before any work starts."""

    path: Path
    video_index: int  # index of the video stream that is converted
    width: int
    height: int
    time_base: Fraction  # of the video stream: output pts use it unchanged
    rate: Fraction | None  # average frame rate (None when unknown)
    frames: int | None  # frame count, or an estimate from duration x rate, None when unknown
    duration: float | None  # seconds: of the video stream when known, else of the file
    video_duration: float | None  # seconds, only when the file states it for the video stream itself
    start_pts: int  # first pts of the video stream (in time_base); --start/--end count from it
    display_matrix: tuple[int, ...] | None  # 9 int32 of FFmpeg's display matrix (rotation, flips)
    sample_aspect_ratio: Fraction | None
    colorspace: int  # AVColorSpace
    color_range: int  # AVColorRange
    color_primaries: int  # AVColorPrimaries
    color_trc: int  # AVColorTransferCharacteristic
    audio: list[StreamInfo] = field(default_factory=list)
    subtitles: list[StreamInfo] = field(default_factory=list)
    bad_metadata: bool = False  # some tags were not valid UTF-8 (read with U+FFFD in place of the bad bytes)


@dataclass
class VideoItem:
    """One decoded frame on its way through the pipeline."""

    index: int  # 0-based position in the output
    rgb: np.ndarray  # H x W x 3 uint8
    pts: int  # in VideoInfo.time_base, already shifted by --start
    duration: int  # in VideoInfo.time_base (0 when unknown)
    source: np.ndarray | None = None  # the decoded frame, kept after stylization only for the stabilizer
    motion: Any = None  # the stabilizer's flow for this frame, when it runs ahead (GPU engines; stabilize.Motion)
    faces: Any = None  # the faces to draw back after stylization (list of vidtoon.faces.Face; None: --no-faces)


@dataclass
class ReadStats:
    """Counters the reader fills while it runs (read by the pipeline for its warnings)."""

    decode_errors: int = 0  # packets the decoder refused (the frame is lost, decoding goes on)
    corrupt_frames: int = 0  # frames the decoder flagged as concealed/corrupt (kept)
    fixed_pts: int = 0  # frames whose pts were missing or not increasing, and were repaired
    truncated: bool = False  # the demuxer hit a broken end of file
    last_end: Fraction | None = None  # end time (seconds, absolute) of the last frame read


def open_container(path: str | Path) -> av.container.InputContainer:
    """Open an input as every part of vidtoon does: metadata that is not valid UTF-8 is replaced, not fatal.

    Tags written in another encoding (or damaged) would otherwise stop PyAV from opening the file at all;
    ffmpeg shows such bytes as U+FFFD too. Raises what ``av.open`` raises.
    """
    return av.open(str(path), "r", metadata_errors="replace")


def _open(path: Path) -> av.container.InputContainer:
    try:
        return open_container(path)
    except FileNotFoundError:
        raise VidtoonError(f"input {path} does not exist") from None
    except IsADirectoryError:
        raise VidtoonError(f"input {path} is a folder, not a video file") from None
    except PermissionError:
        raise VidtoonError(f"cannot read {path} (permission denied)") from None
    except av.FFmpegError as exc:
        raise VidtoonError(f"{path.name} is not a readable video ({exc.strerror or exc})") from None


#: FFmpeg demuxers that read still images (and other non-videos) as one-frame videos
STILL_IMAGE_FORMATS = ("image2", "gif", "apng", "tty", "webp", "ico", "bmp", "lavfi")


def is_still_image(container: av.container.InputContainer) -> bool:
    """Whether FFmpeg opened a still image (JPEG, PNG, WebP, ...), not a video."""
    names = container.format.name.split(",")
    return any(n in STILL_IMAGE_FORMATS or n.endswith("_pipe") for n in names)


def video_streams(container: av.container.InputContainer) -> list[av.video.stream.VideoStream]:
    """The video streams that are moving pictures: without cover art (``attached_pic``, as audio files have)."""
    return [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]


def count_frames(v: av.video.stream.VideoStream, container: av.container.InputContainer) -> int | None:
    """The frame count of ``v``: as stated, else its duration (or the file's) x its frame rate; None if unknown."""
    rate = v.average_rate or v.guessed_rate
    duration = _video_duration(v) or (container.duration / 1e6 if container.duration else None)
    return v.frames or (int(round(duration * rate)) if duration and rate else None)


def _video_duration(v: av.video.stream.VideoStream) -> float | None:
    """Seconds the video stream itself states: its duration, or Matroska's per-stream ``DURATION`` tag."""
    if v.duration:
        return float(v.duration * (v.time_base or Fraction(1, 90000)))
    return _duration_tag(v.metadata.get("DURATION"))


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The stream to convert: the first video stream that is not a cover picture."""
    streams = video_streams(container)
    if not streams:
        raise VidtoonError(f"{path.name} has no video stream (is it an audio file?)")
    return streams[0]


def _stream_info(stream: av.stream.Stream) -> StreamInfo:
    """The facts of an audio or subtitle stream, with ``problem`` set when its header makes it unusable."""
    ctx = stream.codec_context
    if ctx is None:  # FFmpeg has no decoder for its codec id (unknown, or a damaged header)
        return StreamInfo(stream.index, stream.type, "unknown", problem="its codec is unknown (damaged header?)")
    codec = ctx.codec.canonical_name
    if stream.type != "audio":
        return StreamInfo(stream.index, stream.type, codec)
    rate, layout, channels = ctx.sample_rate, ctx.layout.name, ctx.layout.nb_channels
    problem = ""
    if channels <= 0 or rate <= 0:
        problem = f"its header is damaged ({channels} channels, {rate} Hz)"
    return StreamInfo(stream.index, "audio", codec, rate, layout, channels, problem)


def _display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    sd = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
    if sd is None or len(bytes(sd)) < 36:  # absent, or too short to be one (damaged)
        return None
    return tuple(int(v) for v in np.frombuffer(bytes(sd), dtype="<i4", count=9))


def _bad_metadata(container: av.container.InputContainer) -> bool:
    """Whether :func:`open_container` had to replace bytes in the tags of the file or of a stream."""
    tags = [container.metadata] + [s.metadata for s in container.streams]
    return any("\ufffd" in key + value for t in tags for key, value in t.items())


def _duration_tag(tag: str | None) -> float | None:
    """Seconds from Matroska's per-stream ``DURATION`` tag ("00:01:02.500000000"), None if absent/odd."""
    if not tag:
        return None
    try:
        h, m, sec = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None


def probe(path: str | Path) -> VideoInfo:
    """Read the facts of ``path`` and decode its first frame; raises VidtoonError for unusable inputs.

    Decoding one frame here is what turns "not a video", "corrupt from the start" and "zero frames" into
    clear errors before any output is written, and gives the display matrix (FFmpeg attaches it to frames).
    """
    path = Path(path)
    if not path.exists():
        raise VidtoonError(f"input {path} does not exist")
    with _open(path) as c:
        if is_still_image(c):  # FFmpeg reads it as a one-frame video: the user meant the image command
            raise VidtoonError(f"{path.name} is a still image, not a video (use vidtoon image {path})")
        v = _video_stream(c, path)
        if v.codec_context is None or not v.codec_context.codec.is_decoder:
            raise VidtoonError(f"{path.name}: no decoder for its video codec")
        first, errors = None, 0
        try:
            for packet in c.demux(v):
                try:
                    frames = v.decode(packet)
                except av.FFmpegError:
                    errors += 1
                    continue
                if frames:
                    first = frames[0]
                    break
        except av.FFmpegError:
            errors += 1
        if first is None:
            if errors:
                raise VidtoonError(f"{path.name} is corrupt: no frame could be decoded ({errors} decode errors)")
            raise VidtoonError(f"{path.name} has no video frames")
        tb = v.time_base or Fraction(1, 90000)
        rate = v.average_rate or v.guessed_rate or None
        video_duration = _video_duration(v)
        duration = video_duration or (c.duration / 1e6 if c.duration else None)
        matrix = _display_matrix(first)
        sar = v.sample_aspect_ratio
        return VideoInfo(
            path=path,
            video_index=v.index,
            width=first.width,
            height=first.height,
            time_base=tb,
            rate=Fraction(rate) if rate else None,
            frames=count_frames(v, c),
            duration=duration,
            video_duration=video_duration,
            start_pts=int(v.start_time or 0),
            display_matrix=matrix,
            sample_aspect_ratio=sar if sar and sar.numerator > 0 else None,
            colorspace=int(first.colorspace),
            color_range=int(first.color_range),
            color_primaries=int(first.color_primaries),
            color_trc=int(first.color_trc),
            audio=[_stream_info(s) for s in c.streams.audio],
            subtitles=[_stream_info(s) for s in c.streams.subtitles],
            bad_metadata=_bad_metadata(c),
        )


def scaled_size(width: int, height: int, max_side: int | None, even: bool) -> tuple[int, int]:
    """Size after ``--max-side``: the longer side at most ``max_side``, aspect kept; even when ``even``."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    if even:
        w, h = max(2, w - w % 2), max(2, h - h % 2)
    return w, h


#: how far past --end the demuxer reads before it stops waiting for packets of other streams
_TAIL = Fraction(2)


class Reader:
    """Decodes one input in demux order; owns its container (use from one thread only).

    ``keep`` are the indices of non-video streams whose packets are passed through; ``start``/``end``
    (seconds) select a part: frames and packets are kept when their time lies in [start, end), and their
    timestamps are shifted so that ``start`` becomes 0.
    """

    def __init__(self, info: VideoInfo, keep: list[int], size: tuple[int, int], start: float | None = None,
                 end: float | None = None) -> None:
        self.info = info
        self.keep = keep
        self.size = size
        self.start = start
        self.end = end
        self.stats = ReadStats()
        self.container = _open(info.path)

    def close(self) -> None:
        """Close the input (safe to call twice)."""
        self.container.close()

    def _offset(self, time_base: Fraction, start: Fraction | None) -> int:
        return int(round(start / time_base)) if start is not None else 0

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        w, h = self.size
        # swscale's fast path: within about one level of the exact conversion (the accurate flags cost 10x);
        # one thread, because its "auto" threading costs more than it saves at these sizes
        if (w, h) == (frame.width, frame.height):
            return frame.to_ndarray(format="rgb24", threads=1)
        # AREA averages the source pixels: the right filter for downscaling
        return frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA", threads=1)

    def items(self) -> Iterator[VideoItem | av.Packet]:
        """Yield VideoItems and kept packets in demux order (packets already shifted for --start)."""
        c = self.container
        v = c.streams[self.info.video_index]
        v.thread_type = "AUTO"  # frame + slice threads
        tb = self.info.time_base
        streams = [v] + [c.streams[i] for i in self.keep]
        # --start/--end count from the video's first timestamp; times below are absolute
        base = self.info.start_pts * tb
        start = base + _exact(self.start) if self.start else None
        end = base + _exact(self.end) if self.end is not None else None
        offsets = {s.index: self._offset(s.time_base or tb, start) for s in streams}
        if start is not None:
            # lands on the keyframe at or before start; frames before start are decoded and dropped
            c.seek(int(start / tb), stream=v, backward=True)
        done: set[int] = set()  # streams that reached --end
        state = {"index": 0, "last_pts": None, "last_dur": 0}

        def frames_of(packet: av.Packet | None) -> Iterator[VideoItem]:
            try:
                decoded = v.decode(packet)
            except av.error.EOFError:
                return  # already flushed (demux ends with an empty packet that flushes the decoder)
            except av.FFmpegError:
                self.stats.decode_errors += 1
                return
            for frame in decoded:
                if frame.is_corrupt:
                    self.stats.corrupt_frames += 1
                item = self._item(frame, tb, offsets[v.index], start, end, state)
                if item is None:
                    if end is not None and frame.pts is not None and frame.pts * tb >= end:
                        done.add(v.index)
                    continue
                yield item

        try:
            for packet in c.demux(streams):
                if end is not None and v.index in done and packet.pts is not None \
                        and packet.pts * packet.time_base >= end + _TAIL:
                    return  # every stream is past the end (sparse streams may never say so)
                if packet.stream.index == v.index:
                    if v.index not in done:
                        yield from frames_of(packet)
                elif packet.size and packet.stream.index not in done:
                    kept = self._shift(packet, offsets[packet.stream.index], start, end)
                    if kept is None and end is not None and packet.pts is not None and packet.pts * packet.time_base >= end:
                        done.add(packet.stream.index)
                    elif kept is not None:
                        yield kept
                if end is not None and len(done) == len(streams):
                    return
        except av.FFmpegError:
            # a broken tail: keep what was read, flush the decoder, report it
            self.stats.truncated = True
        yield from frames_of(None)

    def _item(self, frame: av.VideoFrame, tb: Fraction, offset: int, start: Fraction | None,
              end: Fraction | None, state: dict) -> VideoItem | None:
        pts = frame.pts
        if pts is not None:
            t = pts * tb
            if (start is not None and t < start) or (end is not None and t >= end):
                return None
        duration = int(frame.duration or 0)
        last = state["last_pts"]
        if pts is None or (last is not None and pts <= last):
            # missing or non-increasing pts (broken muxing): continue from the previous frame
            step = state["last_dur"] or (int(round(1 / (self.info.rate * tb))) if self.info.rate else 1)
            pts = (last + max(step, 1)) if last is not None else offset
            self.stats.fixed_pts += 1
        state["last_pts"], state["last_dur"] = pts, duration
        self.stats.last_end = (pts + duration) * tb
        index = state["index"]
        state["index"] += 1
        return VideoItem(index=index, rgb=self._to_rgb(frame), pts=pts - offset, duration=duration)

    @staticmethod
    def _shift(packet: av.Packet, offset: int, start: Fraction | None, end: Fraction | None) -> av.Packet | None:
        """Keep a packet whose start lies in [start, end), shifted by ``offset``; None to drop it."""
        if packet.pts is not None and (start is not None or end is not None):
            t = packet.pts * packet.time_base
            if (start is not None and t < start) or (end is not None and t >= end):
                return None
        if offset:
            if packet.pts is not None:
                packet.pts -= offset
            if packet.dts is not None:
                packet.dts -= offset
        return packet


def _exact(seconds: float) -> Fraction:
    """Seconds given as a float, as the fraction the user meant (0.1 -> 1/10, not 3602879701896397/2**55)."""
    return Fraction(seconds).limit_denominator(1_000_000)


def estimate_frames(info: VideoInfo, start: float | None, end: float | None) -> int | None:
    """The number of frames expected in [start, end), for the progress bar (None when unknown)."""
    if start is None and end is None:
        return info.frames
    if info.rate is None or info.duration is None:
        return None
    lo = max(start or 0.0, 0.0)
    hi = min(end if end is not None else math.inf, info.duration)
    return max(0, int(round((hi - lo) * float(info.rate))))
