"""The default augmentation path against a classical augmentation and against no augmentation,
side by side in one run, on one torch thread (issue 37, item 6; the default pool renews on a second
thread, which is free only where a core is).

1. Images per second through ``GANBatchAugment(G)`` as a user writes it (the default: a pool per
   class renewing 10 % of what it hands out on a background thread), through the same pool renewing
   in the call (``PoolConfig(background=False)``), through ``GANBatchAugment(G, pool=None)`` (every
   image generated in the call) and through torchvision v2's ColorJitter, on batches of 128 uint8 32x32
   images at p = 1 (median of --runs). The pool's one-time fill (one pass per class) is timed apart.
2. One epoch-sized slice of Fashion-MNIST (--batches batches of 128) training the benchmark's small
   ResNet with each augmentation applied to each batch at --p, against no augmentation; the rows run
   in turn --epochs times and the median is shown (the first run's row order gave ColorJitter 13 %).
3. Class fidelity (the shipped reference classifier's accuracy on the class asked for) of 2,000
   images through each GAN path: the pool hands out the same generator's images, so it should
   match the per-call path within sampling noise.
--int8 adds the int8 + compiled generator in the call, --freshbank a FreshBank (a background
process on the second core keeps renewing its images).

    python benchmarks/augment_epoch.py --generator pretrained/fashion-mnist-sngan [--batches 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from ganaug import InferenceOptions, load_generator  # noqa: E402
from ganaug.bench.resnet import SmallResNet  # noqa: E402
from ganaug.data import load_fashion_mnist  # noqa: E402
from ganaug.eval import ReferenceClassifier  # noqa: E402
from ganaug.eval.classifier import predict  # noqa: E402
from ganaug.pixels import uint8_to_model  # noqa: E402
from ganaug.transforms import FreshBank, GANBatchAugment, PoolConfig  # noqa: E402

from augment_speed import median_rate  # noqa: E402  (this folder is on sys.path when run as a script)


def epoch(images: torch.Tensor, labels: torch.Tensor, augment, batches: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    model = SmallResNet(1, 10, 16).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    order = torch.randperm(len(images))
    t = time.perf_counter()
    for b in range(batches):
        idx = order[b * 128:(b + 1) * 128]
        x, y = images[idx], labels[idx]
        if augment is not None:
            x, y = augment((x, y))
        x = uint8_to_model(x).contiguous(memory_format=torch.channels_last)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def fidelity(aug: GANBatchAugment, reference: ReferenceClassifier, n: int = 2000) -> float:
    torch.manual_seed(1)
    labels = torch.arange(n) % 10
    blank = torch.zeros(n, 1, 32, 32, dtype=torch.uint8)
    images = torch.cat([aug((blank[i:i + 128], labels[i:i + 128]))[0] for i in range(0, n, 128)])
    _, logits = predict(reference.model, images)
    return (logits.argmax(1) == labels).float().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="pretrained/fashion-mnist-sngan")
    ap.add_argument("--reference", default="pretrained/fashion-mnist-reference-classifier")
    ap.add_argument("--data", default="../shared/data/fashion-mnist")
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--p", type=float, default=0.5)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per row, the rows in turn; the median is shown")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--freshbank", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    data = load_fashion_mnist(a.data, image_size=32, max_per_class=a.batches * 128 // 10 + 13)
    images, labels = data.images, data.labels
    gen = load_generator(a.generator)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"machine: {cpu}, flags avx512_bf16/amx: {'avx512_bf16' in open('/proc/cpuinfo').read()}/"
          f"{'amx_tile' in open('/proc/cpuinfo').read()}; torch {torch.__version__}; 1 torch thread (the default "
          f"pool's renewals run on one more thread: it needs a free core to be free); "
          f"generator {a.generator}\n")

    # 1. images per second, p = 1
    x, y = images[:128], labels[:128]
    jitter = v2.ColorJitter(brightness=0.4, contrast=0.4)
    pooled, in_call = GANBatchAugment(gen, p=1.0), GANBatchAugment(gen, p=1.0, pool=PoolConfig(background=False))
    t = time.perf_counter()
    pooled((x, y))
    fill_s = time.perf_counter() - t
    in_call((x, y))
    asked, made = pooled._pool.asked, pooled._pool.made
    rows = {"torchvision ColorJitter": median_rate(lambda: jitter(x), 128, a.runs),
            "GANBatchAugment(G) (default: pool, 10 % renewed on a thread)":
                median_rate(lambda: pooled((x, y)), 128, a.runs)}
    pooled._pool.settle()  # its thread's backlog must not run into the rows after it
    rows["GANBatchAugment(G, pool=PoolConfig(background=False)) (10 % renewed in the call)"] = \
        median_rate(lambda: in_call((x, y)), 128, a.runs)
    rows["GANBatchAugment(G, pool=None) (generated in the call)"] = \
        median_rate(lambda: GANBatchAugment(gen, p=1.0, pool=None)((x, y)), 128, a.runs)
    base = rows["torchvision ColorJitter"]
    print("| path, batches of 128, p = 1 | images/s | vs ColorJitter |\n|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r:,.0f} | {r / base:.3f}x |")
    print(f"\nThe pool's one-time fill ({pooled._pool.options.per_class} images per class, 10 classes): {fill_s:.1f} s. "
          f"While the default pool handed out images as fast as it could, its thread made "
          f"{pooled._pool.made - made:,} of the {pooled._pool.asked - asked:,} renewals asked for (a slot asked for "
          "again before the thread reached it is renewed once).\n")

    # 2. a classifier epoch at p
    augs = [("no augmentation", None), ("torchvision ColorJitter", lambda b: (jitter(b[0]), b[1])),
            ("GANBatchAugment(G) (default: pool, renewals on a thread)", GANBatchAugment(gen, p=a.p)),
            ("GANBatchAugment(G, pool=PoolConfig(background=False))",
             GANBatchAugment(gen, p=a.p, pool=PoolConfig(background=False))),
            ("GANBatchAugment(G, pool=None)", GANBatchAugment(gen, p=a.p, pool=None))]
    if a.int8:
        int8 = InferenceOptions(channels_last=True, compile=True, precision="int8")
        augs.append(("GANBatchAugment(G, pool=None), int8 + compile", GANBatchAugment(gen, p=a.p, pool=None,
                                                                                      inference=int8)))
    for _, aug in augs[2:]:  # loading and the pool's fill happen before the clock starts
        aug((images[:128], labels[:128]))
    epoch(images, labels, None, 5)  # warm-up: the first batches of a new model pay for kernel setup
    default = augs[2][1]
    times: dict[str, list[float]] = {name: [] for name, _ in augs}
    for _ in range(a.epochs):  # the rows in turn, --epochs times: a drift of the machine hits them all
        for name, aug in augs:
            made, asked = default._pool.made, default._pool.asked
            times[name].append(epoch(images, labels, aug, a.batches))
            if aug is default:
                made = default._pool.made - made  # during its epoch
                default._pool.settle()  # the backlog, if any, must not run into the next row
                renewed = made, default._pool.asked - asked
    if a.freshbank:
        with FreshBank(a.generator, per_class=512, threads=1) as bank:
            aug = GANBatchAugment(bank, p=a.p)
            aug((images[:128], labels[:128]))  # waits for the first images of every class
            times["FreshBank (1 background thread)"] = [epoch(images, labels, aug, a.batches)]
    none = statistics.median(times["no augmentation"])
    print(f"| epoch: {a.batches} batches of 128, p = {a.p}, median of {a.epochs} | wall s | vs no augmentation |\n"
          "|---|---|---|")
    for name, s in times.items():
        print(f"| {name} | {statistics.median(s):.1f} | {statistics.median(s) / none:.2f}x |")
    print(f"\nIn its last epoch the default pool's thread made {renewed[0]:,} of the {renewed[1]:,} renewals asked for.")

    # 3. the images are the same generator's: class fidelity of both paths
    ref = ReferenceClassifier.load(a.reference)
    f_pool = fidelity(GANBatchAugment(gen, p=1.0), ref)  # its renewals are the generator's images too
    f_call = fidelity(GANBatchAugment(gen, p=1.0, pool=None), ref)
    print(f"\nclass fidelity (reference classifier, 2,000 images): pool {f_pool:.3f}, generated in the call "
          f"{f_call:.3f} (difference {f_pool - f_call:+.3f})")


if __name__ == "__main__":
    main()
