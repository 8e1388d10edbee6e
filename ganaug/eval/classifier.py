"""A small CNN classifier and its training loop.

Used as the reference classifier (feature space and judge for the evaluation metrics) and, with
the same recipe, for the Classification Accuracy Score (train on generated, test on real).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.images import uint8_to_model


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
    translate: int = 2  # random shifts of up to this many pixels (the only augmentation)


def fit_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                   config: FitConfig | None = None, *, device: str | torch.device = "cpu",
                   progress: bool = False, desc: str = "classifier") -> SmallCNN:
    """Train a :class:`SmallCNN` on uint8 images; deterministic for a given seed on CPU.

    Adam with a one-cycle schedule; random translations are the only augmentation, because
    flips or colour changes do not preserve every dataset's classes (digits, defects).
    """
    config = config or FitConfig()
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
        torch.manual_seed(config.seed)
        model = SmallCNN(images.shape[1], num_classes, config.width).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        steps_per_epoch = max(1, len(images) // config.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.epochs * steps_per_epoch)
        gen = torch.Generator().manual_seed(config.seed)
        model.train()
        bar = tqdm(total=config.epochs * steps_per_epoch, disable=not progress, desc=desc, unit="step")
        for _ in range(config.epochs):
            order = torch.randperm(len(images), generator=gen)
            for i in range(steps_per_epoch):
                idx = order[i * config.batch_size:(i + 1) * config.batch_size]
                x = uint8_to_model(random_shift(images[idx], config.translate, gen)).to(device)
                loss = F.cross_entropy(model(x), labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
    return model.eval()


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
