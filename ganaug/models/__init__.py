"""Architectures: the shared layer library, the registry, and the registered generators."""

from . import biggan_lite, lite, sngan  # noqa: F401  (registers the architectures)
from .biggan_lite import BigGANLiteGenerator
from .config import SUPPORTED_IMAGE_SIZES, GANConfig
from .lite import LiteGenerator
from .sampling import generate_images, sample_latents
from .layers import ProjectionDiscriminator, SelfAttention
from .registry import (build_discriminator, build_generator, get_spec, list_architectures,
                       make_config, register_architecture)
from .sngan import SNGANGenerator

__all__ = [
    "GANConfig", "SUPPORTED_IMAGE_SIZES", "make_config", "build_generator",
    "build_discriminator", "register_architecture", "list_architectures", "get_spec",
    "sample_latents", "generate_images", "SNGANGenerator", "BigGANLiteGenerator", "LiteGenerator",
    "ProjectionDiscriminator",
    "SelfAttention",
]
