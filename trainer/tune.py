"""Fit the toon filter's look to cartoon art: a coordinate search of its few scalars against the judge.

The shipped default model is the toon generator without its feature network (``width=0``): the cartoon
operations alone (palette, edge-aware flattening, tones, guided upsampling, Canny-style outlines), steered
by a handful of scalars. Gradient training of the learned heads never beat these operations on the held-out
judge (MODEL_CARD.md), so the scalars are fitted directly: a coordinate search over a small grid of each,
scored by KID to cartoon art (trainer/evaluate.py's judge) on the *training* split of the photos and
cartoons, keeping only looks whose content cosine and luma SSIM stay above floors (a look that wins the
metric by destroying the picture does not count). The held-out split is left for the evaluation.

    python -m vidtoon.trainer.tune --photos ../shared/data/photos --cartoons ../shared/data/cartoons \\
        --holdout 0.2 --out default.pt
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vidtoon.networks import ToonGenerator
from vidtoon.trainer.data import list_images, read_rgb

#: a look: the toon generator's config and scalars (``line_low``/``line_high`` move together as ``lines``)
Look = dict[str, Any]

#: where the search starts (found by hand on the training split, see MODEL_CARD.md). ``texture_lines`` and
#: ``shadows`` are set by eye, not searched: the judge does not mind lines traced in grass and water or
#: shadows quantized to black holes, people do (on the shared clips); they cost it 2-4 KID
START: Look = {"iters": 56, "sigma": 0.1, "bins": 4, "sharpness": 3.0, "eps": 1e-2, "saturation": 1.2,
               "brightness": 1.05, "lines": (0.39, 0.94), "hysteresis": 6, "texture_lines": 0.8, "shadows": 0.25}

#: content floors of the search, above the evaluation's (0.60 / 0.45): below cosine 0.65 it found looks that
#: win KID by smearing faces and shading into blobs (seen on held-out photos and the clips)
MIN_COSINE, MIN_SSIM = 0.65, 0.5

#: the candidates of each scalar, searched in this order (iterations and hysteresis steps cost speed:
#: their grids stop where the 720p convert would fall below the first default model's rate)
SPACE: dict[str, tuple[Any, ...]] = {
    "lines": ((0.31, 0.78), (0.39, 0.94), (0.47, 1.1)),
    "hysteresis": (3, 6, 9),
    "iters": (32, 44, 56, 64),
    "sigma": (0.08, 0.1, 0.12, 0.15),
    "bins": (3, 4, 5, 6),
    "sharpness": (2.0, 3.0, 4.0),
    "eps": (4e-3, 1e-2, 2e-2),
    "saturation": (1.1, 1.2, 1.35),
    "brightness": (1.0, 1.05, 1.1),
}


def build(look: Look) -> ToonGenerator:
    """The feature-free toon generator of ``look`` (eval mode)."""
    low, high = look["lines"]
    net = ToonGenerator(width=0, iters=int(look["iters"]), bins=int(look["bins"]), saturation=float(look["saturation"]),
                        brightness=float(look["brightness"]), lines="canny", line_low=float(low),
                        line_high=float(high), hysteresis=int(look["hysteresis"]),
                        texture_lines=float(look.get("texture_lines", 0.0)), shadows=float(look.get("shadows", 0.0)))
    with torch.no_grad():
        net.log_sigma.fill_(math.log(look["sigma"]))
        net.log_eps.fill_(math.log(look["eps"]))
        net.log_sharp.fill_(math.log(look["sharpness"]))
    return net.eval()


#: with ``--edges MODEL`` (a toon model whose outlines come from a learned edge network, ``vidtoon
#: train-edges``) the search starts from that model's look and moves these instead: stroke thresholds on
#: the edge map, how much its borders stop the diffusion, the highlights' headroom, and the palette and
#: diffusion scalars most tied to them (the Canny scalars do not apply)
EDGE_SPACE: dict[str, tuple[Any, ...]] = {
    "strokes": ((0.25, 0.5), (0.3, 0.6), (0.35, 0.7)),
    "barrier": (0.0, 0.5, 0.8, 1.0),
    "headroom": (0.0, 0.25, 0.4),
    "saturation": (1.1, 1.2, 1.35),
    "iters": (32, 48, 64),
    "sigma": (0.1, 0.12, 0.15),
}


def edge_look(net: ToonGenerator) -> Look:
    """The searchable look of a toon generator with learned outlines."""
    cfg = net.config
    return {"strokes": (cfg["stroke_low"], cfg["stroke_high"]), "barrier": cfg["barrier"],
            "headroom": cfg["headroom"], "saturation": cfg["saturation"], "iters": cfg["iters"],
            "sigma": round(float(net.log_sigma.detach().exp()), 4)}


def edge_builder(base: ToonGenerator) -> Callable[[Look], ToonGenerator]:
    """``build`` for looks of :data:`EDGE_SPACE`: ``base`` (its edge network and other scalars) with them."""
    import copy

    def build_edges(look: Look) -> ToonGenerator:
        net = copy.deepcopy(base)
        low, high = look["strokes"]
        net.config.update({"stroke_low": float(low), "stroke_high": float(high), "barrier": float(look["barrier"]),
                           "headroom": float(look["headroom"]), "saturation": float(look["saturation"]),
                           "iters": int(look["iters"])})
        with torch.no_grad():
            net.log_sigma.fill_(math.log(look["sigma"]))
        return net.eval()

    return build_edges


def judge_scorer(photos: list[np.ndarray], cartoons: list[np.ndarray],
                 builder: Callable[[Look], ToonGenerator] | None = None) -> Callable[[Look], dict[str, float]]:
    """A scoring function for :func:`search`: KID (x1e3) of the stylized ``photos`` to ``cartoons``, and
    the content cosine and luma SSIM to the photos (trainer/evaluate.py's judge and measures); ``builder``
    turns a look into a network (default: :func:`build`)."""
    from vidtoon.engines.torch_engine import TorchEngine
    from vidtoon.trainer.evaluate import Judge, score_styled

    judge = Judge()
    cartoon_f, photo_f = judge.features(cartoons), judge.features(photos)

    def score(look: Look) -> dict[str, float]:
        engine = TorchEngine((builder or build)(look), device="cpu")
        return score_styled(judge, photos, [engine.infer(p[None])[0] for p in photos], photo_f, cartoon_f)

    return score


def search(score: Callable[[Look], dict[str, float]], start: Look, space: dict[str, tuple[Any, ...]],
           rounds: int = 1, min_cosine: float = MIN_COSINE, min_ssim: float = MIN_SSIM,
           log: Callable[[str], None] = print) -> tuple[Look, list[tuple[Look, dict[str, float]]]]:
    """Coordinate search: for each scalar in turn, try its candidates with the others fixed and keep the
    lowest KID among looks above the content floors; ``rounds`` passes. Returns the best look and every
    (look, scores) tried, in order. A look is scored once (results are remembered)."""
    seen: dict[str, dict[str, float]] = {}
    history: list[tuple[Look, dict[str, float]]] = []

    def evaluate(look: Look) -> dict[str, float]:
        key = repr(sorted(look.items()))
        if key not in seen:
            t = time.perf_counter()
            seen[key] = score(look)
            history.append((dict(look), seen[key]))
            s = seen[key]
            log(f"{_describe(look)}  KID {s['kid_x1e3']:.2f}  cos {s['feature_cosine']:.3f}  "
                f"ssim {s['ssim_luma']:.3f}  ({time.perf_counter() - t:.0f} s)")
        return seen[key]

    def ok(s: dict[str, float]) -> bool:
        return s["feature_cosine"] >= min_cosine and s["ssim_luma"] >= min_ssim

    best = dict(start)
    best_s = evaluate(best)
    for _ in range(rounds):
        for name, candidates in space.items():
            for value in candidates:
                trial = {**best, name: value}
                s = evaluate(trial)
                # a start below the floors is replaced by any look above them
                if ok(s) and (not ok(best_s) or s["kid_x1e3"] < best_s["kid_x1e3"]):
                    best, best_s = trial, s
    return best, history


def _describe(look: Look) -> str:
    return " ".join(f"{k}={v}" for k, v in look.items())


def main(argv: list[str] | None = None) -> None:
    """Command line: search, print the history and write the best look as an inference checkpoint."""
    from vidtoon.models import export_generator

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", required=True, help="photo folder (its training split is used)")
    ap.add_argument("--cartoons", required=True, help="cartoon folder (its training split is used)")
    ap.add_argument("--holdout", type=float, default=0.2, help="the evaluation's hold-out fraction, left out here")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--min-cosine", type=float, default=MIN_COSINE)
    ap.add_argument("--min-ssim", type=float, default=MIN_SSIM)
    ap.add_argument("--out", type=Path, required=True, help="checkpoint to write (load it with --model PATH)")
    ap.add_argument("--edges", help="a toon model with learned outlines (vidtoon train-edges): search its look")
    args = ap.parse_args(argv)
    start, space, builder = START, SPACE, build
    if args.edges:
        from vidtoon.models import load_generator

        base = load_generator(args.edges)
        if getattr(base, "config", {}).get("lines") != "student":
            raise SystemExit(f"Error: {args.edges} has no learned outlines (make one with vidtoon train-edges)")
        start, space, builder = edge_look(base), EDGE_SPACE, edge_builder(base)
    photos = [read_rgb(p) for p in list_images(args.photos, holdout=args.holdout, held_out=False)]
    cartoons = [read_rgb(p) for p in list_images(args.cartoons, holdout=args.holdout, held_out=False)]
    print(f"training split: {len(photos)} photos, {len(cartoons)} cartoons", file=sys.stderr, flush=True)
    t = time.perf_counter()
    best, history = search(judge_scorer(photos, cartoons, builder), start, space, rounds=args.rounds,
                           min_cosine=args.min_cosine, min_ssim=args.min_ssim,
                           log=lambda m: print(m, file=sys.stderr, flush=True))
    export_generator(builder(best), "toon", args.out)
    print(f"{len(history)} looks scored in {time.perf_counter() - t:.0f} s; best: {_describe(best)}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
