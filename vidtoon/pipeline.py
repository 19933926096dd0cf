"""Convert one video: decode -> stylize -> encode, in three overlapping stages.

::

    decode thread            main thread                 encode thread
    Reader.items() --q_in--> batches -> Engine.submit --q_out--> VideoWriter / audio tracks -> temp file
                             (+ Stabilizer)

The queues are bounded, so memory stays flat however long the video is. Items keep the input's demux
order (video frames and audio/subtitle packets mixed), which is what lets the muxer interleave audio with
video by time. Everything that can be refused is checked before the first frame is decoded (:func:`prepare`);
the output appears under its name only when complete (temp file in the same folder, then rename), and any
error or Ctrl-C stops both threads and removes the temp file.
"""
from __future__ import annotations

import collections
import contextlib
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vidtoon.compare import CompareLayout, layout_for
from vidtoon.engines.base import Engine
from vidtoon.errors import VidtoonError
from vidtoon.options import ConvertOptions
from vidtoon.video import containers
from vidtoon.video.reader import Reader, VideoInfo, VideoItem, estimate_frames, probe, scaled_size
from vidtoon.video.remux import TrackPlan, open_tracks, plan_tracks
from vidtoon.video.writer import VideoWriter, check_encoder, choose_pix_fmt, encoder_options

__all__ = ["ConvertResult", "Job", "convert", "prepare", "default_output"]

#: queue depth, in items (frames or packets): enough to keep every stage busy ...
_QUEUE_ITEMS = 16
#: ... but for big frames at most this many bytes of RGB frames per queue (4K: 10 frames, not 16)
_QUEUE_BYTES = 256 * 2**20
_POLL = 0.1  # seconds between checks of the stop flag while a queue is full or empty
_END = object()  # end-of-stream marker passed down the queues


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

    @property
    def out_size(self) -> tuple[int, int]:
        """Width, height of the encoded frames: ``size``, or both halves of ``--compare``."""
        return self.compare.size(*self.size) if self.compare is not None else self.size


def default_output(input: Path, container: str, compare: bool = False) -> Path:
    """``<stem>_toon.<ext>`` beside the input (``<stem>_compare.<ext>`` for ``--compare``)."""
    return input.with_name(f"{input.stem}_{'compare' if compare else 'toon'}{containers.extension_of(container)}")


def _check_folder_writable(folder: Path) -> None:
    """Create and remove a file in ``folder``: the only test that also holds for root and read-only mounts."""
    if not folder.is_dir():
        raise VidtoonError(f"output folder {folder} does not exist")
    probe_file = folder / f".vidtoon-write-test-{uuid.uuid4().hex[:8]}"
    try:
        probe_file.touch(exist_ok=False)
        probe_file.unlink()
    except OSError as exc:
        raise VidtoonError(f"cannot write to {folder} ({exc.strerror or exc})") from None


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def prepare(input: str | Path, output: str | Path | None, opts: ConvertOptions) -> Job:
    """Check everything that can be refused, cheapest first, before any frame is converted.

    Order: input exists; output folder writable; input readable (probe decodes one frame); output name,
    container and its codecs; input != output; no existing output without ``overwrite``; the encoder opens.
    """
    src = Path(input).expanduser()
    if not src.exists():
        raise VidtoonError(f"input {src} does not exist")
    if not src.is_file():
        raise VidtoonError(f"input {src} is not a file")
    dst = Path(output).expanduser() if output is not None else None
    if dst is not None and dst.is_dir():
        raise VidtoonError(f"output {dst} is a folder (give a file name such as {dst / (src.stem + '_toon.mp4')})")
    if dst is not None:
        containers.container_for(dst)  # a bad extension is refused before anything is read
    _check_folder_writable((dst or src).parent.resolve())

    info = probe(src)
    if opts.start is not None and info.duration is not None and opts.start >= info.duration:
        raise VidtoonError(f"--start {opts.start} is past the end of the video ({info.duration:.2f} s)")
    warnings: list[str] = []
    if info.bad_metadata:
        warnings.append(f"{src.name} has damaged metadata (not valid UTF-8): read with the bad bytes replaced")
    if dst is None:
        kept_audio = [a.codec for a in info.audio if not a.problem] if opts.audio else []
        kept_subtitles = [s.codec for s in info.subtitles if not s.problem]
        container = containers.default_container(src, opts.codec, kept_audio, kept_subtitles)
        dst = default_output(src, container, opts.compare)
    else:
        container = containers.container_for(dst)
    containers.check_video_fits(container, opts.codec)
    if _same_file(src, dst):
        raise VidtoonError(f"output {dst} is the input file (choose another name)")
    if dst.exists() and not opts.overwrite:
        raise VidtoonError(f"output {dst} already exists (pass --overwrite to replace it)")
    plans, track_warnings = plan_tracks(info, container, opts.audio)
    warnings += track_warnings

    size = scaled_size(info.width, info.height, opts.max_side, even=True)
    compare = layout_for(*size, info.display_matrix, info.sample_aspect_ratio) if opts.compare else None
    out_w, out_h = compare.size(*size) if compare is not None else size
    pix_fmt = choose_pix_fmt(opts.codec, out_w, out_h)
    enc_opts = encoder_options(opts.codec, opts.crf, opts.preset)
    check_encoder(opts.codec, out_w, out_h, pix_fmt, enc_opts)
    if pix_fmt != "yuv420p":
        warnings.append(f"{out_w}x{out_h} is an odd size: encoded as {pix_fmt} to keep every pixel")
    cut = opts.start is not None or opts.end is not None
    return Job(info, dst, container, plans, size, pix_fmt, enc_opts, warnings, cut, compare)


