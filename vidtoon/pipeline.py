"""Convert one video: decode -> stylize -> encode, in three overlapping stages.

::

    decode thread            main thread                 encode thread
    Reader.items() --q_in--> batches -> Engine.submit --q_out--> VideoWriter / audio tracks -> temp file
                                                                 (+ Stabilizer)

With an engine on a GPU the stabilizer is split (:mod:`vidtoon.stabilize_device`): its flow (OpenCV, on
small frames) runs in a fourth thread between decoding and inference, ahead of the stylization, and the
main thread warps and blends each stylized frame on the GPU as it collects the batch::

    decode --q_in--> flow thread (Stabilizer.analyse) --q_flow--> main thread (+ DeviceBlender) --q_out--> encode

Faces (:mod:`vidtoon.faces`, on unless ``--no-faces``) are detected by the main thread on every few frames
before they are batched, interpolated for the frames between (so it holds a few frames back) and drawn back
onto each stylized frame as it collects the batch.

The queues are bounded, so memory stays flat however long the video is. Items keep the input's demux
order (video frames and audio/subtitle packets mixed), which is what lets the muxer interleave audio with
video by time. Everything that can be refused is checked before the first frame is decoded
(:func:`vidtoon.job.prepare`); the output appears under its name only when complete
(:class:`vidtoon.fileio.AtomicFile`), and any error or Ctrl-C stops both threads and removes the temp file.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vidtoon.engines.base import Engine
from vidtoon.errors import VidtoonError
from vidtoon.faces import draw_faces, load_detector, video_faces
from vidtoon.fileio import AtomicFile
from vidtoon.job import ConvertResult, Job, default_output, prepare
from vidtoon.options import ConvertOptions
from vidtoon.stages import END, Stage, Stopped, get, put, wait_all
from vidtoon.video import containers
from vidtoon.video.reader import Reader, VideoInfo, VideoItem, estimate_frames
from vidtoon.video.remux import open_tracks
from vidtoon.video.writer import VideoWriter, encoder_options

__all__ = ["ConvertResult", "Job", "convert", "prepare", "default_output"]

#: queue depth, in items (frames or packets): enough to keep every stage busy ...
_QUEUE_ITEMS = 16
#: ... but for big frames at most this many bytes of RGB frames per queue (4K: 10 frames, not 16)
_QUEUE_BYTES = 256 * 2**20

Progress = Callable[[int, int | None], None]


def _make_engine(engine: str | Engine, generator: Any, opts: ConvertOptions,
                 quiet: bool = False) -> tuple[Engine, bool]:
    """The engine to use and whether this call owns it (and must close it)."""
    if isinstance(engine, Engine):
        return engine, False
    from vidtoon.engines import create_engine

    if generator is None:
        from vidtoon.models import load_generator

        generator = load_generator(opts.model, "cpu", opts.strength, opts.outline)
    return create_engine(engine, generator, device=opts.device, quiet=quiet), True


def _queue_depth(size: tuple[int, int], batch: int) -> int:
    """Items per queue: two batches at least (so inference never waits), bounded in bytes for big frames."""
    frame_bytes = size[0] * size[1] * 3
    return max(2 * batch, min(_QUEUE_ITEMS, _QUEUE_BYTES // frame_bytes))


def _stabilizer(opts: ConvertOptions) -> Any:
    if not opts.stabilize:
        return None
    from vidtoon.stabilize import Stabilizer

    return Stabilizer(strength=opts.stabilize_strength)


def _device_blender(engine: Engine) -> Any:
    """A :class:`~vidtoon.stabilize_device.DeviceBlender` on the engine's GPU, or None for a CPU engine
    (there the OpenCV warp and blend stay in the encoding thread, which overlaps inference already)."""
    if _on_cpu(engine):
        return None
    from vidtoon.stabilize_device import DeviceBlender

    return DeviceBlender(engine.device.split()[0])  # "cuda:0 (NVIDIA H200)" -> "cuda:0"


class _Conversion:
    """One run of the three stages: what they share, and each stage as a method."""

    def __init__(self, job: Job, engine: Engine, opts: ConvertOptions, progress: Progress | None) -> None:
        self.job, self.engine, self.opts, self.progress = job, engine, opts, progress
        self.total = estimate_frames(job.info, opts.start, opts.end)
        # the engine knows what suits it (ONNX Runtime on a CPU: one frame per core, run side by side)
        self.batch = opts.batch_for(engine.device, getattr(engine, "preferred_batch_size", None))
        self.stabilizer = _stabilizer(opts)
        # --strength 0 gives the photo back: no face to draw into it
        self.faces = video_faces(job.info.rate, job.info.display_matrix, job.size) \
            if opts.faces and opts.strength > 0 else None
        if self.faces is not None:
            load_detector()  # now, with the engine's start-up, rather than in the middle of the first batch
        #: the stabilizer's warp and blend on the engine's GPU (None: on the CPU, in the encoding thread)
        self.blender = _device_blender(engine) if self.stabilizer is not None else None
        self.stop = threading.Event()
        depth = _queue_depth(job.size, self.batch)
        self.q_in: queue.Queue = queue.Queue(maxsize=depth)
        self.q_out: queue.Queue = queue.Queue(maxsize=depth)
        #: what inference reads: the decoded items, or with a blender those the flow thread has analysed
        self.q_flow: queue.Queue = queue.Queue(maxsize=depth) if self.blender is not None else self.q_in
        kept = [p.stream.index for p in job.plans if p.action != "drop"]
        self.reader = Reader(job.info, kept, job.size, opts.start, opts.end)
        self.out: av.container.OutputContainer | None = None
        self.writer: VideoWriter | None = None
        self.tracks: dict[int, Any] = {}
        self.stages: list[Stage] = []

    @property
    def frames(self) -> int:
        """Video frames encoded so far."""
        return self.writer.frames if self.writer is not None else 0

    def execute(self, path: Path) -> None:
        """Convert into ``path``; raises what a stage raised (the caller removes the file on error)."""
        finished = False
        try:
            self._open_output(path)
            self.stages = [Stage("vidtoon-decode", self._decode, self.stop),
                           Stage("vidtoon-encode", self._encode, self.stop)]
            if self.blender is not None:
                self.stages.insert(1, Stage("vidtoon-flow", self._flow, self.stop))
            for s in self.stages:
                s.start()
            self._infer()
            wait_all(self.stages, self.stop)
            finished = True
        except Stopped:
            pass  # the failing stage's error is raised below
        finally:
            if not finished:
                self.stop.set()
            for s in self.stages:
                s.join()
            self.reader.close()
            if not finished and self.out is not None:
                _close_quietly(self.out)
        errors = [s.error for s in self.stages if s.error is not None]
        if errors:
            _raise_stage_error(errors[0], self.job.info.path)

    def _open_output(self, path: Path) -> None:
        job, opts = self.job, self.opts
        muxer = containers.CONTAINERS[job.container].muxer
        self.out = av.open(str(path), "w", format=muxer, options=job.mux_options())
        enc_opts = job.encoder_opts
        if _on_cpu(self.engine):  # inference keeps the cores busy: see encoder_options
            enc_opts = encoder_options(job.encoder, opts.crf, opts.preset, busy_cpu=True)
        self.writer = VideoWriter(self.out, job.info, job.out_size, job.encoder, job.pix_fmt, enc_opts)
        self.tracks = open_tracks(self.out, self.reader.container, job.plans)

    def _decode(self) -> None:
        for item in self.reader.items():
            put(self.q_in, item, self.stop)
        put(self.q_in, END, self.stop)

    def _flow(self) -> None:
        """The stabilizer's flow and blend weight of every frame, in order, ahead of inference (GPU engines:
        OpenCV releases the GIL, so this overlaps inference, the blends and encoding)."""
        while (item := get(self.q_in, self.stop)) is not END:
            if isinstance(item, VideoItem):
                item.motion = self.stabilizer.analyse(item.rgb)
            put(self.q_flow, item, self.stop)
        put(self.q_flow, END, self.stop)

    def _encode(self) -> None:
        assert self.writer is not None and self.out is not None
        while (item := get(self.q_out, self.stop)) is not END:
            if isinstance(item, VideoItem):
                if self.stabilizer is not None and self.blender is None:
                    # here rather than after inference: it then overlaps the next batch's inference
                    # (OpenCV releases the GIL), and frames arrive in order, as it needs
                    item.rgb = self.stabilizer.apply(item.source, item.rgb)
                if self.job.compare is not None:
                    item.rgb = self.job.compare.join(item.source, item.rgb)
                item.source = None
                self.writer.write(item.rgb, item.pts, item.duration)
            else:
                self.tracks[item.stream.index].push(item)
        self.writer.flush()
        for track in self.tracks.values():
            track.flush()
        self.out.close()

    def _infer(self) -> None:
        """The main thread's stage: batches of frames through the engine, in order, to the encoder."""
        keep_source = (self.stabilizer is not None and self.blender is None) or self.job.compare is not None
        pending: list[Any] = []
        n_video = 0
        # batches submitted to the engine and not yet collected, oldest first (a GPU engine copies the next
        # batch in and the previous one out while it runs one: Engine.in_flight)
        submitted: collections.deque[tuple[list[Any], Callable[[], None]]] = collections.deque()
        for item in self._with_faces():
            if item is not END:
                pending.append(item)
                n_video += isinstance(item, VideoItem)
            if n_video == self.batch or (item is END and pending):
                submitted.append((pending, _stylize(self.engine, pending, keep_source, self.opts.strength)))
                pending, n_video = [], 0
                if len(submitted) >= max(1, self.engine.in_flight):
                    self._collect(submitted.popleft())
            if item is END:
                while submitted:
                    self._collect(submitted.popleft())
                put(self.q_out, END, self.stop)
                return

    def _with_faces(self) -> Iterator[Any]:
        """The items inference reads, up to and including END, each video frame with its faces to draw.

        Faces are found here, in the main thread, between batches: in a thread of its own the detector's
        threads and the engine's fight over the cores (measured: twice the cost)."""
        items = iter(lambda: get(self.q_flow, self.stop), END)
        if self.faces is None:
            yield from items
        else:
            for item, faces in self.faces.run(items, lambda it: it.rgb if isinstance(it, VideoItem) else None):
                if faces is not None:
                    item.faces = faces
                yield item
        yield END

    def _collect(self, batch: tuple[list[Any], Callable[[], None]]) -> None:
        items, finish = batch
        finish()
        for p in items:
            if self.blender is not None and isinstance(p, VideoItem):
                p.rgb = self.blender.blend(p.rgb, p.motion)  # in frame order, as the blends chain
                p.motion = None
            put(self.q_out, p, self.stop)
        if self.progress is not None:
            self.progress(self.frames, self.total)

    def warnings(self) -> list[str]:
        """What the finished conversion has to say about its input (damage, truncation, re-timing)."""
        job, stats, frames = self.job, self.reader.stats, self.frames
        name = job.info.path.name
        warnings = list(job.warnings) + [w for w in (t.damage() for t in self.tracks.values()) if w]
        if stats.decode_errors or stats.corrupt_frames:
            warnings.append(f"{name} is damaged: {stats.decode_errors} packets could not be decoded, "
                            f"{stats.corrupt_frames} frames were concealed ({frames} frames written)")
        if stats.truncated or _ends_early(job.info, stats.last_end, cut=job.cut):
            announced = job.info.frames if not job.cut else None
            lost = f" of the {announced} its header announces ({announced - frames} lost)" \
                if announced and announced > frames else ""
            warnings.append(f"{name} ends early (truncated?): converted the {frames} frames it holds{lost}")
        if stats.fixed_pts:
            warnings.append(f"{stats.fixed_pts} frames had missing or repeated timestamps and were re-timed")
        return warnings


