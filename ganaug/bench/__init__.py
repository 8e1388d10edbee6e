"""Benchmarks that answer the practitioner's question: does the classifier get better?"""

from .downstream import VARIANTS, DownstreamConfig, run_downstream, verdict
from .resnet import SmallResNet
from .splits import carve_validation, long_tailed_sizes, long_tailed_split

__all__ = ["DownstreamConfig", "run_downstream", "verdict", "VARIANTS", "SmallResNet",
           "long_tailed_split", "long_tailed_sizes", "carve_validation"]