def _make_engine(engine: str | Engine, generator: Any, opts: ConvertOptions) -> tuple[Engine, bool]:
    """The engine to use and whether this call owns it (and must close it)."""
    if isinstance(engine, Engine):
        return engine, False
    from vidtoon.engines import create_engine

    if generator is None:
        from vidtoon.models import load_generator

        generator = load_generator(opts.model, "cpu", opts.strength, opts.outline)
    return create_engine(engine, generator, device=opts.device), True


class _Stopped(Exception):
    """Raised inside a stage when another stage failed or the user interrupted."""


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            q.put(item, timeout=_POLL)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            return q.get(timeout=_POLL)
        except queue.Empty:
            continue


class _Stage(threading.Thread):
    """A pipeline thread that records its exception and raises the shared stop flag on failure."""

    def __init__(self, name: str, body: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.body = body
        self.stop = stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.body()
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self.error = exc
            self.stop.set()


def _queue_depth(size: tuple[int, int], batch: int) -> int:
    """Items per queue: two batches at least (so inference never waits), bounded in bytes for big frames."""
    frame_bytes = size[0] * size[1] * 3
    return max(2 * batch, min(_QUEUE_ITEMS, _QUEUE_BYTES // frame_bytes))


def _stabilizer(opts: ConvertOptions) -> Any:
    if not opts.stabilize:
        return None
    from vidtoon.stabilize import Stabilizer

    st = Stabilizer(strength=opts.stabilize_strength)
    st.reset()
    return st


def _run(job: Job, engine: Engine, opts: ConvertOptions,
         progress: Callable[[int, int | None], None] | None) -> ConvertResult:
    info = job.info
    tmp = job.output.with_name(f".{job.output.name}.{uuid.uuid4().hex[:8]}.part")
    total = estimate_frames(info, opts.start, opts.end)
    # the engine knows what suits it (ONNX Runtime on a CPU: one frame per core, run side by side)
    batch = opts.batch_for(engine.device, getattr(engine, "preferred_batch_size", None))
    stabilizer = _stabilizer(opts)
    stop = threading.Event()
    depth = _queue_depth(job.size, batch)
    q_in: queue.Queue = queue.Queue(maxsize=depth)
    q_out: queue.Queue = queue.Queue(maxsize=depth)
    kept = [p.stream.index for p in job.plans if p.action != "drop"]
    reader = Reader(info, kept, job.size, opts.start, opts.end)
    out = None
    stages: list[_Stage] = []
    finished = False
    t0 = time.perf_counter()
    try:
        mux_opts = _mux_options(job)
        out = av.open(str(tmp), "w", format=containers.CONTAINERS[job.container].muxer, options=mux_opts)
        enc_opts = job.encoder_opts
        if _on_cpu(engine):  # inference keeps the cores busy: see encoder_options
            enc_opts = encoder_options(opts.codec, opts.crf, opts.preset, busy_cpu=True)
        writer = VideoWriter(out, info, job.out_size, opts.codec, job.pix_fmt, enc_opts)
        tracks = open_tracks(out, reader.container, job.plans)

        def decode() -> None:
            for item in reader.items():
                _put(q_in, item, stop)
            _put(q_in, _END, stop)

        def encode() -> None:
            while (item := _get(q_out, stop)) is not _END:
                if isinstance(item, VideoItem):
                    if stabilizer is not None:
                        # here rather than after inference: it then overlaps the next batch's inference
                        # (OpenCV releases the GIL), and frames arrive in order, as it needs
                        item.rgb = stabilizer.apply(item.source, item.rgb)
                    if job.compare is not None:
                        item.rgb = job.compare.join(item.source, item.rgb)
                    item.source = None
                    writer.write(item.rgb, item.pts, item.duration)
                else:
                    tracks[item.stream.index].push(item)
            writer.flush()
            for track in tracks.values():
                track.flush()
            out.close()

        stages = [_Stage("vidtoon-decode", decode, stop), _Stage("vidtoon-encode", encode, stop)]
        for s in stages:
            s.start()

        pending: list[Any] = []
        n_video = 0
        # batches submitted to the engine and not yet collected, oldest first (a GPU engine copies the next
        # batch in and the previous one out while it runs one: Engine.in_flight)
        submitted: collections.deque[tuple[list[Any], Callable[[], None]]] = collections.deque()

        def collect_oldest() -> None:
            items, finish = submitted.popleft()
            finish()
            for p in items:
                _put(q_out, p, stop)
            if progress is not None:
                progress(writer.frames, total)

        while True:
            item = _get(q_in, stop)
            if item is not _END:
                pending.append(item)
                n_video += isinstance(item, VideoItem)
            if n_video == batch or (item is _END and pending):
                keep = stabilizer is not None or job.compare is not None
                submitted.append((pending, _stylize(engine, pending, keep_source=keep)))
                pending, n_video = [], 0
                if len(submitted) >= max(1, engine.in_flight):
                    collect_oldest()
            if item is _END:
                while submitted:
                    collect_oldest()
                _put(q_out, _END, stop)
                break
        for s in stages:
            while s.is_alive():
                s.join(_POLL)
                if stop.is_set():
                    raise _Stopped
        finished = True
    except _Stopped:
        pass  # the failing stage's error is raised below
    finally:
        if not finished:
            stop.set()
        for s in stages:
            s.join()
        reader.close()
        if not finished:
            if out is not None:
                _close_quietly(out)
            tmp.unlink(missing_ok=True)
    errors = [s.error for s in stages if s.error is not None]
    if errors:
        _raise_stage_error(errors[0], info.path)
    seconds = time.perf_counter() - t0
    track_warnings = [w for w in (t.damage() for t in tracks.values()) if w]
    return _finish(job, tmp, writer.frames, seconds, reader, total, progress, track_warnings)


def _mux_options(job: Job) -> dict[str, str]:
    """Muxer options: MP4/MOV put their index first (``faststart``, for streaming).

    Frames shorter than 1 ms (over 1000 fps: a damaged header) also get a movie timescale as fine as the
    video's: the default (1/1000 s) rounds the edit list to a length that hides most of such a video.
    """
    if job.container not in ("mp4", "mov"):
        return {}
    opts = {"movflags": "+faststart"}
    if job.info.rate is not None and job.info.rate > 1000:
        opts["movie_timescale"] = str(min(job.info.time_base.denominator, 2**31 - 1))
    return opts


def _stylize(engine: Engine, items: list[Any], keep_source: bool) -> Callable[[], None]:
    """Submit the video frames of ``items`` to the engine as one batch; returns the call that waits for
    the result and replaces each item's RGB with its stylized version.

    ``keep_source``: keep the decoded frame in ``item.source`` (the stabilizer and ``--compare`` need it).
    """
    frames = [it for it in items if isinstance(it, VideoItem)]
    if not frames:
        return lambda: None
    result = engine.submit(np.stack([f.rgb for f in frames]))

    def finish() -> None:
        toon = result()
        for f, t in zip(frames, toon, strict=True):
            if keep_source:
                f.source = f.rgb
            f.rgb = t

    return finish


def _close_quietly(out: av.container.OutputContainer) -> None:
    """Close a half-written output on the error path; its file is deleted next, so errors do not matter."""
    try:
        out.close()
    except (av.FFmpegError, OSError, ValueError):
        pass


def _raise_stage_error(exc: BaseException, path: Path) -> None:
    """Re-raise what a stage raised: FFmpeg's errors as a VidtoonError naming the file (``--debug`` shows both)."""
    if isinstance(exc, av.FFmpegError):
        raise VidtoonError(f"while converting {path.name}: {exc.strerror or exc}") from exc
    raise exc


def _ends_early(info: VideoInfo, last_end: Any, cut: bool) -> bool:
    """Whether the video stopped well before the duration its container states for it (a cut-off file)."""
    if cut or last_end is None or info.video_duration is None:
        return False
    stated_end = info.start_pts * info.time_base + Fraction(info.video_duration).limit_denominator(1_000_000)
    slack = Fraction(2) / info.rate if info.rate else Fraction(1, 10)  # two frames: rounding of the tags
    return last_end < stated_end - slack


def _finish(job: Job, tmp: Path, frames: int, seconds: float, reader: Reader, total: int | None,
            progress: Callable[[int, int | None], None] | None, track_warnings: list[str]) -> ConvertResult:
    stats = reader.stats
    if frames == 0:
        tmp.unlink(missing_ok=True)
        name = job.info.path.name
        if job.cut:
            raise VidtoonError(f"no video frames between --start and --end in {name}")
        raise VidtoonError(f"{name} is corrupt: none of its frames could be decoded")
    warnings = list(job.warnings) + track_warnings
    if stats.decode_errors or stats.corrupt_frames:
        warnings.append(
            f"{job.info.path.name} is damaged: {stats.decode_errors} packets could not be decoded, "
            f"{stats.corrupt_frames} frames were concealed ({frames} frames written)"
        )
    if stats.truncated or _ends_early(job.info, stats.last_end, cut=job.cut):
        warnings.append(f"{job.info.path.name} ends early (truncated?): converted the {frames} frames it holds")
    if stats.fixed_pts:
        warnings.append(f"{stats.fixed_pts} frames had missing or repeated timestamps and were re-timed")
    if job.output.exists() and not job.output.is_file():
        tmp.unlink(missing_ok=True)
        raise VidtoonError(f"output {job.output} appeared as a folder during the conversion")
    os.replace(tmp, job.output)
    if progress is not None:
        progress(frames, frames)
    size = job.output.stat().st_size
    return ConvertResult(job.output, frames, seconds, frames / seconds if seconds > 0 else 0.0, size,
                         stats.decode_errors + stats.corrupt_frames, warnings)


def convert(input: str | Path, output: str | Path | None = None, *, model: str = "default",
            strength: float = 1.0, outline: float = 1.0, engine: str | Engine = "auto", device: str = "auto", batch_size: int | None = None,
            max_side: int | None = None, crf: int = 18, preset: str = "veryfast", codec: str = "libx264",
            start: float | None = None, end: float | None = None, audio: bool = True, overwrite: bool = False,
            stabilize: bool = True, stabilize_strength: float = 0.6, compare: bool = False,
            progress: Callable[[int, int | None], None] | None = None,
            generator: Any | None = None) -> ConvertResult:
    """Convert ``input`` to a cartoon video at ``output`` (default ``<stem>_toon.mp4`` beside it).

    ``compare``: write the original and the cartoon side by side (one above the other when the video
    displays as portrait) in one frame of twice the size, by default to ``<stem>_compare.mp4``.

    ``engine`` is an engine name or an already created :class:`vidtoon.engines.base.Engine` (which is then not
    closed here: batch conversions load the model once); ``generator`` a preloaded generator module used
    instead of ``model`` (its controls as set; ``strength``/``outline`` apply to ``model``). ``progress(done, total)`` is called from this thread after every batch (``total``
    is an estimate, or None). Raises VidtoonError for anything the user can fix; the output file exists
    only if the conversion completed.
    """
    opts = ConvertOptions(
        model=model, strength=strength, outline=outline, engine=engine if isinstance(engine, str) else engine.name, device=device,
        batch_size=batch_size, max_side=max_side, crf=crf, preset=preset, codec=codec, start=start, end=end,
        audio=audio, overwrite=overwrite, stabilize=stabilize, stabilize_strength=stabilize_strength,
        compare=compare,
    ).validate()
    job = prepare(input, output, opts)
    eng, owned = _make_engine(engine, generator, opts)
    try:
        with _opencv_threads(1 if _on_cpu(eng) else None):
            return _run(job, eng, opts, progress)
    finally:
        if owned:
            eng.close()


def _on_cpu(engine: Engine) -> bool:
    """Whether the generator runs on the CPU cores that decoding and encoding also need."""
    return not engine.device.startswith("cuda")


@contextlib.contextmanager
def _opencv_threads(threads: int | None) -> Iterator[None]:
    """Run with OpenCV's thread pool set to ``threads`` (None: unchanged), restored afterwards.

    Next to a CPU generator every core is already busy: OpenCV's own threads (the stabilizer, the
    post-processing) then only add hand-off overhead (measured: a 720p flow resize costs 1.4 ms of CPU on
    two threads, 0.6 ms on one; whole 720p ``convert`` with the stabilizer 11.87 vs 11.69 fps).
    """
    import cv2

    before = cv2.getNumThreads()
    if threads is not None:
        cv2.setNumThreads(threads)
    try:
        yield
    finally:
        cv2.setNumThreads(before)
