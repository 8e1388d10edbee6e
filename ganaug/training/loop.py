"""The training loop: one function, read top to bottom.

``_train`` reads in phases: the run's settings (a resumed run's saved ones win), the networks,
then the loop; the run folder's life cycle is ``engine.RunFolder``'s. Phases per step: (1) n_dis
discriminator updates on real + fake batches (DiffAugment on both), (2) one generator update,
(3) EMA update, (4) log / sample / checkpoint on schedule.
Everything random draws from the global torch RNG, whose state is checkpointed with the models
and optimisers, so ``resume=True`` continues bit-exactly where the checkpoint left off.
Launched by torchrun, the same loop runs on every process with DistributedDataParallel; each
process draws the whole batch's randomness and keeps its own rows (see ``distributed.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.dataset import LabelledImages
from ..data.weights import effective_number_weights
from ..errors import GanaugError
from ..models import GANConfig, build_discriminator, build_generator
from ..models.layers import GhostBatchNorm2d
from ..pixels import uint8_to_model
from ..precision import autocast, require_native_bf16
from .config import TrainConfig
from .diffaugment import diff_augment
from .distributed import DIST_TIMEOUT_S, Dist, broadcast_buffers, check_consistency, distributed, sync_buffers, wrap_ddp
from .distributed import pick_device as pick_device
from .ema import make_ema, update_ema
from .engine import RunFolder
from .guide import guide_for_run
from .init import config_for_data, freeze_discriminator, init_models, load_source
from .losses import conditioning_strength, d_loss, feature_matching, g_loss, lecam_penalty, orthogonal_penalty
from .rundir import existing_checkpoint, run_lock


class _BatchSampler:
    """Draws random image indices, uniformly or class-balanced (every class equally often)."""

    def __init__(self, labels: torch.Tensor, num_classes: int, balanced: bool):
        self.labels, self.balanced = labels, balanced
        self.counts = torch.bincount(labels, minlength=num_classes)
        self.order = torch.argsort(labels, stable=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts
        self.present = torch.nonzero(self.counts).flatten()

    def draw(self, n: int) -> torch.Tensor:
        if not self.balanced:
            return torch.randint(len(self.labels), (n,))
        cls = self.present[torch.randint(len(self.present), (n,))]
        pos = (torch.rand(n) * self.counts[cls]).long()
        return self.order[self.starts[cls] + pos]


def train(data: LabelledImages, model_config: GANConfig | None, config: TrainConfig,
          out_dir: str | Path, *, resume: bool = False, progress: bool = True,
          command: str | None = None, dist_timeout: float = DIST_TIMEOUT_S, guide: torch.nn.Module | None = None,
          init: str | Path | None = None, init_classes: dict[str, str] | None = None) -> Path:
    """Train a conditional GAN on ``data``, writing everything into ``out_dir``.

    With ``resume=True`` and a checkpoint in ``out_dir``, the saved model and training configs
    win (only ``config.steps`` may be raised, to extend a run) and training continues from
    the checkpoint's step, on any number of processes. Launched by torchrun (``RANK`` and
    ``WORLD_SIZE`` set), every process calls this with the same arguments and they train one
    model with DistributedDataParallel; ``config.batch_size`` is the global batch, and
    ``dist_timeout`` (seconds) bounds every wait for the other processes. ``guide`` is a frozen
    classifier of these classes (a linear head, images in [-1, 1]) whose term enters G's loss with
    ``config.guide_weight`` (see ``ganaug/training/guide.py``); a resumed run needs the same one.
    ``init`` (a generator package, ``hf-hub:org/name@rev`` or a run folder) starts a new run from its
    weights, classes matched by name (``init_classes`` maps a new class to a source class; see
    ``ganaug/training/init.py``); ``model_config=None`` then takes the source's architecture with the
    data's classes and channels. Returns the run folder.
    """
    if init is not None and resume:
        raise GanaugError("init starts a new run from a trained generator and resume continues a run from its "
                          "checkpoint: give --init for a new --out folder, or --resume (without --init) to "
                          "continue a run that was started with it.")
    if model_config is None:
        if init is None:
            raise GanaugError("train() needs a model_config (ganaug.make_config), or init= to take the source's.")
        model_config = config_for_data(load_source(init)[0].config, data.class_names, data.channels)
    with distributed(config.device, dist_timeout) as (d, device):
        with run_lock(out_dir) if d.is_main else contextlib.nullcontext():
            return _train(d, device, data, model_config, config, Path(out_dir), resume, progress, command, guide,
                          init, init_classes)


def _settings(d: Dist, data: LabelledImages, model_config: GANConfig, config: TrainConfig, out: Path,
              resume: bool) -> tuple[RunFolder, GANConfig, TrainConfig]:
    """Phase 1: the run folder and the settings to train with. A resumed run's saved settings win,
    except its length and where and how it runs now; every process must agree on all of it."""
    if d.enabled:
        d.same("the training data", {**data.fingerprint(), "content": data.digest()},
               "Every node must read the same images: the same files at the same path, with the same "
               "--image-size, --channels and --max-per-class.")
    error, ckpt = None, None
    try:
        ckpt = existing_checkpoint(out, resume)
    except GanaugError as e:
        error = str(e)
    d.agree(error)
    d.same("whether the run folder holds a checkpoint", ckpt is not None, "With --resume, put --out on "
           "storage that every node reads (a shared filesystem), or copy the run folder to every node.")
    if ckpt is not None:
        model_config = GANConfig.from_dict(ckpt["model_config"])
        # a GPU run may continue on a CPU, in the precision given explicitly
        saved = TrainConfig.from_dict(ckpt["train_config"])
        config = dataclasses.replace(saved, steps=config.steps, device=config.device,
                                     precision=saved.precision if config.precision == "auto" else config.precision)
        if ckpt["data"] != data.fingerprint():
            raise GanaugError(
                f"the data differs from what run {str(out)!r} was trained on "
                f"(saved: {ckpt['data']}, now: {data.fingerprint()}); resume with the same "
                "data and --image-size/--channels, or start a new run."
            )
    config.validate()
    model_config.validate()
    settings = [model_config.to_dict(), dataclasses.replace(config, device="").to_dict()]
    d.same("the model and training settings", settings, "Start every process with the same command line.")
    if config.batch_size % d.world_size:
        raise GanaugError(f"the batch of {config.batch_size} images does not split evenly over {d.world_size} "
                          f"processes; --batch-size is the global batch: make it a multiple of {d.world_size}.")
    if d.enabled and config.bn_group == 0:  # BatchNorm per rank, said in the config so any world size can resume
        config = dataclasses.replace(config, bn_group=config.batch_size // d.world_size)
    local_batch = config.batch_size // d.world_size
    if config.bn_group and local_batch % config.bn_group:
        raise GanaugError(f"BatchNorm groups of {config.bn_group} images do not divide the batch of {local_batch} "
                          f"each of the {d.world_size} process(es) holds; choose --bn-group to divide it.")
    if config.cond_ramp_end > config.steps and d.is_main:
        warnings.warn(f"the conditioning ramp ends at step {config.cond_ramp_end}, after this run's last step "
                      f"({config.steps}): its generator is sampled fully conditional but was trained at a lower "
                      "strength; extend the run with --resume --steps to finish the ramp.", stacklevel=3)
    data.require(model_config.channels, model_config.image_size, model_config.class_names, "the model")
    return RunFolder(out, resume, main=d.is_main, checkpoint=ckpt), model_config, config


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.precision == "fp16" and device.type != "cuda":
        raise GanaugError("precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU.")
    if cfg.precision == "bf16":
        require_native_bf16(device, "--precision fp32")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]


@dataclass
class _Networks:
    """What a GAN run trains and checkpoints."""

    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler
    d_params: list[torch.nn.Parameter]  # D's trained parameters (FreezeD keeps the others)

    def states(self) -> dict:
        return {k: getattr(self, k) for k in ("G", "D", "G_ema", "opt_g", "opt_d", "scaler_g", "scaler_d")}


def _build(model_config: GANConfig, cfg: TrainConfig, device: torch.device, data: LabelledImages,
           init: str | Path | None, init_classes: dict[str, str] | None, log) -> tuple[_Networks, dict | None]:
    """Phase 2: the networks and optimisers (from ``init``'s weights when given), and the init record."""
    torch.manual_seed(cfg.seed)
    G = build_generator(model_config).to(device)
    D = build_discriminator(model_config).to(device)
    G_ema = make_ema(G)
    record = init_models(init, model_config, G, G_ema, D, init_classes, log=log) if init is not None else None
    d_params = freeze_discriminator(D, cfg.freeze_d)  # FreezeD: D's lower blocks stay as they started
    for m in G.modules():
        if isinstance(m, GhostBatchNorm2d):
            m.group = cfg.bn_group
    for g in (G, G_ema):  # class-condition noise, rarer classes more (G_ema samples in eval mode: none)
        g.condition.noise = cfg.class_noise
        g.condition.noise_per_class.copy_(effective_number_weights(data.class_counts(), beta=0.99))
    nets = _Networks(G, D, G_ema,
                     torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2)),
                     torch.optim.Adam(d_params, lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2)),
                     torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16"),
                     torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16"), d_params)
    return nets, record


