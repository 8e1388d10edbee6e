"""Every package shipped in pretrained/ loads from its safetensors + config.json, has a card, and
its generator makes images its dataset's shipped judge recognises; every shipped judge scores its
recorded accuracy on the real test split (so untrained or mismatched weights cannot slip in)."""

import json
from pathlib import Path

import pytest
import torch

from ganaug import load_generator
from ganaug.data import load_split
from ganaug.eval.classifier import accuracy, predict
from ganaug.eval.metrics import class_fidelity
from ganaug.eval.reference import ReferenceClassifier

from .conftest import DATA_DIR

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"


def folders(kind: str) -> list[Path]:
    return sorted(p for p in PRETRAINED.iterdir()
                  if (p / "config.json").is_file() and json.loads((p / "config.json").read_text()).get("kind") == kind)


GENERATORS = folders("ganaug-generator")
# a floor far above chance (0.1) and below each card's class fidelity on 10000 images
FIDELITY_FLOOR = {"fashion-mnist": 0.8, "cifar10": 0.4, "neu-det": 0.45}


def test_the_shipped_folders_are_found():
    assert {p.name for p in GENERATORS} >= {"fashion-mnist-sngan", "fashion-mnist-lite", "cifar10-biggan-lite",
                                        "cifar10-sngan", "neu-det-sngan"}


@pytest.mark.parametrize("folder", GENERATORS, ids=lambda p: p.name)
def test_shipped_generator_loads_and_its_judge_recognises_its_images(folder):
    g = load_generator(folder)
    assert (folder / "README.md").is_file() and (folder / "samples.png").is_file()
    dataset = next(d for d in FIDELITY_FLOOR if folder.name.startswith(d + "-"))
    judge = ReferenceClassifier.load(PRETRAINED / f"{dataset}-reference-classifier")
    assert judge.config.class_names == g.class_names
    labels = torch.arange(g.num_classes).repeat_interleave(20)
    images = g.generate(labels.tolist(), seed=0)
    assert images.shape == (len(labels), g.channels, g.image_size, g.image_size) and images.dtype == torch.uint8
    _, logits = predict(judge.model, images)
    fidelity, _ = class_fidelity(logits, labels, g.num_classes)
    assert fidelity >= FIDELITY_FLOOR[dataset], f"{folder.name}: class fidelity {fidelity:.2f}"


JUDGES = folders("ganaug-reference-classifier")
# where each judge's real test split comes from, loaded as pretrained/README.md's commands load it
JUDGE_DATA = {"fashion-mnist": ("fashion-mnist", {}), "cifar10": ("cifar10-jpeg", {}),
              "neu-det": ("neu-det", {"class_from": "filename", "test_fraction": 0.2})}


def test_the_shipped_judges_are_found():
    assert {p.name for p in JUDGES} >= {f"{d}-reference-classifier" for d in JUDGE_DATA}


# reading CIFAR-10's 10,000 test JPEGs takes most of a minute on 2 cores: those run with -m slow
@pytest.mark.parametrize("folder", [pytest.param(p, marks=pytest.mark.slow) if p.name.startswith("cifar10-") else p
                                    for p in JUDGES], ids=lambda p: p.name)
def test_shipped_judge_scores_its_recorded_accuracy_on_the_real_test_split(folder):
    judge = ReferenceClassifier.load(folder)
    name, kw = next(v for d, v in JUDGE_DATA.items() if folder.name.startswith(d + "-"))
    c = judge.config
    test = load_split(DATA_DIR / name, split="test", image_size=c.image_size, channels=c.channels, **kw)
    assert test.fingerprint() == {k: v for k, v in c.tested_on.items() if k != "source"}
    # the same images and weights; other CPUs' kernels may flip a prediction or two
    assert accuracy(judge.model, test.images, test.labels) == pytest.approx(judge.accuracy, abs=0.002)
