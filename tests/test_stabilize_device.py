"""The stabilizer's warp and blend in PyTorch (vidtoon.stabilize_device), run on the CPU against OpenCV's."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_stabilize import flicker, moving_scene, stylize

from vidtoon.stabilize import Stabilizer
from vidtoon.stabilize_device import DeviceBlender


def both(frames: list[np.ndarray], toons: list[np.ndarray], strength: float) -> tuple[list, list, Stabilizer]:
    """The OpenCV path (Stabilizer.apply) and the device path (analyse, then DeviceBlender on the CPU)."""
    torch.set_num_threads(1)
    ref = Stabilizer(strength=strength)
    opencv = [ref.apply(f, t) for f, t in zip(frames, toons)]
    stab, blender = Stabilizer(strength=strength), DeviceBlender("cpu")
    motions = [stab.analyse(f) for f in frames]  # ahead of the blends, as the flow thread runs
    device = [blender.blend(t, m) for t, m in zip(toons, motions)]
    assert (stab.blended, stab.cuts) == (ref.blended, ref.cuts)
    return opencv, device, stab


@pytest.mark.parametrize("pan, speed, strength", [(2, 7, 0.6), (0, 5, 0.9), (3, 9, 0.6)])
def test_device_path_matches_opencv_within_one_level(pan: int, speed: int, strength: float) -> None:
    frames, _ = moving_scene(12, pan=pan, speed=speed, seed=pan + speed)
    toons = flicker(frames, seed=speed)
    opencv, device, stab = both(frames, toons, strength)
    assert stab.blended == len(frames) - 1  # every frame but the first was blended: the warp was exercised
    for i, (a, b) in enumerate(zip(opencv, device)):
        assert a.shape == b.shape and b.dtype == np.uint8
        diff = np.abs(a.astype(np.int16) - b)
        assert diff.max() <= 1, f"frame {i}: {diff.max()} levels from OpenCV's result ({(diff > 1).sum()} pixels)"


def test_device_path_passes_first_frames_and_cuts_through() -> None:
    frames, _ = moving_scene(4)
    other, _ = moving_scene(3, seed=9)
    other = [255 - f for f in other]  # a different shot: a cut
    frames = frames + other
    toons = [stylize(f) for f in frames]
    opencv, device, stab = both(frames, toons, 0.6)
    assert stab.cuts == 1
    assert np.array_equal(device[0], toons[0]) and np.array_equal(device[4], toons[4])
    assert all(np.abs(a.astype(np.int16) - b).max() <= 1 for a, b in zip(opencv, device))
