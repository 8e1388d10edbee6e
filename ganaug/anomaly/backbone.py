"""Feature extractors for the memory-bank detectors (kNN, PatchCore).

A backbone is named by a string, as on the command line:

- ``torchvision:NAME[@WEIGHTS]``: any torchvision classification model (``resnet18``,
  ``wide_resnet50_2``, ...) with its published weights (default: the model's ``DEFAULT``). The
  weights come from the torchvision weights API's URL, are read without unpickling and cached as
  safetensors, or come from a local ``.safetensors`` (or ``.pth``) file. They are *not* copied
  into the detector package: the package records the name and a digest of the weights, and
  loading refuses weights with another digest or says what to fetch when they are missing.
- ``reference:FOLDER`` (or ``hf-hub:org/name``): a ganaug reference classifier. It is small, so its
  weights travel inside the detector package.
- ``pixels``: the image itself, scaled to [0, 1] (kNN only).

Features are read at named nodes (``torchvision.models.feature_extraction`` names, e.g.
``layer2``); images enter at ``input_size`` with the backbone's normalisation, grey repeated to
RGB where the backbone wants three channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..artifacts import is_hub_source, load_strict, weights_digest
from ..configs import JsonConfig
from ..errors import GanaugError

BACKBONE_KINDS = ("torchvision", "reference", "pixels")
# nodes read when none are named: PatchCore's mid-level pair for ResNets, the pooled vector for kNN;
# for a ganaug reference classifier (SmallCNN) the second pooling (1/4 resolution) and the pooled vector
DEFAULT_LAYERS = {
    ("torchvision", "patchcore"): ("layer2", "layer3"), ("torchvision", "knn"): ("avgpool",),
    ("reference", "patchcore"): ("body.13",), ("reference", "knn"): ("body.19",),
}


@dataclass
class BackboneConfig(JsonConfig):
    """What a detector's features are read from; recorded in its package."""

    json_name = "backbone config"

    kind: Literal["torchvision", "reference", "pixels"] = "pixels"
    name: str = ""  # torchvision architecture, or the reference classifier's source as given
    weights: str | None = None  # torchvision weights member ("IMAGENET1K_V1"); the file's URL is in ``url``
    url: str | None = None
    layers: tuple[str, ...] = ()
    input_size: int | None = None  # images are resized to this before the backbone (None: as fitted)
    in_channels: int = 3
    mean: tuple[float, ...] = (0.5,)  # normalisation of [0, 1] inputs
    std: tuple[float, ...] = (0.5,)
    digest: str = ""  # sha256 of the weights (weights_digest), checked when a detector is loaded
    reference: dict | None = None  # a reference classifier's config.json (kind "reference")

    def validate(self) -> "BackboneConfig":
        if self.kind != "pixels" and not self.layers:
            raise GanaugError(f"a {self.kind} backbone needs at least one feature layer.")
        return self

    def describe(self) -> str:
        if self.kind == "pixels":
            return "pixels"
        what = (f"torchvision {self.name} ({self.weights or 'weights from a local file'})"
                if self.kind == "torchvision" else f"ganaug reference classifier {self.name}")
        return f"{what}, layers {', '.join(self.layers)}"


