"""Tiny ImageNet from its official folder (docs/datasets.md); the labelled ``val`` split is the test split.

Layout under ``dataset.root`` (or ``dataset.root`` being ``tiny-imagenet-200`` itself)::

    tiny-imagenet-200/wnids.txt                      one wnid per line (NOT sorted)
    tiny-imagenet-200/words.txt                      wnid<TAB>names (class names; optional)
    tiny-imagenet-200/train/<wnid>/images/*.JPEG     training images of that class
    tiny-imagenet-200/val/images/val_<k>.JPEG
    tiny-imagenet-200/val/val_annotations.txt        file<TAB>wnid<TAB>x<TAB>y<TAB>w<TAB>h

Class index = position of the wnid in the *sorted* wnid list (torchvision's
ImageFolder convention); the number of classes is what wnids.txt lists.
Grayscale JPEGs (a few hundred in the real set) are converted to 3 channels.

* ``dataset.image_size <= 64``: every image is decoded once into a uint8
  (N, 3, 64, 64) tensor (resized to ``image_size`` if smaller) and augmented on
  the device (random crop with ``crop_padding`` zero padding, flip). The
  decoded tensors are cached (``dataset.cache``) in ``dataset.cache_dir``
  (default ``<tiny-imagenet-200>/.gsm-cache``), keyed by the list of files with
  their sizes and modification times. A dry run reads a valid cache and writes none.
* above 64 (Table II uses 224): a :class:`~gsm.data.FileSplit` read by
  DataLoader workers: resize to ``image_size``, random crop with zero padding
  and flip for training (``dataset.train_crop: pad``), resize only for testing.
  ``train_crop: inception``, ``color_jitter: 0.4``, ``lighting: 0.1`` and
  ``interpolation: bicubic`` give the authors' release pipeline
  (datasets/tinyimagenet.lua:84-108; its test ``t.Scale`` + ``t.CenterCrop``
  is the plain resize on these square 64x64 images).

Both use the ImageNet mean/std (the backbone is ImageNet-pretrained).
``crop_padding`` is in pixels at 64x64 and scales with ``image_size``;
``pad_mode: reflect`` pads by reflection instead of zeros (both paths).
The JPEG-only keys (``train_crop: inception``, ``color_jitter``, ``lighting``,
``interpolation: bicubic``) are a ConfigError at ``image_size <= 64``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from gsm.data.types import DatasetInfo, DatasetSplits, FileSplit, FileTransforms, TensorSplit
from gsm.data.files import (
    ImageFiles, augment_options, setting, dataset_root, decode_all, file_list_key, find_missing, log,
    missing_message, read_lines, report_missing, require, resize_uint8,
)
from gsm.settings import DATASET
from gsm.values import PAD_MODES, TINY_CROPS
from gsm.errors import ConfigError, DataError

TITLE = "Tiny ImageNet"
FOLDER = "tiny-imagenet-200"
NATIVE = 64
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
HOW_TO_GET = ("gsm cannot download Tiny ImageNet. Get tiny-imagenet-200.zip from "
              "http://cs231n.stanford.edu/tiny-imagenet-200.zip (CS231n, Stanford) and unzip it into dataset.root.")
LAYOUT = f"""  {FOLDER}/wnids.txt
  {FOLDER}/words.txt
  {FOLDER}/train/<wnid>/images/<wnid>_<k>.JPEG
  {FOLDER}/val/images/val_<k>.JPEG
  {FOLDER}/val/val_annotations.txt   (file<TAB>wnid<TAB>x<TAB>y<TAB>w<TAB>h)"""
HOLDS = f"{FOLDER}/ (wnids.txt, words.txt, train/, val/), or the folder {FOLDER} itself (unzip tiny-imagenet-200.zip first)"


def _locate(cfg: Mapping[str, Any]) -> tuple[Path, Path]:
    root = dataset_root(cfg, TITLE, HOW_TO_GET, LAYOUT, HOLDS)
    for folder in (root / FOLDER, root):
        if (folder / "wnids.txt").is_file():
            return root, folder
    raise DataError(missing_message(TITLE, root, root / FOLDER / "wnids.txt", HOW_TO_GET, LAYOUT))


def _class_names(folder: Path, wnids: list[str]) -> list[str]:
    words_path = folder / "words.txt"
    if not words_path.is_file():
        log.warning("%s: %s not found; class names are the wnids", TITLE, words_path)
        return list(wnids)
    words: dict[str, str] = {}
    for line in read_lines_lenient(words_path):
        wnid, _, text = line.partition("\t")
        words[wnid.strip()] = text.strip()
    return [words.get(w) or w for w in wnids]


def read_lines_lenient(path: Path) -> list[str]:
    """words.txt is a lookup table, not aligned with anything: blank lines are harmless there."""
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, OSError) as exc:
        raise DataError(f"cannot read {path} as text: {exc}") from None


def index(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Files and labels of both splits (no decoding): the loader's view of the folder."""
    root, folder = _locate(cfg)
    wnids_path = folder / "wnids.txt"
    listed = read_lines(wnids_path)
    if not listed:
        raise DataError(f"{wnids_path} lists no wnids")
    if len(set(listed)) != len(listed):
        dup = next(w for w in listed if listed.count(w) > 1)
        raise DataError(f"{wnids_path} lists wnid {dup} more than once")
    wnids = sorted(listed)
    label_of = {w: i for i, w in enumerate(wnids)}

    train_paths: list[Path] = []
    train_labels: list[int] = []
    for wnid in wnids:
        img_dir = require(folder / "train" / wnid / "images", root, TITLE, HOW_TO_GET, LAYOUT, is_dir=True)
        files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{TITLE}: {img_dir} holds no images (class {wnid} of {wnids_path})")
        train_paths += files
        train_labels += [label_of[wnid]] * len(files)

    ann_path = require(folder / "val" / "val_annotations.txt", root, TITLE, HOW_TO_GET, LAYOUT)
    val_dir = require(folder / "val" / "images", root, TITLE, HOW_TO_GET, LAYOUT, is_dir=True)
    val_paths: list[Path] = []
    val_labels: list[int] = []
    for i, line in enumerate(read_lines(ann_path)):
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{ann_path}: line {i + 1} is not 'file<TAB>wnid<TAB>x<TAB>y<TAB>w<TAB>h': {line!r}")
        name, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in label_of:
            raise DataError(f"{ann_path}: line {i + 1}: wnid {wnid!r} is not listed in {wnids_path}")
        val_paths.append(val_dir / name)
        val_labels.append(label_of[wnid])

    on_missing = setting(cfg, "on_missing", "error", ("skip", "error"))
    absent = find_missing(val_paths)
    report_missing(TITLE, {"val": ([p for p, a in zip(val_paths, absent) if a], len(val_paths))}, on_missing, val_dir)
    if any(absent):
        val_paths = [p for p, a in zip(val_paths, absent) if not a]
        val_labels = [y for y, a in zip(val_labels, absent) if not a]
    return {
        "root": root, "folder": folder, "wnids": wnids, "class_names": _class_names(folder, wnids),
        "train": (train_paths, torch.tensor(train_labels, dtype=torch.long)),
        "test": (val_paths, torch.tensor(val_labels, dtype=torch.long)),
        "missing": int(sum(absent)),
    }


