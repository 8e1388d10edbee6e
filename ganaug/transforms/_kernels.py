"""Deterministic kernels under every ganaug augmentation adapter (torchvision v2, albumentations,
the synthetic datasets): resolve a generator, generate, and fit the result to the format of the
image it replaces. No randomness here: callers pass seeds.
"""

from __future__ import annotations

import collections
import os
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL.Image
import torch

from ..data.images import resize_uint8
from ..errors import GanaugError
from ..hub.generator import Generator
from ..hub.inference import InferenceOptions
from ..pixels import model_to_uint8

if TYPE_CHECKING:
    from .bank import FreshBank
    from .pool import ImagePool

# generators loaded from source strings, per process: (pid, source, revision) -> Generator. Bounded:
# the least recently used beyond MAX_LOADED is dropped (reloaded if asked for again), and entries a
# forked worker inherited from its parent (another pid) are dropped on its first load
MAX_LOADED = 8
_LOADED: "collections.OrderedDict[tuple, Generator]" = collections.OrderedDict()
# a generator -> its inference variants (compiled or int8 models are built once, never pickled)
_OPTIMIZED: "weakref.WeakKeyDictionary[Generator, dict[InferenceOptions, Generator]]" = weakref.WeakKeyDictionary()


def resolve_generator(generator: Generator | str, revision: str | None = None,
                      inference: InferenceOptions | dict | None = None) -> Generator:
    """A Generator as given, or loaded (once per process) from a source string, on the CPU; with
    ``inference``, its variant that runs so (built once per process and generator).

    Loading per process is what makes transforms safe in DataLoader workers under fork and
    spawn: a worker never inherits CUDA state, it loads its own CPU copy.
    """
    from .bank import FreshBank

    if isinstance(generator, FreshBank):
        return generator  # its background process runs the generator (with its own inference options)
    if isinstance(generator, Generator):
        gen = generator
    elif not isinstance(generator, (str, os.PathLike)):
        raise GanaugError(f"generator must be a ganaug.Generator or a source string (folder or "
                          f"'hf-hub:org/name'), got {type(generator).__name__}.")
    else:
        key = (os.getpid(), str(generator), revision)
        if key not in _LOADED:
            from ..hub.loading import load_generator

            for other in [k for k in _LOADED if k[0] != key[0]]:
                del _LOADED[other]
            with torch.random.fork_rng(devices=[]):  # building the network draws initial weights: not from
                _LOADED[key] = load_generator(generator, revision=revision, device="cpu")  # the caller's stream
            while len(_LOADED) > MAX_LOADED:
                _LOADED.popitem(last=False)
        _LOADED.move_to_end(key)
        gen = _LOADED[key]
    options = inference_options(inference)
    if options is None or options == gen.inference:
        return gen
    variants = _OPTIMIZED.setdefault(gen, {})
    if options not in variants:
        with torch.random.fork_rng(devices=[]):  # building a variant must not move the caller's stream either
            variants[options] = gen.optimized(options)
    return variants[options]


def inference_options(inference: InferenceOptions | dict | None) -> InferenceOptions | None:
    """Options as given, or from their dict (how transforms serialise them)."""
    if inference is None or isinstance(inference, InferenceOptions):
        return inference
    return InferenceOptions.from_dict(inference)


def check_worker_device(gen: Generator) -> None:
    """A CUDA generator cannot run in a forked DataLoader worker; say what to do instead."""
    from torch.utils.data import get_worker_info

    if get_worker_info() is not None and gen.device.type != "cpu":
        raise GanaugError(
            "a generator on the GPU cannot be used inside DataLoader workers (forked processes "
            "cannot use CUDA). Give the transform a source string so each worker loads a CPU copy, "
            "or use GANBatchAugment on GPU batches in the main process."
        )


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> ``channels`` (1 <-> 3): grey repeated, or ITU-R 601 luma."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.repeat(1, 3, 1, 1)
    if c == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise GanaugError(f"cannot convert the generator's {c}-channel images to {channels} channels; "
                      "ganaug converts between grey (1) and RGB (3) only.")


def generate_fitted(gen: "Generator | FreshBank | ImagePool", labels: torch.Tensor, seeds: torch.Tensor | list[int],
                    channels: int, height: int, width: int, truncation: float | None = None) -> torch.Tensor:
    """uint8 (N, channels, height, width): one image per (label, seed), in one forward pass.

    Each image's latent comes from its own seed, so an image does not depend on what else is
    in the batch.
    """
    from .bank import FreshBank
    from .pool import ImagePool

    if isinstance(gen, (FreshBank, ImagePool)):  # an image kept in a bank or pool instead of a forward pass
        out = gen.take(labels, seeds)
    else:
        z = torch.stack([_latent(gen.config.z_dim, s, truncation) for s in torch.as_tensor(seeds).tolist()])
        with torch.no_grad():
            x = gen(z.to(gen.device), labels.to(gen.device))
        out = model_to_uint8(x, gen.value_range).cpu()
    return resize_uint8(convert_channels(out, channels), height, width)


