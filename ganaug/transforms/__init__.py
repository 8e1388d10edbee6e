"""torchvision v2 transforms that swap images for generated ones of the same class."""

from ._torchvision import GANAugment, GANBatchAugment, default_label
from .bank import FreshBank

__all__ = ["GANAugment", "GANBatchAugment", "default_label", "FreshBank"]
