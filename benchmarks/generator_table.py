"""Generators side by side, per class: class fidelity, recall and CAS from their `ganaug eval`
folders, and the wall time of their training runs (one thread each, from the run's metrics).

    python benchmarks/generator_table.py "from scratch=EVAL_DIR:RUN_DIR" "fine-tuned=EVAL_DIR:RUN_DIR" ...

Prints a Markdown table: overall figures, then one row per class. Issue 35 uses it for the
transfer protocol's generators (trained on the private part from scratch, the public one as it
is, and the public one fine-tuned on the private part); the commands are in
docs/bench/fmnist-same/README.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _training(run: Path) -> dict:
    """Steps and seconds of a run folder's training (the last metrics line)."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    last = lines[-1]
    return {"steps": last["step"], "seconds": last["elapsed_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("columns", nargs="+", help="NAME=EVAL_DIR:RUN_DIR (RUN_DIR may be empty: no training time)")
    a = ap.parse_args()
    cols = []
    for spec in a.columns:
        name, _, paths = spec.partition("=")
        ev, _, run = paths.partition(":")
        result = json.loads((Path(ev) / "eval.json").read_text())
        cols.append((name, result, _training(Path(run)) if run else None))

    def fmt(v) -> str:
        return "-" if v is None else f"{v:.2f}"

    head = "| | " + " | ".join(n for n, _, _ in cols) + " |"
    print(head)
    print("|---" * (len(cols) + 1) + "|")
    for label, key in (("FID (reference features)", "fid"), ("precision", "precision"), ("recall", "recall"),
                       ("class fidelity", "class_fidelity"), ("CAS", "cas")):
        print(f"| {label} | " + " | ".join(fmt(r["overall"][key]) for _, r, _ in cols) + " |")
    print("| training steps | " + " | ".join(str(t["steps"]) if t else "-" for _, _, t in cols) + " |")
    print("| training wall minutes (1 thread) | "
          + " | ".join(f"{t['seconds'] / 60:.1f}" if t else "-" for _, _, t in cols) + " |")
    print()
    print("| class | " + " | ".join(f"{n}: fidelity / recall / CAS" for n, _, _ in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    rows = [r["per_class"] for _, r, _ in cols]
    for c, first in enumerate(rows[0]):
        cells = [f"{fmt(pc[c]['class_fidelity'])} / {fmt(pc[c].get('recall'))} / {fmt(pc[c].get('cas'))}"
                 for pc in rows]
        print(f"| {first['class']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
