"""The classifier variants ``bench-downstream`` compares: one network, schedule and augmentation;
they differ only in data, sampling and loss.

Classical rebalancers (what a practitioner would use without ganaug):
- ``plain``: cross-entropy, uniform draws;
- ``posthoc-la``: the ``plain`` model with post-hoc logit adjustment, tau chosen on validation;
- ``reweight``: cross-entropy weighted by 1 / n_c;
- ``oversample``: every class drawn equally often;
- ``balanced-softmax``: the logit-adjusted loss at tau = 1, which is the Balanced Softmax loss;
- ``drw``: deferred re-weighting, cross-entropy with effective-number weights in the last fifth.

ganaug: ``ganaug-recipe``, a :class:`~ganaug.longtail.SyntheticMix` whose recipe is chosen on validation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import LabelledImages
from ..training.classifier import ClassifierRun, StepHooks, cross_entropy
from ..training.classifier import train_classifier as train_loop  # this module has its own train_classifier
from ..longtail import SyntheticMix, effective_number_weights, log_prior, logit_adjusted_loss
from ..longtail.mix import ClassDraws
from .resnet import SmallResNet

if TYPE_CHECKING:
    from .downstream import DownstreamConfig

CLASSICAL = ("plain", "posthoc-la", "reweight", "oversample", "balanced-softmax", "drw")
VARIANTS = CLASSICAL + ("ganaug-recipe",)
DRW_START = 0.8  # Cao et al. 2019 switch the weights on at epoch 160 of 200


def classifier_steps(cfg: "DownstreamConfig", n_train: int) -> int:
    """``cfg.classifier_steps`` if set, else ``cfg.classifier_epochs`` passes over the real training
    part but at least ``cfg.classifier_min_steps``."""
    if cfg.classifier_steps:
        return cfg.classifier_steps
    return max(1, cfg.classifier_min_steps, math.ceil(cfg.classifier_epochs * n_train / cfg.batch_size))


def start_from(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy into ``model`` every tensor of ``weights`` with the same name and shape; returns the names
    left as they were (the head, when the pretrained classifier drew other classes)."""
    own = model.state_dict()
    same = {n: t for n, t in weights.items() if n in own and own[n].shape == t.shape}
    model.load_state_dict(same, strict=False)
    return sorted(set(own) - set(same))


def uniform_batches(n: int, batch_size: int):
    def draw(gen: torch.Generator) -> Iterator[torch.Tensor]:
        while True:
            yield torch.randint(n, (batch_size,), generator=gen)
    return draw


def balanced_batches(labels: torch.Tensor, num_classes: int, batch_size: int):
    """Every class equally often, uniform within a class."""
    def draw(gen: torch.Generator) -> Iterator[torch.Tensor]:
        within = ClassDraws(labels, num_classes)
        present = torch.nonzero(within.sizes).flatten()
        while True:
            yield within(present[torch.randint(len(present), (batch_size,), generator=gen)], gen)
    return draw


def train_classifier(variant: str, train: LabelledImages, cfg: "DownstreamConfig", seed: int, *,
                     mix: SyntheticMix | None = None, device: str | torch.device = "cpu",
                     init: Mapping[str, torch.Tensor] | None = None) -> SmallResNet:
    """Train one classifier of ``variant`` (``posthoc-la`` trains the ``plain`` model; the
    adjustment happens at prediction time), from random weights or from ``init`` (the public
    classifier of a transfer protocol: :func:`start_from`)."""
    k = train.num_classes
    counts = torch.bincount(train.labels, minlength=k)
    steps = classifier_steps(cfg, len(train))
    images, labels = train.images, train.labels
    batches = (balanced_batches(labels, k, cfg.batch_size) if variant == "oversample"
               else uniform_batches(len(labels), cfg.batch_size))
    hooks, weights = StepHooks(), None
    if variant == "reweight":
        w = 1.0 / counts.clamp(min=1).float()
        hooks = StepHooks(loss=cross_entropy(w / w.sum() * k))
    elif variant == "balanced-softmax":
        prior = log_prior(counts)
        hooks = StepHooks(loss=lambda logits, y, w, step: logit_adjusted_loss(logits, y, prior))
    elif variant == "drw":
        late = effective_number_weights(counts)

        def drw_loss(logits, y, w, step):
            return F.cross_entropy(logits, y, weight=late if step >= DRW_START * steps else None)
        hooks = StepHooks(loss=drw_loss)
    elif variant == "ganaug-recipe":
        images, labels, weights = mix.tensors()
        batches = mix.batch_sampler(steps, cfg.batch_size).index_batches
        hooks = StepHooks(loss=mix.loss, batch=mix.remix, before_step=mix.before_step)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallResNet(train.channels, k, cfg.width)
        if init is not None:
            start_from(model, init)
        run = ClassifierRun(steps=steps, lr=cfg.lr, seed=seed, translate=cfg.translate,
                            channels_last=cfg.channels_last, device=device)
        return train_loop(model, images, labels, batches, run, hooks, sample_weights=weights)
