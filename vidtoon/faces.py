"""Faces stay faces: eyes, nose and mouth drawn back into the cartoon where a face detector finds a face.

The toon generator flattens a small face into a blank skin-coloured blob (its regions are larger than an eye),
and a face detector then finds only 3 of the 16 faces it found in the held-out photos. Artists draw faces with more
detail than the rest of the picture, so after the generator, inside a soft ellipse on each face found by MTCNN
(vidtoon/networks/mtcnn.py), the photo's luminance detail is added back to the cartoon: the photo minus its own
Gaussian blur, whose width follows the face's size (8% of a small face's width, 3.5% of a large one's, at
most 5 px). Small faces (under ~40 px wide)
also take 30% of the photo's colour, which their few flat regions cannot carry; large faces take none, and
keep their dark strokes (eyes, brows, lips) but little of their highlights, so that skin stays flat.
Outlines the cartoon drew across the features themselves (a stroke through an eye) are lifted first.

For video, :class:`FaceTrack` detects every few frames and moves the boxes smoothly in between (a face that
appears or leaves fades in or out over that interval; one the detector misses once only dims) instead of
detecting on every frame.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
import contextlib
from dataclasses import dataclass
import functools
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

#: face widths (pixels) between which the drawing goes from the small-face to the large-face settings
SMALL, LARGE = 40.0, 100.0
#: (detail blur width / face width, detail gain, photo colour share, share of the light detail) for small and
#: for large faces: a large face keeps its dark strokes (eyes, brows, nostrils, lips) and little of its
#: highlights, which read as photographic skin
SMALL_LOOK, LARGE_LOOK = (0.08, 1.0, 0.3, 1.0), (0.035, 1.35, 0.0, 0.3)
#: the detail's blur width at most (pixels): on a close-up, a wider blur brings the skin's shading back
MAX_SIGMA = 5.0
#: inside a face, the cartoon may be at most this much darker (levels) than the photo's blurred luminance
INK_MARGIN = 20.0
#: detector probability a face needs (MTCNN's own stage thresholds come first)
MIN_PROBABILITY = 0.9
#: the most bytes of frames a video's face tracking holds back between two detections
HELD_BYTES = 256 * 2**20
#: MTCNN's weights, kept apart from the models in weights/ (it is not a look: `--model` does not list it)
WEIGHTS = Path(__file__).resolve().parent / "weights" / "faces" / "mtcnn.pt"


@dataclass(frozen=True)
class Face:
    """One face to draw: its box (x1, y1, x2, y2) in frame pixels and how strongly to draw it (0..1)."""

    box: tuple[float, float, float, float]
    weight: float = 1.0


def min_face(height: int, width: int, fraction: float = 24.0) -> float:
    """The smallest face searched for in a frame: 16 px, or 1/``fraction`` of its shorter side (video: 1/24,
    30 px at 720p; stills: 1/64, 47 px in a 12-megapixel photo).

    Not searching for smaller faces keeps the detector's image pyramid, and its cost (~60 ms on two cores
    for video), about the same from 384p to 4K."""
    return max(16.0, min(height, width) / fraction)


def face_interval(rate: Fraction | None, frame_bytes: int = 0) -> int:
    """Frames from one face detection to the next in a video: about three detections a second (every 10th
    frame at 30 fps, every 8th at 25, every frame below 4.5 fps); 8 when the rate is unknown. More would
    cost much of the conversion's speed on a CPU; boxes move smoothly between detections. The frames between
    are held back, so at most 256 MiB of them (``frame_bytes`` each): 120 fps 4K detects every 10th frame."""
    every = 8 if not rate or rate <= 0 else max(1, round(float(rate) / 3))
    return min(every, max(1, HELD_BYTES // frame_bytes)) if frame_bytes > 0 else every


@lru_cache(maxsize=1)
def load_detector() -> Any:
    """The face detector (vidtoon.networks.mtcnn.MTCNN with the shipped weights), loaded once per process."""
    from vidtoon.networks.mtcnn import MTCNN
    return MTCNN.load(WEIGHTS)


#: a still is searched for faces down to 1/64 of its shorter side (a group photo from a phone), video to 1/24
STILL, VIDEO = 64.0, 24.0


def detect_faces(rgb: np.ndarray, upright: str = "", fraction: float = VIDEO) -> list[Face]:
    """Faces in an H x W x 3 uint8 RGB frame (MTCNN, faces from :func:`min_face` with ``fraction`` up,
    probability > 0.9).

    ``upright``: the display transform that stands the frame up (vidtoon.compare.display_transform of its
    video's display matrix: a phone's portrait video is stored sideways, where MTCNN finds no face). The
    faces are found on the upright picture; their boxes are returned in the stored frame's pixels."""
    from vidtoon.compare import turner

    turn = turner(upright)
    shown = np.ascontiguousarray(turn(rgb))
    found = load_detector().detect(shown, min_face=min_face(*shown.shape[:2], fraction))
    to_stored = _stored_point(turn, rgb.shape[1], rgb.shape[0])
    faces = []
    for f in found[found[:, 4] > MIN_PROBABILITY]:
        (ax, ay), (bx, by) = to_stored(f[0], f[1], shown.shape), to_stored(f[2], f[3], shown.shape)
        faces.append(Face((min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))))
    return faces


