"""One-class anomaly detection through the CLI: every packaged method on three protocols, one table.

Each normal class in turn: its normal images are written to a folder, ``ganaug anomaly train``
fits each method on them (holding out a share for the threshold at a 1 % false-alarm rate), and
``ganaug anomaly score`` scores the test images with their labels. The same commands a user runs.

Protocols (``--protocol``):

- ``fashion-mnist``: each class in turn is normal (``--max-train`` of its training images, 32x32;
  10 % held out for the threshold); test: the full test split (its own class normal, the other
  nine anomalous).
- ``neu-det``: NEU-DET has no defect-free class, so each defect type in turn is the "normal
  texture" and the other five are anomalies (grey, ``--image-size`` 64). Of the normal type's 300
  images, 225 are given to ``anomaly train`` (25 held out for the threshold); test: its other 75
  and 15 of each other type.
- ``neu-det-crops``: local defects in a normal texture, from NEU-DET's box annotations. Each defect
  type in turn: its images are split 60/20/20 (by image, so no patch crosses splits); 64x64 patches
  at native resolution on a stride-32 grid are normal where they touch no box, anomalous where
  their central 32x32 lies inside a box; ``anomaly train`` gets the normal patches of the first 80 %
  (the 20 % validation part's normal patches are its held-out share), test: the last 20 %.

Methods (``--methods``), all fitted on normal images only:

- ``skipganomaly``: the GAN detector, the paper's score (``--epochs``, ``--width``);
- ``knn-pixels``: kNN (k = 5) on the images' pixels;
- ``knn``: kNN (k = 5) on the pooled features of ``--features`` (by default the CIFAR-10 reference
  classifier this project trained and ships: another dataset, it knows nothing of the test images;
  grey images are repeated to RGB);
- ``patchcore``: PatchCore on the same network's quarter-resolution patches, greedy coreset of 10 %;
- ``patchcore-full``: the same without a coreset (neu-det protocols: on Fashion-MNIST's 10,000 test
  images the full bank costs minutes per class).

Results are kept per protocol, class and method in ``--work`` (rerunning skips what is there).
Printed: AUROC per class, and per method the means of AUROC, AUPRC and F1 at the stored threshold,
the memory bank's size, fit time and scoring time per image (one process, this machine).

    python benchmarks/anomaly.py --protocol neu-det --epochs 15
    python benchmarks/anomaly.py --protocol neu-det-crops --epochs 15
    python benchmarks/anomaly.py --protocol fashion-mnist --epochs 10 --max-train 2000
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import re
import tarfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganaug.anomaly import load_detector, score_images
from ganaug.cli import main as ganaug_main
from ganaug.data import load_fashion_mnist, load_images


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
    return normal[n_val:], normal[:n_val], test.images, (test.labels != c).long(), train.class_names[c]


def split_neu_det(a, c):
    data = _load(a.protocol, a.data, a.image_size, 0)
    g = torch.Generator().manual_seed(c)
    by_class = [data.images[data.labels == k][torch.randperm(int((data.labels == k).sum()), generator=g)]
                for k in range(data.num_classes)]
    normal = by_class[c]
    test_anom = torch.cat([x[5:20] for k, x in enumerate(by_class) if k != c])  # x[:5]: the old validation part
    test = torch.cat([normal[225:300], test_anom])
    return (normal[:200], normal[200:225], test, torch.cat([torch.zeros(75), torch.ones(len(test_anom))]).long(),
            data.class_names[c])


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
    train, val = torch.cat([nm for nm, _ in parts[0]]), torch.cat([nm for nm, _ in parts[1]])
    normal, defect = torch.cat([nm for nm, _ in parts[2]]), torch.cat([d for _, d in parts[2]])
    test = torch.cat([normal, defect])
    return train, val, test, torch.cat([torch.zeros(len(normal)), torch.ones(len(defect))]).long(), name


METHODS = {
    # --resume: a run killed mid-training continues from its last epoch (a new run where none was started)
    "skipganomaly": lambda a: ["--method", "skipganomaly", "--epochs", str(a.epochs), "--width", str(a.width),
                               "--resume"],
    "knn-pixels": lambda a: ["--method", "knn", "--backbone", "pixels"],
    "knn": lambda a: ["--method", "knn", "--backbone", f"reference:{a.features}"],
    "patchcore": lambda a: ["--method", "patchcore", "--backbone", f"reference:{a.features}"],
    "patchcore-full": lambda a: ["--method", "patchcore", "--backbone", f"reference:{a.features}", "--coreset", "none"],
}
NAMES = {"skipganomaly": "SkipGANomaly (paper score)", "knn-pixels": "kNN (pixels)", "knn": "kNN (CNN features)",
         "patchcore": "PatchCore (CNN features, greedy coreset 10 %)",
         "patchcore-full": "PatchCore (CNN features, no coreset)"}


def write_pngs(folder: Path, images: torch.Tensor, prefix: str = "img") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, x in enumerate(images):
        name = f"{prefix}{i:05d}.png"
        Image.fromarray(x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()).save(folder / name)
        names.append(name)
    return names


def prepare(folder: Path, normal: torch.Tensor, test: torch.Tensor, test_y: torch.Tensor) -> None:
    """normal/ (what anomaly train gets), test/ and labels.csv, written once."""
    if (folder / "labels.csv").is_file():
        return
    write_pngs(folder / "normal", normal)
    names = write_pngs(folder / "test", test)
    (folder / "labels.csv").write_text("".join(f"{n},{int(y)}\n" for n, y in zip(names, test_y)))


def run_method(a, method: str, folder: Path, n_val: int, n_normal: int, size: int, test: torch.Tensor) -> dict:
    out = folder / method
    result_file = out / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    det = out / "detector"
    t = time.perf_counter()
    code = ganaug_main(["anomaly", "train", str(folder / "normal"), "--out", str(det), "--image-size", str(size),
                        "--val-fraction", f"{n_val / n_normal:.6f}", *METHODS[method](a)])
    fit_s = time.perf_counter() - t
    if code != 0:
        raise SystemExit(f"anomaly train failed for {method} in {folder}")
    code = ganaug_main(["anomaly", "score", str(det), str(folder / "test"), "--out", str(out / "scored"),
                        "--labels", str(folder / "labels.csv"), "--no-heatmaps"])
    if code != 0:
        raise SystemExit(f"anomaly score failed for {method} in {folder}")
    metrics = json.loads((out / "scored" / "metrics.json").read_text())
    model = load_detector(det)
    t = time.perf_counter()
    score_images(model, test)  # scoring alone (the CLI's time includes decoding the PNGs)
    per_image = (time.perf_counter() - t) / len(test)
    training = json.loads((det / "config.json").read_text())["training"]
    result = {**{k: metrics[k] for k in ("auroc", "auprc", "f1_at_threshold")}, "fit_s": round(fit_s, 1),
              "score_ms_per_image": round(1000 * per_image, 3), "bank_bytes": training.get("bank_bytes"),
              "bank_rows": training.get("bank_rows"), "threshold_rule": training.get("threshold_rule")}
    result_file.write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=("fashion-mnist", "neu-det", "neu-det-crops"), default="fashion-mnist")
    ap.add_argument("--data", default=None, help="default: ../shared/data/<protocol>")
    ap.add_argument("--work", default="runs/anomaly-bench", help="folder for the images, detectors and results")
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=None,
                    help="default: all (fashion-mnist: all but patchcore-full)")
    ap.add_argument("--epochs", type=int, default=15, help="SkipGANomaly's most epochs")
    ap.add_argument("--classes", type=int, nargs="+", default=None, help="normal classes (default: all)")
    ap.add_argument("--max-train", type=int, default=6000, help="fashion-mnist: normal training images per class")
    ap.add_argument("--image-size", type=int, default=64, help="neu-det: image size")
    ap.add_argument("--width", type=int, default=32, help="SkipGANomaly width")
    ap.add_argument("--features", default="pretrained/cifar10-reference-classifier")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    a.data = a.data or f"../shared/data/{a.protocol.removesuffix('-crops')}"
    methods = a.methods or [m for m in METHODS if not (a.protocol == "fashion-mnist" and m == "patchcore-full")]
    split = {"fashion-mnist": split_fashion_mnist, "neu-det": split_neu_det,
             "neu-det-crops": split_neu_det_crops}[a.protocol]
    classes = a.classes if a.classes is not None else list(range(10 if a.protocol == "fashion-mnist" else 6))
    work = Path(a.work) / (a.protocol + (f"-{a.max_train}" if a.protocol == "fashion-mnist" else ""))
    rows = []
    for c in classes:
        train, val, test, test_y, name = split(a, c)
        folder = work / re.sub(r"[^A-Za-z0-9_-]+", "-", name)
        prepare(folder, torch.cat([train, val]), test, test_y)
        size = train.shape[-1]
        res = {m: run_method(a, m, folder, len(val), len(train) + len(val), size, test) for m in methods}
        rows.append((name, res, (len(train), len(val), int((test_y == 0).sum()), int(test_y.sum()))))
        print(f"{name}: " + ", ".join(f"{m} {r['auroc']:.3f}" for m, r in res.items()), flush=True)

    print(f"\n{a.protocol}; per normal class: "
          + "; ".join(f"{n}: fitted {c[0]}, held out {c[1]}, test {c[2]} normal + {c[3]} anomalous"
                      for n, _, c in rows) + "\n")
    print("AUROC on test:\n")
    print("| normal class | " + " | ".join(NAMES[m] for m in methods) + " |\n|---|" + "---|" * len(methods))
    for name, res, _ in rows:
        print(f"| {name} | " + " | ".join(f"{res[m]['auroc']:.3f}" for m in methods) + " |")
    print("\nMeans over the normal classes (F1 at the threshold each detector stored: its held-out normal "
          "images' 0.99 quantile):\n")
    print("| method | AUROC | AUPRC | F1 at threshold | memory bank (MiB, mean) | fit (s, all classes) | "
          "scoring (ms/image) |\n|---|---|---|---|---|---|---|")
    for m in methods:
        mean = {k: sum(r[m][k] for _, r, _ in rows) / len(rows) for k in ("auroc", "auprc", "f1_at_threshold",
                                                                            "score_ms_per_image")}
        banks = [r[m]["bank_bytes"] for _, r, _ in rows if r[m]["bank_bytes"] is not None]
        bank = f"{sum(banks) / len(banks) / 2**20:.2f}" if banks else "-"
        print(f"| {NAMES[m]} | {mean['auroc']:.3f} | {mean['auprc']:.3f} | {mean['f1_at_threshold']:.3f} | {bank} | "
              f"{sum(r[m]['fit_s'] for _, r, _ in rows):.0f} | {mean['score_ms_per_image']:.2f} |")


if __name__ == "__main__":
    main()
