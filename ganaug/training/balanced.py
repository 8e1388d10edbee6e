"""Losses and logit corrections for long-tailed classification.

Every function takes the training class counts; none needs the test distribution, which is
assumed balanced (the aim is balanced accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..data.weights import effective_number_weights  # noqa: F401  (re-exported)
from ..errors import GanaugError


def log_prior(counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """log(n_c / N) per class. A class with no image counts as one, so its log prior stays finite."""
    n = torch.as_tensor(counts, dtype=torch.float64).clamp(min=1)
    if n.dim() != 1:
        raise GanaugError(f"class counts must be a flat list, one count per class; got shape {tuple(n.shape)}.")
    return (n / n.sum()).log().float()


def logit_adjusted_loss(logits: torch.Tensor, target: torch.Tensor, log_prior: torch.Tensor, tau: float = 1.0,
                        weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy on ``logits + tau * log_prior``, the logit-adjusted loss of Menon et al. (2021).

    At ``tau = 1`` it is exactly the Balanced Softmax loss of Ren et al. (2020). ``weight`` is an
    optional per-sample loss weight (generated images below 1); the mean is over the batch.
    """
    loss = F.cross_entropy(logits + tau * log_prior.to(logits.device, logits.dtype), target, reduction="none")
    if weight is not None:
        loss = loss * weight.to(loss.device, loss.dtype)
    return loss.mean()


def adjust_logits(logits: torch.Tensor, log_prior: torch.Tensor, tau: float) -> torch.Tensor:
    """Post-hoc logit adjustment (Menon et al. 2021): subtract ``tau * log_prior`` at prediction time."""
    return logits - tau * log_prior.to(logits.device, logits.dtype)


def balanced_accuracy(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[float, list[float]]:
    """(mean of per-class recalls over the classes present, per-class recalls; NaN where absent)."""
    per = [float((pred[labels == c] == c).float().mean()) if bool((labels == c).any()) else float("nan")
           for c in range(num_classes)]
    valid = [p for p in per if p == p]
    return (sum(valid) / len(valid) if valid else float("nan")), per


def choose_tau(logits: torch.Tensor, labels: torch.Tensor, log_prior: torch.Tensor,
               taus: Sequence[float] = tuple(t / 4 for t in range(13))) -> tuple[float, float]:
    """The ``tau`` of post-hoc adjustment with the best balanced accuracy on ``(logits, labels)``,
    which must be validation data, never test. Ties go to the smaller tau. Returns (tau, accuracy)."""
    if len(labels) == 0:
        raise GanaugError("choosing tau needs validation images; the validation split is empty.")
    k = logits.shape[1]
    best = max(((balanced_accuracy(adjust_logits(logits, log_prior, t).argmax(1), labels, k)[0], -t)
                for t in taus))
    return -best[1], best[0]
