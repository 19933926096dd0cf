"""Strokes drawn from an edge-probability map (networks/strokes.py)."""
from __future__ import annotations

import numpy as np
import torch

from vidtoon.networks.strokes import strokes, suppress


def _ridge_map(h: int, w: int, lines: list[tuple[float, float, float, float, float]], width: float = 2.5) -> np.ndarray:
    """A soft edge map like HED's: Gaussian ridges (sigma ``width`` px) along segments (y0, x0, y1, x1, peak)."""
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    out = np.zeros((h, w))
    for y0, x0, y1, x1, peak in lines:
        d = np.array([y1 - y0, x1 - x0])
        t = np.clip(((yy - y0) * d[0] + (xx - x0) * d[1]) / (d @ d), 0, 1)
        dist = np.hypot(yy - (y0 + t * d[0]), xx - (x0 + t * d[1]))
        out = np.maximum(out, peak * np.exp(-dist ** 2 / (2 * width ** 2)))
    return out


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32))[None, None]


def test_a_diagonal_ridge_is_thinned_across_itself_without_ticks() -> None:
    # a wide diagonal ridge (45 deg): suppression along the axes leaves bands three pixels wide and more
    # beside it; across the ridge's own orientation it is a staircase on the centre line (one or two
    # pixels per row: where the crest falls between two pixels one of them is kept)
    p = _ridge_map(64, 64, [(8, 8, 56, 56, 0.9)], width=3.0)
    crest = suppress(_t(p))[0, 0].numpy() * (p > 0.3)
    rows = crest[12:52].sum(1)
    assert np.all(rows >= 1) and rows.max() <= 2
    ys, xs = np.nonzero(crest[12:52])
    assert np.abs((ys + 12) - xs).max() <= 1  # on the ridge's centre line


def test_one_connected_stroke_along_a_contour_and_nothing_in_flat_parts() -> None:
    p = _ridge_map(72, 96, [(36, 6, 36, 90, 0.85)])
    p += np.random.default_rng(0).uniform(0, 0.08, p.shape)  # low clutter, below the low threshold
    ink = strokes(_t(p), 1.0)[0, 0].numpy()
    cols = ink[30:43, 10:86].sum(0)
    assert cols.min() > 0.7  # connected: ink in every column along the contour
    assert np.allclose(cols, cols.mean(), atol=0.5)
    assert ink[:26].max() < 0.02 and ink[46:].max() < 0.02


def test_short_dashes_and_weak_lone_ridges_are_dropped() -> None:
    # a long strong contour stays; a 3-px strong dash, and a long weak ridge not connected to any strong
    # one (hysteresis), go
    p = _ridge_map(80, 96, [(20, 8, 20, 88, 0.9), (50, 40, 50, 42, 0.9), (66, 8, 66, 88, 0.45)])
    ink = strokes(_t(p), 1.0)[0, 0].numpy()
    assert ink[16:25, 10:86].sum(0).min() > 0.7
    assert ink[45:56, 30:55].max() < 0.05
    assert ink[61:72].max() < 0.05


def test_width_scales_with_the_frame_and_contours_are_bolder_than_detail() -> None:
    p = _ridge_map(64, 96, [(20, 4, 20, 92, 0.95), (44, 4, 44, 92, 0.68)])  # a contour and an inner line

    def width(scale: float, row: int) -> float:
        return float(strokes(_t(p), scale)[0, 0].numpy()[row - 8:row + 9, 20:76].sum(0).mean())

    assert width(2.0, 20) > 1.6 * width(1.0, 20)   # 720 lines vs 360: about twice as wide
    assert width(3.0, 20) > 1.2 * width(2.0, 20)
    assert width(2.0, 20) > 1.3 * width(2.0, 44)   # the strong contour wider than the weak inner line
    assert width(1.0, 44) > 0.5                     # the inner line is drawn all the same


def test_no_stroke_along_the_frames_border() -> None:
    # HED's maps are high along the picture's border (zero padding); that is not an object contour
    p = _ridge_map(48, 64, [(2, 2, 2, 62, 0.9), (2, 2, 46, 2, 0.9)], width=2.0)
    assert strokes(_t(p + _ridge_map(48, 64, [(24, 8, 24, 56, 0.9)])), 1.0)[0, 0].numpy()[20:29].max() > 0.5
    assert strokes(_t(p), 1.0)[0, 0].numpy().max() < 0.05
