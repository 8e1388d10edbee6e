"""``ganaug bench-downstream``: does a classifier get better on rare classes with ganaug?

One readable pipeline: build a long-tailed training split (test split untouched), carve a
validation split from it, train a generator on the long-tailed training part only, then train
the same small ResNet (same steps, same augmentation) under seven variants and several seeds,
and report balanced accuracy on the real test split, stating plainly which variant won.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..data.dataset import LabelledImages
from ..data.images import uint8_to_model
from ..errors import GanaugError
from ..eval.classifier import train_steps
from .resnet import SmallResNet
from .splits import carve_validation, long_tailed_split

VARIANTS = ("plain", "reweight", "oversample", "ganaug-balance", "ganaug-batch", "ganaug-batch+reweight",
            "ganaug-balance+oversample")
CLASSICAL = ("plain", "reweight", "oversample")


@dataclass
class DownstreamConfig:
    imbalance_ratio: float = 100.0
    seeds: int = 3
    n_max: int | None = None  # size of the largest class; default: as many as it has
    val_fraction: float = 0.1
    classifier_steps: int = 3000
    batch_size: int = 128
    lr: float = 2e-3
    width: int = 16
    translate: int = 2  # random shifts, the one augmentation every variant gets
    generator_steps: int = 3000
    gan_p_max: float = 0.5  # GANBatchAugment: p of the rarest class; p_c scales with rarity
    balance_to: float = 1.0  # ganaug-balance: top every class up to this fraction of the largest
    # quality gate for ganaug-balance: generate 1/gate_keep times the images needed and keep the
    # ones a classifier trained on the long-tailed part finds most typical of their class (1.0: off)
    gate_keep: float = 1.0
    variants: tuple[str, ...] = VARIANTS
    eval_n: int = 10000  # generated images for the generator's evaluation (0: skip it)


def _balanced_accuracy(pred: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[float, list[float]]:
    per = [float((pred[labels == c] == c).float().mean()) if (labels == c).any() else float("nan")
           for c in range(k)]
    valid = [p for p in per if p == p]
    return sum(valid) / len(valid), per


def train_classifier(variant: str, train: LabelledImages, cfg: DownstreamConfig, seed: int,
                     synthetic: LabelledImages | None = None, batch_aug=None) -> SmallResNet:
    """Train one classifier. Every variant: same network, steps, batch size, optimiser and shifts;
    variants differ only in the data (``ganaug-balance``: real plus generated images), the sampling
    (``oversample``: every class equally often), the loss weights (``reweight``) and a batch hook
    (``ganaug-batch``)."""
    k = train.num_classes
    counts = torch.bincount(train.labels, minlength=k).float()
    images, labels = train.images, train.labels
    if variant.startswith("ganaug-balance"):
        images, labels = torch.cat([images, synthetic.images]), torch.cat([labels, synthetic.labels])
    weights = None
    if variant.endswith("reweight"):
        weights = (1.0 / counts.clamp(min=1))
        weights = weights / weights.sum() * k

    def uniform(gen: torch.Generator) -> Iterator[torch.Tensor]:
        while True:
            yield torch.randint(len(labels), (cfg.batch_size,), generator=gen)

    def oversampled(gen: torch.Generator) -> Iterator[torch.Tensor]:  # every class equally often
        order = torch.argsort(labels, stable=True)
        sizes = torch.bincount(labels, minlength=k)
        starts = torch.cumsum(sizes, 0) - sizes
        present = torch.nonzero(sizes).flatten()
        while True:
            cls = present[torch.randint(len(present), (cfg.batch_size,), generator=gen)]
            pos = (torch.rand(cfg.batch_size, generator=gen) * sizes[cls]).long()
            yield order[starts[cls] + pos]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallResNet(train.channels, k, cfg.width)
        return train_steps(model, images, labels, oversampled if variant.endswith("oversample") else uniform,
                           cfg.classifier_steps, lr=cfg.lr, translate=cfg.translate, seed=seed,
                           class_weights=weights, batch_hook=batch_aug.apply if batch_aug is not None else None)


@torch.no_grad()
def predict(model: SmallResNet, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(uint8_to_model(x)).argmax(1) for x in images.split(512)])


def run_downstream(train_full: LabelledImages, test: LabelledImages, cfg: DownstreamConfig,
                   out_dir: str | Path, *, generator=None, reference=None, progress: bool = True) -> dict:
    """The whole benchmark; writes results.json, report.md and plots into ``out_dir``.

    ``reference`` (a :class:`~ganaug.eval.ReferenceClassifier`; default: one trained once on the
    full training split and cached) judges the generator in ``out_dir/generator-eval``. It only
    evaluates: no classifier variant ever sees it or the data it was trained on.
    """
    import ganaug
    from ..transforms import GANBatchAugment

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not 0 < cfg.balance_to <= 1 or not 0 <= cfg.gan_p_max <= 1 or not 0 < cfg.gate_keep <= 1:
        raise GanaugError(f"balance_to and gate_keep must lie in (0, 1] and gan_p_max in [0, 1]; got "
                          f"{cfg.balance_to}, {cfg.gate_keep} and {cfg.gan_p_max}.")
    bad = [v for v in cfg.variants if v not in VARIANTS]
    if bad:
        raise GanaugError(f"unknown variants {bad}; choose from {list(VARIANTS)}.")
    log = (lambda m: print(m, flush=True)) if progress else (lambda m: None)

    # 1. splits: long-tailed from the training split only; validation carved from it
    lt = long_tailed_split(train_full, cfg.imbalance_ratio, cfg.n_max)
    lt_train, val = carve_validation(lt, cfg.val_fraction)
    log(f"long-tailed training part: {lt_train.class_counts()}; validation: {val.class_counts()}")

    # 2. the generator: trained on the long-tailed training part only (checked, not assumed)
    if generator is None:
        mc = ganaug.make_config("sngan", lt_train.num_classes, lt_train.class_names,
                                image_size=lt_train.image_size, channels=lt_train.channels)
        run = ganaug.train(lt_train, mc, ganaug.TrainConfig(steps=cfg.generator_steps), out / "generator",
                           resume=True, progress=progress)
        generator = ganaug.load_generator(run)
    gen = ganaug.load_generator(generator) if not isinstance(generator, ganaug.Generator) else generator
    seen = (gen.metadata.get("training") or {}).get("data") or {}
    expected = lt_train.fingerprint()
    trained_on_lt = all(seen.get(k) == v for k, v in expected.items()) if seen else None
    if trained_on_lt is False:
        raise GanaugError(f"the generator was trained on {seen.get('num_images')} images with class counts "
                          f"{seen.get('class_counts')}, not on this long-tailed split ({expected['class_counts']}); "
                          "a generator that saw more data would leak it into the comparison.")

    gen_eval = evaluate_generator(gen, lt_train, test, reference, train_full, cfg.eval_n, out / "generator-eval",
                                  progress) if cfg.eval_n else None

    # 3. synthetic data for the balance variant: balance() tops every class up to balance_to x the largest
    counts = lt_train.class_counts()
    target = round(cfg.balance_to * max(counts))
    wanted = {c: target for c, n in enumerate(counts) if n < target}
    if cfg.gate_keep < 1:
        synthetic = gated_synthetic(gen, lt_train, {c: w - counts[c] for c, w in wanted.items()}, cfg,
                                    out / "synthetic-cache")
    else:
        mixed = ganaug.data.balance(lt_train, gen, wanted, seed=0, cache=out / "synthetic-cache")
        synthetic = LabelledImages(mixed.synthetic.images(), mixed.synthetic.labels, lt_train.class_names,
                                   "ganaug balance()")
    p = {c: cfg.gan_p_max * (1 - n / max(counts)) for c, n in enumerate(counts)}
    batch_aug = GANBatchAugment(gen, p=p)

    # 4. the classifiers
    results: dict[str, dict] = {}
    k = lt_train.num_classes
    rare = sorted(range(k), key=lambda c: counts[c])[: max(1, k // 3)]
    # every finished classifier run is kept on disk, so a killed benchmark continues where it stopped
    run_dir = out / "runs"
    run_dir.mkdir(exist_ok=True)
    unrelated = ("seeds", "variants", "eval_n")  # settings that do not change one classifier run
    key = {"config": {f: v for f, v in dataclasses.asdict(cfg).items() if f not in unrelated},
           "generator": [gen.source, (gen.metadata.get("training") or {}).get("steps")], "train_counts": counts}
    for variant in cfg.variants:
        runs = []
        for seed in range(cfg.seeds):
            done = run_dir / f"{variant}-seed{seed}.json"
            if done.is_file():
                record = json.loads(done.read_text())
                if _same_settings(record.get("key"), key):
                    runs.append(record["run"])
                    log(f"{variant} seed {seed}: balanced accuracy {record['run']['balanced_accuracy']:.4f} (kept)")
                    continue
            t = time.perf_counter()
            model = train_classifier(variant, lt_train, cfg, seed,
                                     synthetic=synthetic if variant.startswith("ganaug-balance") else None,
                                     batch_aug=batch_aug if variant.startswith("ganaug-batch") else None)
            pred = predict(model, test.images)
            bal, per = _balanced_accuracy(pred, test.labels, k)
            val_bal, _ = _balanced_accuracy(predict(model, val.images), val.labels, k) if len(val) else (float("nan"), [])
            conf = torch.zeros(k, k, dtype=torch.int64)
            conf.index_put_((test.labels, pred), torch.ones_like(pred), accumulate=True)
            runs.append({"seed": seed, "balanced_accuracy": bal, "val_balanced_accuracy": val_bal,
                         "per_class": per, "rare_accuracy": sum(per[c] for c in rare) / len(rare),
                         "confusion": conf.tolist(), "seconds": round(time.perf_counter() - t, 1)})
            done.write_text(json.dumps({"key": key, "run": runs[-1]}))
            log(f"{variant} seed {seed}: balanced accuracy {bal:.4f}")
        b = torch.tensor([r["balanced_accuracy"] for r in runs], dtype=torch.float64)
        rr = torch.tensor([r["rare_accuracy"] for r in runs], dtype=torch.float64)
        results[variant] = {"balanced_accuracy_mean": float(b.mean()),
                            "balanced_accuracy_std": float(b.std()) if len(b) > 1 else 0.0,
                            "rare_accuracy_mean": float(rr.mean()),
                            "val_balanced_accuracy_mean": sum(r["val_balanced_accuracy"] for r in runs) / len(runs),
                            "per_class_mean": torch.tensor([r["per_class"] for r in runs]).mean(0).tolist(),
                            "runs": runs}

    summary = {
        "ganaug_version": __version__, "config": dataclasses.asdict(cfg),
        "data": {"train_full": train_full.source, "test": test.source, "long_tailed_counts": lt.class_counts(),
                 "train_counts": counts, "val_counts": val.class_counts(), "rare_classes": rare,
                 "synthetic_counts": torch.bincount(synthetic.labels, minlength=k).tolist(),
                 "class_names": lt_train.class_names},
        "generator": {"source": gen.source, "trained_on_long_tailed_split": trained_on_lt,
                      "trained_on": seen or None, "eval": gen_eval},
        "results": results, "verdict": verdict(results),
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    write_report(summary, out)
    return summary


def _same_settings(stored: dict | None, key: dict) -> bool:
    """Whether a kept run was made with these settings. A setting missing from a record made
    before it existed counts as its default, which is how those versions behaved."""
    if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
        return False
    defaults = dataclasses.asdict(DownstreamConfig())
    filled = {**stored, "config": {**{f: defaults[f] for f in key["config"]}, **stored["config"]}}
    return filled == json.loads(json.dumps(key))


def gated_synthetic(gen, lt_train: LabelledImages, add: dict[int, int], cfg: DownstreamConfig,
                    cache: Path) -> LabelledImages:
    """``add[c]`` generated images per class, chosen from ``1 / gate_keep`` times as many: those a
    classifier trained on the long-tailed part (oversampled; never on test or validation data)
    gives the highest probability of their intended class."""
    from ..data import SyntheticDataset

    pool = SyntheticDataset(gen, {c: math.ceil(n / cfg.gate_keep) for c, n in add.items() if n > 0},
                            seed=0, cache=cache)
    images, labels = pool.images(), pool.labels
    gate = train_classifier("oversample", lt_train, cfg, seed=10_000)
    with torch.no_grad():
        prob = torch.cat([gate(uint8_to_model(x)).softmax(1) for x in images.split(512)])
    conf = prob[torch.arange(len(labels)), labels]
    keep = []
    for c, n in add.items():
        idx = torch.nonzero(labels == c).flatten()
        keep.append(idx[conf[idx].argsort(descending=True, stable=True)[:n]])
    keep = torch.cat(keep) if keep else torch.zeros(0, dtype=torch.int64)
    return LabelledImages(images[keep], labels[keep], lt_train.class_names,
                          f"ganaug balance(), quality-gated (kept {cfg.gate_keep:g})")


def evaluate_generator(gen, lt_train: LabelledImages, test: LabelledImages, reference, train_full: LabelledImages,
                       n: int, out: Path, progress: bool) -> dict:
    """The generator's figures (FID, KID, precision/recall, class fidelity, memorisation of the
    long-tailed images it was trained on) in the reference classifier's feature space."""
    from ..eval import EvalProtocol, ReferenceFeatures, cached_reference_classifier, evaluate, save_result

    if reference is None:
        reference = cached_reference_classifier(train_full, test, progress=progress)
    n = max(n - n % lt_train.num_classes, 4 * lt_train.num_classes)
    result = evaluate(gen.net, gen.config, lt_train, test, reference, ReferenceFeatures(reference),
                      EvalProtocol(n=n, cas=False), progress=progress)
    save_result(result, lt_train, out)
    o = result["overall"]
    return {"fid": o["fid"], "kid": o["kid"], "precision": o["precision"], "recall": o["recall"],
            "class_fidelity": o["class_fidelity"],
            "class_fidelity_per_class": [r["class_fidelity"] for r in result["per_class"]],
            "memorisation_flagged_classes": result["memorisation"]["flagged_classes"],
            "reference_real_test_accuracy": reference.config.real_test_accuracy,
            "n": n, "report": str(out / "report.md")}


