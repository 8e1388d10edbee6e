"""``bench-downstream``: does a classifier get better on rare classes with ganaug?

One readable pipeline: (1) splits: a long-tailed training part of the data's training split
(or the user's data as it is), a validation part carved from it, the real test split untouched;
(2) a generator trained on the training part only; (3) every classical rebalancer and ganaug's
recipe candidates, the same ResNet and schedule, several seeds; (4) every choice (post-hoc tau,
the recipe, the best baseline) made on validation, and the test figure reported once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from ..version import __version__
from ..data.dataset import LabelledImages
from ..errors import GanaugError
from ..artifacts import weights_digest
from ..hub.generator import Generator
from ..longtail import SyntheticMix, SyntheticRecipe, adjust_logits, balanced_accuracy, choose_tau, log_prior
from .bootstrap import encode_hits
from .choice import choose
from .kfold import KFold
from .store import RunStore
from .generator_source import provenance, train_generator, train_public_generator
from .protocols import PROTOCOLS, public_private
from .report import WITHOUT_GENERATED, verdict, write_report
from .resnet import SmallResNet
from ..data.splits import carve_test, carve_validation
from .splits import long_tailed_split
from ..eval.classifier import logits_of
from ..training.rundir import list_snapshots
from .variants import CLASSICAL, VARIANTS, classifier_steps, train_classifier

CLASSIFIER_INITS = ("none", "public", "generated")
PUBLIC_CLASSIFIER_SEED = 1000  # not a variant's seed: a run's start never coincides with its own random init

# The recipe space searched on validation: the default recipe and one change at a time. Small,
# because every candidate is a full classifier run (about 5-10 CPU-minutes at 32 px); pass more
# with --recipes (weight, share, cap and the 'confidence' filter are the obvious next ones).
DEFAULT_RECIPES: tuple[dict, ...] = tuple(dataclasses.replace(SyntheticRecipe(), **change).to_dict() for change in (
    {},                  # balanced softmax, 25 % generated, weight 0.5, judge rejects < 0.9, cap 4x
    {"filter": "none"},  # trust the generator
    {"start": 0.8},      # M2m: generated images only in the last fifth
    {"finish": 0.2},     # end on real data only
    {"finish": 0.2, "finish_layers": "head"},  # SYNAuG: retrain the last layer on balanced real data
    {"filter": "soft"},  # label repair: learn the judge's distribution for generated images
    {"remix": 1.0},      # Remix: mixed pairs take the rarer class's label
    {"rejected": "real"},  # M2m: a rejected image's slot takes a real one, no redraw of the few survivors
    # the closer half of DiffuLT's band, each class filled towards the largest, a real-only finish: the
    # validation choice among 13 on CIFAR-10-LT R=100 (docs/bench/cifar-lt100-band), 0.8 points under
    # posthoc-la on test; wider bands and larger generated shares lost more
    {"filter": "band", "band_high": 0.5, "fill_to": 1.0, "finish": 0.2},
    # the wider band with half of every batch generated: the validation choice on Fashion-MNIST-LT at
    # R = 100 (docs/bench/fmnist-lt100-band, +0.30 over post-hoc on test, 5 seeds) and R = 1000
    # (docs/bench/fmnist-lt1000: first of every variant on test, though validation preferred post-hoc)
    {"filter": "band", "band_high": 0.95, "fill_to": 1.0, "share": 0.5, "finish": 0.2},
))


@dataclass
class DownstreamConfig:
    imbalance_ratio: float | None = 100.0  # None: take the data's own class counts as they are
    seeds: int | None = None  # None: 3, or 5 on small data (resolve_seeds)
    n_max: int | None = None  # size of the largest class; default: as many as it has
    val_fraction: float = 0.1
    test_fraction: float = 0.2  # only for data without a test split
    # passes over the real training part; the schedule ends (one-cycle). 40, because doubling 20 changed
    # the ranking on Fashion-MNIST-LT R=100 (docs/bench/fmnist-lt100-40ep); 40 -> 80 on CIFAR-10-LT R=100,
    # seed 0 (docs/bench/cifar-lt100-80ep) kept the verdict and the top three
    classifier_epochs: float = 40.0
    # small data (a few hundred images) would get a few hundred steps from epochs alone: not converged
    classifier_min_steps: int = 1500
    classifier_steps: int | None = None  # overrides classifier_epochs and classifier_min_steps
    batch_size: int = 128
    lr: float = 2e-3
    width: int = 16
    translate: int = 2  # random shifts, the one augmentation every variant gets
    channels_last: bool = True
    generator_steps: int = 3000
    generator_precision: str = "auto"  # the generator run's autocast (bf16 roughly halves a step on AVX-512 BF16)
    # a frozen judge (the balanced-softmax baseline of seed 0) in the generator's loss with this weight
    # (TrainConfig.guide_weight; 0: none) and term ("ce" or "band", ganaug/training/guide.py)
    generator_guide: float = 0.0
    generator_guide_loss: str = "ce"
    # fine-tune the generator from this package / hf-hub source / run folder instead of training from
    # scratch (ganaug/training/init.py), its discriminator's first generator_freeze_d blocks fixed
    generator_init: str | None = None
    generator_freeze_d: int = 0
    # with generator_init: {new class: source class or "mean"} for classes the source never drew (else each
    # starts from a source class of its own, ganaug/training/init.py)
    generator_init_classes: dict[str, str] = dataclasses.field(default_factory=dict)
    # a transfer protocol (ganaug/bench/protocols.py): the training split cut into a public part and a
    # disjoint private one, which alone is made long-tailed; "--generator public" / "--generator-init
    # public" use a generator trained on the public part (public_generator_steps, default generator_steps)
    protocol: str = "none"
    public_classes: tuple[str, ...] = ()
    public_generator_steps: int | None = None
    # "public": every classifier (baselines and recipe) starts from one trained on the public part (plain
    # cross-entropy, the epochs rule above; its head kept when it drew the same classes) instead of random
    # weights: what an engineer holding the public data would do, and the honest row to beat
    # "generated": every classifier starts from one trained the same way on classifier_init_images generated
    # images per class of the benchmark's generator: the pretraining open to a user who holds a Hub
    # generator but not its data
    classifier_init: str = "none"
    classifier_init_images: int = 3000
    # keep this many evenly spaced snapshots of the generator and use the one that scores best on
    # validation (per-class fidelity and recall in the judge's features); 0: the last step
    generator_snapshots: int = 0
    snapshot_images_per_class: int = 100  # generated images per class that score each snapshot
    # accept a --generator that saw more than the training part (a shipped full-data one): its recipe
    # row is then a leaky upper bound, labelled so in the report and never recommended
    leaky_generator: bool = False
    variants: tuple[str, ...] = VARIANTS
    recipes: tuple[dict, ...] = DEFAULT_RECIPES
    search_seeds: int = 1  # seeds per recipe candidate in the validation search
    # candidates that validation cannot separate (ties, or inside its bootstrap noise) are compared by
    # repeated stratified k-fold over training + validation (choice.py), on data up to kfold_max_images
    kfold: int = 3  # folds (0: off; the validation mean then decides)
    kfold_repeats: int = 1
    kfold_max_images: int = 3000
    eval_n: int = 10000  # generated images for the generator's evaluation (0: skip it)


def prepare_splits(train_full: LabelledImages, test: LabelledImages | None, cfg: DownstreamConfig
                   ) -> tuple[LabelledImages, LabelledImages, LabelledImages]:
    """(training part, validation part, test). Data without a test split first loses a stratified
    test part (``test_fraction``, the same for every run). The rest is made long-tailed when
    ``imbalance_ratio`` is set, else taken as it is; the validation part is carved from that."""
    return prepare_parts(train_full, test, cfg)[1:]


def split_test(data: LabelledImages, test: LabelledImages | None, cfg: DownstreamConfig
               ) -> tuple[LabelledImages, LabelledImages]:
    """(training split, test split): ``test`` when given, else a stratified test part carved from ``data``
    (``test_fraction``); nothing trained from the training split ever sees the test images."""
    if test is not None:
        return data, test
    small = [f"{data.class_names[c]} ({n})" for c, n in enumerate(data.class_counts()) if n < 3]
    if small:
        raise GanaugError(f"classes {', '.join(small)} have fewer than 3 images, too few to carve a training, "
                          "a validation and a test part; add images or drop those classes.")
    return carve_test(data, cfg.test_fraction)


def prepare_parts(train_full: LabelledImages, test: LabelledImages | None, cfg: DownstreamConfig
                  ) -> tuple[LabelledImages | None, LabelledImages, LabelledImages, LabelledImages]:
    """(public part or None, training part, validation part, test): :func:`prepare_splits`, and under
    a transfer protocol the public part, split off before the rest is made long-tailed."""
    train_full, test = split_test(train_full, test, cfg)
    public = None
    if cfg.protocol != "none":
        public, train_full = public_private(train_full, cfg.protocol, cfg.public_classes)
        test = _classes_of(test, train_full.class_names)
    lt = train_full if cfg.imbalance_ratio is None else long_tailed_split(train_full, cfg.imbalance_ratio, cfg.n_max)
    lt_train, val = carve_validation(lt, cfg.val_fraction)
    short = [lt.class_names[c] for c, n in enumerate(val.class_counts()) if n == 0]
    if short:
        raise GanaugError(f"classes {short} have no validation image (too few images for val_fraction "
                          f"{cfg.val_fraction:g}); every choice is made on validation, so each class needs "
                          "at least two images.")
    return public, lt_train, val, test


def _classes_of(data: LabelledImages, names: list[str]) -> LabelledImages:
    """``data`` restricted to classes ``names`` (the private classes of a new-classes protocol)."""
    return data if list(names) == data.class_names else data.select_classes(list(names))


def check_config(cfg: DownstreamConfig, generator) -> list[SyntheticRecipe]:
    """Everything about the settings that can be wrong, said before any training; the recipe candidates."""
    bad = [v for v in cfg.variants if v not in VARIANTS]
    if bad:
        raise GanaugError(f"unknown variants {bad}; choose from {list(VARIANTS)}.")
    if not cfg.recipes and "ganaug-recipe" in cfg.variants:
        raise GanaugError("ganaug-recipe needs at least one recipe candidate.")
    recipes = [SyntheticRecipe.from_dict(r) for r in cfg.recipes]  # bad recipes fail before any training
    if cfg.protocol not in PROTOCOLS:
        raise GanaugError(f"protocol must be one of {PROTOCOLS}, got {cfg.protocol!r}.")
    if "public" in (generator, cfg.generator_init) and cfg.protocol == "none":
        raise GanaugError("'public' names the generator of a transfer protocol's public part: pass --protocol "
                          "same-classes or new-classes too.")
    if cfg.classifier_init not in CLASSIFIER_INITS:
        raise GanaugError(f"classifier_init must be one of {CLASSIFIER_INITS}, got {cfg.classifier_init!r}.")
    if cfg.classifier_init == "public" and cfg.protocol == "none":
        raise GanaugError("--classifier-init public starts every classifier from one trained on a transfer "
                          "protocol's public part: pass --protocol same-classes or new-classes too.")
    if cfg.classifier_init == "generated" and (cfg.generator_snapshots or cfg.generator_guide > 0):
        raise GanaugError("--classifier-init generated trains its start classifier on the generator's images, but "
                          "--generator-snapshots and --generator-guide need a judge (a classifier of this folder) "
                          "before the generator exists; leave them out, or run them in another --out folder.")
    if cfg.classifier_init == "generated" and cfg.classifier_init_images < 1:
        raise GanaugError(f"classifier_init_images must be at least 1, got {cfg.classifier_init_images}.")
    if cfg.generator_init_classes and not cfg.generator_init:
        raise GanaugError("--generator-init-class says which source class a new class starts from: give "
                          "--generator-init SOURCE too.")
    if cfg.generator_freeze_d and not cfg.generator_init:
        raise GanaugError("--generator-freeze-d keeps a source discriminator's first blocks fixed: give "
                          "--generator-init SOURCE too (a source that carries a discriminator).")
    if generator is not None and cfg.generator_init:
        raise GanaugError("--generator uses a generator as it is and --generator-init fine-tunes one on the training "
                          "part; give one of them.")
    # a candidate listed twice is one candidate
    return list({recipe_name(r): r for r in recipes}.values())


def run_downstream(train_full: LabelledImages, test: LabelledImages | None, cfg: DownstreamConfig,
                   out_dir: str | Path, *, generator=None, reference=None, device: str | torch.device = "cpu",
                   progress: bool = True) -> dict:
    """The whole benchmark; writes results.json, report.md and plots into ``out_dir``. Classifiers
    and the generator train on ``device``; kept runs do not depend on it (their records name the machine).

    ``test=None`` with ``imbalance_ratio=None`` carves a stratified test part from the data.
    ``generator``: a generator (or its source) to use as it is instead of training one on the training
    part. ``reference`` (a :class:`~ganaug.eval.ReferenceClassifier`) only judges the generator in
    ``out_dir/generator-eval``; no classifier variant ever sees it or the data it was trained on.
    """
    recipes = check_config(cfg, generator)
    bench = _Benchmark(train_full, test, cfg, Path(out_dir), device, progress)
    gan = search = recipe_runs = None
    if cfg.classifier_init == "generated":  # the generator first: every classifier starts from its images
        gan = bench.generator(generator, reference)
        bench.start_from_generated(gan)
    # 2. the baselines, seed by seed, so that a partial benchmark already holds every variant of the first seeds
    results = bench.baselines()
    if "ganaug-recipe" in cfg.variants:
        # 3. the generator, 4. the recipe chosen on validation, its seeds, and the recipe without generated images
        gan = gan or bench.generator(generator, reference)
        recipe_runs = _Recipes(bench, gan)
        search = recipe_runs.search(recipes, results)
    baseline_choice = bench.best_baseline(results, recipe_runs)
    summary = bench.summary(results, gan, search, baseline_choice)
    (bench.out / "results.json").write_text(json.dumps(summary, indent=2))
    write_report(summary, bench.out)
    return summary


class _Scorer:
    """A classifier's figures on test and validation: balanced and rare-class accuracy, per class,
    confusion, and which images it got right (for the paired bootstrap)."""

    def __init__(self, counts: list[int], val: LabelledImages, test: LabelledImages):
        self.val, self.test, self.k = val, test, len(counts)
        self.prior = log_prior(counts)
        self.rare = sorted(range(self.k), key=lambda c: counts[c])[: max(1, self.k // 3)]

    def __call__(self, model: SmallResNet, tau: float = 0.0) -> dict:
        return self._figures(logits_of(model, self.val.images), logits_of(model, self.test.images), tau)

    def posthoc(self, model: SmallResNet) -> dict:
        """Post-hoc logit adjustment, its tau chosen on validation."""
        val_logits, test_logits = logits_of(model, self.val.images), logits_of(model, self.test.images)
        tau, _ = choose_tau(val_logits, self.val.labels, self.prior)
        return self._figures(val_logits, test_logits, tau)

    def _figures(self, val_logits: torch.Tensor, test_logits: torch.Tensor, tau: float) -> dict:
        val, test, k = self.val, self.test, self.k
        pred = adjust_logits(test_logits, self.prior, tau).argmax(1)
        bal, per = balanced_accuracy(pred, test.labels, k)
        val_pred = adjust_logits(val_logits, self.prior, tau).argmax(1)
        val_bal, _ = balanced_accuracy(val_pred, val.labels, k)
        conf = torch.zeros(k, k, dtype=torch.int64)
        conf.index_put_((test.labels, pred), torch.ones_like(pred), accumulate=True)
        return {"balanced_accuracy": bal, "val_balanced_accuracy": val_bal, "per_class": per,
                "rare_accuracy": sum(per[c] for c in self.rare) / len(self.rare), "confusion": conf.tolist(),
                "tau": tau, "test_hits": encode_hits(pred == test.labels),
                "val_hits": encode_hits(val_pred == val.labels)}


def _normalise(key: dict) -> dict:
    """A kept run's key brought up to date: a recipe saved before a field existed has its default."""
    if "recipe" in key:
        key = {**key, "recipe": SyntheticRecipe.fields_with_defaults(key["recipe"])}
    return key


