import json

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from ganaug import GanaugError
from ganaug.cli import main
from ganaug.eval import (FitConfig, ReferenceClassifier, ReferenceFeatures, check_comparable,
                         class_fidelity, fid, frechet_distance, inception_score, kid,
                         memorisation, precision_recall, train_reference_classifier)

from .conftest import make_class_folders


def _psd(d, seed):
    a = torch.randn(d, 3 * d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.t() / (3 * d)


def _scipy_fd(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1.numpy() @ s2.numpy())
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1.numpy()) + np.trace(s2.numpy()) - 2 * np.trace(covmean))


def test_frechet_distance_matches_scipy_sqrtm():
    for seed, d in [(0, 4), (1, 16), (2, 64)]:
        s1, s2 = _psd(d, seed), _psd(d, seed + 100)
        mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.full((d,), 0.3, dtype=torch.float64)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_scipy_fd(mu1, s1, mu2, s2), rel=1e-7, abs=1e-9)


def test_frechet_distance_closed_form_for_diagonal_covariances():
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 4.0, 1.0])
    mu = torch.tensor([1.0, 0.0, 2.0])
    expected = float(mu.pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum())  # 5 + 1 + 0 + 4
    assert frechet_distance(mu, torch.diag(a), torch.zeros(3), torch.diag(b)) == pytest.approx(expected)


def test_frechet_distance_is_real_and_nonnegative_for_singular_covariances():
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(0))  # 5 samples in 32-d: rank 4
    v = fid(x, x + 1e-9)
    assert isinstance(v, float) and 0 <= v < 1e-6


def test_fid_matches_torchmetrics_on_the_same_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Identity(nn.Module):
        num_features = 8

        def forward(self, x):
            return x

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 8, generator=g), torch.randn(400, 8, generator=g) * 1.3 + 0.2
    tm = FrechetInceptionDistance(feature=Identity(), normalize=True)
    tm.update(a, real=True)
    tm.update(b, real=False)
    assert fid(a, b) == pytest.approx(float(tm.compute()), rel=1e-5)


def _clusters(n_per, centres, seed=0, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([c + spread * torch.randn(n_per, len(c), generator=g) for c in centres])
    y = torch.arange(len(centres)).repeat_interleave(n_per)
    return x, y


CENTRES = [torch.tensor(v, dtype=torch.float32) for v in ([0, 0, 0, 0], [3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0])]


def test_set_against_itself_and_against_a_fresh_sample():
    real, _ = _clusters(300, CENTRES)
    assert fid(real, real) == pytest.approx(0, abs=1e-6)
    pr = precision_recall(real, real)
    assert pr["precision"] == 1.0 and pr["recall"] == 1.0
    fresh, _ = _clusters(300, CENTRES, seed=1)
    pr = precision_recall(real, fresh)
    assert pr["precision"] > 0.9 and pr["recall"] > 0.9 and 0.7 < pr["coverage"] <= 1.0


def test_shifted_and_collapsed_sets_score_worse():
    real, _ = _clusters(300, CENTRES)
    fresh, y = _clusters(300, CENTRES, seed=1)
    base = fid(real, fresh)
    assert fid(real, fresh + 1.0) > base + 1.0  # shifted
    collapsed = torch.cat([fresh[y != 3], fresh[y == 0]])  # class 3 missing, class 0 twice
    assert precision_recall(real, collapsed)["recall"] < precision_recall(real, fresh)["recall"] - 0.15
    assert fid(real, collapsed) > base


def test_kid_is_unbiased_around_zero_for_one_distribution():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 16, generator=g), torch.randn(2000, 16, generator=g)
    mean, std, m = kid(a, b, subsets=50, subset_size=500)
    assert m == 500 and abs(mean) < 3 * std / 50 ** 0.5 + 1e-4
    shifted, _, _ = kid(a, b + 0.5, subsets=50, subset_size=500)
    assert shifted > 20 * abs(mean) and shifted > 0.01


def test_inception_score_extremes():
    uniform = torch.zeros(100, 10)
    assert inception_score(uniform)[0] == pytest.approx(1.0)
    # sorted by class, as generated sets are: the score must not depend on the order
    confident = torch.eye(10).repeat_interleave(100, dim=0) * 50
    assert inception_score(confident, splits=10)[0] == pytest.approx(10.0, rel=0.05)


