import json
import re
from pathlib import Path

import pytest
from PIL import Image

from ganaug.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_dir(tmp_path, class_folders):
    out = tmp_path / "run"
    rc = main(["train", str(class_folders), "--out", str(out), "--steps", "2", "--batch-size", "4",
               "--g-width", "8", "--d-width", "8", "--no-progress"])
    assert rc == 0
    return out


def test_train_then_sample_grid_and_folder(run_dir, tmp_path, capsys):
    assert main(["sample", str(run_dir), "--n", "3", "--out", str(tmp_path / "g.png")]) == 0
    grid = Image.open(tmp_path / "g.png")
    assert grid.height > 2 * 32 * 2  # two class rows, upscaled
    assert main(["sample", str(run_dir), "--classes", "dog", "--n", "2", "--out",
                 str(tmp_path / "imgs")]) == 0
    files = sorted((tmp_path / "imgs" / "dog").iterdir())
    assert [f.name for f in files] == ["00000.png", "00001.png"]
    assert Image.open(files[0]).size == (32, 32)


def test_same_seed_same_images(run_dir, tmp_path):
    for name in ("a", "b"):
        main(["sample", str(run_dir), "--n", "2", "--seed", "5", "--out", str(tmp_path / f"{name}.png")])
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_unknown_class_is_a_clear_error(run_dir, tmp_path, capsys):
    assert main(["sample", str(run_dir), "--classes", "zebra", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "unknown class name 'zebra'" in err and "['cat', 'dog']" in err


def test_one_class_only_is_a_clear_error(tmp_path, capsys):
    from .conftest import make_class_folders

    data = make_class_folders(tmp_path / "one", classes=("cat",))
    assert main(["train", str(data), "--out", str(tmp_path / "r"), "--steps", "1"]) == 2
    assert "at least 2 classes" in capsys.readouterr().err


def test_empty_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "no class folders" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--arch", "stylegan9"], "invalid choice: 'stylegan9'"),
    (["--image-size", "48"], "invalid choice: 48"),
])
def test_bad_arguments_name_the_choices(class_folders, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(["train", str(class_folders), "--out", str(tmp_path / "r"), *args])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def _subcommands() -> dict:
    return build_parser()._subparsers._group_actions[0].choices


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_help_explains_every_option(command):
    sub = _subcommands()[command]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings} has no help text"
    assert sub.description and len(sub.description) > 40


def test_run_config_records_every_command(run_dir, class_folders):
    import json

    assert main(["train", str(class_folders), "--out", str(run_dir), "--resume", "--steps", "3",
                 "--no-progress"]) == 0
    commands = json.loads((run_dir / "run_config.json").read_text())["commands"]
    assert len(commands) == 2
    assert commands[0].startswith("ganaug train ") and "--steps 2" in commands[0]
    assert "--resume" in commands[1] and "--steps 3" in commands[1]


def test_demo_augments_a_long_tailed_slice(tmp_path, fmnist_dir):
    from ganaug.demo import run_demo

    # the slice's three rarest classes hold one real image each, too few for a band of their own
    with pytest.warns(UserWarning, match="fewer than 3 real images.*pooled"):
        png = run_demo(fmnist_dir, REPO / "pretrained" / "fashion-mnist-sngan", tmp_path / "demo",
                       REPO / "pretrained" / "fashion-mnist-reference-classifier", per_class=60)
    assert png.is_file() and png.stat().st_size > 10_000
    text = (tmp_path / "demo" / "demo.txt").read_text()
    bank = json.loads(text.split("generated bank per class ")[1].splitlines()[0])
    assert bank[0] == 0 and sum(bank[1:]) > 0  # the largest class gets none
    # with the pooled band a one-image class keeps generated images (a band of its own, one distance, kept none)
    kept = {m[0]: int(m[1]) for m in re.findall(r"(\w[\w /-]*?) (\d+) kept of", text)}
    assert kept["Ankle boot"] > 0 and kept["Bag"] > 0
    assert "band filter: Trouser" in text and "generated (weight 0.5)" in text


def test_train_cli_takes_a_reference_classifier_as_guide(tmp_path, class_folders, capsys):
    import json

    import torch

    from ganaug.eval.classifier import SmallCNN
    from ganaug.eval.reference import ReferenceClassifier, ReferenceConfig

    def reference(folder, classes):
        torch.manual_seed(0)
        cfg = ReferenceConfig(channels=3, image_size=32, class_names=classes, width=4, real_test_accuracy=0.5,
                              trained_on={"source": "test"}, tested_on={"source": "test"})
        return ReferenceClassifier(SmallCNN(3, 2, 4), cfg).save(folder)

    args = ["train", str(class_folders), "--steps", "2", "--batch-size", "4", "--g-width", "8", "--d-width", "8",
            "--no-progress", "--guide-weight", "0.5", "--guide-loss", "band"]
    out = tmp_path / "guided"
    assert main([*args, "--out", str(out), "--guide", str(reference(tmp_path / "ref", ["cat", "dog"]))]) == 0
    saved = json.loads((out / "run_config.json").read_text())
    assert saved["guide"] and saved["train"]["guide_weight"] == 0.5 and saved["train"]["guide_loss"] == "band"
    # a guide of other classes is refused before any training
    assert main([*args, "--out", str(tmp_path / "other"), "--guide", str(reference(tmp_path / "ref2", ["a", "b"]))]) == 2
    assert "knows the classes ['a', 'b'], not the data's ['cat', 'dog']" in capsys.readouterr().err
