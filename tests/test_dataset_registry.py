"""One place per dataset fact: each dataset module declares a DatasetInfo, gsm.data.DATASETS collects them,
and everything else (config checks, tables, figures, status) reads them there.

The facts are checked against what does not come from the registry: the config files, the dataset table of
docs/datasets.md, and the loaders run on the fixtures in the official layouts (gsm.data.fixtures) and on
the embedded digits. A dataset added as a new module plus its configs is picked up without touching any
other file (the last test builds one).
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

import gsm.data
from conftest import REPO
from gsm.config import validate_config
from gsm.data import DATASET_NAMES, DATASETS, FileSplit, TensorSplit, build_data, load_splits
from gsm.data import fixtures as fx
from gsm.data.types import DatasetInfo
from gsm.errors import ConfigError

CONFIGS = REPO / "gsm" / "configs"


def dataset_config(name: str, **changes) -> dict:
    """gsm/configs/dataset/<name>.yaml as the trainer reads it, with ``changes``."""
    return {**yaml.safe_load((CONFIGS / "dataset" / f"{name}.yaml").read_text()), **changes}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Every fixture once; Tiny ImageNet with its official 200 classes (one image per class and split)."""
    out = tmp_path_factory.mktemp("fixtures")
    roots = {}
    for name, make in fx.MAKERS.items():
        official = {"num_classes": 200, "train_per_class": 1, "val_per_class": 1, "gray_every": 50}
        make(out / name, **(official if name == "tiny_imagenet" else {}))
        roots[name] = out / name
    return roots


# --------------------------------------------------------------------------- the registry and the configs


def test_every_dataset_config_has_one_registry_entry():
    """A dataset is a config file and a module: each ``gsm/configs/dataset/*.yaml`` names a registered dataset
    (its file name is its name) and each registered dataset has its config file."""
    names = {}
    for path in sorted((CONFIGS / "dataset").glob("*.yaml")):
        names[path.stem] = yaml.safe_load(path.read_text())["name"]
    assert names == {stem: stem for stem in names}
    assert set(DATASETS) == set(names)
    for name, info in DATASETS.items():
        assert isinstance(info, DatasetInfo) and info.name == name
        assert DATASET_NAMES[name] == info.display_name


