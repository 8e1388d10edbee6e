"""Read a PyTorch ``.pth`` state dict without unpickling it.

The standard FID Inception weights are only published as a ``torch.save`` file, which is a zip
holding a pickle (``data.pkl``) and raw tensor storages. Unpickling a downloaded file can run
arbitrary code, so ganaug never does: this module walks the pickle's opcodes with
``pickletools.genops`` (which parses, never executes) and interprets the handful a state dict
needs. Only an allowlist of names may appear (OrderedDict, tensor rebuild functions, storage
types); anything else is refused. The result is converted to safetensors once and only the
safetensors file is loaded afterwards. :func:`download_as_safetensors` does both for a published
file (the FID Inception weights, torchvision backbones), once, into a cache.
"""

from __future__ import annotations

import collections
import os
import pickletools
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..errors import GanaugError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_FUNCS = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
          ("torch._utils", "_rebuild_parameter")}


class _Global:
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


def _resolve_global(module: str, name: str, path: Path) -> _Global:
    if (module, name) in _FUNCS or (module == "torch" and name in _STORAGE_DTYPES):
        return _Global(module, name)
    raise GanaugError(f"{str(path)!r} refers to {module}.{name}, which a plain tensor state dict "
                      "never needs; refusing to read it.")


def _call(func: object, args: tuple, path: Path) -> object:
    if not isinstance(func, _Global):
        raise GanaugError(f"{str(path)!r} has a call to a non-allowlisted object.")
    if func.name == "OrderedDict":
        return collections.OrderedDict(*args)
    if func.name == "_rebuild_tensor_v2":
        storage, offset, size, stride = args[:4]
        return torch.as_strided(storage, tuple(size), tuple(stride), offset).clone()
    if func.name == "_rebuild_parameter":
        return args[0]
    raise GanaugError(f"{str(path)!r}: cannot call {func.module}.{func.name}.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a zip-format ``torch.save`` state dict, read without unpickling."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise GanaugError(
            f"{str(path)!r} is not a zip-format PyTorch file ({e}). Old (pre-1.6) and corrupt "
            "files cannot be read safely; re-save it as safetensors on a machine you trust."
        ) from e
    with zf:
        pkl = [n for n in zf.namelist() if n.endswith("data.pkl")]
        if len(pkl) != 1:
            raise GanaugError(f"{str(path)!r} does not look like a torch.save file (no data.pkl).")
        prefix = pkl[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in zf.namelist() and zf.read(f"{prefix}byteorder") != b"little":
            raise GanaugError(f"{str(path)!r} stores big-endian tensors, which ganaug does not read.")
        storages: dict[str, torch.Tensor] = {}

        def persistent_load(pid: object) -> torch.Tensor:
            if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                    and isinstance(pid[1], _Global) and pid[1].name in _STORAGE_DTYPES):
                raise GanaugError(f"{str(path)!r} has an unexpected persistent id {pid!r}.")
            key, dtype, numel = str(pid[2]), _STORAGE_DTYPES[pid[1].name], int(pid[4])
            if key not in storages:
                raw = bytearray(zf.read(f"{prefix}data/{key}"))
                storages[key] = (torch.frombuffer(raw, dtype=dtype, count=numel) if numel
                                 else torch.empty(0, dtype=dtype))
            return storages[key]

        result = _interpret(zf.read(pkl[0]), persistent_load, path)
    if not isinstance(result, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in result.items()):
        raise GanaugError(f"{str(path)!r} does not hold a plain name -> tensor state dict.")
    return dict(result)


def _interpret(data: bytes, persistent_load, path: Path) -> object:
    stack: list = []
    marks: list[list] = []
    memo: dict = {}

    def pop_mark() -> list:
        nonlocal stack
        items, stack = stack, marks.pop()
        return items

    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            return stack.pop()
        if name == "MARK":
            marks.append(stack)
            stack = []
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo[arg])
        elif name in ("GLOBAL",):
            module, _, attr = arg.partition(" ")
            stack.append(_resolve_global(module, attr, path))
        elif name == "STACK_GLOBAL":
            attr, module = stack.pop(), stack.pop()
            stack.append(_resolve_global(module, attr, path))
        elif name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8", "BININT",
                      "BININT1", "BININT2", "LONG1", "LONG4", "INT", "LONG", "BINFLOAT", "FLOAT",
                      "SHORT_BINSTRING", "BINSTRING"):
            stack.append(arg)
        elif name in ("NEWTRUE", "NEWFALSE", "NONE"):
            stack.append({"NEWTRUE": True, "NEWFALSE": False, "NONE": None}[name])
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name == "TUPLE":
            items = pop_mark()  # rebinds `stack`: call it before touching the stack
            stack.append(tuple(items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = stack[-n:]
            del stack[-n:]
            stack.append(tuple(items))
        elif name == "LIST":
            items = pop_mark()
            stack.append(items)
        elif name == "DICT":
            items = pop_mark()
            stack.append(dict(zip(items[::2], items[1::2])))
        elif name == "SETITEM":
            v, k = stack.pop(), stack.pop()
            stack[-1][k] = v
        elif name == "SETITEMS":
            items = pop_mark()
            for k, v in zip(items[::2], items[1::2]):
                stack[-1][k] = v
        elif name == "APPEND":
            v = stack.pop()
            stack[-1].append(v)
        elif name == "APPENDS":
            items = pop_mark()
            stack[-1].extend(items)
        elif name == "BINPERSID":
            stack.append(persistent_load(stack.pop()))
        elif name == "REDUCE":
            args, func = stack.pop(), stack.pop()
            stack.append(_call(func, args, path))
        elif name == "BUILD":
            stack.pop()  # object state: a state dict's _metadata (module versions); not needed
        else:
            raise GanaugError(f"{str(path)!r} uses pickle opcode {name}, which a plain tensor "
                              "state dict never needs; refusing to read it.")
    raise GanaugError(f"{str(path)!r}: the pickle ended without STOP (truncated file).")


def offline() -> bool:
    """Whether the user asked for no downloads (``HF_HUB_OFFLINE`` or ``GANAUG_OFFLINE``)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "GANAUG_OFFLINE"))


def convert_to_safetensors(pth: str | Path, out: Path) -> Path:
    """Read ``pth`` without unpickling and write its tensors to ``out`` atomically."""
    state = read_state_dict(pth)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, out)
    return out


def download_as_safetensors(url: str, out: Path, *, what: str, how: str, hash_prefix: str | None = None) -> Path:
    """``out`` if it is cached, else ``url`` downloaded (checked against ``hash_prefix``, the
    SHA-256 prefix torch.hub file names carry) and converted to it. ``what`` names the file in
    errors and ``how`` says what to do instead (both when offline and when the download fails)."""
    if out.is_file():
        return out
    if offline():
        raise GanaugError(f"{what} are not cached and offline mode is on; {how}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        pth = Path(tmp) / "weights.pth"
        try:
            torch.hub.download_url_to_file(url, str(pth), hash_prefix=hash_prefix, progress=True)
        except (OSError, RuntimeError, ValueError) as e:
            raise GanaugError(f"could not download {what} ({e}); {how}.") from e
        return convert_to_safetensors(pth, out)
