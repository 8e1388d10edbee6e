"""The memory bank of normal features: a coreset that bounds it, nearest-neighbour distances to it.

Greedy k-center (PatchCore, Roth et al. 2022, section 3.2): start from one random feature and add,
one at a time, the feature farthest from those chosen, so the bank covers every normal feature
within the smallest radius it can; distances are measured after a random projection to
``PROJECTION_DIM`` dimensions, as the paper does (Johnson-Lindenstrauss), which keeps each step
one matrix-vector product. ``random`` keeps a uniform sample instead: cheaper, covers rare
normal patterns worse.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from ..errors import GanaugError

CORESETS = ("greedy", "random", "none")
PROJECTION_DIM = 128
BLOCK_FLOATS = 2**26  # one block of query-to-bank distances holds at most this many floats (256 MB)


def coreset(features: torch.Tensor, size: int, method: Literal["greedy", "random", "none"] = "greedy",
            seed: int = 0) -> torch.Tensor:
    """Indices (size,) of the rows of ``features`` (N, D) to keep; all of them under ``none`` or
    when ``size >= N``."""
    if method not in CORESETS:
        raise GanaugError(f"coreset must be one of {list(CORESETS)}, got {method!r}.")
    n = len(features)
    if method == "none" or size >= n:
        return torch.arange(n)
    if size < 1:
        raise GanaugError(f"a coreset needs at least one feature, asked for {size}.")
    g = torch.Generator().manual_seed(seed)
    if method == "random":
        return torch.randperm(n, generator=g)[:size].sort().values
    x = features.float()
    if x.shape[1] > PROJECTION_DIM:
        x = x @ (torch.randn(x.shape[1], PROJECTION_DIM, generator=g) / math.sqrt(PROJECTION_DIM))
    sq = x.pow(2).sum(1)

    def dist2(i: int) -> torch.Tensor:  # squared distances of every row to row i: one mat-vec
        return sq - 2 * (x @ x[i]) + sq[i]

    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = int(torch.randint(n, (1,), generator=g))
    nearest = dist2(int(chosen[0]))  # of every row to the chosen set
    for i in range(1, size):
        chosen[i] = int(nearest.argmax())
        nearest = torch.minimum(nearest, dist2(int(chosen[i])))
    return chosen


def nearest_distances(bank: torch.Tensor, queries: torch.Tensor, k: int = 1) -> torch.Tensor:
    """(N,) mean Euclidean distance of each query row to its ``k`` nearest bank rows."""
    k = min(k, len(bank))
    rows = max(1, min(4096, BLOCK_FLOATS // max(1, len(bank))))  # memory stays bounded for any bank
    return torch.cat([torch.cdist(q, bank).topk(k, largest=False).values.mean(1)
                      for q in queries.float().split(rows)]) if len(queries) else torch.empty(0)
