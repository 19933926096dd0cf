"""The held-out judge (trainer/evaluate.py): rows per method, and identity scores full content."""
from __future__ import annotations

import cv2
import numpy as np

from vidtoon.trainer.evaluate import evaluate, markdown


def test_evaluate_rows_and_identity() -> None:
    rng = np.random.default_rng(0)
    photos = [cv2.GaussianBlur(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), (5, 5), 1.0) for _ in range(4)]
    cartoons = [np.full((40, 56, 3), rng.integers(0, 256, 3), np.uint8) for _ in range(4)]
    rows = evaluate(photos, cartoons, {"identity": lambda p: p, "grey": lambda p: np.full_like(p, 128)})
    assert [r["method"] for r in rows] == ["identity", "grey"]
    ident, grey = rows
    assert abs(ident["feature_cosine"] - 1.0) < 1e-6 and abs(ident["ssim_luma"] - 1.0) < 1e-6
    assert grey["ssim_luma"] < 0.5 and grey["feature_cosine"] < ident["feature_cosine"]
    assert all(np.isfinite(r["kid_x1e3"]) and r["kid_std_x1e3"] >= 0 for r in rows)
    assert "| identity |" in markdown(rows)
