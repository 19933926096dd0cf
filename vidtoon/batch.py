"""Batch conversion of a folder of videos: resumable, one bad file never stops the rest.

:func:`vidtoon.batch_find.find_videos` finds the videos; :func:`convert_batch` converts them on this machine
(:func:`run_local`: ``jobs`` engines on one loaded model, the CPU cores shared between them) or on a Ray
cluster (:mod:`vidtoon.batch_ray`), and returns a :class:`FileResult` per file. An output that exists under
its final name is finished (the pipeline only renames complete files into place), so a re-run after an
interruption does only what is left. :class:`Tally` keeps the frame counts a progress display shows.
"""
from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vidtoon.batch_find import VIDEO_EXTS, BatchItem, Probe, find_videos, output_for, probe_file
from vidtoon.errors import VidtoonError, describe
from vidtoon.fileio import AtomicFile
from vidtoon.options import ConvertOptions

__all__ = ["VIDEO_EXTS", "BatchItem", "Probe", "FileResult", "Tally", "find_videos", "output_for", "probe_file",
           "convert_batch", "run_local", "run_batch", "convert_item", "precheck", "summarize", "write_report",
           "report_meta"]


@dataclass
class FileResult:
    """What happened to one file: status is ``done``, ``skipped`` (output already there) or ``failed``."""

    input: str
    output: str
    status: str
    frames: int = 0
    fps: float = 0.0  # processing speed (frames per second of wall time)
    seconds: float = 0.0
    size_bytes: int = 0
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    worker: str = ""  # "host:pid" of the process that converted it (empty when nothing was converted)
    attempts: int = 0  # conversions started for it (more than 1 when a Ray worker died on it)


class Cancelled(BaseException):
    """Raised inside a conversion (through its progress callback) when the batch is interrupted."""


def worker_name() -> str:
    """``host:pid`` of this process, as the report names the process that converted a file."""
    return f"{socket.gethostname()}:{os.getpid()}"


def precheck(item: BatchItem, overwrite: bool) -> FileResult | None:
    """The result of ``item`` when it needs no conversion (output there: skipped; broken: failed), else None."""
    if item.output.exists() and not overwrite:
        return FileResult(str(item.rel), str(item.output), "skipped", frames=_frames_in(item.output),
                          size_bytes=item.output.stat().st_size)
    if item.problem:
        return FileResult(str(item.rel), str(item.output), "failed", error=item.problem)
    return None


def _frames_in(path: Path) -> int:
    """The frame count of a video already written (a skipped file's output: it may be a trimmed or partial
    conversion of its input, so the input's count would be wrong); 0 when unknown or unreadable."""
    return probe_file(path).frames or 0


def convert_item(item: BatchItem, engine: Any, convert_options: dict[str, Any], *, generator: Any = None,
                 overwrite: bool = False, progress: Callable[[int, int | None], None] | None = None,
                 attempts: int = 1) -> FileResult:
    """Convert one file with a loaded ``engine`` and describe the outcome, in this process.

    A failure (VidtoonError, or anything the pipeline raises for a bad file) becomes a ``failed`` result;
    Cancelled and KeyboardInterrupt propagate (the pipeline has removed its temporary file).
    """
    from vidtoon.pipeline import convert

    t0 = time.perf_counter()
    where = worker_name()
    try:
        item.output.parent.mkdir(parents=True, exist_ok=True)
        r = convert(str(item.input), str(item.output), engine=engine, generator=generator,
                    overwrite=overwrite, progress=progress, **convert_options)
        return FileResult(str(item.rel), str(r.output), "done", frames=r.frames, seconds=r.seconds,
                          fps=r.frames / r.seconds if r.seconds else 0.0, size_bytes=r.size_bytes,
                          warnings=list(r.warnings), worker=where, attempts=attempts)
    except VidtoonError as exc:
        error = str(exc)
    except Exception as exc:  # one bad file must not stop the batch: record what went wrong
        error = describe(exc)
    return FileResult(str(item.rel), str(item.output), "failed", error=error, seconds=time.perf_counter() - t0,
                      worker=where, attempts=attempts)


