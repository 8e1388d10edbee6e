"""Turning an evaluation result into a table, a Markdown report and PNG plots."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.dataset import LabelledImages
from ..eval_tables import per_class_table, summary_table  # noqa: F401  (re-exported)
from ..grid import save_class_grid


def write_report(result: dict, train: LabelledImages, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = result["_tensors"]
    names = result["generator"]["class_names"]
    K, per = len(names), result["protocol"]["per_class"]

    # Samples: the first 8 generated images of every class.
    take = torch.cat([torch.arange(c * per, c * per + min(8, per)) for c in range(K)])
    save_class_grid(t["fake"][take], names, min(8, per), out / "samples.png")

    # Closest generated/train pairs: the 16 smallest memorisation ratios (none from a refused judge's space).
    if t["ratio"] is not None:
        order = t["ratio"].argsort()[:16]
        pairs = torch.stack([t["fake"][order], train.images[t["nearest"][order]]], 1).flatten(0, 1)
        pair_names = [f"{names[int(t['labels'][i])]} r={float(t['ratio'][i]):.2f}" for i in order]
        save_class_grid(pairs, pair_names, 2, out / "closest_pairs.png")

    acc = result["reference_classifier"]["real_test_accuracy"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    fid_vals = [r["class_fidelity"] or 0.0 for r in result["per_class"]]  # refused: drawn as 0, said in the title
    axes[0].bar(range(K), fid_vals, color="tab:blue")
    axes[0].axhline(acc, color="k", ls="--", lw=1, label=f"reference real-test accuracy {acc:.3f}")
    axes[0].set_title("class fidelity per class" + (" (refused: the judge is near chance)"
                                                    if result["overall"]["class_fidelity"] is None else ""))
    axes[0].set_ylim(0, 1.02)
    axes[0].legend(loc="lower left", fontsize=8)
    intra = [r["fid"] or 0.0 for r in result["per_class"]]
    axes[1].bar(range(K), intra, color="tab:orange")
    axes[1].set_title("intra-class FID")
    for ax in axes:
        ax.set_xticks(range(K))
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "per_class.png", dpi=100)
    plt.close(fig)

    text = [
        "# ganaug evaluation", "",
        f"Generator: `{result['generator']['arch']}`, {result['generator']['channels']}x"
        f"{result['generator']['image_size']}x{result['generator']['image_size']}, {K} classes.", "",
        summary_table(result), "", "## Per class", "", per_class_table(result), "",
        "![per class](per_class.png)", "", "## Samples", "", "![samples](samples.png)", "",
        *(["## Closest generated / training pairs", "",
           "Left: generated; right: its nearest training image in feature space; r = distance "
           "divided by the class's median distance from real test images to their nearest training "
           "image (r near 0 = near-copy).", "", "![closest pairs](closest_pairs.png)", ""]
          if t["ratio"] is not None else []),
        "## Protocol", "", "```json", __import__("json").dumps(result["protocol"], indent=2), "```", "",
    ]
    (out / "report.md").write_text("\n".join(text))