def verdict(results: dict[str, dict]) -> dict:
    """Which variant won, and the best ganaug variant against the best classical baseline."""
    mean = {v: r["balanced_accuracy_mean"] for v, r in results.items()}
    best = max(mean, key=mean.get)
    classical = {v: m for v, m in mean.items() if v in CLASSICAL and v != "plain"} or \
        {v: m for v, m in mean.items() if v in CLASSICAL}
    ours = {v: m for v, m in mean.items() if v.startswith("ganaug")}
    out = {"winner": best, "winner_balanced_accuracy": mean[best]}
    if classical and ours:
        bc, bo = max(classical, key=classical.get), max(ours, key=ours.get)
        margin = 100 * (ours[bo] - classical[bc])
        out.update(best_classical=bc, best_ganaug=bo, margin_points=round(margin, 2),
                   sentence=(f"{bo} beat the best classical baseline ({bc}) by {margin:.2f} points of "
                             "balanced accuracy." if margin > 0 else
                             f"{bo} did not beat the best classical baseline ({bc}): {margin:+.2f} points of "
                             "balanced accuracy."))
    return out


def write_report(summary: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res, names = summary["results"], summary["data"]["class_names"]
    lines = ["# ganaug downstream benchmark", "",
             f"Long-tailed split, imbalance ratio {summary['config']['imbalance_ratio']:g}: training counts "
             f"{summary['data']['train_counts']}; the test split is the full real test set. "
             f"{summary['config']['seeds']} seeds per variant; same ResNet, steps and augmentation.",
             f"ganaug-balance adds {sum(summary['data']['synthetic_counts'])} generated images (every class "
             f"topped up to {summary['config']['balance_to']:g} x the largest); ganaug-batch replaces a "
             f"class-c image with p = {summary['config']['gan_p_max']:g} x (1 - n_c / n_max)."
             + (f" Quality gate: the generated images kept are the most typical {summary['config']['gate_keep']:g} "
                "of those generated, by a classifier trained on the long-tailed part."
                if summary['config']['gate_keep'] < 1 else ""), "",
             f"**{summary['verdict'].get('sentence', 'winner: ' + summary['verdict']['winner'])}**", "",
             "| variant | balanced accuracy (test) | rare-class accuracy | balanced accuracy (validation) |",
             "|---|---|---|---|"]
    for v, r in res.items():
        lines.append(f"| {v} | {100 * r['balanced_accuracy_mean']:.2f} +- {100 * r['balanced_accuracy_std']:.2f} | "
                     f"{100 * r['rare_accuracy_mean']:.2f} | {100 * r['val_balanced_accuracy_mean']:.2f} |")
    g = summary["generator"]
    lines += ["", f"Generator: `{g['source']}`; trained only on the long-tailed training part: "
              f"{g['trained_on_long_tailed_split']}.", ""]
    e = g.get("eval")
    if e:
        lines += [f"Generator evaluation ({e['n']} generated images against the real test split, in the "
                  f"feature space of a reference classifier with real-test accuracy "
                  f"{e['reference_real_test_accuracy']:.3f}; details in `generator-eval/report.md`): "
                  f"FID {e['fid']:.3f}, KID {e['kid']:.4f}, precision {e['precision']:.3f}, recall "
                  f"{e['recall']:.3f}, class fidelity {e['class_fidelity']:.3f}; memorisation flagged in: "
                  f"{', '.join(e['memorisation_flagged_classes']) or 'no class'}.", "",
                  "| class | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
                  "| training images | " + " | ".join(str(n) for n in summary["data"]["train_counts"]) + " |",
                  "| class fidelity | " + " | ".join(f"{f:.2f}" for f in e["class_fidelity_per_class"]) + " |", ""]
    lines += ["![per class](per_class.png)", "",
              "![confusion matrix of the winner](confusion.png)", ""]
    (out / "report.md").write_text("\n".join(lines))

    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / len(res)
    for i, (v, r) in enumerate(res.items()):
        ax.bar([c + i * width for c in range(len(names))], r["per_class_mean"], width, label=v)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(names))])
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "per_class.png", dpi=100)
    plt.close(fig)

    winner = summary["verdict"]["winner"]
    conf = torch.tensor(res[winner]["runs"][0]["confusion"], dtype=torch.float64)
    conf = conf / conf.sum(1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(conf.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)))
    ax.set_yticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_yticklabels(names, fontsize=7)
    ax.set_title(f"{winner}, seed 0 (rows: true class)")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=100)
    plt.close(fig)
