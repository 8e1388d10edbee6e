"""The augmentation transforms' default path: generated images kept per class and partly renewed
as they are used, so that handing out an image costs an index, not a generator forward pass.

Measured (``python benchmarks/augment_epoch.py``, one torch thread, the shipped Fashion-MNIST
SNGAN, docs/results.md): a classifier epoch at p = 0.5 took 2.12x the time of one without
augmentation when every replaced image was generated in the call, 1.12x with the pool renewing 10 %
in the call, and 0.98x (ColorJitter: 0.97x) with the renewals on the thread; in a tight loop the
pool handed out 1.81x ColorJitter's images per second; the reference classifier found the intended
class in 0.923 of the pool's images and 0.923 of the per-call ones. What the pool trades is
variety: it holds ``per_class`` images of a class at a time, renewed at ``refresh`` of the rate
they are used. ``pool=None`` on a transform generates
every image in the call instead (what the transforms did before the pool).

Renewals run on a background thread by default (``background=True``): a call hands out what the
pool holds and queues its labels and seeds (the thread works out which slots they renew), so no
call waits for the generator once a class is filled (the fill itself is made in the call). The
thread makes exactly the renewals asked for, no more, so it costs the CPU time renewing in the call
would; it needs a free core to be free. What it gives up is exact repetition: which images a call
gets depends on how far the thread has come. Runs that must repeat image for image set
``background=False`` (renewals in the call, from the seeds alone).
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch

from ..configs import JsonConfig
from ..errors import GanaugError
from ..hub.generator import ConfigDescribed, Generator
from ..models import sample_latents
from ..pixels import model_to_uint8

RENEW_CHUNK = 64  # renewals per background forward pass: one batch amortises the call overhead
# renewal threads of this process, stopped and joined at exit: a thread still inside a forward pass
# while the interpreter shuts down aborts the process ("terminate called without an active exception")
_THREADS: list[tuple[int, threading.Thread, threading.Event, threading.Condition]] = []


@dataclass(frozen=True)
class PoolConfig(JsonConfig):
    """``per_class`` images kept per class (made in one pass when the class is first asked for);
    each image handed out is replaced by a new one with probability ``refresh``, on a background
    thread (``background=True``) or in the call (reproducible from the seeds alone)."""

    json_name = "pool options"

    per_class: int = 256
    refresh: float = 0.1
    seed: int = 0
    background: bool = True

    def __post_init__(self):
        if not isinstance(self.per_class, int) or isinstance(self.per_class, bool) or self.per_class < 1:
            raise GanaugError(f"pool per_class must be a positive integer, got {self.per_class!r}.")
        if not 0.0 <= self.refresh <= 1.0:
            raise GanaugError(f"pool refresh must lie in [0, 1] (the share of handed-out images renewed), "
                              f"got {self.refresh!r}.")
        if not isinstance(self.background, bool):
            raise GanaugError(f"pool background must be True or False, got {self.background!r}.")


def pool_config(pool: PoolConfig | dict | None) -> PoolConfig | None:
    """Options as given, or from their dict (how transforms serialise them)."""
    if pool is None or isinstance(pool, PoolConfig):
        return pool
    if isinstance(pool, dict):
        return PoolConfig.from_dict(pool)
    raise GanaugError(f"pool must be a ganaug.transforms.PoolConfig, a dict of its fields or None, got {pool!r}.")


def images_from(gen: Any, options: PoolConfig | None, truncation: float | None, pool: "ImagePool | None"
                ) -> tuple[Any, "ImagePool | None"]:
    """(what hands out a transform's images, the pool to keep): ``pool`` when it serves ``gen``, a
    new pool in front of ``gen``, or ``gen`` itself with ``options=None`` or for a bank (a FreshBank)."""
    if options is None or not isinstance(gen, Generator):
        return gen, pool
    if pool is None or pool.generator is not gen or pool.options != options:
        pool = ImagePool(gen, options, truncation)
    return pool, pool


class ImagePool(ConfigDescribed):
    """A generator's images kept per class, renewed in part on every use (see the module docstring).

    It hands out images as a :class:`FreshBank` does (``take(labels, seeds)``), in the process
    that uses it (a forked DataLoader worker starts its own renewal thread); every image it makes
    comes from the seeds it is given and its own ``seed``, never from the global RNG stream.
    """

    def __init__(self, generator: Generator, options: PoolConfig = PoolConfig(), truncation: float | None = None):
        self.generator, self.options, self.truncation = generator, options, truncation
        self.config = generator.config
        # every filled class's images in one tensor, so that a call gathers them in one indexing op
        self._store = torch.empty(0, options.per_class, self.channels, self.image_size, self.image_size,
                                  dtype=torch.uint8)
        self._row = torch.full((generator.num_classes,), -1, dtype=torch.int64)  # class -> row of _store
        self._first = self._row.clone()  # class -> index of its first image in _store seen as one list
        self.images: dict[int, torch.Tensor] = {}  # class -> its row: uint8 (per_class, C, S, S)
        self.made = 0  # images generated: the fill and every renewal made
        # a seed's renewal coin is an integer in 0..999,999 (see _renewals): below this, its slot is renewed
        self._renew_below = round(options.refresh * 1_000_000)
        self.asked = 0  # renewals asked for (a slot asked again before its renewal is made is made once)
        self._start_process()

    def _start_process(self) -> None:
        # locks and the thread belong to one process: a forked worker makes its own (a lock held by
        # the parent's thread at the fork would never be released in the child)
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._asked: list[tuple[torch.Tensor, torch.Tensor]] = []  # (labels, seeds) of calls the thread has not read
        self._pending: dict[tuple[int, int], int] = {}  # (class, slot) -> seed of its next image
        self._busy = 0  # work taken off _asked or _pending and not yet done
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def class_ids(self, labels: Any) -> torch.Tensor:
        return self.generator.class_ids(labels)

    def _generate(self, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        gen = self.generator
        with torch.no_grad():
            x = gen(z.to(gen.device), labels.to(gen.device))
        return model_to_uint8(x, gen.value_range).cpu()

    def _fill(self, c: int) -> None:
        n = self.options.per_class
        rng = torch.Generator().manual_seed(self.options.seed * 1_000_003 + c)
        z = sample_latents(n, self.config.z_dim, truncation=self.truncation, generator=rng)
        images = self._generate(torch.full((n,), c, dtype=torch.int64), z)
        with self._lock:
            if c in self.images:  # another thread filled it meanwhile
                return
            row = len(self.images)
            if row == len(self._store):  # grown by doubling: filling k classes copies O(k) rows, not O(k^2)
                grown = self._store.new_empty(min(max(1, 2 * row), self.generator.num_classes), *self._store.shape[1:])
                grown[:row] = self._store
                self._store = grown
            self._store[row] = images
            self._row[c], self._first[c] = row, row * n
            self.images = {k: self._store[int(self._row[k])] for k in [*self.images, c]}
            self.made += n

    def _renewals(self, labels: torch.Tensor, seeds: torch.Tensor) -> tuple[dict[tuple[int, int], int], int]:
        """({(class, slot): seed of its next image}, how many were asked for): the handed-out images
        whose coin (the bits of the seed its slot did not use) comes up; a slot asked twice keeps
        the later seed and is made once."""
        n = self.options.per_class
        renew = torch.nonzero((seeds // n) % 1_000_000 < self._renew_below).flatten()
        if not len(renew):
            return {}, 0
        rows = torch.stack((labels[renew], seeds[renew] % n, seeds[renew] + 1), 1).tolist()
        return {(c, s): seed for c, s, seed in rows}, len(rows)

    def _renew(self, renewals: list[tuple[tuple[int, int], int]]) -> None:
        """Make and store a new image for each ((class, slot), seed), in one forward pass."""
        labels = torch.tensor([c for (c, _), _ in renewals], dtype=torch.int64)
        z = torch.stack([sample_latents(1, self.config.z_dim, truncation=self.truncation,
                                        generator=torch.Generator().manual_seed(seed))[0] for _, seed in renewals])
        fresh = self._generate(labels, z)
        with self._lock:
            rows = self._row[labels]
            self._store[rows, torch.tensor([s for (_, s), _ in renewals])] = fresh
            self.made += len(renewals)

    def take(self, labels: torch.Tensor, seeds: "torch.Tensor | list[int]") -> torch.Tensor:
        """uint8 ``(N, C, H, W)``: for each label, the image in the slot its seed picks; then the
        slots whose seed says so (``refresh`` of them) are renewed, in one forward pass: by the
        background thread, which is handed the labels and seeds as they are and works out which
        slots to renew itself, or in this call with ``background=False``."""
        # this runs once per training batch: few tensor ops (each lets the renewal thread take the
        # interpreter lock) and no Python loop over the batch
        if os.getpid() != self._pid:
            self._start_process()
        ids = self.class_ids(labels)
        if len(self.images) < self.generator.num_classes and (self._row[ids] < 0).any():
            for c in ids.unique().tolist():
                if c not in self.images:
                    self._fill(c)
        seed_ids = torch.as_tensor(seeds, dtype=torch.int64)
        renew = self._renew_below > 0
        queue = renew and self.options.background
        if queue:  # the thread reads them later: copies (they may be the caller's tensors, or views of them)
            ids, seed_ids = ids.clone(), seed_ids.clone()
        with self._lock:
            # one row copy per image, from the store seen as one list of images (indexing the 5-d
            # store by (row, slot) copies byte by byte, 5x slower)
            out = self._store.flatten(0, 1).index_select(0, self._first[ids] + seed_ids % self.options.per_class)
            if queue:
                self._asked.append((ids, seed_ids))
                self._wake.notify_all()
        if queue:
            self._ensure_thread()
        elif renew:
            renewals, n_asked = self._renewals(ids, seed_ids)
            self.asked += n_asked
            if renewals:
                self._renew(list(renewals.items()))
        return out

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            args = (weakref.ref(self), self._wake, self._asked, self._pending, self._stop)
            self._thread = threading.Thread(target=_renew_forever, args=args, name="ganaug-pool-renewal", daemon=True)
            self._thread.start()
            _THREADS[:] = [t for t in _THREADS if t[1].is_alive()] + [(os.getpid(), self._thread, self._stop, self._wake)]

    def settle(self, timeout: float = 60.0) -> bool:
        """Wait until every queued renewal is made (True), or ``timeout`` seconds pass (False); for
        tests and benchmarks that need to know what the pool holds."""
        with self._wake:
            return self._wake.wait_for(lambda: not (self._asked or self._pending or self._busy), timeout)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for k in ("_lock", "_wake", "_asked", "_pending", "_busy", "_thread", "_stop"):
            del state[k]  # per process (see _start_process)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._start_process()

    def stats(self) -> dict:
        return {"images_made": self.made, "renewals_asked": self.asked, "renewals_queued": len(self._pending),
                "calls_unread": len(self._asked),
                "classes_filled": sorted(self.images), "background": self.options.background}


def _renew_forever(pool_ref: "weakref.ref[ImagePool]", wake: threading.Condition,
                   asked: list[tuple[torch.Tensor, torch.Tensor]], pending: dict[tuple[int, int], int],
                   stop: threading.Event) -> None:
    """The renewal thread: read the calls' labels and seeds into renewals, and make them in chunks;
    end when the pool is gone or at exit. It holds the pool only while working, so a dropped
    transform's pool (and this thread) go away."""
    while True:
        with wake:
            while not asked and not pending and not stop.is_set():
                if not wake.wait(timeout=1.0) and pool_ref() is None:
                    return
            if stop.is_set():
                return
            pool = pool_ref()
            if pool is None:
                return
            calls, asked[:] = asked[:], []
            pool._busy += 1
        try:
            if calls:  # every queued call read at once: a handful of tensor ops however many there are
                renewals, n_asked = pool._renewals(torch.cat([c[0] for c in calls]), torch.cat([c[1] for c in calls]))
            with wake:
                if calls:
                    pending.update(renewals)
                    pool.asked += n_asked
                chunk = [pending.popitem() for _ in range(min(len(pending), RENEW_CHUNK))]
            if chunk:
                pool._renew(chunk)
        finally:
            with wake:
                pool._busy -= 1
                wake.notify_all()
            del pool


@atexit.register
def _stop_renewals() -> None:
    for pid, thread, stop, wake in _THREADS:
        if pid == os.getpid() and thread.is_alive():
            stop.set()
            with wake:
                wake.notify_all()
            thread.join(timeout=30)
