import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganaug import GanaugError
from ganaug.anomaly import (AnomalyConfig, AnomalyTrainConfig, SkipGANomaly, load_detector, save_detector,
                            score_images, train_detector)
from ganaug.cli import main
from ganaug.data import load_fashion_mnist



@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(size, channels):
    m = SkipGANomaly(AnomalyConfig(image_size=size, channels=channels, width=8))
    x = torch.rand(2, channels, size, size) * 2 - 1
    assert m.G(x).shape == x.shape
    logit, feat = m.D(x)
    assert logit.shape == (2,) and feat.dim() == 4
    scores, maps = m.score_maps(x)
    assert scores.shape == (2,) and maps.shape == (2, size, size)


@pytest.fixture(scope="module")
def sneakers(fmnist_dir):
    train = load_fashion_mnist(fmnist_dir, max_per_class=400)
    test = load_fashion_mnist(fmnist_dir, split="test", max_per_class=40)
    return train.images[train.labels == 7], test


@pytest.fixture(scope="module")
def detector(sneakers):
    normal, _ = sneakers
    return train_detector(normal, AnomalyConfig(image_size=32, channels=1, width=16),
                          AnomalyTrainConfig(epochs=6, batch_size=32), progress=False)


def test_corrupted_images_score_higher_after_short_training(detector, sneakers):
    model, _ = detector
    _, test = sneakers
    clean = test.images[test.labels == 7]
    corrupted = clean.clone()
    corrupted[:, :, 8:24, 8:24] = torch.randint(0, 256, (len(clean), 1, 16, 16),
                                                generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    s_clean, _ = score_images(model, clean)
    s_bad, _ = score_images(model, corrupted)
    assert (s_bad > s_clean).float().mean() > 0.9


def test_threshold_comes_only_from_normal_validation_data(detector, sneakers):
    model, record = detector
    normal, _ = sneakers
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the split train_detector made with seed 0
        perm = torch.randperm(len(normal))
    val = normal[perm[: record["num_validation"]]]
    scores, _ = score_images(model, val)
    assert model.threshold == pytest.approx(float(torch.quantile(scores.double(), 0.99)))
    assert record["num_train"] + record["num_validation"] == len(normal)


def test_a_killed_run_resumes_exactly_from_its_last_epoch(sneakers, tmp_path):
    normal = sneakers[0][:160]
    config = AnomalyConfig(image_size=32, channels=1, width=4)

    def fit(epochs, folder, resume=False):
        return train_detector(normal, config, AnomalyTrainConfig(epochs=epochs, batch_size=32, patience=10),
                              progress=False, run_dir=tmp_path / folder, resume=resume)

    straight, record = fit(3, "straight")
    fit(2, "resumed")  # as if killed after epoch 2
    with pytest.raises(GanaugError, match="already holds a run; pass --resume"):
        fit(3, "resumed")
    again, record_again = fit(3, "resumed", resume=True)
    state, state_again = straight.state_dict(), again.state_dict()
    assert all(torch.equal(state[k], state_again[k]) for k in state)
    assert again.threshold == straight.threshold and record_again["best_epoch"] == record["best_epoch"]
    assert [h["val_score_mean"] for h in record_again["history"]] == [h["val_score_mean"] for h in record["history"]]
    metrics = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["epoch"] for m in metrics] == [1, 2, 3]
    with pytest.raises(GanaugError, match="other images or settings"):
        train_detector(normal[:150], config, AnomalyTrainConfig(epochs=4, batch_size=32), progress=False,
                       run_dir=tmp_path / "resumed", resume=True)


def test_save_load_round_trip_gives_identical_scores(detector, sneakers, tmp_path):
    model, record = detector
    _, test = sneakers
    again = load_detector(save_detector(model, tmp_path / "det", record))
    assert again.threshold == model.threshold
    assert torch.equal(score_images(model, test.images)[0], score_images(again, test.images)[0])


