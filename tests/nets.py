"""Tiny networks for the engine and export tests."""
from __future__ import annotations

import torch

from vidtoon.networks import CartoonGANGenerator, FastGenerator


def tiny(arch: str, seed: int = 0) -> torch.nn.Module:
    """A few-channel generator with random weights (the fast one's zero last layer perturbed)."""
    torch.manual_seed(seed)
    net = FastGenerator(width=8, width_low=8, n_res=1) if arch == "fast" else CartoonGANGenerator(width=4, n_res=1)
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    return net.eval()
