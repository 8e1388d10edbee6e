"""The augmentation transforms' default path: generated images kept per class and partly renewed
as they are used, so that a replaced image costs a fraction of a generator forward pass.

Measured (``python benchmarks/augment_epoch.py``, one thread, the shipped Fashion-MNIST SNGAN,
docs/results.md): a classifier epoch at p = 0.5 took 1.84x the time of one without augmentation
when every replaced image was generated in the call, 1.06x with the default pool (10 % renewed);
the reference classifier found the intended class in 0.924 of the pool's images and 0.923 of the
per-call ones. What the pool trades is variety: it holds ``per_class`` images of a class at a
time, renewed at ``refresh`` of the rate they are used. ``pool=None`` on a transform generates
every image in the call instead (what the transforms did before the pool).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..configs import JsonConfig
from ..errors import GanaugError
from ..hub.generator import ConfigDescribed, Generator
from ..models import sample_latents
from ..pixels import model_to_uint8


@dataclass(frozen=True)
class PoolConfig(JsonConfig):
    """``per_class`` images kept per class (made in one pass when the class is first asked for);
    each image handed out is replaced by a new one with probability ``refresh``."""

    json_name = "pool options"

    per_class: int = 256
    refresh: float = 0.1
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.per_class, int) or isinstance(self.per_class, bool) or self.per_class < 1:
            raise GanaugError(f"pool per_class must be a positive integer, got {self.per_class!r}.")
        if not 0.0 <= self.refresh <= 1.0:
            raise GanaugError(f"pool refresh must lie in [0, 1] (the share of handed-out images renewed), "
                              f"got {self.refresh!r}.")


def pool_config(pool: PoolConfig | dict | None) -> PoolConfig | None:
    """Options as given, or from their dict (how transforms serialise them)."""
    if pool is None or isinstance(pool, PoolConfig):
        return pool
    if isinstance(pool, dict):
        return PoolConfig.from_dict(pool)
    raise GanaugError(f"pool must be a ganaug.transforms.PoolConfig, a dict of its fields or None, got {pool!r}.")


def images_from(gen: Any, options: PoolConfig | None, truncation: float | None, pool: "ImagePool | None"
                ) -> tuple[Any, "ImagePool | None"]:
    """(what hands out a transform's images, the pool to keep): ``pool`` when it serves ``gen``, a
    new pool in front of ``gen``, or ``gen`` itself with ``options=None`` or for a bank (a FreshBank)."""
    if options is None or not isinstance(gen, Generator):
        return gen, pool
    if pool is None or pool.generator is not gen or pool.options != options:
        pool = ImagePool(gen, options, truncation)
    return pool, pool


class ImagePool(ConfigDescribed):
    """A generator's images kept per class, renewed in part on every use (see the module docstring).

    It hands out images as a :class:`FreshBank` does (``take(labels, seeds)``), in the process
    that uses it, with no background process; everything it draws comes from the seeds it is given
    and its own ``seed``, never from the global RNG stream.
    """

    def __init__(self, generator: Generator, options: PoolConfig = PoolConfig(), truncation: float | None = None):
        self.generator, self.options, self.truncation = generator, options, truncation
        self.config = generator.config
        self.images: dict[int, torch.Tensor] = {}  # class -> uint8 (per_class, C, S, S), filled on first use
        self.made = 0

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def class_ids(self, labels: Any) -> torch.Tensor:
        return self.generator.class_ids(labels)

    def _generate(self, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        gen = self.generator
        with torch.no_grad():
            x = gen(z.to(gen.device), labels.to(gen.device))
        self.made += len(labels)
        return model_to_uint8(x, gen.value_range).cpu()

    def _fill(self, c: int) -> None:
        n = self.options.per_class
        rng = torch.Generator().manual_seed(self.options.seed * 1_000_003 + c)
        z = sample_latents(n, self.config.z_dim, truncation=self.truncation, generator=rng)
        self.images[c] = self._generate(torch.full((n,), c, dtype=torch.int64), z)

    def take(self, labels: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """uint8 ``(N, C, H, W)``: for each label, the image in the slot its seed picks; then the
        slots whose seed says so (``refresh`` of them) get a new image, all in one forward pass."""
        labels = self.class_ids(labels)
        for c in labels.unique().tolist():
            if c not in self.images:
                self._fill(c)
        n = self.options.per_class
        seeds_t = torch.tensor(seeds, dtype=torch.int64)
        slots = seeds_t % n
        out = torch.stack([self.images[c][s] for c, s in zip(labels.tolist(), slots.tolist())]) if len(seeds) else \
            torch.empty(0, self.channels, self.image_size, self.image_size, dtype=torch.uint8)
        # the renewal coin: bits of the seed the slot did not use
        renew = ((seeds_t // n) % 1_000_000).double() / 1_000_000 < self.options.refresh
        idx = torch.nonzero(renew).flatten().tolist()
        if idx:
            z = torch.stack([sample_latents(1, self.config.z_dim, truncation=self.truncation,
                                            generator=torch.Generator().manual_seed(seeds[i] + 1))[0] for i in idx])
            fresh = self._generate(labels[idx], z)
            for j, i in enumerate(idx):
                self.images[int(labels[i])][slots[i]] = fresh[j]
        return out

    def stats(self) -> dict:
        return {"images_made": self.made, "classes_filled": sorted(self.images)}
