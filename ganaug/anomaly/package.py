"""Anomaly detector packages: ``model.safetensors`` + ``config.json`` (+ card), like generators."""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import __version__
from ..errors import GanaugError
from ..hub.package import CONFIG_NAME, WEIGHTS_NAME, refuse_pickles
from .model import AnomalyConfig, SkipGANomaly

KIND = "ganaug-anomaly"


def save_detector(model: SkipGANomaly, folder: str | Path, record: dict | None = None,
                  card: str | None = None) -> Path:
    if model.threshold is None:
        raise GanaugError("the detector has no threshold yet; train it first.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = folder / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "library": "ganaug"})
    os.replace(tmp, folder / WEIGHTS_NAME)
    config = {"kind": KIND, "format_version": 1, "ganaug_version": __version__,
              "model": model.config.to_dict(), "threshold": model.threshold, "training": record or {}}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    if card:
        (folder / "README.md").write_text(card)
    return folder


def load_detector(source: str | Path, *, revision: str | None = None) -> SkipGANomaly:
    """A detector from a folder or ``hf-hub:org/name[@rev]``; safetensors only, strict keys."""
    from ..hub.loading import HUB_PREFIX, download_package, parse_hub_source

    if isinstance(source, str) and source.startswith(HUB_PREFIX):
        folder = download_package(*parse_hub_source(source, revision))
    else:
        folder = Path(source)
    cfg_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not weights.is_file():
        refuse_pickles([p.name for p in folder.iterdir()] if folder.is_dir() else [], str(folder))
        raise GanaugError(f"{str(folder)!r} has no {WEIGHTS_NAME}; is it an anomaly model folder?")
    try:
        raw = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GanaugError(f"{str(cfg_path)!r} is missing or not valid JSON: {e}.") from e
    if raw.get("kind") != KIND:
        raise GanaugError(f"{str(folder)!r} holds a {raw.get('kind')!r}, not an anomaly model "
                          f"({KIND}); use `ganaug anomaly train` to make one.")
    model = SkipGANomaly(AnomalyConfig.from_dict(raw.get("model", {})), threshold=raw.get("threshold"))
    if not isinstance(model.threshold, (int, float)):
        raise GanaugError(f"{str(cfg_path)!r} has no numeric threshold.")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise GanaugError(f"{str(weights)!r} is corrupt or truncated ({e}).") from e
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise GanaugError(f"{str(weights)!r} does not match its config.json: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}.")
    for name, t in expected.items():
        if state[name].shape != t.shape:
            raise GanaugError(f"tensor {name!r} has shape {tuple(state[name].shape)}, the config needs "
                              f"{tuple(t.shape)}.")
    model.load_state_dict(state, strict=True)
    return model.eval()
