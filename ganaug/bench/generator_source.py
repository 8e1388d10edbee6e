"""The benchmark's generator: trained on the training part, from scratch or fine-tuned from a
source (``bench-downstream --generator-init SOURCE``), and what that source saw.

A fine-tuned generator carries its source's data into the comparison. A source that saw the test
split is refused (its knowledge of the test images would flatter the recipe); one that saw the
split the long-tailed training part was cut from (the rare classes' left-out images among them)
makes the recipe's row a leaky upper bound, which needs ``--leaky-generator``; under a transfer
protocol (``ganaug/bench/protocols.py``) a source of the public part is disjoint from the training
part by construction.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from ..data.dataset import LabelledImages
from ..errors import GanaugError


def _identity(source: str | None) -> tuple[str, str] | None:
    """(real path, split) of a data source string, without the part/long-tail suffixes ganaug adds."""
    if not source:
        return None
    base = source.split(" (")[0].split(" long-tailed")[0]
    path, sep, split = base.rpartition(":") if ":" in base and not os.path.exists(base) else (base, "", "")
    return os.path.realpath(path), split


def same_data(seen: dict, data: LabelledImages) -> bool:
    """Whether a generator's recorded training data (its fingerprint) is ``data``."""
    return bool(seen) and all(seen.get(f) == v for f, v in data.fingerprint().items())


def source_data(seen: dict, train_full: LabelledImages, test: LabelledImages,
                public: LabelledImages | None = None) -> dict:
    """What the source generator saw and whether it overlaps the test split or the training split
    (a source of the protocol's ``public`` part does not)."""
    src, tst = _identity(seen.get("source")), _identity(test.source)
    carved = "stratified test part" in (test.source or "")
    is_public = public is not None and same_data(seen, public)
    same_counts = seen.get("class_counts") == train_full.class_counts() and seen.get("num_images") == len(train_full)
    return {"source": seen.get("source"), "num_images": seen.get("num_images"), "class_counts": seen.get("class_counts"),
            "class_names": seen.get("class_names"),
            # a test part carved from a folder overlaps anything trained on that whole folder
            "overlaps_test": src is not None and (src == tst if not carved else src[0] == tst[0] and not src[1]),
            "overlaps_training": not is_public and (same_counts or (src is not None and src == _identity(
                train_full.source))),
            "public_part": is_public}


def provenance(gen, lt_train: LabelledImages, public: LabelledImages | None, init_source: dict | None,
               leaky_ok: bool) -> tuple[bool | str | None, bool]:
    """(whether ``gen`` was trained on exactly the training part, or "public part" for the protocol's
    public generator; whether its row is a leaky upper bound). A generator, or a fine-tune's source,
    that saw the split the training part was cut from is refused unless ``leaky_ok``."""
    seen = (gen.metadata.get("training") or {}).get("data") or {}
    trained_on = same_data(seen, lt_train) if seen else None
    if trained_on is False and public is not None and same_data(seen, public):
        trained_on = "public part"  # the protocol's public generator as it is: disjoint from the private part
    if trained_on is False and not leaky_ok:
        raise GanaugError(f"the generator was trained on {seen.get('num_images')} images with class counts "
                          f"{seen.get('class_counts')}, not on this training part ({lt_train.class_counts()}); a "
                          "generator that saw more data would leak it into the comparison. Train one on this part "
                          "(leave out --generator), or pass --leaky-generator to measure it as an upper bound that "
                          "is labelled so and never recommended.")
    overlaps = bool(init_source and init_source["overlaps_training"])
    if overlaps and not leaky_ok:
        raise GanaugError(f"the --generator-init source saw {init_source['source']!r} ({init_source['num_images']} "
                          "images), the split this training part was cut from: the rare classes' left-out images "
                          "would leak into the comparison. Fine-tune from a generator trained on other data, or "
                          "pass --leaky-generator to measure it as an upper bound.")
    return trained_on, trained_on is False or overlaps


def train_public_generator(public: LabelledImages, cfg, out: Path, device: torch.device, progress: bool) -> Path:
    """The protocol's public generator: an SNGAN trained on the public part from scratch (the "Hub"
    generator of the protocol), ``cfg.public_generator_steps`` steps; continued if it is there."""
    import ganaug

    mc = ganaug.make_config("sngan", public.num_classes, public.class_names, image_size=public.image_size,
                            channels=public.channels)
    tc = ganaug.TrainConfig(steps=cfg.public_generator_steps or cfg.generator_steps, device=str(device),
                            precision=cfg.generator_precision)
    return ganaug.train(public, mc, tc, out, resume=True, progress=progress)


def train_generator(lt_train: LabelledImages, cfg, out: Path, device: torch.device, progress: bool,
                    train_full: LabelledImages, test: LabelledImages,
                    guide: Callable[[], torch.nn.Module] | None, init: str | None = None,
                    public: LabelledImages | None = None) -> tuple[Path, dict | None]:
    """The benchmark's generator run in ``out`` (continued if it is there), fine-tuned from ``init``
    when given, and then what its source saw (:func:`source_data`)."""
    import ganaug
    from ..training.checkpoint import CHECKPOINT_NAME
    from ..training.init import config_for_data, load_source, new_class_starts
    from ..training.rundir import RUN_CONFIG

    every = cfg.generator_steps // cfg.generator_snapshots if cfg.generator_snapshots else 0
    tc = ganaug.TrainConfig(steps=cfg.generator_steps, snapshot_every=every, device=str(device),
                            precision=cfg.generator_precision, guide_weight=cfg.generator_guide,
                            guide_loss=cfg.generator_guide_loss, freeze_d=cfg.generator_freeze_d)
    info = None
    if init:
        src, _ = load_source(init)
        info = source_data((src.metadata.get("training") or {}).get("data") or {}, train_full, test, public)
        if info["overlaps_test"]:
            raise GanaugError(f"the --generator-init source {init!r} was trained on {info['source']!r}, "
                              f"which holds this benchmark's test images ({test.source}); fine-tune from a generator "
                              "that never saw them.")
        mc = config_for_data(src.config, lt_train.class_names, lt_train.channels)
    else:
        mc = ganaug.make_config("sngan", lt_train.num_classes, lt_train.class_names, image_size=lt_train.image_size,
                                channels=lt_train.channels)
    started = (out / CHECKPOINT_NAME).is_file()
    if started and init:  # a killed benchmark continues its fine-tune, from the same source only
        import json

        recorded = json.loads((out / RUN_CONFIG).read_text()).get("init") or {}
        starts = new_class_starts(list(src.config.class_names), lt_train.class_names, cfg.generator_init_classes)
        if recorded.get("source") != str(init) or (recorded.get("new_classes") or {}) != starts:
            raise GanaugError(f"{str(out)!r} holds a generator run started from {recorded.get('source') or 'scratch'}"
                              f" (new classes from {recorded.get('new_classes')}), not from {init!r} (new classes "
                              f"from {starts}); use another --out folder, or name the recorded starts with "
                              "--generator-init-class.")
    run = ganaug.train(lt_train, mc, tc, out, resume=started, progress=progress, guide=guide() if guide else None,
                       init=None if started else init, init_classes=cfg.generator_init_classes)
    return run, info
