"""The temporal stabilizer (vidtoon.stabilize): less flicker, no ghosts, cuts never blended."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vidtoon.metrics import warping_errors
from vidtoon.stabilize import Stabilizer

MEDIA = Path("/work/shared/media")
H, W = 120, 160


def texture(height: int, width: int, seed: int = 0, cell: int = 8) -> np.ndarray:
    """A smooth random RGB picture with texture everywhere, so optical flow can lock on."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // cell + 1, width // cell + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def moving_scene(n: int, pan: int = 2, speed: int = 5, seed: int = 0) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """A camera panning over a texture by ``pan`` px/frame while a textured 32x32 object crosses it at
    ``speed`` px/frame in the other direction; returns the frames and the object's top-left corners."""
    canvas = texture(H, W + n * pan, seed)
    obj = np.clip(texture(32, 32, seed + 1, cell=4).astype(np.int16) + 60, 0, 255).astype(np.uint8)
    frames, corners = [], []
    for i in range(n):
        frame = np.ascontiguousarray(canvas[:, i * pan : i * pan + W])
        x, y = W - 40 - i * speed, 40
        frame[y : y + 32, x : x + 32] = obj
        frames.append(frame)
        corners.append((x, y))
    return frames, corners


def stylize(frame: np.ndarray) -> np.ndarray:
    """A deterministic stand-in stylization: posterized, colours rotated (so toon != input)."""
    return (frame[..., ::-1] // 32 * 32 + 16).astype(np.uint8)


def flicker(frames: list[np.ndarray], seed: int = 0, amount: float = 12.0) -> list[np.ndarray]:
    """Stylize every frame and add per-frame flicker: a global colour shift and blotchy local noise."""
    rng = np.random.default_rng(seed)
    out = []
    for f in frames:
        h, w = f.shape[:2]
        blotches = cv2.resize(rng.normal(0, amount, (h // 16 + 1, w // 16 + 1, 3)).astype(np.float32), (w, h))
        shift = rng.normal(0, amount / 2, 3)
        out.append(np.clip(stylize(f) + blotches + shift, 0, 255).astype(np.uint8))
    return out


def run(stab: Stabilizer, frames: list[np.ndarray], toons: list[np.ndarray]) -> list[np.ndarray]:
    stab.reset()
    return [stab.apply(f, t) for f, t in zip(frames, toons)]


def test_shape_dtype_and_first_frame() -> None:
    frames, _ = moving_scene(3)
    toons = flicker(frames)
    stab = Stabilizer()
    outs = run(stab, frames, toons)
    for out in outs:
        assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert np.array_equal(outs[0], toons[0]) and outs[0] is not toons[0]
    assert not np.array_equal(outs[2], toons[2])  # it did blend
    assert stab.blended == 2 and stab.cuts == 0


def test_odd_size_and_strength_zero() -> None:
    frames = [texture(37, 51)] * 3
    toons = flicker(frames)
    outs = run(Stabilizer(flow_max_side=24), frames, toons)
    assert outs[-1].shape == (37, 51, 3)
    assert all(np.array_equal(o, t) for o, t in zip(run(Stabilizer(strength=0.0), frames, toons), toons))


@pytest.mark.parametrize("shape", [(2, 2), (11, 11), (16, 400), (20, 1000)])
def test_tiny_frames_and_thin_strips_pass_through(shape: tuple[int, int]) -> None:
    # optical flow refuses sides under 12 px and strips whose pyramid runs out of rows (OpenCV errors that a
    # 2 x 2 video turned into an "internal error"): such frames are returned unblended
    frame = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    toons = flicker([frame] * 3)
    outs = run(Stabilizer(), [frame] * 3, toons)
    assert all(np.array_equal(o, t) for o, t in zip(outs, toons))


def test_reduces_flicker_on_static_scene() -> None:
    frames = [texture(H, W)] * 12
    toons = flicker(frames)
    before, after = warping_errors(frames, toons, run(Stabilizer(), frames, toons))
    assert after < 0.35 * before


def test_reduces_flicker_on_moving_scene() -> None:
    frames, _ = moving_scene(12)
    toons = flicker(frames)
    before, after = warping_errors(frames, toons, run(Stabilizer(), frames, toons))
    assert after < 0.6 * before


def test_stronger_is_steadier() -> None:
    frames = [texture(H, W)] * 10
    toons = flicker(frames)
    errors = warping_errors(frames, *(run(Stabilizer(strength=s), frames, toons) for s in (0.3, 0.6, 0.85)))
    assert errors[0] > errors[1] > errors[2]


def around_object(pan: int, speed: int, seed: int = 0) -> list[np.ndarray]:
    """|stabilized - stylized| around the moving object of :func:`moving_scene`, frame 1 on.

    The stylization is steady, so a perfect stabilizer returns it unchanged: any difference is a ghost or a
    smear. The region is the object now, where it was one frame ago (the trail) and a margin around both.
    """
    frames, corners = moving_scene(10, pan=pan, speed=speed, seed=seed)
    toons = [stylize(f) for f in frames]
    outs = run(Stabilizer(strength=0.9), frames, toons)
    diffs = []
    for i in range(1, len(frames)):
        (x, y), (px, _) = corners[i], corners[i - 1]
        y0, y1, x0, x1 = y - 8, y + 40, min(x, px) - 8, max(x, px) + 40
        diffs.append(np.abs(outs[i][y0:y1, x0:x1].astype(np.int16) - toons[i][y0:y1, x0:x1]))
    return diffs


def test_no_ghost_around_moving_object() -> None:
    for i, diff in enumerate(around_object(pan=2, speed=7), start=1):
        assert diff.mean() < 2.0, f"frame {i}: mean difference {diff.mean():.2f} around the object"
        assert np.percentile(diff, 99) < 24, f"frame {i}: ghost pixels around the object"


@pytest.mark.parametrize("pan, speed, seed", [(2, 7, 1), (2, 7, 2), (0, 5, 3), (3, 9, 4), (1, 4, 5)])
def test_no_ghost_at_other_speeds(pan: int, speed: int, seed: int) -> None:
    # the same check over more scenes (the flow misses a fast object differently in each); the previous
    # photometric settings (unblurred, 10/24, erode 3) left a trail averaging 2.0-2.6 levels in three of them
    for i, diff in enumerate(around_object(pan, speed, seed), start=1):
        assert diff.mean() < 2.0, f"frame {i}: mean difference {diff.mean():.2f} around the object"
        assert np.percentile(diff, 99) < 32, f"frame {i}: ghost pixels around the object"


def test_reduces_flicker_on_texture_the_flow_cannot_follow() -> None:
    # a still scene whose middle is "running water": fine texture redrawn every frame (no flow can follow
    # it), and a stylization that flickers there; the blurred photometric test must still let it blend
    rng = np.random.default_rng(0)
    base = texture(H, W)
    frames, toons = [], []
    for _ in range(12):
        f = base.astype(np.int16)
        f[30:90, 40:120] += rng.normal(0, 25, (60, 80, 1)).astype(np.int16)
        f = np.clip(f, 0, 255).astype(np.uint8)
        frames.append(f)
        toons.append(flicker([f], seed=int(rng.integers(1 << 30)))[0])
    outs = run(Stabilizer(), frames, toons)
    region = (slice(40, 80), slice(50, 110))  # inside the water, away from the eroded band at its edge
    jitter = lambda clip: np.mean([np.abs(b[region].astype(float) - a[region]).mean()  # noqa: E731
                                   for a, b in zip(clip[1:], clip[2:])])
    assert jitter(outs) < 0.6 * jitter(toons)


def test_scene_cut_is_not_blended() -> None:
    shot_a, _ = moving_scene(5, seed=0)
    shot_b = [np.clip(f.astype(np.int16) // 2 + 128, 0, 255).astype(np.uint8) for f in moving_scene(5, seed=7)[0]]
    frames = shot_a + shot_b
    toons = flicker(frames)
    stab = Stabilizer()
    outs = run(stab, frames, toons)
    assert np.array_equal(outs[5], toons[5])
    assert stab.cuts == 1
    assert not np.array_equal(outs[6], toons[6])  # blending resumes inside the new shot


def test_cut_between_look_alike_shots_is_not_blended() -> None:
    # same kind of picture and histogram, different content: caught by the flow, not the histogram
    shot_a, _ = moving_scene(4, seed=0)
    shot_b, _ = moving_scene(4, seed=3)
    frames = shot_a + shot_b
    toons = flicker(frames)
    stab = Stabilizer()
    outs = run(stab, frames, toons)
    assert np.array_equal(outs[4], toons[4])
    assert stab.cuts == 1


def test_reset_and_size_change_start_fresh() -> None:
    frames = [texture(H, W)] * 3
    toons = flicker(frames)
    stab = Stabilizer()
    run(stab, frames, toons)
    stab.reset()
    assert np.array_equal(stab.apply(frames[0], toons[1]), toons[1])
    small = texture(60, 80)
    assert np.array_equal(stab.apply(small, stylize(small)), stylize(small))


def test_bad_arguments() -> None:
    stab = Stabilizer()
    frame = texture(H, W)
    with pytest.raises(ValueError, match="differ in size"):
        stab.apply(frame, frame[:-2])
    with pytest.raises(ValueError, match="uint8"):
        stab.apply(frame, frame.astype(np.float32))
    for kwargs in ({"strength": 1.0}, {"strength": -0.1}, {"flow_max_side": 4}, {"cut_threshold": 0.0}):
        with pytest.raises(ValueError):
            Stabilizer(**kwargs)


@pytest.mark.skipif(not (MEDIA / "flower.mp4").exists(), reason="needs /work/shared/media")
def test_real_clip_flicker_reduced() -> None:
    with av.open(str(MEDIA / "flower.mp4")) as box:
        frames = [cv2.resize(f.to_ndarray(format="rgb24"), (320, 180), interpolation=cv2.INTER_AREA)
                  for _, f in zip(range(12), box.decode(video=0))]
    toons = flicker(frames, amount=8.0)
    before, after = warping_errors(frames, toons, run(Stabilizer(), frames, toons))
    assert after < 0.6 * before
