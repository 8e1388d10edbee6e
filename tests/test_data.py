import gzip
import io
import tarfile

import pytest
import torch
from PIL import Image

from ganaug import GanaugError, load_images
from ganaug.data import FASHION_MNIST_CLASSES, LabelledImages, load_fashion_mnist, load_split
from ganaug.data.loaders import class_of_filename, has_split

from .conftest import make_class_folders


def test_class_folders_are_resized_and_labelled(class_folders):
    d = load_images(class_folders, image_size=32)
    assert d.images.shape == (6, 3, 32, 32) and d.images.dtype == torch.uint8
    assert d.class_names == ["cat", "dog"] and d.class_counts() == [3, 3]
    # classes were drawn with different brightness; labels must follow the folders
    assert d.images[d.labels == 1].float().mean() > d.images[d.labels == 0].float().mean() + 50
    img, label = d[0]
    assert img.shape == (3, 32, 32) and isinstance(label, int)


def test_the_size_the_images_had_is_kept_and_said(tmp_path, fmnist_dir):
    make_class_folders(tmp_path / "big", classes=("a", "b"), n=3, size=(300, 200))
    big = load_images(tmp_path / "big", image_size=32)
    assert big.native_size == 200 and big.subset(torch.tensor([0, 1])).native_size == 200
    assert "median shorter side as stored 200 px, shrunk 6.2x" in big.size_note()
    assert "the next size up, 64 px, has 4x the pixels" in big.size_note()
    small = load_images(make_class_folders(tmp_path / "small", n=2), image_size=32)  # 20 x 24 px
    assert small.native_size == 20 and "enlarged 1.60x" in small.size_note()
    assert load_fashion_mnist(fmnist_dir, split="test", max_per_class=1).native_size == 28


def test_grey_folders_stay_grey_and_channels_can_be_forced(tmp_path):
    root = make_class_folders(tmp_path / "g", mode="L")
    assert load_images(root).channels == 1
    assert load_images(root, channels=3).channels == 3
    rgb = make_class_folders(tmp_path / "c", mode="RGB")
    assert load_images(rgb, channels=1).channels == 1


def test_split_subfolder_is_used(tmp_path):
    make_class_folders(tmp_path / "ds" / "train", n=2)
    make_class_folders(tmp_path / "ds" / "test", n=1)
    assert len(load_images(tmp_path / "ds", split="train")) == 4
    assert len(load_images(tmp_path / "ds", split="test")) == 2


def test_unreadable_image_is_named_in_the_error(class_folders):
    bad = class_folders / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not really a jpeg")
    with pytest.raises(GanaugError, match=r"(?s)1 image\(s\) could not be read:.*broken\.jpg.*--skip-unreadable"):
        load_images(class_folders)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        d = load_images(class_folders, skip_unreadable=True)
    assert len(d) == 6 and "broken.jpg" in d.skipped[0]


def test_truncated_png_is_reported(class_folders):
    good = (class_folders / "cat" / "0.png").read_bytes()
    (class_folders / "cat" / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(GanaugError, match="cut.png"):
        load_images(class_folders)


def test_empty_inputs_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GanaugError, match="no class folders"):
        load_images(tmp_path / "empty")
    (tmp_path / "nofiles" / "cat").mkdir(parents=True)
    with pytest.raises(GanaugError, match="has no images"):
        load_images(tmp_path / "nofiles")
    with pytest.raises(GanaugError, match="does not exist"):
        load_images(tmp_path / "missing")


def test_fashion_mnist_idx(fmnist_dir):
    d = load_fashion_mnist(fmnist_dir, split="test", image_size=32, max_per_class=5)
    assert d.images.shape == (50, 1, 32, 32) and d.class_counts() == [5] * 10
    assert d.class_names == FASHION_MNIST_CLASSES
    assert load_images(fmnist_dir, split="test", max_per_class=2).class_names == FASHION_MNIST_CLASSES


