"""Encoder settings that follow the engine: x264's and OpenCV's threads next to a CPU generator, NVENC's cq."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from mediagen import make_video

from vidtoon.pipeline import convert


def _convert(src: Path, out: Path, engine, **kw):  # type: ignore[no-untyped-def]
    return convert(src, out, engine=engine, **kw)


@pytest.mark.parametrize("device, threads", [("cpu", "1"), ("cuda:0 (fake)", None)])
def test_x264_threads_follow_the_engine_device(tmp_path: Path, monkeypatch, device: str, threads: str | None) -> None:
    # a CPU generator keeps the cores busy, so x264 gets one thread; next to a GPU it keeps its own threading
    from vidtoon.engines.base import Engine
    import vidtoon.pipeline as pipeline

    class Passthrough(Engine):
        name = "passthrough"

        def infer(self, frames: np.ndarray) -> np.ndarray:
            return frames

    engine = Passthrough()
    engine.device = device
    seen: list[dict[str, str]] = []
    real = pipeline.VideoWriter

    def spy(out, info, size, codec, pix_fmt, options):  # noqa: ANN001, ANN202
        seen.append(dict(options))
        return real(out, info, size, codec, pix_fmt, options)

    monkeypatch.setattr(pipeline, "VideoWriter", spy)
    src = make_video(tmp_path / "in.mp4", frames=6)
    # stabilize off: a fake CUDA engine would send the stabilizer to a device this machine may not have
    _convert(src, tmp_path / "out.mp4", engine, batch_size=2, stabilize=False)
    assert len(seen) == 1 and seen[0].get("threads") == threads
    assert seen[0]["preset"] == "veryfast" and seen[0]["crf"] == "18"
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6


def test_opencv_runs_single_threaded_during_a_cpu_convert_and_is_restored(tmp_path: Path) -> None:
    import cv2
    from vidtoon.engines.base import Engine

    class Recording(Engine):
        name = "recording"
        seen: list[int] = []

        def infer(self, frames: np.ndarray) -> np.ndarray:
            self.seen.append(cv2.getNumThreads())
            return frames

    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        engine = Recording()
        _convert(make_video(tmp_path / "in.mp4", frames=4), tmp_path / "out.mp4", engine, batch_size=2)
        assert engine.seen == [1, 1]
        assert cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(before)


@pytest.mark.parametrize(("crf", "cq"), [(0, "1"), (1, "1"), (18, "18"), (51, "51"), (52, "51"), (63, "51")])
def test_nvenc_gets_a_cq_in_its_range(crf: int, cq: str) -> None:
    """NVENC's cq is 1-51 with 0 = automatic: CRF 0 (lossless in x264) must not become 'automatic'."""
    from vidtoon.video.writer import encoder_options

    for encoder in ("h264_nvenc", "hevc_nvenc"):
        opts = encoder_options(encoder, crf, "veryfast")
        assert opts == {"rc": "vbr", "cq": cq, "b": "0", "preset": "p2"}
