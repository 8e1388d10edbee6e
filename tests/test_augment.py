import pickle
import threading

import numpy as np
import PIL.Image
import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

import ganaug
from ganaug import GanaugError
from ganaug.data import LabelledImages
from ganaug.transforms import MixedDataset, SyntheticDataset, balance, resolve_strategy
from ganaug.transforms import GANAugment, GANBatchAugment, ImagePool, PoolConfig

from .conftest import assert_same_images


@pytest.fixture(scope="module")
def pkg(tiny_package):
    """A small trained 1-channel 32px generator with classes ['ok', 'defect'] (3 steps)."""
    return str(tiny_package)


INPUTS = {
    "pil_rgb": lambda: PIL.Image.fromarray(np.full((40, 30, 3), 7, np.uint8)),
    "pil_grey": lambda: PIL.Image.fromarray(np.full((20, 24), 7, np.uint8)),
    "uint8_rgb": lambda: torch.full((3, 20, 24), 7, dtype=torch.uint8),
    "float_grey": lambda: torch.full((1, 28, 28), 0.03),
    "tv_image": lambda: tv_tensors.Image(torch.full((3, 16, 16), 7, dtype=torch.uint8)),
}


def _describe(x):
    if isinstance(x, PIL.Image.Image):
        return ("PIL", x.mode, x.size)
    return (type(x).__name__, x.dtype, tuple(x.shape))


@pytest.mark.parametrize("kind", list(INPUTS))
def test_every_input_type_through_compose(pkg, kind):
    t = v2.Compose([GANAugment(pkg, p=1.0)])
    img = INPUTS[kind]()
    out, label = t(img, 1)
    assert label == 1 and _describe(out) == _describe(img)
    if isinstance(img, PIL.Image.Image):
        assert np.asarray(out).tolist() != np.asarray(img).tolist()
    else:
        assert not torch.equal(out, img)
        if out.dtype.is_floating_point:
            assert 0.0 <= out.min() and out.max() <= 1.0
    assert type(t(img, 1)[0]) is type(img)
    same, _ = v2.Compose([GANAugment(pkg, p=0.0)])(img, 1)
    assert same is img


def test_the_old_generator_keyword_warns_and_still_works(pkg):
    with pytest.warns(DeprecationWarning, match="source="):
        old = GANAugment(generator=pkg, p=1.0)
    assert old.generator == GANAugment(source=pkg, p=1.0).generator == pkg
    with pytest.raises(GanaugError, match="not both"), pytest.warns(DeprecationWarning):
        GANBatchAugment(pkg, generator=pkg)
    with pytest.raises(GanaugError, match="needs a source"):
        GANAugment(p=1.0)


def test_generators_loaded_by_source_are_a_bounded_cache(pkg, monkeypatch):
    from ganaug.transforms import _kernels as K

    monkeypatch.setattr(K, "MAX_LOADED", 2)
    monkeypatch.setattr(K, "_LOADED", K.collections.OrderedDict())
    a, b, c = pkg, pkg + "/", pkg + "/."  # three source strings of one package: three cache entries
    first = K.resolve_generator(a)
    K.resolve_generator(b)
    assert K.resolve_generator(a) is first  # used again: kept
    K.resolve_generator(c)  # the least recently used (b) goes
    assert [k[1] for k in K._LOADED] == [a, c]


def test_dict_samples_and_custom_labels_getter(pkg):
    img = torch.zeros(1, 32, 32, dtype=torch.uint8)
    out = GANAugment(pkg, p=1.0)({"image": img, "label": 0})
    assert out["label"] == 0 and not torch.equal(out["image"], img)
    t = GANAugment(pkg, p=1.0, labels_getter=lambda s: s[1]["cls"])
    out_img, target = t(img, {"cls": 1})
    assert target == {"cls": 1} and out_img.shape == img.shape


