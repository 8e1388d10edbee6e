"""The generator package: ``model.safetensors`` + ``config.json`` (+ ``README.md`` card).

The files are read and written by the package layer (:mod:`ganaug.artifacts`); this module says
what a generator's config.json holds: the model config (validated field by field), the dtype
the weights are stored in, how the generator runs (``inference``) and how it was trained.

A package may also hold its run's discriminator (``"discriminator": true``; its tensors under
``discriminator.`` in the same safetensors file), so that ``ganaug train --init`` can fine-tune
G and D together; sampling never reads it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..artifacts import CONFIG_NAME, WEIGHTS_NAME, load_strict, read_package, register_kind, write_package
from ..errors import GanaugError
from ..models import GANConfig, build_discriminator, build_generator
from .generator import Generator
from .inference import InferenceOptions

KIND = "ganaug-generator"
PACKAGE_FORMAT_VERSION = 1
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_OWN = ("kind", "format_version", "ganaug_version", "model", "dtype", "inference", "discriminator")
D_PREFIX = "discriminator."


def save_package(gen: Generator, folder: str | Path, *, dtype: str = "float32",
                 card: str | None = None, discriminator: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``gen`` as a package; ``discriminator`` (a state dict of its run's D, checked against
    the config) goes along for fine-tuning."""
    if dtype not in _DTYPES:
        raise GanaugError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}.")
    weights = dict(gen.net.state_dict())
    if discriminator is not None:
        load_strict(build_discriminator(gen.config), discriminator, "the discriminator to package")
        weights.update({D_PREFIX + k: v for k, v in discriminator.items()})
    state = {k: v.to(_DTYPES[dtype]) if v.is_floating_point() else v for k, v in weights.items()}
    config = {"dtype": dtype, "model": gen.config.to_dict(), "discriminator": discriminator is not None,
              **{k: v for k, v in gen.metadata.items() if k not in _OWN}}
    if not gen.inference.is_default:  # how it runs is data too; loading applies it again
        config["inference"] = gen.inference.to_dict()
    return write_package(folder, KIND, PACKAGE_FORMAT_VERSION, state, config, card)


def load_package(folder: str | Path, device: str | torch.device = "cpu") -> Generator:
    folder = Path(folder)
    raw, state = read_package(folder, KIND, PACKAGE_FORMAT_VERSION)
    where = str(folder / CONFIG_NAME)
    if raw.get("dtype", "float32") not in _DTYPES:
        raise GanaugError(f"{where!r}: unknown dtype {raw.get('dtype')!r}.")
    if "model" not in raw:
        raise GanaugError(f"{where!r} has no 'model' section.")
    try:
        config = GANConfig.from_dict(raw["model"])
        options = InferenceOptions.from_dict(raw["inference"]) if "inference" in raw else None
    except GanaugError as e:
        raise GanaugError(f"{where!r}: {e}") from e
    net = load_strict(build_generator(config), {k: v for k, v in state.items() if not k.startswith(D_PREFIX)},
                      f"{str(folder / WEIGHTS_NAME)!r} ({config.arch}, {config.image_size}px)")
    meta = {k: v for k, v in raw.items() if k not in ("model", "inference")}
    gen = Generator(net, config, meta).to(device)
    return gen.optimized(options) if options is not None else gen


def load_package_discriminator(folder: str | Path) -> torch.nn.Module | None:
    """The discriminator a package carries (float32, checked strictly against its config), or None
    when it was exported without one."""
    folder = Path(folder)
    raw, state = read_package(folder, KIND, PACKAGE_FORMAT_VERSION)
    if not raw.get("discriminator"):
        return None
    try:
        config = GANConfig.from_dict(raw["model"])
    except (GanaugError, KeyError) as e:
        raise GanaugError(f"{str(folder / CONFIG_NAME)!r}: {e}") from e
    d_state = {k[len(D_PREFIX):]: v for k, v in state.items() if k.startswith(D_PREFIX)}
    return load_strict(build_discriminator(config), d_state,
                       f"the discriminator in {str(folder / WEIGHTS_NAME)!r} ({config.arch}, {config.image_size}px)")


register_kind(KIND, load_package, "generator")
