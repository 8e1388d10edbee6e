"""Layers shared by every ganaug architecture.

Both SNGAN and BigGAN-lite are assembled from these blocks; an architecture file only decides
widths, how the class condition is built, and where attention goes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm


def maybe_sn(module: nn.Module, use_sn: bool) -> nn.Module:
    """Initialise a conv/linear layer and wrap it in spectral normalisation if asked.

    Spectral norm runs one power iteration per training forward pass; its ``u``/``v`` vectors
    are buffers, so they are saved in checkpoints and a resumed run continues exactly. A
    depthwise convolution gets :class:`DepthwiseSpectralNorm` instead (exact, no buffers).
    """
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    if not use_sn:
        return module
    if isinstance(module, nn.Conv2d) and module.groups > 1:
        if module.groups != module.in_channels or module.out_channels != module.in_channels:
            raise ValueError("spectral norm is implemented for dense and depthwise convolutions only")
        return parametrize.register_parametrization(module, "weight", DepthwiseSpectralNorm())
    return spectral_norm(module, eps=1e-6)


class DepthwiseSpectralNorm(nn.Module):
    """Spectral normalisation of a depthwise convolution's weight (C, 1, k, k).

    Miyato et al.'s spectral norm divides a conv weight by the largest singular value of the
    matrix that maps an input patch to an output pixel. For a depthwise convolution that matrix is
    block-diagonal, one k*k row per channel, so its largest singular value is the largest
    per-channel kernel norm. ``torch``'s ``spectral_norm`` instead reshapes the weight to a dense
    (C, k*k) matrix, whose largest singular value is 2-4x larger at initialisation (more for wider
    layers, more as kernels align), and the excess compounds: each residual branch of the lite
    discriminator (two depthwise layers) was damped 4-14x at initialisation, and it barely told
    classes apart.
    """

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / weight.flatten(1).norm(dim=1).amax().clamp_min(1e-6)


def conv3x3(c_in: int, c_out: int, sn: bool, separable: bool = False) -> nn.Module:
    """A 3x3 convolution, or with ``separable`` a depthwise 3x3 followed by a pointwise 1x1
    (MobileNet's factorisation: 9 c_in + c_in c_out multiply-adds per pixel instead of
    9 c_in c_out)."""
    if not separable:
        return maybe_sn(nn.Conv2d(c_in, c_out, 3, padding=1), sn)
    return nn.Sequential(maybe_sn(nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False), sn),
                         conv1x1(c_in, c_out, sn))


def conv1x1(c_in: int, c_out: int, sn: bool, bias: bool = True) -> nn.Module:
    return maybe_sn(nn.Conv2d(c_in, c_out, 1, bias=bias), sn)


class ClassCondition(nn.Module):
    """What training does to a generator's class condition (a one-hot or an embedding), with no
    weights of its own; the training loop sets both attributes, and a loaded model has neither.

    - ``strength`` scales it: 0 makes the generator unconditional, and the loop raises it from 0 to
      1 for a conditioning ramp (transitional cGAN, Shahbazi et al. 2022, arXiv 2201.06578), so the
      tail classes start from what every image teaches;
    - ``noise`` adds Gaussian noise in training mode only, with a standard deviation of ``noise`` x
      the condition's RMS x ``noise_per_class[y]`` (NoisyTwins' noise augmentation of the class
      embedding, Rangwani et al. 2023, arXiv 2304.05866, without its Barlow-twins term).

    ``rows = (start, total)`` says that the batch is rows ``start:start + len(y)`` of a batch of
    ``total`` (one rank's share): the noise is drawn for all ``total`` rows and these kept, so the
    ranks together draw what one process would.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.strength, self.noise = 1.0, 0.0
        self.rows: tuple[int, int] | None = None
        self.register_buffer("noise_per_class", torch.ones(num_classes), persistent=False)

    def forward(self, cond: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.training and self.noise > 0:
            rms = cond.detach().pow(2).mean(1, keepdim=True).sqrt()
            sigma = self.noise * rms * self.noise_per_class[y, None].to(cond.dtype)
            if self.rows is None:
                eps = torch.randn_like(cond)
            else:
                start, total = self.rows
                eps = torch.randn(total, *cond.shape[1:], device=cond.device, dtype=cond.dtype)[start:start + len(y)]
            cond = cond + sigma * eps
        return cond if self.strength == 1.0 else cond * self.strength


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training with ``group`` > 0, normalises each run of ``group`` images with
    their own statistics ("ghost" batch norm, Hoffer et al. 2017, arXiv 1705.08741).

    Distributed training normalises each rank's rows on their own, so a run on N ranks and a
    single process with ``group`` = the per-rank batch compute the same thing, and a checkpoint
    moves between world sizes without changing what BatchNorm does. The running statistics get
    one update per forward with the mean of the groups' statistics, as N ranks get after their
    running statistics are averaged. The state dict is a plain BatchNorm2d's.
    """

    group: int = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, g = x.shape[0], self.group
        if not (self.training and g and n > g):
            return super().forward(x)
        if n % g:
            raise ValueError(f"a batch of {n} does not split into BatchNorm groups of {g}")
        out = torch.cat([F.batch_norm(c, None, None, self.weight, self.bias, True, 0.0, self.eps)
                         for c in x.split(g)])
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                xs = x.detach().float().unflatten(0, (n // g, g))
                self.running_mean.lerp_(xs.mean(dim=(1, 3, 4)).mean(0).to(self.running_mean.dtype), m)
                self.running_var.lerp_(xs.var(dim=(1, 3, 4)).mean(0).to(self.running_var.dtype), m)
        return out


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose gain and bias are linear functions of a condition vector.

    SNGAN feeds a one-hot class vector (so the linear map is a per-class gain/bias table);
    BigGAN feeds the shared class embedding concatenated with a chunk of z.
    """

    def __init__(self, num_features: int, cond_dim: int, sn: bool = False):
        super().__init__()
        self.bn = GhostBatchNorm2d(num_features, affine=False)
        self.gain = maybe_sn(nn.Linear(cond_dim, num_features, bias=False), sn)
        self.bias = maybe_sn(nn.Linear(cond_dim, num_features, bias=False), sn)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.gain(cond)[:, :, None, None]
        bias = self.bias(cond)[:, :, None, None]
        return self.bn(x) * gain + bias


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019) with BigGAN's pooled keys and values.

    The output gate ``gamma`` starts at 0, so the block begins as the identity and the
    network learns how much non-local context to use.
    """

    def __init__(self, channels: int, sn: bool):
        super().__init__()
        self.theta = conv1x1(channels, channels // 8, sn, bias=False)
        self.phi = conv1x1(channels, channels // 8, sn, bias=False)
        self.g = conv1x1(channels, channels // 2, sn, bias=False)
        self.out = conv1x1(channels // 2, channels, sn, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        theta = self.theta(x).flatten(2)  # (b, c/8, hw)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # (b, c/8, hw/4)
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # (b, c/2, hw/4)
        attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (b, hw, hw/4)
        o = (g @ attn.transpose(1, 2)).view(b, c // 2, h, w)
        return x + self.gamma * self.out(o)


class GBlock(nn.Module):
    """Generator residual block: CBN-ReLU-up-conv-CBN-ReLU-conv, plus a 1x1 upsampled shortcut
    (``separable``: both 3x3 convolutions depthwise-separable; ``c_hidden``: the width between
    the two convolutions, ``c_out`` unless pruned; ``upsample``: "nearest" or "bilinear")."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, sn: bool, separable: bool = False,
                 c_hidden: int | None = None, upsample: str = "nearest"):
        super().__init__()
        c_hidden = c_hidden or c_out
        self.upsample = upsample
        self.bn1 = ConditionalBatchNorm2d(c_in, cond_dim, sn)
        self.conv1 = conv3x3(c_in, c_hidden, sn, separable)
        self.bn2 = ConditionalBatchNorm2d(c_hidden, cond_dim, sn)
        self.conv2 = conv3x3(c_hidden, c_out, sn, separable)
        self.shortcut = conv1x1(c_in, c_out, sn)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(x, cond))
        h = self.conv1(self._up(h))
        h = self.conv2(F.relu(self.bn2(h, cond)))
        # a 1x1 conv commutes with both upsamplings (each output pixel is a weighted mean of input
        # pixels, weights summing to 1): the same function at a quarter of the cost
        return h + self._up(self.shortcut(x))

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample == "bilinear":
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return F.interpolate(x, scale_factor=2, mode="nearest")


