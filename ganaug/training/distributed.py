"""Several processes, GPUs or machines through torchrun and PyTorch's DistributedDataParallel.

ganaug does not launch processes itself: ``torchrun`` starts them and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`distributed` reads
them and joins the process group (NCCL for GPUs, gloo for CPUs). Without those variables (or
with a world of one) everything runs in this process, exactly as before.

How a run stays one run on any number of processes:

- **One random stream, sliced by rank.** Every rank draws the *global* batch's indices, latents,
  class noise and DiffAugment parameters from the same seeded stream and keeps its own rows.
  The ranks together therefore see exactly the batch one process would see, the RNG state is
  the same on every rank (one state in the checkpoint), and a checkpoint resumes under any
  world size. Drawing a few random numbers for the whole batch costs nothing next to the convs.
- **Gradients** are averaged by DDP over ranks; each rank's loss is a mean over its rows, so the
  result is the gradient of the global batch's mean loss.
- **BatchNorm** in G normalises with each rank's own rows (SyncBatchNorm is CUDA-only and would
  tie the statistics to the world size). ``TrainConfig.bn_group`` makes that group size explicit,
  so a single process can train with the same statistics as N ranks.
- **Buffers**: DDP's ``broadcast_buffers`` (``forward_sync_buffers`` in newer torch) is off,
  because it would send rank 0's buffers before every forward (G and D run several times a step).
  Off, older DDP also skips its first buffer sync (a known trap: spectral-norm vectors then drift
  apart), so ganaug broadcasts every buffer from
  rank 0 at the start, and after every step averages the BatchNorm running statistics over ranks
  and broadcasts every other buffer (spectral-norm vectors, counters) from rank 0; the EMA
  generator, which copies buffers, is then the same everywhere.
- **Checks before every checkpoint**: a digest of every parameter and buffer of G, D and the
  EMA generator must agree across ranks (after stylegan2-ada's ``check_ddp_consistency``).
- **Files** (checkpoints, grids, metrics, snapshots) are written by rank 0 only; the others wait
  at a barrier.
"""

from __future__ import annotations

import datetime
import hashlib
import inspect
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import GanaugError

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Dist:
    """Where this process stands in a distributed run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, global_batch: int) -> slice:
        """This rank's rows of a global batch (which the world size divides)."""
        local = global_batch // self.world_size
        return slice(self.rank * local, (self.rank + 1) * local)

    # -- collectives; each is a no-op (or the identity) in a single process ---------------------
    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def mean(self, values: torch.Tensor) -> list[float]:
        """The mean over ranks of each entry of a 1-d tensor (one all-reduce), as floats."""
        if not self.enabled:
            return values.tolist()
        t = values.detach().double()
        dist.all_reduce(t)
        return (t / self.world_size).tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (small JSON-like values: fingerprints, flags, messages)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def agree(self, error: str | None) -> None:
        """Raise on every rank if any rank has an error, so no rank waits forever at the next
        collective for one that stopped."""
        errors = self.gather(error)
        failed = [(r, e) for r, e in enumerate(errors) if e]
        if failed:
            rank, msg = failed[0]
            where = f" (on rank {rank} of {self.world_size})" if self.enabled else ""
            raise GanaugError(f"{msg}{where}")

    def same(self, what: str, value: Any, fix: str) -> None:
        """Every rank must hold the same ``value``; if not, say which ranks differ and ``fix``."""
        values = self.gather(value)
        differ = [r for r, v in enumerate(values) if v != values[0]]
        if differ:
            r = differ[0]
            raise GanaugError(f"ranks disagree on {what}: {_difference(values[0], values[r], r)}. {fix}")


def _difference(a: Any, b: Any, rank: int, path: str = "") -> str:
    """Where two nested values first differ, as ``rank 0 has X at PATH, rank R has Y``."""
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return next(_difference(a[k], b[k], rank, f"{path}.{k}" if path else str(k)) for k in a if a[k] != b[k])
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next(_difference(x, y, rank, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b)) if x != y)
    at = f" at {path}" if path else ""
    return f"rank 0 has {a!r}{at}, rank {rank} has {b!r}"


def from_env() -> Dist:
    """The rank, world size and local rank torchrun set (rank 0 of 1 when not launched by it)."""
    if "WORLD_SIZE" not in os.environ:
        return Dist()
    try:
        rank, world, local = (int(os.environ.get(k, "0")) for k in _ENV)
    except ValueError as e:
        raise GanaugError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({e}); launch with torchrun.") from e
    if world < 1 or not 0 <= rank < world:
        raise GanaugError(f"inconsistent launch: RANK={rank}, WORLD_SIZE={world}; launch with torchrun.")
    return Dist(rank, world, local)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; under torchrun a bare ``cuda`` means this process's
    GPU (``cuda:LOCAL_RANK``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise GanaugError(f"unknown device {name!r}: {e}. Use 'auto', 'cpu' or 'cuda'.") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GanaugError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu.")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise GanaugError(f"device {device} does not exist: this machine shows {torch.cuda.device_count()} "
                              "GPU(s); start at most that many processes per node (--nproc_per_node).")
    return device


