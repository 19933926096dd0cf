"""``vidtoon export-model``: a training run -> a small checkpoint for ``--model``."""
from __future__ import annotations

import click


@click.command("export-model")
@click.argument("run", type=click.Path(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write (.pt).")
@click.option("--no-ema", is_flag=True, help="Export the raw generator weights instead of their EMA.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def export_model_cmd(run: str, output: str, no_ema: bool, debug: bool) -> None:
    """Write the generator of training RUN (folder or checkpoint) as a small inference checkpoint."""
    from vidtoon.trainer.export import export_run

    path = export_run(run, output, ema=not no_ema)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB); use it with --model {path}")
