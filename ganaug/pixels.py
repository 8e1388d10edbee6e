"""Pixel values between uint8 images (0..255) and a model's float value range (a generator's
``value_range``, -1..1 by default). Data, models, training and evaluation all convert here."""

from __future__ import annotations

import torch


def uint8_to_model(images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """uint8 0..255 -> float in the generator's value range."""
    lo, hi = value_range
    return images.float().mul_((hi - lo) / 255.0).add_(lo)


def model_to_uint8(x: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Generator output in ``value_range`` -> uint8 0..255 (rounded, clamped)."""
    lo, hi = value_range
    return ((x.float() - lo) * (255.0 / (hi - lo))).round_().clamp_(0, 255).to(torch.uint8)
