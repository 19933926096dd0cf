"""GPU engines' device handling, checked on any machine with stand-ins for CUDA, TensorRT and ONNX Runtime.

- TensorRT binds engines and execution contexts to the CUDA device current when they are made: everything
  must happen inside ``torch.cuda.device(N)``, or on ``cuda:1`` the engine sits on GPU 0.
- ONNX Runtime falls back to the CPU silently when its CUDA provider cannot load: the engine must check the
  providers the session really has.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import vidtoon.engines.tensorrt_engine as trt_engine
from vidtoon.errors import VidtoonError


class _FakeCuda:
    """Tracks the 'current CUDA device' that ``torch.cuda.device(...)`` would set."""

    def __init__(self) -> None:
        self.current = 0

    @contextlib.contextmanager
    def device(self, dev):
        before, self.current = self.current, torch.device(dev).index or 0
        try:
            yield
        finally:
            self.current = before


def _fake_tensorrt(cuda: _FakeCuda, calls: list[tuple[str, int]]) -> SimpleNamespace:
    """Just enough of the TensorRT 10 Python API for TensorRTEngine's load path; records the device of each call."""
    data_type = SimpleNamespace(HALF="half", FLOAT="float")

    class Context:
        pass

    class Engine:
        def create_execution_context(self):
            calls.append(("create_execution_context", cuda.current))
            return Context()

        def get_tensor_dtype(self, name):
            return data_type.HALF

    class Runtime:
        def __init__(self, logger):
            calls.append(("Runtime", cuda.current))

        def deserialize_cuda_engine(self, plan):
            calls.append(("deserialize_cuda_engine", cuda.current))
            return Engine()

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    return SimpleNamespace(Runtime=Runtime, Logger=Logger, DataType=data_type, __version__="10.13.0")


@pytest.fixture
def fake_gpu(monkeypatch):
    cuda = _FakeCuda()
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(trt_engine, "trt", _fake_tensorrt(cuda, calls))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "device", cuda.device)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: SimpleNamespace(device=device))

    def build(onnx_path, profile, workspace_gib=4.0):
        calls.append(("build_plan", cuda.current))
        return b"plan"

    monkeypatch.setattr(trt_engine, "build_plan", build)
    return calls


def test_tensorrt_loads_and_runs_inside_the_engines_device(fake_gpu, tmp_path: Path):
    onnx = tmp_path / "g.onnx"
    onnx.write_bytes(b"not really onnx")
    engine = trt_engine.TensorRTEngine(onnx, device="cuda:1", max_batch=2, log=lambda m: None, cache_dir=tmp_path)
    engine._load(16, 24)  # no cached plan: build, cache, deserialize, make a context
    assert [name for name, _ in fake_gpu] == ["Runtime", "build_plan", "deserialize_cuda_engine", "create_execution_context"]
    engine._load(32, 24)
    fake_gpu.clear()
    engine._load(16, 24)  # the cached plan of the first size
    assert [name for name, _ in fake_gpu] == ["deserialize_cuda_engine", "create_execution_context"]
    engine.close()
    engine2 = trt_engine.TensorRTEngine(onnx, device="cuda:1", max_batch=2, log=lambda m: None, cache_dir=tmp_path)
    engine2._load(32, 24)
    assert fake_gpu and all(device == 1 for _, device in fake_gpu), fake_gpu


# ---- ONNX Runtime's CUDA provider ------------------------------------------------------------------------


def _ort_with_cuda_that(monkeypatch, loads: bool):
    """onnxruntime as a CPU-only machine with a GPU wheel sees it: CUDA listed; ``loads``: whether it starts."""
    ort = pytest.importorskip("onnxruntime")
    real_session = ort.InferenceSession

    class Session(real_session):
        def __init__(self, path, opts=None, providers=None, **kw):
            # what ONNX Runtime does when the CUDA provider's libraries fail to load: log, then use the CPU
            super().__init__(path, opts, providers=["CPUExecutionProvider"], **kw)
            self.asked = providers

        def get_providers(self):
            return (["CUDAExecutionProvider"] if loads else []) + super().get_providers()

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", Session)
    return ort


def test_onnxruntime_cuda_that_fell_back_to_the_cpu_is_an_error(monkeypatch):
    from nets import tiny

    _ort_with_cuda_that(monkeypatch, loads=False)
    from vidtoon.engines.onnxruntime_engine import OnnxRuntimeEngine

    with pytest.raises(VidtoonError, match="CUDA provider did not load"):
        OnnxRuntimeEngine(tiny("fast"), device="cuda", fp16=False, log=lambda m: None)


def test_onnxruntime_cuda_provider_that_loaded_is_used(monkeypatch):
    from nets import tiny

    _ort_with_cuda_that(monkeypatch, loads=True)
    from vidtoon.engines.onnxruntime_engine import OnnxRuntimeEngine

    with OnnxRuntimeEngine(tiny("fast"), device="cuda:1", fp16=False, log=lambda m: None) as engine:
        assert engine.device == "cuda:1"
        assert engine.session.asked[0] == ("CUDAExecutionProvider", {"device_id": 1})


@pytest.mark.parametrize("listed", [False, True])
def test_onnxruntime_cuda_is_checked_before_the_export(monkeypatch, listed):
    """No CUDA provider (not in the wheel, or listed but failing to load): an error before any export,
    which takes minutes for the shipped models."""
    from nets import tiny

    ort = _ort_with_cuda_that(monkeypatch, loads=False)
    if not listed:
        monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    from vidtoon.engines import onnx_export
    from vidtoon.engines.onnxruntime_engine import OnnxRuntimeEngine

    exported: list = []
    monkeypatch.setattr(onnx_export, "cached_onnx", lambda *a, **k: exported.append(a) or pytest.fail("exported"))
    with pytest.raises(VidtoonError, match="no CUDA provider" if not listed else "CUDA provider did not load"):
        OnnxRuntimeEngine(tiny("fast"), device="cuda", fp16=True, log=lambda m: None)
    assert exported == []