def _run(job: Job, engine: Engine, opts: ConvertOptions, progress: Progress | None) -> ConvertResult:
    run = _Conversion(job, engine, opts, progress)
    t0 = time.perf_counter()
    job.output.parent.mkdir(parents=True, exist_ok=True)  # -o in a folder that does not exist yet (checked: creatable)
    with AtomicFile(job.output) as target:  # renamed onto job.output only when this block completes
        run.execute(target.path)
        seconds = time.perf_counter() - t0
        frames = run.frames
        if frames == 0:
            name = job.info.path.name
            if job.cut:
                raise VidtoonError(f"no video frames between --start and --end in {name}")
            raise VidtoonError(f"{name} is corrupt: none of its frames could be decoded")
        warnings = run.warnings()
        if job.output.exists() and not job.output.is_file():
            raise VidtoonError(f"output {job.output} appeared as a folder during the conversion")
    if progress is not None:
        progress(frames, frames)
    stats = run.reader.stats
    return ConvertResult(job.output, frames, seconds, frames / seconds if seconds > 0 else 0.0,
                         job.output.stat().st_size, stats.decode_errors + stats.corrupt_frames, warnings)


def _stylize(engine: Engine, items: list[Any], keep_source: bool, strength: float = 1.0) -> Callable[[], None]:
    """Submit the video frames of ``items`` to the engine as one batch; returns the call that waits for
    the result and replaces each item's RGB with its stylized version.

    ``keep_source``: keep the decoded frame in ``item.source`` (the stabilizer and ``--compare`` need it).
    Frames with faces get them drawn back at the look's ``strength`` (vidtoon.faces.draw_faces).
    """
    frames = [it for it in items if isinstance(it, VideoItem)]
    if not frames:
        return lambda: None
    result = engine.submit(np.stack([f.rgb for f in frames]))

    def finish() -> None:
        toon = result()
        for f, t in zip(frames, toon, strict=True):
            if f.faces:
                t = draw_faces(f.rgb, t, f.faces, strength)
                f.faces = None
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


