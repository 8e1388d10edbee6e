"""Generated images per second for every generator variant, side by side in one run, with the
classical augmentations as the yardstick.

For each generator (trained packages given with --generator, plus the default-width `lite` and
`sngan` with random weights: the same compute as trained ones) and each inference variant
(fp32 eager, channels_last, torch.compile, bf16 where the CPU has it, int8 PT2E + compile): img/s
at each batch size on 1 and 2 threads (median of --runs timed runs after warm-up), FLOPs per image
(torch.utils.flop_counter), the share of the machine's conv peak they reach (a large dense conv
timed in the same run), the peak extra resident memory of one batch (Linux VmHWM reset before
each measurement, in a child process whose allocator returns freed memory at once, so that
the timings are not slowed by it), and for trained generators the quality against the fp32 teacher (--teacher,
else the generator's own fp32 images, whose row then shows the metric's sampling noise): class
fidelity by a reference classifier and FID in its features, fp32 images as the reference.
GANBatchAugment (p = 1, batches of 64) with the fp32 and the int8 variant, and albumentations ColorJitter
and HorizontalFlip on 32x32 grey uint8 images close the table.

    python benchmarks/sample_speed.py --generator pretrained/fashion-mnist-sngan \
        --reference pretrained/fashion-mnist-reference-classifier [--batch-sizes 1 64 256] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from ganaug import Generator, InferenceOptions, load_generator, make_config  # noqa: E402
from ganaug.precision import cpu_has_native_bf16  # noqa: E402


def median_seconds(fn, runs: int) -> float:
    fn()  # warm-up (and, for compiled variants, compilation)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_extra_mib(fn) -> float | None:
    """Peak resident memory above the current one while ``fn`` runs (Linux only; meaningful only
    where freed memory goes back to the OS: see :func:`memory_columns`)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        before = _status_kib("VmRSS")
        fn()
        return (_status_kib("VmHWM") - before) / 1024
    except OSError:
        return None


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(field)).split()[1])


def memory_columns(argv: list[str]) -> dict[str, float | None]:
    """Run this script again as a child that only measures memory, with glibc told to serve every
    allocation above 64 KiB by mmap and to give it back on free; {"gen|variant|batch": MiB}."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    out = subprocess.run([sys.executable, __file__, *argv, "--memory-child"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def conv_peak_gflops(runs: int) -> float:
    """What this CPU sustains on a large dense fp32 3x3 conv (channels_last, oneDNN)."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).eval().to(memory_format=torch.channels_last)
    x = torch.randn(16, 256, 32, 32).to(memory_format=torch.channels_last)
    with torch.no_grad():
        s = median_seconds(lambda: conv(x), runs)
    return 2 * 256 * 256 * 9 * 32 * 32 * 16 / s / 1e9


def flops_per_image(gen: Generator) -> float:
    z, y = torch.randn(1, gen.config.z_dim), torch.tensor([0])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        gen.net(z, y)
    return counter.get_total_flops()


def variants() -> list[tuple[str, InferenceOptions]]:
    out = [("fp32", InferenceOptions()), ("channels_last", InferenceOptions(channels_last=True)),
           ("compile+cl", InferenceOptions(compile=True, channels_last=True))]
    if cpu_has_native_bf16():
        out.append(("bf16+compile+cl", InferenceOptions(compile=True, channels_last=True, precision="bf16")))
    out.append(("int8+compile+cl", InferenceOptions(compile=True, channels_last=True, precision="int8")))
    return out


def quality(teacher: Generator, student: Generator, reference, n: int) -> tuple[float, float]:
    """(class fidelity, FID in the reference classifier's features against the teacher's images)."""
    from ganaug.eval.classifier import predict
    from ganaug.eval.metrics import class_fidelity, fid

    labels = torch.arange(teacher.num_classes).repeat(n // teacher.num_classes)
    real_f, _ = predict(reference.model, teacher.generate(labels, seed=123))
    fake_f, logits = predict(reference.model, student.generate(labels, seed=456))
    fidelity, _ = class_fidelity(logits, labels, teacher.num_classes)
    return fidelity, fid(real_f, fake_f)


def classical_rows(runs: int, n: int, threads: list[int]) -> list[dict]:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(n)]
    rows = []
    for name, tf in [("albumentations ColorJitter", A.ColorJitter(p=1.0)),
                     ("albumentations HorizontalFlip", A.HorizontalFlip(p=1.0))]:
        row = {"generator": name, "variant": "-", "batch": 1}
        for t in threads:
            torch.set_num_threads(t)
            cv2.setNumThreads(t)
            row[f"img/s {t}t"] = n / median_seconds(lambda: [tf(image=im) for im in images], runs)
        rows.append(row)
    return rows


