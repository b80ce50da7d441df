"""Datasets (config group ``dataset``) and the loaders the trainer iterates.

The shared data types live in :mod:`gsm.data.types` (so dataset modules import them without a cycle).

A dataset module returns a :class:`DatasetSplits`: per split either uint8
images in memory (:class:`TensorSplit`, batched on the device) or a
file-backed torch ``Dataset`` (:class:`FileSplit`, read by DataLoader workers).
:func:`build_data` applies ``dataset.subset`` and wraps both in loaders.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from gsm.data.loaders import DeviceLoader, FileLoader
from gsm.data.types import DatasetSplits, FileSplit, Split, TensorSplit
from gsm.errors import ConfigError, DataError


@dataclass
class DataBundle:
    splits: DatasetSplits
    train: DeviceLoader | FileLoader
    test: DeviceLoader | FileLoader
    train_eval: DeviceLoader | FileLoader | None  # train images without augmentation (analysis)

    @property
    def input_shape(self) -> list[int]:
        return [self.splits.in_channels, self.splits.image_size, self.splits.image_size]


# name -> "module:function"; a function takes the dataset config (a dict) and returns DatasetSplits.
DATASETS: dict[str, str] = {
    "digits": "gsm.data.digits:load_digits",
    "digits_mosaic": "gsm.data.digits:load_digits_mosaic",
    "cifar10": "gsm.data.cifar:load_cifar10",
    "cifar100": "gsm.data.cifar:load_cifar100",
    "tiny_imagenet": "gsm.data.tiny_imagenet:load_tiny_imagenet",
    "coco": "gsm.data.coco:load_coco",
    "nuswide": "gsm.data.nuswide:load_nuswide",
}


def dataset_loader(name: str) -> Callable[[Mapping[str, Any]], DatasetSplits]:
    if name not in DATASETS:
        raise ConfigError(f"dataset={name!r} is not a dataset; valid: {', '.join(DATASETS)}")
    module, func = DATASETS[name].split(":")
    return getattr(importlib.import_module(module), func)


def _subset(split: Split, cap: int, seed: int = 0) -> Split:
    if cap >= len(split):
        return split
    keep = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:cap].sort().values
    if isinstance(split, TensorSplit):
        return TensorSplit(split.images[keep], split.targets[keep])
    keep_list = keep.tolist()
    eval_ds = Subset(split.eval_dataset, keep_list) if split.eval_dataset is not None else None
    return FileSplit(Subset(split.dataset, keep_list), split.targets[keep], eval_ds)


def load_splits(cfg: Mapping[str, Any]) -> DatasetSplits:
    """Load the dataset named by ``cfg['name']`` and apply ``dataset.subset``."""
    splits = dataset_loader(cfg["name"])(cfg)
    cap = cfg.get("subset")
    if cap is not None:
        if int(cap) < 1:
            raise ConfigError(f"dataset.subset must be a positive number of samples per split or null (got {cap!r})")
        splits.train, splits.test = _subset(splits.train, int(cap)), _subset(splits.test, int(cap))
    for split_name in ("train", "test"):
        if len(getattr(splits, split_name)) == 0:
            raise DataError(f"dataset={splits.name}: the {split_name} split is empty (dataset.root={cfg.get('root')!r})")
    return splits


def build_data(
    cfg: Mapping[str, Any],
    *,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 4,
    eval_batch_size: int | None = None,
    channels_last: bool = False,
) -> DataBundle:
    splits = load_splits(cfg)
    eval_bs = eval_batch_size or batch_size

    def make(split: Split, train: bool, dataset: Dataset | None = None) -> DeviceLoader | FileLoader:
        common = dict(train=train, device=device, seed=seed, rank=rank, world_size=world_size, channels_last=channels_last)
        bs = batch_size if train else eval_bs
        if isinstance(split, TensorSplit):
            return DeviceLoader(
                split.images, split.targets, bs, mean=splits.mean, std=splits.std,
                crop_padding=splits.crop_padding, flip=splits.flip, **common,
            )
        return FileLoader(dataset or split.dataset, bs, num_workers=num_workers, **common)

    train = splits.train
    if isinstance(train, TensorSplit):
        train_eval = make(train, False)
    else:
        train_eval = make(train, False, train.eval_dataset) if train.eval_dataset is not None else None
    return DataBundle(splits, make(train, True), make(splits.test, False), train_eval)
