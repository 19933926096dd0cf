"""Damaged files: tags that are not UTF-8, an audio track with a broken header, and seeded fuzzing.

The named cases are made by byte-patching generated clips (``fuzzing.py``). The fuzz test damages clips
made by the tests (MP4 + AAC; Matroska + PCM + SubRip; Matroska + SubRip and WebM VP9 + Opus converted to
MP4) with seeded bit flips, a zeroed block, truncation or header bytes, and runs the real ``vidtoon
convert`` on each in one subprocess, whose watchdog turns a hang into a failure naming the file. For each
variant: no traceback, the input untouched, no temporary file left, and either exit 0 with an output that
decodes to the frame count reported, or exit 1 with exactly one ``Error:`` line that names no Python
exception class.

``VIDTOON_FUZZ_SEED`` and ``VIDTOON_FUZZ_VARIANTS`` (per clip and kind of damage, default 5) run other or
more variants, e.g. ``VIDTOON_FUZZ_SEED=7 VIDTOON_FUZZ_VARIANTS=20 python -m pytest tests/test_damaged_files.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import pytest
from clirun import run_cli as run
from conftest import leftovers
from fuzzing import KINDS, break_metadata, damage, rewind_audio_packet, zero_audio_channels
from mediagen import make_video

TESTS = Path(__file__).resolve().parent
SEED = int(os.environ.get("VIDTOON_FUZZ_SEED", "0"))
VARIANTS = int(os.environ.get("VIDTOON_FUZZ_VARIANTS", "5"))

#: clip name -> (make_video arguments, convert arguments after the input; {dir} is the variant's folder):
#: AAC copied into MP4; PCM and SubRip copied into Matroska; SubRip converted to mov_text for MP4; Opus
#: re-encoded to AAC for MP4
CLIPS: dict[str, tuple[dict, list[str]]] = {
    "clip.mp4": ({"audio": "aac"}, []),
    "clip.mkv": ({"audio": "pcm_s16le", "subtitles": True}, []),
    "subs.mkv": ({"audio": "aac", "subtitles": True}, ["-o", "{dir}/out.mp4"]),
    "clip.webm": ({"codec": "libvpx-vp9", "audio": "libopus"}, ["-o", "{dir}/out.mp4"]),
}

#: a Python exception class name (ValueError, av.error.InvalidDataError, UnicodeDecodeError, KeyError...)
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z0-9]*(?:Error|Exception)\b|\bKeyboardInterrupt\b|\bStopIteration\b")


def _streams(path: Path) -> tuple[int, list[tuple[str, int]]]:
    """(decoded video frames, [(codec, channels) of each audio track]) of ``path``."""
    with av.open(str(path)) as c:
        audio = [(a.codec_context.name, a.codec_context.layout.nb_channels) for a in c.streams.audio]
        return sum(1 for _ in c.decode(video=0)), audio


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_metadata_not_utf8_is_replaced_with_a_warning(ext: str, tmp_path: Path, tiny_model: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    src = break_metadata(make_video(tmp_path / f"good.{ext}", frames=12), tmp_path / "in" / f"bad.{ext}")
    with pytest.raises(UnicodeDecodeError):  # PyAV's default: the file would not even open
        av.open(str(src))
    out = tmp_path / "out.mp4"
    code, _, err = run(["convert", src, "-o", out, "--model", tiny_model], capsys)
    assert code == 0, err
    assert f"bad.{ext} has damaged metadata (not valid UTF-8)" in err
    assert _streams(out) == (12, [("aac", 2)])
    # the other places that open inputs: batch discovery and the flicker measurement
    code, _, err = run(["batch", src.parent, "-o", tmp_path / "batch", "--model", tiny_model, "--engine", "torch"], capsys)
    assert code == 0, err
    assert [_streams(p) for p in (tmp_path / "batch").iterdir()] == [(12, [("aac", 2)])]
    code, stdout, err = run(["flicker", src, out], capsys)
    assert code == 0 and "warping error" in stdout.lower(), err


@pytest.mark.parametrize("ext, codec", [("mkv", "pcm_s16le"), ("mp4", "aac")])
def test_audio_track_with_damaged_header_is_dropped(ext: str, codec: str, tmp_path: Path, tiny_model: Path,
                                                    capsys) -> None:
    good = make_video(tmp_path / f"good.{ext}", frames=12, audio=codec, audio_tracks=2)
    src = zero_audio_channels(good, tmp_path / f"bad.{ext}")
    with av.open(str(src)) as c:  # the damage took: track 1 claims 0 channels, track 2 is intact
        assert [a.codec_context.layout.nb_channels for a in c.streams.audio] == [0, 2]
    for out in (tmp_path / "out.mkv", tmp_path / "out.mp4"):  # the intact track copied / re-encoded (PCM)
        code, _, err = run(["convert", src, "-o", out, "--model", tiny_model], capsys)
        assert code == 0, err
        assert f"audio track 1 of 2 ({codec}) dropped: its header is damaged (0 channels" in err  # as a user counts
        kept = "aac" if out.suffix == ".mp4" else codec
        assert _streams(out) == (12, [(kept, 2)])
    assert leftovers(tmp_path) == []


def test_audio_timestamps_going_back_are_moved_forward(tmp_path: Path, tiny_model: Path, capsys) -> None:
    good = make_video(tmp_path / "good.webm", frames=24, codec="libvpx-vp9", audio="libopus")
    src = rewind_audio_packet(good, tmp_path / "bad.webm", packet=30, ms=100)
    with av.open(str(src)) as c:  # the damage took: one packet 100 ms before its predecessor
        pts = [p.pts for p in c.demux(c.streams.audio[0]) if p.size]
    assert pts[30] < pts[29]
    for out, warning in ((tmp_path / "out.mkv", "1 packets went back in time"),  # Opus copied
                         (tmp_path / "out.mp4", "1 frames went back in time")):  # re-encoded to AAC
        code, _, err = run(["convert", src, "-o", out, "--model", tiny_model], capsys)
        assert code == 0, err
        assert f"audio track 1 of 1 is damaged: {warning} (moved forward)" in err
        with av.open(str(out)) as c:
            dts = [p.dts for p in c.demux(c.streams.audio[0]) if p.size]
        with av.open(str(out)) as c:
            seconds = sum(f.samples for f in c.decode(audio=0)) / 48000
        assert dts == sorted(set(dts)) and seconds > 0.95  # strictly increasing, and the whole second kept


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _decoded_frames(path: Path) -> int:
    """Decode every stream of ``path``: the video frame count (audio must have a usable header and demux)."""
    with av.open(str(path)) as c:
        for a in c.streams.audio:
            assert a.codec_context.sample_rate > 0 and a.codec_context.layout.nb_channels > 0, path
        video = sum(1 for _ in c.decode(c.streams.video[0]))
    with av.open(str(path)) as c:
        for packet in c.demux(*c.streams.audio):
            if packet.size:
                try:
                    packet.decode()
                except av.FFmpegError:
                    pass  # audio packets copied untouched from a damaged input may be damaged themselves
    return video


def _check(result: dict, folder: Path, src: Path, sha: str) -> None:
    name, code, err = result["name"], result["code"], result["stderr"]
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, f"{name}: {err}"
    assert _sha(src) == sha, f"{name}: the input was modified"
    assert leftovers(folder) == [], f"{name}: left {leftovers(folder)}"
    outputs = sorted(p for p in folder.iterdir() if p != src)
    if code == 0:
        assert all(line.startswith("warning: ") for line in lines), f"{name}: {err}"
        assert len(outputs) == 1, f"{name}: {outputs}"
        frames = _decoded_frames(outputs[0])
        assert frames >= 1 and f": {frames} frames" in result["stdout"], f"{name}: {frames} frames, {result['stdout']}"
    else:
        assert code == 1, f"{name}: exit {code}: {err}"
        assert len(lines) == 1 and lines[0].startswith("Error: "), f"{name}: {err}"
        assert CLASS_NAME.search(lines[0]) is None, f"{name}: {lines[0]}"
        assert outputs == [], f"{name}: failed but wrote {outputs}"


@pytest.mark.slow
def test_damaged_files_convert_or_fail_plainly(tmp_path: Path, tiny_model: Path) -> None:
    jobs, cases = [], {}
    for c, (clip, (make_args, args)) in enumerate(CLIPS.items()):
        good = make_video(tmp_path / clip, frames=24, **make_args).read_bytes()
        for k, kind in enumerate(KINDS):
            for v in range(VARIANTS):
                seed = SEED * 10_000 + c * 1000 + k * 100 + v
                folder = tmp_path / f"{clip.replace('.', '-')}-{kind}-{seed}"
                folder.mkdir()
                src = folder / clip
                src.write_bytes(damage(good, kind, seed))
                name = folder.name
                cases[name] = (folder, src, _sha(src))
                extra = [a.replace("{dir}", str(folder)) for a in args]
                jobs.append({"name": name, "args": ["convert", src, *extra, "--model", tiny_model, "--engine",
                                                    "torch", "--batch-size", "4"]})
    jobs_file, results_file = tmp_path / "jobs.json", tmp_path / "results.jsonl"
    jobs_file.write_text(json.dumps(jobs, default=str))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(TESTS / "fuzzing.py"), str(jobs_file), str(results_file)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    results = [json.loads(line) for line in results_file.read_text().splitlines()] if results_file.exists() else []
    if len(results) < len(jobs):
        pytest.fail(f"{jobs[len(results)]['name']} did not finish (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    failures = []
    for result in results:
        try:
            _check(result, *cases[result["name"]])
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)
    codes = [r["code"] for r in results]
    assert codes.count(0) >= len(codes) // 4, codes  # not only refusals: much damage leaves something to convert
