"""A frozen classifier in the generator's loss (TrainConfig.guide_*, train(guide=...))."""

import json

import pytest
import torch
from torch import nn

import ganaug
from ganaug import GanaugError, LabelledImages
from ganaug.models import generate_images
from ganaug.training.guide import Guide


class Brightness(nn.Module):
    """Calls dark images class 0 and bright ones class 1; its penultimate feature is (mean, 1)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-8.0, 0.0], [8.0, 0.0]]))
            self.head.bias.zero_()

    def forward(self, x):
        m = x.mean((1, 2, 3))[:, None]
        return self.head(torch.cat([m, torch.ones_like(m)], 1))


def same_noise(n=32, seed=0) -> LabelledImages:
    """Two classes of the same noise: nothing but a guide tells them apart by brightness."""
    g = torch.Generator().manual_seed(seed)
    return LabelledImages(torch.randint(60, 196, (n, 1, 32, 32), dtype=torch.uint8, generator=g),
                          torch.arange(n) % 2, ["dark", "bright"])


def train_tiny(tmp_path, name, data, steps=40, guide=None, **cfg):
    mc = ganaug.make_config("sngan", 2, data.class_names, image_size=32, channels=1, g_width=8, d_width=8)
    return ganaug.train(data, mc, ganaug.TrainConfig(steps=steps, batch_size=16, checkpoint_every=20, **cfg),
                        tmp_path / name, progress=False, guide=guide)


def brightness_gap(run) -> float:
    G = ganaug.load_generator(run)
    y = torch.tensor([0, 1]).repeat_interleave(64)
    images = generate_images(G.net, y, z_dim=G.config.z_dim, seed=1).float()
    return float(images[y == 1].mean() - images[y == 0].mean())


def test_the_ce_guide_moves_each_class_where_the_classifier_sees_it(tmp_path):
    data = same_noise()
    plain = brightness_gap(train_tiny(tmp_path, "plain", data))
    guided_run = train_tiny(tmp_path, "guided", data, guide=Brightness(), guide_weight=2.0)
    guided = brightness_gap(guided_run)
    # unguided, both classes learn the same noise; guided, "bright" is drawn brighter than "dark"
    assert guided > 20 and guided > abs(plain) + 15, (plain, guided)
    metrics = [json.loads(line) for line in (guided_run / "metrics.jsonl").read_text().splitlines()]
    assert all("loss_guide" in row for row in metrics) and metrics[-1]["loss_guide"] < metrics[0]["loss_guide"]
    assert json.loads((guided_run / "run_config.json").read_text())["guide"] is not None


def test_band_guide_leaves_images_in_the_band_alone():
    data = same_noise()
    guide = Guide(Brightness(), "band", 1.0, 0.9, data, (-1.0, 1.0), torch.device("cpu"))
    # grey at the real images' mean brightness: features (mean, 1) on the class prototypes
    typical = torch.full((4, 1, 32, 32), float(data.images.float().mean() / 127.5 - 1))
    far = torch.full((4, 1, 32, 32), -1.0, requires_grad=True)  # black: far off the real images' features
    y = torch.tensor([0, 1, 0, 1])
    assert float(guide(typical, y)) == 0.0 and float(guide(far, y).detach()) > 0
    guide(far, y).backward()
    assert far.grad is not None and far.grad.abs().sum() > 0  # the term pulls such images back
    with pytest.raises(GanaugError, match="one output per class"):
        Guide(nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 3)), "ce", 1.0, 0.9, data, (-1.0, 1.0),
              torch.device("cpu"))


def test_guide_settings_and_resume_are_checked(tmp_path):
    data = same_noise(16)
    with pytest.raises(GanaugError, match="guide_weight >= 0"):
        ganaug.TrainConfig(guide_loss="kl").validate()
    with pytest.raises(GanaugError, match="needs both a classifier and a weight"):
        train_tiny(tmp_path, "no-weight", data, steps=2, guide=Brightness())
    with pytest.raises(GanaugError, match="needs both a classifier and a weight"):
        train_tiny(tmp_path, "no-guide", data, steps=2, guide_weight=1.0)
    run = train_tiny(tmp_path, "guided", data, steps=2, guide=Brightness(), guide_weight=1.0)
    mc = ganaug.make_config("sngan", 2, data.class_names, image_size=32, channels=1, g_width=8, d_width=8)
    with pytest.raises(GanaugError, match="resume it with the same one"):
        ganaug.train(data, mc, ganaug.TrainConfig(steps=4, batch_size=16), run, resume=True, progress=False)
    other = Brightness()
    with torch.no_grad():
        other.head.weight.mul_(2)
    with pytest.raises(GanaugError, match="resume with the same guide"):
        ganaug.train(data, mc, ganaug.TrainConfig(steps=4, batch_size=16), run, resume=True, progress=False,
                     guide=other)
    ganaug.train(data, mc, ganaug.TrainConfig(steps=4, batch_size=16), run, resume=True, progress=False,
                 guide=Brightness())  # the same weights: it continues
