"""Training SkipGANomaly on normal images only, in a run folder that resumes exactly (optional).

A held-out part of the normal images (never anomalies, never test data) chooses the epoch to
keep (lowest mean score on it: the model that reconstructs unseen normal images best) and sets
the threshold (a quantile of its scores, i.e. a target false-positive rate).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..errors import GanaugError, TrainingDiverged
from ..pixels import uint8_to_model
from ..progress import progress_bar
from ..training.engine import RunFolder
from ..training.rundir import run_lock
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
                   log_path: str | Path | None = None, run_dir: str | Path | None = None,
                   resume: bool = False) -> tuple[SkipGANomaly, dict]:
    """Train on uint8 normal images on ``device``; returns the model (threshold set, on the CPU,
    ready to save) and a training record.

    ``run_dir``: a run folder (``ganaug.training.engine.RunFolder``) where every epoch is
    checkpointed (networks, optimisers, the best epoch so far, RNG), so that ``resume=True``
    continues a killed run exactly where its last epoch ended; without it nothing is written
    before the end."""
    train_config.validate()
    config.validate()
    check_normal_images(normal, config)
    with run_lock(run_dir) if run_dir is not None else contextlib.nullcontext():
        run = RunFolder(run_dir, resume) if run_dir is not None else None
        return _train(normal, config, train_config, torch.device(device), progress, log_path, run)


def _fingerprint(normal: torch.Tensor, config: AnomalyConfig, train_config: AnomalyTrainConfig) -> dict:
    """What a resumed run must share with the run it continues (every setting but the epochs)."""
    return {"images": hashlib.sha256(normal.contiguous().numpy().tobytes()).hexdigest()[:16],
            "num_images": len(normal), "config": config.to_dict(),
            "train_config": {**asdict(train_config), "epochs": None}}


def _train(normal: torch.Tensor, config: AnomalyConfig, train_config: AnomalyTrainConfig, device: torch.device,
           progress: bool, log_path: str | Path | None, run: RunFolder | None) -> tuple[SkipGANomaly, dict]:
    tc = train_config
    fingerprint = _fingerprint(normal, config, tc)
    ckpt = run.checkpoint if run is not None else None
    if ckpt is not None and ckpt["fingerprint"] != fingerprint:
        raise GanaugError(f"run {str(run.out)!r} was trained on other images or settings (only --epochs may "
                          "change when resuming); resume with the same ones, or start a new run folder.")
    train, val = split_holdout(normal, tc.val_fraction, tc.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tc.seed)
        torch.randperm(len(normal))  # the draw the split took before it had its own generator: same runs
        model = SkipGANomaly(config).to(device)
        opt_g = torch.optim.Adam(model.G.parameters(), lr=tc.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(model.D.parameters(), lr=tc.lr, betas=(0.5, 0.999))
        states = {"model": model, "opt_g": opt_g, "opt_d": opt_d}
        # what the loop carries from epoch to epoch: the checkpoint holds it too
        best, best_state, best_epoch, stale, history = math.inf, None, 0, 0, []
        start = 0
        if run is not None:
            start = run.restore(states, device)
            if ckpt is not None:
                best_state, history = ckpt["best_state"], ckpt["history"]
                best, best_epoch, stale = ckpt["best"], ckpt["best_epoch"], ckpt["stale"]
            run.write_config(None, {"anomaly": config.to_dict(), "train": asdict(tc),
                                    "data": {"num_images": len(normal), "images_sha256": fingerprint["images"]}})
        t0 = time.perf_counter()
        steps = max(1, len(train) // tc.batch_size)
        for epoch in range(start + 1, tc.epochs + 1):
            if stale >= tc.patience:  # a resumed run that had already stopped early
                break
            model.train()
            order = torch.randperm(len(train))
            bar = progress_bar(range(steps), enabled=progress, desc=f"epoch {epoch}", leave=False)
            for i in bar:
                x = uint8_to_model(train[order[i * tc.batch_size:(i + 1) * tc.batch_size]])
                x = x.to(device, non_blocking=True)
                g_loss, d_loss, parts = model.losses(x)
                opt_g.zero_grad(set_to_none=True)
                # D's forward on the real batch feeds both losses: keep it for the D backward.
                g_loss.backward(inputs=list(model.G.parameters()), retain_graph=True)
                opt_g.step()
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward(inputs=list(model.D.parameters()))
                opt_d.step()
                if not (math.isfinite(g_loss.item()) and math.isfinite(d_loss.item())):
                    kept = (f" The checkpoint of epoch {epoch - 1} in {str(run.out)!r} is intact: continue it with "
                            "--resume." if run is not None and epoch > 1 else "")
                    raise TrainingDiverged(f"training diverged at epoch {epoch} (G loss {g_loss.item()}, D loss "
                                           f"{d_loss.item()}); lower the learning rate (--lr).{kept}")
                bar.set_postfix(con=f"{parts['con']:.3f}", d=f"{parts['d']:.3f}", refresh=False)
            val_scores, _ = score_images(model, val)
            mean = float(val_scores.mean())
            elapsed = run.elapsed() if run is not None else time.perf_counter() - t0
            history.append({"epoch": epoch, "val_score_mean": mean, **parts, "elapsed_s": round(elapsed, 1)})
            if progress:
                print(f"epoch {epoch}: mean validation score {mean:.5f}", flush=True)
            if mean < best:
                best, best_state, best_epoch, stale = mean, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                stale += 1
            if run is not None:
                run.log(history[-1])
                run.save(epoch, states, device, {"best_state": best_state, "best": best, "best_epoch": best_epoch,
                                                 "stale": stale, "history": history, "fingerprint": fingerprint},
                         plot=False)
    if run is not None:
        run.close()
    if best_state is None:
        raise GanaugError("no epoch gave a finite validation score; lower the learning rate (--lr).")
    model.load_state_dict(best_state)
    val_scores, _ = score_images(model, val)
    model = model.cpu()
    model.threshold, rule = threshold_at(val_scores, tc.threshold_quantile)
    record = {"epochs_run": len(history), "best_epoch": best_epoch, "num_train": len(train),
              "num_validation": len(val), "threshold": model.threshold, "threshold_rule": rule,
              "validation_scores": {"mean": float(val_scores.mean()), "std": float(val_scores.std())},
              "train_config": asdict(tc), "history": history, "device": str(device),
              "elapsed_s": round(run.elapsed() if run is not None else time.perf_counter() - t0, 1)}
    if log_path:
        Path(log_path).write_text(json.dumps(record, indent=2))
    return model, record
