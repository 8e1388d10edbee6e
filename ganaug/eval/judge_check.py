"""Can this reference classifier judge? Its balanced accuracy on real test images, against chance.

Class fidelity is the judge's verdict on generated images, and FID, precision/recall and the
memorisation flags are distances in its feature space. A judge that calls every image the
largest class (on imbalanced data, a plain loss and a few steps get there) still yields numbers,
and they look good: fidelity 1.00 for the class it always names, an FID between two sets it
maps to the same point. So the evaluation measures the judge first and refuses those figures when
its balanced accuracy is near chance.
"""

from __future__ import annotations

import torch
from torch import nn

from .classifier import predict

# a judge must recover at least this share of the way from chance (1 / classes) to perfect
JUDGE_MIN_LIFT = 0.25


def judge_quality(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """Balanced accuracy of ``model`` on real labelled ``images`` (uint8), per-class recall, chance,
    the floor below which it cannot judge, and ``degenerate`` (below that floor)."""
    pred = predict(model, images)[1].argmax(1)
    present = [c for c in range(num_classes) if bool((labels == c).any())]
    recall = {c: float((pred[labels == c] == c).float().mean()) for c in present}
    balanced = sum(recall.values()) / max(1, len(recall))
    chance = 1.0 / num_classes
    floor = chance + JUDGE_MIN_LIFT * (1 - chance)
    return {"balanced_accuracy": round(balanced, 5), "chance": round(chance, 5), "floor": round(floor, 5),
            "per_class_recall": [round(recall[c], 5) if c in recall else None for c in range(num_classes)],
            "predicted_classes": sorted(set(pred.tolist())), "degenerate": balanced < floor}


def refusal(quality: dict, class_names: list[str]) -> str:
    """The sentence a report prints instead of the figures of a degenerate judge."""
    named = [class_names[c] for c in quality["predicted_classes"]]
    return (f"The reference classifier cannot judge: its balanced accuracy on the real test images is "
            f"{quality['balanced_accuracy']:.3f}, near chance ({quality['chance']:.3f}; below the floor "
            f"{quality['floor']:.3f}); it predicts only {', '.join(named)}. Class fidelity, FID, KID, IS, "
            "precision/recall and the memorisation flags are computed with it, so they are not reported. "
            "CAS does not use it and stands. What to do: train the judge longer or with a balanced loss "
            "(`ganaug reference-classifier DATA --balanced --min-steps 1500`), train it on more data of the "
            "same kind, or pass a judge trained elsewhere with --reference.")


def refuse_figures(overall: dict, per_class: list[dict], memorisation: dict, *, in_judge_space: bool) -> dict:
    """Blank (None) what a degenerate judge computed, in place: class fidelity always; FID, KID, IS,
    precision/recall, density/coverage and memorisation too when the features are its own.
    Returns the memorisation result, its flags refused when they were made in its space."""
    refused = ["class_fidelity"] + (["fid", "kid", "kid_std", "is", "is_std", "precision", "recall", "density",
                                     "coverage"] if in_judge_space else [])
    overall.update({f: None for f in refused})
    for row in per_class:
        row.update({f: None for f in refused if f in row})
        if in_judge_space:
            row["memorisation"] = None
    if not in_judge_space:
        return memorisation
    return {**memorisation, "flagged_classes_refused": True, "per_class": [None] * len(per_class)}
