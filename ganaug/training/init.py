"""Starting a run from a trained generator: ``train(init=SOURCE)``, ``ganaug train DATA --init SOURCE``.

StyleGAN2-ADA (Karras et al. 2020) resumes a pretrained network on a small dataset: transfer
lowers FID and converges far sooner than a run from scratch. FreezeD (Mo et al. 2020) keeps the
discriminator's lower blocks fixed while fine-tuning (``TrainConfig.freeze_d``).

SOURCE is a generator package (a folder or ``hf-hub:org/name@rev``) or a training run folder. Its
generator (the EMA weights) starts both G and G's EMA; its discriminator starts D when it carries
one (a package exported with ``--with-discriminator``, or a run folder), else D starts from
scratch and the record says so. The architecture and image size must be the source's; the data's
classes and channels may differ:

- classes are matched by name; a class the source never drew gets the class parameters (its
  one-hot gain/bias columns, its embedding rows) of a source class: the one named in
  ``init_classes`` ({"new class": "source class"}, ``"mean"`` for the mean of the source's classes,
  ``"spread"`` for that mean plus a seeded offset as large as the source's classes differ), else a
  source class of its own, in order, from those the data does not hold, and "spread" once those run
  out (the data holds every source class, or there are more new classes than free source classes).
  Distinct starts matter: on Fashion-MNIST's five new classes (docs/bench/fmnist-new), all five
  started from the same mean were still at chance after 300 fine-tuning steps (class fidelity
  0.21), while five distinct source classes, even unrelated ones (a Shirt from the Trousers), gave
  0.94 in the same 300 steps (pairs chosen by shape: 0.95). With all ten classes in the data and a
  source of five, 300 steps gave class fidelity 0.38 started from the mean (the five new classes
  0.12), 0.39 each from a held class (the new class and the held one then start alike), 0.81 spread
  (the new classes 0.71);
- grey <-> RGB is adapted at the image's two ends: G's last convolution (grey repeated into three
  channels, or RGB averaged) and D's first block (the weights a grey image sees split over three
  channels, or summed).

The returned record (source, weights digest, class mapping, what D started from) goes into
run_config.json and the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..artifacts import WEIGHTS_NAME, is_hub_source, resolve, weights_digest
from ..errors import GanaugError
from ..models import GANConfig, build_discriminator
from ..models.layers import ConditionalBatchNorm2d
from .checkpoint import CHECKPOINT_NAME, load_checkpoint

# the layers that touch the image: where grey <-> RGB is adapted (G's output, D's input)
_G_IMAGE_SIDE, _D_IMAGE_SIDE = "body.out_conv.", "blocks.0."
_FREE_FIELDS = ("num_classes", "class_names", "channels")  # what a fine-tune may change


def load_source(source: str | Path, revision: str | None = None):
    """(the source's :class:`~ganaug.Generator`, its discriminator or None)."""
    from ..hub import load_generator
    from ..hub.package import load_package_discriminator

    try:
        gen = load_generator(source, revision=revision)
    except GanaugError as e:
        raise GanaugError(f"--init {str(source)!r} is not a generator to start from: {e}") from None
    path = None if is_hub_source(source) else Path(source).expanduser()
    if path is not None and (path / CHECKPOINT_NAME).is_file() and not (path / WEIGHTS_NAME).is_file():
        D = build_discriminator(gen.config)
        D.load_state_dict(load_checkpoint(path / CHECKPOINT_NAME)["D"], strict=True)
        return gen, D
    return gen, load_package_discriminator(resolve(source, revision))


def config_for_data(source: GANConfig, class_names: list[str], channels: int) -> GANConfig:
    """The source's model config with the data's classes and channels: what ``ganaug train --init`` trains."""
    import dataclasses

    return dataclasses.replace(source, num_classes=len(class_names), class_names=list(class_names),
                               channels=channels).validate()


def check_compatible(source: GANConfig, target: GANConfig, where: str) -> None:
    if source.image_size != target.image_size:
        raise GanaugError(f"{where} makes {source.image_size}px images and this run {target.image_size}px; a GAN's "
                          f"layers are tied to its resolution: train at --image-size {source.image_size} (images are "
                          "resized when loaded), or train from scratch.")
    src, tgt = source.to_dict(), target.to_dict()
    diff = [f"{k} {src.get(k)!r} -> {tgt.get(k)!r}" for k in sorted(set(src) | set(tgt))
            if k not in _FREE_FIELDS and src.get(k) != tgt.get(k)]
    if diff:
        raise GanaugError(f"{where} is not the architecture this run builds ({'; '.join(diff)}); a fine-tune keeps "
                          "the source's architecture (leave out --arch, --g-width, --d-width, --z-dim, "
                          "--attn-resolution and --g-upsample with --init).")


def parse_init_classes(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["NEW=SOURCE_CLASS", ...]`` (the command line's ``--init-class``) -> {new class: source class}."""
    out = {}
    for pair in pairs:
        new, sep, old = pair.partition("=")
        if not sep or not new or not old:
            raise GanaugError(f"--init-class {pair!r} is not NEW=SOURCE_CLASS (a class of the data, a class of the "
                              "source).")
        out[new] = old
    return out


MEAN = "mean"  # an init_classes value: start a new class from the mean of the source's classes
# an init_classes value: the mean plus a seeded offset as large as the source's classes differ (per element),
# so that a new class starts apart from every other class even when the data holds every source class
SPREAD = "spread"
_STARTS = {MEAN: -1, SPREAD: -2}  # the index _gather reads for each


def new_class_starts(source_classes: list[str], classes: list[str], init_classes: dict[str, str]) -> dict[str, str]:
    """{new class: the source class it starts from, ``"mean"`` or ``"spread"``} for the data's classes
    the source never drew: as ``init_classes`` names them, else the source classes the data does not
    hold (and no new class was given), in order, then ``"spread"``, so that no two classes start
    alike (see the module docstring)."""
    bad = {new: old for new, old in init_classes.items()
           if new not in classes or new in source_classes or (old not in source_classes and old not in _STARTS)}
    if bad:
        raise GanaugError(f"--init-class {bad}: each must name a class of the data that the source does not know "
                          f"and a class of the source ({source_classes}), {MEAN!r} or {SPREAD!r}.")
    unnamed = [n for n in classes if n not in source_classes and n not in init_classes]
    # a source class the data holds already starts its own class (or a named new one): a new class started
    # there would start alike with it
    free = [c for c in source_classes if c not in classes and c not in init_classes.values()]
    starts = {n: free[i] if i < len(free) else SPREAD for i, n in enumerate(unnamed)}
    return {n: init_classes.get(n) or starts[n] for n in classes if n not in source_classes}


def init_models(source: str | Path, model_config: GANConfig, G: nn.Module, G_ema: nn.Module, D: nn.Module,
                init_classes: dict[str, str] | None = None, log=print) -> dict:
    """Load SOURCE's weights into the freshly built ``G``, ``G_ema`` and ``D`` of ``model_config``
    (see the module docstring); returns the record of what was done."""
    gen, src_d = load_source(source)
    src_cfg, where = gen.config, f"the source {str(source)!r}"
    check_compatible(src_cfg, model_config, where)
    src_names, names = list(src_cfg.class_names), list(model_config.class_names)
    new = new_class_starts(src_names, names, init_classes or {})
    # per target class: the source class it copies (an index), -1 for the mean of the source's classes, -2 spread
    index = torch.tensor([src_names.index(n) if n in src_names else
                          (_STARTS[new[n]] if new[n] in _STARTS else src_names.index(new[n])) for n in names])

    k = model_config.num_classes
    g_state = _adapt(gen.net.state_dict(), G, _class_axes(G, k, _one_hot(G)), index,
                     src_cfg.channels, model_config.channels, _G_IMAGE_SIDE, image_input=False, where=where)
    G.load_state_dict(g_state)
    G_ema.load_state_dict(g_state)
    d_from = "from scratch (the source carries no discriminator)"
    if src_d is not None:
        D.load_state_dict(_adapt(src_d.state_dict(), D, _class_axes(D, k, False), index,
                                 src_cfg.channels, model_config.channels, _D_IMAGE_SIDE, image_input=True,
                                 where=where))
        d_from = "the source's"
    _settle_spectral_norm(D, model_config)
    matched = [n for n in names if n in src_names]
    log(f"initialised from {source}: G from its generator, D {d_from}; classes matched by name: "
        f"{matched or 'none'}" + (f"; new classes (from): {new}" if new else "")
        + (f"; channels {src_cfg.channels} -> {model_config.channels}" if src_cfg.channels != model_config.channels
           else ""))
    if not matched:
        log("no class of the data matches a class of the source: every class is new, started as listed")
    starts = list(new.values())
    alike = sorted({n for n, c in new.items() if c != SPREAD and starts.count(c) > 1})
    if alike:
        log(f"new classes {alike} start alike and separate slowly; give each its own source class with --init-class "
            "NEW=SOURCE_CLASS")
    return {"source": str(source), "weights_sha256": weights_digest(gen.net), "source_classes": src_names,
            "classes": {n: (src_names[int(i)] if n in src_names else None) for n, i in zip(names, index)},
            "new_classes": new, "discriminator": "source" if src_d is not None else "scratch",
            "channels": [src_cfg.channels, model_config.channels]}


def freeze_discriminator(D: nn.Module, blocks: int) -> list[nn.Parameter]:
    """FreezeD: fix D's first ``blocks`` blocks; returns the parameters that still train."""
    if blocks > len(D.blocks) - 1:
        raise GanaugError(f"freeze_d {blocks} would freeze every block of D ({len(D.blocks)}); FreezeD fixes the "
                          f"lower blocks only: use at most {len(D.blocks) - 1}.")
    for block in list(D.blocks)[:blocks]:
        block.requires_grad_(False)
    return [p for p in D.parameters() if p.requires_grad]


# -- the weights ---------------------------------------------------------------------------------

def _one_hot(G: nn.Module) -> bool:
    """Whether G's conditional BN reads a one-hot class vector (its gain/bias tables have a class axis)."""
    return bool(getattr(G, "one_hot_condition", False))


def _class_axes(model: nn.Module, k: int, one_hot: bool) -> dict[str, int]:
    """State-dict keys with a class axis, and which axis: class embeddings (axis 0) and, for a
    one-hot condition, the conditional BN's gain/bias tables (axis 1). A spectral-norm vector is
    listed when it runs along the class axis."""
    axes: dict[str, int] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Embedding) and m.num_embeddings == k:
            layers = [(name, m, 0)]
        elif one_hot and isinstance(m, ConditionalBatchNorm2d):
            layers = [(f"{name}.gain", m.gain, 1), (f"{name}.bias", m.bias, 1)]
        else:
            continue
        for prefix, layer, axis in layers:
            for key in layer.state_dict():
                if key.endswith(("weight", "original")):
                    axes[f"{prefix}.{key}"] = axis
                elif (key.endswith("_u") and axis == 0) or (key.endswith("_v") and axis == 1):
                    axes[f"{prefix}.{key}"] = 0  # u runs along the weight's rows, v along its columns
    return axes


def _adapt(state: dict[str, torch.Tensor], model: nn.Module, class_axes: dict[str, int], index: torch.Tensor,
           c_src: int, c_tgt: int, image_side: str, image_input: bool, where: str) -> dict[str, torch.Tensor]:
    """The source's ``state`` reshaped for ``model``: class axes gathered by ``index`` (-1: the mean
    over the source's classes, -2: the mean spread apart, :func:`_gather`), grey <-> RGB adapted on the
    image side; anything else must match."""
    target = model.state_dict()
    out = {}
    for key, t in target.items():
        if key not in state:
            raise GanaugError(f"{where} has no tensor {key!r}; it was made by a ganaug whose layers differ. "
                              "Export it again with this version, or train from scratch.")
        s = state[key].to(t.dtype)
        if key in class_axes:
            s = _gather(s, class_axes[key], index, spread=key.endswith(("weight", "original")))
        if s.shape != t.shape and key.startswith(image_side) and c_src != c_tgt:
            # a spectral-norm vector over (channels x kernel) has no clean channel axis: the run's own
            # starts, and power iterations settle it (_settle_spectral_norm)
            s = t.clone() if key.endswith(("_u", "_v")) else _channels(s, t.shape, c_src, c_tgt, image_input)
        if s.shape != t.shape:
            raise GanaugError(f"tensor {key!r} of {where} has shape {tuple(s.shape)} where this run needs "
                              f"{tuple(t.shape)}; the source does not fit this model.")
        if key.endswith(("_u", "_v")):  # spectral-norm vectors are unit vectors
            s = torch.nn.functional.normalize(s, dim=0, eps=1e-12)
        out[key] = s
    return out


def _gather(s: torch.Tensor, axis: int, index: torch.Tensor, spread: bool) -> torch.Tensor:
    """Slices of ``s`` along its class axis: a source class (``i >= 0``), the mean (-1), or the mean plus
    normal noise with each element's standard deviation over the source's classes (-2; seeded by the
    target class's position, so a run starts the same every time, and the same draw for tensors of one
    shape, such as a BN's gain and bias tables; only on weights: spectral-norm vectors stay the mean's
    and are settled by power iterations)."""
    mean = s.mean(axis, keepdim=True)
    spread_by = s.std(axis, keepdim=True, correction=0) if spread else torch.zeros_like(mean)
    rows = []
    for position, i in enumerate(index.tolist()):
        if i >= 0:
            rows.append(s.narrow(axis, i, 1))
        else:
            noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(position), dtype=mean.dtype)
            rows.append(mean + spread_by * noise if i == _STARTS[SPREAD] else mean)
    return torch.cat(rows, axis)


def _channels(s: torch.Tensor, shape: torch.Size, c_src: int, c_tgt: int, image_input: bool) -> torch.Tensor:
    """Grey <-> RGB on the one axis where ``s`` and ``shape`` differ by the channel counts."""
    axes = [a for a in range(s.dim()) if s.shape[a] != shape[a]]
    if len(axes) != 1 or (s.shape[axes[0]], shape[axes[0]]) != (c_src, c_tgt):
        return s  # not a channel axis: the shape check reports it
    a = axes[0]
    # D reads the image on axis 1 of a dense convolution: a grey image copied into three channels
    # must give the same response, so the weights split three ways (or, RGB -> grey, add up)
    split = image_input and a == 1
    if c_tgt > c_src:
        return s.repeat_interleave(c_tgt, a) / (c_tgt if split else 1)
    return s.sum(a, keepdim=True) if split else s.mean(a, keepdim=True)


@torch.no_grad()
def _settle_spectral_norm(D: nn.Module, config: GANConfig, iterations: int = 30) -> None:
    """Power iterations on D's spectral-norm vectors, so that those gathered or reshaped above are
    again the singular vectors of their (adapted) weights before the first step."""
    was = D.training
    D.train()
    x = torch.zeros(2, config.channels, config.image_size, config.image_size, device=next(D.parameters()).device)
    y = torch.zeros(2, dtype=torch.int64, device=x.device)
    for _ in range(iterations):
        D(x, y)
    D.train(was)