def test_per_class_probabilities_and_classes(pkg):
    img = torch.zeros(1, 32, 32, dtype=torch.uint8)
    per_class = GANAugment(pkg, p={"ok": 1.0, "defect": 0.0})
    assert not torch.equal(per_class(img, 0)[0], img)
    assert per_class(img, 1)[0] is img
    only_defect = GANAugment(pkg, p=1.0, classes=["defect"])
    assert only_defect(img, 0)[0] is img and not torch.equal(only_defect(img, 1)[0], img)


def replaced_by(images, original):
    return [not torch.equal(x, original) for x in images]


def test_same_torch_seed_same_images(pkg):
    img = torch.zeros(1, 32, 32, dtype=torch.uint8)

    def draw(t):
        torch.manual_seed(0)
        return [t(img, i % 2)[0] for i in range(6)]

    # generated in the call: the seed alone decides; from a pool renewing in the call: the seed and the
    # pool's history, so a new transform with the same seed gives the same images (the default pool renews
    # on a thread, so only its coins repeat)
    fresh = GANAugment(pkg, p=0.5, pool=None)
    a = draw(fresh)
    assert all(torch.equal(x, y) for x, y in zip(a, draw(fresh)))
    in_call = PoolConfig(background=False)
    pooled = draw(GANAugment(pkg, p=0.5, pool=in_call))
    assert all(torch.equal(x, y) for x, y in zip(pooled, draw(GANAugment(pkg, p=0.5, pool=in_call))))
    assert replaced_by(draw(GANAugment(pkg, p=0.5)), img) == replaced_by(pooled, img)
    replaced = replaced_by(a, img)
    assert replaced == replaced_by(pooled, img)  # the same coins
    assert any(replaced) and not all(replaced)  # p = 0.5 really drew both ways, and the images are generated
    assert len({x.float().sum().item() for x, r in zip(a, replaced) if r}) > 1  # new latents per call


def test_transforms_survive_pickle(pkg):
    blank = torch.zeros(2, 1, 32, 32, dtype=torch.uint8)
    for t in (GANAugment(pkg, p=1.0), GANAugment(ganaug.load_generator(pkg), p=1.0), GANBatchAugment(pkg),
              GANBatchAugment(ganaug.load_generator(pkg), p=1.0)):
        data = pickle.dumps(t)
        assert len(data) < 10_000  # the source travels, not the weights
        again = pickle.loads(data)
        out = again(blank, torch.tensor([0, 1])) if isinstance(t, GANBatchAugment) else again(blank[0], 1)
        assert out[0].shape[-2:] == (32, 32) and out[0].float().std() > 0  # it still generates


def test_batch_augment_is_one_forward_pass(pkg):
    G = ganaug.load_generator(pkg)
    calls = []
    G.net.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    images = torch.rand(8, 3, 24, 24)
    out, labels = GANBatchAugment(G, p=1.0, pool=None)((images, torch.tensor([0, 1] * 4)))
    assert calls == [8]  # every replaced image in a single generator call
    assert out.shape == images.shape and out.dtype == images.dtype and labels.tolist() == [0, 1] * 4
    assert not torch.equal(out, images) and 0 <= out.min() and out.max() <= 1
    kept = GANBatchAugment(G, p={"ok": 0.0, "defect": 1.0})(images, torch.tensor([0, 1] * 4))[0]
    assert torch.equal(kept[0::2], images[0::2]) and not torch.equal(kept[1::2], images[1::2])


