"""Turning an evaluation result into a table, a Markdown report and PNG plots."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.dataset import LabelledImages
from ..grid import save_class_grid


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pair(a, b, digits: int, sep: str) -> str:
    return "refused" if a is None else f"{a:.{digits}f}{sep}{b:.{digits}f}"


def summary_table(result: dict) -> str:
    """The headline table as Markdown (also printed by the CLI); a degenerate judge's figures are
    refused, and the reason comes first."""
    o, p = result["overall"], result["protocol"]
    ref = result["reference_classifier"]
    acc, bal = ref["real_test_accuracy"], ref.get("real_test_balanced_accuracy")
    feat = p["features"]["name"]
    judge = f"its real-test accuracy is {acc:.4f}" + (f", balanced {bal:.4f}" if bal is not None else "")
    rows = [
        ("FID", "refused" if o["fid"] is None else f"{o['fid']:.3f}",
         f"{feat} features, {p['n_fake']} generated vs {p['n_real']} real"),
        ("KID", _pair(o["kid"], o["kid_std"], 5, " +- "), p["kid"]),
        ("IS", _pair(o["is"], o["is_std"], 3, " +- "), f"{feat} logits, {p['is_splits']} splits"),
        ("precision / recall", _pair(o["precision"], o["recall"], 3, " / "), f"k={p['k']}"),
        ("density / coverage", _pair(o["density"], o["coverage"], 3, " / "), f"k={p['k']}"),
        ("class fidelity", "refused" if o["class_fidelity"] is None else f"{o['class_fidelity']:.4f}",
         f"reference classifier; {judge}"),
        ("CAS", _fmt(o["cas"], 4), "classifier trained on generated only, tested on real test"),
    ]
    mem = result["memorisation"]
    flagged = mem["flagged_classes"]
    rows.append(("memorisation flags", "refused" if mem.get("refused") else ", ".join(flagged) if flagged else "none",
                 "classes with > 10% of images closer to a training image than 99% of real test images"))
    lines = ["| metric | value | how |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    refused = (result.get("judge") or {}).get("refusal")
    return (f"**{refused}**\n\n" if refused else "") + "\n".join(lines)


def per_class_table(result: dict) -> str:
    # the real counts beside the figures: a class with few training images is where a generator fails
    lines = ["| class | real train images | real images compared | fidelity | CAS | intra-FID | precision | recall | "
             "memorisation ratio (median) | copy-close |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["per_class"]:
        m = r.get("memorisation") or {}
        flag = " (flagged)" if m.get("flagged") else ""
        lines.append(f"| {r['class']} | {r.get('n_train', '-')} | {r.get('n_real', '-')} | "
                     f"{_fmt(r['class_fidelity'])} | {_fmt(r.get('cas'))} | "
                     f"{_fmt(r['fid'], 2)} | "
                     f"{_fmt(r.get('precision'))} | {_fmt(r.get('recall'))} | "
                     f"{_fmt(m.get('median_ratio'), 2)} | {_fmt(m.get('copy_close_fraction'))}{flag} |")
    return "\n".join(lines)


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
