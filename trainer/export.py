"""Turn a training run into a small inference checkpoint for ``--model`` / ``load_generator``."""
from __future__ import annotations

import json
from pathlib import Path

from vidtoon.trainer.state import load_training_checkpoint, read_checkpoint_file
from vidtoon.models import export_generator, generator_from_checkpoint
from vidtoon.errors import VidtoonError


def export_run(run: str | Path, output: str | Path, ema: bool = True) -> Path:
    """Write the run's (EMA) generator to ``output``; ``run`` is a run folder or a checkpoint file."""
    run = Path(run)
    if run.is_file():
        ckpt = read_checkpoint_file(run)
    elif run.is_dir():
        ckpt = load_training_checkpoint(run, "to export")
    else:
        raise VidtoonError(f"{run} is neither a run folder nor a checkpoint")
    net = generator_from_checkpoint(ckpt, ema=ema)
    options = json.loads(ckpt["options"]) if isinstance(ckpt.get("options"), str) else {}
    meta = {"step": ckpt.get("step"), "source": str(run), "content_net": options.get("content_net"),
            "gan_loss": options.get("gan_loss")}
    return export_generator(net, ckpt["arch"], output, meta=meta)
