"""BigGAN-lite generator (Brock et al. 2019), sized for small data and small machines.

Differences from SNGAN: a shared class embedding feeds every conditional BN, z is split
hierarchically across the blocks (each block's BN sees its own z chunk), spectral norm in G,
and self-attention at ``attn_resolution``. Sampling may use the truncation trick
(:func:`ganaug.models.sample_latents`); orthogonal regularisation is a training option.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import GANConfig
from .layers import ClassCondition, ResNetGeneratorBody
from .registry import get_spec, register_architecture


@register_architecture(
    "biggan-lite",
    defaults=dict(g_width=32, d_width=32, attn_resolution=None, g_spectral_norm=True,
                  shared_dim=64, hierarchical_z=True),
    description="BigGAN-style G: shared embedding, hierarchical z, self-attention, SN in G",
)
class BigGANLiteGenerator(nn.Module):
    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        n_blocks = config.levels
        if config.hierarchical_z:
            chunk = config.z_dim // (n_blocks + 1)
            # The first chunk (fed to the linear layer) takes any remainder.
            self.z_split = [config.z_dim - chunk * n_blocks] + [chunk] * n_blocks
        else:
            self.z_split = [config.z_dim]
        cond_chunk = self.z_split[1] if config.hierarchical_z else 0
        shared_dim = config.shared_dim or config.num_classes
        self.shared = nn.Embedding(config.num_classes, shared_dim)
        self.body = ResNetGeneratorBody(
            in_dim=self.z_split[0], widths=config.g_widths(),
            cond_dims=[shared_dim + cond_chunk] * n_blocks, image_channels=config.channels,
            sn=config.g_spectral_norm, attn_index=config.g_attn_index(),
            separable=get_spec(config.arch).separable, hidden=config.g_hidden_widths(),
            upsample=config.g_upsample,
        )
        self.condition = ClassCondition(config.num_classes)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shared = self.condition(self.shared(y).to(z.dtype), y)
        if self.config.hierarchical_z:
            z0, *zs = torch.split(z, self.z_split, dim=1)
            conds = [torch.cat([shared, zi], dim=1) for zi in zs]
        else:
            z0, conds = z, [shared] * len(self.body.blocks)
        return self.body(z0, conds)
