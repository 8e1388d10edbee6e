"""``SyntheticDataset``: a map-style dataset of generated images, reproducible per index.

Item ``i`` is always the same image: its latent is seeded from ``(seed, i)``, and images are
generated in fixed chunks (``i // chunk_size``), one forward pass per chunk, so the result
does not depend on access order, worker count or process. An optional on-disk bank
(``cache=PATH``: uint8 safetensors shards and a manifest) makes later epochs and runs free.
An optional quality gate (``filter="reference"``) keeps only images that a reference
classifier assigns to their class with at least ``threshold`` confidence.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from ..errors import GanaugError
from ._kernels import (check_worker_device, class_id, generate_fitted, inference_options,
                       resolve_generator)

# generated chunks kept in memory per process, by size: shuffled access (a DataLoader with
# shuffle=True over balance()) touches every chunk in random order, and a cache of a few chunks
# regenerated a chunk for almost every item (256 forwards per image)
_MEMORY_BYTES = 512 * 2**20


def item_seed(seed: int, index: int, attempt: int = 0) -> int:
    """A 62-bit seed for one item (and one quality-gate attempt), the same in every process."""
    digest = hashlib.blake2b(f"{seed}:{index}:{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2


def _fingerprint(gen) -> str:
    h = hashlib.sha256(json.dumps(gen.config.to_dict(), sort_keys=True).encode())
    if not gen.inference.is_default:  # int8 or bf16 images differ from the float ones
        h.update(json.dumps(gen.inference.to_dict(), sort_keys=True).encode())
    for name, t in sorted(gen.net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


CHUNK_SIZE = 256  # images per bank chunk: one forward pass each, and the unit a process writes

class SyntheticDataset(Dataset):
    """Generated ``(image uint8 (C, H, W), label int)`` pairs.

    ``counts``: ``{class id or name: n}``, or an int for every class. ``generator``: a
    :class:`ganaug.Generator` or a source for :func:`ganaug.load_generator` (loaded lazily,
    once per process, on the CPU). ``filter="reference"`` needs ``reference`` (a
    :class:`ganaug.eval.ReferenceClassifier` or its folder); ``filter_report()`` gives the
    acceptance rate per class. ``inference`` (:class:`ganaug.InferenceOptions`) runs the generator
    channels_last, compiled, bf16 or int8 (a cache keeps such images apart from float ones).
    """

    def __init__(self, generator: Any, counts: int | dict, *, seed: int = 0,
                 cache: str | Path | None = None, revision: str | None = None,
                 chunk_size: int = CHUNK_SIZE, truncation: float | None = None,
                 filter: str | None = None, reference: Any = None, threshold: float = 0.9,
                 max_tries: int = 10, inference: Any = None):
        self.generator, self.revision = generator, revision
        self.inference = inference_options(inference)
        gen = resolve_generator(generator, revision, self.inference)
        if isinstance(counts, int):
            counts = {c: counts for c in range(gen.num_classes)}
        if not isinstance(counts, dict):
            raise GanaugError(f"counts must be an int or a {{class: n}} dict, got {counts!r}.")
        per_class = [0] * gen.num_classes
        for k, n in counts.items():
            if not isinstance(n, int) or n < 0:
                raise GanaugError(f"count for class {k!r} must be a non-negative int, got {n!r}.")
            per_class[class_id(gen, k, "counts")] += n
        self.class_counts = per_class
        self.labels = torch.arange(gen.num_classes).repeat_interleave(torch.tensor(per_class))
        self.class_names = gen.class_names
        self.seed, self.chunk_size, self.truncation = seed, chunk_size, truncation
        if filter not in (None, "reference"):
            raise GanaugError(f"filter must be None or 'reference', got {filter!r}.")
        self.filter, self.threshold, self.max_tries = filter, threshold, max_tries
        self.reference = _resolve_reference(reference, gen) if filter else None
        self._stats = {"tried": [0] * gen.num_classes, "accepted": [0] * gen.num_classes,
                       "forced": [0] * gen.num_classes}
        self._chunks: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.cache_dir = None
        if cache is not None:
            manifest = {"format": 1, "generator": _fingerprint(gen), "seed": seed,
                        "counts": per_class, "chunk_size": chunk_size, "truncation": truncation,
                        "filter": filter, "threshold": threshold if filter else None,
                        "max_tries": max_tries if filter else None}
            key = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
            self.cache_dir = Path(cache) / key
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            # every process writes the same manifest; atomically, so none reads a half-written one
            tmp = self.cache_dir / f"manifest.json.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(manifest, indent=2))
            os.replace(tmp, self.cache_dir / "manifest.json")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} synthetic images")
        i %= len(self)
        k = i // self.chunk_size
        return self._chunk(k)[i - k * self.chunk_size], int(self.labels[i])

    def images(self) -> torch.Tensor:
        """Every image, generating (and caching) whatever is missing."""
        return torch.cat([self._chunk(k) for k in range(self.num_chunks)]) if len(self) else torch.empty(0)

    @property
    def num_chunks(self) -> int:
        return (len(self) + self.chunk_size - 1) // self.chunk_size

    def fill_cache(self, rank: int = 0, world_size: int = 1, progress: bool = False) -> list[Path]:
        """Generate the on-disk bank's missing chunks, this process's share of them: chunk ``k``
        belongs to rank ``k % world_size``. Every chunk depends only on its index, so ranks that
        fill their shares build exactly the bank one process builds. Returns the chunk files
        this call is responsible for."""
        if self.cache_dir is None:
            raise GanaugError("fill_cache needs an on-disk bank: create the SyntheticDataset with cache=PATH.")
        if not 0 <= rank < world_size:
            raise GanaugError(f"rank must lie in [0, world_size), got rank {rank} of {world_size}.")
        from ..progress import progress_bar

        mine = range(rank, self.num_chunks, world_size)
        for k in progress_bar(mine, desc="bank", unit="chunk", enabled=progress):
            if not self._chunk_path(k).is_file():  # chunks are written atomically: one that exists is whole
                self._chunk(k)
                self._chunks.pop(k, None)  # written to disk; no need to hold it
        return [self._chunk_path(k) for k in mine]

    def missing_chunks(self) -> list[int]:
        """Chunks of the on-disk bank not written yet."""
        if self.cache_dir is None:
            return list(range(self.num_chunks))
        return [k for k in range(self.num_chunks) if not self._chunk_path(k).is_file()]

    def _chunk_path(self, k: int) -> Path:
        return self.cache_dir / f"chunk_{k:06d}.safetensors"

    def filter_report(self) -> dict[str, dict[str, float]]:
        """Per class: candidates generated, accepted, acceptance rate, and items that kept their
        best candidate after ``max_tries`` (over the chunks generated in this process)."""
        s = self._stats
        return {name: {"tried": s["tried"][c], "accepted": s["accepted"][c],
                       "acceptance_rate": s["accepted"][c] / s["tried"][c] if s["tried"][c] else float("nan"),
                       "kept_after_max_tries": s["forced"][c]}
                for c, name in enumerate(self.class_names)}

    # -- generation ----------------------------------------------------------------------------
    def _chunk(self, k: int) -> torch.Tensor:
        if k in self._chunks:
            self._chunks.move_to_end(k)
            return self._chunks[k]
        path = self._chunk_path(k) if self.cache_dir else None
        images = None
        if path is not None and path.is_file():
            try:
                images = load_file(str(path))["images"]
            except (SafetensorError, OSError, KeyError):
                warnings.warn(f"ignoring damaged cache shard {path}; it is generated again", stacklevel=2)
        if images is None:
            images = self._generate(range(k * self.chunk_size, min(len(self), (k + 1) * self.chunk_size)))
            if path is not None:  # atomic: concurrent workers may write the same shard
                tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                save_file({"images": images.contiguous()}, str(tmp))
                os.replace(tmp, path)
        self._chunks[k] = images
        while len(self._chunks) > 1 and sum(c.numel() for c in self._chunks.values()) > _MEMORY_BYTES:
            self._chunks.popitem(last=False)
        return images

    def _generate(self, indices: range) -> torch.Tensor:
        gen = resolve_generator(self.generator, self.revision, self.inference)
        check_worker_device(gen)
        labels = self.labels[list(indices)]
        c, s = gen.channels, gen.image_size

        def make(attempt: int, which: list[int]) -> torch.Tensor:
            seeds = [item_seed(self.seed, indices[j], attempt) for j in which]
            return generate_fitted(gen, labels[which], seeds, c, s, s, self.truncation)

        if self.filter is None:
            return make(0, list(range(len(indices))))
        out = torch.empty(len(indices), c, s, s, dtype=torch.uint8)
        best = torch.full((len(indices),), -1.0)
        pending = list(range(len(indices)))
        for attempt in range(self.max_tries):
            cand = make(attempt, pending)
            conf = self._confidence(cand, labels[pending])
            keep = []
            for j, img, p in zip(pending, cand, conf.tolist()):
                cls = int(labels[j])
                self._stats["tried"][cls] += 1
                if p > best[j]:
                    best[j], out[j] = p, img
                if p >= self.threshold:
                    self._stats["accepted"][cls] += 1
                else:
                    keep.append(j)
            pending = keep
            if not pending:
                break
        for j in pending:
            self._stats["forced"][int(labels[j])] += 1
        return out

    def _confidence(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        from ..eval.classifier import predict

        _, logits = predict(self.reference.model, images)
        return torch.softmax(logits, 1).gather(1, labels[:, None])[:, 0]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_chunks"] = OrderedDict()  # each worker fills its own
        return state


def _resolve_reference(reference: Any, gen) -> Any:
    from ..eval.reference import ReferenceClassifier

    if reference is None:
        raise GanaugError("filter='reference' needs reference=: a ReferenceClassifier or the folder "
                          "written by `ganaug reference-classifier`, trained on the same classes.")
    ref = reference if isinstance(reference, ReferenceClassifier) else ReferenceClassifier.load(reference)
    c = ref.config
    if c.class_names != gen.class_names or c.channels != gen.channels or c.image_size != gen.image_size:
        raise GanaugError(
            f"the reference classifier ({c.channels}x{c.image_size}px, classes {c.class_names}) does "
            f"not match the generator ({gen.channels}x{gen.image_size}px, classes {gen.class_names})."
        )
    return ref
