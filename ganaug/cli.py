"""The ``ganaug`` command line. Defaults come from the config dataclasses, never from here."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import GanaugError

if TYPE_CHECKING:
    from .training import TrainConfig


def _train_parser(sub: argparse._SubParsersAction) -> None:
    from .models import SUPPORTED_IMAGE_SIZES
    from .training import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train", help="train a class-conditional GAN on labelled images",
        description="Train a class-conditional GAN. DATA is a folder of class sub-folders "
        "(DATA/<class>/*.png|jpg|jpeg|bmp|webp, or DATA/<split>/<class>/...), a folder with the "
        "Fashion-MNIST IDX files, or a tar(.gz) of class folders such as the CIFAR-10 JPEG archive.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("data", metavar="DATA", help="the training images (see above)")
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run folder for checkpoint, samples, metrics and loss curve")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUN_DIR from its checkpoint (saved settings win; "
                   "--steps may extend it)")
    g = p.add_argument_group("data")
    g.add_argument("--split", default="train", help="split folder/prefix to read, where the data has splits")
    g.add_argument("--image-size", type=int, default=None, choices=SUPPORTED_IMAGE_SIZES,
                   help="images are resized (shorter side) and centre-cropped to this (default 32, or the "
                   "--init source's)")
    g.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="1 = grey, 3 = RGB; default: grey if every image is grey")
    g.add_argument("--skip-unreadable", action="store_true",
                   help="leave out images that cannot be decoded (they are reported) instead of stopping")
    g.add_argument("--max-per-class", type=int, default=None,
                   help="use at most this many images per class (quick experiments)")
    _split_args(g)
    f = p.add_argument_group("fine-tuning")
    f.add_argument("--init", default=None, metavar="SOURCE",
                   help="start from a trained generator (a package folder, hf-hub:org/name[@rev] or a run folder): "
                   "its architecture, its G, and its D when it carries one; classes matched by name")
    f.add_argument("--init-class", action="append", default=[], metavar="NEW=SOURCE_CLASS",
                   help="a class the source never drew starts from this source class, 'mean' or 'spread' (the "
                   "mean plus an offset as large as the source's classes differ) (default: a source class of its "
                   "own, in order, from those the data does not hold, then 'spread'); repeatable")
    f.add_argument("--freeze-d", type=int, default=d.freeze_d,
                   help="FreezeD: keep the source discriminator's first N blocks fixed (a source with D only)")
    _model_args(p.add_argument_group("model"))
    _schedule_args(p.add_argument_group("training"), d)
    _limited_data_args(p.add_argument_group("limited and long-tailed data"), d)
    _run_args(p.add_argument_group("run"), d)


def _model_args(m: argparse._ArgumentGroup) -> None:
    from .models import list_architectures

    m.add_argument("--arch", default=None, choices=list_architectures(), help="architecture (default sngan)")
    m.add_argument("--g-width", type=int, default=None, help="generator base width (arch default if unset)")
    m.add_argument("--d-width", type=int, default=None, help="discriminator base width (arch default if unset)")
    m.add_argument("--z-dim", type=int, default=None, help="latent size (default 128)")
    m.add_argument("--attn-resolution", type=int, default=None,
                   help="feature-map size with self-attention, 0 = none (arch default if unset)")
    m.add_argument("--g-upsample", default=None, choices=("nearest", "bilinear"),
                   help="how G's blocks upsample (default nearest; bilinear keeps lite at 64 px free of a "
                        "grid of flat squares)")


def _schedule_args(t: argparse._ArgumentGroup, d: TrainConfig) -> None:
    """Steps, batch, optimiser and loss."""
    t.add_argument("--steps", type=int, default=d.steps, help="generator updates in total")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help="real images per D step (and fakes per G step)")
    t.add_argument("--lr-g", type=float, default=d.lr_g, help="generator Adam learning rate")
    t.add_argument("--lr-d", type=float, default=d.lr_d, help="discriminator Adam learning rate (TTUR: > lr-g)")
    t.add_argument("--beta1", type=float, default=d.beta1, help="Adam beta1 for G and D")
    t.add_argument("--beta2", type=float, default=d.beta2, help="Adam beta2 for G and D")
    t.add_argument("--n-dis", type=int, default=d.n_dis, help="D updates per G update")
    t.add_argument("--loss", default=d.loss, choices=("hinge", "nonsat"),
                   help="adversarial loss: hinge or non-saturating logistic")
    t.add_argument("--ema-beta", type=float, default=d.ema_beta, help="EMA decay of the sampled generator")


def _limited_data_args(t: argparse._ArgumentGroup, d: TrainConfig) -> None:
    """What helps on few or imbalanced images: regularisers, conditioning schedules, guidance, augmentation."""
    t.add_argument("--feature-matching", type=float, default=d.feature_matching,
                   help="weight of a feature-matching term in G's loss")
    t.add_argument("--ortho-reg", type=float, default=d.ortho_reg,
                   help="BigGAN orthogonal regularisation weight for G (e.g. 1e-4)")
    t.add_argument("--lecam", type=float, default=d.lecam,
                   help="weight of the LeCam regulariser of D for limited data (Tseng et al. 2021: 0.1-0.3; "
                   "default: 0.3 when classes are imbalanced, else 0)")
    t.add_argument("--cond-ramp-start", type=int, default=d.cond_ramp_start,
                   help="conditioning ramp (transitional cGAN): G and D unconditional before this step")
    t.add_argument("--cond-ramp-end", type=int, default=d.cond_ramp_end,
                   help="... and fully class-conditional from this step on (0: no ramp)")
    t.add_argument("--class-noise", type=float, default=d.class_noise,
                   help="noise on G's class condition, relative to its size, more for rarer classes "
                   "(NoisyTwins uses 0.75)")
    t.add_argument("--guide", default=None, metavar="FOLDER",
                   help="a reference classifier package (ganaug reference-classifier) of these classes whose "
                   "term enters G's loss (needs --guide-weight); train it on the same training images")
    t.add_argument("--guide-weight", type=float, default=d.guide_weight, help="weight of the guide's term")
    t.add_argument("--guide-loss", default=d.guide_loss, choices=("ce", "band"),
                   help="ce: the guide's cross-entropy for the intended class; band: pull back only images "
                   "beyond --guide-band of the real images' distances to their class prototype")
    t.add_argument("--guide-band", type=float, default=d.guide_band,
                   help="the band's outer edge, a quantile of each class's real distances (band loss)")
    t.add_argument("--diffaugment", default=d.diffaugment,
                   help="'auto' (on when the smallest class has < 5000 images), 'off', or ops "
                   "such as 'color,translation,cutout'")
    t.add_argument("--class-balanced", action=argparse.BooleanOptionalAction, default=d.class_balanced,
                   help="draw real batches with every class equally often (default: when imbalanced)")
    t.add_argument("--bn-group", type=int, default=d.bn_group,
                   help="BatchNorm statistics over groups of this many images (0: each process's whole batch; "
                   "under torchrun: the per-process batch)")


def _run_args(t: argparse._ArgumentGroup, d: TrainConfig) -> None:
    """Precision, device, seed, what is written how often, torchrun's timeout."""
    from .training.distributed import DIST_TIMEOUT_S

    t.add_argument("--precision", default=d.precision, choices=("auto", "fp32", "bf16", "fp16"),
                   help="autocast dtype; auto = bf16 on a GPU that has it, else fp32")
    t.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="steps between checkpoints; a killed run loses at most this many")
    t.add_argument("--sample-every", type=int, default=d.sample_every,
                   help="steps between per-class sample grids in RUN_DIR/samples")
    t.add_argument("--log-every", type=int, default=d.log_every, help="steps between metrics.jsonl lines")
    t.add_argument("--seed", type=int, default=d.seed, help="seed of the whole run (init, batches, noise)")
    t.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--dist-timeout", type=float, default=DIST_TIMEOUT_S,
                   help="under torchrun: seconds to wait for the other processes (joining, and at every step)")