def test_corrupt_idx_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 20))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 4))
    with pytest.raises(GanaugError, match="truncated|IDX"):
        load_images(tmp_path)


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (value, value, value)).save(buf, "PNG")
    return buf.getvalue()


def test_tar_archive_with_splits(tmp_path):
    path = tmp_path / "set.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for split, n in (("train", 3), ("test", 1)):
            for c, v in (("plane", 10), ("ship", 200)):
                for i in range(n):
                    data = _png(v)
                    info = tarfile.TarInfo(f"{split}/{c}/{i}.png")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    d = load_images(path, split="train")
    assert len(d) == 6 and d.class_names == ["plane", "ship"] and d.channels == 3
    assert len(load_images(tmp_path, split="test")) == 2  # a folder holding one archive
    with pytest.raises(GanaugError, match="splits"):
        load_images(path, split="val")
    assert has_split(path, "test") and has_split(tmp_path, "train") and not has_split(path, "val")


def test_classes_from_file_names_as_in_neu_det(tmp_path):
    # NEU-DET's layout: IMAGES/<class>_<n>.jpg and a few more under Validation_Images/
    names = [("IMAGES", "rolled-in_scale", 2, 40), ("IMAGES", "scratches", 3, 200),
             ("Validation_Images", "scratches", 1, 200)]
    path = tmp_path / "neu.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for folder, c, n, v in names:
            for i in range(n):
                data = _png(v)
                info = tarfile.TarInfo(f"{folder}/{c}_{i + 10 * (folder != 'IMAGES')}.png")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    d = load_images(path, class_from="filename", image_size=32)
    assert d.class_names == ["rolled-in_scale", "scratches"] and d.class_counts() == [2, 4]
    assert "classes from file names" in d.source and not has_split(path, "test")
    # a folder holding one archive
    assert load_images(tmp_path, class_from="filename", max_per_class=1).class_counts() == [1, 1]
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, c in enumerate(("crack", "crack", "pit")):
        (flat / f"{c}_{i}.png").write_bytes(_png(50 * i))
    assert load_images(flat, class_from="filename").class_counts() == [2, 1]
    assert [class_of_filename(n) for n in ("a/scratches_12.jpg", "crack-3.png", "defect (7).png", "plain.png")] == \
        ["scratches", "crack", "defect", "plain"]
    with pytest.raises(GanaugError, match="class_from must be one of"):
        load_images(flat, class_from="name")


def test_a_messy_photo_folder_loads_and_trains(tmp_path):
    """Photos as users have them: four classes, mixed formats and modes, '.jpg' files that are PNG
    or GIF inside, upper-case extensions, a 4752x3168 camera image, and files that are not images."""
    from ganaug import TrainConfig, make_config, train

    root = tmp_path / "weather"
    rng = torch.Generator().manual_seed(0)

    def photo(size, mode="RGB"):
        x = torch.randint(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3), generator=rng, dtype=torch.uint8)
        return Image.fromarray(x.numpy()).resize(size).convert(mode)

    files = {
        "cloudy": [("a.jpg", photo((4752, 3168)), "JPEG"), ("b.JPG", photo((640, 480)), "JPEG"),
                   ("c.jpeg", photo((300, 500), "L"), "JPEG")],
        "rain": [("png_inside.jpg", photo((200, 150), "RGBA"), "PNG"), ("d.png", photo((90, 60), "P"), "PNG"),
                 ("e.webp", photo((128, 128)), "WEBP")],
        "shine": [("gif_inside.jpg", photo((120, 80), "P"), "GIF"), ("f.bmp", photo((64, 64)), "BMP"),
                  ("g.jpg", photo((1000, 200), "CMYK"), "JPEG")],
        "sunrise": [("h.png", photo((50, 400), "LA"), "PNG"), ("i.jpg", photo((333, 222)), "JPEG"),
                    ("j.png", photo((31, 33), "I;16"), "PNG")],
    }
    for cls, items in files.items():
        (root / cls).mkdir(parents=True)
        for name, im, fmt in items:
            im.save(root / cls / name, fmt)
    (root / "rain" / "notes.txt").write_text("not an image")
    (root / "shine" / ".DS_Store").write_bytes(b"\0\1")
    (root / "Thumbs.db").write_bytes(b"\0")

    data = load_images(root, image_size=32)
    assert data.class_names == ["cloudy", "rain", "shine", "sunrise"] and data.class_counts() == [3, 3, 3, 3]
    assert data.images.shape == (12, 3, 32, 32)  # grey, palette, alpha and 16-bit all become RGB
    assert data.images.float().std() > 20  # decoded pictures, not blank fallbacks
    cfg = make_config("sngan", 4, data.class_names, image_size=32, channels=3, g_width=4, d_width=8)
    run = train(data, cfg, TrainConfig(steps=2, batch_size=4, checkpoint_every=2, sample_every=2, log_every=1,
                                       device="cpu"), tmp_path / "run", progress=False)
    assert (run / "checkpoint.safetensors").is_file()


