"""Choosing one candidate (the best baseline, the recipe) when validation may not separate them.

On a small validation part (a hundred images, three of the rarest class) several candidates can
score exactly the same, or differ by less than a few images' worth. The rule, in order:

1. **validation**: the candidate with the highest mean validation balanced accuracy wins when
   every other one is separated from it: the paired bootstrap interval of the difference, over
   validation images resampled within classes (:mod:`ganaug.bench.bootstrap`), lies above zero.
   Records made before they kept their validation hits separate only by unequal means.
2. **k-fold**: the candidates that validation cannot separate from the leader are compared by
   repeated stratified k-fold over the training and validation parts together (one classifier
   per fold, scored on its held-out fold; the caller trains them). The highest mean wins.
   Skipped on data too large for it (the caller says why): then the validation mean decides.
3. **draw**: candidates still exactly tied are drawn between, seeded by their names, so the
   outcome never depends on the order they were listed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch

from .bootstrap import LEVEL, paired_interval

RULES = ("validation", "k-fold", "validation mean (k-fold skipped)", "draw")


def _mean(runs: list[dict], key: str = "val_balanced_accuracy") -> float:
    return sum(r[key] for r in runs) / len(runs)


def seeded_draw(tied: list[str], salt: str = "") -> str:
    """One of ``tied``, the same for the same names in any order."""
    names = sorted(tied)
    h = int(hashlib.sha256((salt + "\n" + "\n".join(names)).encode()).hexdigest(), 16)
    return names[h % len(names)]


def contenders(candidates: dict[str, list[dict]], val_labels: torch.Tensor | None) -> tuple[list[str], dict]:
    """(the candidates validation cannot separate from the leader, leader first; each one's
    interval of leader minus it, in points, or None where the records hold no validation hits)."""
    means = {c: _mean(runs) for c, runs in candidates.items()}
    top = max(means.values())
    tied = sorted(c for c, m in means.items() if m == top)
    leader = tied[0]
    intervals: dict[str, tuple[float, float] | None] = {}
    close = list(tied)
    for c in sorted(candidates):
        if c in tied:
            continue
        iv = (paired_interval(candidates[leader], candidates[c], val_labels, hits="val_hits")
              if val_labels is not None else None)
        intervals[c] = iv
        if iv is not None and iv[0] <= 0:  # the leader's lead could be noise
            close.append(c)
    return close, intervals


def choose(candidates: dict[str, list[dict]], val_labels: torch.Tensor | None, *,
           kfold: Callable[[str], list[float]] | None = None, kfold_skipped: str = "", salt: str = "") -> dict:
    """The chosen candidate and how (a JSON-ready dict: ``chosen``, ``rule``, ``sentence``, the
    validation means, the contenders, their intervals and k-fold scores). ``candidates`` maps a
    name to its run records (``val_balanced_accuracy``, optionally ``val_hits``); ``kfold(name)``
    trains and scores that candidate's folds; ``kfold_skipped`` says why there is none."""
    means = {c: round(_mean(runs), 6) for c, runs in candidates.items()}
    close, intervals = contenders(candidates, val_labels)
    out: dict = {"val_means": means, "contenders": close,
                 "val_intervals": {c: list(iv) if iv else None for c, iv in intervals.items()}, "kfold_means": None}
    level = f"{int(100 * LEVEL)} %"
    if len(close) == 1:
        out.update(chosen=close[0], rule="validation",
                   sentence=f"{close[0]} leads on validation, and the {level} bootstrap interval over validation "
                            "images separates it from every other candidate" if intervals else
                            f"{close[0]} is the only candidate")
        return out
    names = ", ".join(close)
    if kfold is not None:
        scores = {c: kfold(c) for c in close}
        km = {c: sum(s) / len(s) for c, s in scores.items()}
        out["kfold_means"] = {c: round(m, 6) for c, m in km.items()}
        out["kfold_scores"] = scores
        top = max(km.values())
        tied = [c for c in close if km[c] == top]
        if len(tied) == 1:
            out.update(chosen=tied[0], rule="k-fold",
                       sentence=f"validation could not separate {names}; {tied[0]} won the repeated stratified "
                                f"k-fold over the training and validation parts ({len(scores[tied[0]])} folds)")
            return out
        out.update(chosen=seeded_draw(tied, salt), rule="draw",
                   sentence=f"validation could not separate {names}, and k-fold tied {', '.join(tied)}: drawn "
                            "between them, seeded by their names (never by list order)")
        return out
    top = max(means[c] for c in close)
    tied = [c for c in close if means[c] == top]
    chosen = tied[0] if len(tied) == 1 else seeded_draw(tied, salt)
    out.update(chosen=chosen, rule="validation mean (k-fold skipped)" if len(tied) == 1 else "draw",
               sentence=f"validation could not separate {names} ({kfold_skipped or 'no k-fold'}); "
                        + (f"{chosen} has the highest validation mean" if len(tied) == 1 else
                           f"{', '.join(tied)} tie on validation: drawn between them, seeded by their names"))
    return out
