"""The stabilizer's warp and blend in PyTorch (vidtoon.stabilize_device), run on the CPU against OpenCV's."""
from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from test_stabilize import flicker, moving_scene, stylize

from vidtoon.stabilize import Stabilizer
from vidtoon.stabilize_device import DeviceBlender


def both(frames: list[np.ndarray], toons: list[np.ndarray], strength: float,
         device: str = "cpu") -> tuple[list, list, Stabilizer]:
    """The OpenCV path (Stabilizer.apply) and the device path (analyse, then DeviceBlender on ``device``)."""
    torch.set_num_threads(1)
    ref = Stabilizer(strength=strength)
    opencv = [ref.apply(f, t) for f, t in zip(frames, toons)]
    stab, blender = Stabilizer(strength=strength), DeviceBlender(device)
    motions = [stab.analyse(f) for f in frames]  # ahead of the blends, as the flow thread runs
    device = [blender.blend(t, m) for t, m in zip(toons, motions)]
    assert (stab.blended, stab.cuts) == (ref.blended, ref.cuts)
    return opencv, device, stab


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("pan, speed, strength", [(2, 7, 0.6), (0, 5, 0.9), (3, 9, 0.6)])
def test_device_path_matches_opencv_within_one_level(pan: int, speed: int, strength: float, device: str) -> None:
    frames, _ = moving_scene(12, pan=pan, speed=speed, seed=pan + speed)
    toons = flicker(frames, seed=speed)
    opencv, device_out, stab = both(frames, toons, strength, device)
    assert stab.blended == len(frames) - 1  # every frame but the first was blended: the warp was exercised
    for i, (a, b) in enumerate(zip(opencv, device_out)):
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


def _convert_recording(src, out, engine, monkeypatch) -> tuple[list[np.ndarray], set[str]]:
    """Convert ``src`` with the stabilizer on; the frames handed to the encoder, and the threads that ran
    the stabilizer's flow."""
    import threading

    from vidtoon import pipeline
    from vidtoon.stabilize import Stabilizer

    written: list[np.ndarray] = []
    threads: set[str] = set()
    real_write, real_analyse = pipeline.VideoWriter.write, Stabilizer.analyse

    def write(self, rgb, *args, **kw):  # type: ignore[no-untyped-def]
        written.append(rgb.copy())
        return real_write(self, rgb, *args, **kw)

    def analyse(self, src_rgb):  # type: ignore[no-untyped-def]
        threads.add(threading.current_thread().name)
        return real_analyse(self, src_rgb)

    monkeypatch.setattr(pipeline.VideoWriter, "write", write)
    monkeypatch.setattr(Stabilizer, "analyse", analyse)
    pipeline.convert(src, out, engine=engine, batch_size=3, stabilize=True)
    monkeypatch.undo()
    return written, threads


def test_pipeline_device_path_on_the_cpu_matches_the_opencv_path(tmp_path, identity_engine, monkeypatch) -> None:
    """The GPU engines' path (flow in its own thread, warp and blend by DeviceBlender after inference),
    forced onto the CPU, writes the frames the CPU engines' path writes, within 1 level."""
    from conftest import packets, video_pts
    from mediagen import make_video

    from vidtoon import pipeline

    src = make_video(tmp_path / "in.mp4", frames=14, size=(96, 64))
    cpu, cpu_threads = _convert_recording(src, tmp_path / "cpu.mp4", identity_engine, monkeypatch)
    assert cpu_threads == {"vidtoon-encode"}  # on the CPU nothing changed: analysed in the encoding thread
    monkeypatch.setattr(pipeline, "_device_blender", lambda engine: DeviceBlender("cpu"))
    dev, dev_threads = _convert_recording(src, tmp_path / "dev.mp4", identity_engine, monkeypatch)
    assert dev_threads == {"vidtoon-flow"}
    assert len(dev) == len(cpu) == 14
    diffs = [int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(cpu, dev)]
    assert max(diffs) <= 1, diffs
    # the moving clip was really blended (identity engine: the stabilizer is what changes frames 1..13)
    with av.open(str(src)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(decoded[1:], dev[1:])) > 1
    assert video_pts(tmp_path / "dev.mp4") == video_pts(src)
    assert packets(tmp_path / "dev.mp4", 1) == packets(src, 1)