DIST_TIMEOUT_S = 600.0  # how long a process waits for the others before the run fails with a message


@contextmanager
def distributed(device_name: str = "auto", timeout_s: float = DIST_TIMEOUT_S,
                backend: str | None = None) -> Iterator[tuple[Dist, torch.device]]:
    """Join torchrun's process group if this process was launched by it, and leave it at the end.

    Yields this process's :class:`Dist` and device. A process group that the caller already
    started is used as it is (and left running). ``timeout_s`` bounds the wait for the other
    processes, at the start and at every collective; a node that cannot reach ``MASTER_ADDR``
    within it gets a clear error instead of a hang.
    """
    d = from_env()
    device = pick_device(device_name, d.local_rank)
    if not d.enabled:
        yield d, device
        return
    if dist.is_initialized():
        if dist.get_world_size() != d.world_size or dist.get_rank() != d.rank:
            raise GanaugError("a process group is already running with another rank or world size than "
                              "RANK/WORLD_SIZE say; start ganaug in a fresh process under torchrun.")
        yield d, device
        return
    if backend is None:
        backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError, OSError, socket.error) as e:
        raise GanaugError(
            f"rank {d.rank} of {d.world_size} on {socket.gethostname()} could not join the other processes at "
            f"{where} within {timeout_s:g} s ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            "Check that every node runs the same torchrun command with the same --master-addr/--master-port "
            "(or --rdzv-endpoint), that the port is open between the nodes, and, in containers, set "
            "GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME to the interface the nodes share."
        ) from e
    try:
        yield d, device
    finally:
        dist.destroy_process_group()


# -- keeping models identical on every rank -----------------------------------------------------
_BATCH_STATS = ("running_mean", "running_var")


@torch.no_grad()
def _coalesced(tensors: list[torch.Tensor], op: Callable[[torch.Tensor], None]) -> None:
    """Run ``op`` (an in-place collective) once per dtype over all ``tensors`` flattened together:
    a G has dozens of small buffers, and one call each would cost a round trip each."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        op(flat)
        for t, part in zip(group, flat.split([t.numel() for t in group])):
            t.copy_(part.view_as(t))


def broadcast_buffers(d: Dist, *modules: nn.Module) -> None:
    """Every buffer of ``modules`` from rank 0 (DDP with ``broadcast_buffers=False`` does not)."""
    if d.enabled:
        _coalesced([b for m in modules for b in m.buffers()], lambda t: dist.broadcast(t, 0))


def sync_buffers(d: Dist, *modules: nn.Module) -> None:
    """After a step: BatchNorm running statistics averaged over ranks (each rank saw other rows),
    every other buffer broadcast from rank 0 (spectral-norm vectors must not drift apart)."""
    if not d.enabled:
        return
    named = [(n, b) for m in modules for n, b in m.named_buffers()]
    stats = [b for n, b in named if n.endswith(_BATCH_STATS) and b.is_floating_point()]
    rest = [b for n, b in named if not (n.endswith(_BATCH_STATS) and b.is_floating_point())]

    def average(t: torch.Tensor) -> None:
        dist.all_reduce(t)
        t.div_(d.world_size)

    _coalesced(stats, average)
    _coalesced(rest, lambda t: dist.broadcast(t, 0))


def state_digest(*modules: nn.Module) -> dict[str, str]:
    """A short hash of every parameter and buffer, by name."""
    out = {}
    for i, m in enumerate(modules):
        for name, t in list(m.named_parameters()) + list(m.named_buffers()):
            raw = t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
            out[f"{i}.{name}"] = hashlib.blake2b(raw, digest_size=8).hexdigest()
    return out


def check_consistency(d: Dist, names: list[str], *modules: nn.Module) -> None:
    """Raise if any parameter or buffer differs between ranks (bit for bit), naming the tensors."""
    if not d.enabled:
        return
    digests = d.gather(state_digest(*modules))
    for rank, other in enumerate(digests[1:], start=1):
        bad = [k for k in digests[0] if other.get(k) != digests[0][k]]
        if bad:
            pretty = [f"{names[int(k.split('.', 1)[0])]}.{k.split('.', 1)[1]}" for k in bad[:5]]
            raise GanaugError(
                f"the models differ between rank 0 and rank {rank} in {len(bad)} tensor(s), e.g. {pretty}; "
                "no checkpoint was written. This is a bug in ganaug's distributed training (or ranks run "
                "different ganaug/torch versions): report it with the command line."
            )


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel, without DDP's buffer broadcast before every forward
    (``sync_buffers`` does it once per step instead)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters:  # torch >= 2.14
        return DDP(module, device_ids=ids, forward_sync_buffers=False)
    return DDP(module, device_ids=ids, broadcast_buffers=False)


def torchrun_prefix(d: Dist) -> list[str]:
    """How this process was launched, for the command recorded in a run (empty when not by torchrun)."""
    if not d.enabled:
        return []
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", d.world_size))
    nodes = d.world_size // max(per_node, 1)
    return ["torchrun", *([f"--nnodes={nodes}"] if nodes > 1 else []), f"--nproc_per_node={per_node}", "-m"]
