"""ONNX export of any vidtoon generator, checked against PyTorch.

The exported graph keeps the generator's contract: input ``input`` and output ``output``, both
``batch x 3 x height x width`` RGB in [-1, 1] (float32, or float16 for the fp16 variant), with batch, height
and width dynamic. A generator with look controls (``toon``, ``fast``) also takes them as inputs:
``strength`` and ``outline``, float32 scalars that default to 1.0 (the full look; they are initializers listed
as inputs, so a caller that feeds only ``input`` gets the default look), so one export serves every
``--strength``/``--outline``. The generators pad their input to a multiple of 8 (fast) or 4 (paper) with a Python
``if`` that tracing would freeze to the example's size; for export that padding is replaced by one that
always pads by ``(-size) % multiple`` (zero when already aligned), so the graph is correct for every
height and width >= 8 — :func:`verify_onnx` checks odd sizes on every export.

Tolerances (max abs difference to PyTorch float32, in [-1, 1] units; 1/127.5 = one uint8 level):
``FP32_ATOL`` = 1e-4 (~0.01 level), ``FP16_ATOL`` = 2e-2 (~2.5 levels). They hold for every pixel of frames
made from uint8 pictures, as the engines feed them; an export that misses them is not written, and the
error is one plain line (:class:`vidtoon.errors.VidtoonError`).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import io
import time
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
from vidtoon.errors import VidtoonError
from vidtoon.fileio import write_bytes
from vidtoon.networks import ARCHS, PadToMultiple

FP32_ATOL = 1e-4
FP16_ATOL = 2e-2
OPSET = 18
#: the exported graph pads with reflection, which needs at least this many pixels per side
MIN_SIDE = 8
#: sizes checked after every export: odd, unaligned to 4 and 8, batch 1 and 2
VERIFY_SHAPES: tuple[tuple[int, int, int], ...] = ((1, 37, 53), (2, 50, 67), (1, 64, 48))
#: (strength, outline) checked with each of VERIFY_SHAPES when the controls are inputs of the graph
VERIFY_CONTROLS: tuple[tuple[float, float], ...] = ((1.0, 1.0), (0.6, 1.7), (0.25, 0.0))
#: names of the control inputs of an exported graph, in order
CONTROL_INPUTS = ("strength", "outline")


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


class _Controlled(nn.Module):
    """``net`` with its look controls as forward arguments, so that tracing makes them graph inputs."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, strength: torch.Tensor, outline: torch.Tensor) -> torch.Tensor:
        # tensors instead of Python floats: the generators' arithmetic on their controls is traced, not folded
        self.net.strength, self.net.outline = strength, outline
        return self.net(x)


def has_controls(net: nn.Module) -> bool:
    """Whether ``net`` has the look controls ``strength`` and ``outline`` (vidtoon.networks.controls)."""
    return callable(getattr(net, "set_controls", None))


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
                aligned: bool = False, controls: bool = True) -> ExportReport:
    """Export ``net`` to ONNX at ``path`` (written atomically) and, by default, check it against PyTorch.

    ``aligned``: a graph for height and width that are multiples of the generator's :func:`size_multiple`
    (dims ``m*h``, ``m*w``; the multiple is also stored as metadata ``vidtoon_multiple``), without the
    padding and cropping: the ONNX Runtime engine pads frames itself when needed, and a graph that pads by
    zero still copies the frame twice (measured at 720p: 63.5 vs 66.7 ms per frame). ``vidtoon export``
    writes the general graph. ``controls``: a generator's look controls become the inputs ``strength`` and
    ``outline`` (default 1.0); with ``controls=False`` the values ``net`` has are baked in as constants (for
    TensorRT, whose parser treats initializers as weights). Raises :class:`VidtoonError` (and writes
    nothing) when the ONNX output differs from PyTorch by more than the stated tolerance.
    """
    path = Path(path)
    controls = controls and has_controls(net)
    model = exportable(net, fp16, aligned=aligned)
    traced = _Controlled(model) if controls else model
    example = _example(net, fp16, aligned)
    atol = FP16_ATOL if fp16 else FP32_ATOL
    report = ExportReport(path=path, fp16=fp16, max_abs_diff=float("nan"), atol=atol)
    # the TorchScript exporter first (17-35x faster: 0.7 vs 24 s for the default model, the same graph run
    # time; bench/bench_export.py); the dynamo exporter when it fails or its graph misses the tolerance (the
    # TorchScript one is deprecated and may leave torch some day; both graphs are checked alike)
    m = size_multiple(net)
    sides = (f"{m}*h", f"{m}*w") if aligned else ("height", "width")  # the dynamo exporter's names for them
    exporters = (functools.partial(_trace_torchscript, sides=sides), _trace)
    for i, trace in enumerate(exporters):
        last = i == len(exporters) - 1
        try:
            proto = trace(traced, example, controls)
        except Exception:  # noqa: BLE001  (any failure of the fast path: the next exporter decides)
            if last:
                raise
            continue
        proto.doc_string = f"vidtoon generator {type(net).__name__} {'fp16' if fp16 else 'fp32'}"
        if aligned:
            entry = proto.metadata_props.add()
            entry.key, entry.value = MULTIPLE_KEY, str(m)
        write_bytes(path, proto.SerializeToString())
        if not verify:
            return report
        report.max_abs_diff = verify_onnx(net, path, fp16=fp16, multiple=m if aligned else None)
        if report.max_abs_diff <= atol:
            return report
    path.unlink(missing_ok=True)
    precision = "fp16" if fp16 else "fp32"
    raise VidtoonError(f"the {precision} ONNX export of the generator differs from PyTorch by "
                       f"{report.max_abs_diff:.3g} (tolerance {atol:g}; please report this model: "
                       "--engine torch runs it without an export)")


