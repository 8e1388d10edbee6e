"""Differentiable augmentation (Zhao et al. 2020, "Differentiable Augmentation for
Data-Efficient GAN Training"), ported from the authors' reference code.

The same random augmentation family is applied to every image D sees, real and fake, and it is
differentiable so G's gradient flows through it. This stops D from memorising a small training
set. Random draws use the global torch RNG, whose state checkpoints save.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


Draw = Callable[[Callable[[int], torch.Tensor]], torch.Tensor]


def diff_augment(x: torch.Tensor, policy: str, rows: torch.Tensor | None = None,
                 total: int | None = None) -> torch.Tensor:
    """Apply the comma-separated ``policy`` ops ("color,translation,cutout"); "off" is identity.

    ``rows``/``total``: ``x`` holds rows ``rows`` of a batch of ``total`` images (one rank's share
    of a distributed batch); the random parameters are drawn for all ``total`` images and these
    rows kept, so the ranks together draw exactly what a single process would.
    """
    if policy in ("", "off"):
        return x
    if rows is None:
        def draw(fn: Callable[[int], torch.Tensor]) -> torch.Tensor:
            return fn(x.shape[0])
    else:
        def draw(fn: Callable[[int], torch.Tensor]) -> torch.Tensor:
            return fn(total)[rows.to(x.device)]
    for op in policy.split(","):
        x = _OPS[op](x, draw)
    return x


def _color(x: torch.Tensor, draw: Draw) -> torch.Tensor:
    def rand(n: int) -> torch.Tensor:
        return torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype)

    x = x + (draw(rand) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (draw(rand) * 2) + mean  # saturation
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    x = (x - mean) * (draw(rand) + 0.5) + mean  # contrast
    return x


def _translation(x: torch.Tensor, draw: Draw, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = draw(lambda m: torch.randint(-sh, sh + 1, size=[m, 1, 1], device=x.device))
    ty = draw(lambda m: torch.randint(-sw, sw + 1, size=[m, 1, 1], device=x.device))
    gb, gx, gy = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    x_pad = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return x_pad.permute(0, 2, 3, 1).contiguous()[gb, gx, gy].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, draw: Draw, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = draw(lambda m: torch.randint(0, h + (1 - ch % 2), size=[m, 1, 1], device=x.device))
    oy = draw(lambda m: torch.randint(0, w + (1 - cw % 2), size=[m, 1, 1], device=x.device))
    gb, gx, gy = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")
    gx = torch.clamp(gx + ox - ch // 2, min=0, max=h - 1)
    gy = torch.clamp(gy + oy - cw // 2, min=0, max=w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}