def _cmd_train(a: argparse.Namespace) -> None:
    from .data import load_split
    from .models import make_config
    from .training import TrainConfig, train
    from .training.distributed import from_env, torchrun_prefix
    from .training.rundir import RUN_CONFIG

    if a.init and a.resume:
        raise GanaugError("--init starts a new run from a trained generator and --resume continues a run from its "
                          "checkpoint: give --init with a new --out folder, or --resume without --init to continue "
                          "a run that was started with it.")
    run_cfg = Path(a.out) / RUN_CONFIG
    if a.resume and run_cfg.is_file():
        # A resumed run must see its data exactly as before: take size and channels from it.
        saved = json.loads(run_cfg.read_text())["model"]
        a.image_size, a.channels = saved["image_size"], saved["channels"]
    source = _init_source(a) if a.init else None
    data = load_split(a.data, split=a.split, test_fraction=a.test_fraction, image_size=a.image_size or 32,
                      channels=a.channels, skip_unreadable=a.skip_unreadable, max_per_class=a.max_per_class,
                      class_from=a.class_from)
    if source is not None:
        from .training.init import config_for_data

        model_config = config_for_data(source, data.class_names, data.channels)
    else:
        model_config = make_config(a.arch or "sngan", data.num_classes, data.class_names,
                                   image_size=a.image_size or 32, channels=data.channels,
                                   g_width=a.g_width, d_width=a.d_width, z_dim=a.z_dim,
                                   attn_resolution=a.attn_resolution, g_upsample=a.g_upsample)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train_config = TrainConfig(**{k: v for k, v in vars(a).items() if k in fields})
    launch = from_env()
    say = print if launch.is_main else (lambda *args, **kw: None)
    say(f"data: {len(data)} images, {data.num_classes} classes, {data.channels} channel(s) from {data.source}; "
        f"image size {data.size_note()}")
    guide = None
    if a.guide:
        from .eval import ReferenceClassifier

        ref = ReferenceClassifier.load(a.guide)
        if ref.config.class_names != data.class_names:
            raise GanaugError(f"the guide {a.guide!r} knows the classes {ref.config.class_names}, not the data's "
                              f"{data.class_names}; guide with a classifier trained on these classes.")
        guide = ref.model
    from .training.init import parse_init_classes

    init_classes = parse_init_classes(a.init_class)
    out = train(data, model_config, train_config, a.out, resume=a.resume, progress=not a.no_progress,
                command=shlex.join([*torchrun_prefix(launch), "ganaug", *a.argv]), dist_timeout=a.dist_timeout,
                guide=guide, init=a.init, init_classes=init_classes)
    say(f"done: {out}")


