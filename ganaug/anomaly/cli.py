"""``ganaug anomaly train`` and ``ganaug anomaly score``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


TRAINING_RUN = "training"  # SkipGANomaly's run folder inside the package folder (never pushed)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from .memory import CORESETS
    from .memory_bank import MemoryBankConfig
    from .model import RESIZE_POLICIES, SCORE_REDUCTIONS, AnomalyConfig
    from .train import AnomalyTrainConfig

    m, t, mb = AnomalyConfig(), AnomalyTrainConfig(), MemoryBankConfig()
    p = sub.add_parser("anomaly", help="anomaly detection: fit on normal images, score new ones",
                       description="Anomaly detection: kNN on CNN features, PatchCore (Roth et al. 2022) or "
                       "SkipGANomaly (Akcay et al. 2019).")
    s = p.add_subparsers(dest="anomaly_command", required=True)
    tr = s.add_parser("train", help="fit a detector on normal images only",
                      description="Fit on NORMAL_DIR (images directly in it, or in sub-folders: all are "
                      "taken as normal). A held-out part of them sets the threshold (and, for SkipGANomaly, "
                      "picks the epoch).", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    tr.add_argument("normal_dir", metavar="NORMAL_DIR", help="folder of normal images")
    tr.add_argument("--out", required=True, metavar="MODEL", help="folder for the detector package")
    tr.add_argument("--method", choices=("knn", "patchcore", "skipganomaly"), default="knn",
                    help="knn: one feature vector per image, distance to the k nearest normal ones (no heatmaps); "
                    "patchcore: patch features, a coreset, per-patch distances as the heatmap; skipganomaly: the "
                    "GAN reconstruction detector (it lost to both on every benchmark protocol, see the README)")
    tr.add_argument("--image-size", type=int, default=m.image_size,
                    help="images are fitted to this square by --resize (skipganomaly: 32, 64 or 128)")
    tr.add_argument("--resize", choices=RESIZE_POLICIES, default=m.resize,
                    help="how images of any size fit the model, the same when scoring: crop = shorter side "
                    "resized and centre cropped; pad = longer side resized, black borders, nothing cut off; "
                    "strict = all images must have one size (and scored images the same size)")
    tr.add_argument("--channels", type=int, choices=(1, 3), default=None,
                    help="1 = grey, 3 = RGB (default: as the data)")
    tr.add_argument("--val-fraction", type=float, default=t.val_fraction,
                    help="share of normal images held out for the threshold (never fitted)")
    tr.add_argument("--threshold-quantile", type=float, default=t.threshold_quantile,
                    help="threshold = this quantile of held-out normal scores (1 - target false-alarm rate)")
    tr.add_argument("--seed", type=int, default=t.seed, help="seed of the split, the coreset and the training")
    tr.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one), cpu, cuda or cuda:N")
    f = tr.add_argument_group("knn and patchcore")
    f.add_argument("--backbone", default="torchvision:resnet18",
                   help="feature extractor: torchvision:NAME[@WEIGHTS] (any torchvision classifier, its published "
                   "weights fetched once and cached as safetensors, or --backbone-weights), reference:FOLDER (a "
                   "ganaug reference classifier, copied into the package) or pixels (knn only)")
    f.add_argument("--backbone-weights", default=None, metavar="FILE",
                   help="a local .safetensors (or .pth, read without unpickling) for a torchvision backbone")
    f.add_argument("--layers", nargs="+", default=None, metavar="NODE",
                   help="feature nodes (torchvision.models.feature_extraction names); default: layer2 layer3 "
                   "(patchcore) or avgpool (knn) for ResNets, the second pooling or the pooled vector for a reference "
                   "classifier")
    f.add_argument("--input-size", type=int, default=None,
                   help="images are resized to this before the backbone (default: the weights' crop size for "
                   "torchvision, the image size for a reference classifier)")
    f.add_argument("--k", type=int, default=None, help="nearest normal neighbours averaged (default: knn 5, patchcore 1)")
    f.add_argument("--coreset", choices=CORESETS, default=None,
                   help="how the memory bank is thinned (default: knn none, patchcore greedy k-center)")
    f.add_argument("--coreset-ratio", type=float, default=mb.coreset_ratio, help="share of features the coreset keeps")
    f.add_argument("--smoothing", type=float, default=mb.smoothing, help="patchcore: sigma (px) of the heatmap's Gaussian")
    g = tr.add_argument_group("skipganomaly")
    g.add_argument("--width", type=int, default=m.width, help="base width of the networks")
    g.add_argument("--epochs", type=int, default=t.epochs, help="most epochs to train")
    g.add_argument("--batch-size", type=int, default=t.batch_size, help="batch size")
    g.add_argument("--lr", type=float, default=t.lr, help="Adam learning rate of G and D")
    g.add_argument("--score-lambda", type=float, default=m.score_lambda,
                   help="score = lambda * reconstruction + (1 - lambda) * latent distance")
    g.add_argument("--score-reduce", choices=SCORE_REDUCTIONS, default=m.score_reduce,
                   help="image score from the anomaly map: mean (the paper's), max, or mean of the top --score-topk "
                   "share of pixels (small defects in a large normal texture)")
    g.add_argument("--score-topk", type=float, default=m.score_topk, help="share of pixels for --score-reduce topk")
    g.add_argument("--score-smoothing", type=float, default=m.score_smoothing,
                   help="sigma (pixels) of the Gaussian that smooths the anomaly map before it is reduced; 0: none")
    g.add_argument("--spectral-norm", action="store_true", help="spectral normalisation in D")
    g.add_argument("--resume", action="store_true",
                   help=f"continue a killed run from its last epoch (checkpointed in MODEL/{TRAINING_RUN}/)")
    sc = s.add_parser("score", help="score images with a trained detector",
                      description="Write scores.csv (score, predicted label, threshold), heatmap overlays (methods "
                      "with anomaly maps) and, when labels are given, AUROC, AUPRC, F1 at the threshold and roc.png.",
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sc.add_argument("model", metavar="MODEL", help="detector folder or hf-hub:org/name[@rev]")
    sc.add_argument("images", metavar="IMAGES", help="folder of images (flat, or class sub-folders)")
    sc.add_argument("--out", required=True, help="output folder")
    sc.add_argument("--labels", default=None, help="CSV of filename,label (1 = anomaly, 0 = normal)")
    sc.add_argument("--normal-class", default=None, help="with class sub-folders: the folder of normal images")
    sc.add_argument("--no-heatmaps", action="store_true", help="skip the heatmap overlays")
    sc.add_argument("--backbone-weights", default=None, metavar="FILE",
                    help="the torchvision backbone's weights as a local file (else its cache or download)")
    sc.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one), cpu, cuda or cuda:N")


def run(a: argparse.Namespace) -> None:
    if a.anomaly_command == "train":
        return _train(a)
    from ..training.loop import pick_device
    from .package import load_detector
    from .scoring import score_folder

    model = load_detector(a.model, backbone_weights=a.backbone_weights).to(pick_device(a.device))
    result = score_folder(model, a.images, a.out, labels_csv=a.labels, normal_class=a.normal_class,
                          heatmaps=not a.no_heatmaps)
    (Path(a.out) / "metrics.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def _train(a: argparse.Namespace) -> None:
    import dataclasses
    import shlex
    import time

    from ..training.loop import pick_device
    from .card import detector_card
    from .package import save_detector
    from .scoring import check_same_size, list_images, load_for

    files, _ = list_images(a.normal_dir)
    source_size = check_same_size(files) if a.resize == "strict" else None
    device = pick_device(a.device)
    t0 = time.perf_counter()
    if a.method == "skipganomaly":
        from .model import AnomalyConfig
        from .train import AnomalyTrainConfig, train_detector

        config = AnomalyConfig(image_size=a.image_size, channels=a.channels or 1, width=a.width, resize=a.resize,
                               source_size=source_size, score_lambda=a.score_lambda, spectral_norm=a.spectral_norm,
                               score_reduce=a.score_reduce, score_topk=a.score_topk,
                               score_smoothing=a.score_smoothing)
        images = load_for(files, dataclasses.replace(config, channels=a.channels))  # None: as the data
        config = dataclasses.replace(config, channels=images.shape[1])
        tc = AnomalyTrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, val_fraction=a.val_fraction,
                                threshold_quantile=a.threshold_quantile, seed=a.seed)
        model, record = train_detector(images, config, tc, device=device, run_dir=Path(a.out) / TRAINING_RUN,
                                       resume=a.resume)
    else:
        from .backbone import build_backbone
        from .memory_bank import MemoryBankConfig, fit_memory_bank

        backbone = build_backbone(a.backbone, a.method, layers=tuple(a.layers or ()),
                                  weights_file=a.backbone_weights, input_size=a.input_size)
        config = MemoryBankConfig.for_method(
            a.method, backbone=backbone.config, image_size=a.image_size, channels=a.channels or 1, resize=a.resize,
            source_size=source_size, k=a.k, coreset=a.coreset, coreset_ratio=a.coreset_ratio, smoothing=a.smoothing)
        images = load_for(files, dataclasses.replace(config, channels=a.channels))
        config = dataclasses.replace(config, channels=images.shape[1])
        model, record = fit_memory_bank(images, config, backbone.to(device), val_fraction=a.val_fraction,
                                        threshold_quantile=a.threshold_quantile, seed=a.seed)
        model = model.cpu()
        print(f"memory bank: {record['bank_rows']} of {record['features_seen']} features, "
              f"{record['feature_dim']}-d, {record['bank_bytes'] / 2**20:.1f} MiB ({record['coreset']}); "
              f"{record['seconds']['total']:.1f} s")
    record["elapsed_s"] = round(time.perf_counter() - t0, 1)
    record["data"] = {"source": str(a.normal_dir), "num_images": len(images)}
    record["commands"] = [shlex.join(["ganaug", *a.argv])]
    save_detector(model, a.out, record, detector_card(model, record))
    print(f"threshold {model.threshold:.5f} ({record['threshold_rule']}); saved to {a.out}")
