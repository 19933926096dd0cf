"""Seeded damage of media files, and a driver that runs the real ``vidtoon convert`` on each damaged file.

:func:`damage` turns the bytes of a good clip into a damaged variant: random bit flips, a zeroed block, a
truncation, or a few random bytes in the container's header (Matroska's first KiB, MP4's ``moov`` box).
The same (clip, kind, seed) always gives the same bytes.

Run as a script (``python fuzzing.py JOBS.json RESULTS.jsonl``), it converts every job in one process
with the in-process CLI (``vidtoon.cli.main``, stdout and stderr captured) and appends one JSON line per
job to RESULTS as it goes. A job that runs longer than its watchdog dumps every thread's stack to
stderr and ends the process: the test then knows which job hung (the last one without a result).
"""
from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import sys
from pathlib import Path

import numpy as np

KINDS = ("bitflip", "zeros", "truncate", "header")


def _header_region(data: bytes) -> tuple[int, int]:
    """[start, end) of the bytes that describe the streams: MP4's moov box, else the first KiB."""
    at = data.find(b"moov")
    if at >= 4:
        size = int.from_bytes(data[at - 4 : at], "big")
        if 8 <= size <= len(data) - at + 4:
            return at + 4, at - 4 + size
    return 0, min(len(data), 1024)


def damage(data: bytes, kind: str, seed: int) -> bytes:
    """A damaged copy of ``data``: ``kind`` is one of :data:`KINDS`; the damage is chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    n = len(out)
    if kind == "bitflip":
        for pos in rng.integers(0, n, int(rng.integers(1, 40))):
            out[pos] ^= 1 << int(rng.integers(0, 8))
    elif kind == "zeros":
        size = int(rng.integers(16, 1024))
        at = int(rng.integers(0, max(1, n - size)))
        out[at : at + size] = bytes(min(size, n - at))
    elif kind == "truncate":
        out = out[: int(n * rng.uniform(0.05, 0.97))]
    elif kind == "header":
        lo, hi = _header_region(data)
        for pos in rng.integers(lo, hi, int(rng.integers(1, 9))):
            out[pos] = int(rng.integers(0, 256))
    else:
        raise ValueError(f"unknown damage {kind!r} (one of {', '.join(KINDS)})")
    return bytes(out)


def break_metadata(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` with byte 0x98 (not valid UTF-8) inside its tags: the muxer's name (``Lavf...``,
    a file tag) and MP4's handler names (stream tags)."""
    raw = bytearray(src.read_bytes())
    patched = 0
    for key in (b"Lavf", b"Handler"):
        at = raw.find(key)
        while at >= 0:
            raw[at + 1] = 0x98
            patched += 1
            at = raw.find(key, at + 1)
    assert patched, "no tag to damage"
    dst.write_bytes(bytes(raw))
    return dst


def zero_audio_channels(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` with the first audio track's header saying 0 channels (the audio bytes untouched).

    Matroska: the track's ``Channels`` element (ID 0x9F). MP4 + AAC: the ``mp4a`` entry's channel count and
    the channel configuration of the AudioSpecificConfig, which FFmpeg would otherwise trust.
    """
    raw = bytearray(src.read_bytes())
    if src.suffix == ".mkv":
        at = raw.find(b"\x9f\x81")  # Channels, 1-byte size
        assert at > 0, "no Channels element"
        raw[at + 2] = 0
    else:
        import av

        with av.open(str(src)) as c:
            asc = bytes(c.streams.audio[0].codec_context.extradata)
        entry = raw.find(b"mp4a")
        at = raw.find(asc, entry)
        assert entry > 0 and at > 0, "no mp4a entry / AudioSpecificConfig"
        raw[entry + 20 : entry + 22] = b"\0\0"  # 'mp4a', 6 reserved, data ref index, 8 reserved: channel count
        raw[at + 1] &= 0b1000_0111  # AudioSpecificConfig: 5 bits object type, 4 rate index, 4 channel config
    dst.write_bytes(bytes(raw))
    return dst


def rewind_audio_packet(src: Path, dst: Path, packet: int, ms: int) -> Path:
    """Copy the Matroska/WebM ``src`` to ``dst`` with audio packet number ``packet`` moved ``ms`` earlier.

    A SimpleBlock holds the track number, a 16-bit timecode relative to its cluster, one byte of flags,
    then the payload: the timecode sits 3 bytes before the packet's bytes.
    """
    import av

    raw = bytearray(src.read_bytes())
    with av.open(str(src)) as c:
        payload = [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size][packet]
    at = raw.find(payload)
    assert at > 3 and raw.find(payload, at + 1) < 0, "the packet's bytes are not unique in the file"
    timecode = int.from_bytes(raw[at - 3 : at - 1], "big", signed=True) - ms
    raw[at - 3 : at - 1] = timecode.to_bytes(2, "big", signed=True)
    dst.write_bytes(bytes(raw))
    return dst


def _run_job(job: dict) -> dict:
    from vidtoon.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in job["args"]])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return {"name": job["name"], "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def drive(jobs_file: Path, results_file: Path, watchdog_s: float = 60.0) -> None:
    """Run every job of ``jobs_file`` (a JSON list of {"name", "args"}), one JSON line per job in ``results_file``."""
    jobs = json.loads(jobs_file.read_text())
    with results_file.open("a") as results:
        for job in jobs:
            faulthandler.dump_traceback_later(watchdog_s, exit=True)  # a hang ends the run, stacks on stderr
            results.write(json.dumps(_run_job(job)) + "\n")
            results.flush()
            faulthandler.cancel_dump_traceback_later()


if __name__ == "__main__":
    drive(Path(sys.argv[1]), Path(sys.argv[2]))
