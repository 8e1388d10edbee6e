"""Anomaly detection: fit on normal images only, score how far new ones are.

Three methods behind one interface (``detector.Detector``) and one package layer: kNN on CNN
features and PatchCore (``memory_bank``, features from ``backbone``, a coreset from ``memory``),
and SkipGANomaly (``model``, ``train``). Every one keeps held-out normal images aside for its
threshold (``holdout``).
"""

from .backbone import Backbone, BackboneConfig, build_backbone, load_backbone
from .card import detector_card
from .detector import Detector, score_images
from .memory import coreset, nearest_distances
from .memory_bank import MemoryBankConfig, MemoryBankDetector, fit_memory_bank
from .model import AnomalyConfig, SkipGANomaly
from .package import load_detector, save_detector
from .scoring import binary_metrics, score_folder
from .train import AnomalyTrainConfig, train_detector

__all__ = ["SkipGANomaly", "AnomalyConfig", "AnomalyTrainConfig", "train_detector", "score_images",
           "score_folder", "binary_metrics", "save_detector", "load_detector", "Detector", "detector_card",
           "MemoryBankConfig", "MemoryBankDetector", "fit_memory_bank", "Backbone", "BackboneConfig",
           "build_backbone", "load_backbone", "coreset", "nearest_distances"]
