"""Generated images in a long-tailed classifier's training, the way the field found them to help:
a small, filtered, down-weighted share of each batch on top of a balanced loss.

``SyntheticRecipe`` (:mod:`ganaug.longtail.recipe`) holds the knobs. ``SyntheticMix`` is a
map-style dataset of real images followed by a bank of generated images of the rare classes,
served as ``(image, label, weight)``; its ``batch_sampler`` decides, step by step, how many
generated images a batch gets, and its ``loss`` is the matching balanced loss. Both plug into a
plain PyTorch loop::

    mix = SyntheticMix(real, generator, SyntheticRecipe(), judge=judge)
    loader = DataLoader(mix, batch_sampler=mix.batch_sampler(steps, batch_size=128))
    for step, (x, y, w) in enumerate(loader):
        mix.before_step(model, step)             # a head-only final phase freezes the body
        x, y, w = mix.remix(prep(x), y, w, step)  # Remix, when the recipe asks for it
        loss = mix.loss(model(x), y, w, step)

References: M2m (Kim et al. 2020) for the rarity-proportional draws, the classifier gate at 0.9
and the late start; Balanced Softmax (Ren et al. 2020) / logit adjustment (Menon et al. 2021)
for the loss; DiffuLT and SYNAuG for capping, down-weighting, ending on real data and retraining
the last layer on balanced real data; Gowal et al. (2021) for soft labels from a classifier;
Remix (Chou et al. 2020) for mixing with the rarer class's label.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from ..data.images import resize_uint8
from ..transforms._kernels import convert_channels, resolve_generator
from ..transforms.balance import MixedDataset, dataset_targets
from ..transforms.synthetic import SyntheticDataset
from ..errors import GanaugError
from .losses import logit_adjusted_loss
from .recipe import REMIX_KAPPA, REMIX_TAU, SyntheticRecipe
from .selection import BAND_MIN_IMAGES, BEYOND, IN_BAND, INSIDE, ClassBands, penultimate, select_per_class


class SyntheticMix(Dataset):
    """Real images, then a bank of generated images of the rarer classes: ``(image, label, weight)``.

    ``real`` is any map-style dataset of ``(image, label)`` whose labels are the generator's class
    ids (a :class:`~ganaug.LabelledImages` is fastest). ``judge`` (needed unless the recipe's
    filter is ``none``) is a classifier trained on the real data, an ``nn.Module`` taking images
    in [-1, 1] (a :class:`~ganaug.eval.ReferenceClassifier` works too). ``cache`` keeps the
    generated bank on disk. Generated images take the real images' format (size, channels,
    PIL or tensor), as :class:`~ganaug.MixedDataset` does.
    """

    def __init__(self, real: Any, generator: Any, recipe: SyntheticRecipe | None = None, *,
                 judge: Any = None, seed: int = 0, cache: Any = None, transform: Any = None):
        self.recipe = recipe = recipe or SyntheticRecipe()
        gen = resolve_generator(generator)
        targets, counts = _checked_targets(real, gen, recipe, judge)
        k = gen.num_classes
        self.num_classes, self.class_names = k, gen.class_names
        self.real_counts, self.real_labels = counts, targets
        self.transform = transform
        self._steps: int | None = None  # set by batch_sampler(), the defaults of loss()
        self._batch_size: int | None = None
        self.n_real = len(targets)
        self._real = real
        self._fast = isinstance(getattr(real, "images", None), torch.Tensor) and real.images.dtype == torch.uint8
        if recipe.refresh and not self._fast:
            raise GanaugError("a recipe with refresh > 0 rewrites the bank during training, which needs the real data "
                              "as a LabelledImages (uint8 tensors, ganaug.load_images) and the tensors() path.")

        # the bank: generate (over-generate when choosing), judge, filter, choose per class;
        # rarer classes are drawn more often
        rarity = (1 - counts.double() / counts.max()).clamp(min=0)
        started = time.process_time()
        wanted = recipe.bank_sizes(counts)
        pool = SyntheticDataset(gen, {c: math.ceil(n * recipe.overgenerate) for c, n in enumerate(wanted) if n},
                                seed=seed, cache=cache)
        images = pool.images() if len(pool) else torch.zeros(0, gen.channels, gen.image_size, gen.image_size,
                                                             dtype=torch.uint8)
        probs, features = self._judge(images, pool.labels, k, judge if recipe.uses_judge else None,
                                      features=recipe.filter == "band")
        p = probs[torch.arange(len(pool.labels)), pool.labels]
        passed = self._passed(p, features, pool.labels, judge, gen, targets)
        keep = select_per_class(pool.labels, passed, wanted, recipe.select, probs)
        weights = p if recipe.filter == "confidence" else torch.ones(len(p))
        # soft labels: generated images learn the judge's distribution (band_soft: those near another
        # class's band only, the others their intended class), real ones their own class
        self.soft = recipe.filter == "soft" or recipe.band_soft
        self.synthetic_targets = probs[keep] if recipe.filter == "soft" else None
        if recipe.band_soft:
            self.synthetic_targets = torch.nn.functional.one_hot(pool.labels[keep], k).float()
            near = self._near_other[keep]
            self.synthetic_targets[near] = probs[keep][near].float()
        generated = torch.tensor(pool.class_counts, dtype=torch.float64)  # per class, before the filter
        planned = torch.tensor(wanted, dtype=torch.float64)
        kept = torch.bincount(pool.labels[keep], minlength=k)
        accepted = torch.bincount(pool.labels[passed], minlength=k) / generated.clamp(min=1)
        self.judge_acceptance = {name: (float(accepted[c]) if generated[c] else None)
                                 for c, name in enumerate(gen.class_names)}
        self.generated_counts = pool.class_counts
        self.synthetic_labels = pool.labels[keep]
        self.synthetic_weights = weights[keep] * recipe.weight
        self._bank_images = self._fit(images[keep])
        # what a refresh chooses from: every image the filter let through, in the real images' format
        self._candidates = (self._fit(images[passed]), pool.labels[passed]) if recipe.refresh else None
        self._initial_bank = self._bank_images.clone() if recipe.refresh else None
        self._all_images: torch.Tensor | None = None  # real + bank, made by tensors(); the bank a view of it
        self._refresh_at: dict[int, set[int]] = {}
        self.refresh_cpu_seconds, self.refreshes = 0.0, 0  # the cost of the refreshes done so far
        self.bank_cpu_seconds = time.process_time() - started  # generating, judging and choosing
        emptied = [gen.class_names[c] for c in range(k) if planned[c] and not kept[c]]
        if emptied:
            warnings.warn(f"the {recipe.filter!r} filter rejected every generated image of {emptied}; those classes "
                          "get no generated images. A weak generator or judge for them, or a looser filter "
                          "(threshold, band_high), is the usual cause.", stacklevel=2)
        self.synthetic_counts = kept
        self.draw_probs, self.fill = _draw_probabilities(rarity, kept, planned, recipe.rejected)
        self._mixed = None if self._fast else MixedDataset(real, _Bank(self._bank_images, self.synthetic_labels,
                                                                       gen.class_names), targets)

    # -- the bank ------------------------------------------------------------------------------
    def _passed(self, p: torch.Tensor, features: torch.Tensor | None, labels: torch.Tensor, judge: Any, gen: Any,
                targets: torch.Tensor) -> torch.Tensor:
        """Which generated images the recipe's filter lets through (``p``: the judge's probability of
        the intended class); the band filter also records where each class's images fell."""
        recipe, k = self.recipe, gen.num_classes
        self.band_counts = None
        if recipe.filter == "reject":
            return p >= recipe.threshold
        if recipe.filter != "band":
            return torch.ones(len(p), dtype=torch.bool)
        real_features, _ = penultimate(getattr(judge, "model", judge), self._real_images(gen))
        bands = ClassBands(real_features, targets, k, recipe.band_low, recipe.band_high)
        if bands.pooled_classes:
            warnings.warn(f"classes {[gen.class_names[c] for c in bands.pooled_classes]} have fewer than "
                          f"{BAND_MIN_IMAGES} real images, too few for a band of their own: theirs is every "
                          "other class's distances pooled.", stacklevel=3)
        position = bands.position(features, labels) if len(labels) else torch.zeros(0, dtype=torch.int64)
        # in the band of their class and within another class's band too: what band_soft relabels
        near = bands.near_other(features, labels) & (position == IN_BAND) if len(labels) else position.bool()
        self._near_other = near
        self.band_counts = {name: {**{where: int(((position == code) & (labels == c)).sum())
                                      for where, code in (("inside", INSIDE), ("in_band", IN_BAND), ("beyond", BEYOND))},
                                   "near_other": int((near & (labels == c)).sum())}
                            for c, name in enumerate(gen.class_names)}
        return position == IN_BAND

    def _fit(self, images: torch.Tensor) -> torch.Tensor:
        """Generated images in the real tensors' format (size, channels), fitted once."""
        if not self._fast or not len(images):
            return images
        _, c, h, w = self._real.images.shape
        return resize_uint8(convert_channels(images, c), h, w)

    def refresh(self, model: torch.nn.Module) -> None:
        """Choose the bank again among the over-generated images the filter let through: in each
        class as many as before, the hardest for ``model`` (a classifier taking images in [-1, 1],
        usually the one being trained) by the recipe's ``select``. ``before_step`` calls it on the
        recipe's schedule; the bank is rewritten in place, so the tensors from ``tensors()`` follow."""
        if self._candidates is None:
            raise GanaugError("this mix was built without refresh; set SyntheticRecipe.refresh > 0.")
        from ..eval.classifier import logits_of

        started = time.process_time()
        images, labels = self._candidates
        probs = logits_of(model, images).softmax(1)
        wanted = self.synthetic_counts.tolist()
        keep = select_per_class(labels, torch.ones(len(labels), dtype=torch.bool), wanted, self.recipe.select, probs)
        self._write_bank(images, labels, keep)
        self.refresh_cpu_seconds += time.process_time() - started
        self.refreshes += 1

    def _write_bank(self, images: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor) -> None:
        # class by class into the same slots, so the labels, weights and draws stay as they are
        for c in range(self.num_classes):
            slots = torch.nonzero(self.synthetic_labels == c).flatten()
            if len(slots):
                self._bank_images[slots] = images[torch.nonzero(keep & (labels == c)).flatten()]

    def _refresh_steps(self, steps: int) -> set[int]:
        """The steps at which ``before_step`` refreshes: ``refresh`` points evenly inside the mixing phase."""
        if steps not in self._refresh_at:
            mixing = [s for s in range(steps) if self.recipe.phase(s, steps) == "mix"]
            n = self.recipe.refresh
            self._refresh_at[steps] = {mixing[len(mixing) * i // (n + 1)] for i in range(1, n + 1)} if mixing else set()
        return self._refresh_at[steps]

    @staticmethod
    def _judge(images: torch.Tensor, labels: torch.Tensor, k: int, judge: Any, features: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The judge's class probabilities (N, K) of each image (one-hot of its class without a
        judge), and its penultimate features (N, D) when ``features``."""
        if judge is None or len(labels) == 0:
            return torch.nn.functional.one_hot(labels, k).float(), None
        if features:
            feats, logits = penultimate(getattr(judge, "model", judge), images)
            return logits.softmax(1), feats
        from ..eval.classifier import logits_of

        return logits_of(getattr(judge, "model", judge), images).softmax(1), None

    def _real_images(self, gen: Any) -> torch.Tensor:
        """Every real image as uint8 in the generator's format, so that real and generated images
        meet the judge alike."""
        if self._fast:
            x = self._real.images
        else:
            from torchvision.transforms.v2 import functional as TF

            x = torch.stack([resize_uint8(convert_channels(
                TF.to_dtype(TF.to_image(self._real[i][0]), torch.uint8, scale=True)[None], gen.channels),
                gen.image_size)[0] for i in range(self.n_real)])
        return resize_uint8(convert_channels(x, gen.channels), gen.image_size)

    def _target(self, i: int) -> int | torch.Tensor:
        """Item ``i``'s target: its class id, or a (K,) distribution when the recipe is soft."""
        label = int(self.real_labels[i]) if i < self.n_real else int(self.synthetic_labels[i - self.n_real])
        if not self.soft:
            return label
        if self.synthetic_targets is not None and i >= self.n_real:
            return self.synthetic_targets[i - self.n_real]
        return torch.nn.functional.one_hot(torch.tensor(label), self.num_classes).float()

    def __len__(self) -> int:
        return self.n_real + len(self.synthetic_labels)

    def __getitem__(self, i: int) -> tuple[Any, int, float]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        i %= len(self)
        if self._fast:
            image = self._real.images[i] if i < self.n_real else self._bank_images[i - self.n_real]
        else:
            image, _ = self._mixed[i]
        image = self.transform(image) if self.transform else image
        w = 1.0 if i < self.n_real else float(self.synthetic_weights[i - self.n_real])
        return image, self._target(i), w

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images uint8, targets, weights) of every item, real first; for LabelledImages data.
        Targets are class ids, or (N, K) distributions for a ``soft`` recipe."""
        if not self._fast:
            raise GanaugError("tensors() needs the real data as a LabelledImages (uint8 tensors); "
                              "iterate the dataset instead.")
        if self._all_images is None:  # made once; the bank becomes a view, so a refresh shows through
            self._all_images = torch.cat([self._real.images, self._bank_images])
            self._bank_images = self._all_images[self.n_real:]
        labels = torch.cat([self._real.labels, self.synthetic_labels])
        if self.soft:
            labels = torch.nn.functional.one_hot(labels, self.num_classes).float()
            labels[self.n_real:] = self.synthetic_targets
        return (self._all_images, labels,
                torch.cat([torch.ones(self.n_real), self.synthetic_weights]))

    # -- batches and loss ----------------------------------------------------------------------
    def batch_sampler(self, steps: int, batch_size: int, seed: int = 0) -> "MixedBatchSampler":
        """Index batches for ``DataLoader(mix, batch_sampler=...)``: ``steps`` of them, each with
        the recipe's generated share while mixing is on, the rest uniform over real images."""
        return MixedBatchSampler(self, steps, batch_size, seed)

    def synthetic_per_batch(self, batch_size: int) -> int:
        """Slots for generated images in a mixing batch; each gets one with probability ``fill``
        (1 unless the recipe gives rejected images' slots to real ones), else a real image."""
        if self.draw_probs.sum() == 0:
            return 0
        return int(round(self.recipe.share * batch_size))

    def prior(self, phase: str, batch_size: int) -> torch.Tensor:
        """log label prior of the batches drawn in ``phase`` (real counts, plus the generated share
        while mixing unless the recipe's prior is ``real``; uniform in the head-only phase, whose
        draws are class-balanced)."""
        if phase == "head":
            return torch.full((self.num_classes,), -math.log(self.num_classes))
        real = self.real_counts.double() / self.real_counts.sum()
        mixing = phase == "mix" and self.recipe.prior == "drawn"
        m = self.fill * self.synthetic_per_batch(batch_size) / batch_size if mixing else 0.0
        return ((1 - m) * real + m * self.draw_probs).log().float()  # every real count is >= 1: finite

    def _schedule(self, steps: int | None, batch_size: int | None = 1) -> tuple[int, int]:
        steps = steps if steps is not None else self._steps
        batch_size = batch_size if batch_size is not None else self._batch_size
        if steps is None or batch_size is None:
            raise GanaugError("the recipe's schedule needs steps and batch_size: pass them, or make the batches "
                              "with batch_sampler() first.")
        return steps, batch_size

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, step: int,
             steps: int | None = None, batch_size: int | None = None) -> torch.Tensor:
        """The recipe's loss for batch ``step``: balanced softmax with this phase's label prior (or
        plain cross-entropy), each sample scaled by its weight. ``targets`` are class ids or (B, K)
        distributions (soft labels, Remix). ``steps`` and ``batch_size`` default to those of the
        last ``batch_sampler``."""
        steps, batch_size = self._schedule(steps, batch_size)
        w = torch.as_tensor(weights, dtype=torch.float32)
        if self.recipe.loss == "ce":
            return logit_adjusted_loss(logits, targets, torch.zeros(self.num_classes), 0.0, w)
        return logit_adjusted_loss(logits, targets, self.prior(self.recipe.phase(step, steps), batch_size), 1.0, w)

    def before_step(self, model: torch.nn.Module, step: int, steps: int | None = None) -> None:
        """Call at the top of every step (after any ``model.train()``): in a head-only finish phase
        it freezes everything but the model's last ``nn.Linear`` and puts the body in eval mode, so
        batch-norm statistics stay those learned with all the data. With ``refresh``, step 0 puts
        back the judge's choice (a mix serves several runs) and the refresh steps choose again
        against ``model``. Otherwise it does nothing."""
        steps, _ = self._schedule(steps)
        if self.recipe.refresh and step == 0:
            self._bank_images.copy_(self._initial_bank)
        if self.recipe.refresh and step in self._refresh_steps(steps):
            self.refresh(model)
        if self.recipe.phase(step, steps) != "head":
            return
        heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        if not heads:
            raise GanaugError("finish_layers='head' retrains the model's last nn.Linear, and this model has none.")
        model.eval()
        model.requires_grad_(False)
        heads[-1].train()
        heads[-1].requires_grad_(True)

    def remix(self, images: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, step: int,
              steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Remix a batch (float images, class ids or (B, K) targets, weights) with a shuffled copy
        of itself; returns (images, (B, K) targets, weights). The identity when the recipe's
        ``remix`` is 0 or in the head-only phase. Draws from torch's global generator."""
        steps, _ = self._schedule(steps)
        if self.recipe.remix <= 0 or self.recipe.phase(step, steps) == "head":
            return images, targets, weights
        k, n = self.num_classes, len(images)
        t = targets if targets.dim() == 2 else torch.nn.functional.one_hot(targets, k).float()
        hard = targets if targets.dim() == 1 else targets.argmax(1)
        w = torch.as_tensor(weights, dtype=torch.float32)
        perm = torch.randperm(n)
        lam = torch.distributions.Beta(self.recipe.remix, self.recipe.remix).sample((n,))
        ratio = self.real_counts[hard].double() / self.real_counts[hard[perm]].double()
        # the label's share: the rarer class takes it all when its part of the image is large enough
        lam_y = torch.where((ratio >= REMIX_KAPPA) & (lam < REMIX_TAU), 0.0,
                            torch.where((ratio <= 1 / REMIX_KAPPA) & (1 - lam < REMIX_TAU), 1.0, lam.double())).float()
        shape = (n,) + (1,) * (images.dim() - 1)
        mixed = lam.view(shape).to(images.dtype) * images + (1 - lam.view(shape).to(images.dtype)) * images[perm]
        return (mixed, lam_y[:, None] * t + (1 - lam_y[:, None]) * t[perm],
                lam_y * w + (1 - lam_y) * w[perm])

    def report(self) -> dict:
        """Per class: real images, images generated (before the filter; more than the bank when the
        recipe over-generates), generated images kept, judge acceptance (the filter's pass rate),
        draw probability (among generated draws) and, for the ``band`` filter, how many generated
        images fell inside, in and beyond the band."""
        return {name: {"real": int(self.real_counts[c]), "generated_pool": int(self.generated_counts[c]),
                       "generated": int(self.synthetic_counts[c]),
                       "judge_acceptance": self.judge_acceptance.get(name),
                       "draw_probability": float(self.draw_probs[c]),
                       **(self.band_counts[name] if self.band_counts else {})}
                for c, name in enumerate(self.class_names)}


class MixedBatchSampler(Sampler[list[int]]):
    """``steps`` index batches over a :class:`SyntheticMix`; deterministic for a seed."""

    def __init__(self, mix: SyntheticMix, steps: int, batch_size: int, seed: int = 0):
        if steps < 1 or batch_size < 1:
            raise GanaugError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}.")
        self.mix, self.steps, self.batch_size, self.seed = mix, steps, batch_size, seed
        mix._steps, mix._batch_size = steps, batch_size
        self._within = ClassDraws(mix.synthetic_labels, mix.num_classes)
        self._real_within = ClassDraws(mix.real_labels, mix.num_classes)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        return (b.tolist() for b in self.index_batches(torch.Generator().manual_seed(self.seed)))

    def index_batches(self, gen: torch.Generator) -> Iterator[torch.Tensor]:
        """The same batches as tensors, drawn from ``gen`` (what a tensor training loop wants)."""
        mix, b = self.mix, self.batch_size
        m = mix.synthetic_per_batch(b)
        for step in range(self.steps):
            phase = mix.recipe.phase(step, self.steps)
            if phase == "head":  # every class equally often, real images only
                yield self._real_within(torch.randint(mix.num_classes, (b,), generator=gen), gen)
                continue
            k = m if phase == "mix" else 0
            if k and mix.fill < 1:  # slots whose generated image was rejected take a real one
                k = int((torch.rand(k, generator=gen) < mix.fill).sum())
            real = torch.randint(mix.n_real, (b - k,), generator=gen)
            if k == 0:
                yield real
                continue
            cls = torch.multinomial(mix.draw_probs.float(), k, replacement=True, generator=gen)
            yield torch.cat([real, mix.n_real + self._within(cls, gen)])


