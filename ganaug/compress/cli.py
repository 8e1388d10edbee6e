"""``ganaug distill``: a small student generator learns its teacher's images."""

from __future__ import annotations

import argparse
import dataclasses
import shlex


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..data.loaders import CLASS_FROM
    from ..models import list_architectures
    from .distill import DistillConfig

    d = DistillConfig()
    p = sub.add_parser(
        "distill", help="distil a generator into a smaller, faster one (no data needed)",
        description="Train a student generator (default: the lite architecture) to map every (z, class) to "
        "TEACHER's image: pixel L1, an L1 in a network's features and an adversarial term (TinyGAN, arXiv "
        "2009.13829). TEACHER is a package folder, a run folder or hf-hub:org/name. The student's RUN_DIR is a "
        "run folder like `ganaug train`'s: --resume continues it, `ganaug export` packages it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("teacher", metavar="TEACHER", help="the generator to distil")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder of the student")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its checkpoint")
    p.add_argument("--arch", default="lite", choices=list_architectures(), help="student architecture")
    p.add_argument("--prune", type=float, default=None, metavar="KEEP",
                   help="instead of a new student: the teacher itself with only this share of each block's inner "
                   "channels (structured pruning), fine-tuned by the distillation (--arch and widths are ignored)")
    p.add_argument("--g-width", type=int, default=None, help="student generator width (arch default if unset)")
    p.add_argument("--d-width", type=int, default=None, help="discriminator width (arch default if unset)")
    p.add_argument("--g-upsample", default=None, choices=("nearest", "bilinear"),
                   help="how the student's G blocks upsample (default nearest)")
    p.add_argument("--reference", default=None,
                   help="reference classifier folder whose features make the feature term (default: D's features)")
    p.add_argument("--data", default=None, help="real images D also sees as real (optional)")
    p.add_argument("--class-from", choices=CLASS_FROM, default="folder", help="for --data: where the class is written")
    helps = {
        "steps": "student updates in total", "batch_size": "latents per step",
        "lr_g": "student Adam learning rate", "lr_d": "discriminator Adam learning rate",
        "beta1": "Adam beta1", "beta2": "Adam beta2",
        "pixel": "weight of the pixel L1 to the teacher's image",
        "feature": "weight of the L1 in the feature network's features",
        "adversarial": "weight of the hinge loss against D (teacher images are its real ones)",
        "ema_beta": "EMA decay of the exported student", "checkpoint_every": "steps between checkpoints",
        "sample_every": "steps between sample grids", "log_every": "steps between metrics.jsonl lines",
        "seed": "seed of the whole run",
    }
    for name, text in helps.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(getattr(d, name)), default=getattr(d, name), help=text)
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(a: argparse.Namespace) -> None:
    from ..data import load_images
    from ..hub import load_generator
    from .distill import DistillConfig, distill, student_config

    teacher = load_generator(a.teacher)
    reference = None
    if a.reference:
        from ..eval import ReferenceClassifier

        reference = ReferenceClassifier.load(a.reference)
    data = None
    if a.data:
        data = load_images(a.data, image_size=teacher.image_size, channels=teacher.channels, class_from=a.class_from)
    init = None
    if a.prune is not None:
        from .prune import prune_generator

        init = prune_generator(teacher, a.prune)
        student = init.config
    else:
        student = student_config(teacher, a.arch, g_width=a.g_width, d_width=a.d_width, g_upsample=a.g_upsample)
    config = DistillConfig(**{f.name: getattr(a, f.name) for f in dataclasses.fields(DistillConfig)})
    out = distill(teacher, student, config, a.out, reference=reference, data=data, init=init, resume=a.resume,
                  progress=not a.no_progress, command=shlex.join(["ganaug", *a.argv]))
    print(f"done: {out}")
