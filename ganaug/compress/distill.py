"""Distillation: a small student generator learns to map the same (z, class) to its teacher's image.

TinyGAN (Chang & Lu 2020, arXiv 2009.13829) distils BigGAN into a small conditional generator
with a pixel L1 term, a feature term in a network's features, and an adversarial term against a
discriminator that sees the teacher's images as real; it needs no real data (the teacher is the
data). We follow it, with the reference classifier's features (or D's, without one) for the
feature term, and real images optionally added to D's real half.

The student's run folder is a training run folder like `ganaug train`'s (checkpoint with G, D,
G_ema, optimisers and RNG; metrics; sample grids), so ``--resume``, ``load_generator(run)`` and
``ganaug export`` work on it unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..artifacts import weights_digest
from ..configs import JsonConfig
from ..data.dataset import LabelledImages
from ..errors import GanaugError
from ..hub.generator import Generator
from ..models import GANConfig, build_discriminator, build_generator, make_config
from ..pixels import uint8_to_model
from ..training.distributed import pick_device
from ..training.ema import make_ema, update_ema
from ..training.engine import RunFolder
from ..training.losses import d_loss, g_loss
from ..training.rundir import run_lock


@dataclass
class DistillConfig(JsonConfig):
    """How to distil. The loss weights follow TinyGAN's proportions (not tuned here)."""

    json_name = "distillation config"

    steps: int = 3000
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.9
    pixel: float = 1.0  # L1 between student and teacher images
    feature: float = 1.0  # L1 between their features (reference classifier's, else D's)
    adversarial: float = 0.1  # hinge loss against D, which takes the teacher's images as real
    ema_beta: float = 0.999
    checkpoint_every: int = 500
    sample_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "auto"

    def validate(self) -> "DistillConfig":
        for name in ("steps", "batch_size", "checkpoint_every", "sample_every", "log_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise GanaugError(f"{name} must be a positive integer, got {v!r}.")
        if not (self.lr_g > 0 and self.lr_d > 0):
            raise GanaugError("lr_g and lr_d must be positive.")
        if min(self.pixel, self.feature, self.adversarial) < 0 or self.pixel + self.feature == 0:
            raise GanaugError("pixel, feature and adversarial weights must be >= 0, and pixel or feature > 0 "
                              "(the adversarial term alone does not tie the student to its teacher).")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and 0 <= self.ema_beta < 1):
            raise GanaugError("beta1, beta2 and ema_beta must lie in [0, 1).")
        return self


def student_config(teacher: Generator, arch: str = "lite", **overrides: Any) -> GANConfig:
    """The student's model config: the teacher's classes, image size, channels and z size."""
    c = teacher.config
    return make_config(arch, c.num_classes, c.class_names, image_size=c.image_size, channels=c.channels,
                       z_dim=c.z_dim, **overrides)


def distill(teacher: Generator, student: GANConfig, config: DistillConfig, out_dir: str | Path, *,
            reference: Any = None, data: LabelledImages | None = None, init: Generator | None = None,
            resume: bool = False, progress: bool = True, command: str | None = None) -> Path:
    """Train ``student`` to reproduce ``teacher`` and write a run folder at ``out_dir``.

    ``reference``: a :class:`ganaug.eval.ReferenceClassifier` whose features make the feature
    term (else D's features). ``data``: real images D also sees as real (optional; the teacher
    alone is enough). ``init``: the student's starting weights (a pruned teacher, say; its config
    must be ``student``). With ``resume=True`` a killed run continues from its checkpoint.
    """
    with run_lock(out_dir):
        return _distill(teacher, student, config, Path(out_dir), reference, data, init, resume, progress, command)


