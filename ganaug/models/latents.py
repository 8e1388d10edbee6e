"""Drawing generator inputs, with BigGAN's truncation trick."""

from __future__ import annotations

import torch


def sample_latents(n: int, z_dim: int, *, truncation: float | None = None,
                   generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Standard normal latents; with ``truncation`` t, values with |z| > t are redrawn.

    Redrawing (not clamping) keeps a truncated normal, which trades variety for fidelity as
    t shrinks. Draws on the CPU from ``generator`` so results do not depend on the device.
    """
    z = torch.randn(n, z_dim, generator=generator)
    if truncation is not None:
        if truncation <= 0:
            from ..errors import GanaugError
            raise GanaugError(f"truncation must be positive (e.g. 0.5 to 2.0), got {truncation}.")
        for _ in range(1000):
            bad = z.abs() > truncation
            if not bad.any():
                break
            z[bad] = torch.randn(int(bad.sum()), generator=generator)
    return z.to(device) if device is not None else z
