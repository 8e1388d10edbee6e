"""Anomaly detector packages: ``model.safetensors`` + ``config.json`` (+ card), like generators."""

from __future__ import annotations

from pathlib import Path

from ..artifacts import CONFIG_NAME, WEIGHTS_NAME, load_strict, read_package, register_kind, resolve, write_package
from ..errors import GanaugError
from .model import AnomalyConfig, SkipGANomaly

KIND = "ganaug-anomaly"
FORMAT_VERSION = 1


def save_detector(model: SkipGANomaly, folder: str | Path, record: dict | None = None,
                  card: str | None = None) -> Path:
    if model.threshold is None:
        raise GanaugError("the detector has no threshold yet; train it first.")
    config = {"model": model.config.to_dict(), "threshold": model.threshold, "training": record or {}}
    return write_package(folder, KIND, FORMAT_VERSION, model.state_dict(), config, card)


def load_detector(source: str | Path, *, revision: str | None = None) -> SkipGANomaly:
    """A detector from a folder or ``hf-hub:org/name[@rev]``; safetensors only, strict keys."""
    folder = resolve(source, revision)
    raw, state = read_package(folder, KIND, FORMAT_VERSION)
    where = str(folder / CONFIG_NAME)
    try:
        config = AnomalyConfig.from_dict(raw.get("model", {}))
    except GanaugError as e:
        raise GanaugError(f"{where!r}: {e}") from e
    threshold = raw.get("threshold")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        raise GanaugError(f"{where!r} has no numeric threshold.")
    model = SkipGANomaly(config, threshold=float(threshold))
    load_strict(model, state, repr(str(folder / WEIGHTS_NAME)))
    return model.eval()


register_kind(KIND, load_detector, "anomaly detector")
