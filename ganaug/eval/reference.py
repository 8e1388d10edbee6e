"""The reference classifier: a small CNN trained on a dataset's real training split.

It is the feature space and the judge for ganaug's metrics when Inception weights are not at
hand, and for small grey images (28x28 Fashion-MNIST) it is the more meaningful space anyway.
Saved as ``model.safetensors`` + ``config.json``; its real-test accuracy is recorded next to
every metric computed with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..artifacts import CONFIG_NAME, WEIGHTS_NAME, load_strict, read_package, register_kind, write_package
from ..configs import JsonConfig
from ..data.dataset import LabelledImages
from ..errors import GanaugError
from .classifier import FitConfig, SmallCNN, accuracy, fit_classifier
from .judge_check import judge_quality

KIND = "ganaug-reference-classifier"
FORMAT_VERSION = 1


@dataclass
class ReferenceConfig(JsonConfig):
    channels: int
    image_size: int
    class_names: list[str]
    width: int
    real_test_accuracy: float
    trained_on: dict  # data source and fingerprint of the training split
    tested_on: dict
    fit: dict = field(default_factory=dict)
    # mean per-class recall on the test split: near chance, the judge calls everything one class
    real_test_balanced_accuracy: float | None = None  # None: recorded before it was kept

    json_name = "reference classifier config"


class ReferenceClassifier:
    """A trained :class:`SmallCNN` and its config. ``model`` is in eval mode."""

    def __init__(self, model: SmallCNN, config: ReferenceConfig):
        self.model, self.config = model.eval(), config

    @property
    def accuracy(self) -> float:
        return self.config.real_test_accuracy

    def save(self, folder: str | Path) -> Path:
        return write_package(folder, KIND, FORMAT_VERSION, self.model.state_dict(), self.config.to_dict())

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> "ReferenceClassifier":
        folder = Path(folder)
        if not (folder / CONFIG_NAME).is_file():
            raise GanaugError(f"{str(folder)!r} is not a reference classifier folder (no {CONFIG_NAME}); make one with "
                              "`ganaug reference-classifier DATA --out FOLDER`.")
        raw, state = read_package(folder, KIND, FORMAT_VERSION)
        try:
            config = ReferenceConfig.from_dict({k: v for k, v in raw.items()
                                                if k not in ("kind", "format_version", "ganaug_version")})
        except GanaugError as e:
            raise GanaugError(f"{str(folder / CONFIG_NAME)!r}: {e}") from e
        model = SmallCNN(config.channels, len(config.class_names), config.width)
        load_strict(model, state, repr(str(folder / WEIGHTS_NAME)))
        return cls(model.to(device), config)


def train_reference_classifier(train: LabelledImages, test: LabelledImages,
                               fit: FitConfig | None = None, *, device: str | torch.device = "cpu",
                               progress: bool = False, checkpoint: str | Path | None = None
                               ) -> ReferenceClassifier:
    """Train on ``train`` (real images only) and record the accuracy on ``test``.

    ``checkpoint``: a file the training state is saved to after every epoch and resumed from.
    """
    fit = fit or FitConfig()
    if train.class_names != test.class_names:
        raise GanaugError(f"train and test splits have different classes: {train.class_names} "
                          f"vs {test.class_names}.")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise GanaugError("train and test images differ in size or channels; load both with the "
                          "same image_size and channels.")
    model = fit_classifier(train.images, train.labels, train.num_classes, fit, device=device,
                           progress=progress, desc="reference classifier", checkpoint=checkpoint)
    acc = accuracy(model, test.images, test.labels)
    balanced = judge_quality(model, test.images, test.labels, train.num_classes)["balanced_accuracy"]
    config = ReferenceConfig(
        channels=train.channels, image_size=train.image_size, class_names=list(train.class_names),
        width=fit.width, real_test_accuracy=round(acc, 5), real_test_balanced_accuracy=balanced,
        trained_on={"source": train.source, **train.fingerprint()},
        tested_on={"source": test.source, **test.fingerprint()}, fit=asdict(fit))
    return ReferenceClassifier(model, config)


def cache_dir() -> Path:
    return Path(os.environ.get("GANAUG_CACHE", Path.home() / ".cache" / "ganaug"))


# the recipe of a judge trained on the user's data behind their back (`ganaug eval` and bench-downstream
# without --reference): that data is often small and imbalanced, where 3 plain epochs learn the largest class
AUTO_FIT = FitConfig(balanced=True, min_steps=1500)


def cached_reference_classifier(train: LabelledImages, test: LabelledImages,
                                fit: FitConfig | None = None, *, progress: bool = False
                                ) -> ReferenceClassifier:
    """Load the reference classifier for exactly this data and recipe (default ``AUTO_FIT``: a balanced
    loss, at least 1500 steps), training it once if needed."""
    fit = fit or AUTO_FIT
    key = json.dumps([train.source, train.fingerprint(), test.source, test.fingerprint(), asdict(fit)],
                     sort_keys=True)
    folder = cache_dir() / "reference" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if (folder / "config.json").is_file():
        return ReferenceClassifier.load(folder)
    if progress:
        print(f"training the reference classifier on {train.source} (cached in {folder})")
    ref = train_reference_classifier(train, test, fit, progress=progress)
    ref.save(folder)
    return ref


register_kind(KIND, ReferenceClassifier.load, "reference classifier")
