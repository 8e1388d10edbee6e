"""Architecture registry: one name -> one generator class and its default config fields.

Every model is built through :func:`build_generator` / :func:`build_discriminator`, so config
validation, checkpoint and export logic live in one place (timm's single build path).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ..errors import GanaugError
from .config import GANConfig
from .layers import ProjectionDiscriminator


@dataclass(frozen=True)
class ArchSpec:
    name: str
    generator_cls: type[nn.Module]
    defaults: dict[str, Any]  # GANConfig fields this architecture sets differently
    description: str
    separable: bool = False  # depthwise-separable 3x3 convolutions in G's and D's blocks


_REGISTRY: dict[str, ArchSpec] = {}


def register_architecture(name: str, defaults: dict[str, Any], description: str, separable: bool = False
                          ) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator registering a generator under ``name``. Registering twice is an error.
    ``separable``: the generator and the discriminator use depthwise-separable blocks."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        field_names = {f.name for f in dataclasses.fields(GANConfig)}
        bad = set(defaults) - field_names
        if bad:
            raise ValueError(f"defaults for {name!r} name unknown config fields {sorted(bad)}")
        _REGISTRY[name] = ArchSpec(name, cls, dict(defaults), description, separable)
        return cls

    return wrap


def list_architectures() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ArchSpec:
    if name not in _REGISTRY:
        raise GanaugError(f"unknown architecture {name!r}; choose one of {list_architectures()}.")
    return _REGISTRY[name]


def make_config(arch: str, num_classes: int, class_names: list[str] | None = None,
                **overrides: Any) -> GANConfig:
    """The architecture's defaults, then ``overrides``, validated.

    ``attn_resolution=None`` in an architecture's defaults means "half the image size".
    """
    spec = get_spec(arch)
    fields = {**spec.defaults, **{k: v for k, v in overrides.items() if v is not None}}
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    cfg = GANConfig(arch=arch, num_classes=num_classes, class_names=list(class_names), **{
        k: v for k, v in fields.items() if k != "attn_resolution"})
    attn = fields.get("attn_resolution", 0)
    cfg.attn_resolution = cfg.image_size // 2 if attn is None else attn
    return cfg.validate()


def build_generator(config: GANConfig) -> nn.Module:
    config.validate()
    return get_spec(config.arch).generator_cls(config)


def build_discriminator(config: GANConfig) -> ProjectionDiscriminator:
    """Every architecture shares the spectral-norm projection discriminator (depthwise-separable
    for a separable architecture, so that D does not cost what the light G saved)."""
    config.validate()
    return ProjectionDiscriminator(config.d_widths(), config.channels, config.num_classes,
                                   config.d_attn_index(), separable=get_spec(config.arch).separable)
