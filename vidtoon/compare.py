"""Before/after pictures: the original and the cartoon side by side in one frame (``--compare``).

Landscape pictures are put side by side (original on the left), portrait ones one above the other (original
on top); square counts as landscape. "Portrait" is decided on the picture as it is *displayed*: a phone
video stored 1920x1080 with a 90 degree display rotation is portrait. Frames are encoded as stored and keep
their display matrix, so the halves are laid out such that, once a player applies that matrix, the original
is on the left (or on top) and both halves stand upright. The display transform is the one ffmpeg and
ffplay apply (fftools ``get_rotation`` and the filters they insert for it).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["CompareLayout", "layout_for", "display_transform", "turner"]

#: display transforms as ffmpeg names them (its ``transpose`` directions, ``hflip``, ``vflip``), on H x W x C arrays
_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "": lambda a: a,
    "clock": lambda a: np.rot90(a, -1),  # 90 degrees clockwise
    "cclock": lambda a: np.rot90(a, 1),  # 90 degrees counter-clockwise
    "cclock_flip": lambda a: a.swapaxes(0, 1),  # counter-clockwise then flipped upside down: a transpose
    "clock_flip": lambda a: np.rot90(a, 2).swapaxes(0, 1),  # clockwise then flipped: the anti-transpose
    "hflip": lambda a: a[:, ::-1],
    "vflip": lambda a: a[::-1],
    "hflip,vflip": lambda a: a[::-1, ::-1],  # 180 degrees
}
_INVERSE = {"clock": "cclock", "cclock": "clock"}  # the others undo themselves
_SWAPS_AXES = {"clock", "cclock", "cclock_flip", "clock_flip"}


def turner(transform: str) -> Callable[[np.ndarray], np.ndarray]:
    """The function that applies ``transform`` (a name :func:`display_transform` returns) to an H x W x C array."""
    return _TRANSFORMS[transform]


def display_transform(matrix: tuple[int, ...] | None) -> str:
    """The transform (a key of ``_TRANSFORMS``) that turns a stored frame into the displayed picture.

    ``matrix`` is FFmpeg's 3x3 display matrix as 9 int32 (16.16 fixed point), None when the video has
    none. Right angles and flips only, as ffmpeg's autorotation: other angles give "" (laid out as stored).
    """
    if matrix is None:
        return ""
    a, b, _, c, d = (v / 65536 for v in matrix[:5])
    scale_x, scale_y = math.hypot(a, c), math.hypot(b, d)
    if scale_x == 0 or scale_y == 0:
        return ""
    # av_display_rotation_get() is counter-clockwise degrees; ffmpeg turns the picture clockwise by theta
    theta = -round(-math.degrees(math.atan2(b / scale_y, a / scale_x)))
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return "cclock_flip" if c > 0 else "clock"
    if abs(theta - 180) < 1:
        return ",".join(name for name, flipped in (("hflip", a < 0), ("vflip", d < 0)) if flipped)
    if abs(theta - 270) < 1:
        return "clock_flip" if c < 0 else "cclock"
    if abs(theta) < 1 and d < 0:
        return "vflip"
    return ""


@dataclass(frozen=True)
class CompareLayout:
    """Where the original and the cartoon go in one output frame, for frames of one stored orientation."""

    #: the display transform of the video's frames (see :func:`display_transform`)
    transform: str
    #: on the displayed picture: 1 = side by side (original left), 0 = one above the other (original on top)
    axis: int

    @property
    def stored_axis(self) -> int:
        """The axis of the *stored* frame along which the halves are joined."""
        return 1 - self.axis if self.transform in _SWAPS_AXES else self.axis

    def size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the joined frame for halves of ``width`` x ``height`` (stored)."""
        return (2 * width, height) if self.stored_axis == 1 else (width, 2 * height)

    def join(self, original: np.ndarray, cartoon: np.ndarray) -> np.ndarray:
        """One H x W x C frame holding both halves (two stored frames of the same size), as stored."""
        if not self.transform:
            return np.concatenate([original, cartoon], axis=self.axis)
        show = _TRANSFORMS[self.transform]
        joined = np.concatenate([show(original), show(cartoon)], axis=self.axis)
        return np.ascontiguousarray(_TRANSFORMS[_INVERSE.get(self.transform, self.transform)](joined))


def layout_for(width: int, height: int, matrix: tuple[int, ...] | None = None,
               sample_aspect_ratio: Fraction | None = None) -> CompareLayout:
    """The layout for stored frames of ``width`` x ``height`` with this display matrix and pixel shape."""
    transform = display_transform(matrix)
    shown_w = width * float(sample_aspect_ratio or 1)
    shown_h = float(height)
    if transform in _SWAPS_AXES:
        shown_w, shown_h = shown_h, shown_w
    return CompareLayout(transform, 0 if shown_h > shown_w else 1)
