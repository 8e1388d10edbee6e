"""Evaluation: is a generator good enough to put into training data?

Metrics (metrics.py) work on feature vectors; feature spaces (features.py, inception.py) turn
images into them; the reference classifier (reference.py) is the offline feature space and the
judge of class fidelity; evaluate.py fixes the protocol; report.py writes the results.
"""

from .classifier import FitConfig, SmallCNN, fit_classifier
from .evaluate import EvalProtocol, check_comparable, evaluate, save_result
from .features import FeatureSpace, ReferenceFeatures
from .metrics import (class_fidelity, fid, frechet_distance, inception_score, kid, memorisation,
                      precision_recall)
from .reference import (ReferenceClassifier, cached_reference_classifier,
                        train_reference_classifier)
from .report import per_class_table, summary_table

__all__ = [
    "EvalProtocol", "evaluate", "save_result", "check_comparable", "FeatureSpace",
    "ReferenceFeatures", "ReferenceClassifier", "train_reference_classifier",
    "cached_reference_classifier", "FitConfig", "SmallCNN", "fit_classifier", "fid",
    "frechet_distance", "kid", "inception_score", "precision_recall", "class_fidelity",
    "memorisation", "summary_table", "per_class_table",
]
