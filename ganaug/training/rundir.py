"""What a run folder holds, and reading it back.

    RUN_DIR/
      run_config.json          resolved model + training config, data fingerprint, command
      checkpoint.safetensors   G, D, G_ema, optimisers, step, RNG states (see checkpoint.py)
      metrics.jsonl            one JSON line per logged step
      loss_curve.png           D and G losses over steps
      samples/step_XXXXXXX.png per-class grids of the EMA generator (fixed noise)
      snapshots/step_XXXXXXX.safetensors  the EMA generator at earlier steps (--snapshot-every),
                               and choice.json when one was chosen for a classifier
      .lock                    held (flock) while a process writes the folder
"""

from __future__ import annotations

import warnings

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..errors import GanaugError
from ..models import GANConfig, build_generator
from .checkpoint import CHECKPOINT_NAME, load_checkpoint

RUN_CONFIG = "run_config.json"
METRICS = "metrics.jsonl"
LOSS_CURVE = "loss_curve.png"
SAMPLES = "samples"
SNAPSHOTS = "snapshots"
LOCK = ".lock"


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``RUN_DIR/.lock`` while a run writes the folder, so that a second process started on
    the same folder is an error instead of interleaved checkpoints and logs. The OS drops an
    flock when its process dies, so a killed run leaves no stale lock. (No lock where fcntl is
    missing, i.e. on Windows.)"""
    try:
        import fcntl
    except ImportError:
        yield
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise GanaugError(f"another process is writing run folder {str(run_dir)!r} (it holds {LOCK}); "
                              "wait for it to finish or stop it, or choose another --out.") from None
        yield


def snapshot_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / SNAPSHOTS / f"step_{step:07d}.safetensors"


def list_snapshots(run_dir: str | Path) -> list[int]:
    """Steps of the run's EMA-generator snapshots, in order (empty when it kept none)."""
    folder = Path(run_dir) / SNAPSHOTS
    steps = []
    for f in folder.glob("step_*.safetensors") if folder.is_dir() else []:
        try:
            steps.append(int(f.name[len("step_"):-len(".safetensors")]))
        except ValueError:
            continue
    return sorted(steps)


def load_run_generator(run_dir: str | Path, device: str | torch.device = "cpu", step: int | None = None
                       ) -> tuple[nn.Module, GANConfig, int]:
    """Deprecated: ``ganaug.load_generator(run_dir, step=...)`` gives the same network as a
    :class:`ganaug.Generator` (``.net``, ``.config``; the step is in ``.metadata``)."""
    warnings.warn("ganaug.load_run_generator is deprecated; use ganaug.load_generator(run_dir) (a Generator: "
                  "generate(), .config, .net), the one loader for runs, packages and the Hub.",
                  DeprecationWarning, stacklevel=2)
    return run_networks(run_dir, device, step)


def run_networks(run_dir: str | Path, device: str | torch.device = "cpu", step: int | None = None
                 ) -> tuple[nn.Module, GANConfig, int]:
    """The EMA generator of a training run (of its snapshot at ``step`` if given), in eval mode,
    its config and its step: what :func:`ganaug.load_generator` wraps for a run folder."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise GanaugError(f"{str(run_dir)!r} holds no {CHECKPOINT_NAME}; is it a ganaug run "
                          "folder (the --out of `ganaug train`)?")
    if step is not None:
        path = snapshot_path(run_dir, step)
        if not path.is_file():
            raise GanaugError(f"run {str(run_dir)!r} has no snapshot at step {step}; it has "
                              f"{list_snapshots(run_dir) or 'none'} (train with --snapshot-every to keep some).")
    ckpt = load_checkpoint(path, device)
    config = GANConfig.from_dict(ckpt["model_config"])
    G = build_generator(config).to(device)
    G.load_state_dict(ckpt["G_ema"], strict=True)
    return G.eval().requires_grad_(False), config, int(ckpt["step"])


def existing_checkpoint(run_dir: Path, resume: bool) -> dict | None:
    """The run folder's checkpoint when resuming, None for a new run; an existing run without
    ``resume`` is an error (never overwritten)."""
    path = run_dir / CHECKPOINT_NAME
    if not path.exists():
        return None
    if not resume:
        raise GanaugError(f"{str(run_dir)!r} already holds a run; pass --resume to "
                          "continue it, or choose a new --out folder.")
    return load_checkpoint(path)


def run_commands(run_dir: Path, resumed: bool, command: str | None) -> list[str]:
    """Every command that shaped a run, in order: the first made it, later ones resumed or extended it."""
    commands = []
    if resumed and (run_dir / RUN_CONFIG).is_file():
        commands = json.loads((run_dir / RUN_CONFIG).read_text()).get("commands", [])
    return commands + ([command] if command else [])


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the checkpoint a resumed run restarts from)."""
    path = run_dir / METRICS
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines()
            if ln.strip() and json.loads(ln).get("step", 0) <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


def plot_losses(run_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(ln) for ln in (run_dir / METRICS).read_text().splitlines() if ln.strip()]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    steps = [r["step"] for r in rows]
    for key, label, color in (("loss_d", "D loss", "tab:blue"), ("loss_g", "G loss", "tab:orange")):
        values = [r[key] for r in rows]
        ax.plot(steps, values, color=color, lw=0.6, alpha=0.35)  # single batches: noisy
        w = max(1, len(values) // 25)
        smooth = [sum(values[max(0, i - w + 1):i + 1]) / len(values[max(0, i - w + 1):i + 1])
                  for i in range(len(values))]
        ax.plot(steps, smooth, color=color, lw=1.5, label=f"{label} (running mean of {w})")
    ax.set_xlabel("step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / LOSS_CURVE, dpi=100)
    plt.close(fig)
