"""Finding the videos of a folder for ``vidtoon batch``: by content, not by extension alone.

:func:`find_videos` walks the input folder and probes each candidate with PyAV, so a clip without a video
extension is found and a text file named ``.mp4`` is not silently taken for one (it is reported as broken).
Outputs mirror the input tree under the output folder, each in the container ``vidtoon convert`` would pick.
"""
from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidtoon.errors import VidtoonError

#: extensions that make a file that cannot be opened count as a broken video (reported) rather than
#: as some other file (ignored)
VIDEO_EXTS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts",
    ".3gp", ".3g2", ".ogv", ".vob", ".mxf", ".dv", ".qt", ".asf", ".f4v", ".divx", ".y4m",
})
#: demuxers of still images and other things FFmpeg opens "as video" that are not videos to convert


@dataclass(frozen=True)
class BatchItem:
    """One file found in the input folder."""

    input: Path
    rel: Path  # path relative to the input folder
    output: Path  # where its result goes (mirrored under the output folder)
    frames: int | None = None  # frame count (or estimate) from the probe; None when unknown
    problem: str = ""  # why it cannot be converted (set for broken files with a video extension)


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
    ``attached_pic`` video stream), text and everything else that is not a video are "other" (skipped, with
    a note), whatever their name: ``notavideo.mp4`` holding text is skipped like ``notes.txt``. A binary file
    with a video extension that FFmpeg cannot open is "broken" (a damaged video: the batch reports it as
    failed rather than skipping it).
    """
    import av

    from vidtoon.video.reader import count_frames, is_still_image, open_container, video_streams

    looks_like_video = path.suffix.lower() in VIDEO_EXTS
    try:
        container = open_container(path)
    except (av.FFmpegError, OSError) as exc:
        if looks_like_video and not _is_text(path):
            return Probe("broken", f"not a readable video ({getattr(exc, 'strerror', None) or exc})")
        return Probe("other", "not a media file")
    with container:
        if is_still_image(container):
            return Probe("other", "a still image")
        videos = video_streams(container)
        if not videos:
            return Probe("other", "no video stream")
        frames = count_frames(videos[0], container)

        def codec(s: Any) -> str:
            return s.codec_context.codec.canonical_name if s.codec_context is not None else s.type

        return Probe("video", frames=frames, audio=[codec(s) for s in container.streams.audio],
                     subtitles=[codec(s) for s in container.streams.subtitles])


def _is_text(path: Path, size: int = 4096) -> bool:
    """Whether ``path`` starts like a text file (UTF-8 without NUL bytes): no video, whatever its name."""
    try:
        with open(path, "rb") as f:
            head = f.read(size)
    except OSError:
        return False
    if not head or b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut by the read, not binary data
    return True


def _is_temporary(name: str) -> bool:
    # hidden files and the temporary outputs of an interrupted run (ours and other tools') are never inputs
    return name.startswith(".") or name.endswith((".part", ".tmp", ".partial", ".crdownload", "~"))


def _is_output_name(path: Path) -> bool:
    # what `vidtoon convert` wrote beside its input (clip_toon.mp4) is no input to a later batch of that folder,
    # as `vidtoon image` skips photo_toon.jpg
    return path.stem.endswith(("_toon", "_compare"))


def _matches(rel: Path, patterns: Sequence[str]) -> bool:
    text = rel.as_posix()
    return any(fnmatch.fnmatch(text, p) or fnmatch.fnmatch(rel.name, p) for p in patterns)


def output_for(rel: Path, probe: Probe, output_dir: Path, codec: str | None, audio: bool) -> Path:
    """Where the result of ``rel`` goes: the same relative folder and name, with the container the
    single-file ``convert`` would pick for it (MP4 unless a kept stream needs Matroska/WebM)."""
    from vidtoon.video.containers import DEFAULT_VIDEO_ENCODER, default_container, extension_of

    container = default_container(rel, codec or DEFAULT_VIDEO_ENCODER, probe.audio if audio else [], probe.subtitles)
    return output_dir / rel.parent / (rel.stem + extension_of(container))


def find_videos(input_dir: str | Path, output_dir: str | Path, *, recursive: bool = False,
                include: Sequence[str] = (), exclude: Sequence[str] = (), codec: str | None = None,
                audio: bool = True, on_probe: Callable[[Path], None] | None = None) -> tuple[list[BatchItem], list[tuple[Path, str]]]:
    """Find the videos under ``input_dir``; returns (items to convert, [(ignored file, why)]).

    ``include`` / ``exclude`` are glob patterns matched against the path relative to ``input_dir`` and
    against the bare file name (``*.mp4``, ``holiday/*``); with ``include`` only matching files are
    considered. The output folder, when inside the input folder, is never scanned, and files named like
    ``vidtoon convert``'s outputs (``clip_toon.mp4``, ``clip_compare.mp4``) are skipped unless ``include``
    is given.
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
        if not include and _is_output_name(path):
            ignored.append((rel, "named like a vidtoon output (*_toon, *_compare): --include it to convert it"))
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
