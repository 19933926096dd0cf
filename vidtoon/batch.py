"""Batch conversion of a folder of videos: discovery by content, resumable, one bad file never stops the rest.

:func:`find_videos` walks the input folder and probes each candidate with PyAV, so a clip without a video
extension is found and a text file named ``.mp4`` is not silently taken for one (it is reported as broken).
:func:`run_batch` converts every file with :func:`vidtoon.pipeline.convert`, sharing one loaded model, and
returns a :class:`FileResult` per file. Outputs mirror the input tree under the output folder; an output
that exists under its final name is finished (the pipeline only renames complete files into place), so a
re-run after an interruption does only what is left.
"""
from __future__ import annotations

import fnmatch
import json
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vidtoon.errors import VidtoonError, describe

#: extensions that make a file that cannot be opened count as a broken video (reported) rather than
#: as some other file (ignored)
VIDEO_EXTS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts",
    ".3gp", ".3g2", ".ogv", ".vob", ".mxf", ".dv", ".qt", ".asf", ".f4v", ".divx", ".y4m",
})
#: demuxers of still images and other things FFmpeg opens "as video" that are not videos to convert
_NOT_VIDEO_FORMATS = ("image2", "gif", "apng", "tty", "webp", "ico", "bmp", "lavfi")


@dataclass(frozen=True)
class BatchItem:
    """One file found in the input folder."""

    input: Path
    rel: Path  # path relative to the input folder
    output: Path  # where its result goes (mirrored under the output folder)
    frames: int | None = None  # frame count (or estimate) from the probe; None when unknown
    problem: str = ""  # why it cannot be converted (set for broken files with a video extension)


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


@dataclass
class Probe:
    """What :func:`probe_file` found out about one file."""

    kind: str  # "video", "other" (ignored) or "broken" (looks like a video, cannot be read)
    reason: str = ""
    frames: int | None = None
    audio: list[str] = field(default_factory=list)  # canonical codec names
    subtitles: list[str] = field(default_factory=list)


def probe_file(path: Path) -> Probe:
    """Decide by content whether ``path`` is a video: an openable container with a real video stream.

    Still images (which FFmpeg opens as one-frame videos), audio files (their cover art is an
    ``attached_pic`` video stream) and everything else are "other"; a file with a video extension that
    FFmpeg cannot open is "broken" so that the batch reports it rather than skipping it silently.
    """
    import av

    from vidtoon.video.reader import open_container

    looks_like_video = path.suffix.lower() in VIDEO_EXTS
    try:
        container = open_container(path)
    except (av.FFmpegError, OSError) as exc:
        if looks_like_video:
            return Probe("broken", f"not a readable video ({getattr(exc, 'strerror', None) or exc})")
        return Probe("other", "not a media file")
    with container:
        names = container.format.name.split(",")
        if any(n in _NOT_VIDEO_FORMATS or n.endswith("_pipe") for n in names):
            return Probe("other", "a still image")
        videos = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
        if not videos:
            if looks_like_video:
                return Probe("broken", "no video stream")
            return Probe("other", "no video stream")
        v = videos[0]
        frames = v.frames or None
        if frames is None and v.duration and v.time_base and (v.average_rate or v.guessed_rate):
            frames = int(round(float(v.duration * v.time_base) * float(v.average_rate or v.guessed_rate)))
        elif frames is None and container.duration and (v.average_rate or v.guessed_rate):
            frames = int(round(container.duration / 1e6 * float(v.average_rate or v.guessed_rate)))

        def codec(s: Any) -> str:
            return s.codec_context.codec.canonical_name if s.codec_context is not None else s.type

        return Probe("video", frames=frames, audio=[codec(s) for s in container.streams.audio],
                     subtitles=[codec(s) for s in container.streams.subtitles])


def _is_temporary(name: str) -> bool:
    # hidden files and the temporary outputs of an interrupted run (ours and other tools') are never inputs
    return name.startswith(".") or name.endswith((".part", ".tmp", ".partial", ".crdownload", "~"))


def _matches(rel: Path, patterns: Sequence[str]) -> bool:
    text = rel.as_posix()
    return any(fnmatch.fnmatch(text, p) or fnmatch.fnmatch(rel.name, p) for p in patterns)


def output_for(rel: Path, probe: Probe, output_dir: Path, codec: str, audio: bool) -> Path:
    """Where the result of ``rel`` goes: the same relative folder and name, with the container the
    single-file ``convert`` would pick for it (MP4 unless a kept stream needs Matroska/WebM)."""
    from vidtoon.video.containers import default_container, extension_of

    container = default_container(rel, codec, probe.audio if audio else [], probe.subtitles)
    return output_dir / rel.parent / (rel.stem + extension_of(container))


def find_videos(input_dir: str | Path, output_dir: str | Path, *, recursive: bool = False,
                include: Sequence[str] = (), exclude: Sequence[str] = (), codec: str = "libx264",
                audio: bool = True, on_probe: Callable[[Path], None] | None = None) -> tuple[list[BatchItem], list[tuple[Path, str]]]:
    """Find the videos under ``input_dir``; returns (items to convert, [(ignored file, why)]).

    ``include`` / ``exclude`` are glob patterns matched against the path relative to ``input_dir`` and
    against the bare file name (``*.mp4``, ``holiday/*``); with ``include`` only matching files are
    considered. The output folder, when inside the input folder, is never scanned.
    """
    root = Path(input_dir).expanduser()
    out_root = Path(output_dir).expanduser()
    if not root.is_dir():
        raise VidtoonError(f"{root} is not a folder (vidtoon convert takes single files)")
    if out_root.resolve() == root.resolve():
        raise VidtoonError("the output folder must differ from the input folder")
    out_resolved = out_root.resolve()
    candidates: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        # never descend into the output folder (a re-run would otherwise convert its own outputs)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (here / d).resolve() != out_resolved)
        candidates += [here / f for f in sorted(filenames)]
        if not recursive:
            break
    items: list[BatchItem] = []
    ignored: list[tuple[Path, str]] = []
    taken: dict[Path, Path] = {}
    for path in candidates:
        rel = path.relative_to(root)
        if _is_temporary(path.name):
            continue
        if include and not _matches(rel, include):
            continue
        if exclude and _matches(rel, exclude):
            ignored.append((rel, "excluded"))
            continue
        if not path.is_file():
            continue
        if on_probe is not None:
            on_probe(rel)
        probe = probe_file(path)
        if probe.kind == "other":
            ignored.append((rel, probe.reason))
            continue
        out = output_for(rel, probe, out_root, codec, audio) if probe.kind == "video" else out_root / rel.with_suffix(".mp4")
        if out in taken:  # clip.mp4 and clip.webm in one folder: keep both, the second named clip.webm.mp4
            out = out.with_name(rel.name + out.suffix)
        taken[out] = path
        items.append(BatchItem(path, rel, out, probe.frames, "" if probe.kind == "video" else probe.reason))
    return items, ignored


class Cancelled(BaseException):
    """Raised inside a conversion (through its progress callback) when the batch is interrupted."""


def worker_name() -> str:
    """``host:pid`` of this process, as the report names the process that converted a file."""
    return f"{socket.gethostname()}:{os.getpid()}"


def precheck(item: BatchItem, overwrite: bool) -> FileResult | None:
    """The result of ``item`` when it needs no conversion (output there: skipped; broken: failed), else None."""
    if item.output.exists() and not overwrite:
        return FileResult(str(item.rel), str(item.output), "skipped", frames=item.frames or 0)
    if item.problem:
        return FileResult(str(item.rel), str(item.output), "failed", error=item.problem)
    return None


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
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
