"""The one classifier training loop: the reference classifier, the judge, CAS and every
bench-downstream variant train through :func:`train_classifier`.

What a run is: :class:`ClassifierRun` (steps, learning rate, seed, augmentation, where and how it
computes); what it changes: :class:`StepHooks` (the loss, a batch transform such as Remix, and a
call before each step such as freezing the body), each with a plain default, never None. Adam with
a one-cycle schedule; one seeded generator draws the batches and the augmentation, so one seed
fixes the whole run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanaugError
from ..pixels import uint8_to_model
from ..precision import autocast, require_native_bf16
from ..progress import progress_bar
from .checkpoint import load_checkpoint, save_checkpoint

# (logits, targets, per-sample weights or None, step) -> scalar loss
LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", int], torch.Tensor]
# (images in [-1, 1], targets, weights or None, step) -> the same, changed (batch mixing such as Remix)
BatchFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", int],
                   tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]]
# (model, step) -> None, before each step (freezing the body for a head-only phase)
StepFn = Callable[[nn.Module, int], None]


def cross_entropy(weight: torch.Tensor | None = None) -> LossFn:
    """The plain loss, optionally class-weighted (``weight`` (K,))."""
    def loss(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, step: int) -> torch.Tensor:
        return F.cross_entropy(logits, y, weight=None if weight is None else weight.to(logits.device))
    return loss


def unchanged_batch(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, step: int):
    return x, y, w


def nothing_before_step(model: nn.Module, step: int) -> None:
    return None


@dataclass(frozen=True)
class ClassifierRun:
    """How one classifier run trains."""

    steps: int
    lr: float
    seed: int = 0
    translate: int = 0  # random shifts of up to this many pixels
    flip: bool = False  # random horizontal flips (natural images only)
    channels_last: bool = False  # faster for small convolutions on CPU (about 1.4x on AVX2)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast of forward and loss; weights stay fp32
    device: str | torch.device = "cpu"
    progress: bool = False
    desc: str = "classifier"


@dataclass(frozen=True)
class StepHooks:
    """What a run changes in the loop; the defaults change nothing (plain cross-entropy)."""

    loss: LossFn = field(default_factory=cross_entropy)
    batch: BatchFn = unchanged_batch
    before_step: StepFn = nothing_before_step

    @property
    def resumable(self) -> bool:
        # a batch transform or a step hook keeps state (Remix's draws, a frozen body) no checkpoint holds
        return self.batch is unchanged_batch and self.before_step is nothing_before_step


@dataclass
class StepCheckpoint:
    """Where :func:`train_classifier` saves its state every ``every`` steps and resumes from.

    ``key`` names the run (recipe and data): a checkpoint written under another key is refused
    rather than silently continued.
    """

    path: Path
    every: int
    key: str


def train_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     batches: Callable[[torch.Generator], Iterable[torch.Tensor]], run: ClassifierRun,
                     hooks: StepHooks = StepHooks(), *, sample_weights: torch.Tensor | None = None,
                     checkpoint: StepCheckpoint | None = None) -> nn.Module:
    """Train ``model`` for ``run.steps`` batches of uint8 ``images``; returns it in eval mode.

    ``batches(gen)`` yields index tensors into ``images``/``labels`` (epochs, uniform or
    class-balanced draws). ``labels`` may be class ids or soft targets (N, K); ``sample_weights``
    (N,) reach ``hooks.loss``. ``checkpoint`` saves the state every ``checkpoint.every`` steps and
    resumes from an existing file: the batches and augmentation draws of the steps already done
    are replayed (cheap, no forward pass) so that the random stream continues exactly.
    """
    fmt = torch.channels_last if run.channels_last else torch.contiguous_format
    model = model.to(run.device, memory_format=fmt).train()
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16}[run.precision]
    if amp_dtype is not None:
        require_native_bf16(next(model.parameters()).device, "precision fp32")
    opt = torch.optim.Adam(model.parameters(), lr=run.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, run.lr, total_steps=run.steps)
    gen = torch.Generator().manual_seed(run.seed)
    saved = _load_step_checkpoint(checkpoint, hooks)
    start = saved["step"] if saved else 0
    with progress_bar(total=run.steps, enabled=run.progress, desc=run.desc, unit="step") as bar:
        for step, idx in enumerate(itertools.islice(batches(gen), run.steps)):
            hooks.before_step(model, step)
            x, y = images[idx], labels[idx]
            w = sample_weights[idx] if sample_weights is not None else None
            x = random_shift(x, run.translate, gen)
            if run.flip:
                x = random_hflip(x, gen)
            if step < start:  # done before the checkpoint: its random draws are replayed, nothing else
                if step == start - 1:
                    _restore(saved, checkpoint, model, opt, sched, gen)
                bar.update()
                continue
            x, y, w = hooks.batch(uint8_to_model(x), y, w, step)
            x = x.to(run.device).contiguous(memory_format=fmt)
            y = y.to(run.device)
            with autocast(x.device, amp_dtype):
                loss = hooks.loss(model(x), y, w, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            if run.progress:  # .item() waits for the device: only when someone is watching
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            if checkpoint is not None and (step + 1) % checkpoint.every == 0 and step + 1 < run.steps:
                save_checkpoint(checkpoint.path, {
                    "key": checkpoint.key, "step": step + 1, "model": model.state_dict(),
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": gen.get_state()})
    return model.eval()


def _load_step_checkpoint(checkpoint: StepCheckpoint | None, hooks: StepHooks) -> dict | None:
    if checkpoint is None:
        return None
    if not hooks.resumable:
        raise ValueError("train_classifier cannot checkpoint a run with a batch transform or a step hook.")
    if not checkpoint.path.is_file():
        return None
    saved = load_checkpoint(checkpoint.path)
    if saved.get("key") != checkpoint.key:
        raise GanaugError(f"{str(checkpoint.path)!r} is the checkpoint of another run (other data or recipe). "
                          "Delete it to start afresh, or resume with the data and settings it was made with.")
    return saved


def _restore(saved: dict, checkpoint: StepCheckpoint, model: nn.Module, opt: torch.optim.Optimizer,
             sched: torch.optim.lr_scheduler.LRScheduler, gen: torch.Generator) -> None:
    if not torch.equal(gen.get_state(), saved["rng"]):
        raise GanaugError(f"replaying the random draws up to step {saved['step']} did not reach the state saved in "
                          f"{str(checkpoint.path)!r}: it was made by another version of ganaug or torch. "
                          "Delete it to start afresh.")
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    sched.load_state_dict(saved["scheduler"])


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by a random integer offset, filling with edge pixels."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x.float(), [max_shift] * 4, mode="replicate")
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None]).view(n, 1, h, 1).expand(n, x.shape[1], h, w)
    cols = (dx[:, None] + torch.arange(w)[None]).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    batch = torch.arange(n).view(n, 1, 1, 1)
    chan = torch.arange(x.shape[1]).view(1, -1, 1, 1)
    return padded[batch, chan, rows, cols].round().to(torch.uint8)


def random_hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    mirror = (torch.rand(len(x), generator=gen) < 0.5).view(-1, 1, 1, 1)
    return torch.where(mirror, x.flip(-1), x)
