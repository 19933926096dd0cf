"""The fast generator: CartoonGAN's idea (encode, residual blocks, decode) at a fraction of the cost.

Design, chosen by measurement on a 2-core CPU (see README, "Networks"):

- The picture is folded losslessly into channels (pixel-unshuffle by 4), so all the convolutional work runs
  at 1/4 and 1/8 of the input resolution, where it is 16-64x cheaper; nothing is thrown away.
- Depthwise-separable residual blocks (MobileNet-style) do the work at 1/8 (receptive field for flat
  regions) and 1/4 (detail), with a U-Net skip between them.
- Back at full resolution a few feature maps (pixel-shuffle) and the input go through one small 3x3
  convolution, so outlines are drawn per pixel rather than per 4x4 block (no blockiness, no checkerboard).
- A global skip: the network predicts a correction to its input, so it starts near identity and training
  spends its steps on the style, not on learning to copy the photo.
- No normalization layers: instance norm makes each frame's output depend on that frame's global
  statistics, a source of video flicker, and costs reductions at inference.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidtoon.networks.abstraction import diffuse, guided_coefficients
from vidtoon.networks.controls import LookControls
from vidtoon.networks.padding import PadToMultiple


class _DWRes(nn.Module):
    """Residual block of two depthwise-separable 3x3 convolutions."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, 1, 1, groups=ch), nn.Conv2d(ch, ch, 1), nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, 1, 1, groups=ch), nn.Conv2d(ch, ch, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def add_feature_layers(net: nn.Module, in_channels: int, width: int, width_low: int, n_res: int) -> None:
    """Give ``net`` the feature network both generators share: ``enc`` (to 1/4 resolution), ``down`` (1/8),
    ``body`` (residual blocks at 1/8), ``up`` and ``dec`` (back to 1/4 with a U-Net skip); see
    :func:`features`. Attribute names are the checkpoints' keys."""
    net.enc = nn.Sequential(UnshuffleConv(in_channels, width, 4), nn.ReLU(inplace=True), _DWRes(width))
    net.down = nn.Sequential(UnshuffleConv(width, width_low, 2), nn.ReLU(inplace=True))
    net.body = nn.Sequential(*[_DWRes(width_low) for _ in range(n_res)])
    net.up = nn.Conv2d(width_low, width * 4, 1)
    net.dec = nn.Sequential(nn.ReLU(inplace=True), _DWRes(width))


def features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The 1/4-resolution features of :func:`add_feature_layers`' network for input ``x``."""
    f4 = net.enc(x)
    f8 = net.body(net.down(f4))
    return net.dec(f4 + F.pixel_shuffle(net.up(f8), 2))


class UnshuffleConv(nn.Conv2d):
    """``pixel_unshuffle(x, r)`` then a 1x1 convolution, computed as one r x r convolution of stride r.

    The same numbers and the same weights (pixel-unshuffle puts input channel c, block position (i, j) at
    channel c*r*r + i*r + j, which is exactly the order of an r x r kernel's (c, i, j) weights), but
    without the 6-D transpose that pixel-unshuffle exports to: that transpose was 12% of the fast
    generator's time in ONNX Runtime (measured).
    """

    def __init__(self, in_channels: int, out_channels: int, r: int) -> None:
        super().__init__(in_channels * r * r, out_channels, 1)
        self.r = r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.reshape(self.out_channels, x.shape[1], self.r, self.r)
        return F.conv2d(x, w, self.bias, stride=self.r)


