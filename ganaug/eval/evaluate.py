"""The evaluation protocol: what is generated, what it is compared with, and how.

Fixed and recorded in ``eval.json`` so two results can be compared or refused:
- ``n`` images, the same number for every class, labels in class order, latents from one
  CPU generator seeded with ``seed``;
- compared with the real ``split`` (all of it), loaded at the generator's resolution and
  channels with the same loader used for training (shorter-side bicubic resize + centre crop);
- in one feature space (``reference`` or ``inception``); class fidelity and CAS always use the
  reference classifier, whose real-test accuracy is reported as their ceiling;
- FID (float64, eigendecomposition), KID (cubic kernel, unbiased, 100 subsets of up to 1000),
  IS (10 splits), precision/recall/density/coverage (k = 3), per class as well as overall;
- memorisation: nearest training image in feature space for every generated image.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..version import __version__
from ..data.dataset import LabelledImages
from ..errors import GanaugError
from ..models import GANConfig, generate_images
from .. import precision as arithmetic
from . import metrics as M
from .classifier import FitConfig, fit_classifier, predict
from .features import FeatureSpace, ReferenceFeatures
from .judge_check import judge_quality, refuse_figures, refusal
from .reference import ReferenceClassifier


@dataclass
class EvalProtocol:
    n: int = 10000
    seed: int = 0
    split: str = "test"
    k: int = 3  # neighbours for precision/recall
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    truncation: float | None = None
    cas: bool = True  # train a classifier on generated images (takes a minute on CPU)


def evaluate(G: torch.nn.Module, config: GANConfig, train: LabelledImages, test: LabelledImages,
             reference: ReferenceClassifier, features: FeatureSpace,
             protocol: EvalProtocol | None = None, *, progress: bool = False) -> dict:
    """Run the protocol; returns the ``eval.json`` content plus tensors for the report."""
    protocol = protocol or EvalProtocol()
    for split in (train, test):
        split.require(config.channels, config.image_size, config.class_names, "the generator")
    K = config.num_classes
    per_class = protocol.n // K
    if per_class < max(2, protocol.k + 1):
        raise GanaugError(f"--n {protocol.n} gives {per_class} images per class; use at least "
                          f"{K * (protocol.k + 1)} so every per-class metric is defined.")
    timings = {}

    def log(msg: str) -> None:
        if progress:
            print(msg, flush=True)

    t = time.perf_counter()
    labels = torch.arange(K).repeat_interleave(per_class)
    fake = generate_images(G, labels, z_dim=config.z_dim, value_range=config.value_range,
                           seed=protocol.seed, truncation=protocol.truncation)
    timings["generate_s"] = time.perf_counter() - t
    log(f"generated {len(fake)} images ({per_class} per class)")

    t = time.perf_counter()
    f_fake, l_fake = features.embed(fake)
    f_real, _ = features.embed(test.images)
    f_train, _ = features.embed(train.images)
    judged_by_features = isinstance(features, ReferenceFeatures) and features.ref.model is reference.model
    # the reference feature space already ran the judge on the generated images: reuse its logits
    ref_logits_fake = l_fake if judged_by_features else predict(reference.model, fake)[1]
    timings["features_s"] = time.perf_counter() - t

    t = time.perf_counter()
    kid_mean, kid_std, kid_m = M.kid(f_real, f_fake, subsets=protocol.kid_subsets,
                                     subset_size=protocol.kid_subset_size, seed=protocol.seed)
    overall = {"fid": M.fid(f_real, f_fake), "kid": kid_mean, "kid_std": kid_std,
               "kid_subset_size": kid_m}
    overall["is"], overall["is_std"] = M.inception_score(l_fake, protocol.is_splits, protocol.seed)
    overall.update(M.precision_recall(f_real, f_fake, protocol.k, protocol.seed))
    fidelity, fidelity_per = M.class_fidelity(ref_logits_fake, labels, K)
    overall["class_fidelity"] = fidelity
    timings["metrics_s"] = time.perf_counter() - t

    classes = _class_rows(config.class_names, train.class_counts(), f_real, test.labels, f_fake, labels,
                          fidelity_per, protocol)

    t = time.perf_counter()
    mem = M.memorisation(f_fake, labels, f_train, f_real, test.labels, K)
    for row, m in zip(classes, mem["per_class"]):
        row["memorisation"] = m
    timings["memorisation_s"] = time.perf_counter() - t

    overall["cas"] = None
    if protocol.cas:
        t = time.perf_counter()
        overall["cas"] = _cas(fake, labels, K, reference, test, classes, progress)
        timings["cas_s"] = time.perf_counter() - t

    # a judge near chance makes every figure it computes meaningless (judge_check.py): refuse them
    judge = judge_quality(reference.model, test.images, test.labels, K)
    if judge["degenerate"]:
        judge["refusal"] = refusal(judge, config.class_names)
        mem = refuse_figures(overall, classes, mem, in_judge_space=isinstance(features, ReferenceFeatures))

    result = {
        "ganaug_version": __version__,
        "protocol": {**dataclasses.asdict(protocol), "per_class": per_class,
                     "n_fake": len(fake), "n_real": len(test), "real_split": test.source,
                     "train_split_for_memorisation": train.source, **_methods(protocol, features, kid_m)},
        "reference_classifier": {"real_test_accuracy": reference.config.real_test_accuracy,
                                 "real_test_balanced_accuracy": judge["balanced_accuracy"],
                                 "trained_on": reference.config.trained_on.get("source")},
        "judge": judge,
        "generator": {"arch": config.arch, "image_size": config.image_size,
                      "channels": config.channels, "class_names": config.class_names},
        "overall": overall,
        "per_class": classes,
        "memorisation": {"copy_quantile": mem["copy_quantile"], "flag_fraction": mem["flag_fraction"],
                         "refused": bool(mem.get("flagged_classes_refused")),
                         "flagged_classes": [config.class_names[c] for c, m in enumerate(mem["per_class"])
                                             if m and m["flagged"]]},
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }
    result["_tensors"] = {"fake": fake, "labels": labels, "ratio": None if result["memorisation"]["refused"]
                          else mem["ratio"], "nearest": mem["nearest_train_index"]}
    return result


def _class_rows(names: list[str], n_train: list[int], f_real: torch.Tensor, real_labels: torch.Tensor,
                f_fake: torch.Tensor, fake_labels: torch.Tensor, fidelity_per: list, protocol: EvalProtocol
                ) -> list[dict]:
    """Per class: counts, class fidelity, FID and precision/recall where the class has enough images."""
    classes = []
    for c, name in enumerate(names):
        r, f = f_real[real_labels == c], f_fake[fake_labels == c]
        row = {"class": name, "n_train": n_train[c], "n_fake": len(f), "n_real": len(r),
               "class_fidelity": fidelity_per[c]}
        row["fid"] = M.fid(r, f) if min(len(r), len(f)) >= 2 else None
        row.update(M.precision_recall(r, f, protocol.k, protocol.seed) if min(len(r), len(f)) > protocol.k else {})
        classes.append(row)
    return classes


def _cas(fake: torch.Tensor, labels: torch.Tensor, K: int, reference: ReferenceClassifier, test: LabelledImages,
         classes: list[dict], progress: bool) -> float:
    """Classification accuracy score: the judge's recipe trained on the generated images alone, tested
    on the real test split; sets each class row's ``cas`` (which classes the generated images teach)."""
    fit = FitConfig(**reference.config.fit) if reference.config.fit else FitConfig()
    if fit.precision == "bf16" and not arithmetic.cpu_has_native_bf16():
        # the judge's recipe, in fp32 here: a judge trained in bf16 still evaluates on CPUs without it
        fit = dataclasses.replace(fit, precision="fp32")
    clf = fit_classifier(fake, labels, K, fit, progress=progress, desc="CAS classifier")
    hit = (predict(clf, test.images)[1].argmax(1) == test.labels).float()
    for c, row in enumerate(classes):
        row["cas"] = hit[test.labels == c].mean().item() if (test.labels == c).any() else None
    return hit.mean().item()


