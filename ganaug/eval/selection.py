"""Choosing which of a run's generator snapshots to use for a classifier.

The last step is not always the best generator for augmentation: on long-tailed data the rare
classes can collapse or drift late in training. A snapshot is scored on the real *validation*
images, in the feature space of a judge (a classifier trained on the real training data with a
balanced loss, never on test data), per class:

- fidelity: the share of its generated images the judge assigns to the class they were made for;
- diversity: recall (Kynkaanniemi et al. 2019), the share of the class's real validation images
  that fall inside the k-NN balls of its generated images.

The score is the mean over classes of sqrt(fidelity x recall), so a class that collapses (recall
0) or drifts into another class (fidelity 0) costs the same. Ties go to the later snapshot.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from ..data.dataset import LabelledImages
from ..errors import GanaugError
from ..pixels import uint8_to_model
from . import metrics as M

CHOICE = "choice.json"


@torch.no_grad()
def penultimate(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) of uint8 images: the input of the model's last ``nn.Linear`` and its output."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise GanaugError("the judge needs a last nn.Linear layer, whose input serves as its feature space.")
    feats: list[torch.Tensor] = []
    hook = heads[-1].register_forward_hook(lambda mod, inp, out: feats.append(inp[0].float().cpu()))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        logits = torch.cat([model(uint8_to_model(x).to(device)).float().cpu() for x in images.split(batch_size)])
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(feats), logits


def score_generator(generator, val: LabelledImages, judge: nn.Module, *, n_per_class: int = 100,
                    k: int = 3, seed: int = 0) -> dict:
    """Per-class fidelity and recall of ``generator`` (a :class:`~ganaug.Generator`) against the
    real validation images ``val``, and the overall score (see the module's notes)."""
    if val.class_names != generator.class_names:
        raise GanaugError(f"the validation images' classes {val.class_names} are not the generator's "
                          f"{generator.class_names}.")
    K = generator.num_classes
    labels = torch.arange(K).repeat_interleave(n_per_class)
    fake = generator.generate(labels, seed=seed)
    f_fake, l_fake = penultimate(judge, fake)
    f_val, _ = penultimate(judge, val.images)
    _, fidelity = M.class_fidelity(l_fake, labels, K)
    recall = []
    for c in range(K):
        real = f_val[val.labels == c]
        kc = min(k, len(real) - 1)
        recall.append(M.precision_recall(real, f_fake[labels == c], kc, seed)["recall"] if kc >= 1 else float("nan"))
    per = [math.sqrt(f * r) if r == r else f for f, r in zip(fidelity, recall)]  # no recall without 2 images
    return {"score": sum(per) / K, "fidelity": fidelity, "recall": recall,
            "val_counts": val.class_counts(), "n_per_class": n_per_class, "k": k}


def choose_snapshot(run_dir: str | Path, val: LabelledImages, judge: nn.Module, *, n_per_class: int = 100,
                    k: int = 3, seed: int = 0) -> dict:
    """Score every snapshot of a run and its last generator; write ``snapshots/choice.json`` and
    return it (``chosen_step`` is the step to pass to ``load_generator(run, step=...)``)."""
    from ..hub.loading import load_generator
    from ..training.rundir import SNAPSHOTS, list_snapshots

    run_dir = Path(run_dir)
    last = load_generator(run_dir)
    last_step = int(last.metadata["training"]["steps"])
    rows = []
    for step in [s for s in list_snapshots(run_dir) if s != last_step] + [last_step]:
        gen = last if step == last_step else load_generator(run_dir, step=step)
        rows.append({"step": step, **score_generator(gen, val, judge, n_per_class=n_per_class, k=k, seed=seed)})
    best = max(rows, key=lambda r: (r["score"], r["step"]))
    choice = {"chosen_step": best["step"], "last_step": last_step, "validation": val.source,
              "rule": "mean over classes of sqrt(fidelity x recall) on the real validation images, "
                      "in the judge's features", "candidates": rows}
    folder = run_dir / SNAPSHOTS
    folder.mkdir(exist_ok=True)
    (folder / CHOICE).write_text(json.dumps(choice, indent=2))
    return choice
