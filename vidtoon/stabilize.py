"""Flow-guided temporal stabilizer: removes the flicker of frame-by-frame stylization.

Each output frame is a per-pixel blend of the current stylized frame with the previous *stabilized*
output, warped onto the current frame along the optical flow of the input video:

    out_t = w * warp(out_{t-1}, flow_{t -> t-1}) + (1 - w) * toon_t

This is a recursive average along motion trajectories: where the scene is still or moves coherently the
stylization stops jumping from frame to frame; ``w`` is ``strength`` where the warp is reliable and falls to
0 where it is not, so motion never smears and nothing leaves a ghost:

- **occlusion**: forward-backward flow check (a pixel must map back to where it came from);
- **photometric error**: the previous *input* frame, warped the same way, must match the current input
  once both are slightly blurred (catches flow errors, disocclusions, lighting jumps, objects the flow
  missed, while fine texture that no flow can follow, such as running water, averages out instead of
  vetoing the blend); the weight is then eroded so it also falls to 0 a band of pixels around every
  unreliable area, where upsampled flow is least exact and where a blurred test is least sharp;
- **scene cuts**: a large change in the histogram of the input, or too few reliable pixels, resets the
  state, so the first frame after a cut is exactly the stylized frame.

Cost: flow is OpenCV DIS (ultrafast preset) on the input shrunk to ``flow_max_side`` pixels, in both
directions; all masks are computed at that size; only the warp and the blend run at full resolution (about
12 ms per 720p frame on a 2-core CPU, next to about 90 ms for the default generator in PyTorch; see
``bench/bench_flicker.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vidtoon.metrics import check_frame, non_occluded, pixel_grid, warp

__all__ = ["Motion", "Stabilizer"]

# photometric error (max over RGB of |warped previous input - current input|, 0..255, on the small frames
# blurred with a Gaussian of _PHOTO_SIGMA small-grid pixels) below _PHOTO_LO keeps the full weight, above
# _PHOTO_HI gives weight 0; the weight is then eroded by _ERODE small-grid pixels. Measured (warping error
# stabilized / stylized, first 60 frames of the shared clips water / flower / bigbuckbunny, and the worst
# mean difference around the object over six moving-object scenes of the tests, limit 2 levels):
#   unblurred, 10/24, erode 3 (the previous setting): 0.89 / 0.54 / 0.46, ghost 3.5 (running water: the
#       flow cannot follow it, the test rejects it and nothing is blended there)
#   sigma 2, 10/24, erode 3: 0.36 / 0.41 / 0.45, ghost 4.8 (blurring alone lets object edges through)
#   sigma 2, 8/20, erode 7: 0.57 / 0.44 / 0.46, ghost 1.5 (chosen)
#   sigma 2, 8/20, erode 9: 0.62 / 0.45 / 0.46, ghost 0.9;  sigma 3, 8/20, erode 7: ghost 8.3
_PHOTO_LO = 8.0
_PHOTO_HI = 20.0
_PHOTO_SIGMA = 2.0
#: frames with a side shorter than this are not stabilized: DIS optical flow refuses images under 12 px a
#: side (an OpenCV error, which a 2 x 2 video turned into an "internal error"), and a picture a few pixels
#: high has no motion worth following
_MIN_SIDE = 16
_ERODE = 7
# below this fraction of reliable pixels the flow explains too little of the frame: treat it as a cut
_MIN_RELIABLE = 0.15
_HIST_BINS = 32
# remap's flag for maps that hold displacements rather than absolute coordinates (OpenCV >= 4.10)
_RELATIVE_MAP: int | None = getattr(cv2, "WARP_RELATIVE_MAP", None)


@dataclass
class Motion:
    """How a frame moved since the previous one, on the stabilizer's small grid (``flow_max_side``)."""

    #: flow from the current to the previous frame, h x w x 2 float32, in small-grid pixels
    flow: np.ndarray
    #: blend weight of the warped previous output, h x w float32 in [0, strength]
    weight: np.ndarray