def _methods(protocol: EvalProtocol, features: FeatureSpace, kid_m: int) -> dict[str, str]:
    """How each figure was computed, in words, for eval.json."""
    return {"resize": "real images loaded at the generator's resolution: shorter side "
                      "resized (bicubic, antialiased) and centre-cropped; IDX data "
                      "bilinear-resized",
            "features": features.describe(),
            "fid": "float64 Frechet distance via symmetric eigendecomposition",
            "kid": f"unbiased MMD^2, cubic polynomial kernel, {protocol.kid_subsets} subsets of {kid_m}",
            "precision_recall": f"k-NN balls, k={protocol.k}, the larger set subsampled "
                                "to the smaller (Kynkaanniemi 2019; Naeem 2020)",
            "inception_score": f"{protocol.is_splits} random splits"}


def save_result(result: dict, train: LabelledImages, out_dir: str | Path) -> Path:
    """Write eval.json, report.md and the plots; returns the folder."""
    from .report import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    (out / "eval.json").write_text(json.dumps(public, indent=2))
    write_report(result, train, out)
    return out


def check_comparable(a: dict, b: dict) -> None:
    """Refuse to compare two eval.json results made under different protocols."""
    keys = ("n_fake", "n_real", "real_split", "k", "kid_subset_size", "seed", "truncation")
    pa, pb = a["protocol"], b["protocol"]
    diff = [k for k in keys if pa.get(k) != pb.get(k)]
    if pa["features"]["name"] != pb["features"]["name"]:
        diff.append("features")
    if diff:
        raise GanaugError(f"these results used different protocols ({', '.join(diff)}); their "
                          "numbers cannot be compared.")
