"""albumentations adapter: ``ganaug.albumentations.GANAugment``.

The class label arrives as a named target, ``A.Compose([...])(image=img, label=3)``, through
``targets_as_params``. NumPy HWC uint8 or float32 ([0, 1]) in, the same out. ``to_dict()``
stores the generator's source and revision (never the weights) and ``p``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from albumentations.core.transforms_interface import ImageOnlyTransform

from .errors import GanaugError
from .hub.generator import Generator
from .hub.inference import InferenceOptions
from .transforms import _kernels as K
from .transforms.bank import FreshBank
from .transforms.pool import ImagePool, PoolConfig, images_from, pool_config


class GANAugment(ImageOnlyTransform):
    """Replace the image with a generated one of the sample's class, with probability ``p``.

    ``source``: a package folder, a run folder or ``hf-hub:org/name`` (loaded lazily, once per
    process, on the CPU), a :class:`ganaug.Generator` that was loaded from one, or a
    :class:`ganaug.transforms.FreshBank` (images a background process keeps renewing).
    ``p`` is a probability or ``{class id or name: probability}`` (as for the torchvision
    ``GANAugment``); ``classes`` limits replacement to those class ids or names. ``inference``
    (:class:`ganaug.InferenceOptions` or its dict) runs the generator channels_last, compiled, bf16
    or int8, in every worker. ``pool`` (:class:`ganaug.transforms.PoolConfig` or its dict; None:
    every image generated in the call) as for the torchvision transforms: by default images come
    from a pool per class, per process, that renews a tenth of what it hands out.
    """

    def __init__(self, source: str | Generator | FreshBank, p: float | dict = 0.5, classes: list | None = None,
                 label_key: str = "label", revision: str | None = None,
                 truncation: float | None = None, inference: InferenceOptions | dict | None = None,
                 per_class_p: dict | None = None, pool: PoolConfig | dict | None = PoolConfig()):
        # p as {class: probability}, like the torchvision adapter's: albumentations' own coin is then
        # always heads and the class's coin decides (per_class_p is how to_dict()/from_dict() carry it)
        if isinstance(p, dict):
            per_class_p, p = dict(p), 1.0
        super().__init__(p=p)
        self.per_class_p = per_class_p
        self._probs: torch.Tensor | None = None
        self._bank = source if isinstance(source, FreshBank) else None  # shared memory: travels to workers
        if self._bank is not None:
            self._generator, revision, source = None, source.revision, source.source
        elif isinstance(source, Generator):
            if not source.source:
                raise GanaugError("this Generator was not loaded from a source, so the transform "
                                  "could not be serialised; pass the folder or 'hf-hub:' source.")
            self._generator: Generator | None = source
            revision = revision or source.revision
            source = source.source
        else:
            self._generator = None
        if not isinstance(source, (str, os.PathLike)):
            raise GanaugError(f"source must be a folder or 'hf-hub:org/name', got {source!r}.")
        self.source, self.revision, self.classes = str(source), revision, classes
        self.label_key, self.truncation = label_key, truncation
        options = K.inference_options(inference)  # kept as its dict: serialisable with the pipeline
        self.inference = None if options is None else options.to_dict()
        pool = pool_config(pool)
        self.pool = None if pool is None else pool.to_dict()
        self._pool: ImagePool | None = None

    def _gen(self) -> Generator:
        if self._bank is not None:
            return self._bank
        if self._generator is None:
            self._generator = K.resolve_generator(self.source, self.revision)
        return K.resolve_generator(self._generator, inference=self.inference)

    @property
    def targets_as_params(self) -> list[str]:
        return [self.label_key]

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        gen = self._gen()
        label = K.class_id(gen, data[self.label_key], f"the {self.label_key!r} passed to GANAugment")
        if self.classes is not None and label not in {K.class_id(gen, c, "classes") for c in self.classes}:
            return {"class_id": label, "gen_seed": None}
        if self.per_class_p is not None:
            if self._probs is None:
                self._probs = K.class_probabilities(gen, self.per_class_p, self.classes)
            if not self.random_generator.random() < float(self._probs[label]):
                return {"class_id": label, "gen_seed": None}
        # albumentations seeds self.random_generator from Compose(seed=...), so runs reproduce.
        return {"class_id": label, "gen_seed": int(self.random_generator.integers(0, 2**62))}

    def apply(self, img: np.ndarray, class_id: int, gen_seed: int | None, **params: Any) -> np.ndarray:
        if gen_seed is None:
            return img
        gen = self._gen()
        K.check_worker_device(gen)
        c, h, w = K.image_format(img)
        source, self._pool = images_from(gen, pool_config(self.pool), self.truncation, self._pool)
        out = K.generate_fitted(source, torch.tensor([class_id]), [gen_seed], c, h, w, self.truncation)[0]
        return K.like(out, img)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("source", "classes", "label_key", "revision", "truncation", "inference", "per_class_p", "pool")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_generator"] = state["_pool"] = None  # workers load their own copy from the source
        return state
