"""``ganaug.Generator``: a trained conditional generator with its class mapping.

This is what every consumer (transforms, datasets, evaluation) holds: an ``nn.Module`` that
knows its classes, image size, channels and value range, and turns labels into uint8 images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import GanaugError
from ..models import GANConfig, build_generator, generate_images
from .inference import InferenceOptions, build_runner

Labels = int | str | Sequence[int | str] | torch.Tensor


class ConfigDescribed:
    """What a model config says about the images: shared by everything that hands out generated
    images (Generator, FreshBank), so the augmentation kernels can take either."""

    config: GANConfig

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.config.class_names)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def value_range(self) -> tuple[float, float]:
        return self.config.value_range


class Generator(ConfigDescribed, nn.Module):
    """A class-conditional generator (the EMA weights of a training run) and its config.

    ``metadata`` holds what the package's config.json says about training (data, steps, time).
    ``inference`` says how it runs (:meth:`optimized`); ``net`` always holds the float weights.
    """

    def __init__(self, net: nn.Module, config: GANConfig, metadata: dict | None = None):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.config = config
        self.metadata = dict(metadata or {})
        self.inference = InferenceOptions()
        # not a registered submodule: the generator's state is ``net`` alone
        object.__setattr__(self, "_runner", self.net)
        # Where load_generator found it: lets transforms serialise a source, never weights.
        self.source: str | None = None
        self.revision: str | None = None

    @classmethod
    def from_config(cls, config: GANConfig, metadata: dict | None = None) -> "Generator":
        return cls(build_generator(config), config, metadata)

    # -- description (num_classes, class_names, ... come from ConfigDescribed) --------------------
    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def train(self, mode: bool = True) -> "Generator":
        # A packaged generator is for sampling: BatchNorm must use its running statistics.
        return super().train(False)

    def __repr__(self) -> str:
        c = self.config
        extra = "" if self.inference.is_default else f", inference={self.inference}"
        return (f"Generator(arch={c.arch!r}, classes={c.num_classes}, image_size={c.image_size}, "
                f"channels={c.channels}{extra})")

    def __getstate__(self) -> dict:
        # compiled and int8 models do not pickle; a copy (a spawned DataLoader worker) rebuilds its own
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state.pop("_runner", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        object.__setattr__(self, "_runner", build_runner(self.net, self.config.z_dim, self.num_classes,
                                                         self.inference))

    def optimized(self, options: InferenceOptions | None = None, **fields) -> "Generator":
        """A generator that runs with ``options`` (or ``InferenceOptions(**fields)``): channels_last,
        ``torch.compile``, bf16 or int8. It shares this one's float weights; choose the device
        first. Saving it records the options, and loading the package applies them again."""
        options = options or InferenceOptions(**fields)
        out = Generator(self.net, self.config, self.metadata)
        out.source, out.revision = self.source, self.revision
        object.__setattr__(out, "_runner", build_runner(self.net, self.config.z_dim, self.num_classes, options))
        out.inference = options
        return out

    # -- sampling ----------------------------------------------------------------------------
    def class_ids(self, labels: Labels) -> torch.Tensor:
        """Class ids or names (or a mix) -> an int64 tensor; unknown ones are a clear error."""
        if isinstance(labels, torch.Tensor):
            if labels.dtype.is_floating_point or labels.dtype == torch.bool:
                raise GanaugError(f"labels must be integer class ids, got a {labels.dtype} tensor.")
            # each op skipped when it has nothing to do: the transforms call this on every batch
            ids = labels if labels.dim() == 1 else labels.flatten()
            ids = ids if ids.dtype == torch.int64 and ids.device.type == "cpu" else ids.to("cpu", torch.int64)
        else:
            items = [labels] if isinstance(labels, (int, str)) else list(labels)
            ids_list = []
            for item in items:
                if isinstance(item, str):
                    if item not in self.config.class_names:
                        raise GanaugError(f"unknown class name {item!r}; this generator knows "
                                          f"{self.config.class_names}.")
                    ids_list.append(self.config.class_names.index(item))
                elif isinstance(item, int) and not isinstance(item, bool):
                    ids_list.append(item)
                else:
                    raise GanaugError(f"a label must be a class id or name, got {item!r}.")
            ids = torch.tensor(ids_list, dtype=torch.int64)
        if len(ids):  # one reduction: the augmentation transforms call this on every batch
            lo, hi = (int(v) for v in torch.aminmax(ids))
            if lo < 0 or hi >= self.num_classes:
                raise GanaugError(f"class id {lo if lo < 0 else hi} is outside this generator's classes "
                                  f"0..{self.num_classes - 1} ({self.config.class_names}).")
        return ids

    @torch.no_grad()
    def generate(self, labels: Labels, *, seed: int | None = None,
                 generator: torch.Generator | None = None, truncation: float | None = None,
                 batch_size: int = 256) -> torch.Tensor:
        """uint8 images ``(N, C, H, W)`` of the given classes.

        The same ``seed`` (or the same state of ``generator``) gives the same latents on any
        device and batch size, and bit-identical images at equal batch size and thread count
        (otherwise round-off can move a rare pixel by one grey level); with neither, the seed
        is drawn from torch's global RNG.
        """
        ids = self.class_ids(labels)
        if seed is None and generator is None:
            seed = int(torch.randint(0, 2**62, ()))
        return generate_images(self._runner, ids, z_dim=self.config.z_dim,
                               value_range=self.config.value_range, seed=seed,
                               generator=generator, truncation=truncation, batch_size=batch_size)

    def sample_grid(self, per_class: int = 8, *, classes: Labels | None = None, seed: int = 0,
                    truncation: float | None = None):
        """A PIL image with one row of ``per_class`` samples per class (all classes by default)."""
        from ..grid import class_grid

        ids = self.class_ids(classes) if classes is not None else torch.arange(self.num_classes)
        images = self.generate(ids.repeat_interleave(per_class), seed=seed, truncation=truncation)
        return class_grid(images, [self.class_names[int(c)] for c in ids], per_class)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Raw generator output in ``value_range`` (float), for callers that bring their own z."""
        return self._runner(z, labels)

    # -- files -------------------------------------------------------------------------------
    def save_pretrained(self, folder, *, dtype: str = "float32", card: str | None = None,
                        discriminator: dict[str, torch.Tensor] | None = None):
        """Write ``model.safetensors`` + ``config.json`` (+ ``README.md`` if ``card``; + the run's
        discriminator state dict for fine-tuning if ``discriminator``)."""
        from .package import save_package

        return save_package(self, folder, dtype=dtype, card=card, discriminator=discriminator)

    @classmethod
    def from_pretrained(cls, source, *, revision: str | None = None, device=None) -> "Generator":
        from .loading import load_generator

        return load_generator(source, revision=revision, device=device)
