"""Engines: ONNX Runtime vs PyTorch agreement, the registry, --engine auto, and the cache keys."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vidtoon.engines as engines
from vidtoon.engines import ENGINES, choose_engine, create_engine, engine_class, pick_engine
from vidtoon.engines.cache import (
    onnx_cache_name,
    tensorrt_cache_name,
    user_cache_dir,
    weights_hash,
)
from vidtoon.engines.tensorrt_engine import plan_path, profile_shapes
from vidtoon.engines.torch_engine import TorchEngine
from vidtoon.errors import VidtoonError
from nets import tiny

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")




def frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB frames (a blurred noise image per frame), uint8."""
    rng = np.random.default_rng(seed)
    small = torch.from_numpy(rng.random((n, 3, h // 4 + 2, w // 4 + 2), dtype=np.float32))
    big = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return (big * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def assert_agree(out: np.ndarray, ref: np.ndarray) -> None:
    """Two engines' uint8 frames agree: float rounding may move a value across a .5 boundary (one level, rarely),
    but at least 99% of the values are equal and the mean difference is at most 0.05 levels (an offset of one
    level everywhere, or a wrong input scale, fails)."""
    assert out.shape == ref.shape
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.99 and diff.mean() <= 0.05, (diff.max(), diff.mean())


# ---- ONNX Runtime engine ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["fast", "cartoongan"])
@pytest.mark.parametrize("shape", [(2, 37, 53), (1, 64, 48), (1, 5, 7)])
def test_onnxruntime_agrees_with_torch(cache_dir, arch, shape):
    pytest.importorskip("onnxruntime")
    from vidtoon.engines.onnxruntime_engine import OnnxRuntimeEngine

    net = tiny(arch)
    batch = frames(*shape)
    with TorchEngine(net) as ref_engine, OnnxRuntimeEngine(net, threads=1) as engine:
        ref, out = ref_engine.infer(batch), engine.infer(batch)
    assert out.shape == batch.shape and out.dtype == np.uint8
    assert_agree(out, ref)
    assert not np.array_equal(out, batch)  # the generator did something


def test_onnxruntime_engine_takes_an_onnx_file_and_caches(cache_dir):
    pytest.importorskip("onnxruntime")
    from vidtoon.engines.onnxruntime_engine import OnnxRuntimeEngine

    net = tiny("fast")
    batch = frames(1, 24, 40)
    with OnnxRuntimeEngine(net, threads=1) as from_net:
        assert from_net.onnx_path.parent == cache_dir / "onnx"
        assert from_net.device == "cpu (1 thread)"
        with OnnxRuntimeEngine(from_net.onnx_path, threads=1) as from_file:
            assert np.array_equal(from_file.infer(batch), from_net.infer(batch))
        with pytest.raises(ValueError, match="uint8"):
            from_net.infer(batch.astype(np.float32))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["toon", "fast-full"])
def test_onnxruntime_one_export_serves_every_strength_and_outline(cache_dir, arch):
    """Issue 20: every new --strength/--outline value exported the model again (35-50 s on a CPU)."""
    pytest.importorskip("onnxruntime")
    from vidtoon.engines.onnxruntime_engine import OnnxRuntimeEngine
    from vidtoon.networks import apply_controls

    batch = frames(1, 24, 40)
    paths = set()
    folder = cache_dir / "onnx"
    before = set(folder.iterdir()) if folder.is_dir() else set()
    for strength, outline in [(1.0, 1.0), (0.6, 1.0), (0.7, 1.8)]:
        net = apply_controls(tiny(arch), strength, outline)
        with TorchEngine(net) as ref_engine, OnnxRuntimeEngine(net, threads=1) as engine:
            paths.add(engine.onnx_path)
            ref = ref_engine.infer(batch).astype(int)
            assert np.abs(engine.infer(batch).astype(int) - ref).max() <= 1  # each run at its own controls
    assert len(paths) == 1 and len(set(folder.iterdir()) - before) <= 1  # one export (or none: already cached)


def test_onnxruntime_engine_pads_for_an_aligned_graph_and_keeps_a_general_one_working(cache_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from vidtoon.engines.onnx_export import export_onnx
    from vidtoon.engines.onnxruntime_engine import OnnxRuntimeEngine

    net = tiny("fast")
    general = tmp_path / "general.onnx"
    export_onnx(net, general)  # what `vidtoon export` writes: any size, pads inside
    with TorchEngine(net) as ref_engine, OnnxRuntimeEngine(net, threads=1) as aligned, \
            OnnxRuntimeEngine(general, threads=1) as from_file:
        assert aligned.aligned and aligned.multiple == 8 and not from_file.aligned
        for shape in [(1, 21, 30), (1, 40, 56), (2, 9, 13), (1, 21, 30)]:
            batch = frames(*shape)
            ref = ref_engine.infer(batch).astype(int)
            for engine in (aligned, from_file):
                out = engine.infer(batch)
                assert_agree(out, ref)
        # one session specialised per input shape (and thread count and worker slot), a few kept
        assert len(aligned._shaped) == 3 and list(aligned._shaped)[-1] == ((1, 3, 24, 32), 1, 0)


# ---- registry and --engine auto --------------------------------------------------------------------------


def test_registry_names_engines_and_extras(monkeypatch):
    assert set(ENGINES) == {"torch", "onnxruntime", "tensorrt"}
    with pytest.raises(VidtoonError, match=r"choose one of: auto, torch, onnxruntime, tensorrt"):
        engine_class("openvino")
    real_available = engines.available
    monkeypatch.setattr(engines, "available", lambda pkg: pkg != "tensorrt" and real_available(pkg))
    with pytest.raises(VidtoonError, match=r"needs tensorrt and an NVIDIA GPU with its driver \(pip install 'vidtoon\[tensorrt\]'\)"):
        engine_class("tensorrt")
    # onnxruntime missing: the import of the engine module fails, the message names the extra
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.delitem(sys.modules, "vidtoon.engines.onnxruntime_engine", raising=False)
    with pytest.raises(VidtoonError, match=r"needs onnxruntime \(pip install 'vidtoon\[onnx\]'\)"):
        engine_class("onnxruntime")


@pytest.mark.parametrize(
    ("device", "cuda", "trt", "ort", "expected"),
    [
        ("auto", True, True, True, ("tensorrt", "cuda")),
        ("auto", True, False, True, ("torch", "cuda")),
        ("cuda:1", True, True, True, ("tensorrt", "cuda:1")),
        ("cuda", True, False, False, ("torch", "cuda")),
        ("auto", False, True, True, ("onnxruntime", "cpu")),
        ("auto", False, False, False, ("torch", "cpu")),
        ("cpu", True, True, True, ("onnxruntime", "cpu")),
        ("cpu", True, True, False, ("torch", "cpu")),
    ],
)
def test_pick_engine_order(device, cuda, trt, ort, expected):
    name, dev, reason = pick_engine(device, cuda=cuda, tensorrt=trt, onnxruntime=ort)
    assert (name, dev) == expected
    assert reason and ":" in reason


def test_pick_engine_errors():
    with pytest.raises(VidtoonError, match="no CUDA GPU"):
        pick_engine("cuda", cuda=False, tensorrt=True, onnxruntime=True)
    with pytest.raises(VidtoonError, match="unknown device 'tpu'"):
        pick_engine("tpu", cuda=False, tensorrt=False, onnxruntime=True)


@pytest.mark.parametrize("engine", ["torch", "onnxruntime", "auto"])
def test_device_checked_once_for_every_engine(engine, monkeypatch):
    """Issue 20: --engine torch --device cuda without a GPU was an 'unexpected internal error', --device foo
    printed torch's list of device types."""
    from vidtoon.engines import check_device, create_engine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(VidtoonError, match=r"^device 'cuda' was asked for but no CUDA GPU is available \(use --device cpu\)$"):
        create_engine(engine, tiny("fast"), device="cuda")
    with pytest.raises(VidtoonError, match=r"^unknown device 'foo' \(choose one of: auto, cpu, cuda, cuda:N\)$"):
        create_engine(engine, tiny("fast"), device="foo")
    with pytest.raises(VidtoonError, match="has 1 CUDA GPU"):
        check_device("cuda:1", cuda_count=1)
    check_device("cuda:0", cuda_count=1)


def test_choose_engine_probes_the_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(engines, "available", lambda pkg: pkg in {"tensorrt", "onnxruntime", "onnx", "onnxscript"})
    assert choose_engine("auto")[:2] == ("tensorrt", "cuda")
    # without the exporter (onnxscript) neither ONNX-based engine can start
    monkeypatch.setattr(engines, "available", lambda pkg: pkg in {"tensorrt", "onnxruntime", "onnx"})
    assert choose_engine("auto")[:2] == ("torch", "cuda")
    # without onnxruntime, which checks every export, the TensorRT path cannot start either
    monkeypatch.setattr(engines, "available", lambda pkg: pkg in {"tensorrt", "onnx", "onnxscript"})
    assert choose_engine("auto")[:2] == ("torch", "cuda")
    monkeypatch.setattr(engines, "available", lambda pkg: False)
    assert choose_engine("auto")[:2] == ("torch", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(engines, "available", lambda pkg: pkg == "tensorrt")  # TensorRT without a GPU is no use
    assert choose_engine("auto")[:2] == ("torch", "cpu")
    monkeypatch.setattr(engines, "available", lambda pkg: True)
    assert choose_engine("auto")[:2] == ("onnxruntime", "cpu")
    monkeypatch.setattr(engines, "available", lambda pkg: pkg != "onnxscript")
    assert choose_engine("auto")[:2] == ("torch", "cpu")


def test_every_extra_installs_what_its_engine_needs(monkeypatch):
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    extras = cfg["options.extras_require"]
    for name, needs in engines.NEEDS.items():
        if not needs:
            continue
        listed = {line.split(">")[0].split("=")[0].split("<")[0].strip() for line in extras[engines.EXTRAS[name]].splitlines()}
        assert set(needs) <= listed, (name, set(needs) - listed)
    # an engine whose export cannot run is refused before any work, naming the extra
    monkeypatch.setattr(engines, "available", lambda pkg: pkg != "onnxruntime")
    monkeypatch.setattr(engines, "engine_class", lambda name: object)
    monkeypatch.setattr(engines, "check_device", lambda device, **k: None)  # as on a machine with a GPU
    with pytest.raises(VidtoonError, match=r"needs onnxruntime to export the generator \(pip install 'vidtoon\[tensorrt\]'\)"):
        create_engine("tensorrt", tiny("fast"), device="cuda")


def test_create_engine_auto_on_this_machine(cache_dir):
    name, device, _ = choose_engine("auto")
    with create_engine("auto", tiny("fast"), threads=1) if name == "onnxruntime" else create_engine("auto", tiny("fast")) as engine:
        assert engine.name == name
        assert engine.infer(frames(1, 16, 16)).shape == (1, 16, 16, 3)


# ---- cache keys and TensorRT profiles (pure; no GPU needed) -----------------------------------------------


def test_user_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDTOON_CACHE_DIR", str(tmp_path / "v"))
    assert user_cache_dir() == tmp_path / "v"
    monkeypatch.delenv("VIDTOON_CACHE_DIR")
    # a dependency since issue 21 (setup.cfg): an environment installed before it skips this part
    pytest.importorskip("platformdirs")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert user_cache_dir() == tmp_path / "xdg" / "vidtoon"


def test_weights_hash_follows_every_weight():
    net = tiny("fast")
    base = weights_hash("fast", net.config, net.state_dict().items())
    assert base == weights_hash("fast", dict(net.config), tiny("fast").state_dict().items())
    state = {k: v.clone() for k, v in net.state_dict().items()}
    key = sorted(state)[-1]
    state[key].view(-1)[0] += 1e-6
    assert weights_hash("fast", net.config, state.items()) != base
    assert weights_hash("cartoongan", net.config, net.state_dict().items()) != base
    assert weights_hash("fast", {**net.config, "n_res": 2}, net.state_dict().items()) != base
    half = {k: v.half() for k, v in net.state_dict().items()}
    assert weights_hash("fast", net.config, half.items()) != base


def test_onnx_cache_name_changes_with_each_part():
    base = dict(weights="ab" * 32, fp16=False, opset=18, torch_version="2.14.1")
    names = {onnx_cache_name(**base)}
    for change in [dict(weights="cd" * 32), dict(fp16=True), dict(opset=19), dict(torch_version="2.15.0"),
                   dict(aligned=True)]:
        names.add(onnx_cache_name(**{**base, **change}))
    assert len(names) == 6
    assert onnx_cache_name(**base) == onnx_cache_name(**base)


def test_tensorrt_cache_name_changes_with_each_part():
    profile = profile_shapes(720, 1280, 8)
    base = dict(onnx_hash="12" * 32, profile=profile, precision="fp16", trt_version="10.13.0", gpu_name="NVIDIA H100 80GB HBM3")
    name = tensorrt_cache_name(**base)
    assert name.endswith(".engine") and "8x3x720x1280" in name and "fp16" in name and "nvidia-h100-80gb-hbm3" in name
    changes = [
        dict(onnx_hash="34" * 32),
        dict(profile=profile_shapes(1080, 1920, 8)),
        dict(profile=profile_shapes(720, 1280, 4)),
        dict(profile=profile_shapes(720, 1280, 8, opt_batch=2)),
        dict(precision="fp32"),
        dict(trt_version="11.0.0"),
        dict(gpu_name="NVIDIA GeForce RTX 4090"),
    ]
    names = {name} | {tensorrt_cache_name(**{**base, **c}) for c in changes}
    assert len(names) == len(changes) + 1
    assert tensorrt_cache_name(**base) == name


def test_profile_shapes():
    assert profile_shapes(721, 1281, 8) == {"input": ((1, 3, 721, 1281), (8, 3, 721, 1281), (8, 3, 721, 1281))}
    assert profile_shapes(360, 640, 8, opt_batch=4)["input"][1] == (4, 3, 360, 640)
    with pytest.raises(ValueError, match="at least 8x8"):
        profile_shapes(4, 640, 8)
    with pytest.raises(ValueError, match="opt_batch"):
        profile_shapes(360, 640, 2, opt_batch=4)


def test_network_flags_strongly_typed():
    from types import SimpleNamespace

    from vidtoon.engines.tensorrt_engine import network_flags

    assert network_flags(SimpleNamespace(NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=2))) == 4
    assert network_flags(SimpleNamespace(NetworkDefinitionCreationFlag=SimpleNamespace())) == 0


def test_plan_path_under_the_cache(tmp_path):
    path = plan_path("ab" * 32, profile_shapes(360, 640, 4), "fp16", "10.13.0", "NVIDIA L4", tmp_path)
    assert path.parent == tmp_path / "tensorrt" and path.suffix == ".engine"


# ---- GPU ---------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@requires_cuda
def test_tensorrt_agrees_with_torch(cache_dir):
    pytest.importorskip("tensorrt")
    from vidtoon.engines.tensorrt_engine import TensorRTEngine

    messages: list[str] = []
    net = tiny("fast")
    batch = frames(3, 37, 53)
    with TorchEngine(net, device="cuda", half=False) as ref_engine:
        ref = ref_engine.infer(batch)
    with TensorRTEngine(net, device="cuda", max_batch=2, log=messages.append) as engine:
        out = engine.infer(batch)  # 3 frames through a max-batch-2 plan: split in two
    assert any("Building a TensorRT engine for 53x37" in m for m in messages)
    assert out.shape == batch.shape
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 3  # fp16 plan: FP16_ATOL is ~2.5 levels
    messages.clear()
    with TensorRTEngine(net, device="cuda", max_batch=2, log=messages.append) as engine:
        engine.infer(batch[:1])
    assert not any("Building" in m for m in messages)  # the second engine found the cached plan


@pytest.mark.gpu
@requires_cuda
def test_onnxruntime_cuda_provider(cache_dir):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime without the CUDA provider")
    from vidtoon.engines.onnxruntime_engine import OnnxRuntimeEngine

    net = tiny("fast")
    batch = frames(2, 37, 53)
    with TorchEngine(net) as ref_engine, OnnxRuntimeEngine(net, device="cuda") as engine:
        # listed by get_available_providers() is not loaded: the session itself must run on CUDA
        assert engine.session.get_providers()[0] == "CUDAExecutionProvider"
        assert np.abs(engine.infer(batch).astype(int) - ref_engine.infer(batch).astype(int)).max() <= 3
