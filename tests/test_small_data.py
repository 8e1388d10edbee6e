"""Small real data (issue 36): a small imbalanced set cut from NEU-DET, taken as it is (no test
split): ties on validation, the k-fold rule, the verdict's interval, a degenerate judge refused."""

import json

import pytest
import torch

from .conftest import DATA_DIR

from ganaug.bench import DownstreamConfig, run_downstream
from ganaug.bench.bootstrap import encode_hits
from ganaug.bench.choice import RULES, choose
from ganaug.bench.kfold import KFold
from ganaug.bench.store import RunStore
from ganaug.bench.resnet import SmallResNet
from ganaug.data import LabelledImages
from ganaug.data.splits import stratified_folds

COUNTS = [200, 120, 70, 40, 25, 15]  # largest to rarest, as an inspection archive's defects are


@pytest.fixture(scope="module")
def neu_small() -> LabelledImages:
    from ganaug.data import load_images

    path = DATA_DIR / "neu-det"
    if not path.is_dir():
        raise FileNotFoundError(f"NEU-DET not found at {path}; set GANAUG_DATA_DIR to the shared data folder.")
    full = load_images(path, class_from="filename", image_size=32, channels=1, max_per_class=max(COUNTS))
    keep = torch.cat([torch.nonzero(full.labels == c).flatten()[:n] for c, n in enumerate(COUNTS)])
    small = full.subset(keep.sort().values)
    small.source = "NEU-DET, small imbalanced cut"
    assert small.class_counts() == COUNTS
    return small


def _runs(hits: list[torch.Tensor]) -> list[dict]:
    return [{"val_balanced_accuracy": float(h.float().mean()), "val_hits": encode_hits(h)} for h in hits]


def test_a_tie_on_validation_never_goes_to_the_first_listed():
    labels = torch.arange(60) % 6
    same = torch.arange(60) % 3 == 0
    runs = {name: _runs([same]) for name in ("plain", "balanced-softmax", "drw")}
    a = choose(runs, labels)
    b = choose(dict(reversed(list(runs.items()))), labels)
    assert a["rule"] == "draw" and a["chosen"] == b["chosen"]
    assert sorted(a["contenders"]) == sorted(runs)
    # with a k-fold the tie goes to the candidate that wins it, wherever it is listed
    folds = {"plain": [0.5, 0.5], "balanced-softmax": [0.6, 0.7], "drw": [0.55, 0.5]}
    for order in (runs, dict(reversed(list(runs.items())))):
        c = choose(order, labels, kfold=folds.__getitem__)
        assert c["rule"] == "k-fold" and c["chosen"] == "balanced-softmax"
        assert c["kfold_means"]["balanced-softmax"] == pytest.approx(0.65)
    assert set(RULES) >= {a["rule"], c["rule"]}


def test_validation_separates_a_clear_leader_and_not_a_lead_of_two_images():
    labels = torch.arange(600) % 6
    base = torch.zeros(600, dtype=torch.bool)
    base[::2] = True
    clear = base | (torch.arange(600) % 4 == 1)  # a quarter more right, in every class
    close = base.clone()
    close[1], close[3] = True, True  # two images more right: inside validation's noise
    called = []
    c = choose({"a": _runs([base]), "b": _runs([clear])}, labels, kfold=lambda n: called.append(n) or [0.5])
    assert c["rule"] == "validation" and c["chosen"] == "b" and not called
    c = choose({"a": _runs([base]), "b": _runs([close])}, labels, kfold_skipped="k-fold is off (--kfold 0)")
    assert c["contenders"] == ["b", "a"] and c["rule"] == "validation mean (k-fold skipped)" and c["chosen"] == "b"
    assert "k-fold is off" in c["sentence"]


def test_stratified_folds_hold_every_image_once_per_repeat(neu_small):
    folds = stratified_folds(neu_small.labels, 3, repeats=2)
    assert len(folds) == 6
    for r in range(2):
        held = torch.cat(folds[3 * r:3 * r + 3])
        assert torch.equal(held.sort().values, torch.arange(len(neu_small)))
        for f in folds[3 * r:3 * r + 3]:  # every class in proportion: within one image of a third
            counts = torch.bincount(neu_small.labels[f], minlength=6)
            assert all(abs(int(n) - c / 3) <= 1 for n, c in zip(counts, COUNTS))
    assert not torch.equal(folds[0], folds[3])  # another shuffle