class ClassDraws:
    """Uniform draws within given classes: ``draws(cls, gen)`` returns, for each class id in
    ``cls``, the index of a random item of that class (one vectorised call per batch)."""

    def __init__(self, labels: torch.Tensor, num_classes: int):
        self.order = torch.argsort(labels, stable=True)
        self.sizes = torch.bincount(labels, minlength=num_classes)
        self.starts = torch.cumsum(self.sizes, 0) - self.sizes

    def __call__(self, cls: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        pos = (torch.rand(len(cls), generator=gen) * self.sizes[cls]).long()
        return self.order[self.starts[cls] + pos]


class _Bank(Dataset):
    """The kept generated images, shaped like a SyntheticDataset for MixedDataset."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, class_names: list[str]):
        self._images, self.labels, self.class_names = images, labels, class_names
        self.class_counts = torch.bincount(labels, minlength=len(class_names)).tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._images[i], int(self.labels[i])


def _checked_targets(real: Any, gen: Any, recipe: SyntheticRecipe, judge: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, per-class counts) of the real data, checked against the generator and the recipe."""
    targets, k = dataset_targets(real), gen.num_classes
    names = getattr(real, "class_names", None) or getattr(real, "classes", None)
    if names is not None and list(names) != gen.class_names:
        raise GanaugError(f"the data's classes {list(names)} are not the generator's {gen.class_names}; "
                          "use a generator trained on these classes, in this order.")
    if len(targets) == 0 or targets.min() < 0 or targets.max() >= k:
        raise GanaugError(f"the data's labels must be class ids 0..{k - 1} of the generator "
                          f"({gen.class_names}); got {'no images' if len(targets) == 0 else int(targets.max())}.")
    counts = torch.bincount(targets, minlength=k)
    empty = [gen.class_names[c] for c in range(k) if counts[c] == 0]
    if empty:
        raise GanaugError(f"classes {empty} have no real image. A generated image cannot stand in for a "
                          "class the classifier never sees for real; add real images or drop the class.")
    if recipe.uses_judge and judge is None:
        raise GanaugError(f"the recipe (filter {recipe.filter!r}, select {recipe.select!r}) needs judge=: a "
                          "classifier trained on the real data with a balanced loss (ganaug.longtail.fit_judge), "
                          "or filter='none' with select='random'.")
    return targets, counts


def _draw_probabilities(rarity: torch.Tensor, kept: torch.Tensor, planned: torch.Tensor, rejected: str
                        ) -> tuple[torch.Tensor, float]:
    """(each class's share of the generated slots, the expected share of those slots that get a generated
    image). Rarer classes are drawn more often; a class whose bank the filter emptied never is; with
    ``rejected="real"`` a class is drawn in proportion to how much of its bank the filter let fill, the
    rest of its slots go to real images."""
    filled = (kept / planned.clamp(min=1)).clamp(max=1)
    probs = rarity * (filled if rejected == "real" else (kept > 0).double())
    has_bank = (planned > 0).any()
    fill = float(probs.sum() / rarity[planned > 0].sum()) if rejected == "real" and has_bank else float(probs.sum() > 0)
    if probs.sum() > 0:
        probs = probs / probs.sum()
    return probs, fill
