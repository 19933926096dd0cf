"""Warping error (vidtoon.metrics) and the ``vidtoon flicker`` command."""
from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vidtoon.metrics import non_occluded, warp, warping_error, warping_errors

MEDIA = Path("/work/shared/media")


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB picture: enough texture everywhere for optical flow to lock on."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def panning(n: int, height: int = 96, width: int = 128, step: int = 2, seed: int = 0) -> list[np.ndarray]:
    """``n`` frames of a camera panning right over a texture by ``step`` pixels per frame."""
    canvas = texture(height, width + n * step, seed)
    return [np.ascontiguousarray(canvas[:, i * step : i * step + width]) for i in range(n)]


def static(n: int, height: int = 96, width: int = 128) -> list[np.ndarray]:
    return [texture(height, width)] * n


def shifted(frames: list[np.ndarray], offsets: list[int]) -> list[np.ndarray]:
    """Each frame with a uniform colour offset (a global flicker)."""
    return [np.clip(f.astype(np.int16) + o, 0, 255).astype(np.uint8) for f, o in zip(frames, offsets)]


def test_identical_output_static_is_zero() -> None:
    frames = static(5)
    assert warping_error(frames, frames) == pytest.approx(0.0, abs=1e-9)


def test_identical_output_translated_is_near_zero() -> None:
    frames = panning(6)
    assert warping_error(frames, frames) < 2e-4


