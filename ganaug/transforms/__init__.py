"""Augmentation with a generator: torchvision v2 transforms that swap images for generated ones of
the same class, a background bank of fresh images, and datasets of generated images
(``SyntheticDataset``) mixed into real ones to balance rare classes (``balance``)."""

from ._torchvision import GANAugment, GANBatchAugment, default_label
from .balance import MixedDataset, balance, resolve_strategy
from .bank import FreshBank
from .pool import ImagePool, PoolConfig
from .synthetic import SyntheticDataset

__all__ = ["GANAugment", "GANBatchAugment", "default_label", "PoolConfig", "ImagePool", "FreshBank",
           "SyntheticDataset", "MixedDataset", "balance", "resolve_strategy"]
