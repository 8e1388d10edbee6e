"""SNGAN generator (Miyato & Koyama 2018): ResNet G with class-conditional BatchNorm.

The class enters every conditional BN as a one-hot vector; z enters only at the bottom.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import GANConfig
from .layers import ClassCondition, ResNetGeneratorBody
from .registry import get_spec, register_architecture


@register_architecture(
    "sngan",
    defaults=dict(g_width=32, d_width=32, attn_resolution=0, g_spectral_norm=False,
                  shared_dim=0, hierarchical_z=False),
    description="ResNet generator with conditional BN; SN projection discriminator",
)
class SNGANGenerator(nn.Module):
    one_hot_condition = True  # conditional BN reads a one-hot class vector (fine-tuning remaps its columns)

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        n_blocks = config.levels
        self.body = ResNetGeneratorBody(
            in_dim=config.z_dim, widths=config.g_widths(),
            cond_dims=[config.num_classes] * n_blocks, image_channels=config.channels,
            sn=config.g_spectral_norm, attn_index=config.g_attn_index(),
            separable=get_spec(config.arch).separable, hidden=config.g_hidden_widths(),
            upsample=config.g_upsample,
        )
        self.condition = ClassCondition(config.num_classes)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        onehot = self.condition(F.one_hot(y, self.config.num_classes).to(z.dtype), y)
        return self.body(z, [onehot] * len(self.body.blocks))
