"""One-class anomaly detection: SkipGANomaly against simple baselines, one run, one table.

Protocols (``--protocol``):

- ``fashion-mnist``: each class in turn is normal (``--max-train`` of its training images, 32x32).
  Validation: 10 % of those held out, plus ``--val-anomalies`` images of the other nine classes
  taken from the *training* split. Test: the full test split (its own class normal, the other
  nine anomalous).
- ``neu-det``: NEU-DET has no defect-free class, so each defect type in turn is the "normal
  texture" and the other five are anomalies (grey, ``--image-size`` 64). Of the normal type's 300
  images, 200 train, 25 validate and 75 test; each other type gives 5 images to validation and 15
  to test (75 anomalies).
- ``neu-det-crops``: local defects in a normal texture, from NEU-DET's box annotations. Each defect
  type in turn: its images are split 60/20/20 into train, validation and test (by image, so no
  patch crosses splits); 64x64 patches at native resolution on a stride-32 grid are normal where
  they touch no box, anomalous where their central 32x32 lies inside a box; training takes the
  normal patches of the training images only.

Methods, all fitted on the normal training images only:

- SkipGANomaly, paper score: the mean of its anomaly map (``score_reduce=mean``);
- SkipGANomaly, local score: the same trained model, the map's smoothing and reduction (mean, max,
  top-k) chosen by AUROC on validation from a small grid, then scored once on test;
- conv autoencoder: SkipGANomaly's encoder/decoder without skips or adversary, L1 error;
- kNN on pixels (k = 5);
- kNN on CNN features: the pooled features of ``--features`` (by default the CIFAR-10 reference
  classifier this project trained and ships: trained on another dataset, so it knows nothing of
  the test images; grey images are repeated to RGB);
- patch kNN on CNN features (PatchCore without its coreset or ImageNet backbone): each image's
  score is the largest distance of its 3x3-averaged quarter-resolution feature patches to the
  nearest of ``--bank`` patches drawn at random from the normal training images; neu-det
  protocols only, because on the 10,000-image Fashion-MNIST test split it costs minutes per class.

AUROC, AUPRC and F1 at a threshold (SkipGANomaly: its stored threshold; the others: the 0.99
quantile of their normal validation scores), per normal class and averaged.

    python benchmarks/anomaly.py --protocol neu-det --data ../shared/data/neu-det --epochs 15
    python benchmarks/anomaly.py --protocol fashion-mnist --epochs 10 --max-train 2000
"""

from __future__ import annotations

import argparse
import functools
import io
import re
import tarfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ganaug.anomaly import AnomalyConfig, AnomalyTrainConfig, score_images, train_detector
from ganaug.anomaly.model import _down, reduce_maps, smooth_maps
from ganaug.anomaly.scoring import binary_metrics
from ganaug.data import load_fashion_mnist, load_images
from ganaug.eval import ReferenceClassifier
from ganaug.pixels import uint8_to_model

# the local-score grid searched on validation: (smoothing sigma in pixels, reduction, top-k share)
LOCAL_GRID = [(s, r, k) for s in (0.0, 1.0, 2.0, 4.0) for r, k in (("mean", 0.01), ("max", 0.01), ("topk", 0.01),
                                                                    ("topk", 0.05))]


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
    return torch.cat([(ae(x) - x).abs().flatten(1).mean(1) for x in map(uint8_to_model, images.split(512))])


