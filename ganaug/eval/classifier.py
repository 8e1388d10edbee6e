"""A small CNN classifier and how it is fitted for the evaluation (the loop itself is
``ganaug.training.classifier``).

Used as the reference classifier (feature space and judge for the evaluation metrics) and, with
the same recipe, for the Classification Accuracy Score (train on generated, test on real).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..errors import GanaugError
from ..pixels import uint8_to_model
# the loop lives in the training layer; these names are re-exported for code written against this module
from ..training.balanced import log_prior, logit_adjusted_loss
from ..training.classifier import (BatchFn, ClassifierRun, LossFn, StepCheckpoint, StepFn, StepHooks,  # noqa: F401
                                   cross_entropy, nothing_before_step, random_hflip, random_shift,
                                   train_classifier, unchanged_batch)


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Five 3x3 conv layers, three 2x poolings, global average pooling, one linear layer.

    ``features`` (the pooled ``4 * width`` vector) is the embedding the metrics use.
    """

    def __init__(self, channels: int, num_classes: int, width: int = 16):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            *_conv_bn(channels, w), *_conv_bn(w, w), nn.MaxPool2d(2),
            *_conv_bn(w, 2 * w), *_conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            *_conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * w, num_classes)
        self.num_features = 4 * w

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class FitConfig:
    epochs: int = 3
    batch_size: int = 128
    lr: float = 3e-3
    width: int = 16
    seed: int = 0
    translate: int = 2  # random shifts of up to this many pixels
    flip: bool = False  # random horizontal flips: for natural images only (not digits, text or oriented defects)
    channels_last: bool = False  # faster on CPU (about 1.4x on AVX2); results differ in the last bits
    # "bf16": autocast, faster on a CPU with AVX-512 BF16 or AMX (refused on CPUs that would emulate it)
    precision: Literal["fp32", "bf16"] = "fp32"
    # the Balanced Softmax loss (logits + log prior): on imbalanced data a plain loss can learn to call
    # everything the largest class, which makes a useless judge
    balanced: bool = False
    # at least this many steps, whatever the epochs give: a few hundred images are a few steps an epoch
    min_steps: int = 0

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16"):
            raise GanaugError(f"classifier precision must be 'fp32' or 'bf16', got {self.precision!r}.")


def fit_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                   config: FitConfig | None = None, *, loss_fn: LossFn | None = None,
                   device: str | torch.device = "cpu", progress: bool = False, desc: str = "classifier",
                   checkpoint: str | Path | None = None) -> SmallCNN:
    """Train a :class:`SmallCNN` on uint8 images for whole epochs; deterministic for a given seed on CPU.

    Random translations are the default augmentation, because flips or colour changes do not
    preserve every dataset's classes (digits, defects); ``flip`` adds horizontal flips for natural
    images (CIFAR-10), which a reference classifier needs to be accurate enough to judge by.
    With ``checkpoint`` (a file path) the state is saved after every epoch and a killed run
    resumes from it, to the same weights an uninterrupted run reaches.
    """
    config = config or FitConfig()
    steps_per_epoch = max(1, len(images) // config.batch_size)
    n_epochs = max(config.epochs, -(-config.min_steps // steps_per_epoch))
    if config.balanced and loss_fn is None:
        prior = log_prior(torch.bincount(labels, minlength=num_classes))
        loss_fn = lambda logits, y, w, step: logit_adjusted_loss(logits, y, prior.to(logits.device))  # noqa: E731
    hooks = StepHooks(loss=loss_fn or cross_entropy())
    resume = None
    if checkpoint is not None:
        # what makes this run this run: the recipe, the classes and the images (a cheap fingerprint)
        key = json.dumps({"fit": asdict(config), "num_classes": num_classes, "shape": list(images.shape),
                          "pixel_sum": int(images.sum(dtype=torch.int64)),
                          "label_sum": float(labels.sum(dtype=torch.float64))}, sort_keys=True)
        resume = StepCheckpoint(Path(checkpoint), steps_per_epoch, key)

    def epochs(gen: torch.Generator) -> Iterator[torch.Tensor]:
        for _ in range(n_epochs):
            order = torch.randperm(len(images), generator=gen)
            for i in range(steps_per_epoch):
                yield order[i * config.batch_size:(i + 1) * config.batch_size]

    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
        torch.manual_seed(config.seed)
        model = SmallCNN(images.shape[1], num_classes, config.width)
        run = ClassifierRun(steps=n_epochs * steps_per_epoch, lr=config.lr, seed=config.seed,
                            translate=config.translate, flip=config.flip, channels_last=config.channels_last,
                            precision=config.precision, device=device, progress=progress, desc=desc)
        return train_classifier(model, images, labels, epochs, run, hooks, checkpoint=resume)


def train_steps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batches, steps: int, *, lr: float,
                translate: int, seed: int, flip: bool = False, class_weights: torch.Tensor | None = None,
                sample_weights: torch.Tensor | None = None, loss_fn: LossFn | None = None,
                batch_fn: BatchFn | None = None, step_fn: StepFn | None = None, channels_last: bool = False,
                precision: str = "fp32", device: str | torch.device = "cpu", progress: bool = False,
                desc: str = "classifier", checkpoint: StepCheckpoint | None = None) -> nn.Module:
    """Deprecated: :func:`ganaug.training.classifier.train_classifier` with a ``ClassifierRun`` and
    ``StepHooks`` (the same loop, the same results)."""
    warnings.warn("ganaug.eval.classifier.train_steps is deprecated; use ganaug.training.classifier."
                  "train_classifier(model, images, labels, batches, ClassifierRun(...), StepHooks(...)).",
                  DeprecationWarning, stacklevel=2)
    run = ClassifierRun(steps=steps, lr=lr, seed=seed, translate=translate, flip=flip, channels_last=channels_last,
                        precision=precision, device=device, progress=progress, desc=desc)
    hooks = StepHooks(loss=loss_fn or cross_entropy(class_weights), batch=batch_fn or unchanged_batch,
                      before_step=step_fn or nothing_before_step)
    return train_classifier(model, images, labels, batches, run, hooks, sample_weights=sample_weights,
                            checkpoint=checkpoint)


@torch.no_grad()
def logits_of(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """float32 logits (N, K) of any classifier taking images in [-1, 1], for uint8 images, on the
    model's device, in eval mode (the model's mode is restored)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = torch.cat([model(uint8_to_model(x).to(device)).float().cpu() for x in images.split(batch_size)])
    model.train(was_training)
    return out


@torch.no_grad()
def predict(model: SmallCNN, images: torch.Tensor, batch_size: int = 512
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(features float32 (N, D), logits float32 (N, K)) for uint8 images."""
    device = next(model.parameters()).device
    feats, logits = [], []
    for xb in images.split(batch_size):
        f = model.features(uint8_to_model(xb).to(device))
        feats.append(f.float().cpu())
        logits.append(model.head(f).float().cpu())
    return torch.cat(feats), torch.cat(logits)


def accuracy(model: SmallCNN, images: torch.Tensor, labels: torch.Tensor) -> float:
    _, logits = predict(model, images)
    return (logits.argmax(1) == labels).float().mean().item()
