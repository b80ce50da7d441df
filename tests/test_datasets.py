"""The paper's five datasets read from fixtures in their official on-disk layouts (gsm.data.fixtures).

The fixture generators return what they wrote in terms of file names and class
*names*; every expected index below is derived here from those names with the
documented rule (meta order for CIFAR, sorted wnids, ascending COCO ids,
Concepts81 order), independently of the loaders. Each fixture image is one
flat colour unique within its split, so decoded pixels identify the file and
show that its label travelled with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from gsm.data import FileSplit, TensorSplit, build_data, load_splits
from gsm.data.loaders import Placement
from gsm.data import fixtures as fx
from gsm.data.cifar import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, read_pickle
from gsm.data.transforms import IMAGENET_MEAN, MultiScaleCrop
from gsm.errors import ConfigError, DataError

NAMES = ("cifar10", "cifar100", "tiny_imagenet", "coco", "nuswide")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """All five fixtures, written once; tests that damage a dataset write their own copy."""
    out = tmp_path_factory.mktemp("fixtures")
    return out, fx.make_all(out)


def root_of(made, name: str) -> Path:
    return made[0] / name


def mean_colour(img: torch.Tensor) -> np.ndarray:
    """Mean RGB (0..255) of a uint8 image or of a normalised float image (ImageNet statistics)."""
    if img.dtype != torch.uint8:
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1)
        img = (img * std + mean) * 255.0
    return img.float().mean(dim=(1, 2)).numpy()


def match(img: torch.Tensor, records: list[dict]) -> dict:
    c = mean_colour(img)
    rec = fx.nearest(c, records)
    assert np.abs(np.asarray(rec["color"]) - c).max() < 6, (c, rec["color"])  # flat JPEG colours decode within a few levels
    return rec


# --------------------------------------------------------------------------- CIFAR


def test_cifar_fixture_pickles_are_python2_files(made):
    folder = root_of(made, "cifar10") / "cifar-10-batches-py"
    raw = (folder / "data_batch_1").read_bytes()
    assert raw.startswith(b"\x80\x02}(") and b"U\x04data" in raw  # py2 str keys: SHORT_BINSTRING
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    with open(folder / "data_batch_1", "rb") as f:
        as_bytes = pickle.load(f, encoding="bytes")
    with open(folder / "data_batch_1", "rb") as f:
        as_str = pickle.load(f, encoding="latin1")
    assert set(as_bytes) == {b"data", b"labels", b"batch_label", b"filenames"}
    assert set(as_str) == {"data", "labels", "batch_label", "filenames"}
    assert as_bytes[b"data"].dtype == np.uint8 and as_bytes[b"data"].shape[1] == 3072
    assert np.array_equal(as_bytes[b"data"], as_str["data"])
    with open(folder / "batches.meta", "rb") as f:
        assert pickle.load(f, encoding="bytes")[b"label_names"][0] == b"airplane"


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pixels_and_labels(made, name):
    gt = made[1][name]
    s = load_splits({"name": name, "root": str(root_of(made, name))})
    m = len(gt["class_names"])
    assert s.num_classes == m and s.class_names == gt["class_names"] and not s.multilabel
    for split, data, labels in (("train", gt["train_data"], gt["train_labels"]), ("test", gt["test_data"], gt["test_labels"])):
        part = getattr(s, split)
        assert isinstance(part, TensorSplit) and part.images.dtype == torch.uint8
        assert part.images.shape == (len(labels), 3, 32, 32)
        # channel-major rows: the first 1024 bytes are the red plane of the 32x32 image
        assert torch.equal(part.images, torch.from_numpy(data).view(-1, 3, 32, 32))
        assert part.targets.dtype == torch.long
        assert part.targets.tolist() == [gt["class_names"].index(n) for n in labels]
    assert (s.crop_padding, s.flip, s.in_channels) == (4, True, 3)
    assert (s.mean, s.std) == {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD)}[name]


def test_cifar_reader_takes_str_or_bytes_keys_and_refuses_code(tmp_path):
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072) % 251
    for keys in (str, lambda k: k.encode()):
        path = tmp_path / "batch"
        path.write_bytes(pickle.dumps({keys("data"): data, keys("labels"): [3, 1]}, protocol=2))
        d = read_pickle(path)
        assert set(d) == {"data", "labels"} and np.array_equal(d["data"], data)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(DataError, match="not allowed"):
        read_pickle(path)


def _copy(made, name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(root_of(made, name), dst)
    return dst


def test_cifar_bad_input(made, tmp_path):
    with pytest.raises(DataError, match=r"nowhere.*dataset.download=true.*cifar-10-python.tar.gz"):
        load_splits({"name": "cifar10", "root": str(tmp_path / "nowhere")})
    root = _copy(made, "cifar10", tmp_path)
    folder = root / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_splits({"name": "cifar10", "root": str(root)})
    shutil.copy(root_of(made, "cifar10") / "cifar-10-batches-py" / "data_batch_3", folder)
    blob = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(blob[: len(blob) // 2])  # truncated download
    with pytest.raises(DataError, match="test_batch.*not a readable CIFAR pickle"):
        load_splits({"name": "cifar10", "root": str(root)})
    fx.write_py2_pickle(folder / "test_batch", {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]})
    with pytest.raises(DataError, match=r"test_batch.*\(N, 3072\)"):
        load_splits({"name": "cifar10", "root": str(root)})
    fx.write_py2_pickle(folder / "test_batch", {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]})
    with pytest.raises(DataError, match=r"test_batch.*0\.\.9"):
        load_splits({"name": "cifar10", "root": str(root)})
    # dataset.root may also point at the pickle folder itself
    shutil.copy(root_of(made, "cifar10") / "cifar-10-batches-py" / "test_batch", folder)
    assert len(load_splits({"name": "cifar10", "root": str(folder)}).test) == 20


def test_cifar_download_goes_through_torchvision(made, tmp_path, monkeypatch):
    import torchvision.datasets as tvd
    import torchvision.datasets.utils as tvu

    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kw):  # no network here: "extract" the fixture
        calls.append((url, filename, md5))
        shutil.copytree(root_of(made, "cifar100") / "cifar-100-python", Path(download_root) / "cifar-100-python")

    monkeypatch.setattr(tvu, "download_and_extract_archive", fake_download)
    s = load_splits({"name": "cifar100", "root": str(tmp_path / "new"), "download": True})
    assert calls == [(tvd.CIFAR100.url, tvd.CIFAR100.filename, tvd.CIFAR100.tgz_md5)]
    assert (len(s.train), len(s.test), s.num_classes) == (200, 100, 100)
    load_splits({"name": "cifar100", "root": str(tmp_path / "new"), "download": True})
    assert len(calls) == 1  # complete folder: no second download, no checksum of the files

    def failing(*a, **kw):
        raise OSError("network unreachable")

    monkeypatch.setattr(tvu, "download_and_extract_archive", failing)
    with pytest.raises(DataError, match="download of .*cifar-10-python.tar.gz.*failed"):
        load_splits({"name": "cifar10", "root": str(tmp_path / "other"), "download": True})


# --------------------------------------------------------------------------- Tiny ImageNet


def _tiny_expectations(gt):
    wnids = sorted(gt["wnids_file_order"])
    return wnids, {w: i for i, w in enumerate(wnids)}


def test_tiny_imagenet_fixture_traps(made):
    gt = made[1]["tiny_imagenet"]
    listed = (root_of(made, "tiny_imagenet") / "tiny-imagenet-200" / "wnids.txt").read_text().split()
    assert listed == gt["wnids_file_order"] and listed != sorted(listed)
    from PIL import Image

    gray = [r for r in gt["train"] + gt["val"] if r["gray"]]
    assert gray and all(Image.open(root_of(made, "tiny_imagenet") / "tiny-imagenet-200" / r["file"]).mode == "L" for r in gray)


def test_tiny_imagenet_tensor_path_labels_sorted_wnids(made, tmp_path):
    gt = made[1]["tiny_imagenet"]
    wnids, label_of = _tiny_expectations(gt)
    s = load_splits({"name": "tiny_imagenet", "root": str(root_of(made, "tiny_imagenet")), "image_size": 64,
                     "cache_dir": str(tmp_path / "cache")})
    assert s.num_classes == len(wnids) == 5 and s.class_names == [gt["class_names"][w] for w in wnids]
    assert s.crop_padding == 8 and s.flip and s.mean == IMAGENET_MEAN
    for split, records in (("train", gt["train"]), ("test", gt["val"])):
        part = getattr(s, split)
        assert isinstance(part, TensorSplit) and part.images.shape == (len(records), 3, 64, 64)
        seen = set()
        for img, y in zip(part.images, part.targets.tolist()):
            rec = match(img, records)
            seen.add(rec["file"])
            assert y == label_of[rec["wnid"]], rec
            if rec["gray"]:  # grayscale JPEG -> 3 equal channels
                assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
        assert len(seen) == len(records)  # every file exactly once


def test_tiny_imagenet_cache_is_keyed_by_files(made, tmp_path, caplog):
    root = _copy(made, "tiny_imagenet", tmp_path)
    cfg = {"name": "tiny_imagenet", "root": str(root), "image_size": 32}
    first = load_splits(cfg)
    cache = sorted((root / "tiny-imagenet-200" / ".gsm-cache").glob("*.pt"))
    assert len(cache) == 2 and first.train.images.shape == (20, 3, 32, 32)  # cached at 64, resized after
    with caplog.at_level(logging.INFO, logger="gsm.data"):
        again = load_splits(cfg)
    assert "from cache" in caplog.text and torch.equal(first.train.images, again.train.images)
    # a changed image changes the key: decoded again, new pixels
    gt = made[1]["tiny_imagenet"]
    rec = gt["train"][0]
    fx.write_jpeg(root / "tiny-imagenet-200" / rec["file"], (250, 8, 8), (64, 64))
    changed = load_splits(cfg)
    assert len(list((root / "tiny-imagenet-200" / ".gsm-cache").glob("*.pt"))) == 3
    assert any(np.abs(mean_colour(img) - [250, 8, 8]).max() < 6 for img in changed.train.images)
    # a damaged cache file is ignored with a warning and rebuilt
    newest = max((root / "tiny-imagenet-200" / ".gsm-cache").glob("*train*.pt"), key=lambda p: p.stat().st_mtime_ns)
    newest.write_bytes(b"garbage")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gsm.data"):
        rebuilt = load_splits(cfg)
    assert "unreadable cache" in caplog.text and torch.equal(rebuilt.train.images, changed.train.images)
    before = sorted((root / "tiny-imagenet-200" / ".gsm-cache").iterdir())
    fx.write_jpeg(root / "tiny-imagenet-200" / rec["file"], (8, 250, 8), (64, 64))
    load_splits({**cfg, "cache": False})
    assert sorted((root / "tiny-imagenet-200" / ".gsm-cache").iterdir()) == before  # cache=false writes nothing


def test_tiny_imagenet_file_path_above_64(made):
    gt = made[1]["tiny_imagenet"]
    _, label_of = _tiny_expectations(gt)
    s = load_splits({"name": "tiny_imagenet", "root": str(root_of(made, "tiny_imagenet")), "image_size": 80})
    assert isinstance(s.train, FileSplit) and isinstance(s.test, FileSplit) and s.image_size == 80
    x, y = s.train.dataset[0]
    assert x.shape == (3, 80, 80) and x.dtype == torch.float32
    for ds, records in ((s.train.eval_dataset, gt["train"]), (s.test.dataset, gt["val"])):
        assert len(ds) == len(records)
        for i in range(len(ds)):
            img, y = ds[i]
            assert img.shape == (3, 80, 80) and int(y) == label_of[match(img, records)["wnid"]]


def test_tiny_imagenet_bad_input(made, tmp_path, caplog):
    with pytest.raises(DataError, match=r"cs231n.*\n.*\n.*wnids.txt"):
        load_splits({"name": "tiny_imagenet", "root": str(tmp_path / "absent")})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"tiny-imagenet-200/wnids.txt not found"):
        load_splits({"name": "tiny_imagenet", "root": str(empty)})
    root = _copy(made, "tiny_imagenet", tmp_path)
    folder = root / "tiny-imagenet-200"
    gt = made[1]["tiny_imagenet"]
    cfg = {"name": "tiny_imagenet", "root": str(root), "image_size": 64, "cache": False}
    bad = folder / gt["train"][3]["file"]
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG: detected when decoding
    with pytest.raises(DataError, match=f"cannot decode image {bad}"):
        load_splits(cfg)
    shutil.copy(root_of(made, "tiny_imagenet") / "tiny-imagenet-200" / gt["train"][3]["file"], bad)
    ann = folder / "val" / "val_annotations.txt"
    good = ann.read_text()
    ann.write_text(good.replace(gt["val"][1]["wnid"], "n99999999", 1))
    with pytest.raises(DataError, match=r"val_annotations.txt: line \d+: wnid 'n99999999' is not listed"):
        load_splits(cfg)
    ann.write_text(good)
    gone = folder / gt["val"][2]["file"]
    gone.unlink()
    with pytest.raises(DataError, match=f"missing.*{gone.name}.*on_missing=skip"):
        load_splits(cfg)
    with caplog.at_level(logging.WARNING, logger="gsm.data"):
        assert len(load_splits({**cfg, "on_missing": "skip"}).test) == len(gt["val"]) - 1
    assert "skipped 1 listed image" in caplog.text
    shutil.rmtree(folder / "train" / gt["train"][0]["wnid"])
    with pytest.raises(DataError, match=f"train/{gt['train'][0]['wnid']}/images not found"):
        load_splits(cfg)


def _damage_tiny(folder: Path, gt, how: str) -> Path:
    """One fault of a tiny-imagenet-200 folder a download or a hand edit can leave; returns the file it concerns."""
    wnids, ann = folder / "wnids.txt", folder / "val" / "val_annotations.txt"
    first = gt["train"][0]["wnid"]
    if how == "no_wnids_listed":
        wnids.write_text("\n\n")
        return wnids
    if how == "wnid_twice":
        wnids.write_text(wnids.read_text() + f"{first}\n")
        return wnids
    if how == "not_text":
        wnids.write_bytes(b"\xff\xfe\x00bad")
        return wnids
    if how == "class_without_images":
        for image in (folder / "train" / first / "images").iterdir():
            image.unlink()
        return folder / "train" / first / "images"
    if how == "annotation_line":
        ann.write_text(ann.read_text() + "val_9999.JPEG\n")
        return ann
    raise AssertionError(how)


@pytest.mark.parametrize("how, message", [
    ("no_wnids_listed", r"wnids\.txt lists no wnids$"),
    ("wnid_twice", r"wnids\.txt lists wnid n\d{8} more than once$"),
    ("not_text", r"cannot read .*wnids\.txt as text: "),
    ("class_without_images", r"Tiny ImageNet.*: .*/images holds no images \(class n\d{8} of .*wnids\.txt\)$"),
    ("annotation_line", r"val_annotations\.txt: line \d+ is not 'file<TAB>wnid<TAB>x<TAB>y<TAB>w<TAB>h': "
                        r"'val_9999\.JPEG'$"),
])
def test_a_damaged_tiny_imagenet_folder_is_one_error_naming_the_file(made, tmp_path, how, message):
    root = _copy(made, "tiny_imagenet", tmp_path)
    where = _damage_tiny(root / "tiny-imagenet-200", made[1]["tiny_imagenet"], how)
    with pytest.raises(DataError) as err:
        load_splits({"name": "tiny_imagenet", "root": str(root), "image_size": 64, "cache": False})
    text = str(err.value)
    assert re.search(message, text) and str(where) in text and "\n" not in text, text


def test_tiny_imagenet_without_words_txt_names_classes_by_wnid(made, tmp_path, caplog):
    root = _copy(made, "tiny_imagenet", tmp_path)
    (root / "tiny-imagenet-200" / "words.txt").unlink()
    with caplog.at_level(logging.WARNING, logger="gsm.data"):
        splits = load_splits({"name": "tiny_imagenet", "root": str(root), "image_size": 64, "cache": False})
    listed = sorted((root / "tiny-imagenet-200" / "wnids.txt").read_text().split())
    assert splits.class_names == listed and "words.txt not found; class names are the wnids" in caplog.text


def test_a_decoded_image_cache_that_cannot_be_written_is_a_warning_and_the_splits_load(made, tmp_path, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    cfg = {"name": "tiny_imagenet", "root": str(root_of(made, "tiny_imagenet")), "image_size": 32,
           "cache_dir": str(blocked)}
    with caplog.at_level(logging.WARNING, logger="gsm.data"):
        cached = load_splits(cfg)
    assert f"could not write the decoded-image cache {blocked}" in caplog.text and "dataset.cache=false" in caplog.text
    assert blocked.read_text() == "a file where the cache folder should be" and list(tmp_path.iterdir()) == [blocked]
    plain = load_splits({**cfg, "cache": False})
    assert torch.equal(cached.train.images, plain.train.images) and torch.equal(cached.test.images, plain.test.images)


def test_an_empty_dataset_root_says_where_to_point_it():
    with pytest.raises(ConfigError, match=r"^dataset\.root is not set: point it at the folder holding Tiny ImageNet"):
        load_splits({"name": "tiny_imagenet", "root": ""})


@pytest.mark.parametrize("settings, message", [
    ({"image_size": 80, "train_crop": "inception", "pad_mode": "reflect"},
     "dataset.pad_mode=reflect applies to dataset.train_crop=pad; with train_crop=inception there is no padding"),
    ({"image_size": 80, "crop_padding": 64, "pad_mode": "reflect"},
     "dataset.pad_mode=reflect needs a padding smaller than the image: dataset.crop_padding gives 80 px at "
     "image_size=80"),
    ({"image_size": 64, "color_jitter": 0.4},
     "dataset.color_jitter=0.4 needs the JPEG path of dataset=tiny_imagenet (dataset.image_size > 64; got "
     "image_size=64)"),
])
def test_tiny_imagenet_settings_that_contradict_each_other_are_one_error(made, settings, message):
    with pytest.raises(ConfigError) as err:
        load_splits({"name": "tiny_imagenet", "root": str(root_of(made, "tiny_imagenet")), "cache": False, **settings})
    assert str(err.value).startswith(message), str(err.value)


# --------------------------------------------------------------------------- MS COCO


def _coco_names(gt) -> list[str]:
    return [name for _, name in sorted(gt["categories"])]  # class index = rank of the category id


def _multi_hot(names: list[str], present: list[str]) -> list[float]:
    return [1.0 if n in present else 0.0 for n in names]


def test_coco_fixture_traps(made):
    doc = json.loads((root_of(made, "coco") / "annotations" / "instances_train2014.json").read_text())
    ids = [c["id"] for c in doc["categories"]]
    assert len(ids) == 80 and ids != sorted(ids) and max(ids) == 90 and 12 not in ids
    annotated = {a["image_id"] for a in doc["annotations"]}
    assert any(img["id"] not in annotated for img in doc["images"])


def test_coco_labels_follow_ascending_category_ids(made, capsys):
    gt = made[1]["coco"]
    names = _coco_names(gt)
    s = load_splits({"name": "coco", "root": str(root_of(made, "coco")), "image_size": 48})
    assert "index created" not in capsys.readouterr().out  # pycocotools' prints are suppressed
    assert s.multilabel and s.num_classes == 80 and s.class_names == names
    assert s.class_names[:3] == ["person", "bicycle", "car"] and s.class_names[-1] == "toothbrush"
    for split, records, ds in (("train", gt["train"], s.train.eval_dataset), ("test", gt["val"], s.test.dataset)):
        labeled = [r for r in records if r["categories"]]
        assert len(labeled) == len(records) - 1  # the generator's one unannotated image per split is dropped
        part = getattr(s, split)
        assert len(part) == len(labeled) and part.targets.dtype == torch.float32 and part.targets.shape[1] == 80
        assert sorted(Path(p).name for p in part.dataset.paths) == sorted(Path(r["file"]).name for r in labeled)
        for i in range(len(ds)):
            img, y = ds[i]
            assert img.shape == (3, 48, 48)
            rec = match(img, labeled)
            assert y.tolist() == _multi_hot(names, rec["categories"]), rec
            assert torch.equal(part.targets[i], y)
    x, y = s.train.dataset[0]  # training pipeline: multi-scale crop + flip, normalised
    assert x.shape == (3, 48, 48) and x.dtype == torch.float32


def test_coco_keep_unlabeled_and_random_resized(made):
    gt = made[1]["coco"]
    s = load_splits({"name": "coco", "root": str(root_of(made, "coco")), "image_size": 32,
                     "drop_unlabeled": False, "train_crop": "random_resized"})
    assert (len(s.train), len(s.test)) == (len(gt["train"]), len(gt["val"]))
    assert (s.train.targets.sum(1) == 0).sum() == 1 and (s.test.targets.sum(1) == 0).sum() == 1
    assert s.train.dataset[0][0].shape == (3, 32, 32)
    with pytest.raises(ConfigError, match="dataset.train_crop"):
        load_splits({"name": "coco", "root": str(root_of(made, "coco")), "train_crop": "bogus"})


def test_multiscale_crop_geometry():
    crop = MultiScaleCrop(448)
    torch.manual_seed(0)
    img = torch.arange(512 * 512, dtype=torch.float32).view(1, 512, 512)
    for _ in range(20):
        out = crop(img)
        assert out.shape == (1, 448, 448)
    offs = MultiScaleCrop.offsets(512, 512, 256, 256)
    assert len(offs) == 13 and (0, 0) in offs and (256, 256) in offs and (128, 128) in offs


def test_coco_bad_input(made, tmp_path, caplog):
    with pytest.raises(DataError, match=r"cocodataset.org.*\n.*\n.*instances_train2014.json"):
        load_splits({"name": "coco", "root": str(tmp_path / "absent")})
    root = _copy(made, "coco", tmp_path)
    cfg = {"name": "coco", "root": str(root), "image_size": 32}
    ann_path = root / "annotations" / "instances_val2014.json"
    doc = json.loads(ann_path.read_text())
    doc["annotations"][1]["category_id"] = 12  # one of the gaps in 1..90
    ann_path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"instances_val2014.json: annotation \d+ has category_id 12"):
        load_splits(cfg)
    doc["annotations"][1]["category_id"] = 1
    doc["annotations"][1]["image_id"] = 123456789
    ann_path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"instances_val2014.json: annotation \d+ refers to image_id 123456789"):
        load_splits(cfg)
    ann_path.write_text("{not json")
    with pytest.raises(DataError, match="instances_val2014.json is not a readable COCO instances file"):
        load_splits(cfg)
    shutil.copy(root_of(made, "coco") / "annotations" / "instances_val2014.json", ann_path)
    (root / "annotations" / "instances_train2014.json").unlink()
    with pytest.raises(DataError, match="instances_train2014.json not found"):
        load_splits(cfg)
    shutil.copy(root_of(made, "coco") / "annotations" / "instances_train2014.json", root / "annotations")
    gone = root / made[1]["coco"]["val"][0]["file"]
    gone.unlink()
    with pytest.raises(DataError, match=f"missing.*{gone.name}"):
        load_splits(cfg)
    with caplog.at_level(logging.WARNING, logger="gsm.data"):
        assert len(load_splits({**cfg, "on_missing": "skip"}).test) == len(made[1]["coco"]["val"]) - 2
    assert "skipped 1 listed image" in caplog.text


def test_corrupt_jpeg_in_worker_is_one_clear_error(made, tmp_path):
    root = _copy(made, "coco", tmp_path)
    bad = root / made[1]["coco"]["train"][0]["file"]
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    data = build_data({"name": "coco", "root": str(root), "image_size": 32}, batch_size=4,
                      num_workers=1)
    data.train.set_epoch(0)
    with pytest.raises(DataError) as info:
        for _ in data.train:
            pass
    msg = str(info.value)
    assert msg.startswith(f"cannot decode image {bad}") and "Traceback" not in msg and "\n" not in msg


# --------------------------------------------------------------------------- NUS-WIDE


def test_nuswide_fixture_traps(made):
    root = root_of(made, "nuswide")
    raw = (root / "ImageList" / "TrainImagelist.txt").read_bytes()
    assert b"\r\n" in raw and b"\\" in raw
    assert b"\r\n" in (root / "Groundtruth" / "TrainTestLabels" / "Labels_zebra_Train.txt").read_bytes()
    assert len((root / "ConceptsList" / "Concepts81.txt").read_text().split()) == 81
    gt = made[1]["nuswide"]
    assert any(r["missing"] for r in gt["train"]) and all(any(r["unlabeled"] for r in gt[s]) for s in ("train", "test"))
    assert not (root / next(r for r in gt["train"] if r["missing"])["file"]).exists()


@pytest.mark.slow
def test_nuswide_lists_labels_missing_and_unlabeled(made, caplog):
    gt = made[1]["nuswide"]
    names = gt["concepts"]
    with caplog.at_level(logging.WARNING, logger="gsm.data"):
        s = load_splits({"name": "nuswide", "root": str(root_of(made, "nuswide")), "image_size": 32})
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "1 of 12 train, 0 of 8 test" in warnings[0].getMessage()
    assert s.multilabel and s.num_classes == 81 and s.class_names == names
    for split, ds in (("train", s.train.eval_dataset), ("test", s.test.dataset)):
        kept = [r for r in gt[split] if not r["missing"] and not r["unlabeled"]]
        part = getattr(s, split)
        assert len(part) == len(kept)
        assert [Path(p).relative_to(root_of(made, "nuswide")).as_posix() for p in part.dataset.paths] == [r["file"] for r in kept]
        for i in range(len(ds)):
            img, y = ds[i]
            rec = match(img, kept)
            assert y.tolist() == _multi_hot(names, rec["concepts"])
    kept_all = load_splits({"name": "nuswide", "root": str(root_of(made, "nuswide")), "drop_unlabeled": False})
    assert (len(kept_all.train), len(kept_all.test)) == (len(gt["train"]) - 1, len(gt["test"]))


def test_nuswide_missing_label_file_drops_that_concept(made, tmp_path, caplog):
    root = _copy(made, "nuswide", tmp_path)
    (root / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Test.txt").unlink()
    with caplog.at_level(logging.WARNING, logger="gsm.data"):
        s = load_splits({"name": "nuswide", "root": str(root), "image_size": 32, "drop_unlabeled": False})
    assert s.num_classes == 80 and "sky" not in s.class_names
    text = caplog.text
    assert "sky" in text and "80 classes instead of 81" in text and "not comparable" in text
    gt = made[1]["nuswide"]
    names = [c for c in gt["concepts"] if c != "sky"]
    present = [r for r in gt["test"] if not r["missing"]]
    expected = torch.tensor([_multi_hot(names, r["concepts"]) for r in present])
    assert torch.equal(s.test.targets, expected)


def test_nuswide_bad_input(made, tmp_path):
    with pytest.raises(DataError, match=r"NUS-WIDE.*\n.*NUS-WIDE.html.*\n.*\n.*ImageList"):
        load_splits({"name": "nuswide", "root": str(tmp_path / "absent")})
    root = _copy(made, "nuswide", tmp_path)
    cfg = {"name": "nuswide", "root": str(root), "image_size": 32}
    missing = next(r for r in made[1]["nuswide"]["train"] if r["missing"])
    with pytest.raises(DataError, match=f"missing.*{Path(missing['file']).name}"):
        load_splits({**cfg, "on_missing": "error"})
    label = root / "Groundtruth" / "TrainTestLabels" / "Labels_cat_Train.txt"
    good = label.read_bytes()
    label.write_bytes(good + b"0\r\n")
    with pytest.raises(DataError, match=r"Labels_cat_Train.txt has 13 labels but its image list .*TrainImagelist.txt has 12"):
        load_splits(cfg)
    label.write_bytes(good.replace(b"0\r\n", b"2\r\n", 1))
    with pytest.raises(DataError, match=r"Labels_cat_Train.txt: line \d+ is '2'"):
        load_splits(cfg)
    label.write_bytes(good)
    (root / "ImageList" / "TestImagelist.txt").unlink()
    with pytest.raises(DataError, match="TestImagelist.txt not found"):
        load_splits(cfg)
    with pytest.raises(ConfigError, match="dataset.on_missing"):
        load_splits({**cfg, "on_missing": "ignore"})


def test_nuswide_list_entries_and_blank_lines(made, tmp_path):
    from gsm.data.nuswide import _relative

    assert _relative("actor\\0001_2124494179.jpg") == "actor/0001_2124494179.jpg"
    assert _relative("C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg") == "actor/0001_2124494179.jpg"
    root = _copy(made, "nuswide", tmp_path)
    label = root / "Groundtruth" / "TrainTestLabels" / "Labels_dog_Test.txt"
    label.write_bytes(label.read_bytes().replace(b"\r\n", b"\r\n\r\n", 1))  # a blank line would shift all later labels
    with pytest.raises(DataError, match=r"Labels_dog_Test.txt: line 2 is blank"):
        load_splits({"name": "nuswide", "root": str(root)})


def test_fixtures_command_line(tmp_path, capsys):
    assert fx.main(["--out", str(tmp_path), "--which", "cifar10"]) == 0
    assert f"dataset.root={tmp_path / 'cifar10'}" in capsys.readouterr().out
    gt = json.loads((tmp_path / "cifar10" / "ground_truth.json").read_text())
    assert len(gt["train_labels"]) == 30 and "train_data" not in gt
    small = fx.make_tiny_imagenet(tmp_path / "tiny3", num_classes=3, train_per_class=2, val_per_class=1)
    s = load_splits({"name": "tiny_imagenet", "root": small["root"], "image_size": 32, "cache": False})
    assert (s.num_classes, len(s.train), len(s.test)) == (3, 6, 3)  # the class count comes from wnids.txt


def test_subset_caps_file_splits(made):
    s = load_splits({"name": "nuswide", "root": str(root_of(made, "nuswide")), "image_size": 32, "subset": 4})
    assert len(s.train) == len(s.train.dataset) == len(s.train.eval_dataset) == 4 and len(s.test) == 4


# --------------------------------------------------------------------------- the release's augmentation keys

RELEASE = {  # the authors' pipelines (datasets/coco.lua:84-95, nuswideclean.lua:94-104, tinyimagenet.lua:86-95)
    "coco": {"image_size": 32, "train_crop": "resize", "color_jitter": 0.4, "lighting": 0.1, "interpolation": "bicubic"},
    "nuswide": {"image_size": 32, "train_crop": "resize", "color_jitter": 0.4, "lighting": 0.1,
                "interpolation": "bicubic"},
    "tiny_imagenet": {"image_size": 80, "train_crop": "inception", "color_jitter": 0.4, "lighting": 0.1,
                      "interpolation": "bicubic"},
    "cifar10": {"pad_mode": "reflect"},
}


def _epoch(data, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    data.train.set_epoch(epoch)
    return [(x.clone(), y.clone(), i.clone()) for x, y, i in data.train]


@pytest.mark.parametrize("name", list(RELEASE))
def test_release_keys_give_reproducible_normalised_batches(made, name):
    """The whole loader with the release's keys: finite normalised batches of the right shape, the same on two
    builds with the same seed (worker RNGs seeded from (seed, epoch, rank)), other batches in another epoch."""
    cfg = {"name": name, "root": str(root_of(made, name)), **RELEASE[name]}
    size = cfg.get("image_size", 32)

    def build():
        return build_data(cfg, batch_size=4, place=Placement(seed=11), num_workers=2)

    first, second = build(), build()
    a, b = _epoch(first, 0), _epoch(second, 0)
    assert len(a) == len(first.train) >= 2
    for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
        assert xa.shape[1:] == (3, size, size) and xa.dtype == torch.float32 and torch.isfinite(xa).all()
        assert xa.abs().max() < 6  # normalised: a few standard deviations around 0
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
    if name == "cifar10":
        assert first.train.pad_mode == "reflect"
    else:
        assert all(xa.std() > 0 for xa, _, _ in a)
    later = _epoch(first, 1)
    assert any(not torch.equal(x, y) for (x, _, _), (y, _, _) in zip(a, later))


def test_default_keys_keep_todays_training_tensors(made):
    """The dataset configs as shipped (every new key at its default) build today's pipelines: the same training
    tensors for the same worker seed as the pipeline gsm had before the keys existed."""
    from torchvision.transforms import v2

    from gsm.data.files import load_rgb
    from gsm.data.transforms import IMAGENET_STD, ScaleNormalize

    norm = ScaleNormalize(IMAGENET_MEAN, IMAGENET_STD)
    cases = {
        "coco": ({"image_size": 32, "train_crop": "multiscale", "color_jitter": 0.0, "lighting": 0.0,
                  "interpolation": "bilinear"},
                 v2.Compose([v2.Resize((37, 37), antialias=True), MultiScaleCrop(32), v2.RandomHorizontalFlip(), norm]),
                 37),
        "tiny_imagenet": ({"image_size": 80, "train_crop": "pad", "pad_mode": "zeros", "color_jitter": 0.0,
                           "lighting": 0.0, "interpolation": "bilinear"},
                          v2.Compose([v2.Resize((80, 80), antialias=True), v2.RandomCrop(80, padding=10),
                                      v2.RandomHorizontalFlip(), norm]), None),
    }
    for name, (keys, today, min_size) in cases.items():
        for cfg in ({"name": name, "root": str(root_of(made, name)), **keys},
                    {"name": name, "root": str(root_of(made, name)), "image_size": keys["image_size"]}):
            ds = load_splits(cfg).train.dataset
            assert ds.min_size == min_size
            for i in range(3):
                torch.manual_seed(i)
                got = ds[i][0]
                torch.manual_seed(i)
                assert torch.equal(got, today(load_rgb(ds.paths[i], min_size))), (name, i)


@pytest.mark.parametrize(("name", "keys", "message"), [
    ("coco", {"train_crop": "inception"}, "dataset.train_crop must be one of multiscale, random_resized, resize for dataset=coco"),
    ("nuswide", {"train_crop": "pad"}, "dataset.train_crop must be one of multiscale, random_resized, resize for dataset=nuswide"),
    ("tiny_imagenet", {"train_crop": "resize", "image_size": 80}, "dataset.train_crop must be one of pad, inception"),
    ("tiny_imagenet", {"train_crop": "inception", "image_size": 64}, "dataset.train_crop=inception needs the JPEG path.*the valid value is pad"),
    ("tiny_imagenet", {"color_jitter": 0.4, "image_size": 64}, "dataset.color_jitter=0.4 needs the JPEG path"),
    ("tiny_imagenet", {"lighting": 0.1, "image_size": 32}, "dataset.lighting=0.1 needs the JPEG path"),
    ("tiny_imagenet", {"interpolation": "bicubic", "image_size": 64}, "dataset.interpolation=bicubic needs the JPEG path"),
    ("tiny_imagenet", {"train_crop": "inception", "pad_mode": "reflect", "image_size": 80}, "dataset.pad_mode=reflect applies to dataset.train_crop=pad"),
    ("coco", {"color_jitter": -0.1}, "dataset.color_jitter must be a finite number >= 0"),
    ("nuswide", {"lighting": "strong"}, "dataset.lighting must be a finite number >= 0"),
    ("coco", {"interpolation": "nearest"}, "dataset.interpolation must be one of bilinear, bicubic"),
    ("cifar10", {"pad_mode": "edge"}, "dataset.pad_mode must be one of zeros, reflect for dataset=cifar10"),
    ("cifar100", {"pad_mode": "reflect", "crop_padding": 32}, "dataset.pad_mode=reflect needs dataset.crop_padding < dataset.image_size"),
])
def test_bad_augmentation_value_is_one_config_error(made, name, keys, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_splits({"name": name, "root": str(root_of(made, name)), **keys})
    assert str(info.value).startswith(message.split()[0].split("=")[0])  # the message opens with the key


def test_pad_mode_of_a_dataset_without_padding_keys(made):
    with pytest.raises(ConfigError, match="dataset.pad_mode must be one of zeros for dataset=coco"):
        build_data({"name": "coco", "root": str(root_of(made, "coco")), "image_size": 32, "pad_mode": "reflect"},
                   batch_size=2, num_workers=0)


def test_config_rules_of_the_new_keys():
    from gsm.config import RULES

    for key, good, bad in (("dataset.train_crop", "inception", "center"), ("dataset.color_jitter", 0.4, -1),
                           ("dataset.lighting", 0.0, "x"), ("dataset.interpolation", "bicubic", "lanczos"),
                           ("dataset.pad_mode", "reflect", "edge")):
        RULES[key](key, good)
        with pytest.raises(ConfigError, match=f"^{key} must"):
            RULES[key](key, bad)


# --------------------------------------------------------------------------- the real CLI


def _expected_counts(gt) -> tuple[int, int, int, bool]:
    name = gt["dataset"]
    if name.startswith("cifar"):
        return len(gt["train_labels"]), len(gt["test_labels"]), len(gt["class_names"]), False
    if name == "tiny_imagenet":
        return len(gt["train"]), len(gt["val"]), len(gt["wnids_file_order"]), False
    if name == "coco":
        return (sum(bool(r["categories"]) for r in gt["train"]), sum(bool(r["categories"]) for r in gt["val"]),
                len(gt["categories"]), True)
    ok = [sum(not r["missing"] and not r["unlabeled"] for r in gt[s]) for s in ("train", "test")]
    return ok[0], ok[1], len(gt["concepts"]), True


def _json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_cli_dry_run_counts_all_five(made, tmp_path):
    """python train.py -m dataset=<each> dataset.root=<fixture> model=convnet dry_run=true (one process)."""
    out = run_cli("-m", f"dataset={','.join(NAMES)}", f"dataset.root={made[0]}/${{dataset.name}}", "model=convnet",
                  "dry_run=true", f"output_root={tmp_path}")
    assert out.returncode == 0, out.stderr
    infos = _json_lines(out.stdout)
    assert len(infos) == 5
    shapes = {"cifar10": 32, "cifar100": 32, "tiny_imagenet": 64, "coco": 64, "nuswide": 64}  # convnet recipes
    for name, info in zip(NAMES, infos):
        train, test, classes, multilabel = _expected_counts(made[1][name])
        assert (info["train_samples"], info["test_samples"], info["num_classes"], info["multilabel"]) == \
            (train, test, classes, multilabel), name
        assert info["input_shape"] == [3, shapes[name], shapes[name]]


@pytest.mark.slow
def test_cli_dry_run_single_dataset(made, tmp_path):
    out = run_cli("dataset=nuswide", f"dataset.root={root_of(made, 'nuswide')}", "model=convnet", "dry_run=true",
                  f"output_root={tmp_path}")
    assert out.returncode == 0, out.stderr
    assert _json_lines(out.stdout)[-1]["train_samples"] == _expected_counts(made[1]["nuswide"])[0]


@pytest.mark.slow
def test_cli_one_epoch_convnet_all_five(made, tmp_path):
    out = run_cli("-m", f"dataset={','.join(NAMES)}", f"dataset.root={made[0]}/${{dataset.name}}", "model=convnet",
                  "trainer.epochs=1", "dataset.image_size=32", "dataset.subset=16", "trainer.batch_size=8",
                  "trainer.num_workers=1", "trainer.progress=false", f"output_root={tmp_path}")
    assert out.returncode == 0, out.stderr
    for name in NAMES:
        (path,) = (tmp_path / "runs" / name).glob("*/results.json")
        res = json.loads(path.read_text())
        assert res["dataset"] == name and res["epochs"] == 1
        train, test, classes, multilabel = _expected_counts(made[1][name])
        assert res["train_samples"] == min(train, 16) and res["test_samples"] == min(test, 16)
        if multilabel:
            for key in ("mAP_frac", "CF1_frac", "OF1_frac"):
                assert 0.0 <= res[key] <= 1.0, (name, key)
            assert len(res["per_class_ap_frac"]) == classes
        else:
            assert 0.0 <= res["top1_error_frac"] <= 1.0 and res["mAP_frac"] is None


@pytest.mark.slow
def test_cli_corrupt_jpeg_is_one_line_error(made, tmp_path):
    root = _copy(made, "nuswide", tmp_path)
    bad = root / next(r for r in made[1]["nuswide"]["test"] if not r["missing"] and not r["unlabeled"])["file"]
    bad.write_bytes(b"GIF89a truncated")
    out = run_cli("dataset=nuswide", f"dataset.root={root}", "model=convnet", "trainer.epochs=1",
                  "dataset.image_size=32", "trainer.num_workers=1", "trainer.progress=false",
                  f"output_root={tmp_path / 'out'}")
    assert out.returncode == 2
    assert f"gsm: error: cannot decode image {bad}" in out.stderr and "Traceback" not in out.stderr


def _has_resnet101() -> bool:
    from gsm.models import MODELS

    return "resnet101" in MODELS


@pytest.mark.slow
@pytest.mark.skipif(not _has_resnet101(), reason="resnet101 backbone not registered")
@pytest.mark.parametrize("name", ["coco", "nuswide"])
def test_cli_resnet101_multilabel_one_epoch(made, tmp_path, name):
    """The issue's command: ResNet-101 (no download), G-softmax, one epoch on the fixture, multi-label metrics."""
    out = run_cli(f"dataset={name}", f"dataset.root={root_of(made, name)}", "model=resnet101",
                  "model.pretrained=false", "head=gsoftmax", "trainer.epochs=1", "dataset.subset=8",
                  "dataset.image_size=64", "trainer.batch_size=4", "trainer.eval_batch_size=8",
                  "trainer.num_workers=1", "trainer.progress=false", f"output_root={tmp_path}")
    assert out.returncode == 0, out.stderr
    (path,) = (tmp_path / "runs" / name).glob("resnet101-gsoftmax*/results.json")
    res = json.loads(path.read_text())
    m = 80 if name == "coco" else 81
    assert res["model"] == "resnet101" and res["head"] == "gsoftmax" and res["epochs"] == 1
    for key in ("mAP_frac", "CP_frac", "CR_frac", "CF1_frac", "OP_frac", "OR_frac", "OF1_frac"):
        assert 0.0 <= res[key] <= 1.0, key
    assert len(res["per_class_ap_frac"]) == m and len(res["learned"]["mu"]) == m


