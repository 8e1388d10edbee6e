"""GAN losses and regularisers. Logits in, scalar losses out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss: hinge (Lim & Ye 2017) or non-saturating logistic (Goodfellow 2014)."""
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return -fake.mean()
    return F.softplus(-fake).mean()


def lecam_penalty(real: torch.Tensor, fake: torch.Tensor, ema_real: float, ema_fake: float) -> torch.Tensor:
    """LeCam regulariser of D (Tseng et al. 2021, arXiv 2104.03310): keeps D's outputs on real
    images from rising above its moving average on fakes, and its outputs on fakes from falling
    below its moving average on reals, which bounds how far D can overfit a small training set."""
    return F.relu(real - ema_fake).pow(2).mean() + F.relu(ema_real - fake).pow(2).mean()


def conditioning_strength(step: int, start: int, end: int) -> float:
    """The transitional-cGAN ramp: 0 before ``start``, rising linearly to 1 at ``end`` (1 when off)."""
    if end <= 0:
        return 1.0
    return min(1.0, max(0.0, (step - start) / max(1, end - start)))


def feature_matching(real_feat: torch.Tensor, fake_feat: torch.Tensor) -> torch.Tensor:
    """Squared distance between the mean D features of real and fake (Salimans et al. 2016)."""
    return (real_feat.mean(0) - fake_feat.mean(0)).pow(2).mean()


def orthogonal_penalty(model: nn.Module) -> torch.Tensor:
    """BigGAN's orthogonal regularisation: ||W W^T * (1 - I)||_F^2 over G's weight matrices.

    Only the off-diagonal terms are penalised, so filter norms stay free. It is applied to the
    unnormalised weights (``original``) of spectrally normalised layers.
    """
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, p in model.named_parameters():
        if p.dim() < 2 or "shared" in name or name.endswith(("gain.weight", "bias.weight")):
            continue
        w = p.flatten(1)
        gram = w @ w.t()
        total = total + (gram * (1 - torch.eye(gram.shape[0], device=w.device))).pow(2).sum()
    return total
