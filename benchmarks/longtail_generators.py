"""Generators on the long tail: one row per training option, the same split, steps and seeds.

Every option trains an SNGAN on the long-tailed training part that ``bench-downstream`` uses
(same data, same ``--steps``, so the same CPU time up to the option's own cost, which the table
reports), keeping ``--snapshots`` snapshots. Each row then gives, in the reference classifier's
features against the real test images: FID, recall, and class fidelity of the five rarest and
the two most confused classes (by the plain classifier's confusion on validation); the snapshot
chosen on validation; and the downstream result of the recipe (``--recipe``, by default the
one ``bench-downstream`` chose) with that generator, over ``--seeds`` seeds, paired with the best
baseline. Classical runs are copied from ``--baselines`` (a finished ``bench-downstream`` report
on the same split) instead of being trained again; they are keyed by content, so a copy that
does not match is retrained, never reused; so are the classical runs another option trained in
this folder (the judge is one). Processes with disjoint ``--options`` may share ``--out``, one
thread each; each option's row is kept in ``OUT/OPTION/row.json`` and the table holds every
finished option. Two processes with the same option split its seeds.

    python benchmarks/longtail_generators.py --data ../shared/data/fashion-mnist --ratio 100 \\
        --steps 1500 --seeds 5 --baselines docs/bench/fmnist-lt100-40ep --out runs/longtail-generators \\
        --reference pretrained/fashion-mnist-reference-classifier [--options baseline lecam ramp noise]

``--seeds 0`` stops after the generator figures (the judge, the snapshot choice and the evaluation
take a few CPU-minutes; the recipe's seeds take an hour and more per option), and a row is written
as soon as they exist.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

import ganaug
from ganaug.bench import DownstreamConfig, run_downstream
from ganaug.bench.downstream import prepare_splits
from ganaug.bench.generator_eval import evaluate_generator
from ganaug.bench.resnet import SmallResNet
from ganaug.eval import ReferenceClassifier
from ganaug.eval.selection import choose_snapshot

JUDGE = "balanced-softmax-seed0"  # bench-downstream's judge: the balanced-softmax classifier of seed 0

# name -> TrainConfig changes; the ramp spans the first half of training. LeCam is named in every
# row, since `auto` (the default) now switches it on for long-tailed data.
OPTIONS = {
    "baseline": {"lecam": 0.0},
    "lecam": {"lecam": 0.3},
    "ramp": {"lecam": 0.0, "cond_ramp_start": 0, "cond_ramp_end": "half"},
    "noise": {"lecam": 0.0, "class_noise": 0.75},
    "lecam+noise": {"lecam": 0.3, "class_noise": 0.75},
    "lecam+ramp+noise": {"lecam": 0.3, "cond_ramp_start": 0, "cond_ramp_end": "half", "class_noise": 0.75},
}


def train_judge(train_full, test, lt_train, cfg: DownstreamConfig, out: Path) -> SmallResNet:
    """bench-downstream's judge in ``out/runs`` (trained there unless its weights are kept)."""
    run_downstream(train_full, test, dataclasses.replace(cfg, variants=("balanced-softmax",), seeds=1), out,
                   progress=False)
    judge = SmallResNet(lt_train.channels, lt_train.num_classes, cfg.width)
    judge.load_state_dict(load_file(str(out / "runs" / f"{JUDGE}.safetensors")))
    return judge.eval()


