"""What every anomaly detector offers, and scoring uint8 images with any of them.

A detector (SkipGANomaly, kNN, PatchCore) is an ``nn.Module`` with ``config`` (holding
``image_size``, ``channels``, ``resize`` and ``source_size``: how images of any size are fitted
to it, the same when fitting and scoring), ``threshold`` (set from held-out normal images) and
``score_maps(x)`` for images in [-1, 1], returning image scores (N,) and anomaly maps (N, H, W),
or None for a method that scores whole images only.
"""

from __future__ import annotations

import itertools
from typing import Protocol

import torch

from ..pixels import uint8_to_model


class Detector(Protocol):
    config: object
    threshold: float | None

    def score_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...


@torch.no_grad()
def score_images(model: Detector, images: torch.Tensor, batch_size: int = 256
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(scores, anomaly maps or None) on the CPU for uint8 (N, C, H, W) images, computed on the
    model's device."""
    device = next(itertools.chain(model.parameters(), model.buffers())).device
    scores, maps = [], []
    for xb in images.split(batch_size):
        s, m = model.score_maps(uint8_to_model(xb).to(device))
        scores.append(s.cpu())
        maps.append(None if m is None else m.cpu())
    return torch.cat(scores), (None if any(m is None for m in maps) else torch.cat(maps))
