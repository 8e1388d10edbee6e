"""Long-tailed training splits (the CIFAR-10-LT recipe); validation parts are carved with
``ganaug.data.splits.carve_validation``."""

from __future__ import annotations

import torch

from ..data.dataset import LabelledImages
from ..errors import GanaugError


def long_tailed_sizes(n_max: int, num_classes: int, ratio: float) -> list[int]:
    """Exponentially falling class sizes n_max * ratio^(-c / (K - 1)), c = 0..K-1 (Cao et al. 2019)."""
    if ratio < 1:
        raise GanaugError(f"the imbalance ratio must be >= 1, got {ratio}.")
    return [max(1, int(n_max * ratio ** (-c / (num_classes - 1)))) for c in range(num_classes)]


def long_tailed_split(train: LabelledImages, ratio: float, n_max: int | None = None, seed: int = 0
                      ) -> LabelledImages:
    """A long-tailed subset of ``train`` (and only of ``train``): class c keeps the first
    ``size_c`` of a seeded permutation of its images; class 0 is the largest."""
    counts = train.class_counts()
    n_max = n_max or max(counts)
    sizes = long_tailed_sizes(n_max, train.num_classes, ratio)
    short = [c for c in range(train.num_classes) if counts[c] < sizes[c]]
    if short:
        raise GanaugError(f"classes {short} have fewer images than the long-tailed split needs "
                          f"({[counts[c] for c in short]} < {[sizes[c] for c in short]}); lower --n-max.")
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for c, n in enumerate(sizes):
        idx = torch.nonzero(train.labels == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:n]])
    split = train.subset(torch.cat(keep).sort().values)
    split.source = f"{train.source} long-tailed R={ratio:g}"
    return split
