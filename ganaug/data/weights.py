"""Class weights from class counts: used by the GAN loop (class-condition noise grows for rarer
classes) and by the long-tail losses (deferred re-weighting)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def effective_number_weights(counts: Sequence[int] | torch.Tensor, beta: float = 0.9999) -> torch.Tensor:
    """Class weights (1 - beta) / (1 - beta^n_c), normalised to sum to the number of classes
    (Cui et al. 2019), the weights deferred re-weighting switches on late in training."""
    n = torch.as_tensor(counts, dtype=torch.float64).clamp(min=1)
    w = (1 - beta) / (1 - beta ** n)
    return (w / w.sum() * len(n)).float()
