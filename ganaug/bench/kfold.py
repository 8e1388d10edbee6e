"""Repeated stratified k-fold over the training and validation parts together: what decides
between candidates that a small validation part cannot separate (:mod:`ganaug.bench.choice`).

Every fold trains the candidate's classifier on the other folds, with the benchmark's schedule,
and scores balanced accuracy on the held-out fold; fold runs are kept like any run
(``runs/kfold<i>-<name>``), so a killed benchmark does not train them again. The test split is
never touched. For recipe candidates the generator and the judge were trained on the training
part, which overlaps every held-out fold: they favour no recipe over another, but k-fold scores of
recipes are not comparable with those of baselines, and are only compared among themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..data.dataset import LabelledImages
from ..data.splits import stratified_folds
from ..eval.classifier import logits_of
from ..longtail import adjust_logits, balanced_accuracy, log_prior
from .store import RunStore
from .variants import train_classifier

if TYPE_CHECKING:
    from ..longtail import SyntheticMix
    from .downstream import DownstreamConfig


def pooled(train: LabelledImages, val: LabelledImages) -> LabelledImages:
    return LabelledImages(torch.cat([train.images, val.images]), torch.cat([train.labels, val.labels]),
                          list(train.class_names), f"{train.source} + validation part", native_size=train.native_size)


class KFold:
    """The folds of ``train`` + ``val``; ``scores(...)`` trains (or reads) one candidate's fold runs."""

    def __init__(self, train: LabelledImages, val: LabelledImages, cfg: "DownstreamConfig", store: RunStore,
                 schedule: dict, device: str | torch.device = "cpu", init: dict[str, torch.Tensor] | None = None):
        self.data = pooled(train, val)
        self.cfg, self.store, self.device, self.init = cfg, store, device, init
        self.folds = stratified_folds(self.data.labels, cfg.kfold, cfg.kfold_repeats)
        self.base_key = {"pooled": self.data.fingerprint(), "folds": [cfg.kfold, cfg.kfold_repeats],
                         "schedule": schedule}

    @staticmethod
    def skipped(cfg: "DownstreamConfig", n_images: int) -> str:
        """Why k-fold is not used on this data ('' when it is)."""
        if cfg.kfold < 2:
            return "k-fold is off (--kfold 0)"
        if n_images > cfg.kfold_max_images:
            return (f"k-fold skipped: {n_images} training and validation images, over --kfold-max-images "
                    f"{cfg.kfold_max_images}, where validation is larger and each of the "
                    f"{cfg.kfold * cfg.kfold_repeats} fold runs per candidate costs a full classifier")
        return ""

    def part(self, i: int) -> tuple[LabelledImages, LabelledImages]:
        """(the other folds, fold i)."""
        held = self.folds[i]
        rest = torch.ones(len(self.data), dtype=torch.bool)
        rest[held] = False
        return self.data.subset(torch.nonzero(rest).flatten()), self.data.subset(held)

    def _score(self, model: torch.nn.Module, train: LabelledImages, held: LabelledImages, tau: float) -> dict:
        k = self.data.num_classes
        prior = log_prior(torch.bincount(train.labels, minlength=k))
        pred = adjust_logits(logits_of(model, held.images), prior, tau).argmax(1)
        bal, per = balanced_accuracy(pred, held.labels, k)
        return {"balanced_accuracy": bal, "val_balanced_accuracy": bal, "per_class": per, "tau": tau}

    def scores(self, name: str, variant: str, *, tau: float = 0.0, key: dict | None = None,
               mix_of: Callable[[LabelledImages], "SyntheticMix"] | None = None) -> list[float]:
        """Held-out balanced accuracy of candidate ``name`` on every fold. ``variant`` is the classifier
        variant (``posthoc-la`` reuses the ``plain`` fold networks, adjusted by ``tau``, which the caller
        fixes beforehand: choosing it on the held-out fold would flatter it); ``mix_of(fold_train)`` gives
        a recipe's mix; ``key`` adds what else makes the candidate (the recipe, the generator)."""
        out = []
        for i in range(len(self.folds)):
            train, held = self.part(i)
            k = {**self.base_key, "fold": i, "variant": variant, **(key or {})}
            if variant == "posthoc-la":
                k["tau"] = tau
                plain = {**self.base_key, "fold": i, "variant": "plain"}
                if self.store.record(f"kfold{i}-{name}", k) is None:
                    self.store.run(f"kfold{i}-plain", plain, lambda: train_classifier("plain", train, self.cfg, 0,
                                                                                      device=self.device,
                                                                                      init=self.init),
                                   lambda m: self._score(m, train, held, 0.0), need_weights=True)
                run = self.store.run(f"kfold{i}-{name}", k, lambda: self.store.load(f"kfold{i}-plain"),
                                     lambda m: self._score(m, train, held, tau), keep_weights=False)
            else:
                run = self.store.run(
                    f"kfold{i}-{name}", k,
                    lambda: train_classifier(variant, train, self.cfg, 0, device=self.device, init=self.init,
                                             mix=mix_of(train) if mix_of else None),
                    lambda m: self._score(m, train, held, 0.0))
            out.append(run["balanced_accuracy"])
        return out
