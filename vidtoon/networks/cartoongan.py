"""The CartoonGAN generator and discriminator of Chen, Lai and Liu (CVPR 2018), as in the paper.

Normalization: the paper writes "BN"; the public ports that produced the released CartoonGAN weights
(Yijunmaverick/CartoonGAN-Test-Pytorch-Torch and its descendants) use instance normalization and
reflection padding, which also makes the output independent of batch composition at inference. We follow
the ports: instance norm (affine) everywhere the paper has a norm, reflection padding on the 7x7 and 3x3
convolutions.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from vidtoon.networks.padding import PadToMultiple


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride))


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(ch, ch, 3), nn.InstanceNorm2d(ch, affine=True), nn.ReLU(inplace=True),
            _conv(ch, ch, 3), nn.InstanceNorm2d(ch, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CartoonGANGenerator(nn.Module):
    """Paper generator: k7n64 -> two down blocks (128, 256) -> 8 residual blocks -> two up blocks -> k7n3, tanh.

    ``width`` scales every channel count (64 in the paper; tests use a few channels).
    Input and output: NCHW RGB in [-1, 1], any H and W (padded to a multiple of 4 and cropped back).
    """

    def __init__(self, width: int = 64, n_res: int = 8) -> None:
        super().__init__()
        c1, c2, c3 = width, width * 2, width * 4
        self.config = {"width": width, "n_res": n_res}
        self.pad = PadToMultiple(4)
        self.net = nn.Sequential(
            _conv(3, c1, 7), nn.InstanceNorm2d(c1, affine=True), nn.ReLU(inplace=True),
            # down block 1: k3n128s2, k3n128s1, norm, relu
            _conv(c1, c2, 3, 2), _conv(c2, c2, 3), nn.InstanceNorm2d(c2, affine=True), nn.ReLU(inplace=True),
            # down block 2: k3n256s2, k3n256s1, norm, relu
            _conv(c2, c3, 3, 2), _conv(c3, c3, 3), nn.InstanceNorm2d(c3, affine=True), nn.ReLU(inplace=True),
            *[_ResBlock(c3) for _ in range(n_res)],
            # up block 1: k3n128 s1/2 (transposed), k3n128s1, norm, relu
            nn.ConvTranspose2d(c3, c2, 3, 2, 1, output_padding=1), _conv(c2, c2, 3),
            nn.InstanceNorm2d(c2, affine=True), nn.ReLU(inplace=True),
            # up block 2: k3n64 s1/2, k3n64s1, norm, relu
            nn.ConvTranspose2d(c2, c1, 3, 2, 1, output_padding=1), _conv(c1, c1, 3),
            nn.InstanceNorm2d(c1, affine=True), nn.ReLU(inplace=True),
            _conv(c1, 3, 7), nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, size = self.pad.pad(x)
        return self.pad.crop(self.net(x), size)


class PatchDiscriminator(nn.Module):
    """Paper discriminator (k3n32 -> two strided blocks -> k3n256 -> k3n1), a patch classifier at 1/4 size.

    ``width`` is the first layer's channels (32 in the paper). ``spectral`` wraps every conv in spectral
    normalization, a weaker, better-behaved D for short CPU runs (off by default, as in the paper).
    Returns logits (no sigmoid) so that BCE-with-logits and LSGAN both apply.
    """

    def __init__(self, width: int = 32, spectral: bool = False) -> None:
        super().__init__()
        self.config = {"width": width, "spectral": spectral}
        sn = nn.utils.spectral_norm if spectral else (lambda m: m)
        c1, c2, c3, c4 = width, width * 2, width * 4, width * 8

        def conv(cin: int, cout: int, stride: int = 1) -> nn.Module:
            return sn(nn.Conv2d(cin, cout, 3, stride, 1))

        def norm(c: int) -> nn.Module:
            # spectral norm and instance norm fight each other; SN-D goes without a norm
            return nn.Identity() if spectral else nn.InstanceNorm2d(c, affine=True)

        act = lambda: nn.LeakyReLU(0.2, inplace=True)  # noqa: E731
        self.net = nn.Sequential(
            conv(3, c1), act(),
            conv(c1, c2, 2), act(), conv(c2, c3), norm(c3), act(),
            conv(c3, c3, 2), act(), conv(c3, c4), norm(c4), act(),
            conv(c4, c4), norm(c4), act(),
            conv(c4, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
