import dataclasses
import json
import os
import socket
import shutil
import subprocess
import sys
import threading
import time

import pytest
import torch

import ganaug
from ganaug import GanaugError, LabelledImages
from ganaug.bench import (CLASSICAL, DownstreamConfig, long_tailed_sizes, long_tailed_split, prepare_splits,
                          run_downstream, verdict)
from ganaug.bench.claim import Busy, claim
from ganaug.bench.downstream import recipe_name
from ganaug.data.splits import carve_validation
from ganaug.cli import main
from ganaug.data import load_fashion_mnist
from ganaug.longtail import SyntheticRecipe


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


def _result(val, tests):
    return {"val_balanced_accuracy_mean": val, "balanced_accuracy_mean": sum(tests) / len(tests),
            "runs": [{"balanced_accuracy": t} for t in tests]}


def test_verdict_chooses_on_validation_and_pairs_seeds():
    r = {"plain": _result(0.50, [0.50, 0.52]), "balanced-softmax": _result(0.60, [0.60, 0.62]),
         "oversample": _result(0.58, [0.70, 0.70]),  # best on test, but not on validation
         "ganaug-recipe": _result(0.59, [0.61, 0.65])}
    v = verdict(r)
    assert v["best_baseline"] == "balanced-softmax"  # by validation, not by test
    assert v["paired_differences"] == [1.0, 3.0] and v["margin_points"] == 2.0
    assert v["recommendation"] == "balanced-softmax"  # ganaug lost on validation: never recommend it
    assert "did not win on validation (-1.00 points): use balanced-softmax, not ganaug" in v["sentence"]
    r["ganaug-recipe"]["val_balanced_accuracy_mean"] = 0.61
    v = verdict(r)
    assert v["recommendation"] == "ganaug-recipe" and "use ganaug's recipe" in v["sentence"]
    r["ganaug-recipe"]["runs"] = [{"balanced_accuracy": 0.55}, {"balanced_accuracy": 0.57}]
    names = ("reweight", "plain", "oversample")
    tie = verdict({v: _result(1.0, [0.9]) for v in names})  # a tie on validation is drawn, never by list order
    assert tie["baseline_rule"] == "draw" and tie["best_baseline"] in names
    assert verdict({v: _result(1.0, [0.9]) for v in reversed(names)})["best_baseline"] == tie["best_baseline"]
    v = verdict(r)
    assert v["sentence"].startswith("ganaug-recipe did not beat the best baseline by validation "
                                    "(balanced-softmax) on test: -5.00 +- 0.00 points")
    # a validation win that test contradicts never makes the report recommend a generator
    assert v["recommendation"] == "balanced-softmax" and "test does not confirm it" in v["sentence"]


def test_a_paired_bootstrap_over_test_images_says_when_a_difference_is_noise():
    from ganaug.bench.bootstrap import decode_hits, encode_hits, paired_interval

    labels = torch.arange(1000) % 10
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1000, generator=g) < 0.7
    hits = torch.rand(1000, generator=g) < 0.5
    assert torch.equal(decode_hits(encode_hits(hits), 1000), hits)

    def runs(*h):
        return [{"balanced_accuracy": float(x.float().mean()), "test_hits": encode_hits(x)} for x in h]

    better = base | (torch.arange(1000) % 5 == 0)  # right on a fifth more of the images, in every class
    lo, hi = paired_interval(runs(better), runs(base), labels)
    assert 0 < lo < hi
    flip = base.clone()
    flip[:4] = ~flip[:4]  # four images changed: noise
    lo, hi = paired_interval(runs(flip), runs(base), labels)
    assert lo <= 0 <= hi
    assert paired_interval([{"balanced_accuracy": 0.5}], runs(base), labels) is None  # an old record
    r = {"plain": {**_result(0.5, [0.0]), "runs": runs(base)}, "ganaug-recipe": {**_result(0.6, [0.0]), "runs": runs(flip)}}
    v = verdict(r, test_labels=labels)
    assert "95 % bootstrap interval over test images" in v["sentence"] and "within noise" in v["sentence"]
    assert v["test_interval"][0] <= 0 <= v["test_interval"][1]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_claim_waits_for_a_live_holder_and_takes_over_a_dead_ones(tmp_path):
    lock = tmp_path / "run.lock"
    lock.write_text(f"{socket.gethostname()} {dead_pid()}\n")
    with claim(lock, poll=0.01):  # its owner is gone: taken over at once
        assert lock.read_text().split()[1] == str(os.getpid())
    assert not lock.exists()

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lock.write_text(f"{socket.gethostname()} {holder.pid}\n")
    released, messages = threading.Event(), []

    def release() -> None:
        while not messages:  # the claimant has seen the live holder and is waiting
            threading.Event().wait(0.01)
        released.set()
        lock.unlink()
        holder.kill()

    threading.Thread(target=release, daemon=True).start()
    try:
        with pytest.raises(Busy), claim(lock, poll=0.01, wait=False):
            pytest.fail("entered while a live process held the lock")
        with claim(lock, poll=0.01, log=messages.append):
            assert released.is_set()  # not entered while the live holder had it
        assert "if that process is gone, delete the file" in messages[0]
    finally:
        holder.kill()
        holder.wait()