def _histogram(small_gray: np.ndarray) -> np.ndarray:
    hist = cv2.calcHist([small_gray], [0], None, [_HIST_BINS], [0, 256])
    return cv2.normalize(hist, None, 1.0, 0.0, cv2.NORM_L1)


class Stabilizer:
    """Temporal stabilizer for a stream of (input frame, stylized frame) pairs of one video.

    ``strength`` (0..1): weight of the motion-compensated previous output where the warp is reliable;
    0 turns the stabilizer off, higher is steadier but slower to follow genuine changes of the
    stylization (0.6 averages over about 2.5 frames). ``flow_max_side``: the longer side, in pixels, of
    the frames the flow and masks are computed on. ``cut_threshold``: Bhattacharyya distance (0..1)
    between the grey-level histograms of consecutive input frames above which the frame starts a new
    shot. Call :meth:`reset` before each new video and :meth:`apply` on every frame, in order.
    """

    def __init__(self, strength: float = 0.6, flow_max_side: int = 320, cut_threshold: float = 0.1) -> None:
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"strength must be in [0, 1), got {strength}")
        if flow_max_side < 16:
            raise ValueError(f"flow_max_side must be at least 16, got {flow_max_side}")
        if not 0.0 < cut_threshold <= 1.0:
            raise ValueError(f"cut_threshold must be in (0, 1], got {cut_threshold}")
        self.strength = float(strength)
        self.flow_max_side = int(flow_max_side)
        self.cut_threshold = float(cut_threshold)
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self._erode = cv2.getStructuringElement(cv2.MORPH_RECT, (_ERODE, _ERODE))
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame: call at the start of every video."""
        self._prev_small: np.ndarray | None = None  # previous input, small, RGB
        self._prev_gray: np.ndarray | None = None  # previous input, small, grey
        self._prev_hist: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None  # previous stabilized output, full size
        self._prev_shape: tuple[int, ...] | None = None  # previous input frame's shape
        #: frames since the last reset that were blended / that started a new shot (for tests and logs)
        self.blended = 0
        self.cuts = 0

    def _small_size(self, height: int, width: int) -> tuple[int, int]:
        scale = min(1.0, self.flow_max_side / max(height, width))
        return max(8, round(width * scale)), max(8, round(height * scale))

    def apply(self, src_rgb: np.ndarray, toon_rgb: np.ndarray) -> np.ndarray:
        """Stabilize one frame: ``src_rgb`` is the input frame, ``toon_rgb`` its stylization.

        Both are HxWx3 uint8 RGB of the same size; returns a new HxWx3 uint8 RGB array. The first frame
        after :meth:`reset`, after a scene cut or after a size change is returned unchanged (as a copy).
        Same as :meth:`analyse` then :meth:`blend`.
        """
        check_frame(src_rgb, "input frame")
        check_frame(toon_rgb, "stylized frame")
        if src_rgb.shape != toon_rgb.shape:
            raise ValueError(f"input frame {src_rgb.shape} and stylized frame {toon_rgb.shape} differ in size")
        if self.strength == 0.0:
            return toon_rgb.copy()
        return self.blend(toon_rgb, self.analyse(src_rgb))

    def analyse(self, src_rgb: np.ndarray) -> Motion | None:
        """The motion of input frame ``src_rgb`` since the previous one: flow and blend weight on the small
        grid, or None when the frame starts a shot (first after :meth:`reset`, a cut, a size change, or
        strength 0). Needs only the input frames, in order: it can run ahead of the stylization (in its
        own thread; :class:`vidtoon.stabilize_device.DeviceBlender` then blends on a GPU)."""
        check_frame(src_rgb, "input frame")
        if self.strength == 0.0:
            return None
        h, w = src_rgb.shape[:2]
        if min(h, w) < _MIN_SIDE:
            return None
        small = cv2.resize(src_rgb, self._small_size(h, w), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        hist = _histogram(gray)
        motion = None
        if self._prev_small is not None and self._prev_shape == src_rgb.shape:
            cut = cv2.compareHist(self._prev_hist, hist, cv2.HISTCMP_BHATTACHARYYA) > self.cut_threshold
            if not cut:
                flow, weight = self._flow_and_weight(small, gray)
                cut = weight is None
                motion = None if weight is None else Motion(flow, weight)
            self.cuts += int(cut)
            self.blended += int(motion is not None)
        self._prev_small, self._prev_gray, self._prev_hist = small, gray, hist
        self._prev_shape = src_rgb.shape
        return motion

    def blend(self, toon_rgb: np.ndarray, motion: Motion | None) -> np.ndarray:
        """The stabilized frame: ``toon_rgb`` blended with the previous output along ``motion`` (from
        :meth:`analyse` of the same frame), or a copy of it when ``motion`` is None. Call in frame order."""
        if motion is None or self._prev_out is None or self._prev_out.shape != toon_rgb.shape:
            out = toon_rgb.copy()
        else:
            out = self._blend(toon_rgb, motion.flow, motion.weight)
        self._prev_out = out
        return out

    def _flow_and_weight(self, small: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Flow from the current to the previous small frame, and the blend weight on the same grid.

        The weight is ``None`` when too little of the frame is reliable (treated as a scene cut).
        """
        try:
            back = self._dis.calc(gray, self._prev_gray, None)  # current grid -> previous frame
            fwd = self._dis.calc(self._prev_gray, gray, None)
        except cv2.error:
            # DIS refuses some extreme shapes (a 400 x 16 strip: its pyramid runs out of rows): not blended
            return np.zeros((*gray.shape, 2), np.float32), None
        # motion boundaries are left to the photometric test: at this size they are a few pixels wide and
        # the flow gradient test of the metric would reject most of a moving object
        ok = non_occluded(back, fwd, boundaries=False).astype(np.float32)
        blur = lambda image: cv2.GaussianBlur(image, (0, 0), _PHOTO_SIGMA)  # noqa: E731
        diff = cv2.absdiff(blur(warp(self._prev_small, back)), blur(small))
        err = np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2]).astype(np.float32)
        photo = np.clip((_PHOTO_HI - err) * (1.0 / (_PHOTO_HI - _PHOTO_LO)), 0.0, 1.0)
        reliable = ok * photo
        if float(reliable.mean()) < _MIN_RELIABLE:
            return back, None
        # erode: unreliable areas grow by a band of the small grid, where upsampled flow is least exact and
        # where the blurred test can miss the edge of an object the flow got wrong
        weight = cv2.erode(reliable, self._erode)
        return back, weight * self.strength

    def _blend(self, toon: np.ndarray, flow_small: np.ndarray, weight_small: np.ndarray) -> np.ndarray:
        h, w = toon.shape[:2]
        sh, sw = flow_small.shape[:2]
        # full-resolution work is kept to one pass per step: scale the flow to full-size pixels while it is
        # small, then upsample it and add the pixel grid in place to get the remap coordinates
        flow_small = flow_small * np.array([w / sw, h / sh], np.float32)
        coords = cv2.resize(flow_small, (w, h), interpolation=cv2.INTER_LINEAR)
        if _RELATIVE_MAP is not None:
            # OpenCV >= 4.10 adds the pixel grid itself: one full-resolution pass less (1 ms of CPU at 720p)
            mode = cv2.INTER_LINEAR | _RELATIVE_MAP
        else:
            np.add(coords, pixel_grid(h, w), out=coords)
            mode = cv2.INTER_LINEAR
        warped = cv2.remap(self._prev_out, coords, None, mode, borderMode=cv2.BORDER_REPLICATE)
        wt = cv2.resize(weight_small, (w, h), interpolation=cv2.INTER_LINEAR)
        return cv2.blendLinear(warped, toon, wt, np.subtract(1.0, wt, dtype=np.float32))
