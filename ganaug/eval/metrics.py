"""Sample-quality metrics on feature vectors. Features in, numbers out; no models here.

All statistics accumulate in float64. Every function raises :class:`GanaugError` when it gets
too few samples, rather than returning a number dominated by estimator bias.
"""

from __future__ import annotations

import torch
from torchmetrics.image.kid import poly_mmd

from ..errors import GanaugError

_CHUNK = 1024


def _need(n: int, at_least: int, what: str) -> None:
    if n < at_least:
        raise GanaugError(f"too few samples for {what}: got {n}, need at least {at_least}; "
                          "generate more images (--n) or use a larger real split.")


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance, float64."""
    _need(len(features), 2, "a covariance")
    f = features.double()
    mu = f.mean(0)
    c = f - mu
    return mu, c.t() @ c / (len(f) - 1)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric PSD matrix via eigh; tiny negative eigenvalues become 0."""
    w, v = torch.linalg.eigh((m + m.t()) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.t()


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                     sigma2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), in float64.

    ``tr((S1 S2)^1/2)`` is computed as ``tr((S1^1/2 S2 S1^1/2)^1/2)``: the inner matrix is
    symmetric PSD, so a symmetric eigendecomposition gives real eigenvalues and no complex parts
    need discarding (unlike ``scipy.linalg.sqrtm`` on the non-symmetric product).
    """
    mu1, mu2, s1, s2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    if s1.shape != s2.shape or mu1.shape != mu2.shape:
        raise GanaugError(f"feature dimensions differ: {tuple(s1.shape)} vs {tuple(s2.shape)}.")
    r1 = _sqrt_psd(s1)
    inner = r1 @ s2 @ r1
    tr_covmean = torch.linalg.eigvalsh((inner + inner.t()) / 2).clamp(min=0).sqrt().sum()
    value = float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * tr_covmean)
    return max(value, 0.0)  # a distance; only round-off can push identical sets below 0


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    _need(min(len(real), len(fake)), 2, "FID")
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def kid(real: torch.Tensor, fake: torch.Tensor, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float, int]:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel
    (torchmetrics' ``poly_mmd``), averaged over random subsets. Returns (mean, std, subset size).

    The subset size shrinks to the smaller set when needed; the size used is returned so it
    can be reported.
    """
    m = min(subset_size, len(real), len(fake))
    _need(m, 2, "KID")
    gen = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(subsets):
        r = real[torch.randperm(len(real), generator=gen)[:m]].double()
        f = fake[torch.randperm(len(fake), generator=gen)[:m]].double()
        vals.append(float(poly_mmd(r, f)))
    t = torch.tensor(vals, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(t) > 1 else 0.0, m


def inception_score(logits: torch.Tensor, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))), mean and std over ``splits`` random splits.

    The order is shuffled first: generated sets are usually sorted by class, and a split
    holding one class would make p(y) collapse and the score meaningless.
    """
    _need(len(logits), splits, "the Inception Score")
    p = torch.softmax(logits.double(), dim=1)
    p = p[torch.randperm(len(p), generator=torch.Generator().manual_seed(seed))]
    scores = []
    for part in p.chunk(splits):
        py = part.mean(0, keepdim=True)
        kl = (part * (torch.log(part + 1e-12) - torch.log(py + 1e-12))).sum(1).mean()
        scores.append(torch.exp(kl))
    s = torch.stack(scores)
    return float(s.mean()), float(s.std()) if len(s) > 1 else 0.0


def nearest(query: torch.Tensor, ref: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances and indices of the k nearest ``ref`` rows for each ``query`` row (chunked)."""
    ds, ix = [], []
    ref = ref.float()
    for q in query.float().split(_CHUNK):
        d = torch.cdist(q, ref)
        v, i = d.topk(k, dim=1, largest=False)
        ds.append(v)
        ix.append(i)
    return torch.cat(ds), torch.cat(ix)


