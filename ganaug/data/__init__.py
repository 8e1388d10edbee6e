"""Data: loading labelled images from disk into memory, and generated / mixed datasets."""

from .balance import MixedDataset, balance, resolve_strategy
from .dataset import LabelledImages
from .images import IMAGE_EXTENSIONS
from .loaders import (FASHION_MNIST_CLASSES, load_class_folders, load_fashion_mnist,
                      load_image_archive, load_images)
from .synthetic import SyntheticDataset

__all__ = ["LabelledImages", "IMAGE_EXTENSIONS", "FASHION_MNIST_CLASSES", "load_images",
           "load_class_folders", "load_fashion_mnist", "load_image_archive", "SyntheticDataset",
           "MixedDataset", "balance", "resolve_strategy"]
