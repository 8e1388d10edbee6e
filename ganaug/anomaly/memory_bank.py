"""Memory-bank detectors: features of normal images kept, a new image scored by its distance to them.

- ``knn``: one pooled feature vector per image; the score is the mean distance to its ``k``
  nearest normal images (``k`` = 5). No heatmap: the method sees the image as a whole.
- ``patchcore`` (Roth et al. 2022): locally aware patch features (see ``backbone.Backbone.patches``)
  of every normal image, thinned by a coreset; each patch's distance to its nearest bank patch
  is the anomaly map (upsampled to the image and smoothed by a Gaussian of ``smoothing`` px), its
  maximum the image score. The paper's score reweighting by the neighbour's density is left out.

Both keep aside held-out normal images for the threshold (``holdout``), as SkipGANomaly does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import JsonConfig
from ..errors import GanaugError
from ..pixels import uint8_to_model
from .backbone import Backbone, BackboneConfig
from .detector import score_images
from .holdout import check_normal_images, split_holdout, threshold_at
from .memory import CORESETS, coreset, nearest_distances
from .model import RESIZE_POLICIES, smooth_maps

METHODS = ("knn", "patchcore")


@dataclass
class MemoryBankConfig(JsonConfig):
    json_name = "memory-bank detector config"

    method: Literal["knn", "patchcore"] = "knn"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    image_size: int = 64
    channels: int = 1
    resize: str = "crop"  # one of model.RESIZE_POLICIES, as for SkipGANomaly
    source_size: tuple[int, int] | None = None  # (width, height) of the fitted images under "strict"
    k: int = 5  # nearest bank rows averaged into a distance
    coreset: Literal["greedy", "random", "none"] = "none"
    coreset_ratio: float = 0.1  # share of the features kept by the coreset
    smoothing: float = 4.0  # sigma (px) of the Gaussian on PatchCore's anomaly map
    format_version: int = 1

    @classmethod
    def for_method(cls, method: str, **overrides) -> "MemoryBankConfig":
        """The method's defaults (kNN: k = 5, every image kept; PatchCore: k = 1, a greedy coreset
        of 10 %), then ``overrides`` (None values ignored)."""
        if method not in METHODS:
            raise GanaugError(f"method must be one of {list(METHODS)}, got {method!r}.")
        defaults = {"knn": {"k": 5, "coreset": "none"}, "patchcore": {"k": 1, "coreset": "greedy"}}[method]
        return cls(method=method, **{**defaults, **{k: v for k, v in overrides.items() if v is not None}}).validate()

    def validate(self) -> "MemoryBankConfig":
        if self.format_version > 1:
            raise GanaugError("this detector was written by a newer ganaug; upgrade ganaug.")
        if self.resize not in RESIZE_POLICIES:
            raise GanaugError(f"resize must be one of {list(RESIZE_POLICIES)}, got {self.resize!r}.")
        if self.channels not in (1, 3) or not 8 <= self.image_size <= 1024:
            raise GanaugError(f"channels must be 1 or 3 and image_size within 8..1024, got {self.channels} "
                              f"and {self.image_size}.")
        if self.k < 1 or not 0 < self.coreset_ratio <= 1 or self.smoothing < 0:
            raise GanaugError(f"k must be >= 1, coreset_ratio within (0, 1] and smoothing >= 0, got {self.k}, "
                              f"{self.coreset_ratio} and {self.smoothing}.")
        if self.coreset not in CORESETS:
            raise GanaugError(f"coreset must be one of {list(CORESETS)}, got {self.coreset!r}.")
        if self.method == "patchcore" and self.backbone.kind == "pixels":
            raise GanaugError("PatchCore needs a CNN backbone (torchvision:NAME or a reference classifier); "
                              "pixels work with the knn method.")
        return self


class MemoryBankDetector(nn.Module):
    """A backbone, a bank of normal features (N, D) and the threshold."""

    def __init__(self, config: MemoryBankConfig, backbone: Backbone, bank: torch.Tensor,
                 threshold: float | None = None):
        super().__init__()
        self.config, self.backbone, self.threshold = config.validate(), backbone, threshold
        self.register_buffer("bank", bank)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> (N, D) pooled features (knn) or (N, h, w, D) patches (patchcore)."""
        return method_features(self.backbone, self.config.method, x)

    @torch.no_grad()
    def score_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        f = self.features(x)
        if self.config.method == "knn":
            return nearest_distances(self.bank, f, self.config.k), None
        n, h, w, d = f.shape
        dist = nearest_distances(self.bank, f.reshape(-1, d), self.config.k).view(n, 1, h, w)
        maps = F.interpolate(dist, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return dist.flatten(1).amax(1), smooth_maps(maps, self.config.smoothing)

    def package_state(self) -> dict[str, torch.Tensor]:
        """What the package stores: the bank, and a reference classifier backbone's own tensors
        (a torchvision backbone is recorded by name and digest, not copied)."""
        state = {"bank": self.bank}
        if self.config.backbone.kind == "reference":
            state.update({f"backbone.{k}": v for k, v in self.backbone.net.state_dict().items()})
        return state

    @property
    def memory_bytes(self) -> int:
        return self.bank.numel() * self.bank.element_size()


@torch.no_grad()
def method_features(backbone: Backbone, method: str, x: torch.Tensor) -> torch.Tensor:
    """What ``method`` keeps of images in [-1, 1]: pooled (N, D) for knn, patches (N, h, w, D) else."""
    return backbone.pooled(x) if method == "knn" else backbone.patches(x)


def _embed(backbone: Backbone, method: str, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The bank's rows for uint8 images: one per image (knn) or per patch (patchcore)."""
    device = next(iter(backbone.buffers())).device
    out = [method_features(backbone, method, uint8_to_model(xb).to(device)) for xb in images.split(batch_size)]
    return torch.cat([f.reshape(-1, f.shape[-1]).float() for f in out])


def fit_memory_bank(normal: torch.Tensor, config: MemoryBankConfig, backbone: Backbone, *,
                    val_fraction: float = 0.1, threshold_quantile: float = 0.99, seed: int = 0,
                    batch_size: int = 64) -> tuple[MemoryBankDetector, dict]:
    """Fit on uint8 normal images (N, C, S, S): features of all but a held-out part go to the
    bank (thinned by the coreset), the held-out part sets the threshold. Returns the detector (on
    the backbone's device) and a record of what was done and what it costs."""
    config.validate()
    check_normal_images(normal, config)
    fit, val = split_holdout(normal, val_fraction, seed)
    t0 = time.perf_counter()
    feats = _embed(backbone, config.method, fit, batch_size)
    t1 = time.perf_counter()
    size = len(feats) if config.coreset == "none" else max(1, math.ceil(config.coreset_ratio * len(feats)))
    bank = feats[coreset(feats.cpu(), size, config.coreset, seed).to(feats.device)].contiguous()
    t2 = time.perf_counter()
    detector = MemoryBankDetector(config, backbone, bank)
    val_scores, _ = score_images(detector, val)
    detector.threshold, rule = threshold_at(val_scores, threshold_quantile)
    record = {"method": config.method, "backbone": config.backbone.describe(), "num_train": len(fit),
              "num_validation": len(val), "features_seen": len(feats), "bank_rows": len(bank),
              "feature_dim": int(bank.shape[1]), "bank_bytes": detector.memory_bytes,
              "coreset": f"{config.coreset}" + (f", {config.coreset_ratio:.0%} kept" if config.coreset != "none" else ""),
              "threshold": detector.threshold, "threshold_rule": rule,
              "validation_scores": {"mean": float(val_scores.mean()), "std": float(val_scores.std())},
              "seconds": {"features": round(t1 - t0, 2), "coreset": round(t2 - t1, 2),
                          "total": round(time.perf_counter() - t0, 2)}}
    return detector, record
