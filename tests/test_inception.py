"""Inception features: weights are only ever loaded as safetensors; .pth files are read without
unpickling. The real FID weights cannot be downloaded here, so the network is tested with
randomly initialised weights saved the way the official file is (torch.save)."""

import os
from unittest import mock

import pytest
import torch

from ganaug import GanaugError
from ganaug.eval.inception import InceptionFeatures, inception_weights
from ganaug.eval.torch_pth import read_state_dict


def test_state_dict_round_trip_with_views_and_dtypes(tmp_path):
    base = torch.arange(10, dtype=torch.float32)
    sd = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)).state_dict()
    sd["view"] = base[2:8].view(2, 3)  # shares storage with an offset and a shape
    sd["base"] = base
    sd["half"] = torch.randn(3, dtype=torch.float16)
    torch.save(sd, tmp_path / "w.pth")
    got = read_state_dict(tmp_path / "w.pth")
    assert list(got) == list(sd)
    for k in sd:
        assert got[k].dtype == sd[k].dtype and torch.equal(got[k], sd[k]), k


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    evil = _Evil()
    evil.marker = tmp_path / "pwned"
    torch.save({"weight": torch.zeros(1), "payload": evil}, tmp_path / "evil.pth")
    with pytest.raises(GanaugError, match="refusing to read it"):
        read_state_dict(tmp_path / "evil.pth")
    assert not evil.marker.exists()


def test_non_zip_and_truncated_files(tmp_path):
    (tmp_path / "old.pth").write_bytes(b"\x80\x02not a zip")
    with pytest.raises(GanaugError, match="not a zip-format PyTorch file"):
        read_state_dict(tmp_path / "old.pth")
    torch.save({"w": torch.zeros(2)}, tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(GanaugError):
        read_state_dict(tmp_path / "cut.pth")


@pytest.fixture(scope="module")
def random_inception_pth(tmp_path_factory):
    from torch_fidelity import feature_extractor_inceptionv3 as tfi

    with mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: None), \
            mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
        net = tfi.FeatureExtractorInceptionV3("x", ["2048"])
    path = tmp_path_factory.mktemp("inc") / "weights.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_features_from_a_pth_file(random_inception_pth, tmp_path, monkeypatch):
    monkeypatch.setenv("GANAUG_CACHE", str(tmp_path))
    feats = InceptionFeatures.load(random_inception_pth)
    assert feats.weights_path.suffix == ".safetensors"  # converted once, loaded as safetensors
    f, logits = feats.embed(torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8))
    assert f.shape == (3, 2048) and logits.shape == (3, 1008)
    again = InceptionFeatures.load(feats.weights_path)
    f2, _ = again.embed(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert f2.shape == (1, 2048)


def test_wrong_weights_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GANAUG_CACHE", str(tmp_path))
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "wrong.pth")
    with pytest.raises(GanaugError, match="not Inception-v3 FID weights"):
        InceptionFeatures.load(tmp_path / "wrong.pth")


def test_missing_weights_offline_names_the_url_and_the_option(tmp_path, monkeypatch):
    monkeypatch.setenv("GANAUG_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GanaugError, match=r"(?s)offline.*https://github.com/toshas/torch-fidelity.*--inception-weights"):
        inception_weights()


def test_failed_download_names_the_url_and_the_option(tmp_path, monkeypatch):
    monkeypatch.setenv("GANAUG_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("GANAUG_INCEPTION_URL", "http://127.0.0.1:9/weights.pth")  # nothing listens
    with pytest.raises(GanaugError, match=r"(?s)could not download.*127\.0\.0\.1:9.*--inception-weights"):
        inception_weights()
