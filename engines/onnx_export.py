"""ONNX export of any vidtoon generator, checked against PyTorch.

The exported graph keeps the generator's contract: input ``input`` and output ``output``, both
``batch x 3 x height x width`` RGB in [-1, 1] (float32, or float16 for the fp16 variant), with batch, height
and width dynamic. The generators pad their input to a multiple of 8 (fast) or 4 (paper) with a Python
``if`` that tracing would freeze to the example's size; for export that padding is replaced by one that
always pads by ``(-size) % multiple`` (zero when already aligned), so the graph is correct for every
height and width >= 8 — :func:`verify_onnx` checks odd sizes on every export.

Tolerances (max abs difference to PyTorch float32, in [-1, 1] units; 1/127.5 = one uint8 level):
``FP32_ATOL`` = 1e-4 (~0.01 level), ``FP16_ATOL`` = 2e-2 (~2.5 levels).
"""
from __future__ import annotations

import contextlib
import copy
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidtoon.engines.cache import (
    MULTIPLE_KEY,
    onnx_cache_name,
    user_cache_dir,
    weights_hash,
)
from vidtoon.fileio import write_bytes
from vidtoon.networks import ARCHS, PadToMultiple

FP32_ATOL = 1e-4
FP16_ATOL = 2e-2
OPSET = 18
#: the exported graph pads with reflection, which needs at least this many pixels per side
MIN_SIDE = 8
#: sizes checked after every export: odd, unaligned to 4 and 8, batch 1 and 2
VERIFY_SHAPES: tuple[tuple[int, int, int], ...] = ((1, 37, 53), (2, 50, 67), (1, 64, 48))


class _GraphPad(PadToMultiple):
    """Padding written for export: no branch on the size, so nothing is frozen to the example input."""

    def pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        h, w = x.shape[-2], x.shape[-1]
        return F.pad(x, (0, (-w) % self.multiple, 0, (-h) % self.multiple), mode="reflect"), (h, w)


class _NoPad(PadToMultiple):
    """No padding and no crop: for graphs whose input is already a multiple in height and width."""

    def pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        return x, (x.shape[-2], x.shape[-1])

    @staticmethod
    def crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return x


def size_multiple(net: nn.Module) -> int:
    """The multiple the generator pads its input to (8 for the fast one, 4 for the paper one)."""
    multiples = [v.multiple for m in net.modules() for v in vars(m).values() if isinstance(v, PadToMultiple)]
    return max(multiples, default=1)