def _cache_dir(cfg: Mapping[str, Any], folder: Path) -> Path | None:
    if not DATASET.check("cache", cfg.get("cache", True)):
        return None
    raw = DATASET.check("cache_dir", cfg.get("cache_dir"))
    return Path(str(raw)).expanduser() if raw not in (None, "") else folder / ".gsm-cache"


def _check_options(size: int, crop: str, pad_mode: str, padding: int, opts: Mapping[str, Any]) -> None:
    """The keys that only the JPEG path (image_size > 64) implements, and pad_mode's limits."""
    if size <= NATIVE:
        defaults = {"train_crop": ("pad", crop), "color_jitter": (0.0, opts["color_jitter"]),
                    "lighting": (0.0, opts["lighting"]), "interpolation": ("bilinear", opts["interpolation"])}
        for key, (default, value) in defaults.items():
            if value != default:
                raise ConfigError(f"dataset.{key}={value} needs the JPEG path of dataset=tiny_imagenet "
                                  f"(dataset.image_size > {NATIVE}; got image_size={size}); at image_size <= {NATIVE} "
                                  f"the valid value is {default} (images are decoded once and augmented on the device "
                                  "by random crop and flip only)")
    if crop == "inception" and pad_mode != "zeros":
        raise ConfigError("dataset.pad_mode=reflect applies to dataset.train_crop=pad; with train_crop=inception "
                          "there is no padding (valid: pad_mode=zeros)")
    if pad_mode == "reflect" and padding >= size:
        raise ConfigError(f"dataset.pad_mode=reflect needs a padding smaller than the image: dataset.crop_padding "
                          f"gives {padding} px at image_size={size}")


