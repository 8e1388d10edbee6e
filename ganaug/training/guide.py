"""A frozen classifier's term in the generator's loss.

DiffuLT (Shao et al. 2024) guides its generator's training with a feature extractor trained on the
long-tailed data, so that it makes more "approximately in distribution" samples. Two terms, the
classifier being any ``nn.Module`` with a linear head that reads images in [-1, 1] (the
downstream benchmark's judge, a :class:`~ganaug.eval.ReferenceClassifier`'s model):

- ``ce``: its cross-entropy for the intended class. Every image is pushed towards what the
  classifier recognises: class fidelity rises; diversity may fall (the AC-GAN failure).
- ``band``: in its penultimate features, only images farther from their class prototype than
  the ``band`` quantile of the class's real images' distances are pulled back, by how far they
  lie beyond it (:class:`~ganaug.longtail.selection.ClassBands`); images inside the band are left
  alone, so the generator is not pushed towards what the classifier is already sure of.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..artifacts import weights_digest
from ..data.dataset import LabelledImages
from ..errors import GanaugError
from ..models.features import ClassBands, head_input, penultimate
from .config import GUIDE_LOSSES, TrainConfig


class Guide:
    """``guide(fake, y)``: the weighted term for a batch of generated images (in the generator's
    value range) and their intended classes. The classifier is copied and frozen; ``digest``
    identifies its weights (a resumed run must be guided by the same classifier)."""

    def __init__(self, classifier: nn.Module, kind: str, weight: float, band: float, data: LabelledImages,
                 value_range: tuple[float, float], device: torch.device):
        if kind not in GUIDE_LOSSES:
            raise GanaugError(f"guide_loss must be one of {GUIDE_LOSSES}, got {kind!r}.")
        self.digest = weights_digest(classifier)
        self.model = copy.deepcopy(classifier).to(device).eval().requires_grad_(False)
        out = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        if not out or out[-1].out_features != data.num_classes:
            raise GanaugError(f"the guide classifier must end in an nn.Linear with one output per class "
                              f"({data.num_classes}); got {out[-1].out_features if out else 'no linear layer'}. "
                              "Guide with a classifier trained on these classes.")
        self.kind, self.weight, self.value_range = kind, weight, value_range
        self.bands = None
        if kind == "band":
            features, _ = penultimate(self.model, data.images)
            self.bands = ClassBands(features, data.labels, data.num_classes, 0.0, band)

    def __call__(self, fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lo, hi = self.value_range
        features, logits = head_input(self.model, (fake - lo) * (2 / (hi - lo)) - 1)  # the classifier reads [-1, 1]
        if self.kind == "ce":
            return self.weight * F.cross_entropy(logits.float(), y)
        beyond = self.bands.distance(features.float(), y) - self.bands.outer.to(features.device).float()[y]
        return self.weight * F.relu(beyond).mean()


def guide_for_run(guide: nn.Module | None, cfg: TrainConfig, data: LabelledImages, value_range: tuple[float, float],
                  device: torch.device, ckpt: dict | None, out: Path) -> Guide | None:
    """The run's :class:`Guide` (None without one), after checking that a classifier and a weight
    come together and that a resumed run keeps the classifier it started with."""
    if (cfg.guide_weight > 0) != (guide is not None):
        raise GanaugError("a guide needs both a classifier and a weight: pass guide= (ganaug train --guide FOLDER) "
                          "with guide_weight > 0 (--guide-weight), or neither."
                          + (" This run was started with a guide; resume it with the same one." if ckpt else ""))
    guider = Guide(guide, cfg.guide_loss, cfg.guide_weight, cfg.guide_band, data, value_range,
                   device) if guide is not None else None
    digest = guider.digest if guider else None
    if ckpt is not None and ckpt.get("guide") != digest:
        raise GanaugError(f"run {str(out)!r} was guided by the classifier with weights digest {ckpt.get('guide')}, "
                          f"not by {digest or 'none'}; resume with the same guide, or start a new run.")
    return guider
