"""Augmentation throughput, albumentations' benchmark method: preloaded images, warm-up, 5 timed
runs, median images/s; one thread, then two. Everything runs side by side in one process.

Generators are default-width SNGANs (random weights: the same cost as trained ones) at 32x32,
grey and RGB. Rows: GANAugment per sample (p=1), GANBatchAugment (p=1, batches of 64), reading
a cached bank (SyntheticDataset with cache=, after one pass), albumentations HorizontalFlip,
ColorJitter and ElasticTransform, torchvision ColorJitter.

    python benchmarks/augment_speed.py [--n 512] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from ganaug import Generator, make_config  # noqa: E402
from ganaug.transforms import SyntheticDataset  # noqa: E402
from ganaug.transforms import GANAugment, GANBatchAugment  # noqa: E402


def median_rate(fn, n: int, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n / statistics.median(times)


def rows_for(channels: int, n: int, runs: int, bank_dir: str) -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    hwc = [rng.integers(0, 256, (32, 32, channels), dtype=np.uint8) for _ in range(n)]
    hwc = [a[:, :, 0] if channels == 1 else a for a in hwc]
    chw = [torch.from_numpy(np.ascontiguousarray(a.reshape(32, 32, channels).transpose(2, 0, 1))) for a in hwc]
    labels = [i % 10 for i in range(n)]
    gen = Generator.from_config(make_config("sngan", 10, image_size=32, channels=channels))
    one = GANAugment(gen, p=1.0, pool=None)  # generated in the call (the default pool: augment_epoch.py)
    batch = GANBatchAugment(gen, p=1.0, pool=None)
    stacked, lab = torch.stack(chw), torch.tensor(labels)
    bank = SyntheticDataset(gen, n // 10, cache=bank_dir)
    bank.images()  # fill the bank once

    def read_bank():
        ds = SyntheticDataset(gen, n // 10, cache=bank_dir)
        for i in range(len(ds)):
            ds[i]

    flip, jitter = A.HorizontalFlip(p=1.0), A.ColorJitter(p=1.0)
    elastic, tv_jitter = A.ElasticTransform(p=1.0), v2.ColorJitter(0.2, 0.2, 0.2, 0.1)
    return [
        ("ganaug GANAugment (per sample)", median_rate(lambda: [one(x, y) for x, y in zip(chw, labels)], n, runs)),
        ("ganaug GANBatchAugment (batch 64)", median_rate(
            lambda: [batch(stacked[i:i + 64], lab[i:i + 64]) for i in range(0, n, 64)], n, runs)),
        ("ganaug cached bank (SyntheticDataset)", median_rate(read_bank, n, runs)),
        ("albumentations HorizontalFlip", median_rate(lambda: [flip(image=a) for a in hwc], n, runs)),
        ("albumentations ColorJitter", median_rate(lambda: [jitter(image=a) for a in hwc], n, runs)),
        ("albumentations ElasticTransform", median_rate(lambda: [elastic(image=a) for a in hwc], n, runs)),
        ("torchvision v2 ColorJitter", median_rate(lambda: [tv_jitter(x) for x in chw], n, runs)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    results = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        for ch in (1, 3):
            with tempfile.TemporaryDirectory() as bank:
                for name, rate in rows_for(ch, a.n, a.runs, bank):
                    results[(name, ch, threads)] = rate
    names = list(dict.fromkeys(k[0] for k in results))
    print(f"torch {torch.__version__}, albumentations {A.__version__}; images/s (median of {a.runs} runs, "
          f"{a.n} images of 32x32)\n")
    print("| transform | grey, 1 thread | RGB, 1 thread | grey, 2 threads | RGB, 2 threads |")
    print("|---|---|---|---|---|")
    for name in names:
        vals = " | ".join(f"{results[(name, ch, th)]:,.0f}" for th in (1, 2) for ch in (1, 3))
        print(f"| {name} | {vals} |")
    ref = "albumentations ColorJitter"
    for ch in (1, 3):
        r = results[("ganaug GANBatchAugment (batch 64)", ch, 1)] / results[(ref, ch, 1)]
        print(f"\nGANBatchAugment / albumentations ColorJitter, {'grey' if ch == 1 else 'RGB'}, 1 thread: {r:.2f}x")


if __name__ == "__main__":
    main()
