"""What GAN augmentation at p = 0.5 adds to a CPU classifier epoch, side by side in one run.

One epoch-sized slice of Fashion-MNIST (--batches batches of 128, 32x32 grey) trains the
benchmark's small ResNet on one thread, with the augmentation applied to each batch in the
training loop (GANBatchAugment, the on-the-fly path): without GAN augmentation; with the fp32
generator; with the int8 + compiled generator; and with a FreshBank whose background process
(one thread, on the second core) keeps renewing the images, so the loop only copies them. The
table gives each epoch's wall time and its ratio to the epoch without GAN augmentation
(compilation happens in a warm-up before the clock starts).

    python benchmarks/augment_epoch.py --generator pretrained/fashion-mnist-sngan [--batches 60]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402

from ganaug import InferenceOptions, load_generator  # noqa: E402
from ganaug.bench.resnet import SmallResNet  # noqa: E402
from ganaug.data import load_fashion_mnist  # noqa: E402
from ganaug.pixels import uint8_to_model  # noqa: E402
from ganaug.transforms import FreshBank, GANBatchAugment  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="pretrained/fashion-mnist-sngan")
    ap.add_argument("--data", default="../shared/data/fashion-mnist")
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--p", type=float, default=0.5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    data = load_fashion_mnist(a.data, image_size=32, max_per_class=a.batches * 128 // 10 + 13)
    images, labels = data.images, data.labels
    gen = load_generator(a.generator)
    int8 = InferenceOptions(channels_last=True, compile=True, precision="int8")
    rows = [("no GAN augmentation", None),
            ("GANBatchAugment, fp32", GANBatchAugment(gen, p=a.p)),
            ("GANBatchAugment, int8 + compile", GANBatchAugment(gen, p=a.p, inference=int8))]
    for name, aug in rows[1:]:  # warm-up: loading, compilation
        aug((images[:128], labels[:128]))
    times = {name: epoch(images, labels, aug, a.batches) for name, aug in rows}
    with FreshBank(a.generator, per_class=512, inference=int8, threads=1) as bank:
        aug = GANBatchAugment(bank, p=a.p)
        aug((images[:128], labels[:128]))  # waits for the first images of every class
        times["GANBatchAugment, FreshBank (int8, 1 background thread)"] = epoch(images, labels, aug, a.batches)
        made = bank.stats()
    base = times["no GAN augmentation"]
    print(f"\n{a.batches} batches of 128, p = {a.p}, classifier on 1 thread; machine: "
          f"{os.uname().machine}, torch {torch.__version__}\n")
    print("| epoch | wall s | vs no GAN augmentation |\n|---|---|---|")
    for name, s in times.items():
        print(f"| {name} | {s:.1f} | {s / base:.2f}x |")
    print(f"\nFreshBank made {made['images_made']} images ({made['images_per_s']:.0f}/s) while it ran; "
          f"the epoch used {int(a.p * a.batches * 128)}.")


if __name__ == "__main__":
    main()
