"""Inception-v3 features with the standard FID weights.

Architecture: torch-fidelity's ``FeatureExtractorInceptionV3`` (the TensorFlow 2015-12-05 graph
ported exactly, the same network torchmetrics uses). Inputs are uint8; grey images are repeated
to RGB; images are resized to 299x299 inside the network with torch-fidelity's
TensorFlow-1-compatible bilinear resize, in float32. Features: the 2048-d pool3 layer; logits
for the Inception Score: the 1008-way unbiased logits.

Weights: safetensors only are ever loaded. The official file is a ``torch.save`` pickle; it is
downloaded once, read by :mod:`ganaug.eval.torch_pth` without unpickling, and cached as
safetensors. ``--inception-weights PATH`` takes the official ``.pth`` or a ``.safetensors``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from unittest import mock

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import GanaugError
from .features import FeatureSpace
from .reference import cache_dir
from .torch_pth import convert_to_safetensors, download_as_safetensors

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
_HASH_PREFIX = "6726825d"  # torch.hub convention: the file name carries its SHA-256 prefix
_CACHED_NAME = "weights-inception-2015-12-05-6726825d.safetensors"


def inception_weights(path: str | Path | None = None) -> Path:
    """A safetensors file of the FID Inception weights: given, converted, cached or downloaded."""
    folder = cache_dir() / "inception"
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise GanaugError(f"Inception weights {str(p)!r} do not exist.")
        if p.suffix == ".safetensors":
            return p
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        return convert_to_safetensors(p, folder / f"converted-{digest}.safetensors")
    url = os.environ.get("GANAUG_INCEPTION_URL", INCEPTION_URL)
    how = (f"download {url} on a machine with internet and pass it with --inception-weights PATH "
           "(the .pth is read without unpickling), or use --features reference")
    return download_as_safetensors(url, folder / _CACHED_NAME, what="the Inception FID weights", how=how,
                                   hash_prefix=_HASH_PREFIX)


class InceptionFeatures(FeatureSpace):
    name = "inception"

    def __init__(self, weights_path: Path, device: str | torch.device = "cpu", batch_size: int = 64):
        from torch_fidelity import feature_extractor_inceptionv3 as tfi

        try:
            state = load_file(str(weights_path))
        except (SafetensorError, OSError) as e:
            raise GanaugError(f"Inception weights {str(weights_path)!r} are corrupt ({e}); delete "
                              "the file and try again.") from e
        # torch-fidelity builds the network and loads weights in one constructor; hand it our
        # safetensors state dict instead of letting it download and unpickle its own file.
        with mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: state):
            try:
                self.model = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"])
            except RuntimeError as e:
                raise GanaugError(f"{str(weights_path)!r} are not Inception-v3 FID weights: {e}") from e
        self.model.to(device)
        self.device, self.batch_size, self.weights_path = torch.device(device), batch_size, weights_path

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu") -> "InceptionFeatures":
        return cls(inception_weights(path), device)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise GanaugError("Inception features take uint8 (N, 1 or 3, H, W) images.")
        feats, logits = [], []
        for xb in images.split(self.batch_size):
            xb = xb.repeat(1, 3, 1, 1) if xb.shape[1] == 1 else xb
            f, lg = self.model(xb.to(self.device))
            feats.append(f.float().cpu())
            logits.append(lg.float().cpu())
        return torch.cat(feats), torch.cat(logits)

    def describe(self) -> dict:
        return {"name": self.name, "dim": 2048, "weights": INCEPTION_URL,
                "input": "uint8, grey repeated to RGB, resized to 299x299 inside the network "
                         "(torch-fidelity TF1-compatible bilinear), float32"}
