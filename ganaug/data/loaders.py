"""Loaders for the three on-disk layouts ganaug reads, and one entry point that detects them.

- class folders: ``root/<class>/*.png|jpg|jpeg|bmp|webp`` (optionally under ``root/<split>/``);
- the Fashion-MNIST / MNIST IDX files (``train-images-idx3-ubyte[.gz]`` ...);
- a tar archive of class folders, optionally with a split level (``train/<class>/x.jpg``),
  such as the CIFAR-10 JPEG archive; a folder holding one such archive works too.

With ``class_from="filename"`` the class is the file name without its trailing number
(``IMAGES/scratches_12.jpg`` is a ``scratches``), wherever the file lies in the folder or archive,
as in NEU-DET and many inspection exports; such data has no splits.
"""

from __future__ import annotations

import gzip
import re
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
CLASS_FROM = ("folder", "filename")
_NUMBERED = re.compile(r"^(.+?)[_\- ]?\(?\d+\)?$")  # "scratches_12", "crack-3", "defect (7)"


def class_of_filename(name: str) -> str:
    """The class a file name stands for: its stem without a trailing number."""
    stem = Path(name).name.rsplit(".", 1)[0]
    m = _NUMBERED.match(stem)
    return m.group(1) if m else stem


def load_images(path: str | Path, *, split: str = "train", image_size: int = 32,
                channels: int | None = None, skip_unreadable: bool = False,
                max_per_class: int | None = None, class_from: str = "folder") -> LabelledImages:
    """Load a labelled image set from any supported layout, fitted to ``image_size``.

    ``channels`` forces 1 (grey) or 3 (RGB); ``None`` keeps grey data grey.
    ``max_per_class`` keeps the first N images of each class (for quick runs and tests).
    ``class_from="filename"`` reads the class from each file's name (see the module's notes).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise GanaugError(f"data path {str(p)!r} does not exist.")
    if class_from not in CLASS_FROM:
        raise GanaugError(f"class_from must be one of {CLASS_FROM}, got {class_from!r}.")
    if class_from == "filename":
        return load_named_files(p, image_size=image_size, channels=channels, skip_unreadable=skip_unreadable,
                                max_per_class=max_per_class)
    if p.is_file() and p.name.endswith(_ARCHIVE_SUFFIXES):
        return load_image_archive(p, split=split, image_size=image_size, channels=channels,
                                  skip_unreadable=skip_unreadable, max_per_class=max_per_class)
    if not p.is_dir():
        raise GanaugError(f"data path {str(p)!r} is neither a folder nor a .tar/.tar.gz archive.")
    if _find_idx(p, split) is not None:
        return load_fashion_mnist(p, split=split, image_size=image_size, channels=channels,
                                  max_per_class=max_per_class)
    archive = _single_archive(p)
    subdirs = [d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if archive is not None and not subdirs:
        return load_image_archive(archive, split=split, image_size=image_size,
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
    with _open_archive(path) as tf:
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
        selected = _first_per_class([(m, index[p[0]]) for m, p in sorted(chosen, key=lambda mp: mp[0].name)],
                                    max_per_class)
        data = _read_members(tf, [m for m, _ in selected])
        items = ((f"{path}:{m.name}", data[m.name], label) for m, label in selected)
        return _decode_all(items, class_names, f"{path}:{split if has_split else ''}", image_size,
                           channels, skip_unreadable)


def load_named_files(path: str | Path, *, image_size: int = 32, channels: int | None = None,
                     skip_unreadable: bool = False, max_per_class: int | None = None) -> LabelledImages:
    """Every image in a folder (recursively) or a tar archive (or a folder holding one), its class
    read from its file name: ``scratches_12.jpg`` is a ``scratches``. Classes sort by name."""
    path = Path(path)
    files = sorted(f for f in path.rglob("*") if f.is_file() and is_image_file(f.name)) if path.is_dir() else []
    if path.is_dir() and not files and _single_archive(path) is not None:
        path = _single_archive(path)
    source = f"{path} (classes from file names)"
    if path.is_dir():
        class_names, selected = _classes_from_names([(f, f.name) for f in files], source, max_per_class)
        return _decode_all(((str(f), f, label) for f, label in selected), class_names, source, image_size,
                           channels, skip_unreadable)
    with _open_archive(path) as tf:
        members = sorted((m for m in tf.getmembers() if m.isfile() and is_image_file(m.name)), key=lambda m: m.name)
        class_names, selected = _classes_from_names([(m, m.name) for m in members], source, max_per_class)
        data = _read_members(tf, [m for m, _ in selected])
        return _decode_all(((f"{path}:{m.name}", data[m.name], label) for m, label in selected), class_names,
                           source, image_size, channels, skip_unreadable)


def _classes_from_names(items: list, source: str, max_per_class: int | None) -> tuple[list[str], list]:
    """(class names, [(item, label)]) for (item, file name) pairs, at most ``max_per_class`` each."""
    class_names = sorted({class_of_filename(name) for _, name in items})
    if not class_names:
        raise GanaugError(f"no images in {source!r} (looked for .png, .jpg, .jpeg, .bmp, .webp).")
    index = {c: i for i, c in enumerate(class_names)}
    return class_names, _first_per_class([(it, index[class_of_filename(name)]) for it, name in items], max_per_class)


def _first_per_class(items: list, max_per_class: int | None) -> list:
    """The (item, label) pairs in order, keeping at most ``max_per_class`` of each label."""
    if max_per_class is None:
        return items
    seen: dict[int, int] = {}
    kept = []
    for item, label in items:
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= max_per_class:
            kept.append((item, label))
    return kept


def _open_archive(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path)
    except (tarfile.TarError, OSError) as e:
        raise GanaugError(f"cannot open archive {str(path)!r}: {e}. Is it a complete .tar(.gz)?") from e


def _single_archive(folder: Path) -> Path | None:
    """The one .tar/.tar.gz/.tgz file directly in ``folder``, if there is exactly one."""
    archives = [f for f in folder.iterdir() if f.is_file() and f.name.endswith(_ARCHIVE_SUFFIXES)]
    return archives[0] if len(archives) == 1 else None


def _read_members(tf: tarfile.TarFile, members: list[tarfile.TarInfo]) -> dict[str, bytes]:
    """The members' bytes, read in the archive's own order: a .tar.gz read out of order decompresses
    from the start again for every backward step (minutes instead of seconds)."""
    return {m.name: tf.extractfile(m).read() for m in sorted(members, key=lambda m: m.offset)}


def has_split(path: str | Path, split: str) -> bool:
    """Whether the data at ``path`` has a split named ``split`` of its own (a ``split`` folder, the
    IDX files, or a split level in an archive), as opposed to one set of class folders."""
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / split).is_dir() or _find_idx(p, split) is not None:
            return True
        p = _single_archive(p) or p
    if not (p.is_file() and p.name.endswith(_ARCHIVE_SUFFIXES)):
        return False
    try:
        with tarfile.open(p) as tf:
            parts = [m.name.strip("./").split("/") for m in tf.getmembers() if m.isfile() and is_image_file(m.name)]
    except (tarfile.TarError, OSError):
        return False
    return bool(parts) and all(len(q) >= 3 for q in parts) and any(q[0] == split for q in parts)


def _decode_all(items, class_names: list[str], source: str, image_size: int,
                channels: int | None, skip_unreadable: bool) -> LabelledImages:
    arrays, labels, bad, sizes = [], [], [], []
    for name, data, label in items:
        try:
            arrays.append(decode_image(data, image_size, channels, sizes=sizes))
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
    native = int(np.median([min(w, h) for w, h in sizes]))
    return LabelledImages(stack_images(arrays, channels), torch.tensor(labels, dtype=torch.int64),
                          class_names, source, skipped=bad, native_size=native)


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
    return LabelledImages(x, y, list(FASHION_MNIST_CLASSES), f"{root}:{split}", native_size=28)
