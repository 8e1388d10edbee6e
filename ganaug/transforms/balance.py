"""``balance()``: top up rare classes of a real dataset with generated images.

``sampling_strategy`` follows imbalanced-learn's over-sampling grammar: 'not majority' (the
default), 'minority', 'not minority', 'all', a float (two classes: the wanted minority/majority
ratio), a dict of wanted *total* counts per class, or a callable ``f(targets) -> dict``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..data.images import resize_uint8
from ..errors import GanaugError
from . import _kernels as K
from ._kernels import resolve_generator
from .synthetic import SyntheticDataset

Strategy = str | float | dict | Callable[[torch.Tensor], dict]


def dataset_targets(dataset: Any) -> torch.Tensor:
    """Class ids of a map-style dataset: its ``targets``/``labels`` attribute, or read item by item."""
    for attr in ("targets", "labels"):
        t = getattr(dataset, attr, None)
        if t is not None and len(t) == len(dataset):
            return torch.as_tensor(list(t) if not isinstance(t, torch.Tensor) else t, dtype=torch.int64)
    out = []
    for i in range(len(dataset)):
        item = dataset[i]
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise GanaugError(f"sample {i} of the dataset is not an (image, label) pair; balance() "
                              "needs a dataset that returns labels (or has a `targets` attribute).")
        out.append(int(item[1]))
    return torch.tensor(out, dtype=torch.int64)


def resolve_strategy(strategy: Strategy, targets: torch.Tensor, num_classes: int) -> dict[int, int]:
    """How many images to add per class, imbalanced-learn style (over-sampling only)."""
    counts = torch.bincount(targets, minlength=num_classes)
    present = [c for c in range(num_classes) if counts[c] > 0]
    if not present:
        raise GanaugError("the dataset is empty.")
    n_max, n_min = max(int(counts[c]) for c in present), min(int(counts[c]) for c in present)
    majority = [c for c in present if counts[c] == n_max]
    minority = [c for c in present if counts[c] == n_min]
    if callable(strategy) and not isinstance(strategy, str):
        strategy = strategy(targets)
    if isinstance(strategy, str):
        chosen = {"minority": minority, "not minority": [c for c in present if c not in minority],
                  "not majority": [c for c in present if c not in majority], "all": present}.get(strategy)
        if chosen is None:
            raise GanaugError(f"unknown sampling_strategy {strategy!r}; use 'minority', 'not minority', "
                              "'not majority', 'all', a float, a dict or a callable.")
        return {c: n_max - int(counts[c]) for c in chosen}
    if isinstance(strategy, float):
        if len(present) != 2:
            raise GanaugError(f"a float sampling_strategy is only for two classes; this dataset has "
                              f"{len(present)}. Use a dict of wanted counts per class.")
        if not 0 < strategy <= 1:
            raise GanaugError(f"a float sampling_strategy is a minority/majority ratio in (0, 1], got {strategy}.")
        low = min(present, key=lambda c: int(counts[c]))
        wanted = int(round(strategy * n_max))
        if wanted < int(counts[low]):
            raise GanaugError(f"ratio {strategy} asks for {wanted} images of the minority class, which "
                              f"already has {int(counts[low])}; over-sampling cannot remove images.")
        return {low: wanted - int(counts[low])}
    if isinstance(strategy, dict):
        out = {}
        for c, wanted in strategy.items():
            if not isinstance(c, int) or not 0 <= c < num_classes:
                raise GanaugError(f"sampling_strategy names class {c!r}, not a class id 0..{num_classes - 1}.")
            if wanted < int(counts[c]):
                raise GanaugError(f"sampling_strategy wants {wanted} images of class {c}, which already "
                                  f"has {int(counts[c])}; the dict gives wanted totals, not additions.")
            out[c] = int(wanted) - int(counts[c])
        return out
    raise GanaugError(f"sampling_strategy must be a string, float, dict or callable, got {strategy!r}.")


class MixedDataset(Dataset):
    """Real samples first, then synthetic ones. ``targets`` covers both; ``is_synthetic(i)``
    and ``synthetic_indices`` say which are generated; ``class_counts()`` gives both per class.

    Synthetic images are converted to the format of the real dataset's first image (PIL, tensor
    dtype and range, size, channels), so a batch mixes cleanly. ``transform``, if given, is
    applied to every image, real and synthetic, so augmentation treats both alike.
    """

    def __init__(self, real: Any, synthetic: SyntheticDataset, real_targets: torch.Tensor | None = None,
                 transform: Callable | None = None):
        self.real, self.synthetic, self.transform = real, synthetic, transform
        real_targets = dataset_targets(real) if real_targets is None else real_targets
        self.targets = torch.cat([real_targets, synthetic.labels]).tolist()
        self.n_real = len(real)
        self._template: Any = None

    def __len__(self) -> int:
        return self.n_real + len(self.synthetic)

    @property
    def synthetic_indices(self) -> range:
        return range(self.n_real, len(self))

    def is_synthetic(self, i: int) -> bool:
        return i >= self.n_real

    def class_counts(self) -> dict[str, dict[str, int]]:
        real = torch.bincount(torch.tensor(self.targets[: self.n_real], dtype=torch.int64),
                              minlength=len(self.synthetic.class_names)).tolist()
        return {name: {"real": real[c], "synthetic": self.synthetic.class_counts[c],
                       "total": real[c] + self.synthetic.class_counts[c]}
                for c, name in enumerate(self.synthetic.class_names)}

    def __getitem__(self, i: int) -> tuple[Any, int]:
        if i < 0:
            i += len(self)
        if i < self.n_real:
            item = self.real[i]
            image, label = item[0], item[1]
        else:
            image, label = self.synthetic[i - self.n_real]
            image = self._like_real(image)
        return (self.transform(image) if self.transform else image), int(label)

    def _like_real(self, image: torch.Tensor) -> Any:
        if self.n_real == 0:
            return image
        if self._template is None:
            self._template = self.real[0][0]
        c, h, w = K.image_format(self._template)
        fitted = resize_uint8(K.convert_channels(image[None], c), h, w)[0]
        return K.like(fitted, self._template)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_template"] = None
        return state


def balance(dataset: Any, generator: Any, sampling_strategy: Strategy = "not majority", *,
            seed: int = 0, cache: str | Path | None = None, transform: Callable | None = None,
            **synthetic_kwargs: Any) -> MixedDataset:
    """Add generated images to ``dataset`` so its classes reach the counts the strategy asks for.

    ``dataset`` is any map-style dataset of ``(image, label)`` whose label ids are the
    generator's class ids. Extra keyword arguments (``filter``, ``reference``, ``threshold``,
    ``truncation``, ``revision``) go to :class:`SyntheticDataset`.
    """
    gen = resolve_generator(generator, synthetic_kwargs.get("revision"))
    names = getattr(dataset, "class_names", None) or getattr(dataset, "classes", None)
    if names is not None and list(names) != gen.class_names:
        raise GanaugError(f"the dataset's classes {list(names)} are not the generator's {gen.class_names} "
                          "(same names in the same order are needed).")
    targets = dataset_targets(dataset)
    if len(targets) and (targets.min() < 0 or targets.max() >= gen.num_classes):
        raise GanaugError(f"the dataset has label {int(targets.max())}, outside the generator's classes "
                          f"0..{gen.num_classes - 1}.")
    add = resolve_strategy(sampling_strategy, targets, gen.num_classes)
    synthetic = SyntheticDataset(generator, add, seed=seed, cache=cache, **synthetic_kwargs)
    return MixedDataset(dataset, synthetic, targets, transform)
