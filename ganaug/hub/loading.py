"""``load_generator``: one entry point for packages, run folders and Hub repos."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import GanaugError
from .generator import Generator
from .package import CONFIG_NAME, WEIGHTS_NAME, load_package, refuse_pickles

HUB_PREFIX = "hf-hub:"


def parse_hub_source(source: str, revision: str | None) -> tuple[str, str | None]:
    """'hf-hub:org/name[@rev]' -> (repo_id, revision)."""
    spec = source[len(HUB_PREFIX):]
    repo_id, _, rev = spec.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise GanaugError(f"{source!r} is not 'hf-hub:org/name' or 'hf-hub:org/name@revision'.")
    if rev and revision and rev != revision:
        raise GanaugError(f"{source!r} pins revision {rev!r} but revision={revision!r} was also given.")
    return repo_id, rev or revision


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
    if isinstance(source, str) and source.startswith(HUB_PREFIX):
        if step is not None:
            raise GanaugError("step= picks a snapshot of a training run folder; a Hub package holds one generator.")
        repo_id, rev = parse_hub_source(source, revision)
        return load_package(download_package(repo_id, rev), device)
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
    from ..training.rundir import load_run_generator

    if (path / CHECKPOINT_NAME).is_file():
        net, config, step = load_run_generator(path, device, step)
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


def download_package(repo_id: str, revision: str | None) -> Path:
    """Fetch a package through the Hugging Face cache; errors say what to do."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    where = f"{repo_id}@{revision or 'main'}"
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, library_name="ganaug",
                                        allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "README.md", "*.png"]))
    except RevisionNotFoundError as e:
        raise GanaugError(f"revision {revision!r} does not exist in {repo_id}; check the branch, tag "
                          "or commit name.") from e
    except GatedRepoError as e:
        raise GanaugError(f"{where} is gated: accept its terms on the Hub and log in "
                          "(`hf auth login` or HF_TOKEN).") from e
    except RepositoryNotFoundError as e:
        raise GanaugError(f"{where} was not found, or the repo is private and you are not "
                          "authorised: check the name, and log in (`hf auth login` or HF_TOKEN) "
                          "for private repos.") from e
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        raise GanaugError(f"{where} is not in the local Hugging Face cache and the Hub cannot be "
                          "reached (offline, HF_HUB_OFFLINE=1, or no network). Download it once "
                          "while online, or load a local package folder instead.") from e
    except HfHubHTTPError as e:
        raise GanaugError(f"the Hub refused {where}: {e}") from e
    if not (folder / WEIGHTS_NAME).is_file():
        try:
            files = HfApi().list_repo_files(repo_id, revision=revision)
        except HfHubHTTPError:
            files = []
        refuse_pickles(files, f"Hub repo {where}")
        raise GanaugError(f"Hub repo {where} has no {WEIGHTS_NAME}; it is not a ganaug generator.")
    return folder


def _validate_any(folder: Path) -> None:
    """Load the package with the loader its config.json's kind names."""
    try:
        kind = json.loads((folder / CONFIG_NAME).read_text()).get("kind")
    except (OSError, json.JSONDecodeError) as e:
        raise GanaugError(f"{str(folder)!r} has no readable {CONFIG_NAME}: {e}.") from e
    if kind == "ganaug-anomaly":
        from ..anomaly.package import load_detector

        load_detector(folder)
    else:
        load_package(folder)


def push_to_hub(folder: str | Path, repo_id: str, *, revision: str | None = None,
                private: bool | None = None, token: str | None = None,
                commit_message: str | None = None) -> str:
    """Upload a package folder to ``repo_id`` (created if needed; ``revision`` = a branch,
    created if needed). The package is loaded first, so a broken package is never pushed.
    Returns the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    _validate_any(folder)  # a broken package is never published
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                             commit_message=commit_message or "Upload ganaug generator",
                             allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "README.md", "*.png"])
    return info.commit_url
