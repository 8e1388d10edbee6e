"""Which arithmetic a step runs in: bf16 autocast only where the hardware computes bf16 natively.

Shared by GAN training, classifier training and generator inference. On a CPU without AVX-512
BF16 or AMX, bf16 is emulated and many times slower than fp32 (36x measured on an AVX2-only EPYC),
so it is refused there with a clear message rather than silently crawling.
"""

from __future__ import annotations

import contextlib

import torch

from .errors import GanaugError


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX (Linux /proc/cpuinfo flags); False where it cannot be told."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def require_native_bf16(device: torch.device, instead: str) -> None:
    """Raise where bf16 on ``device`` would be emulated; ``instead`` says what to use."""
    if device.type == "cpu" and not cpu_has_native_bf16():
        raise GanaugError(f"this CPU has no native bf16 arithmetic (AVX-512 BF16 or AMX); bf16 would be emulated "
                          f"and many times slower than fp32. Use {instead}.")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype``, or nothing for full precision (``None``)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
