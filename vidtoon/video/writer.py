"""Encoding the stylized frames: encoder choice and options, pixel format, timing and metadata.

Timing: the output video stream uses the input's time base and every frame keeps its own pts and duration,
so constant rates (30000/1001 exactly), variable frame rate and the frame count all survive.

Pixel format: yuv420p (what every player decodes) whenever the size allows. 4:2:0 needs even width and
height, so an odd-sized input is encoded as yuv444p at its exact size instead: no pixel is cropped or padded,
at the cost of H.264 "High 4:4:4" files that some hardware players refuse (``--max-side`` produces even
sizes for those who need 4:2:0).
"""
from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np

from vidtoon.errors import VidtoonError
from vidtoon.video.reader import VideoInfo

#: x264-style preset names -> NVENC presets (p1 fastest .. p7 best)
_NVENC_PRESETS = {
    "ultrafast": "p1", "superfast": "p1", "veryfast": "p2", "faster": "p3", "fast": "p4",
    "medium": "p5", "slow": "p6", "slower": "p7", "veryslow": "p7",
}
#: x264-style preset names -> SVT-AV1 presets (13 fastest .. 0 best) and libvpx cpu-used (8 fastest .. 0)
_SVT_PRESETS = {"ultrafast": 12, "superfast": 11, "veryfast": 10, "faster": 9, "fast": 8, "medium": 6,
                "slow": 4, "slower": 3, "veryslow": 2}
_VPX_CPU_USED = {"ultrafast": 8, "superfast": 7, "veryfast": 6, "faster": 5, "fast": 4, "medium": 3,
                 "slow": 2, "slower": 1, "veryslow": 0}

#: AVColorSpace -> swscale colorspace for the RGB -> YUV matrix (others use swscale's default, BT.601)
_SWS_COLORSPACE = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
_UNSPECIFIED = 2  # AVCOL_SPC/PRI/TRC_UNSPECIFIED


def nvenc_cq(crf: int) -> int:
    """NVENC's constant-quality level ``cq`` for a ``--crf`` value.

    ``cq`` runs 1 (best) to 51 like x264's CRF, which it roughly matches, but 0 means "automatic" (the
    encoder's default quality, far from x264's lossless CRF 0), and ``--crf`` accepts up to 63 (the VP9/AV1
    scale): so CRF 0 becomes the best level, 1, and values above 51 the lowest, 51.
    """
    return min(max(crf, 1), 51)


def encoder_options(encoder: str, crf: int, preset: str, *, busy_cpu: bool = False) -> dict[str, str]:
    """The FFmpeg options that express ``--crf`` and ``--preset`` for ``encoder``.

    ``busy_cpu``: the generator runs on the same CPU cores. x264 then gets one thread: its frame threads
    and lookahead thread only add scheduling and synchronisation work when every core is already busy
    with inference (measured, 720p ``convert`` on 2 cores with ONNX Runtime: 12.7 vs 12.1 fps; alone, one
    thread costs 16.3 instead of 18.0 ms of CPU per frame). With a GPU generator the encoder is the
    bottleneck and keeps all its threads.
    """
    if encoder in ("libx264", "libx265"):
        opts = {"crf": str(crf), "preset": preset}
        if busy_cpu and encoder == "libx264":
            opts["threads"] = "1"
        if encoder == "libx265":
            opts["x265-params"] = "log-level=error"  # x265 prints its banner straight to stderr
        return opts
    if encoder.endswith("_nvenc"):
        return {"rc": "vbr", "cq": str(nvenc_cq(crf)), "b": "0", "preset": _NVENC_PRESETS.get(preset, preset)}
    if encoder in ("libvpx", "libvpx-vp9"):
        return {"crf": str(crf), "b": "0", "row-mt": "1", "cpu-used": str(_VPX_CPU_USED.get(preset, 4))}
    if encoder == "libsvtav1":
        # SVT-AV1 prints a banner straight to stderr unless told otherwise (1 = errors only)
        os.environ.setdefault("SVT_LOG", "1")
        return {"crf": str(crf), "preset": str(_SVT_PRESETS.get(preset, 8))}
    return {}  # other encoders: their own defaults (--crf/--preset have no common meaning there)


