"""Writing files so that they appear only when complete, and checking that a folder can be written to.

Every file vidtoon writes (videos, images, reports, checkpoints, ONNX exports, recordings) goes through
:class:`AtomicFile`: the data goes to a temporary file beside the target (same folder, so the final rename
never crosses a file system) under a name no other thread or process can pick, is flushed to the disk, and is
renamed onto the target only when the writer finished; on any error, Ctrl-C included, the temporary file is
removed. A reader therefore sees the old file or the complete new one, never half of one.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from vidtoon.errors import VidtoonError

__all__ = ["AtomicFile", "check_creatable", "check_writable", "temp_name", "write_bytes", "write_image"]


def temp_name(target: Path, suffix: str = "") -> Path:
    """A hidden, unique name beside ``target``: ``.<name>.<random>.part<suffix>``.

    ``suffix`` is for writers that choose the format by extension (OpenCV, Pillow): e.g. ``.png``.
    """
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part{suffix}")


def _fsync(path: Path) -> None:
    # Windows flushes only a handle open for writing; elsewhere reading is enough (and works for folders)
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicFile:
    """A temporary file beside ``target`` that becomes ``target`` on :meth:`commit`.

    As a context manager: yields itself (write to ``.path``), commits when the block ends normally and
    discards the temporary file when it raises (any exception, KeyboardInterrupt included)::

        with AtomicFile(out) as f:
            torch.save(state, f.path)

    Writers that outlive one block (a recording) call :meth:`commit` or :meth:`discard` themselves.
    """

    def __init__(self, target: str | Path, suffix: str = "") -> None:
        self.target = Path(target)
        self.path = temp_name(self.target, suffix)

    def commit(self) -> Path:
        """Flush the temporary file to the disk and rename it onto the target; on failure remove it."""
        try:
            _fsync(self.path)
            os.replace(self.path, self.target)
        except BaseException:
            self.discard()
            raise
        try:  # the rename itself is durable once the folder is synced (not possible everywhere: best effort)
            _fsync(self.target.parent)
        except OSError:
            pass
        return self.target

    def discard(self) -> None:
        """Remove the temporary file (nothing happens when it was never created)."""
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (creating its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with AtomicFile(path) as f:
        f.path.write_bytes(data)


def save_torch(path: str | Path, obj: Any, what: str = "checkpoint") -> None:
    """``torch.save`` ``obj`` to ``path`` atomically; a write that fails (a full disk) is a VidtoonError that
    says why, where torch reports only "unexpected pos" from its zip writer."""
    import torch

    path = Path(path)
    try:
        # through a Python file object: the OSError of a failed write stays on the error torch raises
        with AtomicFile(path) as target, open(target.path, "wb") as fh:
            torch.save(obj, fh)
    except OSError as exc:
        raise VidtoonError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    except RuntimeError as exc:
        cause = exc.__context__
        if isinstance(cause, OSError):
            raise VidtoonError(f"cannot write {what} {path}: {cause.strerror or cause}") from None
        raise


def write_image(path: str | Path, bgr: Any) -> None:
    """Write a BGR uint8 image with OpenCV atomically, in the format of ``path``'s extension."""
    import cv2

    path = Path(path)
    # encoded in memory, then written by Python: cv2.imwrite on a full disk prints libpng's own error lines
    # and only returns False, where a write of the bytes raises an OSError that says why
    ok, data = cv2.imencode(path.suffix or ".png", bgr)
    if not ok:  # OpenCV says False rather than raising
        raise VidtoonError(f"cannot write image {path}: OpenCV cannot encode it as {path.suffix or '.png'}")
    try:
        with AtomicFile(path, suffix=path.suffix) as f, open(f.path, "wb") as fh:
            fh.write(data.tobytes())
    except OSError as exc:
        raise VidtoonError(f"cannot write image {path}: {exc.strerror or exc}") from None


def check_creatable(folder: str | Path) -> None:
    """Raise VidtoonError unless ``folder`` exists and is writable, or can be created: the rule of every
    command's output (a file name in an existing or creatable folder). Nothing is created here; the writer
    creates the folder when it writes (``Path.mkdir(parents=True)``)."""
    folder = Path(folder).resolve()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise VidtoonError(f"cannot create folder {folder}: {existing} is a file")
    check_writable(existing)


def check_replaceable(path: str | Path, overwrite: bool) -> None:
    """Raise VidtoonError if ``path`` exists and ``overwrite`` is false (every command's rule: an existing
    output is replaced only with ``--overwrite``), or if it exists and is not a file."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise VidtoonError(f"output {path} exists and is not a file")
    if path.exists() and not overwrite:
        raise VidtoonError(f"output {path} already exists (pass --overwrite to replace it)")


def check_writable(folder: str | Path) -> None:
    """Raise VidtoonError unless a file can be created in ``folder``.

    It creates and removes a file: the only test that also holds for root (``os.access`` says yes to root on
    a read-only folder) and for read-only mounts.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VidtoonError(f"output folder {folder} does not exist")
    probe = temp_name(folder / ".vidtoon-write-test")
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        raise VidtoonError(f"cannot write to {folder} ({exc.strerror or exc})") from None
