"""Splits carved from data that has none of its own (one set of class folders, classes read from
file names, as NEU-DET): a stratified test part that every command carves the same way."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import GanaugError
from .dataset import LabelledImages
from .loaders import has_split, load_images

TEST_PART_SEED = 1  # the one seed of every carved test part: train, eval and the benchmarks hold out the same images


def carve_validation(data: LabelledImages, fraction: float, seed: int = 0
                     ) -> tuple[LabelledImages, LabelledImages]:
    """(train, val): ``fraction`` of each class (at least one image when a class has two or more)."""
    gen = torch.Generator().manual_seed(seed)
    tr, va = [], []
    for c in range(data.num_classes):
        idx = torch.nonzero(data.labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val = int(round(fraction * len(idx))) if len(idx) > 1 else 0
        n_val = max(n_val, 1) if len(idx) > 1 and fraction > 0 else n_val
        va.append(idx[:n_val])
        tr.append(idx[n_val:])
    a, b = data.subset(torch.cat(tr).sort().values), data.subset(torch.cat(va).sort().values)
    a.source, b.source = f"{data.source} (train part)", f"{data.source} (validation part)"
    return a, b


def stratified_folds(labels: torch.Tensor, k: int, repeats: int = 1, seed: int = 0) -> list[torch.Tensor]:
    """Held-out indices of repeated stratified k-fold: ``repeats`` shuffles, each cut into ``k``
    folds that hold every class in proportion (a class with fewer than ``k`` images is missing from
    some folds). Returned repeat by repeat, fold by fold, each sorted."""
    if k < 2:
        raise GanaugError(f"k-fold needs at least 2 folds, got {k}.")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(repeats):
        folds: list[list[torch.Tensor]] = [[] for _ in range(k)]
        start = 0  # continue the round-robin across classes, so the folds' sizes stay within one
        for c in torch.unique(labels).tolist():
            idx = torch.nonzero(labels == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)]
            for j, i in enumerate(idx):
                folds[(start + j) % k].append(i.view(1))
            start = (start + len(idx)) % k
        out += [torch.cat(f).sort().values if f else torch.zeros(0, dtype=torch.int64) for f in folds]
    return out


def carve_test(data: LabelledImages, fraction: float) -> tuple[LabelledImages, LabelledImages]:
    """(train part, test part): the stratified test part of data without a test split."""
    if not 0 < fraction < 1:
        raise GanaugError(f"the test fraction must be between 0 and 1, got {fraction}.")
    train, test = carve_validation(data, fraction, seed=TEST_PART_SEED)
    test.source = f"{data.source} (stratified test part, {fraction:g})"
    return train, test


def load_split(path: str | Path, *, split: str = "train", test_fraction: float | None = None,
               **load_kw) -> LabelledImages:
    """:func:`~ganaug.data.load_images`, and for data without splits of its own, with
    ``test_fraction``: ``split="test"`` is the stratified test part (:func:`carve_test`) and
    ``split="train"`` all the rest, so a generator trained on "train" is judged on images it never saw.
    Asking data without splits for any other split than "train" (all of it) without a test fraction
    is an error, not the whole data set in its place.
    """
    if not test_fraction:
        if split != "train" and (load_kw.get("class_from", "folder") != "folder" or not has_split(path, split)):
            # without this, the whole data set would stand in for the missing split: a test on training images
            raise GanaugError(f"{str(path)!r} has no {split!r} split of its own; hold one out with a test "
                              "fraction (--test-fraction 0.2; train the generator with the same), or ask for "
                              "the 'train' split on purpose to compare with the training images.")
        return load_images(path, split=split, **load_kw)
    if split not in ("train", "test"):
        raise GanaugError(f"with a test fraction the splits are 'train' and 'test', not {split!r}.")
    if load_kw.get("class_from", "folder") == "folder" and has_split(path, "test"):
        raise GanaugError(f"{str(path)!r} has a test split of its own: use it and drop the test fraction "
                          "(--test-fraction is for data without one).")
    train, test = carve_test(load_images(path, split="train", **load_kw), test_fraction)
    return train if split == "train" else test