def test_a_pool_hands_out_the_generators_images_and_renews_what_it_is_told(pkg):
    G = ganaug.load_generator(pkg)
    calls = []
    G.net.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    t = GANBatchAugment(G, p=1.0, pool=PoolConfig(per_class=16, refresh=0.5, background=False))
    labels = torch.tensor([0, 1] * 32)
    torch.manual_seed(0)
    first = t(torch.zeros(64, 1, 32, 32, dtype=torch.uint8), labels)[0]
    # one pass per class fills the pool, then one pass renews about half of the 64 images handed out
    assert calls[:2] == [16, 16] and len(calls) == 3 and 16 <= calls[2] <= 48
    pool = t._pool
    assert isinstance(pool, ImagePool) and pool.made == 32 + calls[2]
    t(torch.zeros(64, 1, 32, 32, dtype=torch.uint8), labels)
    assert len(calls) == 4  # filled once: later calls pay only for the renewals
    # every image handed out is one the generator made for that class, from the pool's own seeds
    fill = ImagePool(G, PoolConfig(per_class=16, refresh=0.5, background=False))
    fill._fill(0), fill._fill(1)
    for img, c in zip(first, labels.tolist()):
        assert any(torch.equal(img, kept) for kept in fill.images[c])
    assert len({img.float().sum().item() for img in first}) > 8  # many slots, not one image
    never = GANBatchAugment(G, p=1.0, pool=PoolConfig(per_class=16, refresh=0.0, background=False))
    calls.clear()
    for _ in range(3):
        never(torch.zeros(64, 3, 32, 32, dtype=torch.uint8), labels)
    assert calls == [16, 16]
    with pytest.raises(GanaugError, match="pool refresh must lie in"):
        PoolConfig(refresh=2.0)
    with pytest.raises(GanaugError, match="pool must be"):
        GANBatchAugment(G, pool=16)


def test_the_default_pool_renews_on_a_thread_exactly_what_the_call_would_renew(pkg):
    G = ganaug.load_generator(pkg)
    calls = []
    hook = G.net.register_forward_hook(lambda m, i, o: calls.append((threading.get_ident(), o.shape[0])))
    in_call = ImagePool(G, PoolConfig(per_class=16, refresh=0.5, background=False))
    threaded = ImagePool(G, PoolConfig(per_class=16, refresh=0.5))
    assert PoolConfig().background  # the default
    labels, rng = torch.tensor([0, 1] * 32), torch.Generator().manual_seed(0)
    for call in range(3):
        seeds = torch.randint(0, 2**62, (64,), generator=rng)
        expected = in_call.take(labels, seeds.tolist())
        calls.clear()
        got = threaded.take(labels, seeds)
        seeds.zero_()  # the caller's tensor changes after the call: the thread reads its own copy
        here = [n for who, n in calls if who == threading.get_ident()]
        assert here == ([16, 16] if call == 0 else [])  # only the first fill runs in the call
        assert torch.equal(got, expected)  # the same images: renewals landed before the next call
        assert threaded.settle(timeout=30)
        assert any(who != threading.get_ident() for who, _ in calls)  # the renewals ran on the thread
        assert all(torch.equal(threaded.images[c], in_call.images[c]) for c in (0, 1))
    assert threaded.made == in_call.made and threaded.asked == in_call.asked > threaded.made - 32
    assert threaded.stats()["renewals_queued"] == threaded.stats()["calls_unread"] == 0
    hook.remove()
    again = pickle.loads(pickle.dumps(threaded))  # locks and thread stay behind
    assert torch.equal(again.take(labels[:4], [1, 2, 3, 4]), threaded.take(labels[:4], [1, 2, 3, 4]))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.float32])
@pytest.mark.parametrize("shape", [(6, 1, 32, 32), (6, 3, 5, 7), (6, 1, 3, 3)])
def test_replacing_rows_writes_words_and_matches_indexing(dtype, shape):
    from ganaug.transforms._kernels import replace_rows

    images = (torch.rand(shape) * 255).to(dtype)
    fresh, idx = (torch.rand((3, *shape[1:])) * 255).to(dtype), torch.tensor([0, 2, 5])
    before = images.clone()
    for given, new in ((images, fresh), (images.transpose(2, 3), fresh.transpose(2, 3))):  # and not contiguous
        want = given.clone()
        want[idx] = new
        out = replace_rows(given, idx, new)
        assert out.dtype == dtype and out.shape == given.shape and torch.equal(out, want)
    assert torch.equal(images, before)  # a copy: the batch given is not changed


