"""Where engines keep what they build (ONNX exports, TensorRT plans), and the keys that name those files.

Everything here is a pure function of its arguments (plus the environment for the folder), so the keys can be
tested without TensorRT or a GPU. A key changes whenever anything that affects the built file changes; a stale
file is therefore never reused, it is simply not found and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: bump when the export wrapper or the file layout changes, so old cached files are not picked up
CACHE_VERSION = 7  # 2: grouped stencils in the fast generator's export; 3: its edge-aware block in fp32 in fp16 graphs;
# 4: the look controls as graph inputs, export without the exporter's rewriter; 5: the modes look's outlines traced
# only at the resolutions each frame size uses (the same output, faster: graphs exported before would be reused); 6: its
# in-between sizes without the extra copies of 5; 7: the frame's size read without copying the frame, the edge student's
# folds as strided convolutions, the focus gate's shared blurs, the mode filter's distances summed channel by channel
# (the same output, faster)

#: ONNX metadata key of an aligned graph (vidtoon.engines.onnx_export.export_onnx): the multiple its height and width
#: must be; the ONNX Runtime engine pads frames to it
MULTIPLE_KEY = "vidtoon_multiple"


def user_cache_dir() -> Path:
    """The folder vidtoon caches engine files in.

    ``$VIDTOON_CACHE_DIR`` wins; otherwise the platform's user cache folder for ``vidtoon``, as
    ``platformdirs`` knows it (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
    ``%LOCALAPPDATA%\\vidtoon\\Cache`` on Windows).
    """
    override = os.environ.get("VIDTOON_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("vidtoon", appauthor=False))


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_hash(arch: str, config: dict[str, Any], state: Iterable[tuple[str, Any]]) -> str:
    """Hex SHA-256 identifying a generator: its architecture, constructor config and every weight.

    ``state`` yields ``(name, tensor)`` pairs (a ``state_dict().items()``); tensors are hashed by name,
    dtype, shape and raw bytes, so two checkpoints with equal weights share their cached exports.
    """
    h = hashlib.sha256()
    h.update(json.dumps({"arch": arch, "config": config}, sort_keys=True, default=str).encode())
    for name, tensor in sorted(state, key=lambda kv: kv[0]):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # view as bytes: works for every dtype, including fp16/bf16 that numpy cannot represent
        h.update(t.view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    return h.hexdigest()


def _byte_dtype() -> Any:
    import torch

    return torch.uint8


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` ("NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3")."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "unknown"


def onnx_cache_name(weights: str, *, fp16: bool, opset: int, torch_version: str, aligned: bool = False) -> str:
    """File name of a cached ONNX export: keyed by the weights hash, precision, opset, exporter version and
    whether the graph is the aligned (unpadded) variant."""
    precision = "fp16" if fp16 else "fp32"
    key = _digest({"v": CACHE_VERSION, "weights": weights, "precision": precision, "opset": opset, "torch": torch_version,
                   "aligned": aligned})
    return f"{weights[:16]}-{precision}{'-aligned' if aligned else ''}-opset{opset}-{key[:12]}.onnx"


def tensorrt_cache_name(
    onnx_hash: str,
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]],
    *,
    precision: str,
    trt_version: str,
    gpu_name: str,
) -> str:
    """File name of a cached TensorRT plan (vs-mlrt ``get_engine_path`` style).

    Keyed by the ONNX file's hash, the optimization profile (min/opt/max shape of every input), the
    precision, the TensorRT version and the GPU name: a plan is only valid for the exact TensorRT build
    and GPU model it was built on, and only for shapes inside its profile.
    """
    key = _digest(
        {
            "v": CACHE_VERSION,
            "onnx": onnx_hash,
            "profile": {k: [list(s) for s in v] for k, v in sorted(profile.items())},
            "precision": precision,
            "trt": trt_version,
            "gpu": gpu_name,
        }
    )
    shapes = "-".join("x".join(map(str, v[2])) for _, v in sorted(profile.items()))
    return f"{onnx_hash[:12]}-{shapes}-{precision}-trt{trt_version}-{slug(gpu_name)}-{key[:12]}.engine"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
