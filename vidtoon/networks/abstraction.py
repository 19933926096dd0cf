"""Edge-aware abstraction steps shared by the generators (fast's ``edge_aware`` path and toon): 3x3 box
means, edge-aware diffusion and the guided filter's fit, all at 1/4 resolution."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def box3(t: torch.Tensor) -> torch.Tensor:
    """3x3 mean with replicated borders."""
    return F.avg_pool2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), 3, 1)


def diffuse(v: torch.Tensor, guide: torch.Tensor, sigma: torch.Tensor, iters: int,
            barrier: torch.Tensor | None = None) -> torch.Tensor:
    """Edge-aware diffusion of ``v`` (N x C x H x W): ``iters`` steps of averaging with the 4 neighbours,
    weighted by exp(-|guide difference|^2 / 2 sigma^2), so colours merge inside regions and stop at edges.
    ``barrier`` (N x 1 x H x W in [0, 1], optional): where either of two neighbours is on it, their
    conductance drops by that much (borders a colour difference misses: soft, out-of-focus, dark ones)."""
    h, w = guide.shape[-2:]
    gp = F.pad(guide, (1, 1, 1, 1), mode="replicate")
    shifts = ((0, 1), (2, 1), (1, 0), (1, 2))  # up, down, left, right (offsets into the padded map)
    inv = -0.5 / (sigma * sigma)
    weights = [torch.exp(inv * (gp[..., dy:dy + h, dx:dx + w] - guide).pow(2).sum(1, keepdim=True))
               for dy, dx in shifts]
    if barrier is not None:
        bp = F.pad(barrier, (1, 1, 1, 1), mode="replicate")
        weights = [wt * (1.0 - torch.maximum(barrier, bp[..., dy:dy + h, dx:dx + w]))
                   for wt, (dy, dx) in zip(weights, shifts)]
    norm = 1.0 / (1.0 + weights[0] + weights[1] + weights[2] + weights[3])
    for _ in range(iters):
        vp = F.pad(v, (1, 1, 1, 1), mode="replicate")
        acc = v
        for (dy, dx), wt in zip(shifts, weights):
            acc = acc + wt * vp[..., dy:dy + h, dx:dx + w]
        v = acc * norm
    return v


def guided_coefficients(guide: torch.Tensor, target: torch.Tensor,
                        eps: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel linear model ``target ~ a * guide + b`` over 3x3 windows (guided filter, per channel).

    Computed in float32 whatever the input precision: the variance E[g^2] - E[g]^2 of nearly flat windows
    is ~1e-3 and loses most of its digits to cancellation in float16 against an eps of that order.
    """
    g, p = guide.float(), target.float()
    mg, mp = box3(g), box3(p)
    eps = eps.float() if isinstance(eps, torch.Tensor) else eps
    a = (box3(g * p) - mg * mp) / (box3(g * g) - mg * mg + eps)
    b = mp - a * mg
    return a.to(guide.dtype), b.to(guide.dtype)
