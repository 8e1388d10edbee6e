import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

import ganaug.training.loop as loop
from ganaug import GanaugError, TrainConfig, TrainingDiverged, make_config, train
from ganaug.models import list_architectures
from ganaug.training import load_checkpoint, save_checkpoint
from ganaug.training.checkpoint import CHECKPOINT_NAME


def tiny(data, arch="sngan"):
    return make_config(arch, data.num_classes, data.class_names, image_size=32,
                       channels=data.channels, g_width=8, d_width=8, z_dim=32)


def cfg(**kw):
    base = dict(steps=4, batch_size=8, sample_every=2, checkpoint_every=2, log_every=1)
    return TrainConfig(**(base | kw))


@pytest.mark.parametrize("arch", ["sngan", "biggan-lite", "lite"])
def test_short_run_writes_everything(fmnist_slice, tmp_path, arch):
    out = train(fmnist_slice, tiny(fmnist_slice, arch), cfg(feature_matching=1.0, ortho_reg=1e-4),
                tmp_path / "run", progress=False)
    assert (out / CHECKPOINT_NAME).is_file()
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    grid = Image.open(out / "samples" / "step_0000004.png")
    assert grid.height > 10 * 32  # one row per class
    assert (out / "loss_curve.png").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    run_cfg = json.loads((out / "run_config.json").read_text())
    assert run_cfg["model"]["arch"] == arch and run_cfg["train"]["diffaugment"] != "auto"


def _state(run):
    ck = load_checkpoint(run / CHECKPOINT_NAME)
    return ck


def test_resume_reproduces_an_uninterrupted_run_exactly(fmnist_slice, tmp_path):
    mc = tiny(fmnist_slice)
    k = 3
    train(fmnist_slice, mc, cfg(steps=2 * k, checkpoint_every=100, diffaugment="color,translation,cutout"),
          tmp_path / "a", progress=False)
    train(fmnist_slice, mc, cfg(steps=k, checkpoint_every=100, diffaugment="color,translation,cutout"),
          tmp_path / "b", progress=False)
    train(fmnist_slice, mc, cfg(steps=2 * k), tmp_path / "b", resume=True, progress=False)
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert a["step"] == b["step"] == 2 * k
    for part in ("G", "D", "G_ema"):
        for name, t in a[part].items():
            assert torch.equal(t, b[part][name]), f"{part}.{name} differs after resume"
    for name, t in a["opt_g"]["state"][0].items():
        assert torch.equal(t, b["opt_g"]["state"][0][name])
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, 2 * k + 1))


def test_existing_run_needs_resume(fmnist_slice, tmp_path):
    train(fmnist_slice, tiny(fmnist_slice), cfg(steps=1), tmp_path / "r", progress=False)
    with pytest.raises(GanaugError, match="pass --resume"):
        train(fmnist_slice, tiny(fmnist_slice), cfg(steps=2), tmp_path / "r", progress=False)


def test_a_second_writer_of_a_run_folder_is_refused(fmnist_slice, tmp_path):
    from ganaug.training.rundir import run_lock

    with run_lock(tmp_path / "r"):  # another process training into the folder
        with pytest.raises(GanaugError, match="another process is writing run folder"):
            train(fmnist_slice, tiny(fmnist_slice), cfg(steps=1), tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / CHECKPOINT_NAME).exists()
    train(fmnist_slice, tiny(fmnist_slice), cfg(steps=1), tmp_path / "r", progress=False)  # released
    assert (tmp_path / "r" / CHECKPOINT_NAME).exists()


def test_resume_refuses_different_data(fmnist_slice, tmp_path):
    train(fmnist_slice, tiny(fmnist_slice), cfg(steps=1), tmp_path / "r", progress=False)
    other = fmnist_slice.subset(torch.arange(len(fmnist_slice) - 5))
    with pytest.raises(GanaugError, match="data differs"):
        train(other, tiny(fmnist_slice), cfg(steps=2), tmp_path / "r", resume=True, progress=False)


