"""The toon generator: its built-in cartoon operations, the look controls, fp16 safety, and old models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from nets import tiny

from vidtoon.errors import VidtoonError
from vidtoon.models import export_generator, load_generator
from vidtoon.networks import FastGenerator, ToonGenerator, apply_controls
from vidtoon.networks.toon import guided_coefficients, soft_quantize


def _picture(h: int = 64, w: int = 96, seed: int = 0) -> torch.Tensor:
    """Two flat regions with a sharp border, plus fine noise (texture): NCHW in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((1, 3, h, w), -0.4)
    x[..., :, w // 2:] = torch.tensor([0.5, 0.2, -0.1]).view(1, 3, 1, 1)
    return (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def test_soft_quantize_is_a_continuous_staircase() -> None:
    lum = torch.linspace(0, 1, 1001)
    q = soft_quantize(lum, bins=4, sharpness=torch.tensor(8.0))
    assert (q[1:] - q[:-1]).min() >= -1e-6  # monotonic
    assert (q[1:] - q[:-1]).abs().max() < 0.02  # continuous: no jump at the level borders
    # sharp steps: most values sit on one of the 5 plateaus, at the borders of the 4 levels
    plateaus = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    near = (q[:, None] - plateaus).abs().min(1).values < 0.03
    assert near.float().mean() > 0.6
    soft = soft_quantize(lum, bins=4, sharpness=torch.tensor(0.05))
    assert (soft - lum).abs().max() < 0.01  # tiny sharpness: almost the identity


def test_guided_coefficients_float16_match_float32() -> None:
    # nearly flat windows: E[g^2] - E[g]^2 cancels in fp16; the function computes in fp32 whatever comes in
    g = 0.3 + 0.01 * torch.rand(1, 3, 32, 32)
    p = g * 0.5 + 0.1
    eps = torch.tensor(1e-3)
    a32, b32 = guided_coefficients(g, p, eps)
    a16, b16 = guided_coefficients(g.half(), p.half(), eps.half())
    assert a16.dtype == torch.float16
    assert (a16.float() - a32).abs().max() < 2e-3 and (b16.float() - b32).abs().max() < 2e-3


def test_untrained_toon_flattens_texture_and_keeps_the_border() -> None:
    net = ToonGenerator(width=8, width_low=8, n_res=1).eval()
    x = _picture()
    with torch.no_grad():
        y = net(x)
    inside = (slice(None), slice(None), slice(8, 56), slice(6, 40))
    assert y[inside].std() < 0.5 * x[inside].std()  # the noise (texture) is flattened
    # the border stays where it is: the column means left and right of it differ as much as the photo's
    col = y.mean((0, 1, 2))
    assert (col[52] - col[44]).abs() > 0.5 * (x.mean((0, 1, 2))[52] - x.mean((0, 1, 2))[44]).abs()


def test_strength_zero_gives_back_the_photo_and_grows_monotonically() -> None:
    net = tiny("toon")
    x = _picture()
    diffs = []
    for s in (0.0, 0.25, 0.5, 1.0):
        net.set_controls(strength=s)
        with torch.no_grad():
            diffs.append(float((net(x) - x).abs().mean()))
    assert diffs[0] < 2e-3
    assert diffs == sorted(diffs) and diffs[-1] > 10 * max(diffs[0], 1e-4)


def test_strength_acts_inside_not_as_a_blend() -> None:
    # a blend of input and output would make strength 0.5 exactly the mean of 0 and 1
    net = tiny("toon")
    x = _picture()
    outs = {}
    for s in (0.0, 0.5, 1.0):
        net.set_controls(strength=s)
        with torch.no_grad():
            outs[s] = net(x)
    assert (outs[0.5] - 0.5 * (outs[0.0] + outs[1.0])).abs().max() > 0.02


def test_outline_only_darkens_and_zero_draws_none() -> None:
    net = ToonGenerator(width=8, width_low=8, n_res=1).eval()
    x = _picture()
    with torch.no_grad():
        ys = {o: net.set_controls(outline=o)(x) for o in (0.0, 1.0, 2.0)}
    assert (ys[1.0] <= ys[0.0] + 1e-5).all() and (ys[2.0] <= ys[1.0] + 1e-5).all()
    border = (slice(None), slice(None), slice(8, 56), slice(44, 52))
    assert ys[0.0][border].mean() - ys[2.0][border].mean() > 0.05  # the border gets an outline


def test_controls_are_validated_and_key_the_export_cache() -> None:
    from vidtoon.engines.onnx_export import generator_hash

    net = tiny("toon")
    with pytest.raises(VidtoonError, match=r"strength must be in \[0, 1\]"):
        apply_controls(net, strength=1.5)
    with pytest.raises(VidtoonError, match="no --strength/--outline"):
        apply_controls(tiny("cartoongan"), strength=0.5)
    assert apply_controls(tiny("cartoongan")) is not None  # defaults are fine for every generator
    h1 = generator_hash(net)
    # an export with the controls as inputs serves every value; one that bakes them in (TensorRT) is keyed by them
    assert generator_hash(apply_controls(net, strength=0.5)) == h1
    assert generator_hash(net, controls=True) != generator_hash(apply_controls(net, strength=1.0), controls=True)


def test_fast_generator_controls_act_inside(tmp_path: Path) -> None:
    net = FastGenerator(width=8, width_low=8, n_res=1, ink_refine=True, edge_aware=True)
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    net.eval()
    x = _picture()
    with torch.no_grad():
        full = net(x)
        zero = net.set_controls(strength=0.0)(x)
    assert (zero - x).abs().max() < 1e-5 and (full - x).abs().mean() > 1e-2


def test_models_of_the_first_release_still_load(tmp_path: Path) -> None:
    # the first default model (fast generator, edge_aware + ink_refine) ships as "classic"; any
    # export-model output of that release loads by path, with or without the new controls
    net = load_generator("classic")
    assert isinstance(net, FastGenerator) and net.config.get("edge_aware") and net.config.get("ink_refine")
    path = export_generator(tiny("fast"), "fast", tmp_path / "mine.pt")
    old = load_generator(str(path), strength=0.5, outline=2.0)
    assert isinstance(old, FastGenerator) and old.strength == 0.5 and old.outline == 2.0
    with torch.no_grad():
        assert torch.isfinite(old(_picture())).all()


def test_default_model_is_a_toon_model_that_visibly_stylizes() -> None:
    net = load_generator("default")
    assert isinstance(net, ToonGenerator)
    x = _picture(128, 192)
    with torch.no_grad():
        y = net(x)
    assert float((y - x).abs().mean()) * 127.5 > 8  # levels of 255: a cartoon, not a filtered photo
    assert np.isfinite(y.numpy()).all()