def test_class_fidelity_per_class():
    logits = torch.tensor([[5.0, 0], [5.0, 0], [0, 5.0], [5.0, 0]])
    overall, per = class_fidelity(logits, torch.tensor([0, 0, 1, 1]), 2)
    assert overall == 0.75 and per == [1.0, 0.5]


def test_memorisation_flags_exact_copies_only():
    train, ytr = _clusters(200, CENTRES, seed=0)
    test, yte = _clusters(100, CENTRES, seed=1)
    fresh, yf = _clusters(100, CENTRES, seed=2)
    gen, yg = _clusters(200, CENTRES, seed=3)
    gen[yg == 2] = train[ytr == 2]  # class 2 is copied from the training set, the rest is new
    m = memorisation(gen, yg, train, test, yte, 4)
    flagged = [c for c, r in enumerate(m["per_class"]) if r["flagged"]]
    assert flagged == [2]  # only class 2 was copied from the training set
    assert m["per_class"][2]["copy_close_fraction"] == 1.0 and m["per_class"][2]["median_ratio"] == 0.0
    clean = memorisation(fresh, yf, train, test, yte, 4)
    assert not any(r["flagged"] for r in clean["per_class"])


def test_too_few_samples_is_a_clear_error():
    with pytest.raises(GanaugError, match="too few samples for FID"):
        fid(torch.randn(1, 4), torch.randn(10, 4))
    with pytest.raises(GanaugError, match="precision/recall with k=3"):
        precision_recall(torch.randn(3, 4), torch.randn(10, 4))


@pytest.fixture(scope="module")
def fmnist_reference(fmnist_dir):
    from ganaug.data import load_fashion_mnist

    train = load_fashion_mnist(fmnist_dir, image_size=32, max_per_class=300)
    test = load_fashion_mnist(fmnist_dir, split="test", image_size=32, max_per_class=100)
    return train_reference_classifier(train, test, FitConfig(epochs=3)), train, test


def test_reference_classifier_reaches_stated_accuracy(fmnist_reference, tmp_path):
    ref, train, test = fmnist_reference
    # 3000 training images, 3 epochs: a small CNN reaches well above 75% on Fashion-MNIST.
    assert ref.accuracy >= 0.75
    again = ReferenceClassifier.load(ref.save(tmp_path / "ref"))
    assert again.accuracy == ref.accuracy
    f1, _ = ReferenceFeatures(ref).embed(test.images[:20])
    f2, _ = ReferenceFeatures(again).embed(test.images[:20])
    assert torch.equal(f1, f2)


def test_random_hflip_mirrors_about_half_and_follows_the_seed():
    from ganaug.eval.classifier import random_hflip

    x = torch.arange(6, dtype=torch.uint8).view(1, 1, 2, 3).repeat(400, 1, 1, 1)
    out = random_hflip(x, torch.Generator().manual_seed(0))
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert torch.equal(mirrored | (out == x).flatten(1).all(1), torch.ones(400, dtype=torch.bool))
    assert 150 < int(mirrored.sum()) < 250
    assert torch.equal(out, random_hflip(x, torch.Generator().manual_seed(0)))


def test_the_old_train_steps_warns_and_trains_exactly_as_the_loop_it_now_calls():
    from ganaug.eval.classifier import SmallCNN, train_steps
    from ganaug.training.classifier import ClassifierRun, StepHooks, cross_entropy, train_classifier

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 3, (64,), generator=g)
    weight = torch.tensor([0.5, 1.0, 2.0])

    def batches(gen):
        while True:
            yield torch.randint(64, (16,), generator=gen)

    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match="train_classifier"):
        old = train_steps(SmallCNN(1, 3, 4), images, labels, batches, 5, lr=1e-2, translate=2, seed=3,
                          class_weights=weight)
    torch.manual_seed(0)
    new = train_classifier(SmallCNN(1, 3, 4), images, labels, batches,
                           ClassifierRun(steps=5, lr=1e-2, seed=3, translate=2), StepHooks(loss=cross_entropy(weight)))
    unweighted = train_classifier(SmallCNN(1, 3, 4), images, labels, batches, ClassifierRun(steps=5, lr=1e-2, seed=3,
                                                                                            translate=2))
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
    assert not torch.equal(new.head.weight, unweighted.head.weight)  # the weights reached the loss


