"""Training checkpoints as a single safetensors file: no pickle, written atomically.

A checkpoint holds nested state (model and optimiser state dicts, RNG states, configs). Tensors
go into the safetensors body; everything else is JSON in its metadata, with each tensor
replaced by a reference. Loading therefore never executes code, even for a checkpoint that
came from someone else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import GanaugError

CHECKPOINT_NAME = "checkpoint.safetensors"
_META_KEY = "ganaug_checkpoint"


def _encode(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu").clone().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _encode(v, tensors, f"{path}/{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path!r} in a checkpoint")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
    return obj


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temp file in the same folder, then rename.

    A run killed mid-write leaves the previous checkpoint intact.
    """
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    meta = json.dumps(_encode(state, tensors, "s"))
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={_META_KEY: meta})
    with open(tmp, "rb+") as f:  # make the bytes durable before the rename makes them visible
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise GanaugError(f"no checkpoint at {str(path)!r}.")
    try:
        tensors = load_file(str(path), device=str(device))
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = (f.metadata() or {}).get(_META_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise GanaugError(
            f"checkpoint {str(path)!r} is corrupt or truncated ({e}). If the run was killed, "
            "the previous checkpoint was replaced atomically, so this file was damaged later; "
            "restart the run without --resume or restore the file from a backup."
        ) from e
    if meta is None:
        raise GanaugError(f"{str(path)!r} is a safetensors file but not a ganaug training checkpoint.")
    return _decode(json.loads(meta), tensors)
