"""Generator checkpoints: the shipped models and the on-disk format shared with the trainer.

A checkpoint is a ``torch.save``'d dict with at least ``arch`` (a key of ``vidtoon.networks.ARCHS``),
``config`` (constructor keywords) and ``params`` and/or ``params_ema`` (state dicts). Inference loads the
EMA weights when present (BasicSR convention). Trainer checkpoints carry more keys (D, optimizers, step);
``vidtoon export-model`` strips those to a small inference file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from vidtoon.errors import VidtoonError, first_line
from vidtoon.networks import apply_controls, build_generator

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CHECKPOINT_FORMAT = "vidtoon-generator"


def shipped_models() -> dict[str, Path]:
    """Names and paths of the models shipped inside the package."""
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.pt"))}


def resolve_model_path(model: str) -> Path:
    """Turn a shipped model name or a path into an existing checkpoint path, or raise VidtoonError."""
    shipped = shipped_models()
    if model in shipped:
        return shipped[model]
    path = Path(model).expanduser()
    if path.is_file():
        return path
    if model == "default":
        raise VidtoonError("the default model is not shipped in this build (pass --model PATH to a checkpoint)")
    names = ", ".join(shipped) or "none"
    raise VidtoonError(f"model {model!r} is neither a shipped model ({names}) nor an existing file")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint dict safely (``weights_only``), with a clear error for anything else."""
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise VidtoonError(f"cannot read model {path} (not a checkpoint, or damaged: {first_line(exc)})") from exc
    if not isinstance(ckpt, dict) or "arch" not in ckpt or not ({"params", "params_ema"} & ckpt.keys()):
        raise VidtoonError(f"{path} is not a vidtoon generator checkpoint (no arch/params)")
    return ckpt


def generator_from_checkpoint(ckpt: dict[str, Any], ema: bool = True) -> nn.Module:
    """Build the generator a checkpoint describes and load its (EMA, when present) weights."""
    net = build_generator(ckpt["arch"], **ckpt.get("config", {}))
    key = "params_ema" if ema and ckpt.get("params_ema") is not None else "params"
    try:
        net.load_state_dict(ckpt[key])
    except RuntimeError as exc:
        # torch lists every mismatched tensor over many lines; the user needs the gist on one
        detail = str(exc).strip().splitlines()[0].rstrip(":. ")
        raise VidtoonError(f"checkpoint weights do not match architecture {ckpt['arch']!r} ({detail}; "
                           "was it made by another vidtoon version?)") from exc
    return net


def export_generator(net: nn.Module, arch: str, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write a small inference checkpoint of ``net`` (weights stored as ``params_ema``)."""
    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "config": dict(getattr(net, "config", {})),
        "params_ema": state,
        "meta": dict(meta or {}),
    }
    tmp = path.with_name(path.name + ".part")
    torch.save(payload, str(tmp))
    tmp.replace(path)
    return path


def load_generator(model: str = "default", device: str = "cpu", strength: float = 1.0,
                   outline: float = 1.0) -> nn.Module:
    """Load a shipped model or checkpoint as an eval-mode generator on ``device``, with its inference-time
    controls set (:func:`vidtoon.networks.apply_controls`)."""
    ckpt = read_checkpoint(resolve_model_path(model))
    net = apply_controls(generator_from_checkpoint(ckpt), strength, outline)
    net.eval().requires_grad_(False)
    try:
        return net.to(torch.device(device))
    except (RuntimeError, AssertionError) as exc:
        raise VidtoonError(f"device {device!r} is not available: {exc}") from exc
