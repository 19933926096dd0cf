"""Thin outlines inside a network: a soft, differentiable form of Canny's edge detector (Canny 1986).

Why Canny and not a thresholded gradient: on the held-out judge (trainer/evaluate.py), what moved a
flattened image closest to cartoon art was one-pixel lines with non-maximum suppression and hysteresis
(mean shift + Canny outlines: KID 70; the same flat image with lines from a thresholded gradient, which
are 2-3 px wide and soft: 80; see MODEL_CARD.md). Everything here is pooling, shifts, comparisons and
elementwise arithmetic, so it exports to ONNX and runs in any engine.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _blur3(t: torch.Tensor) -> torch.Tensor:
    """3x3 box mean (borders: the mean of the pixels inside). Two passes approximate a Gaussian of sigma
    1.15 px; as average pools they cost a fraction of a 1-channel convolution in ONNX Runtime (measured)."""
    return F.avg_pool2d(t, 3, 1, 1, count_include_pad=False)


def _binomial(t: torch.Tensor) -> torch.Tensor:
    """3x3 binomial blur ([1 2 1] x [1 2 1] / 16) as two 2x2 box means shifted against each other."""
    t = F.avg_pool2d(F.pad(t, (0, 1, 0, 1), mode="replicate"), 2, 1)
    return F.avg_pool2d(F.pad(t, (1, 0, 1, 0), mode="replicate"), 2, 1)


def _step_peaks() -> tuple[float, float]:
    """Peak gradient of a unit step: Sobel after a Gaussian blur of sigma 1 (OpenCV's Canny on a
    ``cv2.GaussianBlur(..., 1)`` image, what the thresholds were chosen with), and the central difference
    after two :func:`_blur3` passes (what :func:`canny_lines` computes)."""
    x = torch.zeros(1, 1, 16, 16)
    x[..., 8:] = 1.0
    t = torch.arange(-3, 4, dtype=torch.float32)
    g = torch.exp(-t * t / 2.0)
    g = (g / g.sum()).view(1, 1, 1, 7)
    smooth = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="replicate"), g)
    sobel = 4.0 * (smooth[..., 2:] - smooth[..., :-2]).abs().max()  # [1 2 1] across a straight step: 4x
    b = _blur3(_blur3(x))
    return float(sobel), float((b[..., 2:] - b[..., :-2]).abs().max())


#: scales the gradient so that a step answers as in OpenCV's Canny after a Gaussian blur of sigma 1: the
#: thresholds then read as Canny's x 2 / 255 ([-1, 1] units)
_CANNY_PEAK, _OUR_PEAK = _step_peaks()
GRADIENT_SCALE = _CANNY_PEAK / _OUR_PEAK


def canny_lines(gray: torch.Tensor, low: float, high: float, steps: int,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """Outline strength in [0, 1] (N x 1 x H x W) of a luminance map ``gray`` (N x 1 x H x W, in [-1, 1]).

    ``low``/``high``: hysteresis thresholds on the L1 gradient magnitude, scaled as OpenCV's Canny after a
    Gaussian blur of sigma 1 (:data:`GRADIENT_SCALE`): its thresholds x 2 / 255; ``steps``: how many pixels hysteresis may
    follow a weak edge away from a strong one; ``bias``: an optional logit added to the weak-edge test (a
    learned head can add or remove lines). Which pixels are outlines is decided by hard masks (non-maximum
    suppression, thresholds, hysteresis); how dark they are is a sigmoid of the magnitude (differentiable).

    Built from pools, pads and elementwise ops only, for ONNX Runtime's sake: a 1-channel convolution and
    ``Where`` cost several times more there (measured at 720p: 86 ms for the textbook form with a 7x7
    derivative-of-Gaussian convolution and four-sector suppression, 36 ms for this one).
    """
    gx, gy = gradients(gray)
    ax, ay = gx.abs(), gy.abs()
    return trace_lines(ax + ay, (ay <= ax).to(gray.dtype), low, high, steps, bias)


def gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences (x, y) of ``img`` (N x C x H x W) after two :func:`_blur3` passes, scaled by
    :data:`GRADIENT_SCALE` (a step answers as in OpenCV's Canny after a Gaussian blur of sigma 1)."""
    return differences(_blur3(_blur3(img)))