class Backbone(nn.Module):
    """Images in [-1, 1] -> features at ``config.layers``: pooled (N, D) or patches (N, h, w, D)."""

    def __init__(self, config: BackboneConfig, net: nn.Module | None):
        super().__init__()
        self.config = config.validate()
        self.net = net
        if net is not None:
            from torchvision.models.feature_extraction import create_feature_extractor

            net.eval()
            try:
                self.extractor = create_feature_extractor(net, return_nodes=list(config.layers))
            except (ValueError, RuntimeError) as e:
                from torchvision.models.feature_extraction import get_graph_node_names

                names = get_graph_node_names(net)[1]
                raise GanaugError(f"the backbone has no layer(s) {list(config.layers)}; it has e.g. "
                                  f"{names[1:40]}{'...' if len(names) > 40 else ''}.") from e
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        x = (x + 1) / 2  # [0, 1]
        if x.shape[1] != c.in_channels:
            if x.shape[1] == 1:
                x = x.expand(-1, c.in_channels, -1, -1)
            else:
                raise GanaugError(f"the backbone takes {c.in_channels}-channel images, these have {x.shape[1]}.")
        if c.input_size is not None and x.shape[-1] != c.input_size:
            x = F.interpolate(x, size=(c.input_size, c.input_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > c.input_size)
        return (x - self.mean) / self.std

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.extractor(self._inputs(x)).values())

    @torch.no_grad()
    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D): each layer averaged over space, concatenated (pixels: the flattened image)."""
        if self.config.kind == "pixels":
            return ((x + 1) / 2).flatten(1)
        return torch.cat([m.flatten(1) if m.dim() == 2 else m.mean((2, 3)) for m in self._maps(x)], 1)

    @torch.no_grad()
    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(N, h, w, D) locally aware patch features (PatchCore): each layer averaged over 3x3
        neighbourhoods, deeper layers upsampled to the first one's resolution, concatenated."""
        if self.config.kind == "pixels":
            raise GanaugError("patch features need a CNN backbone; pixels work with --method knn only.")
        maps = self._maps(x)
        if any(m.dim() != 4 for m in maps):
            raise GanaugError(f"patch features need spatial layers; {list(self.config.layers)} include a pooled one.")
        size = maps[0].shape[-2:]
        maps = [F.interpolate(F.avg_pool2d(m, 3, 1, 1), size=size, mode="bilinear", align_corners=False)
                for m in maps]
        return torch.cat(maps, 1).permute(0, 2, 3, 1)


def parse_backbone(spec: str) -> tuple[str, str, str | None]:
    """``(kind, name, weights)`` from ``torchvision:NAME[@WEIGHTS]``, ``reference:SOURCE``,
    ``hf-hub:...`` or a folder (both reference classifiers), or ``pixels``."""
    if spec == "pixels":
        return "pixels", "", None
    if spec.startswith("torchvision:"):
        name, _, weights = spec.removeprefix("torchvision:").partition("@")
        return "torchvision", name, weights or None
    if spec.startswith("reference:") or is_hub_source(spec) or Path(spec).is_dir():
        return "reference", spec.removeprefix("reference:"), None
    raise GanaugError(f"unknown backbone {spec!r}: use torchvision:NAME[@WEIGHTS] (e.g. torchvision:resnet18), "
                      "reference:FOLDER (a ganaug reference classifier) or pixels.")


def build_backbone(spec: str, method: str, *, layers: tuple[str, ...] = (), weights_file: str | Path | None = None,
                   input_size: int | None = None) -> Backbone:
    """A backbone for fitting a detector, its config complete (digest, normalisation, layers)."""
    kind, name, weights = parse_backbone(spec)
    if kind == "pixels":
        if layers:
            raise GanaugError("the pixels backbone has no layers to choose.")
        return Backbone(BackboneConfig(kind="pixels"), None)
    layers = tuple(layers) or DEFAULT_LAYERS.get((kind, method), ())
    if kind == "reference":
        from ..eval.reference import ReferenceClassifier
        from ..artifacts import resolve

        ref = ReferenceClassifier.load(resolve(name))
        net, cfg = ref.model, BackboneConfig(kind="reference", name=name, layers=layers, input_size=input_size,
                                             in_channels=ref.config.channels, reference=ref.config.to_dict())
    else:
        net, cfg = _torchvision_net(name, weights, weights_file, layers, input_size)
    cfg.digest = weights_digest(net)
    return Backbone(cfg, net)