def test_tiny_benchmark_writes_a_complete_report(fmnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GANAUG_CACHE", str(tmp_path / "cache"))  # the reference classifier's cache
    train = load_fashion_mnist(fmnist_dir, image_size=32, max_per_class=30)
    test = load_fashion_mnist(fmnist_dir, split="test", image_size=32, max_per_class=5)
    # the second candidate goes through every hook of the loop: soft labels, Remix, a head-only finish
    # (both use Remix, so the chosen one is also trained without generated images, as a baseline)
    recipes = (SyntheticRecipe(filter="none", remix=0.5).to_dict(),
               SyntheticRecipe(filter="soft", remix=1.0, finish=0.34, finish_layers="head").to_dict())
    cfg = DownstreamConfig(imbalance_ratio=10, seeds=2, n_max=24, classifier_steps=3, batch_size=16,
                           generator_steps=2, generator_snapshots=2, snapshot_images_per_class=10, eval_n=40,
                           recipes=recipes)
    summary = run_downstream(train, test, cfg, tmp_path / "report", progress=False)
    ev = summary["generator"]["eval"]  # the generator is judged against the real test split
    assert ev["n"] == 40 and len(ev["class_fidelity_per_class"]) == 10
    # its judge had the classifiers' 3 steps: figures only where it does better than near chance
    if ev["reference_real_test_balanced_accuracy"] < 0.1 + 0.25 * 0.9:
        assert ev["fid"] is None and "cannot judge" in ev["judge_refusal"]
        assert "cannot judge" in (tmp_path / "report" / "report.md").read_text()
    else:
        assert ev["fid"] >= 0 and ev["judge_refusal"] is None
    assert len(ev["cas_per_class"]) == 10 and sum(ev["cas_per_class"]) / 10 == pytest.approx(ev["cas"])
    assert (tmp_path / "report" / "generator-eval" / "eval.json").is_file()
    # the judge was trained on the full training split; memorisation is checked against the
    # long-tailed images the generator saw
    protocol = json.loads((tmp_path / "report" / "generator-eval" / "eval.json").read_text())["protocol"]
    assert protocol["train_split_for_memorisation"].endswith("long-tailed R=10 (train part)")
    assert set(summary["results"]) == set(CLASSICAL) | {"ganaug-recipe", "recipe-without-generated"}
    assert summary["verdict"]["test_interval"] is not None  # every run kept its test hits
    assert summary["data"]["native_size"] == 28 and "enlarged 1.14x" in (tmp_path / "report" / "report.md").read_text()
    assert summary["recipe_search"]["without_generated"] == "recipe-without-generated"
    assert "without generated images (what they add) is `recipe-without-generated`" in \
        (tmp_path / "report" / "report.md").read_text()
    assert summary["generator"]["trained_on_training_part"] is True
    # two snapshots, one chosen on validation, and that one is the generator the recipes used
    choice = summary["generator"]["snapshot_choice"]
    assert [c["step"] for c in choice["candidates"]] == [1, 2] and choice["chosen_step"] in (1, 2)
    assert summary["generator"]["source"].endswith(f"@step={choice['chosen_step']}")
    gen_run = json.loads((tmp_path / "report" / "generator" / "run_config.json").read_text())
    assert gen_run["data"]["class_counts"] == summary["data"]["train_counts"]  # only the long-tailed part
    assert sum(gen_run["data"]["class_counts"]) < len(train)
    # the recipe search ran on validation and the chosen candidate has every seed
    search = summary["recipe_search"]
    best = max(range(2), key=lambda i: (search["candidates"][i]["val_balanced_accuracy_mean"], -i))
    assert search["chosen"] == best and len(summary["results"]["ganaug-recipe"]["runs"]) == 2
    assert summary["results"]["ganaug-recipe"]["runs"][0] == \
        json.loads((tmp_path / "report" / "runs" / f"{recipe_name(SyntheticRecipe.from_dict(recipes[best]))}-seed0.json"
                    ).read_text())["run"]
    # post-hoc adjustment reuses the plain model with a tau chosen on validation
    assert all(0 <= r["tau"] <= 3 for r in summary["results"]["posthoc-la"]["runs"])
    assert all(r["tau"] == 0 for r in summary["results"]["plain"]["runs"])
    v = summary["verdict"]
    assert v["recommendation"] in (v["best_baseline"], "ganaug-recipe") and len(v["paired_differences"]) == 2
    for f in ("results.json", "report.md", "per_class.png", "confusion.png"):
        assert (tmp_path / "report" / f).is_file(), f
    report = (tmp_path / "report" / "report.md").read_text()
    assert "the best baseline by validation" in report and "| real training images |" in report
    assert ev["judge_refusal"] or ("| class fidelity |" in report and "| recall |" in report)
    assert "Recipe search" in report and "(chosen)" in report and "Machines the runs were made on" in report
    assert all(len(r["runs"]) == 2 for r in summary["results"].values())

    # a second call (a killed benchmark restarted) keeps every finished run instead of retraining
    runs = tmp_path / "report" / "runs"
    (runs / "plain-seed1.json").unlink()
    (runs / "balanced-softmax-seed0.safetensors").unlink()  # the judge's weights: it is trained again
    (runs / "plain-seed1.lock").write_text(f"{socket.gethostname()} {dead_pid()}\n")  # left by a killed process
    # a record made before the recipe had its newer fields stands for the same recipe with their defaults
    first = runs / f"{recipe_name(SyntheticRecipe.from_dict(recipes[0]))}-seed0.json"
    old = json.loads(first.read_text())
    del old["key"]["recipe"]["finish_layers"]  # at its default in this recipe
    first.write_text(json.dumps(old))
    stamps = {f.name: f.stat().st_mtime_ns for f in runs.iterdir()
              if not f.name.startswith(("plain-seed1", "balanced-softmax-seed0"))}
    again = run_downstream(train, test, cfg, tmp_path / "report", progress=False)
    assert {f.name: f.stat().st_mtime_ns for f in runs.iterdir() if f.name in stamps} == stamps  # kept
    assert (runs / "plain-seed1.json").is_file()  # the missing one was trained again
    assert not list(runs.glob("*.lock"))  # the stale lock was taken over, and every lock released
    assert (runs / "balanced-softmax-seed0.safetensors").is_file()
    for name, r in summary["results"].items():
        assert [x["balanced_accuracy"] for x in again["results"][name]["runs"]] == \
            [x["balanced_accuracy"] for x in r["runs"]]
    # a changed setting retrains instead of reusing stale results
    changed = run_downstream(train, test, dataclasses.replace(cfg, classifier_steps=4, variants=("plain",), seeds=1),
                             tmp_path / "report", progress=False)
    assert changed["classifier_steps"] == 4
    kept = json.loads((tmp_path / "report" / "runs" / "plain-seed0.json").read_text())
    assert kept["key"]["schedule"]["steps"] == 4


def test_processes_sharing_a_report_split_the_seeds(fmnist_dir, tmp_path, monkeypatch):
    # a seed that another live process is training is left for last instead of waited for
    monkeypatch.setattr("ganaug.bench.store.LOCK_POLL_S", 0.05)
    train = load_fashion_mnist(fmnist_dir, image_size=32, max_per_class=30)
    test = load_fashion_mnist(fmnist_dir, split="test", image_size=32, max_per_class=5)
    recipe = SyntheticRecipe(filter="none")
    cfg = DownstreamConfig(imbalance_ratio=10, seeds=2, n_max=24, classifier_steps=3, batch_size=16,
                           generator_steps=2, eval_n=0, variants=("balanced-softmax", "ganaug-recipe"),
                           recipes=(recipe.to_dict(),))
    runs = tmp_path / "report" / "runs"
    held, todo, lock = (runs / f"{recipe_name(recipe)}-seed0.json", runs / f"{recipe_name(recipe)}-seed1.json",
                        runs / f"{recipe_name(recipe)}-seed0.lock")
    first = run_downstream(train, test, cfg, tmp_path / "report", progress=False)
    assert first["recipe_search"]["chosen"] == 0 and len(first["recipe_search"]["candidates"]) == 1
    record = held.read_text()
    held.unlink()
    todo.unlink()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)"])
    lock.write_text(f"{socket.gethostname()} {holder.pid}\n")
    order = []

    def other_process() -> None:  # finishes seed 0 once the benchmark has trained seed 1 (or gives up)
        deadline = time.monotonic() + 600
        while not todo.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        order.append("seed 1 first" if todo.exists() else "waited for seed 0")
        held.write_text(record)
        lock.unlink()

    threading.Thread(target=other_process, daemon=True).start()
    try:
        shared = run_downstream(train, test, cfg, tmp_path / "report", progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert order == ["seed 1 first"]
    assert shared["results"]["ganaug-recipe"]["runs"][0] == json.loads(record)["run"]  # the other one's run
    assert [r["balanced_accuracy"] for r in shared["results"]["ganaug-recipe"]["runs"]] == \
        [r["balanced_accuracy"] for r in first["results"]["ganaug-recipe"]["runs"]]  # seed 1 trained alike


def test_classifier_schedule_is_counted_in_epochs():
    from ganaug.bench.variants import classifier_steps

    assert classifier_steps(DownstreamConfig(classifier_epochs=20, batch_size=128), 13_000) == 2032
    assert classifier_steps(DownstreamConfig(classifier_steps=7), 13_000) == 7
    # a few hundred images still get a schedule that can converge
    assert classifier_steps(DownstreamConfig(classifier_epochs=40, batch_size=128), 500) == 1500


def test_data_as_it_is_gets_a_stratified_test_and_validation_part():
    labels = torch.tensor([0] * 50 + [1] * 10 + [2] * 5)
    data = LabelledImages(torch.zeros(65, 1, 32, 32, dtype=torch.uint8), labels, ["a", "b", "c"], "defects")
    tr, val, test = prepare_splits(data, None, DownstreamConfig(imbalance_ratio=None, test_fraction=0.2,
                                                                val_fraction=0.2))
    assert test.class_counts() == [10, 2, 1] and val.class_counts() == [8, 2, 1] and tr.class_counts() == [32, 6, 3]
    assert len(tr) + len(val) + len(test) == 65
    tiny = LabelledImages(torch.zeros(7, 1, 32, 32, dtype=torch.uint8), torch.tensor([0] * 5 + [1] * 2),
                          ["ok", "crack"], "defects")
    with pytest.raises(GanaugError, match=r"crack \(2\) have fewer than 3 images"):
        prepare_splits(tiny, None, DownstreamConfig(imbalance_ratio=None))
    # a long tail imposed on data without a test split: the test part is carved first, balanced
    balanced = LabelledImages(torch.zeros(90, 1, 32, 32, dtype=torch.uint8), torch.arange(3).repeat(30),
                              ["a", "b", "c"])
    tr, val, test = prepare_splits(balanced, None, DownstreamConfig(imbalance_ratio=4, test_fraction=0.2))
    assert test.class_counts() == [6, 6, 6]
    assert [t + v for t, v in zip(tr.class_counts(), val.class_counts())] == [24, 12, 6]


def test_the_judge_can_guide_the_generator_and_the_band_shows_in_the_report(fmnist_dir, tmp_path):
    from safetensors.torch import load_file

    from ganaug.artifacts import weights_digest
    from ganaug.bench.resnet import SmallResNet

    train = load_fashion_mnist(fmnist_dir, image_size=32, max_per_class=30)
    test = load_fashion_mnist(fmnist_dir, split="test", image_size=32, max_per_class=5)
    band = SyntheticRecipe(filter="band", fill_to=1.0, share=0.5, overgenerate=2.0, select="entropy",
                           refresh=1).to_dict()
    cfg = DownstreamConfig(imbalance_ratio=10, seeds=1, n_max=24, classifier_steps=2, batch_size=16,
                           generator_steps=2, generator_guide=1.0, generator_guide_loss="band", eval_n=0,
                           variants=("balanced-softmax", "ganaug-recipe"), recipes=(band,))
    summary = run_downstream(train, test, cfg, tmp_path / "report", progress=False)
    judge = SmallResNet(1, 10, cfg.width)
    judge.load_state_dict(load_file(str(tmp_path / "report" / "runs" / "balanced-softmax-seed0.safetensors")))
    gen_run = json.loads((tmp_path / "report" / "generator" / "run_config.json").read_text())
    assert gen_run["guide"] == weights_digest(judge) and gen_run["train"]["guide_loss"] == "band"
    bank = summary["recipe_search"]["bank"]
    assert all(b["inside"] + b["in_band"] + b["beyond"] == b["generated_pool"] for b in bank.values())
    top = max(b["real"] for b in bank.values())  # fill_to 1, over-generated twice
    assert all(b["generated_pool"] == 2 * (top - b["real"]) for b in bank.values())
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| in_band |" in report and "| generated_pool |" in report and "CPU-seconds" in report
    assert "CPU-seconds per classifier run" in report  # the refresh against the classifier in training


def test_a_generator_that_saw_more_data_is_refused(fmnist_dir, tmp_path):
    train = load_fashion_mnist(fmnist_dir, image_size=32, max_per_class=30)
    test = load_fashion_mnist(fmnist_dir, split="test", image_size=32, max_per_class=2)
    mc = ganaug.make_config("sngan", 10, train.class_names, image_size=32, channels=1, g_width=8, d_width=8)
    leaky = ganaug.train(train, mc, ganaug.TrainConfig(steps=1, batch_size=8), tmp_path / "leaky", progress=False)
    cfg = DownstreamConfig(imbalance_ratio=10, seeds=1, n_max=24, classifier_steps=1, batch_size=8, eval_n=0)
    with pytest.raises(GanaugError, match="would leak it into the comparison"):
        run_downstream(train, test, cfg, tmp_path / "r", generator=str(leaky), progress=False)
    # measured anyway, as an upper bound: labelled in the verdict and the report, never recommended
    cfg = dataclasses.replace(cfg, leaky_generator=True, variants=("balanced-softmax", "ganaug-recipe"),
                              recipes=(SyntheticRecipe().to_dict(),))
    summary = run_downstream(train, test, cfg, tmp_path / "r", generator=str(leaky), progress=False)
    g, v = summary["generator"], summary["verdict"]
    assert g["leaky"] and g["trained_on"]["num_images"] == len(train)
    assert v["sentence"].startswith("ganaug-recipe (leaky upper bound)") and "LEAKY UPPER BOUND" in v["sentence"]
    assert v["recommendation"] == "balanced-softmax"
    report = (tmp_path / "r" / "report.md").read_text()
    assert "| ganaug-recipe (leaky upper bound) |" in report and "its row is a leaky upper bound" in report


def test_the_generator_can_be_fine_tuned_from_a_source_that_never_saw_the_test_split(fmnist_dir, tmp_path):
    from tests.conftest import make_package

    train = load_fashion_mnist(fmnist_dir, image_size=32, max_per_class=30)
    test = load_fashion_mnist(fmnist_dir, split="test", image_size=32, max_per_class=2)
    # a source of other data that knows six of the ten classes
    pkg = make_package(tmp_path, classes=train.class_names[:6], steps=1, discriminator=True)
    cfg = DownstreamConfig(imbalance_ratio=10, seeds=1, n_max=24, classifier_steps=1, batch_size=8, eval_n=0,
                           generator_steps=2, generator_init=str(pkg), generator_freeze_d=1,
                           variants=("balanced-softmax", "ganaug-recipe"), recipes=(SyntheticRecipe().to_dict(),))
    summary = run_downstream(train, test, cfg, tmp_path / "r", progress=False)
    ft = summary["generator"]["fine_tuned_from"]
    assert ft["init"] == str(pkg) and not ft["overlaps_test"] and not ft["overlaps_training"]
    assert summary["generator"]["trained_on_training_part"] and not summary["generator"]["leaky"]
    rc = json.loads((tmp_path / "r" / "generator" / "run_config.json").read_text())
    assert rc["init"]["source"] == str(pkg) and rc["init"]["classes"]["Bag"] is None and rc["train"]["freeze_d"] == 1
    assert "Fine-tuned from" in (tmp_path / "r" / "report.md").read_text()
    run_downstream(train, test, cfg, tmp_path / "r", progress=False)  # run again: continued, not restarted
    with pytest.raises(GanaugError, match="started from"):  # the same folder, another source
        run_downstream(train, test, dataclasses.replace(cfg, generator_init=str(tmp_path / "pkg-run")),
                       tmp_path / "r", progress=False)
    # a source that saw the test split is refused; one that saw the training split is a leaky upper bound
    config = json.loads((pkg / "config.json").read_text())
    for seen, message in ((test.source, "holds this benchmark's test images"), (train.source, "would leak")):
        config["training"]["data"]["source"] = seen
        (pkg / "config.json").write_text(json.dumps(config))
        with pytest.raises(GanaugError, match=message):
            run_downstream(train, test, cfg, tmp_path / "other", progress=False)
    with pytest.raises(GanaugError, match="give one of them"):
        run_downstream(train, test, cfg, tmp_path / "other", generator=str(pkg), progress=False)
    with pytest.raises(GanaugError, match="give --generator-init SOURCE too"):  # FreezeD needs a source's D
        run_downstream(train, test, dataclasses.replace(cfg, generator_init=None), tmp_path / "fd", progress=False)
    assert not (tmp_path / "fd" / "runs").exists()  # said before any training


def test_transfer_protocols_cut_a_public_part_off_before_the_long_tail(fmnist_dir):
    from ganaug.bench.protocols import part_of, public_private

    train = load_fashion_mnist(fmnist_dir, image_size=32, max_per_class=30)
    public, private = public_private(train, "same-classes")
    assert public.class_counts() == [15] * 10 and private.class_counts() == [15] * 10
    both = torch.cat([public.images, private.images]).flatten(1)
    assert len(torch.unique(both, dim=0)) == len(torch.unique(train.images.flatten(1), dim=0))  # disjoint, all of it
    assert (part_of(public.source), part_of(private.source), part_of(train.source)) == ("public", "private", None)
    tops = ("T-shirt/top", "Pullover", "Dress", "Coat")
    public, private = public_private(train, "new-classes", tops)
    assert public.class_names == list(tops) and public.class_counts() == [30] * 4
    assert private.class_names == [c for c in train.class_names if c not in tops] and len(private) == 180
    shirts = private.images[private.labels == private.class_names.index("Shirt")]
    assert torch.equal(shirts, train.images[train.labels == train.class_names.index("Shirt")])  # relabelled right
    for bad in ((), ("Zebra",), tuple(train.class_names[:9])):
        with pytest.raises(GanaugError, match="--public-classes"):
            public_private(train, "new-classes", bad)


def test_the_public_generator_of_a_protocol_is_used_as_it_is_or_fine_tuned(fmnist_dir, tmp_path):
    train = load_fashion_mnist(fmnist_dir, image_size=32, max_per_class=60)
    test = load_fashion_mnist(fmnist_dir, split="test", image_size=32, max_per_class=2)
    base = DownstreamConfig(imbalance_ratio=10, seeds=1, n_max=24, classifier_steps=1, batch_size=8, eval_n=0,
                            generator_steps=1, protocol="same-classes", public_generator_steps=2, kfold=0,
                            variants=("balanced-softmax", "ganaug-recipe"), recipes=(SyntheticRecipe().to_dict(),))
    as_is = run_downstream(train, test, base, tmp_path / "r", generator="public", progress=False)
    g = as_is["generator"]
    assert g["trained_on_training_part"] == "public part" and not g["leaky"]
    assert as_is["data"]["public_counts"] == [30] * 10 and "protocol" in (tmp_path / "r" / "report.md").read_text()
    tuned = run_downstream(train, test, dataclasses.replace(base, generator_init="public"), tmp_path / "r",
                           progress=False)
    ft = tuned["generator"]["fine_tuned_from"]
    assert ft["public_part"] and not ft["overlaps_training"] and not tuned["generator"]["leaky"]
    assert ft["init"] == str(tmp_path / "r" / "public-generator")  # the same public generator, trained once
    # new classes: the private classes are all new to the public generator
    new = dataclasses.replace(base, protocol="new-classes", generator_init="public",
                              public_classes=("T-shirt/top", "Pullover", "Dress", "Coat"),
                              generator_init_classes={"Shirt": "T-shirt/top", "Bag": "Pullover"})
    summary = run_downstream(train, test, new, tmp_path / "n", progress=False)
    assert summary["data"]["class_names"] == ["Trouser", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    rc = json.loads((tmp_path / "n" / "generator" / "run_config.json").read_text())
    # named, else the source classes the data lacks that were not named, in order (Dress, Coat), then spread
    assert rc["init"]["new_classes"] == {"Trouser": "Dress", "Sandal": "Coat", "Shirt": "T-shirt/top",
                                         "Sneaker": "spread", "Bag": "Pullover", "Ankle boot": "spread"}
    with pytest.raises(GanaugError, match="use another --out folder"):  # the same folder, other starts
        run_downstream(train, test, dataclasses.replace(new, generator_init_classes={}), tmp_path / "n",
                       progress=False)
    with pytest.raises(GanaugError, match="give --generator-init"):
        run_downstream(train, test, dataclasses.replace(base, generator_init_classes={"Shirt": "Coat"}),
                       tmp_path / "y", progress=False)
    with pytest.raises(GanaugError, match="pass --protocol"):
        run_downstream(train, test, dataclasses.replace(base, protocol="none"), tmp_path / "x", generator="public",
                       progress=False)


def test_classifier_init_public_starts_every_classifier_from_the_public_classifier(fmnist_dir, tmp_path):
    from safetensors.torch import load_file

    train = load_fashion_mnist(fmnist_dir, image_size=32, max_per_class=40)
    test = load_fashion_mnist(fmnist_dir, split="test", image_size=32, max_per_class=2)
    # a learning rate too small to move the weights: a run's kept weights show where it started
    base = DownstreamConfig(imbalance_ratio=5, seeds=1, n_max=16, classifier_steps=2, batch_size=8, lr=1e-12,
                            eval_n=0, protocol="same-classes", classifier_init="public", variants=("plain",), kfold=0)
    summary = run_downstream(train, test, base, tmp_path / "r", progress=False)
    runs = tmp_path / "r" / "runs"
    public, plain = (load_file(str(runs / f"{n}.safetensors")) for n in ("public-classifier", "plain-seed0"))
    assert torch.allclose(public["stem.0.weight"], plain["stem.0.weight"], atol=1e-6)
    assert torch.allclose(public["head.weight"], plain["head.weight"], atol=1e-6)  # same classes: head kept
    key = json.loads((runs / "plain-seed0.json").read_text())["key"]
    assert key["schedule"]["init"]["classes"] == summary["data"]["class_names"]
    assert "public classifier" in (tmp_path / "r" / "report.md").read_text()
    # without it the same run is another run (its key differs), from random weights
    scratch = run_downstream(train, test, dataclasses.replace(base, classifier_init="none"), tmp_path / "r",
                             progress=False)
    assert "init" not in json.loads((runs / "plain-seed0.json").read_text())["key"]["schedule"]
    assert not torch.allclose(public["stem.0.weight"], load_file(str(runs / "plain-seed0.safetensors"))["stem.0.weight"])
    assert scratch["config"]["classifier_init"] == "none"
    # new classes: the body comes from the public classifier, the head (other classes) starts new
    tops = ("T-shirt/top", "Pullover", "Dress", "Coat")
    run_downstream(train, test, dataclasses.replace(base, protocol="new-classes", public_classes=tops),
                   tmp_path / "n", progress=False)
    public, plain = (load_file(str(tmp_path / "n" / "runs" / f"{n}.safetensors"))
                     for n in ("public-classifier", "plain-seed0"))
    assert public["head.weight"].shape[0] == 4 and plain["head.weight"].shape[0] == 6
    assert torch.allclose(public["stages.2.conv2.weight"], plain["stages.2.conv2.weight"], atol=1e-6)
    with pytest.raises(GanaugError, match="--protocol same-classes or new-classes"):
        run_downstream(train, test, dataclasses.replace(base, protocol="none"), tmp_path / "x", progress=False)


def test_classifier_init_generated_starts_every_classifier_from_one_trained_on_generated_images(fmnist_dir,
                                                                                                  tmp_path):
    from safetensors.torch import load_file

    train = load_fashion_mnist(fmnist_dir, image_size=32, max_per_class=40)
    test = load_fashion_mnist(fmnist_dir, split="test", image_size=32, max_per_class=2)
    # the public generator as it is; a learning rate too small to move weights shows where each run started
    base = DownstreamConfig(imbalance_ratio=5, seeds=1, n_max=16, classifier_steps=2, batch_size=8, lr=1e-12,
                            eval_n=0, protocol="same-classes", public_generator_steps=1, classifier_init="generated",
                            classifier_init_images=3, variants=("plain",), kfold=0)
    summary = run_downstream(train, test, base, tmp_path / "r", generator="public", progress=False)
    runs = tmp_path / "r" / "runs"
    start, plain = (load_file(str(runs / f"{n}.safetensors")) for n in ("generated-classifier", "plain-seed0"))
    assert all(torch.allclose(start[k], plain[k], atol=1e-6) for k in ("stem.0.weight", "head.weight"))
    started = json.loads((runs / "generated-classifier.json").read_text())
    assert started["key"]["images_per_class"] == 3 and 0 <= started["run"]["balanced_accuracy"] <= 1  # on real test
    init = json.loads((runs / "plain-seed0.json").read_text())["key"]["schedule"]["init"]
    assert init["images_per_class"] == 3 and init["classes"] == summary["data"]["class_names"]
    assert "generated classifier" in (tmp_path / "r" / "report.md").read_text()
    # without it the same run starts from random weights
    run_downstream(train, test, dataclasses.replace(base, classifier_init="none"), tmp_path / "r",
                   generator="public", progress=False)
    assert not torch.allclose(start["stem.0.weight"], load_file(str(runs / "plain-seed0.safetensors"))["stem.0.weight"])
    with pytest.raises(GanaugError, match="need a judge"):
        run_downstream(train, test, dataclasses.replace(base, generator_snapshots=2), tmp_path / "x",
                       generator="public", progress=False)


def test_a_leaky_generator_is_never_recommended_even_when_it_wins():
    r = {"plain": _result(0.50, [0.50]), "ganaug-recipe": _result(0.70, [0.70])}
    assert verdict(r)["recommendation"] == "ganaug-recipe"
    assert verdict(r, leaky=True)["recommendation"] == "plain"


def test_bad_recipes_are_refused_before_any_training(tmp_path):
    tiny = LabelledImages(torch.zeros(4, 1, 32, 32, dtype=torch.uint8), torch.tensor([0, 0, 1, 1]), ["a", "b"], "t")
    with pytest.raises(GanaugError, match="bad SyntheticRecipe: share must lie in"):
        run_downstream(tiny, tiny, DownstreamConfig(recipes=({"share": 2.0},)), tmp_path, progress=False)
    assert not (tmp_path / "runs").exists()


def test_cli_help_and_bad_variant(capsys):
    with pytest.raises(SystemExit):
        main(["bench-downstream", "x", "--out", "y", "--variants", "magic"])
    assert "invalid choice: 'magic'" in capsys.readouterr().err


def test_cli_takes_a_folder_without_test_split_as_it_is(tmp_path, capsys):
    from tests.conftest import make_class_folders

    data = make_class_folders(tmp_path / "defects", classes=("crack", "ok", "scratch"), n=10, mode="L")
    out = tmp_path / "report"
    assert main(["bench-downstream", str(data), "--out", str(out), "--as-is", "--variants", "plain", "posthoc-la",
                 "--classifier-steps", "2", "--seeds", "1", "--batch-size", "4", "--eval-n", "0"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["data"]["test_counts"] == [2, 2, 2] and summary["data"]["val_counts"] == [1, 1, 1]
    assert "stratified test part" in summary["data"]["test"] and summary["config"]["imbalance_ratio"] is None
    assert "best baseline by validation" in capsys.readouterr().out


def test_cli_imposes_a_long_tail_on_data_without_test_split(tmp_path):
    from tests.conftest import make_class_folders

    data = make_class_folders(tmp_path / "defects", classes=("crack", "ok", "scratch"), n=20, mode="L")
    out = tmp_path / "report"
    assert main(["bench-downstream", str(data), "--out", str(out), "--imbalance-ratio", "4", "--variants", "plain",
                 "--classifier-steps", "2", "--seeds", "1", "--batch-size", "4", "--eval-n", "0"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["data"]["test_counts"] == [4, 4, 4] and "stratified test part" in summary["data"]["test"]
    counts = [t + v for t, v in zip(summary["data"]["train_counts"], summary["data"]["val_counts"])]
    assert counts == [16, 8, 4]  # the long tail, on what the test part left


def test_downstream_table_pairs_rows_of_several_folders_seed_by_seed(tmp_path):
    """benchmarks/downstream_table.py: rows from two benchmark folders, paired only on the seeds both hold."""
    def record(folder, name, seed, acc):
        (tmp_path / folder / "runs").mkdir(parents=True, exist_ok=True)
        run = {"balanced_accuracy": acc, "rare_accuracy": acc - 0.1, "val_balanced_accuracy": acc - 0.01}
        (tmp_path / folder / "runs" / f"{name}-seed{seed}.json").write_text(json.dumps({"key": {}, "run": run}))

    for seed, acc in enumerate([0.90, 0.92, 0.94]):
        record("a", "posthoc-la", seed, acc)
    record("b", "recipe-0123abcd", 0, 0.91)
    record("b", "recipe-0123abcd", 2, 0.97)
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "downstream_table.py")
    out = subprocess.run([sys.executable, script, "--against", "base", f"base={tmp_path / 'a'}:posthoc-la",
                          f"recipe={tmp_path / 'b'}:recipe"], capture_output=True, text=True, check=True).stdout
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines()[2:]}
    assert "| 0,1,2 | 92.00 +- 2.00 | 82.00 | 91.00 | - |" in rows["base"]
    # seeds 0 and 2: +1 and +3 points
    assert rows["recipe"].endswith("| 0,2 | 94.00 +- 4.24 | 84.00 | 93.00 | +2.00 +- 1.41 (2) |")
    # records copied out of a benchmark folder (docs/bench/*/runs/<folder>) read the same; --rare names the column
    flat = tmp_path / "docs" / "b"
    shutil.copytree(tmp_path / "b" / "runs", flat)
    out = subprocess.run([sys.executable, script, "--rare", "Bag (5 images)", f"base={tmp_path / 'a'}:posthoc-la",
                          f"recipe={flat}:recipe"], capture_output=True, text=True, check=True).stdout
    assert "| Bag (5 images), test |" in out.splitlines()[0] and rows["recipe"] in out
    record("b", "recipe-99999999", 1, 0.5)  # two recipes in one folder: which one is meant is not guessed
    bad = subprocess.run([sys.executable, script, f"recipe={tmp_path / 'b'}:recipe"], capture_output=True, text=True)
    assert bad.returncode != 0 and "several recipes" in bad.stderr
