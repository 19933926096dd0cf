"""Inference backends behind one interface (:class:`engines.base.Engine`).

``ENGINES`` maps a name to ``module:Class``; classes are imported only when used, so a missing optional
dependency (onnxruntime, tensorrt) only matters when that engine is asked for. ``--engine auto`` is decided
in :func:`choose_engine`, in the one documented order.
"""
from __future__ import annotations

import importlib
from typing import Any

from engines.base import Engine

ENGINES: dict[str, str] = {
    "torch": "engines.torch_engine:TorchEngine",
}

#: the pip extra that brings each engine's optional dependency
EXTRAS: dict[str, str] = {"onnxruntime": "onnx", "tensorrt": "tensorrt"}

__all__ = ["ENGINES", "Engine", "create_engine", "choose_engine", "engine_class"]


def engine_class(name: str) -> type[Engine]:
    """Import and return the engine class registered under ``name``."""
    from vidtoon.errors import VidtoonError

    if name not in ENGINES:
        raise VidtoonError(f"unknown engine {name!r} (choose one of: auto, {', '.join(ENGINES)})")
    module, cls = ENGINES[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        extra = EXTRAS.get(name, name)
        raise VidtoonError(f"engine {name!r} needs {exc.name or 'a missing package'} (pip install 'vidtoon[{extra}]')") from exc


def choose_engine(device: str = "auto") -> tuple[str, str, str]:
    """Pick the engine for ``--engine auto``: returns (engine, device, reason).

    Order: PyTorch on CUDA when a GPU is present, else PyTorch on the CPU.
    """
    import torch

    if device in ("auto", "cuda") or device.startswith("cuda"):
        if torch.cuda.is_available():
            dev = "cuda" if device == "auto" else device
            return "torch", dev, "CUDA is available: PyTorch on the GPU (fp16)"
        if device != "auto":
            from vidtoon.errors import VidtoonError

            raise VidtoonError(f"device {device!r} was asked for but no CUDA GPU is available")
    return "torch", "cpu", "no CUDA GPU: PyTorch on the CPU"


def create_engine(name: str, generator: Any, device: str = "auto", **options: Any) -> Engine:
    """Create engine ``name`` (or the best one for ``auto``) running ``generator`` on ``device``."""
    if name == "auto":
        name, device, _ = choose_engine(device)
    elif device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() and name != "onnxruntime" else "cpu"
    return engine_class(name)(generator, device=device, **options)