def _distill(teacher: Generator, student: GANConfig, config: DistillConfig, out: Path, reference: Any,
             data: LabelledImages | None, init: Generator | None, resume: bool, progress: bool,
             command: str | None) -> Path:
    c = teacher.config
    _check_inputs(c, student, reference, data, init)
    teacher_digest = weights_digest(teacher.net)
    run = RunFolder(out, resume)
    if run.resumed:
        if run.checkpoint.get("teacher") != teacher_digest:
            raise GanaugError(f"run {str(out)!r} distils another teacher (its weights differ); resume with "
                              "the same teacher or start a new run.")
        student = GANConfig.from_dict(run.checkpoint["model_config"])
        config = dataclasses.replace(DistillConfig.from_dict(run.checkpoint["train_config"]), steps=config.steps)
    config.validate()
    device = pick_device(config.device)

    torch.manual_seed(config.seed)
    T = teacher.net.to(device).eval()
    G, D = build_generator(student).to(device), build_discriminator(student).to(device)
    G_ema = make_ema(G)
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=(config.beta1, config.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2))
    states = {"G": G, "D": D, "G_ema": G_ema, "opt_g": opt_g, "opt_d": opt_d}
    if init is not None and not run.resumed:
        G.load_state_dict(init.net.state_dict())
        G_ema.load_state_dict(init.net.state_dict())
    run.restore(states, device)
    features = None
    if reference is not None:
        ref = reference.model.to(device).eval().requires_grad_(False)
        features = ref.features

    trained = teacher.metadata.get("training") or {}
    run.write_config(command, {
        "model": student.to_dict(), "train": config.to_dict(),
        # what the student learned from: the teacher, and through it the teacher's training data
        "data": trained.get("data"),
        "distilled_from": {"source": teacher.source, "weights_sha256": teacher_digest, "arch": c.arch,
                           "init": None if init is None else {"source": init.source,
                                                              **init.metadata.get("pruned_from", {})},
                           "real_data": None if data is None else {"source": data.source, **data.fingerprint()},
                           "feature_network": "reference classifier" if reference is not None else "D"},
    })

    pbar = run.steps(config.steps, "distill", progress)
    try:
        for step in pbar:
            losses = _step(T, G, D, opt_g, opt_d, features, data, config, c)
            update_ema(G_ema, G, config.ema_beta, step)
            done = step + 1
            run.check_finite("distillation", done, "Lower --lr-g/--lr-d and continue with --resume.",
                             D=losses["loss_d"], student=losses["loss_g"])
            if done % config.log_every == 0 or done == config.steps:
                row = {"step": done, **{k: round(v, 5) for k, v in losses.items()}, "elapsed_s": round(run.elapsed(), 1)}
                run.log(row)
                pbar.set_postfix(pixel=f"{row['pixel_l1']:.3f}", feature=f"{row['feature_l1']:.3f}", refresh=False)
            if done % config.sample_every == 0 or done == config.steps:
                run.sample_grid(done, G_ema, c.class_names, c.z_dim, c.value_range, seed=config.seed + 1)
            if done % config.checkpoint_every == 0 or done == config.steps:
                run.save(done, states, device, {"model_config": student.to_dict(),
                                                "train_config": config.to_dict(), "teacher": teacher_digest})
    finally:
        pbar.close()
        run.close()
    return out


def _check_inputs(c: GANConfig, student: GANConfig, reference: Any, data: LabelledImages | None,
                  init: Generator | None) -> None:
    """The student, reference, real data and init must fit the teacher (config ``c``)."""
    if (student.num_classes, student.class_names, student.image_size, student.channels, student.z_dim) != \
            (c.num_classes, c.class_names, c.image_size, c.channels, c.z_dim):
        raise GanaugError("the student must have the teacher's classes, image size, channels and z_dim "
                          "(build its config with ganaug.compress.student_config).")
    if reference is not None:
        rc = reference.config
        if (rc.channels, rc.image_size, list(rc.class_names)) != (c.channels, c.image_size, c.class_names):
            raise GanaugError(f"the reference classifier sees {rc.channels}x{rc.image_size}px images of "
                              f"{rc.class_names}; the teacher makes {c.channels}x{c.image_size}px images of "
                              f"{c.class_names}. Use a reference trained on the teacher's data.")
    if data is not None:
        data.require(c.channels, c.image_size, c.class_names, "the teacher")
    if init is not None and init.config != student:
        raise GanaugError("init's config is not the student's; pass init.config as the student config.")


def _step(T: nn.Module, G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
          features: Any, data: LabelledImages | None, config: DistillConfig, c: GANConfig) -> dict[str, float]:
    """One distillation step: D learns the teacher's (and real) images as real and the student's as
    fake, then the student learns pixels, features and fooling D. Returns the step's losses."""
    B, device = config.batch_size, next(G.parameters()).device
    z = torch.randn(B, c.z_dim, device=device)
    y = torch.randint(c.num_classes, (B,), device=device)
    with torch.no_grad():
        target = T(z, y)
    real, y_real = target, y
    if data is not None:  # half of D's real batch from the real images
        idx = torch.randint(len(data), (B // 2,))
        real = torch.cat([target[: B - B // 2], uint8_to_model(data.images[idx], c.value_range).to(device)])
        y_real = torch.cat([y[: B - B // 2], data.labels[idx].to(device)])

    with torch.no_grad():
        fake = G(z, y)
    logits, _ = D(torch.cat([real, fake]), torch.cat([y_real, y]))
    loss_d = d_loss("hinge", logits[:B], logits[B:])
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()

    D.requires_grad_(False)
    fake = G(z, y)
    loss_pixel = (fake - target).abs().mean()
    out_fake, feat_fake = D(fake, y)
    if features is not None:
        loss_feature = (features(fake) - features(target)).abs().mean()
    else:
        with torch.no_grad():
            _, feat_target = D(target, y)
        loss_feature = (feat_fake - feat_target).abs().mean() / feat_target.abs().mean().clamp(min=1e-8)
    loss_adv = g_loss("hinge", out_fake)
    loss_g = config.pixel * loss_pixel + config.feature * loss_feature + config.adversarial * loss_adv
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    D.requires_grad_(True)
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "pixel_l1": loss_pixel.item(),
            "feature_l1": loss_feature.item(), "adversarial": loss_adv.item()}