def _init_source(a: argparse.Namespace):
    """The --init source's model config, after checking that the model options do not contradict it;
    the image size defaults to the source's."""
    from .training.init import load_source

    src = load_source(a.init)[0].config
    given = {k: getattr(a, k) for k in ("arch", "g_width", "d_width", "z_dim", "attn_resolution", "g_upsample")
             if getattr(a, k) is not None}
    clash = {k: v for k, v in given.items() if getattr(src, k) != v}
    if clash:
        raise GanaugError(f"--init takes the model from the source ({src.arch}, g_width {src.g_width}, d_width "
                          f"{src.d_width}, z_dim {src.z_dim}); {clash} contradict it: leave those options out.")
    if a.image_size is not None and a.image_size != src.image_size:
        raise GanaugError(f"the --init source makes {src.image_size}px images, not {a.image_size}px; a GAN's layers "
                          f"are tied to its resolution: use --image-size {src.image_size} (images are resized when "
                          "loaded), or train from scratch.")
    a.image_size = src.image_size
    return src


def _sample_parser(sub: argparse._SubParsersAction) -> None:
    from .training.distributed import DIST_TIMEOUT_S
    from .transforms.synthetic import CHUNK_SIZE

    p = sub.add_parser("sample", help="generate images from a trained generator",
                       description="Generate images with a generator: a training run folder (its "
                       "EMA generator), a package folder, or hf-hub:org/name[@revision].",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="run folder, package folder or hf-hub:org/name[@rev]")
    p.add_argument("--classes", nargs="+", default=None,
                   help="class names or indices (default: all classes)")
    p.add_argument("--n", "--per-class", dest="n", type=int, default=8,
                   help="images per class (under torchrun write --per-class: torchrun reads --n as its own --nnodes)")
    p.add_argument("--out", default=None,
                   help="a .png path for one grid (a row per class), or a folder for one PNG "
                   "per image in <class>/ sub-folders")
    p.add_argument("--bank", default=None, metavar="DIR",
                   help="instead of --out: write an on-disk bank of --n images per class (uint8 safetensors "
                   "chunks and a manifest) that SyntheticDataset(MODEL, counts=N, seed=SEED, cache=DIR) reads; "
                   "under torchrun every process writes its share of the chunks")
    p.add_argument("--chunk-size", type=int, default=CHUNK_SIZE, help="images per bank chunk (one forward pass each)")
    p.add_argument("--dist-timeout", type=float, default=DIST_TIMEOUT_S,
                   help="under torchrun: seconds to wait for the other processes")
    p.add_argument("--seed", type=int, default=0, help="same seed, same images")
    p.add_argument("--truncation", type=float, default=None,
                   help="truncation trick threshold (e.g. 1.0); lower = less varied, cleaner")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def _cmd_sample(a: argparse.Namespace) -> None:
    import torch
    from PIL import Image

    from .hub import load_generator
    from .training import pick_device

    if a.n < 1:
        raise GanaugError("--n must be at least 1.")
    if (a.out is None) == (a.bank is None):
        raise GanaugError("give exactly one of --out (a grid or image folder) and --bank (an on-disk bank).")
    if a.bank is not None:
        return _write_bank(a)
    G = load_generator(a.model, device=pick_device(a.device))
    classes = G.class_ids(parse_classes(a.classes, G.class_names)).tolist() if a.classes else list(range(G.num_classes))
    out = Path(a.out)
    if out.suffix.lower() == ".png":
        out.parent.mkdir(parents=True, exist_ok=True)
        G.sample_grid(a.n, classes=classes, seed=a.seed, truncation=a.truncation).save(out)
        print(f"wrote a grid of {len(classes) * a.n} images to {out}")
        return
    labels = torch.tensor(classes).repeat_interleave(a.n)
    imgs = G.generate(labels, seed=a.seed, truncation=a.truncation)
    for i, (img, c) in enumerate(zip(imgs, labels.tolist())):
        d = out / _safe_name(G.class_names[c])
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).squeeze(-1).numpy()).save(d / f"{i % a.n:05d}.png")
    print(f"wrote {len(imgs)} images to {out}")


