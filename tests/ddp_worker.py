"""Launched by tests/test_distributed.py under torchrun: mistakes a distributed launch can make,
each caught on every rank. Writes OUT/rank<R>.json with the error messages."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import ganaug
from ganaug.data import LabelledImages
from ganaug.training.distributed import check_consistency, from_env


def tiny_data(seed: int) -> LabelledImages:
    g = torch.Generator().manual_seed(seed)
    return LabelledImages(torch.randint(0, 255, (16, 1, 32, 32), dtype=torch.uint8, generator=g),
                          torch.arange(16) % 2, ["ok", "defect"])


def caught(fn) -> str | None:
    try:
        fn()
    except ganaug.GanaugError as e:
        return str(e)
    return None


def main(out: Path) -> None:
    d = from_env()
    dist.init_process_group("gloo")  # train() uses a running group as it is, so one launch tries several
    mc = ganaug.make_config("sngan", 2, ["ok", "defect"], image_size=32, channels=1, g_width=8, d_width=8, z_dim=16)
    cfg = ganaug.TrainConfig(steps=2, batch_size=8, device="cpu")
    errors = {
        # every rank must read the same images
        "data": caught(lambda: ganaug.train(tiny_data(d.rank), mc, cfg, out / "data", progress=False)),
        # the global batch must split evenly
        "batch": caught(lambda: ganaug.train(tiny_data(0), mc, ganaug.TrainConfig(steps=2, batch_size=7, device="cpu"),
                                             out / "batch", progress=False)),
    }
    torch.manual_seed(0)  # the same weights on both ranks, so that only the buffer below differs
    D = ganaug.build_discriminator(mc)
    if d.rank == 1:  # a spectral-norm vector that drifted apart on one rank
        with torch.no_grad():
            dict(D.named_buffers())["blocks.0.conv1.parametrizations.weight.0._u"].add_(1e-3)
    errors["consistency"] = caught(lambda: check_consistency(d, ["D"], D))
    (out / f"rank{d.rank}.json").write_text(json.dumps(errors))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
