"""The verdict and the written report of ``bench-downstream``. Every choice is made on validation."""

from __future__ import annotations

from pathlib import Path

import torch

from .bootstrap import LEVEL, paired_interval
from .choice import choose
from .variants import CLASSICAL

GANAUG = "ganaug-recipe"
# the chosen recipe with no generated image: a baseline like the classical ones
WITHOUT_GENERATED = "recipe-without-generated"


def verdict(results: dict[str, dict], leaky: bool = False, test_labels: torch.Tensor | None = None,
            baseline_choice: dict | None = None) -> dict:
    """The best baseline by validation (every variant without generated images), ganaug's recipe
    against it on test (per-seed paired differences), and what to recommend: ganaug only if it won
    on validation (where every choice is made) and that win held on test (where nothing is chosen;
    a validation win that test does not confirm is not worth a generator). With a ``leaky``
    generator (one that saw more than the training part) the margin is an upper bound, never a
    recommendation. With ``test_labels`` and runs that kept their test hits, a paired bootstrap
    interval over test images goes beside the spread over seeds (:mod:`ganaug.bench.bootstrap`).
    ``baseline_choice`` (:func:`ganaug.bench.choice.choose`, k-fold included) names the best baseline;
    without it the validation rule alone chooses, a tie drawn by name, never by list order."""
    val = {v: r["val_balanced_accuracy_mean"] for v, r in results.items()}
    classical = {v: m for v, m in val.items() if v in CLASSICAL or v == WITHOUT_GENERATED}
    out: dict = {}
    if classical:
        if baseline_choice is None:
            baseline_choice = choose({v: [{"val_balanced_accuracy": m}] for v, m in classical.items()}, None)
        bc = baseline_choice["chosen"]
        out.update(best_baseline=bc, best_baseline_test=results[bc]["balanced_accuracy_mean"],
                   baseline_rule=baseline_choice["rule"], baseline_choice_sentence=baseline_choice["sentence"],
                   baseline_kfold_means=baseline_choice.get("kfold_means"))
        out["recommendation"] = bc
    if classical and GANAUG in results:
        g, b = results[GANAUG], results[bc]
        paired = [100 * (x["balanced_accuracy"] - y["balanced_accuracy"]) for x, y in zip(g["runs"], b["runs"])]
        d = torch.tensor(paired, dtype=torch.float64)
        margin_val = 100 * (g["val_balanced_accuracy_mean"] - b["val_balanced_accuracy_mean"])
        out.update(margin_points=round(float(d.mean()), 2),
                   margin_std=round(float(d.std()), 2) if len(d) > 1 else 0.0,
                   paired_differences=[round(x, 2) for x in paired], margin_val_points=round(margin_val, 2))
        interval = paired_interval(g["runs"], b["runs"], test_labels) if test_labels is not None else None
        out["test_interval"] = list(interval) if interval else None
        noise = ""
        if interval:
            within = interval[0] <= 0 <= interval[1]
            noise = (f"; {int(100 * LEVEL)} % bootstrap interval over test images [{interval[0]:+.2f}, "
                     f"{interval[1]:+.2f}]{': within noise' if within else ''}")
        won_val, won_test = margin_val > 0, float(d.mean()) > 0
        out["recommendation"] = GANAUG if won_val and won_test and not leaky else bc
        if leaky:
            advice = (f"LEAKY UPPER BOUND, not a result: the generator saw more than the training part, so "
                      f"this is what a generator of its quality could add at most; use {bc}.")
        elif won_val and won_test:
            advice = f"It also won on validation ({margin_val:+.2f} points): use ganaug's recipe."
        elif won_val:
            advice = (f"It won on validation ({margin_val:+.2f} points), but test does not confirm it: "
                      f"use {bc}, not ganaug.")
        else:
            advice = f"It did not win on validation ({margin_val:+.2f} points): use {bc}, not ganaug."
        out["sentence"] = (
            f"{GANAUG}{' (leaky upper bound)' if leaky else ''} {'beat' if won_test else 'did not beat'} the best baseline by validation ({bc}) on "
            f"test: {float(d.mean()):+.2f} +- {out['margin_std']:.2f} points of balanced accuracy (paired over "
            f"{len(d)} seeds{noise}). " + advice)
    elif classical:
        out["sentence"] = f"best baseline by validation: {bc}."
    return out


