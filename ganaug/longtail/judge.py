"""The judge that filters generated images: a classifier trained on the real long-tailed data
with a balanced loss, so that it does not call a rare class's images the common class next to it
(Gowal et al. 2021 and DiffuLT filter generated data the same way)."""

from __future__ import annotations

import torch

from ..eval.classifier import FitConfig, SmallCNN, fit_classifier
from .losses import log_prior, logit_adjusted_loss


def fit_judge(images: torch.Tensor, labels: torch.Tensor, num_classes: int, config: FitConfig | None = None,
              *, device: str | torch.device = "cpu", progress: bool = False) -> SmallCNN:
    """A :class:`~ganaug.eval.classifier.SmallCNN` trained on real uint8 images with the Balanced
    Softmax loss (default: 10 epochs). Pass it as ``judge=`` to :class:`SyntheticMix`."""
    config = config or FitConfig(epochs=10)
    prior = log_prior(torch.bincount(labels, minlength=num_classes))
    return fit_classifier(images, labels, num_classes, config, device=device, progress=progress, desc="judge",
                          loss_fn=lambda logits, y, w, step: logit_adjusted_loss(logits, y, prior))
