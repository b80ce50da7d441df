"""Missing data is one message per table, before any job starts (gsm.data_check, ``gsm-tables tableN``)."""

from __future__ import annotations

import shutil

import pytest

import gsm.reproduce
from gsm import paper
from gsm.data import fixtures as fx
from gsm.data_check import check_data, missing_data
from gsm.errors import DataError
from gsm.grid import Grid
from gsm.reproduce import main


def _no_launch(monkeypatch) -> list:
    started: list = []
    monkeypatch.setattr(gsm.launch, "run_trainer", lambda cmd, *a, **kw: started.append(cmd) or (0, False))
    return started


def test_table3_without_coco_is_one_block_and_starts_nothing(tmp_path, monkeypatch, capsys):
    started = _no_launch(monkeypatch)
    code = main(["table3", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "t"),
                 "-o", f"dataset.root={tmp_path / 'nowhere'}"])
    err = capsys.readouterr().err
    assert code == 2 and started == [] and not (tmp_path / "t").exists()
    assert err.count("gsm cannot download MS COCO") == 1 and err.count("gsm-tables: error:") == 1, err
    assert "MS COCO 2014 (dataset=coco, 7 runs)" in err and str(tmp_path / "nowhere") in err
    assert "https://cocodataset.org/#download" in err and "annotations/instances_val2014.json" in err
    assert "Traceback" not in err and len(err.splitlines()) < 15


def test_every_missing_dataset_is_named_once(tmp_path):
    configs = [{"dataset": {"name": name, "root": str(tmp_path / name)}}
               for name in ("cifar10", "cifar10", "cifar100", "tiny_imagenet", "nuswide", "digits")]
    text = missing_data(configs)
    for title, page in (("CIFAR-10 (dataset=cifar10, 2 runs)", "https://www.cs.toronto.edu/~kriz/cifar.html"),
                        ("CIFAR-100 (dataset=cifar100, 1 run)", "cifar-100-python.tar.gz"),
                        ("Tiny ImageNet (dataset=tiny_imagenet, 1 run)", "tiny-imagenet-200.zip"),
                        ("NUS-WIDE (dataset=nuswide, 1 run)", "NUS-WIDE.html")):
        assert text.count(title) == 1 and page in text, text
    assert text.startswith("4 datasets this table needs are missing; no run was started")
    assert "digits" not in text  # embedded in gsm: nothing on disk to miss


def test_data_in_its_official_layout_passes_and_a_partial_one_names_what_is_missing(tmp_path):
    for name, maker in fx.MAKERS.items():
        maker(tmp_path / name)
    configs = [{"dataset": {"name": name, "root": str(tmp_path / name)}} for name in fx.MAKERS]
    assert missing_data(configs) is None
    check_data(configs)
    # the folder itself (CIFAR's pickles directly in dataset.root) is accepted, as the loader accepts it
    assert missing_data([{"dataset": {"name": "cifar10", "root": str(tmp_path / "cifar10" / "cifar-10-batches-py")}}]) is None
    shutil.rmtree(tmp_path / "coco" / "val2014")
    (tmp_path / "tiny_imagenet" / "tiny-imagenet-200" / "wnids.txt").unlink()
    with pytest.raises(DataError) as err:
        check_data(configs)
    text = str(err.value)
    assert "MS COCO 2014 (dataset=coco, 1 run)" in text and "lacks val2014/." in text
    assert "lacks tiny-imagenet-200/wnids.txt." in text and "CIFAR" not in text and "NUS-WIDE" not in text


def test_what_the_trainer_fetches_or_reads_relative_to_its_folder_is_no_error(tmp_path):
    assert missing_data([{"dataset": {"name": "cifar100", "root": str(tmp_path / "x"), "download": True}}]) is None
    fx.make_coco(tmp_path / "data" / "coco")
    assert missing_data([{"dataset": {"name": "coco", "root": "data/coco"}}], cwd=tmp_path) is None
    assert "dataset.root is not set" in missing_data([{"dataset": {"name": "coco", "root": None}}])


@pytest.mark.slow
def test_the_check_reads_the_roots_the_grid_would_launch_with(tmp_path):
    fx.make_coco(tmp_path / "coco")
    grid = Grid(paper.experiments(3), "full", tmp_path / "runs", [f"dataset.root={tmp_path / 'coco'}"])
    assert missing_data(grid.rows[e].config for e in grid.missing()) is None
    grid = Grid(paper.experiments(3), "full", tmp_path / "runs", [f"dataset.root={tmp_path / 'other'}"])
    assert "7 runs" in missing_data(grid.rows[e].config for e in grid.missing())
