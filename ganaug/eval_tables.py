"""An evaluation result (``ganaug eval``'s ``eval.json``) as Markdown tables: what the report, the
CLI and a model card print. Plain text from a dict, so that the package layer (the card) can
render it without the evaluation code."""

from __future__ import annotations


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
