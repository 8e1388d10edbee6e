"""The model card of a detector package: what it is, what it was fitted on, its threshold rule,
what it costs, and the command that made it."""

from __future__ import annotations

from torch import nn

from .memory_bank import MemoryBankDetector


def _describe(model: nn.Module) -> list[str]:
    c = model.config
    if isinstance(model, MemoryBankDetector):
        if c.method == "knn":
            return [f"# kNN anomaly detector, {c.channels}x{c.image_size}x{c.image_size}", "",
                    f"Fitted on normal images only: one feature vector per image from {c.backbone.describe()}; "
                    f"score = mean distance to the {c.k} nearest normal images. No heatmaps."]
        return [f"# PatchCore anomaly detector, {c.channels}x{c.image_size}x{c.image_size}", "",
                f"Fitted on normal images only: locally aware patch features from {c.backbone.describe()}, "
                f"a {c.coreset} coreset ({c.coreset_ratio:.0%} kept); anomaly map = each patch's distance to its "
                f"nearest normal patch, smoothed by a Gaussian of sigma {c.smoothing} px; score = its maximum."]
    return [f"# SkipGANomaly detector, {c.channels}x{c.image_size}x{c.image_size}", "",
            "Trained on normal images only. Anomaly map = "
            f"{c.score_lambda} * reconstruction L1 + {1 - c.score_lambda:.2f} * latent L2 in D's feature space"
            + (f", smoothed by a Gaussian of sigma {c.score_smoothing} px" if c.score_smoothing else "")
            + f"; score = its {c.score_reduce}" + (f" over the top {c.score_topk:.0%} of pixels"
                                                   if c.score_reduce == "topk" else "") + "."]


def detector_card(model: nn.Module, record: dict) -> str:
    from huggingface_hub import ModelCardData

    from ..hub.card import card_text

    c = model.config
    method = getattr(c, "method", "skipganomaly")
    lines = [*_describe(model), "", "```bash", "ganaug anomaly score THIS_FOLDER IMAGES --out scores/", "```", "",
             f"- data: `{record.get('data', {}).get('source')}`, {record.get('num_train')} images fitted, "
             f"{record.get('num_validation')} held out for the threshold"]
    if method == "skipganomaly":
        lines.append(f"- epochs run: {record.get('epochs_run')}, kept: {record.get('best_epoch')} "
                     "(lowest mean held-out score)")
    else:
        lines.append(f"- memory bank: {record.get('bank_rows')} of {record.get('features_seen')} features "
                     f"({record.get('feature_dim')}-d, {record.get('bank_bytes', 0) / 2**20:.1f} MiB)")
        if c.backbone.kind == "torchvision":
            lines.append(f"- the backbone's weights are not in this package: ganaug fetches `{c.backbone.url}` "
                         "(or pass `--backbone-weights FILE`); their digest is checked")
    lines += [f"- threshold: {record.get('threshold'):.5f}, {record.get('threshold_rule')}",
              f"- images of any size are fitted to {c.image_size}x{c.image_size} by `resize={c.resize}`, the same "
              "when scoring" + (f" (strict: only {c.source_size[0]}x{c.source_size[1]} images)" if c.source_size else ""),
              f"- wall time: {record.get('elapsed_s')} s", "",
              "Reproduce:", "", "```bash", *record.get("commands", []), "```", ""]
    tags = ["ganaug", "anomaly-detection", method]
    return card_text(ModelCardData(library_name="ganaug", tags=tags), "\n".join(lines))
