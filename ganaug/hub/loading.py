"""``load_generator``: one entry point for generator packages, run folders and Hub repos;
``push_to_hub`` for any kind of package."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..artifacts import (CONFIG_NAME, PACKAGE_FILES, WEIGHTS_NAME, is_hub_source, load_artifact, refuse_pickles,
                         resolve)
from ..errors import GanaugError
from .generator import Generator
from .package import load_package


def load_generator(source: str | Path, *, revision: str | None = None,
                   device: str | torch.device | None = None, step: int | None = None) -> Generator:
    """Load a :class:`Generator` from a package folder, a training run folder, or
    ``hf-hub:org/name[@revision]`` (downloaded through the Hugging Face cache).

    ``device`` defaults to the CPU, which is what DataLoader workers need. ``step`` picks one of a
    run folder's snapshots (``--snapshot-every``) instead of its last EMA generator.
    """
    gen = _load(source, revision, device or "cpu", step)
    gen.source = str(source) if step is None else f"{source}@step={step}"
    gen.revision = revision
    return gen


def _load(source: str | Path, revision: str | None, device: str | torch.device, step: int | None = None
          ) -> Generator:
    if is_hub_source(source):
        if step is not None:
            raise GanaugError("step= picks a snapshot of a training run folder; a Hub package holds one generator.")
        return load_package(resolve(source, revision), device)
    path = Path(source).expanduser()
    if not path.exists():
        raise GanaugError(f"{str(path)!r} does not exist; give a package folder, a run folder, or "
                          "'hf-hub:org/name'.")
    if (path / WEIGHTS_NAME).is_file() or (path / CONFIG_NAME).is_file():
        if step is not None:
            raise GanaugError(f"{str(path)!r} is a package, which holds one generator; step= picks a snapshot "
                              "of a training run folder.")
        return load_package(path, device)
    from ..training.checkpoint import CHECKPOINT_NAME
    from ..training.rundir import run_networks

    if (path / CHECKPOINT_NAME).is_file():
        net, config, step = run_networks(path, device, step)
        meta = {"training": training_metadata(path, step)}
        return Generator(net, config, meta)
    refuse_pickles([p.name for p in path.iterdir()] if path.is_dir() else [], str(path))
    raise GanaugError(f"{str(path)!r} is neither a generator package ({WEIGHTS_NAME} + "
                      f"{CONFIG_NAME}) nor a training run folder ({CHECKPOINT_NAME}).")


def training_metadata(run_dir: Path, step: int) -> dict:
    """What a run folder says about how its generator was trained (for config.json and cards)."""
    from ..training.rundir import METRICS, RUN_CONFIG

    meta: dict = {"steps": step}
    cfg_path = run_dir / RUN_CONFIG
    if cfg_path.is_file():
        run = json.loads(cfg_path.read_text())
        commands = run.get("commands") or ([run["command"]] if run.get("command") else [])  # 0.1.0 runs
        meta.update(commands=commands, data=run.get("data"), train_config=run.get("train"))
        if run.get("distilled_from"):
            meta["distilled_from"] = run["distilled_from"]
    metrics = run_dir / METRICS
    if metrics.is_file():  # the last line at or before the checkpoint (a killed run logs past it)
        rows = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
        rows = [r for r in rows if r.get("step", 0) <= step]
        if rows:
            meta["elapsed_s"] = rows[-1].get("elapsed_s")
    return meta


def push_to_hub(folder: str | Path, repo_id: str, *, revision: str | None = None,
                private: bool | None = None, token: str | None = None,
                commit_message: str | None = None) -> str:
    """Upload a package folder to ``repo_id`` (created if needed; ``revision`` = a branch,
    created if needed). The package is loaded first, so a broken package is never pushed.
    Returns the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    load_artifact(folder)  # a broken package is never published
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                             commit_message=commit_message or "Upload ganaug package",
                             allow_patterns=PACKAGE_FILES)
    return info.commit_url
