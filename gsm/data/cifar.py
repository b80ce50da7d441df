"""CIFAR-10 / CIFAR-100 from the official "python version" pickles (docs/datasets.md).

Layout under ``dataset.root`` (or ``dataset.root`` being that folder itself)::

    cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    cifar-100-python/{train, test, meta}

The official files are Python 2 pickles: loaded with ``encoding='latin1'``
their keys are ``str``, with ``encoding='bytes'`` they are ``bytes``. gsm reads
them with its own restricted unpickler (only the numpy array reconstructors
are allowed, so a tampered file cannot run code) and accepts either kind of
key, so files re-pickled under Python 3 also work. Nothing depends on the
checksums of the full files: shapes, dtypes and label ranges are validated
and a bad file is a DataError naming it. ``dataset.download: true`` fetches the
official archive through torchvision's download code (URL and MD5 from
``torchvision.datasets.CIFAR10/100``) when the folder is incomplete.

Returns uint8 (N, 3, 32, 32) tensors (augmented on the device by
:class:`~gsm.data.loaders.DeviceLoader`: 4-pixel zero padding + random 32 crop,
horizontal flip, per-channel normalisation with the standard CIFAR statistics).
``dataset.pad_mode: reflect`` pads by reflection instead, as the Wide ResNet
release trains CIFAR (szagoruyko/wide-residual-networks scripts/train_cifar.sh:9,
``randomcrop_type=reflection``; augmentation.lua:11-12).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gsm.data.types import DatasetInfo, DatasetSplits, TensorSplit
from gsm.data.files import check_not_file, resize_uint8, setting
from gsm.settings import DATASET
from gsm.values import PAD_MODES
from gsm.errors import ConfigError, DataError

# Per-channel mean / std of the 50,000 training images (pixel values in [0, 1]).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

SPECS: dict[str, dict[str, Any]] = {
    "cifar10": dict(
        title="CIFAR-10", folder="cifar-10-batches-py", num_classes=10,
        train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"], meta="batches.meta",
        label_key="labels", names_key="label_names", mean=CIFAR10_MEAN, std=CIFAR10_STD, tv="CIFAR10",
        holds="data_batch_1..5, test_batch, batches.meta",
    ),
    "cifar100": dict(
        title="CIFAR-100", folder="cifar-100-python", num_classes=100,
        train=["train"], test=["test"], meta="meta",
        label_key="fine_labels", names_key="fine_label_names", mean=CIFAR100_MEAN, std=CIFAR100_STD, tv="CIFAR100",
        holds="train, test, meta",
    ),
}

# The only globals a CIFAR pickle may reference: numpy's array/dtype reconstructors (numpy 1 and 2 module
# names) and _codecs.encode, which Python 3 protocol-2 pickles use for bytes.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


_RECONSTRUCT = np.empty(0).__reduce__()[0]


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR pickle")
        if module.startswith("numpy") and module.endswith("multiarray"):
            return _RECONSTRUCT  # the same function under numpy 1 and 2 (`numpy.core` is deprecated in 2)
        return super().find_class(module, name)


def _text(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def read_pickle(path: Path) -> dict[str, Any]:
    """Load one official CIFAR pickle; keys become ``str`` whether stored as py2 str or bytes."""
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            obj = _CifarUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"CIFAR file not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - truncated / foreign / tampered files all end up here
        raise DataError(f"{path} is not a readable CIFAR pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR pickle (expected a dict, found {type(obj).__name__})")
    return {_text(k): v for k, v in obj.items()}


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = read_pickle(path)
    for key in ("data", label_key):
        if key not in d:
            raise DataError(f"{path} has no {key!r} entry (keys: {', '.join(sorted(d))})")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be uint8 of shape (N, 3072), found {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {label_key!r} must be {data.shape[0]} integers (one per image), found {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: {label_key!r} values must be in 0..{num_classes - 1} (found {labels.min()}..{labels.max()})")
    return data, labels


def _locate(root: Path, spec: Mapping[str, Any]) -> Path | None:
    """The folder holding the pickles: root/<folder>, or root itself when the user points there."""
    for folder in (root / spec["folder"], root):
        if (folder / spec["meta"]).is_file():
            return folder
    return None


def _missing(folder: Path, spec: Mapping[str, Any]) -> list[str]:
    return [n for n in [*spec["train"], *spec["test"], spec["meta"]] if not (folder / n).is_file()]


def _download(root: Path, spec: Mapping[str, Any]) -> None:
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import download_and_extract_archive

    tv = getattr(tvd, spec["tv"])
    try:
        root.mkdir(parents=True, exist_ok=True)
        download_and_extract_archive(tv.url, str(root), filename=tv.filename, md5=tv.tgz_md5)
    except Exception as exc:  # noqa: BLE001 - URLError, checksum mismatch, disk full ...
        raise DataError(f"{spec['title']}: download of {tv.url} into {root} failed ({type(exc).__name__}: {exc}). "
                        f"Download it by hand and extract it into {root}.") from None


def _how_to_get(spec: Mapping[str, Any]) -> str:
    import torchvision.datasets as tvd

    url = getattr(tvd, spec["tv"]).url
    files = ", ".join([*spec["train"], *spec["test"], spec["meta"]])
    return (f"Set dataset.download=true to fetch it, or download {url} and extract it into dataset.root; "
            f"expected {spec['folder']}/{{{files}}} under dataset.root.")


def _holds(spec: Mapping[str, Any]) -> str:
    import torchvision.datasets as tvd

    return (f"{spec['folder']}/ ({spec['holds']}), or the folder {spec['folder']} itself "
            f"(extract {getattr(tvd, spec['tv']).filename} first)")


def load_cifar(cfg: Mapping[str, Any], name: str, *, write: bool = True) -> DatasetSplits:
    """``write=False`` (a dry run): missing files are an error even with ``dataset.download=true``."""
    spec = SPECS[name]
    raw_root = cfg.get("root")
    if raw_root in (None, ""):
        raise ConfigError(f"dataset.root is not set. {_how_to_get(spec)}")
    root = Path(str(raw_root)).expanduser()
    check_not_file(root, spec["title"], _holds(spec))
    folder = _locate(root, spec) if root.is_dir() else None
    incomplete = folder is None or bool(_missing(folder, spec))
    if incomplete and DATASET.check("download", cfg.get("download", False)):
        if not write:
            import torchvision.datasets as tvd

            raise DataError(f"{spec['title']}: not (completely) in {root}, and a dry run downloads nothing; run "
                            f"without dry_run=true to download {getattr(tvd, spec['tv']).url} (dataset.download=true)")
        _download(root, spec)
        folder = _locate(root, spec)
    if folder is None:
        where = root if not root.is_dir() else root / spec["folder"]
        raise DataError(f"{spec['title']}: {where} not found (dataset.root={root}). {_how_to_get(spec)}")
    missing = _missing(folder, spec)
    if missing:
        raise DataError(f"{spec['title']}: {folder / missing[0]} not found ({len(missing)} file(s) missing: "
                        f"{', '.join(missing)}). {_how_to_get(spec)}")

    meta_path = folder / spec["meta"]
    meta = read_pickle(meta_path)
    names = meta.get(spec["names_key"])
    if not isinstance(names, list | tuple) or len(names) != spec["num_classes"]:
        raise DataError(f"{meta_path}: {spec['names_key']!r} must list {spec['num_classes']} class names")
    class_names = [_text(n) for n in names]

    def split(files: list[str]) -> TensorSplit:
        parts = [_read_batch(folder / f, spec["label_key"], spec["num_classes"]) for f in files]
        data = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        images = torch.from_numpy(data).view(-1, 3, 32, 32)  # rows are channel-major: R(1024) G(1024) B(1024)
        return TensorSplit(resize_uint8(images, size), torch.from_numpy(labels.astype(np.int64)))

    size = INFO[name].image_size(cfg.get("image_size"))
    padding = DATASET.check("crop_padding", cfg.get("crop_padding", 4))
    if setting(cfg, "pad_mode", "zeros", PAD_MODES, f"for dataset={name}") == "reflect" and padding >= size:
        raise ConfigError(f"dataset.pad_mode=reflect needs dataset.crop_padding < dataset.image_size "
                          f"(got crop_padding={padding}, image_size={size})")
    train, test = split(spec["train"]), split(spec["test"])
    return DatasetSplits(
        name=name, num_classes=spec["num_classes"], multilabel=False, class_names=class_names, train=train, test=test,
        in_channels=INFO[name].in_channels, image_size=size, mean=spec["mean"], std=spec["std"],
        crop_padding=padding,
        flip=DATASET.check("flip", cfg.get("flip", True)),
        notes={"folder": str(folder)},
    )


def load_cifar10(cfg: Mapping[str, Any], *, write: bool = True) -> DatasetSplits:
    return load_cifar(cfg, "cifar10", write=write)


def load_cifar100(cfg: Mapping[str, Any], *, write: bool = True) -> DatasetSplits:
    return load_cifar(cfg, "cifar100", write=write)


INFO = {name: DatasetInfo(
    name=name, display_name=spec["title"], load=load, in_channels=3, num_classes=spec["num_classes"],
    multilabel=False, train_size=50_000, test_size=10_000, default_image_size=32, pad_modes=PAD_MODES,
) for (name, spec), load in zip(SPECS.items(), (load_cifar10, load_cifar100))}
DATASET_INFO = tuple(INFO.values())
