"""The cost estimate (gsm.estimate): composition and grouping into recipes, the probe on CPU, the report."""

from __future__ import annotations

import math
import re
import tempfile

import pytest
import torch
from torch import nn

from gsm import estimate
from gsm.errors import ConfigError
from gsm.heads import build_head
from gsm.models import Classifier

SMOKE_WRN = ["table1/wrn_cifar10_gsoftmax", "table1/wrn1100_cifar10_gsoftmax"]


def _table(text: str, first_header: str) -> list[dict[str, str]]:
    """The markdown table whose first column is ``first_header``, as dicts."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def _num(cell: str) -> float:
    return float(cell.split()[0].replace(",", ""))


def _hours(cell: str) -> float:
    """A duration as printed ('3.3 s', '12.5 min', '1.27 h') in hours."""
    value, unit = cell.split()
    return float(value.replace(",", "")) / {"s": 3600, "min": 60, "h": 1}[unit]


@pytest.mark.slow
def test_smoke_estimate_on_cpu_prints_every_row_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the smoke profile's output root (outputs/smoke) is relative
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    rc = estimate.run_estimate(SMOKE_WRN, "smoke", [], "basic", device="cpu", warmup=1, steps=1)
    out = capsys.readouterr().out
    assert rc == 0
    recipes = _table(out, "recipe")
    assert len(recipes) == 1  # same model, head, batch and data: one probe serves both rows
    assert _num(recipes[0]["GFLOP/image"]) > 0
    assert recipes[0]["data set-up s"] == "n/a (data not here)"  # no fixtures under this tmp_path
    process_s = float(out.split("process start-up (python, torch, the trainer's imports; measured in a fresh process): ")[1].split()[0])
    assert process_s > 0
    rows = {r["experiment"]: r for r in _table(out, "experiment")}
    assert set(rows) == set(SMOKE_WRN)
    for row in rows.values():
        for col in ("images/s", "train s/epoch", "eval s/epoch", "checkpoint s/epoch", "s/epoch", "time/run", "disk/run"):
            value = _num(row[col])
            assert math.isfinite(value) and value > 0, (col, row[col])
        assert row["MFU"] == "n/a" and row["peak memory"] == "n/a"  # a CPU has no known peak
        parts = _num(row["train s/epoch"]) + _num(row["eval s/epoch"]) + _num(row["checkpoint s/epoch"])
        assert _num(row["s/epoch"]) == pytest.approx(parts, rel=0.02, abs=0.02)
    # the 1,100-epoch row runs 2 epochs under the smoke profile, the other 1: the same training time per epoch;
    # the recipe evaluates every 5 epochs and at the last, so both runs evaluate once
    a, b = rows["table1/wrn_cifar10_gsoftmax"], rows["table1/wrn1100_cifar10_gsoftmax"]
    assert (a["epochs"], b["epochs"]) == ("1", "2") and a["train s/epoch"] == b["train s/epoch"]
    assert _num(b["eval s/epoch"]) == pytest.approx(_num(a["eval s/epoch"]) / 2, rel=0.05, abs=0.01)
    total = float(out.split("total: 2 run(s), one seed each: ")[1].split()[0])
    # each run's time is printed to 0.1 s or 0.1 min, the total to two significant digits
    assert total == pytest.approx(sum(_hours(r["time/run"]) for r in rows.values()), rel=0.05)
    assert not re.search(r"\de-\d", out.split("total: ")[1].splitlines()[0])  # never 9.253e-04
    assert "launcher basic: 1 in parallel" in out
    assert not (tmp_path / "outputs").exists()  # no run folder
    assert not list(scratch.glob("gsm-estimate-*"))  # the checkpoint's temporary folder is gone


def test_recipes_group_rows_that_train_alike():
    configs = estimate.compose_experiments(
        ["table3/resnet101_coco_softmax", "table3/resnet101_coco_gsoftmax_mu0_sigma1",
         "table3/resnet101_coco_gsoftmax_mu0_sigma5", "table3/resnet101_coco_gsoftmax_empirical"], "full", [])
    recipes = estimate.group_recipes(configs)
    by_head = {r.config["head"]["name"]: r.experiments for r in recipes}
    assert by_head["softmax"] == ["table3/resnet101_coco_softmax"]
    assert len(by_head["gsoftmax"]) == 3  # μ, σ and the init do not change a step's cost
    shape = recipes[0].shape()
    assert (shape["image_size"], shape["num_classes"], shape["multilabel"], shape["files"]) == (448, 80, True, True)
    assert (shape["train"], shape["test"]) == (82_081, 40_137)
    assert recipes[0].batch_size == 16


def test_smoke_profile_caps_split_sizes_and_shapes():
    cfg = estimate.compose_experiments(["table2/resnet101_tiny_imagenet_softmax"], "smoke", [])
    shape = estimate.group_recipes(cfg)[0].shape()
    # smoke: 32x32 (tensor path, padding 8 at 64 px scaled to 4), at most 48 images per split
    assert (shape["image_size"], shape["files"], shape["crop_padding"]) == (32, False, 4)
    assert (shape["train"], shape["test"], shape["num_classes"]) == (48, 48, 200)


def test_train_flops_of_a_linear_model_match_the_hand_count():
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 8))
    backbone.out_features = 8
    model = Classifier(backbone, build_head("softmax", 8, 5, False))
    loader = estimate.SyntheticLoader([(torch.randn(4, 3, 2, 2), torch.randint(0, 5, (4,)), torch.arange(4))])
    # forward 2·12·8 + 2·8·5; backward: weight grads of both layers, input grad of the second only
    expected = 2 * 12 * 8 * 2 + 2 * 8 * 5 * 3
    assert estimate.train_flops_per_image(model, loader, None) == expected


def test_run_costs_add_up_from_the_probe():
    cfg = {"trainer": {"epochs": 10, "checkpoint_every": 2, "analyze_train": True}}
    m = {"shape": {"train": 1000, "test": 200}, "images_per_second": 100.0, "eval_images_per_second": 400.0,
         "metrics_seconds": 0.5, "checkpoint_seconds": 3.0, "loader_images_per_second": None}
    c = estimate.run_costs(cfg, m)
    assert c["train_s"] == 10.0 and c["eval_s"] == 1.0 and c["ckpt_s"] == 1.5 and c["epoch_s"] == 12.5
    assert c["hours"] == pytest.approx((10 * 12.5 + 1000 / 400) / 3600)
    capped = estimate.run_costs(cfg, {**m, "loader_images_per_second": 50.0, "loader_eval_images_per_second": 80.0})
    assert capped["rate"] == 50.0 and capped["train_s"] == 20.0 and capped["eval_s"] == 200 / 80 + 0.5
    # evaluated at epochs 3, 6, 9 and the last (10); checkpointed at 4, 8 and 10: averaged over the 10 epochs
    sparse = estimate.run_costs({"trainer": {"epochs": 10, "eval_every": 3, "checkpoint_every": 4}}, m)
    assert sparse["eval_s"] == pytest.approx(4 * 1.0 / 10) and sparse["ckpt_s"] == pytest.approx(3 * 3.0 / 10)
    assert sparse["hours"] == pytest.approx(10 * (10.0 + 0.4 + 0.9) / 3600)
    compiled = estimate.run_costs({"trainer": {"epochs": 10}}, {**m, "startup_seconds": 90.0})
    assert compiled["epoch_s"] == c["epoch_s"] - 1.5 + 3.0 and compiled["hours"] == pytest.approx((10 * 14.0 + 90) / 3600)
    # once per run: the data's loading and fingerprinting (where the data is here) and the process start-up
    setup = estimate.run_costs({"trainer": {"epochs": 10}}, {**m, "data_seconds": 12.0, "process_seconds": 6.0})
    assert setup["hours"] == pytest.approx((10 * 14.0 + 12 + 6) / 3600)
    assert estimate.run_costs({"trainer": {"epochs": 10}}, {**m, "data_seconds": None})["hours"] == pytest.approx(140 / 3600)
    # head.init=empirical: one eval-mode pass over head.init_batches training batches (null: the whole set), once
    whole = estimate.run_costs({"trainer": {"epochs": 10, "batch_size": 50}, "head": {"init": "empirical", "init_batches": None}}, m)
    assert whole["hours"] == pytest.approx((10 * 14.0 + 1000 / 400) / 3600)
    some = estimate.run_costs({"trainer": {"epochs": 10, "batch_size": 50}, "head": {"init": "empirical", "init_batches": 4}}, m)
    assert some["hours"] == pytest.approx((10 * 14.0 + 200 / 400) / 3600)


def test_launcher_parallelism_and_wall_time():
    assert estimate.parallel_gpus("basic", [], 24)[0] == 1
    assert estimate.parallel_gpus("gsm_ray:8", [], 24)[0] == 8
    assert estimate.parallel_gpus("slurm", [], 24)[0] == 24  # submitit's default allows all 24 at once
    assert estimate.parallel_gpus("slurm", ["hydra.launcher.array_parallelism=4"], 24)[0] == 4
    with pytest.raises(ConfigError, match="launcher"):
        estimate.parallel_gpus("nonesuch", [], 3)
    with pytest.raises(ConfigError, match="positive number"):
        estimate.parallel_gpus("ray:0", [], 3)
    assert estimate.makespan([5, 4, 3, 3, 1], 2) == 8  # 5+3 | 4+3+1
    assert estimate.makespan([5, 4, 3], 1) == 12


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="profile"):
        estimate.run_estimate(SMOKE_WRN, "nonesuch", [], "basic", device="cpu")
    with pytest.raises(ConfigError, match="--device"):
        estimate.run_estimate(SMOKE_WRN, "smoke", [], "basic", device="tpu")
    with pytest.raises(ConfigError, match="peak-tflops"):
        estimate.run_estimate(SMOKE_WRN, "smoke", [], "basic", device="cpu", peak_tflops=-1.0)


def test_full_profile_without_a_gpu_probes_nothing_and_points_at_the_alternatives(monkeypatch, capsys):
    from gsm import estimate

    monkeypatch.setattr(estimate.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(estimate, "probe", lambda *a, **k: pytest.fail("the full profile was probed on a CPU"))
    assert estimate.run_estimate(["table1/wrn_cifar10_softmax"], "full", [], "basic") == 0
    out = capsys.readouterr().out
    assert out.startswith("gsm estimate: no GPU here, so nothing is probed")
    assert "--profile smoke" in out and "--device cpu" in out  # the measured figure: tests/test_estimate_plan.py