def replace_rows(images: torch.Tensor, idx: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """A copy of ``images`` with ``images[idx]`` replaced by ``fresh`` (same dtype and device).
    Contiguous images are written as rows of 8-, 4- or 2-byte words: indexing copies element by
    element, and a 32x32 uint8 image is then 128 words instead of 1,024 bytes (4x faster)."""
    if not (images.is_contiguous() and fresh.is_contiguous() and len(images)):
        return images.index_put((idx,), fresh)
    row_bytes = images[0].numel() * images.element_size()
    word = next(dt for dt in (torch.int64, torch.int32, torch.int16, torch.uint8) if row_bytes % dt.itemsize == 0)

    def as_words(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(len(t), -1).view(torch.uint8).view(word)

    return as_words(images).index_put((idx,), as_words(fresh)).view(torch.uint8).view(images.dtype).view(images.shape)


def _latent(z_dim: int, seed: int, truncation: float | None) -> torch.Tensor:
    from ..models import sample_latents

    return sample_latents(1, z_dim, truncation=truncation, generator=torch.Generator().manual_seed(seed))[0]


# -- matching the replaced image's type, dtype and range --------------------------------------
def image_format(img: Any) -> tuple[int, int, int]:
    """(channels, height, width) of a PIL image, CHW tensor or HWC numpy array."""
    if isinstance(img, PIL.Image.Image):
        return len(img.getbands()), img.height, img.width
    if isinstance(img, torch.Tensor):
        if img.dim() == 2:
            return 1, img.shape[0], img.shape[1]
        if img.dim() == 3:
            return img.shape[0], img.shape[1], img.shape[2]
    if isinstance(img, np.ndarray):
        if img.ndim == 2:
            return 1, img.shape[0], img.shape[1]
        if img.ndim == 3:
            return img.shape[2], img.shape[0], img.shape[1]
    raise GanaugError(f"cannot replace an image of type {type(img).__name__} with shape "
                      f"{getattr(img, 'shape', None)}; expected a PIL image, a (C, H, W) tensor or an "
                      "(H, W, C) NumPy array.")


def like(generated: torch.Tensor, ref: Any) -> Any:
    """Return uint8 (C, H, W) ``generated`` as the same type, dtype and value range as ``ref``.

    Float tensors and arrays are taken to be in [0, 1] (torchvision's and albumentations'
    convention), so place the transform before any normalisation.
    """
    if isinstance(ref, PIL.Image.Image):
        arr = generated.permute(1, 2, 0).numpy()
        mode = ref.mode if ref.mode in ("L", "RGB") else ("L" if arr.shape[2] == 1 else "RGB")
        if mode == "L" and arr.shape[2] != 1:
            raise GanaugError(f"cannot make a {mode!r} PIL image from {arr.shape[2]} channels.")
        out = PIL.Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, mode)
        return out.convert(ref.mode) if out.mode != ref.mode else out
    if isinstance(ref, torch.Tensor):
        x = generated if ref.dim() == 3 else generated[0]
        if ref.dtype == torch.uint8:
            out = x.to(ref.device)
        elif ref.dtype.is_floating_point:
            out = (x.to(torch.float32) / 255.0).to(device=ref.device, dtype=ref.dtype)
        else:
            raise GanaugError(f"cannot replace a {ref.dtype} image tensor; use uint8 or float.")
        from torchvision import tv_tensors

        return tv_tensors.wrap(out, like=ref) if isinstance(ref, tv_tensors.TVTensor) else out
    if isinstance(ref, np.ndarray):
        arr = generated.permute(1, 2, 0).numpy()
        arr = arr[:, :, 0] if ref.ndim == 2 else arr
        if ref.dtype == np.uint8:
            return np.ascontiguousarray(arr)
        if np.issubdtype(ref.dtype, np.floating):
            return (arr.astype(np.float32) / 255.0).astype(ref.dtype)
        raise GanaugError(f"cannot replace a {ref.dtype} image array; use uint8 or float32.")
    raise GanaugError(f"cannot replace an image of type {type(ref).__name__}.")


def class_id(gen: Generator, label: Any, where: str) -> int:
    """A sample's label (int, 0-d tensor, numpy int, or class name) as a generator class id."""
    if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.dtype.is_floating_point:
        label = int(label.item())
    elif isinstance(label, np.integer):
        label = int(label)
    if isinstance(label, str):
        if label not in gen.class_names:
            raise GanaugError(f"{where}: class name {label!r} is not one of the generator's classes "
                              f"{gen.class_names}.")
        return gen.class_names.index(label)
    if not isinstance(label, int) or isinstance(label, bool):
        raise GanaugError(f"{where}: expected an integer class label, got {label!r} "
                          f"({type(label).__name__}); pass labels_getter= to say where the label is.")
    if not 0 <= label < gen.num_classes:
        raise GanaugError(f"{where}: label {label} is outside the generator's classes 0..{gen.num_classes - 1} "
                          f"({gen.class_names}); does the dataset use the same class order?")
    return label


def class_probabilities(gen: Generator, p: float | dict, classes: Any) -> torch.Tensor:
    """Per-class replacement probability from ``p`` (float or {class: p}) and ``classes``."""
    if isinstance(p, dict):
        probs = torch.zeros(gen.num_classes, dtype=torch.float64)
        for k, v in p.items():
            probs[class_id(gen, k, "p")] = float(v)
    else:
        probs = torch.full((gen.num_classes,), float(p), dtype=torch.float64)
    if classes is not None:
        keep = torch.zeros(gen.num_classes, dtype=torch.bool)
        for c in classes:
            keep[class_id(gen, c, "classes")] = True
        probs[~keep] = 0.0
    if ((probs < 0) | (probs > 1)).any():
        raise GanaugError(f"probabilities must lie in [0, 1], got {p!r}.")
    return probs