class DBlock(nn.Module):
    """Discriminator residual block with optional 2x average-pool downsampling.

    The first block of D skips the leading ReLU (it sees the raw image), as in SNGAN.
    """

    def __init__(self, c_in: int, c_out: int, sn: bool, downsample: bool, preactivation: bool,
                 separable: bool = False):
        super().__init__()
        # the first block's conv1 reads the image's 1-3 channels: dense (cheap, and a depthwise filter
        # of so few channels learns almost nothing)
        self.conv1 = conv3x3(c_in, c_out, sn, separable and preactivation)
        self.conv2 = conv3x3(c_out, c_out, sn, separable)
        self.downsample = downsample
        self.preactivation = preactivation
        self.shortcut = conv1x1(c_in, c_out, sn) if (c_in != c_out or downsample) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.shortcut is not None:
            if self.preactivation:
                s = self.shortcut(s)
                s = F.avg_pool2d(s, 2) if self.downsample else s
            else:  # first block: pool before the 1x1 conv, as in SNGAN's optimized block
                s = F.avg_pool2d(s, 2) if self.downsample else s
                s = self.shortcut(s)
        return h + s


class ProjectionDiscriminator(nn.Module):
    """ResNet discriminator with spectral norm on every layer and a projection head.

    ``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>`` (Miyato & Koyama 2018), where ``phi`` is the
    ReLU + global-sum-pooled feature. ``forward`` returns logits and those features (the
    features feed the optional feature-matching loss). ``separable``: depthwise-separable blocks.
    """

    def __init__(self, widths: list[int], image_channels: int, num_classes: int,
                 attn_index: int | None, separable: bool = False):
        super().__init__()
        blocks: list[nn.Module] = []
        c_prev = image_channels
        for i, c in enumerate(widths):
            last = i == len(widths) - 1
            blocks.append(DBlock(c_prev, c, sn=True, downsample=not last, preactivation=i > 0,
                                 separable=separable))
            if attn_index is not None and i == attn_index:
                blocks.append(SelfAttention(c, sn=True))
            c_prev = c
        self.blocks = nn.Sequential(*blocks)
        self.linear = maybe_sn(nn.Linear(c_prev, 1), True)
        self.embed = maybe_sn(nn.Embedding(num_classes, c_prev), True)
        self.feature_dim = c_prev
        self.cond_strength = 1.0  # < 1 during a conditioning ramp: the projection term is scaled

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        logits = self.linear(h).squeeze(1) + self.cond_strength * (self.embed(y) * h).sum(dim=1)
        return logits, h


