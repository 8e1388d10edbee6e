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


PAUSE_FACTOR = 5  # a gap between metrics lines this many times the median is a stopped process, not training


def _training(run: Path) -> dict:
    """Steps and seconds of a run folder's training (the last metrics line), and the seconds without
    pauses: gaps between metrics lines over PAUSE_FACTOR times the median gap (a process stopped while
    another was timed) count as the median."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    times = [0.0] + [x["elapsed_s"] for x in lines]
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    median = gaps[len(gaps) // 2]
    active = sum(min(g, median) if g > PAUSE_FACTOR * median else g for g in gaps)
    return {"steps": lines[-1]["step"], "seconds": lines[-1]["elapsed_s"], "active_seconds": active}


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
    print("| ... without pauses | "
          + " | ".join(f"{t['active_seconds'] / 60:.1f}" if t else "-" for _, _, t in cols) + " |")
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
