"""Run folders and checkpoints: numbered runs, atomic saves, exact resume, EMA."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from vidtoon.errors import VidtoonError


def new_run_dir(out: str | Path, arch: str) -> Path:
    """Create the next numbered run folder ``out/NNNNN-<arch>`` (never reuses a number)."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in root.iterdir() if (m := re.match(r"(\d{5})-", p.name))]
    run = root / f"{max(numbers, default=-1) + 1:05d}-{arch}"
    run.mkdir()
    (run / "checkpoints").mkdir()
    (run / "results").mkdir()
    return run


class EMA:
    """Exponential moving average of a module's weights (buffers copied as they are)."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for e, p in zip(self.module.parameters(), module.parameters()):
            e.lerp_(p.detach(), 1.0 - self.decay)
        for e, b in zip(self.module.buffers(), module.buffers()):
            e.copy_(b)


def save_checkpoint(path: Path, **state: Any) -> None:
    """Write a checkpoint dict atomically (temp file, then rename): a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".part")
    torch.save(state, str(tmp))
    tmp.replace(path)


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """Everything random a run depends on, for an exact resume."""
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def restore_rng(state: dict[str, Any], rng: np.random.Generator) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])


def load_training_checkpoint(run: Path) -> dict[str, Any]:
    """Load ``run/checkpoints/latest.pt`` (full state: G, D, EMA, optimizers, step, RNG)."""
    path = run / "checkpoints" / "latest.pt"
    if not path.is_file():
        raise VidtoonError(f"{run} has no checkpoint to resume from ({path} is missing)")
    return torch.load(str(path), map_location="cpu", weights_only=False)