class EdgeAwareFlat(nn.Module):
    """Flat colour regions with sharp borders, for the fast generator (``edge_aware=True``).

    At 1/4 resolution, the colour image is diffused ``iters`` times between 4-neighbours with conductances
    exp(-|guide difference|^2 / 2 sigma^2), where the guide is the photo's 4x4 block means plus a learned
    correction: colours merge inside regions and stop at edges (a few steps of anisotropic diffusion,
    like the bilateral/mean-shift flattening of cartoon filters). Then it is brought to full resolution
    by a fast guided filter (He et al. 2013; Wu et al. 2018): a local linear model colour ~ A * photo + b,
    fitted in 3x3 windows at 1/4 resolution, upsampled and applied to the full-resolution photo, so region
    borders fall exactly on the photo's edges instead of being blurred over 4 pixels by bilinear upsampling.
    Measured as a fixed filter (no learning) on held-out photos: KID to cartoon art 101 (the photos: 113).
    Parameter-free apart from the guide correction (zero-initialised) and sigma; cheap because everything
    but the final A * photo + b runs at 1/16 of the pixels.
    """

    def __init__(self, width: int, iters: int = 8, sigma: float = 0.1, eps: float = 1e-2) -> None:
        super().__init__()
        self.iters, self.eps = iters, eps
        self.guide = nn.Conv2d(width, 3, 1)
        nn.init.zeros_(self.guide.weight)
        nn.init.zeros_(self.guide.bias)
        self.log_sigma = nn.Parameter(torch.tensor(float(sigma)).log())

    def forward(self, x: torch.Tensor, mean4: torch.Tensor, low: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
        # Everything at 1/4 resolution runs in float32, whatever the network's precision (in float32 the
        # casts are no-ops): in fp16 the guided filter's variances, E[m^2] - E[m]^2, lose about 1e-3 to
        # cancellation against eps = 1e-2, and the 8 diffusion rounds add their own rounding (measured on
        # textured test maps: up to 2.6 uint8 levels from float64, 0.16 this way). At 1/16 of the pixels it
        # costs little; only the full-resolution a * photo + b stays in the network's precision.
        dtype = x.dtype
        g = (mean4 + self.guide(f4)).float()
        mean4, low = mean4.float(), low.float()
        v = diffuse(low, g, self.log_sigma.float().exp(), self.iters)
        a, b = guided_coefficients(mean4, v, self.eps)
        up = lambda t: F.interpolate(t.to(dtype), scale_factor=4.0, mode="bilinear", align_corners=False)  # noqa: E731
        return up(a) * x + up(b)


class FastGenerator(LookControls, nn.Module):
    """Fast CartoonGAN-style generator. NCHW RGB in [-1, 1] in and out, any H and W.

    ``width``: channels at 1/4 resolution; ``width_low``: channels at 1/8; ``n_res``: residual blocks at
    1/8. Down- and up-sampling are lossless space-to-depth / depth-to-space rearrangements (pixel
    unshuffle/shuffle), which cost no arithmetic and, unlike transposed convolutions, leave no checkerboard.

    Output: ``y = (g * x + (1 - g) * up(c) + r) * (1 - k)`` (in [0, 1] light terms for the ink), with,
    all predicted from the 1/4-resolution features, ``g`` a per-pixel gate in [0, 1] (keep the photo's
    detail, or not), ``c`` a colour image at 1/4 resolution (the flat regions) upsampled bilinearly, ``r`` a
    per-pixel colour correction and ``k`` per-pixel ink in [0, 1] (dark outlines). The network also sees
    the photo's gradient magnitude (a fixed Sobel filter), so it knows at full resolution where edges are.
    Measured on a 2-core CPU: a plain residual head (predict minus the texture pixel by pixel through a
    32-channel bottleneck) stayed at identity in training, and without the ink channel no outlines
    appeared; with gate and ink, flat regions and outlines are one number per pixel each.
    Starts close to the identity (g ~ 0.88, c = the photo's 4x4 block means, r = 0, k ~ 0).
    """

    def __init__(self, width: int = 32, width_low: int = 64, n_res: int = 4, ink_refine: bool = False,
                 edge_aware: bool = False) -> None:
        super().__init__()
        self.config = {"width": width, "width_low": width_low, "n_res": n_res}
        # optional parts only appear in the config when on, so older checkpoints keep their exact config
        if ink_refine:
            self.config["ink_refine"] = True
        if edge_aware:
            self.config["edge_aware"] = True
        self.pad = PadToMultiple(8)
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4.0
        self.register_buffer("sobel", torch.stack([sobel, sobel.t()])[:, None], persistent=False)
        add_feature_layers(self, 4, width, width_low, n_res)  # photo + its Sobel edge map
        # per 4x4 block: 16 gate logits, 16 ink logits, 48 colour corrections; and the 1/4-res colour image
        self.out = nn.Conv2d(width, 80, 1)
        self.color = nn.Conv2d(width, 3, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.color.weight)
        nn.init.zeros_(self.color.bias)
        with torch.no_grad():
            self.out.bias.zero_()
            # gate = sigmoid(2) ~ 0.88: close to the identity, yet in the sigmoid's responsive range
            self.out.bias[:16] = 2.0
            self.out.bias[16:32] = -5.0  # ink = sigmoid(-5) ~ 0.007
        # ``ink_refine``: one 3x3 convolution at full resolution over (ink logit, luma, gradient magnitude).
        # The ink predicted per 4x4 block comes from 32 features through a linear map, which blurs line
        # positions; this layer can sharpen them where the photo's gradient peaks (a ridge detector on the
        # gradient magnitude) for 27 multiply-adds per pixel. Zero-initialised: starts as the same function.
        self.ink_refine = nn.Conv2d(3, 1, 3, 1, 1) if ink_refine else None
        if self.ink_refine is not None:
            nn.init.zeros_(self.ink_refine.weight)
            nn.init.zeros_(self.ink_refine.bias)
        # ``edge_aware``: the flat colour image is smoothed inside regions and upsampled along the photo's
        # edges (see EdgeAwareFlat) instead of bilinearly, which blurs every region border over 4 px
        self.edge_aware = EdgeAwareFlat(width) if edge_aware else None
        #: compute the two full-resolution 3x3 stencils (Sobel, ``ink_refine``) as grouped convolutions; the
        #: same numbers, set for ONNX export (why: the comment above _edges)
        self.grouped_stencils = False

    # Why two ways to run the same two 3x3 stencils at full resolution: ONNX Runtime's CPU layout pass
    # (NCHWc) pads a convolution's output to 16 channels, so a 1->2 or 3->1 channel convolution over a 720p
    # frame writes and reorders 16 full planes (measured: 15 of 75 ms per frame). Grouped convolutions with
    # few output channels are left in plain NCHW: as such the default model runs in 62 instead of 75 ms
    # (ONNX Runtime, 720p, 2 cores, outputs equal to 2e-6). PyTorch eager is the other way round (115 ms
    # with plain, 149 ms with grouped convolutions), so the grouped form is used for export only.
    def _edges(self, gray: torch.Tensor) -> torch.Tensor:
        """|Sobel x| + |Sobel y| of the (1-pixel padded) gray image."""
        if self.grouped_stencils:
            return F.conv2d(torch.cat([gray, gray], 1), self.sobel, groups=2).abs().sum(1, keepdim=True)
        return F.conv2d(gray, self.sobel).abs().sum(1, keepdim=True)

    def _refine(self, t: torch.Tensor) -> torch.Tensor:
        """The ``ink_refine`` convolution (3 -> 1 channels, 3x3) of ``t``."""
        conv = self.ink_refine
        assert conv is not None
        if self.grouped_stencils:
            # one 3x3 filter per input channel, then the sum over channels: a 3 -> 1 convolution
            per_channel = F.conv2d(t, conv.weight.reshape(3, 1, 3, 3), None, padding=1, groups=3)
            return per_channel.sum(1, keepdim=True) + conv.bias.view(1, 1, 1, 1)
        return conv(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp, size = self.pad.pad(x)
        gray = F.pad(xp.mean(1, keepdim=True), (1, 1, 1, 1), mode="replicate")
        edges = self._edges(gray)
        f4 = features(self, torch.cat([xp, edges], 1))  # folded 4x losslessly into channels (UnshuffleConv)
        o = F.pixel_shuffle(self.out(f4), 4)
        ink_logit = o[:, 1:2]
        if self.ink_refine is not None:
            ink_logit = ink_logit + self._refine(torch.cat([ink_logit, gray[..., 1:-1, 1:-1], edges], 1))
        gate, ink, corr = torch.sigmoid(o[:, :1]), torch.sigmoid(ink_logit), o[:, 2:]
        # the flat colour image starts as the photo's 4x4 block means and learns a correction
        mean4 = F.avg_pool2d(xp, 4)
        low = mean4 + self.color(f4)
        if self.edge_aware is not None:
            flat = self.edge_aware(xp, mean4, low, f4)
        else:
            flat = F.interpolate(low, scale_factor=4.0, mode="bilinear", align_corners=False)
        s = self.strength
        # a Python branch: the default graph stays exactly as trained (an export with the controls as inputs
        # traces them as tensors, and takes the branch)
        if isinstance(s, torch.Tensor) or s != 1.0 or self.outline != 1.0:
            gate, corr = 1.0 - s * (1.0 - gate), s * corr
            ink = (ink * (s * self.outline)).clamp(max=1.0)
        y = flat + gate * (xp - flat) + corr
        y = (y + 1.0) * (1.0 - ink) - 1.0  # ink darkens towards black
        if not self.training:
            # the API promises [-1, 1]; training sees the unclamped value so gradients never vanish
            y = y.clamp(-1.0, 1.0)
        return self.pad.crop(y, size)
