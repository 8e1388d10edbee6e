"""A small CNN classifier and its training loop.

Used as the reference classifier (feature space and judge for the evaluation metrics) and, with
the same recipe, for the Classification Accuracy Score (train on generated, test on real).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from ..progress import progress_bar

from ..errors import GanaugError
from ..pixels import uint8_to_model
from ..precision import autocast, require_native_bf16
from ..training.checkpoint import load_checkpoint, save_checkpoint

# (logits, targets, per-sample weights or None, step) -> scalar loss
LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", int], torch.Tensor]
# (images in [-1, 1], targets, weights or None, step) -> the same, changed (batch mixing such as Remix)
BatchFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", int],
                   tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]]


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


@dataclass
class StepCheckpoint:
    """Where :func:`train_steps` saves its state every ``every`` steps and resumes from.

    ``key`` names the run (recipe and data): a checkpoint written under another key is refused
    rather than silently continued.
    """

    path: Path
    every: int
    key: str


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
        from ..longtail.losses import log_prior, logit_adjusted_loss  # longtail builds on eval: imported late

        prior = log_prior(torch.bincount(labels, minlength=num_classes))
        loss_fn = lambda logits, y, w, step: logit_adjusted_loss(logits, y, prior.to(logits.device))  # noqa: E731
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
        return train_steps(model, images, labels, epochs, n_epochs * steps_per_epoch, lr=config.lr,
                           translate=config.translate, flip=config.flip, seed=config.seed, loss_fn=loss_fn,
                           channels_last=config.channels_last, precision=config.precision, device=device,
                           progress=progress, desc=desc, checkpoint=resume)


def train_steps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                batches: Callable[[torch.Generator], Iterable[torch.Tensor]], steps: int, *, lr: float,
                translate: int, seed: int, flip: bool = False, class_weights: torch.Tensor | None = None,
                sample_weights: torch.Tensor | None = None, loss_fn: LossFn | None = None,
                batch_fn: BatchFn | None = None, step_fn: Callable[[nn.Module, int], None] | None = None,
                channels_last: bool = False, precision: str = "fp32", device: str | torch.device = "cpu",
                progress: bool = False, desc: str = "classifier",
                checkpoint: StepCheckpoint | None = None) -> nn.Module:
    """The one classifier training loop: Adam with a one-cycle schedule over ``steps`` batches.

    ``batches(gen)`` yields index tensors into ``images``/``labels`` (epochs, uniform draws or
    class-balanced draws); ``gen`` also draws the random shifts (and flips, with ``flip``), so one
    seed fixes the whole run.
    ``labels`` may be class ids or soft targets (N, K). ``sample_weights`` (N,) go to ``loss_fn``.
    ``loss_fn(logits, y, w, step)`` replaces the (optionally class-weighted) cross-entropy: the
    long-tailed losses, per-sample weights of generated images and step-dependent schedules;
    ``batch_fn(x, y, w, step)`` changes a batch before the forward pass (Remix); ``step_fn(model,
    step)`` runs before each step (freezing the body for a head-only phase).
    ``channels_last`` is faster for small convolutions on CPU (about 1.4x on AVX2); ``precision="bf16"``
    runs the forward pass and loss under bf16 autocast (weights and optimiser stay fp32).
    ``checkpoint`` saves the state every ``checkpoint.every`` steps and resumes from an existing
    file: the batches and augmentation draws of the steps already done are replayed (cheap, no
    forward pass) so that the random stream continues exactly where it stopped.
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt).train()
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    if amp_dtype is not None:
        require_native_bf16(next(model.parameters()).device, "precision fp32")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    weight = class_weights.to(device) if class_weights is not None else None
    saved = _load_step_checkpoint(checkpoint, batch_fn, step_fn)
    start = saved["step"] if saved else 0
    with progress_bar(total=steps, enabled=progress, desc=desc, unit="step") as bar:
        for step, idx in enumerate(itertools.islice(batches(gen), steps)):
            if step_fn is not None:
                step_fn(model, step)
            x, y = images[idx], labels[idx]
            w = sample_weights[idx] if sample_weights is not None else None
            x = random_shift(x, translate, gen)
            if flip:
                x = random_hflip(x, gen)
            if step < start:  # done before the checkpoint: its random draws are replayed, nothing else
                if step == start - 1:
                    _restore(saved, checkpoint, model, opt, sched, gen)
                bar.update()
                continue
            x = uint8_to_model(x)
            if batch_fn is not None:
                x, y, w = batch_fn(x, y, w, step)
            x = x.to(device).contiguous(memory_format=fmt)
            y = y.to(device)
            with autocast(x.device, amp_dtype):
                logits = model(x)
                loss = (loss_fn(logits, y, w, step) if loss_fn is not None
                        else F.cross_entropy(logits, y, weight=weight))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            if progress:  # .item() waits for the device: only when someone is watching
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            if checkpoint is not None and (step + 1) % checkpoint.every == 0 and step + 1 < steps:
                save_checkpoint(checkpoint.path, {
                    "key": checkpoint.key, "step": step + 1, "model": model.state_dict(),
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": gen.get_state()})
    return model.eval()


def _load_step_checkpoint(checkpoint: StepCheckpoint | None, batch_fn: BatchFn | None,
                          step_fn: Callable | None) -> dict | None:
    if checkpoint is None:
        return None
    if batch_fn is not None or step_fn is not None:
        # their own state (Remix's random draws, a frozen body) is not in the checkpoint
        raise ValueError("train_steps cannot checkpoint a run with batch_fn or step_fn.")
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
