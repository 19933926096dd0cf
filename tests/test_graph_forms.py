"""The networks' exported forms: the same arithmetic as written plainly, without the ops that ONNX Runtime ran
slowly in the default's graph (bench/RESULTS.md, "The default's graph in ONNX Runtime")."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_modes import _two_colours
from vidtoon.networks.edges import EdgeStudent
from vidtoon.networks.modes import focus_gate, frame_scale, mode_filter


def test_the_frame_size_is_read_in_the_graph_without_copying_the_frame(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    class Scale(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return frame_scale(x)

    path = tmp_path / "scale.onnx"
    torch.onnx.export(Scale(), (torch.zeros(1, 3, 40, 64),), str(path), input_names=["x"], dynamo=False,
                      dynamic_axes={"x": {2: "h", 3: "w"}})
    # integer indexing (x[0, 0, :, 0]) exported as Gathers that copied the whole frame first; slices
    # read a column and a row
    nodes = onnx.load(str(path)).graph.node
    assert not any(n.op_type == "Gather" and "x" in n.input for n in nodes)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert float(session.run(None, {"x": np.zeros((1, 3, 720, 1280), np.float32)})[0]) == pytest.approx(2.4)


def test_the_focus_gate_shares_its_blurs_and_gives_what_it_did() -> None:
    from vidtoon.networks.lines import _blur3
    from vidtoon.networks.modes import _colour_gradient

    photo = torch.rand(1, 3, 48, 64) * 2 - 1
    soft = photo
    for _ in range(4):
        soft = _blur3(soft)  # the gate as first written: the soft gradient from four blurs of the photo
    ratio = (F.max_pool2d(_colour_gradient(photo)[0], 5, 1, 2)
             / (F.max_pool2d(_colour_gradient(soft)[0], 5, 1, 2) + 1e-3))
    before = ((ratio - 1.2) / 0.4).clamp(0.0, 1.0)
    assert torch.allclose(focus_gate(photo, 1.2, 1.6), before, atol=1e-5)


def _plain_mode_filter(v, bandwidth, iters, spread, barrier, radius=2, step=2):
    """The mode filter as its docstring states it, sample by sample (the reference for the graph's form)."""
    h, w = v.shape[-2:]
    m, reach = radius * step, [d * step for d in range(-radius, radius + 1) if d]
    bar = {True: F.pad(barrier, (m, m, 0, 0), mode="replicate"), False: F.pad(barrier, (0, 0, m, m), mode="replicate")}
    for _ in range(iters):
        for along_x in (True, False):
            vp = F.pad(v, (m, m, 0, 0) if along_x else (0, 0, m, m), mode="replicate")
            shift = lambda t, d: t[..., :, m + d:m + d + w] if along_x else t[..., m + d:m + d + h, :]  # noqa: E731
            acc, norm = v, torch.ones_like(v[:, :1])
            for d in reach:
                q = shift(vp, d)
                strongest = torch.stack([shift(bar[along_x], t) for t in range(min(0, d), max(0, d) + 1)]).amax(0)
                k = (torch.exp(torch.tensor(-0.5 * d * d / spread**2)) * (1.0 - strongest).clamp(min=0.0)
                     * torch.exp(-0.5 / bandwidth**2 * (q - v).pow(2).sum(1, keepdim=True)))
                acc, norm = acc + k * q, norm + k
            v = acc / norm
    return v


def test_the_mode_filter_computes_its_formula_without_reductions_in_the_graph(tmp_path: Path) -> None:
    import onnx

    x = _two_colours()
    barrier = (torch.rand(1, 1, *x.shape[-2:], generator=torch.Generator().manual_seed(0)) > 0.8).float()
    y = mode_filter(x, 0.2, 5, 2.0, barrier=barrier)
    assert torch.allclose(y, _plain_mode_filter(x, 0.2, 5, 2.0, barrier), atol=1e-5)

    class Filter(torch.nn.Module):
        def forward(self, v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return mode_filter(v, 0.2, 2, 2.0, barrier=b)

    torch.onnx.export(Filter(), (x, barrier), str(tmp_path / "f.onnx"), dynamo=False)
    # the squared distance summed channel by channel: ReduceSum and Pow were a quarter of its time in ONNX Runtime
    assert not {n.op_type for n in onnx.load(str(tmp_path / "f.onnx")).graph.node} & {"ReduceSum", "Pow"}


def test_student_folds_pixels_with_strided_convolutions(tmp_path: Path) -> None:
    import onnx

    net = EdgeStudent().eval()
    for p in net.parameters():
        p.data.normal_(0, 0.2)
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        # the same weights as pixel_unshuffle then a 1x1 convolution (how it was trained and saved) ...
        folded = lambda conv, t, r: F.conv2d(F.pixel_unshuffle(t, r), conv.weight, conv.bias)  # noqa: E731
        assert torch.allclose(net.stem(x), folded(net.stem, x, 4), atol=1e-5)
        assert torch.allclose(net.fine_in(x), folded(net.fine_in, x, 2), atol=1e-5)
        f4 = net.stem(x)
        assert torch.allclose(net.down8(f4), folded(net.down8, f4, 2), atol=1e-5)
        assert net.stem.weight.shape == (16, 48, 1, 1)  # checkpoints load unchanged
    # ... without the 6-D transposes pixel_unshuffle exports to (5% of the default's time in ONNX Runtime)
    torch.onnx.export(net, (x,), str(tmp_path / "student.onnx"), dynamo=False)
    assert not any(n.op_type == "Transpose" for n in onnx.load(str(tmp_path / "student.onnx")).graph.node)
