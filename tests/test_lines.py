"""Canny-style outlines inside the network (networks/lines.py) and the fitted default look (trainer/tune.py)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from vidtoon.models import export_generator, load_generator
from vidtoon.networks import ToonGenerator
from vidtoon.networks.lines import canny_lines, gradients, subpixel_splat, trace_lines
from vidtoon.trainer import tune

CANNY = (50 * 2 / 255, 120 * 2 / 255)  # OpenCV's thresholds 50 / 120, in [-1, 1] units


def _gray(img: np.ndarray) -> torch.Tensor:
    """uint8 HxW -> 1x1xHxW in [-1, 1]."""
    return torch.from_numpy(img.astype(np.float32) / 127.5 - 1.0)[None, None]


def test_a_step_gets_one_thin_line_and_flat_noise_none() -> None:
    rng = np.random.default_rng(0)
    img = np.full((48, 64), 80.0)
    img[:, 32:] = 180.0
    img += rng.normal(0, 2.0, img.shape)  # sensor noise, far below the low threshold
    line = canny_lines(_gray(img.clip(0, 255)), *CANNY, steps=6)[0, 0].numpy()
    rows = line[4:-4]
    # about one pixel of ink per row (anti-aliased over three), centred on the step
    assert np.allclose(rows.sum(1), 1.0, atol=0.3)
    centre = (rows * np.arange(64)).sum(1) / rows.sum(1)
    assert np.abs(centre - 31.5).max() <= 1.0
    assert line[:, :26].max() < 0.02 and line[:, 38:].max() < 0.02  # nothing in the flat, noisy parts


def test_hysteresis_follows_a_weak_edge_only_from_a_strong_one() -> None:
    # two horizontal edges, both weak (between the thresholds) on the right half; only the upper one is
    # strong on its left half: hysteresis keeps the upper weak part, drops the lower one
    img = np.full((64, 96), 100.0)
    # (after the blur Canny's thresholds assume, a step of h levels has a gradient of about 2.56 h)
    img[16:, :] += 28.0  # upper edge, weak everywhere (gradient ~72: above 50, below 120)
    img[16:, :40] += 30.0  # ... strong on the left
    img[44:, 48:] += 28.0  # lower edge, weak, and only on the right
    gray = _gray(cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.6))
    far = canny_lines(gray, *CANNY, steps=64)[0, 0].numpy()
    assert far[14:18, 60:90].sum(0).min() > 0.6  # the weak part of the upper edge, connected: kept
    assert far[42:46, 60:90].max() < 0.05  # the lower edge, weak and alone: dropped
    near = canny_lines(gray, *CANNY, steps=4)[0, 0].numpy()
    assert near[14:18, 80:90].max() < 0.05  # hysteresis stops after ``steps`` pixels


def _chain(seed: float) -> torch.Tensor:
    """A gradient magnitude with one horizontal ridge (row 8) of weak pixels (0.3) and one seed at column 4."""
    mag = torch.zeros(1, 1, 17, 32)
    mag[..., 8, 2:30] = 0.3
    mag[..., 8, 4] = seed
    return mag


def test_soft_seeds_make_a_chain_as_dark_as_its_strongest_pixel_is_past_the_threshold() -> None:
    low, high, steps = 0.2, 0.5, 40
    across_y = torch.zeros(1, 1, 17, 32)  # the gradient is along y: suppression looks up and down

    def chain(seed: float, ramp: float) -> np.ndarray:
        line = trace_lines(_chain(seed), across_y, low, high, steps, seed_ramp=ramp)[0, 0]
        return line.sum(0)[6:28].numpy()  # ink per column along the chain, away from its ends

    # Canny's hard test: just below the threshold the whole chain is gone, just above it is all there
    assert chain(0.49, 0.0).max() == 0.0 and chain(0.51, 0.0).min() > 0.9
    # soft seeds: the chain's darkness follows its strongest pixel, with no jump at the threshold ...
    below, above = chain(0.49, 1.0), chain(0.51, 1.0)
    assert np.allclose(below, 0.49, atol=0.02) and np.allclose(above, 0.51, atol=0.02)
    assert np.allclose(below, below[0], atol=1e-6)  # ... carried along the chain without fading
    # ... and a chain with a strong seed (twice the threshold) is drawn exactly as Canny draws it
    assert np.allclose(chain(1.0, 1.0), chain(1.0, 0.0), atol=1e-6)
    # a chain of weak pixels alone: dropped by Canny; with soft seeds as light as its own pixels are
    # (0.3 of a ramp from 0 to 1.0: 0.3, times the weak test's sigmoid), and dropped below the ramp's foot
    assert chain(0.3, 0.0).max() == 0.0 and np.allclose(chain(0.3, 1.0), 0.3, atol=0.01)
    assert chain(0.3, 0.2).max() == 0.0


def _soft_step(offset: float, h: int = 24, w: int = 40) -> torch.Tensor:
    """A vertical border blurred as a camera blurs it (an erf of sigma 1 px) at column 19.5 + ``offset``,
    from -0.6 to 0.6: 1 x 1 x H x W."""
    x = torch.arange(w, dtype=torch.float64) - (19.5 + offset)
    row = 0.6 * torch.erf(x / (math.sqrt(2.0) * 1.0))
    return row.to(torch.float32).expand(1, 1, h, w).clone()


def _lines(img: torch.Tensor, subpixel: bool) -> torch.Tensor:
    gx, gy = gradients(img)
    return trace_lines(gx.abs() + gy.abs(), (gy.abs() <= gx.abs()).float(), 0.2, 0.5, 6, subpixel=subpixel)


def test_subpixel_lines_follow_a_border_between_pixels_instead_of_jumping() -> None:
    offsets = [i / 8 for i in range(9)]  # the border moving right by an eighth of a pixel a frame

    def centres(subpixel: bool) -> np.ndarray:
        out = []
        for f in offsets:
            rows = _lines(_soft_step(f), subpixel)[0, 0, 4:-4].numpy()
            out.append(float(((rows * np.arange(rows.shape[1])).sum(1) / rows.sum(1)).mean()))
        return np.array(out) - out[0]

    grid, sub = centres(False), centres(True)
    # Canny's pixel-grid line stays, then jumps a whole pixel
    assert np.abs(np.diff(grid)).max() > 0.9 and np.abs(grid - offsets).max() > 0.4
    # the sub-pixel line moves with the border, an eighth of a pixel a frame
    assert np.abs(sub - offsets).max() < 0.1 and np.diff(sub).min() > 0.05
    # and it is the same line: as much ink, on the same rows
    for f in offsets:
        a, b = _lines(_soft_step(f), False), _lines(_soft_step(f), True)
        assert torch.allclose(a[0, 0, 4:-4].sum(1), b[0, 0, 4:-4].sum(1), atol=1e-5)


def test_subpixel_splat_keeps_a_sharp_steps_line_in_place() -> None:
    # a sharp step between two pixel columns has two equal gradient pixels: each gives the other half its ink,
    # so the line stays centred where it was
    img = torch.full((1, 1, 20, 32), -0.5)
    img[..., 16:] = 0.5
    a, b = _lines(img, False)[0, 0, 4:-4].numpy(), _lines(img, True)[0, 0, 4:-4].numpy()
    centre = lambda m: (m * np.arange(32)).sum(1) / m.sum(1)  # noqa: E731
    assert np.allclose(centre(a), 15.5, atol=1e-4) and np.allclose(centre(b), 15.5, atol=1e-4)
    assert np.allclose(a.sum(1), b.sum(1), atol=1e-5)
    # the splat itself: ink moved to the crest's side, its sum kept, nothing moved off a zero
    mag = torch.tensor([[0.0, 0.5, 1.0, 0.9, 0.0]]).view(1, 1, 1, 5)
    ink = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]]).view(1, 1, 1, 5)
    out = subpixel_splat(ink, mag, torch.ones_like(mag))[0, 0, 0]
    crest = 0.5 * (0.5 - 0.9) / (0.5 - 2.0 + 0.9)  # the parabola's peak: 1/3 px to the right
    assert torch.allclose(out, torch.tensor([0.0, 0.0, 1.0 - crest, crest, 0.0]), atol=1e-6)


def test_seed_weights_carry_along_the_chain_as_the_best_seed_allows() -> None:
    low, high, steps = 0.2, 0.5, 40
    across_y = torch.zeros(1, 1, 17, 32)
    mag = _chain(1.0)
    mag[..., 8, 20] = 1.0  # a second seed
    weight = torch.zeros_like(mag)

    def chain(w: torch.Tensor) -> np.ndarray:
        return trace_lines(mag, across_y, low, high, steps, seed_weight=w)[0, 0].sum(0)[6:28].numpy()

    assert chain(weight).max() == 0.0  # no seed may start a line: none drawn
    weight[..., 8, 20] = 1.0  # one seed in full: the whole chain, as Canny draws it, not a dash around it
    assert np.allclose(chain(weight), chain(torch.ones_like(mag)), atol=1e-6)
    weight[..., 8, 20] = 0.4  # a chain as dark as its best seed allows, along its whole length
    assert np.allclose(chain(weight), 0.4 * chain(torch.ones_like(mag)), atol=1e-6)


def test_lines_agree_with_opencv_canny() -> None:
    # the thresholds read as Canny's: on a picture with shapes of many contrasts, most of OpenCV's edge
    # pixels (after the same Gaussian blur) have an outline within a pixel, and the other way round
    rng = np.random.default_rng(1)
    img = np.full((96, 128, 3), 120, np.uint8)
    for _ in range(14):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        centre = tuple(int(v) for v in rng.integers(10, 118, 2))
        cv2.circle(img, centre, int(rng.integers(6, 30)), c, -1, lineType=cv2.LINE_AA)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    ref = cv2.Canny(cv2.GaussianBlur(gray, (0, 0), 1.0), 50, 120) > 0
    rgb = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    luma = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    ours = canny_lines(luma, *CANNY, steps=6)[0, 0].numpy() > 0.2
    near = lambda m: cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # noqa: E731
    assert ref.sum() > 200
    assert (ref & near(ours)).sum() / ref.sum() > 0.85
    assert (ours & near(ref)).sum() / ours.sum() > 0.85


def test_the_default_look_is_the_feature_free_toon_filter() -> None:
    cfg = load_generator("default").config  # since 2026-12-02: the mode look (tests/test_modes.py)
    assert cfg["width"] == 0 and cfg["flatten"] == "modes" and cfg["lines"] == "flat"
    net = load_generator("toon-canny")  # the default before it: its Canny outlines
    assert isinstance(net, ToonGenerator) and net.config["width"] == 0 and net.config["lines"] == "canny"
    assert not hasattr(net, "enc") and sum(p.numel() for p in net.parameters()) < 10
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.uniform(-1, 1, (1, 3, 37, 61)).astype(np.float32))
    with torch.no_grad():
        assert (net.set_controls(strength=0.0)(x) - x).abs().max() < 2e-3  # strength 0: the photo
        net.set_controls(strength=1.0)
    # its exports (every form) are checked by test_onnx_export.test_every_shipped_model_exports_in_every_form


def test_toon_models_without_the_new_options_keep_their_config(tmp_path) -> None:
    # a toon checkpoint of the previous release (config without saturation/lines) loads with the gradient
    # outlines it was made with, and its config (which keys the export cache) is unchanged
    old = ToonGenerator(width=8, width_low=8, n_res=1, iters=2).eval()
    assert set(old.config) == {"width", "width_low", "n_res", "iters", "bins"}
    path = export_generator(old, "toon", tmp_path / "old.pt")
    again = load_generator(str(path))
    assert again.config == old.config
    x = torch.rand(1, 3, 24, 40) * 2 - 1
    with torch.no_grad():
        assert torch.equal(again(x), old(x))
    with pytest.raises(ValueError, match="lines must be"):
        ToonGenerator(lines="xdog")


def test_search_keeps_the_lowest_kid_above_the_content_floors() -> None:
    # a synthetic scorer: KID falls with more iterations, but 64 iterations break the content floor
    calls = []

    def score(look):
        calls.append(dict(look))
        return {"kid_x1e3": 100.0 - look["iters"] - 3 * look["bins"], "feature_cosine": 0.5 if look["iters"] == 64 else 0.7,
                "ssim_luma": 0.6}

    start = {**tune.START, "iters": 32, "bins": 4}
    best, history = tune.search(score, start, {"iters": (32, 44, 64), "bins": (3, 4, 6)}, rounds=2, log=lambda m: None)
    assert best["iters"] == 44 and best["bins"] == 6
    assert len(history) == len(calls) == len({repr(sorted(c.items())) for c in calls})  # each look scored once


def test_tune_command_writes_a_loadable_model(tmp_path, monkeypatch) -> None:
    # the real judge on a few tiny images; a one-candidate space keeps it quick
    rng = np.random.default_rng(3)
    for folder in ("photos", "cartoons"):
        (tmp_path / folder).mkdir()
        for i in range(4):
            img = np.full((48, 64, 3), rng.integers(0, 256, 3), np.uint8)
            cv2.rectangle(img, (10, 8), (40, 30), tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
            cv2.imwrite(str(tmp_path / folder / f"{i}.png"), img)
    monkeypatch.setattr(tune, "SPACE", {"bins": (4, 5)})
    out = tmp_path / "look.pt"
    tune.main(["--photos", str(tmp_path / "photos"), "--cartoons", str(tmp_path / "cartoons"), "--holdout", "0",
               "--min-cosine", "0", "--min-ssim", "0", "--out", str(out)])
    net = load_generator(str(out))
    assert isinstance(net, ToonGenerator) and net.config["bins"] in (4, 5) and net.config["width"] == 0


def _toon(**look) -> ToonGenerator:
    return ToonGenerator(width=0, iters=8, bins=4, lines="canny", **look).eval()


def test_shadows_keep_dark_regions_from_turning_black() -> None:
    # a dark flat patch (luma 0.06) falls on the lowest tone plateau (black) unless ``shadows`` keeps it
    x = torch.full((1, 3, 32, 32), 0.06 * 2 - 1.0)
    level = lambda t: float((t + 1).mean() * 127.5)  # noqa: E731
    outs = []
    for shadows in (0.0, 0.25):
        net = _toon(shadows=shadows)
        with torch.no_grad():
            net.log_sharp.fill_(math.log(4.0))
            outs.append(level(net(x)))
    assert outs[0] < 4 and outs[1] > 0.7 * 0.06 * 255


def test_texture_lines_lighten_lines_in_texture_but_not_at_a_clean_border() -> None:
    rng = np.random.default_rng(4)
    img = np.full((64, 128), 90.0)
    img[:, 64:] = 180.0  # a clean border at column 64 (rows 0-31)
    img[32:, :] = 90.0 + rng.choice([0.0, 90.0], size=(32, 128))  # rows 32-63: strong random texture
    x = _gray(cv2.GaussianBlur(img.astype(np.float32), (0, 0), 1.0)).repeat(1, 3, 1, 1)
    with torch.no_grad():
        _, _, plain = _toon()(x, parts=True)
        _, _, lighter = _toon(texture_lines=1.0)(x, parts=True)
    border = (slice(None), slice(None), slice(4, 24), slice(60, 68))
    texture = (slice(None), slice(None), slice(40, 60), slice(8, 120))
    assert lighter[border].sum() > 0.8 * plain[border].sum() > 0
    assert lighter[texture].sum() < 0.5 * plain[texture].sum()
