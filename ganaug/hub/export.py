"""``ganaug export``: a training run folder -> a self-describing generator package."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import GanaugError
from .card import model_card
from .loading import load_generator


def export_run(run_dir: str | Path, out_dir: str | Path, *, dtype: str = "float32",
               eval_dir: str | Path | None = None, license: str = "other",
               datasets: list[str] | None = None, repo_hint: str = "ORG/NAME",
               discriminator: bool = False) -> Path:
    """Write model.safetensors (EMA generator), config.json, samples.png and README.md.

    The evaluation table comes from ``eval_dir/eval.json`` (default ``RUN_DIR/eval``) when it
    exists; a card never shows numbers that were not measured. ``discriminator`` adds the run's
    last discriminator, so that the package can be fine-tuned (``ganaug train --init``).
    """
    run_dir, out = Path(run_dir), Path(out_dir)
    gen = load_generator(run_dir)
    if "training" not in gen.metadata:
        raise GanaugError(f"{str(run_dir)!r} is not a training run folder.")
    d_state = None
    if discriminator:
        from ..training.checkpoint import CHECKPOINT_NAME, load_checkpoint

        d_state = load_checkpoint(run_dir / CHECKPOINT_NAME)["D"]
    eval_path = Path(eval_dir or run_dir / "eval") / "eval.json"
    eval_result = json.loads(eval_path.read_text()) if eval_path.is_file() else None
    if eval_result is not None:
        gen.metadata["evaluation"] = {"overall": eval_result["overall"],
                                      "protocol": eval_result["protocol"],
                                      "reference_classifier": eval_result["reference_classifier"]}
    out.mkdir(parents=True, exist_ok=True)
    gen.sample_grid(8, seed=0).save(out / "samples.png")
    card = model_card(gen, repo_hint=repo_hint, local_hint=str(out_dir), eval_result=eval_result,
                      license=license, datasets=datasets, discriminator=discriminator)
    return gen.save_pretrained(out, dtype=dtype, card=card, discriminator=d_state)
