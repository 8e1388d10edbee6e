"""A classifier's penultimate features, and per-class bands in them.

Read by two layers: the generator's guidance during training (``training.guide``) and the
generated bank's band filter (``longtail``). Any classifier whose last ``nn.Linear`` is its head
works; the features are that layer's input.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import GanaugError
from ..pixels import uint8_to_model

INSIDE, IN_BAND, BEYOND = 0, 1, 2
def head_input(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D), logits (N, K)) of float images ``x``, the features being the input of the
    model's last ``nn.Linear``; differentiable (a generator's loss can use it)."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise GanaugError("the classifier has no nn.Linear layer, so it has no penultimate features; use a "
                          "classifier with a linear head (ganaug.longtail.fit_judge gives one).")
    captured: list[torch.Tensor] = []
    hook = heads[-1].register_forward_hook(lambda m, inputs, out: captured.append(inputs[0].flatten(1)))
    try:
        logits = model(x)
    finally:
        hook.remove()
    if len(captured) != 1:
        raise GanaugError("the classifier's last nn.Linear ran more or less than once per forward pass; "
                          "penultimate features need the linear head to be the model's last layer.")
    return captured[0], logits


@torch.no_grad()
def penultimate(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(features float32 (N, D), logits float32 (N, K)) of uint8 images: the features are the input
    of the model's last ``nn.Linear``, so any classifier with a linear head works (no ``features``
    method needed). Runs in eval mode on the model's device; the mode is restored."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    feats, logits = [], []
    try:
        for x in images.split(batch_size):
            f, out = head_input(model, uint8_to_model(x).to(device))
            feats.append(f.float().cpu())
            logits.append(out.float().cpu())
    finally:
        model.train(was_training)
    if not logits:
        head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        return torch.zeros(0, head.in_features), torch.zeros(0, head.out_features)
    return torch.cat(feats), torch.cat(logits)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.double(), dim=1)


BAND_MIN_IMAGES = 3  # real images a class needs for a band of its own


class ClassBands:
    """Per-class prototypes and band edges from real images' judge features.

    ``low`` and ``high`` are quantiles of each class's real distances (cosine distance to the class
    prototype): a distance below the ``low`` quantile is ``INSIDE``, above the ``high`` quantile
    ``BEYOND``, else ``IN_BAND``. ``low=0`` puts nothing inside; ``high=1`` keeps up to the
    farthest real image. A class with fewer than ``BAND_MIN_IMAGES`` real images takes its edges
    from the other classes' distances pooled (``pooled_classes``).
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
        # one or two images say nothing about a class's spread (one sits on its own prototype, two at
        # the same distance): such a class takes the edges of every better-known class's distances pooled
        # (cosine distances of unit features: one scale for all classes)
        known = counts[labels] >= BAND_MIN_IMAGES
        pooled = real[known] if known.any() else real
        self.pooled_classes = [c for c in range(num_classes) if counts[c] < BAND_MIN_IMAGES]

        def spread(c: int) -> torch.Tensor:
            return pooled if c in self.pooled_classes else real[labels == c]

        self.inner = torch.stack([torch.quantile(spread(c), low) if low > 0 else torch.tensor(-1.0).double()
                                  for c in range(num_classes)])
        self.outer = torch.stack([torch.quantile(spread(c), high) for c in range(num_classes)])

    def distance(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cosine distance (N,) of each feature vector to its class's prototype: float64, or float32
        and differentiable for features that need a gradient (a generator's loss)."""
        protos = self.prototypes.to(features.device)
        if features.requires_grad:
            return 1 - (torch.nn.functional.normalize(features.float(), dim=1) * protos.float()[labels]).sum(1)
        return 1 - (_unit(features) * protos[labels]).sum(1)

    def near_other(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Boolean (N,): whether each image also lies within another class's outer edge (its cosine
        distance to that class's prototype at most that class's ``high`` quantile)."""
        d = 1 - _unit(features) @ self.prototypes.T  # (N, K): to every prototype
        within = d <= self.outer[None, :]
        within[torch.arange(len(labels)), labels] = False
        return within.any(1)

    def position(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``INSIDE``, ``IN_BAND`` or ``BEYOND`` (N,) for each image."""
        d = self.distance(features, labels)
        pos = torch.full((len(d),), IN_BAND, dtype=torch.int64)
        pos[d < self.inner[labels]] = INSIDE
        pos[d > self.outer[labels]] = BEYOND
        return pos
