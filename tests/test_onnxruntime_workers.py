"""The ONNX Runtime engine on a CPU: frames side by side on single-threaded worker sessions, streamed from one
queue (submit, in_flight), and big frames one after the other."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from nets import tiny
from test_engines import assert_agree, frames
from vidtoon.engines.torch_engine import TorchEngine


def test_onnxruntime_runs_frames_side_by_side_on_several_threads(cache_dir):
    pytest.importorskip("onnxruntime")
    from vidtoon.engines.onnxruntime_engine import OnnxRuntimeEngine

    net = tiny("fast")
    batch = frames(5, 21, 30)
    with OnnxRuntimeEngine(net, threads=1) as one, OnnxRuntimeEngine(net, threads=2) as two:
        assert (one.preferred_batch_size, one.in_flight) == (1, 1)
        assert (two.preferred_batch_size, two.in_flight) == (4, 2)
        ref = one.infer(batch).astype(int)
        out = two.infer(batch)
        # five frames on single-threaded worker sessions (one per worker that took a frame), in order
        assert {key[1:] for key in two._shaped} <= {(1, 0), (1, 1)} and two._shaped
        assert_agree(out, ref)
        single = two.infer(batch[2:3])  # one frame: one session with both threads
        assert ((1, 3, 24, 32), 2, 0) in two._shaped
        assert_agree(single, ref[2:3])


def test_onnxruntime_streams_submitted_batches_through_its_workers(cache_dir, monkeypatch):
    pytest.importorskip("onnxruntime")
    from vidtoon.engines.onnxruntime_engine import OnnxRuntimeEngine

    net = tiny("fast")
    batch = frames(6, 21, 30)
    with OnnxRuntimeEngine(net, threads=2) as two:
        ref = two.infer(batch)
        run, seen = two._run, []

        def slow_run(frames, session_for):  # frames that take a while, so both workers get some
            time.sleep(0.05)
            seen.append((threading.current_thread().name, int(frames[0, 0, 0, 0])))
            return run(frames, session_for)

        monkeypatch.setattr(two, "_run", slow_run)
        first, second = two.submit(batch[:3]), two.submit(batch[3:])  # the second before the first is collected
        assert len(seen) < 6  # submit did not wait for the frames
        np.testing.assert_array_equal(first(), ref[:3])
        np.testing.assert_array_equal(second(), ref[3:])
        assert len({name for name, _ in seen}) == 2  # both workers ran frames
        assert {key[1:] for key in two._shaped} == {(1, 0), (1, 1)}


def test_onnxruntime_runs_big_frames_one_after_the_other(cache_dir, monkeypatch):
    pytest.importorskip("onnxruntime")
    from vidtoon.engines import onnxruntime_engine
    from vidtoon.engines.onnxruntime_engine import OnnxRuntimeEngine

    monkeypatch.setattr(onnxruntime_engine, "SIDE_BY_SIDE_MAX_PIXELS", 20 * 30 - 1)  # "big": 21 x 30 and up
    net = tiny("fast")
    batch = frames(3, 21, 30)
    with TorchEngine(net) as ref_engine, OnnxRuntimeEngine(net, threads=2) as two:
        out = two.infer(batch)
        assert list(two._shaped) == [((1, 3, 24, 32), 2, 0)]  # every frame on the one 2-thread session
        assert_agree(out, ref_engine.infer(batch))


def test_default_threads():
    pytest.importorskip("onnxruntime")
    from vidtoon.engines.onnxruntime_engine import default_threads

    assert [default_threads(c, reserve=1) for c in (1, 2, 4, 16)] == [1, 1, 3, 15]
    assert default_threads(8, reserve=2) == 6
    assert default_threads(2) == 2
