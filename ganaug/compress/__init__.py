"""Making a trained generator cheaper to run: distillation into a small student and structured
pruning (and, next to them, the inference variants in :mod:`ganaug.hub.inference`)."""

from .distill import DistillConfig, distill, student_config
from .prune import channel_importance, prune_generator

__all__ = ["DistillConfig", "distill", "student_config", "prune_generator", "channel_importance"]
