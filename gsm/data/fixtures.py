"""Small datasets in the exact official on-disk layouts, traps included (tests and the smoke profile).

Each ``make_<name>(root, ...)`` writes one dataset under ``root`` (the folder
``dataset.root`` then points at) and returns its ground truth as a JSON-able
dict: what it wrote, in terms of file names and class *names*, never in terms
of the loaders' indices, so tests can check the loaders independently.

Traps reproduced on purpose:

* CIFAR: Python 2 pickles, emitted opcode by opcode as Python 2's cPickle did
  (str keys as SHORT_BINSTRING/BINSTRING; the array data as a py2 str;
  ``numpy.core.multiarray._reconstruct``): loaded with ``encoding='latin1'``
  the keys are ``str``, with ``encoding='bytes'`` they are ``bytes``;
* Tiny ImageNet: ``wnids.txt`` not sorted; some JPEGs grayscale (1 channel);
  a words.txt with more wnids than the dataset uses;
* MS COCO: the 80 real categories (ids 1..90 with gaps) listed out of id
  order; one image per split without annotations; a crowd annotation;
* NUS-WIDE: CRLF line ends; Windows ``\\`` paths in the image lists; a listed
  image whose file is missing; an image with no label in each split.

Every image is one flat colour, unique within its split (``color`` in the
ground truth), so a test can tell which file a decoded image came from and
check that its label travelled with it.

``python -m gsm.data.fixtures --out DIR [--which all|cifar10|...]`` writes
``DIR/<name>/`` and ``DIR/<name>/ground_truth.json`` for each.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gsm.data.py2pickle import write_py2_pickle  # CIFAR's files (tests reach it as fixtures.write_py2_pickle too)

# --------------------------------------------------------------------------- images

LEVELS = [8 + 16 * i for i in range(16)]  # colour channel values; decoded JPEG colours stay within +-7
COLOURS = [(r, g, b) for r in LEVELS for g in LEVELS for b in LEVELS if not r == g == b]
GRAYS = [(v, v, v) for v in LEVELS]


def _pick(pool: list[tuple[int, int, int]], n: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    if n > len(pool):
        raise ValueError(f"at most {len(pool)} distinct colours per split; asked for {n}")
    return [pool[i] for i in rng.permutation(len(pool))[:n]]


def write_jpeg(path: Path, colour: tuple[int, int, int], size: tuple[int, int], gray: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    if gray:
        Image.new("L", (w, h), colour[0]).save(path, "JPEG", quality=95)
    else:
        Image.new("RGB", (w, h), tuple(colour)).save(path, "JPEG", quality=95)


def nearest(colour: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The record whose colour is closest to ``colour`` (mean RGB of a decoded image)."""
    c = np.asarray(colour, dtype=np.float64)
    return min(records, key=lambda r: float(np.abs(np.asarray(r["color"]) - c).max()))


# --------------------------------------------------------------------------- CIFAR


def _cifar_images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)