def _write_bank(a: argparse.Namespace) -> None:
    from .hub import load_generator
    from .training.distributed import distributed
    from .transforms import SyntheticDataset
    from .transforms.synthetic import CHUNK_SIZE

    with distributed(a.device, a.dist_timeout) as (d, device):
        G = load_generator(a.model, device=device)
        classes = G.class_ids(parse_classes(a.classes, G.class_names)).tolist() if a.classes else range(G.num_classes)
        bank = SyntheticDataset(G, {c: a.n for c in classes}, seed=a.seed, cache=a.bank,
                                truncation=a.truncation, chunk_size=a.chunk_size)
        bank.fill_cache(d.rank, d.world_size, progress=d.is_main)
        d.barrier()
        missing = bank.missing_chunks() if d.is_main else []
        if missing:
            raise GanaugError(f"{len(missing)} chunk(s) of the bank are not in {bank.cache_dir} after every process "
                              f"finished (e.g. chunk {missing[0]}); under torchrun on several nodes, --bank must "
                              "be on storage that every node writes to (a shared filesystem).")
        if d.is_main:
            counts = {G.class_names[c]: a.n for c in classes} if a.classes else a.n
            extra = "".join(f", {k}={v!r}" for k, v in (("truncation", a.truncation), ("chunk_size", a.chunk_size))
                            if v != {"truncation": None, "chunk_size": CHUNK_SIZE}[k])
            print(f"bank of {len(bank)} images ({bank.num_chunks} chunks) in {bank.cache_dir}; read it with "
                  f"SyntheticDataset({a.model!r}, counts={counts!r}, seed={a.seed}, cache={a.bank!r}{extra})")


def parse_classes(requested: list[str], class_names: list[str]) -> list[int | str]:
    """CLI class arguments (names or ids, space- or comma-separated) -> names and int ids."""
    items = [x for item in requested for x in item.split(",") if x]
    return [x if x in class_names or not x.lstrip("-").isdigit() else int(x) for x in items]


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


_TEST_FRACTION_HELP = ("for data without a test split (one set of class folders, classes from file names): the "
                       "stratified share held out as its test split, the same images in train, eval and "
                       "reference-classifier")


