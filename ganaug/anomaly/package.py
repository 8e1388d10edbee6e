"""Anomaly detector packages: ``model.safetensors`` + ``config.json`` (+ card), like generators.

One kind per method, each registered with the package layer: ``ganaug-anomaly`` (SkipGANomaly,
its networks), ``ganaug-anomaly-knn`` and ``ganaug-anomaly-patchcore`` (the memory bank, and a
reference-classifier backbone's own tensors; a torchvision backbone is recorded by name, weights
and digest and loaded from its cache, its download or a file given at load time).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..artifacts import CONFIG_NAME, WEIGHTS_NAME, load_strict, read_config, read_package, register_kind, resolve, write_package
from ..errors import GanaugError
from .backbone import load_backbone
from .memory_bank import MemoryBankConfig, MemoryBankDetector
from .model import AnomalyConfig, SkipGANomaly

KINDS = {"skipganomaly": "ganaug-anomaly", "knn": "ganaug-anomaly-knn", "patchcore": "ganaug-anomaly-patchcore"}
FORMAT_VERSION = 1


def save_detector(model: nn.Module, folder: str | Path, record: dict | None = None,
                  card: str | None = None) -> Path:
    """Write any detector (SkipGANomaly or a memory-bank one) as a package of its method's kind."""
    if model.threshold is None:
        raise GanaugError("the detector has no threshold yet; train it first.")
    config = {"model": model.config.to_dict(), "threshold": model.threshold, "training": record or {}}
    if isinstance(model, MemoryBankDetector):
        return write_package(folder, KINDS[model.config.method], FORMAT_VERSION, model.package_state(), config, card)
    return write_package(folder, KINDS["skipganomaly"], FORMAT_VERSION, model.state_dict(), config, card)


def load_detector(source: str | Path, *, revision: str | None = None,
                  backbone_weights: str | Path | None = None) -> nn.Module:
    """A detector of any method from a folder or ``hf-hub:org/name[@rev]``; safetensors only,
    strict keys. ``backbone_weights``: a local file for a torchvision backbone (else its cache or
    download)."""
    folder = resolve(source, revision)
    kind = read_config(folder).get("kind")
    method = {v: k for k, v in KINDS.items()}.get(kind)
    if method is None:
        raise GanaugError(f"{str(folder)!r} holds a {kind!r} package, not an anomaly detector "
                          f"({sorted(KINDS.values())}).")
    raw, state = read_package(folder, kind, FORMAT_VERSION)
    where = str(folder / CONFIG_NAME)
    threshold = raw.get("threshold")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        raise GanaugError(f"{where!r} has no numeric threshold.")
    config_class = AnomalyConfig if method == "skipganomaly" else MemoryBankConfig
    try:
        config = config_class.from_dict(raw.get("model", {}))
    except GanaugError as e:
        raise GanaugError(f"{where!r}: {e}") from e
    weights = repr(str(folder / WEIGHTS_NAME))
    if method == "skipganomaly":
        model = SkipGANomaly(config, threshold=float(threshold))
        load_strict(model, state, weights)
        return model.eval()
    if config.method != method:
        raise GanaugError(f"{where!r} is a {kind!r} package but its config says method {config.method!r}.")
    backbone_state = {k: v for k, v in state.items() if k.startswith("backbone.")}
    own = config.backbone.kind == "reference"  # only a reference classifier travels in the package
    missing = [] if "bank" in state else ["bank"]
    unexpected = sorted(set(state) - {"bank"} - (set(backbone_state) if own else set()))
    if missing or unexpected:
        raise GanaugError(f"{weights} does not match its {CONFIG_NAME}: missing tensors {missing}, unexpected "
                          f"tensors {unexpected[:5]}; weights and config do not belong together.")
    bank = state["bank"]
    if bank.dim() != 2:
        raise GanaugError(f"tensor 'bank' in {weights} has shape {tuple(bank.shape)}, not (rows, features); "
                          "weights and config do not belong together.")
    backbone = load_backbone(config.backbone, backbone_state, weights_file=backbone_weights, where=weights)
    model = MemoryBankDetector(config, backbone, bank.float(), threshold=float(threshold)).eval()
    probe = model.features(torch.zeros(1, config.channels, config.image_size, config.image_size))
    if probe.shape[-1] != bank.shape[1]:
        raise GanaugError(f"tensor 'bank' in {weights} holds {bank.shape[1]}-d features but its backbone "
                          f"({config.backbone.describe()}) makes {probe.shape[-1]}-d ones; weights and config do "
                          "not belong together.")
    return model


for _method, _kind in KINDS.items():
    register_kind(_kind, load_detector, f"anomaly detector ({_method})")
