"""Decoding image files into fixed-size uint8 arrays (the one place PIL is touched)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}

# What PIL raises for a truncated, corrupt or non-image file.
DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not Path(name).name.startswith(".")


FITS = ("crop", "pad")


def decode_image(data: bytes | str | Path, size: int, channels: int | None, fit: str = "crop",
                 sizes: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Decode one image and fit it to ``size`` x ``size``: (H, W, C) uint8.

    Aspect ratio is kept. ``crop``: the shorter side is resized (bicubic, antialiased) and the
    centre cropped; ``pad``: the longer side is resized and the rest filled with black, so
    nothing is cut off. ``channels=None`` keeps grey images grey and makes everything else RGB.
    ``sizes`` collects each image's (width, height) as stored.
    """
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(src) as img:
        img.load()
        if sizes is not None:
            sizes.append(img.size)
        grey = img.mode in _GREY_MODES
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            # 16-bit / float grey: scale to 0..255 before converting, or it saturates.
            a = np.asarray(img, dtype=np.float64)
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
            img = Image.fromarray(a.astype(np.uint8), "L")
        mode = "L" if channels == 1 or (channels is None and grey) else "RGB"
        if fit == "pad":
            img = ImageOps.pad(img.convert(mode), (size, size), Image.Resampling.BICUBIC)
        else:
            img = ImageOps.fit(img.convert(mode), (size, size), Image.Resampling.BICUBIC)
        arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def stack_images(arrays: list[np.ndarray], channels: int | None) -> torch.Tensor:
    """(H, W, C) arrays -> one (N, C, H, W) tensor; grey is repeated to RGB if mixed."""
    c = channels or max(a.shape[2] for a in arrays)
    out = np.empty((len(arrays), c, *arrays[0].shape[:2]), dtype=np.uint8)
    for i, a in enumerate(arrays):
        out[i] = np.repeat(a, c, axis=2).transpose(2, 0, 1) if a.shape[2] != c else a.transpose(2, 0, 1)
    return torch.from_numpy(out)


def resize_uint8(images: torch.Tensor, height: int, width: int | None = None) -> torch.Tensor:
    """Resize a (N, C, H, W) uint8 batch to ``height`` x ``width`` (default square), bilinear
    and antialiased."""
    width = height if width is None else width
    if images.shape[-2:] == (height, width):
        return images
    x = F.interpolate(images.float(), size=(height, width), mode="bilinear", antialias=True,
                      align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)