@dataclass
class _GeneratorPart:
    """The benchmark's generator and what is known about it."""

    gen: Generator
    source: str | Path | None  # a run folder or package, when it has one (snapshots are chosen from it)
    trained_on: bool | str | None
    leaky: bool
    init: str | None = None
    init_source: dict | None = None
    snapshot_choice: dict | None = None
    eval: dict | None = None

    def record(self) -> dict:
        gen = self.gen
        return {"source": gen.source, "trained_on_training_part": self.trained_on, "leaky": self.leaky,
                "trained_on": (gen.metadata.get("training") or {}).get("data"),
                "fine_tuned_from": self.init_source and {"init": self.init, **self.init_source},
                "snapshot_choice": self.snapshot_choice, "eval": self.eval}


class _Benchmark:
    """One benchmark folder: its parts (1. splits), its store of finished runs, and the runs of
    the baselines; every finished run is kept (store.py), so a killed benchmark continues."""

    def __init__(self, train_full: LabelledImages, test: LabelledImages | None, cfg: DownstreamConfig, out: Path,
                 device: str | torch.device, progress: bool):
        out.mkdir(parents=True, exist_ok=True)
        self.out, self.device = out, device
        self.log = (lambda m: print(m, flush=True)) if progress else (lambda m: None)
        self.progress = progress
        # data without a test split loses its test part first: the reference classifier and a generator's
        # provenance check read train_full, which must not hold the test images
        self.train_full, test = split_test(train_full, test, cfg)
        self.public, self.lt_train, self.val, self.test = prepare_parts(self.train_full, test, cfg)
        counts = self.lt_train.class_counts()
        self.steps = classifier_steps(cfg, len(self.lt_train))
        self.log(f"training part: {counts}; validation: {self.val.class_counts()}; test: {self.test.class_counts()}; "
                 f"{self.steps} classifier steps of {cfg.batch_size}; image size {self.lt_train.size_note()}")
        self.cfg, self.seeds_note = resolve_seeds(cfg, len(self.lt_train))
        self.log(self.seeds_note)
        self.store = RunStore(out / "runs", lambda: SmallResNet(self.lt_train.channels, len(counts), cfg.width),
                              log=self.log, machine=machine, normalise=_normalise)
        self.score = _Scorer(counts, self.val, self.test)
        self.schedule = {"steps": self.steps, **{f: getattr(cfg, f) for f in
                                                 ("batch_size", "lr", "width", "translate", "channels_last")}}
        self._start_from(*(self.public_classifier(self.schedule) if cfg.classifier_init == "public" else (None, None)))

    def _start_from(self, init: dict[str, torch.Tensor] | None, record: dict | None) -> None:
        """Every classifier from here on starts from ``init`` (None: random weights); ``record`` names the
        start in every run's key, so that a pretrained start is another run."""
        schedule = self.schedule if record is None else {**self.schedule, "init": record}
        self.init = init
        self.base_key = {"train": self.lt_train.fingerprint(), "val": self.val.fingerprint(), "schedule": schedule}
        # when validation cannot separate candidates, k-fold over training + validation decides (choice.py)
        self.kfold_skipped = KFold.skipped(self.cfg, len(self.lt_train) + len(self.val))
        self.folds = None if self.kfold_skipped else KFold(self.lt_train, self.val, self.cfg, self.store, schedule,
                                                           self.device, self.init)
        self.salt = json.dumps(self.base_key, sort_keys=True)  # a tie's draw: seeded by the data, never by list order

    def start_from_generated(self, gan: "_GeneratorPart") -> None:
        """``classifier_init="generated"``: every classifier from here on starts from one trained with plain
        cross-entropy (the epochs rule) on ``classifier_init_images`` generated images per class of the
        benchmark's generator, kept as ``runs/generated-classifier`` and scored like any run (on real
        validation and test images it never saw)."""
        from safetensors.torch import load_file

        from ..transforms import SyntheticDataset

        cfg, n, gen = self.cfg, self.cfg.classifier_init_images, gan.gen
        steps = classifier_steps(cfg, n * gen.num_classes)
        key = {"generator": weights_digest(gen.net), "images_per_class": n, "variant": "plain",
               "schedule": {**self.schedule, "steps": steps}, "seed": PUBLIC_CLASSIFIER_SEED}

        def train() -> SmallResNet:
            bank = SyntheticDataset(gen, n, seed=PUBLIC_CLASSIFIER_SEED)
            data = LabelledImages(bank.images(), bank.labels, gen.class_names, f"{gen.source} (generated)")
            data.require(self.lt_train.channels, self.lt_train.image_size, self.lt_train.class_names, "the benchmark")
            return train_classifier("plain", data, cfg, PUBLIC_CLASSIFIER_SEED, device=self.device)

        self.log(f"generated classifier: {steps} steps on {n} generated images per class")
        self.store.run("generated-classifier", key, train, self.score, need_weights=True)
        path = self.store.weights("generated-classifier")
        self._start_from(load_file(str(path)), {"generated_classifier": hashlib.sha256(path.read_bytes()).hexdigest(),
                                                "classes": gen.class_names, "images_per_class": n})

    def public_classifier(self, schedule: dict) -> tuple[dict[str, torch.Tensor], dict]:
        """The classifier every run starts from under ``classifier_init="public"``: plain cross-entropy on
        the public part, the same schedule rule (kept as ``runs/public-classifier``); (its weights, what
        names it in the runs' keys). It is scored on its own training part: the test split is the
        private classes', and nothing is chosen on this figure."""
        from safetensors.torch import load_file

        public, cfg = self.public, self.cfg
        steps = classifier_steps(cfg, len(public))
        key = {"public": public.fingerprint(), "schedule": {**schedule, "steps": steps}, "variant": "plain",
               "seed": PUBLIC_CLASSIFIER_SEED}
        k = public.num_classes

        def on_training_part(model: SmallResNet) -> dict:
            bal, per = balanced_accuracy(logits_of(model, public.images).argmax(1), public.labels, k)
            return {"balanced_accuracy": bal, "val_balanced_accuracy": bal, "per_class": per,
                    "scored_on": "the public part (its own training data)"}

        self.log(f"public classifier: {steps} steps on the public part {public.class_counts()}")
        self.store.run("public-classifier", key, lambda: train_classifier("plain", public, cfg, PUBLIC_CLASSIFIER_SEED,
                                                                       device=self.device), on_training_part,
                       need_weights=True)
        path = self.store.weights("public-classifier")
        return load_file(str(path)), {"public_classifier": hashlib.sha256(path.read_bytes()).hexdigest(),
                                      "classes": public.class_names}

    # -- the baselines ----------------------------------------------------------------------------
    def classical(self, variant: str, seed: int, need_weights: bool = False) -> dict:
        """A classical variant's run (kept, or trained now)."""
        if variant == "posthoc-la":
            return self.posthoc(seed)
        return self.store.run(f"{variant}-seed{seed}", {**self.base_key, "variant": variant, "seed": seed},
                              lambda: train_classifier(variant, self.lt_train, self.cfg, seed, device=self.device,
                                                       init=self.init),
                              self.score, need_weights=need_weights)

    def posthoc(self, seed: int) -> dict:
        """The plain model of this seed, its logits adjusted post hoc (tau chosen on validation);
        the plain weights are needed only while the adjusted run is not kept."""
        key = {**self.base_key, "variant": "plain", "seed": seed, "posthoc": True}
        self.classical("plain", seed, need_weights=self.store.record(f"posthoc-la-seed{seed}", key) is None)
        return self.store.run(f"posthoc-la-seed{seed}", key, lambda: self.store.load(f"plain-seed{seed}"),
                              self.score.posthoc, keep_weights=False)

    def baselines(self) -> dict[str, dict]:
        chosen = [v for v in self.cfg.variants if v in CLASSICAL]
        per_seed = [{v: self.classical(v, s) for v in chosen} for s in range(self.cfg.seeds)]
        return {v: summarise([runs[v] for runs in per_seed]) for v in chosen}

    def judge(self) -> SmallResNet:
        """The judge: a balanced-softmax classifier of the real training part (the baseline's seed 0)."""
        self.classical("balanced-softmax", 0, need_weights=True)
        return self.store.load("balanced-softmax-seed0")

    # -- the generator ----------------------------------------------------------------------------
    def generator(self, generator, reference) -> _GeneratorPart:
        """The generator: trained on the training part only (checked, not assumed), or the one given;
        a guided one after the judge, an unguided one first (another process may train the judge
        meanwhile); its snapshot chosen on validation and its evaluation when asked for."""
        import ganaug

        cfg, out, public = self.cfg, self.out, self.public
        init_source = None
        if "public" in (generator, cfg.generator_init):  # trained once on the public part, kept
            public_run = train_public_generator(public, cfg, out / "public-generator", self.device, self.progress)
            generator = public_run if generator == "public" else generator
        init = str(out / "public-generator") if cfg.generator_init == "public" else cfg.generator_init
        if generator is None:
            generator, init_source = train_generator(self.lt_train, cfg, out / "generator", self.device, self.progress,
                                                     self.train_full, self.test,
                                                     self.judge if cfg.generator_guide > 0 else None, init, public)
        gen = generator if isinstance(generator, ganaug.Generator) else ganaug.load_generator(generator)
        if gen.class_names != self.lt_train.class_names:
            raise GanaugError(f"the generator's classes {gen.class_names} are not the data's "
                              f"{self.lt_train.class_names}; train one on this data (leave out --generator).")
        trained_on, leaky = provenance(gen, self.lt_train, public, init_source, cfg.leaky_generator)
        part = _GeneratorPart(gen, None if isinstance(generator, ganaug.Generator) else generator, trained_on, leaky,
                              init, init_source)
        if cfg.generator_snapshots and part.source is not None and list_snapshots(part.source):
            from ..eval.selection import choose_snapshot

            part.snapshot_choice = choose_snapshot(part.source, self.val, self.judge().eval(),
                                                   n_per_class=cfg.snapshot_images_per_class)
            part.gen = ganaug.load_generator(part.source, step=part.snapshot_choice["chosen_step"])
            self.log(f"generator snapshot chosen on validation: step {part.snapshot_choice['chosen_step']} of "
                     f"{part.snapshot_choice['last_step']}")
        if cfg.eval_n:
            from .generator_eval import evaluate_generator

            # the judge of the generator reads the classes the benchmark trains (a protocol may drop some)
            part.eval = evaluate_generator(part.gen, self.lt_train, self.test, reference,
                                           _classes_of(self.train_full, self.lt_train.class_names), cfg.eval_n,
                                           out / "generator-eval", self.progress,
                                           min_steps=cfg.classifier_steps or cfg.classifier_min_steps)
        return part

    # -- the verdict ------------------------------------------------------------------------------
    def best_baseline(self, results: dict[str, dict], recipes: "_Recipes | None") -> dict | None:
        """The best baseline: every variant without generated images, chosen by the same rule."""
        baselines = {v: r["runs"] for v, r in results.items() if v in CLASSICAL or v == WITHOUT_GENERATED}
        if not baselines:
            return None

        def baseline_folds(v: str) -> list[float]:
            if v == WITHOUT_GENERATED:
                return recipes.folds(recipes.without)
            taus = sorted(r["tau"] for r in results["posthoc-la"]["runs"]) if v == "posthoc-la" else [0.0]
            return self.folds.scores(v, v, tau=taus[len(taus) // 2])  # posthoc-la: the median of its chosen taus

        choice = choose(baselines, self.val.labels, kfold=baseline_folds if self.folds else None,
                        kfold_skipped=self.kfold_skipped, salt=self.salt)
        self.log(f"best baseline ({choice['rule']}): {choice['chosen']}; {choice['sentence']}")
        return choice

    def summary(self, results: dict, gan: _GeneratorPart | None, search: dict | None,
                baseline_choice: dict | None) -> dict:
        cfg, public, lt, val, test = self.cfg, self.public, self.lt_train, self.val, self.test
        leaky = bool(gan and gan.leaky)
        generator = gan.record() if gan else {"source": None, "trained_on_training_part": None, "leaky": False,
                                              "trained_on": None, "fine_tuned_from": None, "snapshot_choice": None,
                                              "eval": None}
        return {
            "ganaug_version": __version__, "config": dataclasses.asdict(cfg), "classifier_steps": self.steps,
            "data": {"train_full": self.train_full.source, "test": test.source, "train_counts": lt.class_counts(),
                     "protocol": cfg.protocol, "public_counts": public.class_counts() if public else None,
                     "public_classes": public.class_names if public else None,
                     "val_counts": val.class_counts(), "test_counts": test.class_counts(),
                     "rare_classes": self.score.rare, "class_names": lt.class_names, "image_size": lt.image_size,
                     "native_size": lt.native_size, "image_size_note": lt.size_note()},
            "generator": generator, "recipe_search": search, "results": results, "seeds_note": self.seeds_note,
            "verdict": verdict(results, leaky=leaky, test_labels=test.labels, baseline_choice=baseline_choice),
        }


class _Recipes:
    """ganaug's recipe runs with one generator and the judge: the candidates' runs, their choice on
    validation, the chosen one's seeds, and the chosen recipe without generated images."""

    def __init__(self, bench: _Benchmark, gan: _GeneratorPart):
        self.bench, self.gan = bench, gan
        self.judge = bench.judge().eval()
        # the generator by its weights, not its path: a retrained generator in the same folder is another one
        self.gen_key = [weights_digest(gan.gen.net), (gan.gen.metadata.get("training") or {}).get("steps")]
        self.mixes: dict[SyntheticRecipe, SyntheticMix] = {}
        self.without: SyntheticRecipe | None = None

    def mix(self, recipe: SyntheticRecipe, part: LabelledImages | None = None) -> SyntheticMix:
        """The recipe's mix of the training part (kept) or of another part (a k-fold's)."""
        if part is not None:
            return SyntheticMix(part, self.gan.gen, recipe, judge=self.judge, seed=0,
                                cache=self.bench.out / "synthetic-cache")
        if recipe not in self.mixes:
            self.mixes[recipe] = self.mix(recipe, self.bench.lt_train)
        return self.mixes[recipe]

    def _key(self, recipe: SyntheticRecipe) -> dict:
        uses = recipe.share > 0  # without generated images, the generator and the judge play no part
        return {"recipe": recipe.to_dict(), "generator": self.gen_key if uses else None,
                "judge": "balanced-softmax-seed0" if uses else None}

    def run(self, recipe: SyntheticRecipe, seed: int, wait: bool = True) -> dict | None:
        b = self.bench
        key = {**b.base_key, "variant": "ganaug-recipe", "seed": seed, **self._key(recipe)}
        # named by content, so that runs with other candidate lists (in parallel too) share them
        return b.store.run(f"{recipe_name(recipe)}-seed{seed}", key,
                           lambda: train_classifier("ganaug-recipe", b.lt_train, b.cfg, seed, mix=self.mix(recipe),
                                                    device=b.device, init=b.init), b.score, wait=wait)

    def runs(self, pairs: list[tuple[SyntheticRecipe, int]]) -> list[dict]:
        """The runs of these (recipe, seed) pairs; one that another process is training is left
        for last, so that processes sharing the folder split the runs instead of queueing."""
        runs = {p: run for p in pairs if (run := self.run(*p, wait=False)) is not None}
        return [runs[p] if p in runs else self.run(*p) for p in pairs]

    def folds(self, recipe: SyntheticRecipe) -> list[float]:
        return self.bench.folds.scores(recipe_name(recipe), "ganaug-recipe", key=self._key(recipe),
                                       mix_of=lambda part: self.mix(recipe, part))

    def search(self, recipes: list[SyntheticRecipe], results: dict[str, dict]) -> dict:
        """Choose among ``recipes`` on validation, run the chosen one's seeds into ``results``, and
        say what its generated images add (``self.without``: the chosen recipe without them);
        returns the search record."""
        b, cfg = self.bench, self.bench.cfg
        cand, best, n, recipe_choice = None, 0, cfg.search_seeds, None
        if len(recipes) > 1:  # a single candidate needs no search: its seeds go straight to the runs below
            searched = self.runs([(r, s) for r in recipes for s in range(n)])
            cand = [summarise(searched[i * n:(i + 1) * n]) for i in range(len(recipes))]
            by_name = {recipe_name(r): r for r in recipes}
            recipe_choice = choose({recipe_name(r): cand[i]["runs"] for i, r in enumerate(recipes)}, b.val.labels,
                                   kfold=(lambda name: self.folds(by_name[name])) if b.folds else None,
                                   kfold_skipped=b.kfold_skipped, salt=b.salt)
            best = next(i for i, r in enumerate(recipes) if recipe_name(r) == recipe_choice["chosen"])
            b.log(f"recipe chosen ({recipe_choice['rule']}): {recipes[best].to_dict()}; {recipe_choice['sentence']}")
        final = self.runs([(recipes[best], s) for s in range(cfg.seeds)])
        results["ganaug-recipe"] = summarise(final)
        cand = cand or [summarise(final[:n])]  # the single candidate, as if searched: its first seeds
        search = {"candidates": [{"recipe": recipes[i].to_dict(), "name": recipe_name(recipes[i]),
                                  "val_balanced_accuracy_mean": cand[i]["val_balanced_accuracy_mean"]}
                                 for i in range(len(recipes))],
                  "chosen": best, "seeds": cfg.search_seeds, "choice": recipe_choice}
        chosen_mix = self.mix(recipes[best])
        search["bank"] = chosen_mix.report()
        search["bank_cpu_seconds"] = round(chosen_mix.bank_cpu_seconds, 1)
        if chosen_mix.refreshes:  # per classifier run; unknown when every run was kept from an earlier process
            search["refresh_cpu_seconds_per_run"] = round(
                chosen_mix.refresh_cpu_seconds / chosen_mix.refreshes * recipes[best].refresh, 1)
        # The chosen recipe without generated images tells what they add, and is a baseline itself
        # (Remix and last-layer retraining need no generator). Without either it is exactly the
        # balanced-softmax baseline (same draws, same loss), so it is not trained twice.
        self.without = dataclasses.replace(recipes[best], share=0.0, filter="none")
        w = self.without
        if w.remix > 0 or w.finish_layers != "all" or w.loss != "balanced-softmax":
            results[WITHOUT_GENERATED] = summarise(self.runs([(w, s) for s in range(cfg.seeds)]))
        search["without_generated"] = WITHOUT_GENERATED if WITHOUT_GENERATED in results else (
            "balanced-softmax" if w.loss == "balanced-softmax" else None)
        return search


SMALL_DATA_SEEDS = 5


def resolve_seeds(cfg: DownstreamConfig, n_train: int) -> tuple[DownstreamConfig, str]:
    """``cfg`` with its number of seeds settled, and a sentence saying why: the given number, else 3,
    or 5 on small data (where the classifiers' minimum steps outlast their epochs: runs are cheap and
    a verdict from few, small runs is noisy)."""
    if cfg.seeds is not None:
        return cfg, f"{cfg.seeds} seeds per variant (given)"
    epochs_steps = math.ceil(cfg.classifier_epochs * n_train / cfg.batch_size)
    if not cfg.classifier_steps and epochs_steps < cfg.classifier_min_steps:
        return (dataclasses.replace(cfg, seeds=SMALL_DATA_SEEDS),
                f"{SMALL_DATA_SEEDS} seeds per variant: the training part is small ({n_train} images; its "
                f"{cfg.classifier_epochs:g} epochs are {epochs_steps} steps, under the {cfg.classifier_min_steps}-step "
                "minimum), so runs are cheap and one seed's verdict is noise")
    return dataclasses.replace(cfg, seeds=3), "3 seeds per variant (the default)"


def machine() -> str:
    """CPU model, torch version and threads: kept with every run, since runs of one report may
    come from several machines (a killed benchmark continued elsewhere)."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}; torch {torch.__version__}; {torch.get_num_threads()} threads"


def recipe_name(recipe: SyntheticRecipe) -> str:
    """``recipe-<8 hex digits>`` of the fields that differ from the defaults: the same recipe gets the
    same name in every candidate list, and keeps it when a field with a default is added later."""
    changed = {f: v for f, v in recipe.to_dict().items() if v != getattr(SyntheticRecipe(), f)}
    return "recipe-" + hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]


def summarise(runs: list[dict]) -> dict:
    b = torch.tensor([r["balanced_accuracy"] for r in runs], dtype=torch.float64)
    rr = torch.tensor([r["rare_accuracy"] for r in runs], dtype=torch.float64)
    return {"balanced_accuracy_mean": float(b.mean()), "balanced_accuracy_std": float(b.std()) if len(b) > 1 else 0.0,
            "rare_accuracy_mean": float(rr.mean()),
            "val_balanced_accuracy_mean": sum(r["val_balanced_accuracy"] for r in runs) / len(runs),
            "per_class_mean": torch.tensor([r["per_class"] for r in runs]).mean(0).tolist(), "runs": runs}
