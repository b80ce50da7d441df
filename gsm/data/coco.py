"""MS COCO 2014 as a multi-label set (80 objects), read with pycocotools (docs/datasets.md).

Layout under ``dataset.root``::

    annotations/instances_train2014.json
    annotations/instances_val2014.json
    train2014/COCO_train2014_%012d.jpg
    val2014/COCO_val2014_%012d.jpg

train2014 is the training split, val2014 the test split (the paper's
protocol). An image's labels are the categories of its instance annotations
(crowd annotations included). The 80 category ids (1..90, with gaps) map to
0..79 in ascending id order whatever order the file lists them in; class names
come from the categories. Images with no annotation are dropped
(``dataset.drop_unlabeled``, default true: 82,081 / 40,137 images on the real
files). An annotation whose category id or image id the file does not define
is a DataError naming the file. File names come from each image's
``file_name`` field. Images are read by DataLoader workers with the docs/paper-notes.md D19–D21
multi-label pipelines (:mod:`gsm.data.transforms`); ``dataset.train_crop: resize``,
``color_jitter: 0.4``, ``lighting: 0.1`` and ``interpolation: bicubic`` give the
authors' release pipeline (datasets/coco.lua:82-102).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from gsm.data.files import multilabel_file_splits, multilabel_transforms
from gsm.data.types import DatasetInfo, DatasetSplits
from gsm.data.files import (
    setting, dataset_root, find_missing, account_for_missing, require,
)
from gsm.settings import DATASET
from gsm.errors import DataError

TITLE = "MS COCO 2014"
SPLITS = {"train": "train2014", "test": "val2014"}
HOW_TO_GET = ("gsm cannot download MS COCO. From https://cocodataset.org/#download get 2014 Train images "
              "(http://images.cocodataset.org/zips/train2014.zip), 2014 Val images (.../zips/val2014.zip) and "
              "2014 Train/Val annotations (http://images.cocodataset.org/annotations/annotations_trainval2014.zip), "
              "and unzip all three into dataset.root.")
LAYOUT = """  annotations/instances_train2014.json
  annotations/instances_val2014.json
  train2014/COCO_train2014_<12-digit id>.jpg
  val2014/COCO_val2014_<12-digit id>.jpg"""
HOLDS = "annotations/instances_train2014.json, annotations/instances_val2014.json, train2014/ and val2014/"


def _read(ann_path: Path) -> Any:
    from pycocotools.coco import COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            return COCO(str(ann_path))
    except (ValueError, OSError, AssertionError, KeyError, TypeError) as exc:  # bad JSON / not an instances file
        raise DataError(f"{ann_path} is not a readable COCO instances file ({type(exc).__name__}: {exc})") from None


def read_split(root: Path, split_dir: str) -> dict[str, Any]:
    """Images, category ids and per-image category sets of one split's instances file."""
    ann_path = require(root / "annotations" / f"instances_{split_dir}.json", root, TITLE, HOW_TO_GET, LAYOUT)
    coco = _read(ann_path)
    if "categories" not in coco.dataset or "images" not in coco.dataset:
        raise DataError(f"{ann_path} has no 'categories' or 'images' list (not a COCO instances file)")
    cat_ids = sorted(coco.cats)
    if not cat_ids:
        raise DataError(f"{ann_path} lists no categories")
    labels: dict[int, set[int]] = {img_id: set() for img_id in coco.imgs}
    for ann in coco.dataset.get("annotations", []):
        cat, img = ann.get("category_id"), ann.get("image_id")
        if cat not in coco.cats:
            raise DataError(f"{ann_path}: annotation {ann.get('id')} has category_id {cat!r}, which is not in "
                            f"the file's category list (ids {cat_ids[0]}..{cat_ids[-1]})")
        if img not in labels:
            raise DataError(f"{ann_path}: annotation {ann.get('id')} refers to image_id {img!r}, which is not in "
                            "the file's image list")
        labels[img].add(cat)
    image_dir = root / split_dir
    paths = {}
    for img_id, info in coco.imgs.items():
        name = info.get("file_name") or f"COCO_{split_dir}_{int(img_id):012d}.jpg"
        paths[img_id] = image_dir / name
    return {"ann_path": ann_path, "image_dir": image_dir, "cats": coco.cats, "cat_ids": cat_ids,
            "labels": labels, "paths": paths}


def load_coco(cfg: Mapping[str, Any], *, write: bool = True) -> DatasetSplits:
    root = dataset_root(cfg, TITLE, HOW_TO_GET, LAYOUT, HOLDS)
    drop_unlabeled = DATASET.check("drop_unlabeled", cfg.get("drop_unlabeled", True))
    on_missing = setting(cfg, "on_missing", "error", ("skip", "error"))
    parts = {split: read_split(root, d) for split, d in SPLITS.items()}
    cat_ids = parts["train"]["cat_ids"]
    if parts["test"]["cat_ids"] != cat_ids:
        raise DataError(f"{parts['test']['ann_path']} lists other category ids than {parts['train']['ann_path']}")
    col = {cat: i for i, cat in enumerate(cat_ids)}
    class_names = [str(parts["train"]["cats"][c].get("name", c)) for c in cat_ids]

    out: dict[str, tuple[list[Path], torch.Tensor]] = {}
    missing: dict[str, tuple[list[Path], int]] = {}
    notes: dict[str, Any] = {"category_ids": cat_ids}
    for split, part in parts.items():
        require(part["image_dir"], root, TITLE, HOW_TO_GET, LAYOUT, is_dir=True)
        ids = sorted(part["labels"])
        if drop_unlabeled:
            kept = [i for i in ids if part["labels"][i]]
            notes[f"{split}_unlabeled_dropped"] = len(ids) - len(kept)
            ids = kept
        paths = [part["paths"][i] for i in ids]
        absent = find_missing(paths)
        missing[split] = ([p for p, a in zip(paths, absent) if a], len(paths))
        ids = [i for i, a in zip(ids, absent) if not a]
        targets = torch.zeros((len(ids), len(cat_ids)), dtype=torch.float32)
        for row, img_id in enumerate(ids):
            for cat in part["labels"][img_id]:
                targets[row, col[cat]] = 1.0
        out[split] = ([part["paths"][i] for i in ids], targets)
    account_for_missing(TITLE, missing, on_missing, root, notes,
                        "val images without annotations" if drop_unlabeled else None)
    return multilabel_file_splits(cfg, INFO, class_names, out["train"], out["test"], notes)


# train2014 / val2014 images with at least one annotation (dataset.drop_unlabeled=true)
INFO = DatasetInfo(
    name="coco", display_name="MS COCO", load=load_coco, in_channels=3, num_classes=80, multilabel=True,
    train_size=82_081, test_size=40_137, default_image_size=448, min_image_size=16, files_above=0,
    file_size=(640, 480), file_transforms=multilabel_transforms,
)
DATASET_INFO = (INFO,)
