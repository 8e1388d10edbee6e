"""SkipGANomaly (Akcay et al. 2019): a U-Net generator with skip connections reconstructs
normal images; a discriminator doubles as the feature extractor for the latent loss and score.

Score of an image x with reconstruction x' = G(x) and D features f:
    lambda * mean|x - x'| + (1 - lambda) * mean (f(x) - f(x'))^2        (lambda = 0.9)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2.functional import gaussian_blur

from ..configs import JsonConfig
from ..errors import GanaugError
from ..models.layers import maybe_sn

ANOMALY_SIZES = (32, 64, 128)
# how images of any size become image_size x image_size, the same at training and scoring time:
# crop = shorter side resized, centre cropped (as generator training does); pad = longer side
# resized, black borders (nothing cut off); strict = every image must have the training images' size
RESIZE_POLICIES = ("crop", "pad", "strict")
# how an image's anomaly map becomes its score: the mean (the paper's image-level score), the
# maximum, or the mean of the top score_topk share of pixels (a small defect in a large normal
# texture is diluted by the mean, not by these)
SCORE_REDUCTIONS = ("mean", "max", "topk")


@dataclass
class AnomalyConfig(JsonConfig):
    json_name = "anomaly config"

    image_size: int = 64
    channels: int = 1
    width: int = 32  # channels of the first encoder layer; doubles per level, capped at 8x
    latent_dim: int = 100
    spectral_norm: bool = False  # in D
    w_adv: float = 1.0  # adversarial (feature matching)
    w_con: float = 40.0  # contextual L1 reconstruction
    w_lat: float = 1.0  # latent L2 between D features of x and G(x)
    score_lambda: float = 0.9
    score_smoothing: float = 0.0  # sigma in pixels of the Gaussian that smooths the anomaly map (0: none)
    score_reduce: str = "mean"  # one of SCORE_REDUCTIONS
    score_topk: float = 0.01  # share of pixels whose mean is the score under "topk"
    input_noise: float = 0.0  # std of Gaussian noise added to G's input while training (really added)
    resize: str = "crop"  # one of RESIZE_POLICIES
    source_size: tuple[int, int] | None = None  # (width, height) of the training images under "strict"
    format_version: int = 1

    def validate(self) -> "AnomalyConfig":
        if self.format_version > 1:
            raise GanaugError("this anomaly model was written by a newer ganaug; upgrade ganaug.")
        if self.image_size not in ANOMALY_SIZES:
            raise GanaugError(f"anomaly image size {self.image_size} is not supported; choose one of "
                              f"{list(ANOMALY_SIZES)}.")
        if self.channels not in (1, 3):
            raise GanaugError(f"channels must be 1 or 3, got {self.channels}.")
        if self.score_reduce not in SCORE_REDUCTIONS:
            raise GanaugError(f"score_reduce must be one of {list(SCORE_REDUCTIONS)}, got {self.score_reduce!r}.")
        if not 0 < self.score_topk <= 1 or self.score_smoothing < 0:
            raise GanaugError(f"score_topk must lie in (0, 1] and score_smoothing be >= 0, got {self.score_topk} "
                              f"and {self.score_smoothing}.")
        if self.resize not in RESIZE_POLICIES:
            raise GanaugError(f"resize must be one of {list(RESIZE_POLICIES)}, got {self.resize!r}.")
        if not 0 <= self.score_lambda <= 1:
            raise GanaugError(f"score_lambda must lie in [0, 1], got {self.score_lambda}.")
        if self.width < 4 or self.latent_dim < 1:
            raise GanaugError("width must be >= 4 and latent_dim >= 1.")
        return self

    @property
    def widths(self) -> list[int]:
        levels = int(math.log2(self.image_size // 4))
        return [self.width * min(8, 2**i) for i in range(levels)]


def smooth_maps(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Anomaly maps (N, H, W) smoothed by a Gaussian of ``sigma`` pixels (0: unchanged)."""
    if sigma <= 0:
        return maps
    sigma = min(sigma, maps.shape[-1] / 6)  # the kernel must fit the image
    size = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(maps[:, None], [size, size], [sigma, sigma])[:, 0]


def reduce_maps(maps: torch.Tensor, how: str = "mean", topk: float = 0.01) -> torch.Tensor:
    """Image scores (N,) from anomaly maps (N, H, W): their mean, max, or top-``topk`` share mean."""
    flat = maps.flatten(1)
    if how == "max":
        return flat.amax(1)
    if how == "topk":
        return flat.topk(max(1, math.ceil(topk * flat.shape[1])), dim=1).values.mean(1)
    return flat.mean(1)


