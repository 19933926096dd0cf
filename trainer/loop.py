"""The CartoonGAN training loop: initialization phase, then adversarial phase with edge promotion.

One process on a CPU or GPU, or several under ``torchrun`` (DistributedDataParallel; rank 0 writes).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from vidtoon.trainer.data import LoadReport, PairSampler, cached, list_images, load_folder
from vidtoon.trainer.edges import edge_promote, flatten, line_image, surface_target, toon_line_image, toon_target
from vidtoon.trainer.features import content_network
from vidtoon.trainer.losses import content_loss, d_loss, flatness_loss, gan_loss, surface_loss, toon_loss
from vidtoon.trainer.options import TrainOptions
from vidtoon.trainer.report import LossLog, plot_losses, sample_photos, to_tensor, write_grid
from vidtoon.trainer.state import (
    EMA,
    DeferredInterrupt,
    load_training_checkpoint,
    read_checkpoint_file,
    new_run_dir,
    reseed_rank,
    restore_rng,
    restore_scaler,
    rng_state,
    save_checkpoint,
)
from vidtoon.errors import VidtoonError
from vidtoon.networks import PatchDiscriminator, build_generator


@dataclass
class Data:
    """Everything sampled from during training."""

    photos: PairSampler       # views: photo, surface target, outline map
    cartoons: PairSampler     # views: cartoon, edge-promoted cartoon
    sample_inputs: np.ndarray
    report: dict[str, LoadReport]


def _device(opts: TrainOptions) -> torch.device:
    if opts.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise VidtoonError(f"--device {opts.device}: no CUDA GPU is available")
    return torch.device(opts.device)


def prepare_data(opts: TrainOptions, rng: np.random.Generator, log: Callable[[str], None],
                 part: tuple[int, int] = (0, 1)) -> Data:
    """Load both folders, cache edge-promoted cartoons and surface targets, and build the samplers.

    ``part``: (rank, world size) of this process. All processes of a run share the cache folder; each
    starts its pass over the images at its own share, so on a first run they mostly fill different
    entries and read the others' (see :func:`vidtoon.trainer.data.cached`).
    """
    photo_files = list_images(opts.photos, holdout=opts.holdout)
    cartoon_files = list_images(opts.cartoons, kinds=opts.cartoon_kinds, holdout=opts.holdout)
    reports = {"photos": LoadReport(), "cartoons": LoadReport()}
    photos = load_folder(photo_files, opts.crop, reports["photos"])
    cartoons = load_folder(cartoon_files, opts.crop, reports["cartoons"])
    for name, rep in reports.items():
        if rep.unreadable:
            log(f"{name}: skipped {rep.unreadable} unreadable image(s)")
        if rep.upscaled:
            log(f"{name}: upscaled {rep.upscaled} image(s) smaller than the {opts.crop}px crop")
    for name, imgs in (("photos", photos), ("cartoons", cartoons)):
        if len(imgs) < opts.batch:
            raise VidtoonError(f"too few {name}: {len(imgs)} readable image(s) for a batch of {opts.batch}")
    cache = Path(opts.out) / ".cache"
    log(f"edge-promoting {len(cartoons)} cartoons (cached in {cache})")
    smoothed = cached(cartoons, edge_promote, "edge-promote-v1", cache / "edges", part=part)
    log(f"{opts.target} targets and outlines for {len(photos)} photos (cached)")
    if opts.target == "toon":
        flat = cached(photos, flatten, "flat-v1", cache / "flat", part=part)  # the slow part (mean shift)
        targets = [toon_target(f) for f in flat]
        lines = [toon_line_image(f) for f in flat]
    else:
        targets = cached(photos, surface_target, "surface-v6", cache / "surface", part=part)
        lines = cached(photos, line_image, "lines-v2", cache / "lines", part=part)
    return Data(PairSampler([photos, targets, lines], opts.crop, rng), PairSampler([cartoons, smoothed], opts.crop, rng),
                sample_photos(photos), reports)


def _lr(opts: TrainOptions, step: int) -> float:
    """Init phase: ``init_lr``; adversarial phase: ``lr`` with step decay."""
    if step < opts.init_steps:
        return opts.init_lr
    adv = step - opts.init_steps
    return opts.lr * opts.lr_decay_gamma ** (adv // opts.lr_decay_every)


def _init_from(source: str, G: nn.Module, D: nn.Module, ema: EMA, log: Callable[[str], None]) -> None:
    """Fine-tuning: initialise G (its EMA weights when present), its EMA, and D from another run."""
    path = Path(source)
    if path.is_dir():
        ckpt = load_training_checkpoint(path, "to start from (--init-from)")
    elif path.is_file():
        ckpt = read_checkpoint_file(path)
    else:
        raise VidtoonError(f"--init-from {source}: no such run folder or checkpoint file")
    weights = ckpt.get("params_ema") or ckpt["params"]
    try:
        # non-strict: a generator with an added layer (e.g. ink_refine) starts from a run without it;
        # the new layer keeps its initialization. Shape mismatches still raise.
        missing = G.load_state_dict(weights, strict=False)
        ema.module.load_state_dict(weights, strict=False)
        if "params_d" in ckpt:
            D.load_state_dict(ckpt["params_d"])
    except RuntimeError as exc:
        raise VidtoonError(f"--init-from {source}: weights do not fit this architecture ({exc})") from exc
    if missing.unexpected_keys:
        raise VidtoonError(f"--init-from {source}: weights do not fit this architecture "
                           f"(unexpected {', '.join(missing.unexpected_keys)})")
    new = f"; new layers at their initialization: {', '.join(missing.missing_keys)}" if missing.missing_keys else ""
    log(f"initialised from {source} (step {ckpt.get('step', '?')}){new}")


def backend_for(device: torch.device) -> str:
    """The torch.distributed backend for training on ``device``: NCCL only moves CUDA tensors, so gloo
    unless the device is CUDA (``--device cpu`` on a machine with GPUs included)."""
    return "nccl" if device.type == "cuda" else "gloo"


def grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """The mixed-precision loss scaler (its state goes into every checkpoint; off: a no-op)."""
    return torch.amp.GradScaler(device.type, enabled=enabled)


def train(opts: TrainOptions, resume: str | Path | None = None, stop_at: int | None = None,
          progress: Callable[[int, int, dict], None] | None = None,
          log: Callable[[str], None] = print) -> Path:
    """Run (or resume) training; returns the run folder. ``stop_at`` ends early at that step (tests).

    Several processes (``torchrun``: ``WORLD_SIZE`` > 1) train one model with DistributedDataParallel;
    a process group set up by the caller is used as it is (and left open).
    """
    joined = dist.is_available() and dist.is_initialized()
    distributed = joined or int(os.environ.get("WORLD_SIZE", "1")) > 1
    if opts.threads:
        torch.set_num_threads(opts.threads)
    ckpt = run = None
    if resume is not None:
        run = Path(resume)
        ckpt = load_training_checkpoint(run)
        saved = TrainOptions.from_json_file(run / "options.json")
        # a resume keeps the recipe; only the length of the run may be extended
        opts = replace(saved, steps=max(saved.steps, opts.steps) if opts.steps != TrainOptions.steps else saved.steps)
    opts.validate()
    device = _device(opts)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if distributed and not joined:
        dist.init_process_group(backend_for(device))
    try:
        return _train(opts, device, ckpt, run, dist.get_rank() if distributed else 0, distributed, stop_at,
                      progress, log)
    finally:
        if distributed and not joined:
            dist.destroy_process_group()


@dataclass
class _Nets:
    """The networks of a run, their optimizers and loss scaler; ``g_train``/``d_train`` are what the steps
    call (the DistributedDataParallel wrappers when several processes train)."""

    G: nn.Module
    D: nn.Module
    ema: EMA
    feats: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    g_train: nn.Module
    d_train: nn.Module

    def autocast(self) -> contextlib.AbstractContextManager:
        """fp16 autocast when mixed precision is on (the scaler's switch), else nothing."""
        return torch.autocast("cuda", dtype=torch.float16) if self.scaler.is_enabled() else contextlib.nullcontext()


def _build_nets(opts: TrainOptions, device: torch.device) -> _Nets:
    G = build_generator(opts.arch, **opts.g_config).to(device)
    D = PatchDiscriminator(opts.d_width, opts.d_spectral).to(device)
    ema = EMA(G, opts.ema_decay)
    feats = content_network(opts.content_net, opts.content_weights).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=opts.lr, betas=opts.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=opts.lr, betas=opts.betas)
    scaler = grad_scaler(device, opts.amp and device.type == "cuda")
    return _Nets(G, D, ema, feats, opt_g, opt_d, scaler, G, D)


