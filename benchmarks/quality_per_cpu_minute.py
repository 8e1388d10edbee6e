"""Generator quality per CPU-minute: FID and class fidelity after each training-time budget, for
every architecture asked for, on full Fashion-MNIST (32x32 grey), in one run of this script.

Each architecture trains with `ganaug train`'s loop (default settings) in chunks of --chunk
steps (resumed exactly), and whenever its recorded training time (the checkpoint's elapsed_s:
training only, evaluation excluded) passes a budget, its EMA generator is evaluated against the
real test split in the reference classifier's features. Run folders are kept under --out, so a
killed run continues where it stopped; run it alone on the machine (the budgets are wall time).

--target (a generator package, e.g. the shipped 5000-step default) is evaluated with the same
protocol, and its training time on this machine is estimated from the first architecture's
measured seconds per step: the issue's aim is that the lite architecture reaches the default's
5000-step quality in at most a third of that time.

    python benchmarks/quality_per_cpu_minute.py --reference pretrained/fashion-mnist-reference-classifier \
        [--archs sngan lite] [--minutes 5 15 45] [--threads 1] [--out runs/quality-per-minute] \
        [--target pretrained/fashion-mnist-sngan]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

import ganaug
from ganaug.bench.downstream import machine
from ganaug.data import load_fashion_mnist
from ganaug.eval import EvalProtocol, ReferenceClassifier, ReferenceFeatures, evaluate
from ganaug.training import load_checkpoint
from ganaug.training.checkpoint import CHECKPOINT_NAME


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/fashion-mnist")
    ap.add_argument("--reference", required=True)
    ap.add_argument("--archs", nargs="+", default=["sngan", "lite"])
    ap.add_argument("--minutes", type=float, nargs="+", default=[5, 15, 45])
    ap.add_argument("--chunk", type=int, default=50, help="most steps between time checks")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-n", type=int, default=5000)
    ap.add_argument("--out", default="runs/quality-per-minute")
    ap.add_argument("--target", help="a trained generator package to compare with (same evaluation protocol)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    train = load_fashion_mnist(a.data, image_size=32)
    test = load_fashion_mnist(a.data, split="test", image_size=32)
    reference = ReferenceClassifier.load(a.reference)
    features = ReferenceFeatures(reference)
    out = Path(a.out)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for arch in a.archs:
        run = out / arch
        cfg = ganaug.make_config(arch, train.num_classes, train.class_names, image_size=32, channels=1)
        for minutes in sorted(a.minutes):
            key = f"{arch}@{minutes:g}"
            if key in results:
                continue
            while True:
                ckpt = load_checkpoint(run / CHECKPOINT_NAME) if (run / CHECKPOINT_NAME).is_file() else None
                elapsed, step = (float(ckpt["elapsed_s"]), int(ckpt["step"])) if ckpt else (0.0, 0)
                if elapsed >= 60 * minutes:
                    break
                # at most --chunk steps, and no more than the budget needs at the pace so far (a coarse
                # chunk would overshoot a short budget by minutes)
                needed = math.ceil((60 * minutes - elapsed) * step / elapsed) if step else a.chunk
                chunk = max(1, min(a.chunk, needed))
                tc = ganaug.TrainConfig(steps=step + chunk, checkpoint_every=chunk, sample_every=10 * a.chunk,
                                        device="cpu")
                ganaug.train(train, cfg, tc, run, resume=True, progress=False)
            gen = ganaug.load_generator(run)
            r = evaluate(gen.net, gen.config, train, test, reference, features,
                         EvalProtocol(n=a.eval_n, cas=False))
            results[key] = {"arch": arch, "budget_min": minutes, "steps": step, "train_min": elapsed / 60,
                            "fid": r["overall"]["fid"], "class_fidelity": r["overall"]["class_fidelity"],
                            "recall": r["overall"].get("recall"), "precision": r["overall"].get("precision")}
            out.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=2))
            print(json.dumps(results[key]), flush=True)
    if a.target and "target" not in results:
        gen = ganaug.load_generator(a.target)
        r = evaluate(gen.net, gen.config, train, test, reference, features, EvalProtocol(n=a.eval_n, cas=False))
        results["target"] = {"arch": f"{gen.config.arch} ({a.target})", "fid": r["overall"]["fid"],
                             "steps": gen.metadata.get("training", {}).get("steps"),
                             "class_fidelity": r["overall"]["class_fidelity"],
                             "recall": r["overall"].get("recall"), "precision": r["overall"].get("precision")}
        results_path.write_text(json.dumps(results, indent=2))
    print(f"\nFull Fashion-MNIST 32x32 grey, {machine()}; FID and fidelity in the reference classifier's "
          f"features against the test split ({a.eval_n} generated images).\n")
    print("| arch | CPU-minutes | steps | FID | class fidelity | precision | recall |\n|---|---|---|---|---|---|---|")
    target = results.get("target")
    if target is not None:  # its minutes: its steps at this run's pace of the same architecture
        pace = [r for k, r in results.items() if k != "target" and target["arch"].startswith(r["arch"] + " ")]
        if target.get("steps") and pace:
            target["train_min"] = target["steps"] * pace[-1]["train_min"] / pace[-1]["steps"]
    for r in results.values():
        if "train_min" not in r:
            r = {**r, "train_min": float("nan"), "steps": "?"}
        print(f"| {r['arch']} | {r['train_min']:.1f} | {r['steps']} | {r['fid']:.2f} | {r['class_fidelity']:.3f} | "
              f"{_f(r['precision'])} | {_f(r['recall'])} |")
    if target is not None and "train_min" in target:
        # the aim: an architecture reaches the target's FID in at most a third of the target's time
        for arch in a.archs:
            hits = [r for k, r in results.items() if k.startswith(arch + "@") and r["fid"] <= target["fid"]]
            first = min(hits, key=lambda r: r["train_min"]) if hits else None
            print(f"\n{arch}: " + (f"reaches the target's FID {target['fid']:.2f} at {first['train_min']:.1f} "
                                   f"CPU-minutes" if first else f"does not reach the target's FID {target['fid']:.2f} "
                                   f"within {max(a.minutes):g} CPU-minutes")
                  + f" (a third of the target's {target['train_min']:.0f}: {target['train_min'] / 3:.0f})")


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    main()
