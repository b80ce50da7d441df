"""Datasets (config group ``dataset``) and the loaders the trainer iterates.

The shared data types live in :mod:`gsm.data.types` (so dataset modules import them without a cycle).

A dataset is one module of this package plus its configs (``gsm/configs/dataset/<name>.yaml`` and the
recipes under ``dataset_model/``): the module declares ``DATASET_INFO``, a tuple of
:class:`~gsm.data.types.DatasetInfo` (name, display name, loader, channels, classes, multi-label, split
sizes, input size ...), and :data:`DATASETS` collects every module's on first use. Everything else reads
the facts there: the config checks, the estimate, the tables, the figures and ``gsm-tables status``.

A loader returns a :class:`DatasetSplits`: per split either uint8
images in memory (:class:`TensorSplit`, batched on the device) or a
file-backed torch ``Dataset`` (:class:`FileSplit`, read by DataLoader workers).
:func:`build_data` applies ``dataset.subset`` and wraps both in loaders.
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from gsm.data.loaders import DeviceLoader, FileLoader, Placement
from gsm.data.types import DatasetInfo, DatasetSplits, FileSplit, Split, TensorSplit
from gsm.errors import DataError
from gsm.settings import DATASET
from gsm.values import registered


@dataclass
class DataBundle:
    splits: DatasetSplits
    train: DeviceLoader | FileLoader
    test: DeviceLoader | FileLoader
    train_eval: DeviceLoader | FileLoader | None  # train images without augmentation (analysis)

    @property
    def input_shape(self) -> list[int]:
        return [self.splits.in_channels, self.splits.image_size, self.splits.image_size]


# --------------------------------------------------------------------------- the registry


# The datasets' helpers: no DATASET_INFO of their own, and not imported to look for one (transforms imports
# torchvision, which takes seconds that a run on in-memory data does not need).
HELPER_MODULES = frozenset({"files", "fixtures", "loaders", "transforms", "types"})


def collect_datasets() -> dict[str, DatasetInfo]:
    """Every ``DATASET_INFO`` declared by a module of this package (but :data:`HELPER_MODULES`), by name
    (sorted). Imports the modules."""
    found: dict[str, DatasetInfo] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name in HELPER_MODULES:
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for info in getattr(module, "DATASET_INFO", ()):
            if not isinstance(info, DatasetInfo):
                raise TypeError(f"{module.__name__}.DATASET_INFO holds {info!r}, not a DatasetInfo")
            if info.name in found:
                raise ValueError(f"dataset {info.name!r} is declared twice ({module.__name__} and another module)")
            found[info.name] = info
    return dict(sorted(found.items()))


class _Registry(Mapping[str, DatasetInfo]):
    """name -> :class:`DatasetInfo`, collected from the dataset modules at the first look-up (so importing
    ``gsm.data`` does not import every dataset module and its image libraries)."""

    def __init__(self) -> None:
        self._infos: dict[str, DatasetInfo] | None = None

    def _all(self) -> dict[str, DatasetInfo]:
        if self._infos is None:
            self._infos = collect_datasets()
        return self._infos

    def __getitem__(self, name: str) -> DatasetInfo:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"DATASETS({', '.join(self)})"


class _DisplayNames(Mapping[str, str]):
    """name -> display name ("cifar10" -> "CIFAR-10"), read from :data:`DATASETS`."""

    def __getitem__(self, name: str) -> str:
        return DATASETS[name].display_name

    def __iter__(self) -> Iterator[str]:
        return iter(DATASETS)

    def __len__(self) -> int:
        return len(DATASETS)


DATASETS: Mapping[str, DatasetInfo] = _Registry()
"""Every dataset gsm can load, by ``dataset.name``: the facts its module declares (:class:`DatasetInfo`)."""
DATASET_NAMES: Mapping[str, str] = _DisplayNames()
"""``dataset.name`` -> the name tables, figures and status show ("cifar10" -> "CIFAR-10")."""


def dataset_loader(name: str) -> Callable[..., DatasetSplits]:
    """The loader of ``dataset.name=name``: ``load(cfg, *, write=True)`` (``write=False`` reads only, for a dry
    run: no decoded-image cache, no download) returns DatasetSplits."""
    return DATASETS[registered("dataset", name, DATASETS)].load


def _subset(split: Split, cap: int, seed: int = 0) -> Split:
    if cap >= len(split):
        return split
    keep = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:cap].sort().values
    if isinstance(split, TensorSplit):
        return TensorSplit(split.images[keep], split.targets[keep])
    keep_list = keep.tolist()
    eval_ds = Subset(split.eval_dataset, keep_list) if split.eval_dataset is not None else None
    return FileSplit(Subset(split.dataset, keep_list), split.targets[keep], eval_ds)


def load_splits(cfg: Mapping[str, Any], *, write: bool = True) -> DatasetSplits:
    """Load the dataset named by ``cfg['name']``, apply ``dataset.subset`` and fingerprint the result.

    ``write=False`` (the trainer's dry run, which "writes nothing"): nothing is written anywhere, neither
    Tiny ImageNet's decoded-image cache (a valid one is still read) nor a CIFAR download (missing files are
    a DataError instead).
    """
    splits = dataset_loader(cfg["name"])(cfg, write=write)
    cap = DATASET.check("subset", cfg.get("subset"))  # the key's one rule (gsm.settings), as gsm.config checks it
    if cap is not None:
        splits.train, splits.test = _subset(splits.train, cap), _subset(splits.test, cap)
    for split_name in ("train", "test"):
        if len(getattr(splits, split_name)) == 0:
            raise DataError(f"dataset={splits.name}: the {split_name} split is empty (dataset.root={cfg.get('root')!r})")
    splits.fingerprint = data_fingerprint(splits)
    root = cfg.get("root")
    splits.root = str(Path(str(root)).expanduser().resolve()) if root not in (None, "") else None
    return splits


# Above this many bytes of in-memory images, the fingerprint hashes an evenly spaced sample of images
# (still every label and every file name): cheap enough to check on every rerun.
_FULL_HASH_BYTES = 256 << 20


def _split_digest(split: Split) -> str:
    h = hashlib.sha1()
    h.update(str(split.targets.dtype).encode() + str(tuple(split.targets.shape)).encode())
    h.update(split.targets.contiguous().numpy().tobytes())
    if isinstance(split, TensorSplit):
        images = split.images
        h.update(str(tuple(images.shape)).encode())
        if images.numel() > _FULL_HASH_BYTES:
            step = -(-images.numel() // _FULL_HASH_BYTES)
            images = images[::step]
        h.update(images.contiguous().numpy().tobytes())
    else:
        for name in _file_names(split.dataset):
            h.update(name.encode() + b"\0")
    return h.hexdigest()[:16]


def _file_names(dataset: Dataset) -> list[str]:
    """The image files of a file-backed split, as ``<folder>/<file>`` (independent of dataset.root)."""
    indices = None
    while isinstance(dataset, Subset):
        indices = [dataset.indices[i] for i in indices] if indices is not None else list(dataset.indices)
        dataset = dataset.dataset
    paths = getattr(dataset, "paths", None)
    if paths is None:
        return []
    if indices is not None:
        paths = [paths[i] for i in sorted(indices)]
    return ["/".join(str(p).replace("\\", "/").split("/")[-2:]) for p in paths]


def data_fingerprint(splits: DatasetSplits) -> dict[str, Any]:
    """What identifies the data a run trained and was tested on, independent of where it lies on disk:
    sample counts, classes and a hash per split of its labels and pixels (in-memory sets) or file names
    (JPEG sets; the images themselves are not read)."""
    return {
        "dataset": splits.name,
        "train_samples": len(splits.train),
        "test_samples": len(splits.test),
        "num_classes": splits.num_classes,
        "classes": hashlib.sha1("\n".join(splits.class_names).encode()).hexdigest()[:16],
        "train": _split_digest(splits.train),
        "test": _split_digest(splits.test),
    }


def fingerprint_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable list of what differs between two fingerprints (empty when they agree)."""
    labels = {"train": "train split contents", "test": "test split contents", "classes": "class names"}
    out = []
    for key in sorted(set(recorded) | set(current)):
        a, b = recorded.get(key), current.get(key)
        if a != b:
            out.append(f"{labels.get(key, key)}: {a} recorded, {b} now" if key not in labels else labels[key])
    return out


