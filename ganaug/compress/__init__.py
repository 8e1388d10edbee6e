"""Making a trained generator cheaper to run: distillation into a small student (and, next to
it, the inference variants in :mod:`ganaug.hub.inference`)."""

from .distill import DistillConfig, distill, student_config

__all__ = ["DistillConfig", "distill", "student_config"]