def differences(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The central differences (x, y) of an image ``b`` that :func:`gradients` has already blurred, scaled
    by :data:`GRADIENT_SCALE` (borders replicated)."""
    h, w = b.shape[-2:]
    bp = F.pad(b, (1, 1, 1, 1), mode="replicate")
    gx = (bp[..., 1:1 + h, 2:2 + w] - bp[..., 1:1 + h, 0:w]) * GRADIENT_SCALE
    gy = (bp[..., 2:2 + h, 1:1 + w] - bp[..., 0:h, 1:1 + w]) * GRADIENT_SCALE
    return gx, gy


def trace_lines(mag: torch.Tensor, across_is_x: torch.Tensor, low: float, high: float, steps: int,
                bias: torch.Tensor | None = None, tie: float = 0.0, seed_ramp: float = 0.0,
                subpixel: bool = False, seed_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Canny's second half on a gradient magnitude ``mag`` (N x 1 x H x W): suppression across the edge
    (``across_is_x``: 1 where the gradient is nearer x than y), hysteresis, anti-aliasing (see
    :func:`canny_lines`). ``tie``: a pixel within this fraction of the largest across it also stays (for a
    ``mag`` computed from a computed image: a sharp step in a flat image has two equal gradient pixels, and
    rounding that differs between engines and precisions (1e-7 .. 1e-4 of it) would keep one or the other).

    ``seed_ramp`` (0: Canny's hard test): a chain's seed counts in proportion to how far its magnitude is
    past ``high``, from 0 at ``high * (1 - seed_ramp)`` to 1 at ``high * (1 + seed_ramp)``, and hysteresis
    carries the strongest seed's value along the chain. A chain whose strongest pixel sits near ``high``
    is then drawn lighter instead of being all there in one video frame and gone in the next (with 1.0 a
    chain of weak pixels alone is drawn too, as light as they are weak): with 1.0 the default's raw
    warping error fell by 15-37% on the three shared clips (MODEL_CARD.md, "`steady`").

    ``subpixel``: each line pixel's ink is placed where the magnitude's crest lies between pixels
    (:func:`subpixel_splat`) before the anti-aliasing, so a border that moves by a fraction of a pixel moves
    its line by that fraction instead of jumping a whole pixel in some frame (the default's raw warping error
    -12..-22% on the shared clips, the same look; MODEL_CARD.md).

    ``seed_weight`` (N x 1 x H x W in [0, 1]) scales each seed before hysteresis, which carries the largest
    along the chain: a chain is drawn as its best seed allows (a per-pixel weight after tracing broke lines
    whose weight wavers along them into dashes)."""
    # non-maximum suppression across the edge, in two sectors (the gradient nearer x or nearer y): a
    # pixel stays if it is the largest of the three across it (a 1x3 or 3x1 max-pool includes the pixel);
    # two sectors instead of Canny's four: diagonal lines come out as thin staircases, and it is cheap
    across_x = F.max_pool2d(mag, (1, 3), 1, (0, 1))
    across_y = F.max_pool2d(mag, (3, 1), 1, (1, 0))
    across = across_y + across_is_x * (across_x - across_y)
    ridge = ((mag * (1.0 + tie)) >= across).to(mag.dtype) if tie else (mag >= across).to(mag.dtype)
    logit = (mag - low) * (10.0 / low)
    if bias is not None:
        logit = logit + bias
    weak = (logit > 0).to(mag.dtype) * ridge
    if seed_ramp:
        edge = ridge * ((mag - high * (1.0 - seed_ramp)) * (0.5 / (seed_ramp * high))).clamp(0.0, 1.0)
    else:
        edge = ridge * (mag > high).to(mag.dtype)
    if seed_weight is not None:
        edge = edge * seed_weight
    # hysteresis: weak edges touching a kept edge are kept, one pixel per step (a wider pool in fewer
    # steps, or the steps at half resolution, joined texture into lines: held-out KID +5-8, measured).
    # The connection is propagated as a 0/1 mask times the seed's value, through a max (soft weak-edge values
    # would fade along the line, step by step);
    # the line's strength is then the soft weak-edge test, so that gradients reach the magnitude and bias
    for _ in range(steps):
        edge = torch.maximum(edge, weak * F.max_pool2d(edge, 3, 1, 1))
    edge = edge * torch.sigmoid(logit)
    if subpixel:
        edge = subpixel_splat(edge, mag, across_is_x)
    # anti-aliasing: a one-pixel line becomes 0.25-0.5-0.25 across (lines without it: KID +6; a 3x3 box
    # instead, a three-pixel grey band: +3, measured)
    return _binomial(edge).clamp(0.0, 1.0)


def _shift(t: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``t`` moved by (``dx``, ``dy``) pixels (-1, 0 or 1), zeros coming in at the border."""
    h, w = t.shape[-2:]
    return F.pad(t, (1, 1, 1, 1))[..., 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


def subpixel_splat(ink: torch.Tensor, mag: torch.Tensor, across_is_x: torch.Tensor) -> torch.Tensor:
    """Move each pixel's ``ink`` (N x 1 x H x W, on the ridge of ``mag``) to the sub-pixel crest of ``mag``
    across the edge (along x where ``across_is_x``, else y): the parabola through the magnitude there and at the
    two neighbours across puts the crest ``o`` in [-1/2, 1/2] px off the pixel, and the ink is split linearly
    between the pixel (1 - |o|) and the neighbour on that side (|o|). The ink's sum is kept; as the crest moves
    continuously, so does the line (Canny's pixel-grid lines jump a whole pixel, which video shows as flicker).
    Two equal pixels across a sharp step each give half their ink to the other: the line is where it was.
    Pads, slices and elementwise arithmetic only (ONNX-friendly)."""
    h, w = mag.shape[-2:]
    mp = F.pad(mag, (1, 1, 1, 1), mode="replicate")

    def crest(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        # on a ridge pixel ``before - 2 mag + after`` <= 0; a flat top (0) gives the clamp's bound
        curve = (before - 2.0 * mag + after).clamp(max=-1e-6)
        return (0.5 * (before - after) / curve).clamp(-0.5, 0.5)

    off_x = crest(mp[..., 1:1 + h, 0:w], mp[..., 1:1 + h, 2:2 + w])
    off_y = crest(mp[..., 0:h, 1:1 + w], mp[..., 2:2 + h, 1:1 + w])
    off = off_y + across_is_x * (off_x - off_y)
    ahead, back = ink * off.clamp(min=0.0), ink * (-off).clamp(min=0.0)  # to the right/below, to the left/above
    ax, ay = across_is_x, 1.0 - across_is_x
    return (ink - ahead - back + _shift(ahead * ax, 1, 0) + _shift(back * ax, -1, 0)
            + _shift(ahead * ay, 0, 1) + _shift(back * ay, 0, -1))