def _kth_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each row to its k-th nearest neighbour in the same set (itself excluded)."""
    d, _ = nearest(x, x, k + 1)
    return d[:, k]


def _within(query: torch.Tensor, ref: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """How many ref balls (centre ref_j, radius radii_j) contain each query row."""
    counts = []
    ref = ref.float()
    for q in query.float().split(_CHUNK):
        counts.append((torch.cdist(q, ref) <= radii[None]).sum(1))
    return torch.cat(counts)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3, seed: int = 0
                     ) -> dict[str, float]:
    """Improved precision/recall (Kynkaanniemi et al. 2019) and density/coverage
    (Naeem et al. 2020) from k-nearest-neighbour balls in feature space.

    k-NN radii shrink as a set grows, so the larger set is subsampled (seeded) to the size of
    the smaller one; the metrics are defined for equal-sized sets.
    """
    _need(min(len(real), len(fake)), k + 1, f"precision/recall with k={k}")
    m = min(len(real), len(fake))
    gen = torch.Generator().manual_seed(seed)
    real = real[torch.randperm(len(real), generator=gen)[:m]] if len(real) > m else real
    fake = fake[torch.randperm(len(fake), generator=gen)[:m]] if len(fake) > m else fake
    r_real, r_fake = _kth_radius(real, k), _kth_radius(fake, k)
    in_real = _within(fake, real, r_real)  # for each fake: how many real balls contain it
    in_fake = _within(real, fake, r_fake)
    nn_real_to_fake, _ = nearest(real, fake, 1)
    return {
        "precision": float((in_real > 0).double().mean()),
        "recall": float((in_fake > 0).double().mean()),
        "density": float(in_real.double().sum() / (k * len(fake))),
        "coverage": float((nn_real_to_fake[:, 0] <= r_real).double().mean()),
    }


def class_fidelity(logits: torch.Tensor, labels: torch.Tensor, num_classes: int
                   ) -> tuple[float, list[float]]:
    """Fraction of images whose predicted class is the class they were generated for."""
    hit = (logits.argmax(1) == labels).double()
    per = [float(hit[labels == c].mean()) if (labels == c).any() else float("nan")
           for c in range(num_classes)]
    return float(hit.mean()), per


def memorisation(gen: torch.Tensor, gen_labels: torch.Tensor, train: torch.Tensor,
                 test: torch.Tensor, test_labels: torch.Tensor, num_classes: int, *,
                 copy_quantile: float = 0.01, flag_fraction: float = 0.10) -> dict:
    """How close generated images come to training images, relative to new real images.

    For every generated image: the distance to its nearest training image. The yardstick is the
    same distance for held-out real images of the class (they are new, not copies). An image is
    "copy-close" when it is nearer a training image than ``copy_quantile`` of held-out real
    images are; for a generator that generalises like real data about that fraction is
    copy-close. A class is flagged when more than ``flag_fraction`` of its images are.
    """
    d_gen, nn_idx = nearest(gen, train, 1)
    d_test, _ = nearest(test, train, 1)
    d_gen, d_test, nn_idx = d_gen[:, 0], d_test[:, 0], nn_idx[:, 0]
    ratio = torch.empty_like(d_gen)
    per_class = []
    for c in range(num_classes):
        g, t = gen_labels == c, test_labels == c
        if not g.any() or not t.any():
            per_class.append(None)
            continue
        typical = d_test[t].median().clamp(min=1e-12)
        thr = torch.quantile(d_test[t].double(), copy_quantile).float()
        ratio[g] = d_gen[g] / typical
        frac = float((d_gen[g] <= thr).double().mean())
        per_class.append({"median_ratio": float(ratio[g].median()), "copy_close_fraction": frac,
                          "flagged": frac > flag_fraction})
    return {"ratio": ratio, "nearest_train_index": nn_idx, "per_class": per_class,
            "copy_quantile": copy_quantile, "flag_fraction": flag_fraction}
