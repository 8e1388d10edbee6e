"""Tests generated from the registry: every architecture gets the same checks."""

import pytest
import torch

from ganaug import GanaugError
from ganaug.models import (GANConfig, SelfAttention, build_discriminator, build_generator,
                           list_architectures, make_config, register_architecture, sample_latents)

ARCHS = list_architectures()


def small(arch, size=32, channels=3, num_classes=4, **kw):
    return make_config(arch, num_classes, image_size=size, channels=channels, g_width=8,
                       d_width=8, **kw)


def test_architectures_registered():
    assert {"sngan", "biggan-lite", "lite"} <= set(ARCHS)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(arch, size, channels):
    cfg = small(arch, size, channels)
    G, D = build_generator(cfg), build_discriminator(cfg)
    z, y = torch.randn(2, cfg.z_dim), torch.tensor([0, 3])
    x = G(z, y)
    assert x.shape == (2, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    logits, feat = D(x, y)
    assert logits.shape == (2,)
    assert feat.shape == (2, D.feature_dim)


@pytest.mark.parametrize("arch", ARCHS)
def test_spectral_norm_bounds_every_discriminator_layer(arch):
    cfg = small(arch, attn_resolution=16)
    D = build_discriminator(cfg).train()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))
    for _ in range(30):  # power iterations converge during training forward passes
        D(x, y)
    checked = 0
    for name, module in D.named_modules():
        if not hasattr(module, "parametrizations"):
            continue
        w = module.weight.detach()
        # the matrix from an input patch to an output pixel; block-diagonal (one row of k*k taps per
        # channel) for a depthwise conv, whose weight reshaped to (C, k*k) would overstate it 2-4x
        depthwise = isinstance(module, torch.nn.Conv2d) and module.groups > 1
        mat = (torch.block_diag(*w.flatten(1).unbind(0)) if depthwise
               else w if isinstance(module, torch.nn.Embedding) else w.flatten(1))
        sigma = torch.linalg.matrix_norm(mat, ord=2).item()
        assert 0.9 < sigma < 1.05, f"{name}: largest singular value {sigma}"
        checked += 1
    n_layers = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding))
                   for m in D.modules())
    assert checked == n_layers  # spectral norm is on every layer of D


@pytest.mark.parametrize("arch", ARCHS)
def test_discriminator_depends_on_label(arch):
    cfg = small(arch)
    D = build_discriminator(cfg).eval()
    x = torch.randn(1, 3, 32, 32)
    outs = [D(x, torch.tensor([c]))[0].item() for c in range(4)]
    assert len({round(o, 6) for o in outs}) == 4


@pytest.mark.parametrize("arch", ARCHS)
def test_generator_depends_on_class(arch):
    cfg = small(arch)
    G = build_generator(cfg).eval()
    z = torch.randn(1, cfg.z_dim).repeat(2, 1)
    x = G(z, torch.tensor([0, 1]))
    assert (x[0] - x[1]).abs().mean() > 1e-4


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_package_round_trip(arch, dtype, tmp_path):
    """Every architecture saves as a package and loads back with the same weights and images
    (bf16 packages: the same weights rounded, computed in float32)."""
    from ganaug import Generator, load_generator

    cfg = small(arch, channels=1, num_classes=2)
    torch.manual_seed(0)
    gen = Generator(build_generator(cfg), cfg, {})
    back = load_generator(gen.save_pretrained(tmp_path / arch, dtype=dtype))
    assert back.config == cfg
    for name, t in gen.net.state_dict().items():
        want = t.to(torch.bfloat16).to(t.dtype) if dtype == "bfloat16" and t.is_floating_point() else t
        assert torch.equal(back.net.state_dict()[name], want), name
    if dtype == "float32":
        assert torch.equal(back.generate([0, 1, 1], seed=3), gen.generate([0, 1, 1], seed=3))


@pytest.mark.parametrize("arch", ARCHS)
def test_config_json_round_trip_rebuilds_model(arch):
    cfg = small(arch, class_names=["a", "b", "c", "d"])
    again = GANConfig.from_dict(cfg.to_dict())
    assert again == cfg
    G1, G2 = build_generator(cfg), build_generator(again)
    assert G1.state_dict().keys() == G2.state_dict().keys()


def test_biggan_lite_has_attention_and_hierarchical_z():
    cfg = small("biggan-lite")
    assert cfg.attn_resolution == 16 and cfg.hierarchical_z and cfg.shared_dim > 0
    G = build_generator(cfg)
    assert any(isinstance(m, SelfAttention) for m in G.modules())
    assert sum(G.z_split) == cfg.z_dim and len(G.z_split) == cfg.levels + 1


