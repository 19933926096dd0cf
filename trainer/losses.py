"""CartoonGAN losses: adversarial (BCE as in the paper, or LSGAN), content (L1 on features), surface (pixel L1)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def gan_loss(logits: torch.Tensor, real: bool, kind: str) -> torch.Tensor:
    """Adversarial loss of discriminator ``logits`` against the label ``real``.

    ``bce``: the paper's log-likelihood (on logits, numerically stable); ``lsgan``: least squares to 1/0.
    """
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return F.mse_loss(logits.float(), target.float())


def content_loss(features: nn.Module, generated: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """L1 between features of G(p) and of p (the photo's features carry no gradient)."""
    with torch.no_grad():
        target = features(photo)
    return F.l1_loss(features(generated), target)


def d_loss(d_real: torch.Tensor, d_edge: torch.Tensor, d_fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Discriminator loss: cartoons are real; edge-smoothed cartoons and generated images are fake."""
    return gan_loss(d_real, True, kind) + gan_loss(d_edge, False, kind) + gan_loss(d_fake, False, kind)


def surface_loss(generated: torch.Tensor, target: torch.Tensor, lines: torch.Tensor, line_boost: float = 4.0) -> torch.Tensor:
    """Squared error to the flattened surface target, outline pixels weighted ``1 + line_boost``.

    Squared, not L1: the target's exact region colours and line positions are only partly predictable
    from the photo, and L1's median-seeking gradient then keeps the photo as it is (measured); the
    squared error moves G to the conditional mean, i.e. flat regions.
    ``lines`` is the outline map in [0, 1], N x 1 x H x W.
    """
    return ((1.0 + line_boost * lines) * (generated - target).pow(2)).mean()


def flatness_loss(generated: torch.Tensor, photo: torch.Tensor, sigma: float = 0.08) -> torch.Tensor:
    """Edge-aware total variation: penalise G's gradients where the (blurred) photo has no strong edge.

    Weight exp(-|grad photo| / sigma) is ~1 inside textured or smooth areas and ~0 across real edges,
    so regions flatten while object borders stay sharp.
    """
    g = F.avg_pool2d(photo.mean(1, keepdim=True), 3, 1, 1)
    wx = torch.exp(-(g[..., :, 1:] - g[..., :, :-1]).abs() / sigma)
    wy = torch.exp(-(g[..., 1:, :] - g[..., :-1, :]).abs() / sigma)
    tx = (generated[..., :, 1:] - generated[..., :, :-1]).abs() * wx
    ty = (generated[..., 1:, :] - generated[..., :-1, :]).abs() * wy
    return tx.mean() + ty.mean()


def toon_loss(before_ink: torch.Tensor, ink: torch.Tensor, target: torch.Tensor, lines: torch.Tensor) -> torch.Tensor:
    """The toon generator's teacher loss, split so that uncertain outlines are not trained away.

    A pixel loss on the finished image is smallest with *no* outlines when the network cannot place a thin
    line exactly where the teacher has it (measured: every such run lost its outlines, MODEL_CARD.md). So:
    colour: L1 between the image before the ink and the target, away from the target's lines; outlines:
    recall (the teacher's line pixels have ink within 1 px) plus precision (no ink farther than 1 px from
    a teacher line), each a mean over its own pixels, so sparse lines weigh as much as the rest.
    ``lines`` is the teacher's outline map in [0, 1], N x 1 x H x W; ``ink`` the network's, same shape.
    """
    near_line = F.max_pool2d(lines, 3, 1, 1)
    away = (1.0 - near_line).detach()
    colour = ((before_ink - target).abs() * away).sum() / (3 * away.sum() + 1.0)
    on = (lines > 0.5).float()
    recall = ((1.0 - F.max_pool2d(ink, 3, 1, 1)) * on).sum() / (on.sum() + 1.0)
    precision = (ink * away).sum() / (away.sum() + 1.0)
    return colour + recall + precision
