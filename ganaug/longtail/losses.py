"""The balanced losses and adjustments, where the long-tail layer's users look for them; they live
in ``ganaug/training/balanced.py``, below the evaluation layer that trains balanced judges too."""

from ..training.balanced import (adjust_logits, balanced_accuracy, choose_tau, effective_number_weights,  # noqa: F401
                                 log_prior, logit_adjusted_loss)
