"""Cut a small imbalanced inspection archive from NEU-DET: the case of issue 36.

The first N images of each class (in file-name order) are copied byte for byte into class folders,
with N from 200 down to 15 by default (no test split: a benchmark carves its own):

    python benchmarks/neu_small.py ../shared/data/neu-det runs/data/neu-small
    ganaug bench-downstream runs/data/neu-small --as-is --out REPORT
"""

from __future__ import annotations

import argparse
import tarfile
from pathlib import Path

from ganaug.data.loaders import class_of_filename

COUNTS = (200, 120, 70, 40, 25, 15)  # the six classes in name order, largest first


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("neu_det", help="the NEU-DET folder holding neu-det.tar.gz")
    p.add_argument("out", help="folder to write class folders into")
    p.add_argument("--counts", type=int, nargs="+", default=list(COUNTS), help="images per class, in name order")
    a = p.parse_args()
    with tarfile.open(Path(a.neu_det) / "neu-det.tar.gz") as tf:
        members = [m for m in tf.getmembers() if m.isfile() and m.name.lower().endswith(".jpg")
                   and "/IMAGES/" in f"/{m.name}"]
        by_class: dict[str, list[tarfile.TarInfo]] = {}
        for m in sorted(members, key=lambda m: m.name):
            by_class.setdefault(class_of_filename(Path(m.name).name), []).append(m)
        names = sorted(by_class)
        if len(a.counts) != len(names):
            raise SystemExit(f"--counts needs one number per class ({len(names)}: {', '.join(names)}).")
        for name, n in zip(names, a.counts):
            folder = Path(a.out) / name
            folder.mkdir(parents=True, exist_ok=True)
            for m in by_class[name][:n]:
                (folder / Path(m.name).name).write_bytes(tf.extractfile(m).read())
            print(f"{name}: {min(n, len(by_class[name]))} images")


if __name__ == "__main__":
    main()