def _example(net: nn.Module, fp16: bool, aligned: bool) -> tuple[torch.Tensor, dict[int, Any]]:
    """An example frame batch for tracing and the dynamic dims of its batch, height and width."""
    from torch.export import Dim

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
    return example, dims


def _trace_torchscript(model: nn.Module, example: tuple[torch.Tensor, dict[int, Any]], controls: bool,
                       sides: tuple[str, str] = ("height", "width")) -> Any:
    """The ONNX ModelProto of ``model`` from the TorchScript exporter (``dynamo=False``): it runs the model
    once on ``example`` and records the ops, sizes included, with batch and the ``sides`` (names of the
    height and width axes) dynamic.
    The control inputs get their default (1.0) as initializers of the same name, as in :func:`_trace`."""
    import onnx
    from onnx import numpy_helper

    frames, _ = example
    args: tuple[torch.Tensor, ...] = (frames,)
    names = ["input"]
    if controls:
        args += (torch.tensor(0.5), torch.tensor(1.5))  # not 1.0: no value that a branch could special-case
        names += list(CONTROL_INPUTS)
    dims = {0: "batch", 2: sides[0], 3: sides[1]}
    axes = {"input": dims, "output": dims}
    buf = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # its deprecation notice and tracer warnings (the check below decides)
        torch.onnx.export(model, args, buf, dynamo=False, input_names=names, output_names=["output"],
                          opset_version=OPSET, dynamic_axes=axes)
    proto = onnx.load_from_string(buf.getvalue())
    for value in proto.graph.input[1:]:
        proto.graph.initializer.append(numpy_helper.from_array(np.array(1.0, dtype=np.float32), value.name))
    return proto


def _trace(model: nn.Module, example: tuple[torch.Tensor, dict[int, Any]], controls: bool) -> Any:
    """The ONNX ModelProto of ``model`` from the dynamo exporter, traced on ``example`` with symbolic batch,
    height and width (with scalar control inputs when ``controls``).

    The exporter's own optimizer (``optimize=True``) is not used: its pattern rewriter took two thirds of the
    export time (measured on the default model: 153 s vs 73 s for the whole export on a busy 2-core CPU) and
    ONNX Runtime applies its own graph optimizations when it loads the file; constant folding and dead-node
    removal, which shrink the file, are kept (720p ONNX Runtime run time: 159.6 vs 162.0 ms, within noise).
    """
    import onnx_ir as ir
    from onnx_ir.passes.common import RemoveUnusedNodesPass
    from onnxscript.optimizer import fold_constants_ir

    frames, dims = example
    args: tuple[torch.Tensor, ...] = (frames,)
    names = ["input"]
    shapes: dict[str, Any] = {"x": dims}
    if controls:
        args += (torch.tensor(0.5), torch.tensor(1.5))  # not 1.0: no value that a branch could special-case
        names += list(CONTROL_INPUTS)
        shapes = {"x": dims, "strength": None, "outline": None}
    # the exporter prints progress lines on stdout unconditionally; keep the CLI's output clean
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, args, input_names=names, output_names=["output"], opset_version=OPSET,
                                    dynamo=True, dynamic_shapes=shapes, external_data=False, optimize=False)
        fold_constants_ir(program.model)
        RemoveUnusedNodesPass()(program.model)
    graph = program.model.graph
    for value in graph.inputs[1:]:
        # an initializer listed as an input: its value is the default, and a caller may feed another
        value.const_value = ir.tensor(np.array(1.0, dtype=np.float32), name=value.name)
        graph.register_initializer(value)
    return program.model_proto  # a new serialization on every access: the caller takes it once