def _restore(nets: _Nets, ckpt: dict, opts: TrainOptions, rng: np.random.Generator, rank: int,
             device: torch.device) -> int:
    """Put a checkpoint's weights, optimizer, scaler and random state back; returns its step."""
    nets.G.load_state_dict(ckpt["params"]); nets.D.load_state_dict(ckpt["params_d"])
    nets.ema.module.load_state_dict(ckpt["params_ema"])
    nets.opt_g.load_state_dict(ckpt["optimizer_g"]); nets.opt_d.load_state_dict(ckpt["optimizer_d"])
    restore_scaler(nets.scaler, ckpt.get("scaler"))
    if rank == 0:
        restore_rng(ckpt["rng"], rng, device)
    else:
        reseed_rank(rng, opts.seed, rank, ckpt["step"])
    return ckpt["step"]


def _run_folder(opts: TrainOptions, run: Path | None, rank: int, distributed: bool) -> Path:
    """The run folder (a new numbered one unless resuming), the same on every rank, with options.json."""
    if run is None:
        run = new_run_dir(opts.out, opts.arch) if rank == 0 else None
        if distributed:  # every rank returns (and may resume) the same run folder
            shared = [str(run) if run is not None else None]
            dist.broadcast_object_list(shared, src=0)
            run = Path(shared[0])
    assert run is not None
    if rank == 0:
        (run / "options.json").write_text(opts.to_json())
    return run


