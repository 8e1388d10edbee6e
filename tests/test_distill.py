"""Distillation: the student learns its teacher's images, resumes exactly, and refuses mismatches."""

import json
from pathlib import Path

import pytest
import torch

from ganaug import GanaugError, Generator, load_generator, make_config
from ganaug.compress import DistillConfig, distill, student_config
from ganaug.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def teacher():
    torch.manual_seed(1)
    return Generator.from_config(make_config("sngan", 3, ["a", "b", "c"], image_size=32, channels=1,
                                             g_width=8, d_width=8))


def cfg(**kw):
    return DistillConfig(**{**dict(steps=40, batch_size=16, lr_g=2e-3, log_every=5, sample_every=40,
                                   checkpoint_every=20, device="cpu"), **kw})


def l1_to_teacher(gen, t):
    labels = torch.arange(3).repeat(20)
    return (gen.generate(labels, seed=9).float() - t.generate(labels, seed=9).float()).abs().mean().item()


def test_student_learns_the_teacher_and_is_a_run_folder(tmp_path):
    t = teacher()
    student = student_config(t, "lite", g_width=8, d_width=8)
    before = l1_to_teacher(Generator.from_config(student), t)
    run = distill(t, student, cfg(steps=120, checkpoint_every=120), tmp_path / "run", progress=False)
    gen = load_generator(run)  # a run folder like `ganaug train`'s
    assert gen.config.arch == "lite" and gen.class_names == ["a", "b", "c"]
    after = l1_to_teacher(gen, t)
    assert after < 0.5 * before, (before, after)
    assert (run / "samples" / "step_0000120.png").is_file() and (run / "loss_curve.png").is_file()


def test_resume_continues_exactly(tmp_path):
    t = teacher()
    student = student_config(t, "lite", g_width=8, d_width=8)
    distill(t, student, cfg(steps=40), tmp_path / "straight", progress=False)
    distill(t, student, cfg(steps=20), tmp_path / "resumed", progress=False)
    with pytest.raises(GanaugError, match="already holds a run"):
        distill(t, student, cfg(steps=40), tmp_path / "resumed", progress=False)
    distill(t, student, cfg(steps=40), tmp_path / "resumed", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.safetensors")["G_ema"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.safetensors")["G_ema"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = teacher()
    torch.nn.init.normal_(next(other.net.parameters()))
    with pytest.raises(GanaugError, match="distils another teacher"):
        distill(other, student, cfg(steps=60), tmp_path / "resumed", resume=True, progress=False)


def test_mismatches_are_refused(tmp_path):
    from ganaug.eval import ReferenceClassifier

    t = teacher()
    with pytest.raises(GanaugError, match="the teacher's classes, image size, channels and z_dim"):
        distill(t, make_config("lite", 3, ["a", "b", "c"], image_size=32, channels=3), cfg(), tmp_path / "x")
    ref = ReferenceClassifier.load(REPO / "pretrained" / "fashion-mnist-reference-classifier")
    with pytest.raises(GanaugError, match="Use a reference trained on the teacher's data"):
        distill(t, student_config(t), cfg(), tmp_path / "y", reference=ref)
    with pytest.raises(GanaugError, match="pixel or feature > 0"):
        DistillConfig(pixel=0, feature=0).validate()


def test_a_second_writer_of_a_distill_run_is_refused(tmp_path):
    from ganaug.training.rundir import run_lock

    t = teacher()
    with run_lock(tmp_path / "s"), pytest.raises(GanaugError, match="another process is writing"):
        distill(t, student_config(t, "lite", g_width=8, d_width=8), cfg(steps=1), tmp_path / "s", progress=False)


def test_cli_distils_the_shipped_generator_with_the_reference_features(tmp_path):
    from ganaug.cli import main

    rc = main(["distill", str(REPO / "pretrained" / "fashion-mnist-sngan"), "--out", str(tmp_path / "s"),
               "--g-width", "8", "--d-width", "8", "--g-upsample", "bilinear", "--steps", "3", "--batch-size", "8",
               "--device", "cpu", "--reference", str(REPO / "pretrained" / "fashion-mnist-reference-classifier"),
               "--no-progress"])
    assert rc == 0
    run = (tmp_path / "s" / "run_config.json").read_text()
    assert "reference classifier" in run and "ganaug distill" in run
    assert json.loads(run)["model"]["g_upsample"] == "bilinear"


def test_exported_student_card_names_its_teacher(tmp_path):
    from ganaug.hub import export_run

    t = teacher()
    t.source = "teacher-folder"
    run = distill(t, student_config(t, "lite", g_width=8, d_width=8), cfg(steps=2), tmp_path / "run", progress=False)
    card = (export_run(run, tmp_path / "pkg") / "README.md").read_text()
    assert "distilled from the sngan generator `teacher-folder`" in card and "no real images" in card