def choose_pix_fmt(encoder: str, width: int, height: int) -> str:
    """yuv420p for even sizes; yuv444p (which allows odd sizes) when width or height is odd."""
    try:
        formats = [f.name for f in (av.Codec(encoder, "w").video_formats or [])]
    except av.codec.codec.UnknownCodecError:
        raise VidtoonError(f"video encoder {encoder!r} is not available in this FFmpeg build (try libx264)") from None
    if width % 2 == 0 and height % 2 == 0:
        if not formats or "yuv420p" in formats:
            return "yuv420p"
        return formats[0]
    if "yuv444p" in formats:
        return "yuv444p"
    raise VidtoonError(
        f"{width}x{height} is an odd size and {encoder} only encodes 4:2:0 (use libx264, or --max-side for an even size)"
    )


def check_encoder(encoder: str, width: int, height: int, pix_fmt: str, options: dict[str, str]) -> None:
    """Open ``encoder`` once with the real settings, so a missing GPU or a bad preset fails before any work."""
    try:
        ctx = av.CodecContext.create(encoder, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        raise VidtoonError(f"video encoder {encoder!r} is not available in this FFmpeg build (try libx264)") from None
    ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
    ctx.time_base = Fraction(1, 25)
    ctx.framerate = Fraction(25)
    ctx.options = dict(options)
    try:
        ctx.open()
    except av.FFmpegError as exc:
        hint = " (needs an NVIDIA GPU and driver)" if encoder.endswith("_nvenc") else ""
        raise VidtoonError(f"encoder {encoder} cannot start with these settings{hint}: {exc.strerror or exc}") from None
    finally:
        del ctx


class VideoWriter:
    """The output video stream of one conversion; call :meth:`write` per frame in order, then :meth:`flush`."""

    def __init__(self, out: av.container.OutputContainer, info: VideoInfo, size: tuple[int, int], encoder: str,
                 pix_fmt: str, options: dict[str, str]) -> None:
        self.out = out
        self.time_base = info.time_base
        # the rate only steers rate control and the container's nominal fps; pts carry the real timing
        stream = out.add_stream(encoder, rate=info.rate or Fraction(25))
        stream.width, stream.height = size
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = info.time_base
        stream.time_base = info.time_base
        stream.options = dict(options)
        ctx = stream.codec_context
        if info.sample_aspect_ratio is not None:
            ctx.sample_aspect_ratio = info.sample_aspect_ratio
        # color tags: copied when the input states them; the RGB -> YUV matrix and range follow them
        self.sws_colorspace = _SWS_COLORSPACE.get(info.colorspace)
        self.color_range = info.color_range if info.color_range in (1, 2) else 0
        if info.colorspace not in (_UNSPECIFIED, 0):
            ctx.colorspace = info.colorspace
        if self.color_range:
            ctx.color_range = self.color_range
        if info.color_primaries != _UNSPECIFIED:
            ctx.color_primaries = info.color_primaries
        if info.color_trc != _UNSPECIFIED:
            ctx.color_trc = info.color_trc
        if info.display_matrix is not None:
            stream.set_display_matrix(info.display_matrix)
        self.stream = stream
        self.pix_fmt = pix_fmt
        self.frames = 0

    def write(self, rgb: np.ndarray, pts: int, duration: int) -> None:
        """Encode one H x W x 3 uint8 RGB frame at ``pts`` (input time base) and mux its packets."""
        # wraps the array without a copy; one swscale thread is several times faster than "auto" here
        # (the pipeline already runs decode, inference and encode in parallel)
        frame = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(
            format=self.pix_fmt,
            dst_colorspace=self.sws_colorspace,
            dst_color_range=self.color_range or None,
            threads=1,
        )
        frame.pts = pts
        frame.time_base = self.time_base
        if duration:
            frame.duration = duration
        self.out.mux(self.stream.encode(frame))
        self.frames += 1

    def flush(self) -> None:
        """Drain the encoder's delayed frames into the file."""
        self.out.mux(self.stream.encode(None))
