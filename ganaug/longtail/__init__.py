"""Long-tailed classification: balanced losses, post-hoc logit adjustment, and the recipe that
mixes generated images into a classifier's batches (``SyntheticRecipe``, ``SyntheticMix``)."""

from .judge import fit_judge
from .losses import (adjust_logits, balanced_accuracy, choose_tau, effective_number_weights, log_prior,
                     logit_adjusted_loss)
from .mix import MixedBatchSampler, SyntheticMix
from .recipe import SyntheticRecipe
from .selection import ClassBands, penultimate, select_per_class

__all__ = ["SyntheticRecipe", "SyntheticMix", "MixedBatchSampler", "fit_judge", "log_prior",
           "logit_adjusted_loss", "effective_number_weights", "adjust_logits", "balanced_accuracy",
           "choose_tau", "ClassBands", "penultimate", "select_per_class"]
