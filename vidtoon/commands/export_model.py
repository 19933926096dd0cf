"""``vidtoon export-model``: a training run -> a small checkpoint for ``--model``."""
from __future__ import annotations

import os

import click


@click.command("export-model")
@click.argument("run", type=click.Path(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Checkpoint to write (.pt; its folder is created if missing), or a folder to write RUN.pt in.")
@click.option("--no-ema", is_flag=True, help="Export the raw generator weights instead of their EMA.")
@click.option("--overwrite", is_flag=True, help="Replace the output if it exists.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def export_model_cmd(run: str, output: str, no_ema: bool, overwrite: bool, debug: bool) -> None:
    """Write the generator of training RUN (folder or checkpoint) as a small inference checkpoint."""
    from pathlib import Path

    from vidtoon.errors import VidtoonError
    from vidtoon.fileio import check_creatable, check_replaceable
    from vidtoon.trainer.export import export_run

    out = Path(output)
    if out.is_dir() or output.endswith(("/", os.sep)):  # a folder: the default name in it, as every command
        out = out / f"{Path(run).resolve().stem}.pt"
    if out.suffix.lower() != ".pt":  # --model judges a file by its name (an .onnx is the engines' export)
        raise VidtoonError(f"-o {output}: a model file's name ends in .pt (or give a folder)")
    check_replaceable(out, overwrite)
    check_creatable(out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    path = export_run(run, out, ema=not no_ema)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB); use it with --model {path}")
