"""Edge promotion (CartoonGAN, Sec. 3.2) and the flattened "surface" targets of the photos.

Edge promotion: for a cartoon image, detect edges (Canny), dilate them, and blur the image inside the
dilated region only. The result keeps the cartoon's colours but loses its crisp outlines; the discriminator
learns to call it fake, which teaches the generator that clear edges are what makes a cartoon.

Surface target (an addition in the spirit of White-box Cartoonization's surface/structure representations):
the photo flattened into regions of one colour (mean-shift filtering) with thin dark outlines on its edges. It gives the generator a direct pixel-space target for flat
regions and outlines, which a short CPU run cannot get from the adversarial loss alone (see
TRAINING-NOTES: D wins at once and G stays near identity).
"""
from __future__ import annotations

import cv2
import numpy as np


def edge_promote(rgb: np.ndarray, low: int = 100, high: int = 200, dilate: int = 5, blur: int = 5) -> np.ndarray:
    """Return ``rgb`` (HxWx3 uint8) with the area around its Canny edges Gaussian-blurred.

    Pixels farther than ``dilate // 2`` from an edge are returned unchanged.
    """
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, low, high)
    mask = cv2.dilate(edges, np.ones((dilate, dilate), np.uint8)) > 0
    blurred = cv2.GaussianBlur(rgb, (blur, blur), 0)
    out = rgb.copy()
    out[mask] = blurred[mask]
    return out


def line_map(rgb: np.ndarray, edge_low: int = 50, edge_high: int = 120) -> np.ndarray:
    """Outline strength in [0, 1] (HxW float32): anti-aliased Canny edges of the bilateral-smoothed photo."""
    smooth = cv2.bilateralFilter(rgb, 9, 50, 7)
    edges = cv2.Canny(cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY), edge_low, edge_high)
    return cv2.GaussianBlur(edges.astype(np.float32) / 255.0, (3, 3), 0.6).clip(0, 1)


def surface_target(rgb: np.ndarray, spatial: int = 8, color: int = 28, line_strength: float = 1.0) -> np.ndarray:
    """Flatten a photo into flat colour regions with thin black outlines (HxWx3 uint8 in and out).

    Edge-preserving smoothing (bilateral), then mean-shift filtering (``spatial``/``color`` radii) merges
    similar neighbouring colours into flat regions; outlines (:func:`line_map`) darken the flat image by up
    to ``line_strength``. (SLIC superpixels were tried first: blocky regions and jagged outlines.)
    """
    flat = cv2.pyrMeanShiftFiltering(cv2.bilateralFilter(rgb, 9, 50, 7), spatial, color)
    line = line_map(rgb)[..., None]
    return (flat.astype(np.float32) * (1.0 - line_strength * line)).round().clip(0, 255).astype(np.uint8)


def line_image(rgb: np.ndarray) -> np.ndarray:
    """:func:`line_map` as an HxWx3 uint8 image (so it can be cached and cropped like the photos)."""
    return np.repeat((line_map(rgb) * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def _saturate(rgb: np.ndarray, saturation: float, value: float) -> np.ndarray:
    """Scale HSV saturation and value (the cleaner, slightly brighter palette of cartoons)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] *= saturation
    hsv[..., 2] *= value
    return cv2.cvtColor(hsv.clip(0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)


def quantize_tones(rgb: np.ndarray, bins: int = 6, sharpness: float = 2.0) -> np.ndarray:
    """Soft luminance quantization in Lab (chroma kept): the same staircase as the toon generator's."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    lum = lab[..., 0] / 255.0
    dq = 1.0 / bins
    centre = (np.round(lum / dq - 0.5) + 0.5) * dq
    half = 0.5 * dq
    lab[..., 0] = (centre + half * np.tanh(sharpness * (lum - centre) / half) / np.tanh(sharpness)) * 255.0
    return cv2.cvtColor(lab.round().clip(0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def toon_lines(flat: np.ndarray, low: int = 40, high: int = 100, thickness: int = 1) -> np.ndarray:
    """Outline strength in [0, 1] from the *flattened* image: Canny there fires only where regions meet
    (texture is gone), dilated to ``thickness`` px and anti-aliased. One pixel: 2 px lines on the 320 px
    training photos moved the held-out KID from 72 to 109 (measured; MODEL_CARD.md)."""
    edges = cv2.Canny(cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY), low, high)
    if thickness > 1:
        edges = cv2.dilate(edges, np.ones((thickness, thickness), np.uint8))
    return cv2.GaussianBlur(edges.astype(np.float32) / 255.0, (3, 3), 0.7).clip(0, 1)


def flatten(rgb: np.ndarray) -> np.ndarray:
    """Flat colour regions: bilateral smoothing, then mean-shift filtering (HxWx3 uint8 in and out)."""
    return cv2.pyrMeanShiftFiltering(cv2.bilateralFilter(rgb, 9, 50, 7), 8, 28)


def toon_target(flat: np.ndarray, bins: int = 6, ink: float = 0.9) -> np.ndarray:
    """The toon generator's teacher, made from a photo's :func:`flatten` image (HxWx3 uint8 in and out):
    ``bins`` soft luminance tones, a slightly more saturated and brighter palette, and dark outlines where
    the flat regions meet (:func:`toon_lines`)."""
    colour = _saturate(quantize_tones(flat, bins), 1.15, 1.03)
    line = toon_lines(flat)[..., None]
    return (colour.astype(np.float32) * (1.0 - ink * line)).round().clip(0, 255).astype(np.uint8)


def toon_line_image(flat: np.ndarray) -> np.ndarray:
    """:func:`toon_lines` of a :func:`flatten` image as HxWx3 uint8 (cropped like the photos)."""
    return np.repeat((toon_lines(flat) * 255).round().astype(np.uint8)[..., None], 3, axis=2)
