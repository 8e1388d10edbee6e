"""Distributed training and bank generation on CPU (gloo), launched by torchrun as a user would.

Two processes with a global batch of 8 must train what one process trains with BatchNorm groups of
4 (the per-process batch): that is the configuration without batch statistics across ranks. Both
ranks' weights and buffers are compared bit for bit inside the run before every checkpoint
(``check_consistency``, whose own failure is tested below), so a finished run means they agreed.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganaug import GanaugError, SyntheticDataset, TrainConfig
from ganaug.cli import main as cli
from ganaug.models.layers import ClassCondition, GhostBatchNorm2d
from ganaug.training import diff_augment, load_checkpoint
from ganaug.training.distributed import Dist

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    # containers often need the loopback interface named for gloo
    return os.environ | {"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "NO_ALBUMENTATIONS_UPDATE": "1"}


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master-addr=127.0.0.1",
           f"--master-port={free_port()}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env())


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def train_args(fmnist_dir, out, steps, *extra):
    return ["train", str(fmnist_dir), "--max-per-class", "40", "--g-width", "8", "--d-width", "8", "--z-dim", "32",
            "--batch-size", "8", "--checkpoint-every", "2", "--sample-every", "2", "--log-every", "1",
            "--no-progress", "--device", "cpu", "--class-noise", "0.5", "--lecam", "0.1",
            "--steps", str(steps), "--out", str(out), *extra]


def one_process(*args) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank runs
    try:
        assert cli(list(args)) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(fmnist_dir, tmp_path_factory):
    """A 4-step run on two processes and the same run on one process with BatchNorm groups of 4."""
    root = tmp_path_factory.mktemp("ddp")
    ok(torchrun("-m", "ganaug", *train_args(fmnist_dir, root / "two", 4)))
    one_process(*train_args(fmnist_dir, root / "one", 4, "--bn-group", "4"))
    return root


def assert_same_run(a: Path, b: Path) -> None:
    """Same step, same RNG state, same losses, and models equal to float tolerance: ranks sum their
    gradients in another order, and Adam turns a last-bit difference of a near-zero gradient into up
    to lr (2e-4) per step."""
    ca, cb = load_checkpoint(a / "checkpoint.safetensors"), load_checkpoint(b / "checkpoint.safetensors")
    assert ca["step"] == cb["step"]
    assert torch.equal(ca["rng"]["torch"], cb["rng"]["torch"])
    for part in ("G", "D", "G_ema"):
        assert ca[part].keys() == cb[part].keys()
        for k, t in ca[part].items():
            torch.testing.assert_close(t, cb[part][k], atol=2e-3, rtol=0, msg=f"{part}.{k}")
    rows = [[json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()] for r in (a, b)]
    assert [r["step"] for r in rows[0]] == [r["step"] for r in rows[1]]
    for ra, rb in zip(*rows):
        for key in ("loss_d", "loss_g", "d_real", "d_fake"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-3, abs=1e-4), (ra, rb)


def test_two_processes_train_what_one_process_trains(runs):
    assert_same_run(runs / "two", runs / "one")
    run_cfg = json.loads((runs / "two" / "run_config.json").read_text())
    assert run_cfg["processes"] == 2 and run_cfg["train"]["bn_group"] == 4  # recorded, so any world size resumes
    assert run_cfg["commands"][0].startswith("torchrun --nproc_per_node=2 -m ganaug train")
    assert sorted(p.name for p in (runs / "two" / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]


def test_a_two_process_checkpoint_resumes_on_one(runs, fmnist_dir, tmp_path):
    shutil.copytree(runs / "two", tmp_path / "resumed")
    one_process(*train_args(fmnist_dir, tmp_path / "resumed", 6, "--resume"))
    one_process(*train_args(fmnist_dir, tmp_path / "straight", 6, "--bn-group", "4"))
    assert_same_run(tmp_path / "resumed", tmp_path / "straight")


def test_a_one_process_checkpoint_resumes_on_two(runs, fmnist_dir, tmp_path):
    one_process(*train_args(fmnist_dir, tmp_path / "r", 2, "--bn-group", "4"))
    ok(torchrun("-m", "ganaug", *train_args(fmnist_dir, tmp_path / "r", 4, "--resume")))
    assert_same_run(tmp_path / "r", runs / "one")
    commands = json.loads((tmp_path / "r" / "run_config.json").read_text())["commands"]
    assert commands[0].startswith("ganaug train") and commands[1].startswith("torchrun --nproc_per_node=2")


def test_a_bank_written_by_two_processes_equals_the_single_process_bank(runs, tmp_path):
    ok(torchrun("-m", "ganaug", "sample", str(runs / "one"), "--bank", str(tmp_path / "two"), "--per-class", "30",
                "--chunk-size", "64", "--device", "cpu"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = SyntheticDataset(str(runs / "one"), 30, cache=tmp_path / "one", chunk_size=64)
        single.fill_cache()
    finally:
        torch.set_num_threads(threads)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert len(files) == 1 + 5  # the manifest and 300 images in 5 chunks
    assert files == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*") if p.is_file())
    for f in files:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f


def test_inconsistent_launches_fail_on_every_rank_with_the_reason(tmp_path):
    ok(torchrun(str(HERE / "ddp_worker.py"), str(tmp_path)))
    for rank in (0, 1):
        errors = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert "ranks disagree on the training data" in errors["data"] and "same images" in errors["data"]
        assert "multiple of 2" in errors["batch"]
        assert "rank 0 and rank 1 in 1 tensor(s)" in errors["consistency"]
        assert "D.blocks.0.conv1.parametrizations.weight.0._u" in errors["consistency"]


def test_a_rank_that_cannot_reach_the_rendezvous_stops_with_a_clear_error(fmnist_dir, tmp_path):
    e = env() | {"RANK": "1", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(free_port())}  # nobody listens there
    proc = subprocess.run([sys.executable, "-m", "ganaug", *train_args(fmnist_dir, tmp_path / "r", 2),
                           "--dist-timeout", "3"], capture_output=True, text=True, timeout=300, env=e)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "could not join the other processes at 127.0.0.1" in proc.stderr and "within 3 s" in proc.stderr


# -- the pieces, in one process ---------------------------------------------------------------
def test_rank_rows_of_diffaugment_and_class_noise_are_the_rows_of_the_whole_batch():
    x = torch.randn(8, 3, 16, 16)
    torch.manual_seed(0)
    whole = diff_augment(x, "color,translation,cutout")
    parts = []
    for rank in range(2):
        torch.manual_seed(0)
        rows = Dist(rank, 2).rows(8)
        parts.append(diff_augment(x[rows], "color,translation,cutout", torch.arange(8)[rows], 8))
    torch.testing.assert_close(torch.cat(parts), whole)

    cond, y = torch.randn(8, 5), torch.arange(8) % 5
    c = ClassCondition(5).train()
    c.noise = 0.5
    torch.manual_seed(1)
    whole = c(cond, y)
    parts = []
    for rank in range(2):
        torch.manual_seed(1)
        c.rows = (Dist(rank, 2).rows(8).start, 8)
        parts.append(c(cond[4 * rank:4 * rank + 4], y[4 * rank:4 * rank + 4]))
    torch.testing.assert_close(torch.cat(parts), whole)


def test_ghost_batchnorm_normalises_each_group_and_averages_their_statistics():
    x = torch.randn(8, 3, 4, 4) * 3 + 1
    ghost = GhostBatchNorm2d(3)
    ghost.group = 4
    out = ghost(x)
    ranks = [torch.nn.BatchNorm2d(3) for _ in range(2)]  # what two ranks compute, then average
    torch.testing.assert_close(out, torch.cat([bn(half) for bn, half in zip(ranks, x.split(4))]))
    torch.testing.assert_close(ghost.running_mean, (ranks[0].running_mean + ranks[1].running_mean) / 2)
    torch.testing.assert_close(ghost.running_var, (ranks[0].running_var + ranks[1].running_var) / 2)
    assert ghost.state_dict().keys() == torch.nn.BatchNorm2d(3).state_dict().keys()
    ghost.group = 0
    torch.testing.assert_close(ghost(x), torch.nn.BatchNorm2d(3)(x))  # group 0: a plain BatchNorm


def test_bn_group_is_checked():
    with pytest.raises(GanaugError, match="bn_group"):
        TrainConfig(bn_group=-1).validate()
