"""Training throughput on one process against several (torchrun + DistributedDataParallel, gloo on CPU).

Each row runs ``ganaug train`` the way a user would (``torchrun --nproc_per_node=N -m ganaug train``)
for ``--steps`` steps of the same global batch, with ``--threads`` CPU threads shared out over the
processes, and reads the time per step from the run's metrics after ``--warmup`` steps. All rows
run one after another in this one invocation, so their ratios are comparable; nothing else should
run on the machine meanwhile.

    python benchmarks/ddp_speed.py --data ../shared/data/fashion-mnist --steps 60 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from ganaug.bench.downstream import machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(data: str, out: Path, nproc: int, threads: int, a: argparse.Namespace) -> float:
    """Global images per second of a run on ``nproc`` processes with ``threads`` threads each."""
    launch = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--master-addr=127.0.0.1", f"--master-port={free_port()}", "-m", "ganaug"]
              if nproc > 1 else [sys.executable, "-m", "ganaug"])
    cmd = [*launch, "train", data, "--out", str(out), "--arch", a.arch, "--steps", str(a.steps),
           "--batch-size", str(a.batch_size), "--log-every", "1", "--sample-every", str(10 * a.steps),
           "--checkpoint-every", str(10 * a.steps), "--no-progress", "--device", "cpu"]
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "GLOO_SOCKET_IFNAME": "lo", "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    rows = {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    first, last = rows[a.warmup], rows[a.steps]
    return (last["step"] - first["step"]) * a.batch_size / (last["elapsed_s"] - first["elapsed_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/fashion-mnist")
    ap.add_argument("--arch", default="sngan")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    ap.add_argument("--batch-size", type=int, default=64, help="the global batch, the same on every row")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads in all, shared out over processes")
    a = ap.parse_args()
    layouts = list(dict.fromkeys([(1, 1), (1, a.threads)] + [(n, a.threads // n) for n in range(2, a.threads + 1)
                                                            if a.threads % n == 0]))
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for nproc, threads in layouts:
            rates[(nproc, threads)] = run(a.data, Path(tmp) / f"{nproc}x{threads}", nproc, threads, a)
            print(f"{nproc} process(es) x {threads} thread(s): {rates[(nproc, threads)]:.1f} img/s", file=sys.stderr)
    print(f"# {machine().rsplit(';', 1)[0]}; {os.cpu_count()} cores; {a.arch}, global batch {a.batch_size}, "
          f"{a.steps} steps ({a.warmup} warm-up)\n")
    print("| processes | threads each | img/s | vs 1 process x 1 thread | vs 1 process x all threads |")
    print("|---|---|---|---|---|")
    for (nproc, threads), rate in rates.items():
        print(f"| {nproc} | {threads} | {rate:.1f} | {rate / rates[(1, 1)]:.2f}x | "
              f"{rate / rates[(1, a.threads)]:.2f}x |")


if __name__ == "__main__":
    main()
