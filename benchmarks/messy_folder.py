"""Real images the way inspection archives hold them, run through the CLI.

Builds folders from NEU-DET (grey 200x200 steel-surface photos) made messy on purpose: random
crops of 80-200 px per side, saved as JPEG, PNG, BMP with an upper-case extension, or PNG inside a
'.jpg' name, every third one stored grey (the others are RGB files, as NEU-DET's are). Then it runs, as a user would:

- ``ganaug anomaly train`` on 200 scratches crops (normal) and ``ganaug anomaly score`` on 60
  held-out scratches crops against 60 crops of the other five defect types;
- ``ganaug train`` on a four-class folder (40 crops per class) for a few steps.

It prints what was loaded and the anomaly metrics. It checks that such folders load and train;
the AUROC of this ad hoc protocol is not a benchmark of the detector (issue 15 builds those).

    python benchmarks/messy_folder.py --data ../shared/data/neu-det --out runs/messy
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from PIL import Image


def messy_save(im: Image.Image, stem: Path, i: int, rng: random.Random) -> None:
    w, h = im.size
    cw, ch = rng.randint(80, min(200, w)), rng.randint(80, min(200, h))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    im = im.crop((x, y, x + cw, y + ch))
    if i % 3 == 0:  # NEU-DET's JPEGs are RGB files of grey pictures: make every third one grey
        im = im.convert("L" if im.mode == "RGB" else "RGB")
    name, fmt = [(".jpg", "JPEG"), (".png", "PNG"), (".jpg", "PNG"), (".BMP", "BMP")][i % 4]
    im.save(stem.with_suffix(name), fmt)


def build(data: Path, out: Path, seed: int = 0) -> None:
    rng = random.Random(seed)
    with tarfile.open(next(data.glob("*.tar.gz"))) as tf:  # in archive order: gzip cannot seek back
        blobs = {m.name: tf.extractfile(m).read() for m in tf if m.isfile() and m.name.lower().endswith(".jpg")}
    by_class: dict[str, list[bytes]] = {}
    for name in sorted(blobs):
        by_class.setdefault(name.rsplit("/", 1)[-1].rsplit("_", 1)[0], []).append(blobs[name])

    def write(blobs: list[bytes], folder: Path, prefix: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for i, b in enumerate(blobs):
            messy_save(Image.open(io.BytesIO(b)), folder / f"{prefix}{i}", i, rng)

    scratches = list(by_class["scratches"])
    rng.shuffle(scratches)
    write(scratches[:200], out / "normal", "s")
    write(scratches[200:260], out / "eval" / "good", "s")
    others = [b for c, v in sorted(by_class.items()) if c != "scratches" for b in v]
    rng.shuffle(others)
    write(others[:60], out / "eval" / "defect", "o")
    for c in ("crazing", "inclusion", "patches", "pitted_surface"):
        write(by_class[c][:40], out / "classes" / c, "")


def ganaug(*args: str) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "ganaug.cli", *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"ganaug {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/neu-det")
    ap.add_argument("--out", default="runs/messy")
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    build(Path(a.data), out)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    formats: dict[str, int] = {}
    sizes = set()
    for p in files:
        with Image.open(p) as im:
            key = f"{im.format} as {p.suffix}, {im.mode}"
            formats[key] = formats.get(key, 0) + 1
            sizes.add(im.size)
    print(f"{len(files)} files, {len(sizes)} different sizes; "
          + ", ".join(f"{k}: {v}" for k, v in sorted(formats.items())))
    t_train = ganaug("anomaly", "train", str(out / "normal"), "--out", str(out / "detector"), "--image-size", "32",
                     "--width", "16", "--epochs", "5", "--device", "cpu")
    t_score = ganaug("anomaly", "score", str(out / "detector"), str(out / "eval"), "--out", str(out / "scored"),
                     "--normal-class", "good", "--device", "cpu")
    m = json.loads((out / "scored" / "metrics.json").read_text())
    t_gan = ganaug("train", str(out / "classes"), "--out", str(out / "gan"), "--steps", str(a.steps), "--image-size",
                   "32", "--no-progress")
    data = json.loads((out / "gan" / "run_config.json").read_text())["data"]
    print("| step | result | wall s |\n|---|---|---|")
    print(f"| anomaly train (200 normal crops, crop policy, 32 px, 5 epochs) | saved | {t_train:.1f} |")
    print(f"| anomaly score (60 normal, 60 defect crops) | AUROC {m['auroc']:.3f}, AUPRC {m['auprc']:.3f} | "
          f"{t_score:.1f} |")
    print(f"| train ({a.steps} steps) | {data['num_images']} images, classes {data['class_counts']}, "
          f"{data['channels']} channels | {t_gan:.1f} |")


if __name__ == "__main__":
    main()
