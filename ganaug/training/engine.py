"""One run folder's life cycle, written once for every loop that trains in one: GAN training
(``loop.py``), distillation (``compress/distill.py``) and SkipGANomaly (``anomaly/train.py``).

    run = RunFolder(out, resume)                # the checkpoint when resuming; a run without resume: an error
    start = run.restore({"G": G, "opt_g": opt_g, ...}, device)  # weights, optimisers, every RNG
    run.write_config(command, {"model": ..., "train": ...})      # run_config.json, every command kept
    for step in run.steps(total, "train", progress):
        ...                                     # the loop's own work
        run.check_finite("training", step + 1, hint, D=loss_d, G=loss_g)
        run.log({"step": step + 1, ...})
        run.save(step + 1, {"G": G, ...}, device, extra)      # atomic; every RNG stream with it

A resumed loop therefore continues bit-exactly: the checkpoint holds the models, the optimisers,
the CPU RNG and this device's CUDA RNG, and whatever the loop passes as ``extra``; log lines
written after the checkpoint are dropped. The caller holds :func:`~ganaug.training.rundir.run_lock`.
On a distributed run only the main process writes (``main=False`` elsewhere).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Iterable, Protocol

import torch

from ..errors import TrainingDiverged
from ..grid import save_class_grid
from ..models import generate_images
from ..progress import progress_bar
from ..version import __version__
from .checkpoint import CHECKPOINT_NAME, save_checkpoint
from .rundir import METRICS, RUN_CONFIG, SAMPLES, existing_checkpoint, plot_losses, run_commands, snapshot_path
from .rundir import truncate_metrics

GRID_PER_CLASS = 8  # images per class in a sample grid
GRID_MAX_CLASSES = 20  # classes beyond these are left out of the grid (it stays readable)
CHECKPOINT_FORMAT = 1


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...


def rng_state(device: torch.device) -> dict:
    """Every RNG stream a loop on ``device`` draws from (one state for every rank of a distributed
    run: they all draw the same stream, see ``distributed.py``)."""
    return {"torch": torch.get_rng_state(),
            "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []}


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []  # this device's state (older checkpoints: every device's)
    if device.type == "cuda" and cuda:
        torch.cuda.set_rng_state(cuda[0 if len(cuda) == 1 else device.index], device)


class RunFolder:
    """A run folder being written: its checkpoint (when resuming), config, metrics and grids."""

    def __init__(self, out: str | Path, resume: bool, *, main: bool = True,
                 checkpoint: dict | None | bool = True):
        """``checkpoint``: True reads the folder's checkpoint (resume) or refuses an existing run
        (no resume); a distributed caller that read it already passes what it read."""
        self.out, self.main = Path(out), main
        self.checkpoint = existing_checkpoint(self.out, resume) if checkpoint is True else checkpoint or None
        self.start = int(self.checkpoint["step"]) if self.checkpoint else 0
        self._elapsed_before = float(self.checkpoint["elapsed_s"]) if self.checkpoint else 0.0
        self._t0 = time.perf_counter()
        self._log = None

    @property
    def resumed(self) -> bool:
        return self.checkpoint is not None

    def elapsed(self) -> float:
        """Seconds this run has trained, over every process that worked on it."""
        return self._elapsed_before + time.perf_counter() - self._t0

    def seconds(self) -> float:
        """Seconds since this process started (or resumed) the steps."""
        return time.perf_counter() - self._t0

    def restore(self, states: dict[str, Stateful], device: torch.device) -> int:
        """Load the checkpoint into ``states`` (name -> model or optimiser) and the RNG streams,
        drop the metrics past it; returns the step to continue from (0 for a new run)."""
        if self.checkpoint is None:
            return 0
        for name, obj in states.items():
            obj.load_state_dict(self.checkpoint[name])
        set_rng_state(self.checkpoint["rng"], device)
        if self.main:
            truncate_metrics(self.out, self.start)
        self._t0 = time.perf_counter()
        return self.start

    def write_config(self, command: str | None, record: dict) -> None:
        """``run_config.json``: this version, every command that shaped the run, and ``record``."""
        if not self.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        commands = run_commands(self.out, self.resumed, command)
        (self.out / RUN_CONFIG).write_text(json.dumps(
            {"ganaug_version": __version__, "commands": commands, **record}, indent=2))

    def steps(self, total: int, desc: str, progress: bool) -> Iterable[int]:
        """The steps still to run, with a progress bar on the main process."""
        self._t0 = time.perf_counter()
        return progress_bar(range(self.start, total), initial=self.start, total=total,
                            enabled=progress and self.main, desc=desc, dynamic_ncols=True, unit="step")

    def log(self, row: dict) -> None:
        """One line of ``metrics.jsonl`` (the main process only), flushed at once."""
        if not self.main:
            return
        if self._log is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self._log = open(self.out / METRICS, "a")
        self._log.write(json.dumps(row) + "\n")
        self._log.flush()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def check_finite(self, what: str, step: int, hint: str, **losses: float) -> None:
        """Stop before any checkpoint is overwritten when a loss is not finite."""
        if all(math.isfinite(v) for v in losses.values()):
            return
        said = ", ".join(f"{k} loss {v}" for k, v in losses.items())
        raise TrainingDiverged(f"{what} diverged at step {step}: {said}. The last good checkpoint in "
                               f"{str(self.out)!r} is intact (nothing after it was saved). {hint}")

    def save(self, step: int, states: dict[str, Stateful], device: torch.device, extra: dict | None = None,
             *, plot: bool = True) -> None:
        """Write the checkpoint atomically: ``states``' state dicts, every RNG stream, the elapsed
        time and ``extra`` (configs, fingerprints, what the loop carries between steps)."""
        if not self.main:
            return
        save_checkpoint(self.out / CHECKPOINT_NAME, {
            "format": CHECKPOINT_FORMAT, "step": step, "elapsed_s": self.elapsed(),
            **{name: obj.state_dict() for name, obj in states.items()},
            "rng": rng_state(device), **(extra or {})})
        if plot:
            plot_losses(self.out)

    def sample_grid(self, step: int, G_ema: torch.nn.Module, class_names: list[str], z_dim: int,
                    value_range: tuple[float, float], seed: int) -> None:
        """A per-class grid of ``G_ema``'s images, from the same noise at every step."""
        if not self.main:
            return
        shown = list(range(min(len(class_names), GRID_MAX_CLASSES)))
        y = torch.tensor(shown).repeat_interleave(GRID_PER_CLASS)
        imgs = generate_images(G_ema, y, z_dim=z_dim, value_range=value_range, seed=seed)
        save_class_grid(imgs, [class_names[c] for c in shown], GRID_PER_CLASS,
                        self.out / SAMPLES / f"step_{step:07d}.png")

    def snapshot(self, step: int, G_ema: torch.nn.Module, model_config: dict) -> None:
        """The EMA generator at ``step``, kept beside the checkpoint (chosen on validation later)."""
        if not self.main:
            return
        path = snapshot_path(self.out, step)
        path.parent.mkdir(exist_ok=True)
        save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "step": step, "G_ema": G_ema.state_dict(),
                               "model_config": model_config})
