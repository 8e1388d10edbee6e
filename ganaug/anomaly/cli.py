"""``ganaug anomaly train`` and ``ganaug anomaly score``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

def add_parser(sub: argparse._SubParsersAction) -> None:
    from .model import ANOMALY_SIZES, RESIZE_POLICIES, SCORE_REDUCTIONS, AnomalyConfig
    from .train import AnomalyTrainConfig

    m, t = AnomalyConfig(), AnomalyTrainConfig()
    p = sub.add_parser("anomaly", help="SkipGANomaly anomaly detection: train on normal images, score new ones",
                       description="Anomaly detection with SkipGANomaly (Akcay et al. 2019).")
    s = p.add_subparsers(dest="anomaly_command", required=True)
    tr = s.add_parser("train", help="train a detector on normal images only",
                      description="Train on NORMAL_DIR (images directly in it, or in sub-folders: all are "
                      "taken as normal). A held-out part of them picks the epoch and sets the threshold.",
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    tr.add_argument("normal_dir", metavar="NORMAL_DIR", help="folder of normal images")
    tr.add_argument("--out", required=True, metavar="MODEL", help="folder for the detector package")
    tr.add_argument("--image-size", type=int, default=m.image_size, choices=ANOMALY_SIZES,
                    help="images are resized (shorter side) and centre-cropped to this")
    tr.add_argument("--resize", choices=RESIZE_POLICIES, default=m.resize,
                    help="how images of any size fit the model, the same when scoring: crop = shorter side "
                    "resized and centre cropped; pad = longer side resized, black borders, nothing cut off; "
                    "strict = all images must have one size (and scored images the same size)")
    tr.add_argument("--channels", type=int, choices=(1, 3), default=None,
                    help="1 = grey, 3 = RGB (default: as the data)")
    tr.add_argument("--width", type=int, default=m.width, help="base width of the networks")
    tr.add_argument("--epochs", type=int, default=t.epochs, help="most epochs to train")
    tr.add_argument("--batch-size", type=int, default=t.batch_size, help="batch size")
    tr.add_argument("--lr", type=float, default=t.lr, help="Adam learning rate of G and D")
    tr.add_argument("--val-fraction", type=float, default=t.val_fraction,
                    help="share of normal images held out for early stopping and the threshold")
    tr.add_argument("--threshold-quantile", type=float, default=t.threshold_quantile,
                    help="threshold = this quantile of held-out normal scores (1 - target false-positive rate)")
    tr.add_argument("--score-lambda", type=float, default=m.score_lambda,
                    help="score = lambda * reconstruction + (1 - lambda) * latent distance")
    tr.add_argument("--score-reduce", choices=SCORE_REDUCTIONS, default=m.score_reduce,
                    help="image score from the anomaly map: mean (the paper's), max, or mean of the top --score-topk "
                    "share of pixels (small defects in a large normal texture)")
    tr.add_argument("--score-topk", type=float, default=m.score_topk, help="share of pixels for --score-reduce topk")
    tr.add_argument("--score-smoothing", type=float, default=m.score_smoothing,
                    help="sigma (pixels) of the Gaussian that smooths the anomaly map before it is reduced; 0: none")
    tr.add_argument("--spectral-norm", action="store_true", help="spectral normalisation in D")
    tr.add_argument("--seed", type=int, default=t.seed, help="seed of the split and the training")
    tr.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one), cpu, cuda or cuda:N")
    sc = s.add_parser("score", help="score images with a trained detector",
                      description="Write scores.csv (score, predicted label, threshold), heatmap overlays and, "
                      "when labels are given, AUROC, AUPRC, F1 at the threshold and roc.png.",
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sc.add_argument("model", metavar="MODEL", help="detector folder or hf-hub:org/name[@rev]")
    sc.add_argument("images", metavar="IMAGES", help="folder of images (flat, or class sub-folders)")
    sc.add_argument("--out", required=True, help="output folder")
    sc.add_argument("--labels", default=None, help="CSV of filename,label (1 = anomaly, 0 = normal)")
    sc.add_argument("--normal-class", default=None, help="with class sub-folders: the folder of normal images")
    sc.add_argument("--no-heatmaps", action="store_true", help="skip the heatmap overlays")
    sc.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one), cpu, cuda or cuda:N")


def run(a: argparse.Namespace) -> None:
    if a.anomaly_command == "train":
        return _train(a)
    from ..training.loop import pick_device
    from .package import load_detector
    from .scoring import score_folder

    model = load_detector(a.model).to(pick_device(a.device))
    result = score_folder(model, a.images, a.out, labels_csv=a.labels, normal_class=a.normal_class,
                          heatmaps=not a.no_heatmaps)
    (Path(a.out) / "metrics.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def _train(a: argparse.Namespace) -> None:
    import dataclasses
    import shlex

    from .model import AnomalyConfig
    from .package import save_detector
    from .scoring import check_same_size, list_images, load_for
    from .train import AnomalyTrainConfig, train_detector

    files, _ = list_images(a.normal_dir)
    config = AnomalyConfig(image_size=a.image_size, channels=a.channels or 1, width=a.width, resize=a.resize,
                           source_size=check_same_size(files) if a.resize == "strict" else None,
                           score_lambda=a.score_lambda, spectral_norm=a.spectral_norm, score_reduce=a.score_reduce,
                           score_topk=a.score_topk, score_smoothing=a.score_smoothing)
    images = load_for(files, dataclasses.replace(config, channels=a.channels))  # None: as the data
    config = dataclasses.replace(config, channels=images.shape[1])
    tc = AnomalyTrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, val_fraction=a.val_fraction,
                            threshold_quantile=a.threshold_quantile, seed=a.seed)
    from ..training.loop import pick_device

    model, record = train_detector(images, config, tc, device=pick_device(a.device))
    record["data"] = {"source": str(a.normal_dir), "num_images": len(images)}
    record["commands"] = [shlex.join(["ganaug", *a.argv])]
    card = detector_card(model, record)
    save_detector(model, a.out, record, card)
    print(f"threshold {model.threshold:.5f} ({record['threshold_rule']}); saved to {a.out}")


def detector_card(model, record: dict) -> str:
    from huggingface_hub import ModelCardData

    from ..hub.card import card_text

    c = model.config
    body = "\n".join([
        f"# SkipGANomaly detector, {c.channels}x{c.image_size}x{c.image_size}", "",
        "Trained on normal images only. Anomaly map = "
        f"{c.score_lambda} * reconstruction L1 + {1 - c.score_lambda:.2f} * latent L2 in D's feature space"
        + (f", smoothed by a Gaussian of sigma {c.score_smoothing} px" if c.score_smoothing else "")
        + f"; score = its {c.score_reduce}" + (f" over the top {c.score_topk:.0%} of pixels" if c.score_reduce == "topk"
                                               else "") + ".", "",
        "```bash", "ganaug anomaly score THIS_FOLDER IMAGES --out scores/", "```", "",
        f"- data: `{record.get('data', {}).get('source')}`, {record.get('num_train')} images for training, "
        f"{record.get('num_validation')} held out",
        f"- epochs run: {record.get('epochs_run')}, kept: {record.get('best_epoch')} (lowest mean held-out score)",
        f"- threshold: {record.get('threshold'):.5f}, {record.get('threshold_rule')}",
        f"- images of any size are fitted to {c.image_size}x{c.image_size} by `resize={c.resize}`, the same "
        "when scoring" + (f" (strict: only {c.source_size[0]}x{c.source_size[1]} images)" if c.source_size else ""),
        f"- wall time: {record.get('elapsed_s')} s", "",
        "Reproduce:", "", "```bash", *record.get("commands", []), "```", ""])
    return card_text(ModelCardData(library_name="ganaug", tags=["ganaug", "anomaly-detection", "skipganomaly"]), body)
