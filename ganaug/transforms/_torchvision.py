"""torchvision v2 adapters: thin wrappers that draw randomness in ``make_params`` and call the
kernels in ``_kernels.py`` to do the work (torchvision's class/kernel split)."""

from __future__ import annotations

import warnings

from collections.abc import Mapping
from typing import Any, Callable

import numpy as np
import PIL.Image
import torch
from torch.utils._pytree import tree_flatten, tree_unflatten
from torchvision import tv_tensors
from torchvision.transforms.v2 import Transform

from ..errors import GanaugError
from ..hub.generator import Generator
from ..hub.inference import InferenceOptions
from . import _kernels as K
from .bank import FreshBank
from .pool import ImagePool, PoolConfig, images_from, pool_config


# targets tied to the image's geometry (KeyPoints exists from torchvision 0.23 on)
_GEOMETRY = tuple(t for t in (tv_tensors.BoundingBoxes, tv_tensors.Mask, getattr(tv_tensors, "KeyPoints", None)) if t)


def default_label(sample: Any) -> Any:
    """Find a sample's class label: ``(image, label)`` tuples, ``(image, {"label": ...})``, or
    dicts with a label-like key: ``labels`` (any case), else the first key containing ``label``
    (the rule of torchvision's default ``labels_getter``, written out here because torchvision
    keeps it private)."""
    missing = GanaugError(
        "GANAugment could not find the sample's label: pass (image, label) to the transform "
        "(e.g. a torchvision dataset's joint `transforms=` argument, not `transform=`), a dict "
        "with a 'label' key, or labels_getter=callable."
    )
    if isinstance(sample, (tuple, list)) and len(sample) >= 2:
        second = sample[1]
        if isinstance(second, (int, str, np.integer, torch.Tensor)):
            return second  # one label per sample, or a batch's (N,) labels
        if not isinstance(second, Mapping):
            raise missing
        sample = second
    elif not isinstance(sample, Mapping):
        raise missing
    keys = [k for k in sample if isinstance(k, str)]
    key = next((k for k in keys if k.lower() == "labels"), None) or \
        next((k for k in keys if "label" in k.lower()), None)
    if key is None:
        raise missing
    return sample[key]


class _GANBase(Transform):
    def __init__(self, source: Generator | FreshBank | str | None = None, p: float | dict = 0.5, classes: Any = None,
                 labels_getter: str | Callable | None = "default", revision: str | None = None,
                 truncation: float | None = None, inference: InferenceOptions | dict | None = None,
                 generator: Generator | FreshBank | str | None = None, pool: PoolConfig | dict | None = PoolConfig()):
        super().__init__()
        if generator is not None:  # the name before 0.2: the albumentations GANAugment always said source
            warnings.warn(f"{type(self).__name__}(generator=...) is deprecated; pass it as source= (or first), as "
                          "the albumentations GANAugment does.", DeprecationWarning, stacklevel=2)
            if source is not None:
                raise GanaugError(f"{type(self).__name__} takes source= or the deprecated generator=, not both.")
            source = generator
        if source is None:
            raise GanaugError(f"{type(self).__name__} needs a source: a ganaug.Generator, a FreshBank, a package "
                              "folder, a run folder or 'hf-hub:org/name'.")
        generator = source
        if labels_getter is None:
            raise GanaugError("GANAugment needs each sample's label; labels_getter cannot be None.")
        self.generator, self.revision = generator, revision
        self.p, self.classes, self.truncation = p, classes, truncation
        self.labels_getter = labels_getter
        self.inference = K.inference_options(inference)
        self.pool = pool_config(pool)
        self._probs: torch.Tensor | None = None
        self._pool: ImagePool | None = None  # per process: made on first use, never pickled
        if isinstance(generator, (Generator, FreshBank)):
            self._resolve()  # validate p and classes now, not in the first worker

    def _resolve(self) -> tuple[Generator, torch.Tensor]:
        gen = K.resolve_generator(self.generator, self.revision, self.inference)
        if self._probs is None:
            self._probs = K.class_probabilities(gen, self.p, self.classes)
        return gen, self._probs

    def _images_from(self, gen: Generator | FreshBank) -> Generator | FreshBank | ImagePool:
        """What hands out the images: the pool in front of the generator (the default), the
        generator itself with ``pool=None``, or a FreshBank given as the source."""
        source, self._pool = images_from(gen, self.pool, self.truncation, self._pool)
        return source

    def _label(self, sample: Any) -> Any:
        return default_label(sample) if self.labels_getter == "default" else self.labels_getter(sample)

    def __getstate__(self) -> dict:
        # DataLoader workers pickle transforms: a source string travels, not a loaded copy (and a
        # Generator travels as its float weights: compiled or int8 variants are rebuilt there).
        state = self.__dict__.copy()
        state["_pool"] = None  # each process keeps its own pool
        if isinstance(self.generator, Generator) and self.generator.source:
            # loaded from a source: the source travels (a few bytes), and the worker loads it itself.
            # (a Generator is an nn.Module, so it sits in _modules, not in __dict__)
            state["_modules"] = {k: v for k, v in state["_modules"].items() if k != "generator"}
            state["generator"], state["revision"] = self.generator.source, self.generator.revision
            if self.inference is None and not self.generator.inference.is_default:
                state["inference"] = self.generator.inference
        if not isinstance(state.get("generator", self.generator), (Generator, FreshBank)):
            state["_probs"] = None
        return state

    def extra_repr(self) -> str:
        src = self.generator if isinstance(self.generator, str) else repr(self.generator)
        return f"generator={src}, p={self.p}, classes={self.classes}, pool={self.pool}"


