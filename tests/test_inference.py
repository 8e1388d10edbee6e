"""Inference variants of a generator: same images (or the same classes) as the float one, and a
package that records its variant and loads it again."""

import json
from pathlib import Path

import pytest
import torch

from ganaug import GanaugError, Generator, load_generator, make_config
from ganaug import precision
from ganaug.hub.inference import InferenceOptions

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "pretrained" / "fashion-mnist-sngan"
REFERENCE = REPO / "pretrained" / "fashion-mnist-reference-classifier"


def tiny():
    torch.manual_seed(0)
    return Generator.from_config(make_config("lite", 3, ["a", "b", "c"], image_size=32, channels=1,
                                             g_width=8, d_width=8))


def test_options_are_validated_data():
    opts = InferenceOptions(channels_last=True, precision="int8", calibration=64)
    assert InferenceOptions.from_dict(json.loads(json.dumps(opts.to_dict()))) == opts
    for bad, match in [(dict(precision="fp8"), "precision must be one of"),
                       (dict(compile="yes"), "'compile' must be true or false"),
                       (dict(calibration=0), "calibration must be a positive")]:
        with pytest.raises(GanaugError, match=match):
            InferenceOptions(**bad)
    with pytest.raises(GanaugError, match="unknown fields"):
        InferenceOptions.from_dict({"precision": "fp32", "sparsity": 0.5})


def test_channels_last_gives_the_same_images_and_leaves_the_original_alone():
    g = tiny()
    fast = g.optimized(channels_last=True)
    labels = [0, 1, 2] * 4
    assert torch.equal(g.generate(labels, seed=3), fast.generate(labels, seed=3))
    conv = next(m for m in g.net.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == 1)
    assert conv.weight.is_contiguous()  # the float generator kept its layout
    assert fast.net is g.net  # the float weights are shared, not copied into the package


def test_bf16_is_refused_where_the_cpu_would_emulate_it(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(GanaugError, match="no native bf16"):
        tiny().optimized(precision="bf16")


@pytest.mark.skipif(not precision.cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_images_stay_close():
    g = tiny()
    a, b = g.generate([0, 1, 2] * 8, seed=1), g.optimized(precision="bf16").generate([0, 1, 2] * 8, seed=1)
    assert (a.float() - b.float()).abs().mean() < 3  # grey levels


def test_int8_keeps_the_class_and_its_package_loads_as_int8(tmp_path):
    from ganaug.eval import ReferenceClassifier
    from ganaug.eval.classifier import predict

    gen = load_generator(SHIPPED)
    q = gen.optimized(precision="int8", calibration=128)
    labels = torch.arange(10).repeat(20)
    a, b = gen.generate(labels, seed=5), q.generate(labels, seed=5)
    assert 0 < (a.float() - b.float()).abs().mean() < 6  # quantised, yet close (grey levels)
    judge = ReferenceClassifier.load(REFERENCE)
    same = (predict(judge.model, a)[1].argmax(1) == predict(judge.model, b)[1].argmax(1)).float().mean()
    assert same >= 0.9, f"int8 changed the class of {1 - same:.0%} of the images"

    q.save_pretrained(tmp_path / "int8")
    assert json.loads((tmp_path / "int8" / "config.json").read_text())["inference"]["precision"] == "int8"
    again = load_generator(tmp_path / "int8")
    assert again.inference == q.inference
    assert torch.equal(again.generate(labels[:30], seed=7), q.generate(labels[:30], seed=7))  # same calibration


def test_a_package_with_bad_inference_options_says_which_file(tmp_path):
    g = tiny()
    g.optimized(channels_last=True).save_pretrained(tmp_path / "p")
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    cfg["inference"]["precision"] = "int4"
    (tmp_path / "p" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(GanaugError, match=r"config.json.*precision.* must be one of"):
        load_generator(tmp_path / "p")


@pytest.mark.slow  # torch.compile's first call compiles for most of a minute on 2 cores
def test_compiled_generator_gives_the_float_images():
    g = tiny()
    fast = g.optimized(compile=True, channels_last=True)
    labels = [0, 1, 2] * 4
    a, b = g.generate(labels, seed=2), fast.generate(labels, seed=2)
    assert (a.int() - b.int()).abs().max() <= 1  # compiled kernels may round a pixel differently


def test_transforms_take_inference_options_and_survive_pickling(tmp_path):
    import pickle

    from ganaug.albumentations import GANAugment as AlbuGANAugment
    from ganaug.transforms import GANBatchAugment

    g = tiny()
    g.save_pretrained(tmp_path / "pkg")
    opts = InferenceOptions(channels_last=True)
    images, labels = torch.zeros(6, 1, 32, 32, dtype=torch.uint8), torch.tensor([0, 1, 2, 0, 1, 2])
    for source in (g, str(tmp_path / "pkg")):
        t = GANBatchAugment(source, p=1.0, inference=opts)
        assert t._resolve()[0].inference == opts
        out, _ = pickle.loads(pickle.dumps(t))((images, labels))  # a spawned worker rebuilds the variant
        assert out.shape == images.shape and out.float().std() > 0
    albu = AlbuGANAugment(str(tmp_path / "pkg"), p=1.0, inference=opts)
    assert albu._gen().inference == opts
    assert pickle.loads(pickle.dumps(albu))._gen().inference == opts
    # a pickled int8 or compiled generator travels as its float weights and options
    copy = pickle.loads(pickle.dumps(g.optimized(opts)))
    assert copy.inference == opts and torch.equal(copy.generate([1, 2], seed=0), g.generate([1, 2], seed=0))
