"""Temporal consistency of a stylized video: the warping error of Lai et al. 2018.

"Learning Blind Video Temporal Consistency" (ECCV 2018) measures flicker as follows. Optical flow is
computed between consecutive *input* frames; output frame t is warped back onto frame t-1 with that flow
and compared with output frame t-1, over the pixels where the flow is trustworthy (a forward-backward
consistency check plus a motion-boundary check, both as in the authors' evaluation code). A stylization
that follows the motion of the scene scores near the input's own level; one that flickers scores higher.

Units: frames are scaled to float [0, 1]; the error of one frame pair is the mean, over non-occluded pixels
and the three RGB channels, of the squared difference; the clip's error is the mean over its frame pairs.
So 0 means perfectly consistent and 1e-3 is an RMS difference of about 0.032 (8 grey levels out of 255).
The input video measured against itself (``warping_error(frames, frames)``) is the reference level: it is
not 0, because of flow errors, lighting changes and compression noise.

Flow is OpenCV's DIS (``PRESET_MEDIUM``) on the greyscale input at full resolution, deterministic for a
given OpenCV build. The helpers :func:`warp` and :func:`non_occluded` are shared with the stabilizer.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from functools import lru_cache

import cv2
import numpy as np

__all__ = ["check_frame", "non_occluded", "pixel_grid", "warp", "warping_error", "warping_errors"]


def check_frame(frame: np.ndarray, what: str = "frame") -> None:
    """Raise ``ValueError`` unless ``frame`` is an HxWx3 uint8 array (RGB)."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"{what} must be an HxWx3 uint8 RGB array, got {got}")