def test_self_attention_starts_as_identity():
    attn = SelfAttention(16, sn=True)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(attn(x), x)


def test_truncation_bounds_latents():
    z = sample_latents(500, 16, truncation=0.5, generator=torch.Generator().manual_seed(0))
    assert z.abs().max() <= 0.5
    a = sample_latents(4, 8, generator=torch.Generator().manual_seed(1))
    b = sample_latents(4, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


@pytest.mark.parametrize("bad, match", [
    (dict(arch="stylegan9"), "unknown architecture"),
    (dict(image_size=48), "image size 48 is not supported"),
    (dict(num_classes=1, class_names=["only"]), "at least 2 classes"),
    (dict(channels=2), "channels must be 1"),
    (dict(class_names=["a"]), "class_names has 1 entries"),
    (dict(format_version=99), "newer than this ganaug"),
    (dict(attn_resolution=64), "attn_resolution 64"),
    (dict(g_upsample="bicubic"), "g_upsample must be"),
])
def test_invalid_configs_are_clear_errors(bad, match):
    fields = dict(arch="sngan", num_classes=2, class_names=["a", "b"]) | bad
    with pytest.raises(GanaugError, match=match):
        GANConfig(**fields).validate()


def test_config_from_dict_checks_fields_and_types():
    good = small("sngan").to_dict()
    with pytest.raises(GanaugError, match="unknown fields"):
        GANConfig.from_dict(good | {"code": "import os"})
    with pytest.raises(GanaugError, match="missing required fields"):
        GANConfig.from_dict({k: v for k, v in good.items() if k != "num_classes"})
    with pytest.raises(GanaugError, match="'image_size' must be an integer"):
        GANConfig.from_dict(good | {"image_size": "32"})
    with pytest.raises(GanaugError, match="'hierarchical_z' must be true or false"):
        GANConfig.from_dict(good | {"hierarchical_z": 1})


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("sngan", {}, "dup")(torch.nn.Module)


def _flops(module, *inputs):
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module.eval()(*inputs)
    return counter.get_total_flops()


def test_lite_architecture_is_depthwise_separable_and_a_fraction_of_the_compute():
    costs = {}
    for arch in ("sngan", "lite"):
        cfg = make_config(arch, 10, image_size=32, channels=1)
        G, D = build_generator(cfg), build_discriminator(cfg)
        z, y = torch.randn(1, cfg.z_dim), torch.tensor([3])
        costs[arch] = _flops(G, z, y), _flops(D, G(z, y), y)
        depthwise = [m for m in [*G.modules(), *D.modules()] if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
        assert bool(depthwise) == (arch == "lite")
    assert costs["lite"][0] < costs["sngan"][0] / 5, costs  # generator
    assert costs["lite"][1] < costs["sngan"][1] / 3, costs  # discriminator


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_generator_block_shortcut_is_the_upsampled_1x1_conv(mode):
    from torch.nn.functional import interpolate, relu

    from ganaug.models.layers import GBlock

    def up(t):
        return interpolate(t, scale_factor=2, mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))

    torch.manual_seed(0)
    block = GBlock(8, 4, cond_dim=3, sn=False, upsample=mode).eval()
    x, cond = torch.randn(2, 8, 5, 5), torch.randn(2, 3)
    h = relu(block.bn1(x, cond))
    h = block.conv2(relu(block.bn2(block.conv1(up(h)), cond)))
    expected = h + block.shortcut(up(x))  # the textbook order
    torch.testing.assert_close(block(x, cond), expected)


def test_upsampling_mode_is_recorded_and_old_configs_read_as_nearest():
    cfg = small("lite", size=64, g_upsample="bilinear")
    assert GANConfig.from_dict(cfg.to_dict()).g_upsample == "bilinear"
    G = build_generator(cfg).eval()
    assert all(block.upsample == "bilinear" for block in G.body.blocks)
    # packages written before the field existed have no "g_upsample": they were all nearest
    old = {k: v for k, v in cfg.to_dict().items() if k != "g_upsample"}
    assert GANConfig.from_dict(old).g_upsample == "nearest"
    with pytest.raises(GanaugError, match="'g_upsample' must be one of"):
        GANConfig.from_dict(cfg.to_dict() | {"g_upsample": "bicubic"})
