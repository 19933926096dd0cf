"""Network definitions shared by the trainer and the engines (the only place they are defined).

``ARCHS`` maps an architecture name to its generator and discriminator classes; checkpoints record the
name and constructor keywords so that :func:`build_generator` can rebuild them.
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from vidtoon.networks.cartoongan import CartoonGANGenerator, PatchDiscriminator
from vidtoon.networks.fast import FastGenerator
from vidtoon.networks.padding import PadToMultiple
from vidtoon.networks.toon import ToonGenerator

ARCHS: dict[str, type[nn.Module]] = {
    "cartoongan": CartoonGANGenerator,
    "fast": FastGenerator,
    "toon": ToonGenerator,
}

__all__ = [
    "ARCHS",
    "CartoonGANGenerator",
    "FastGenerator",
    "PatchDiscriminator",
    "PadToMultiple",
    "ToonGenerator",
    "apply_controls",
    "build_generator",
    "count_params",
    "count_macs",
]


def build_generator(arch: str, **kwargs: Any) -> nn.Module:
    """Build a generator by architecture name (``cartoongan`` or ``fast``)."""
    from vidtoon.errors import VidtoonError

    try:
        cls = ARCHS[arch]
    except KeyError:
        raise VidtoonError(f"unknown architecture {arch!r} (choose one of: {', '.join(sorted(ARCHS))})") from None
    return cls(**kwargs)


def apply_controls(net: nn.Module, strength: float = 1.0, outline: float = 1.0) -> nn.Module:
    """Set the inference-time controls of a generator: ``strength`` (0 = the photo .. 1 = the full look)
    and ``outline`` (ink multiplier, 0 .. 2). They act inside the network (see ``set_controls`` of the toon
    and fast generators). The paper's generator has no such controls: any other value than the defaults
    is an error for it."""
    from vidtoon.errors import VidtoonError

    setter = getattr(net, "set_controls", None)
    if setter is None:
        if (strength, outline) != (1.0, 1.0):
            raise VidtoonError(f"this model ({type(net).__name__}) has no --strength/--outline controls "
                               "(the toon and fast generators have)")
        return net
    try:
        setter(strength=strength, outline=outline)
    except ValueError as exc:
        raise VidtoonError(str(exc)) from None
    return net


def count_params(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, height: int, width: int) -> int:
    """Multiply-accumulates of one forward pass on a 1x3xHxW input (convolutions and linear layers)."""
    import torch

    total = 0

    def conv_hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.ConvTranspose2d):
            # every input pixel is multiplied by the whole kernel once per output channel
            total += inp[0].numel() // inp[0].shape[0] * mod.out_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        else:
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            total += out.numel() // out.shape[0] * k

    hooks = [m.register_forward_hook(conv_hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        was_training = module.training
        module.eval()
        with torch.no_grad():
            module(torch.zeros(1, 3, height, width))
        module.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return total