def _down(c_in: int, c_out: int, bn: bool, sn: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [maybe_sn(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not bn), sn)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class UNetGenerator(nn.Module):
    """Encoder (stride-2 convs) to a latent vector, decoder back, with a skip at every level."""

    def __init__(self, cfg: AnomalyConfig):
        super().__init__()
        w = cfg.widths
        self.down = nn.ModuleList([_down(cfg.channels, w[0], bn=False)] +
                                  [_down(w[i - 1], w[i], bn=True) for i in range(1, len(w))])
        self.bottleneck = nn.Conv2d(w[-1], cfg.latent_dim, 4, 1, 0)
        self.up0 = nn.Sequential(nn.ConvTranspose2d(cfg.latent_dim, w[-1], 4, 1, 0, bias=False),
                                 nn.BatchNorm2d(w[-1]), nn.ReLU(True))
        ups = []
        for i in range(len(w) - 1, -1, -1):
            c_out = w[i - 1] if i > 0 else cfg.channels
            last = i == 0
            ups.append(nn.Sequential(nn.ConvTranspose2d(2 * w[i], c_out, 4, 2, 1, bias=last),
                                     *(() if last else (nn.BatchNorm2d(c_out), nn.ReLU(True)))))
        self.up = nn.ModuleList(ups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for d in self.down:
            h = d(h)
            skips.append(h)
        h = self.up0(self.bottleneck(h))
        for u, s in zip(self.up, reversed(skips)):
            h = u(torch.cat([h, s], 1))
        return torch.tanh(h)


class FeatureDiscriminator(nn.Module):
    """DCGAN encoder; ``forward`` returns (logit, features of the last conv block)."""

    def __init__(self, cfg: AnomalyConfig):
        super().__init__()
        w, sn = cfg.widths, cfg.spectral_norm
        self.features = nn.Sequential(_down(cfg.channels, w[0], bn=False, sn=sn),
                                      *[_down(w[i - 1], w[i], bn=not sn, sn=sn) for i in range(1, len(w))])
        self.classifier = maybe_sn(nn.Conv2d(w[-1], 1, 4, 1, 0), sn)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.classifier(f).flatten(), f


class SkipGANomaly(nn.Module):
    """Generator + discriminator + the anomaly score. ``threshold`` is set by training."""

    def __init__(self, config: AnomalyConfig, threshold: float | None = None):
        super().__init__()
        self.config = config.validate()
        self.G, self.D = UNetGenerator(config), FeatureDiscriminator(config)
        self.threshold = threshold

    @torch.no_grad()
    def anomaly_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel anomaly maps (N, H, W) for images in [-1, 1]: ``lambda`` x the reconstruction
        error (L1, mean over channels) + ``1 - lambda`` x the latent distance (squared difference of
        D's last features, mean over channels, repeated up to the image's size), smoothed by a
        Gaussian of ``score_smoothing`` pixels. Its mean, unsmoothed, is the paper's image score."""
        self.eval()
        rec = self.G(x)
        _, f_x = self.D(x)
        _, f_r = self.D(rec)
        lam, c = self.config.score_lambda, self.config
        latent = F.interpolate((f_x - f_r).pow(2).mean(1, keepdim=True), size=x.shape[-2:], mode="nearest")
        maps = lam * (x - rec).abs().mean(1) + (1 - lam) * latent[:, 0]
        return smooth_maps(maps, c.score_smoothing)

    @torch.no_grad()
    def score_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores (N,), anomaly maps (N, H, W)) for images in [-1, 1]; the score is the map reduced
        by ``score_reduce``."""
        maps = self.anomaly_maps(x)
        return reduce_maps(maps, self.config.score_reduce, self.config.score_topk), maps

    def losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """(generator loss, discriminator loss, parts) for one batch of normal images."""
        c = self.config
        noisy = x + c.input_noise * torch.randn_like(x) if c.input_noise > 0 else x
        rec = self.G(noisy)
        logit_real, f_real = self.D(x)
        logit_fake, f_fake = self.D(rec)
        adv = (f_real.mean(0) - f_fake.mean(0)).pow(2).mean()  # feature matching
        con = (x - rec).abs().mean()
        lat = (f_real - f_fake).pow(2).mean()
        g_loss = c.w_adv * adv + c.w_con * con + c.w_lat * lat
        logit_fake_d, _ = self.D(rec.detach())
        d_loss = (F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
                  + F.binary_cross_entropy_with_logits(logit_fake_d, torch.zeros_like(logit_fake_d)))
        return g_loss, d_loss, {"adv": adv.item(), "con": con.item(), "lat": lat.item(), "d": d_loss.item()}