def _g_step(opts: TrainOptions, nets: _Nets, photo: torch.Tensor, target: torch.Tensor, lines: torch.Tensor,
            init: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One generator update with D frozen; returns G(photo) and [loss_g, l_adv, l_con, l_surf, l_flat]."""
    nets.D.requires_grad_(False)
    with nets.autocast():
        if opts.arch == "toon" and opts.target == "toon":  # the toon generator on its own target: colour and outlines apart
            fake, before_ink, ink = nets.g_train(photo, parts=True)
            l_surf = toon_loss(before_ink, ink, target, lines)
        else:
            fake = nets.g_train(photo)
            l_surf = surface_loss(fake, target, lines, opts.line_boost)
        l_con = content_loss(nets.feats, fake, photo)
        l_flat = flatness_loss(fake, photo)
        l_adv = torch.zeros((), device=photo.device) if init else gan_loss(nets.d_train(fake), True, opts.gan_loss)
        loss_g = opts.adv_weight * l_adv + opts.content_weight * l_con + opts.surface_weight * l_surf + opts.flat_weight * l_flat
    nets.opt_g.zero_grad(set_to_none=True)
    nets.scaler.scale(loss_g).backward()
    nets.scaler.step(nets.opt_g)
    nets.ema.update(nets.G)
    return fake, [loss_g, l_adv, l_con, l_surf, l_flat]


def _d_step(opts: TrainOptions, nets: _Nets, data: Data, fake: torch.Tensor,
            device: torch.device) -> tuple[torch.Tensor, tuple[float, float, float]]:
    """One discriminator update: cartoons real; edge-smoothed cartoons and G(p) fake. Returns its loss and
    the mean logits on the three."""
    nets.D.requires_grad_(True)
    cartoon_np, smooth_np = data.cartoons.sample(opts.batch)
    with nets.autocast():
        d_real = nets.d_train(to_tensor(cartoon_np, device))
        d_edge = nets.d_train(to_tensor(smooth_np, device))
        d_fake = nets.d_train(fake.detach())
        loss_d = d_loss(d_real, d_edge, d_fake, opts.gan_loss)
    nets.opt_d.zero_grad(set_to_none=True)
    nets.scaler.scale(loss_d).backward()
    nets.scaler.step(nets.opt_d)
    return loss_d, (d_real.mean().item(), d_edge.mean().item(), d_fake.mean().item())


def _train_step(opts: TrainOptions, nets: _Nets, data: Data, device: torch.device, step: int) -> dict:
    """Train step ``step`` (G, then D after the init phase); returns its row of the loss log."""
    init = step < opts.init_steps
    lr = _lr(opts, step)
    for o in (nets.opt_g, nets.opt_d):
        for group in o.param_groups:
            group["lr"] = lr
    photo_np, target_np, lines_np = data.photos.sample(opts.batch)
    photo, target = to_tensor(photo_np, device), to_tensor(target_np, device)
    lines = to_tensor(lines_np[..., :1], device).add(1.0).mul(0.5)
    fake, g_losses = _g_step(opts, nets, photo, target, lines, init)
    loss_d, d_means = torch.zeros(()), (float("nan"),) * 3
    if not init:
        loss_d, d_means = _d_step(opts, nets, data, fake, device)
    nets.scaler.update()
    loss_g, l_adv, l_con, l_surf, l_flat = (t.item() for t in g_losses)
    losses = [loss_g, l_adv, l_con, l_surf, loss_d.item(), l_flat]
    if not all(np.isfinite(losses)):
        raise VidtoonError(f"training diverged at step {step + 1} (a loss is not finite: {losses})")
    return {"step": step + 1, "phase": "init" if init else "adv", "lr": lr, "loss_g": losses[0],
            "loss_adv": losses[1], "loss_con": losses[2], "loss_surf": losses[3], "loss_d": losses[4],
            "loss_flat": losses[5], "d_real": d_means[0], "d_edge": d_means[1], "d_fake": d_means[2]}


def _checkpoint(run: Path, opts: TrainOptions, nets: _Nets, step: int, rng: np.random.Generator,
                device: torch.device) -> None:
    save_checkpoint(run / "checkpoints" / "latest.pt", arch=opts.arch, config=dict(nets.G.config),
                    params=nets.G.state_dict(), params_ema=nets.ema.module.state_dict(), params_d=nets.D.state_dict(),
                    config_d=dict(nets.D.config), optimizer_g=nets.opt_g.state_dict(),
                    optimizer_d=nets.opt_d.state_dict(), step=step, rng=rng_state(rng, device),
                    scaler=nets.scaler.state_dict(), options=opts.to_json())
    plot_losses(run / "losses.csv", run / "losses.png")


def _train(opts: TrainOptions, device: torch.device, ckpt: dict | None, run: Path | None, rank: int,
           distributed: bool, stop_at: int | None, progress: Callable[[int, int, dict], None] | None,
           log: Callable[[str], None]) -> Path:
    """The body of :func:`train` on one process (``rank``), after the options and the device are settled."""
    if rank != 0:
        log = lambda _m: None  # noqa: E731 (rank 0 speaks for the run)
    rng = np.random.default_rng(opts.seed + rank)
    torch.manual_seed(opts.seed + rank)
    world = dist.get_world_size() if distributed else 1
    data = prepare_data(opts, rng, log, part=(rank, world))
    # everything that can fail for a missing extra (the content network, matplotlib) before the run folder: a
    # run that cannot start leaves no empty numbered folder behind (the next run would take the number after it)
    nets = _build_nets(opts, device)
    if rank == 0 and importlib.util.find_spec("matplotlib") is None:
        raise VidtoonError("vidtoon train needs matplotlib for losses.png (pip install 'vidtoon[train]')")
    if ckpt is None and opts.init_from:  # (a bad --init-from is refused before the run folder, too)
        _init_from(opts.init_from, nets.G, nets.D, nets.ema, log)
    run = _run_folder(opts, run, rank, distributed)
    step = 0
    if ckpt is not None:
        step = _restore(nets, ckpt, opts, rng, rank, device)
        log(f"resumed {run} at step {step}")
    nets.ema.module.to(device)
    if distributed:
        ids = [device.index] if device.type == "cuda" else None
        nets.g_train = nn.parallel.DistributedDataParallel(nets.G, device_ids=ids)
        nets.d_train = nn.parallel.DistributedDataParallel(nets.D, device_ids=ids)
    losslog = LossLog(run / "losses.csv", resume_step=step) if rank == 0 else None
    total = opts.init_steps + opts.steps
    end = total if stop_at is None else min(total, stop_at)

    t0, last_t, last_step = time.time(), time.time(), step
    mid_step = False
    with DeferredInterrupt() as ctrl_c:
        try:
            while step < end:
                mid_step = True
                row = _train_step(opts, nets, data, device, step)
                step, mid_step = row["step"], False
                if step % opts.log_every == 0 or step == end:
                    now = time.time()
                    row.update(it_per_s=(step - last_step) / max(now - last_t, 1e-9), elapsed_s=now - t0)
                    last_t, last_step = now, step
                    if losslog:
                        losslog.append(row)
                if progress and rank == 0:
                    progress(step, total, row)
                if rank == 0 and (step % opts.sample_every == 0 or step == end):
                    write_grid(run / "results" / f"step_{step:06d}.png", nets.ema.module, data.sample_inputs, device)
                if rank == 0 and (step % opts.checkpoint_every == 0 or step == end):
                    _checkpoint(run, opts, nets, step, rng, device)
                ctrl_c.check()  # a Ctrl-C during the step takes effect here, with the step complete
        except KeyboardInterrupt:
            if mid_step:  # a second Ctrl-C cut a step short: its state is half-updated, the last checkpoint stands
                log(f"interrupted during a step: {run} resumes from its last checkpoint (--resume {run})")
                raise
            if rank == 0:  # Ctrl-C saves first, so --resume continues exactly from here
                _checkpoint(run, opts, nets, step, rng, device)
            log(f"interrupted: saved step {step} in {run} (resume with --resume {run})")
            raise
    if distributed:
        dist.barrier()  # every rank returns once rank 0's last checkpoint is written (a resume may follow)
    return run
