"""Training images: loading, hold-out split, cached edge-promoted cartoons and surface targets, random crops."""
from __future__ import annotations

import csv
import hashlib
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from vidtoon.errors import VidtoonError
from vidtoon.fileio import write_image

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def is_held_out(name: str, fraction: float) -> bool:
    """Deterministic hold-out split by file name (stable across runs, machines and Python versions)."""
    return fraction > 0 and (zlib.crc32(name.encode()) % 10_000) < fraction * 10_000


def list_images(folder: str | Path, kinds: tuple[str, ...] = (), holdout: float = 0.0,
                held_out: bool = False) -> list[Path]:
    """Image files of ``folder`` (sorted), filtered by MANIFEST.tsv ``kind`` and by the hold-out split.

    ``held_out=False`` returns the training part, ``True`` the held-out part.
    """
    root = Path(folder)
    if not root.is_dir():
        raise VidtoonError(f"image folder {folder} does not exist")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if kinds:
        manifest = root / "MANIFEST.tsv"
        if not manifest.is_file():
            raise VidtoonError(f"--cartoon-kinds needs {manifest} with a 'kind' column")
        with manifest.open(newline="") as f:
            keep = {row["file"] for row in csv.DictReader(f, delimiter="\t") if row.get("kind") in kinds}
        files = [p for p in files if p.name in keep]
    files = [p for p in files if is_held_out(p.name, holdout) == held_out]
    if not files:
        raise VidtoonError(f"no images found in {folder}" + (f" of kinds {', '.join(kinds)}" if kinds else ""))
    return files


@dataclass
class LoadReport:
    """What loading a folder did: images used, unreadable ones skipped, small ones upscaled."""

    used: int = 0
    unreadable: int = 0
    upscaled: int = 0


def read_rgb(path: Path) -> np.ndarray | None:
    """Read an image as HxWx3 uint8 RGB, or None when it cannot be decoded."""
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_folder(files: list[Path], crop: int, report: LoadReport) -> list[np.ndarray]:
    """Decode ``files``; images whose short side is below ``crop`` are upscaled to it (counted in report)."""
    images = []
    for path in files:
        img = read_rgb(path)
        if img is None:
            report.unreadable += 1
            continue
        short = min(img.shape[:2])
        if short < crop:
            scale = crop / short
            img = cv2.resize(img, (max(crop, round(img.shape[1] * scale)), max(crop, round(img.shape[0] * scale))),
                             interpolation=cv2.INTER_CUBIC)
            report.upscaled += 1
        images.append(img)
        report.used += 1
    return images


def cached(images: list[np.ndarray], fn: Callable[[np.ndarray], np.ndarray], tag: str, cache_dir: Path,
           part: tuple[int, int] = (0, 1), workers: int | None = None) -> list[np.ndarray]:
    """Apply ``fn`` to each image once; results are cached as PNG keyed by image content and ``tag``.

    Safe with several processes (or threads) on one cache folder: each result is written to a temporary
    file of its own and renamed into place, so a reader sees a whole file or none, and two writers of the
    same entry never take each other's temporary file. ``part`` = (index, count) of the caller among
    processes sharing the folder: each starts at its own share of the images, so on a first run they
    compute mostly different entries and then find the others' in the cache. ``workers``: threads
    (default: one per core; 1 computes the entries one after the other, in that order).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    index, count = part
    n = len(images)
    first = index * n // max(count, 1)

    def one(i: int) -> np.ndarray:
        img = images[i]
        key = hashlib.sha1(img.tobytes() + tag.encode() + str(img.shape).encode()).hexdigest()[:20]
        path = cache_dir / f"{key}.png"
        hit = read_rgb(path) if path.is_file() else None
        if hit is None or hit.shape != img.shape:
            hit = fn(img)
            write_image(path, cv2.cvtColor(hit, cv2.COLOR_RGB2BGR))
        return hit

    order = [*range(first, n), *range(first)]
    # OpenCV releases the GIL: threads use every core for the filters (mean shift: 0.2-0.4 s an image)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = dict(zip(order, pool.map(one, order)))
    return [results[i] for i in range(n)]


class PairSampler:
    """Random aligned crops (with horizontal flips) from lists of same-sized image stacks.

    ``stacks[k][i]`` is the k-th view of image i (e.g. photo and its surface target); one crop window is
    taken from all views of an image, so they stay aligned.
    """

    def __init__(self, stacks: list[list[np.ndarray]], crop: int, rng: np.random.Generator) -> None:
        self.stacks = stacks
        self.crop = crop
        self.rng = rng

    def sample(self, batch: int) -> list[np.ndarray]:
        """Return one N x crop x crop x 3 uint8 array per view."""
        n = len(self.stacks[0])
        out = [np.empty((batch, self.crop, self.crop, 3), np.uint8) for _ in self.stacks]
        for b in range(batch):
            i = int(self.rng.integers(n))
            h, w = self.stacks[0][i].shape[:2]
            y = int(self.rng.integers(h - self.crop + 1))
            x = int(self.rng.integers(w - self.crop + 1))
            flip = bool(self.rng.integers(2))
            for k, views in enumerate(self.stacks):
                patch = views[i][y:y + self.crop, x:x + self.crop]
                out[k][b] = patch[:, ::-1] if flip else patch
        return out
