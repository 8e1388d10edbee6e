"""Drawing generator inputs, with BigGAN's truncation trick."""

from __future__ import annotations

import torch

from ..pixels import model_to_uint8


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


@torch.no_grad()
def generate_images(G: torch.nn.Module, labels: torch.Tensor, *, z_dim: int,
                    value_range: tuple[float, float] = (-1.0, 1.0), seed: int | None = None,
                    generator: torch.Generator | None = None, truncation: float | None = None,
                    batch_size: int = 256) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` images of ``labels`` from generator ``G`` (in its current mode).

    Latents are drawn on the CPU from ``generator`` (or a fresh one seeded with ``seed``), so the
    same seed gives the same latents on any device and for any ``batch_size``.
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    labels = torch.as_tensor(labels, dtype=torch.int64).cpu()
    z = sample_latents(len(labels), z_dim, truncation=truncation, generator=generator)
    device = next(G.parameters()).device
    out = [model_to_uint8(G(zb.to(device), yb.to(device)), value_range).cpu()
           for zb, yb in zip(z.split(batch_size), labels.split(batch_size))]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.uint8)