# --------------------------------------------------------------------------- issue 18: a root that is a file, a dry run


def _tree(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (and the folder itself) with its size, mtime and, for files, a hash of the
    bytes: adding, removing, rewriting or touching anything changes it."""
    out = {}
    for p in [folder, *sorted(folder.rglob("*"))]:
        st = p.stat()
        body = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        out[p.relative_to(folder).as_posix()] = (st.st_size if p.is_file() else None, st.st_mtime_ns, body)
    return out


ROOT_HOLDS = {  # what the one-line error says the folder must hold
    "cifar10": "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta), or the folder cifar-10-batches-py "
               "itself (extract cifar-10-python.tar.gz first)",
    "cifar100": "cifar-100-python/ (train, test, meta), or the folder cifar-100-python itself "
                "(extract cifar-100-python.tar.gz first)",
    "tiny_imagenet": "tiny-imagenet-200/ (wnids.txt, words.txt, train/, val/), or the folder tiny-imagenet-200 "
                     "itself (unzip tiny-imagenet-200.zip first)",
    "coco": "annotations/instances_train2014.json, annotations/instances_val2014.json, train2014/ and val2014/",
    "nuswide": "ImageList/, ConceptsList/Concepts81.txt, Groundtruth/TrainTestLabels/ and the images "
               "(Flickr/ or dataset.image_dir)",
}
TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "tiny_imagenet": "Tiny ImageNet", "coco": "MS COCO 2014",
          "nuswide": "NUS-WIDE"}


@pytest.mark.parametrize("name", NAMES)
def test_root_that_is_a_file_is_one_line_naming_it(tmp_path, monkeypatch, name):
    """The issue's case: dataset.root pointing at the downloaded archive said "folder ... not found"."""
    import torchvision.datasets.utils as tvu

    monkeypatch.setattr(tvu, "download_and_extract_archive", lambda *a, **k: pytest.fail("downloaded"))
    archive = tmp_path / f"{name}.zip"
    archive.write_bytes(b"PK\x03\x04 not a folder")
    before = _tree(tmp_path)
    cfg = {"name": name, "root": str(archive), **({"download": True} if name.startswith("cifar") else {})}
    with pytest.raises(ConfigError) as err:
        load_splits(cfg)
    assert str(err.value) == (f"dataset.root={archive} is a file, not a folder: {TITLES[name]} reads the folder that "
                              f"holds {ROOT_HOLDS[name]}")
    assert _tree(tmp_path) == before  # nothing written, nothing downloaded


def test_a_file_where_a_folder_belongs_is_named_as_such(made, tmp_path):
    root = _copy(made, "nuswide", tmp_path)
    shutil.rmtree(root / "Groundtruth" / "TrainTestLabels")
    (root / "Groundtruth" / "TrainTestLabels").write_text("not a folder")
    with pytest.raises(DataError) as err:
        load_splits({"name": "nuswide", "root": str(root)})
    assert str(err.value) == (f"NUS-WIDE: {root / 'Groundtruth' / 'TrainTestLabels'} is a file, not a folder "
                              f"(dataset.root={root})")


def test_load_splits_write_false_reads_the_cache_and_writes_nothing(made, tmp_path, caplog):
    root = _copy(made, "tiny_imagenet", tmp_path)
    shutil.rmtree(root / "tiny-imagenet-200" / ".gsm-cache", ignore_errors=True)  # an earlier test's cache, if any
    cfg = {"name": "tiny_imagenet", "root": str(root), "image_size": 32}
    before = _tree(tmp_path)
    dry = load_splits(cfg, write=False)
    assert _tree(tmp_path) == before and not (root / "tiny-imagenet-200" / ".gsm-cache").exists()
    outside = tmp_path / "elsewhere" / "cache"
    load_splits({**cfg, "cache_dir": str(outside)}, write=False)
    assert _tree(tmp_path) == before  # not even the cache_dir's folder
    used = load_splits(cfg)  # a training run writes it (the check above can fail)
    assert len(list((root / "tiny-imagenet-200" / ".gsm-cache").glob("*.pt"))) == 2 and _tree(tmp_path) != before
    cached = _tree(tmp_path)
    with caplog.at_level(logging.INFO, logger="gsm.data"):
        again = load_splits(cfg, write=False)
    assert "from cache" in caplog.text and _tree(tmp_path) == cached
    for s in (used, again):
        assert torch.equal(s.train.images, dry.train.images) and torch.equal(s.test.images, dry.test.images)


def test_load_splits_write_false_never_downloads(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    monkeypatch.setattr(tvu, "download_and_extract_archive", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(DataError) as err:
        load_splits({"name": "cifar10", "root": str(tmp_path / "new"), "download": True}, write=False)
    assert str(err.value).startswith(f"CIFAR-10: not (completely) in {tmp_path / 'new'}, and a dry run downloads "
                                     "nothing; run without dry_run=true to download https://")
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_cli_dry_run_on_tiny_imagenet_writes_nothing(tmp_path):
    """The issue's case: dry_run=true wrote .gsm-cache/*.pt into the dataset folder. Now the fixture folder, the
    output root and the working directory are byte-identical (names, sizes, mtimes, contents) after a dry run."""
    gt = fx.make_tiny_imagenet(tmp_path / "data")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = _tree(tmp_path)
    out = run_cli("dataset=tiny_imagenet", f"dataset.root={gt['root']}", "model=convnet", "dry_run=true",
                  f"output_root={tmp_path / 'out'}", cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    info = _json_lines(out.stdout)[-1]
    assert (info["train_samples"], info["test_samples"], info["input_shape"]) == (len(gt["train"]), len(gt["val"]),
                                                                                 [3, 64, 64])
    assert _tree(tmp_path) == before, sorted(set(_tree(tmp_path)) ^ set(before))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny_imagenet", "cifar10"])
def test_cli_root_that_is_a_file(tmp_path, name):
    archive = tmp_path / "download.tar.gz"
    archive.write_bytes(b"\x1f\x8b not a folder")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = _tree(tmp_path)
    extra = ["dataset.download=true"] if name == "cifar10" else []
    out = run_cli(f"dataset={name}", f"dataset.root={archive}", "model=convnet", "trainer.epochs=1", *extra,
                  f"output_root={tmp_path / 'out'}", cwd=cwd)
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.strip().splitlines() == [f"gsm: error: dataset.root={archive} is a file, not a folder: "
                                               f"{TITLES[name]} reads the folder that holds {ROOT_HOLDS[name]}"]
    assert _tree(tmp_path) == before  # no run folder, no download, nothing in the working directory
