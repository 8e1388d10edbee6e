"""FreshBank: a background process keeps renewing per-class generated images that transforms and
DataLoader workers read."""

import time
from pathlib import Path

import torch

from ganaug.transforms import FreshBank, GANBatchAugment

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "pretrained" / "fashion-mnist-sngan"


def test_bank_renews_images_of_the_right_class_and_feeds_dataloader_workers():
    from ganaug.eval import ReferenceClassifier
    from ganaug.eval.classifier import predict

    with FreshBank(str(SHIPPED), per_class=16, chunk=8, threads=1) as bank:
        labels = torch.arange(10).repeat(8)
        first = bank.take(labels, list(range(80)))  # waits until every class has images
        assert first.shape == (80, 1, 32, 32)
        judge = ReferenceClassifier.load(REPO / "pretrained" / "fashion-mnist-reference-classifier")
        hits = (predict(judge.model, first)[1].argmax(1) == labels).float().mean()
        assert hits >= 0.8, f"only {hits:.0%} of the bank's images are of the class asked for"
        deadline = time.time() + 120
        while bank.stats()["images_made"] < 3 * 16 * 10 and time.time() < deadline:
            time.sleep(0.2)
        assert bank.stats()["images_made"] >= 3 * 16 * 10  # every slot rewritten since
        assert not torch.equal(bank.take(labels, list(range(80))), first)  # the same slots hold new images

        aug = GANBatchAugment(bank, p=1.0)
        data = torch.utils.data.TensorDataset(torch.zeros(32, 1, 32, 32, dtype=torch.uint8), torch.arange(32) % 10)
        loader = torch.utils.data.DataLoader(data, batch_size=8, num_workers=2,
                                             collate_fn=lambda b: aug(torch.utils.data.default_collate(b)))
        batches = list(loader)
        assert len(batches) == 4 and all(x.float().std() > 0 for x, _ in batches)
    assert not bank.alive