def test_a_forked_worker_renews_its_own_copy_of_the_pool(pkg):
    aug = GANAugment(pkg, p=1.0, pool=PoolConfig(per_class=4, refresh=1.0))
    blank = torch.zeros(1, 32, 32, dtype=torch.uint8)
    aug(blank, 0), aug(blank, 1)  # the parent's pool exists, its thread started, before the fork
    loader = DataLoader(_Joint(aug), batch_size=4, num_workers=2, multiprocessing_context="fork", timeout=60)
    images, labels = _collect(loader)
    assert images.shape == (8, 1, 32, 32) and (images.flatten(1) != 0).any(1).all()


def test_bad_inputs_name_the_problem(pkg):
    img = torch.zeros(1, 32, 32, dtype=torch.uint8)
    with pytest.raises(GanaugError, match="label 5 is outside the generator's classes 0..1"):
        GANAugment(pkg, p=1.0)(img, 5)
    with pytest.raises(GanaugError, match="class name 'cat' is not one of the generator's classes"):
        GANAugment(pkg, p=1.0)(img, "cat")
    with pytest.raises(GanaugError, match="could not find the sample's label"):
        GANAugment(pkg, p=1.0)(img)
    rgba = PIL.Image.new("RGBA", (8, 8))
    with pytest.raises(GanaugError, match="cannot convert the generator's 1-channel images to 4 channels"):
        GANAugment(pkg, p=1.0)(rgba, 0)
    with pytest.raises(GanaugError, match="probabilities must lie in"):
        GANAugment(ganaug.load_generator(pkg), p=1.5)
    with pytest.raises(GanaugError, match="index labels of shape"):
        GANBatchAugment(pkg)(torch.zeros(2, 1, 8, 8), torch.zeros(2, 2))


# -- albumentations ------------------------------------------------------------------------------

def test_albumentations_types_and_round_trip(pkg):
    import albumentations as A

    from ganaug.albumentations import GANAugment as AGAN

    t = A.Compose([AGAN(pkg, p=1.0)], seed=3)
    for img in (np.full((20, 24, 3), 7, np.uint8), np.full((20, 24), 0.1, np.float32)):
        out = t(image=img, label=1)
        assert out["image"].shape == img.shape and out["image"].dtype == img.dtype and out["label"] == 1
        assert not np.array_equal(out["image"], img)
    d = A.to_dict(t)
    spec = d["transform"]["transforms"][0]
    assert spec["source"] == pkg and spec["p"] == 1.0 and spec["revision"] is None
    assert "weight" not in str(d)
    again = A.from_dict(d)
    again.set_random_seed(3)
    t.set_random_seed(3)
    img = np.zeros((32, 32), np.uint8)
    assert np.array_equal(again(image=img, label=0)["image"], t(image=img, label=0)["image"])
    kept = A.Compose([AGAN(pkg, p=1.0, classes=["defect"])])(image=img, label=0)["image"]
    assert np.array_equal(kept, img)
    assert pickle.loads(pickle.dumps(AGAN(pkg, p=0.3))).p == 0.3
    # p per class, as the torchvision adapter takes it, and through to_dict/from_dict
    per = A.Compose([AGAN(pkg, p={"ok": 1.0, "defect": 0.0})], seed=1)
    per = A.from_dict(A.to_dict(per))
    assert np.array_equal(per(image=img, label=1)["image"], img)  # class 1 ('defect') never replaced
    assert not np.array_equal(per(image=img, label=0)["image"], img)
    with pytest.raises(ValueError, match="label"):
        t(image=img)  # albumentations itself reports the missing target


# -- datasets ------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy, counts, expected", [
    ("not majority", [10, 4, 1], {1: 6, 2: 9}),
    ("minority", [10, 4, 1], {2: 9}),
    ("not minority", [10, 4, 1], {0: 0, 1: 6}),
    ("all", [10, 4, 1], {0: 0, 1: 6, 2: 9}),
    (0.5, [10, 2], {1: 3}),
    ({1: 8, 2: 3}, [10, 4, 1], {1: 4, 2: 2}),
    (lambda y: {2: int((y == 0).sum())}, [10, 4, 1], {2: 9}),
])
def test_sampling_strategies(strategy, counts, expected):
    targets = torch.arange(len(counts)).repeat_interleave(torch.tensor(counts))
    assert resolve_strategy(strategy, targets, len(counts)) == expected


