"""ganaug: small class-conditional GANs as data augmentation for image classifiers.

The public surface; everything documented in the README is importable from here.
"""

from .version import __version__  # noqa: E402,F401

from .data import LabelledImages, load_images  # noqa: E402
from .errors import GanaugError, TrainingDiverged  # noqa: E402
from .models import (GANConfig, build_discriminator, build_generator,  # noqa: E402
                     generate_images, list_architectures, make_config,
                     register_architecture, sample_latents)
from .training import TrainConfig, load_run_generator, train  # noqa: E402
from .hub import Generator, InferenceOptions, export_run, load_generator, push_to_hub  # noqa: E402
from .longtail import SyntheticMix, SyntheticRecipe, fit_judge  # noqa: E402
from .transforms import (FreshBank, GANAugment, GANBatchAugment, MixedDataset, PoolConfig,  # noqa: E402
                         SyntheticDataset, balance)
# every kind of package registers its loader with the package layer (ganaug.artifacts), so that
# ganaug.artifacts.load_artifact and push_to_hub open any of them
from .anomaly import package as _anomaly_package  # noqa: E402,F401
from .eval import reference as _reference  # noqa: E402,F401

__all__ = [
    "__version__", "GanaugError", "TrainingDiverged", "LabelledImages", "load_images",
    "GANConfig", "make_config", "build_generator", "build_discriminator", "list_architectures",
    "register_architecture", "sample_latents", "generate_images", "TrainConfig", "train", "load_run_generator",
    "Generator", "InferenceOptions", "load_generator", "push_to_hub", "export_run", "SyntheticRecipe", "SyntheticMix",
    "fit_judge", "GANAugment", "GANBatchAugment", "PoolConfig", "FreshBank", "SyntheticDataset", "MixedDataset", "balance",
]
