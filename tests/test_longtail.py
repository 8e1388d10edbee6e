import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ganaug import GanaugError, LabelledImages
from ganaug.eval.classifier import FitConfig
from ganaug.transforms import SyntheticDataset
from ganaug.longtail import (SyntheticMix, SyntheticRecipe, adjust_logits, balanced_accuracy, choose_tau,
                             effective_number_weights, fit_judge, log_prior, logit_adjusted_loss)
from tests.conftest import make_package

CLASSES = ("head", "mid", "tail")


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("lt"), classes=CLASSES, name="lt-pkg")


def real_data(counts=(40, 10, 4)) -> LabelledImages:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    g = torch.Generator().manual_seed(0)
    return LabelledImages(torch.randint(0, 255, (len(labels), 1, 32, 32), dtype=torch.uint8, generator=g),
                          labels, list(CLASSES))


class FixedJudge(nn.Module):
    """Calls every image 48 % head, 48 % mid, 5 % tail, whatever it shows."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.tensor([[3.0, 3.0, 0.0]]).expand(len(x), 3) + 0 * self.dummy


def test_logit_adjusted_loss_is_balanced_softmax_at_tau_one():
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    counts = [50, 10, 2]
    prior = log_prior(counts)
    expected = F.cross_entropy(logits + torch.tensor(counts, dtype=torch.float).div(62).log(), y)
    assert torch.allclose(logit_adjusted_loss(logits, y, prior), expected, atol=1e-6)
    assert torch.allclose(logit_adjusted_loss(logits, y, prior, tau=0.0), F.cross_entropy(logits, y))
    w = torch.tensor([1, 1, 0.5, 0.5, 1, 0.0])
    per = F.cross_entropy(logits + prior, y, reduction="none")
    assert torch.allclose(logit_adjusted_loss(logits, y, prior, weight=w), (per * w).mean(), atol=1e-6)


def test_effective_number_weights_favour_rare_classes():
    w = effective_number_weights([5000, 500, 50])
    assert w[0] < w[1] < w[2] and math.isclose(float(w.sum()), 3, rel_tol=1e-5)


def test_posthoc_tau_is_chosen_on_the_data_given():
    # a model biased toward the head class: adjusting by the prior recovers the tail
    prior = log_prior([90, 10])
    labels = torch.tensor([0] * 5 + [1] * 5)
    logits = torch.stack([torch.full((10,), 1.0), torch.tensor([0.0] * 5 + [0.8] * 5)], 1)
    assert balanced_accuracy(logits.argmax(1), labels, 2)[0] == 0.5
    tau, acc = choose_tau(logits, labels, prior)
    assert acc == 1.0 and 0 < tau <= 1.0
    assert balanced_accuracy(adjust_logits(logits, prior, tau).argmax(1), labels, 2)[0] == 1.0
    with pytest.raises(GanaugError, match="validation split is empty"):
        choose_tau(logits[:0], labels[:0], prior)


def test_recipe_validates_and_round_trips():
    r = SyntheticRecipe(share=0.5, start=0.8, filter="confidence")
    assert SyntheticRecipe.from_dict(r.to_dict()) == r
    for bad, match in (({"share": 1.0}, "share"), ({"start": 0.7, "finish": 0.5}, "start and finish"),
                       ({"filter": "magic"}, "filter"), ({"loss": "focal"}, "loss"), ({"cap": 0}, "cap")):
        with pytest.raises(GanaugError, match=match):
            SyntheticRecipe(**bad)
    with pytest.raises(GanaugError, match="SyntheticRecipe has unknown fields"):
        SyntheticRecipe.from_dict({"shares": 0.1})
    assert [SyntheticRecipe(start=0.5, finish=0.25).phase(s, 8) for s in range(8)] == \
        ["real"] * 4 + ["mix"] * 2 + ["real"] * 2
    assert [SyntheticRecipe(finish=0.25, finish_layers="head").phase(s, 8) for s in range(8)] == \
        ["mix"] * 6 + ["head"] * 2
    for bad, match in (({"remix": -1.0}, "remix"), ({"finish_layers": "body"}, "finish_layers"),
                       ({"finish_layers": "head"}, "needs a finish phase")):
        with pytest.raises(GanaugError, match=match):
            SyntheticRecipe(**bad)
    # a recipe saved before a field existed reads as that recipe with the field's default
    saved = {f: v for f, v in r.to_dict().items() if f not in ("remix", "finish_layers")}
    assert SyntheticRecipe.fields_with_defaults(saved) == r.to_dict()


def test_bank_is_capped_and_skips_the_largest_class(pkg, tmp_path):
    real = real_data()
    mix = SyntheticMix(real, str(pkg), SyntheticRecipe(filter="none", cap=2.0, weight=0.25), cache=tmp_path)
    assert mix.synthetic_counts.tolist() == [0, 20, 8]  # cap x real count; none for the largest class
    assert len(mix) == 54 + 28
    # draws proportional to 1 - n_c / n_max
    expected = torch.tensor([0.0, 1 - 10 / 40, 1 - 4 / 40])
    assert torch.allclose(mix.draw_probs.float(), expected / expected.sum())
    image, label, w = mix[54]
    assert image.shape == (1, 32, 32) and image.dtype == torch.uint8 and label == 1 and w == 0.25
    assert mix[0][2] == 1.0
    report = mix.report()
    assert report["tail"] == {"real": 4, "generated_pool": 8, "generated": 8, "judge_acceptance": 1.0,
                              "draw_probability": pytest.approx(float(expected[2] / expected.sum()))}


def test_fill_to_fills_each_class_towards_the_largest(pkg):
    real = real_data()  # 40, 10, 4
    mix = SyntheticMix(real, str(pkg), SyntheticRecipe(filter="none", fill_to=1.0, cap=0.5))
    assert mix.synthetic_counts.tolist() == [0, 30, 36]  # fill_to replaces cap: every class reaches 40
    assert SyntheticRecipe(fill_to=0.5).bank_sizes(torch.tensor([40, 10, 25])) == [0, 10, 0]
    assert SyntheticRecipe(fill_to=1.0, share=0.0).bank_sizes(torch.tensor([40, 10])) == [0, 0]
    # rarity-proportional draws are then proportional to the bank: batches draw the balanced union evenly
    assert torch.allclose(mix.draw_probs.float(), torch.tensor([0.0, 30 / 66, 36 / 66]))


class PixelJudge(nn.Module):
    """Its penultimate features are the image's pixels (a linear head on the flattened image), so a
    test can compute the band by hand."""

    def __init__(self, pixels: int = 32 * 32, k: int = 3):
        super().__init__()
        self.flat = nn.Flatten()
        self.head = nn.Linear(pixels, k)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(k, pixels, generator=torch.Generator().manual_seed(0)) * 0.01)

    def forward(self, x):
        return self.head(self.flat(x))


def test_penultimate_features_are_the_last_linear_layers_input():
    from ganaug.eval.classifier import SmallCNN
    from ganaug.longtail.selection import penultimate
    from ganaug.pixels import uint8_to_model

    model = SmallCNN(1, 3, width=4)
    images = torch.randint(0, 255, (5, 1, 32, 32), dtype=torch.uint8)
    model.train()
    feats, logits = penultimate(model, images, batch_size=2)
    model.eval()
    with torch.no_grad():
        x = uint8_to_model(images)
        assert torch.allclose(feats, model.features(x), atol=1e-5) and torch.allclose(logits, model(x), atol=1e-5)
    assert model.training is False  # penultimate restored the mode it found (eval here)
    with pytest.raises(GanaugError, match="no nn.Linear"):
        penultimate(nn.Sequential(nn.Conv2d(1, 2, 3)), images)


def test_class_bands_split_at_the_real_distances_quantiles():
    from ganaug.longtail.selection import BEYOND, IN_BAND, INSIDE, ClassBands

    # class 0 along +x, class 1 along +y; real images at angles 0..9 degrees from their axis
    angles = torch.arange(10, dtype=torch.float64) * math.pi / 180
    real = torch.cat([torch.stack([angles.cos(), angles.sin()], 1), torch.stack([angles.sin(), angles.cos()], 1)])
    labels = torch.tensor([0] * 10 + [1] * 10)
    bands = ClassBands(real.float() * 5, labels, 2, low=0.2, high=0.8)  # lengths do not matter: cosine
    d_real = bands.distance(real, labels)
    assert torch.allclose(bands.outer, torch.stack([d_real[:10].quantile(0.8), d_real[10:].quantile(0.8)]))
    # the prototype points at 4.5 degrees (the mean); real distances are those of 0.5..4.5 degrees off it
    deg = math.pi / 180
    probe = torch.tensor([[math.cos(4.5 * deg), math.sin(4.5 * deg)], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    pos = bands.position(probe, torch.tensor([0, 0, 0, 1]))  # on the prototype, 40.5 and 85.5 degrees off
    assert bands.distance(probe[1:2], torch.tensor([0])) > bands.outer[0]
    assert pos.tolist() == [INSIDE, BEYOND, BEYOND, BEYOND]
    in_band = torch.tensor([[math.cos(2 * deg), math.sin(2 * deg)]])  # 2.5 degrees off: between the quantiles
    assert bands.position(in_band, torch.tensor([0])).tolist() == [IN_BAND]
    # within another class's band: class 1's real image called class 0; its own image is not
    assert bands.near_other(real[[12, 2]], torch.tensor([0, 0])).tolist() == [True, False]
    with pytest.raises(GanaugError, match="low < high"):
        ClassBands(real, labels, 2, low=0.5, high=0.5)
    with pytest.raises(GanaugError, match="real images of every class"):
        ClassBands(real, labels, 3, low=0.0, high=0.9)


def test_a_class_with_one_or_two_real_images_takes_the_pooled_band():
    from ganaug.longtail.selection import BEYOND, IN_BAND, ClassBands

    # classes 0 and 1 with 10 images 0..9 degrees off their axis; class 2 with one image (its own
    # prototype: a band of its own would be a single point and reject everything)
    deg = math.pi / 180
    angles = torch.arange(10, dtype=torch.float64) * deg
    real = torch.cat([torch.stack([angles.cos(), angles.sin(), 0 * angles], 1),
                      torch.stack([angles.sin(), angles.cos(), 0 * angles], 1), torch.tensor([[0.0, 0.0, 1.0]])])
    labels = torch.tensor([0] * 10 + [1] * 10 + [2])
    bands = ClassBands(real, labels, 3, low=0.0, high=0.9)
    assert bands.pooled_classes == [2]
    d = bands.distance(real, labels)
    assert torch.isclose(bands.outer[2], d[:20].quantile(0.9))
    near = torch.tensor([[math.sin(3 * deg), 0.0, math.cos(3 * deg)], [math.sin(30 * deg), 0.0, math.cos(30 * deg)]])
    assert bands.position(near, torch.tensor([2, 2])).tolist() == [IN_BAND, BEYOND]


def test_band_filter_keeps_the_images_in_the_band(pkg):
    from ganaug.longtail.selection import IN_BAND, ClassBands

    # real images that look like the generator's (other latents), so that its images fall on both sides of the band
    look_alike = SyntheticDataset(str(pkg), {0: 40, 1: 10, 2: 4}, seed=99)
    real, judge = LabelledImages(look_alike.images(), look_alike.labels, list(CLASSES)), PixelJudge()
    recipe = SyntheticRecipe(filter="band", band_low=0.1, band_high=0.9, fill_to=1.0)
    mix = SyntheticMix(real, str(pkg), recipe, judge=judge, seed=3)
    # by hand: the generator's images, their pixel features against the real pixel bands
    pool = SyntheticDataset(str(pkg), {1: 30, 2: 36}, seed=3)
    images, labels = pool.images(), pool.labels
    bands = ClassBands(real.images.flatten(1).float() / 127.5 - 1, real.labels, 3, 0.1, 0.9)
    pos = bands.position(images.flatten(1).float() / 127.5 - 1, labels)
    assert torch.equal(mix.synthetic_labels, labels[pos == IN_BAND])
    assert torch.equal(mix.tensors()[0][mix.n_real:], images[pos == IN_BAND])
    report = mix.report()
    for c, name in enumerate(CLASSES):
        assert report[name]["inside"] + report[name]["in_band"] + report[name]["beyond"] == report[name]["generated_pool"]
        assert report[name]["generated"] == report[name]["in_band"] == int(((pos == IN_BAND) & (labels == c)).sum())
    # any map-style dataset gets the same band (its images are read one by one)
    pairs = [(real.images[i], int(real.labels[i])) for i in range(len(real))]
    assert torch.equal(SyntheticMix(pairs, str(pkg), recipe, judge=judge, seed=3).synthetic_labels, mix.synthetic_labels)
    # images on every side of the band, or the test proves nothing
    assert all(sum(report[n][where] for n in CLASSES) > 0 for where in ("inside", "in_band", "beyond"))
    # band_soft: the same bank; its images within another class's band learn the judge's probabilities
    soft = SyntheticMix(real, str(pkg), dataclasses.replace(recipe, band_soft=True), judge=judge, seed=3)
    assert torch.equal(soft.synthetic_labels, mix.synthetic_labels)
    near = bands.near_other(images.flatten(1).float() / 127.5 - 1, labels)[pos == IN_BAND]
    assert 0 < int(near.sum()) < len(near)  # some relabelled, some not, or the test proves nothing
    assert sum(soft.report()[n]["near_other"] for n in CLASSES) == int(near.sum())
    probs = torch.softmax(judge(images[pos == IN_BAND].float() / 127.5 - 1), 1).detach()
    targets = soft.tensors()[1][soft.n_real:]
    assert torch.allclose(targets[near], probs[near])
    assert torch.equal(targets[~near], F.one_hot(mix.synthetic_labels[~near], 3).float())
    assert torch.equal(soft.tensors()[1][:soft.n_real], F.one_hot(real.labels, 3).float())
    with pytest.raises(GanaugError, match="band_soft relabels images of the band filter"):
        SyntheticRecipe(band_soft=True)


def test_overgenerating_keeps_the_hardest_images_under_the_judge(pkg):
    from ganaug.longtail.selection import hardness

    real, judge = real_data(), PixelJudge()
    recipe = SyntheticRecipe(filter="none", cap=2.0, overgenerate=3.0, select="loss")
    mix = SyntheticMix(real, str(pkg), recipe, judge=judge)
    assert mix.synthetic_counts.tolist() == [0, 20, 8] and mix.report()["mid"]["generated_pool"] == 60
    pool = SyntheticDataset(str(pkg), {1: 60, 2: 24}, seed=0)
    images, labels = pool.images(), pool.labels
    loss = hardness(torch.softmax(judge(images.float() / 127.5 - 1), 1).detach(), labels, "loss")
    for c, n in ((1, 20), (2, 8)):
        kept = mix.tensors()[0][mix.n_real:][mix.synthetic_labels == c]
        hardest = torch.argsort(loss[labels == c], descending=True)[:n].sort().values  # the bank keeps pool order
        expected = images[labels == c][hardest]
        assert torch.equal(kept, expected)
    # random selection keeps the first images of the pool, the same bank as without over-generating
    first = SyntheticMix(real, str(pkg), SyntheticRecipe(filter="none", cap=2.0, overgenerate=3.0), judge=judge)
    assert torch.equal(first.tensors()[0][first.n_real:][first.synthetic_labels == 1], images[labels == 1][:20])
    with pytest.raises(GanaugError, match="needs judge="):
        SyntheticMix(real, str(pkg), recipe)
    assert mix.bank_cpu_seconds > 0


def test_refresh_chooses_the_hardest_for_the_classifier_in_training(pkg):
    from ganaug.longtail.selection import hardness

    real, judge = real_data(), PixelJudge()
    trainee = PixelJudge()  # another classifier: the one "in training"
    with torch.no_grad():
        trainee.head.weight.copy_(torch.randn(3, 32 * 32, generator=torch.Generator().manual_seed(1)) * 0.01)
    recipe = SyntheticRecipe(filter="none", cap=2.0, overgenerate=3.0, select="loss", refresh=2)
    mix = SyntheticMix(real, str(pkg), recipe, judge=judge)
    images_all, labels_all, _ = mix.tensors()
    initial, labels_before = images_all[mix.n_real:].clone(), mix.synthetic_labels.clone()
    pool = SyntheticDataset(str(pkg), {1: 60, 2: 24}, seed=0)
    images, labels = pool.images(), pool.labels
    loss = hardness(torch.softmax(trainee(images.float() / 127.5 - 1), 1).detach(), labels, "loss")
    expected = {c: images[labels == c][torch.argsort(loss[labels == c], descending=True)[:n].sort().values]
                for c, n in ((1, 20), (2, 8))}

    def bank_is_trainees_choice():
        return all(torch.equal(images_all[mix.n_real:][mix.synthetic_labels == c], e) for c, e in expected.items())

    assert not bank_is_trainees_choice()  # the judge chose otherwise, or the test proves nothing
    mix.refresh(trainee)
    # the same tensor the training loop holds now has the trainee's hardest, in the same slots
    assert bank_is_trainees_choice() and torch.equal(mix.synthetic_labels, labels_before)
    # on the recipe's schedule: step 0 puts the judge's choice back (a mix serves several runs), then
    # the refreshes fall evenly inside the mixing phase (steps 3 and 6 of 10)
    mix.batch_sampler(steps=10, batch_size=8)
    mix.before_step(trainee, 0)
    assert torch.equal(images_all[mix.n_real:], initial)
    for step in range(1, 3):
        mix.before_step(trainee, step)
    assert torch.equal(images_all[mix.n_real:], initial)
    mix.before_step(trainee, 3)
    assert bank_is_trainees_choice()
    assert mix._refresh_steps(10) == {3, 6} and mix.refreshes == 2 and mix.refresh_cpu_seconds > 0
    # a refresh needs tensors it can rewrite
    pairs = [(real.images[i], int(real.labels[i])) for i in range(len(real))]
    with pytest.raises(GanaugError, match="needs the real data as a LabelledImages"):
        SyntheticMix(pairs, str(pkg), recipe, judge=judge)


def test_new_recipe_fields_are_checked():
    for bad, match in (({"band_low": 0.5, "band_high": 0.4}, "band quantiles"), ({"overgenerate": 0.5}, "overgenerate"),
                       ({"select": "hardest"}, "select must be one of"), ({"fill_to": -1.0}, "fill_to"),
                       ({"filter": "aid"}, "filter must be one of"), ({"refresh": -1}, "refresh must be"),
                       ({"refresh": 2, "overgenerate": 2.0}, "refresh needs"),  # select random: nothing to choose by
                       ({"refresh": 2, "overgenerate": 2.0, "select": "loss", "filter": "soft"}, "refresh needs")):
        with pytest.raises(GanaugError, match=match):
            SyntheticRecipe(**bad)
    assert SyntheticRecipe(filter="none", select="entropy").uses_judge and not SyntheticRecipe(filter="none").uses_judge


def test_batches_follow_the_share_and_the_schedule(pkg):
    mix = SyntheticMix(real_data(), str(pkg), SyntheticRecipe(filter="none", share=0.25, start=0.5, finish=0.25))
    batches = list(mix.batch_sampler(steps=8, batch_size=16, seed=3))
    assert len(batches) == 8 and all(len(b) == 16 for b in batches)
    generated = [sum(i >= mix.n_real for i in b) for b in batches]
    assert generated == [0, 0, 0, 0, 4, 4, 0, 0]
    assert batches == list(mix.batch_sampler(steps=8, batch_size=16, seed=3))  # deterministic
    # the loss in a mixing step uses the shifted prior
    logits, y = torch.randn(16, 3), torch.randint(0, 3, (16,))
    w = torch.ones(16)
    plain_prior = log_prior(mix.real_counts)
    assert torch.allclose(mix.loss(logits, y, w, step=0), logit_adjusted_loss(logits, y, plain_prior), atol=1e-5)
    assert not torch.allclose(mix.loss(logits, y, w, step=4), logit_adjusted_loss(logits, y, plain_prior))
    # ... unless the recipe keeps the real images' prior
    real_prior = SyntheticMix(real_data(), str(pkg), SyntheticRecipe(filter="none", share=0.25, prior="real"))
    real_prior.batch_sampler(steps=8, batch_size=16)
    assert torch.allclose(real_prior.loss(logits, y, w, step=4), logit_adjusted_loss(logits, y, plain_prior),
                          atol=1e-5)
    with pytest.raises(GanaugError, match="prior must be one of"):
        SyntheticRecipe(prior="uniform")


def test_a_plain_pytorch_loop_over_the_mix(pkg):
    real = real_data()
    mix = SyntheticMix(real, str(pkg), SyntheticRecipe(filter="none"))
    loader = DataLoader(mix, batch_sampler=mix.batch_sampler(steps=3, batch_size=8))
    model = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step, (x, y, w) in enumerate(loader):
        loss = mix.loss(model(x.float() / 127.5 - 1), y, w, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert x.shape == (8, 1, 32, 32) and w.dtype == torch.float64 and loss.isfinite()
    # any map-style dataset works, e.g. a plain list of (image, label) pairs
    pairs = [(real.images[i], int(real.labels[i])) for i in range(len(real))]
    mix2 = SyntheticMix(pairs, str(pkg), SyntheticRecipe(filter="none"))
    image, label, w = mix2[len(pairs)]
    assert image.shape == (1, 32, 32) and w == 0.5


def test_filters_reject_or_weight_by_the_judge(pkg):
    real = real_data()
    judge = FixedJudge()
    with pytest.warns(UserWarning, match=r"rejected every generated image of \['tail'\]"):
        rejected = SyntheticMix(real, str(pkg), SyntheticRecipe(filter="reject", threshold=0.4), judge=judge)
    assert rejected.synthetic_counts.tolist() == [0, 40, 0]  # the tail images all fail
    assert rejected.draw_probs[2] == 0 and rejected.report()["tail"]["judge_acceptance"] == 0.0
    weighted = SyntheticMix(real, str(pkg), SyntheticRecipe(filter="confidence", weight=1.0), judge=judge)
    assert weighted.synthetic_counts.tolist() == [0, 40, 16]
    w = weighted.synthetic_weights
    p = torch.softmax(torch.tensor([3.0, 3.0, 0.0]), 0)
    assert torch.allclose(w[weighted.synthetic_labels == 1], p[1].expand(40)) and \
        torch.allclose(w[weighted.synthetic_labels == 2], p[2].expand(16))


def test_rejected_slots_go_to_real_images_as_m2m_does(pkg):
    real, judge = real_data(), FixedJudge()
    recipe = SyntheticRecipe(filter="reject", threshold=0.4, share=0.5, rejected="real")
    with pytest.warns(UserWarning, match="rejected every generated image"):
        mix = SyntheticMix(real, str(pkg), recipe, judge=judge)
        redraw = SyntheticMix(real, str(pkg), dataclasses.replace(recipe, rejected="redraw"), judge=judge)
    # the tail's bank was emptied: its share of the generated slots (rarity 0.9 of 0.75 + 0.9) goes to real images
    fill = 0.75 / (0.75 + 0.9)
    assert mix.fill == pytest.approx(fill) and redraw.fill == 1.0
    assert mix.draw_probs.tolist() == [0.0, 1.0, 0.0]
    generated = [int((b >= mix.n_real).sum()) for b in mix.batch_sampler(400, 16, seed=1).index_batches(
        torch.Generator().manual_seed(1))]
    assert sum(generated) / (400 * 8) == pytest.approx(fill, abs=0.03)  # 8 slots of 16, filled at the rate
    assert all(int((b >= redraw.n_real).sum()) == 8 for b in redraw.batch_sampler(5, 16).index_batches(
        torch.Generator().manual_seed(1)))
    # the loss's prior counts the generated images the batches really hold
    real_share = torch.tensor(real.class_counts(), dtype=torch.float64) / len(real)
    prior = torch.log((1 - 0.5 * fill) * real_share + 0.5 * fill * mix.draw_probs)
    assert torch.allclose(mix.prior("mix", 16), prior.float(), atol=1e-6)
    with pytest.raises(GanaugError, match="rejected must be one of"):
        SyntheticRecipe(rejected="drop")


def test_bad_input_says_what_to_do(pkg):
    with pytest.raises(GanaugError, match="have no real image"):
        SyntheticMix(real_data((40, 10, 0)), str(pkg), SyntheticRecipe(filter="none"))
    with pytest.raises(GanaugError, match="needs judge="):
        SyntheticMix(real_data(), str(pkg), SyntheticRecipe())
    other = LabelledImages(torch.zeros(3, 1, 32, 32, dtype=torch.uint8), torch.tensor([0, 1, 2]), ["a", "b", "c"])
    with pytest.raises(GanaugError, match="not the generator's"):
        SyntheticMix(other, str(pkg), SyntheticRecipe(filter="none"))
    mix = SyntheticMix(real_data(), str(pkg), SyntheticRecipe(filter="none"))
    with pytest.raises(GanaugError, match="needs steps and batch_size"):
        mix.loss(torch.zeros(2, 3), torch.tensor([0, 1]), torch.ones(2), step=0)


def test_fit_judge_learns_a_separable_problem():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 60 + [1] * 12)
    images = (torch.rand(72, 1, 32, 32, generator=g) * 60).to(torch.uint8) + (labels * 150).view(-1, 1, 1, 1).to(
        torch.uint8)
    judge = fit_judge(images, labels, 2, FitConfig(epochs=3, batch_size=16))
    with torch.no_grad():
        pred = judge(images.float() / 127.5 - 1).argmax(1)
    assert balanced_accuracy(pred, labels, 2)[0] == 1.0


def test_soft_labels_are_the_judges_distribution(pkg):
    real = real_data()
    mix = SyntheticMix(real, str(pkg), SyntheticRecipe(filter="soft", weight=1.0), judge=FixedJudge())
    p = torch.softmax(torch.tensor([3.0, 3.0, 0.0]), 0)
    assert mix.synthetic_counts.tolist() == [0, 40, 16]  # soft labels keep every image
    image, target, w = mix[mix.n_real]
    assert torch.allclose(target, p) and w == 1.0
    assert torch.equal(mix[0][1], torch.tensor([1.0, 0.0, 0.0]))  # real images keep their class
    images, targets, weights = mix.tensors()
    assert targets.shape == (len(mix), 3) and torch.allclose(targets.sum(1), torch.ones(len(mix)))
    # the loss is soft cross-entropy on the adjusted logits
    mix.batch_sampler(steps=4, batch_size=8)
    logits = torch.randn(8, 3)
    prior = mix.prior("mix", 8)
    expected = -(targets[:8] * (logits + prior).log_softmax(1)).sum(1).mean()
    assert torch.allclose(mix.loss(logits, targets[:8], weights[:8], step=0), expected, atol=1e-6)


def test_remix_gives_the_rarer_class_its_label(pkg):
    real = real_data()  # head 40, mid 10, tail 4: head/tail and head/mid differ by >= 3x
    mix = SyntheticMix(real, str(pkg), SyntheticRecipe(filter="none", remix=1.0, finish=0.5, finish_layers="head"))
    mix.batch_sampler(steps=4, batch_size=64)
    x = torch.rand(64, 1, 32, 32) * 2 - 1
    y = torch.tensor([0, 2] * 32)
    w = torch.ones(64)
    torch.manual_seed(5)
    xm, t, wm = mix.remix(x, y, w, step=0)
    torch.manual_seed(5)
    perm = torch.randperm(64)
    lam = torch.distributions.Beta(1.0, 1.0).sample((64,))
    assert torch.allclose(xm, lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[perm])
    assert torch.allclose(t.sum(1), torch.ones(64)) and torch.allclose(wm, w)
    for i in range(64):
        a, b = int(y[i]), int(y[perm[i]])
        if a == 0 and b == 2 and lam[i] < 0.5:  # mostly the tail image: the tail label only
            assert t[i].tolist() == [0.0, 0.0, 1.0]
        elif a == 2 and b == 0 and 1 - lam[i] < 0.5:
            assert t[i].tolist() == [0.0, 0.0, 1.0]
        elif a == b:
            assert t[i, a] == pytest.approx(1.0)
        else:  # ordinary mixup labels
            assert t[i, a] == pytest.approx(float(lam[i]))
    assert any(t[i, 2] == 1 and y[i] == 0 for i in range(64))  # the rule fired at least once
    # no Remix in the head-only phase, nor without the option
    assert mix.remix(x, y, w, step=3)[1] is y
    plain = SyntheticMix(real, str(pkg), SyntheticRecipe(filter="none"))
    plain.batch_sampler(steps=4, batch_size=64)
    assert plain.remix(x, y, w, step=0)[0] is x


def test_head_only_finish_freezes_the_body_on_balanced_real_batches(pkg):
    real = real_data()
    mix = SyntheticMix(real, str(pkg), SyntheticRecipe(filter="none", finish=0.5, finish_layers="head"))
    batches = list(mix.batch_sampler(steps=200, batch_size=30, seed=0))
    head = torch.cat([torch.tensor(b) for b in batches[100:]])
    assert int(head.max()) < mix.n_real  # real images only
    share = torch.bincount(real.labels[head], minlength=3).float() / len(head)
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.02)  # every class equally often
    assert torch.allclose(mix.prior("head", 30).exp(), torch.full((3,), 1 / 3))
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 30 * 30, 3)).train()
    mix.before_step(model, 99)  # still the mixing phase: nothing changes
    assert all(p.requires_grad for p in model.parameters()) and model[1].training
    mix.before_step(model, 100)
    assert [p.requires_grad for p in model.parameters()] == [False] * 4 + [True] * 2
    assert not model[1].training and model[3].training
    with pytest.raises(GanaugError, match="no nn.Linear|has none"):
        mix.before_step(nn.Conv2d(1, 3, 3), 150)