def _pad_mode(cfg: Mapping[str, Any], splits: DatasetSplits) -> str:
    """``dataset.pad_mode`` for the device loaders (the dataset modules check it against their images)."""
    from gsm.data.files import setting  # here, not at the top: gsm.data.files imports PIL, which the digits never need

    modes = DATASETS[splits.name].pad_modes
    if len(modes) > 1:
        return setting(cfg, "pad_mode", "zeros", modes, f"for dataset={splits.name}")
    others = [name for name, info in DATASETS.items() if "reflect" in info.pad_modes]
    return setting(cfg, "pad_mode", "zeros", modes, f"for dataset={splits.name} (reflect is for {', '.join(others)})")


def build_data(
    cfg: Mapping[str, Any],
    *,
    batch_size: int,
    place: Placement = Placement(),
    num_workers: int = 4,
    eval_batch_size: int | None = None,
    splits: DatasetSplits | None = None,
) -> DataBundle:
    """Loaders over ``splits`` (loaded from ``cfg`` when not given), each batch on ``place``'s device, of its shard."""
    splits = splits if splits is not None else load_splits(cfg)
    eval_bs = eval_batch_size or batch_size
    pad_mode = _pad_mode(cfg, splits)

    def make(split: Split, train: bool, dataset: Dataset | None = None) -> DeviceLoader | FileLoader:
        bs = batch_size if train else eval_bs
        if isinstance(split, TensorSplit):
            return DeviceLoader(split.images, split.targets, bs, train=train, mean=splits.mean, std=splits.std,
                                place=place, crop_padding=splits.crop_padding, flip=splits.flip, pad_mode=pad_mode)
        return FileLoader(dataset or split.dataset, bs, train=train, place=place, num_workers=num_workers)

    train = splits.train
    if isinstance(train, TensorSplit):
        train_eval = make(train, False)
    else:
        train_eval = make(train, False, train.eval_dataset) if train.eval_dataset is not None else None
    return DataBundle(splits, make(train, True), make(splits.test, False), train_eval)
