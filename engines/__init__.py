"""Inference backends behind one interface (:class:`vidtoon.engines.base.Engine`).

``ENGINES`` maps a name to ``module:Class``; classes are imported only when used, so a missing optional
dependency (onnxruntime, tensorrt) only matters when that engine is asked for. ``--engine auto`` is decided
in :func:`choose_engine`, in one documented order (see :func:`pick_engine`).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any

from vidtoon.engines.base import Engine

ENGINES: dict[str, str] = {
    "torch": "vidtoon.engines.torch_engine:TorchEngine",
    "onnxruntime": "vidtoon.engines.onnxruntime_engine:OnnxRuntimeEngine",
    "tensorrt": "vidtoon.engines.tensorrt_engine:TensorRTEngine",
}

#: the pip extra that brings each engine's optional dependency
EXTRAS: dict[str, str] = {"onnxruntime": "onnx", "tensorrt": "tensorrt"}

#: what the ONNX export of a generator needs: torch's exporter (onnx, onnxscript) and onnxruntime, which checks
#: every export against PyTorch (engines/onnx_export.py)
EXPORT_NEEDS = ("onnx", "onnxscript", "onnxruntime")
#: every package an engine needs to run a generator module (an .onnx file given instead skips the export);
#: each engine's pip extra installs all of them (tests/test_engines.py checks setup.cfg)
NEEDS: dict[str, tuple[str, ...]] = {
    "torch": (),
    "onnxruntime": EXPORT_NEEDS,
    "tensorrt": ("tensorrt", *EXPORT_NEEDS),
}

__all__ = ["ENGINES", "EXTRAS", "NEEDS", "Engine", "available", "check_device", "choose_engine", "create_engine", "engine_class",
           "missing_packages", "pick_engine", "resolve_engine"]


def engine_class(name: str) -> type[Engine]:
    """Import and return the engine class registered under ``name``."""
    from vidtoon.errors import VidtoonError

    if name not in ENGINES:
        raise VidtoonError(f"unknown engine {name!r} (choose one of: auto, {', '.join(ENGINES)})")
    module, cls = ENGINES[name].split(":")
    extra = EXTRAS.get(name, name)
    try:
        engine = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise VidtoonError(f"engine {name!r} needs {exc.name or 'a missing package'} (pip install 'vidtoon[{extra}]')") from exc
    # a module may import without its backend (the TensorRT one keeps its pure helpers usable for tests)
    missing = [pkg for pkg in getattr(engine, "requires", ()) if not available(pkg)]
    if missing:
        gpu = " and an NVIDIA GPU with its driver" if name == "tensorrt" else ""  # (the wheel alone is not enough)
        raise VidtoonError(f"engine {name!r} needs {', '.join(missing)}{gpu} (pip install 'vidtoon[{extra}]')")
    return engine


def missing_packages(name: str) -> list[str]:
    """The packages engine ``name`` needs to run a generator module that are not installed here."""
    return [pkg for pkg in NEEDS.get(name, ()) if not available(pkg)]


def available(package: str) -> bool:
    """Whether ``package`` can be imported here (found on the path; not imported, so this stays cheap)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def pick_engine(device: str, *, cuda: bool, tensorrt: bool, onnxruntime: bool) -> tuple[str, str, str]:
    """The ``--engine auto`` decision as a pure function of what is available: (engine, device, reason).

    Order:

    1. a CUDA GPU and TensorRT importable -> ``tensorrt`` (fp16 plans built for the GPU, fastest);
    2. a CUDA GPU -> ``torch`` on the GPU (fp16, channels_last);
    3. the CPU -> ``onnxruntime`` when installed (measured 1.5-2x PyTorch eager on the CPU for the fast
       generator, see bench/RESULTS.md), else ``torch``.

    ``device`` is ``auto``, ``cpu`` or ``cuda[:N]``; asking for CUDA without a GPU is an error.
    """
    from vidtoon.errors import VidtoonError

    want_gpu = device == "auto" or device.startswith("cuda")
    if want_gpu and cuda:
        dev = "cuda" if device == "auto" else device
        if tensorrt:
            return "tensorrt", dev, "CUDA GPU and TensorRT found: TensorRT (fp16)"
        return "torch", dev, "CUDA GPU found, TensorRT not installed: PyTorch on the GPU (fp16)"
    if device != "auto" and device != "cpu":
        if device.startswith("cuda"):
            raise VidtoonError(f"device {device!r} was asked for but no CUDA GPU is available (use --device cpu)")
        raise VidtoonError(f"unknown device {device!r} (choose one of: auto, cpu, cuda, cuda:N)")
    why = "no CUDA GPU" if device == "auto" else "CPU asked for"
    if onnxruntime:
        return "onnxruntime", "cpu", f"{why}: ONNX Runtime, the fastest CPU engine"
    return "torch", "cpu", f"{why}, ONNX Runtime not installed: PyTorch on the CPU (pip install 'vidtoon[onnx]' is faster)"


def check_device(device: str, *, cuda_count: int | None = None) -> None:
    """Raise VidtoonError unless ``device`` is one this machine has: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``
    (checked once, before any engine starts, whatever the engine). ``cuda_count``: CUDA GPUs (default: ask
    torch)."""
    from vidtoon.errors import VidtoonError

    if device in ("auto", "cpu"):
        return
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise VidtoonError(f"unknown device {device!r} (choose one of: auto, cpu, cuda, cuda:N)")
    if cuda_count is None:
        import torch

        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cuda_count == 0:
        raise VidtoonError(f"device {device!r} was asked for but no CUDA GPU is available (use --device cpu)")
    if index and int(index) >= cuda_count:
        raise VidtoonError(f"device {device!r} was asked for but this machine has {cuda_count} CUDA GPU"
                           f"{'s' if cuda_count > 1 else ''} (cuda:0 to cuda:{cuda_count - 1})")


def choose_engine(device: str = "auto") -> tuple[str, str, str]:
    """Pick the engine for ``--engine auto`` on this machine: returns (engine, device, reason)."""
    import torch

    cuda = torch.cuda.is_available()
    # both engines start from an ONNX export: every package of that path must be there (NEEDS), or the first
    # convert would fail. TensorRT is only looked for when it could be used: with a GPU
    return pick_engine(device, cuda=cuda, tensorrt=cuda and not missing_packages("tensorrt"),
                       onnxruntime=not missing_packages("onnxruntime"))


def resolve_engine(name: str, device: str = "auto") -> tuple[str, str]:
    """The engine and device that ``name`` and ``device`` (either may be ``auto``) stand for on this machine;
    a device this machine does not have is refused here, for every engine (:func:`check_device`)."""
    check_device(device)
    if name == "auto":
        name, device, _ = choose_engine(device)
    elif device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() and name != "onnxruntime" else "cpu"
    return name, device


def create_engine(name: str, generator: Any, device: str = "auto", *, quiet: bool = False, **options: Any) -> Engine:
    """Create engine ``name`` (or the best one for ``auto``) running ``generator`` on ``device``; ``quiet``: no
    lines or spinner while it starts (an ONNX export), for engines that would print them."""
    name, device = resolve_engine(name, device)
    cls = engine_class(name)
    if quiet and "quiet" in inspect.signature(cls.__init__).parameters:
        options["quiet"] = True
    missing = [] if isinstance(generator, (str, Path)) else missing_packages(name)
    if missing:
        from vidtoon.errors import VidtoonError

        raise VidtoonError(f"engine {name!r} needs {', '.join(missing)} to export the generator "
                           f"(pip install 'vidtoon[{EXTRAS.get(name, name)}]')")
    return cls(generator, device=device, **options)
