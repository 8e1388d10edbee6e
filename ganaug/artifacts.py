"""The package layer: a folder of ``model.safetensors`` + ``config.json`` (+ ``README.md`` card).

Every kind of package ganaug writes (generators, anomaly detectors, reference classifiers) is
saved and read here, one way: resolve a source (a folder, or ``hf-hub:org/name[@rev]`` through
the Hugging Face cache), check ``config.json``'s ``kind`` and ``format_version``, load the
weights from safetensors only and match them to the model strictly, write atomically. Each kind
registers its loader with :func:`register_kind`; this module knows none of them, so
:func:`load_artifact` can open any package (``push_to_hub`` checks one before it uploads).

config.json is data: it is parsed as JSON, never executed, and pickle files are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .version import __version__
from .errors import GanaugError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
HUB_PREFIX = "hf-hub:"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# what a package holds; downloads and uploads take only these (sample grids are PNGs)
PACKAGE_FILES = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, "*.png"]

_LOADERS: dict[str, tuple[Callable[..., Any], str]] = {}


def register_kind(kind: str, loader: Callable[..., Any], what: str) -> None:
    """Make ``load_artifact`` open packages whose config.json says ``kind``: ``loader(folder)``
    builds the object; ``what`` names it in messages ("generator"). Registering a kind twice with
    another loader is an error, as for architectures (a module reloaded registers the same again)."""
    if kind in _LOADERS and getattr(_LOADERS[kind][0], "__qualname__", None) != getattr(loader, "__qualname__", None):
        raise ValueError(f"package kind {kind!r} is already registered (for {_LOADERS[kind][1]})")
    _LOADERS[kind] = (loader, what)


def kinds() -> dict[str, str]:
    """Registered kinds and what they are."""
    return {k: what for k, (_, what) in _LOADERS.items()}


def load_artifact(source: str | Path, *, revision: str | None = None) -> Any:
    """Open any registered kind of package (a folder or ``hf-hub:org/name[@rev]``)."""
    folder = resolve(source, revision)
    kind = read_config(folder).get("kind")
    if kind not in _LOADERS:
        raise GanaugError(f"{str(folder)!r} holds a {kind!r}; ganaug packages are one of {sorted(_LOADERS)}.")
    return _LOADERS[kind][0](folder)


def refuse_pickles(files: list[str], where: str) -> None:
    """Raise if ``files`` offer weights only in pickle formats (the caller found no safetensors)."""
    pickles = sorted(f for f in files if f.lower().endswith(PICKLE_SUFFIXES))
    if pickles:
        raise GanaugError(
            f"{where} offers weights only as pickle files ({', '.join(pickles)}). ganaug loads "
            "weights from safetensors only, because unpickling a file can run arbitrary code. "
            "Ask the author for a model.safetensors, or convert a file you trust yourself."
        )


# -- where a package is ------------------------------------------------------------------------

def parse_hub_source(source: str, revision: str | None) -> tuple[str, str | None]:
    """'hf-hub:org/name[@rev]' -> (repo_id, revision)."""
    spec = source[len(HUB_PREFIX):]
    repo_id, _, rev = spec.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise GanaugError(f"{source!r} is not 'hf-hub:org/name' or 'hf-hub:org/name@revision'.")
    if rev and revision and rev != revision:
        raise GanaugError(f"{source!r} pins revision {rev!r} but revision={revision!r} was also given.")
    return repo_id, rev or revision


def is_hub_source(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(HUB_PREFIX)


def resolve(source: str | Path, revision: str | None = None) -> Path:
    """A local folder holding the package: ``source`` itself, or its Hub download."""
    if is_hub_source(source):
        return download(*parse_hub_source(str(source), revision))
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise GanaugError(f"{str(folder)!r} is not a folder; give a package folder or 'hf-hub:org/name'.")
    return folder


def download(repo_id: str, revision: str | None) -> Path:
    """Fetch a package through the Hugging Face cache; errors say what to do."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    where = f"{repo_id}@{revision or 'main'}"
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, library_name="ganaug",
                                        allow_patterns=PACKAGE_FILES))
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
        raise GanaugError(f"Hub repo {where} has no {WEIGHTS_NAME}; it is not a ganaug package.")
    return folder


