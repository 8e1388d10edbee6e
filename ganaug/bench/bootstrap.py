"""How sure a verdict is about the test images (or a choice about the validation images): a paired
bootstrap over them.

Each run record keeps which test images it got right (``test_hits``, bit-packed). The verdict's
difference (the recipe minus the best baseline, averaged over seeds) is recomputed on test sets
resampled with replacement within each class (balanced accuracy weighs classes equally, so each
keeps its count), the same resample for both sides: the interval says how much the figure could
move with other test images of the same classes. The spread over seeds says how much it moves
with another training run; the two are reported side by side.
"""

from __future__ import annotations

import base64

import numpy as np
import torch

RESAMPLES = 1000
LEVEL = 0.95


def encode_hits(hits: torch.Tensor) -> str:
    """Bool (N,) -> a short string (bit-packed, base64) for a JSON record."""
    return base64.b64encode(np.packbits(hits.cpu().numpy().astype(np.uint8)).tobytes()).decode()


def decode_hits(text: str, n: int) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n].astype(bool))


def paired_interval(a_runs: list[dict], b_runs: list[dict], labels: torch.Tensor, resamples: int = RESAMPLES,
                    seed: int = 0, hits: str = "test_hits") -> tuple[float, float] | None:
    """The ``LEVEL`` interval, in points of balanced accuracy, of mean(a) - mean(b) over seeds, the
    images resampled within each class; None when a record lacks ``hits`` (made before they were
    kept). ``hits="val_hits"`` with the validation labels asks the same of validation."""
    if not a_runs or not b_runs or not all(hits in r for r in a_runs + b_runs):
        return None
    n, k = len(labels), int(labels.max()) + 1
    a = torch.stack([decode_hits(r[hits], n) for r in a_runs]).float().mean(0)  # (N,) mean over seeds
    b = torch.stack([decode_hits(r[hits], n) for r in b_runs]).float().mean(0)
    diff = a - b
    gen = torch.Generator().manual_seed(seed)
    per_class = []
    for c in range(k):
        d = diff[labels == c]
        if len(d) == 0:
            continue
        idx = torch.randint(len(d), (resamples, len(d)), generator=gen)
        per_class.append(d[idx].mean(1))
    stats = 100 * torch.stack(per_class).mean(0)
    lo, hi = torch.quantile(stats.double(), torch.tensor([(1 - LEVEL) / 2, (1 + LEVEL) / 2], dtype=torch.float64))
    return round(float(lo), 2), round(float(hi), 2)
