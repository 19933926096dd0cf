"""Mean shift's flattening in the toon generator (networks/modes.py): the mode filter, its outlines, the
options that use them, and today's default look left exactly as it was."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidtoon.models import export_generator, load_generator
from vidtoon.networks import ToonGenerator
from vidtoon.networks.abstraction import diffuse
from vidtoon.networks.modes import colour_lines, flat_outlines, focus_gate, frame_scale, mode_filter

DATA = Path(__file__).resolve().parent / "data"

#: the look of a toon generator with the new options (the candidate default's config, set by eye)
MODES_LOOK = dict(width=0, iters=5, bins=3, saturation=1.2, brightness=1.05, lines="flat", line_low=0.2,
                  line_high=0.5, hysteresis=9, texture_lines=0.8, shadows=0.25, headroom=0.25, flatten="modes",
                  spread=2.0, line_gain=1.7)


def _two_colours(h: int = 40, w: int = 48, noise: float = 0.1) -> torch.Tensor:
    """Two colours meeting at a vertical border (column w // 2), plus noise: N x 3 x H x W in [-1, 1]."""
    g = torch.Generator().manual_seed(3)
    x = torch.empty(1, 3, h, w)
    x[..., : w // 2] = torch.tensor([-0.5, 0.3, 0.1]).view(1, 3, 1, 1)
    x[..., w // 2:] = torch.tensor([0.4, -0.2, -0.4]).view(1, 3, 1, 1)
    return x + noise * torch.randn(x.shape, generator=g)


def _picture() -> torch.Tensor:
    """Deterministic picture (no RNG): a disc, gradients and a periodic texture, 75 x 106 (odd: padded).
    The same formula made tests/data/default_look.npy with the code before the new options."""
    h, w = 75, 106
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    disc = (((yy - 30) ** 2 + (xx - 40) ** 2) < 400).float()
    tex = 0.15 * torch.sin(xx * 1.7) * torch.cos(yy * 2.3)
    r = -0.6 + 1.2 * disc + 0.3 * xx / w + tex * (yy > 50)
    g = 0.4 - 0.9 * disc + 0.5 * yy / h
    b = -0.2 + 0.6 * (xx > 80) - 0.2 * disc
    return torch.stack([r, g, b])[None].clamp(-1, 1)


def test_the_mode_filter_flattens_two_noisy_colours_and_keeps_the_border_sharp() -> None:
    x = _two_colours()
    y = mode_filter(x, 0.2, 5, 2.0)
    left, right = y[..., 2:-2, 2:20], y[..., 2:-2, 28:-2]
    # each side flat: its noise mostly gone (the photo's per-channel std is 0.1)
    assert left.std((2, 3)).max() < 0.02 and right.std((2, 3)).max() < 0.02
    # ... at its own colour (the mode), not pulled towards the other side
    assert (left.mean((2, 3)) - torch.tensor([-0.5, 0.3, 0.1])).abs().max() < 0.03
    assert (right.mean((2, 3)) - torch.tensor([0.4, -0.2, -0.4])).abs().max() < 0.03
    # the border stays a one-pixel step where it was: the columns beside it keep their side's colour
    col = y[0, 0].mean(0)
    assert abs(float(col[23]) + 0.5) < 0.05 and abs(float(col[24]) - 0.4) < 0.05
    # diffusion of the same strength smears it instead (what people called "a denoised photo")
    d = diffuse(x, x, torch.tensor(0.5), 64)
    assert abs(float(d[0, 0].mean(0)[23]) + 0.5) > abs(float(col[23]) + 0.5)


def test_the_mode_filter_does_not_merge_colours_across_a_learned_border() -> None:
    """Two colours 0.15 apart (within the bandwidth: the filter merges them) stay apart where a barrier stands
    between them; a barrier of zeros is no barrier, bit for bit."""
    x = torch.zeros(1, 3, 16, 48)
    x[..., 24:] = 0.15
    plain = mode_filter(x, 0.2, 5, 2.0)
    wall = torch.zeros(1, 1, 16, 48)
    wall[..., 23:25] = 1.0  # the edge map's border, two pixels wide as at 1/4 resolution
    kept = mode_filter(x, 0.2, 5, 2.0, barrier=wall)
    step = lambda y: float(y[0, 0, 8, 24] - y[0, 0, 8, 23])  # noqa: E731
    assert step(plain) < 0.08  # merged: the step melts away ...
    assert step(kept) == pytest.approx(0.15, abs=1e-6)  # ... unless the border stops it
    assert torch.allclose(kept[..., :23], x[..., :23], atol=1e-6) and torch.allclose(kept[..., 25:], x[..., 25:], atol=1e-6)
    assert torch.equal(mode_filter(x, 0.2, 5, 2.0, barrier=torch.zeros_like(wall)), plain)
    weak = mode_filter(x, 0.2, 5, 2.0, barrier=0.5 * wall)  # a weaker border slows the merging
    assert step(plain) < step(weak) < step(kept)


class _Wall(torch.nn.Module):
    """A stand-in edge network that sees one border: a vertical line at 1/4 of the way across, x = ``col``."""

    def __init__(self, col: int) -> None:
        super().__init__()
        self.col = col

    def borders4(self, x: torch.Tensor) -> torch.Tensor:
        e = torch.zeros(x.shape[0], 1, x.shape[2] // 4, x.shape[3] // 4)
        e[..., self.col // 4 - 1:self.col // 4 + 1] = 1.0
        return e


def test_a_thin_object_the_edge_network_sees_is_not_merged_away() -> None:
    """Issue 18, item 4: the flattening respects the learned borders. A thin faint line (a racket's frame, a
    pole against the sky; 2 px, 0.4 darker than its ground) is merged into the ground by the default's mode
    filter at 1/4 resolution, but kept where the edge network sees it."""
    import copy

    net = load_generator("default")
    plain = copy.deepcopy(net)
    plain.config = {**net.config, "mode_barrier": 0.0}
    walled = copy.deepcopy(net)
    walled.edges = _Wall(240)  # (at 300 lines: the look's reference size, where the window is 2 px at 1/4 res)
    x = torch.full((1, 3, 304, 480), 0.5)
    x[..., 239:241] = 0.1
    with torch.no_grad():
        depth = [float(y[0, 0, 150, 230] - y[0, 0, 150, 238:242].min()) for y in (plain(x), walled(x))]
    assert depth[0] < 0.02 and depth[1] > 0.1


def test_the_default_has_the_student_inside_its_flattening() -> None:
    """The shipped default (since 2026-12-03, ninth session) carries the HED student of ``clean``, weights
    unchanged, as the barrier of its mode filter."""
    from vidtoon.networks.edges import EdgeStudent

    net, clean = load_generator("default"), load_generator("clean")
    assert net.config["mode_barrier"] == 1.0 and isinstance(net.edges, EdgeStudent) and net.pad.multiple == 16
    assert all(torch.equal(v, clean.edges.state_dict()[k]) for k, v in net.edges.state_dict().items())
    # made fp16 (an fp16 export, a GPU engine), the rest of the network is fp16 and the edge network keeps its
    # exact float32 weights (cast and back they lost digits: its map moved, outline pixels flipped)
    import copy

    half = copy.deepcopy(net).half()
    assert half.log_sigma.dtype == torch.float16 and half.edges.stem.weight.dtype == torch.float32
    assert all(torch.equal(v, net.edges.state_dict()[k]) for k, v in half.edges.state_dict().items())


def test_large_frames_show_the_edge_network_a_half_size_frame_and_the_graph_reads_the_band(tmp_path: Path,
                                                                                             monkeypatch) -> None:
    """``barrier_half`` (the default's): below 660 lines the barrier is the edge network's on the frame itself,
    bit for bit as without the option; from 660 lines up it is the network's on the frame at half size (a
    quarter of the work at 720p). An exported graph reads the band from its input's shape."""
    import copy

    ort = pytest.importorskip("onnxruntime")
    from vidtoon.engines.onnx_export import export_onnx
    from vidtoon.networks.edges import EdgeStudent

    net = load_generator("default")
    assert net.config["barrier_half"]
    full = copy.deepcopy(net)
    full.config = {k: v for k, v in net.config.items() if k != "barrier_half"}
    calls: list[str] = []
    for name in ("borders4", "borders_half"):
        orig = getattr(EdgeStudent, name)
        monkeypatch.setattr(EdgeStudent, name, lambda self, *a, _o=orig, _n=name: calls.append(_n) or _o(self, *a))
    small, large = _lines_frame(659, 661), _lines_frame(660, 667)
    with torch.no_grad():
        assert torch.equal(net(small), full(small)) and calls == ["borders4", "borders4"]
        calls.clear()
        y, y_full = net(large), full(large)
    assert calls == ["borders_half", "borders4"] and not torch.equal(y, y_full)
    monkeypatch.undo()
    export_onnx(net, tmp_path / "d.onnx", verify=False)
    session = ort.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    for x in (small, large):
        with torch.no_grad():
            ref = net(x).numpy()
        # (ONNX Runtime's convolutions differ from PyTorch's by ~1e-7; through the barrier a few pixels of
        # this busy frame move by up to 1.2e-3, with or without the option; an outline pixel flipped would be > 0.1)
        assert np.abs(session.run(None, {"input": x.numpy()})[0] - ref).max() <= 1e-2


def test_the_window_and_the_line_width_grow_with_the_frame() -> None:
    assert float(frame_scale(torch.zeros(1, 3, 300, 500))) == pytest.approx(1.0)
    assert float(frame_scale(torch.zeros(1, 3, 1280, 720))) == pytest.approx(2.4)
    img = torch.full((1, 3, 40, 40), -0.6)
    img[..., 20:, :] = 0.6  # a horizontal border
    thin = flat_outlines(img, torch.tensor(1.0), 0.2, 0.5, 4, 1.7)
    bold = flat_outlines(img, torch.tensor(2.4), 0.2, 0.5, 4, 1.7)
    assert float(thin.max()) > 0.8  # dark, not faint
    across = lambda t: float(t[0, 0, :, 20].sum())  # noqa: E731  (the ink across the line: its width)
    assert across(bold) > 1.25 * across(thin) and across(thin) > 1.5
    assert float(thin[..., 2:12, :].max()) == 0.0  # nothing in the flat part


def _old_flat_outlines(img: torch.Tensor, scale: torch.Tensor, low: float, high: float, steps: int,
                       gain: float, subpixel: bool = False, photo: torch.Tensor | None = None,
                       focus: tuple[float, float] = (0.0, 0.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: flat_outlines as it was before each size traced only the lines it uses (both tracings
    at every size, blended by ``mix``); the blend and its half-resolution term."""
    from vidtoon.networks.modes import REFERENCE_LINES
    from vidtoon.networks.strokes import _dilate

    width = (scale * (REFERENCE_LINES / 360.0)).clamp(1.0, 5.0)
    sharp = focus_gate(photo, *focus) if photo is not None else None
    sharp2 = focus_gate(F.avg_pool2d(photo, 2), *focus) if photo is not None else None
    fine = colour_lines(img, low, high, steps, subpixel=subpixel, seed_weight=sharp)
    fine = _dilate((fine * gain).clamp(0.0, 1.0), width)
    half = colour_lines(F.avg_pool2d(img, 2), low, high, steps, subpixel=subpixel, seed_weight=sharp2)
    half = (half * gain).clamp(0.0, 1.0)
    half = F.interpolate(_dilate(half, (0.5 * width).clamp(1.0, 5.0)), scale_factor=2.0, mode="bilinear",
                         align_corners=False)
    mix = (scale - 1.2).clamp(0.0, 1.0)
    return fine + mix * (half - fine), half


def _lines_frame(h: int, w: int) -> torch.Tensor:
    """A frame with borders, gradients and texture (many lines) on the uint8 grid, N x 3 x H x W."""
    g = torch.Generator().manual_seed(h * 7 + w)
    x = torch.rand(1, 3, h // 6 + 1, w // 6 + 1, generator=g) * 2 - 1
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    x = x + F.interpolate(_picture(), size=(h, w), mode="nearest") + 0.1 * torch.randn(x.shape, generator=g)
    return torch.round((x.clamp(-1, 1) + 1.0) * 127.5) / 127.5 - 1.0


@pytest.mark.parametrize("lines", [240, 300, 359, 360, 361, 480, 659, 660, 661, 720, 1080])
def test_each_frame_size_traces_only_the_lines_it_uses_and_draws_what_it_drew(lines: int, monkeypatch) -> None:
    # the old blend's weight is 0 up to 360 lines and 1 from 660: only the full-resolution lines below the band,
    # only the half-resolution ones above it (the expensive full-resolution tracing was multiplied by zero there)
    from vidtoon.networks import modes

    img = _lines_frame(74, 106)
    scale = frame_scale(torch.zeros(1, 1, 1, 1).expand(1, 1, lines, lines + 3))  # a frame of ``lines`` lines
    traced: list[int] = []
    real = modes.colour_lines
    monkeypatch.setattr(modes, "colour_lines", lambda t, *a: traced.append(t.shape[-1]) or real(t, *a))
    with torch.inference_mode():
        new = flat_outlines(img, scale, 0.2, 0.5, 9, 1.7)
        monkeypatch.undo()
        ref, half = _old_flat_outlines(img, scale, 0.2, 0.5, 9, 1.7)
    assert traced == ([106] if lines <= 360 else [53] if lines >= 660 else [106, 53])
    assert float(ref.max()) > 0.8 and float(half.max()) > 0.8  # lines to compare
    if lines < 660:
        assert torch.equal(new, ref)  # bit for bit
    else:
        # the half-resolution lines bit for bit; the old ``fine + 1 * (half - fine)`` rounded them by 1 ulp
        assert torch.equal(new, half) and float((new - ref).abs().max()) <= 2.4e-7


def test_the_exported_default_reads_its_size_band_from_the_frame(tmp_path: Path, monkeypatch) -> None:
    # one graph for every size: the band is computed from the input's shape in the graph (a branch frozen to
    # the export's 37 x 53 example would trace the full-resolution lines only, everywhere)
    ort = pytest.importorskip("onnxruntime")
    from vidtoon.engines.onnx_export import export_onnx
    from vidtoon.networks import toon

    net = load_generator("default")
    export_onnx(net, tmp_path / "new.onnx", verify=False)
    # (the default's soft-seed ramp, the 7th argument, is 0: Canny's hard seeds, which the reference draws;
    # the 8th to 10th, its sub-pixel lines, the photo and its focus gate, go to the reference)
    assert net.config.get("seed_ramp", 0.0) == 0.0 and net.config.get("line_subpixel") and net.config["focus_high"]
    monkeypatch.setattr(toon, "flat_outlines",
                        lambda *a: _old_flat_outlines(*a[:6], subpixel=a[7], photo=a[8], focus=a[9])[0])
    export_onnx(net, tmp_path / "old.onnx", verify=False)
    monkeypatch.undo()
    new, old = (ort.InferenceSession(str(tmp_path / f), providers=["CPUExecutionProvider"])
                for f in ("new.onnx", "old.onnx"))
    for h, w in ((239, 321), (360, 363), (361, 367), (659, 661), (660, 667)):  # odd: padded in the graph
        x = {"input": _lines_frame(h, w).numpy()}
        a, b = new.run(None, x)[0], old.run(None, x)[0]
        assert a.shape == (1, 3, h, w)
        assert np.array_equal(a, b) if h < 660 else np.abs(a - b).max() <= 1e-6, (h, w, np.abs(a - b).max())


def test_outlines_see_a_colour_border_of_equal_brightness_that_luminance_misses() -> None:
    from vidtoon.networks.lines import canny_lines

    img = torch.empty(1, 3, 32, 32)
    img[..., :16] = torch.tensor([0.3, -0.2, 0.1]).view(1, 3, 1, 1)  # grey-green ...
    img[..., 16:] = torch.tensor([-0.1308, 0.0, 0.2]).view(1, 3, 1, 1)  # ... and blue of the same luma
    gray = (img * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert float(canny_lines(gray, 0.2, 0.5, 4).max()) == 0.0
    line = colour_lines(img, 0.2, 0.5, 4)
    assert float(line[0, 0, 4:-4, 15:17].min()) > 0.3 and float(line[..., :, :12].max()) == 0.0


def test_todays_default_look_is_unchanged_by_the_new_options() -> None:
    # made with the default model (shipped also as toon-canny, its lasting name) before networks/modes.py
    # existed (main at 32d0185)
    ref = np.load(DATA / "default_look.npy")
    net = load_generator("toon-canny")
    with torch.no_grad():
        y = net(_picture()).numpy()
    assert np.abs(y - ref).max() <= 1e-6
    assert "flatten" not in net.config


def test_modes_look_flattens_draws_outlines_and_strength_zero_is_the_photo() -> None:
    net = ToonGenerator(**MODES_LOOK).eval()
    x = _two_colours(48, 64, 0.08)
    with torch.no_grad():
        y = net(x)
        assert y[..., 4:-4, 6:24].std((2, 3)).max() < 0.5 * x[..., 4:-4, 6:24].std((2, 3)).min()
        lum = (y * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)[0]
        assert float(lum[10:-10, 31:33].min()) < -0.6  # a dark outline at the border (column 32)
        # strength 0: the photo, up to the guided filter's eps of 1e-6, exactly as today's default gives it
        photo = net.set_controls(strength=0.0)(x)
        assert float((photo - x.clamp(-1, 1)).abs().mean()) < 1e-3
        assert float((photo - load_generator("default", strength=0.0)(x)).abs().max()) < 1e-6
    with pytest.raises(ValueError, match="flatten"):
        ToonGenerator(width=0, flatten="blur")


def _two_discs(blur: float) -> torch.Tensor:
    """A light disc in focus (left) and the same disc out of focus (right, Gaussian blur of ``blur`` px) on a
    dark ground: 1 x 3 x 96 x 192 in [-1, 1]."""
    import cv2

    img = np.full((96, 192), 0.2, np.float32)
    sharp, soft = img.copy(), img.copy()
    cv2.circle(sharp, (48, 48), 28, 0.8, -1, lineType=cv2.LINE_AA)
    cv2.circle(soft, (144, 48), 28, 0.8, -1, lineType=cv2.LINE_AA)
    img = np.where(np.arange(192) < 96, sharp, cv2.GaussianBlur(soft, (0, 0), blur))
    return torch.from_numpy(img * 2 - 1)[None, None].expand(1, 3, 96, 192).clone()


def test_focus_gate_tells_an_edge_in_focus_from_one_out_of_focus() -> None:
    gate = focus_gate(_two_discs(5.0), 1.05, 1.3)[0, 0]
    assert float(gate[48, 18:22].max()) > 0.95  # the sharp disc's left edge (x = 20)
    assert float(gate[48, 114:118].max()) < 0.1  # the blurred disc's (x = 116)


def test_lines_only_where_the_photo_is_in_focus() -> None:
    def ink(**focus: float) -> torch.Tensor:
        net = ToonGenerator(**MODES_LOOK, **focus).eval()
        with torch.no_grad():
            return net(_two_discs(5.0), parts=True)[2][0, 0]

    plain, gated = ink(), ink(focus_low=1.05, focus_high=1.3)
    sharp, soft = (slice(10, 86), slice(12, 86)), (slice(10, 86), slice(106, 182))
    # the mode filter flattens the blurred disc into a cell with a border, which gets an outline ...
    assert float(plain[sharp].max()) > 0.8 and float(plain[soft].max()) > 0.8
    # ... unless the photo's edge there is out of focus: then only the sharp disc is outlined, as before
    assert float(gated[soft].max()) < 0.05 and torch.equal(gated[sharp], plain[sharp])


@pytest.mark.slow  # ~40 s each on the 2-core CPU (an export and its check)
@pytest.mark.parametrize("fp16", [False, True])
def test_modes_look_exports_to_onnx_and_matches_torch_at_any_frame_size(tmp_path: Path, fp16: bool) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from vidtoon.engines.onnx_export import FP16_ATOL, FP32_ATOL, export_onnx

    net = ToonGenerator(**MODES_LOOK).eval()
    export_generator(net, "toon", tmp_path / "m.pt")  # the checkpoint rebuilds the same network
    net = load_generator(str(tmp_path / "m.pt"))
    atol = FP16_ATOL if fp16 else FP32_ATOL
    report = export_onnx(net, tmp_path / "m.onnx", fp16=fp16)  # checked on smooth random frames
    assert report.max_abs_diff <= atol
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    # a small frame and one above 360 lines (wider window and lines: the frame's size is read in the graph),
    # on the uint8 grid as the engines feed them
    for shape in ((1, 3, 37, 53), (1, 3, 392, 410)):
        x = torch.round((_two_colours(shape[2], shape[3], 0.08).clamp(-1, 1) + 1) * 127.5) / 127.5 - 1
        out = session.run(None, {"input": x.numpy().astype(np.float16 if fp16 else np.float32)})[0]
        with torch.inference_mode():
            ref = net(x).numpy()
        assert np.abs(out.astype(np.float32) - ref).max() <= atol