def _stored_point(turn: Callable[[np.ndarray], np.ndarray], width: int, height: int
                  ) -> Callable[[float, float, tuple[int, ...]], tuple[float, float]]:
    """Maps a point of the turned picture back to the stored frame (right-angle turns and flips are affine:
    where the stored corners land under ``turn`` says which)."""
    corners = turn(np.array([[0, 1], [2, 3]]))  # stored corners: top-left, top-right, bottom-left, bottom-right
    xy = {0: (0.0, 0.0), 1: (float(width), 0.0), 2: (0.0, float(height)), 3: (float(width), float(height))}
    o, right, down = (np.array(xy[int(corners[i, j])]) for i, j in ((0, 0), (0, 1), (1, 0)))

    def to_stored(x: float, y: float, shape: tuple[int, ...]) -> tuple[float, float]:
        p = o + (right - o) * (x / shape[1]) + (down - o) * (y / shape[0])
        return float(p[0]), float(p[1])
    return to_stored


def _look(width: float) -> tuple[float, float, float, float]:
    t = float(np.clip((width - SMALL) / (LARGE - SMALL), 0.0, 1.0))
    return tuple(a + (b - a) * t for a, b in zip(SMALL_LOOK, LARGE_LOOK))  # type: ignore[return-value]


def draw_faces(photo: np.ndarray, toon: np.ndarray, faces: Iterable[Face], strength: float = 1.0) -> np.ndarray:
    """The cartoon ``toon`` with the photo's facial detail drawn back inside each face's ellipse.

    ``photo`` and ``toon``: H x W x 3 uint8 RGB of the same size. ``strength``: the look's ``--strength``,
    which scales the drawing too (0: the photo came out, nothing to draw back). Returns ``toon`` itself when
    there is nothing to draw, else a new array; pixels outside the faces' ellipses are unchanged."""
    faces = [Face(f.box, f.weight * strength) for f in faces if f.weight * strength > 0]
    if not faces:
        return toon
    out = toon.copy()
    h, w = toon.shape[:2]
    for face in faces:
        x1, y1, x2, y2 = face.box
        fw, fh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
        sigma_frac, gain, colour, light = _look(fw)
        sigma = float(np.clip(fw * sigma_frac, 1.0, MAX_SIGMA))
        # the ellipse reaches 0.72 face widths and 0.78 face heights from the centre; the blur needs 3 sigma more
        mx, my = 0.75 * fw + 3 * sigma, 0.8 * fh + 3 * sigma
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        X1, Y1 = max(0, int(cx - mx)), max(0, int(cy - my))
        X2, Y2 = min(w, int(np.ceil(cx + mx)) + 1), min(h, int(np.ceil(cy + my)) + 1)
        if X2 <= X1 or Y2 <= Y1:
            continue
        src = photo[Y1:Y2, X1:X2].astype(np.float32)
        luma = cv2.cvtColor(src, cv2.COLOR_RGB2GRAY)
        smooth = cv2.GaussianBlur(luma, (0, 0), sigma)
        detail = luma - smooth
        detail = gain * np.where(detail > 0, light * detail, detail)
        yy, xx = np.mgrid[Y1:Y2, X1:X2].astype(np.float32)
        r = np.sqrt(((xx - cx) / (0.55 * fw)) ** 2 + ((yy - cy) / (0.6 * fh)) ** 2)
        alpha = (np.clip((1.3 - r) / 0.3, 0.0, 1.0) * face.weight)[..., None]  # 1 inside, fades out to r = 1.3
        cur = out[Y1:Y2, X1:X2].astype(np.float32)
        # outlines the cartoon drew across the features (through an eye, over a cheek) are lifted to
        # within INK_MARGIN of the photo's local level: the face's own dark marks come back as detail; the
        # face's contour (r > 0.7) keeps its outline
        lift = np.clip(smooth - cv2.cvtColor(cur, cv2.COLOR_RGB2GRAY) - INK_MARGIN, 0.0, None)
        lift *= np.clip((0.85 - r) / 0.15, 0.0, 1.0)
        drawn = (cur + (lift + detail)[..., None]) * (1 - colour) + src * colour
        out[Y1:Y2, X1:X2] = np.clip(cur + alpha * (drawn - cur) + 0.5, 0, 255).astype(np.uint8)
    return out


