"""A small edge network, trained to reproduce HED (networks/hed.py) cheaply enough for video on a CPU.

HED's VGG16 costs ~10 s per 720p frame on two cores. The student does most of its work at 1/4 resolution
and below (the photo's 4x4 pixels folded into channels, as the toon generator's encoder does: lossless, and
a 1x1 convolution there sees a 4x4 patch), widens its view at 1/8 and 1/16 with depthwise-separable
residual blocks (HED's deep side outputs carry the object contours, its shallow ones the texture), and
refines the fused map at 1/2 resolution with a few channels. Its output is a soft edge probability like
HED's; lines are drawn from it by networks/lines.py (non-maximum suppression at full resolution).
Convolutions, pools, pixel (un)shuffle and bilinear resizes only: it exports to ONNX.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidtoon.networks.fast import UnshuffleConv


class _DSBlock(nn.Module):
    """Residual depthwise-separable block: x + pw(relu(dw(x)))."""

    def __init__(self, ch: int, dilation: int = 1) -> None:
        super().__init__()
        self.dw = nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation, groups=ch)
        self.pw = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw(F.relu(self.dw(x)))


def _up(t: torch.Tensor) -> torch.Tensor:
    return F.interpolate(t, scale_factor=2.0, mode="bilinear", align_corners=False)


class EdgeStudent(nn.Module):
    """Edge probability of an NCHW RGB image in [-1, 1] (sizes divisible by 16), as N x 1 x H x W.

    ``width`` channels at 1/4 resolution, ``width_low`` at 1/8 and 1/16, ``fine`` at 1/2.
    """

    def __init__(self, width: int = 16, width_low: int = 32, fine: int = 8) -> None:
        super().__init__()
        self.config = {"width": width, "width_low": width_low, "fine": fine}
        self.stem = UnshuffleConv(3, width, 4)                     # 4x4 patch -> features at 1/4
        self.b4 = nn.Sequential(_DSBlock(width), _DSBlock(width))
        self.down8 = UnshuffleConv(width, width_low, 2)           # 2x2 unshuffled -> 1/8
        self.b8 = nn.Sequential(_DSBlock(width_low), _DSBlock(width_low, 2))
        self.down16 = UnshuffleConv(width_low, width_low, 2)      # -> 1/16
        self.b16 = nn.Sequential(_DSBlock(width_low), _DSBlock(width_low, 2), _DSBlock(width_low, 4))
        self.up16 = nn.Conv2d(width_low, width_low, 1)
        self.up8 = nn.Conv2d(width_low, width, 1)
        self.side = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in (width, width_low, width_low))
        self.to_fine = nn.Conv2d(width, fine, 1)
        self.fine_in = UnshuffleConv(3, fine, 2)                   # 2x2 unshuffled photo at 1/2
        self.fine_dw = nn.Conv2d(fine, fine, 3, padding=1, groups=fine)
        self.fine_out = nn.Conv2d(fine, 1, 1)
        nn.init.zeros_(self.fine_out.weight)
        nn.init.zeros_(self.fine_out.bias)

    def logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Side logits at 1/4, 1/8, 1/16 and the final logit at 1/2 resolution (deep supervision)."""
        f4 = self.b4(F.relu(self.stem(x)))
        f8 = self.b8(F.relu(self.down8(f4)))
        f16 = self.b16(F.relu(self.down16(f8)))
        f8 = f8 + _up(self.up16(f16))
        f4 = f4 + _up(self.up8(F.relu(f8)))
        s4, s8, s16 = (conv(f) for conv, f in zip(self.side, (f4, f8, f16)))
        coarse = s4 + _up(s8) + _up(_up(s16))                     # the fused logit at 1/4
        g = F.relu(self.fine_in(x) + _up(self.to_fine(F.relu(f4))))
        fine = _up(coarse) + self.fine_out(F.relu(self.fine_dw(g)))
        return [s4, s8, s16, fine]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Edge probability at full resolution (the 1/2-resolution logit, resized bilinearly)."""
        logit = self.logits(x)[-1]
        return torch.sigmoid(F.interpolate(logit, size=x.shape[-2:], mode="bilinear", align_corners=False))

    def borders4(self, x: torch.Tensor) -> torch.Tensor:
        """The edge probability at 1/4 resolution, N x 1 x H/4 x W/4 (the mode filter's barrier): the largest
        of each 2 x 2 block of the 1/2-resolution map, so a thin border survives the halving."""
        return F.max_pool2d(torch.sigmoid(self.logits(x)[-1]), 2)

    def borders_half(self, x: torch.Tensor) -> torch.Tensor:
        """The edge probability at 1/4 resolution of ``x`` (sides divisible by 16), N x 1 x H/4 x W/4, from
        the network run on ``x`` at half size: its 1/2-resolution map is then at 1/4 of ``x``, for a quarter
        of the work (and large frames are seen at about the scale the student was distilled at, 640 px)."""
        half = F.avg_pool2d(x, 2)
        h, w = half.shape[-2:]
        half = F.pad(half, (0, (-w) % 16, 0, (-h) % 16), mode="replicate")
        return torch.sigmoid(self.logits(half)[-1])[..., : h // 2, : w // 2]

    def nearby(self, x: torch.Tensor) -> torch.Tensor:
        """The largest edge probability within ~2 px of each pixel, N x 1 x H x W: a 3 x 3 maximum of the
        1/2-resolution map, resized bilinearly (a 5 x 5 maximum at full resolution cost 3/4 as much as the
        whole network at 720p, for nearly the same map)."""
        near = F.max_pool2d(torch.sigmoid(self.logits(x)[-1]), 3, stride=1, padding=1)
        return F.interpolate(near, size=x.shape[-2:], mode="bilinear", align_corners=False)