def _restore(run: RunFolder, nets: _Networks, device: torch.device, out: Path) -> int:
    """The checkpoint's state in ``nets`` (resuming); the step it was written at (0: a new run)."""
    try:
        return run.restore(nets.states(), device)
    except RuntimeError as e:
        raise GanaugError(
            f"the checkpoint in {str(out)!r} does not fit the networks this version of ganaug builds from the "
            f"run's settings ({str(e).splitlines()[0]}): it was written by a version whose layers differ (the "
            "lite discriminator changed with the depthwise spectral-norm fix). Continue in a new run folder; "
            "the old run's generator still exports and loads.") from None


def _distribute(d: Dist, nets: _Networks, batch_size: int, device: torch.device
                ) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(G, D) as they compute gradients: DDP wrappers over the same modules when distributed, after
    every rank took rank 0's buffers; the modules themselves in one process."""
    if not d.enabled:
        return nets.G, nets.D
    broadcast_buffers(d, nets.G, nets.D, nets.G_ema)
    nets.G.condition.rows = (d.rows(batch_size).start, batch_size)  # G's class-noise rows, as one process draws them
    return wrap_ddp(nets.G, device), wrap_ddp(nets.D, device)


class _RankBatches:
    """This rank's rows of every batch (one process: all of them): real batches, the generator's
    inputs with the same class distribution, and DiffAugment drawn for the whole batch so that every
    rank augments its rows as one process would."""

    def __init__(self, d: Dist, cfg: TrainConfig, data: LabelledImages, z_dim: int, value_range: tuple,
                 device: torch.device):
        self.d, self.cfg, self.data, self.z_dim, self.vr, self.device = d, cfg, data, z_dim, value_range, device
        self.B = cfg.batch_size
        self.rows = d.rows(self.B)
        self.b = self.rows.stop - self.rows.start  # this rank's share of the batch
        self.g_rows = torch.arange(self.rows.start, self.rows.stop)
        self.d_rows = torch.cat([self.g_rows, self.g_rows + self.B])  # D sees [real batch; fake batch]
        self.sampler = _BatchSampler(data.labels, data.num_classes, cfg.class_balanced)

    def real(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.sampler.draw(self.B)[self.rows]
        return (uint8_to_model(self.data.images[idx], self.vr).to(self.device, non_blocking=True),
                self.data.labels[idx].to(self.device))

    def fake_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.data.labels[self.sampler.draw(self.B)[self.rows]].to(self.device)  # as the real batches
        return torch.randn(self.B, self.z_dim, device=self.device)[self.rows], y

    def aug_d(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.cfg.diffaugment, self.d_rows if self.d.enabled else None, 2 * self.B)

    def aug_g(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.cfg.diffaugment, self.g_rows if self.d.enabled else None, self.B)


def _train(d: Dist, device: torch.device, data: LabelledImages, model_config: GANConfig, config: TrainConfig,
           out: Path, resume: bool, progress: bool, command: str | None, guide: torch.nn.Module | None,
           init: str | Path | None, init_classes: dict[str, str] | None) -> Path:
    # -- 1. settings ----------------------------------------------------------------------------
    run, model_config, config = _settings(d, data, model_config, config, out, resume)
    ckpt = run.checkpoint
    if resume and ckpt is None and progress and d.is_main:
        print(f"no checkpoint in {out}; starting a new run.")
    cfg = config.resolved(data.class_counts(), device.type, device.type == "cuda" and torch.cuda.is_bf16_supported())
    amp_dtype = _amp_dtype(cfg, device)
    guider = guide_for_run(guide, cfg, data, model_config.value_range, device, ckpt, out)

    # -- 2. networks, restored from the checkpoint when resuming ----------------------------------
    nets, init_record = _build(model_config, cfg, device, data, init, init_classes,
                               log=print if progress and d.is_main else (lambda m: None))
    G, D, G_ema = nets.G, nets.D, nets.G_ema
    opt_g, opt_d, scaler_g, scaler_d = nets.opt_g, nets.opt_d, nets.scaler_g, nets.scaler_d
    if ckpt is not None:
        init_record = ckpt.get("init")
    elif cfg.freeze_d and (init_record or {}).get("discriminator") != "source":
        raise GanaugError(
            f"freeze_d {cfg.freeze_d} keeps D's first blocks as a source trained them, but "
            + (f"{init!r} carries no discriminator" if init is not None else "this run starts from scratch")
            + ", so they would stay random. Fine-tune from a run folder or from a package exported with "
            "`ganaug export --with-discriminator`, or leave out --freeze-d.")
    start = _restore(run, nets, device, out)
    lecam_ema: list[float] | None = ckpt.get("lecam_ema") if ckpt else None  # D's moving means, real and fake
    run.write_config(command, {
        "model": model_config.to_dict(), "train": cfg.to_dict(), "data": {"source": data.source, **data.fingerprint()},
        "processes": d.world_size, "guide": guider.digest if guider else None, "init": init_record})

    # -- distributed: one model on every rank; each rank computes its rows of every batch -------
    G_train, D_train = _distribute(d, nets, cfg.batch_size, device)  # what computes gradients
    batches = _RankBatches(d, cfg, data, model_config.z_dim, model_config.value_range, device)
    B, b, vr = cfg.batch_size, batches.b, model_config.value_range

    # -- 3. the loop ----------------------------------------------------------------------------
    pbar = run.steps(cfg.steps, "train", progress)
    try:
        for step in pbar:
            # (0) the conditioning ramp: how much G and D use the class at this step
            s = conditioning_strength(step, cfg.cond_ramp_start, cfg.cond_ramp_end)
            G.condition.strength = G_ema.condition.strength = D.cond_strength = s
            # (1) discriminator: real and fake through one forward pass, both augmented alike
            for _ in range(cfg.n_dis):
                real, y_real = batches.real()
                z, y_fake = batches.fake_inputs()
                with torch.no_grad(), autocast(device, amp_dtype):
                    fake = G(z, y_fake)
                with autocast(device, amp_dtype):
                    logits, _ = D_train(batches.aug_d(torch.cat([real, fake.to(real.dtype)])),
                                        torch.cat([y_real, y_fake]))
                logits = logits.float()
                loss_d = d_loss(cfg.loss, logits[:b], logits[b:])
                if cfg.lecam > 0:  # moving averages of D over the whole batch, the same on every rank
                    means = d.mean(torch.stack([logits[:b].mean(), logits[b:].mean()]).detach())
                    lecam_ema = means if lecam_ema is None else [0.99 * e + 0.01 * m for e, m in zip(lecam_ema, means)]
                    loss_d = loss_d + cfg.lecam * lecam_penalty(logits[:b], logits[b:], *lecam_ema)
                opt_d.zero_grad(set_to_none=True)
                scaler_d.scale(loss_d).backward()
                scaler_d.step(opt_d)
                scaler_d.update()

            # (2) generator
            z, y_fake = batches.fake_inputs()
            D.requires_grad_(False)
            with autocast(device, amp_dtype):
                fake = G_train(z, y_fake)
                out_fake, feat_fake = D(batches.aug_g(fake), y_fake)  # D's weights are fixed here: no DDP
                loss_g = g_loss(cfg.loss, out_fake.float())
                if cfg.feature_matching > 0:  # per-rank batch means: not the same as one process
                    with torch.no_grad():
                        _, feat_real = D(batches.aug_g(real), y_real)
                    loss_g = loss_g + cfg.feature_matching * feature_matching(
                        feat_real.float(), feat_fake.float())
                loss_guide = guider(fake, y_fake) if guider else torch.zeros((), device=device)
                loss_g = loss_g + loss_guide
            if cfg.ortho_reg > 0:
                loss_g = loss_g + cfg.ortho_reg * orthogonal_penalty(G)
            opt_g.zero_grad(set_to_none=True)
            scaler_g.scale(loss_g).backward()
            scaler_g.step(opt_g)
            scaler_g.update()
            for p in nets.d_params:  # not D.requires_grad_(True): frozen blocks stay frozen
                p.requires_grad_(True)

            # (3) EMA generator (after the ranks' buffers agree again)
            sync_buffers(d, G, D)
            update_ema(G_ema, G, cfg.ema_beta, step)

            # (4) bookkeeping; a non-finite loss stops before any checkpoint is overwritten
            ld, lg, d_real, d_fake, lguide = d.mean(torch.stack([
                loss_d.detach(), loss_g.detach().float(), logits[:b].mean(), logits[b:].mean(),
                loss_guide.detach().float()]))
            done = step + 1
            run.check_finite("training", done, "Lower --lr-g/--lr-d or use --precision fp32, then continue with "
                             "--resume.", D=ld, G=lg)
            if done % cfg.log_every == 0 or done == cfg.steps:
                rate = (done - start) * B * cfg.n_dis / max(run.seconds(), 1e-9)
                run.log({"step": done, "loss_d": round(ld, 5), "loss_g": round(lg, 5),
                         "d_real": round(d_real, 4), "d_fake": round(d_fake, 4),
                         "real_img_per_s": round(rate, 1), "elapsed_s": round(run.elapsed(), 1),
                         **({"loss_guide": round(lguide, 5)} if guider else {})})
                pbar.set_postfix(loss_d=f"{ld:.3f}", loss_g=f"{lg:.3f}", img_s=f"{rate:.0f}", refresh=False)
            if done % cfg.sample_every == 0 or done == cfg.steps:
                run.sample_grid(done, G_ema, data.class_names, model_config.z_dim, vr, seed=cfg.seed + 1)
            if cfg.snapshot_every and done % cfg.snapshot_every == 0:
                run.snapshot(done, G_ema, model_config.to_dict())
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                check_consistency(d, ["G", "D", "G_ema"], G, D, G_ema)
                run.save(done, nets.states(), device, {
                    "lecam_ema": lecam_ema, "guide": guider.digest if guider else None, "init": init_record,
                    "model_config": model_config.to_dict(), "train_config": cfg.to_dict(),
                    "data": data.fingerprint()})
                d.barrier()  # the other ranks wait until rank 0 has written it
    finally:
        pbar.close()
        run.close()
    return out
