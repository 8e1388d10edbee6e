"""Feature spaces the metrics are computed in.

- ``reference``: the penultimate layer of the reference classifier (works offline; for small
  grey images the more meaningful space).
- ``inception``: Inception-v3 pool3 features with the standard FID weights (see inception.py).
"""

from __future__ import annotations

import torch

from .classifier import predict
from .reference import ReferenceClassifier


class FeatureSpace:
    """Maps uint8 images to (features, logits). ``logits`` feed the Inception Score."""

    name: str = ""

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError


class ReferenceFeatures(FeatureSpace):
    name = "reference"

    def __init__(self, ref: ReferenceClassifier):
        self.ref = ref

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.ref.config
        if images.shape[1:] != (c.channels, c.image_size, c.image_size):
            from ..errors import GanaugError

            raise GanaugError(
                f"images are {tuple(images.shape[1:])} but the reference classifier takes "
                f"({c.channels}, {c.image_size}, {c.image_size}); train one for this resolution."
            )
        return predict(self.ref.model, images)

    def describe(self) -> dict:
        c = self.ref.config
        return {"name": self.name, "dim": self.ref.model.num_features,
                "input": f"uint8 {c.channels}x{c.image_size}x{c.image_size} scaled to [-1, 1], no resize",
                "classifier_real_test_accuracy": c.real_test_accuracy,
                "trained_on": c.trained_on.get("source"), "tested_on": c.tested_on.get("source")}
