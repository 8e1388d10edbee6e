"""Which generated images a classifier trains on, seen through a judge (a classifier of the real data).

Two ideas from the long-tail literature, as plain tensor functions that :class:`SyntheticMix` uses:

- **The band** (DiffuLT, Shao et al. 2024): in the judge's penultimate features each class's real
  images define a prototype (the mean of their unit-length features) and a distribution of cosine
  distances to it. A generated image whose distance lies beyond a high quantile of that
  distribution is out of distribution and hurts; one nearer than a low quantile is deep inside it
  and teaches little; the band between keeps the "approximately in distribution" images, which
  are slightly off the real data. The judge's confidence plays no part, so images it is unsure of
  stay (a confidence gate keeps only what it is already sure of).
- **Hard samples** (feedback-guided synthesis, Askari-Hemmat et al. 2024): over-generate and keep,
  among the images a filter let through, those with the highest loss (or entropy) under the judge.
"""

from __future__ import annotations

import torch

from ..errors import GanaugError
from ..models.features import (BAND_MIN_IMAGES, BEYOND, IN_BAND, INSIDE, ClassBands, head_input,  # noqa: F401
                               penultimate)  # (re-exported)

SELECTIONS = ("random", "loss", "entropy")


def hardness(probs: torch.Tensor, labels: torch.Tensor, how: str) -> torch.Tensor:
    """How much the judge struggles with each image: ``loss`` (-log p of its intended class) or
    ``entropy`` (of its class distribution)."""
    p = probs.double().clamp(min=1e-12)
    if how == "loss":
        return -p[torch.arange(len(labels)), labels].log()
    if how == "entropy":
        return -(p * p.log()).sum(1)
    raise GanaugError(f"hardness must be 'loss' or 'entropy', got {how!r}.")


def select_per_class(labels: torch.Tensor, eligible: torch.Tensor, wanted: list[int], how: str,
                     probs: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean mask (N,) choosing, in each class ``c``, up to ``wanted[c]`` eligible images:
    the first ones (``random``: generated images come in latent-seed order, which is random) or
    the hardest under the judge (``loss``, ``entropy``; needs ``probs``)."""
    if how not in SELECTIONS:
        raise GanaugError(f"select must be one of {SELECTIONS}, got {how!r}.")
    chosen = torch.zeros(len(labels), dtype=torch.bool)
    score = None if how == "random" else hardness(probs, labels, how)
    for c, n in enumerate(wanted):
        idx = torch.nonzero(eligible & (labels == c)).flatten()
        if score is not None and len(idx) > n:
            idx = idx[torch.argsort(score[idx], descending=True, stable=True)]
        chosen[idx[:n]] = True
    return chosen