def _split_args(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    from .data.loaders import CLASS_FROM

    p.add_argument("--class-from", choices=CLASS_FROM, default="folder",
                   help="where an image's class is written: its folder, or its file name (scratches_12.jpg)")
    p.add_argument("--test-fraction", type=float, default=None, help=_TEST_FRACTION_HELP)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="the dataset, in any layout `ganaug train` reads")
    p.add_argument("--skip-unreadable", action="store_true", help="leave out images that cannot be decoded")
    _split_args(p)


def _reference_parser(sub: argparse._SubParsersAction) -> None:
    from .eval import FitConfig
    from .models import SUPPORTED_IMAGE_SIZES

    d = FitConfig()
    p = sub.add_parser(
        "reference-classifier", help="train the reference classifier used by `ganaug eval`",
        description="Train a small CNN on the real training split of DATA and record its accuracy "
        "on the real test split. `ganaug eval` uses it as feature space and class judge. The training state "
        "is saved to OUT/training-checkpoint.safetensors after every epoch: the same command resumes a killed run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("data", metavar="DATA", help="a dataset with train and test splits")
    p.add_argument("--out", required=True, help="folder for model.safetensors and config.json")
    p.add_argument("--image-size", type=int, default=32, choices=SUPPORTED_IMAGE_SIZES,
                   help="must match the generators it will judge")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 = grey, 3 = RGB")
    p.add_argument("--train-split", default="train", help="split it learns from")
    p.add_argument("--test-split", default="test", help="split its accuracy is measured on")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training split")
    p.add_argument("--width", type=int, default=d.width, help="base channel width of the CNN")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of init and batch order")
    p.add_argument("--translate", type=int, default=d.translate, help="random shifts of up to this many pixels")
    p.add_argument("--flip", action="store_true",
                   help="random horizontal flips too: for natural images (CIFAR-10), not digits or oriented defects")
    p.add_argument("--channels-last", action="store_true", help="faster on CPU; results differ in the last bits")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=d.precision,
                   help="bf16 autocast: faster on CPUs with AVX-512 BF16 or AMX, refused elsewhere")
    p.add_argument("--balanced", action="store_true",
                   help="Balanced Softmax loss: for imbalanced data, where a plain loss can learn the largest class")
    p.add_argument("--min-steps", type=int, default=d.min_steps,
                   help="at least this many steps, whatever the epochs give (small data)")
    p.add_argument("--skip-unreadable", action="store_true", help="leave out images that cannot be decoded")
    _split_args(p)


