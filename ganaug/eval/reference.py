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
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..data.dataset import LabelledImages
from ..errors import GanaugError
from .classifier import FitConfig, SmallCNN, accuracy, fit_classifier

KIND = "ganaug-reference-classifier"
FORMAT_VERSION = 1


@dataclass
class ReferenceConfig:
    channels: int
    image_size: int
    class_names: list[str]
    width: int
    real_test_accuracy: float
    trained_on: dict  # data source and fingerprint of the training split
    tested_on: dict
    fit: dict = field(default_factory=dict)
    kind: str = KIND
    format_version: int = FORMAT_VERSION


class ReferenceClassifier:
    """A trained :class:`SmallCNN` and its config. ``model`` is in eval mode."""

    def __init__(self, model: SmallCNN, config: ReferenceConfig):
        self.model, self.config = model.eval(), config

    @property
    def accuracy(self) -> float:
        return self.config.real_test_accuracy

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(asdict(self.config), indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> "ReferenceClassifier":
        folder = Path(folder)
        cfg_path, w_path = folder / "config.json", folder / "model.safetensors"
        if not cfg_path.is_file() or not w_path.is_file():
            raise GanaugError(f"{str(folder)!r} is not a reference classifier folder (needs "
                              "config.json and model.safetensors); make one with "
                              "`ganaug reference-classifier DATA --out FOLDER`.")
        try:
            raw = json.loads(cfg_path.read_text())
            if raw.get("kind") != KIND:
                raise GanaugError(f"{str(cfg_path)!r} describes a {raw.get('kind')!r}, not a reference classifier.")
            if raw.get("format_version", 0) > FORMAT_VERSION:
                raise GanaugError(f"{str(cfg_path)!r} was written by a newer ganaug; upgrade ganaug.")
            config = ReferenceConfig(**raw)
        except (json.JSONDecodeError, TypeError) as e:
            raise GanaugError(f"{str(cfg_path)!r} is not a valid reference classifier config: {e}") from e
        model = SmallCNN(config.channels, len(config.class_names), config.width)
        try:
            state = load_file(str(w_path))
        except (SafetensorError, OSError) as e:
            raise GanaugError(f"{str(w_path)!r} is corrupt or truncated ({e}); delete the folder "
                              "and train the reference classifier again.") from e
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise GanaugError(f"weights in {str(w_path)!r} do not match its config.json: {e}") from e
        return cls(model.to(device), config)


def train_reference_classifier(train: LabelledImages, test: LabelledImages,
                               fit: FitConfig | None = None, *, device: str | torch.device = "cpu",
                               progress: bool = False) -> ReferenceClassifier:
    """Train on ``train`` (real images only) and record the accuracy on ``test``."""
    fit = fit or FitConfig()
    if train.class_names != test.class_names:
        raise GanaugError(f"train and test splits have different classes: {train.class_names} "
                          f"vs {test.class_names}.")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise GanaugError("train and test images differ in size or channels; load both with the "
                          "same image_size and channels.")
    model = fit_classifier(train.images, train.labels, train.num_classes, fit, device=device,
                           progress=progress, desc="reference classifier")
    acc = accuracy(model, test.images, test.labels)
    config = ReferenceConfig(
        channels=train.channels, image_size=train.image_size, class_names=list(train.class_names),
        width=fit.width, real_test_accuracy=round(acc, 5),
        trained_on={"source": train.source, **train.fingerprint()},
        tested_on={"source": test.source, **test.fingerprint()}, fit=asdict(fit))
    return ReferenceClassifier(model, config)


def cache_dir() -> Path:
    return Path(os.environ.get("GANAUG_CACHE", Path.home() / ".cache" / "ganaug"))


def cached_reference_classifier(train: LabelledImages, test: LabelledImages,
                                fit: FitConfig | None = None, *, progress: bool = False
                                ) -> ReferenceClassifier:
    """Load the reference classifier for exactly this data and recipe, training it once if needed."""
    fit = fit or FitConfig()
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