def write_report(summary: dict, out: Path) -> None:
    """``report.md`` (split, verdict, results, choices, the recipe's bank, the generator) and its two
    figures (test accuracy per class, the recommended variant's confusion matrix) in ``out``."""
    res, names, d = summary["results"], summary["data"]["class_names"], summary["data"]
    lines = _header_lines(summary)
    lines += _choice_lines(summary)
    if summary.get("recipe_search"):
        lines += _recipe_search_lines(summary["recipe_search"], names)
    lines += _generator_lines(summary["generator"], d)
    lines += _generator_eval_lines(summary["generator"].get("eval"), names, d["train_counts"])
    machines = sorted({run.get("machine", "not recorded") for r in res.values() for run in r["runs"]})
    lines += ["", "Machines the runs were made on: " + "; ".join(f"`{m}`" for m in machines) + "."]
    lines += ["", "![per class](per_class.png)", "", "![confusion matrix](confusion.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    _plots(res, names, summary["verdict"].get("recommendation") or next(iter(res)), out)


def _header_lines(summary: dict) -> list[str]:
    """What was split how, the verdict, and the results table."""
    res, cfg, d = summary["results"], summary["config"], summary["data"]
    split = (f"long-tailed split of the training data, imbalance ratio {cfg['imbalance_ratio']:g}"
             if cfg["imbalance_ratio"] is not None else "the data as it is")
    if d.get("protocol", "none") != "none":
        split = (f"the private part of the {d['protocol']} protocol, {split}; the public part "
                 f"({', '.join(d['public_classes'])}: {d['public_counts']}) only trains the public generator")
        if cfg.get("classifier_init") == "public":
            split += (" and the public classifier that every classifier here starts from (plain cross-entropy "
                      "on the public part, `runs/public-classifier`)")
    if cfg.get("classifier_init") == "generated":
        split += (f"; every classifier here starts from the generated classifier (plain cross-entropy on "
                  f"{cfg['classifier_init_images']} images per class of the generator below, "
                  "`runs/generated-classifier`)")
    lines = ["# ganaug downstream benchmark", "",
             f"Training part ({split}): {d['train_counts']}; validation: {d['val_counts']}; test "
             f"({d['test']}): {d['test_counts']}. Images seen by every classifier and the generator: "
             f"{d.get('image_size_note', 'size not recorded')}. {cfg['seeds']} seeds per variant; the same ResNet, "
             f"{summary['classifier_steps']} steps of batch {cfg['batch_size']} (one-cycle Adam) and random "
             "shifts for all. Every choice (post-hoc tau, the recipe, the best baseline) is made on validation.",
             "", f"**{summary['verdict'].get('sentence') or 'No verdict: no baseline variant was run.'}**", "",
             "| variant | balanced accuracy (test) | rare-class accuracy (test) | balanced accuracy (validation) |",
             "|---|---|---|---|"]
    leaky = summary["generator"].get("leaky")
    for v, r in res.items():
        label = f"{v} (leaky upper bound)" if leaky and v == GANAUG else v
        lines.append(f"| {label} | {100 * r['balanced_accuracy_mean']:.2f} +- {100 * r['balanced_accuracy_std']:.2f} | "
                     f"{100 * r['rare_accuracy_mean']:.2f} | {100 * r['val_balanced_accuracy_mean']:.2f} |")
    return lines


def _choice_lines(summary: dict) -> list[str]:
    """How the best baseline was chosen, the seeds, the paired differences, post-hoc's tau."""
    res, v = summary["results"], summary["verdict"]
    lines: list[str] = []
    if v.get("baseline_choice_sentence"):
        lines += ["", f"Best baseline chosen by the rule '{v['baseline_rule']}': {v['baseline_choice_sentence']}."]
        if v.get("baseline_kfold_means"):
            lines[-1] += " Mean held-out balanced accuracy over the folds: " + ", ".join(
                f"{c} {100 * m:.2f}" for c, m in v["baseline_kfold_means"].items()) + "."
    if summary.get("seeds_note"):
        lines += ["", f"Seeds: {summary['seeds_note']}."]
    if "paired_differences" in v:
        lines += ["", f"Paired test differences, {GANAUG} minus {v['best_baseline']}, per seed (points): "
                  f"{v['paired_differences']}."]
    if "posthoc-la" in res:
        lines += ["", "post-hoc tau chosen on validation, per seed: "
                  f"{[r['tau'] for r in res['posthoc-la']['runs']]}."]
    return lines


def _recipe_search_lines(s: dict, names: list[str]) -> list[str]:
    """The recipe candidates on validation, how one was chosen, and the chosen recipe's bank per class."""
    lines = ["", f"Recipe search ({s['seeds']} seed(s) each, validation only; chosen: candidate {s['chosen']}):",
             "", "| # | recipe | balanced accuracy (validation) |", "|---|---|---|"]
    for i, c in enumerate(s["candidates"]):
        lines.append(f"| {i}{' (chosen)' if i == s['chosen'] else ''} | `{c['recipe']}` | "
                     f"{100 * c['val_balanced_accuracy_mean']:.2f} |")
    if s.get("choice"):
        ch = s["choice"]
        lines += ["", f"The recipe was chosen by the rule '{ch['rule']}': {ch['sentence']}."]
        if ch.get("kfold_means"):
            lines[-1] += " Mean held-out balanced accuracy over the folds: " + ", ".join(
                f"{c} {100 * m:.2f}" for c, m in ch["kfold_means"].items()) + "."
    if s.get("without_generated"):
        lines += ["", f"The chosen recipe without generated images (what they add) is `{s['without_generated']}` "
                  "in the table above; it counts as a baseline."]
    bank = s["bank"]
    cost = f" Building it (generating, judging, choosing) took {s['bank_cpu_seconds']:.0f} CPU-seconds." \
        if s.get("bank_cpu_seconds") is not None else ""
    if s.get("refresh_cpu_seconds_per_run") is not None:
        cost += (f" Choosing the bank again against the classifier in training cost "
                 f"{s['refresh_cpu_seconds_per_run']:.0f} CPU-seconds per classifier run.")
    lines += ["", "Bank of the chosen recipe, per class (real images, images generated, generated kept, the "
              "filter's pass rate, share of the generated draws; for the band filter, generated images "
              "inside, in and beyond the band, and those in the band that lie within another class's band "
              f"too, which band_soft relabels).{cost}", "",
              "| class | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for field, fmt in (("real", str), ("generated_pool", str), ("generated", str),
                       ("judge_acceptance", lambda a: "-" if a is None else f"{a:.2f}"),
                       ("draw_probability", lambda a: f"{a:.2f}"),
                       ("inside", str), ("in_band", str), ("beyond", str), ("near_other", str)):
        if all(field in bank[n] for n in names):  # records made before a field existed lack it
            lines.append(f"| {field} | " + " | ".join(fmt(bank[n][field]) for n in names) + " |")
    return lines


def _generator_lines(g: dict, d: dict) -> list[str]:
    """Which generator the recipe used, what it saw, and whether its row is a leaky upper bound."""
    if not g["source"]:
        return []
    lines = ["", f"Generator: `{g['source']}`; trained only on the training part: {g['trained_on_training_part']}."]
    ft = g.get("fine_tuned_from")
    if ft:
        lines[-1] += (f" Fine-tuned from `{ft['init']}`, which saw `{ft['source']}` ({ft['num_images']} images, "
                      f"class counts {ft['class_counts']}); it overlaps the split the training part was cut "
                      f"from: {'yes' if ft['overlaps_training'] else 'no'}.")
    if g.get("leaky"):
        seen = g.get("trained_on") or {}
        lines[-1] += (f" **It saw {seen.get('num_images')} images (class counts {seen.get('class_counts')}), "
                      f"more than the training part's {sum(d['train_counts'])}: its row is a leaky upper "
                      "bound, not a result.**")
    return lines


def _plots(res: dict, names: list[str], shown: str, out: Path) -> None:
    """per_class.png (test accuracy per class, every variant) and confusion.png (``shown``, seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / len(res)
    for i, (name, r) in enumerate(res.items()):
        ax.bar([c + i * width for c in range(len(names))], r["per_class_mean"], width, label=name)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(names))])
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(out / "per_class.png", dpi=100)
    plt.close(fig)

    conf = torch.tensor(res[shown]["runs"][0]["confusion"], dtype=torch.float64)
    conf = conf / conf.sum(1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(conf.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)))
    ax.set_yticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_yticklabels(names, fontsize=7)
    ax.set_title(f"{shown} (recommended), seed 0 (rows: true class)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=100)
    plt.close(fig)


def _generator_eval_lines(e: dict | None, names: list[str], train_counts: list[int]) -> list[str]:
    """The generator-evaluation paragraph and per-class table; a refused judge gives its reason and CAS only."""
    lines: list[str] = []
    if not e:
        return lines
    if e.get("judge_refusal"):
        lines += ["", f"Generator evaluation ({e['n']} generated images against the real test split): "
                  f"**{e['judge_refusal']}**" + (f" CAS {e['cas']:.3f} (a classifier of generated images only, on the "
                                                 "real test split)." if e.get("cas") is not None else ""), "",
                  "| class | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
                  "| real training images | " + " | ".join(str(n) for n in train_counts) + " |"]
        if e.get("cas_per_class"):
            lines.append("| CAS | " + " | ".join("-" if v is None else f"{v:.2f}" for v in e["cas_per_class"]) + " |")
    else:
        bal = e.get("reference_real_test_balanced_accuracy")
        lines += ["", f"Generator evaluation ({e['n']} generated images against the real test split, in the "
                  f"feature space of a reference classifier with real-test accuracy "
                  f"{e['reference_real_test_accuracy']:.3f}"
                  + (f", balanced {bal:.3f}" if bal is not None else "") + "; details in `generator-eval/report.md`): "
                  f"FID {e['fid']:.3f}, KID {e['kid']:.4f}, precision {e['precision']:.3f}, recall "
                  f"{e['recall']:.3f}, class fidelity {e['class_fidelity']:.3f}"
                  + (f", CAS {e['cas']:.3f} (a classifier of generated images only, on the real test split)"
                     if e.get("cas") is not None else "") + "; memorisation flagged in: "
                  f"{', '.join(e['memorisation_flagged_classes']) or 'no class'}.", "",
                  "| class | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
                  "| real training images | " + " | ".join(str(n) for n in train_counts) + " |",
                  "| class fidelity | " + " | ".join(f"{f:.2f}" for f in e["class_fidelity_per_class"]) + " |"]
        for field, label in (("cas_per_class", "CAS"), ("precision_per_class", "precision"),
                             ("recall_per_class", "recall")):
            if field in e:
                lines.append(f"| {label} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in e[field]) + " |")
    return lines
