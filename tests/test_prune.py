"""Structured pruning: a valid smaller generator of every architecture, channels chosen better
than at random, and a distillation that starts from it."""

import functools
from pathlib import Path
from unittest import mock

import pytest
import torch

from ganaug import GanaugError, Generator, load_generator, list_architectures, make_config
from ganaug.compress import prune as P

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "pretrained" / "fashion-mnist-sngan"


@pytest.mark.parametrize("arch", list_architectures())
def test_pruned_generator_is_a_smaller_package_of_any_architecture(arch, tmp_path):
    torch.manual_seed(0)
    g = Generator.from_config(make_config(arch, 3, ["a", "b", "c"], image_size=32, channels=1, g_width=8,
                                          d_width=8))
    p = P.prune_generator(g, 0.5)
    assert p.config.g_hidden_ratio == 0.5 and p.config.g_hidden_widths() == [16, 8, 4]
    assert sum(t.numel() for t in p.net.parameters()) < sum(t.numel() for t in g.net.parameters())
    p.save_pretrained(tmp_path / "pruned")
    again = load_generator(tmp_path / "pruned")
    assert torch.equal(again.generate([0, 1, 2], seed=4), p.generate([0, 1, 2], seed=4))
    with pytest.raises(GanaugError, match="keep must be a share"):
        P.prune_generator(g, 1.0)


def test_importance_keeps_the_generator_closer_than_random_channels():
    g = load_generator(SHIPPED)
    labels = torch.arange(10).repeat(20)
    full = g.generate(labels, seed=1).float()

    def distance(pruned):
        return (pruned.generate(labels, seed=1).float() - full).abs().mean().item()

    # a quarter of the default BatchNorm recalibration images: enough for this comparison, a quarter the time
    with mock.patch.object(P, "recalibrate_batchnorm", functools.partial(P.recalibrate_batchnorm, batches=4)):
        ours = distance(P.prune_generator(g, 0.5))
        for seed in range(3):
            torch.manual_seed(seed)
            with mock.patch.object(P, "channel_importance", lambda block: torch.rand(block.bn2.bn.num_features)):
                assert ours < distance(P.prune_generator(g, 0.5))


def test_distill_fine_tunes_a_pruned_teacher_from_the_cli(tmp_path):
    import json

    from ganaug.cli import main

    rc = main(["distill", str(SHIPPED), "--prune", "0.5", "--out", str(tmp_path / "p"), "--steps", "2",
               "--batch-size", "8", "--device", "cpu", "--no-progress"])
    assert rc == 0
    gen = load_generator(tmp_path / "p")
    assert gen.config.arch == "sngan" and gen.config.g_hidden_ratio == 0.5
    run = json.loads((tmp_path / "p" / "run_config.json").read_text())
    assert run["distilled_from"]["init"]["keep"] == 0.5