def _augmentation(cfg: Mapping[str, Any]) -> tuple[int, int, bool, str, str, dict[str, Any]]:
    """(image_size, crop padding in pixels, flip, train_crop, pad_mode, augment_options) of the config, checked."""
    size = INFO.image_size(cfg.get("image_size"))
    padding = INFO.crop_padding(DATASET.check("crop_padding", cfg.get("crop_padding", 8)), size)
    crop = setting(cfg, "train_crop", "pad", TINY_CROPS, "for dataset=tiny_imagenet")
    pad_mode = setting(cfg, "pad_mode", "zeros", PAD_MODES, "for dataset=tiny_imagenet")
    opts = augment_options(cfg)
    _check_options(size, crop, pad_mode, padding, opts)
    return size, padding, DATASET.check("flip", cfg.get("flip", True)), crop, pad_mode, opts


def file_transforms(cfg: Mapping[str, Any], info: DatasetInfo | None = None) -> FileTransforms:
    """The train and test transforms of the JPEG path (image_size > 64): train_crop=pad (the release's padded
    random crop) or inception, then flip, colour jitter and lighting as configured."""
    # torchvision's transforms only where they are used: importing torchvision takes seconds
    from gsm.data.transforms import eval_transform, inception_train, pad_crop_train

    size, padding, flip, crop, pad_mode, opts = _augmentation(cfg)
    if crop == "inception":
        train_tf = inception_train(size, flip, **opts)
    else:
        train_tf = pad_crop_train(size, padding, flip, pad_mode=pad_mode, **opts)
    return FileTransforms(train_tf, None, eval_transform(size, interpolation=opts["interpolation"]), None)


def load_tiny_imagenet(cfg: Mapping[str, Any], *, write: bool = True) -> DatasetSplits:
    """``write=False`` (a dry run): a valid cache is read, none is written (gsm.data.load_splits)."""
    from gsm.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    idx = index(cfg)
    size, padding, flip, *_ = _augmentation(cfg)
    notes = {"folder": str(idx["folder"]), "missing_skipped": idx["missing"]}
    common = dict(name=INFO.name, num_classes=len(idx["wnids"]), multilabel=False,
                  class_names=idx["class_names"], in_channels=INFO.in_channels, image_size=size,
                  mean=IMAGENET_MEAN, std=IMAGENET_STD, flip=flip, notes=notes)

    if not INFO.reads_files(size):
        cache_dir = _cache_dir(cfg, idx["folder"])

        def tensor_split(split: str) -> TensorSplit:
            paths, targets = idx[split]
            cache_file = key = None
            if cache_dir is not None:
                key = file_list_key(paths, idx["folder"], extra=f"tiny_imagenet|{NATIVE}")
                cache_file = cache_dir / f"tiny_imagenet-{split}-{NATIVE}px-{key[:16]}.pt"
            images = decode_all(paths, NATIVE, cache_file=cache_file, key=key or "", write=write)
            return TensorSplit(resize_uint8(images, size), targets)

        return DatasetSplits(train=tensor_split("train"), test=tensor_split("test"), crop_padding=padding, **common)

    train_paths, train_y = idx["train"]
    test_paths, test_y = idx["test"]
    tf = file_transforms(cfg)
    train = FileSplit(ImageFiles(train_paths, train_y, tf.train, tf.train_min_side), train_y,
                      ImageFiles(train_paths, train_y, tf.test, tf.test_min_side))
    test = FileSplit(ImageFiles(test_paths, test_y, tf.test, tf.test_min_side), test_y)
    return DatasetSplits(train=train, test=test, **common)


INFO = DatasetInfo(
    name="tiny_imagenet", display_name=TITLE, load=load_tiny_imagenet, in_channels=3, num_classes=200,
    multilabel=False, train_size=100_000, test_size=10_000, default_image_size=NATIVE,
    files_above=NATIVE, file_size=(NATIVE, NATIVE), padding_at=NATIVE, pad_modes=PAD_MODES,
    file_transforms=file_transforms,
)
DATASET_INFO = (INFO,)
