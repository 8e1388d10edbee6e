"""Loaders for the three on-disk layouts ganaug reads, and one entry point that detects them.

- class folders: ``root/<class>/*.png|jpg|jpeg|bmp|webp`` (optionally under ``root/<split>/``);
- the Fashion-MNIST / MNIST IDX files (``train-images-idx3-ubyte[.gz]`` ...);
- a tar archive of class folders, optionally with a split level (``train/<class>/x.jpg``),
  such as the CIFAR-10 JPEG archive; a folder holding one such archive works too.
"""

from __future__ import annotations

import gzip
import tarfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import GanaugError
from .dataset import LabelledImages
from .images import DECODE_ERRORS, decode_image, is_image_file, resize_uint8, stack_images

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot"]
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def load_images(path: str | Path, *, split: str = "train", image_size: int = 32,
                channels: int | None = None, skip_unreadable: bool = False,
                max_per_class: int | None = None) -> LabelledImages:
    """Load a labelled image set from any supported layout, fitted to ``image_size``.

    ``channels`` forces 1 (grey) or 3 (RGB); ``None`` keeps grey data grey.
    ``max_per_class`` keeps the first N images of each class (for quick runs and tests).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise GanaugError(f"data path {str(p)!r} does not exist.")
    if p.is_file() and p.name.endswith(_ARCHIVE_SUFFIXES):
        return load_image_archive(p, split=split, image_size=image_size, channels=channels,
                                  skip_unreadable=skip_unreadable, max_per_class=max_per_class)
    if not p.is_dir():
        raise GanaugError(f"data path {str(p)!r} is neither a folder nor a .tar/.tar.gz archive.")
    if _find_idx(p, split) is not None:
        return load_fashion_mnist(p, split=split, image_size=image_size, channels=channels,
                                  max_per_class=max_per_class)
    archives = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(_ARCHIVE_SUFFIXES))
    subdirs = [d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if len(archives) == 1 and not subdirs:
        return load_image_archive(archives[0], split=split, image_size=image_size,
                                  channels=channels, skip_unreadable=skip_unreadable,
                                  max_per_class=max_per_class)
    return load_class_folders(p, split=split, image_size=image_size, channels=channels,
                              skip_unreadable=skip_unreadable, max_per_class=max_per_class)


def load_class_folders(root: str | Path, *, split: str | None = "train", image_size: int = 32,
                       channels: int | None = None, skip_unreadable: bool = False,
                       max_per_class: int | None = None) -> LabelledImages:
    """``root/<class_name>/<images>``; if ``root/<split>/`` exists, that folder is used."""
    root = Path(root)
    if split and (root / split).is_dir():
        root = root / split
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise GanaugError(
            f"no class folders in {str(root)!r}: expected one sub-folder per class, "
            f"e.g. {root}/cat/001.png and {root}/dog/001.png."
        )
    files: list[tuple[Path, int]] = []
    for label, d in enumerate(class_dirs):
        imgs = sorted(f for f in d.rglob("*") if f.is_file() and is_image_file(f.name))
        if not imgs:
            raise GanaugError(
                f"class folder {str(d)!r} has no images (looked for "
                ".png, .jpg, .jpeg, .bmp, .webp); add images or remove the folder."
            )
        files += [(f, label) for f in imgs[:max_per_class]]
    items = ((str(f), f, label) for f, label in files)
    return _decode_all(items, [d.name for d in class_dirs], str(root), image_size, channels,
                       skip_unreadable)


def load_image_archive(path: str | Path, *, split: str | None = "train", image_size: int = 32,
                       channels: int | None = None, skip_unreadable: bool = False,
                       max_per_class: int | None = None) -> LabelledImages:
    """A tar archive of ``[<split>/]<class>/<image>`` members, read without unpacking."""
    path = Path(path)
    try:
        tf = tarfile.open(path)
    except (tarfile.TarError, OSError) as e:
        raise GanaugError(f"cannot open archive {str(path)!r}: {e}. Is it a complete .tar(.gz)?") from e
    with tf:
        members = [m for m in tf.getmembers() if m.isfile() and is_image_file(m.name)]
        parts = [m.name.strip("./").split("/") for m in members]
        has_split = bool(parts) and all(len(p) >= 3 for p in parts)
        if has_split:
            splits = sorted({p[0] for p in parts})
            if split not in splits:
                raise GanaugError(f"archive {str(path)!r} has splits {splits}, not {split!r}; "
                                  "pass --split with one of them.")
            chosen = [(m, p[1:]) for m, p in zip(members, parts) if p[0] == split]
        else:
            chosen = [(m, p) for m, p in zip(members, parts) if len(p) >= 2]
        class_names = sorted({p[0] for _, p in chosen})
        if not class_names:
            raise GanaugError(f"archive {str(path)!r} holds no <class>/<image> members.")
        index = {c: i for i, c in enumerate(class_names)}
        per_class: dict[int, int] = {}
        selected = []
        for m, p in sorted(chosen, key=lambda mp: mp[0].name):
            label = index[p[0]]
            if max_per_class is None or per_class.get(label, 0) < max_per_class:
                per_class[label] = per_class.get(label, 0) + 1
                selected.append((m, label))
        items = ((f"{path}:{m.name}", tf.extractfile(m).read(), label) for m, label in selected)
        return _decode_all(items, class_names, f"{path}:{split if has_split else ''}", image_size,
                           channels, skip_unreadable)


def _decode_all(items, class_names: list[str], source: str, image_size: int,
                channels: int | None, skip_unreadable: bool) -> LabelledImages:
    arrays, labels, bad = [], [], []
    for name, data, label in items:
        try:
            arrays.append(decode_image(data, image_size, channels))
            labels.append(label)
        except DECODE_ERRORS as e:
            bad.append(f"{name} ({type(e).__name__}: {e})")
    if bad and not skip_unreadable:
        listing = "\n  ".join(bad[:20]) + (f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise GanaugError(
            f"{len(bad)} image(s) could not be read:\n  {listing}\n"
            "Fix or delete them, or pass --skip-unreadable (skip_unreadable=True) to leave them out."
        )
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s): {bad[:5]}", stacklevel=3)
    if not arrays:
        raise GanaugError(f"no readable images in {source!r}.")
    return LabelledImages(stack_images(arrays, channels), torch.tensor(labels, dtype=torch.int64),
                          class_names, source, skipped=bad)


def _find_idx(root: Path, split: str) -> tuple[Path, Path] | None:
    if split not in _IDX_FILES:
        return None
    found = []
    for stem in _IDX_FILES[split]:
        cands = [root / stem, root / f"{stem}.gz"]
        hit = next((c for c in cands if c.is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found[0], found[1]


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise GanaugError(f"cannot read IDX file {str(path)!r}: {e}; the file looks corrupt.") from e
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise GanaugError(f"{str(path)!r} is not an IDX file with magic number {magic}.")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != header + int(np.prod(dims)):
        raise GanaugError(f"IDX file {str(path)!r} is truncated: header says {dims}.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def load_fashion_mnist(root: str | Path, *, split: str = "train", image_size: int = 32,
                       channels: int | None = None, max_per_class: int | None = None
                       ) -> LabelledImages:
    """The official Fashion-MNIST IDX files (gzipped or not) in ``root``."""
    root = Path(root)
    found = _find_idx(root, split)
    if found is None:
        raise GanaugError(f"no Fashion-MNIST {split!r} IDX files in {str(root)!r}; expected "
                          f"{_IDX_FILES.get(split, _IDX_FILES['train'])[0]}.gz and the labels file.")
    x = torch.from_numpy(_read_idx(found[0], 2051, 3).copy())[:, None]
    y = torch.from_numpy(_read_idx(found[1], 2049, 1).astype(np.int64))
    if len(x) != len(y):
        raise GanaugError(f"{len(x)} images but {len(y)} labels in {str(root)!r}.")
    if max_per_class is not None:
        keep = torch.cat([torch.nonzero(y == c).flatten()[:max_per_class] for c in range(10)])
        keep = keep.sort().values
        x, y = x[keep], y[keep]
    x = resize_uint8(x, image_size)
    if channels == 3:
        x = x.repeat(1, 3, 1, 1)
    return LabelledImages(x, y, list(FASHION_MNIST_CLASSES), f"{root}:{split}")
