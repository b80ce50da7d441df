import numpy as np
import pytest
import torch

from gsm.data import build_data, load_splits
from gsm.errors import ConfigError


def test_digits_split_is_stratified_real_data():
    s = load_splits({"name": "digits", "image_size": 16})
    assert (len(s.train), len(s.test)) == (1347, 450)
    assert s.train.images.dtype == torch.uint8 and s.train.images.shape[1:] == (1, 16, 16)
    test_counts = torch.bincount(s.test.targets, minlength=10).float()
    all_counts = test_counts + torch.bincount(s.train.targets, minlength=10)
    assert ((test_counts - 0.25 * all_counts).abs() <= 1).all()  # stratified 25 %
    assert s.train.images.float().std() > 50  # real pixels, not a blank tensor


def test_digits_mosaic_labels_are_the_digits_present():
    s = load_splits({"name": "digits_mosaic", "image_size": 16, "train_size": 200, "test_size": 50})
    assert s.multilabel and s.train.targets.shape == (200, 10)
    n_labels = s.train.targets.sum(1)
    assert n_labels.min() >= 1 and n_labels.max() <= 4
    again = load_splits({"name": "digits_mosaic", "image_size": 16, "train_size": 200, "test_size": 50})
    assert torch.equal(s.train.images, again.train.images)  # deterministic
    # a blank quadrant is exactly zero; every image has at least one non-blank quadrant
    quads = s.train.images[:, 0].unfold(1, 8, 8).unfold(2, 8, 8).reshape(200, 4, 64)
    filled = (quads.max(-1).values > 0).sum(1)
    assert (filled >= 1).all() and (filled <= n_labels.long() + 4).all()


def test_subset_and_device_loader_batches():
    data = build_data({"name": "digits", "image_size": 16, "subset": 100, "crop_padding": 2},
                      batch_size=32)
    assert data.splits.train.images.shape[0] == 100
    data.train.set_epoch(0)
    batches = list(data.train)
    assert sum(b[0].shape[0] for b in batches) == 100 and len(data.train) == 4
    x, y, idx = batches[0]
    assert x.dtype == torch.float32 and abs(x.mean().item()) < 1.0
    data.train.set_epoch(0)
    assert torch.equal(next(iter(data.train))[2], idx)  # same epoch -> same order (resume replays)
    data.train.set_epoch(1)
    assert not torch.equal(next(iter(data.train))[2], idx)
    test_idx = torch.cat([b[2] for b in data.test])
    assert torch.equal(test_idx, torch.arange(100))


def test_bad_subset():
    import pytest

    with pytest.raises(ConfigError, match="dataset.subset"):
        load_splits({"name": "digits", "subset": 0})


def test_the_shipped_split_is_sklearns_and_gives_the_same_arrays():
    """gsm/data/digits_split.npz holds scikit-learn's stratified split (the oracle: load_digits and train_test_split
    as gsm called them before the file existed), so the digits runs keep their data and their fingerprints."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from gsm.data import digits

    bunch = load_digits()
    with np.load(digits.SPLIT_FILE) as split:
        shipped = split["train"], split["test"]
    for got, want in zip(shipped, digits.sklearn_split(bunch.target)):
        np.testing.assert_array_equal(got, want)
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    want = train_test_split(images, bunch.target, test_size=0.25, stratify=bunch.target, random_state=digits.SPLIT_SEED)
    for got, expected in zip(digits._digit_split(), want):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
def test_a_digits_run_imports_neither_sklearn_nor_torchvision():
    """Both take seconds to import and a run on the embedded digits needs neither (a trainer process's start-up)."""
    import subprocess
    import sys

    code = ("import sys; from gsm.data import DATASETS, load_splits; load_splits({'name': 'digits'}); "
            "DATASETS['coco']; import gsm.train.app; print(sorted(m for m in ('sklearn', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