@lru_cache(maxsize=8)
def pixel_grid(height: int, width: int) -> np.ndarray:
    """HxWx2 float32 pixel coordinates (x, y): adding a flow to it gives a ``cv2.remap`` map."""
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    grid = np.stack([xs, ys], axis=-1)
    grid.setflags(write=False)  # shared through the cache
    return grid


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Backward warp: ``out[y, x] = image[y + flow[y, x, 1], x + flow[y, x, 0]]`` (bilinear, edges replicated).

    ``flow`` is HxWx2 float32 in pixels, defined on the *output* grid and pointing into ``image``.
    """
    h, w = flow.shape[:2]
    return cv2.remap(image, pixel_grid(h, w) + flow, None, interpolation, borderMode=cv2.BORDER_REPLICATE)


def non_occluded(flow: np.ndarray, flow_back: np.ndarray, alpha: float = 0.01, beta: float = 0.5,
                 boundaries: bool = True) -> np.ndarray:
    """Boolean HxW mask of the pixels where ``flow`` can be trusted.

    ``flow`` maps this frame to the other one, ``flow_back`` maps the other one back. A pixel passes when
    following ``flow`` and then ``flow_back`` returns close to where it started
    (``|f + b'|^2 < alpha * (|f|^2 + |b'|^2) + beta``, Sundaram et al. 2010), when its target is inside the
    frame, and, with ``boundaries``, when it is not on a motion boundary (``|grad f|^2 > 0.01 |f|^2 + 0.002``),
    the same tests as Lai et al.'s evaluation code.
    """
    h, w = flow.shape[:2]
    back = warp(flow_back, flow)
    fb = flow + back
    fb_sq = np.einsum("hwc,hwc->hw", fb, fb)
    mag_sq = np.einsum("hwc,hwc->hw", flow, flow) + np.einsum("hwc,hwc->hw", back, back)
    ok = fb_sq < alpha * mag_sq + beta
    target = pixel_grid(h, w) + flow
    ok &= (target[..., 0] >= 0) & (target[..., 0] <= w - 1) & (target[..., 1] >= 0) & (target[..., 1] <= h - 1)
    if boundaries:
        # squared norm of the flow's spatial gradient (both components, both directions)
        grad_sq = np.zeros((h, w), np.float32)
        for c in range(2):
            gy, gx = np.gradient(flow[..., c])
            grad_sq += gx * gx + gy * gy
        ok &= ~(grad_sq > 0.01 * np.einsum("hwc,hwc->hw", flow, flow) + 0.002)
    return ok


def _to_float(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float32) * (1.0 / 255.0)


def _zip_clips(clips: list[Iterable[np.ndarray]]) -> Iterator[tuple[np.ndarray, ...]]:
    """Zip frame iterables, raising ``ValueError`` when their lengths differ."""
    iters = [iter(c) for c in clips]
    index = 0
    while True:
        items = [next(it, None) for it in iters]
        done = [x is None for x in items]
        if all(done):
            return
        if any(done):
            names = ["the input"] + [f"output {k}" for k in range(1, len(iters))]
            ended = " and ".join(n for n, d in zip(names, done) if d)
            going = [n for n, d in zip(names, done) if not d]
            raise ValueError(f"the clips do not have the same number of frames: {ended} ended after {index} "
                             f"frames, {' and '.join(going)} {'goes' if len(going) == 1 else 'go'} on")
        yield tuple(items)  # type: ignore[misc]
        index += 1


def warping_errors(frames_in: Iterable[np.ndarray], *frames_outs: Iterable[np.ndarray]) -> list[float]:
    """Warping error of each output clip against the motion of ``frames_in``; the flow is computed once.

    All arguments are iterables of HxWx3 uint8 RGB frames of one size, consumed in step (nothing is held
    but two frames of each), so decoders can be passed directly. Pass ``itertools.tee`` copies of the
    input to measure the input's own level alongside. Returns one float per output clip (see the module
    docstring for units). Raises ``ValueError`` for fewer than two frames, unequal lengths or sizes.
    """
    if not frames_outs:
        raise ValueError("give at least one output clip")
    if any(out is frames_in for out in frames_outs) and iter(frames_in) is frames_in:
        # the input itself given as an output: a one-shot iterator has to be split, or each would get
        # every other frame
        source = frames_in
        copies = iter(itertools.tee(source, 1 + sum(out is source for out in frames_outs)))
        frames_in = next(copies)
        frames_outs = tuple(next(copies) if out is source else out for out in frames_outs)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    totals = [0.0] * len(frames_outs)
    pairs = 0
    prev_gray: np.ndarray | None = None
    prev_outs: list[np.ndarray] = []
    for index, frames in enumerate(_zip_clips([frames_in, *frames_outs])):
        frame_in, outs = frames[0], frames[1:]
        check_frame(frame_in, f"input frame {index}")
        for k, out in enumerate(outs):
            check_frame(out, f"output frame {index}")
            if out.shape != frame_in.shape:
                raise ValueError(f"output clip {k + 1} is {out.shape[1]}x{out.shape[0]} but the input is "
                                 f"{frame_in.shape[1]}x{frame_in.shape[0]}")
        gray = cv2.cvtColor(frame_in, cv2.COLOR_RGB2GRAY)
        outs_f = [_to_float(o) for o in outs]
        if prev_gray is not None:
            if gray.shape != prev_gray.shape:
                raise ValueError(f"input frame {index} changes size")
            fw = dis.calc(prev_gray, gray, None)  # on frame t-1's grid, pointing into frame t
            bw = dis.calc(gray, prev_gray, None)
            mask = non_occluded(fw, bw)
            n = int(mask.sum())
            for k, (prev, cur) in enumerate(zip(prev_outs, outs_f)):
                sq = np.square(warp(cur, fw) - prev).mean(axis=2)
                # as in the reference code: with no trustworthy pixel, fall back to the whole frame
                totals[k] += float(sq[mask].mean()) if n else float(sq.mean())
            pairs += 1
        prev_gray, prev_outs = gray, outs_f
    if pairs == 0:
        raise ValueError("the warping error needs at least two frames")
    return [t / pairs for t in totals]


def warping_error(frames_in: Iterable[np.ndarray], frames_out: Iterable[np.ndarray]) -> float:
    """Warping error (Lai et al. 2018) of ``frames_out`` against the motion of ``frames_in``.

    Both are iterables of HxWx3 uint8 RGB frames of the same size and count. The result is a mean squared
    difference on RGB scaled to [0, 1] (lower is steadier); see the module docstring.
    """
    return warping_errors(frames_in, frames_out)[0]
