"""Structured channel pruning of a trained generator.

Every generator block has an inner width (between its two convolutions) that nothing outside the
block sees, so channels there can be removed without touching the residual path. A channel's
importance is how strongly conv2 reads it times how large the conditional BN makes it (its mean
|gain| and |bias| over the classes): BatchNorm has already removed the scale of conv1's filter, so
conv1's weights say nothing about it (network slimming, Liu et al. 2017, arXiv 1708.06519, ranks
channels by BN scale in the same spirit). The pruned generator is a valid config
(``g_hidden_ratio``) that packages and loads like any other; a short :func:`~ganaug.compress.distill`
from the unpruned generator (``init=``) repairs what the cut changed.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from ..errors import GanaugError
from ..hub.generator import Generator
from ..models import build_generator
from ..models.layers import GBlock


def _weight(module: nn.Module) -> torch.Tensor:
    """A conv/linear layer's unnormalised weight (the spectral-norm original when there is one)."""
    p = getattr(module, "parametrizations", None)
    return p.weight.original if p is not None and hasattr(p, "weight") else module.weight


def _convs(conv: nn.Module) -> list[nn.Conv2d]:
    """The conv layers of a 3x3 (one) or depthwise-separable (depthwise, pointwise) convolution."""
    return list(conv) if isinstance(conv, nn.Sequential) else [conv]


def channel_importance(block: GBlock) -> torch.Tensor:
    """One score per inner channel of ``block`` (higher: keep)."""
    with torch.no_grad():
        cond_rows = torch.eye(block.bn2.gain.in_features)
        gain = (1 + block.bn2.gain(cond_rows)).abs().mean(0)  # over one-hot rows: every class (or code)
        bias = block.bn2.bias(cond_rows).abs().mean(0)
        convs = _convs(block.conv2)
        if len(convs) == 1:
            reads = _weight(convs[0]).transpose(0, 1).flatten(1).norm(dim=1)
        else:  # depthwise filter of the channel, then the pointwise column that reads it
            reads = _weight(convs[0]).flatten(1).norm(dim=1) * _weight(convs[1]).transpose(0, 1).flatten(1).norm(dim=1)
        return (gain + bias) * reads


def _copy_layer(old: nn.Module, new: nn.Module, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> None:
    """Copy ``old``'s weights into the smaller ``new``, keeping output rows ``out_idx`` and input
    channels ``in_idx`` (spectral-norm vectors follow the same rows and columns)."""
    w = _weight(old).detach()
    grouped = isinstance(old, nn.Conv2d) and old.groups > 1  # depthwise: one input per output
    if out_idx is not None:
        w = w[out_idx]
    if in_idx is not None and not grouped:
        w = w[:, in_idx]
    with torch.no_grad():
        _weight(new).copy_(w)
        if getattr(old, "bias", None) is not None:
            new.bias.copy_(old.bias[out_idx] if out_idx is not None else old.bias)
        p_old, p_new = getattr(old, "parametrizations", None), getattr(new, "parametrizations", None)
        if p_old is not None and p_new is not None:
            sn_old, sn_new = p_old.weight[0], p_new.weight[0]
            u, v = sn_old._u.detach(), sn_old._v.detach()
            if out_idx is not None:
                u = u[out_idx]
            if in_idx is not None and not grouped:
                v = v.view(_weight(old).shape[1], -1)[in_idx].flatten()
            sn_new._u.copy_(u)
            sn_new._v.copy_(v)


@torch.no_grad()
def recalibrate_batchnorm(net: nn.Module, z_dim: int, num_classes: int, batches: int = 16,
                          batch_size: int = 128, seed: int = 0) -> None:
    """Re-estimate every BatchNorm's running statistics on the network's own activations (fixed
    seed): after channels are removed, the next layers' inputs change and the old statistics are
    stale. Only BatchNorm runs in training mode; everything else (spectral norm) stays in eval."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    net.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over the batches
        bn.train()
    device = next(net.parameters()).device
    for _ in range(batches):
        z = torch.randn(batch_size, z_dim, generator=gen).to(device)
        y = torch.randint(num_classes, (batch_size,), generator=gen).to(device)
        net(z, y)
    for bn in bns:
        bn.momentum = 0.1
        bn.eval()


def prune_generator(gen: Generator, keep: float) -> Generator:
    """A generator whose blocks keep the ``keep`` share of their inner channels (the most
    important ones; see :func:`channel_importance`), with the remaining weights copied over and
    its BatchNorm statistics re-estimated.
    Fine-tune it with :func:`ganaug.compress.distill` (``init=`` the result, teacher ``gen``)."""
    if not 0 < keep < 1:
        raise GanaugError(f"keep must be a share of the channels in (0, 1), got {keep!r}.")
    config = dataclasses.replace(gen.config, g_hidden_ratio=gen.config.g_hidden_ratio * keep).validate()
    old_net = copy.deepcopy(gen.net).cpu().eval()
    new_net = build_generator(config).eval()
    new_state = new_net.state_dict()
    # everything outside the blocks' inner width keeps its shape: copy it as it is
    new_net.load_state_dict({k: v for k, v in old_net.state_dict().items()
                             if k in new_state and v.shape == new_state[k].shape}, strict=False)
    old_blocks = [m for m in old_net.modules() if isinstance(m, GBlock)]
    new_blocks = [m for m in new_net.modules() if isinstance(m, GBlock)]
    for old, new, width in zip(old_blocks, new_blocks, config.g_hidden_widths(), strict=True):
        idx = channel_importance(old).topk(width).indices.sort().values
        c1_old, c1_new = _convs(old.conv1), _convs(new.conv1)
        for o, n in zip(c1_old[:-1], c1_new[:-1]):  # a separable conv1's depthwise part reads c_in: unchanged
            _copy_layer(o, n, None, None)
        _copy_layer(c1_old[-1], c1_new[-1], idx, None)
        _copy_layer(old.bn2.gain, new.bn2.gain, idx, None)
        _copy_layer(old.bn2.bias, new.bn2.bias, idx, None)
        with torch.no_grad():
            new.bn2.bn.running_mean.copy_(old.bn2.bn.running_mean[idx])
            new.bn2.bn.running_var.copy_(old.bn2.bn.running_var[idx])
        c2_old, c2_new = _convs(old.conv2), _convs(new.conv2)
        if len(c2_old) == 1:
            _copy_layer(c2_old[0], c2_new[0], None, idx)
        else:
            _copy_layer(c2_old[0], c2_new[0], idx, None)  # depthwise: one filter per kept channel
            _copy_layer(c2_old[1], c2_new[1], None, idx)
    recalibrate_batchnorm(new_net, config.z_dim, config.num_classes)
    out = Generator(new_net, config, {**gen.metadata, "pruned_from": {"source": gen.source, "keep": keep}})
    return out.to(gen.device)