def knn_scores(bank: torch.Tensor, queries: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Mean distance of each query row to its k nearest bank rows."""
    return torch.cat([torch.cdist(q, bank).topk(min(k, len(bank)), largest=False).values.mean(1)
                      for q in queries.split(1024)])


def pixels(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1).float() / 255


@torch.no_grad()
def cnn_features(net: nn.Module, images: torch.Tensor, patches: bool = False) -> torch.Tensor:
    """Pooled features (N, D) or, with ``patches``, 3x3-averaged quarter-resolution patch features
    (N, P, D') of a SmallCNN; grey images are repeated to its channels."""
    body = net.body[:14] if patches else net.body  # up to and with the second 2x pooling
    out = []
    for xb in images.split(256):
        x = uint8_to_model(xb.expand(-1, net.body[0].in_channels, -1, -1))
        f = body(x)
        if patches:
            f = F.avg_pool2d(f, 3, 1, 1).flatten(2).transpose(1, 2)
        out.append(f)
    return torch.cat(out)


def patch_knn_scores(bank: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Per image (queries (N, P, D)): the largest nearest-neighbour distance of its patches."""
    n, p, d = queries.shape
    return knn_scores(bank, queries.reshape(n * p, d), k=1).view(n, p).amax(1)


@functools.cache
def _load(protocol: str, data: str, image_size: int, max_train: int):
    """The protocol's images, decoded once for all normal classes."""
    if protocol == "fashion-mnist":
        return (load_fashion_mnist(data, image_size=32, max_per_class=max_train),
                load_fashion_mnist(data, split="test", image_size=32))
    if protocol == "neu-det":
        return load_images(data, class_from="filename", channels=1, image_size=image_size)
    return _neu_patches(data)


def split_fashion_mnist(a, c):
    train, test = _load(a.protocol, a.data, 32, a.max_train)
    g = torch.Generator().manual_seed(c)
    normal = train.images[train.labels == c]
    normal = normal[torch.randperm(len(normal), generator=g)]
    n_val = len(normal) // 10
    others = train.images[train.labels != c]
    val_anom = others[torch.randperm(len(others), generator=g)[: a.val_anomalies]]
    return (normal[n_val:], torch.cat([normal[:n_val], val_anom]),
            torch.cat([torch.zeros(n_val), torch.ones(len(val_anom))]).long(),
            test.images, (test.labels != c).long(), train.class_names[c])


def split_neu_det(a, c):
    data = _load(a.protocol, a.data, a.image_size, 0)
    g = torch.Generator().manual_seed(c)
    by_class = [data.images[data.labels == k][torch.randperm(int((data.labels == k).sum()), generator=g)]
                for k in range(data.num_classes)]
    normal = by_class[c]
    val_anom = torch.cat([x[:5] for k, x in enumerate(by_class) if k != c])
    test_anom = torch.cat([x[5:20] for k, x in enumerate(by_class) if k != c])
    val = torch.cat([normal[200:225], val_anom])
    test = torch.cat([normal[225:300], test_anom])
    return (normal[:200], val, torch.cat([torch.zeros(25), torch.ones(len(val_anom))]).long(), test,
            torch.cat([torch.zeros(75), torch.ones(len(test_anom))]).long(), data.class_names[c])


def _neu_patches(data: str):
    """{defect type: [(normal patches, defect patches) per image]}, uint8 (n, 1, 64, 64) each."""
    box = re.compile(r"<xmin>(\d+)</xmin>\s*<ymin>(\d+)</ymin>\s*<xmax>(\d+)</xmax>\s*<ymax>(\d+)</ymax>")
    out: dict = defaultdict(list)
    with tarfile.open(next(Path(data).glob("*.tar.gz"))) as tf:  # one sequential read: gzip cannot seek back
        blobs = {m.name.rsplit("/", 1)[-1]: tf.extractfile(m).read() for m in tf if m.isfile()
                 and m.name.endswith((".xml", ".jpg")) and ("IMAGES/" in m.name or "ANNOTATIONS/" in m.name)}
    def stack(patches: list) -> torch.Tensor:
        return torch.stack(patches) if patches else torch.empty(0, 1, 64, 64, dtype=torch.uint8)

    for name in sorted(n for n in blobs if n.endswith(".xml")):
        stem = name[:-4]
        if f"{stem}.jpg" not in blobs:
            continue
        boxes = [tuple(map(int, b)) for b in box.findall(blobs[name].decode())]
        pic = torch.from_numpy(np.array(Image.open(io.BytesIO(blobs[f"{stem}.jpg"])).convert("L")))
        normal, defect = [], []
        for py in range(0, pic.shape[0] - 63, 32):
            for px in range(0, pic.shape[1] - 63, 32):
                touches = any(not (x2 <= px or x1 >= px + 64 or y2 <= py or y1 >= py + 64) for x1, y1, x2, y2 in boxes)
                inside = any(x1 <= px + 16 and px + 48 <= x2 and y1 <= py + 16 and py + 48 <= y2
                             for x1, y1, x2, y2 in boxes)
                if not touches:
                    normal.append(pic[None, py:py + 64, px:px + 64])
                elif inside:
                    defect.append(pic[None, py:py + 64, px:px + 64])
        out[stem.rsplit("_", 1)[0]].append((stack(normal), stack(defect)))
    return dict(sorted(out.items()))


def split_neu_det_crops(a, c):
    name, images = list(_load(a.protocol, a.data, 64, 0).items())[c]
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(c)).tolist()
    n = len(order)
    parts = [[images[i] for i in order[: int(0.6 * n)]], [images[i] for i in order[int(0.6 * n): int(0.8 * n)]],
             [images[i] for i in order[int(0.8 * n):]]]
    train = torch.cat([nm for nm, _ in parts[0]])

    def labelled(part):
        normal, defect = torch.cat([nm for nm, _ in part]), torch.cat([d for _, d in part])
        return torch.cat([normal, defect]), torch.cat([torch.zeros(len(normal)), torch.ones(len(defect))]).long()

    (val, val_y), (test, test_y) = labelled(parts[1]), labelled(parts[2])
    return train, val, val_y, test, test_y, name


def metrics(val_s, val_y, test_s, test_y, threshold=None) -> dict:
    if threshold is None:  # the 0.99 quantile of the normal validation scores: about 1 % false alarms
        threshold = float(torch.quantile(val_s[val_y == 0].double(), 0.99))
    return binary_metrics(test_s, test_y, threshold)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=("fashion-mnist", "neu-det", "neu-det-crops"), default="fashion-mnist")
    ap.add_argument("--data", default=None, help="default: ../shared/data/<protocol>")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--classes", type=int, nargs="+", default=None, help="normal classes (default: all)")
    ap.add_argument("--max-train", type=int, default=6000, help="fashion-mnist: normal training images per class")
    ap.add_argument("--val-anomalies", type=int, default=500, help="fashion-mnist: anomalies in validation")
    ap.add_argument("--image-size", type=int, default=64, help="neu-det: image size")
    ap.add_argument("--width", type=int, default=32, help="SkipGANomaly and autoencoder width")
    ap.add_argument("--features", default="pretrained/cifar10-reference-classifier")
    ap.add_argument("--bank", type=int, default=20000, help="patch kNN: memory-bank patches")
    a = ap.parse_args()
    a.data = a.data or f"../shared/data/{a.protocol.removesuffix('-crops')}"
    split = {"fashion-mnist": split_fashion_mnist, "neu-det": split_neu_det,
             "neu-det-crops": split_neu_det_crops}[a.protocol]
    classes = a.classes if a.classes is not None else list(range(10 if a.protocol == "fashion-mnist" else 6))
    net = ReferenceClassifier.load(a.features).model
    rows, times, chosen = [], defaultdict(float), []
    for c in classes:
        train, val, val_y, test, test_y, name = split(a, c)
        cfg = AnomalyConfig(image_size=train.shape[-1], channels=train.shape[1], width=a.width)
        res = {}
        t = time.perf_counter()
        model, _ = train_detector(train, cfg, AnomalyTrainConfig(epochs=a.epochs), progress=False)
        val_s, test_s = score_images(model, val)[0], score_images(model, test)[0]
        res["SkipGANomaly (paper score)"] = metrics(val_s, val_y, test_s, test_y, model.threshold)
        times["SkipGANomaly (paper score)"] += time.perf_counter() - t
        t = time.perf_counter()
        val_maps = torch.cat([model.anomaly_maps(uint8_to_model(x)) for x in val.split(256)])
        test_maps = torch.cat([model.anomaly_maps(uint8_to_model(x)) for x in test.split(256)])

        smoothed = {s: smooth_maps(val_maps, s) for s in {g[0] for g in LOCAL_GRID}}  # once per sigma
        val_auroc = [binary_metrics(reduce_maps(smoothed[s], r, k), val_y, 0.0)["auroc"] for s, r, k in LOCAL_GRID]
        best = LOCAL_GRID[max(range(len(LOCAL_GRID)), key=lambda i: (val_auroc[i], -i))]
        chosen.append((name, best))
        res["SkipGANomaly (local, chosen on val)"] = metrics(
            reduce_maps(smoothed[best[0]], *best[1:]), val_y, reduce_maps(smooth_maps(test_maps, best[0]), *best[1:]),
            test_y)
        times["SkipGANomaly (local, chosen on val)"] += time.perf_counter() - t
        t = time.perf_counter()
        ae = train_ae(train, cfg, a.epochs)
        res["conv autoencoder"] = metrics(ae_scores(ae, val), val_y, ae_scores(ae, test), test_y)
        times["conv autoencoder"] += time.perf_counter() - t
        t = time.perf_counter()
        res["kNN (pixels)"] = metrics(knn_scores(pixels(train), pixels(val)), val_y,
                                      knn_scores(pixels(train), pixels(test)), test_y)
        times["kNN (pixels)"] += time.perf_counter() - t
        t = time.perf_counter()
        bank = cnn_features(net, train)
        res["kNN (CNN features)"] = metrics(knn_scores(bank, cnn_features(net, val)), val_y,
                                            knn_scores(bank, cnn_features(net, test)), test_y)
        times["kNN (CNN features)"] += time.perf_counter() - t
        if a.protocol != "fashion-mnist":
            t = time.perf_counter()
            patches = cnn_features(net, train, patches=True).flatten(0, 1)
            bank = patches[torch.randperm(len(patches), generator=torch.Generator().manual_seed(0))[: a.bank]]
            res["patch kNN (CNN features)"] = metrics(
                patch_knn_scores(bank, cnn_features(net, val, patches=True)), val_y,
                patch_knn_scores(bank, cnn_features(net, test, patches=True)), test_y)
            times["patch kNN (CNN features)"] += time.perf_counter() - t
        rows.append((name, res, (len(train), int((val_y == 0).sum()), int(val_y.sum()), int((test_y == 0).sum()),
                                 int(test_y.sum()))))
        print(f"{name}: " + ", ".join(f"{m} {r['auroc']:.3f}" for m, r in res.items()), flush=True)

    methods = list(rows[0][1])
    print(f"\n{a.protocol}, {a.epochs} epochs, one seed; images per normal class: "
          + "; ".join(f"{n}: train {c[0]}, val {c[1]} normal + {c[2]} anomalous, test {c[3]} + {c[4]}"
                      for n, _, c in rows) + "\n")
    print("AUROC on test:\n")
    print("| normal class | " + " | ".join(methods) + " |\n|---|" + "---|" * len(methods))
    for name, res, _ in rows:
        print(f"| {name} | " + " | ".join(f"{res[m]['auroc']:.3f}" for m in methods) + " |")
    print("\nMeans over the normal classes:\n")
    print("| method | AUROC | AUPRC | F1 at threshold | time (s, all classes) |\n|---|---|---|---|---|")
    for m in methods:
        mean = {k: sum(r[m][k] for _, r, _ in rows) / len(rows) for k in ("auroc", "auprc", "f1_at_threshold")}
        print(f"| {m} | {mean['auroc']:.3f} | {mean['auprc']:.3f} | {mean['f1_at_threshold']:.3f} | {times[m]:.0f} |")
    print("\nLocal score chosen on validation (smoothing sigma, reduction, top-k share): "
          + "; ".join(f"{n}: {b}" for n, b in chosen))


if __name__ == "__main__":
    main()
