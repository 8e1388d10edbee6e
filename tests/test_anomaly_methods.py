"""kNN and PatchCore detectors: features, coreset, threshold, packages, the CLI, backbones."""

import json
import math

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from ganaug import GanaugError
from ganaug.anomaly import (MemoryBankConfig, build_backbone, coreset, fit_memory_bank, load_detector,
                            save_detector, score_images)
from ganaug.anomaly.holdout import split_holdout
from ganaug.anomaly.scoring import binary_metrics
from ganaug.artifacts import load_artifact
from ganaug.cli import main
from ganaug.data import load_fashion_mnist

REFERENCE = "pretrained/cifar10-reference-classifier"  # trained by this project on CIFAR-10: another dataset


@pytest.fixture(scope="module")
def bags(fmnist_dir):
    """Bags as the normal class; the test set's other classes are the anomalies."""
    train = load_fashion_mnist(fmnist_dir, max_per_class=300)
    test = load_fashion_mnist(fmnist_dir, split="test", max_per_class=40)
    return train.images[train.labels == 8], test.images, (test.labels != 8).long()


def _fit(normal, spec, method, **overrides):
    backbone = build_backbone(spec, method)
    config = MemoryBankConfig.for_method(method, backbone=backbone.config, image_size=32, channels=1, **overrides)
    return fit_memory_bank(normal, config, backbone)


@pytest.mark.parametrize("spec,method", [("pixels", "knn"), (REFERENCE, "knn"), (REFERENCE, "patchcore")])
def test_methods_tell_other_classes_from_the_normal_one(bags, spec, method):
    normal, test, y = bags
    model, record = _fit(normal, spec, method)
    scores, maps = score_images(model, test)
    assert binary_metrics(scores, y, model.threshold)["auroc"] > 0.75
    assert (maps is None) == (method == "knn")
    if maps is not None:
        assert maps.shape == (len(test), 32, 32)
    assert record["num_train"] + record["num_validation"] == len(normal)


def test_threshold_is_a_quantile_of_held_out_normal_images_never_in_the_bank(bags):
    normal, _, _ = bags
    model, record = _fit(normal, "pixels", "knn", k=1)
    fit, val = split_holdout(normal, 0.1, 0)
    val_scores, _ = score_images(model, val)
    assert model.threshold == pytest.approx(float(torch.quantile(val_scores.double(), 0.99)))
    # a held-out image is not in the bank; a fitted one is (its distance is 0 up to cdist's rounding)
    assert score_images(model, fit)[0].max() < 0.05 < val_scores.min()
    assert "false-alarm rate of 1.0%" in record["threshold_rule"]


def test_patchcore_heatmap_points_at_the_defect(bags):
    normal, test, y = bags
    model, _ = _fit(normal, REFERENCE, "patchcore")
    clean = test[y == 0][:20]
    damaged = clean.clone()
    damaged[:, :, 4:14, 18:28] = 255  # a bright block in the top right
    s_clean, _ = score_images(model, clean)
    s_bad, maps = score_images(model, damaged)
    assert (s_bad > s_clean).float().mean() >= 0.9
    inside = maps[:, 4:14, 18:28].mean((1, 2))
    outside = maps[:, 20:, :12].mean((1, 2))  # the opposite corner
    assert (inside > outside).float().mean() >= 0.9


def test_greedy_coreset_covers_the_features_better_than_a_random_one():
    g = torch.Generator().manual_seed(0)
    # a big cluster and a few rare points: a random sample misses the rare ones, greedy k-center does not
    x = torch.cat([torch.randn(2000, 2, generator=g), torch.randn(3, 2, generator=g) + 12])

    def radius(idx):
        return torch.cdist(x, x[idx]).min(1).values.max()

    greedy, rand = coreset(x, 50, "greedy"), coreset(x, 50, "random")
    assert len(greedy) == len(set(greedy.tolist())) == 50 and len(rand) == 50
    assert radius(greedy) < 0.6 * radius(rand)
    assert torch.equal(coreset(x, 50, "none"), torch.arange(len(x)))
    with pytest.raises(GanaugError, match="coreset must be one of"):
        coreset(x, 5, "kmeans")


def test_coreset_bounds_the_bank_and_the_record_says_what_it_costs(bags):
    normal, _, _ = bags
    model, record = _fit(normal, REFERENCE, "patchcore", coreset_ratio=0.05)
    assert record["bank_rows"] == math.ceil(0.05 * record["features_seen"])
    assert record["bank_bytes"] == model.bank.numel() * 4 and record["feature_dim"] == model.bank.shape[1]
    assert record["coreset"] == "greedy, 5% kept"