def weakest(eval_json: Path) -> str:
    """The class with the lowest fidelity in a generator evaluation (``generator-eval/eval.json``)."""
    return min(json.loads(eval_json.read_text())["per_class"], key=lambda c: c["class_fidelity"])["class"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/fashion-mnist")
    ap.add_argument("--ratio", type=float, default=100)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--snapshots", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--baselines", required=True, help="a bench-downstream report folder on the same split")
    ap.add_argument("--recipe", default=None, help="SyntheticRecipe as JSON (default: the one --baselines chose)")
    ap.add_argument("--reference", default=None, help="reference classifier for FID/recall/fidelity")
    ap.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    ap.add_argument("--eval-n", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    base = json.loads((Path(a.baselines) / "results.json").read_text())
    recipe = json.loads(a.recipe) if a.recipe else \
        base["recipe_search"]["candidates"][base["recipe_search"]["chosen"]]["recipe"]
    train_full = ganaug.load_images(a.data, split="train")
    test = ganaug.load_images(a.data, split="test")
    cfg = dataclasses.replace(DownstreamConfig(), imbalance_ratio=a.ratio, seeds=a.seeds, generator_steps=a.steps,
                              recipes=(recipe,), eval_n=0)
    lt_train, val, test = prepare_splits(train_full, test, cfg)
    reference = ReferenceClassifier.load(a.reference) if a.reference else None
    # the two most confused classes: the largest off-diagonal pair of the plain model's confusion
    conf = torch.tensor(base["results"]["plain"]["runs"][0]["confusion"], dtype=torch.float64)
    conf = conf + conf.T
    conf.fill_diagonal_(0)
    i, j = divmod(int(conf.argmax()), conf.shape[0])
    watched = sorted(range(lt_train.num_classes), key=lambda c: lt_train.class_counts()[c])[:5]
    watched += [c for c in (i, j) if c not in watched]

    for name in a.options:
        out = Path(a.out) / name
        change = {k: (a.steps // 2 if v == "half" else v) for k, v in OPTIONS[name].items()}
        mc = ganaug.make_config("sngan", lt_train.num_classes, lt_train.class_names,
                                image_size=lt_train.image_size, channels=lt_train.channels)
        tc = ganaug.TrainConfig(steps=a.steps, snapshot_every=a.steps // a.snapshots, **change)
        t = time.perf_counter()
        run = ganaug.train(lt_train, mc, tc, out / "generator", resume=True, progress=False)
        seconds = json.loads((out / "generator" / "metrics.jsonl").read_text().splitlines()[-1])["elapsed_s"]
        # the finished runs of --baselines: the classical ones and recipe runs without generated
        # images match and are kept; the recipe with this generator does not, and is trained. Also
        # what another option trained in this folder (the judge's weights among them).
        runs = out / "downstream" / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        siblings = [d / "downstream" / "runs" for d in Path(a.out).iterdir() if d.name != name]
        for folder in [Path(a.baselines) / "runs", *siblings]:
            for f in sorted(folder.glob("*.json")) if folder.is_dir() else ():
                if (runs / f.name).exists() or json.loads(f.read_text())["key"].get("generator"):
                    continue
                weights = f.with_suffix(".safetensors")
                if f.stem == JUDGE and not weights.is_file():
                    continue  # its record without its weights would stop the judge being trained
                shutil.copy2(f, runs / f.name)
                if weights.is_file():
                    shutil.copy2(weights, runs / weights.name)
        # generator figures first (a few CPU-minutes), the recipe's seeds after (an hour and more)
        judge = train_judge(train_full, test, lt_train, cfg, out / "downstream")
        choice = choose_snapshot(run, val, judge)
        gen = ganaug.load_generator(run, step=choice["chosen_step"])
        ev = evaluate_generator(gen, lt_train, test, reference, train_full, a.eval_n, out / "generator-eval", False)
        row = {"option": name, "train_config": change, "generator_seconds": seconds,
               "chosen_step": choice["chosen_step"], "fid": ev["fid"], "recall": ev["recall"],
               "fidelity": {lt_train.class_names[c]: ev["class_fidelity_per_class"][c] for c in watched},
               "min_fidelity": min(ev["class_fidelity_per_class"]),
               "weakest": weakest(out / "generator-eval" / "eval.json"), "seeds": 0}
        (out / "row.json").write_text(json.dumps(row, indent=2))
        if a.seeds:
            # the snapshot chosen above (bench-downstream would score every snapshot again)
            summary = run_downstream(train_full, test, cfg, out / "downstream", generator=gen, reference=reference,
                                     progress=False)
            v = summary["verdict"]
            row.update(seeds=a.seeds, recipe_test=summary["results"]["ganaug-recipe"]["balanced_accuracy_mean"],
                       recipe_val=summary["results"]["ganaug-recipe"]["val_balanced_accuracy_mean"],
                       best_baseline=v.get("best_baseline"), paired=v.get("paired_differences"),
                       margin=v.get("margin_points"), margin_std=v.get("margin_std"))
        row["wall_seconds"] = round(time.perf_counter() - t)
        (out / "row.json").write_text(json.dumps(row, indent=2))
        print(json.dumps(row), flush=True)

    # every option finished in this folder, also by other processes run with other --options
    rows = [json.loads((Path(a.out) / n / "row.json").read_text()) for n in OPTIONS
            if (Path(a.out) / n / "row.json").is_file()]
    for r in rows:  # rows written before the weakest class was recorded
        r.setdefault("weakest", weakest(Path(a.out) / r["option"] / "generator-eval" / "eval.json"))
    (Path(a.out) / "results.json").write_text(json.dumps(rows, indent=2))

    names = [lt_train.class_names[c] for c in watched]
    print(f"\n{Path(a.data).name}, long-tailed R={a.ratio:g}, {a.steps} generator steps; recipe {recipe}; "
          f"{a.seeds} seeds\n")
    print("| option | G CPU-s | snapshot | FID | recall | min fidelity (class) | " + " | ".join(names)
          + " | recipe test | recipe val | vs best baseline (paired, test) |")
    print("|---|---|---|---|---|---|" + "---|" * len(names) + "---|---|---|")
    for r in rows:
        print(f"| {r['option']} | {r['generator_seconds']:.0f} | {r['chosen_step']} | {r['fid']:.2f} | "
              f"{r['recall']:.3f} | {r['min_fidelity']:.2f} ({r['weakest']}) | "
              + " | ".join(f"{r['fidelity'][n]:.2f}" for n in names)
              + (f" | {100 * r['recipe_test']:.2f} | {100 * r['recipe_val']:.2f} | {r['margin']:+.2f} +- "
                 f"{r['margin_std']:.2f} vs {r['best_baseline']} ({r['seeds']} seeds) |" if r.get("seeds")
                 else " | | | not run (--seeds 0) |"))


if __name__ == "__main__":
    main()