@pytest.mark.parametrize("strategy, match", [
    ("majority", "unknown sampling_strategy"),
    (0.5, "only for two classes"),
    ({0: 3}, "wants 3 images of class 0, which already has 10"),
])
def test_bad_strategies(strategy, match):
    with pytest.raises(GanaugError, match=match):
        resolve_strategy(strategy, torch.tensor([0] * 10 + [1] * 4 + [2]), 3)


def test_balance_counts_and_mixed_dataset(pkg):
    real = LabelledImages(torch.zeros(12, 1, 32, 32, dtype=torch.uint8), torch.tensor([0] * 10 + [1] * 2),
                          ["ok", "defect"])
    mixed = balance(real, pkg)
    assert isinstance(mixed, MixedDataset) and len(mixed) == 20
    assert mixed.class_counts() == {"ok": {"real": 10, "synthetic": 0, "total": 10},
                                    "defect": {"real": 2, "synthetic": 8, "total": 10}}
    assert mixed.targets == [0] * 10 + [1] * 2 + [1] * 8
    assert list(mixed.synthetic_indices) == list(range(12, 20)) and mixed.is_synthetic(12)
    img, label = mixed[15]
    assert label == 1 and img.dtype == torch.uint8 and img.shape == (1, 32, 32)
    assert len(balance(real, pkg, {0: 10, 1: 5})) == 15


class _PilRGB(Dataset):
    """A torchvision-style dataset: PIL RGB images of another size, labels in `targets`."""

    def __init__(self):
        self.targets = [0, 0, 0, 1]

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return PIL.Image.new("RGB", (20, 20)), self.targets[i]


