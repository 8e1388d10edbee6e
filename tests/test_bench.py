import dataclasses
import json

import pytest
import torch

import ganaug
from ganaug import GanaugError, LabelledImages
from ganaug.bench import DownstreamConfig, long_tailed_sizes, long_tailed_split, run_downstream, verdict
from ganaug.bench.splits import carve_validation
from ganaug.cli import main
from ganaug.data import load_fashion_mnist


def test_long_tailed_sizes_follow_the_exponential_profile():
    assert long_tailed_sizes(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert long_tailed_sizes(100, 2, 10) == [100, 10]


def test_long_tailed_split_uses_only_the_training_split(fmnist_slice):
    lt = long_tailed_split(fmnist_slice, 10, n_max=40)
    assert lt.class_counts() == long_tailed_sizes(40, 10, 10)
    # every image of the split is a training image (the function never sees the test split)
    train_rows = {bytes(x.numpy().tobytes()) for x in fmnist_slice.images}
    assert all(bytes(x.numpy().tobytes()) in train_rows for x in lt.images)
    tr, val = carve_validation(lt, 0.25)
    assert len(tr) + len(val) == len(lt) and all(n >= 1 for n in val.class_counts()[:9])
    with pytest.raises(GanaugError, match="fewer images than the long-tailed split needs"):
        long_tailed_split(fmnist_slice, 10, n_max=1000)


def test_verdict_says_plainly_when_ganaug_lost():
    r = {v: {"balanced_accuracy_mean": m} for v, m in
         [("plain", 0.50), ("reweight", 0.60), ("oversample", 0.58), ("ganaug-balance", 0.59)]}
    v = verdict(r)
    assert v["winner"] == "reweight" and v["margin_points"] == -1.0
    assert v["sentence"] == ("ganaug-balance did not beat the best classical baseline (reweight): "
                             "-1.00 points of balanced accuracy.")
    r["ganaug-balance"]["balanced_accuracy_mean"] = 0.625
    assert verdict(r)["sentence"] == ("ganaug-balance beat the best classical baseline (reweight) by 2.50 "
                                      "points of balanced accuracy.")


def test_tiny_benchmark_writes_a_complete_report(fmnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GANAUG_CACHE", str(tmp_path / "cache"))  # the reference classifier's cache
    train = load_fashion_mnist(fmnist_dir, image_size=32, max_per_class=30)
    test = load_fashion_mnist(fmnist_dir, split="test", image_size=32, max_per_class=5)
    cfg = DownstreamConfig(imbalance_ratio=10, seeds=2, n_max=24, classifier_steps=3, batch_size=16,
                           generator_steps=2, eval_n=40)
    summary = run_downstream(train, test, cfg, tmp_path / "report", progress=False)
    ev = summary["generator"]["eval"]  # the generator is judged against the real test split
    assert ev["n"] == 40 and len(ev["class_fidelity_per_class"]) == 10 and ev["fid"] >= 0
    assert (tmp_path / "report" / "generator-eval" / "eval.json").is_file()
    # the judge was trained on the full training split; memorisation is checked against the
    # long-tailed images the generator saw
    protocol = json.loads((tmp_path / "report" / "generator-eval" / "eval.json").read_text())["protocol"]
    assert protocol["train_split_for_memorisation"].endswith("long-tailed R=10 (train part)")
    assert set(summary["results"]) == {"plain", "reweight", "oversample", "ganaug-balance", "ganaug-batch",
                                       "ganaug-batch+reweight", "ganaug-balance+oversample"}
    assert summary["generator"]["trained_on_long_tailed_split"] is True
    gen_run = json.loads((tmp_path / "report" / "generator" / "run_config.json").read_text())
    assert gen_run["data"]["class_counts"] == summary["data"]["train_counts"]  # only the long-tailed part
    assert sum(gen_run["data"]["class_counts"]) < len(train)
    counts = summary["data"]["train_counts"]
    assert summary["data"]["synthetic_counts"] == [max(counts) - n for n in counts]  # topped up to the largest
    for f in ("results.json", "report.md", "per_class.png", "confusion.png"):
        assert (tmp_path / "report" / f).is_file(), f
    report = (tmp_path / "report" / "report.md").read_text()
    assert "beat the best classical baseline" in report and "| class fidelity |" in report
    assert all(len(r["runs"]) == 2 for r in summary["results"].values())

    # a second call (a killed benchmark restarted) keeps every finished run instead of retraining
    runs = tmp_path / "report" / "runs"
    (runs / "plain-seed1.json").unlink()
    stamps = {f.name: f.stat().st_mtime_ns for f in runs.iterdir()}
    again = run_downstream(train, test, cfg, tmp_path / "report", progress=False)
    assert {f.name: f.stat().st_mtime_ns for f in runs.iterdir() if f.name in stamps} == stamps  # kept
    assert (runs / "plain-seed1.json").is_file()  # the missing one was trained again
    for v, r in summary["results"].items():
        assert [x["balanced_accuracy"] for x in again["results"][v]["runs"]] == \
            [x["balanced_accuracy"] for x in r["runs"]]
    # a record written before a setting existed counts as made with that setting's default
    record = json.loads((runs / "reweight-seed0.json").read_text())
    del record["key"]["config"]["gate_keep"]
    (runs / "reweight-seed0.json").write_text(json.dumps(record))
    stamp = (runs / "reweight-seed0.json").stat().st_mtime_ns
    run_downstream(train, test, cfg, tmp_path / "report", progress=False)
    assert (runs / "reweight-seed0.json").stat().st_mtime_ns == stamp
    # a changed setting retrains instead of reusing stale results
    changed = run_downstream(train, test, dataclasses.replace(cfg, classifier_steps=4), tmp_path / "report",
                             progress=False)
    assert changed["config"]["classifier_steps"] == 4
    kept = json.loads((tmp_path / "report" / "runs" / "plain-seed0.json").read_text())
    assert kept["key"]["config"]["classifier_steps"] == 4


def test_a_generator_that_saw_more_data_is_refused(fmnist_dir, tmp_path):
    train = load_fashion_mnist(fmnist_dir, image_size=32, max_per_class=30)
    test = load_fashion_mnist(fmnist_dir, split="test", image_size=32, max_per_class=2)
    mc = ganaug.make_config("sngan", 10, train.class_names, image_size=32, channels=1, g_width=8, d_width=8)
    leaky = ganaug.train(train, mc, ganaug.TrainConfig(steps=1, batch_size=8), tmp_path / "leaky", progress=False)
    cfg = DownstreamConfig(imbalance_ratio=10, seeds=1, n_max=24, classifier_steps=1, batch_size=8, eval_n=0)
    with pytest.raises(GanaugError, match="would leak it into the comparison"):
        run_downstream(train, test, cfg, tmp_path / "r", generator=str(leaky), progress=False)


def test_bad_mixing_settings_are_refused(tmp_path):
    tiny = LabelledImages(torch.zeros(4, 1, 32, 32, dtype=torch.uint8), torch.tensor([0, 0, 1, 1]), ["a", "b"], "t")
    for bad in ({"balance_to": 0.0}, {"balance_to": 1.5}, {"gan_p_max": -0.1}, {"gate_keep": 0.0}):
        with pytest.raises(GanaugError, match="balance_to and gate_keep must lie in"):
            run_downstream(tiny, tiny, DownstreamConfig(**bad), tmp_path, progress=False)


def test_cli_help_and_bad_variant(capsys):
    with pytest.raises(SystemExit):
        main(["bench-downstream", "x", "--out", "y", "--variants", "magic"])
    assert "invalid choice: 'magic'" in capsys.readouterr().err


def test_quality_gate_keeps_the_images_the_gate_finds_most_typical(fmnist_dir, tmp_path):
    from ganaug.bench.downstream import gated_synthetic, train_classifier
    from ganaug.data.images import uint8_to_model

    train = load_fashion_mnist(fmnist_dir, image_size=32, max_per_class=30)
    lt = long_tailed_split(train, 10, 24)
    mc = ganaug.make_config("sngan", 10, train.class_names, image_size=32, channels=1, g_width=8, d_width=8)
    gen = ganaug.load_generator(ganaug.train(lt, mc, ganaug.TrainConfig(steps=2, batch_size=8), tmp_path / "g",
                                             progress=False))
    cfg = DownstreamConfig(classifier_steps=3, batch_size=16, gate_keep=0.25)
    add = {c: 24 - n for c, n in enumerate(lt.class_counts()) if n < 24}
    kept = gated_synthetic(gen, lt, add, cfg, tmp_path / "cache")
    assert torch.bincount(kept.labels, minlength=10).tolist() == [add.get(c, 0) for c in range(10)]
    # the same gate (same seed) scores the kept images above the pool they were picked from
    pool = ganaug.data.SyntheticDataset(gen, {c: 4 * n for c, n in add.items()}, seed=0, cache=tmp_path / "cache")
    gate = train_classifier("oversample", lt, cfg, seed=10_000)
    with torch.no_grad():
        def conf(images, labels):
            return gate(uint8_to_model(images)).softmax(1)[torch.arange(len(labels)), labels]
        assert conf(kept.images, kept.labels).mean() > conf(pool.images(), pool.labels).mean()
