"""``ganaug bench-downstream``: its options and the call that runs the benchmark."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..errors import GanaugError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..data.loaders import CLASS_FROM
    from ..models import SUPPORTED_IMAGE_SIZES
    from .downstream import CLASSIFIER_INITS, DownstreamConfig
    from .variants import VARIANTS

    d = DownstreamConfig()
    p = sub.add_parser(
        "bench-downstream", help="does a classifier get better on rare classes with ganaug?",
        description="Train the same small ResNet with every classical rebalancer and with ganaug's recipe "
        "(generated images mixed into batches, chosen on validation), several seeds, and report balanced "
        "accuracy on the real test split (a stratified test part is carved first when DATA has no test split). "
        "By default a long-tailed split of DATA's training split; with --as-is, DATA's own class counts.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("data", metavar="DATA", help="a dataset, with or without a test split")
    p.add_argument("--out", required=True, help="report folder (results.json, report.md, plots, kept runs)")
    p.add_argument("--imbalance-ratio", type=float, default=d.imbalance_ratio,
                   help="largest / smallest class size of the long-tailed split")
    p.add_argument("--as-is", action="store_true",
                   help="take DATA's class counts as they are (no long-tailed split imposed)")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction,
                   help="for DATA without a test split: stratified share of DATA held out for test")
    p.add_argument("--seeds", type=int, default=d.seeds,
                   help="classifier seeds per variant (default: 3, or 5 when the training part is so small that "
                   "the minimum steps outlast the epochs)")
    p.add_argument("--n-max", type=int, default=None, help="size of the largest class (default: all it has)")
    p.add_argument("--generator", default=None,
                   help="reuse a generator trained on this training part (checked) instead of training one")
    p.add_argument("--leaky-generator", action="store_true",
                   help="accept a --generator that saw more than the training part (a shipped full-data one): "
                   "its row is reported as a leaky upper bound and never recommended")
    p.add_argument("--generator-init", default=None, metavar="SOURCE",
                   help="fine-tune the generator from SOURCE (a package, hf-hub:org/name[@rev] or a run folder) on "
                   "the training part instead of training it from scratch; a source that saw the test split is "
                   "refused, one that saw the training split needs --leaky-generator")
    p.add_argument("--protocol", default=d.protocol, choices=("none", "same-classes", "new-classes"),
                   help="transfer protocol: cut the training split into a public part (same-classes: half of each "
                   "class; new-classes: the --public-classes) and a disjoint private part, which alone is made "
                   "long-tailed; then --generator public (same classes) or --generator-init public uses a "
                   "generator trained on the public part")
    p.add_argument("--public-classes", nargs="+", default=list(d.public_classes),
                   help="the public part's classes under --protocol new-classes")
    p.add_argument("--public-generator-steps", type=int, default=None,
                   help="steps of the public generator (default: --generator-steps)")
    p.add_argument("--classifier-init", default=d.classifier_init, choices=CLASSIFIER_INITS,
                   help="public: every classifier (baselines and recipe) starts from one trained on the protocol's "
                   "public part instead of random weights (the row an engineer holding the public data would run); "
                   "generated: from one trained on --classifier-init-images generated images per class of the "
                   "benchmark's generator (what a user holding only a Hub generator can do)")
    p.add_argument("--classifier-init-images", type=int, default=d.classifier_init_images,
                   help="with --classifier-init generated: generated images per class the start classifier learns from")
    p.add_argument("--generator-init-class", action="append", default=[], metavar="NEW=SOURCE_CLASS",
                   help="with --generator-init: a class the source never drew starts from this source class, "
                   "'mean' or 'spread' (default: as for ganaug train --init-class); repeatable")
    p.add_argument("--generator-freeze-d", type=int, default=d.generator_freeze_d,
                   help="with --generator-init: FreezeD, the source discriminator's first N blocks stay fixed")
    p.add_argument("--generator-steps", type=int, default=d.generator_steps, help="steps of the generator run")
    p.add_argument("--generator-precision", default=d.generator_precision, choices=("auto", "fp32", "bf16", "fp16"),
                   help="autocast of the generator run (bf16: about twice as fast on a CPU with AVX-512 BF16)")
    p.add_argument("--generator-guide", type=float, default=d.generator_guide,
                   help="weight of the judge's term in the generator's loss (0: none; the judge is the "
                   "balanced-softmax baseline of seed 0, trained first)")
    p.add_argument("--generator-guide-loss", default=d.generator_guide_loss, choices=("ce", "band"),
                   help="the judge's term: its cross-entropy, or a pull back into the band of the real images")
    p.add_argument("--generator-snapshots", type=int, default=d.generator_snapshots,
                   help="keep this many snapshots of the generator and use the best on validation (0: the last)")
    p.add_argument("--classifier-epochs", type=float, default=d.classifier_epochs,
                   help="passes over the real training part for every classifier")
    p.add_argument("--classifier-min-steps", type=int, default=d.classifier_min_steps,
                   help="at least this many steps, whatever the epochs give (small data)")
    p.add_argument("--classifier-steps", type=int, default=None,
                   help="exact steps (overrides --classifier-epochs and --classifier-min-steps)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="classifier batch size")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="share of the training data held out for validation (every choice is made on it)")
    p.add_argument("--variants", nargs="+", default=list(d.variants), choices=VARIANTS, help="variants to run")
    p.add_argument("--recipes", default=None,
                   help="recipe candidates to search on validation: a JSON list of SyntheticRecipe dicts, or a "
                   "file holding one (default: the built-in grid, see the README)")
    p.add_argument("--search-seeds", type=int, default=d.search_seeds, help="seeds per recipe candidate")
    p.add_argument("--kfold", type=int, default=d.kfold,
                   help="candidates (baselines, recipes) that validation cannot separate (a tie, or inside its "
                   "bootstrap noise) are compared by repeated stratified k-fold over training + validation with "
                   "this many folds (0: off, the validation mean decides)")
    p.add_argument("--kfold-repeats", type=int, default=d.kfold_repeats, help="repeats of the k-fold")
    p.add_argument("--kfold-max-images", type=int, default=d.kfold_max_images,
                   help="use the k-fold only on data up to this many training + validation images")
    p.add_argument("--reference", default=None,
                   help="reference classifier folder that judges the generator (default: one trained once on "
                   "the full training split and cached; it never trains or picks a variant)")
    p.add_argument("--eval-n", type=int, default=d.eval_n, help="generated images for the generator's "
                   "evaluation; 0 skips it")
    p.add_argument("--image-size", type=int, default=32, choices=SUPPORTED_IMAGE_SIZES, help="image size")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 = grey, 3 = RGB")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="where classifiers and the generator train: auto (a CUDA GPU "
                   "if there is one), cpu, cuda or cuda:N")
    p.add_argument("--class-from", choices=CLASS_FROM, default="folder",
                   help="where an image's class is written: its folder, or its file name (scratches_12.jpg)")


def run(a: argparse.Namespace) -> None:
    import torch

    from ..data import load_images
    from ..data.loaders import has_split
    from ..eval import ReferenceClassifier
    from ..training.init import parse_init_classes
    from ..training.loop import pick_device
    from .downstream import DownstreamConfig, run_downstream

    if a.threads:
        torch.set_num_threads(a.threads)
    recipes = DownstreamConfig().recipes
    if a.recipes:
        text = Path(a.recipes).read_text() if Path(a.recipes).is_file() else a.recipes
        try:
            recipes = tuple(json.loads(text))
        except json.JSONDecodeError as e:
            raise GanaugError(f"--recipes is neither a JSON list nor a file holding one ({e}).") from None
    load = dict(image_size=a.image_size, channels=a.channels, class_from=a.class_from)
    train = load_images(a.data, split="train", **load)
    # data without a test split of its own loses a stratified test part (--test-fraction)
    test = load_images(a.data, split="test", **load) if a.class_from == "folder" and has_split(a.data, "test") \
        else None
    cfg = dataclasses.replace(
        DownstreamConfig(), imbalance_ratio=None if a.as_is else a.imbalance_ratio, seeds=a.seeds, n_max=a.n_max,
        val_fraction=a.val_fraction, test_fraction=a.test_fraction, classifier_epochs=a.classifier_epochs,
        classifier_min_steps=a.classifier_min_steps,
        classifier_steps=a.classifier_steps, batch_size=a.batch_size, generator_steps=a.generator_steps,
        generator_snapshots=a.generator_snapshots, generator_precision=a.generator_precision,
        generator_guide=a.generator_guide, generator_guide_loss=a.generator_guide_loss,
        leaky_generator=a.leaky_generator, generator_init=a.generator_init,
        generator_freeze_d=a.generator_freeze_d, generator_init_classes=parse_init_classes(a.generator_init_class),
        protocol=a.protocol, public_classes=tuple(a.public_classes),
        classifier_init=a.classifier_init, classifier_init_images=a.classifier_init_images,
        public_generator_steps=a.public_generator_steps, variants=tuple(a.variants), recipes=recipes,
        search_seeds=a.search_seeds, eval_n=a.eval_n,
        kfold=a.kfold, kfold_repeats=a.kfold_repeats, kfold_max_images=a.kfold_max_images)
    reference = ReferenceClassifier.load(a.reference) if a.reference else None
    summary = run_downstream(train, test, cfg, a.out, generator=a.generator, reference=reference,
                             device=pick_device(a.device))
    print((Path(a.out) / "report.md").read_text())
    print(summary["verdict"].get("sentence", ""))
