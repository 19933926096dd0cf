"""The networks: any frame size in and out, parameter and MAC counts, checkpoint round trip."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import tiny_generator

import vidtoon
from vidtoon.errors import VidtoonError
from vidtoon.models import export_generator, read_checkpoint
from vidtoon.networks import (
    CartoonGANGenerator,
    FastGenerator,
    PatchDiscriminator,
    build_generator,
    count_macs,
    count_params,
)

TINY = {"cartoongan": dict(width=4, n_res=1), "fast": dict(width=8, width_low=8, n_res=1),
        "toon": dict(width=8, width_low=8, n_res=1, iters=2, bins=6)}


@pytest.mark.parametrize("arch", sorted(TINY))
@pytest.mark.parametrize("size", [(37, 53), (48, 64), (5, 7), (720 // 8, 1280 // 8)])
def test_generators_take_any_size(arch: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = build_generator(arch, **TINY[arch]).eval()
    x = torch.rand(2, 3, *size) * 2 - 1
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert y.min() >= -1.0 and y.max() <= 1.0


@pytest.mark.parametrize("size", [(37, 53), (5, 7), (1, 1), (90, 160)])
def test_fast_generator_options_take_any_size(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = FastGenerator(**TINY["fast"], ink_refine=True, edge_aware=True)
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    net.eval()
    x = torch.rand(2, 3, *size) * 2 - 1
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and torch.isfinite(y).all() and y.abs().max() <= 1.0
    assert net.config == {**TINY["fast"], "ink_refine": True, "edge_aware": True}


def test_edge_aware_flat_path_keeps_borders_sharp() -> None:
    # the flat colour image of a noisy two-region picture: flat inside each region (the noise averaged
    # away), and the border as sharp as the photo's, where bilinear upsampling spreads it over 4+ pixels
    from vidtoon.networks.fast import EdgeAwareFlat

    torch.manual_seed(0)
    x = torch.full((1, 3, 64, 64), -0.5)
    x[..., 30:] = 0.5
    x = x + 0.05 * torch.randn_like(x)
    mean4 = torch.nn.functional.avg_pool2d(x, 4)
    flat = EdgeAwareFlat(width=8)(x, mean4, mean4, torch.zeros(1, 8, 16, 16)).detach()
    bilinear = torch.nn.functional.interpolate(mean4, scale_factor=4.0, mode="bilinear", align_corners=False)
    assert flat[..., 4:26].std() < 0.5 * x[..., 4:26].std()  # noise flattened inside a region
    assert (flat[..., 29] - x[..., 29]).abs().mean() < 0.1 and (flat[..., 30] - x[..., 30]).abs().mean() < 0.1
    assert (bilinear[..., 29] - x[..., 29]).abs().mean() > 0.2  # what the edge-aware path avoids


def test_fast_generator_takes_a_single_pixel() -> None:
    # (the paper generator needs 5 px: its reflection padding at 1/4 size needs 2 px there)
    net = FastGenerator(**TINY["fast"]).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 1, 1)).shape == (1, 3, 1, 1)


def test_generators_are_per_frame() -> None:
    # a frame's output must not depend on the other frames of its batch (batch size is a speed knob)
    torch.manual_seed(0)
    for arch in TINY:
        net = build_generator(arch, **TINY[arch]).eval()
        x = torch.rand(3, 3, 24, 40) * 2 - 1
        with torch.no_grad():
            together = net(x)
            alone = torch.cat([net(x[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_ink_refine_starts_as_the_same_function_then_draws_per_pixel() -> None:
    torch.manual_seed(0)
    plain = FastGenerator(**TINY["fast"])
    for p in plain.parameters():
        p.data.normal_(0, 0.1)
    refined = FastGenerator(**TINY["fast"], ink_refine=True)
    missing = refined.load_state_dict(plain.state_dict(), strict=False)
    assert missing.missing_keys == ["ink_refine.weight", "ink_refine.bias"] and not missing.unexpected_keys
    plain.eval(), refined.eval()
    x = torch.rand(1, 3, 37, 53) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(refined(x), plain(x))
        # ink where the photo's gradient is strong: a vertical step gets a dark line only around the step
        refined.ink_refine.weight[0, 2] = 10.0
        step = torch.full((1, 3, 32, 32), 0.8)
        step[..., 16:] = -0.2
        delta = (plain(step) - refined(step)).mean((0, 1, 2))
    assert delta[14:18].min() > 0.1 and delta[:10].abs().max() < 1e-4 and delta[22:].abs().max() < 1e-4


def test_grouped_stencils_compute_the_same_function() -> None:
    # the export-only form of the Sobel and ink_refine stencils (grouped convolutions) must be exact
    torch.manual_seed(0)
    net = FastGenerator(**TINY["fast"], ink_refine=True, edge_aware=True).eval()
    for p in net.parameters():
        p.data.normal_(0, 0.2)
    x = torch.rand(2, 3, 29, 46) * 2 - 1
    with torch.no_grad():
        plain = net(x)
        net.grouped_stencils = True
        grouped = net(x)
    assert plain.std() > 0.05  # a non-trivial output, so equality means something
    torch.testing.assert_close(grouped, plain, atol=1e-5, rtol=1e-5)


def test_discriminator_is_a_quarter_size_patch_classifier() -> None:
    d = PatchDiscriminator(width=4)
    assert d(torch.rand(2, 3, 64, 96)).shape == (2, 1, 16, 24)
    assert PatchDiscriminator(width=4, spectral=True)(torch.rand(1, 3, 32, 32)).shape == (1, 1, 8, 8)


def _paper_generator_params() -> int:
    """CartoonGAN's generator parameter count from the paper's layer list, written out independently."""
    def conv(cin: int, cout: int, k: int) -> int:
        return cin * cout * k * k + cout

    def inorm(c: int) -> int:
        return 2 * c  # affine instance norm: weight and bias

    flat = conv(3, 64, 7) + inorm(64)
    down = conv(64, 128, 3) + conv(128, 128, 3) + inorm(128) + conv(128, 256, 3) + conv(256, 256, 3) + inorm(256)
    res = 8 * (2 * conv(256, 256, 3) + 2 * inorm(256))
    up = conv(256, 128, 3) + conv(128, 128, 3) + inorm(128) + conv(128, 64, 3) + conv(64, 64, 3) + inorm(64)
    return flat + down + res + up + conv(64, 3, 7)


def test_paper_generator_parameter_count() -> None:
    assert count_params(CartoonGANGenerator()) == _paper_generator_params() == 11_129_667


def test_count_macs_of_single_layers() -> None:
    assert count_macs(nn.Conv2d(3, 8, 3, padding=1), 10, 12) == 8 * 10 * 12 * 3 * 9
    # a depthwise conv: each output channel sees one input channel
    assert count_macs(nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=8)), 10, 12) \
        == 8 * 120 * 3 + 8 * 120 * 9
    # a transposed conv multiplies every input pixel by its whole kernel, per output channel
    assert count_macs(nn.ConvTranspose2d(3, 4, 3, 2, 1, output_padding=1), 5, 6) == 5 * 6 * 3 * 4 * 9


def test_macs_scale_with_pixels_and_fast_fits_the_cpu_budget() -> None:
    fast, paper = FastGenerator(), CartoonGANGenerator()
    # fully convolutional: cost is linear in the pixel count (sizes that need no padding)
    assert count_macs(fast, 64, 64) * 4 == count_macs(fast, 128, 128)
    assert count_macs(paper, 32, 32) * 4 == count_macs(paper, 64, 64)
    per_720p = 720 * 1280 // (64 * 64)
    fast_720p = count_macs(fast, 64, 64) * per_720p
    paper_720p = count_macs(paper, 64, 64) * per_720p
    assert fast_720p <= 4e9  # the budget for 12 fps at 720p on 2 cores
    assert paper_720p > 100 * fast_720p  # the paper's network is far beyond it
    assert count_params(fast) < count_params(paper) / 20


@pytest.mark.parametrize("arch", sorted(TINY))
def test_checkpoint_round_trip(tmp_path: Path, arch: str) -> None:
    torch.manual_seed(1)
    net = tiny_generator() if arch == "fast" else build_generator(arch, **TINY[arch]).eval()
    path = export_generator(net, arch, tmp_path / f"{arch}.pt", meta={"note": "test"})
    ckpt = read_checkpoint(path)
    assert ckpt["arch"] == arch and ckpt["config"] == TINY[arch] and ckpt["meta"] == {"note": "test"}
    loaded = vidtoon.load_generator(str(path))
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(1, 3, 30, 42) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net.eval()(x))
    assert not list(tmp_path.glob("*.part"))


def test_checkpoint_prefers_ema_weights(tmp_path: Path) -> None:
    a, b = tiny_generator(seed=1), tiny_generator(seed=2)
    path = tmp_path / "train.pt"
    torch.save({"arch": "fast", "config": TINY["fast"], "params": a.state_dict(), "params_ema": b.state_dict()},
               path)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(vidtoon.load_generator(str(path))(x), b(x))


def test_bad_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(VidtoonError, match="is not a vidtoon model"):
        vidtoon.load_generator(str(junk))
    with pytest.raises(VidtoonError, match=r"neither a shipped model \(.*default.*, hq\)"):
        vidtoon.load_generator(str(tmp_path / "missing.pt"))
