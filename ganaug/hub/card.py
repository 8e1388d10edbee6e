"""The Hub model card (README.md with YAML front matter) of a generator package."""

from __future__ import annotations

import json

from huggingface_hub import ModelCard, ModelCardData

from ..eval_tables import per_class_table, summary_table
from .generator import Generator


def card_text(data: ModelCardData, body: str) -> str:
    """A model card: ``data`` as the Hub's YAML front matter (written by huggingface_hub), then
    ``body``."""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def model_card(gen: Generator, *, repo_hint: str = "ORG/NAME", local_hint: str | None = None,
               eval_result: dict | None = None,
               license: str = "other", datasets: list[str] | None = None,
               grid_name: str | None = "samples.png", discriminator: bool = False) -> str:
    c, train = gen.config, gen.metadata.get("training", {})
    front = ModelCardData(library_name="ganaug", license=license, datasets=datasets or None,
                          tags=["ganaug", "gan", "class-conditional", "data-augmentation", c.arch])
    data = train.get("data") or {}
    hours = (train.get("elapsed_s") or 0) / 3600
    lines = [
        f"# ganaug {c.arch} generator, {c.channels}x{c.image_size}x{c.image_size}, {c.num_classes} classes", "",
        "A class-conditional GAN generator packaged by ganaug: "
        "`model.safetensors` holds the EMA generator weights, `config.json` the architecture, "
        "the class names and how it was trained."
        + (" It also holds the run's last discriminator (tensors under `discriminator.`), so that "
           "`ganaug train DATA --init SOURCE` fine-tunes G and D together; sampling never reads it."
           if discriminator else ""), "",
        "## Use", "", "```python", "import ganaug",
        (f'G = ganaug.load_generator("{local_hint}")  # or "hf-hub:{repo_hint}" once pushed'
         if local_hint else f'G = ganaug.load_generator("hf-hub:{repo_hint}")  # or the package folder'),
        f'images = G.generate(["{c.class_names[0]}"] * 8, seed=0)'
        f'  # uint8 (8, {c.channels}, {c.image_size}, {c.image_size})',
        "```", "",
        f"Classes (id: name): {', '.join(f'{i}: {n}' for i, n in enumerate(c.class_names))}.", "",
    ]
    if grid_name:
        lines += [f"![samples, one row per class]({grid_name})", ""]
    lines += ["## Training", ""]
    teacher = train.get("distilled_from")
    if teacher:
        init = teacher.get("init") or {}
        net = {"D": "discriminator"}.get(teacher.get("feature_network"), teacher.get("feature_network"))
        real = teacher.get("real_data")
        lines.append(
            f"- distilled from the {teacher.get('arch')} generator `{teacher.get('source')}` (weights sha256 "
            f"{str(teacher.get('weights_sha256'))[:12]}...), feature term in the {net}'s features"
            + (f"; pruned from it, keeping {init['keep']:.0%} of each block's inner channels"
               if init.get("keep") else "")
            + (f"; real images too: `{real.get('source')}`" if real else "; no real images"))
    if data:
        lines.append(f"- data{' (the teacher was trained on)' if teacher else ''}: `{data.get('source')}`, "
                     f"{data.get('num_images')} images, per class {data.get('class_counts')}")
    lines.append(f"- steps: {train.get('steps')}, wall time {hours:.2f} h"
                 + (f" ({train['elapsed_s']:.0f} s)" if train.get("elapsed_s") else ""))
    tc = train.get("train_config") or {}
    if tc:
        keys = ("batch_size", "lr_g", "lr_d", "beta1", "beta2", "n_dis", "loss", "diffaugment",
                "class_balanced", "lecam", "class_noise", "ema_beta", "precision", "seed", "device")
        lines.append("- settings: " + ", ".join(f"{k}={tc.get(k)}" for k in keys if k in tc))
    if train.get("commands"):
        lines += ["", "Reproduce the training run (the commands that made it, in order):", "",
                  "```bash", *train["commands"], "```"]
    if eval_result:
        lines += ["", "## Evaluation", "",
                  f"Against `{eval_result['protocol']['real_split']}` with the protocol below "
                  "(`ganaug eval`; see the ganaug README for what each number means).", "",
                  summary_table(eval_result), "", per_class_table(eval_result), ""]
        if eval_result.get("command"):
            lines += ["Reproduce the evaluation:", "", "```bash", eval_result["command"], "```", ""]
        lines += ["<details><summary>protocol</summary>", "", "```json",
                  json.dumps(eval_result["protocol"], indent=2), "```", "", "</details>"]
    return card_text(front, "\n".join(lines) + "\n")