# -- reading -----------------------------------------------------------------------------------

def read_config(folder: Path) -> dict:
    """config.json as a dict, or a GanaugError that says what is wrong with the folder."""
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        if not (folder / WEIGHTS_NAME).is_file():
            refuse_pickles([p.name for p in folder.iterdir()] if folder.is_dir() else [], str(folder))
            raise GanaugError(f"{str(folder)!r} is not a ganaug package (no {CONFIG_NAME}, no {WEIGHTS_NAME}).")
        raise GanaugError(f"{str(folder)!r} has {WEIGHTS_NAME} but no {CONFIG_NAME}; the config is "
                          "required to rebuild the model.")
    try:
        raw = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GanaugError(f"{str(cfg_path)!r} is not valid JSON: {e}.") from e
    if not isinstance(raw, dict):
        raise GanaugError(f"{str(cfg_path)!r} must hold a JSON object.")
    return raw


def read_package(folder: Path, kind: str, format_version: int) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json, weights) of a package of ``kind``, checked: the kind, a format version this
    ganaug reads, weights present and readable as safetensors."""
    raw = read_config(folder)
    cfg_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if raw.get("kind") != kind:
        what = _LOADERS.get(kind, (None, kind))[1]
        raise GanaugError(f"{str(folder)!r} holds a {raw.get('kind')!r} package, not a {kind!r} one ({what}); "
                          "ganaug.artifacts.load_artifact opens a package of any kind.")
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise GanaugError(f"{str(cfg_path)!r}: 'format_version' must be an integer.")
    if version > format_version:
        raise GanaugError(f"{str(cfg_path)!r} has package format {version}, newer than this ganaug "
                          f"reads ({format_version}); upgrade ganaug.")
    if not weights.is_file():
        refuse_pickles([p.name for p in folder.iterdir()], str(folder))
        raise GanaugError(f"{str(folder)!r} has {CONFIG_NAME} but no {WEIGHTS_NAME}.")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise GanaugError(f"{str(weights)!r} is corrupt or truncated ({e}); download or export "
                          "it again.") from e
    return raw, state


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """Load ``state`` into ``model``: every key and every shape must match (floats are cast to the
    model's dtype, so fp16/bf16 packages compute in float32)."""
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise GanaugError(
            f"{where} does not match its {CONFIG_NAME}: missing tensors {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected tensors {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}; weights and config do not belong together."
        )
    state = dict(state)
    for name, t in expected.items():
        if state[name].shape != t.shape:
            raise GanaugError(f"tensor {name!r} in {where} has shape {tuple(state[name].shape)} but the "
                              f"config needs {tuple(t.shape)}; weights and {CONFIG_NAME} do not belong together.")
        if state[name].is_floating_point():
            state[name] = state[name].to(t.dtype)
    model.load_state_dict(state, strict=True)
    return model


# -- writing -----------------------------------------------------------------------------------

def _new_file_mode() -> int:
    """The mode a plain new file gets here: 0666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_package(folder: str | Path, kind: str, format_version: int, state: dict[str, torch.Tensor],
                  config: dict, card: str | None = None) -> Path:
    """Write a package: each file goes to a temporary name and is renamed into place, so a killed
    write leaves every file whole (old or new); weights that do not fit the config next to them
    are then caught by the strict load."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    files = {CONFIG_NAME: json.dumps({"kind": kind, "format_version": format_version,
                                      "ganaug_version": __version__, **config}, indent=2)}
    if card is not None:
        files[CARD_NAME] = card
    tmp = folder / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "library": "ganaug"})
    # safetensors 0.8 creates its files 0600 whatever the umask (safetensors#782): a package is for sharing
    os.chmod(tmp, _new_file_mode())
    os.replace(tmp, folder / WEIGHTS_NAME)
    for name, text in files.items():
        tmp = folder / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, folder / name)
    return folder


def weights_digest(net: nn.Module) -> str:
    """sha256 of a module's parameters and buffers, names included: identifies trained weights."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
