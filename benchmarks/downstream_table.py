"""Downstream rows from several `ganaug bench-downstream` folders side by side, paired seed by seed.

    python benchmarks/downstream_table.py --against posthoc-la \\
        "posthoc-la=runs/bench/fmnist-new-scratch:posthoc-la" \\
        "recipe, scratch generator=runs/bench/fmnist-new-scratch:recipe" ...

Each row is NAME=FOLDER:VARIANT, read from the folder's run records (`runs/VARIANT-seedN.json`, or
FOLDER's own `VARIANT-seedN.json` for records copied out of a benchmark folder;
VARIANT `recipe` reads the `recipe-<hash>-seedN.json` records, which must be of one recipe). A
benchmark's own report pairs rows within one folder; protocols whose rows live in several folders
(a generator per folder, a classifier start per folder: docs/bench/fmnist-new) are tabulated here.
Prints a Markdown table: seeds, test balanced accuracy (mean +- sample std over seeds), rare-class
accuracy, validation, and the paired test difference to the row named by --against (over the seeds
both rows have). Nothing is trained.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch


def _runs(folder: Path, variant: str) -> dict[int, dict]:
    """{seed: the run record} of one variant in a benchmark folder (its `runs/`), or in a folder of
    records copied out of one (docs/bench/*/runs/*)."""
    records = folder / "runs" if (folder / "runs").is_dir() else folder
    prefix = r"recipe-[0-9a-f]{8}" if variant == "recipe" else re.escape(variant)
    found: dict[int, dict] = {}
    names = set()
    for f in records.glob("*-seed*.json"):
        m = re.fullmatch(rf"({prefix})-seed(\d+)\.json", f.name)
        if m:
            names.add(m.group(1))
            found[int(m.group(2))] = json.loads(f.read_text())["run"]
    if not found:
        raise SystemExit(f"no run records of {variant!r} in {records}")
    if len(names) > 1:
        raise SystemExit(f"{records} holds several recipes {sorted(names)}; name one")
    return dict(sorted(found.items()))


def _mean_std(values: list[float], sign: str = "") -> str:
    t = torch.tensor(values, dtype=torch.float64)
    return f"{t.mean():{sign}.2f} +- {t.std() if len(t) > 1 else 0.0:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="+", help="NAME=FOLDER:VARIANT")
    ap.add_argument("--against", help="the row NAME every other row is paired with (default: the first)")
    ap.add_argument("--rare", default="rare classes",
                    help="the rare-class column's name (the benchmark's rarest classes, e.g. 'Ankle boot (54 images)')")
    a = ap.parse_args()
    rows = []
    for spec in a.rows:
        name, _, where = spec.partition("=")
        folder, _, variant = where.rpartition(":")
        rows.append((name, _runs(Path(folder), variant)))
    against = dict(rows).get(a.against or rows[0][0])
    if against is None:
        raise SystemExit(f"--against {a.against!r} names no row")

    print(f"| row | seeds | test balanced acc. | {a.rare}, test | validation | paired vs {a.against or rows[0][0]} |")
    print("|---|---|---|---|---|---|")
    for name, runs in rows:
        seeds = list(runs)
        shared = [s for s in seeds if s in against]
        diffs = [100 * (runs[s]["balanced_accuracy"] - against[s]["balanced_accuracy"]) for s in shared]
        paired = "-" if runs is against else (f"{_mean_std(diffs, '+')} ({len(shared)})" if shared else "no shared seed")
        test = _mean_std([100 * r["balanced_accuracy"] for r in runs.values()])
        rare = sum(100 * r["rare_accuracy"] for r in runs.values()) / len(runs)
        val = sum(100 * r["val_balanced_accuracy"] for r in runs.values()) / len(runs)
        print(f"| {name} | {','.join(map(str, seeds))} | {test} | {rare:.2f} | {val:.2f} | {paired} |")


if __name__ == "__main__":
    main()
