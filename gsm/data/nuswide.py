"""NUS-WIDE (81 concepts) from the official image lists and per-concept label files (docs/datasets.md).

Layout under ``dataset.root``::

    ImageList/TrainImagelist.txt        161,789 lines like  actor\\0001_2124494179.jpg
    ImageList/TestImagelist.txt         107,859 lines
    Flickr/<subdir>/<name>.jpg          the images (``dataset.image_dir``)
    ConceptsList/Concepts81.txt         the 81 concept names, one a line
    Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt   one 0/1 a line, aligned with TrainImagelist.txt
    Groundtruth/TrainTestLabels/Labels_<concept>_Test.txt    ... with TestImagelist.txt

List and label files may have CRLF line ends; list entries use Windows ``\\``
separators (a full ``C:\\...\\Flickr\\subdir\\name.jpg`` path is cut after
``Flickr\\``). Class order = the order of Concepts81.txt.

Decisions (docs/datasets.md):

* listed images whose file is absent (many Flickr images are dead) are
  skipped and counted in one warning (``dataset.on_missing: skip``; ``error``
  raises a DataError naming the first absent file);
* images with no positive concept are dropped (``dataset.drop_unlabeled``);
* a concept whose Train or Test label file is absent is dropped from both
  splits with one warning that gives the resulting class count: training it
  as "never present" would teach the wrong thing, and its AP is undefined;
  results with fewer than 81 classes are not comparable to the paper's;
* a label file whose line count differs from its image list, or a value other
  than 0/1, is a DataError naming the files.

Pipelines as COCO (:mod:`gsm.data.transforms`); ``dataset.train_crop: resize``,
``color_jitter: 0.4``, ``lighting: 0.1`` and ``interpolation: bicubic`` give the
authors' release pipeline (datasets/nuswideclean.lua:92-110).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gsm.data.files import multilabel_file_splits, multilabel_transforms
from gsm.data.types import DatasetInfo, DatasetSplits
from gsm.data.files import (
    setting, dataset_root, find_missing, log, read_lines, account_for_missing, require,
)
from gsm.settings import DATASET
from gsm.errors import DataError

TITLE = "NUS-WIDE"
SPLITS = {"train": "Train", "test": "Test"}
HOW_TO_GET = ("gsm cannot download NUS-WIDE. Get the image lists, concept list and ground truth "
              "(Groundtruth.zip, ConceptsList.zip, ImageList.zip) from the NUS-WIDE page "
              "(https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html); the images are "
              "Flickr URLs (NUS-WIDE-urls.rar) or the Flickr.zip the maintainers send on request. Unzip into dataset.root.")
LAYOUT = """  ImageList/TrainImagelist.txt, ImageList/TestImagelist.txt   (lines like actor\\0001_2124494179.jpg)
  Flickr/<subdir>/<name>.jpg
  ConceptsList/Concepts81.txt
  Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt, ..._Test.txt   (one 0/1 per image-list line)"""
HOLDS = "ImageList/, ConceptsList/Concepts81.txt, Groundtruth/TrainTestLabels/ and the images (Flickr/ or dataset.image_dir)"


def _relative(entry: str) -> str:
    """``actor\\0001_x.jpg`` (or ``C:\\ImageData\\Flickr\\actor\\0001_x.jpg``) -> ``actor/0001_x.jpg``."""
    rel = entry.replace("\\", "/").strip()
    marker = rel.lower().rfind("flickr/")
    if marker >= 0:
        rel = rel[marker + len("flickr/"):]
    return rel.lstrip("/")


def _labels(path: Path, list_path: Path, n: int) -> np.ndarray:
    lines = read_lines(path)
    if len(lines) != n:
        raise DataError(f"{path} has {len(lines)} labels but its image list {list_path} has {n} lines "
                        "(each label file must align line by line with the image list)")
    values = np.zeros(n, dtype=np.float32)
    for i, line in enumerate(lines):
        if line not in ("0", "1"):
            raise DataError(f"{path}: line {i + 1} is {line!r}, expected 0 or 1")
        values[i] = line == "1"
    return values


def load_nuswide(cfg: Mapping[str, Any], *, write: bool = True) -> DatasetSplits:
    root = dataset_root(cfg, TITLE, HOW_TO_GET, LAYOUT, HOLDS)
    drop_unlabeled = DATASET.check("drop_unlabeled", cfg.get("drop_unlabeled", True))
    on_missing = setting(cfg, "on_missing", "skip", ("skip", "error"))
    raw_dir = cfg.get("image_dir")
    image_dir = "Flickr" if raw_dir in (None, "") else DATASET.check("image_dir", raw_dir)
    image_dir = require(root / image_dir, root, TITLE, HOW_TO_GET, LAYOUT, is_dir=True)
    concepts_path = require(root / "ConceptsList" / "Concepts81.txt", root, TITLE, HOW_TO_GET, LAYOUT)
    concepts = read_lines(concepts_path)
    if not concepts or len(set(concepts)) != len(concepts):
        raise DataError(f"{concepts_path} must list distinct concept names, one a line")
    label_dir = require(root / "Groundtruth" / "TrainTestLabels", root, TITLE, HOW_TO_GET, LAYOUT, is_dir=True)

    lists = {}
    for split, tag in SPLITS.items():
        list_path = require(root / "ImageList" / f"{tag}Imagelist.txt", root, TITLE, HOW_TO_GET, LAYOUT)
        lists[split] = (list_path, [image_dir / _relative(e) for e in read_lines(list_path)])

    label_file = {c: {s: label_dir / f"Labels_{c}_{t}.txt" for s, t in SPLITS.items()} for c in concepts}
    absent = [c for c in concepts if not all(p.is_file() for p in label_file[c].values())]
    kept = [c for c in concepts if c not in absent]
    if not kept:
        raise DataError(f"{TITLE}: no concept has both label files in {label_dir} (expected e.g. "
                        f"{label_file[concepts[0]]['train'].name}).\n{HOW_TO_GET}\nExpected layout:\n{LAYOUT}")
    if absent:
        log.warning("%s: label files missing in %s for %d of the %d concepts of %s (%s); those concepts are "
                    "dropped, so the model has %d classes instead of %d and results are not comparable to the "
                    "paper's %d-concept numbers", TITLE, label_dir, len(absent), len(concepts), concepts_path.name,
                    ", ".join(absent), len(kept), len(concepts), len(concepts))

    out: dict[str, tuple[list[Path], torch.Tensor]] = {}
    missing: dict[str, tuple[list[Path], int]] = {}
    notes: dict[str, Any] = {"dropped_concepts": absent}
    for split, (list_path, paths) in lists.items():
        if not paths:
            raise DataError(f"{list_path} lists no images")
        y = np.stack([_labels(label_file[c][split], list_path, len(paths)) for c in kept], axis=1)
        keep = np.ones(len(paths), dtype=bool)
        gone = np.asarray(find_missing(paths), dtype=bool)
        missing[split] = ([p for p, g in zip(paths, gone) if g], len(paths))
        keep &= ~gone
        if drop_unlabeled:
            unlabeled = keep & (y.sum(1) == 0)
            notes[f"{split}_unlabeled_dropped"] = int(unlabeled.sum())
            keep &= ~unlabeled
        out[split] = ([p for p, k in zip(paths, keep) if k], torch.from_numpy(y[keep]))
    account_for_missing(TITLE, missing, on_missing, image_dir, notes,
                        "test images with no concept label" if drop_unlabeled else None)
    return multilabel_file_splits(cfg, INFO, kept, out["train"], out["test"], notes)


# the official lists' images (an upper bound: dead Flickr links and unlabelled images drop out)
INFO = DatasetInfo(
    name="nuswide", display_name=TITLE, load=load_nuswide, in_channels=3, num_classes=81, multilabel=True,
    train_size=161_789, test_size=107_859, default_image_size=448, min_image_size=16, files_above=0,
    file_size=(500, 375), file_transforms=multilabel_transforms,
)
DATASET_INFO = (INFO,)
