"""Mean shift's flattening inside a network: a local mode filter, and outlines of the flattened image.

Why (blind ratings, MODEL_CARD.md): people ranked mean shift + Canny outlines (``cv2.pyrMeanShiftFiltering``,
then Canny of the flattened image) first, for "large flat colour regions with crisp borders" and "clean dark
contour outlines", and punished the edge-aware diffusion of the toon default as "an edge-preserving blur
that looks like a denoised photo". Diffusion averages across soft borders a little at every step, so regions
fade into each other; mean shift moves each colour to the nearest mode of the colours around it, so a region
becomes one colour and a border stays where the colour changed.

:func:`mode_filter` is the range-only, "blurring" form of mean shift (Comaniciu & Meer 2002; Cheng 1995): each
pixel's colour moves to the kernel-weighted mean of the colours in a fixed window around it, weighted by how
close they are to its own colour (a Gaussian range kernel), and the image itself is what the next step reads,
so a region converges to its mode in a few steps. It runs at 1/4 resolution on a sparse window (5 samples 2 px
apart along the rows, then along the columns) whose spatial weight widens with the frame (a tensor, so one
exported graph serves every size).
Shifts, pads and elementwise arithmetic only (ONNX-friendly, as networks/lines.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vidtoon.networks.lines import _blur3, differences, gradients, trace_lines
from vidtoon.networks.strokes import _dilate

#: the frame size (shorter side, pixels) that the look's window and line width are given for: the photos
#: people rated were 300 px high (mean shift's spatial radius of 12 px was chosen for such photos)
REFERENCE_LINES = 300.0


def frame_scale(x: torch.Tensor) -> torch.Tensor:
    """The shorter side of frame ``x`` (N x C x H x W) in units of :data:`REFERENCE_LINES`, a 0-d tensor
    computed inside the graph (an exported model reads it from its input's shape)."""
    # a column and a row sliced off the frame (integer indexing, x[0, 0, :, 0], exports as Gathers that copy
    # the whole frame first: 17 of ONNX Runtime's 154 ms per 720p frame)
    h = torch.ones_like(x[:1, :1, :, :1], dtype=torch.float32).sum()
    w = torch.ones_like(x[:1, :1, :1, :], dtype=torch.float32).sum()
    return torch.minimum(h, w) / REFERENCE_LINES


def mode_filter(v: torch.Tensor, bandwidth: torch.Tensor | float, iters: int, spread: torch.Tensor | float,
                radius: int = 2, step: int = 2, barrier: torch.Tensor | None = None) -> torch.Tensor:
    """``iters`` steps of range-only blurring mean shift on ``v`` (N x C x H x W).

    Each step is a pass along rows, then one along columns: ``v(p) <- sum_q s(q - p) k(|v(q) - v(p)|) v(q) /
    sum_q s(q - p) k(...)`` over ``p`` itself and the offsets ``q - p`` in ``step * {-radius..radius}`` along
    the row (then the column); ``k`` a Gaussian of width ``bandwidth`` (colour units of ``v``), ``s`` a Gaussian
    of width ``spread`` (pixels of ``v``). Colours within about ``bandwidth`` of each other merge into their
    mode; colours further apart do not mix, so borders stay sharp. Rows then columns instead of a square
    window: the same look by eye on held-out photos, 3x cheaper (8 samples a step instead of 24; the mode
    filter took most of the look's time in ONNX Runtime at 720p).

    ``barrier`` (N x 1 x H x W in [0, 1], optional): object borders a learned edge map sees. A sample is
    weighed by 1 minus the strongest border between it and ``p`` (on the row or column segment joining them),
    so colours do not merge across a border even where they are close (a grey bunny against a dark burrow,
    a racket against a court), and a thin object keeps its colour instead of being merged into what is around
    it. The gates depend only on the barrier: they are computed once for all steps.
    """
    h, w = v.shape[-2:]
    m = radius * step
    inv = -0.5 / (bandwidth * bandwidth)
    if not isinstance(spread, torch.Tensor):
        spread = torch.tensor(float(spread), dtype=v.dtype, device=v.device)
    spread = spread.clamp(min=0.25)
    reach = [d * step for d in range(-radius, radius + 1) if d]
    # the spatial weights, one per distance (0-d tensors: ``spread`` may be a graph value)
    near = [torch.exp(-0.5 * float(d * d) / (spread * spread)) for d in reach]
    gates = None if barrier is None else _barrier_gates(barrier, reach, m)
    # each sample's spatial weight times its gate, once for all steps
    weight = {(along_x, d): s if gates is None else s * gates[along_x, d]
              for along_x in (True, False) for d, s in zip(reach, near)}
    for _ in range(iters):
        for along_x in (True, False):
            vp = F.pad(v, (m, m, 0, 0) if along_x else (0, 0, m, m), mode="replicate")
            acc = v
            norm = torch.ones_like(v[:, :1])
            for d in reach:
                q = vp[..., :, m + d:m + d + w] if along_x else vp[..., m + d:m + d + h, :]
                k = weight[along_x, d] * torch.exp(inv * _squared_norm(q - v))
                acc = acc + k * q
                norm = norm + k
            v = acc / norm
    return v


def _squared_norm(t: torch.Tensor) -> torch.Tensor:
    """The sum over the channels of ``t`` squared (N x 1 x H x W), written out channel by channel, not as a
    reduction: ONNX Runtime's ReduceSum (and Pow) were a quarter of the mode filter's time there, and it sums
    a reduction in another order than PyTorch, which broke the tie tests of the outlines (a sharp step has
    two equal gradient pixels)."""
    t = t * t
    out = t[:, 0:1]
    for c in range(1, t.shape[1]):
        out = out + t[:, c : c + 1]
    return out


def _barrier_gates(barrier: torch.Tensor, reach: list[int], m: int) -> dict[tuple[bool, int], torch.Tensor]:
    """For each pass direction and sample offset ``d``: 1 minus the largest ``barrier`` value on the segment
    from each pixel to its sample at ``d`` (both ends included), clamped at 0."""
    h, w = barrier.shape[-2:]
    gates = {}
    for along_x in (True, False):
        bp = F.pad(barrier, (m, m, 0, 0) if along_x else (0, 0, m, m), mode="replicate")
        shifted = {t: bp[..., :, m + t:m + t + w] if along_x else bp[..., m + t:m + t + h, :]
                   for t in range(-m, m + 1)}
        for d in reach:
            seg = [shifted[t] for t in range(min(0, d), max(0, d) + 1)]
            strongest = seg[0]
            for t in seg[1:]:
                strongest = torch.maximum(strongest, t)
            gates[along_x, d] = (1.0 - strongest).clamp(min=0.0)
    return gates


def flat_outlines(img: torch.Tensor, scale: torch.Tensor, low: float, high: float, steps: int,
                  gain: float, seed_ramp: float = 0.0, subpixel: bool = False, photo: torch.Tensor | None = None,
                  focus: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """Outlines in [0, 1] (N x 1 x H x W) where the flattened image ``img`` (N x 3 x H x W, [-1, 1], H and W
    even) changes.

    Canny lines of the flattened image's colours (:func:`colour_lines`), as mean shift + outlines draws
    them: on a mode-filtered image they follow region borders, not texture. ``gain`` darkens the anti-aliased
    line (its centre is ~0.5 for a one-pixel line; people punished faint thin lines); ``seed_ramp``: how
    softly a chain's strongest pixel decides its darkness and ``subpixel`` whether lines sit between pixels
    (:func:`~vidtoon.networks.lines.trace_lines`). With ``photo`` (the frame itself, as ``img``), lines are
    kept only where the photo's edge is in focus (:func:`focus_gate`, ramp ``focus``, weighing each chain's
    seeds), at each tracing's own resolution.
    ``scale`` (the shorter side / :data:`REFERENCE_LINES`) keeps the look the same at any frame size: a
    border that is sharp in a 300-line photo is spread over 2-3 px at 720 lines, where Canny's small window
    sees a weak gradient (few, broken lines, seen on the clips), so from 360 lines on the lines fade over to
    those traced at half resolution (all of them from 660 lines); the width grows with the frame, ~1 px up
    to 360 lines, 2 px at 720, 3 px at 1080.

    Each size traces only the lines it uses: the full-resolution ones below 660 lines, the half-resolution
    ones above 360 (both in between; tracing at full resolution was 3/4 of the look's time at 720p, and its
    lines were multiplied by zero there). An exported graph reads the band from its input's shape
    (:func:`_uses`): one graph serves every size.
    """
    width = (scale * (REFERENCE_LINES / 360.0)).clamp(1.0, 5.0)
    mix = (scale - 1.2).clamp(0.0, 1.0)
    fine_used, half_used = _uses(mix)
    fine = half = None
    # (in a traced graph an unused side traces a 1 x 1 corner: a constant image, so no line (its gradient
    # magnitude is 1e-6, below any threshold): exactly 0)
    if fine_used is not False:
        sharp = focus_gate(_corner(photo, fine_used), *focus) if photo is not None else None
        fine = colour_lines(_corner(img, fine_used), low, high, steps, seed_ramp, subpixel, sharp)
        fine = _dilate((fine * gain).clamp(0.0, 1.0), width)
    if half_used is not False:
        sharp = focus_gate(_corner(F.avg_pool2d(photo, 2), half_used), *focus) if photo is not None else None
        half = colour_lines(_corner(F.avg_pool2d(img, 2), half_used), low, high, steps, seed_ramp, subpixel, sharp)
        half = (half * gain).clamp(0.0, 1.0)
        half = F.interpolate(_dilate(half, (0.5 * width).clamp(1.0, 5.0)), scale_factor=2.0, mode="bilinear",
                             align_corners=False)
    if fine is None or half is None:
        return half if fine is None else fine  # (mix is 1 or 0: the old blend gave the one used, bar rounding)
    if isinstance(half_used, torch.Tensor):
        half = _corner(half, half_used)  # 2 x 2 -> 1 x 1 when unused, so it broadcasts
    # a graph's unused side is then 1 x 1, the full-resolution one 0: ``0 + 1 * (half - 0)`` is exactly ``half``,
    # and ``fine + 0 * (...)`` exactly ``fine``
    return fine + mix * (half - fine)


def _uses(mix: torch.Tensor) -> tuple[bool | torch.Tensor, bool | torch.Tensor]:
    """Whether the frame whose blend weight is ``mix`` uses the full-resolution lines (``mix < 1``) and the
    half-resolution ones (``mix > 0``): Python bools when run eagerly; 0-d int64 tensors while the
    TorchScript exporter records the graph (the test then stays in the graph, computed from the input's
    shape: a size-dependent corner of the image, :func:`_corner`, instead of a branch frozen to the example
    size); ``True, True`` for the dynamo exporter (its shapes are symbolic: the graph computes both, as before).
    """
    if torch.jit.is_tracing():
        return (mix < 1.0).to(torch.int64), (mix > 0.0).to(torch.int64)
    if torch.compiler.is_compiling():
        return True, True
    m = float(mix)
    return m < 1.0, m > 0.0


def _corner(t: torch.Tensor, used: bool | torch.Tensor) -> torch.Tensor:
    """``t`` where ``used`` (True or a traced 1), else (a traced 0) its top-left pixel: the slice's ends are
    computed in the graph, so an unused path costs a pixel's work."""
    if not isinstance(used, torch.Tensor):
        return t
    h, w = t.shape[-2], t.shape[-1]
    return t[..., : used * (h - 1) + 1, : used * (w - 1) + 1]


def colour_lines(img: torch.Tensor, low: float, high: float, steps: int, seed_ramp: float = 0.0,
                 subpixel: bool = False, seed_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Canny lines (networks/lines.py) of a colour image ``img`` (N x 3 x H x W, [-1, 1]): the gradient is
    the colour difference (root of the summed squared channel gradients, / sqrt 3, so a grey step answers
    as on luminance), so borders between colours of equal brightness (a grey horse against a light blue
    sky) get their line too; suppression across the stronger of x and y. ``seed_ramp``, ``subpixel``,
    ``seed_weight``: see :func:`~vidtoon.networks.lines.trace_lines`."""
    mag, sx, sy = _colour_gradient(img)
    return trace_lines(mag, (sy <= sx + 1e-6).to(img.dtype), low, high, steps, tie=2e-3, seed_ramp=seed_ramp,
                       subpixel=subpixel, seed_weight=seed_weight)


def _colour_gradient(img: torch.Tensor, blurred: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The colour gradient's magnitude of ``img`` (N x 3 x H x W; see :func:`colour_lines`) and its summed
    squared x and y parts; ``blurred``: ``img`` already has the two box blurs of
    :func:`~vidtoon.networks.lines.gradients`."""
    gx, gy = differences(img) if blurred else gradients(img)
    sx, sy = _squared_norm(gx), _squared_norm(gy)
    return torch.sqrt((sx + sy) * (1.0 / 3.0) + 1e-12), sx, sy


def focus_gate(photo: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """How sharp the photo's edges are near each pixel, as a weight in [0, 1] (N x 1 x H x W) for its outlines.

    The re-blur gradient ratio (Zhuo & Sim 2011, "Defocus map estimation from a single image"): blurring an
    edge that is already blurred by ``s`` px with a Gaussian of ``b`` px lowers its gradient's peak by
    ``sqrt((s^2 + b^2) / s^2)``: much for an edge in focus, hardly for one out of focus. Here the ratio of the
    colour gradient (after :func:`~vidtoon.networks.lines.gradients`' two box blurs) to that after four more
    (``b`` about 1.6 px), each the largest within 2 px (a line may sit a pixel or two off the photo's crest),
    ramped from ``low`` (0) to ``high`` (1). An out-of-focus background (bokeh) has ratios near 1: the mode
    filter cuts it into flat cells, whose borders then get no outline, as a painted background (they were
    most of the outlines' flicker on the shared flower clip); soft shading inside an object goes the same way.
    """
    # the gradients' two blurs are done once: the soft gradient's six blurs are the sharp one's two and four
    # more (box blurs commute): six 3-channel blurs instead of eight
    blurred = _blur3(_blur3(photo))
    sharp = _colour_gradient(blurred, blurred=True)[0]
    soft = blurred
    for _ in range(4):
        soft = _blur3(soft)
    soft = _colour_gradient(soft, blurred=True)[0]
    ratio = F.max_pool2d(sharp, 5, 1, 2) / (F.max_pool2d(soft, 5, 1, 2) + 1e-3)
    return ((ratio - low) * (1.0 / (high - low))).clamp(0.0, 1.0)