def verify_onnx(net: nn.Module, path: str | Path, *, fp16: bool = False, seed: int = 0,
                multiple: int | None = None) -> float:
    """Max abs difference between ONNX Runtime (CPU) on ``path`` and PyTorch float32 on ``net``.

    Inputs are smooth random images (noise blurred, so they look like pictures rather than static) at the
    odd sizes of :data:`VERIFY_SHAPES`, rounded up to ``multiple`` for an aligned graph, on the uint8 grid
    (``v / 127.5 - 1``) as the engines make them from decoded frames. A graph with control
    inputs is run at each of :data:`VERIFY_CONTROLS` (the first, 1.0 and 1.0, by its defaults: not fed).
    """
    import onnxruntime as ort

    ref_net = copy.deepcopy(net).eval().float().cpu()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    graph_controls = set(CONTROL_INPUTS) <= input_names(session)
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for (n, h, w), (strength, outline) in zip(VERIFY_SHAPES, VERIFY_CONTROLS):
        if multiple:
            h, w = h + (-h) % multiple, w + (-w) % multiple
        x = torch.rand(n, 3, h // 4 + 1, w // 4 + 1, generator=gen) * 2 - 1
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        x = torch.round((x + 1.0) * 127.5) / 127.5 - 1.0
        feed = {"input": x.numpy().astype(np.float16 if fp16 else np.float32)}
        if graph_controls:
            ref_net.set_controls(strength, outline)
            if (strength, outline) != (1.0, 1.0):
                feed.update(control_feed(strength, outline))
        with torch.inference_mode():
            ref = ref_net(x).numpy()
        out = session.run(None, feed)[0].astype(np.float32)
        if out.shape != ref.shape:
            raise VidtoonError(f"the ONNX export's output shape {out.shape} differs from PyTorch's {ref.shape} for "
                               f"input {tuple(x.shape)} (please report this model: --engine torch runs it without an export)")
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst


def input_names(session: Any) -> set[str]:
    """Every input an ONNX Runtime session can be fed: its inputs and the initializers listed as inputs (the
    control inputs, which have defaults, are the latter: ``get_inputs()`` leaves them out)."""
    return {i.name for i in [*session.get_inputs(), *session.get_overridable_initializers()]}


def control_feed(strength: float, outline: float) -> dict[str, np.ndarray]:
    """The control inputs of an exported graph, ready to feed to ONNX Runtime."""
    return {name: np.array(value, dtype=np.float32) for name, value in zip(CONTROL_INPUTS, (strength, outline))}


def generator_hash(net: nn.Module, controls: bool = False) -> str:
    """The weights hash that keys cached exports (architecture, config and every weight; with ``controls``
    also the values of the look controls, for exports that bake them in as constants)."""
    arch = next((name for name, cls in ARCHS.items() if type(net) is cls), type(net).__name__)
    config = dict(getattr(net, "config", {}))
    if controls:
        config.update(getattr(net, "controls", {}))
    return weights_hash(arch, config, net.state_dict().items())


def cached_onnx(net: nn.Module, *, fp16: bool = False, cache_dir: Path | None = None, log: Any = None,
                aligned: bool = False, controls: bool = True, quiet: bool = False) -> Path:
    """Path of the ONNX export of ``net`` in the user cache folder, exporting (and verifying) it if missing.

    The file is keyed by the generator's weights hash, precision, opset, PyTorch version and ``aligned``
    (see :func:`export_onnx`); with ``controls`` (the default) the look controls are inputs of the graph, so
    the same file serves every strength and outline; without, they are baked in and key the file too.
    An export takes a while (tens of seconds on a CPU): ``log`` gets a line before and after it, and on a
    terminal a spinner shows the time spent (not with ``quiet``).
    """
    from vidtoon.progress import activity

    folder = (cache_dir or user_cache_dir()) / "onnx"
    baked = not (controls and has_controls(net))
    path = folder / onnx_cache_name(generator_hash(net, controls=baked), fp16=fp16, opset=OPSET,
                                    torch_version=torch.__version__, aligned=aligned)
    if not path.is_file():
        what = f"the model to ONNX ({'fp16' if fp16 else 'fp32'})"
        if log is not None:
            log(f"Exporting {what} into {folder}: once per model, seconds to a minute on a CPU")
        start = time.perf_counter()
        with activity(f"Exporting {what}", quiet=quiet or log is None):
            export_onnx(net, path, fp16=fp16, aligned=aligned, controls=not baked)
        if log is not None:
            log(f"Exported {what} in {time.perf_counter() - start:.0f} s (kept for the next runs)")
    return path
