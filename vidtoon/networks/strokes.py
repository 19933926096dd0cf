"""Strokes drawn from an edge-probability map (HED's or the student's) as an artist would ink them.

An edge map is soft: its ridges are 3-8 px wide. A probe (../shared/EDGES.md) learnt two ways *not* to
thin it: thresholding and skeletonizing draws closed "stained-glass" cells over walls (the skeleton of a
wide blob is a network), and crests across x or y draw "barbed-wire" ticks along contours (suppression
must follow the map's own orientation). So, as Dollar's structured-edge toolbox does, here:

1. **Orientation** of each ridge from the Hessian of the (smoothed) map: the direction across a ridge is
   the eigenvector of the most negative curvature; it is binned into four sectors (0, 45, 90, 135 deg)
   through the doubled-angle vector (Hyy - Hxx, -2 Hxy), so no trigonometry is needed.
2. **Non-maximum suppression** across that direction: a pixel stays if the map there is no lower than its
   two neighbours across the ridge.
3. **Hysteresis**: ridge pixels above ``low`` are kept when connected to a pixel above ``high``.
4. **No stubs or floating dashes**: a pixel stays only near a stroke pixel that has stroke pixels far away
   on both sides of it (left and right, or above and below), so short strokes and isolated dashes vanish
   and long ones keep their ends.
5. **Weight**: darkness from the edge strength; width scales with the frame (``scale``: ~1 px per 360
   lines of picture), object contours (strong edges) wider than inner detail; then anti-aliased.

Pools, pads, slices and elementwise arithmetic only (ONNX-friendly, as networks/lines.py); the frame-size
scale enters as a tensor in elementwise blends, never as a kernel size, so one exported graph serves every
frame size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vidtoon.networks.lines import _binomial, _blur3


def _shift(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``t`` moved so that pixel (y, x) holds the value of (y + dy, x + dx) (replicated borders)."""
    h, w = t.shape[-2:]
    p = F.pad(t, (1, 1, 1, 1), mode="replicate")
    return p[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def suppress(p: torch.Tensor) -> torch.Tensor:
    """1 where ``p`` (N x 1 x H x W) is a ridge crest across its own orientation (steps 1-2), else 0.

    A crest pixel is above one neighbour across the ridge and no lower than the other (a crest between two
    pixels keeps one of them), and the map curves down across it (beside a ridge the strongest downward
    curvature runs along it, ~0, and the neighbours along the ridge tie: those pixels are not crests).
    """
    c, r, l, d, u = p, _shift(p, 0, 1), _shift(p, 0, -1), _shift(p, 1, 0), _shift(p, -1, 0)
    hxx = r + l - 2.0 * c
    hyy = d + u - 2.0 * c
    dr, ul, ur, dl = _shift(p, 1, 1), _shift(p, -1, -1), _shift(p, -1, 1), _shift(p, 1, -1)
    hxy = 0.25 * (dr + ul - ur - dl)
    u2, v2 = hyy - hxx, -2.0 * hxy  # doubled angle of the direction across the ridge
    axis = (u2.abs() >= v2.abs()).to(p.dtype)
    across_x = axis * (u2 > 0).to(p.dtype)      # across = x: compare left and right
    across_y = axis - across_x                    # across = y
    diag = (1.0 - axis) * (v2 > 0).to(p.dtype)  # across = (1, 1)
    anti = 1.0 - axis - diag                      # across = (1, -1)

    def above(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (c > a).to(p.dtype) * (c >= b).to(p.dtype)

    crest = (across_x * above(l, r) + across_y * above(u, d) + diag * above(ul, dr) + anti * above(dl, ur))
    curv = 0.5 * (hxx + hyy) - 0.5 * torch.sqrt(u2 * u2 + v2 * v2 + 1e-12)  # the most negative curvature
    return crest * (curv < -2e-3).to(p.dtype)


def _far(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``t`` moved by (dy, dx) pixels with zeros coming in (pixel (y, x) gets (y + dy, x + dx))."""
    h, w = t.shape[-2:]
    m = max(abs(dy), abs(dx))
    p = F.pad(t, (m, m, m, m))
    return p[..., m + dy:m + dy + h, m + dx:m + dx + w]


def _long(line: torch.Tensor, reach: int) -> torch.Tensor:
    """Pixels of ``line`` kept for belonging to a long stroke: those within ``reach`` px of a line pixel
    whose stroke has pixels on both far sides of it (``reach`` +- 1 px away, left and right or above and
    below): a stroke must span about ``2 reach - 1`` px. Short dashes have no far sides; the ends of long strokes are kept through their middles."""
    k = 2 * reach + 1
    # (max pools are separable: a k x 3 window as k x 1 then 1 x 3, several times cheaper at 720p)
    tall = F.max_pool2d(line, (k, 1), 1, (reach, 0))
    wide = F.max_pool2d(line, (1, k), 1, (0, reach))
    band = F.max_pool2d(tall, (1, 3), 1, (0, 1))          # tall, narrow: pixels in the column band
    lr = _far(band, 0, -reach) * _far(band, 0, reach)
    band = F.max_pool2d(wide, (3, 1), 1, (1, 0))
    ud = _far(band, -reach, 0) * _far(band, reach, 0)
    good = line * torch.maximum(lr, ud)
    near = F.max_pool2d(F.max_pool2d(good, (1, k), 1, (0, reach)), (k, 1), 1, (reach, 0))  # separable: k x k
    return line * near


def _dilate(t: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Grey dilation of ``t`` to strokes about ``width`` px wide (1..5, fractional by blending sizes)."""
    d3 = F.max_pool2d(t, 3, 1, 1)
    d5 = F.max_pool2d(d3, 3, 1, 1)
    a = (width - 1.0).clamp(0.0, 2.0) * 0.5      # 1 px -> t, 3 px -> d3
    b = (width - 3.0).clamp(0.0, 2.0) * 0.5      # 3 px -> d3, 5 px -> d5
    return t + a * (d3 - t) + b * (d5 - d3)


def strokes(prob: torch.Tensor, scale: torch.Tensor | float, low: float = 0.3, high: float = 0.6,
            contour: float = 0.75, steps: int = 12, min_length: int = 6) -> torch.Tensor:
    """Ink in [0, 1] (N x 1 x H x W) drawn from an edge probability map ``prob`` (N x 1 x H x W in [0, 1]).

    ``scale``: the frame's size in units of 360 lines (a tensor or float; 2 at 720p): stroke width is
    ``scale`` px for inner detail and 1.6 x that for contours (edges above ``contour``), capped at 5 px;
    ``low``/``high``: hysteresis thresholds on the map, followed for ``steps`` px; ``min_length``: strokes
    spanning less than about twice this (px at 360 lines; twice that from 720 lines) are dropped.
    """
    p = _blur3(prob)  # the map's crest, steadied against pixel noise (it is 3-8 px wide anyway)
    # HED answers along the frame's border (its convolutions pad with zeros): no stroke there
    inside = F.pad(torch.ones_like(p[..., 3:-3, 3:-3]), (3, 3, 3, 3))
    ridge = suppress(p) * inside
    weak = ridge * (p > low).to(p.dtype)
    line = ridge * (p > high).to(p.dtype)
    for _ in range(steps):
        line = torch.maximum(line, weak * F.max_pool2d(line, 3, 1, 1))
    # stubs and dashes go; the length they need scales with the frame (x2 from 720 lines on)
    scale = torch.as_tensor(scale, dtype=p.dtype)
    big = (scale >= 2.0).to(p.dtype)
    short = _long(line, min_length)
    line = short + big * (_long(line, 2 * min_length) - short)
    strength = ((p - low) / (contour - low)).clamp(0.0, 1.0)
    ink = _dilate(line * (0.55 + 0.45 * strength), scale.clamp(1.0, 5.0))
    bold = _dilate(line * (p > contour).to(p.dtype), (1.6 * scale).clamp(1.0, 5.0))
    ink = torch.maximum(ink, bold)
    return _binomial(ink).clamp(0.0, 1.0)
