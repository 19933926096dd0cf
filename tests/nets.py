"""Tiny networks for the engine and export tests."""
from __future__ import annotations

import torch

from vidtoon.networks import CartoonGANGenerator, FastGenerator, ToonGenerator


def tiny(arch: str, seed: int = 0) -> torch.nn.Module:
    """A few-channel generator with random weights (the fast one's zero last layer perturbed)."""
    torch.manual_seed(seed)
    if arch == "cartoongan":
        net = CartoonGANGenerator(width=4, n_res=1)
    elif arch == "toon":
        net = ToonGenerator(width=8, width_low=8, n_res=1, iters=2)
    else:  # "fast", or "fast-full": with its optional layers (outline refinement, edge-aware flat path)
        full = arch == "fast-full"
        net = FastGenerator(width=8, width_low=8, n_res=1, ink_refine=full, edge_aware=full)
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    return net.eval()
