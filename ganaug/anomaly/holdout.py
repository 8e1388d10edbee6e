"""The held-out normal images every detector keeps aside: they never enter the model or its
memory bank, and the threshold is a quantile of their scores, i.e. a stated false-alarm rate."""

from __future__ import annotations

import torch

from ..errors import GanaugError


def check_normal_images(normal: torch.Tensor, config) -> None:
    """uint8 (N, C, S, S) images of the shape ``config`` (``channels``, ``image_size``) asks for."""
    if normal.dim() != 4 or normal.dtype != torch.uint8:
        raise GanaugError("normal images must be a uint8 (N, C, H, W) tensor.")
    if tuple(normal.shape[1:]) != (config.channels, config.image_size, config.image_size):
        raise GanaugError(f"images are {tuple(normal.shape[1:])} but the detector expects "
                          f"({config.channels}, {config.image_size}, {config.image_size}).")


def split_holdout(normal: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit part, held-out part) of uint8 normal images, a seeded random split."""
    if not 0 < val_fraction < 1:
        raise GanaugError(f"val_fraction must lie in (0, 1), got {val_fraction}.")
    n_val = max(1, int(round(val_fraction * len(normal))))
    if len(normal) - n_val < 2:
        raise GanaugError(f"{len(normal)} normal images are too few to fit and hold some out; "
                          "provide at least a few dozen.")
    perm = torch.randperm(len(normal), generator=torch.Generator().manual_seed(seed))
    return normal[perm[n_val:]], normal[perm[:n_val]]


def threshold_at(val_scores: torch.Tensor, quantile: float) -> tuple[float, str]:
    """(threshold, the rule in words): the ``quantile`` of the held-out normal scores, so about
    ``1 - quantile`` of normal images are called anomalous."""
    if not 0 < quantile < 1:
        raise GanaugError(f"threshold_quantile must lie in (0, 1), got {quantile}.")
    threshold = float(torch.quantile(val_scores.double(), quantile))
    rule = (f"quantile {quantile} of {len(val_scores)} held-out normal images' scores: a target false-alarm "
            f"rate of {1 - quantile:.1%}" + (" (with so few images, about their maximum)"
                                              if len(val_scores) * (1 - quantile) < 1 else ""))
    return threshold, rule
