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
