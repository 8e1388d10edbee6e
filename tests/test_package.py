import json
from pathlib import Path

import pytest
import torch

import ganaug
from ganaug import GanaugError, Generator, load_generator
from ganaug.data import LabelledImages

from .conftest import assert_same_images


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pkg") / "run"
    data = LabelledImages(torch.randint(0, 255, (24, 1, 32, 32), dtype=torch.uint8),
                          torch.arange(24) % 3, ["cat", "dog", "fox"])
    cfg = ganaug.make_config("biggan-lite", 3, data.class_names, image_size=32, channels=1,
                             g_width=8, d_width=8)
    ganaug.train(data, cfg, ganaug.TrainConfig(steps=3, batch_size=6), out, progress=False)
    return out


@pytest.fixture
def package(run_dir, tmp_path):
    return ganaug.export_run(run_dir, tmp_path / "pkg", license="mit", datasets=["toy"])


def test_round_trip_is_bit_exact(run_dir, package):
    from_run, from_pkg = load_generator(run_dir), load_generator(package)
    labels = ["cat", "fox", 1, 2]
    a, b = from_run.generate(labels, seed=7), from_pkg.generate(labels, seed=7)
    assert a.dtype == torch.uint8 and a.shape == (4, 1, 32, 32)
    assert torch.equal(a, b)
    assert torch.equal(a, from_pkg.generate(torch.tensor([0, 2, 1, 2]), seed=7))  # ids == names
    assert not torch.equal(a, from_pkg.generate(labels, seed=8))
    assert from_pkg.class_names == ["cat", "dog", "fox"] and from_pkg.num_classes == 3
    assert from_pkg.image_size == 32 and from_pkg.channels == 1


def test_the_old_run_loader_warns_and_gives_the_same_network(run_dir):
    with pytest.warns(DeprecationWarning, match="load_generator"):
        net, config, step = ganaug.load_run_generator(run_dir)
    G = load_generator(run_dir)
    assert step == 3 and config == G.config
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), G.net.state_dict().values()))


def test_same_generator_state_same_images(package):
    G = load_generator(package)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(G.generate([0, 1], generator=g1), G.generate([0, 1], generator=g2))
    assert_same_images(G.generate([0] * 5, seed=1, batch_size=2), G.generate([0] * 5, seed=1))


def test_package_files_and_card(package):
    assert sorted(p.name for p in package.iterdir()) == ["README.md", "config.json", "model.safetensors", "samples.png"]
    cfg = json.loads((package / "config.json").read_text())
    assert cfg["kind"] == "ganaug-generator" and cfg["model"]["class_names"] == ["cat", "dog", "fox"]
    assert cfg["training"]["steps"] == 3 and cfg["training"]["data"]["num_images"] == 24
    card = (package / "README.md").read_text()
    from huggingface_hub import ModelCard

    meta = ModelCard.load(package / "README.md").data  # the Hub's own parser reads the front matter
    assert (meta.library_name, meta.license, meta.datasets) == ("ganaug", "mit", ["toy"])
    assert "ganaug" in meta.tags and "![samples, one row per class](samples.png)" in card
    assert "## Evaluation" not in card  # no eval.json, so no numbers
    assert "class_balanced=False, lecam=0.0, class_noise=0.0" in card  # the resolved settings (balanced toy data)


def test_fp16_export_is_half_the_size_and_close(run_dir, tmp_path):
    p32 = ganaug.export_run(run_dir, tmp_path / "a")
    p16 = ganaug.export_run(run_dir, tmp_path / "b", dtype="float16")
    s32, s16 = ((p / "model.safetensors").stat().st_size for p in (p32, p16))
    assert s16 < 0.6 * s32
    a = load_generator(p32).generate([0, 1, 2], seed=0).float()
    b = load_generator(p16).generate([0, 1, 2], seed=0).float()
    assert (a - b).abs().mean() < 2.0  # mean absolute difference in 0..255 pixel units


