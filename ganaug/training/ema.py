"""Exponential moving average of the generator: the model that is sampled and exported."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(model: nn.Module) -> nn.Module:
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float, step: int) -> None:
    """``ema = b * ema + (1 - b) * model`` with b warmed up as min(beta, (1 + step) / (10 + step)).

    The warm-up keeps early samples from being an average over random initialisations.
    Buffers (BatchNorm statistics, spectral-norm vectors) are copied, not averaged.
    """
    b = min(beta, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1.0 - b)
    for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(bm)
