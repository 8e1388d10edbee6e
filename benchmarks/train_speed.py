"""Training speed of each architecture at its default width, next to a classic MLP GAN.

Prints a Markdown table: steps/s and real images/s of ganaug's real training loop (``train``),
and the cost of one step relative to a plain fully connected GAN of the kind in classic
tutorials (G 100-128-256-512-1024-784, D 784-512-256-1, BCE, Adam, batch 128), all measured
in this one run, so the ratio holds even on a busy machine.

    python benchmarks/train_speed.py [--steps 30] [--warmup 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from ganaug import LabelledImages, TrainConfig, list_architectures, make_config, train


def time_ganaug(arch: str, channels: int, warmup: int, steps: int, precision: str = "fp32"
                ) -> tuple[float, int]:
    """Seconds per step of the real loop, from its own per-step log (setup excluded)."""
    n = 2000
    data = LabelledImages(torch.randint(0, 256, (n, channels, 32, 32), dtype=torch.uint8),
                          torch.arange(n) % 10, [str(i) for i in range(10)])
    cfg = make_config(arch, 10, data.class_names, image_size=32, channels=channels)
    tc = TrainConfig(steps=warmup + steps, log_every=1, sample_every=10**6,
                     checkpoint_every=10**6, diffaugment="off", device="cpu", precision=precision)
    with tempfile.TemporaryDirectory() as tmp:
        train(data, cfg, tc, tmp, progress=False)
        rows = [json.loads(x) for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    t = {r["step"]: r["elapsed_s"] for r in rows}
    return (t[warmup + steps - 1] - t[warmup]) / (steps - 1), tc.batch_size


class _MLP(nn.Module):
    def __init__(self, sizes, out_act, bn):
        super().__init__()
        layers = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                if bn and i > 0:
                    layers.append(nn.BatchNorm1d(b))
                layers.append(nn.LeakyReLU(0.2))
        layers.append(out_act)
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def time_mlp_gan(warmup: int, steps: int, batch: int = 128) -> float:
    G = _MLP([100, 128, 256, 512, 1024, 784], nn.Tanh(), bn=True)
    D = _MLP([784, 512, 256, 1], nn.Identity(), bn=False)
    og = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    real = torch.rand(batch, 784) * 2 - 1
    ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        fake = G(torch.randn(batch, 100))
        loss_d = bce(D(real), ones) + bce(D(fake.detach()), zeros)
        od.zero_grad()
        loss_d.backward()
        od.step()
        loss_g = bce(D(fake), ones)
        og.zero_grad()
        loss_g.backward()
        og.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    mlp = time_mlp_gan(a.warmup, a.steps * 5)
    rows = []
    for arch in list_architectures():
        for ch in (1, 3):
            sec, batch = time_ganaug(arch, ch, a.warmup, a.steps)
            rows.append((f"{arch} (default width)", f"{ch}x32x32", batch, 1 / sec, batch / sec,
                         sec * 1000, sec / mlp))
    sec, batch = time_ganaug("sngan", 1, a.warmup, a.steps, precision="bf16")
    rows.append(("sngan (default width), bf16 autocast", "1x32x32", batch, 1 / sec, batch / sec,
                 sec * 1000, sec / mlp))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, fp32 unless stated\n")
    print("| model | images | batch | steps/s | real img/s | ms/step | step cost vs MLP GAN |")
    print("|---|---|---|---|---|---|---|")
    for arch, shape, batch, sps, ips, ms, ratio in rows:
        print(f"| {arch} | {shape} | {batch} | {sps:.2f} | {ips:.0f} | {ms:.0f} | {ratio:.1f}x |")
    print(f"| MLP GAN (classic tutorial) | 1x28x28 | 128 | {1 / mlp:.1f} | {128 / mlp:.0f} | {mlp * 1000:.1f} | 1.0x |")


if __name__ == "__main__":
    main()
