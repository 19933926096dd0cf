"""vidtoon.fileio: a file appears complete or not at all, and the writers that use it (a conversion included)
leave nothing behind."""
from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

import pytest
import torch
from conftest import leftovers
from mediagen import make_video

from vidtoon.errors import VidtoonError
from vidtoon.fileio import AtomicFile, check_writable, write_bytes
from vidtoon.pipeline import convert


def test_commit_replaces_the_target_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with AtomicFile(target) as f:
        f.path.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # not before the block ends
        assert f.path.parent == tmp_path and f.path.name.startswith(".out.bin.")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_any_error_removes_the_temp_and_keeps_the_old_file(tmp_path: Path, exc: BaseException) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(type(exc)):
        with AtomicFile(target) as f:
            f.path.write_bytes(b"half")
            raise exc
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_temp_names_are_unique_per_writer(tmp_path: Path) -> None:
    # two threads of one process writing the same file must not share a temporary file
    names = {AtomicFile(tmp_path / "x.onnx", suffix=".onnx").path for _ in range(50)}
    assert len(names) == 50 and all(n.suffix == ".onnx" for n in names)


def test_write_bytes_creates_the_folder(tmp_path: Path) -> None:
    write_bytes(tmp_path / "a" / "b.bin", b"data")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"data"


class _FullDisk(io.RawIOBase):
    """A file on a disk with ``room`` bytes left: a write past it fails as a full disk does (ENOSPC)."""

    def __init__(self, path: Path, room: int) -> None:
        super().__init__()
        self.file, self.room = builtins.open(path, "wb"), room

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def, override]
        if len(b) > self.room:
            raise OSError(28, "No space left on device")
        self.room -= len(b)
        return self.file.write(b)

    def close(self) -> None:
        self.file.close()
        super().close()


@pytest.mark.parametrize("writer", ["export_generator", "save_checkpoint", "write_image"])
def test_writers_on_a_full_disk_say_so_and_leave_no_part_file(tmp_path: Path, monkeypatch, writer: str) -> None:
    """A disk filling up mid-write: one plain error that names the file and says why (torch's own error was
    "unexpected pos"; OpenCV's writer printed libpng's lines), and no half-written or temporary file."""
    import numpy as np

    from nets import tiny

    import vidtoon.fileio as fileio

    monkeypatch.setattr(fileio, "open", lambda path, mode="r": io.BufferedWriter(_FullDisk(path, 100), 64),
                        raising=False)
    out = tmp_path / ("g.png" if writer == "write_image" else "g.pt")
    with pytest.raises(VidtoonError, match=rf"cannot write .*{out.name}: No space left on device"):
        if writer == "export_generator":
            from vidtoon.models import export_generator

            export_generator(tiny("fast"), "fast", out)
        elif writer == "save_checkpoint":
            from vidtoon.trainer.state import save_checkpoint

            save_checkpoint(out, step=1, weights=torch.zeros(1000))
        else:
            fileio.write_image(out, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_check_writable(tmp_path: Path) -> None:
    check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []  # its probe file is gone
    with pytest.raises(VidtoonError, match="does not exist"):
        check_writable(tmp_path / "missing")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        try:
            with pytest.raises(VidtoonError, match="cannot write to"):
                check_writable(locked)
        finally:
            locked.chmod(0o700)


def test_the_output_name_appears_only_when_the_conversion_is_complete(tmp_path: Path, tiny_engine) -> None:
    src = make_video(tmp_path / "in.mp4", frames=12)
    out = tmp_path / "out.mp4"
    seen: list[bool] = []
    convert(src, out, engine=tiny_engine, batch_size=2, progress=lambda done, total: seen.append(out.exists()))
    assert len(seen) > 2 and not any(seen[:-1]) and seen[-1]  # the last call comes after the rename


class _Stop(Exception):
    pass


def _stop_midway(done: int, total: int | None) -> None:
    if done >= 4:
        raise _Stop


def test_a_stopped_conversion_leaves_nothing_and_keeps_the_file_it_would_overwrite(tmp_path: Path,
                                                                                    tiny_engine) -> None:
    src = make_video(tmp_path / "in.mp4", frames=12)
    out = tmp_path / "out.mp4"
    with pytest.raises(_Stop):
        convert(src, out, engine=tiny_engine, batch_size=2, progress=_stop_midway)
    assert not out.exists() and leftovers(tmp_path) == []
    out.write_bytes(b"an earlier result")
    with pytest.raises(_Stop):
        convert(src, out, engine=tiny_engine, batch_size=2, overwrite=True, progress=_stop_midway)
    assert out.read_bytes() == b"an earlier result" and leftovers(tmp_path) == []