def convert(input: str | Path, output: str | Path | None = None, options: ConvertOptions | None = None, *,
            engine: str | Engine | None = None, progress: Progress | None = None, generator: Any | None = None,
            quiet: bool = False, **fields: Any) -> ConvertResult:
    """Convert ``input`` to a cartoon video at ``output`` (default ``<stem>_toon.mp4`` beside it).

    ``options`` holds how (default: :class:`vidtoon.options.ConvertOptions`'s defaults, which are those of
    ``vidtoon convert``); keyword ``fields`` of ConvertOptions replace some of them (``crf=20``,
    ``compare=True``: write the original and the cartoon side by side in one frame of twice the size).

    ``engine`` is an engine name or an already created :class:`vidtoon.engines.base.Engine` (which is then not
    closed here: batch conversions load the model once); ``generator`` a preloaded generator module used
    instead of ``model`` (its controls as set; ``strength``/``outline`` apply to ``model``).
    ``progress(done, total)`` is called from this thread after every batch (``total`` is an estimate, or
    None). ``quiet``: the engine prints nothing while it starts (the lines and spinner of a first ONNX
    export). Raises VidtoonError for anything the user can fix; the output file exists only if the
    conversion completed.
    """
    called = time.perf_counter()
    if engine is not None:
        fields["engine"] = engine if isinstance(engine, str) else engine.name
    opts = (dataclasses.replace(options, **fields) if options is not None else ConvertOptions(**fields)).validate()
    job = prepare(input, output, opts)
    eng, owned = _make_engine(engine if isinstance(engine, Engine) else opts.engine, generator, opts, quiet)
    startup = time.perf_counter() - called
    try:
        with _opencv_threads(1 if _on_cpu(eng) else None):
            return dataclasses.replace(_run(job, eng, opts, progress), startup_seconds=startup)
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