def test_non_finite_loss_stops_and_keeps_last_checkpoint(fmnist_slice, tmp_path, monkeypatch):
    run = tmp_path / "r"
    train(fmnist_slice, tiny(fmnist_slice), cfg(steps=2), run, progress=False)
    before = (run / CHECKPOINT_NAME).read_bytes()
    real_g_loss, calls = loop.g_loss, {"n": 0}

    def poisoned(kind, fake):
        calls["n"] += 1
        loss = real_g_loss(kind, fake)
        return loss * float("nan") if calls["n"] >= 2 else loss

    monkeypatch.setattr(loop, "g_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="(?s)diverged at step 4.*intact"):
        train(fmnist_slice, tiny(fmnist_slice), cfg(steps=6), run, resume=True, progress=False)
    assert (run / CHECKPOINT_NAME).read_bytes() == before


def test_corrupt_checkpoint_is_a_clear_error(fmnist_slice, tmp_path):
    run = tmp_path / "r"
    train(fmnist_slice, tiny(fmnist_slice), cfg(steps=1), run, progress=False)
    data = (run / CHECKPOINT_NAME).read_bytes()
    (run / CHECKPOINT_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(GanaugError, match="corrupt or truncated"):
        train(fmnist_slice, tiny(fmnist_slice), cfg(steps=2), run, resume=True, progress=False)


def test_checkpoint_of_other_networks_is_a_clear_error(fmnist_slice, tmp_path):
    # e.g. a lite run from before the depthwise spectral-norm fix: its D has power-iteration buffers
    run = tmp_path / "r"
    train(fmnist_slice, tiny(fmnist_slice, "lite"), cfg(steps=1), run, progress=False)
    ck = load_checkpoint(run / CHECKPOINT_NAME)
    ck["D"]["blocks.1.conv1.0.parametrizations.weight.0._u"] = torch.zeros(8)
    save_checkpoint(run / CHECKPOINT_NAME, ck)
    with pytest.raises(GanaugError, match="does not fit the networks .* Continue in a new run folder"):
        train(fmnist_slice, tiny(fmnist_slice, "lite"), cfg(steps=2), run, resume=True, progress=False)


def test_bf16_is_refused_where_the_cpu_would_emulate_it_and_resume_takes_an_explicit_precision(
        fmnist_slice, tmp_path, monkeypatch):
    from ganaug import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    mc = tiny(fmnist_slice)
    with pytest.raises(GanaugError, match="no native bf16 .* Use --precision fp32"):
        train(fmnist_slice, mc, cfg(steps=2, precision="bf16"), tmp_path / "bf16", progress=False)
    run = tmp_path / "r"
    train(fmnist_slice, mc, cfg(steps=2, precision="fp32"), run, progress=False)
    # the saved fp32 is kept unless another precision is given explicitly (here one this CPU refuses)
    with pytest.raises(GanaugError, match="no native bf16"):
        train(fmnist_slice, mc, cfg(steps=4, precision="bf16"), run, resume=True, progress=False)
    train(fmnist_slice, mc, cfg(steps=4), run, resume=True, progress=False)
    assert json.loads((run / "run_config.json").read_text())["train"]["precision"] == "fp32"


def test_mismatched_data_and_model(fmnist_slice, tmp_path):
    mc = make_config("sngan", 10, fmnist_slice.class_names, image_size=64, channels=1, g_width=8, d_width=8)
    with pytest.raises(GanaugError, match="the data is 1x32x32 but the model expects 1x64x64"):
        train(fmnist_slice, mc, cfg(steps=1), tmp_path / "r", progress=False)


def test_class_balanced_sampler_sees_rare_classes():
    labels = torch.tensor([0] * 990 + [1] * 10)
    torch.manual_seed(0)
    drawn = labels[loop._BatchSampler(labels, 2, balanced=True).draw(4000)]
    assert 0.45 < drawn.float().mean() < 0.55
    drawn = labels[loop._BatchSampler(labels, 2, balanced=False).draw(4000)]
    assert drawn.float().mean() < 0.03


def test_auto_options_follow_the_data():
    c = TrainConfig().resolved([100, 100], "cpu", False)
    assert c.diffaugment == "color,translation,cutout" and c.class_balanced is False
    assert c.lecam == 0.0
    c = TrainConfig().resolved([6000, 60], "cpu", False)
    assert c.class_balanced is True and c.precision == "fp32" and c.lecam == 0.3  # long-tailed: LeCam on
    assert TrainConfig(lecam=0.0).resolved([6000, 60], "cpu", False).lecam == 0.0  # a choice is kept
    assert TrainConfig().resolved([6000, 6000], "cuda", True).precision == "bf16"
    assert TrainConfig().resolved([6000, 6000], "cpu", False).diffaugment == "off"


def test_sigkill_loses_at_most_one_interval_and_resumes(tmp_path, class_folders):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "ganaug.cli", "train", str(class_folders), "--out", str(run),
            "--g-width", "8", "--d-width", "8", "--batch-size", "4", "--checkpoint-every", "2",
            "--sample-every", "1000", "--log-every", "1", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(args + ["--steps", "100000"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / CHECKPOINT_NAME).exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / CHECKPOINT_NAME).exists(), proc.stderr.read().decode()
    saved_step = load_checkpoint(run / CHECKPOINT_NAME)["step"]
    logged = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    assert max(logged) - saved_step < 2 + 1  # lost at most one checkpoint interval of work
    done = subprocess.run(args + ["--steps", str(saved_step + 3), "--resume"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(run / CHECKPOINT_NAME)["step"] == saved_step + 3
    logged = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    assert logged == list(range(1, saved_step + 4))


def test_lecam_penalty_and_the_conditioning_ramp():
    from ganaug.training.losses import conditioning_strength, lecam_penalty

    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    # real above the fakes' average (0.0) and fakes below the reals' average (1.0) are penalised
    assert lecam_penalty(real, fake, 1.0, 0.0).item() == pytest.approx((4 + 0) / 2 + (0.25 + 16) / 2)
    assert lecam_penalty(torch.tensor([-1.0]), torch.tensor([2.0]), 1.0, 0.0).item() == 0
    assert [conditioning_strength(s, 2, 6) for s in (0, 2, 4, 6, 9)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert conditioning_strength(0, 0, 0) == 1.0
    with pytest.raises(GanaugError, match="conditioning ramp"):
        TrainConfig(steps=10, cond_ramp_start=5, cond_ramp_end=5).validate()
    with pytest.raises(GanaugError, match="conditioning ramp"):
        TrainConfig(steps=10, cond_ramp_start=5).validate()
    with pytest.raises(GanaugError, match="lecam"):
        TrainConfig(lecam=-1).validate()


@pytest.mark.parametrize("arch", list_architectures())
def test_class_condition_strength_and_noise(arch):
    from ganaug.models import build_discriminator, build_generator, make_config

    mc = make_config(arch, 3, ["a", "b", "c"], image_size=32, channels=1)
    torch.manual_seed(0)
    G, D = build_generator(mc).eval(), build_discriminator(mc).eval()
    z = torch.randn(1, mc.z_dim).expand(3, -1)
    y = torch.arange(3)
    with torch.no_grad():
        assert not torch.allclose(G(z, y)[0], G(z, y)[1])
        G.condition.strength = D.cond_strength = 0.0  # the start of a ramp: no class at all
        out = G(z, y)
        assert torch.allclose(out[0], out[1], atol=1e-6) and torch.allclose(out[0], out[2], atol=1e-6)
        x = torch.randn(1, 1, 32, 32).expand(3, -1, -1, -1)
        logits, _ = D(x, y)
        assert torch.allclose(logits, logits[:1].expand(3), atol=1e-5)
        G.condition.strength = 1.0
        G.condition.noise = 0.5
        assert torch.equal(G(z, y), G(z, y))  # eval mode: no noise
        # training mode: noise, none for a class whose scale is 0 (only the condition in training
        # mode, so that batch statistics and power iterations stay out of the comparison)
        G.condition.train()
        G.condition.noise_per_class.copy_(torch.tensor([0.0, 1.0, 1.0]))
        a, b = G(z, y), G(z, y)
        assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1]) and not torch.allclose(a[2], b[2])
    assert "condition.noise_per_class" not in G.state_dict()  # packages are unchanged


def test_resume_is_exact_with_lecam_ramp_and_class_noise(fmnist_slice, tmp_path):
    mc = tiny(fmnist_slice)
    opts = dict(lecam=0.3, cond_ramp_start=1, cond_ramp_end=4, class_noise=0.75, checkpoint_every=100)
    train(fmnist_slice, mc, cfg(steps=6, **opts), tmp_path / "a", progress=False)
    with pytest.warns(UserWarning, match="ramp ends at step 4, after this run's last step"):
        train(fmnist_slice, mc, cfg(steps=3, **opts), tmp_path / "b", progress=False)
    train(fmnist_slice, mc, cfg(steps=6), tmp_path / "b", resume=True, progress=False)
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert a["lecam_ema"] is not None and a["lecam_ema"] == b["lecam_ema"]
    for part in ("G", "D", "G_ema"):
        for name, t in a[part].items():
            assert torch.equal(t, b[part][name]), f"{part}.{name} differs after resume"


def test_snapshots_are_kept_loaded_and_chosen_on_validation(fmnist_slice, tmp_path):
    from ganaug import load_generator
    from ganaug.eval.classifier import SmallCNN
    from ganaug.eval.selection import choose_snapshot
    from ganaug.training.rundir import list_snapshots

    run = train(fmnist_slice, tiny(fmnist_slice), cfg(steps=4, snapshot_every=2), tmp_path / "r", progress=False)
    assert list_snapshots(run) == [2, 4]
    early, last = load_generator(run, step=2), load_generator(run)
    assert early.source.endswith("@step=2") and early.metadata["training"]["steps"] == 2
    assert not torch.equal(early.generate([0], seed=1), last.generate([0], seed=1))
    assert torch.equal(load_generator(run, step=4).generate([0], seed=1), last.generate([0], seed=1))
    with pytest.raises(GanaugError, match=r"no snapshot at step 3; it has \[2, 4\]"):
        load_generator(run, step=3)
    torch.manual_seed(0)
    judge = SmallCNN(1, fmnist_slice.num_classes, width=4)
    choice = choose_snapshot(run, fmnist_slice, judge, n_per_class=8)
    assert choice["chosen_step"] in (2, 4) and [c["step"] for c in choice["candidates"]] == [2, 4]
    row = choice["candidates"][0]
    assert len(row["fidelity"]) == len(row["recall"]) == fmnist_slice.num_classes and 0 <= row["score"] <= 1
    assert json.loads((run / "snapshots" / "choice.json").read_text())["chosen_step"] == choice["chosen_step"]


def test_resume_runs_on_the_device_given_now_not_the_saved_one(fmnist_slice, tmp_path):
    from ganaug.training import save_checkpoint

    out = train(fmnist_slice, tiny(fmnist_slice), cfg(steps=2, device="cpu"), tmp_path / "run", progress=False)
    ckpt = load_checkpoint(out / CHECKPOINT_NAME)
    ckpt["train_config"]["device"] = "cuda:7"  # as if trained on a GPU this machine does not have
    save_checkpoint(out / CHECKPOINT_NAME, ckpt)
    train(fmnist_slice, tiny(fmnist_slice), cfg(steps=4, device="cpu"), out, resume=True, progress=False)
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == 4
