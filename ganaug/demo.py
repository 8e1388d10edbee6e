"""``ganaug demo``: the product's main job in a minute, on data and a generator that ship with it.

A long-tailed slice of Fashion-MNIST (the rare classes get 100x fewer images) goes through a real
DataLoader twice: once with ``GANAugment`` swapping rare-class images for generated ones, once
through ``balance()``, which tops the rare classes up with generated images. The picture shows a
real batch next to the augmented one, row by row per class, and the class counts before and after.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .errors import GanaugError


def run_demo(data: str | Path, generator: str | Path, out: str | Path, *, ratio: float = 100.0,
             per_class: int = 600, seed: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torch.utils.data import DataLoader, TensorDataset

    from .bench.splits import long_tailed_split
    from .data import load_images
    from .transforms import balance
    from .grid import class_grid
    from .hub import load_generator
    from .transforms import GANBatchAugment

    t0 = time.perf_counter()
    gen = load_generator(generator)
    full = load_images(data, image_size=gen.image_size, channels=gen.channels, max_per_class=per_class)
    if full.class_names != gen.class_names:
        raise GanaugError(f"the data's classes {full.class_names} are not the generator's {gen.class_names}.")
    lt = long_tailed_split(full, ratio, n_max=per_class, seed=seed)
    counts = lt.class_counts()
    rare = [c for c in range(lt.num_classes) if counts[c] < max(counts) / 3]

    # 1. on the fly: in the training loop, GANBatchAugment swaps half of the rare-class images of
    # each batch for generated ones of the same class (one generator pass per batch)
    torch.manual_seed(seed)
    aug = GANBatchAugment(gen, p={c: 0.5 for c in rare})
    loader = DataLoader(TensorDataset(lt.images, lt.labels), batch_size=256, shuffle=True)
    swapped = torch.zeros(lt.num_classes, dtype=torch.int64)
    for images, labels in loader:  # one epoch, as training would see it
        new, _ = aug((images, labels))
        swapped += torch.bincount(labels[(new != images).flatten(1).any(1)], minlength=lt.num_classes)

    # 2. balance(): the rare classes topped up to the largest class with generated images (made
    # lazily: a shuffled batch generates only what it draws)
    balanced = balance(lt, gen, "not majority", seed=seed)
    after = [v["total"] for v in balanced.class_counts().values()]
    _, batch_labels = next(iter(DataLoader(balanced, batch_size=256, shuffle=True)))

    # the picture: for each class, 6 real images, then 6 generated ones; and the counts
    per_row = 6
    real = torch.stack([lt.images[lt.labels == c][:per_row] if counts[c] >= per_row else
                        torch.cat([lt.images[lt.labels == c], torch.zeros(per_row - counts[c], *lt.images.shape[1:],
                                                                           dtype=torch.uint8)])
                        for c in range(lt.num_classes)]).flatten(0, 1)
    fake = gen.generate(torch.arange(lt.num_classes).repeat_interleave(per_row), seed=seed)
    rows = torch.stack([torch.cat([r, f]) for r, f in zip(real.split(per_row), fake.split(per_row))]).flatten(0, 1)
    grid = class_grid(rows, lt.class_names, 2 * per_row)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(13, 6), gridspec_kw={"width_ratios": [1.3, 1]})
    ax_img.imshow(grid)
    ax_img.set_title("per class: 6 real images (left), 6 generated (right)", fontsize=9)
    ax_img.axis("off")
    x = torch.arange(lt.num_classes)
    ax_bar.bar(x - 0.2, counts, 0.4, label="long-tailed data (real)")
    ax_bar.bar(x + 0.2, after, 0.4, label="after balance() (real + generated)")
    ax_bar.set_xticks(x.tolist(), lt.class_names, rotation=60, fontsize=8)
    ax_bar.set_yscale("log")
    ax_bar.legend(fontsize=8)
    ax_bar.set_title(f"class counts (imbalance ratio {ratio:g})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "demo.png", dpi=110)
    plt.close(fig)
    lines = [f"generator: {generator} ({gen.config.arch}, {gen.channels}x{gen.image_size}px)",
             f"long-tailed slice of {data}: {counts}",
             f"GANBatchAugment (p=0.5 on the rare classes {[lt.class_names[c] for c in rare]}), one epoch through a "
             f"DataLoader: generated images swapped in per class {swapped.tolist()}",
             f"balance('not majority'): {after} ({len(balanced) - len(lt)} generated); a shuffled batch of "
             f"{len(batch_labels)} from it has {torch.bincount(batch_labels, minlength=lt.num_classes).tolist()}",
             f"wrote {out / 'demo.png'} in {time.perf_counter() - t0:.0f} s"]
    (out / "demo.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out / "demo.png"