def _write(folder, images, prefix="img"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, x in enumerate(images):
        Image.fromarray(x[0].numpy()).resize((36, 40)).save(folder / f"{prefix}{i}.png")


def test_cli_train_and_score_with_heatmaps_and_metrics(sneakers, tmp_path):
    normal, test = sneakers
    _write(tmp_path / "normal", normal[:200])
    _write(tmp_path / "eval" / "good", test.images[test.labels == 7][:10])
    _write(tmp_path / "eval" / "defect", test.images[test.labels == 1][:10])
    assert main(["anomaly", "train", str(tmp_path / "normal"), "--out", str(tmp_path / "det"), "--method",
                 "skipganomaly", "--image-size", "32", "--width", "8", "--epochs", "2", "--batch-size", "32"]) == 0
    assert main(["anomaly", "score", str(tmp_path / "det"), str(tmp_path / "eval"), "--out",
                 str(tmp_path / "scored"), "--normal-class", "good"]) == 0
    metrics = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    assert set(metrics) >= {"auroc", "auprc", "f1_at_threshold", "threshold"} and metrics["n"] == 20
    heat = sorted((tmp_path / "scored" / "heatmaps").iterdir())
    assert len(heat) == 20 and Image.open(heat[0]).size == (36, 40)  # the image's own size
    rows = (tmp_path / "scored" / "scores.csv").read_text().splitlines()
    assert rows[0] == "path,score,predicted_anomaly,threshold,label" and len(rows) == 21
    assert (tmp_path / "scored" / "roc.png").is_file()
    card = (tmp_path / "det" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: ganaug") and "ganaug anomaly train" in card


def test_bad_inputs(tmp_path, capsys, tiny_package):
    (tmp_path / "mixed").mkdir()
    Image.new("L", (32, 32)).save(tmp_path / "mixed" / "a.png")
    Image.new("L", (40, 32)).save(tmp_path / "mixed" / "b.png")
    assert main(["anomaly", "train", str(tmp_path / "mixed"), "--out", str(tmp_path / "m"), "--resize", "strict"]) == 2
    assert "different sizes: 32x32 (a.png), 40x32 (b.png)" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["anomaly", "train", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 2
    assert "no images in" in capsys.readouterr().err
    generator = tiny_package
    with pytest.raises(GanaugError, match="holds a 'ganaug-generator' package, not an anomaly detector"):
        load_detector(generator)
    with pytest.raises(GanaugError, match="images are \\(1, 32, 32\\) but the detector expects \\(3, 32, 32\\)"):
        train_detector(torch.zeros(10, 1, 32, 32, dtype=torch.uint8), AnomalyConfig(image_size=32, channels=3),
                       AnomalyTrainConfig())


def test_push_validates_detector_packages(detector, tmp_path):
    from ganaug.artifacts import load_artifact

    model, record = detector
    folder = save_detector(model, tmp_path / "det", record)
    load_artifact(folder)  # loads as a detector, not as a generator
    (folder / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(GanaugError, match="corrupt or truncated"):
        load_artifact(folder)


def test_images_of_many_sizes_and_formats_train_and_score_by_one_resize_policy(sneakers, tmp_path):
    """Inspection archives hold crops of many sizes: the detector fits them all to its size by the
    policy in its config, the same way when scoring; 'strict' keeps the one-size check."""
    from ganaug.anomaly.scoring import list_images, load_for

    normal, test = sneakers
    sizes = [(36, 40), (64, 30), (32, 32), (50, 90)]
    (tmp_path / "normal").mkdir()
    for i, x in enumerate(normal[:64]):
        im = Image.fromarray(x[0].numpy()).resize(sizes[i % 4])
        im.convert("RGB" if i % 3 == 0 else "L").save(tmp_path / "normal" / f"n{i}.{'jpg' if i % 2 else 'png'}")
    for policy in ("crop", "pad"):
        assert main(["anomaly", "train", str(tmp_path / "normal"), "--out", str(tmp_path / policy), "--resize", policy,
                     "--method", "skipganomaly", "--image-size", "32", "--width", "4", "--epochs", "1", "--batch-size", "32"]) == 0
        det = load_detector(tmp_path / policy)
        assert det.config.resize == policy and det.config.channels == 3  # grey and RGB files: RGB
        files, _ = list_images(tmp_path / "normal")
        fitted = load_for(files, det.config)
        assert fitted.shape == (64, 3, 32, 32)
        assert main(["anomaly", "score", str(tmp_path / policy), str(tmp_path / "normal"), "--out",
                     str(tmp_path / f"scored-{policy}")]) == 0
    # the two policies see different pixels: pad puts black bars above and below a wide image
    (tmp_path / "wide").mkdir()
    Image.new("L", (64, 30), 200).save(tmp_path / "wide" / "w.png")
    crop = load_for([tmp_path / "wide" / "w.png"], load_detector(tmp_path / "crop").config)[0]
    pad = load_for([tmp_path / "wide" / "w.png"], load_detector(tmp_path / "pad").config)[0]
    assert (crop == 200).all() and (pad[:, :5] == 0).all() and (pad[:, 14:18] == 200).all()

    (tmp_path / "same").mkdir()
    for i, x in enumerate(normal[:40]):
        Image.fromarray(x[0].numpy()).resize((36, 40)).save(tmp_path / "same" / f"s{i}.png")
    assert main(["anomaly", "train", str(tmp_path / "same"), "--out", str(tmp_path / "strict"), "--resize", "strict",
                 "--method", "skipganomaly", "--image-size", "32", "--width", "4", "--epochs", "1", "--batch-size", "32"]) == 0
    strict = load_detector(tmp_path / "strict")
    assert strict.config.source_size == (36, 40)
    with pytest.raises(GanaugError, match="these images are .* trained on 36x40 images with resize='strict'"):
        load_for([tmp_path / "normal" / "n1.jpg"], strict.config)  # 64x30


def test_heatmap_covers_what_the_model_saw(tmp_path):
    from ganaug.anomaly.scoring import overlay

    Image.new("L", (40, 20), 100).save(tmp_path / "wide.png")
    heat = torch.ones(32, 32)
    crop = np.asarray(overlay(tmp_path / "wide.png", heat, "crop")).astype(int)
    pad = np.asarray(overlay(tmp_path / "wide.png", heat, "pad")).astype(int)
    assert crop.shape == pad.shape == (20, 40, 3)
    red = lambda a: a[..., 0] - a[..., 1]  # noqa: E731
    assert (red(crop)[:, :10] == 0).all() and (red(crop)[:, 10:30] > 0).all() and (red(crop)[:, 30:] == 0).all()
    assert (red(pad) > 0).all()


def test_local_scores_reduce_one_anomaly_map(detector, sneakers, tmp_path):
    """The map's mean is the paper's image score; max and top-k read the same map locally; the
    choice is recorded in the config, sets the threshold, and survives saving."""
    import dataclasses

    from ganaug.anomaly.model import reduce_maps
    from ganaug.pixels import uint8_to_model

    model, _ = detector
    _, test = sneakers
    x = uint8_to_model(test.images[:8])
    rec = model.G(x)
    (_, f_x), (_, f_r) = model.D(x), model.D(rec)
    paper = 0.9 * (x - rec).abs().flatten(1).mean(1) + 0.1 * (f_x - f_r).pow(2).flatten(1).mean(1)
    scores, maps = model.score_maps(x)
    assert torch.allclose(scores, paper, rtol=1e-5) and maps.shape == (8, 32, 32)
    top, peak = reduce_maps(maps, "topk", 0.05), reduce_maps(maps, "max")
    assert (peak >= top).all() and (top >= scores).all()
    assert torch.equal(reduce_maps(maps, "topk", 1 / 1024), peak)  # the top single pixel is the max
    local = dataclasses.replace(model.config, score_reduce="topk", score_topk=0.05, score_smoothing=2.0)
    again = SkipGANomaly(local, threshold=model.threshold)
    again.load_state_dict(model.state_dict())
    smooth = again.anomaly_maps(x)
    assert not torch.allclose(smooth, maps) and smooth.shape == maps.shape
    assert torch.allclose(again.score_maps(x)[0], reduce_maps(smooth, "topk", 0.05))
    back = load_detector(save_detector(again, tmp_path / "local"))
    assert back.config.score_reduce == "topk" and back.config.score_smoothing == 2.0
    with pytest.raises(GanaugError, match="score_reduce must be one of"):
        AnomalyConfig(score_reduce="median").validate()


def test_cli_records_the_score_choice(sneakers, tmp_path):
    normal, _ = sneakers
    _write(tmp_path / "normal", normal[:64])
    assert main(["anomaly", "train", str(tmp_path / "normal"), "--out", str(tmp_path / "det"), "--image-size", "32",
                 "--method", "skipganomaly", "--width", "4", "--epochs", "1", "--score-reduce", "max", "--score-smoothing", "1.5"]) == 0
    det = load_detector(tmp_path / "det")
    assert (det.config.score_reduce, det.config.score_smoothing) == ("max", 1.5)
    assert "score = its max" in (tmp_path / "det" / "README.md").read_text()