def test_registry_agrees_with_the_documented_dataset_table():
    """docs/datasets.md's table (train / test sizes and classes of the real files) against the declared facts."""
    text = (REPO / "docs" / "datasets.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| (\d+)", text, flags=re.M)
    assert {name for name, _, _ in rows} >= {"cifar10", "cifar100", "tiny_imagenet", "coco", "nuswide"}
    for name, sizes, classes in rows:
        info = DATASETS[name]
        train, test = (int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", sizes)[:2])
        assert (train, test, int(classes)) == (info.train_size, info.test_size, info.num_classes), name


# --------------------------------------------------------------------------- the registry and the loaders


@pytest.mark.parametrize("name", ["digits", "digits_mosaic"])
def test_embedded_sets_have_the_declared_sizes(name):
    """The embedded sets are the real data: the loader's split sizes are the declared ones (digits_mosaic's
    without dataset.train_size / test_size are its declared defaults)."""
    info = DATASETS[name]
    cfg = {k: v for k, v in dataset_config(name).items() if k not in ("train_size", "test_size")}
    s = load_splits(cfg)
    assert (len(s.train), len(s.test)) == (info.train_size, info.test_size)
    assert (s.num_classes, s.multilabel, s.in_channels) == (info.num_classes, info.multilabel, info.in_channels)
    assert len(s.class_names) == info.num_classes


@pytest.mark.parametrize("name", sorted(fx.MAKERS))
def test_loaders_on_the_fixtures_match_the_declared_facts(made, name):
    """Classes, channels, multi-label, the input size when dataset.image_size is null, and tensors vs image
    files at the default size, as the loader gives them on files in the official layout."""
    info = DATASETS[name]
    s = load_splits(dataset_config(name, root=str(made[name]), image_size=None))
    assert s.name == name
    assert (s.num_classes, len(s.class_names)) == (info.num_classes, info.num_classes)
    assert (s.multilabel, s.in_channels, s.image_size) == (info.multilabel, info.in_channels, info.default_image_size)
    kind = FileSplit if info.reads_files(s.image_size) else TensorSplit
    assert isinstance(s.train, kind) and isinstance(s.test, kind)
    if kind is TensorSplit:
        assert s.train.images.shape[1:] == (info.in_channels, info.default_image_size, info.default_image_size)
    assert s.fingerprint["num_classes"] == info.num_classes


@pytest.mark.parametrize("name", sorted(fx.MAKERS))
def test_smallest_input_size_is_the_loaders(made, name):
    """min_image_size is where the loader's own check starts refusing dataset.image_size."""
    info = DATASETS[name]
    smallest = info.min_image_size
    # read from files (nothing decoded at load) or decoded once: a small size is cheap either way
    assert load_splits(dataset_config(name, root=str(made[name]), image_size=smallest, subset=4)).image_size == smallest
    with pytest.raises(ConfigError, match=rf"^dataset\.image_size must be an integer >= {smallest}"):
        load_splits(dataset_config(name, root=str(made[name]), image_size=smallest - 1))


def test_tiny_imagenet_reads_files_above_its_native_size_and_scales_its_padding(made):
    info = DATASETS["tiny_imagenet"]
    assert info.files_above == 64 and info.padding_at == 64
    above = load_splits(dataset_config("tiny_imagenet", root=str(made["tiny_imagenet"]), image_size=80, subset=4))
    assert isinstance(above.train, FileSplit) and info.reads_files(80)
    small = load_splits(dataset_config("tiny_imagenet", root=str(made["tiny_imagenet"]), image_size=32,
                                       crop_padding=8, subset=4))
    assert isinstance(small.train, TensorSplit) and small.crop_padding == 4 == info.crop_padding(8, 32)


@pytest.mark.parametrize("name", sorted(fx.MAKERS))
def test_pad_modes_are_the_ones_the_loaders_take(made, name):
    """A dataset whose random crop pads by reflection declares it; the others refuse dataset.pad_mode=reflect."""
    info = DATASETS[name]
    cfg = dataset_config(name, root=str(made[name]), image_size=32 if not info.multilabel else 16, subset=8,
                         pad_mode="reflect")
    if "reflect" in info.pad_modes:
        build_data(cfg, batch_size=4, num_workers=0)
    else:
        with pytest.raises(ConfigError, match=r"dataset\.pad_mode must be one of zeros .*reflect is for "
                                              r"cifar10, cifar100, tiny_imagenet"):
            build_data(cfg, batch_size=4, num_workers=0)


# --------------------------------------------------------------------------- who reads the registry


def test_tables_figures_status_and_config_read_the_registry(monkeypatch):
    """No other table of dataset names or sizes: builders and figures use gsm.data's display names, status
    imports them from there, and the config's smallest-input check follows what the module declares."""
    import gsm.config as gc
    import gsm.figures as figures
    import gsm.report.builders as builders
    import gsm.report.running as running

    assert builders.DATASET_NAMES is DATASET_NAMES and figures.DATASET_NAMES is DATASET_NAMES
    assert not hasattr(figures, "DATASET_LABEL") and not hasattr(gc, "MIN_IMAGE_SIZE")
    assert "from gsm.data import DATASET_NAMES" in Path(running.__file__).read_text()
    # a display name is a string of the code once, in its dataset module (docstrings aside)
    literals: dict[str, list[str]] = {info.display_name: [] for info in DATASETS.values()}
    for path in sorted((REPO / "gsm").rglob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in literals and id(node) not in docstrings:
                literals[node.value].append(path.relative_to(REPO).as_posix())
    assert all(len(set(files)) <= 1 for files in literals.values()), literals

    coco = DATASETS["coco"]
    changed = {**dict(DATASETS.items()), "coco": dataclasses.replace(coco, min_image_size=40)}
    monkeypatch.setattr(DATASETS, "_infos", changed)
    with pytest.raises(ConfigError, match=r"^dataset\.image_size must be an integer >= 40 for dataset=coco \(got 32\)"):
        validate_config(_composed("dataset=coco", "model=resnet101", "dataset.image_size=32"))


def _composed(*overrides: str, search_dir: Path | None = None):
    import gsm.runs

    gsm.runs.register_resolvers()
    extra = [f"hydra.searchpath=[file://{search_dir}]"] if search_dir else []
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3", job_name="train"):
        return compose("train", overrides=[*overrides, *extra], return_hydra_config=True)


# --------------------------------------------------------------------------- adding a dataset


TOY_MODULE = '''
"""Toy: 2x2 checkerboards whose top-left and bottom-right squares are dark or light (4 classes), made in memory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from gsm.data.types import DatasetInfo, DatasetSplits, TensorSplit
from gsm.settings import DATASET

CLASS_NAMES = ["none", "top", "bottom", "both"]


def _split(n: int, size: int, seed: int) -> TensorSplit:
    labels = torch.randint(0, INFO.num_classes, (n,), generator=torch.Generator().manual_seed(seed))
    half = size // 2
    images = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    images[:, 0, :half, :half] = 255 * (labels // 2)[:, None, None]
    images[:, 0, half:, half:] = 255 * (labels % 2)[:, None, None]
    return TensorSplit(images, labels)


def load_toy(cfg: Mapping[str, Any], *, write: bool = True) -> DatasetSplits:
    size = INFO.image_size(cfg.get("image_size"))  # null: the default; else the key's rule, then INFO's minimum
    return DatasetSplits(
        name=INFO.name, num_classes=INFO.num_classes, multilabel=INFO.multilabel, class_names=CLASS_NAMES,
        train=_split(INFO.train_size, size, seed=0), test=_split(INFO.test_size, size, seed=1),
        in_channels=INFO.in_channels, image_size=size,
        crop_padding=DATASET.check("crop_padding", cfg.get("crop_padding", 0)),  # each key's one rule
        flip=DATASET.check("flip", cfg.get("flip", False)),
    )


INFO = DatasetInfo(name="toy", display_name="Toy checkerboards", load=load_toy, in_channels=1, num_classes=4,
                   multilabel=False, train_size=64, test_size=32, default_image_size=8)
DATASET_INFO = (INFO,)
'''


def test_a_new_dataset_is_its_module_plus_its_configs(tmp_path, monkeypatch):
    """docs/development.md's example: gsm/data/toy.py and dataset/toy.yaml + dataset_model/toy_convnet.yaml
    (here in a folder on Hydra's search path) are all it takes; the registry, the config checks, the loaders
    and the display names pick it up."""
    package = tmp_path / "package"
    package.mkdir()
    (package / "toy.py").write_text(textwrap.dedent(TOY_MODULE))
    configs = tmp_path / "configs"
    (configs / "dataset").mkdir(parents=True)
    (configs / "dataset_model").mkdir()
    (configs / "dataset" / "toy.yaml").write_text(
        "name: toy\nroot: null\nsubset: null\nimage_size: 8\ncrop_padding: 1\nflip: false\n")
    (configs / "dataset_model" / "toy_convnet.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /schedule: linspace\ntrainer:\n  epochs: 1\n  batch_size: 16\n")
    monkeypatch.setattr(gsm.data, "__path__", [*gsm.data.__path__, str(package)])
    monkeypatch.setattr(DATASETS, "_infos", None)
    monkeypatch.delitem(sys.modules, "gsm.data.toy", raising=False)
    try:
        assert DATASETS["toy"].display_name == DATASET_NAMES["toy"] == "Toy checkerboards"
        cfg = _composed("dataset=toy", search_dir=configs)
        validate_config(cfg)
        with pytest.raises(ConfigError, match=r"^dataset\.image_size must be an integer >= 8"):
            validate_config(_composed("dataset=toy", "dataset.image_size=4", search_dir=configs))
        with pytest.raises(ConfigError, match=r"^head=msml is the multi-label soft margin loss"):
            validate_config(_composed("dataset=toy", "head=msml", search_dir=configs))
        data = build_data(cfg.dataset, batch_size=16, num_workers=0)
        assert data.input_shape == [1, 8, 8] and len(data.splits.train) == 64 and len(data.splits.test) == 32
        assert (data.splits.crop_padding, data.splits.flip, data.splits.class_names[3]) == (1, False, "both")
        images, labels, _ = next(iter(data.test))
        assert images.shape == (16, 1, 8, 8) and labels.tolist() == data.splits.test.targets[:16].tolist()
        assert data.splits.fingerprint["dataset"] == "toy"
    finally:
        sys.modules.pop("gsm.data.toy", None)
