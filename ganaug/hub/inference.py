"""How a generator runs at inference time: memory layout, compilation and arithmetic.

An :class:`InferenceOptions` is data (it is saved in a package's config.json and validated like
the model config); :func:`build_runner` turns a float generator and options into the module that
generates. The float weights stay the package's weights: int8 is re-derived at load time from
them with a fixed calibration, so a package never holds anything but safetensors and JSON.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..configs import JsonConfig
from ..errors import GanaugError
from ..precision import autocast, require_native_bf16

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class InferenceOptions(JsonConfig):
    """- ``channels_last``: NHWC activations (oneDNN's preferred layout on CPU);
    - ``compile``: ``torch.compile`` (inductor) with a dynamic batch size. The first call compiles
      (tens of seconds on a CPU, once per process), later calls of any batch size are fast;
    - ``precision``: ``fp32``; ``bf16`` autocast (only where the hardware computes bf16 natively:
      a GPU, or a CPU with AVX-512 BF16 or AMX; elsewhere it is emulated and far slower, so it is
      refused); ``int8``: post-training quantisation of every conv and linear layer with PyTorch 2
      export and torchao's x86 inductor quantiser (CPU only; pays off only with ``compile``);
    - ``calibration``: generated images whose activations set the int8 ranges (fixed seed).
    """

    json_name = "inference options"

    channels_last: bool = False
    compile: bool = False
    precision: Precision = "fp32"
    calibration: int = 512

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise GanaugError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}.")
        for name in ("channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise GanaugError(f"inference option {name!r} must be true or false, got {getattr(self, name)!r}.")
        if not isinstance(self.calibration, int) or isinstance(self.calibration, bool) or self.calibration < 1:
            raise GanaugError(f"calibration must be a positive number of images, got {self.calibration!r}.")

    @property
    def is_default(self) -> bool:
        return self == InferenceOptions()


class Runner(nn.Module):
    """The float generator (its parameters tell the device) and the callable that generates."""

    def __init__(self, net: nn.Module, fast: Any, amp_dtype: torch.dtype | None, freezing: bool):
        super().__init__()
        self.net = net
        self.fast = fast
        self.amp_dtype = amp_dtype
        self.freezing = freezing

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        amp = autocast(z.device, self.amp_dtype)
        frozen = contextlib.nullcontext()
        if self.freezing:  # int8 kernels need the weights folded into the graph (inductor freezing)
            import torch._inductor.config as inductor_config

            frozen = inductor_config.patch(freezing=True)
        with torch.no_grad(), amp, frozen:
            return self.fast(z, y).float()


def build_runner(net: nn.Module, z_dim: int, num_classes: int, options: InferenceOptions) -> nn.Module:
    """``net`` itself for the default options, else a :class:`Runner` around it."""
    if options.is_default:
        return net
    device = next(net.parameters()).device
    fast: Any = net
    if options.channels_last:  # on a copy: the float generator others hold keeps its layout
        fast = copy.deepcopy(net).to(memory_format=torch.channels_last)
    amp_dtype = None
    if options.precision == "bf16":
        require_native_bf16(device, "precision 'fp32' or 'int8'")
        amp_dtype = torch.bfloat16
    if options.precision == "int8":
        if device.type != "cpu":
            raise GanaugError("int8 inference is for CPUs (x86 inductor quantiser); on a GPU use fp32 or bf16.")
        fast = quantize_int8(fast, z_dim, num_classes, options.calibration)
    if options.compile:
        # dynamic: batch sizes vary (GANBatchAugment replaces a random number of images per batch),
        # and a static compile recompiles for every new size (tens of seconds each on a CPU)
        fast = torch.compile(fast, dynamic=True)
    return Runner(net, fast, amp_dtype, freezing=options.precision == "int8" and options.compile)


class ChannelAffine(nn.Module):
    """An eval-mode BatchNorm as what it computes: ``x * scale + shift`` per channel."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        scale = torch.rsqrt(bn.running_var + bn.eps)
        shift = -bn.running_mean * scale
        if bn.affine:
            scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
        self.register_buffer("scale", scale.detach()[None, :, None, None])
        self.register_buffer("shift", shift.detach()[None, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def batchnorm_as_affine(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with every BatchNorm2d replaced by its eval-mode affine map. The same
    function; and an exported graph without batch-norm nodes converts in a second instead of half a
    minute (torchao's conversion looks for QAT conv-BN patterns whenever one is present)."""
    net = copy.deepcopy(net).eval()
    for name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, child_name, ChannelAffine(child))
    return net


def quantize_int8(net: nn.Module, z_dim: int, num_classes: int, calibration: int) -> nn.Module:
    """Static int8 post-training quantisation (PT2E): export with a dynamic batch, insert observers
    with ``X86InductorQuantizer``, run ``calibration`` latents of every class through it, convert.
    The generator's own outputs calibrate it, so no data is needed."""
    net = batchnorm_as_affine(net)
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
    except ImportError as e:
        raise GanaugError("int8 inference needs torchao: pip install torchao (or pip install 'ganaug[fast]').") from e
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(calibration, z_dim, generator=gen)
    y = torch.arange(calibration) % num_classes
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        exported = torch.export.export(net, (z[:2], y[:2]), dynamic_shapes=({0: batch}, {0: batch})).module()
        quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        for zb, yb in zip(z.split(128), y.split(128)):
            prepared(zb, yb)
        return convert_pt2e(prepared)