def _distance(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """How far apart two boxes are, in face widths (inf when their sizes differ by more than 2x)."""
    wa, wb = a[2] - a[0], b[2] - b[0]
    if not 0.5 <= wa / max(wb, 1e-6) <= 2.0:
        return float("inf")
    d = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)
    return float(d / ((wa + wb) / 2))


def _pairs(a: list[Face], b: list[Face]) -> list[tuple[int, int]]:
    """Indices (i, j) of the faces of ``a`` and ``b`` that are one face moving: about the same size, centres
    at most 1.5 face widths apart, nearest pairs first."""
    order = sorted((_distance(fa.box, fb.box), i, j) for i, fa in enumerate(a) for j, fb in enumerate(b))
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs = []
    for d, i, j in order:
        if d <= 1.5 and i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return pairs


def between(a: list[Face], b: list[Face], t: float) -> list[Face]:
    """The faces a fraction ``t`` (0..1) of the way from key frame ``a``'s faces to key frame ``b``'s.

    A face in both (:func:`_pairs`) moves linearly and changes weight linearly; a face found in only one of
    them stays where it was found and fades (out after ``a``, in before ``b``)."""
    pairs = _pairs(a, b)
    out = [Face(tuple((1 - t) * p + t * q for p, q in zip(a[i].box, b[j].box)),  # type: ignore[arg-type]
                (1 - t) * a[i].weight + t * b[j].weight) for i, j in pairs]
    out += [Face(f.box, f.weight * (1 - t)) for i, f in enumerate(a) if i not in {p[0] for p in pairs}]
    out += [Face(f.box, f.weight * t) for j, f in enumerate(b) if j not in {p[1] for p in pairs}]
    return out


def with_missed(found: list[Face], before: list[Face], fade: float = 1 / 3) -> list[Face]:
    """A key frame's faces: those ``found`` in it, plus each face of the key frame ``before`` that was not
    found again, where it was and ``fade`` weaker (dropped at 0).

    Detectors miss a face now and then (a turned head, motion blur): a face then dims for one interval
    instead of vanishing and coming back, which would flicker. One missed in three key frames in a row fades
    out (a second, at three detections a second)."""
    matched = {i for i, _ in _pairs(before, found)}
    return found + [Face(f.box, f.weight - fade) for i, f in enumerate(before)
                    if i not in matched and f.weight - fade > 1e-6]


class FaceTrack:
    """Faces for every frame of a video from detections on every ``every``-th frame.

    :meth:`push` takes the stream's items in order (``frame``: the decoded RGB of a video frame, None for
    anything else, such as audio) and returns those whose faces are now known, in the same order, each as
    ``(item, faces)`` (faces is None for non-video items). Frames between two key frames wait for the second;
    :meth:`finish` releases the rest with the last key frame's faces. At most ``every`` frames are held.
    A face the detector misses at a key frame fades over three intervals (:func:`with_missed`)."""

    def __init__(self, every: int = 5, detect: Callable[[np.ndarray], list[Face]] = detect_faces) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        self.every, self.detect = every, detect
        self._frames = 0
        self._key: list[Face] = []
        self._held: list[tuple[Any, int | None]] = []  # (item, its frame number, or None)

    def push(self, item: Any, frame: np.ndarray | None) -> list[tuple[Any, list[Face] | None]]:
        """Add the next item; returns the items released by it (possibly none)."""
        if frame is None:
            if not self._held:
                return [(item, None)]
            self._held.append((item, None))
            return []
        n, self._frames = self._frames, self._frames + 1
        if n % self.every:
            self._held.append((item, n))
            return []
        key = with_missed(self.detect(frame), self._key)
        out = self._release(key, n)
        self._key = key
        return out + [(item, key)]

    def run(self, items: Iterable[Any], frame_of: Callable[[Any], np.ndarray | None]
            ) -> Iterator[tuple[Any, list[Face] | None]]:
        """:meth:`push` every item of ``items`` (``frame_of(item)``: its RGB frame, None if not video), then
        :meth:`finish`: each item with its faces, in order."""
        for item in items:
            yield from self.push(item, frame_of(item))
        yield from self.finish()

    def finish(self) -> list[tuple[Any, list[Face] | None]]:
        """Release the frames after the last key frame (with its faces) and what came with them."""
        out = [(it, None if n is None else self._key) for it, n in self._held]
        self._held = []
        return out

    def _release(self, key: list[Face], n: int) -> list[tuple[Any, list[Face] | None]]:
        start = n - self.every
        out = [(it, None if k is None else between(self._key, key, (k - start) / self.every))
               for it, k in self._held]
        self._held = []
        return out


