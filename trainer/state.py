"""Run folders and checkpoints: numbered runs, atomic saves, exact resume, EMA."""
from __future__ import annotations

import copy
import re
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from vidtoon.errors import VidtoonError
from vidtoon.fileio import save_torch


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
    save_torch(path, state)


def rng_state(rng: np.random.Generator, device: torch.device | None = None) -> dict[str, Any]:
    """Everything random a run depends on, for an exact resume (with the CUDA generator of ``device``)."""
    state = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], rng: np.random.Generator, device: torch.device | None = None) -> None:
    """Put back what :func:`rng_state` saved (the CUDA state only onto a CUDA device)."""
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def reseed_rank(rng: np.random.Generator, seed: int, rank: int, step: int) -> None:
    """Fresh random streams for process ``rank`` of a resumed multi-process run, derived from (seed, rank, step).

    The checkpoint holds rank 0's streams only (rank 0 writes): restored on every rank, all ranks would
    draw the same crops. Rank 0 restores its own exactly; the others start new streams of their own.
    """
    seq = np.random.SeedSequence([seed, rank, step])
    rng.bit_generator.state = np.random.default_rng(seq).bit_generator.state
    torch.manual_seed(int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))  # seeds CUDA devices too


def restore_scaler(scaler: torch.amp.GradScaler, state: dict[str, Any] | None) -> None:
    """Restore a mixed-precision GradScaler (its scale and growth tracker) from a checkpoint's ``scaler``.

    Without it a resume starts again at the initial scale (65536) and skips steps to find the scale once
    more. A checkpoint made without AMP holds an empty state; a scaler that is off ignores the state.
    """
    if state and scaler.is_enabled():
        scaler.load_state_dict(state)


def load_training_checkpoint(run: Path, purpose: str = "to resume from") -> dict[str, Any]:
    """Load ``run/checkpoints/latest.pt`` (full state: G, D, EMA, optimizers, step, RNG); ``purpose`` words the
    error when it is missing ("to resume from", "to export")."""
    path = run / "checkpoints" / "latest.pt"
    if not path.is_file():
        raise VidtoonError(f"{run} has no checkpoint {purpose} ({path} is missing: the run stopped before "
                           "its first checkpoint)")
    ckpt = read_checkpoint_file(path)
    missing = [k for k in ("params", "params_d", "optimizer_g", "optimizer_d", "step", "rng") if k not in ckpt]
    if missing:
        raise VidtoonError(f"{path} is not a training checkpoint (no {', '.join(missing)}): nothing {purpose}")
    return ckpt


def read_checkpoint_file(path: Path) -> dict[str, Any]:
    """A checkpoint file: a training run's ``latest.pt`` or a model written by ``export-model``, with one plain
    error for a file that is neither (empty, truncated, not made by torch, or another torch file)."""
    try:
        # (not weights_only: a training checkpoint holds the random generators' states, as Python objects)
        ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types (EOFError, pickle errors, zip errors) for a bad file
        raise VidtoonError(f"{path} is not a vidtoon checkpoint, or it is damaged") from exc
    if not isinstance(ckpt, dict) or "arch" not in ckpt or not ({"params", "params_ema"} & ckpt.keys()):
        raise VidtoonError(f"{path} is not a vidtoon generator checkpoint (no arch and weights)")
    return ckpt


class DeferredInterrupt:
    """Within the block, Ctrl-C (SIGINT) takes effect at the next :meth:`check` instead of where it lands, so a
    training step is never cut in half (its saved checkpoint would hold a half-updated state, and a resume
    would not continue exactly); a second Ctrl-C interrupts at once. Outside the main thread it does nothing
    (Python delivers signals to the main thread only)."""

    def __init__(self) -> None:
        self.pending = False
        self._before: Any = None

    def __enter__(self) -> "DeferredInterrupt":
        # (a process started with SIGINT ignored, as a background job of a script is, keeps ignoring it)
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._before = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._before is not None:
            signal.signal(signal.SIGINT, self._before)
            self._before = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed since the block began."""
        if self.pending:
            raise KeyboardInterrupt
