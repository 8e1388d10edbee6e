"""Fine-tuning from a trained generator: packages with a discriminator, ``train(init=...)``, ``ganaug train --init``."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import ganaug
from ganaug import GanaugError, LabelledImages
from ganaug.cli import main
from ganaug.hub.package import load_package_discriminator
from ganaug.models import build_discriminator, build_generator, generate_images
from ganaug.training.checkpoint import load_checkpoint
from ganaug.training.ema import make_ema
from ganaug.training.init import config_for_data, init_models
from tests.conftest import make_class_folders, make_package

SOURCE_CLASSES = ("a", "b", "c")


@pytest.fixture(scope="module")
def grey_pkg(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("init"), classes=SOURCE_CLASSES, name="grey", discriminator=True)


def data(classes, channels=1, n=4) -> LabelledImages:
    k = len(classes)
    return LabelledImages(torch.randint(0, 255, (n * k, channels, 32, 32), dtype=torch.uint8,
                                        generator=torch.Generator().manual_seed(0)),
                          torch.arange(n * k) % k, list(classes))


def fresh(source_cfg, classes, channels=1):
    cfg = config_for_data(source_cfg, list(classes), channels)
    torch.manual_seed(1)
    G, D = build_generator(cfg), build_discriminator(cfg)
    return cfg, G, make_ema(G), D


def test_a_package_can_carry_its_discriminator(grey_pkg, tmp_path):
    raw = json.loads((grey_pkg / "config.json").read_text())
    assert raw["discriminator"] is True and "discriminator" in (grey_pkg / "README.md").read_text()
    D = load_package_discriminator(grey_pkg)
    run_d = load_checkpoint(grey_pkg.parent / "grey-run" / "checkpoint.safetensors")["D"]
    assert all(torch.equal(D.state_dict()[k], v) for k, v in run_d.items())
    gen = ganaug.load_generator(grey_pkg)  # sampling ignores it
    assert gen.generate(["a"], seed=0).shape == (1, 1, 32, 32)
    # a damaged discriminator is caught like any weight file that does not fit its config
    state = load_file(str(grey_pkg / "model.safetensors"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((grey_pkg / "config.json").read_text())
    save_file({k: v for k, v in state.items() if k != "discriminator.linear.parametrizations.weight.original"},
              str(broken / "model.safetensors"))
    with pytest.raises(GanaugError, match="does not match"):
        load_package_discriminator(broken)
    assert ganaug.load_generator(broken).num_classes == 3
    plain = make_package(tmp_path, classes=SOURCE_CLASSES, name="plain", steps=1)  # exported without it
    assert load_package_discriminator(plain) is None


def test_classes_are_matched_by_name_and_new_ones_start_from_a_free_named_or_mean_class(grey_pkg):
    source = ganaug.load_generator(grey_pkg)  # classes a, b, c
    src_d = load_package_discriminator(grey_pkg)
    cfg, G, G_ema, D = fresh(source.config, ("c", "a", "new"))
    messages = []
    record = init_models(grey_pkg, cfg, G, G_ema, D, log=messages.append)
    # the new class starts from the source class the data does not hold
    assert record["classes"] == {"c": "c", "a": "a", "new": None} and record["new_classes"] == {"new": "b"}
    assert record["discriminator"] == "source" and "new classes (from): {'new': 'b'}" in messages[0]
    src_gain = source.net.state_dict()["body.blocks.0.bn1.gain.weight"]  # (features, classes): a column per class
    gain = G.state_dict()["body.blocks.0.bn1.gain.weight"]
    assert torch.equal(gain[:, 0], src_gain[:, 2]) and torch.equal(gain[:, 1], src_gain[:, 0])
    assert torch.equal(gain[:, 2], src_gain[:, 1])
    src_embed = src_d.state_dict()["embed.parametrizations.weight.original"]  # (classes, features)
    embed = D.state_dict()["embed.parametrizations.weight.original"]
    assert torch.equal(embed[0], src_embed[2]) and torch.equal(embed[2], src_embed[1])
    # "mean" asks for the mean of the source's classes
    init_models(grey_pkg, cfg, G, G_ema, D, {"new": "mean"}, log=messages.append)
    gain, embed = G.state_dict()["body.blocks.0.bn1.gain.weight"], D.state_dict()["embed.parametrizations.weight.original"]
    assert torch.allclose(gain[:, 2], src_gain.mean(1)) and torch.allclose(embed[2], src_embed.mean(0))
    # asked to start from the mean, new classes start alike, and the log says what to do
    cfg4, G4, G4_ema, D4 = fresh(source.config, ("a", "b", "c", "new", "newer"))
    record = init_models(grey_pkg, cfg4, G4, G4_ema, D4, {"new": "mean", "newer": "mean"}, log=messages.append)
    assert record["new_classes"] == {"new": "mean", "newer": "mean"} and "start alike" in messages[-1]
    # no free source class left: "spread", the mean plus an offset as large as the source's classes differ,
    # seeded, so that each starts apart from every class
    messages.clear()
    spread = {"new": "spread", "newer": "spread"}
    assert init_models(grey_pkg, cfg4, G4, G4_ema, D4, log=messages.append)["new_classes"] == spread
    gain = G4.state_dict()["body.blocks.0.bn1.gain.weight"]
    offset = (gain[:, 3:] - src_gain.mean(1, keepdim=True)) / src_gain.std(1, keepdim=True, correction=0)
    assert 0.6 < offset.std() < 1.4 and offset.mean().abs() < 0.3  # a standard normal draw per element
    apart = torch.cdist(gain.T, gain.T)  # every class column against every other
    assert apart[3:].sort(1).values[:, 1].min() > 0.3 * apart[:3, :3].max()  # no new class near another class
    assert not any("start alike" in m for m in messages)
    init_models(grey_pkg, cfg4, G, G_ema, D, spread) if False else None
    again = fresh(source.config, ("a", "b", "c", "new", "newer"))
    init_models(grey_pkg, again[0], *again[1:], spread)
    assert torch.equal(again[1].state_dict()["body.blocks.0.bn1.gain.weight"], gain)  # the same start every time
    assert torch.equal(again[3].state_dict()["embed.parametrizations.weight.original"],
                       D4.state_dict()["embed.parametrizations.weight.original"])
    # a fine-tune starts where the source stands: the same images for the classes they share
    z_labels = torch.tensor([0, 0, 1, 1])
    ours = generate_images(G_ema.eval(), z_labels, z_dim=cfg.z_dim, value_range=cfg.value_range, seed=5)
    theirs = source.generate(["c", "c", "a", "a"], seed=5)
    assert torch.equal(ours, theirs)
    # a new class may start from a named source class instead
    cfg, G, G_ema, D = fresh(source.config, ("c", "a", "new"))
    init_models(grey_pkg, cfg, G, G_ema, D, {"new": "b"}, log=messages.append)
    assert torch.equal(G.state_dict()["body.blocks.0.bn1.gain.weight"][:, 2], src_gain[:, 1])
    with pytest.raises(GanaugError, match="--init-class"):
        init_models(grey_pkg, cfg, G, G_ema, D, {"new": "zebra"})
    # nothing in common: every class is new, each from a source class of its own in order, and the log says so
    cfg, G, G_ema, D = fresh(source.config, ("x", "y"))
    record = init_models(grey_pkg, cfg, G, G_ema, D, log=messages.append)
    assert record["new_classes"] == {"x": "a", "y": "b"} and "no class of the data matches" in messages[-1]
    record = init_models(grey_pkg, cfg, G, G_ema, D, {"x": "a"}, log=messages.append)  # a named one is skipped
    assert record["new_classes"] == {"x": "a", "y": "b"}
    assert init_models(grey_pkg, cfg, G, G_ema, D, {"y": "a"})["new_classes"] == {"x": "b", "y": "a"}
    # more new classes than free source classes: the rest spread, none shares a start
    cfg, G, G_ema, D = fresh(source.config, ("a", "x", "y", "z"))
    assert init_models(grey_pkg, cfg, G, G_ema, D)["new_classes"] == {"x": "b", "y": "c", "z": "spread"}


def test_grey_and_rgb_are_adapted_at_the_image_ends(grey_pkg, tmp_path):
    source = ganaug.load_generator(grey_pkg)
    cfg, G, G_ema, D = fresh(source.config, SOURCE_CLASSES, channels=3)
    record = init_models(grey_pkg, cfg, G, G_ema, D, log=lambda m: None)
    assert record["channels"] == [1, 3]
    rgb = generate_images(G_ema.eval(), torch.tensor([0, 1, 2]), z_dim=cfg.z_dim, value_range=cfg.value_range, seed=2)
    grey = source.generate([0, 1, 2], seed=2)
    assert torch.equal(rgb, grey.expand(-1, 3, -1, -1))  # each colour channel is the grey image
    w_src = load_package_discriminator(grey_pkg).state_dict()["blocks.0.conv1.parametrizations.weight.original"]
    w = D.state_dict()["blocks.0.conv1.parametrizations.weight.original"]
    assert w.shape[1] == 3 and torch.allclose(w, w_src.repeat(1, 3, 1, 1) / 3)
    # and back: an RGB source for grey data
    rgb_pkg = make_package(tmp_path, classes=SOURCE_CLASSES, name="rgb", steps=1, channels=3, discriminator=True)
    src = ganaug.load_generator(rgb_pkg)
    cfg, G, G_ema, D = fresh(src.config, SOURCE_CLASSES, channels=1)
    init_models(rgb_pkg, cfg, G, G_ema, D, log=lambda m: None)
    assert torch.allclose(G.state_dict()["body.out_conv.weight"], src.net.state_dict()["body.out_conv.weight"].mean(0,
                                                                                                                   keepdim=True))


def test_fine_tuning_through_the_cli_records_the_source_freezes_d_and_resumes(grey_pkg, tmp_path):
    make_class_folders(tmp_path / "ds", classes=("b", "a", "new"), n=4, mode="L")
    run = tmp_path / "run"
    args = ["train", str(tmp_path / "ds"), "--out", str(run), "--steps", "1", "--batch-size", "4", "--no-progress"]
    assert main([*args, "--init", str(grey_pkg), "--init-class", "new=c", "--freeze-d", "2"]) == 0
    rc = json.loads((run / "run_config.json").read_text())
    assert rc["init"]["classes"] == {"b": "b", "a": "a", "new": None} and rc["init"]["new_classes"] == {"new": "c"}
    assert rc["model"]["g_width"] == 8 and rc["train"]["freeze_d"] == 2  # the source's architecture
    ckpt = load_checkpoint(run / "checkpoint.safetensors")
    src_d = load_package_discriminator(grey_pkg).state_dict()
    frozen = [k for k in ckpt["D"] if k.startswith(("blocks.0.", "blocks.1.")) and k.endswith("original")]
    trained = [k for k in ckpt["D"] if k.startswith("blocks.2.") and k.endswith("original")]
    assert frozen and all(torch.equal(ckpt["D"][k], src_d[k]) for k in frozen)  # FreezeD
    assert any(not torch.equal(ckpt["D"][k], src_d[k]) for k in trained)
    # one step later the EMA generator still draws nearly the source's images for the shared classes,
    # where the same step from scratch is nowhere near them (the batch-norm statistics moved a little)
    assert main([*args[:3], str(tmp_path / "scratch"), *args[4:], "--g-width", "8", "--d-width", "8",
                 "--seed", "7"]) == 0  # seed 0 would start where the barely trained source started
    source = ganaug.load_generator(grey_pkg).generate(["b", "a"] * 8, seed=3).float()
    tuned, scratch = (ganaug.load_generator(r).generate(["b", "a"] * 8, seed=3).float() - source
                      for r in (run, tmp_path / "scratch"))
    assert tuned.abs().mean() < 8 < 40 < scratch.abs().mean()  # grey levels
    # the run resumes like any other, and keeps its record
    assert main([*args[:-3], "--steps", "2", "--no-progress", "--resume"]) == 0
    assert json.loads((run / "run_config.json").read_text())["init"] == rc["init"]


def test_bad_fine_tuning_input_is_refused_with_what_to_do(grey_pkg, tmp_path, capsys):
    for split in ("train", "test"):
        make_class_folders(tmp_path / "ds" / split, classes=("a", "b"), n=4, mode="L")
    base = ["train", str(tmp_path / "ds"), "--out", str(tmp_path / "run"), "--steps", "1", "--batch-size", "4",
            "--no-progress"]
    no_d = make_package(tmp_path, classes=SOURCE_CLASSES, name="no-d", steps=1)  # G only: nothing to freeze
    ref = tmp_path / "ref"
    assert main(["reference-classifier", str(tmp_path / "ds"), "--out", str(ref), "--epochs", "1", "--width", "4"]) == 0
    for extra, message in (
            (["--init", str(ref)], "is not a generator to start from"),
            (["--init", str(tmp_path / "nowhere")], "is not a generator to start from"),
            (["--init", str(grey_pkg), "--image-size", "64"], "makes 32px images, not 64px"),
            (["--init", str(grey_pkg), "--arch", "lite"], "contradict it"),
            (["--init", str(grey_pkg), "--resume"], "--resume without --init"),
            (["--init", str(grey_pkg), "--init-class", "a"], "is not NEW=SOURCE_CLASS"),
            (["--init", str(grey_pkg), "--freeze-d", "9"], "would freeze every block"),
            (["--freeze-d", "1"], "this run starts from scratch, so they would stay random"),
            (["--init", str(no_d), "--freeze-d", "1"], "carries no discriminator, so they would stay random")):
        assert main([*base, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
        assert not (tmp_path / "run" / "checkpoint.safetensors").exists()
    with pytest.raises(GanaugError, match="makes 32px images and this run 64px"):
        cfg = ganaug.make_config("sngan", 2, ["a", "b"], image_size=64, channels=1, g_width=8, d_width=8)
        init_models(grey_pkg, cfg, build_generator(cfg), build_generator(cfg), build_discriminator(cfg))


def test_the_python_api_takes_the_sources_architecture(grey_pkg, tmp_path):
    run = ganaug.train(data(("b", "a")), None, ganaug.TrainConfig(steps=1, batch_size=4), tmp_path / "run",
                       init=str(grey_pkg), progress=False)
    rc = json.loads((run / "run_config.json").read_text())
    assert rc["model"]["g_width"] == 8 and rc["model"]["class_names"] == ["b", "a"] and rc["init"]["discriminator"] == "source"
    with pytest.raises(GanaugError, match="needs a model_config"):
        ganaug.train(data(("b", "a")), None, ganaug.TrainConfig(steps=1), tmp_path / "other", progress=False)
    with pytest.raises(GanaugError, match="without --init"):
        ganaug.train(data(("b", "a")), None, ganaug.TrainConfig(steps=2), run, init=str(grey_pkg), resume=True)
