"""Padding so that a fully convolutional network accepts any frame size and returns the same size."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class PadToMultiple:
    """Pad NCHW tensors on the bottom/right to a multiple of ``multiple``, and crop back afterwards.

    Reflection keeps the border statistics natural (no dark frame edge in the output); for inputs too small
    to reflect, replication is used. Nothing of the picture is ever cropped away.
    """

    def __init__(self, multiple: int) -> None:
        self.multiple = multiple

    def pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Return the padded tensor and the original (height, width)."""
        h, w = x.shape[-2:]
        ph = (-h) % self.multiple
        pw = (-w) % self.multiple
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x, (h, w)

    @staticmethod
    def crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Crop back to ``size`` = (height, width)."""
        return x[..., : size[0], : size[1]]
