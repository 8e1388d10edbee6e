"""The package layer, for every kind of package registered with it (generated from the registry)."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import ganaug.artifacts as artifacts
from ganaug import GanaugError, Generator, build_generator, make_config
from ganaug.anomaly import (AnomalyConfig, MemoryBankConfig, MemoryBankDetector, SkipGANomaly, build_backbone,
                            save_detector)
from ganaug.eval import ReferenceClassifier, SmallCNN
from ganaug.eval.reference import ReferenceConfig


def _generator(folder):
    cfg = make_config("sngan", 2, ["ok", "defect"], image_size=32, channels=1, g_width=4, d_width=8)
    torch.manual_seed(0)
    return Generator(build_generator(cfg), cfg, {}).save_pretrained(folder)


def _detector(folder):
    torch.manual_seed(0)
    return save_detector(SkipGANomaly(AnomalyConfig(image_size=32, width=4, latent_dim=8), threshold=0.5), folder)


def _memory_bank(method, spec):
    def make(folder):
        torch.manual_seed(0)
        source = spec if spec == "pixels" else str(_reference(folder.parent / "backbone"))
        backbone = build_backbone(source, method)
        config = MemoryBankConfig.for_method(method, backbone=backbone.config, image_size=16, channels=1)
        dim = backbone.pooled(torch.zeros(1, 1, 16, 16)).shape[1] if method == "knn" else 8  # SmallCNN width 4: 8-d
        return save_detector(MemoryBankDetector(config, backbone, torch.randn(12, dim), threshold=0.5), folder)
    return make


def _reference(folder):
    torch.manual_seed(0)
    cfg = ReferenceConfig(channels=1, image_size=32, class_names=["a", "b"], width=4, real_test_accuracy=0.5,
                          trained_on={"source": "test"}, tested_on={"source": "test"})
    return ReferenceClassifier(SmallCNN(1, 2, 4), cfg).save(folder)


# kind -> (write a small package into a folder, the loaded object's weights)
FACTORIES = {
    "ganaug-generator": (_generator, lambda g: g.net.state_dict()),
    "ganaug-anomaly": (_detector, lambda m: m.state_dict()),
    "ganaug-reference-classifier": (_reference, lambda r: r.model.state_dict()),
    "ganaug-anomaly-knn": (_memory_bank("knn", "pixels"), lambda m: m.package_state()),
    "ganaug-anomaly-patchcore": (_memory_bank("patchcore", "reference"), lambda m: m.package_state()),
}


def test_every_registered_kind_is_tested_here():
    assert set(artifacts.kinds()) == set(FACTORIES)


@pytest.fixture(params=sorted(FACTORIES))
def package(request, tmp_path):
    make, state_of = FACTORIES[request.param]
    return request.param, make(tmp_path / "pkg"), state_of


def test_round_trip_is_exact_and_atomic(package):
    kind, folder, state_of = package
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".tmp") == []
    assert json.loads((folder / "config.json").read_text())["kind"] == kind
    saved = load_file(str(folder / "model.safetensors"))
    loaded = state_of(artifacts.load_artifact(folder))
    assert set(saved) == set(loaded)
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_weights_are_as_readable_as_the_config(package):
    # safetensors 0.8 writes its files 0600 whatever the umask; a package is meant to be shared
    _, folder, _ = package
    mode = (folder / "config.json").stat().st_mode & 0o777
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == mode


def test_corrupt_weights(package):
    _, folder, _ = package
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(GanaugError, match="corrupt or truncated"):
        artifacts.load_artifact(folder)


def test_weights_that_do_not_fit_the_config(package):
    _, folder, _ = package
    state = load_file(str(folder / "model.safetensors"))
    name = next(k for k, v in state.items() if v.ndim >= 2)
    state[name] = torch.zeros(*(s + 1 for s in state[name].shape))
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(GanaugError, match=f"tensor '{name}'.*do not belong together"):
        artifacts.load_artifact(folder)
    del state[name]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(GanaugError, match="missing tensors"):
        artifacts.load_artifact(folder)


def test_pickles_are_refused(package):
    _, folder, _ = package
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(GanaugError, match="only as pickle files \\(pytorch_model.bin\\)"):
        artifacts.load_artifact(folder)


def test_newer_format_and_unknown_kind(package):
    kind, folder, _ = package
    raw = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**raw, "format_version": 99}))
    with pytest.raises(GanaugError, match="newer than this ganaug reads.*upgrade ganaug"):
        artifacts.load_artifact(folder)
    (folder / "config.json").write_text(json.dumps({**raw, "kind": "ganaug-teapot"}))
    with pytest.raises(GanaugError, match="holds a 'ganaug-teapot'; ganaug packages are one of"):
        artifacts.load_artifact(folder)
    with pytest.raises(GanaugError, match=f"holds a 'ganaug-teapot' package, not a '{kind}' one"):
        artifacts.read_package(folder, kind, 1)


def test_a_config_field_of_the_wrong_type_is_named(package):
    kind, folder, _ = package
    raw = json.loads((folder / "config.json").read_text())
    section = raw.get("model", raw)  # generators and detectors nest their model config
    field = next(k for k, v in section.items() if isinstance(v, int) and not isinstance(v, bool)
                 and k != "format_version")
    section[field] = "many"
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(GanaugError, match=f"field '{field}' must be an integer, got 'many'"):
        artifacts.load_artifact(folder)


def test_a_package_kind_cannot_be_registered_twice_with_another_loader(monkeypatch):
    from ganaug.artifacts import kinds, register_kind

    monkeypatch.setattr(artifacts, "_LOADERS", dict(artifacts._LOADERS))  # the test's kind leaves with it

    def load_one(folder):
        return folder

    def load_other(folder):
        return None

    register_kind("test-kind-twice", load_one, "test object")
    register_kind("test-kind-twice", load_one, "test object")  # the same loader again (a reload): fine
    with pytest.raises(ValueError, match="already registered"):
        register_kind("test-kind-twice", load_other, "another object")
    assert kinds()["test-kind-twice"] == "test object"
