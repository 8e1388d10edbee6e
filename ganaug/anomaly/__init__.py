"""Anomaly detection with SkipGANomaly: train on normal images, score how far new ones are."""

from .model import AnomalyConfig, SkipGANomaly
from .package import load_detector, save_detector
from .scoring import binary_metrics, score_folder
from .train import AnomalyTrainConfig, score_images, train_detector

__all__ = ["SkipGANomaly", "AnomalyConfig", "AnomalyTrainConfig", "train_detector", "score_images",
           "score_folder", "binary_metrics", "save_detector", "load_detector"]
