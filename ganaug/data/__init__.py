"""Data: loading labelled images from disk into memory (generated and mixed datasets build on
generators and live with the augmentation code, in ganaug.transforms)."""

from .dataset import LabelledImages
from .images import IMAGE_EXTENSIONS
from .loaders import (FASHION_MNIST_CLASSES, load_class_folders, load_fashion_mnist,
                      load_image_archive, load_images)
from .splits import carve_test, load_split

__all__ = ["LabelledImages", "IMAGE_EXTENSIONS", "FASHION_MNIST_CLASSES", "load_images", "load_split", "carve_test",
           "load_class_folders", "load_fashion_mnist", "load_image_archive"]