def _cmd_reference(a: argparse.Namespace) -> None:
    from .data import load_split
    from .eval import FitConfig, train_reference_classifier

    kw = dict(image_size=a.image_size, channels=a.channels, skip_unreadable=a.skip_unreadable,
              class_from=a.class_from, test_fraction=a.test_fraction)
    train = load_split(a.data, split=a.train_split, **kw)
    test = load_split(a.data, split=a.test_split, **kw)
    fit = FitConfig(epochs=a.epochs, width=a.width, seed=a.seed, translate=a.translate, flip=a.flip,
                    channels_last=a.channels_last, precision=a.precision, balanced=a.balanced, min_steps=a.min_steps)
    # saved after every epoch; the same command resumes a killed run from it
    checkpoint = Path(a.out) / "training-checkpoint.safetensors"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if checkpoint.is_file():
        print(f"resuming from {checkpoint}")
    ref = train_reference_classifier(train, test, fit, progress=True, checkpoint=checkpoint)
    ref.save(a.out)
    checkpoint.unlink(missing_ok=True)
    print(f"reference classifier: real-test accuracy {ref.accuracy:.4f}, balanced "
          f"{ref.config.real_test_balanced_accuracy:.4f}, on {len(test)} images; saved to {a.out}")


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    from .eval import EvalProtocol

    d = EvalProtocol()
    p = sub.add_parser(
        "eval", help="evaluate a generator against real data",
        description="FID, KID, IS, precision/recall, class fidelity, CAS and memorisation of a "
        "generator, under a fixed protocol recorded in eval.json (see the README).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="run folder, package folder or hf-hub:org/name[@rev]")
    _data_args(p)
    p.add_argument("--split", default=d.split, help="real split the generated images are compared with")
    p.add_argument("--train-split", default="train",
                   help="split the generator was trained on (memorisation, reference classifier)")
    p.add_argument("--n", type=int, default=d.n, help="generated images in total, split evenly over classes")
    p.add_argument("--features", default="reference",
                   help="'reference' (a reference classifier trained on DATA, cached), 'inception' "
                   "(Inception-v3 FID weights), or the path of a reference classifier folder")
    p.add_argument("--reference", default=None,
                   help="reference classifier folder for class fidelity and CAS (default: trained on DATA and cached)")
    p.add_argument("--reference-min-steps", type=int, default=1500,
                   help="without --reference: the judge trained on DATA (Balanced Softmax loss) takes at least this "
                   "many steps, so that small data does not leave it naming the largest class")
    p.add_argument("--inception-weights", default=None,
                   help="Inception FID weights (.safetensors, or the official .pth, read without unpickling)")
    p.add_argument("--out", default=None, help="report folder (default: MODEL/eval)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the generated latents and KID subsets")
    p.add_argument("--truncation", type=float, default=None, help="truncation trick threshold for sampling")
    p.add_argument("--no-cas", action="store_true", help="skip the Classification Accuracy Score (saves a minute)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def _cmd_eval(a: argparse.Namespace) -> None:
    from .data import load_split
    from .eval import (EvalProtocol, ReferenceClassifier, ReferenceFeatures,
                       cached_reference_classifier, evaluate, save_result, summary_table)
    from .hub import load_generator
    from .training import pick_device

    device = pick_device(a.device)  # chosen once, here, for every network of the evaluation
    gen = load_generator(a.model, device=device)
    G, cfg = gen.net, gen.config
    kw = dict(image_size=cfg.image_size, channels=cfg.channels, skip_unreadable=a.skip_unreadable,
              class_from=a.class_from, test_fraction=a.test_fraction)
    train = load_split(a.data, split=a.train_split, **kw)
    test = load_split(a.data, split=a.split, **kw)
    if set(cfg.class_names) <= set(train.class_names) and train.class_names != cfg.class_names:
        # a generator of some of the data's classes (a protocol's private part), or of all of them in
        # another order (class folders are read sorted): its classes are matched by name
        print(f"evaluating against the data's images of the generator's classes {cfg.class_names} "
              f"(the data has {train.class_names})")
        train, test = train.select_classes(cfg.class_names), test.select_classes(cfg.class_names)
    if a.reference:
        ref = ReferenceClassifier.load(a.reference)
    elif a.features not in ("reference", "inception"):
        ref = ReferenceClassifier.load(a.features)
    else:
        from .eval.reference import AUTO_FIT

        ref = cached_reference_classifier(train, test, dataclasses.replace(AUTO_FIT, min_steps=a.reference_min_steps),
                                          progress=True)
    ref.model.to(device)
    if a.features == "inception":
        from .eval.inception import InceptionFeatures

        features = InceptionFeatures.load(a.inception_weights, device)
    else:
        features = ReferenceFeatures(ref)
    protocol = EvalProtocol(n=a.n, seed=a.seed, split=a.split, truncation=a.truncation, cas=not a.no_cas)
    result = evaluate(G, cfg, train, test, ref, features, protocol, progress=True)
    result["generator"]["source"] = str(a.model)
    result["generator"]["steps"] = gen.metadata.get("training", {}).get("steps")
    result["command"] = shlex.join(["ganaug", *a.argv])
    default_out = Path(a.model) / "eval" if Path(a.model).is_dir() else Path("eval")
    out = save_result(result, train, a.out or default_out)
    print(summary_table(result))
    print(f"\nwrote {out / 'eval.json'} and {out / 'report.md'}")


def _export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="package a run's generator: model.safetensors + config.json + model card",
        description="Write the EMA generator of RUN_DIR as a package: model.safetensors, config.json "
        "(architecture, classes, training), samples.png and a Hub model card (README.md) that "
        "includes the `ganaug eval` table if RUN_DIR/eval/eval.json exists.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run", metavar="RUN_DIR", help="a run folder written by `ganaug train`")
    p.add_argument("out", metavar="OUT_DIR", help="package folder to write")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="weight storage dtype (half the size at float16; computed in float32)")
    p.add_argument("--eval", default=None, help="folder with eval.json (default: RUN_DIR/eval)")
    p.add_argument("--license", default="other", help="license for the card's front matter")
    p.add_argument("--dataset", action="append", default=None, help="Hub dataset id for the card (repeatable)")
    p.add_argument("--repo", default="ORG/NAME", help="repo id to show in the card's usage snippet")
    p.add_argument("--with-discriminator", action="store_true",
                   help="add the run's last discriminator, so that `ganaug train --init` fine-tunes G and D "
                   "together (sampling never reads it)")