def video_faces(rate: Fraction | None, display_matrix: tuple[int, ...] | None, size: tuple[int, int] = (0, 0)
                ) -> FaceTrack:
    """The :class:`FaceTrack` of a video with this frame rate, display matrix and frame ``size`` (width,
    height; its faces are found on the picture as displayed: :func:`detect_faces`'s ``upright``)."""
    from vidtoon.compare import display_transform

    upright = display_transform(display_matrix)

    def detect(rgb: np.ndarray) -> list[Face]:
        with one_torch_thread():
            return detect_faces(rgb, upright)

    return FaceTrack(face_interval(rate, size[0] * size[1] * 3), detect)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run PyTorch's CPU ops on one thread inside the block (the thread count before is restored after).

    For the detector in a conversion: the decoder, the encoder and the engine already keep the cores busy,
    and with a core taken by anything else PyTorch's two threads wait for each other at every op (measured
    on the 2-core AMD EPYC, Big Buck Bunny at 720p with a busy process beside it: 7.0-8.1 fps with faces on
    two threads, 9.5-10.6 on one, 9.7-10.4 with no faces; idle: 11.1-12.4 on two, 12.1-12.6 on one)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class FaceDrawing:
    """An engine (vidtoon.engines.base.Engine) that also draws faces back onto what it stylizes.

    ``every=None`` (stills): faces are detected on every picture, each on its own. ``every=N`` (a live
    preview: frames in camera order): detected on every N-th frame and held for the frames between, a face
    missed fading as in :func:`with_missed`. ``strength``: the look's, as in :func:`draw_faces`. Everything
    else is the wrapped engine's."""

    def __init__(self, engine: Any, every: int | None = None,
                 detect: Callable[[np.ndarray], list[Face]] | None = None, strength: float = 1.0) -> None:
        if detect is None:  # stills are searched for smaller faces than frames of a stream
            detect = functools.partial(detect_faces, fraction=STILL if every is None else VIDEO)
        self.engine, self.every, self.detect, self.strength = engine, every, detect, strength
        self._seen = 0
        self._faces: list[Face] = []

    def __getattr__(self, name: str) -> Any:  # name, device, in_flight, preferred_batch_size, ...
        return getattr(self.engine, name)

    def infer(self, frames: np.ndarray) -> np.ndarray:
        """The wrapped engine's stylization of an N x H x W x 3 uint8 batch, with faces drawn back."""
        return self._draw(frames, self.engine.infer(frames))

    def submit(self, frames: np.ndarray) -> Callable[[], np.ndarray]:
        """As the wrapped engine's submit; faces are drawn when the result is collected."""
        pending = self.engine.submit(frames)
        return lambda: self._draw(frames, pending())

    def close(self) -> None:
        """Close the wrapped engine."""
        self.engine.close()

    def _draw(self, frames: np.ndarray, toon: np.ndarray) -> np.ndarray:
        out = toon.copy()
        for i, (photo, t) in enumerate(zip(frames, toon)):
            if self.every is None:
                self._faces = self.detect(photo)
            elif self._seen % self.every == 0:
                self._faces = with_missed(self.detect(photo), self._faces)
            self._seen += 1
            out[i] = draw_faces(photo, t, self._faces, self.strength)
        return out