def run_batch(items: Sequence[BatchItem], convert_options: dict[str, Any], *, engines: Sequence[Any],
              generator: Any = None, overwrite: bool = False,
              on_start: Callable[[BatchItem], None] | None = None,
              on_progress: Callable[[BatchItem, int, int | None], None] | None = None,
              on_done: Callable[[BatchItem, FileResult], None] | None = None) -> list[FileResult]:
    """Convert ``items`` with ``len(engines)`` parallel jobs, one engine per job; returns a result per item.

    ``convert_options`` are keyword arguments of :func:`vidtoon.pipeline.convert` (crf, codec, ...).
    Existing outputs are skipped unless ``overwrite``. A failure (VidtoonError or anything the pipeline
    raises for a bad file) is recorded and the batch goes on. Ctrl-C stops every running conversion (each
    removes its temporary file) and re-raises KeyboardInterrupt.
    """
    if not engines:
        raise ValueError("run_batch needs at least one engine")
    pool: queue.Queue[Any] = queue.Queue()
    for e in engines:
        pool.put(e)
    cancel = threading.Event()
    results: dict[int, FileResult] = {}

    def one(index: int, item: BatchItem) -> None:
        result = precheck(item, overwrite)
        if result is None:
            engine = pool.get()

            def progress(done: int, total: int | None) -> None:
                if cancel.is_set():
                    raise Cancelled()
                if on_progress is not None:
                    on_progress(item, done, total)

            try:
                if on_start is not None:
                    on_start(item)
                result = convert_item(item, engine, convert_options, generator=generator, overwrite=overwrite,
                                      progress=progress)
            except (Cancelled, KeyboardInterrupt):
                cancel.set()
                raise
            finally:
                pool.put(engine)
        results[index] = result
        if on_done is not None:
            on_done(item, result)

    if len(engines) == 1:
        for i, item in enumerate(items):
            one(i, item)
    else:
        with ThreadPoolExecutor(max_workers=len(engines), thread_name_prefix="vidtoon-batch") as ex:
            futures = [ex.submit(one, i, item) for i, item in enumerate(items)]
            try:
                for f in futures:
                    # a timeout keeps the main thread responsive to Ctrl-C while it waits
                    while True:
                        try:
                            f.result(timeout=0.2)
                            break
                        except TimeoutError:
                            continue
            except BaseException:
                cancel.set()
                for f in futures:
                    f.cancel()
                raise
    return [results[i] for i in range(len(items))]


def summarize(results: Sequence[FileResult]) -> dict[str, int]:
    """Counts of done / skipped / failed files."""
    return {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}