class ResNetGeneratorBody(nn.Module):
    """The conditional ResNet trunk both generators share: linear -> 4x4 -> GBlocks -> image.

    ``widths[0]`` is the 4x4 width; each following entry is the width after one 2x upsampling.
    ``cond_dims[i]`` is the length of the condition vector fed to block ``i``; ``separable`` makes
    the blocks' 3x3 convolutions depthwise-separable; ``hidden[i]`` is block ``i``'s inner width;
    ``upsample`` is how every block doubles the resolution.
    """

    def __init__(self, in_dim: int, widths: list[int], cond_dims: list[int], image_channels: int,
                 sn: bool, attn_index: int | None, separable: bool = False, hidden: list[int] | None = None,
                 upsample: str = "nearest"):
        super().__init__()
        self.bottom_width = widths[0]
        self.linear = maybe_sn(nn.Linear(in_dim, widths[0] * 16), sn)
        self.blocks = nn.ModuleList(
            GBlock(widths[i], widths[i + 1], cond_dims[i], sn, separable, hidden[i] if hidden else None, upsample)
            for i in range(len(widths) - 1)
        )
        # Attention after block attn_index (its output resolution), or nowhere.
        self.attn_index = attn_index
        self.attn = SelfAttention(widths[attn_index + 1], sn) if attn_index is not None else None
        self.out_bn = GhostBatchNorm2d(widths[-1])
        self.out_conv = conv3x3(widths[-1], image_channels, sn)

    def forward(self, h_in: torch.Tensor, conds: list[torch.Tensor]) -> torch.Tensor:
        h = self.linear(h_in).view(h_in.shape[0], self.bottom_width, 4, 4)
        for i, block in enumerate(self.blocks):
            h = block(h, conds[i])
            if self.attn is not None and i == self.attn_index:
                h = self.attn(h)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))
