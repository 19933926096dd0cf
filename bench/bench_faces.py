"""Faces kept: the share of the faces a face detector finds in photos that it still finds in their cartoons,
per model and per variant of a model, on the training and the held-out split of a photo folder.

The rule is ``../shared/tools/faces_kept.py``'s (MTCNN, min face 16 px, probability > 0.9, box IoU > 0.3),
counted per face and split by face size (under / from 30 px wide), so that a look can be developed on the
training split's faces and checked on the held-out ones. MTCNN's weights ship in the facenet-pytorch wheel,
whose pins are for an old torch: ``pip install tqdm requests && pip install --no-deps facenet-pytorch==2.6.0``.

    python bench/bench_faces.py                                   # default, its parts, toon-canny, classical
    python bench/bench_faces.py --photos DIR --methods default,default:outline=0,default:iters=0

A method is a model name or checkpoint, optionally with ``:key=value;...``: ``strength`` and ``outline`` set
the look controls, any other key overrides the model's config (``iters=0``: no flattening steps); or one of
the classical filters ``meanshift-outlines`` (blind_sheet.py's) and ``cv2-stylization``. A method ending in
``+faces`` also draws faces back as ``vidtoon convert`` / ``vidtoon image`` do (vidtoon/faces.py; without it,
the network alone, as ``../shared/tools/faces_kept.py`` measures a model).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_models import cpu_name  # noqa: E402
from vidtoon.models import generator_from_checkpoint, read_checkpoint, resolve_model_path  # noqa: E402
from vidtoon.networks import apply_controls  # noqa: E402
from vidtoon.trainer.data import list_images, read_rgb  # noqa: E402

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
DEFAULT_METHODS = "default,default+faces,default:outline=0,toon-canny,toon-canny+faces,meanshift-outlines,cv2-stylization"
Box = tuple[float, float, float, float]


def meanshift_outlines(rgb: np.ndarray) -> np.ndarray:
    """Mean-shift flattening plus dark Canny outlines, as ``../shared/tools/blind_sheet.py`` draws them."""
    f = cv2.pyrMeanShiftFiltering(rgb, 12, 30)
    e = cv2.Canny(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), 50, 120)
    f[e > 0] = (f[e > 0] * 0.15).astype(np.uint8)
    return f


def model_method(spec: str) -> Callable[[np.ndarray], np.ndarray]:
    """A model (name or checkpoint) with ``:key=value;...`` controls and config overrides, as an RGB filter."""
    name, _, opts = spec.partition(":")
    kv = dict(o.split("=", 1) for o in opts.replace(";", ",").split(",") if o)
    ckpt = read_checkpoint(resolve_model_path(name))
    controls = {k: float(kv.pop(k)) for k in ("strength", "outline") if k in kv}
    for k, v in kv.items():
        ckpt["config"][k] = type(ckpt["config"].get(k, 0.0))(float(v))
    net = apply_controls(generator_from_checkpoint(ckpt), controls.get("strength", 1.0),
                         controls.get("outline", 1.0)).eval()

    @torch.inference_mode()
    def run(rgb: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
        return ((net(x)[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return run


def method(spec: str) -> Callable[[np.ndarray], np.ndarray]:
    """The filter a ``--methods`` entry names."""
    if spec.endswith("+faces"):
        from vidtoon.faces import STILL, detect_faces, draw_faces

        base = method(spec[: -len("+faces")])  # as `vidtoon image` searches a still
        return lambda rgb: draw_faces(rgb, base(rgb), detect_faces(rgb, fraction=STILL))
    if spec == "meanshift-outlines":
        return meanshift_outlines
    if spec == "cv2-stylization":
        return lambda x: cv2.stylization(x, sigma_s=60, sigma_r=0.45)
    return model_method(spec)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", default=str(SHARED_PHOTOS))
    ap.add_argument("--holdout", type=float, default=0.2, help="the held-out fraction (trainer's split)")
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    a = ap.parse_args()
    try:
        from facenet_pytorch import MTCNN
    except ImportError:
        sys.exit("Error: bench_faces needs MTCNN (pip install tqdm requests && "
                 "pip install --no-deps facenet-pytorch==2.6.0)")
    torch.set_num_threads(2)
    mtcnn = MTCNN(keep_all=True, device="cpu", min_face_size=16)

    def faces(rgb: np.ndarray) -> list[Box]:
        from PIL import Image
        boxes, probs = mtcnn.detect(Image.fromarray(rgb))
        return [] if boxes is None else [tuple(b) for b, p in zip(boxes, probs) if p > 0.9]

    splits = {}
    for name, held in (("training", False), ("held-out", True)):
        photos = [read_rgb(p) for p in list_images(a.photos, holdout=a.holdout, held_out=held)]
        found = [(p, faces(p)) for p in photos]
        splits[name] = [(p, f) for p, f in found if f]
        n = sum(len(f) for _, f in splits[name])
        print(f"{name}: {len(photos)} photos, {len(splits[name])} with faces, {n} faces")
    print(f"\nCPU: {cpu_name()}\n")
    print("| method | training split | held-out | training, faces >= 30 px |")
    print("|---|---|---|---|")
    for spec in a.methods.split(","):
        fn, row = method(spec), []
        big = [0, 0]
        for name in ("training", "held-out"):
            kept = total = 0
            for photo, ref in splits[name]:
                got = faces(fn(photo))
                for f in ref:
                    ok = any(iou(f, g) > 0.3 for g in got)
                    kept, total = kept + ok, total + 1
                    if name == "training" and f[2] - f[0] >= 30:
                        big = [big[0] + ok, big[1] + 1]
            row.append(f"{kept}/{total} ({kept / max(total, 1):.2f})")
        print(f"| {spec} | {row[0]} | {row[1]} | {big[0]}/{big[1]} |", flush=True)


if __name__ == "__main__":
    main()
