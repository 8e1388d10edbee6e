"""Benchmarks that answer the practitioner's question: does the classifier get better?"""

from .downstream import DEFAULT_RECIPES, DownstreamConfig, prepare_splits, run_downstream
from .report import verdict
from .resnet import SmallResNet
from ..data.splits import carve_validation
from .splits import long_tailed_sizes, long_tailed_split
from .variants import CLASSICAL, VARIANTS

__all__ = ["DownstreamConfig", "run_downstream", "prepare_splits", "verdict", "VARIANTS", "CLASSICAL",
           "DEFAULT_RECIPES", "SmallResNet", "long_tailed_split", "long_tailed_sizes", "carve_validation"]