def test_reference_classifier_cli_records_flip_and_channels_last(tmp_path):
    make_class_folders(tmp_path / "ds" / "train", classes=("a", "b"), n=12)
    make_class_folders(tmp_path / "ds" / "test", classes=("a", "b"), n=6, seed=1)
    for name, extra in [("plain", []), ("flip", ["--flip"]), ("cl", ["--channels-last"])]:
        assert main(["reference-classifier", str(tmp_path / "ds"), "--out", str(tmp_path / name), "--epochs", "3",
                     "--width", "4", *extra]) == 0
    plain, flip, cl = (ReferenceClassifier.load(tmp_path / n) for n in ("plain", "flip", "cl"))
    assert (plain.config.fit["flip"], flip.config.fit["flip"], cl.config.fit["flip"]) == (False, True, False)
    assert (plain.config.fit["channels_last"], cl.config.fit["channels_last"]) == (False, True)
    # the flips change what it learns from: the same seed gives different weights (after a few steps:
    # Adam's first step is about lr * sign(gradient), which flips rarely change)
    assert not torch.equal(plain.model.head.weight, flip.model.head.weight)


class _Killed(Exception):
    pass


def test_killed_classifier_run_resumes_to_the_same_weights(tmp_path):
    from ganaug.eval.classifier import fit_classifier

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 1, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 3, (96,), generator=g)
    fit = FitConfig(epochs=3, batch_size=16, width=4, flip=True)  # 6 steps per epoch, flips and shifts drawn
    whole = fit_classifier(images, labels, 3, fit)

    def dies_at_step_9(logits, y, w, step):
        if step == 9:  # in the second epoch: the first epoch's checkpoint is on disk
            raise _Killed
        return torch.nn.functional.cross_entropy(logits, y)

    ckpt = tmp_path / "ckpt.safetensors"
    with pytest.raises(_Killed):
        fit_classifier(images, labels, 3, fit, loss_fn=dies_at_step_9, checkpoint=ckpt)
    assert ckpt.is_file()
    resumed = fit_classifier(images, labels, 3, fit, checkpoint=ckpt)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    # a checkpoint is refused by a run with another recipe or other data, rather than continued
    for other_fit, other_images in [(FitConfig(epochs=3, batch_size=16, width=4), images), (fit, 255 - images)]:
        with pytest.raises(GanaugError, match="checkpoint of another run"):
            fit_classifier(other_images, labels, 3, other_fit, checkpoint=ckpt)


def test_reference_classifier_cli_removes_its_checkpoint_and_refuses_a_corrupt_one(tmp_path, capsys):
    make_class_folders(tmp_path / "ds" / "train", classes=("a", "b"), n=12)
    make_class_folders(tmp_path / "ds" / "test", classes=("a", "b"), n=6, seed=1)
    args = ["reference-classifier", str(tmp_path / "ds"), "--epochs", "3", "--width", "4", "--translate", "3"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    assert not (tmp_path / "whole" / "training-checkpoint.safetensors").exists()
    whole = ReferenceClassifier.load(tmp_path / "whole")
    assert whole.config.fit["translate"] == 3
    # a foreign file where the checkpoint goes is refused with a message saying what to do
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "training-checkpoint.safetensors").write_bytes(b"not a checkpoint")
    assert main([*args, "--out", str(tmp_path / "bad")]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err


def test_reference_features_refuse_wrong_shape(fmnist_reference):
    ref, _, _ = fmnist_reference
    with pytest.raises(GanaugError, match=r"images are \(3, 32, 32\)"):
        ReferenceFeatures(ref).embed(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


def test_corrupt_reference_weights(fmnist_reference, tmp_path):
    ref, _, _ = fmnist_reference
    folder = ref.save(tmp_path / "ref")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:100])
    with pytest.raises(GanaugError, match="corrupt or truncated"):
        ReferenceClassifier.load(folder)


def test_mismatched_data_and_generator_is_a_clear_error(fmnist_slice):
    from ganaug import make_config

    cfg = make_config("sngan", 10, fmnist_slice.class_names, image_size=32, channels=3)
    with pytest.raises(GanaugError, match="the data is 1x32x32 but the generator expects 3x32x32"):
        fmnist_slice.require(cfg.channels, cfg.image_size, cfg.class_names, "the generator")


