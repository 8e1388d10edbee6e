"""Balance a long-tailed Fashion-MNIST split with ganaug and train a classifier on it.

1. Build a long-tailed training split: class sizes fall exponentially from --n-max to
   --n-max / --ratio (as in CIFAR-10-LT); the test split stays balanced.
2. Train a conditional SNGAN on that split only (class-balanced sampling and DiffAugment
   switch on by themselves, because the split is small and imbalanced).
3. Train the same small CNN on the real split alone and on `balance(split, generator)`, and
   compare balanced accuracy on the real test split.

    python examples/balance_rare_classes.py [--steps 1500] [--ratio 100] [--n-max 1000]

The defaults take about 20 minutes on 2 CPU cores. This is an example, not a benchmark: one
seed, short training. Whether the generated images help is a measured question.
"""

from __future__ import annotations

import argparse

import torch

import ganaug
from ganaug import balance
from ganaug.data import LabelledImages, load_fashion_mnist
from ganaug.eval.classifier import FitConfig, fit_classifier, predict


def long_tailed(data: LabelledImages, n_max: int, ratio: float) -> LabelledImages:
    keep = []
    for c in range(data.num_classes):
        n_c = int(n_max * ratio ** (-c / (data.num_classes - 1)))
        keep.append(torch.nonzero(data.labels == c).flatten()[:n_c])
    return data.subset(torch.cat(keep))


def balanced_accuracy(model, test: LabelledImages) -> float:
    pred = predict(model, test.images)[1].argmax(1)
    return sum(float((pred[test.labels == c] == c).float().mean()) for c in range(test.num_classes)) / test.num_classes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/fashion-mnist")
    ap.add_argument("--out", default="runs/example-lt")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--ratio", type=float, default=100)
    ap.add_argument("--n-max", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=5)
    a = ap.parse_args()

    train = long_tailed(load_fashion_mnist(a.data, image_size=32), a.n_max, a.ratio)
    test = load_fashion_mnist(a.data, split="test", image_size=32)
    print("long-tailed class sizes:", train.class_counts())

    config = ganaug.make_config("sngan", train.num_classes, train.class_names, image_size=32, channels=1)
    run = ganaug.train(train, config, ganaug.TrainConfig(steps=a.steps), a.out, resume=True)
    generator = ganaug.load_generator(run)

    mixed = balance(train, generator, "not majority", seed=0)
    mixed_images = torch.stack([mixed[i][0] for i in range(len(mixed))])
    mixed_labels = torch.tensor(mixed.targets)
    print("after balance():", {k: v["total"] for k, v in mixed.class_counts().items()})

    fit = FitConfig(epochs=a.epochs)
    plain = fit_classifier(train.images, train.labels, 10, fit)
    balanced = fit_classifier(mixed_images, mixed_labels, 10, FitConfig(epochs=a.epochs))
    print(f"balanced accuracy on the real test split: real only {balanced_accuracy(plain, test):.4f}, "
          f"with ganaug balance() {balanced_accuracy(balanced, test):.4f}")


if __name__ == "__main__":
    main()
