"""Time of each evaluation step for 10k generated images at 32x32 on this machine.

Prints a Markdown table. Feature extraction uses the real networks (the reference CNN at its
default width, Inception-v3 with random weights: the same compute as the FID weights, which
cannot be downloaded here). Inception is timed on --inception-n images and scaled to 10k,
and the table says so. Metrics are timed on feature vectors of the real dimensions.

    python benchmarks/eval_speed.py [--n 10000] [--train 60000] [--inception-n 500]
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import torch

from ganaug import build_generator, generate_images, make_config
from ganaug.eval import metrics as M
from ganaug.eval.classifier import FitConfig, SmallCNN, fit_classifier, predict


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def random_inception():
    from torch_fidelity import feature_extractor_inceptionv3 as tfi

    with mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: None), \
            mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
        return tfi.FeatureExtractorInceptionV3("x", ["2048", "logits_unbiased"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--train", type=int, default=60000, help="training-set size for memorisation")
    ap.add_argument("--inception-n", type=int, default=500)
    a = ap.parse_args()
    n, rows = a.n, []
    torch.manual_seed(0)

    cfg = make_config("sngan", 10, image_size=32, channels=1)
    G = build_generator(cfg).eval()
    labels = torch.arange(10).repeat_interleave(n // 10)
    t, fake = timed(lambda: generate_images(G, labels, z_dim=cfg.z_dim, seed=0))
    rows.append(("generate (sngan, default width)", t, f"{n} images"))

    cnn = SmallCNN(1, 10).eval()
    t, (f_fake, logits) = timed(lambda: predict(cnn, fake))
    rows.append(("reference CNN features", t, f"{n} images, {f_fake.shape[1]}-d"))

    inc = random_inception().eval()
    sub = fake[: a.inception_n].repeat(1, 3, 1, 1)
    with torch.no_grad():
        t, _ = timed(lambda: [inc(x) for x in sub.split(64)])
    rows.append(("Inception-v3 features (299x299)", t * n / a.inception_n,
                 f"measured on {a.inception_n}, scaled to {n}"))

    real = f_fake[torch.randperm(n)] + 0.1 * torch.randn_like(f_fake)
    train = torch.randn(a.train, f_fake.shape[1])
    for dim in (f_fake.shape[1], 2048):
        r, f = (real, f_fake) if dim != 2048 else (torch.randn(n, 2048), torch.randn(n, 2048))
        rows.append((f"FID ({dim}-d)", timed(lambda r=r, f=f: M.fid(r, f))[0], f"{n} vs {n}"))
        rows.append((f"KID ({dim}-d)", timed(lambda r=r, f=f: M.kid(r, f))[0], "100 subsets of 1000"))
    rows.append(("IS", timed(lambda: M.inception_score(logits))[0], "10 splits"))
    rows.append(("precision/recall/density/coverage", timed(lambda: M.precision_recall(real, f_fake))[0],
                 f"k=3, {n} vs {n}, {f_fake.shape[1]}-d"))
    rows.append(("class fidelity", timed(lambda: M.class_fidelity(logits, labels, 10))[0], ""))
    rows.append(("memorisation", timed(lambda: M.memorisation(f_fake, labels, train, real, labels, 10))[0],
                 f"nearest of {a.train} training images"))
    rows.append(("CAS (train CNN on generated, 3 epochs)",
                 timed(lambda: fit_classifier(fake, labels, 10, FitConfig()))[0], f"{n} images"))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; {n} images at 1x32x32\n")
    print("| step | seconds | notes |\n|---|---|---|")
    for name, sec, note in rows:
        print(f"| {name} | {sec:.2f} | {note} |")


if __name__ == "__main__":
    main()
