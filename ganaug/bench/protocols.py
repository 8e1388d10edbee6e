"""Transfer protocols: a "public" part of the training split (what a Hub generator was trained on)
and a disjoint "private" part (the user's data, made long-tailed by the benchmark).

- ``same-classes``: each class's images are halved (a seeded permutation); the public half is
  balanced, the private half goes on to the long-tailed split;
- ``new-classes``: the public part holds every image of ``public_classes``, the private part every
  image of the other classes, so that a fine-tuned generator must learn classes its source never drew.

Both parts name themselves in ``source`` ("... (public part, same-classes)"), which is how the
benchmark tells a generator of the public part (allowed) from one of the whole split (leaky).
"""

from __future__ import annotations

import torch

from ..data.dataset import LabelledImages
from ..errors import GanaugError

PROTOCOLS = ("none", "same-classes", "new-classes")
PROTOCOL_SEED = 2
PARTS = ("public", "private")


def public_private(train: LabelledImages, protocol: str, public_classes: tuple[str, ...] = ()
                   ) -> tuple[LabelledImages, LabelledImages]:
    """(public part, private part) of ``train`` under ``protocol`` (see the module docstring)."""
    if protocol == "same-classes":
        gen = torch.Generator().manual_seed(PROTOCOL_SEED)
        halves: list[list[torch.Tensor]] = [[], []]
        for c in range(train.num_classes):
            idx = torch.nonzero(train.labels == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)]
            halves[0].append(idx[: len(idx) // 2])
            halves[1].append(idx[len(idx) // 2:])
        public, private = (train.subset(torch.cat(h).sort().values) for h in halves)
    elif protocol == "new-classes":
        unknown = [c for c in public_classes if c not in train.class_names]
        if unknown or not public_classes or len(public_classes) > train.num_classes - 2:
            raise GanaugError(f"the new-classes protocol needs --public-classes naming between 1 and "
                              f"{train.num_classes - 2} of the data's classes {train.class_names}"
                              + (f"; {unknown} are not among them" if unknown else "") + ".")
        public = train.select_classes([c for c in train.class_names if c in public_classes])
        private = train.select_classes([c for c in train.class_names if c not in public_classes])
    else:
        raise GanaugError(f"protocol must be one of {PROTOCOLS[1:]} here, got {protocol!r}.")
    public.source, private.source = (f"{train.source} ({part} part, {protocol})" for part in PARTS)
    return public, private


def part_of(source: str | None) -> str | None:
    """``public`` or ``private`` when a data source string names a protocol part, else None."""
    return next((part for part in PARTS if f"({part} part, " in (source or "")), None)
