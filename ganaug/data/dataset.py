"""The in-memory labelled image set every loader returns.

GAN training on small images draws tens of thousands of random batches; decoding each image
once into one uint8 tensor makes a batch a single index operation and makes resumed runs
draw exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from ..errors import GanaugError


@dataclass
class LabelledImages(Dataset):
    """Images as a ``(N, C, H, W)`` uint8 tensor with int64 labels and the class names.

    Indexing returns ``(image uint8 (C, H, W), label int)``, so it works as a map-style
    dataset too.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    source: str = ""
    skipped: list[str] = field(default_factory=list)  # unreadable files skipped on request
    # the median shorter side of the images as stored, before they were fitted to image_size (None: unknown)
    native_size: int | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise GanaugError(f"images must be a (N, C, H, W) uint8 tensor, got "
                              f"{tuple(self.images.shape)} {self.images.dtype}.")
        if self.labels.shape != (self.images.shape[0],):
            raise GanaugError("labels must hold one class index per image.")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise GanaugError("a label is outside the range of class_names.")

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def subset(self, index: torch.Tensor) -> "LabelledImages":
        return LabelledImages(self.images[index], self.labels[index], list(self.class_names),
                              self.source, native_size=self.native_size)

    def select_classes(self, names: list[str]) -> "LabelledImages":
        """The images of classes ``names`` (a subset, in any order), relabelled 0..len(names)-1 in that order.

        The source string names the classes when they differ from the data's, so that records (a
        reference classifier's ``trained_on``, a benchmark's test split) say which images they saw."""
        unknown = [n for n in names if n not in self.class_names]
        if unknown:
            raise GanaugError(f"classes {unknown} are not among the data's classes {self.class_names}.")
        old = torch.tensor([self.class_names.index(n) for n in names])
        keep = torch.isin(self.labels, old)
        relabel = torch.full((self.num_classes,), -1, dtype=torch.int64)
        relabel[old] = torch.arange(len(names))
        source = self.source if list(names) == self.class_names else f"{self.source} (classes {', '.join(names)})"
        return LabelledImages(self.images[keep], relabel[self.labels[keep]], list(names), source,
                              native_size=self.native_size)

    def size_note(self) -> str:
        """How far the images were resized, for logs and reports: a defect a few pixels wide in a
        large image vanishes at 32 px."""
        if not self.native_size:
            return f"{self.image_size} px (size as stored unknown)"
        factor = self.native_size / self.image_size
        how = f"shrunk {factor:.1f}x" if factor > 1 else (f"enlarged {1 / factor:.2f}x" if factor < 1 else "as stored")
        return (f"{self.image_size} px (median shorter side as stored {self.native_size} px, {how}; the next size "
                f"up, {2 * self.image_size} px, has 4x the pixels and costs about 4x the compute per image)")

    def require(self, channels: int, image_size: int, class_names: list[str], what: str) -> None:
        """Raise unless these images have the given format and classes (``what`` names the user)."""
        c, n = self.channels, self.image_size
        if c != channels or n != image_size:
            raise GanaugError(
                f"the data is {c}x{n}x{n} but {what} expects {channels}x{image_size}x{image_size}; "
                f"load the data with image_size={image_size} and channels={channels}."
            )
        if list(self.class_names) != list(class_names):
            raise GanaugError(f"the data's classes {self.class_names} differ from those of {what}: "
                              f"{list(class_names)}.")

    def fingerprint(self) -> dict:
        """What a resumed run checks to be sure it sees the same data."""
        return {"num_images": len(self), "class_names": list(self.class_names),
                "class_counts": self.class_counts(), "image_size": self.image_size,
                "channels": self.channels}

    def digest(self) -> str:
        """A hash of every pixel and label: distributed ranks compare it, so that a node whose copy
        of the data differs (same counts, other files) stops the run instead of training on it."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.images.contiguous().numpy().tobytes())
        h.update(self.labels.contiguous().numpy().tobytes())
        return h.hexdigest()
