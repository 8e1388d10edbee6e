"""The judge that filters generated images: a classifier trained on the real long-tailed data
with a balanced loss, so that it does not call a rare class's images the common class next to it
(Gowal et al. 2021 and DiffuLT filter generated data the same way)."""

from __future__ import annotations

import dataclasses

import torch

from ..eval.classifier import FitConfig, SmallCNN, fit_classifier


def fit_judge(images: torch.Tensor, labels: torch.Tensor, num_classes: int, config: FitConfig | None = None,
              *, device: str | torch.device = "cpu", progress: bool = False) -> SmallCNN:
    """A :class:`~ganaug.eval.classifier.SmallCNN` trained on real uint8 images with the Balanced
    Softmax loss (default: 10 epochs). Pass it as ``judge=`` to :class:`SyntheticMix`."""
    config = dataclasses.replace(config or FitConfig(epochs=10), balanced=True)
    return fit_classifier(images, labels, num_classes, config, device=device, progress=progress, desc="judge")