def test_results_with_different_protocols_are_refused():
    p = {"n_fake": 100, "n_real": 50, "real_split": "x", "k": 3, "kid_subset_size": 50, "seed": 0,
         "truncation": None, "features": {"name": "reference"}}
    check_comparable({"protocol": p}, {"protocol": dict(p)})
    with pytest.raises(GanaugError, match="n_fake"):
        check_comparable({"protocol": p}, {"protocol": p | {"n_fake": 200}})


def test_eval_cli_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("GANAUG_CACHE", str(tmp_path / "cache"))
    make_class_folders(tmp_path / "ds" / "train", classes=("a", "b"), n=12)
    make_class_folders(tmp_path / "ds" / "test", classes=("a", "b"), n=6, seed=1)
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "ds"), "--out", str(run), "--steps", "2", "--batch-size", "4",
                 "--g-width", "8", "--d-width", "8", "--no-progress"]) == 0
    assert main(["eval", str(run), "--data", str(tmp_path / "ds"), "--n", "40", "--reference-min-steps", "100"]) == 0
    result = json.loads((run / "eval" / "eval.json").read_text())
    o = result["overall"]
    for key in ("fid", "kid", "is", "precision", "recall", "density", "coverage", "class_fidelity", "cas"):
        assert isinstance(o[key], float), key
    assert result["protocol"]["n_fake"] == 40 and result["protocol"]["n_real"] == 12
    assert result["protocol"]["kid_subset_size"] == 1000 and "subsets of 12" in result["protocol"]["kid"]
    assert 0 <= result["reference_classifier"]["real_test_accuracy"] <= 1
    assert [r["class"] for r in result["per_class"]] == ["a", "b"]
    assert [(r["n_train"], r["n_real"]) for r in result["per_class"]] == [(12, 6), (12, 6)]
    # CAS per real test class, from the same predictions as the overall figure
    per_cas = [r["cas"] for r in result["per_class"]]
    assert all(6 * c == round(6 * c) for c in per_cas)
    assert sum(6 * c for c in per_cas) / 12 == pytest.approx(o["cas"])
    assert "| real train images | real images compared | fidelity | CAS |" in (run / "eval" / "report.md").read_text()
    for f in ("report.md", "samples.png", "closest_pairs.png", "per_class.png"):
        assert (run / "eval" / f).is_file(), f
    assert list((tmp_path / "cache" / "reference").iterdir())  # the reference classifier was cached
    # a generator whose classes come in another order than the sorted class folders: matched by name
    assert main(["export", str(run), str(tmp_path / "pkg")]) == 0
    config = json.loads((tmp_path / "pkg" / "config.json").read_text())
    config["model"]["class_names"] = ["b", "a"]
    (tmp_path / "pkg" / "config.json").write_text(json.dumps(config))
    assert main(["eval", str(tmp_path / "pkg"), "--data", str(tmp_path / "ds"), "--n", "40", "--no-cas",
                 "--reference-min-steps", "100", "--out", str(tmp_path / "ev2")]) == 0
    result = json.loads((tmp_path / "ev2" / "eval.json").read_text())
    assert [r["class"] for r in result["per_class"]] == ["b", "a"]
    # data with a class the generator never drew: evaluated on the generator's classes only
    make_class_folders(tmp_path / "ds" / "train", classes=("c",), n=12, seed=2)
    make_class_folders(tmp_path / "ds" / "test", classes=("c",), n=6, seed=3)
    assert main(["eval", str(run), "--data", str(tmp_path / "ds"), "--n", "40", "--no-cas",
                 "--reference-min-steps", "100", "--out", str(tmp_path / "ev3")]) == 0
    result = json.loads((tmp_path / "ev3" / "eval.json").read_text())
    assert [r["class"] for r in result["per_class"]] == ["a", "b"] and result["protocol"]["n_real"] == 12
    assert main(["eval", str(run), "--data", str(tmp_path / "ds"), "--n", "2", "--reference-min-steps", "100"]) == 2


