"""One-class anomaly detection on Fashion-MNIST: each class in turn is normal, the other nine
classes of the test split are anomalies. AUROC per class and the mean for SkipGANomaly and, in
the same run, two baselines of similar cost: a convolutional autoencoder's reconstruction error
and k-nearest-neighbour distance in pixel space. Training uses the normal class's training
images only; thresholds and early stopping use a held-out part of them; the test split is only
scored.

    python benchmarks/anomaly_fashion_mnist.py [--epochs 15] [--classes 0 1 ...] [--max-train 6000]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.classification import binary_auroc

from ganaug.anomaly import AnomalyConfig, AnomalyTrainConfig, score_images, train_detector
from ganaug.anomaly.model import _down
from ganaug.data import FASHION_MNIST_CLASSES, load_fashion_mnist
from ganaug.pixels import uint8_to_model


class ConvAE(nn.Module):
    """The SkipGANomaly encoder/decoder without skips or adversary: the plain-autoencoder baseline."""

    def __init__(self, cfg: AnomalyConfig):
        super().__init__()
        w = cfg.widths
        self.enc = nn.Sequential(_down(cfg.channels, w[0], bn=False),
                                 *[_down(w[i - 1], w[i], bn=True) for i in range(1, len(w))],
                                 nn.Conv2d(w[-1], cfg.latent_dim, 4, 1, 0))
        ups = [nn.ConvTranspose2d(cfg.latent_dim, w[-1], 4, 1, 0), nn.BatchNorm2d(w[-1]), nn.ReLU(True)]
        for i in range(len(w) - 1, 0, -1):
            ups += [nn.ConvTranspose2d(w[i], w[i - 1], 4, 2, 1), nn.BatchNorm2d(w[i - 1]), nn.ReLU(True)]
        ups += [nn.ConvTranspose2d(w[0], cfg.channels, 4, 2, 1), nn.Tanh()]
        self.dec = nn.Sequential(*ups)

    def forward(self, x):
        return self.dec(self.enc(x))


def train_ae(normal: torch.Tensor, cfg: AnomalyConfig, epochs: int, batch: int = 64) -> ConvAE:
    torch.manual_seed(0)
    ae = ConvAE(cfg)
    opt = torch.optim.Adam(ae.parameters(), 2e-4, betas=(0.5, 0.999))
    for _ in range(epochs):
        for idx in torch.randperm(len(normal)).split(batch):
            x = uint8_to_model(normal[idx])
            loss = F.l1_loss(ae(x), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return ae.eval()


@torch.no_grad()
def ae_scores(ae: ConvAE, images: torch.Tensor) -> torch.Tensor:
    out = []
    for xb in images.split(512):
        x = uint8_to_model(xb)
        out.append((ae(x) - x).abs().flatten(1).mean(1))
    return torch.cat(out)


def knn_scores(train: torch.Tensor, test: torch.Tensor, k: int = 5) -> torch.Tensor:
    ref = train.flatten(1).float() / 255
    out = []
    for q in (test.flatten(1).float() / 255).split(1024):
        out.append(torch.cdist(q, ref).topk(k, largest=False).values.mean(1))
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--max-train", type=int, default=6000, help="normal training images per class")
    a = ap.parse_args()
    train = load_fashion_mnist(a.data, image_size=32, max_per_class=a.max_train)
    test = load_fashion_mnist(a.data, split="test", image_size=32)
    cfg = AnomalyConfig(image_size=32, channels=1)
    rows, times = [], {"SkipGANomaly": 0.0, "conv autoencoder": 0.0, "kNN (pixels)": 0.0}
    for c in a.classes:
        normal = train.images[train.labels == c]
        target = (test.labels != c).long()
        t = time.perf_counter()
        model, _ = train_detector(normal, cfg, AnomalyTrainConfig(epochs=a.epochs), progress=False)
        s_gan = score_images(model, test.images)[0]
        times["SkipGANomaly"] += time.perf_counter() - t
        t = time.perf_counter()
        s_ae = ae_scores(train_ae(normal, cfg, a.epochs), test.images)
        times["conv autoencoder"] += time.perf_counter() - t
        t = time.perf_counter()
        s_knn = knn_scores(normal, test.images)
        times["kNN (pixels)"] += time.perf_counter() - t
        rows.append((FASHION_MNIST_CLASSES[c], *(float(binary_auroc(s, target)) for s in (s_gan, s_ae, s_knn))))
        print(f"class {c} done: {rows[-1]}", flush=True)
    print(f"\n{len(a.classes)} classes, {a.epochs} epochs, up to {a.max_train} normal training images per class\n")
    print("| normal class | SkipGANomaly | conv autoencoder | kNN (pixels) |\n|---|---|---|---|")
    for name, *v in rows:
        print(f"| {name} | " + " | ".join(f"{x:.3f}" for x in v) + " |")
    means = [sum(r[i] for r in rows) / len(rows) for i in (1, 2, 3)]
    print("| **mean** | " + " | ".join(f"**{m:.3f}**" for m in means) + " |")
    print("| time (s, all classes) | " + " | ".join(f"{v:.0f}" for v in times.values()) + " |")


if __name__ == "__main__":
    main()