def _write(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, x in enumerate(images):
        Image.fromarray(x[0].numpy()).resize((36, 40)).save(folder / f"img{i}.png")


def test_cli_fits_and_scores_every_method_through_one_package_layer(bags, tmp_path):
    normal, test, y = bags
    _write(tmp_path / "normal", normal[:150])
    _write(tmp_path / "eval" / "good", test[y == 0][:10])
    _write(tmp_path / "eval" / "defect", test[y == 1][:10])
    for method in ("knn", "patchcore"):
        det, out = tmp_path / f"det-{method}", tmp_path / f"scored-{method}"
        assert main(["anomaly", "train", str(tmp_path / "normal"), "--out", str(det), "--method", method,
                     "--backbone", f"reference:{REFERENCE}", "--image-size", "32"]) == 0
        config = json.loads((det / "config.json").read_text())
        assert config["kind"] == f"ganaug-anomaly-{method}" and config["model"]["backbone"]["kind"] == "reference"
        assert type(load_artifact(det)).__name__ == "MemoryBankDetector"
        assert main(["anomaly", "score", str(det), str(tmp_path / "eval"), "--out", str(out),
                     "--normal-class", "good"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["n"] == 20 and 0 <= metrics["auroc"] <= 1 and metrics["heatmaps"] == (method == "patchcore")
        assert (out / "heatmaps").is_dir() == (method == "patchcore")
        card = (det / "README.md").read_text()
        assert f"--method {method}" in card and "memory bank:" in card and "false-alarm rate" in card


def test_a_torchvision_backbone_is_recorded_not_copied_and_checked_when_loaded(bags, tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("GANAUG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GANAUG_OFFLINE", "1")
    normal, test, _ = bags
    torch.manual_seed(0)  # random weights stand in for published ones: no downloads here
    state = torchvision.models.resnet18().state_dict()
    save_file(state, str(tmp_path / "r18.safetensors"))
    backbone = build_backbone("torchvision:resnet18", "patchcore", weights_file=tmp_path / "r18.safetensors",
                              input_size=32)
    config = MemoryBankConfig.for_method("patchcore", backbone=backbone.config, image_size=32, channels=1)
    model, record = fit_memory_bank(normal[:60], config, backbone)
    folder = save_detector(model, tmp_path / "det", record)
    assert set(load_file(str(folder / "model.safetensors"))) == {"bank"}  # the backbone is not in the package
    with pytest.raises(GanaugError, match="came from a local weights file; pass that file again"):
        load_detector(folder)
    again = load_detector(folder, backbone_weights=tmp_path / "r18.safetensors")
    assert torch.equal(score_images(again, test[:8])[0], score_images(model, test[:8])[0])
    torch.save(state, tmp_path / "r18.pth")  # a .pth is read without unpickling, and is the same weights
    assert load_detector(folder, backbone_weights=tmp_path / "r18.pth").bank.shape == model.bank.shape
    save_file({**state, "fc.bias": state["fc.bias"] + 1}, str(tmp_path / "other.safetensors"))
    with pytest.raises(GanaugError, match="digest .* but the detector was fitted with .*Use the weights it was fitted with"):
        load_detector(folder, backbone_weights=tmp_path / "other.safetensors")


def test_published_torchvision_weights_offline_say_what_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("GANAUG_CACHE", str(tmp_path))
    monkeypatch.setenv("GANAUG_OFFLINE", "1")
    with pytest.raises(GanaugError, match=r"(?s)offline.*https://download\.pytorch\.org/models/resnet18-.*"
                                          r"--backbone-weights"):
        build_backbone("torchvision:resnet18", "knn")


def test_bad_detector_inputs(bags, tmp_path):
    normal, _, _ = bags
    with pytest.raises(GanaugError, match="PatchCore needs a CNN backbone"):
        MemoryBankConfig.for_method("patchcore", backbone=build_backbone("pixels", "patchcore").config)
    with pytest.raises(GanaugError, match="unknown backbone 'resnet18'"):
        build_backbone("resnet18", "knn")
    with pytest.raises(GanaugError, match="has no layer\\(s\\) \\['layer9'\\].*body.13"):
        build_backbone(REFERENCE, "patchcore", layers=("layer9",))
    model, record = _fit(normal, REFERENCE, "knn")
    folder = save_detector(model, tmp_path / "det", record)
    state = load_file(str(folder / "model.safetensors"))
    save_file({**state, "bank": torch.zeros(10, 7)}, str(folder / "model.safetensors"))  # not its backbone's features
    with pytest.raises(GanaugError, match="7-d features but its backbone .* makes 64-d"):
        load_detector(folder)
