"""Training SkipGANomaly on normal images only.

A held-out part of the normal images (never anomalies, never test data) chooses the epoch to
keep (lowest mean score on it: the model that reconstructs unseen normal images best) and sets
the threshold (a quantile of its scores, i.e. a target false-positive rate).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from ..progress import progress_bar

from ..errors import GanaugError
from ..pixels import uint8_to_model
from .detector import score_images
from .holdout import check_normal_images, split_holdout, threshold_at
from .model import AnomalyConfig, SkipGANomaly


@dataclass
class AnomalyTrainConfig:
    epochs: int = 15
    batch_size: int = 64
    lr: float = 2e-4
    val_fraction: float = 0.1
    patience: int = 5  # epochs without a better validation score before stopping
    threshold_quantile: float = 0.99  # of normal validation scores: about 1% false positives
    seed: int = 0

    def validate(self) -> "AnomalyTrainConfig":
        if not 0 < self.val_fraction < 1:
            raise GanaugError(f"val_fraction must lie in (0, 1), got {self.val_fraction}.")
        if not 0 < self.threshold_quantile < 1:
            raise GanaugError(f"threshold_quantile must lie in (0, 1), got {self.threshold_quantile}.")
        if self.epochs < 1 or self.batch_size < 1:
            raise GanaugError("epochs and batch_size must be positive.")
        return self


def train_detector(normal: torch.Tensor, config: AnomalyConfig, train_config: AnomalyTrainConfig,
                   *, device: str | torch.device = "cpu", progress: bool = True,
                   log_path: str | Path | None = None) -> tuple[SkipGANomaly, dict]:
    """Train on uint8 normal images on ``device``; returns the model (threshold set, on the CPU,
    ready to save) and a training record."""
    train_config.validate()
    config.validate()
    check_normal_images(normal, config)
    train, val = split_holdout(normal, train_config.val_fraction, train_config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_config.seed)
        torch.randperm(len(normal))  # the draw the split took before it had its own generator: same runs
        model = SkipGANomaly(config).to(device)
        opt_g = torch.optim.Adam(model.G.parameters(), lr=train_config.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(model.D.parameters(), lr=train_config.lr, betas=(0.5, 0.999))
        best, best_state, best_epoch, stale, history = math.inf, None, 0, 0, []
        t0 = time.perf_counter()
        steps = max(1, len(train) // train_config.batch_size)
        for epoch in range(1, train_config.epochs + 1):
            model.train()
            order = torch.randperm(len(train))
            bar = progress_bar(range(steps), enabled=progress, desc=f"epoch {epoch}", leave=False)
            for i in bar:
                x = uint8_to_model(train[order[i * train_config.batch_size:(i + 1) * train_config.batch_size]])
                x = x.to(device, non_blocking=True)
                g_loss, d_loss, parts = model.losses(x)
                opt_g.zero_grad(set_to_none=True)
                # D's forward on the real batch feeds both losses: keep it for the D backward.
                g_loss.backward(inputs=list(model.G.parameters()), retain_graph=True)
                opt_g.step()
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward(inputs=list(model.D.parameters()))
                opt_d.step()
                if not math.isfinite(g_loss.item()):
                    raise GanaugError(f"training diverged at epoch {epoch}; lower the learning rate.")
                bar.set_postfix(con=f"{parts['con']:.3f}", d=f"{parts['d']:.3f}", refresh=False)
            val_scores, _ = score_images(model, val)
            mean = float(val_scores.mean())
            history.append({"epoch": epoch, "val_score_mean": mean, **parts,
                            "elapsed_s": round(time.perf_counter() - t0, 1)})
            if progress:
                print(f"epoch {epoch}: mean validation score {mean:.5f}", flush=True)
            if mean < best:
                best, best_state, best_epoch, stale = mean, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                stale += 1
                if stale >= train_config.patience:
                    break
    model.load_state_dict(best_state)
    val_scores, _ = score_images(model, val)
    model = model.cpu()
    model.threshold, rule = threshold_at(val_scores, train_config.threshold_quantile)
    record = {"epochs_run": len(history), "best_epoch": best_epoch, "num_train": len(train),
              "num_validation": len(val), "threshold": model.threshold, "threshold_rule": rule,
              "validation_scores": {"mean": float(val_scores.mean()), "std": float(val_scores.std())},
              "train_config": asdict(train_config), "history": history, "device": str(device),
              "elapsed_s": round(time.perf_counter() - t0, 1)}
    if log_path:
        Path(log_path).write_text(json.dumps(record, indent=2))
    return model, record
