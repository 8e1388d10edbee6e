"""ganaug's long-tail recipe in a plain PyTorch loop, next to the same loop without generated images.

1. A long-tailed Fashion-MNIST split (--ratio), a generator trained on it only (or --generator).
2. A judge: a small CNN trained on the real split with the Balanced Softmax loss.
3. Two classifiers, same network, steps and seed: Balanced Softmax on real images only, and
   the SyntheticMix recipe (a quarter of each batch generated, judged, down-weighted).
4. Balanced accuracy of both on the real test split.

    python examples/longtail_recipe.py [--generator RUN_OR_PACKAGE] [--gan-steps 1500] [--steps 2000]
        [--recipe '{"finish": 0.2}']

This is an example, not a benchmark (one seed, no validation search): `ganaug bench-downstream`
is the measurement.
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch
from torch.utils.data import DataLoader

import ganaug
from ganaug.bench import SmallResNet, long_tailed_split
from ganaug.eval.classifier import FitConfig
from ganaug.longtail import SyntheticMix, SyntheticRecipe, balanced_accuracy, fit_judge, log_prior, logit_adjusted_loss


def train(model: torch.nn.Module, batches, steps: int, loss_of, mix: SyntheticMix | None = None) -> torch.nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    model.train()
    for step, (x, y, w) in enumerate(batches):
        x = x.float() / 127.5 - 1
        if mix is not None:
            mix.before_step(model, step)  # a head-only finish freezes the body
            x, y, w = mix.remix(x, y, w, step)  # Remix, if the recipe asks for it
        loss = loss_of(model(x), y, w, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def test_accuracy(model: torch.nn.Module, test: ganaug.LabelledImages) -> float:
    pred = torch.cat([model(x.float() / 127.5 - 1).argmax(1) for x in test.images.split(512)])
    return balanced_accuracy(pred, test.labels, test.num_classes)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/fashion-mnist")
    ap.add_argument("--out", default="runs/example-longtail")
    ap.add_argument("--ratio", type=float, default=100)
    ap.add_argument("--generator", default=None, help="a generator trained on this long-tailed split only")
    ap.add_argument("--gan-steps", type=int, default=1500)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--judge-epochs", type=int, default=10)
    ap.add_argument("--recipe", default="{}", help="SyntheticRecipe fields as JSON, e.g. '{\"finish\": 0.2}'")
    a = ap.parse_args()

    real = long_tailed_split(ganaug.load_images(a.data, image_size=32), a.ratio)
    test = ganaug.load_images(a.data, split="test", image_size=32)
    generator = a.generator
    if generator is None:
        config = ganaug.make_config("sngan", real.num_classes, real.class_names, image_size=32, channels=1)
        generator = str(ganaug.train(real, config, ganaug.TrainConfig(steps=a.gan_steps), f"{a.out}/gan", resume=True))

    # --- the recipe, as a user writes it ---------------------------------------------------------
    judge = fit_judge(real.images, real.labels, real.num_classes, FitConfig(epochs=a.judge_epochs))
    recipe = SyntheticRecipe.from_dict(json.loads(a.recipe))
    mix = SyntheticMix(real, generator, recipe, judge=judge, cache=f"{a.out}/bank")
    loader = DataLoader(mix, batch_sampler=mix.batch_sampler(a.steps, batch_size=128))
    torch.manual_seed(0)
    with_gan = train(SmallResNet(1, real.num_classes), loader, a.steps, mix.loss, mix)
    # ----------------------------------------------------------------------------------------------

    prior = log_prior(real.class_counts())
    real_only = DataLoader([(x, y, 1.0) for x, y in real], batch_size=128, shuffle=True,
                           generator=torch.Generator().manual_seed(0))
    epochs = itertools.islice(itertools.chain.from_iterable(itertools.repeat(real_only)), a.steps)
    torch.manual_seed(0)
    baseline = train(SmallResNet(1, real.num_classes), epochs, a.steps,
                     lambda logits, y, w, step: logit_adjusted_loss(logits, y, prior))
    print(mix.report())
    print(f"balanced accuracy on test: balanced softmax {test_accuracy(baseline, test):.4f}, "
          f"with ganaug's recipe {test_accuracy(with_gan, test):.4f}")


if __name__ == "__main__":
    main()