def test_uniform_flicker_has_the_expected_value() -> None:
    # a static scene whose output alternates between +10 and -10 grey levels: every pair differs by 20
    frames = static(5, 64, 80)
    frames = [np.full_like(f, 100) + (f // 4) for f in frames]  # keep away from 0/255 so nothing clips
    out = shifted(frames, [10, -10, 10, -10, 10])
    assert warping_error(frames, out) == pytest.approx((20 / 255) ** 2, rel=1e-4)


def test_flicker_scores_higher_than_steady_output_on_motion() -> None:
    frames = panning(8)
    rng = np.random.default_rng(1)
    flickery = shifted(frames, rng.integers(-12, 13, 8).tolist())
    steady, noisy = warping_errors(frames, frames, flickery)
    assert noisy > 20 * max(steady, 1e-6)


def test_input_passed_twice_as_one_iterator_is_split() -> None:
    frames = panning(5)
    gen = iter(frames)
    assert warping_errors(gen, gen) == pytest.approx(warping_errors(frames, frames))


def test_bad_inputs() -> None:
    frames = static(3, 32, 32)
    with pytest.raises(ValueError, match="at least two frames"):
        warping_error(frames[:1], frames[:1])
    with pytest.raises(ValueError, match="same number of frames"):
        warping_error(frames, frames[:2])
    with pytest.raises(ValueError, match="uint8"):
        warping_error([f.astype(np.float32) for f in frames], frames)
    with pytest.raises(ValueError, match="is 16x32 but the input is 32x32"):
        warping_error(frames, [f[:, :16] for f in frames])


def test_warp_and_occlusion_mask() -> None:
    img = texture(40, 50)
    flow = np.zeros((40, 50, 2), np.float32)
    flow[..., 0] = 3.0  # every pixel looks 3 pixels to the right
    assert np.array_equal(warp(img, flow)[:, :-3], img[:, 3:])
    back = -flow
    ok = non_occluded(flow, back)
    assert ok[:, :-3].all() and not ok[:, -3:].any()  # targets past the right edge are not trusted
    assert not non_occluded(flow, flow)[:, :-3].any()  # a flow that does not map back is rejected


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 25, gop: int | None = None) -> Path:
    with av.open(str(path), "w") as box:
        stream = box.add_stream("libx264", rate=Fraction(fps))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0", "preset": "ultrafast", **({"g": str(gop)} if gop else {})}
        for f in frames:
            box.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        box.mux(stream.encode(None))
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidtoon", *args], capture_output=True, text=True, timeout=300, check=False)


def test_flicker_command(tmp_path: Path) -> None:
    frames = panning(10)
    rng = np.random.default_rng(2)
    src = write_clip(tmp_path / "in.mp4", frames)
    out = write_clip(tmp_path / "out.mp4", shifted(frames, rng.integers(-15, 16, 10).tolist()))
    before = src.read_bytes()
    res = run_cli("flicker", str(src), str(out))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    e_in = float(next(line for line in lines if line.strip().startswith("input")).split()[1])
    e_out = float(next(line for line in lines if line.strip().startswith("output")).split()[1])
    assert e_out > 10 * max(e_in, 1e-6)
    assert "10 frames at 128x96" in res.stdout
    assert src.read_bytes() == before


def test_flicker_command_smaller_shorter_output(tmp_path: Path) -> None:
    # a conversion with --max-side and --end: the input is brought to the output's size, --max-frames cuts
    frames = panning(10)
    src = write_clip(tmp_path / "in.mp4", frames)
    small = [cv2.resize(f, (64, 48), interpolation=cv2.INTER_AREA) for f in frames[:8]]
    out = write_clip(tmp_path / "out.mp4", small)
    res = run_cli("flicker", str(src), str(out))
    assert res.returncode == 1 and "--max-frames" in res.stderr
    res = run_cli("flicker", str(src), str(out), "--max-frames", "8")
    assert res.returncode == 0, res.stderr
    assert "8 frames at 64x48; input resized from 128x96" in res.stdout


def test_flicker_command_start_matches_a_start_conversion(tmp_path: Path) -> None:
    """A conversion made with --start 0.2 (frames 5.. of a 25 fps input) is measured against the same frames
    of IN with --start 0.2; measured from IN's first frame it is compared with the wrong pictures."""
    canvas = texture(96, 128 + 60)  # a pan that speeds up: IN's first frames move unlike OUT's
    frames = [np.ascontiguousarray(canvas[:, x:x + 128]) for x in (0, 1, 2, 3, 4, 10, 16, 22, 28, 34, 40, 46)]
    src = write_clip(tmp_path / "in.mp4", frames)  # 25 fps
    out = write_clip(tmp_path / "out.mp4", frames[5:])
    res = run_cli("flicker", str(src), str(out), "--start", "0.2")
    assert res.returncode == 0, res.stderr
    assert "7 frames at 128x96; input from 0.2 s" in res.stdout
    e_in, e_out = (float(next(line for line in res.stdout.splitlines() if line.strip().startswith(w)).split()[1])
                   for w in ("input", "output"))
    assert e_out == pytest.approx(e_in, rel=0.05, abs=1e-6)  # OUT is IN's frames: no flicker of its own
    wrong = run_cli("flicker", str(src), str(out), "--max-frames", "7")
    assert wrong.returncode == 0, wrong.stderr
    e_wrong = float(next(line for line in wrong.stdout.splitlines() if line.strip().startswith("output")).split()[1])
    assert e_wrong > 3 * max(e_out, 1e-6)
    res = run_cli("flicker", str(src), str(out))
    assert res.returncode == 1 and "--start T" in res.stderr


def test_flicker_start_seeks_instead_of_decoding_everything_before_it(tmp_path: Path) -> None:
    """With a keyframe every 10 frames, --start 2.0 of a 25 fps video begins decoding at the keyframe of
    1.6 s, not at 0, and still yields exactly the frames from 2.0 s on (each frame's grey level is its index)."""
    from vidtoon.commands.flicker import _frames, _seek

    frames = [np.full((48, 64, 3), 4 * i, np.uint8) for i in range(60)]
    src = write_clip(tmp_path / "in.mp4", frames, gop=10)
    with av.open(str(src)) as box:
        stream = box.streams.video[0]
        tb = stream.time_base
        first = _seek(box, stream, tb, Fraction(2), src)
        after = next(box.decode(stream))
    assert first == 0 and Fraction(8, 5) <= after.pts * tb <= 2
    got = [int(round(f.mean() / 4)) for f in _frames(src, start=2.0)]
    assert got == list(range(50, 60))


def test_flicker_refuses_another_picture(tmp_path: Path) -> None:
    """Issue 20: a --compare video (2W x H) was accepted, the input stretched onto it, and '24.40x' reported."""
    frames = panning(6)
    src = write_clip(tmp_path / "in.mp4", frames)
    compare = write_clip(tmp_path / "compare.mp4", [np.concatenate([f, f], axis=1) for f in frames])
    res = run_cli("flicker", str(src), str(compare))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("Error: IN is 128x96 and OUT 256x96: not the same picture")


def test_flicker_command_bad_input(tmp_path: Path) -> None:
    src = write_clip(tmp_path / "in.mp4", panning(6))
    short = write_clip(tmp_path / "short.mp4", panning(4))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    for args, message in [
        ((str(junk), str(src)), "not a readable video"),
        ((str(src), str(tmp_path / "missing.mp4")), "no such file"),
        ((str(src), str(short)), "OUT ended after 4 frames while IN goes on: OUT must be a conversion of IN"),
        ((str(short), str(src)), "IN ended after 4 frames while OUT goes on"),
    ]:
        res = run_cli("flicker", *args)
        assert res.returncode == 1, res.stderr
        assert res.stderr.startswith("Error: ") and message in res.stderr
        assert "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "junk.mp4", "short.mp4"]


@pytest.mark.skipif(not MEDIA.is_dir(), reason="needs /work/shared/media")
def test_real_clip_jitter_raises_error() -> None:
    with av.open(str(MEDIA / "flower.mp4")) as box:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(6), box.decode(video=0))]
    frames = [cv2.resize(f, (320, 180), interpolation=cv2.INTER_AREA) for f in frames]
    rng = np.random.default_rng(3)
    steady, noisy = warping_errors(frames, frames, shifted(frames, rng.integers(-10, 11, 6).tolist()))
    assert noisy > 3 * steady
