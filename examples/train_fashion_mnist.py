"""Train a conditional SNGAN on Fashion-MNIST from Python, then draw a per-class grid.

    python examples/train_fashion_mnist.py [--data ../shared/data/fashion-mnist] [--steps 500]

The CLI equivalent is `ganaug train DATA --out RUN_DIR` followed by `ganaug sample RUN_DIR`.
"""

from __future__ import annotations

import argparse

import torch

import ganaug
from ganaug.grid import save_class_grid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/fashion-mnist")
    ap.add_argument("--out", default="runs/example-fmnist")
    ap.add_argument("--steps", type=int, default=500)
    a = ap.parse_args()

    data = ganaug.load_images(a.data, split="train", image_size=32)
    model_config = ganaug.make_config("sngan", data.num_classes, data.class_names,
                                      image_size=32, channels=data.channels)
    run = ganaug.train(data, model_config, ganaug.TrainConfig(steps=a.steps), a.out)

    G = ganaug.load_generator(run)  # the EMA generator
    labels = torch.arange(G.num_classes).repeat_interleave(8)
    images = G.generate(labels, seed=0)
    print("grid:", save_class_grid(images, G.class_names, 8, run / "grid.png"))


if __name__ == "__main__":
    main()