def test_balance_matches_the_real_format_and_checks_classes(pkg):
    mixed = balance(_PilRGB(), pkg)
    img, label = mixed[len(mixed) - 1]
    assert isinstance(img, PIL.Image.Image) and img.mode == "RGB" and img.size == (20, 20) and label == 1
    wrong = LabelledImages(torch.zeros(2, 1, 32, 32, dtype=torch.uint8), torch.tensor([0, 1]), ["x", "y"])
    with pytest.raises(GanaugError, match="are not the generator's"):
        balance(wrong, pkg)

    class NoLabels(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.zeros(1, 32, 32)

    with pytest.raises(GanaugError, match="sample 0 of the dataset is not an \\(image, label\\) pair"):
        balance(NoLabels(), pkg)


def test_synthetic_dataset_is_reproducible_per_index(pkg):
    a = SyntheticDataset(pkg, {"ok": 5, "defect": 7}, seed=4, chunk_size=4)
    b = SyntheticDataset(pkg, 6, seed=4, chunk_size=4)
    assert len(a) == 12 and a.labels.tolist() == [0] * 5 + [1] * 7
    late_first = a[9][0]
    assert torch.equal(late_first, SyntheticDataset(pkg, {"ok": 5, "defect": 7}, seed=4, chunk_size=4)[9][0])
    assert not torch.equal(a[0][0], SyntheticDataset(pkg, {"ok": 5, "defect": 7}, seed=5, chunk_size=4)[0][0])
    assert b[0][1] == 0 and b[11][1] == 1
    with pytest.raises(IndexError):
        a[12]


def _collect(loader):
    images, labels = [], []
    for x, y in loader:
        images.append(x)
        labels.append(y)
    return torch.cat(images), torch.cat(labels)


def test_same_images_for_any_worker_count_with_fork(pkg):
    ds = SyntheticDataset(pkg, 10, seed=1, chunk_size=8)
    ref = _collect(DataLoader(ds, batch_size=4))
    forked = _collect(DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork"))
    assert_same_images(ref[0], forked[0])  # workers run one thread: last-bit float differences
    assert torch.equal(ref[1], forked[1])


class _Joint(Dataset):
    """Samples pass through the transform together with their label, as GANAugment needs."""

    def __init__(self, transform):
        self.transform = transform

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return self.transform(torch.zeros(1, 32, 32, dtype=torch.uint8), i % 2)


def test_spawn_workers_load_their_own_generator(pkg):
    ds = SyntheticDataset(pkg, 4, seed=2, chunk_size=4)
    ref = _collect(DataLoader(ds, batch_size=4))
    spawned = _collect(DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="spawn"))
    assert_same_images(ref[0], spawned[0])
    joint = _Joint(v2.Compose([GANAugment(pkg, p=0.5)]))

    def run(context):
        loader = DataLoader(joint, batch_size=4, num_workers=2, multiprocessing_context=context,
                            generator=torch.Generator().manual_seed(0))
        return _collect(loader)

    first, second = run("spawn"), run("fork")  # (fork: a second spawn costs two more interpreters)
    assert torch.equal(first[0], second[0])  # reproducible from the DataLoader's seed, however workers start
    replaced = (first[0].flatten(1) != 0).any(1)
    assert 0 < int(replaced.sum()) < 8  # p=0.5: some, not all; workers drew different coins


def test_disk_bank_makes_later_runs_free(pkg, tmp_path, monkeypatch):
    first = SyntheticDataset(pkg, 5, seed=0, cache=tmp_path / "bank", chunk_size=4)
    images = first.images()
    folder = next((tmp_path / "bank").iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["chunk_000000.safetensors", "chunk_000001.safetensors",
                                                        "chunk_000002.safetensors", "manifest.json"]
    import ganaug.transforms.synthetic as S

    monkeypatch.setattr(S, "generate_fitted", lambda *a, **k: (_ for _ in ()).throw(AssertionError("generated")))
    again = SyntheticDataset(pkg, 5, seed=0, cache=tmp_path / "bank", chunk_size=4)
    assert torch.equal(again.images(), images)
    other = SyntheticDataset(pkg, 5, seed=1, cache=tmp_path / "bank", chunk_size=4)  # another bank folder
    with pytest.raises(AssertionError, match="generated"):
        other.images()


def test_quality_gate_reports_acceptance(pkg):
    from ganaug.eval import FitConfig, train_reference_classifier

    g = ganaug.load_generator(pkg)
    fake = LabelledImages(g.generate([0, 1] * 20, seed=0), torch.tensor([0, 1] * 20), g.class_names)
    ref = train_reference_classifier(fake, fake, FitConfig(epochs=1, batch_size=8))
    everything = SyntheticDataset(pkg, 4, filter="reference", reference=ref, threshold=0.0)
    everything.images()
    assert all(r["acceptance_rate"] == 1.0 for r in everything.filter_report().values())
    nothing = SyntheticDataset(pkg, 4, filter="reference", reference=ref, threshold=1.01, max_tries=3)
    nothing.images()
    report = nothing.filter_report()
    assert report["ok"] == {"tried": 12, "accepted": 0, "acceptance_rate": 0.0, "kept_after_max_tries": 4}
    with pytest.raises(GanaugError, match="needs reference="):
        SyntheticDataset(pkg, 2, filter="reference")


def test_default_label_follows_torchvisions_label_like_key_rule():
    from ganaug.transforms import default_label

    img = torch.zeros(1, 8, 8, dtype=torch.uint8)
    assert default_label((img, 3)) == 3
    assert default_label((img, {"boxes": None, "label": 2})) == 2
    assert default_label({"image": img, "Labels": 1, "label_smoothing": 0.1}) == 1  # 'labels' wins
    assert default_label({"image": img, "class_label": 4}) == 4
    for bad in [{"image": img}, (img, {"boxes": None}), img]:
        with pytest.raises(GanaugError, match="could not find the sample's label"):
            default_label(bad)