def transform_rows(gens, chosen, runs: int, n: int, threads: list[int]) -> list[dict]:
    """GANBatchAugment (p = 1) on uint8 batches of 64, as a training loop calls it."""
    from ganaug.transforms import GANBatchAugment

    rows = []
    for name, gen, _ in gens:
        images = torch.zeros(64, gen.channels, gen.image_size, gen.image_size, dtype=torch.uint8)
        labels = torch.arange(64) % gen.num_classes
        for vname, opts in chosen:
            if vname not in ("fp32", "int8+compile+cl"):
                continue
            aug = GANBatchAugment(gen, p=1.0, inference=None if opts.is_default else opts)
            row = {"generator": f"GANBatchAugment({name})", "variant": vname, "batch": 64}
            for t in threads:
                torch.set_num_threads(t)
                row[f"img/s {t}t"] = 64 * (n // 64) / median_seconds(
                    lambda: [aug((images, labels)) for _ in range(n // 64)], runs)
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", nargs="*", default=[], help="trained generator packages (quality columns)")
    ap.add_argument("--reference", default=None, help="reference classifier folder (for the quality columns)")
    ap.add_argument("--teacher", default=None, help="the generator whose fp32 images the quality columns compare with "
                    "(default: each generator's own)")
    ap.add_argument("--random", nargs="*", default=["lite", "sngan"],
                    help="architectures timed with random weights (grey 32x32, 10 classes)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 256])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--images", type=int, default=512, help="images per timed run (at least one batch)")
    ap.add_argument("--quality-n", type=int, default=2000)
    ap.add_argument("--variants", nargs="*", default=None, help="only these variants (names as in the table)")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    a = ap.parse_args()

    gens: list[tuple[str, Generator, bool]] = [(Path(g).name, load_generator(g), True) for g in a.generator]
    for arch in a.random:
        torch.manual_seed(0)
        gens.append((f"{arch} (random)", Generator.from_config(make_config(arch, 10, image_size=32, channels=1)),
                     False))
    teacher = load_generator(a.teacher) if a.teacher else None
    reference = None
    if a.reference:
        from ganaug.eval import ReferenceClassifier

        reference = ReferenceClassifier.load(a.reference)

    chosen = [v for v in variants() if a.variants is None or v[0] in a.variants]
    if a.memory_child:
        torch.set_num_threads(1)
        mem = {}
        for name, gen, _ in gens:
            for vname, opts in chosen:
                fast = gen.optimized(opts) if not opts.is_default else gen
                for bs in a.batch_sizes:
                    labels = torch.arange(bs) % gen.num_classes
                    fast.generate(labels, seed=0, batch_size=bs)  # compiled variants compile here
                    mem[f"{name}|{vname}|{bs}"] = peak_extra_mib(lambda: fast.generate(labels, seed=1, batch_size=bs))
        print(json.dumps(mem))
        return
    mem = memory_columns(argv)

    torch.set_num_threads(max(a.threads))
    peaks = {}
    for t in a.threads:
        torch.set_num_threads(t)
        peaks[t] = conv_peak_gflops(a.runs)
    rows = []
    for name, gen, trained in gens:
        flops = flops_per_image(gen)
        for vname, opts in chosen:
            fast = gen.optimized(opts) if not opts.is_default else gen
            for bs in a.batch_sizes:
                labels = torch.arange(max(a.images, bs)) % gen.num_classes
                row = {"generator": name, "variant": vname, "batch": bs, "MFLOPs/img": flops / 1e6}
                for t in a.threads:
                    torch.set_num_threads(t)
                    s = median_seconds(lambda: fast.generate(labels, seed=0, batch_size=bs), a.runs)
                    row[f"img/s {t}t"] = len(labels) / s
                    row[f"of peak {t}t"] = len(labels) / s * flops / 1e9 / peaks[t]
                row["peak MiB"] = mem.get(f"{name}|{vname}|{bs}")
                if trained and reference is not None and bs == a.batch_sizes[-1]:
                    row["fidelity"], row["FID vs teacher"] = quality(teacher or gen, fast, reference, a.quality_n)
                rows.append(row)
                print(", ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
    rows += transform_rows(gens, chosen, a.runs, a.images, a.threads)
    rows += classical_rows(a.runs, a.images, a.threads)

    print(f"\nMachine: {platform.processor() or platform.machine()}, torch {torch.__version__}; "
          f"conv peak (dense 3x3 fp32): " + ", ".join(f"{peaks[t]:.0f} GFLOP/s on {t} thread(s)" for t in a.threads)
          + "; 'of peak': the share of it reached.\n")
    cols = ["generator", "variant", "batch", "MFLOPs/img"] + [f"img/s {t}t" for t in a.threads] \
        + [f"of peak {t}t" for t in a.threads] + ["peak MiB", "fidelity", "FID vs teacher"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.0f}" if v >= 100 else f"{v:.3g}"
    return str(v)


if __name__ == "__main__":
    main()
