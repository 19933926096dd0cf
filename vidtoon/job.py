"""Preparing a conversion: every check that can refuse it, before the first frame is decoded.

:func:`prepare` turns an input, an output name and :class:`vidtoon.options.ConvertOptions` into a :class:`Job`
(what to read, what to write, and how); :mod:`vidtoon.pipeline` runs it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vidtoon.compare import CompareLayout, layout_for
from vidtoon.errors import VidtoonError
from vidtoon.fileio import check_creatable
from vidtoon.options import ConvertOptions
from vidtoon.video import containers
from vidtoon.video.reader import VideoInfo, probe, scaled_size
from vidtoon.video.remux import TrackPlan, plan_tracks
from vidtoon.video.writer import check_encoder, choose_pix_fmt, encoder_options

__all__ = ["ConvertResult", "Job", "default_output", "prepare"]


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion produced."""

    output: Path
    frames: int
    seconds: float
    fps: float
    size_bytes: int
    decode_errors: int
    warnings: list[str]
    #: seconds from the call to the first frame's conversion: loading the model and starting the engine (an
    #: ONNX export on the first run of a model); not part of ``seconds``
    startup_seconds: float = 0.0


@dataclass
class Job:
    """A conversion that passed every check: what to read, what to write, and how."""

    info: VideoInfo
    output: Path
    container: str
    plans: list[TrackPlan]
    size: tuple[int, int]  # width, height of the converted frames (after --max-side)
    pix_fmt: str
    encoder_opts: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    cut: bool = False  # --start or --end given
    compare: CompareLayout | None = None  # --compare: how the original and the cartoon share a frame
    encoder: str = containers.DEFAULT_VIDEO_ENCODER  # the video encoder: --codec, or the container's own

    @property
    def out_size(self) -> tuple[int, int]:
        """Width, height of the encoded frames: ``size``, or both halves of ``--compare``."""
        return self.compare.size(*self.size) if self.compare is not None else self.size

    def mux_options(self) -> dict[str, str]:
        """Muxer options: MP4/MOV put their index first (``faststart``, for streaming).

        Frames shorter than 1 ms (over 1000 fps: a damaged header) also get a movie timescale as fine as the
        video's: the default (1/1000 s) rounds the edit list to a length that hides most of such a video.
        """
        if self.container not in ("mp4", "mov"):
            return {}
        opts = {"movflags": "+faststart"}
        if self.info.rate is not None and self.info.rate > 1000:
            opts["movie_timescale"] = str(min(self.info.time_base.denominator, 2**31 - 1))
        return opts


def default_output(input: Path, container: str, compare: bool = False) -> Path:
    """``<stem>_toon.<ext>`` beside the input (``<stem>_compare.<ext>`` for ``--compare``)."""
    return input.with_name(f"{input.stem}_{'compare' if compare else 'toon'}{containers.extension_of(container)}")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_paths(src: Path, dst: Path | None, folder: Path | None) -> None:
    """The input exists and is a file; the output, when named, is a file name with a known container in a
    folder this process can write to or create (``folder``: the output folder that was named instead)."""
    if not src.exists():
        raise VidtoonError(f"input {src} does not exist")
    if not src.is_file():
        raise VidtoonError(f"input {src} is not a file")
    if dst is not None:
        containers.container_for(dst)  # a bad extension is refused before anything is read
    check_creatable(folder if folder is not None else (dst or src).parent)


def prepare(input: str | Path, output: str | Path | None, opts: ConvertOptions) -> Job:
    """Check everything that can be refused, cheapest first, before any frame is converted.

    Order: input exists; output folder writable; input readable (probe decodes one frame); output name,
    container and its codecs; input != output; no existing output without ``overwrite``; the encoder opens.
    """
    src = Path(input).expanduser()
    dst = Path(output).expanduser() if output is not None else None
    # the rule of every command: -o names a file (its folder is created when missing), or an existing folder
    # (or one written with a trailing slash) to put the default name in
    folder = None
    if dst is not None and (dst.is_dir() or str(output).endswith(("/", os.sep))):
        folder, dst = dst, None
    _check_paths(src, dst, folder)

    info = probe(src)
    if opts.start is not None and info.duration is not None and opts.start >= info.duration:
        raise VidtoonError(f"--start {opts.start} is past the end of the video ({info.duration:.2f} s)")
    warnings: list[str] = []
    if info.bad_metadata:
        warnings.append(f"{src.name} has damaged metadata (not valid UTF-8): read with the bad bytes replaced")
    if dst is None:
        kept_audio = [a.codec for a in info.audio if not a.problem] if opts.audio else []
        kept_subtitles = [s.codec for s in info.subtitles if not s.problem]
        container = containers.default_container(src, opts.codec or containers.DEFAULT_VIDEO_ENCODER, kept_audio,
                                                 kept_subtitles)
        dst = default_output(src, container, opts.compare)
        if folder is not None:
            dst = folder / dst.name
    else:
        container = containers.container_for(dst)
    encoder = opts.codec or containers.default_video_encoder(container)  # no --codec: the container's own
    containers.check_video_fits(container, encoder)
    if _same_file(src, dst):
        raise VidtoonError(f"output {dst} is the input file (choose another name)")
    if dst.exists() and not opts.overwrite:
        raise VidtoonError(f"output {dst} already exists (pass --overwrite to replace it)")
    plans, track_warnings = plan_tracks(info, container, opts.audio)
    warnings += track_warnings

    size = scaled_size(info.width, info.height, opts.max_side, even=True)
    compare = layout_for(*size, info.display_matrix, info.sample_aspect_ratio) if opts.compare else None
    out_w, out_h = compare.size(*size) if compare is not None else size
    pix_fmt = choose_pix_fmt(encoder, out_w, out_h)
    enc_opts = encoder_options(encoder, opts.crf, opts.preset)
    check_encoder(encoder, out_w, out_h, pix_fmt, enc_opts)
    if pix_fmt != "yuv420p":
        warnings.append(f"{out_w}x{out_h} is an odd size: encoded as {pix_fmt} to keep every pixel")
    cut = opts.start is not None or opts.end is not None
    return Job(info, dst, container, plans, size, pix_fmt, enc_opts, warnings, cut, compare, encoder)
