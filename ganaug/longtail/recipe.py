"""The recipe: how a classifier uses generated images (``SyntheticRecipe``, a dataclass saved as
JSON). :class:`ganaug.longtail.mix.SyntheticMix` carries it out."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..configs import JsonConfig
from ..errors import GanaugError
from .selection import SELECTIONS


FILTERS = ("none", "reject", "confidence", "soft", "band")
LOSSES = ("balanced-softmax", "ce")
FINISH_LAYERS = ("all", "head")
REJECTED = ("redraw", "real")
PRIORS = ("drawn", "real")
REMIX_KAPPA, REMIX_TAU = 3.0, 0.5  # Chou et al. 2020's defaults


@dataclass(frozen=True)
class SyntheticRecipe(JsonConfig):
    """How a classifier uses generated images. Fractions of training are fractions of its steps.

    - ``share``: generated share of each batch while mixing is on (0.25 = 32 of 128);
    - ``weight``: loss weight of a generated image (a real one weighs 1);
    - ``start``: fraction of training before generated images come in (M2m: the last fifth, 0.8);
    - ``finish``: final fraction of training on real images only;
    - ``cap``: generated images kept per class, at most ``cap`` x its real count; the largest
      class gets none, the others are drawn with probability proportional to ``1 - n_c / n_max``;
    - ``fill_to``: when > 0 it replaces ``cap``: each class's bank fills it up to ``fill_to`` x
      the largest class's real count (1.0: a balanced proxy, as DiffuLT fills the tail);
    - ``filter``: ``reject`` drops generated images the judge (a classifier trained on the real
      data with a balanced loss) gives less than ``threshold`` for their class; ``confidence``
      keeps all and multiplies their weight by that probability; ``soft`` keeps all and trains
      them towards the judge's class probabilities instead of their intended class (label
      repair); ``band`` keeps the approximately-in-distribution images: those whose distance to
      their class's prototype in the judge's penultimate features lies between the ``band_low``
      and ``band_high`` quantiles of the class's real images' distances
      (:mod:`ganaug.longtail.selection`); ``none`` trusts the generator;
    - ``band_soft``: with the ``band`` filter, a kept image that also lies within another class's
      band (near two classes' real images) trains towards the judge's class probabilities instead
      of its intended class, as the prototype filters of public long-tail code repair such labels;
    - ``overgenerate``: generate this many times the bank's size and choose among the images the
      filter lets through by ``select``: ``random`` (any), ``loss`` or ``entropy`` (the hardest
      under the judge first, as feedback-guided synthesis does);
    - ``refresh``: how many times, evenly spread over the mixing phase, the choice among the
      over-generated images is made again, the hardest for the classifier being trained first
      (FreshBank-style feedback; needs ``select`` ``loss`` or ``entropy`` and ``overgenerate`` > 1);
      0: the judge's choice holds for the whole run;
    - ``loss``: ``balanced-softmax`` (logit-adjusted with a label prior) or plain ``ce``;
    - ``prior``: the balanced softmax's label prior: ``drawn``, that of the batches actually drawn
      (the generated share shifts it towards the rare classes), or ``real``, that of the real
      images alone, whatever the batches hold: when generated images differ from real ones, a
      prior that counts them credits a rare class with examples its real test images do not
      resemble, and its real images lose the adjustment they need;
    - ``remix``: Remix (Chou et al. 2020) with mixing coefficients from Beta(remix, remix); a
      pair whose classes differ by ``REMIX_KAPPA`` x in real count takes the rarer class's label
      when its part is at least ``1 - REMIX_TAU``; 0 switches it off;
    - ``finish_layers``: what trains in the ``finish`` phase: ``all`` layers on uniform real
      draws, or only the ``head`` (the model's last ``nn.Linear``) on class-balanced real draws
      with the body frozen (last-layer retraining, as SYNAuG does);
    - ``rejected``: what a batch slot for a class gets when the filter rejected part of that
      class's bank: ``redraw`` fills it with another kept image of the class, so a class with a
      few survivors gets them drawn over and over; ``real`` gives the slot to a real image with
      the class's rejection rate, as M2m keeps the original sample when the classifier rejects
      the generated one (each generated image is then drawn about as often, whatever its class).
    """

    json_name = "SyntheticRecipe"

    share: float = 0.25
    weight: float = 0.5
    start: float = 0.0
    finish: float = 0.0
    cap: float = 4.0
    filter: str = "reject"
    threshold: float = 0.9
    loss: str = "balanced-softmax"
    remix: float = 0.0
    finish_layers: str = "all"
    rejected: str = "redraw"
    fill_to: float = 0.0
    band_low: float = 0.0
    band_high: float = 0.95
    band_soft: bool = False
    overgenerate: float = 1.0
    select: str = "random"
    prior: str = "drawn"
    refresh: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.share < 1:
            problems.append(f"share must lie in [0, 1), got {self.share}")
        if self.weight < 0:
            problems.append(f"weight must be >= 0, got {self.weight}")
        if not (0 <= self.start <= 1 and 0 <= self.finish <= 1 and self.start + self.finish <= 1):
            problems.append(f"start and finish must lie in [0, 1] with start + finish <= 1, got "
                            f"{self.start} and {self.finish}")
        if self.cap <= 0:
            problems.append(f"cap must be > 0, got {self.cap}")
        if not 0 <= self.threshold <= 1:
            problems.append(f"threshold must lie in [0, 1], got {self.threshold}")
        if self.remix < 0:
            problems.append(f"remix must be >= 0 (0: off), got {self.remix}")
        if self.fill_to < 0:
            problems.append(f"fill_to must be >= 0 (0: size the bank by cap), got {self.fill_to}")
        if not 0 <= self.band_low < self.band_high <= 1:
            problems.append(f"band quantiles must satisfy 0 <= band_low < band_high <= 1, got {self.band_low} "
                            f"and {self.band_high}")
        if self.overgenerate < 1:
            problems.append(f"overgenerate must be >= 1, got {self.overgenerate}")
        for name, choices in (("filter", FILTERS), ("loss", LOSSES), ("finish_layers", FINISH_LAYERS),
                              ("rejected", REJECTED), ("select", SELECTIONS), ("prior", PRIORS)):
            if getattr(self, name) not in choices:
                problems.append(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if self.refresh < 0:
            problems.append(f"refresh must be >= 0 (0: no refresh), got {self.refresh}")
        if self.refresh and (self.select == "random" or self.overgenerate <= 1 or self.filter in ("soft", "confidence")):
            problems.append("refresh needs over-generated images (overgenerate > 1) chosen by hardness (select "
                            "'loss' or 'entropy'), with a filter whose labels and weights do not depend on the image "
                            f"(not 'soft' or 'confidence'); got overgenerate {self.overgenerate}, select "
                            f"{self.select!r}, filter {self.filter!r}")
        if self.band_soft and self.filter != "band":
            problems.append(f"band_soft relabels images of the band filter; got filter {self.filter!r}")
        if self.band_soft and self.refresh:
            problems.append("band_soft labels depend on the image, which a refresh replaces: use one or the other")
        if self.finish_layers == "head" and self.finish == 0:
            problems.append("finish_layers='head' needs a finish phase (finish > 0)")
        if problems:
            raise GanaugError("bad SyntheticRecipe: " + "; ".join(problems) + ".")

    @classmethod
    def fields_with_defaults(cls, d: dict) -> dict:
        """``d`` with every field, the defaults filled in: a recipe saved before a field existed
        compares equal to the same recipe now."""
        return cls.from_dict(d).to_dict()

    @property
    def uses_judge(self) -> bool:
        """Whether building the bank needs a judge (any filter, or a choice of hard samples)."""
        return self.filter != "none" or self.select != "random"

    def bank_sizes(self, counts: torch.Tensor) -> list[int]:
        """Generated images wanted per class for real class counts ``counts``: ``cap`` x the
        count, or what fills the class to ``fill_to`` x the largest; none for the largest class."""
        n_max = int(counts.max())
        if self.share == 0:
            return [0] * len(counts)
        if self.fill_to > 0:
            return [max(0, math.ceil(self.fill_to * n_max) - int(n)) if n < n_max else 0 for n in counts]
        return [math.ceil(self.cap * int(n)) if n < n_max else 0 for n in counts]

    def phase(self, step: int, steps: int) -> str:
        """``mix`` (batches get generated images), ``real`` (real only, all layers) or ``head``
        (the head-only finish) for batch ``step`` of ``steps``."""
        if step >= (1 - self.finish) * steps and self.finish > 0:
            return "head" if self.finish_layers == "head" else "real"
        return "mix" if self.share > 0 and step >= self.start * steps else "real"