class GANAugment(_GANBase):
    """Replace a sample's image with a generated image of the sample's own class.

    With probability ``p`` (a float, or a dict ``{class: p}``; ``classes`` limits it to some
    classes) the image becomes a generated one of the same class, with the same type (PIL,
    uint8/float tensor, ``tv_tensors.Image``), dtype, value range ([0, 1] for floats), size and
    channel count. The label is untouched. Call it on ``(image, label)`` or on a dict with a
    ``label`` key, as v2's MixUp/CutMix find their labels; ``labels_getter`` overrides that.

    ``source`` is a :class:`ganaug.Generator` or a source for :func:`ganaug.load_generator`
    (a source string is loaded lazily, once per process, on the CPU: the DataLoader-safe way).
    ``inference`` (:class:`ganaug.InferenceOptions`) runs it channels_last, compiled, bf16 or int8.
    By default the images come from a pool per class that renews ``pool.refresh`` of the images it
    hands out (:class:`ganaug.transforms.PoolConfig`; ``transforms/pool.py`` says what it costs and
    trades); ``pool=None`` generates every replaced image in the call (one forward per image here,
    one per batch in :class:`GANBatchAugment`). A :class:`ganaug.transforms.FreshBank` in place of
    the generator hands out images that a background process keeps renewing.
    """

    def make_params(self, flat_inputs: list[Any], label: Any = None) -> dict[str, Any]:
        gen, probs = self._resolve()
        c = K.class_id(gen, label, "the sample given to GANAugment")
        replace = bool(torch.rand(()) < probs[c])
        return {"replace": replace, "label": c, "seed": int(torch.randint(0, 2**62, ())) if replace else 0}

    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        flat, spec = tree_flatten(sample)
        if any(isinstance(x, _GEOMETRY) for x in flat):
            raise GanaugError("GANAugment replaces the whole image, so boxes, masks and keypoints "
                              "would no longer match it; use it for classification samples only.")
        params = self.make_params(flat, self._label(sample))
        if not params["replace"]:
            return sample
        needs = self._needs_transform_list(flat)
        out = [self.transform(x, params) if n else x for x, n in zip(flat, needs)]
        return tree_unflatten(out, spec)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, (PIL.Image.Image, torch.Tensor)) or isinstance(inpt, tv_tensors.Video):
            return inpt
        gen, _ = self._resolve()
        K.check_worker_device(gen)
        c, h, w = K.image_format(inpt)
        img = K.generate_fitted(self._images_from(gen), torch.tensor([params["label"]]), [params["seed"]], c, h, w,
                                self.truncation)[0]
        return K.like(img, inpt)


class GANBatchAugment(_GANBase):
    """Batched GANAugment, for use after collation (like v2's MixUp/CutMix in a ``collate_fn``).

    Takes ``(images, labels)`` with images a ``(N, C, H, W)`` uint8 or float tensor and labels a
    ``(N,)`` tensor of class ids (or a dict with those under ``image``/``label`` keys). Every
    image whose coin (per-class ``p``) comes up is replaced: from the pool by default (see
    :class:`GANAugment`), or with ``pool=None`` all in one generator forward pass on the
    generator's device (the GPU path, in the main process).
    """

    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        labels = self._label(sample)
        if isinstance(sample, Mapping):
            key = next((k for k in ("image", "images") if k in sample), None)
            if key is None:
                raise GanaugError("GANBatchAugment needs the batch's images under an 'image' key.")
            images = sample[key]
        elif isinstance(sample, (tuple, list)) and len(sample) >= 2:
            images = sample[0]
        else:
            raise GanaugError("GANBatchAugment takes (images, labels) or {'image': ..., 'label': ...}.")
        new = self.apply(images, labels)
        if isinstance(sample, Mapping):
            return {**sample, key: new}
        return (new, *sample[1:]) if isinstance(sample, tuple) else [new, *sample[1:]]

    def apply(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gen, probs = self._resolve()
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise GanaugError("GANBatchAugment needs a batched (N, C, H, W) image tensor.")
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.dtype.is_floating_point:
            raise GanaugError("GANBatchAugment needs index labels of shape (N,); apply it before "
                              "MixUp/CutMix turns them into probabilities.")
        if len(labels) != len(images):
            raise GanaugError(f"{len(images)} images but {len(labels)} labels in the batch.")
        ids = gen.class_ids(labels)
        replace = torch.rand(len(ids)) < probs[ids]
        idx = torch.nonzero(replace).flatten()
        if len(idx) == 0:
            return images
        seeds = torch.randint(0, 2**62, (len(idx),))
        _, c, h, w = images.shape
        fresh = K.generate_fitted(self._images_from(gen), ids[idx], seeds, c, h, w, self.truncation)
        if images.dtype.is_floating_point:
            fresh = fresh.float() / 255.0
        elif images.dtype != torch.uint8:
            raise GanaugError(f"cannot replace {images.dtype} images; use uint8 or float.")
        if images.device.type != "cpu":
            idx, fresh = idx.to(images.device), fresh.to(images.device)
        out = K.replace_rows(images, idx, fresh.to(images.dtype))  # a new tensor: the batch given is not changed
        return tv_tensors.wrap(out, like=images) if isinstance(images, tv_tensors.TVTensor) else out
