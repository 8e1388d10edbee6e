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
from torch import nn

from ..errors import GanaugError
from ..pixels import uint8_to_model

INSIDE, IN_BAND, BEYOND = 0, 1, 2
SELECTIONS = ("random", "loss", "entropy")


@torch.no_grad()
def penultimate(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(features float32 (N, D), logits float32 (N, K)) of uint8 images: the features are the input
    of the model's last ``nn.Linear``, so any classifier with a linear head works (no ``features``
    method needed). Runs in eval mode on the model's device; the mode is restored."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise GanaugError("the judge has no nn.Linear layer, so it has no penultimate features for the band "
                          "filter; use a classifier with a linear head (ganaug.longtail.fit_judge gives one).")
    captured: list[torch.Tensor] = []
    hook = heads[-1].register_forward_hook(lambda m, inputs, out: captured.append(inputs[0].flatten(1).float().cpu()))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        logits = [model(uint8_to_model(x).to(device)).float().cpu() for x in images.split(batch_size)]
    finally:
        hook.remove()
        model.train(was_training)
    if len(captured) != len(logits):
        raise GanaugError("the judge's last nn.Linear ran more or less than once per batch; the band filter "
                          "needs the linear head to be the model's last layer.")
    if not logits:
        return torch.zeros(0, heads[-1].in_features), torch.zeros(0, heads[-1].out_features)
    return torch.cat(captured), torch.cat(logits)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.double(), dim=1)


class ClassBands:
    """Per-class prototypes and band edges from real images' judge features.

    ``low`` and ``high`` are quantiles of each class's real distances (cosine distance to the class
    prototype): a distance below the ``low`` quantile is ``INSIDE``, above the ``high`` quantile
    ``BEYOND``, else ``IN_BAND``. ``low=0`` puts nothing inside; ``high=1`` keeps up to the
    farthest real image.
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, num_classes: int, low: float, high: float):
        if not 0 <= low < high <= 1:
            raise GanaugError(f"band quantiles must satisfy 0 <= low < high <= 1, got {low} and {high}.")
        counts = torch.bincount(labels, minlength=num_classes)
        if (counts == 0).any():
            raise GanaugError(f"the band needs real images of every class; classes "
                              f"{torch.nonzero(counts == 0).flatten().tolist()} have none.")
        f = _unit(features)
        self.prototypes = _unit(torch.stack([f[labels == c].mean(0) for c in range(num_classes)]))
        real = self.distance(features, labels)
        self.inner = torch.stack([torch.quantile(real[labels == c], low) if low > 0 else torch.tensor(-1.0).double()
                                  for c in range(num_classes)])
        self.outer = torch.stack([torch.quantile(real[labels == c], high) for c in range(num_classes)])

    def distance(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cosine distance (N,) of each feature vector to its class's prototype."""
        return 1 - (_unit(features) * self.prototypes[labels]).sum(1)

    def position(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``INSIDE``, ``IN_BAND`` or ``BEYOND`` (N,) for each image."""
        d = self.distance(features, labels)
        pos = torch.full((len(d),), IN_BAND, dtype=torch.int64)
        pos[d < self.inner[labels]] = INSIDE
        pos[d > self.outer[labels]] = BEYOND
        return pos


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
