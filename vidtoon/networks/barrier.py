"""The object borders a learned edge network sees, as the barrier of the toon generator's mode filter
(``ToonGenerator(mode_barrier=...)``: colours are not merged across them; networks/modes.py, mode_filter)."""
from __future__ import annotations

import torch
import torch.nn as nn

from vidtoon.networks.modes import _corner as _first_pixel, _uses


def learned_borders(edges: nn.Module, exact: torch.Tensor, scale: torch.Tensor, half: bool = False) -> torch.Tensor:
    """The edge probability of the padded frame ``exact`` (float32 on its exact levels, sides divisible by 16)
    at 1/4 resolution, N x 1 x H/4 x W/4, from ``edges`` (:class:`~vidtoon.networks.edges.EdgeStudent`).

    ``half``:
    frames from 660 lines up (``scale``: the frame's, :func:`~vidtoon.networks.modes.frame_scale`) are seen at
    half size (a quarter of the work at 720p and 1080p, and about the 640-px scale the student was distilled
    at); an exported graph reads the band from its input's shape, as the outlines' (modes._uses)."""
    if not half:
        return edges.borders4(exact)
    mix = (scale - 1.2).clamp(0.0, 1.0)
    if torch.compiler.is_compiling():  # the dynamo exporter: symbolic shapes, both sides, then chosen
        return torch.where(mix < 1.0, edges.borders4(exact), edges.borders_half(exact))
    full_used = _uses(mix)[0]
    if isinstance(full_used, bool):
        return edges.borders4(exact) if full_used else edges.borders_half(exact)
    # a traced graph: the unused side sees a small corner and gives one pixel (modes._corner), times 0
    half_used = 1 - full_used
    a = _first_pixel(edges.borders4(_corner_of(exact, full_used, 16)), full_used)
    b = _first_pixel(edges.borders_half(_corner_of(exact, half_used, 32)), half_used)
    return a * full_used + b * half_used


def _corner_of(t: torch.Tensor, used: torch.Tensor, size: int) -> torch.Tensor:
    """``t`` where ``used`` (a traced 0-d 1), else (0) its top-left ``size`` x ``size`` corner: the smallest
    frame the edge network takes (an unused side of a traced graph costs that much)."""
    h, w = t.shape[-2], t.shape[-1]
    return t[..., : used * (h - size) + size, : used * (w - size) + size]
