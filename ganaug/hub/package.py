"""The generator package: ``model.safetensors`` + ``config.json`` (+ ``README.md`` card).

config.json is data, validated field by field; weights are matched to the architecture
strictly (every key, every shape). Nothing here can execute code from the files it reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import __version__
from ..errors import GanaugError
from ..models import GANConfig, build_generator
from .generator import Generator
from .inference import InferenceOptions

PACKAGE_FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def save_package(gen: Generator, folder: str | Path, *, dtype: str = "float32",
                 card: str | None = None) -> Path:
    if dtype not in _DTYPES:
        raise GanaugError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(_DTYPES[dtype]) if v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in gen.net.state_dict().items()}
    tmp = folder / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "library": "ganaug"})
    os.replace(tmp, folder / WEIGHTS_NAME)
    config = {"kind": "ganaug-generator", "format_version": PACKAGE_FORMAT_VERSION,
              "ganaug_version": __version__, "dtype": dtype, "model": gen.config.to_dict(),
              **{k: v for k, v in gen.metadata.items()
                 if k not in ("kind", "format_version", "model", "dtype", "inference")}}
    if not gen.inference.is_default:  # how it runs is data too; loading applies it again
        config["inference"] = gen.inference.to_dict()
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    if card is not None:
        (folder / CARD_NAME).write_text(card)
    return folder


def refuse_pickles(files: list[str], where: str) -> None:
    """Raise if ``files`` offer weights only in pickle formats (the caller found no safetensors)."""
    pickles = sorted(f for f in files if f.lower().endswith(PICKLE_SUFFIXES))
    if pickles:
        raise GanaugError(
            f"{where} offers weights only as pickle files ({', '.join(pickles)}). ganaug loads "
            "weights from safetensors only, because unpickling a file can run arbitrary code. "
            "Ask the author for a model.safetensors, or convert a file you trust yourself."
        )


def read_config(path: Path) -> tuple[GANConfig, dict]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GanaugError(f"{str(path)!r} is not valid JSON: {e}.") from e
    if not isinstance(raw, dict) or raw.get("kind") != "ganaug-generator":
        raise GanaugError(f"{str(path)!r} is not a ganaug generator config (its 'kind' is "
                          f"{raw.get('kind') if isinstance(raw, dict) else None!r}).")
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise GanaugError(f"{str(path)!r}: 'format_version' must be an integer.")
    if version > PACKAGE_FORMAT_VERSION:
        raise GanaugError(f"{str(path)!r} has package format {version}, newer than this ganaug "
                          f"reads ({PACKAGE_FORMAT_VERSION}); upgrade ganaug.")
    if raw.get("dtype", "float32") not in _DTYPES:
        raise GanaugError(f"{str(path)!r}: unknown dtype {raw.get('dtype')!r}.")
    if "model" not in raw:
        raise GanaugError(f"{str(path)!r} has no 'model' section.")
    try:
        config = GANConfig.from_dict(raw["model"])
    except GanaugError as e:
        raise GanaugError(f"{str(path)!r}: {e}") from e
    meta = {k: v for k, v in raw.items() if k not in ("model",)}
    return config, meta


def load_package(folder: str | Path, device: str | torch.device = "cpu") -> Generator:
    folder = Path(folder)
    weights, cfg_path = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    if not weights.is_file():
        refuse_pickles([p.name for p in folder.iterdir()] if folder.is_dir() else [], str(folder))
        raise GanaugError(f"{str(folder)!r} has no {WEIGHTS_NAME}.")
    if not cfg_path.is_file():
        raise GanaugError(f"{str(folder)!r} has {WEIGHTS_NAME} but no {CONFIG_NAME}; the config is "
                          "required to rebuild the model and its class mapping.")
    config, meta = read_config(cfg_path)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise GanaugError(f"{str(weights)!r} is corrupt or truncated ({e}); download or export "
                          "it again.") from e
    net = build_generator(config)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise GanaugError(
            f"{str(weights)!r} does not match its config.json ({config.arch}, {config.image_size}px): "
            f"missing tensors {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected tensors "
            f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}."
        )
    for name, t in expected.items():
        if state[name].shape != t.shape:
            raise GanaugError(f"tensor {name!r} in {str(weights)!r} has shape {tuple(state[name].shape)} "
                              f"but the config needs {tuple(t.shape)}; weights and config.json "
                              "do not belong together.")
        if state[name].is_floating_point():
            state[name] = state[name].to(t.dtype)  # fp16/bf16 packages compute in float32
    net.load_state_dict(state, strict=True)
    inference = meta.pop("inference", None)
    gen = Generator(net, config, meta).to(device)
    if inference is not None:
        try:
            options = InferenceOptions.from_dict(inference)
        except GanaugError as e:
            raise GanaugError(f"{str(cfg_path)!r}: {e}") from e
        gen = gen.optimized(options)
    return gen
