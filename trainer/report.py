"""What a run shows: sample grids (photo | stylized), the loss CSV and its plot."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn

from vidtoon.fileio import AtomicFile, write_image

LOG_FIELDS = ["step", "phase", "lr", "loss_g", "loss_adv", "loss_con", "loss_surf", "loss_flat", "loss_d",
              "d_real", "d_edge", "d_fake", "it_per_s", "elapsed_s"]


def to_tensor(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """N x H x W x 3 uint8 -> NCHW float in [-1, 1] on ``device``."""
    return torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """NCHW in [-1, 1] -> N x H x W x 3 uint8."""
    return x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def sample_photos(images: list[np.ndarray], n: int = 6, size: int = 256) -> np.ndarray:
    """Fixed sample inputs: the first ``n`` photos, resized so the short side is ``size``, centre-cropped square."""
    out = []
    for img in images[:n]:
        h, w = img.shape[:2]
        s = size / min(h, w)
        img = cv2.resize(img, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_AREA)
        y, x = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        out.append(img[y:y + size, x:x + size])
    return np.stack(out)


@torch.no_grad()
def write_grid(path: Path, generator: nn.Module, photos: np.ndarray, device: torch.device) -> None:
    """A grid of rows ``photo | G(photo)`` as PNG."""
    was = generator.training
    generator.eval()
    styled = to_uint8(generator(to_tensor(photos, device)))
    generator.train(was)
    rows = [np.concatenate([p, s], 1) for p, s in zip(photos, styled)]
    pairs = [np.concatenate(rows[i:i + 2], 1) if i + 1 < len(rows) else
             np.concatenate([rows[i], np.zeros_like(rows[i])], 1) for i in range(0, len(rows), 2)]
    grid = np.concatenate(pairs, 0)
    write_image(path, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


class LossLog:
    """Append-only CSV of losses; survives resume (rows after the resumed step are dropped)."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        if resume_step is not None and path.is_file():
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            self._write(rows)
        elif not path.is_file():
            self._write([])

    def _write(self, rows: list[dict]) -> None:
        with self.path.open("w", newline="") as f:
            w = csv.DictWriter(f, LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)

    def append(self, row: dict) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, LOG_FIELDS).writerow({k: row.get(k, "") for k in LOG_FIELDS})


def plot_losses(csv_path: Path, png_path: Path) -> None:
    """Plot every loss column of the CSV against the step (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss_con", "loss_surf", "loss_flat", "loss_adv", "loss_d"):
        vals = [float(r[key]) if r[key] not in ("", None) else np.nan for r in rows]
        axes[0].plot(steps, vals, label=key, linewidth=0.8)
    axes[0].set_xlabel("step"); axes[0].set_yscale("log"); axes[0].legend(); axes[0].set_title("losses")
    for key in ("d_real", "d_edge", "d_fake"):
        vals = [float(r[key]) if r[key] not in ("", None) else np.nan for r in rows]
        axes[1].plot(steps, vals, label=key, linewidth=0.8)
    axes[1].set_xlabel("step"); axes[1].legend(); axes[1].set_title("D output (mean logit)")
    fig.tight_layout()
    try:
        with AtomicFile(png_path, suffix=".png") as target:  # matplotlib picks the format by extension
            fig.savefig(target.path, dpi=90)
    finally:
        plt.close(fig)
