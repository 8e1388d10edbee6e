"""Scoring folders of images: scores CSV, predicted labels, heatmap overlays, and (with labels)
AUROC, AUPRC, F1 at the threshold and a ROC curve."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.images import DECODE_ERRORS, decode_image, is_image_file, stack_images
from ..errors import GanaugError
from .detector import Detector, score_images


def list_images(folder: str | Path) -> tuple[list[Path], list[str]]:
    """Image files directly in ``folder`` (class "") or in its class sub-folders (sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GanaugError(f"{str(folder)!r} is not a folder of images.")
    files, classes = [], []
    for f in sorted(folder.iterdir()):
        if f.is_file() and is_image_file(f.name):
            files.append(f)
            classes.append("")
        elif f.is_dir() and not f.name.startswith("."):
            for g in sorted(f.rglob("*")):
                if g.is_file() and is_image_file(g.name):
                    files.append(g)
                    classes.append(f.name)
    if not files:
        raise GanaugError(f"no images in {str(folder)!r} (looked for .png, .jpg, .jpeg, .bmp, .webp).")
    return files, classes


def check_same_size(files: list[Path]) -> tuple[int, int]:
    """The one (width, height) all images share, for the ``strict`` policy (reads only headers)."""
    sizes: dict[tuple[int, int], Path] = {}
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.setdefault(im.size, f)
        except DECODE_ERRORS as e:
            raise GanaugError(f"cannot read {str(f)!r}: {e}") from e
    if len(sizes) > 1:
        examples = ", ".join(f"{w}x{h} ({p.name})" for (w, h), p in list(sizes.items())[:4])
        raise GanaugError(f"the images have different sizes: {examples}, and resize='strict' asks for one "
                          "size. Bring them to one size first, or use --resize crop (or pad), which fits "
                          "every image to the model's size the same way at training and scoring time.")
    return next(iter(sizes))


def load_for(files: list[Path], config) -> torch.Tensor:
    """The images as a detector sees them, by its config's resize policy (the same at training and
    scoring time): uint8 (N, C, S, S)."""
    if config.resize == "strict":
        size = check_same_size(files)
        if config.source_size is not None and size != tuple(config.source_size):
            w, h = config.source_size
            raise GanaugError(f"these images are {size[0]}x{size[1]}, but the detector was trained on {w}x{h} "
                              "images with resize='strict'; bring them to that size first.")
    return decode_files(files, config.image_size, config.channels,
                        fit="pad" if config.resize == "pad" else "crop")


def decode_files(files: list[Path], image_size: int, channels: int | None, fit: str = "crop") -> torch.Tensor:
    """uint8 (N, C, S, S); every unreadable file is listed in the error."""
    arrays, bad = [], []
    for f in files:
        try:
            arrays.append(decode_image(f, image_size, channels, fit))
        except DECODE_ERRORS as e:
            bad.append(f"{f} ({e})")
    if bad:
        raise GanaugError("images could not be read (fix or remove them):\n  " + "\n  ".join(bad[:20]))
    return stack_images(arrays, channels)


def overlay(path: Path, heat: torch.Tensor, fit: str = "crop") -> Image.Image:
    """The original image in grey with the reconstruction error in red, at the image's own size.

    The error map covers what the model saw: under ``crop`` the centred square (the rest of the
    image gets no colour), under ``pad`` the whole image (the padding is cut off the map)."""
    with Image.open(path) as im:
        base = np.asarray(im.convert("L"), dtype=np.float32)
    H, W = base.shape
    s = heat.shape[-1]
    if fit == "pad":  # the image fills a (s*W/m, s*H/m) centred box of the map, m = max(W, H)
        bw, bh = max(1, round(s * W / max(W, H))), max(1, round(s * H / max(W, H)))
        heat = heat[(s - bh) // 2:(s - bh) // 2 + bh, (s - bw) // 2:(s - bw) // 2 + bw]
        box = (0, 0, W, H)
    else:  # the map is the centred min(W, H) square
        m = min(W, H)
        box = ((W - m) // 2, (H - m) // 2, (W - m) // 2 + m, (H - m) // 2 + m)
    h = np.zeros_like(base)
    h[box[1]:box[3], box[0]:box[2]] = torch.nn.functional.interpolate(
        heat[None, None], size=(box[3] - box[1], box[2] - box[0]), mode="bilinear", align_corners=False)[0, 0].numpy()
    h = h / max(float(h.max()), 1e-8)
    rgb = np.stack([base * (1 - 0.6 * h) + 255 * 0.6 * h, base * (1 - 0.6 * h), base * (1 - 0.6 * h)], -1)
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def read_label_csv(path: str | Path, files: list[Path]) -> list[int]:
    """``filename,label`` rows (label 1 = anomaly, 0 = normal), matched by file name."""
    table = {}
    with open(path, newline="") as fh:
        for row in csv.reader(fh):
            if len(row) >= 2 and row[1].strip() in ("0", "1"):
                table[row[0].strip()] = int(row[1])
    missing = [f.name for f in files if f.name not in table]
    if missing:
        raise GanaugError(f"--labels has no label for {missing[:5]}{'...' if len(missing) > 5 else ''}.")
    return [table[f.name] for f in files]


def score_folder(model: Detector, folder: str | Path, out_dir: str | Path, *,
                 labels_csv: str | Path | None = None, normal_class: str | None = None,
                 heatmaps: bool = True) -> dict:
    """Score every image; write scores.csv, heatmaps/ (for methods with anomaly maps) and, with
    labels, metrics and roc.png."""
    files, classes = list_images(folder)
    images = load_for(files, model.config)
    scores, maps = score_images(model, images)
    predicted = (scores > model.threshold).long()
    labels = None
    if labels_csv:
        labels = read_label_csv(labels_csv, files)
    elif normal_class is not None:
        if normal_class not in set(classes):
            raise GanaugError(f"no class folder named {normal_class!r} in {str(folder)!r}; found "
                              f"{sorted(set(classes) - {''})}.")
        labels = [int(c != normal_class) for c in classes]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "scores.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "score", "predicted_anomaly", "threshold"] + (["label"] if labels else []))
        for i, f in enumerate(files):
            w.writerow([str(f), f"{float(scores[i]):.6f}", int(predicted[i]), f"{model.threshold:.6f}"]
                       + ([labels[i]] if labels else []))
    if heatmaps and maps is not None:
        (out / "heatmaps").mkdir(exist_ok=True)
        for i, f in enumerate(files):
            name = f"{classes[i]}_{f.stem}.png" if classes[i] else f"{f.stem}.png"
            overlay(f, maps[i], "pad" if model.config.resize == "pad" else "crop").save(out / "heatmaps" / name)
    result = {"n": len(files), "threshold": model.threshold, "n_predicted_anomalies": int(predicted.sum()),
              "heatmaps": heatmaps and maps is not None}
    if labels is not None:
        result.update(binary_metrics(scores, torch.tensor(labels), model.threshold, out / "roc.png"))
    return result


def binary_metrics(scores: torch.Tensor, labels: torch.Tensor, threshold: float,
                   roc_png: Path | None = None) -> dict:
    from torchmetrics.functional.classification import (binary_auroc, binary_average_precision,
                                                        binary_f1_score, binary_roc)

    if labels.min() == labels.max():
        raise GanaugError("the labels contain only one class; AUROC needs normal and anomalous images.")
    pred = (scores > threshold).float()
    metrics = {"auroc": float(binary_auroc(scores, labels)),
               "auprc": float(binary_average_precision(scores, labels)),
               "f1_at_threshold": float(binary_f1_score(pred, labels)),
               "n_anomalous": int(labels.sum()), "n_normal": int((1 - labels).sum())}
    if roc_png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fpr, tpr, _ = binary_roc(scores, labels)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot(fpr.numpy(), tpr.numpy(), label=f"AUROC {metrics['auroc']:.3f}")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(roc_png, dpi=100)
        plt.close(fig)
    return metrics
