"""The finished classifier runs of one report folder, so that a killed benchmark continues.

Each run is a record ``runs/<name>.json`` (the settings it was made with, its ``key``, and its
figures) and its weights ``runs/<name>.safetensors``, both written whole (a ``.part`` file
renamed), so a process sharing the folder never reads half of one. A record counts only for the
exact key it was made with; a lock file (:mod:`ganaug.bench.claim`) makes a second process wait
for a run another one is training instead of training it twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch.nn as nn
from safetensors.torch import load_file, save_file

from .claim import Busy, claim

LOCK_POLL_S = 10.0  # how often a process waiting for another's run looks again


class RunStore:
    """Runs kept in ``folder``. ``build()`` makes an untrained network of the benchmark's shape
    (to load a run's weights into); ``machine()`` is added to every record; ``normalise`` brings
    an older record's key up to date (a field added since, with its default)."""

    def __init__(self, folder: str | Path, build: Callable[[], nn.Module], *,
                 log: Callable[[str], None] = lambda m: None, machine: Callable[[], str] = lambda: "",
                 normalise: Callable[[dict], dict] = lambda k: k):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.build, self.log, self.machine, self.normalise = build, log, machine, normalise

    def weights(self, name: str) -> Path:
        return self.folder / f"{name}.safetensors"

    def record(self, name: str, key: dict, need_weights: bool = False) -> dict | None:
        """Run ``name``'s figures if it was made with this ``key`` (and its weights are there when
        ``need_weights``), else None."""
        path = self.folder / f"{name}.json"
        if not path.is_file() or (need_weights and not self.weights(name).is_file()):
            return None
        record = json.loads(path.read_text())
        kept_key = self.normalise(record.get("key") or {})
        return record["run"] if kept_key == json.loads(json.dumps(key)) else None

    def run(self, name: str, key: dict, make: Callable[[], nn.Module], score: Callable[[nn.Module], dict], *,
            keep_weights: bool = True, need_weights: bool = False, wait: bool = True) -> dict | None:
        """The kept figures of run ``name`` if it was made with ``key``; else ``make()`` the network
        (train it, or load another run's), ``score`` it, and keep the figures, with the weights when
        ``keep_weights`` (not for a network loaded from another run: post-hoc adjustment). None
        without ``wait`` while another process makes it."""
        kept = self.record(name, key, need_weights)
        if kept is None:
            try:
                with claim(self.folder / f"{name}.lock", poll=LOCK_POLL_S, log=self.log, wait=wait):
                    # a process sharing this folder may have made it while this one waited
                    kept = self.record(name, key, need_weights)
                    if kept is None:
                        return self._fresh(name, key, make, score, keep_weights)
            except Busy:
                return None
        self.log(f"{name}: balanced accuracy {kept['balanced_accuracy']:.4f} (kept)")
        return kept

    def _fresh(self, name: str, key: dict, make: Callable[[], nn.Module], score: Callable[[nn.Module], dict],
               keep_weights: bool) -> dict:
        t = time.perf_counter()
        model = make()
        if keep_weights:
            weights = self.weights(name)
            part = weights.with_suffix(".safetensors.part")
            save_file({n: v.detach().cpu().contiguous() for n, v in model.state_dict().items()}, str(part))
            part.replace(weights)
        run = {**score(model), "seconds": round(time.perf_counter() - t, 1), "machine": self.machine()}
        path = self.folder / f"{name}.json"
        part = path.with_suffix(".json.part")
        part.write_text(json.dumps({"key": key, "run": run}))
        part.replace(path)
        self.log(f"{name}: balanced accuracy {run['balanced_accuracy']:.4f} "
                 f"(validation {run['val_balanced_accuracy']:.4f})")
        return run

    def load(self, name: str) -> nn.Module:
        """Run ``name``'s network, in eval mode."""
        model = self.build()
        model.load_state_dict(load_file(str(self.weights(name))))
        return model.eval()


__all__ = ["RunStore", "LOCK_POLL_S", "Busy"]