def test_train_reference_and_eval_share_the_test_part_of_data_without_splits(tmp_path, monkeypatch):
    monkeypatch.setenv("GANAUG_CACHE", str(tmp_path / "cache"))
    # NEU-DET's layout: one folder, the class in each file name, no test split
    folders = make_class_folders(tmp_path / "by-class", classes=("crack", "pit"), n=12)
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in folders.rglob("*.png"):
        f.rename(flat / f"{f.parent.name}_{f.stem}.png")
    split = ["--class-from", "filename", "--test-fraction", "0.25"]
    run = tmp_path / "run"
    assert main(["train", str(flat), *split, "--out", str(run), "--steps", "2", "--batch-size", "4",
                 "--g-width", "8", "--d-width", "8", "--no-progress"]) == 0
    assert json.loads((run / "run_config.json").read_text())["data"]["class_counts"] == [9, 9]
    assert main(["reference-classifier", str(flat), *split, "--out", str(tmp_path / "ref"), "--epochs", "1",
                 "--width", "4"]) == 0
    ref = ReferenceClassifier.load(tmp_path / "ref")
    assert (ref.config.trained_on["num_images"], ref.config.tested_on["num_images"]) == (18, 6)
    assert main(["eval", str(run), "--data", str(flat), *split, "--reference", str(tmp_path / "ref"),
                 "--n", "40", "--no-cas"]) == 0
    result = json.loads((run / "eval" / "eval.json").read_text())
    assert [(r["n_train"], r["n_real"]) for r in result["per_class"]] == [(9, 3), (9, 3)]


def test_classifier_bf16_is_validated_and_refused_where_the_cpu_would_emulate_it(monkeypatch):
    from ganaug import precision
    from ganaug.eval.classifier import fit_classifier

    with pytest.raises(GanaugError, match="'fp32' or 'bf16'"):
        FitConfig(precision="fp16")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    images, labels = torch.zeros(32, 1, 8, 8, dtype=torch.uint8), torch.zeros(32, dtype=torch.long)
    with pytest.raises(GanaugError, match="no native bf16"):
        fit_classifier(images, labels, 2, FitConfig(epochs=1, batch_size=16, width=4, precision="bf16"))


@pytest.mark.skipif(not __import__("ganaug.precision").precision.cpu_has_native_bf16(),
                    reason="this CPU has no native bf16")
def test_reference_classifier_cli_trains_in_bf16(tmp_path):
    make_class_folders(tmp_path / "ds" / "train", classes=("a", "b"), n=12)
    make_class_folders(tmp_path / "ds" / "test", classes=("a", "b"), n=6, seed=1)
    for name, extra in [("fp32", []), ("bf16", ["--precision", "bf16"])]:
        assert main(["reference-classifier", str(tmp_path / "ds"), "--out", str(tmp_path / name), "--epochs", "3",
                     "--width", "4", *extra]) == 0
    fp32, bf16 = ReferenceClassifier.load(tmp_path / "fp32"), ReferenceClassifier.load(tmp_path / "bf16")
    assert (fp32.config.fit["precision"], bf16.config.fit["precision"]) == ("fp32", "bf16")
    assert not torch.equal(fp32.model.head.weight, bf16.model.head.weight)  # autocast really ran


def test_a_judge_trained_in_bf16_still_runs_cas_on_a_cpu_without_it(tmp_path, monkeypatch):
    from ganaug import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    make_class_folders(tmp_path / "ds" / "train", classes=("a", "b"), n=12)
    make_class_folders(tmp_path / "ds" / "test", classes=("a", "b"), n=6, seed=1)
    run, ref = tmp_path / "run", tmp_path / "ref"
    assert main(["train", str(tmp_path / "ds"), "--out", str(run), "--steps", "2", "--batch-size", "4",
                 "--g-width", "8", "--d-width", "8", "--no-progress"]) == 0
    assert main(["reference-classifier", str(tmp_path / "ds"), "--out", str(ref), "--epochs", "1", "--width", "4"]) == 0
    config = json.loads((ref / "config.json").read_text())
    config["fit"]["precision"] = "bf16"  # as if trained on a CPU with AVX-512 BF16
    (ref / "config.json").write_text(json.dumps(config))
    # a bf16 fit here would be refused (the CPU "lacks" bf16) and eval would exit with 2
    assert main(["eval", str(run), "--data", str(tmp_path / "ds"), "--reference", str(ref), "--n", "40"]) == 0
    result = json.loads((run / "eval" / "eval.json").read_text())
    assert 0.0 <= result["overall"]["cas"] <= 1.0
    per_class = [row["cas"] for row in result["per_class"]]
    # per real test class (6 images each): the overall CAS is their mean
    assert len(per_class) == 2 and sum(per_class) / 2 == pytest.approx(result["overall"]["cas"])
