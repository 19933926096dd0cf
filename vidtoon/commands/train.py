"""``vidtoon train``: train a CartoonGAN style on a folder of photos and a folder of cartoons."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from vidtoon.errors import VidtoonError


def _g_config(items: tuple[str, ...]) -> dict[str, int]:
    config = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.lstrip("-").isdigit():
            raise click.BadParameter(f"{item!r} is not KEY=INT", param_hint="--g-config")
        config[key] = int(value)
    return config


@click.command("train")
@click.option("--photos", type=click.Path(file_okay=False), help="Folder of real photos.")
@click.option("--cartoons", type=click.Path(file_okay=False), help="Folder of cartoon images.")
@click.option("--arch", type=click.Choice(["fast", "toon", "cartoongan"]), default="fast", show_default=True,
              help="Generator: fast (the recipe of the trained 'classic' model), toon (built-in flattening, "
                   "tones and outlines: the default model's network; training it is experimental, see "
                   "MODEL_CARD.md), or the paper's.")
@click.option("--g-config", multiple=True, metavar="KEY=INT",
              help="Generator size and options, e.g. width=32, edge_aware=1, ink_refine=1 (repeatable).")
@click.option("--out", default="runs", show_default=True, help="Parent folder of numbered run folders.")
@click.option("--init-from", type=click.Path(exists=True), help="Start from this run/checkpoint (fine-tune).")
@click.option("--resume", "resume", type=click.Path(exists=True, file_okay=False), help="Continue this run folder.")
@click.option("--init-steps", type=int, default=1500, show_default=True, help="Initialization phase steps.")
@click.option("--steps", type=int, default=5000, show_default=True, help="Adversarial phase steps.")
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--crop", type=int, default=128, show_default=True, help="Training crop size (px).")
@click.option("--lr", type=float, default=2e-4, show_default=True, help="Adam lr, adversarial phase (G and D).")
@click.option("--init-lr", type=float, default=1e-3, show_default=True, help="G's lr in the initialization phase.")
@click.option("--lr-decay-every", type=int, default=2500, show_default=True, help="Halve the lr every N adversarial steps.")
@click.option("--gan-loss", type=click.Choice(["bce", "lsgan"]), default="lsgan", show_default=True)
@click.option("--content-net", type=click.Choice(["efficientnet-lite0", "hed-vgg16", "vgg19"]),
              default="efficientnet-lite0", show_default=True)
@click.option("--content-weights", type=click.Path(dir_okay=False), help="Local VGG19 weights (for vgg19).")
@click.option("--content-weight", type=float, default=0.02, show_default=True,
              help="w in L_adv + w L_con (the paper's 10 is for VGG19 features; see README).")
@click.option("--surface-weight", type=float, default=50.0, show_default=True,
              help="Weight of the flattened-surface target (0: off).")
@click.option("--target", type=click.Choice(["surface", "toon"]), default="surface", show_default=True,
              help="Pixel target: surface (mean shift + Canny outlines of the photo, the classic model's) or toon "
                   "(mean shift, tones and outlines of the flat image).")
@click.option("--adv-weight", type=float, default=1.0, show_default=True, help="Weight of G's adversarial term.")
@click.option("--flat-weight", type=float, default=5.0, show_default=True,
              help="Weight of the edge-aware flatness prior (0: off). Both 0 = the paper's losses alone.")
@click.option("--d-width", type=int, default=16, show_default=True)
@click.option("--spectral/--no-spectral", default=True, show_default=True, help="Spectral norm on D.")
@click.option("--cartoon-kinds", default="", help="Comma-separated MANIFEST.tsv kinds of cartoons to use.")
@click.option("--holdout", type=float, default=0.0, show_default=True, help="Fraction held out for evaluation.")
@click.option("--sample-every", type=int, default=250, show_default=True)
@click.option("--checkpoint-every", type=int, default=250, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int, default=0, help="CPU threads (0: all).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the resolved options and exit.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no log lines (the final line stays).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def train_cmd(photos, cartoons, arch, g_config, out, init_from, resume, init_steps, steps, batch, crop, lr,
              init_lr, lr_decay_every, gan_loss, content_net, content_weights, content_weight, surface_weight,
              target, adv_weight, flat_weight, d_width, spectral, cartoon_kinds, holdout, sample_every, checkpoint_every, device,
              threads, seed, dry_run, quiet, debug):
    """Train a CartoonGAN generator (initialization phase, then edge-promoting adversarial phase).

    Writes a numbered run folder under --out: options.json, checkpoints/latest.pt, results/ sample grids,
    losses.csv and losses.png. Ctrl-C saves a checkpoint; --resume RUN continues exactly there.
    """
    from vidtoon.trainer.options import TrainOptions

    if not resume and not (photos and cartoons):
        raise VidtoonError("--photos and --cartoons are required (or --resume RUN)")
    opts = TrainOptions(
        photos=photos or "", cartoons=cartoons or "", out=out, arch=arch, g_config=_g_config(g_config),
        d_width=d_width, d_spectral=spectral, gan_loss=gan_loss, content_net=content_net,
        content_weights=content_weights, content_weight=content_weight, surface_weight=surface_weight,
        target=target, adv_weight=adv_weight, flat_weight=flat_weight, crop=crop, batch=batch, init_steps=init_steps, steps=steps, lr=lr, init_lr=init_lr,
        lr_decay_every=lr_decay_every, cartoon_kinds=tuple(k for k in cartoon_kinds.split(",") if k),
        holdout=holdout, sample_every=sample_every, checkpoint_every=checkpoint_every, seed=seed,
        threads=threads, device=device, init_from=init_from,
    )
    if dry_run:
        click.echo(opts.validate().to_json())
        return
    from vidtoon.trainer.loop import train

    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: the other processes train silently
        train(opts, resume=resume, log=lambda m: None)
        return
    if quiet:
        run = train(opts, resume=resume, log=lambda m: None)
    else:
        run = _train_with_progress(opts, resume, train)
    click.echo(f"run finished: {run} (export with: vidtoon export-model {run} -o style.pt)")


def _train_with_progress(opts: Any, resume: str | Path | None, train: Callable[..., Path]) -> Path:
    """Run ``train`` with a progress bar (phase, losses, it/s) and its log lines above it, on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    bar = Progress(TextColumn("[bold]{task.fields[phase]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[losses]}"), TimeRemainingColumn(), console=console)
    task = bar.add_task("train", total=None, phase="prepare", losses="")

    def progress(step: int, total: int, row: dict) -> None:
        if not bar.live.is_started:  # shown from the first step on: a run refused while it prepares shows no bar
            bar.start()
        losses = f"G {row['loss_g']:.3f} con {row['loss_con']:.3f} surf {row['loss_surf']:.4f} flat {row['loss_flat']:.3f}"
        if row["phase"] == "adv":
            losses += f" adv {row['loss_adv']:.3f} D {row['loss_d']:.3f}"
        if row.get("it_per_s"):
            losses += f" {row['it_per_s']:.2f} it/s"
        bar.update(task, completed=step, total=total, phase=row["phase"], losses=losses)

    try:
        return train(opts, resume=resume, progress=progress, log=lambda m: console.print(m))
    finally:
        if bar.live.is_started:
            bar.stop()