def test_data_without_splits_gets_one_stratified_test_part_for_every_command(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for c, n in (("crack", 10), ("pit", 5)):
        for i in range(n):
            (flat / f"{c}_{i}.png").write_bytes(_png(10 * i + 150 * (c == "pit")))
    kw = dict(class_from="filename", test_fraction=0.2)
    train, test = load_split(flat, split="train", **kw), load_split(flat, split="test", **kw)
    assert train.class_counts() == [8, 4] and test.class_counts() == [2, 1]
    assert "stratified test part, 0.2" in test.source
    # the two parts are disjoint and together are the whole set
    whole = load_images(flat, class_from="filename")
    seen = {bytes(x.numpy().tobytes()) for x in torch.cat([train.images, test.images])}
    assert len(seen) == len(whole) == 15
    # the same images whichever command carves them, and the benchmarks' carve agrees
    from ganaug.data import carve_test
    assert torch.equal(carve_test(whole, 0.2)[1].images, test.images)
    assert torch.equal(load_split(flat, split="test", **kw).images, test.images)
    # no test fraction: load_images as before, but a missing test split is an error, not the whole set
    assert len(load_split(flat, class_from="filename")) == 15
    with pytest.raises(GanaugError, match="no 'test' split of its own"):
        load_split(flat, split="test", class_from="filename")
    make_class_folders(tmp_path / "folders", n=2)
    with pytest.raises(GanaugError, match="--test-fraction 0.2"):
        load_split(tmp_path / "folders", split="test")
    # data with its own test split uses it, and refuses a test fraction
    make_class_folders(tmp_path / "split" / "train", n=2)
    make_class_folders(tmp_path / "split" / "test", n=3)
    assert len(load_split(tmp_path / "split", split="test")) == 6
    with pytest.raises(GanaugError, match="has a test split of its own"):
        load_split(tmp_path / "split", split="test", test_fraction=0.2)
    with pytest.raises(GanaugError, match="between 0 and 1"):
        load_split(flat, split="test", class_from="filename", test_fraction=1.5)
    with pytest.raises(GanaugError, match="'train' and 'test'"):
        load_split(flat, split="val", **kw)


def test_select_classes_keeps_the_named_classes_in_the_order_given():
    images = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 1, 4, 4).contiguous()
    data = LabelledImages(images, torch.tensor([0, 1, 2, 0, 1, 2]), ["a", "b", "c"], "test")
    part = data.select_classes(["c", "a"])
    assert part.class_names == ["c", "a"] and part.labels.tolist() == [1, 0, 1, 0]
    assert part.images[:, 0, 0, 0].tolist() == [0, 2, 3, 5]  # the original order of the images
    # records made from the part (a reference classifier's trained_on) must say which classes it holds
    assert part.source == "test (classes c, a)"
    assert data.select_classes(["a", "b", "c"]).source == "test"
    with pytest.raises(GanaugError, match=r"classes \['d'\] are not among"):
        data.select_classes(["d"])
