import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("GANAUG_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    path = DATA_DIR / "fashion-mnist"
    if not (path / "train-images-idx3-ubyte.gz").is_file():
        raise FileNotFoundError(f"Fashion-MNIST not found at {path}; set GANAUG_DATA_DIR to the "
                                "folder holding fashion-mnist/ (the shared data folder).")
    return path


@pytest.fixture(scope="session")
def fmnist_slice(fmnist_dir):
    from ganaug.data import load_fashion_mnist

    return load_fashion_mnist(fmnist_dir, image_size=32, max_per_class=40)


def make_class_folders(root: Path, classes=("cat", "dog"), n=3, size=(20, 24), mode="RGB",
                       seed=0) -> Path:
    """Tiny class folders of random images, each class with its own mean brightness."""
    rng = np.random.default_rng(seed)
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            arr = rng.integers(0, 100, shape, dtype=np.uint8) + 100 * ci
            Image.fromarray(arr.astype(np.uint8), mode).save(root / c / f"{i}.png")
    return root


def make_package(root: Path, classes=("ok", "defect"), arch="sngan", steps=3, channels=1,
                 name="pkg", **export_kw) -> Path:
    """A tiny generator really trained for a few steps on random images, exported as a package."""
    import torch

    import ganaug
    from ganaug.data import LabelledImages

    n = 8 * len(classes)
    data = LabelledImages(torch.randint(0, 255, (n, channels, 32, 32), dtype=torch.uint8),
                          torch.arange(n) % len(classes), list(classes))
    cfg = ganaug.make_config(arch, len(classes), data.class_names, image_size=32, channels=channels,
                             g_width=8, d_width=8)
    run = ganaug.train(data, cfg, ganaug.TrainConfig(steps=steps, batch_size=4), root / f"{name}-run",
                       progress=False)
    return ganaug.export_run(run, root / name, **export_kw)


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory) -> Path:
    """One tiny generator package (classes ok/defect, grey 32 px, 3 steps) shared by the test files
    that only need some trained generator; do not modify it (copy it first)."""
    return make_package(tmp_path_factory.mktemp("tiny"))


def assert_same_images(a, b) -> None:
    """Equal up to uint8 rounding: conv kernels with other batch sizes or thread counts differ in
    the last float bits, which can move a rare pixel by 1 (never more)."""
    import torch

    assert a.shape == b.shape and a.dtype == b.dtype
    diff = (a.to(torch.int16) - b.to(torch.int16)).abs()
    assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 1e-3


@pytest.fixture
def class_folders(tmp_path) -> Path:
    return make_class_folders(tmp_path / "data")
