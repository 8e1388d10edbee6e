"""Per-class sample grids: one row per class, its name on the left."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid


def class_grid(images: torch.Tensor, class_names: list[str], per_row: int,
               scale: int = 2) -> Image.Image:
    """``images``: uint8 (len(class_names) * per_row, C, H, W), grouped by class row."""
    grid = make_grid(images, nrow=per_row, padding=2, pad_value=255)  # (3|1, H, W) uint8
    img = Image.fromarray(grid.permute(1, 2, 0).squeeze(-1).numpy())
    img = img.convert("RGB").resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    font = ImageFont.load_default()
    label_w = 8 + max(int(ImageDraw.Draw(img).textlength(n, font=font)) for n in class_names)
    canvas = Image.new("RGB", (img.width + label_w, img.height), "white")
    canvas.paste(img, (label_w, 0))
    draw = ImageDraw.Draw(canvas)
    row_h = img.height / len(class_names)
    for i, name in enumerate(class_names):
        draw.text((4, int(row_h * (i + 0.5)) - 5), name, fill="black", font=font)
    return canvas


def save_class_grid(images: torch.Tensor, class_names: list[str], per_row: int,
                    path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    class_grid(images, class_names, per_row).save(path)
    return path
