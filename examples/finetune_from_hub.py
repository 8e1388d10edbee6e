"""From the Hub to your data: pull a generator, fine-tune it on your classes, balance the rare ones.

1. Pull a generator package (`hf-hub:org/name@rev`, or a folder such as the shipped
   `pretrained/fashion-mnist-sngan`).
2. Your data: here a long-tailed slice of Fashion-MNIST with some classes renamed, so that the
   source knows some classes by name and others not (a new class starts from a source class of its
   own that your data does not hold, from the one you name with init_classes, or, when none is left,
   from the source classes' mean spread apart).
3. Fine-tune: `ganaug.train(data, None, TrainConfig(...), out, init=SOURCE)` takes the source's
   architecture and weights (D too, if the package carries one: `ganaug export --with-discriminator`;
   the shipped packages do not, so D starts from scratch here, and FreezeD, `freeze_d=N`, which keeps
   the source D's first blocks, is refused).
4. Balance: the recipe's SyntheticMix draws generated images of the rare classes into batches.

    python examples/finetune_from_hub.py [--source hf-hub:org/name] [--steps 300] [--out runs/example-finetune]

About a minute per 100 steps on 2 CPU cores. An example, not a measurement: what fine-tuning brings
is measured by `ganaug bench-downstream --protocol ... --generator-init public`.
"""

from __future__ import annotations

import argparse

import ganaug
from ganaug.bench import long_tailed_split
from ganaug.eval.classifier import FitConfig
from ganaug.longtail import SyntheticMix, SyntheticRecipe, fit_judge


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default="pretrained/fashion-mnist-sngan")
    ap.add_argument("--data", default="../shared/data/fashion-mnist")
    ap.add_argument("--out", default="runs/example-finetune")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--ratio", type=float, default=100)
    a = ap.parse_args()

    # your data: a long-tailed slice whose last two classes carry names the source never saw
    data = long_tailed_split(ganaug.load_images(a.data, image_size=32), a.ratio, n_max=1000)
    data.class_names = data.class_names[:-2] + ["handbag", "boot"]

    # fine-tune: the source's architecture, its weights, classes matched by name
    run = ganaug.train(data, None, ganaug.TrainConfig(steps=a.steps), f"{a.out}/gan",
                       init=a.source, init_classes={"handbag": "Bag", "boot": "Ankle boot"})
    G = ganaug.load_generator(run)
    G.sample_grid(per_class=8, seed=0).save(f"{a.out}/grid.png")

    # balance: generated images of the rare classes in the judge's band, a quarter of each batch
    judge = fit_judge(data.images, data.labels, data.num_classes, FitConfig(epochs=3))
    recipe = SyntheticRecipe(filter="band", band_high=0.5, fill_to=1.0, finish=0.2)  # DEFAULT_RECIPES' last
    mix = SyntheticMix(data, G, recipe, judge=judge)
    counts = {n: r["generated"] for n, r in mix.report().items()}
    print(f"fine-tuned {run}; grid in {a.out}/grid.png; generated images kept per class: {counts}")
    images, labels, weights = mix.tensors()  # or DataLoader(mix, batch_sampler=mix.batch_sampler(...))
    print(f"{len(images)} images ({int((weights < 1).sum())} generated) for the classifier; see "
          "examples/longtail_recipe.py for the training loop")


if __name__ == "__main__":
    main()