def _cmd_export(a: argparse.Namespace) -> None:
    from .hub import export_run

    out = export_run(a.run, a.out, dtype=a.dtype, eval_dir=a.eval, license=a.license,
                     datasets=a.dataset, repo_hint=a.repo, discriminator=a.with_discriminator)
    size = (out / "model.safetensors").stat().st_size / 2**20
    print(f"wrote {out} (model.safetensors {size:.1f} MiB)")


def _push_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="upload a package folder to the Hugging Face Hub",
                       description="Upload a package written by `ganaug export` to the Hub "
                       "(HF_TOKEN or `hf auth login` for credentials; HF_ENDPOINT for another Hub).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("folder", metavar="OUT_DIR", help="package folder")
    p.add_argument("repo_id", metavar="ORG/NAME", help="Hub repository (created if missing)")
    p.add_argument("--revision", default=None, help="branch to push to (created if missing); default main")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--message", default=None, help="commit message")


def _cmd_push(a: argparse.Namespace) -> None:
    from .hub import push_to_hub

    url = push_to_hub(a.folder, a.repo_id, revision=a.revision, private=a.private or None,
                      commit_message=a.message)
    print(f"pushed: {url}")


def _cmd_bench(a: argparse.Namespace) -> None:
    from .bench.cli import run

    run(a)


def _cmd_anomaly(a: argparse.Namespace) -> None:
    from .anomaly.cli import run

    run(a)


def _demo_parser(sub: argparse._SubParsersAction) -> None:
    from . import demo

    shipped = Path(__file__).resolve().parents[1] / "pretrained"
    p = sub.add_parser("demo", help="a minute of what ganaug does: balance a long-tailed dataset's rare classes",
                       description="Build the long-tail recipe's bank of generated images (SyntheticMix, band filter, "
                       "every class filled towards the largest) for a long-tailed slice of Fashion-MNIST with the "
                       "shipped generator, serve a batch through a DataLoader, and write OUT/demo.png: real next to "
                       "kept generated images per class, and the class counts.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=demo.DEFAULT_DATA, help="Fashion-MNIST (IDX files)")
    p.add_argument("--generator", default=str(shipped / "fashion-mnist-sngan"), help="a generator trained on DATA's classes")
    p.add_argument("--judge", default=str(shipped / "fashion-mnist-reference-classifier"),
                   help="a reference classifier of the same classes, whose penultimate features define the band")
    p.add_argument("--out", default=demo.DEFAULT_OUT, help="folder for demo.png and demo.txt")
    p.add_argument("--ratio", type=float, default=100.0, help="imbalance ratio of the slice")


def _cmd_demo(a: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(a.data, a.generator, a.out, a.judge, ratio=a.ratio)


def _cmd_distill(a: argparse.Namespace) -> None:
    from .compress.cli import run

    run(a)


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    parser = argparse.ArgumentParser(prog="ganaug", description="Class-conditional GANs as data "
                                     "augmentation: train, sample, package and evaluate.")
    parser.add_argument("--version", action="version", version=f"ganaug {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _demo_parser(sub)
    _train_parser(sub)
    _sample_parser(sub)
    _eval_parser(sub)
    _reference_parser(sub)
    _export_parser(sub)
    _push_parser(sub)
    from .anomaly.cli import add_parser as _anomaly_parser
    from .bench.cli import add_parser as _bench_parser
    from .compress.cli import add_parser as _distill_parser

    _bench_parser(sub)
    _anomaly_parser(sub)
    _distill_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in run_config.json and eval.json so results can be reproduced
    handlers = {"train": _cmd_train, "sample": _cmd_sample, "eval": _cmd_eval,
                "reference-classifier": _cmd_reference, "export": _cmd_export, "push": _cmd_push,
                "bench-downstream": _cmd_bench, "anomaly": _cmd_anomaly,
                "distill": _cmd_distill, "demo": _cmd_demo}
    try:
        handlers[args.command](args)
    except GanaugError as e:
        print(f"ganaug {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is intact (continue with --resume).", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