def make_cifar10(root: str | Path, train_per_class: int = 3, test_per_class: int = 2, seed: int = 0) -> dict[str, Any]:
    """cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} with random pixels."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    n_train, n_test = 10 * train_per_class, 10 * test_per_class
    if n_train < 5:
        raise ValueError("need at least one image per training batch")
    train_y = rng.permutation(np.repeat(np.arange(10), train_per_class))
    test_y = rng.permutation(np.repeat(np.arange(10), test_per_class))
    train_x, test_x = _cifar_images(rng, n_train), _cifar_images(rng, n_test)
    bounds = np.linspace(0, n_train, 6).astype(int)
    for b in range(5):
        lo, hi = bounds[b], bounds[b + 1]
        write_py2_pickle(folder / f"data_batch_{b + 1}", {
            "data": train_x[lo:hi], "labels": [int(v) for v in train_y[lo:hi]],
            "batch_label": f"training batch {b + 1} of 5", "filenames": [f"img_{i}.png" for i in range(lo, hi)],
        })
    write_py2_pickle(folder / "test_batch", {
        "data": test_x, "labels": [int(v) for v in test_y], "batch_label": "testing batch 1 of 1",
        "filenames": [f"test_{i}.png" for i in range(n_test)],
    })
    write_py2_pickle(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": int(bounds[1]), "num_vis": 3072})
    return {
        "dataset": "cifar10", "root": str(root), "class_names": names,
        "train_labels": [names[v] for v in train_y], "test_labels": [names[v] for v in test_y],
        "train_data": train_x, "test_data": test_x,  # uint8 (N, 3072) arrays, left out of ground_truth.json
    }


CIFAR100_COARSE = ["aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
                   "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
                   "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
                   "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
                   "vehicles_1", "vehicles_2"]


# The official fine label names, in the official (alphabetical) order.
CIFAR100_FINE = ["apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
                 "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
                 "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
                 "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
                 "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
                 "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
                 "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy",
                 "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal",
                 "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar",
                 "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
                 "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm"]


def make_cifar100(root: str | Path, train_per_class: int = 2, test_per_class: int = 1, seed: int = 1,
                  classes_with_images: int = 100) -> dict[str, Any]:
    """cifar-100-python/{train, test, meta}: the 100 official fine class names, 20 coarse.

    ``classes_with_images`` < 100: only the first that many classes get images (the meta still lists
    all 100), e.g. 10 for the classes the paper's Figs. 3 and 7 plot, in a split small enough that
    ``dataset.subset`` keeps every image.
    """
    if not 1 <= classes_with_images <= 100:
        raise ValueError(f"classes_with_images must be in 1..100 (got {classes_with_images})")
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    fine_names = list(CIFAR100_FINE)
    coarse_of = rng.permutation(np.repeat(np.arange(20), 5))
    out: dict[str, Any] = {"dataset": "cifar100", "root": str(root), "class_names": fine_names}
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        y = rng.permutation(np.repeat(np.arange(classes_with_images), per))
        x = _cifar_images(rng, len(y))
        write_py2_pickle(folder / split, {
            "filenames": [f"{split}_{i}.png" for i in range(len(y))], "batch_label": f"{split}ing batch 1 of 1",
            "fine_labels": [int(v) for v in y], "coarse_labels": [int(coarse_of[v]) for v in y], "data": x,
        })
        out[f"{split}_labels"] = [fine_names[v] for v in y]
        out[f"{split}_data"] = x
    write_py2_pickle(folder / "meta", {"fine_label_names": fine_names, "coarse_label_names": CIFAR100_COARSE})
    return out


# --------------------------------------------------------------------------- Tiny ImageNet


def make_tiny_imagenet(root: str | Path, num_classes: int = 5, train_per_class: int = 4, val_per_class: int = 2,
                       gray_every: int = 7, seed: int = 2) -> dict[str, Any]:
    """tiny-imagenet-200/ with ``num_classes`` wnids (unsorted wnids.txt), 64x64 JPEGs, some grayscale."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "tiny-imagenet-200"
    ids = rng.choice(np.arange(1_000_000, 9_999_999), size=num_classes + 6, replace=False)
    all_wnids = [f"n{int(i):08d}" for i in ids]
    wnids = all_wnids[:num_classes]
    while num_classes > 1 and wnids == sorted(wnids):  # the trap: file order != class order
        wnids = [wnids[i] for i in rng.permutation(num_classes)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    words = {w: f"thing {k}, synonym {k}" for k, w in enumerate(all_wnids)}  # words.txt covers more wnids
    (folder / "words.txt").write_text("".join(f"{w}\t{words[w]}\n" for w in sorted(all_wnids)))

    def records(n: int) -> list[dict[str, Any]]:
        gray = [(i % gray_every) == gray_every - 1 for i in range(n)] if gray_every else [False] * n
        colours = iter(_pick(COLOURS, n - sum(gray), rng))
        grays = iter(_pick(GRAYS, sum(gray), rng))
        return [{"gray": g, "color": list(next(grays) if g else next(colours))} for g in gray]

    train = records(num_classes * train_per_class)
    for k, rec in enumerate(train):
        wnid = wnids[k // train_per_class]
        j = k % train_per_class
        rec.update(wnid=wnid, file=f"train/{wnid}/images/{wnid}_{j}.JPEG")
        write_jpeg(folder / rec["file"], tuple(rec["color"]), (64, 64), rec["gray"])
    for wnid in wnids:
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text(
            "".join(f"{wnid}_{j}.JPEG\t0\t0\t63\t63\n" for j in range(train_per_class)))
    val = records(num_classes * val_per_class)
    val_wnids = rng.permutation(np.repeat(np.arange(num_classes), val_per_class))
    lines = []
    for k, rec in enumerate(val):
        rec.update(wnid=wnids[val_wnids[k]], file=f"val/images/val_{k}.JPEG")
        write_jpeg(folder / rec["file"], tuple(rec["color"]), (64, 64), rec["gray"])
        lines.append(f"val_{k}.JPEG\t{rec['wnid']}\t{k % 10}\t{k % 7}\t{40 + k % 20}\t{50 + k % 10}\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    for k in range(3):  # the unlabelled test split exists in the real download; loaders ignore it
        write_jpeg(folder / "test" / "images" / f"test_{k}.JPEG", (128, 64, 32), (64, 64))
    return {"dataset": "tiny_imagenet", "root": str(root), "wnids_file_order": wnids,
            "class_names": {w: words[w] for w in wnids}, "train": train, "val": val}


# --------------------------------------------------------------------------- MS COCO 2014

COCO_CATEGORIES = [
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"), (4, "motorcycle", "vehicle"),
    (5, "airplane", "vehicle"), (6, "bus", "vehicle"), (7, "train", "vehicle"), (8, "truck", "vehicle"),
    (9, "boat", "vehicle"), (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"),
    (13, "stop sign", "outdoor"), (14, "parking meter", "outdoor"), (15, "bench", "outdoor"), (16, "bird", "animal"),
    (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"), (20, "sheep", "animal"),
    (21, "cow", "animal"), (22, "elephant", "animal"), (23, "bear", "animal"), (24, "zebra", "animal"),
    (25, "giraffe", "animal"), (27, "backpack", "accessory"), (28, "umbrella", "accessory"),
    (31, "handbag", "accessory"), (32, "tie", "accessory"), (33, "suitcase", "accessory"), (34, "frisbee", "sports"),
    (35, "skis", "sports"), (36, "snowboard", "sports"), (37, "sports ball", "sports"), (38, "kite", "sports"),
    (39, "baseball bat", "sports"), (40, "baseball glove", "sports"), (41, "skateboard", "sports"),
    (42, "surfboard", "sports"), (43, "tennis racket", "sports"), (44, "bottle", "kitchen"),
    (46, "wine glass", "kitchen"), (47, "cup", "kitchen"), (48, "fork", "kitchen"), (49, "knife", "kitchen"),
    (50, "spoon", "kitchen"), (51, "bowl", "kitchen"), (52, "banana", "food"), (53, "apple", "food"),
    (54, "sandwich", "food"), (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"),
    (58, "hot dog", "food"), (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"),
    (62, "chair", "furniture"), (63, "couch", "furniture"), (64, "potted plant", "furniture"),
    (65, "bed", "furniture"), (67, "dining table", "furniture"), (70, "toilet", "furniture"),
    (72, "tv", "electronic"), (73, "laptop", "electronic"), (74, "mouse", "electronic"),
    (75, "remote", "electronic"), (76, "keyboard", "electronic"), (77, "cell phone", "electronic"),
    (78, "microwave", "appliance"), (79, "oven", "appliance"), (80, "toaster", "appliance"),
    (81, "sink", "appliance"), (82, "refrigerator", "appliance"), (84, "book", "indoor"), (85, "clock", "indoor"),
    (86, "vase", "indoor"), (87, "scissors", "indoor"), (88, "teddy bear", "indoor"), (89, "hair drier", "indoor"),
    (90, "toothbrush", "indoor"),
]


def make_coco(root: str | Path, train_images: int = 10, val_images: int = 6, seed: int = 3,
              ensure_classes: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    """annotations/instances_{train,val}2014.json + {train,val}2014/COCO_*_%012d.jpg (80 real categories).

    Categories are listed in a shuffled (non-ascending) id order; the last image
    of each split has no annotation; each labelled image has 1-3 categories,
    some with two instances, and one annotation per split is a crowd region.
    ``ensure_classes`` (category names): each is added to three labelled images of
    each split (e.g. the categories the paper's Fig. 4 plots).
    """
    rng = np.random.default_rng(seed)
    id_of = {name: cid for cid, name, _ in COCO_CATEGORIES}
    unknown = [n for n in ensure_classes if n not in id_of]
    if unknown:
        raise ValueError(f"ensure_classes: not COCO categories: {unknown}")
    ensured = [id_of[n] for n in ensure_classes]
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    cats = [COCO_CATEGORIES[i] for i in rng.permutation(len(COCO_CATEGORIES))]
    if [c[0] for c in cats] == sorted(c[0] for c in cats):
        cats = cats[::-1]
    name_of = {cid: name for cid, name, _ in COCO_CATEGORIES}
    gt: dict[str, Any] = {"dataset": "coco", "root": str(root),
                          "categories": [[cid, name] for cid, name, _ in COCO_CATEGORIES]}
    next_ann = 1
    for split, n, id_base in (("train", train_images, 9), ("val", val_images, 42)):
        split_dir = f"{split}2014"
        colours = _pick(COLOURS, n, rng)
        images, anns, records = [], [], []
        for k in range(n):
            img_id = id_base + 37 * k + int(rng.integers(0, 30))
            w, h = int(rng.integers(40, 80)), int(rng.integers(32, 64))
            file_name = f"COCO_{split_dir}_{img_id:012d}.jpg"
            write_jpeg(root / split_dir / file_name, colours[k], (w, h))
            images.append({"license": 1, "file_name": file_name, "coco_url": f"http://images.cocodataset.org/{split_dir}/{file_name}",
                           "height": h, "width": w, "date_captured": "2013-11-14 16:28:13", "id": img_id})
            chosen = [] if k == n - 1 else sorted(int(c) for c in rng.choice([c[0] for c in COCO_CATEGORIES],
                                                                              size=int(rng.integers(1, 4)), replace=False))
            step = max(1, (n - 1) // 3)  # three images per ensured category, spread over the split
            extra = {cid for j, cid in enumerate(ensured) if k < n - 1 and k in (j, j + step, j + 2 * step)}
            chosen = sorted(set(chosen) | extra)
            for j, cid in enumerate(chosen):
                for _ in range(1 + (j == 0 and k % 2 == 0)):  # some categories with two instances
                    x, y = float(rng.integers(0, w // 2)), float(rng.integers(0, h // 2))
                    anns.append({"segmentation": [[x, y, x + 8, y, x + 8, y + 8, x, y + 8]], "area": 64.0,
                                 "iscrowd": 0, "image_id": img_id, "bbox": [x, y, 8.0, 8.0], "category_id": cid,
                                 "id": next_ann})
                    next_ann += 1
            records.append({"file": f"{split_dir}/{file_name}", "id": img_id, "color": list(colours[k]),
                            "categories": [name_of[c] for c in chosen]})
        anns[0]["iscrowd"] = 1  # crowd regions still say the object is present
        anns[0]["segmentation"] = {"counts": [0, 64], "size": [8, 8]}
        order = rng.permutation(len(images))
        doc = {
            "info": {"description": "gsm fixture in the COCO 2014 format", "version": "1.0", "year": 2014},
            "images": [images[i] for i in order], "licenses": [{"url": "", "id": 1, "name": "fixture"}],
            "annotations": anns, "categories": [{"supercategory": s, "id": cid, "name": nm} for cid, nm, s in cats],
        }
        (root / "annotations" / f"instances_{split_dir}.json").write_text(json.dumps(doc))
        gt[split] = records
    return gt


# --------------------------------------------------------------------------- NUS-WIDE

NUSWIDE_CONCEPTS = (
    "airport animal beach bear birds boats book bridge buildings cars castle cat cityscape clouds computer coral "
    "cow dancing dog earthquake elk fire fish flags flowers food fox frost garden glacier grass harbor horses house "
    "lake leaf map military moon mountain nighttime ocean person plane plants police protest railroad rainbow "
    "reflection road rocks running sand sign sky snow soccer sports statue street sun sunset surf swimmers tattoo "
    "temple tiger tower town toy train tree valley vehicle water waterfall wedding whales window zebra"
).split()
NUSWIDE_SUBDIRS = ["actor", "beach", "sunset", "zebra"]


def make_nuswide(root: str | Path, train_images: int = 12, test_images: int = 8, seed: int = 4) -> dict[str, Any]:
    """ImageList/, Flickr/, ConceptsList/Concepts81.txt, Groundtruth/TrainTestLabels/ (CRLF, ``\\`` paths).

    In train, image 1 is listed but its file is absent and image 2 has no
    positive concept; in test, image 0 has no positive concept.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    for d in ("ImageList", "ConceptsList", "Groundtruth/TrainTestLabels", "Flickr"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "ConceptsList" / "Concepts81.txt").write_bytes("".join(f"{c}\r\n" for c in NUSWIDE_CONCEPTS).encode())
    gt: dict[str, Any] = {"dataset": "nuswide", "root": str(root), "concepts": NUSWIDE_CONCEPTS}
    for split, tag, n, missing, unlabeled in (("train", "Train", train_images, {1}, {2}),
                                              ("test", "Test", test_images, set(), {0})):
        colours = _pick(COLOURS, n, rng)
        records = []
        labels = np.zeros((n, len(NUSWIDE_CONCEPTS)), dtype=int)
        for k in range(n):
            sub = NUSWIDE_SUBDIRS[k % len(NUSWIDE_SUBDIRS)]
            name = f"{k:04d}_{int(rng.integers(10**9, 4 * 10**9))}.jpg"
            if k not in unlabeled:
                labels[k, rng.choice(len(NUSWIDE_CONCEPTS), size=int(rng.integers(1, 5)), replace=False)] = 1
            if k not in missing:
                write_jpeg(root / "Flickr" / sub / name, colours[k], (int(rng.integers(40, 90)), int(rng.integers(30, 70))))
            records.append({"list_entry": f"{sub}\\{name}", "file": f"Flickr/{sub}/{name}", "color": list(colours[k]),
                            "concepts": [NUSWIDE_CONCEPTS[j] for j in np.flatnonzero(labels[k])],
                            "missing": k in missing, "unlabeled": k in unlabeled})
        (root / "ImageList" / f"{tag}Imagelist.txt").write_bytes("".join(f"{r['list_entry']}\r\n" for r in records).encode())
        for j, concept in enumerate(NUSWIDE_CONCEPTS):
            path = root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{tag}.txt"
            path.write_bytes("".join(f"{v}\r\n" for v in labels[:, j]).encode())
        gt[split] = records
    return gt


# --------------------------------------------------------------------------- command line

MAKERS: dict[str, Callable[..., dict[str, Any]]] = {
    "cifar10": make_cifar10, "cifar100": make_cifar100, "tiny_imagenet": make_tiny_imagenet,
    "coco": make_coco, "nuswide": make_nuswide,
}


def make_all(out: str | Path, which: str = "all") -> dict[str, dict[str, Any]]:
    names = list(MAKERS) if which == "all" else [which]
    result = {}
    for name in names:
        root = Path(out) / name
        gt = MAKERS[name](root)
        (root / "ground_truth.json").write_text(json.dumps({k: v for k, v in gt.items() if not isinstance(v, np.ndarray)}))
        result[name] = gt
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gsm.data.fixtures", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder to write <name>/ fixtures into")
    parser.add_argument("--which", default="all", choices=["all", *MAKERS])
    args = parser.parse_args(argv)
    for name, gt in make_all(args.out, args.which).items():
        print(f"{name}: dataset.root={gt['root']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