def test_unknown_class_ids_and_names(package):
    G = load_generator(package)
    with pytest.raises(GanaugError, match=r"class id 3 is outside this generator's classes 0..2"):
        G.generate([0, 3])
    with pytest.raises(GanaugError, match="unknown class name 'wolf'"):
        G.generate(["wolf"])
    with pytest.raises(GanaugError, match="must be integer class ids"):
        G.generate(torch.tensor([0.5]))


def test_config_that_does_not_match_the_weights_names_the_tensor(package):
    cfg = json.loads((package / "config.json").read_text())
    cfg["model"]["g_width"] = 16
    (package / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(GanaugError, match=r"tensor '.*' .* has shape .* but the config needs"):
        load_generator(package)
    cfg["model"]["g_width"], cfg["model"]["arch"] = 8, "sngan"
    (package / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(GanaugError, match="does not match its config.json.*unexpected tensors"):
        load_generator(package)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["model"].update(arch="stylegan9"), "unknown architecture 'stylegan9'"),
    (lambda c: c["model"].pop("num_classes"), "missing required fields"),
    (lambda c: c["model"].update(image_size="32"), "'image_size' must be an integer"),
    (lambda c: c.update(format_version=2), "newer than this ganaug reads"),
    (lambda c: c.update(kind="something-else"), "holds a 'something-else' package, not a 'ganaug-generator' one"),
    (lambda c: c.pop("model"), "no 'model' section"),
])
def test_invalid_config_json(package, edit, match):
    cfg = json.loads((package / "config.json").read_text())
    edit(cfg)
    (package / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(GanaugError, match=match):
        load_generator(package)


def test_config_json_that_is_not_json(package):
    (package / "config.json").write_text("{'model': import os}")
    with pytest.raises(GanaugError, match="not valid JSON"):
        load_generator(package)


def test_missing_config_is_an_error(package):
    (package / "config.json").unlink()
    with pytest.raises(GanaugError, match="no config.json"):
        load_generator(package)


def test_pickle_only_folder_is_refused(tmp_path):
    (tmp_path / "m").mkdir()
    torch.save({"w": torch.zeros(1)}, tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(GanaugError, match=r"(?s)only as pickle files \(pytorch_model.bin\).*safetensors only"):
        load_generator(tmp_path / "m")


def test_generator_is_an_nn_module_that_stays_in_eval_mode(package):
    G = load_generator(package)
    assert isinstance(G, torch.nn.Module) and isinstance(G, Generator)
    G.train()
    assert not G.training and not G.net.training
    z = torch.randn(2, G.config.z_dim)
    assert G(z, torch.tensor([0, 1])).shape == (2, 1, 32, 32)


def test_card_includes_measured_eval_table(run_dir, tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    result = {"overall": {"fid": 1.5, "kid": 0.01, "kid_std": 0.001, "is": 2.0, "is_std": 0.1,
                          "precision": 0.8, "recall": 0.5, "density": 0.9, "coverage": 0.6,
                          "class_fidelity": 0.75, "cas": 0.6},
              "protocol": {"n_fake": 30, "n_real": 30, "real_split": "toy:test", "k": 3,
                           "kid": "unbiased", "is_splits": 10, "features": {"name": "reference"}},
              "reference_classifier": {"real_test_accuracy": 0.9},
              "memorisation": {"flagged_classes": []}, "command": "ganaug eval run --data toy",
              "per_class": [{"class": n, "class_fidelity": 0.75, "fid": 2.0} for n in ("cat", "dog", "fox")]}
    (ev / "eval.json").write_text(json.dumps(result))
    pkg = ganaug.export_run(run_dir, tmp_path / "pkg", eval_dir=ev)
    card = (pkg / "README.md").read_text()
    assert "| class fidelity | 0.7500 | reference classifier; its real-test accuracy is 0.9000 |" in card
    assert "ganaug eval run --data toy" in card
    assert json.loads((pkg / "config.json").read_text())["evaluation"]["overall"]["fid"] == 1.5


def test_every_public_name_is_importable_and_documented():
    import ganaug

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in ganaug.__all__:
        assert hasattr(ganaug, name), name
        assert name.startswith("__") or name in readme, f"{name} is exported but not in the README"
