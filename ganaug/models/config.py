"""The model config: one dataclass that fully rebuilds a generator and its discriminator.

It travels with every checkpoint and exported generator as JSON, so it carries the class
mapping, image size, channels and value range: a conditional generator is useless without
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ..configs import JsonConfig
from ..errors import GanaugError

SUPPORTED_IMAGE_SIZES = (32, 64, 128)
CONFIG_FORMAT_VERSION = 1


@dataclass
class GANConfig(JsonConfig):
    """Architecture and data description of a class-conditional GAN.

    Arch-specific defaults (widths, attention, shared embedding) come from the registry, so
    build one with :func:`ganaug.models.make_config` rather than by hand.
    """

    json_name = "model config"

    arch: str
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    image_size: int = 32
    channels: int = 3
    z_dim: int = 128
    g_width: int = 32  # base channel count of G; the 4x4 level is min(8, 2**levels) times it
    d_width: int = 32
    attn_resolution: int = 0  # feature-map size that gets self-attention; 0 = none
    g_spectral_norm: bool = False
    shared_dim: int = 0  # BigGAN's shared class embedding size; 0 = one-hot conditioning
    hierarchical_z: bool = False  # BigGAN: split z across the generator blocks
    # width inside each G block (between its two convolutions) relative to the block's output
    # width; below 1 after structured pruning (ganaug.compress.prune_generator)
    g_hidden_ratio: float = 1.0
    # how G's blocks double the resolution. Bilinear keeps the 4x4 base from showing as a grid of
    # flat squares when the blocks' convolutions are depthwise (lite at 64 px); nearest is the
    # SNGAN default and what every package written before this field used.
    g_upsample: Literal["nearest", "bilinear"] = "nearest"
    value_range: tuple[float, float] = (-1.0, 1.0)  # what G outputs (tanh)
    format_version: int = CONFIG_FORMAT_VERSION

    # -- derived shapes -------------------------------------------------------------------
    @property
    def levels(self) -> int:
        """Number of 2x upsampling blocks from 4x4 to ``image_size``."""
        return int(math.log2(self.image_size // 4))

    def g_widths(self) -> list[int]:
        """Channel width at 4x4, 8x8, ..., image_size in the generator."""
        return [self.g_width * min(8, 2 ** (self.levels - k)) for k in range(self.levels + 1)]

    def d_widths(self) -> list[int]:
        """Output width of each discriminator block (all downsample but the last)."""
        return [self.d_width * min(8, 2**k) for k in range(self.levels + 1)]

    def g_hidden_widths(self) -> list[int]:
        """Width between the two convolutions of each G block."""
        return [max(1, round(w * self.g_hidden_ratio)) for w in self.g_widths()[1:]]

    def g_attn_index(self) -> int | None:
        """Index of the G block after which attention runs (block i outputs 8 * 2**i)."""
        if not self.attn_resolution:
            return None
        return int(math.log2(self.attn_resolution // 8))

    def d_attn_index(self) -> int | None:
        """Index of the first D block whose output is at most ``attn_resolution`` wide."""
        if not self.attn_resolution:
            return None
        return max(0, int(math.log2(self.image_size // self.attn_resolution)) - 1)

    # -- validation and JSON --------------------------------------------------------------
    def validate(self) -> "GANConfig":
        """Check every field; raise :class:`GanaugError` naming the field and the fix."""
        from .registry import list_architectures

        if self.format_version > CONFIG_FORMAT_VERSION:
            raise GanaugError(
                f"config format_version {self.format_version} is newer than this ganaug "
                f"understands ({CONFIG_FORMAT_VERSION}); upgrade ganaug (pip install -U ganaug)."
            )
        if self.arch not in list_architectures():
            raise GanaugError(
                f"unknown architecture {self.arch!r}; choose one of {list_architectures()}."
            )
        if self.image_size not in SUPPORTED_IMAGE_SIZES:
            raise GanaugError(
                f"image size {self.image_size} is not supported; choose one of "
                f"{list(SUPPORTED_IMAGE_SIZES)} (images are resized to it when loaded)."
            )
        if self.channels not in (1, 3):
            raise GanaugError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels}.")
        if self.num_classes < 2:
            raise GanaugError(
                f"a class-conditional GAN needs at least 2 classes, got {self.num_classes}; "
                "put each class's images in its own sub-folder of the data folder."
            )
        if len(self.class_names) != self.num_classes:
            raise GanaugError(
                f"class_names has {len(self.class_names)} entries but num_classes is "
                f"{self.num_classes}; they must match."
            )
        if len(set(self.class_names)) != len(self.class_names):
            raise GanaugError(f"class_names has duplicates: {self.class_names}.")
        for name in ("z_dim", "g_width", "d_width"):
            if getattr(self, name) < 1:
                raise GanaugError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        if self.hierarchical_z and self.z_dim < self.levels + 1:
            raise GanaugError(
                f"hierarchical_z splits z into {self.levels + 1} chunks, so z_dim must be at "
                f"least {self.levels + 1} (got {self.z_dim})."
            )
        valid_attn = [8 * 2**i for i in range(self.levels)]
        if self.attn_resolution and self.attn_resolution not in valid_attn:
            raise GanaugError(
                f"attn_resolution {self.attn_resolution} is not a feature-map size of a "
                f"{self.image_size}px generator; choose 0 (off) or one of {valid_attn}."
            )
        if isinstance(self.g_hidden_ratio, bool) or not 0 < self.g_hidden_ratio <= 1:
            raise GanaugError(f"g_hidden_ratio must be in (0, 1], got {self.g_hidden_ratio!r}.")
        if self.g_upsample not in ("nearest", "bilinear"):
            raise GanaugError(f"g_upsample must be 'nearest' or 'bilinear', got {self.g_upsample!r}.")
        if self.g_width * 8 < 16 or self.d_width < 8:
            raise GanaugError("g_width and d_width must be at least 2 and 8 (attention needs it).")
        return self
