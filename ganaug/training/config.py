"""Training options: one dataclass holds every default (the CLI reads its defaults from here)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..configs import JsonConfig
from ..errors import GanaugError

LOSSES = ("hinge", "nonsat")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DIFFAUGMENT_OPS = ("color", "translation", "cutout")
# DiffAugment switches itself on when the smallest class has fewer images than this: GANs
# on a few thousand images per class or less overfit D quickly (Zhao et al. 2020).
DIFFAUGMENT_AUTO_BELOW = 5000
# Class-balanced sampling switches on when the largest class outnumbers the smallest this much.
BALANCE_AUTO_ABOVE = 1.5
LECAM_AUTO = 0.3  # the README's "Long-tail generator options" table
GUIDE_LOSSES = ("ce", "band")  # ganaug/training/guide.py


@dataclass
class TrainConfig(JsonConfig):
    """How to train. ``auto`` values are resolved from the data and device at the start of a
    run, and the resolved values are what ``run_config.json`` and the checkpoint record."""

    json_name = "training config"

    steps: int = 5000
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 4e-4  # TTUR (Heusel et al. 2017): D learns faster, so one D step per G step suffices
    beta1: float = 0.0
    beta2: float = 0.9
    n_dis: int = 1  # discriminator steps per generator step
    loss: str = "hinge"  # "hinge" or "nonsat" (non-saturating logistic)
    feature_matching: float = 0.0  # weight of the feature-matching term in G's loss
    ortho_reg: float = 0.0  # BigGAN's orthogonal regularisation of G's weights (1e-4 typical)
    # weight of the LeCam regulariser of D (Tseng et al. 2021 use 0.1-0.3 on limited data); None:
    # LECAM_AUTO when classes are imbalanced (it tripled recall on Fashion-MNIST-LT R = 100), else 0
    lecam: float | None = None
    # conditioning ramp (transitional cGAN): G and D unconditional until cond_ramp_start, fully
    # conditional from cond_ramp_end on; 0, 0 = conditional throughout
    cond_ramp_start: int = 0
    cond_ramp_end: int = 0
    # noise on G's class condition, relative to its RMS and scaled per class by effective-number
    # weights (rarer classes get more), as NoisyTwins does (0.75 in its CIFAR-10-LT config)
    class_noise: float = 0.0
    # a frozen classifier's term in G's loss (train(guide=...); ganaug/training/guide.py): its weight,
    # "ce" (cross-entropy for the intended class) or "band" (pull back only images beyond the
    # guide_band quantile of the real images' distances to their class prototype); 0: no guide
    guide_weight: float = 0.0
    guide_loss: str = "ce"
    guide_band: float = 0.95
    # FreezeD (Mo et al. 2020): D's first freeze_d blocks stay fixed, for fine-tuning (ganaug train --init)
    freeze_d: int = 0
    diffaugment: str = "auto"  # "auto", "off", or ops joined by commas: "color,translation,cutout"
    class_balanced: bool | None = None  # None: on when classes are imbalanced
    # BatchNorm statistics over groups of this many images (0: the whole batch of each process);
    # a distributed run sets it to the per-rank batch, so that it resumes on any number of processes
    bn_group: int = 0
    ema_beta: float = 0.999
    precision: str = "auto"  # autocast dtype: "auto" = bf16 on GPUs that support it, else fp32
    checkpoint_every: int = 500
    snapshot_every: int = 0  # keep the EMA generator every this many steps (0: only the last), to choose from
    sample_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "auto"

    def validate(self) -> "TrainConfig":
        for name in ("snapshot_every", "bn_group", "freeze_d"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise GanaugError(f"{name} must be an integer >= 0, got {v!r}.")
        for name in ("steps", "batch_size", "n_dis", "checkpoint_every", "sample_every", "log_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise GanaugError(f"{name} must be a positive integer, got {v!r}.")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise GanaugError(f"{name} must be positive, got {getattr(self, name)!r}.")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and 0 <= self.ema_beta < 1):
            raise GanaugError("beta1, beta2 and ema_beta must lie in [0, 1).")
        if self.loss not in LOSSES:
            raise GanaugError(f"unknown loss {self.loss!r}; choose one of {list(LOSSES)}.")
        if self.precision not in PRECISIONS:
            raise GanaugError(f"unknown precision {self.precision!r}; choose one of {list(PRECISIONS)}.")
        if self.diffaugment not in ("auto", "off"):
            ops = self.diffaugment.split(",")
            bad = [o for o in ops if o not in DIFFAUGMENT_OPS]
            if bad:
                raise GanaugError(f"unknown DiffAugment op(s) {bad}; use 'auto', 'off' or a "
                                  f"comma-separated subset of {list(DIFFAUGMENT_OPS)}.")
        if self.feature_matching < 0 or self.ortho_reg < 0 or (self.lecam or 0) < 0 or self.class_noise < 0:
            raise GanaugError("feature_matching, ortho_reg, lecam and class_noise must be >= 0.")
        if self.guide_weight < 0 or self.guide_loss not in GUIDE_LOSSES or not 0 < self.guide_band <= 1:
            raise GanaugError(f"the guide needs guide_weight >= 0, guide_loss in {list(GUIDE_LOSSES)} and "
                              f"0 < guide_band <= 1; got {self.guide_weight}, {self.guide_loss!r}, {self.guide_band}.")
        ramp = self.cond_ramp_start or self.cond_ramp_end
        if ramp and not 0 <= self.cond_ramp_start < self.cond_ramp_end:
            raise GanaugError(f"the conditioning ramp must satisfy 0 <= start < end; got start "
                              f"{self.cond_ramp_start}, end {self.cond_ramp_end}.")
        return self

    def resolved(self, class_counts: list[int], device_type: str, bf16_ok: bool) -> "TrainConfig":
        """A copy with every ``auto`` decided from the data and the device."""
        cfg = dataclasses.replace(self)
        if cfg.diffaugment == "auto":
            small = min(class_counts) < DIFFAUGMENT_AUTO_BELOW
            cfg.diffaugment = ",".join(DIFFAUGMENT_OPS) if small else "off"
        imbalanced = max(class_counts) > BALANCE_AUTO_ABOVE * min(class_counts)
        if cfg.class_balanced is None:
            cfg.class_balanced = imbalanced
        if cfg.lecam is None:
            cfg.lecam = LECAM_AUTO if imbalanced else 0.0
        if cfg.precision == "auto":
            cfg.precision = "bf16" if (device_type == "cuda" and bf16_ok) else "fp32"
        return cfg