def test_kfold_runs_are_kept_and_posthoc_reuses_the_plain_networks(neu_small, tmp_path, monkeypatch):
    from ganaug.data.splits import carve_validation

    train, val = carve_validation(neu_small, 0.2)
    cfg = DownstreamConfig(classifier_steps=2, batch_size=16, kfold=2)
    store = RunStore(tmp_path / "runs", lambda: SmallResNet(1, 6, cfg.width))
    folds = KFold(train, val, cfg, store, {"steps": 2})
    plain = folds.scores("plain", "plain")
    adjusted = folds.scores("posthoc-la", "posthoc-la", tau=1.0)
    assert len(plain) == len(adjusted) == 2 and all(0 <= s <= 1 for s in plain + adjusted)
    assert sorted(p.name for p in (tmp_path / "runs").glob("*.safetensors")) == [
        "kfold0-plain.safetensors", "kfold1-plain.safetensors"]  # posthoc-la trained nothing of its own

    def no_training(*a, **k):
        raise AssertionError("a kept fold run was trained again")

    monkeypatch.setattr("ganaug.bench.kfold.train_classifier", no_training)
    assert folds.scores("plain", "plain") == plain
    assert folds.scores("posthoc-la", "posthoc-la", tau=1.0) == adjusted


def test_small_neu_det_report_states_its_rules_seeds_and_interval(neu_small, tmp_path):
    cfg = DownstreamConfig(imbalance_ratio=None, classifier_steps=4, classifier_min_steps=1500, batch_size=32,
                           variants=("plain", "posthoc-la", "balanced-softmax", "ganaug-recipe"),
                           recipes=({"filter": "none"}, {"filter": "none", "share": 0.1}),
                           generator_steps=2, eval_n=0, kfold=2)
    summary = run_downstream(neu_small, None, cfg, tmp_path, progress=False)
    # classifier_steps is set, so the small-data rule does not apply: 3 seeds, and the note says why
    assert summary["config"]["seeds"] == 3 and "default" in summary["seeds_note"]
    v = summary["verdict"]
    assert v["baseline_rule"] in RULES and v["best_baseline"] in ("plain", "posthoc-la", "balanced-softmax")
    assert v["test_interval"] is not None and len(v["test_interval"]) == 2
    search = summary["recipe_search"]["choice"]
    assert search["rule"] in RULES
    report = (tmp_path / "report.md").read_text()
    assert f"Best baseline chosen by the rule '{v['baseline_rule']}'" in report
    assert f"The recipe was chosen by the rule '{search['rule']}'" in report
    assert "bootstrap interval over test images" in report
    runs = {p.stem for p in (tmp_path / "runs").glob("*.json")}
    for contenders in (v.get("baseline_kfold_means"), search.get("kfold_means")):
        # where validation could not separate candidates, each one's folds were trained and kept
        assert all(f"kfold{i}-{c}" in runs for c in contenders or () for i in range(2))
    # the test part was carved before anything trained: nothing in the summary claims otherwise
    assert "test part" in summary["data"]["test"]
    assert json.loads((tmp_path / "results.json").read_text())["verdict"]["best_baseline"] == v["best_baseline"]


def test_the_small_data_rule_raises_the_default_seeds():
    from ganaug.bench.downstream import resolve_seeds

    cfg, note = resolve_seeds(DownstreamConfig(), 300)
    assert cfg.seeds == 5 and "small" in note and "1500-step minimum" in note
    cfg, note = resolve_seeds(DownstreamConfig(), 20000)
    assert cfg.seeds == 3
    cfg, note = resolve_seeds(DownstreamConfig(seeds=2), 300)
    assert cfg.seeds == 2 and "given" in note


def test_a_judge_that_names_one_class_is_refused(neu_small, tmp_path):
    import ganaug
    from ganaug.eval import EvalProtocol, ReferenceFeatures, evaluate, save_result, summary_table
    from ganaug.eval.classifier import SmallCNN
    from ganaug.eval.reference import ReferenceClassifier, ReferenceConfig

    names = neu_small.class_names
    model = SmallCNN(1, 6, 8)
    with torch.no_grad():  # whatever the image, the largest class: what a few plain steps on this data learn
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([10.0, 0, 0, 0, 0, 0]))
    judge = ReferenceClassifier(model, ReferenceConfig(1, 32, list(names), 8, real_test_accuracy=0.43,
                                                      trained_on={}, tested_on={}))
    cfg = ganaug.make_config("sngan", 6, list(names), image_size=32, channels=1, g_width=8, d_width=8)
    G = ganaug.models.build_generator(cfg).eval()
    result = evaluate(G, cfg, neu_small, neu_small, judge, ReferenceFeatures(judge),
                      EvalProtocol(n=120, cas=False))
    assert result["judge"]["degenerate"] and result["judge"]["balanced_accuracy"] == pytest.approx(1 / 6, abs=1e-4)
    o = result["overall"]
    assert o["class_fidelity"] is None and o["fid"] is None and o["precision"] is None
    assert result["memorisation"]["refused"] and result["memorisation"]["flagged_classes"] == []
    assert all(r["class_fidelity"] is None for r in result["per_class"])
    table = summary_table(result)
    assert "cannot judge" in table and "--reference" in table and "| FID | refused |" in table
    save_result(result, neu_small, tmp_path)  # the report is written, without the refused plots
    assert "cannot judge" in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "closest_pairs.png").exists()