def exportable(net: nn.Module, fp16: bool = False, aligned: bool = False) -> nn.Module:
    """A copy of ``net`` (eval, CPU) whose padding helpers are replaced by the export-safe :class:`_GraphPad`
    (or, with ``aligned``, by no padding at all: the caller pads, see :func:`export_onnx`)."""
    net = copy.deepcopy(net).eval().requires_grad_(False).cpu()
    for module in net.modules():
        for attr, value in list(vars(module).items()):
            if isinstance(value, PadToMultiple):
                setattr(module, attr, (_NoPad if aligned else _GraphPad)(value.multiple))
        if hasattr(module, "grouped_stencils"):
            module.grouped_stencils = True  # the ONNX Runtime-friendly form of the same stencils (fast.py)
    return net.half() if fp16 else net.float()


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how closely it matches PyTorch."""

    path: Path
    fp16: bool
    #: max abs difference to PyTorch float32 over :data:`VERIFY_SHAPES`, in [-1, 1] units (nan: not verified)
    max_abs_diff: float
    #: the tolerance it was checked against
    atol: float


def export_onnx(net: nn.Module, path: str | Path, *, fp16: bool = False, verify: bool = True,
                aligned: bool = False) -> ExportReport:
    """Export ``net`` to ONNX at ``path`` (written atomically) and, by default, check it against PyTorch.

    ``aligned``: a graph for height and width that are multiples of the generator's :func:`size_multiple`
    (dims ``m*h``, ``m*w``; the multiple is also stored as metadata ``vidtoon_multiple``), without the
    padding and cropping: the ONNX Runtime engine pads frames itself when needed, and a graph that pads by
    zero still copies the frame twice (measured at 720p: 63.5 vs 66.7 ms per frame). ``vidtoon export``
    writes the general graph. Raises ``ValueError`` when the ONNX output differs from PyTorch by more
    than the stated tolerance.
    """
    from torch.export import Dim

    path = Path(path)
    model = exportable(net, fp16, aligned=aligned)
    dtype = torch.float16 if fp16 else torch.float32
    if aligned:
        m = size_multiple(net)
        example = (torch.rand(2, 3, 5 * m, 7 * m) * 2 - 1).to(dtype)
        dims = {0: Dim("batch", min=1, max=1024), 2: m * Dim("h", min=1, max=16384 // m),
                3: m * Dim("w", min=1, max=16384 // m)}
    else:
        # an example that is not a multiple of 8 in either side, batch 2 so the batch axis stays symbolic
        example = (torch.rand(2, 3, 37, 53) * 2 - 1).to(dtype)
        dims = {0: Dim("batch", min=1, max=1024), 2: Dim("height", min=MIN_SIDE, max=16384),
                3: Dim("width", min=MIN_SIDE, max=16384)}
    # the exporter prints progress lines on stdout unconditionally; keep the CLI's output clean
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["input"],
            output_names=["output"],
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes={"x": dims},
            external_data=False,
        )
    proto = program.model_proto  # a new serialization on every access: take it once, then edit it
    proto.doc_string = f"vidtoon generator {type(net).__name__} {'fp16' if fp16 else 'fp32'}"
    if aligned:
        entry = proto.metadata_props.add()
        entry.key, entry.value = MULTIPLE_KEY, str(size_multiple(net))
    write_bytes(path, proto.SerializeToString())
    report = ExportReport(path=path, fp16=fp16, max_abs_diff=float("nan"), atol=FP16_ATOL if fp16 else FP32_ATOL)
    if verify:
        report.max_abs_diff = verify_onnx(net, path, fp16=fp16, multiple=size_multiple(net) if aligned else None)
        if not report.max_abs_diff <= report.atol:
            path.unlink(missing_ok=True)
            raise ValueError(f"ONNX export differs from PyTorch by {report.max_abs_diff:.3g} (tolerance {report.atol:g})")
    return report


def verify_onnx(net: nn.Module, path: str | Path, *, fp16: bool = False, seed: int = 0,
                multiple: int | None = None) -> float:
    """Max abs difference between ONNX Runtime (CPU) on ``path`` and PyTorch float32 on ``net``.

    Inputs are smooth random images (noise blurred, so they look like pictures rather than static) at the
    odd sizes of :data:`VERIFY_SHAPES`, rounded up to ``multiple`` for an aligned graph.
    """
    import onnxruntime as ort

    ref_net = copy.deepcopy(net).eval().float().cpu()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for n, h, w in VERIFY_SHAPES:
        if multiple:
            h, w = h + (-h) % multiple, w + (-w) % multiple
        x = torch.rand(n, 3, h // 4 + 1, w // 4 + 1, generator=gen) * 2 - 1
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        with torch.inference_mode():
            ref = ref_net(x).numpy()
        feed = x.numpy().astype(np.float16 if fp16 else np.float32)
        out = session.run(None, {"input": feed})[0].astype(np.float32)
        if out.shape != ref.shape:
            raise ValueError(f"ONNX output shape {out.shape} differs from PyTorch {ref.shape} for input {feed.shape}")
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst


def generator_hash(net: nn.Module) -> str:
    """The weights hash that keys cached exports (architecture, config and every weight)."""
    arch = next((name for name, cls in ARCHS.items() if type(net) is cls), type(net).__name__)
    # the controls are baked into an export as constants: they key the cache like the weights do
    config = {**dict(getattr(net, "config", {})), **dict(getattr(net, "controls", {}))}
    return weights_hash(arch, config, net.state_dict().items())


def cached_onnx(net: nn.Module, *, fp16: bool = False, cache_dir: Path | None = None, log: Any = None,
                aligned: bool = False) -> Path:
    """Path of the ONNX export of ``net`` in the user cache folder, exporting (and verifying) it if missing.

    The file is keyed by the generator's weights hash, precision, opset, PyTorch version and ``aligned``
    (see :func:`export_onnx`).
    """
    folder = (cache_dir or user_cache_dir()) / "onnx"
    path = folder / onnx_cache_name(generator_hash(net), fp16=fp16, opset=OPSET, torch_version=torch.__version__,
                                    aligned=aligned)
    if not path.is_file():
        if log is not None:
            log(f"Exporting the generator to ONNX ({'fp16' if fp16 else 'fp32'}) into {folder} (once per model)")
        export_onnx(net, path, fp16=fp16, aligned=aligned)
    return path
