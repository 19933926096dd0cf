"""``vidtoon live`` driven by a generated video file as the source: headless, and in a real window on Xvfb."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from mediagen import make_video
from vidtoon.cli import main
from vidtoon.live import LatestFrame, LiveOptions, processing_size, run_live
from vidtoon.models import export_generator
from vidtoon.networks.fast import FastGenerator


@pytest.fixture(scope="module")
def toon_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = FastGenerator(width=8, width_low=8, n_res=1)
    with torch.no_grad():  # move it off identity so the cartoon differs from the source
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        # keep the ink channel off: random ink can paint the tiny clip black, and the window test must see a picture
        net.out.bias[16:32] = -8.0
    return export_generator(net, "fast", tmp_path_factory.mktemp("m") / "toon.pt")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 5 s at 30 fps: long enough that --frames is reached before the end of the source
    return make_video(tmp_path_factory.mktemp("v") / "cam.mp4", frames=150, size=(96, 64), fps=30, audio=None)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_headless_records_fixed_frames(tmp_path: Path, clip: Path, toon_model: Path, capsys) -> None:
    rec = tmp_path / "rec.mp4"
    code, err = run(["live", "--source", str(clip), "--no-window", "--frames", "20", "--record", str(rec),
                     "--model", str(toon_model)], capsys)
    assert code == 0, err
    assert "20 frames stylized at 96x64" in err and "fps" in err
    assert "; stopped after --frames 20)" in err  # was "...; frames)"
    with av.open(str(rec)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (96, 64) and v.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        # stamped with capture times: the source plays at 30 fps, so 20 frames span at least 0.6 s
        duration = float(v.duration * v.time_base) if v.duration else float(c.duration / 1e6)
    assert len(frames) == 20
    assert duration > 0.5
    assert frames[0].std() > 10  # a picture, not a blank frame
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp file renamed away
    # a second session does not replace the recording unless told to
    before = rec.read_bytes()
    code, err = run(["live", "--source", str(clip), "--no-window", "--frames", "5", "--record", str(rec),
                     "--model", str(toon_model)], capsys)
    assert code == 1 and err.strip().splitlines()[-1] == (
        f"Error: cannot record to {rec}: output {rec} already exists (pass --overwrite to replace it)")
    assert rec.read_bytes() == before
    code, err = run(["live", "--source", str(clip), "--no-window", "--frames", "5", "--record", str(rec),
                     "--overwrite", "--model", str(toon_model)], capsys)
    assert code == 0, err
    with av.open(str(rec)) as c:
        assert len(list(c.decode(video=0))) == 5


def test_no_display_runs_headless(tmp_path: Path, clip: Path, toon_model: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, err = run(["live", "--source", str(clip), "--frames", "3", "--max-side", "48",
                     "--model", str(toon_model)], capsys)
    assert code == 0, err
    assert "no display" in err and "at 48x32" in err

    code, err = run(["live", "--source", str(clip), "--window", "--frames", "3", "--model", str(toon_model)], capsys)
    assert code == 1
    assert err.startswith("Error: no display") and "--no-window" in err


def test_unreachable_display_is_an_error(clip: Path, toon_model: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DISPLAY", ":87")  # nothing listens there: Qt would abort the process
    code, err = run(["live", "--source", str(clip), "--window", "--frames", "3", "--model", str(toon_model)], capsys)
    assert code == 1 and "cannot open a window on display :87" in err


def test_drops_stale_frames_with_a_slow_engine(clip: Path) -> None:
    class Slow:
        calls = 0

        def infer(self, frames: np.ndarray) -> np.ndarray:
            Slow.calls += 1
            time.sleep(0.1)  # 10 fps against a 30 fps source
            return 255 - frames

    t0 = time.monotonic()
    stats = run_live(Slow(), LiveOptions(source=str(clip), window=False, frames=8))
    wall = time.monotonic() - t0
    assert stats.frames == 8 and stats.ended == "frames"
    # it kept up with the source instead of queueing: most frames were dropped, none piled up
    assert stats.captured > stats.frames + 8
    assert wall < 3.0  # 8 frames at ~10 fps, not 8 frames after a backlog


def test_the_source_is_checked_before_the_engine_starts(tmp_path: Path, toon_model: Path, capsys,
                                                          monkeypatch) -> None:
    """Issue 20: `vidtoon live` exported the model (35-50 s) before it found out that there was no camera."""
    import vidtoon.engines as engines

    started: list[str] = []
    monkeypatch.setattr(engines, "create_engine", lambda name, *a, **k: started.append(name) or 1 / 0)
    code, err = run(["live", "--source", str(tmp_path / "nope.mp4"), "--no-window", "--model", str(toon_model)], capsys)
    assert code == 1 and "does not exist" in err and started == []


def test_quiet_keeps_only_the_summary(clip: Path, toon_model: Path, capsys) -> None:
    code, err = run(["live", "--source", str(clip), "--no-window", "--frames", "5", "-q", "--model", str(toon_model)],
                    capsys)
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "5 frames stylized" in lines[0], err


def test_source_errors(tmp_path: Path, toon_model: Path, capsys) -> None:
    if not Path("/dev/video7").exists():
        code, err = run(["live", "--camera", "7", "--no-window", "--model", str(toon_model)], capsys)
        assert code == 1 and "no camera at index 7" in err and "Traceback" not in err
    code, err = run(["live", "--source", str(tmp_path / "nope.mp4"), "--no-window", "--model", str(toon_model)], capsys)
    assert code == 1 and "does not exist" in err
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n" * 10)
    code, err = run(["live", "--source", str(text), "--no-window", "--model", str(toon_model)], capsys)
    assert code == 1 and err.startswith("Error:")
    code, err = run(["live", "--source", str(text), "--no-window", "--record", str(tmp_path / "r.avi"),
                     "--model", str(toon_model)], capsys)
    assert code == 1 and ".mp4" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_helpers() -> None:
    assert processing_size(1280, 720, 480) == (480, 270)
    assert processing_size(1279, 721, None) == (1278, 720)  # even sides for H.264
    slot = LatestFrame()
    slot.put("a")
    slot.put("b")
    assert slot.newer_than(0, 0.01) == (2, "b")  # only the newest is kept
    assert slot.newer_than(2, 0.01) is None


# --------------------------------------------------------------------------------------- a real window
@pytest.fixture
def xvfb() -> str:
    """Start a private Xvfb server; yields its DISPLAY and stops it afterwards."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as fh:
            number = fh.readline().strip()  # Xvfb writes its display number once it accepts clients
        if not number:
            pytest.skip("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _screenshot(display: str, path: Path) -> np.ndarray | None:
    import cv2

    env = {**os.environ, "DISPLAY": display}
    r = subprocess.run(["import", "-window", "root", str(path)], env=env, capture_output=True, timeout=20)
    return cv2.imread(str(path)) if r.returncode == 0 and path.exists() else None


def _window_state(display: str, name: str) -> str:
    """``Map State: ...`` of the window called ``name`` (as xwininfo reports it), or why it is unknown."""
    r = subprocess.run(["xwininfo", "-name", name], env={**os.environ, "DISPLAY": display}, capture_output=True,
                       text=True, timeout=20)
    state = [line.strip() for line in r.stdout.splitlines() if "Map State" in line]
    return state[0] if state else (r.stderr.strip() or "no such window")[:200]


def _default_sigint() -> None:
    # a suite started as a background job (``cmd &`` without job control, nohup) inherits SIGINT ignored,
    # and so would ``vidtoon live``: the Ctrl-C test would then see the clip play to its end (exit 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_live(display: str, args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "DISPLAY": display, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "vidtoon", "live", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint)


def _start_window(tool: str, xvfb: str, toon_model: Path, tmp_path: Path, args: list[str]) -> subprocess.Popen[str]:
    """Skip without ``tool`` or xwininfo; else start ``vidtoon live`` in a window on a 20 s source played at its
    own rate."""
    for needed in (tool, "xwininfo"):
        if shutil.which(needed) is None:
            pytest.skip(f"{needed} is not installed (ImageMagick's import / xdotool / x11-utils' xwininfo)")
    long_clip = make_video(tmp_path / "long.mp4", frames=600, size=(96, 64), fps=30, audio=None)
    return _start_live(xvfb, ["--source", str(long_clip), "--window", "--model", str(toon_model), *args], tmp_path)


def _window_session(xvfb: str, toon_model: Path, tmp_path: Path, rec: Path) -> dict[str, Any]:
    """Run ``vidtoon live`` in a window until a screenshot shows the picture, then stop it with Ctrl-C."""

    def picture_area(shot: np.ndarray) -> tuple[int, float]:
        # the root window is black where no window is; the window's frame and bars are flat grey: a drawn
        # picture is a lit area at least half the frame's size with real variation inside it
        lit = shot.max(axis=2) > 30
        return int(lit.sum()), float(shot[lit].std()) if lit.any() else 0.0

    proc = _start_window("import", xvfb, toon_model, tmp_path, ["--record", str(rec)])
    result: dict[str, Any] = {"shots": 0, "seen": False, "best": (0, 0.0), "state": ""}
    deadline = time.monotonic() + 180  # importing torch alone can take a minute on a busy machine
    try:
        # first wait, without screenshots, until the window is mapped (ImageMagick's import grabs the X
        # server while it reads the screen)
        while proc.poll() is None and time.monotonic() < deadline and "IsViewable" not in result["state"]:
            result["state"] = _window_state(xvfb, "vidtoon live")
            time.sleep(0.2)
        while proc.poll() is None and time.monotonic() < deadline and not result["seen"]:
            shot = _screenshot(xvfb, tmp_path / "shot.png")
            if shot is not None:
                result["shots"] += 1
                area, spread = picture_area(shot)
                result["best"] = max(result["best"], (area, spread))
                result["seen"] = area > 96 * 64 * 0.5 and spread > 20
            time.sleep(0.3)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        _, result["err"] = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    result["returncode"] = proc.returncode
    return result


@pytest.mark.slow
def test_window_on_xvfb_shows_the_cartoon(tmp_path: Path, clip: Path, toon_model: Path, xvfb: str) -> None:
    # the window is up for 20 s, long enough for many screenshots even when a busy machine slows the start;
    # once the picture is seen the session is stopped with Ctrl-C (SIGINT), which must finish the recording.
    # One more session when none of its screenshots showed the picture: with the CPU saturated (three busy
    # loops beside the test on 2 cores) about one session in five stayed black on every screenshot although
    # its window was mapped and all frames were shown; on an idle machine none did in over ten runs. The
    # cause (Qt's painting under Xvfb, or the screenshots) is not known; the check that a window shows the
    # cartoon stays.
    for attempt in range(2):
        rec = tmp_path / f"rec{attempt}.mp4"
        r = _window_session(xvfb, toon_model, tmp_path, rec)
        if r["seen"]:
            break
    err = r["err"]
    assert "IsViewable" in r["state"], f"the window was never mapped ({r['state']}); {err}"
    assert r["shots"] > 0, "no screenshot could be taken"
    assert r["seen"], f"none of {r['shots']} screenshots showed the preview picture (best: {r['best']}); {err}"
    assert r["returncode"] == 130, err  # Ctrl-C's exit status, after a clean shutdown
    done = re.search(r"(\d+) frames stylized", err)
    assert done is not None and int(done.group(1)) > 0, err
    with av.open(str(rec)) as c:  # the recording was finished, not cut off, and holds the stylized frames
        recorded = sum(1 for _ in c.decode(video=0))
    # but the one in flight when Ctrl-C arrived, which may be counted and not yet written
    assert int(done.group(1)) - 1 <= recorded <= int(done.group(1))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


@pytest.mark.slow
def test_window_keys(tmp_path: Path, clip: Path, toon_model: Path, xvfb: str) -> None:
    saves = tmp_path / "saves"
    proc = _start_window("xdotool", xvfb, toon_model, tmp_path, ["--save-dir", str(saves)])
    env = {**os.environ, "DISPLAY": xvfb}

    def key(name: str) -> None:
        assert proc.poll() is None, proc.communicate()[1]  # still running: a key must not have killed it
        # Xvfb runs no window manager: give the window the keyboard focus directly (windowfocus, not activate)
        subprocess.run(["xdotool", "search", "--sync", "--name", "vidtoon live", "windowfocus", "--sync",
                        "key", name], env=env, capture_output=True, timeout=180)
        time.sleep(0.5)

    try:
        for name in ("r", "v", "s", "r", "q"):  # record, side by side, snapshot, stop recording, quit
            if name == "r" and not list(saves.glob("*.png")):
                time.sleep(1.0)  # let a few frames through before the recording starts/stops
            key(name)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "quit" in err
    snaps = list(saves.glob("vidtoon-snapshot-*.png"))
    recs = list(saves.glob("vidtoon-record-*.mp4"))
    assert len(snaps) == 1 and len(recs) == 1, (list(saves.iterdir()), err)
    import cv2

    snap = cv2.imread(str(snaps[0]))
    assert snap.shape == (64, 192, 3)  # side by side: original + cartoon
    with av.open(str(recs[0])) as c:
        assert c.streams.video[0].width == 96 and sum(1 for _ in c.decode(video=0)) > 0
