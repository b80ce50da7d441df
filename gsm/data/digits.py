"""Embedded offline datasets built from scikit-learn's bundled handwritten digits (docs/datasets.md).

* ``digits``: the 1,797 real 8×8 digits (10 classes), a fixed stratified
  75/25 train/test split (seed 0, 1,347 / 450 images), upsampled to
  ``dataset.image_size``.
* ``digits_mosaic``: a deterministic multi-label set: 2×2 grids whose tiles
  are 1–4 digits (the rest blank) drawn from the same split, so test mosaics
  only contain test digits; labels = the digits present.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gsm.settings import DATASET
from gsm.data.types import DatasetInfo, DatasetSplits, TensorSplit

CLASS_NAMES = [str(d) for d in range(10)]
SPLIT_SEED = 0
SPLIT_FILE = Path(__file__).with_name("digits_split.npz")  # the train / test indices (sklearn_split), in order
MOSAIC_SEED = 1234


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8×8 digits (values 0–16) and their labels, as scikit-learn ships them: the file that
    ``sklearn.datasets.load_digits`` reads, read here without importing scikit-learn (which takes seconds a
    digits run does not need); ``load_digits`` itself where the file is not where it has always been."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def sklearn_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of scikit-learn's stratified 75/25 split with seed :data:`SPLIT_SEED`: how
    :data:`SPLIT_FILE` was made (``np.savez(SPLIT_FILE, train=..., test=...)``); the tests check it still is."""
    from sklearn.model_selection import train_test_split

    return tuple(train_test_split(np.arange(len(labels)), test_size=0.25, stratify=labels, random_state=SPLIT_SEED))


def _digit_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    images, labels = digit_images()
    images = np.rint(images * (255.0 / 16.0)).astype(np.uint8)  # values 0..16 -> 0..255
    with np.load(SPLIT_FILE) as split:
        train, test = split["train"], split["test"]
    return images[train], images[test], labels[train], labels[test]


def _resize(images: np.ndarray, size: int) -> Tensor:
    """uint8 (N, h, w) -> uint8 (N, 1, size, size), bilinear (antialiased when shrinking)."""
    x = torch.from_numpy(images).float()[:, None]
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


def _stats(images: Tensor) -> tuple[tuple[float], tuple[float]]:
    x = images.float() / 255.0
    return (round(x.mean().item(), 4),), (round(x.std().item(), 4),)


def load_digits(cfg: Mapping[str, Any], *, write: bool = True) -> DatasetSplits:
    size = DIGITS.image_size(cfg.get("image_size"))
    x_tr, x_te, y_tr, y_te = _digit_split()
    train = TensorSplit(_resize(x_tr, size), torch.as_tensor(y_tr, dtype=torch.long))
    test = TensorSplit(_resize(x_te, size), torch.as_tensor(y_te, dtype=torch.long))
    return _splits(DIGITS, cfg, train, test, size)


def _splits(info: DatasetInfo, cfg: Mapping[str, Any], train: TensorSplit, test: TensorSplit, size: int) -> DatasetSplits:
    """The splits of ``info`` at ``size``, normalised by the training images' statistics; no crop padding and
    no flip unless ``dataset.crop_padding`` / ``dataset.flip`` ask for them."""
    mean, std = _stats(train.images)
    return DatasetSplits(
        name=info.name, num_classes=info.num_classes, multilabel=info.multilabel, class_names=CLASS_NAMES,
        train=train, test=test, in_channels=info.in_channels, image_size=size, mean=mean, std=std,
        crop_padding=DATASET.check("crop_padding", cfg.get("crop_padding", 0)),
        flip=DATASET.check("flip", cfg.get("flip", False)),
    )


def _mosaics(digits: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """count 16×16 mosaics; each has 1–4 tiles filled with random digits of this split."""
    out = np.zeros((count, 16, 16), dtype=np.uint8)
    targets = np.zeros((count, 10), dtype=np.float32)
    n_digits = rng.integers(1, 5, size=count)
    for i in range(count):
        cells = rng.permutation(4)[: n_digits[i]]
        picks = rng.integers(0, len(digits), size=n_digits[i])
        for cell, pick in zip(cells, picks):
            r, c = divmod(int(cell), 2)
            out[i, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8] = digits[pick]
            targets[i, labels[pick]] = 1.0
    return out, targets


def load_digits_mosaic(cfg: Mapping[str, Any], *, write: bool = True) -> DatasetSplits:
    size = MOSAIC.image_size(cfg.get("image_size"))
    x_tr, x_te, y_tr, y_te = _digit_split()
    rng = np.random.default_rng(MOSAIC_SEED)
    n_train = DATASET.check("train_size", cfg.get("train_size", MOSAIC.train_size))
    n_test = DATASET.check("test_size", cfg.get("test_size", MOSAIC.test_size))
    m_tr, t_tr = _mosaics(x_tr, y_tr, n_train, rng)
    m_te, t_te = _mosaics(x_te, y_te, n_test, rng)
    train = TensorSplit(_resize(m_tr, size), torch.from_numpy(t_tr))
    test = TensorSplit(_resize(m_te, size), torch.from_numpy(t_te))
    return _splits(MOSAIC, cfg, train, test, size)


# 1,797 digits split 75/25 (stratified): 1,347 / 450. The mosaic sets' sizes are dataset.train_size / test_size.
DIGITS = DatasetInfo(name="digits", display_name="Digits", load=load_digits, in_channels=1, num_classes=10,
                     multilabel=False, train_size=1_347, test_size=450, default_image_size=32)
MOSAIC = DatasetInfo(name="digits_mosaic", display_name="Digit mosaics", load=load_digits_mosaic, in_channels=1,
                     num_classes=10, multilabel=True, train_size=2_000, test_size=600, default_image_size=32)
DATASET_INFO = (DIGITS, MOSAIC)
