"""A bank of generated images that a background process keeps refreshing.

Generating on the fly costs the training loop a generator forward per batch; a fixed bank
repeats its images every epoch. :class:`FreshBank` sits between: a shared-memory ring of
``per_class`` images per class that a separate process overwrites with images of new latents as
fast as it can, while the classifier trains. Readers (the training process and forked or spawned
DataLoader workers) copy a random slot of the class they need and never wait on the generator,
except at the very start until every class has an image.

Each slot carries a version counter (odd while it is being written), so a reader never returns a
half-written image: it copies, checks the counter did not move, and retries otherwise.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from ..errors import GanaugError
from ..hub.generator import ConfigDescribed


def _refill(source: str, revision: str | None, inference: dict | None, images: torch.Tensor,
            version: torch.Tensor, filled: torch.Tensor, written: torch.Tensor, stop: Any,
            threads: int, chunk: int, seed: int) -> None:
    """The background process: generate ``chunk`` images per class in turn, forever, into the
    next slots of each class's ring."""
    torch.set_num_threads(threads)
    from ..hub.inference import InferenceOptions
    from ..hub.loading import load_generator

    gen = load_generator(source, revision=revision, device="cpu")
    if inference is not None:
        gen = gen.optimized(InferenceOptions.from_dict(inference))
    k, n = images.shape[:2]
    labels = torch.arange(k).repeat_interleave(chunk)
    pos = [0] * k
    rng = torch.Generator().manual_seed(seed)
    while not stop.is_set():
        new = gen.generate(labels, generator=rng, batch_size=len(labels))
        for c in range(k):
            for j in range(chunk):
                i = pos[c]
                version[c, i] += 1  # odd: being written
                images[c, i].copy_(new[c * chunk + j])
                version[c, i] += 1
                pos[c] = (i + 1) % n
            filled[c] = min(n, int(filled[c]) + chunk)
        written += len(labels)


class FreshBank(ConfigDescribed):
    """``per_class`` generated images per class in shared memory, renewed continuously by a
    background process from ``generator`` (a package folder, run folder or ``hf-hub:`` source;
    ``inference`` makes it faster, e.g. ``{"precision": "int8", "compile": True}``).

    Give it to :class:`~ganaug.transforms.GANAugment` / :class:`~ganaug.transforms.GANBatchAugment`
    (or the albumentations one) in place of a generator. ``close()`` (or the end of the
    ``with`` block) stops the process. ``stats()`` tells how many images it has made.
    """

    def __init__(self, generator: str | Path, per_class: int = 256, *, revision: str | None = None,
                 inference: Any = None, threads: int = 1, chunk: int = 16, seed: int = 0,
                 wait_s: float = 120.0):
        from ..hub.loading import load_generator
        from ._kernels import inference_options

        if not isinstance(generator, (str, Path)):
            raise GanaugError("FreshBank needs a generator source (a folder or 'hf-hub:org/name') that its "
                              "background process can load, not a loaded Generator.")
        if per_class < chunk:
            raise GanaugError(f"per_class ({per_class}) must be at least chunk ({chunk}).")
        gen = load_generator(generator, revision=revision)
        self.source, self.revision = str(generator), revision
        opts = inference_options(inference)
        self.inference = None if opts is None else opts.to_dict()
        self.config, self.wait_s = gen.config, wait_s
        k, c, s = gen.num_classes, gen.channels, gen.image_size
        self.images = torch.zeros(k, per_class, c, s, s, dtype=torch.uint8).share_memory_()
        self.version = torch.zeros(k, per_class, dtype=torch.int64).share_memory_()
        self.filled = torch.zeros(k, dtype=torch.int64).share_memory_()
        self.written = torch.zeros((), dtype=torch.int64).share_memory_()
        ctx = mp.get_context("spawn")  # the refiller never inherits the trainer's threads or CUDA state
        self._stop = ctx.Event()
        self._process = ctx.Process(target=_refill, daemon=True, args=(
            self.source, revision, self.inference, self.images, self.version, self.filled, self.written,
            self._stop, threads, chunk, seed))
        self._process.start()
        self._started = time.perf_counter()

    # -- what the augmentation kernels need of a generator (the rest: ConfigDescribed) -------------
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def class_ids(self, labels: Any) -> torch.Tensor:
        ids = torch.as_tensor(labels, dtype=torch.int64).flatten()
        bad = ids[(ids < 0) | (ids >= self.num_classes)]
        if len(bad):
            raise GanaugError(f"class id {int(bad[0])} is outside this bank's classes 0..{self.num_classes - 1}.")
        return ids

    def take(self, labels: torch.Tensor, seeds: "torch.Tensor | list[int]") -> torch.Tensor:
        """uint8 ``(N, C, H, W)``: for each label, the slot of its class that its seed picks."""
        labels = self.class_ids(labels)
        self._wait_for(labels.unique())
        slots = torch.as_tensor(seeds, dtype=torch.int64) % self.filled[labels]
        out = torch.empty(len(labels), *self.images.shape[2:], dtype=torch.uint8)
        todo = torch.arange(len(labels))
        while len(todo):
            c, i = labels[todo], slots[todo]
            before = self.version[c, i].clone()
            out[todo] = self.images[c, i]
            torn = (before % 2 == 1) | (self.version[c, i] != before)
            todo = todo[torn]
            slots[todo] = (slots[todo] + 1) % self.filled[labels[todo]]  # being rewritten: the next slot
        return out

    def _wait_for(self, classes: torch.Tensor) -> None:
        deadline = time.perf_counter() + self.wait_s
        while bool((self.filled[classes] == 0).any()):
            if time.perf_counter() > deadline:
                raise GanaugError(f"FreshBank's background process made no image in {self.wait_s:.0f} s"
                                  + ("" if self.alive else " (it has exited: see its error above)") + ".")
            time.sleep(0.01)

    # -- lifetime ---------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def stats(self) -> dict:
        secs = time.perf_counter() - self._started
        return {"images_made": int(self.written), "images_per_s": int(self.written) / max(secs, 1e-9),
                "filled": self.filled.tolist()}

    def close(self) -> None:
        if self._process is not None:
            self._stop.set()
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.terminate()
            self._process = None

    def __enter__(self) -> "FreshBank":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # a DataLoader worker gets the shared tensors (no copy), not the process handle
        state = self.__dict__.copy()
        state["_process"] = state["_stop"] = None
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