def write_report(path: str | Path, results: Sequence[FileResult], meta: dict[str, Any]) -> Path:
    """Write the per-file results (and ``meta``: folders, options, totals) as JSON, atomically."""
    path = Path(path).expanduser()
    payload = {**meta, "summary": summarize(results), "files": [asdict(r) for r in results]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with AtomicFile(path) as target:
        with open(target.path, "x", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, default=str)
            fh.write("\n")
    return path


#: the options that load the generator: once per batch (per Ray worker), not per file
_MODEL_FIELDS = ("model", "strength", "outline", "engine", "device")


def per_file_options(options: ConvertOptions) -> dict[str, Any]:
    """The keyword arguments of :func:`vidtoon.pipeline.convert` each file gets (all but the model's and
    ``overwrite``, which the batch passes itself)."""
    return {k: v for k, v in asdict(options).items() if k not in _MODEL_FIELDS + ("overwrite",)}


def report_meta(input_dir: Path, out_dir: Path, options: ConvertOptions, ray: Any, started: float,
                interrupted: bool = False) -> dict[str, Any]:
    """What a batch report says about the run besides the files: folders, options, ray, times."""
    from vidtoon import __version__

    return {
        "vidtoon": __version__,
        "input_dir": str(input_dir.resolve()),
        "output_dir": str(out_dir.resolve()),
        "model": options.model, "engine": options.engine, "device": options.device,
        "ray": None if ray is None else {"address": ray.address, "workers": ray.workers, "gpus": ray.gpus},
        "options": per_file_options(options),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 3),
        "interrupted": interrupted,
    }


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def engine_threads(device: str, jobs: int, cpus: int | None = None) -> int | None:
    """CPU threads for each of ``jobs`` engines on ``device``: the cores shared between the jobs instead of
    oversubscribed; None (the engine's own choice) for one job or a GPU."""
    if jobs <= 1 or device.startswith("cuda"):
        return None
    return max(1, (cpus or _cpus()) // jobs)


@contextmanager
def local_engines(options: ConvertOptions, jobs: int, quiet: bool = False) -> Iterator[tuple[Any, list[Any]]]:
    """Load the model once and yield (generator, ``jobs`` engines running it), closed afterwards.

    On the CPU the cores are shared between the jobs: ONNX Runtime through each session's own thread count
    (its pools are per session), PyTorch through its one process-wide pool (restored afterwards).
    """
    import torch

    from vidtoon.engines import create_engine, resolve_engine
    from vidtoon.models import load_generator

    name, device = resolve_engine(options.engine, options.device)
    threads = engine_threads(device, jobs)
    extra: dict[str, Any] = {"threads": threads} if threads and name == "onnxruntime" else {}
    torch_threads = torch.get_num_threads()
    if threads and name == "torch":
        torch.set_num_threads(threads)
    generator = load_generator(options.model, "cpu", options.strength, options.outline)  # once for the batch
    engines: list[Any] = []
    try:
        if quiet:
            extra["quiet"] = True
        engines += [create_engine(name, generator, device=device, **extra) for _ in range(jobs)]
        yield generator, engines
    finally:
        for e in engines:
            e.close()
        torch.set_num_threads(torch_threads)


def run_local(items: Sequence[BatchItem], options: ConvertOptions, *, jobs: int = 1, quiet: bool = False,
              **callbacks: Any) -> list[FileResult]:
    """Convert ``items`` on this machine with ``jobs`` engines on one loaded model (none loaded when every
    file is skipped or broken). ``callbacks``: those of :func:`run_batch`."""
    fields, overwrite = per_file_options(options), options.overwrite
    todo = [it for it in items if precheck(it, overwrite) is None]
    if not todo:
        return run_batch(items, fields, engines=[None], overwrite=overwrite, **callbacks)
    with local_engines(options, max(1, min(jobs, len(todo))), quiet) as (generator, engines):
        return run_batch(items, fields, engines=engines, generator=generator, overwrite=overwrite, **callbacks)


def convert_batch(items: Sequence[BatchItem], options: ConvertOptions, *, jobs: int = 1, ray: Any = None,
                  on_message: Callable[[str], None] | None = None, quiet: bool = False,
                  **callbacks: Any) -> list[FileResult]:
    """Convert ``items`` with ``options``: here (:func:`run_local`) or, with ``ray``
    (:class:`vidtoon.batch_ray.RayOptions`), on that Ray cluster. ``callbacks``: those of :func:`run_batch`;
    ``on_message`` gets the Ray cluster's one-line news."""
    if ray is None:
        return run_local(items, options, jobs=jobs, quiet=quiet, **callbacks)
    from vidtoon.batch_ray import run_batch_ray

    return run_batch_ray(items, per_file_options(options), model=options.model, engine=options.engine,
                         device=options.device, generator_options={"strength": options.strength,
                                                                  "outline": options.outline},
                         ray_options=ray, overwrite=options.overwrite, on_message=on_message, **callbacks)


class Tally:
    """The frame counts of a batch for a progress display: per file, and overall kept honest when a file is
    retried (its frames are counted again) or fails (the frames it will never deliver count as done)."""

    def __init__(self, items: Sequence[BatchItem], overwrite: bool) -> None:
        self.items = list(items)
        self.todo = [it for it in items if overwrite or not it.output.exists()]
        #: frames of the files to convert (None when no file's count is known)
        self.total = sum(it.frames or 0 for it in self.todo if not it.problem) or None
        self.done_frames: dict[Path, int] = {}
        self.results: list[FileResult] = []  # in completion order, for the report of an interrupted batch

    def started(self, item: BatchItem) -> int:
        """``item`` starts (again): the change of the overall count (minus what an earlier try counted)."""
        return -self.done_frames.pop(item.input, 0)

    def progressed(self, item: BatchItem, done: int) -> int:
        """``item`` has ``done`` frames: the change of the overall count."""
        delta = done - self.done_frames.get(item.input, 0)
        self.done_frames[item.input] = done
        return delta

    def finished(self, item: BatchItem, result: FileResult) -> int:
        """``item`` ended with ``result``: the change of the overall count."""
        self.results.append(result)
        if item in self.todo and result.status == "failed" and item.frames:
            return max(0, item.frames - self.done_frames.get(item.input, 0))
        return 0