def _torchvision_net(name: str, weights: str | None, weights_file: str | Path | None, layers: tuple[str, ...],
                     input_size: int | None) -> tuple[nn.Module, BackboneConfig]:
    import torchvision

    try:
        net = torchvision.models.get_model(name, weights=None)
        enum = torchvision.models.get_model_weights(name)
    except ValueError as e:
        raise GanaugError(f"torchvision has no classification model {name!r} ({e}).") from e
    try:
        member = enum[weights] if weights else enum.DEFAULT
    except KeyError as e:
        raise GanaugError(f"torchvision's {name} has no weights {weights!r}; it has {[w.name for w in enum]}.") from e
    t = member.transforms()
    cfg = BackboneConfig(kind="torchvision", name=name, weights=None if weights_file else member.name,
                         url=None if weights_file else member.url, layers=layers,
                         input_size=input_size or int(t.crop_size[0]), in_channels=3,
                         mean=tuple(t.mean), std=tuple(t.std))
    load_strict(net, _torchvision_state(cfg, weights_file), f"the {name} weights")
    return net, cfg


def _torchvision_state(cfg: BackboneConfig, weights_file: str | Path | None) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..eval.reference import cache_dir
    from ..eval.torch_pth import download_as_safetensors, read_state_dict

    if weights_file is not None:
        p = Path(weights_file).expanduser()
        if not p.is_file():
            raise GanaugError(f"backbone weights {str(p)!r} do not exist.")
        if p.suffix != ".safetensors":
            return read_state_dict(p)  # a .pth, read without unpickling
        try:
            return load_file(str(p))
        except (SafetensorError, OSError) as e:
            raise GanaugError(f"backbone weights {str(p)!r} are corrupt ({e}).") from e
    file = cfg.url.rsplit("/", 1)[-1]
    stem = file.rsplit(".", 1)[0]
    prefix = stem.rsplit("-", 1)[-1] if "-" in stem else None  # torch.hub names end in a SHA-256 prefix
    how = (f"download {cfg.url} on a machine with internet and pass it with --backbone-weights PATH (read "
           "without unpickling; a .safetensors file works too)")
    out = download_as_safetensors(cfg.url, cache_dir() / "torchvision" / f"{stem}.safetensors",
                                  what=f"the {cfg.name} {cfg.weights} weights", how=how, hash_prefix=prefix)
    return load_file(str(out))


def load_backbone(config: BackboneConfig, state: dict[str, torch.Tensor], *,
                  weights_file: str | Path | None = None, where: str = "the detector's weights") -> Backbone:
    """The backbone a saved detector was fitted with: a reference classifier from the package's own
    tensors (``state``, named ``backbone.*`` as in the package), a torchvision model from its cache,
    download or ``weights_file``; refused when its weights' digest is not the recorded one."""
    if config.kind == "pixels":
        return Backbone(config, None)
    if config.kind == "reference":
        from ..eval.classifier import SmallCNN

        ref = config.reference or {}
        try:
            net = SmallCNN(int(ref["channels"]), len(ref["class_names"]), int(ref["width"]))
        except (KeyError, TypeError, ValueError) as e:
            raise GanaugError(f"the detector's backbone record is incomplete ({e}).") from e
        holder = nn.Module()
        holder.backbone = net  # so that messages name the tensors as the package does
        load_strict(holder, state, where)
    else:
        if config.weights is None and weights_file is None:
            raise GanaugError(f"this detector's {config.name} backbone came from a local weights file; pass that "
                              "file again (--backbone-weights PATH, or backbone_weights=PATH).")
        net, _ = _torchvision_net(config.name, config.weights, weights_file, config.layers, config.input_size)
    digest = weights_digest(net)
    if config.digest and digest != config.digest:
        raise GanaugError(f"the backbone weights given ({config.describe()}) have digest {digest[:12]}, but the detector was "
                          f"fitted with {config.digest[:12]}; its memory bank only means something in those "
                          "features. Use the weights it was fitted with, or fit the detector again.")
    return Backbone(config, net)
