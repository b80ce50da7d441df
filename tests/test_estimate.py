"""The cost estimate (gsm.estimate): composition and grouping into recipes, the probe on CPU, the report."""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from gsm import estimate
from gsm.errors import ConfigError
from gsm.heads import SIGMA_FLOOR, build_head
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


def _printed_range(text: str, hours: bool = False) -> tuple[float, float]:
    """The interval of true values that print as ``text`` (a rounded number, or a duration when ``hours``), in hours."""
    number, *unit = text.split()
    number = number.replace(",", "")
    half = 0.5 * 10.0 ** -(len(number.split(".")[1]) if "." in number else 0)
    per_hour = {"s": 3600, "min": 60, "h": 1}[unit[0]] if hours else 1
    return (float(number) - half) / per_hour, (float(number) + half) / per_hour


def test_printed_range_brackets_what_rounds_to_the_text():
    assert _printed_range("0.0012") == pytest.approx((0.00115, 0.00125))
    assert _printed_range("2.1 s", hours=True) == pytest.approx((2.05 / 3600, 2.15 / 3600))
    assert _printed_range("1,043 h", hours=True) == pytest.approx((1042.5, 1043.5))
    # the case that failed in CI: runs of 2.0 s and 2.1 s (true sum 4.0..4.2 s) and a total of 0.0012 h (>= 4.14 s)
    low, high = _printed_range("0.0012")
    runs = [_printed_range(t, hours=True) for t in ("2.0 s", "2.1 s")]
    assert low <= sum(r[1] for r in runs) and sum(r[0] for r in runs) <= high
    # and a total that no rounding explains is caught
    low, high = _printed_range("0.0014")
    assert not (low <= sum(r[1] for r in runs))


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
    total_text = out.split("total: 2 run(s), one seed each: ")[1].split()[0]
    # each run's time is printed to 0.1 s or 0.1 min, the total to two significant digits: the total's true value
    # lies within half its last digit, each run's within half of its own, and the two ranges must overlap
    total_low, total_high = _printed_range(total_text)
    runs_low = sum(_printed_range(r["time/run"], hours=True)[0] for r in rows.values())
    runs_high = sum(_printed_range(r["time/run"], hours=True)[1] for r in rows.values())
    assert total_low <= runs_high and runs_low <= total_high, (total_text, [r["time/run"] for r in rows.values()])
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


def _smoke_coco_empirical(*overrides: str) -> estimate.Recipe:
    """Table III's empirical-init G-softmax row under the smoke profile: a JPEG set (COCO reads files at any size),
    multi-label, 32 px, the small ResNet; cheap to build and step on a CPU."""
    exp = "table3/resnet101_coco_gsoftmax_empirical"
    (recipe,) = estimate.group_recipes(estimate.compose_experiments([exp], "smoke", list(overrides)))
    return recipe


def test_jpeg_sets_probe_on_ready_float_batches_with_a_label_for_every_image():
    shape = _smoke_coco_empirical().shape()
    assert shape["files"] and shape["multilabel"]
    loader = estimate.make_loader(shape, 5, 3, True, torch.device("cpu"), channels_last=True, seed=7)
    assert isinstance(loader, estimate.SyntheticLoader) and len(loader) == 3
    loader.set_epoch(4)  # the trainer's call: a no-op for ready batches
    batches = list(loader)
    assert len(batches) == 3
    seen = []
    for images, targets, idx in batches:
        assert images.dtype == torch.float32 and images.shape == (5, 3, 32, 32)
        assert images.is_contiguous(memory_format=torch.channels_last)
        assert targets.shape == (5, shape["num_classes"]) and set(targets.unique().tolist()) <= {0.0, 1.0}
        assert bool((targets.sum(1) >= 1).all())  # a multi-label image has at least one label
        seen += idx.tolist()
    assert seen == list(range(15))  # every synthetic image once, in order
    # the same seed gives the same batches; the single-label shape gives class indices
    again = list(estimate.make_loader(shape, 5, 3, True, torch.device("cpu"), channels_last=False, seed=7))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    single = {**shape, "multilabel": False, "num_classes": 7}
    (_, labels, _), = list(estimate.make_loader(single, 64, 1, False, torch.device("cpu"), False))
    assert labels.dtype == torch.int64 and 0 <= int(labels.min()) and int(labels.max()) < 7


@pytest.mark.parametrize("experiment", ["table3/resnet101_coco_softmax", "table2/resnet101_tiny_imagenet_softmax"])
def test_loader_rate_per_worker_decodes_in_one_thread_and_leaves_nothing(experiment, tmp_path, monkeypatch):
    (recipe,) = estimate.group_recipes(estimate.compose_experiments([experiment], "full", []))
    shape = recipe.shape()
    assert shape["files"] and shape["source"] is not None
    # importing torchvision's transforms makes torch's compile cache folder in the temp dir (torch/_dynamo/package.py):
    # done before the temp dir is pointed here, so that the test is the same alone as after other tests
    import gsm.data.transforms  # noqa: F401

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    decoded = []
    from gsm.data import files

    real_getitem = files.ImageFiles.__getitem__

    def spy(self, i):
        item = real_getitem(self, i)
        decoded.append((torch.get_num_threads(), tuple(item[0].shape)))
        return item

    monkeypatch.setattr(files.ImageFiles, "__getitem__", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_rate, eval_rate = estimate.loader_rate_per_worker(recipe, shape, images=3)
        assert torch.get_num_threads() == 2  # the caller's threads are back
    finally:
        torch.set_num_threads(before)
    assert math.isfinite(train_rate) and train_rate > 0 and math.isfinite(eval_rate) and eval_rate > 0
    size = shape["image_size"]
    # one untimed decode, then the timed ones, for the train and the eval transform: all in one thread, at the
    # recipe's input size
    assert decoded == [(1, (3, size, size))] * (2 * (1 + 3))
    assert list(tmp_path.iterdir()) == []  # the probe JPEG's folder is removed


def test_probe_initialises_an_empirical_head_from_one_synthetic_eval_batch():
    recipe = _smoke_coco_empirical()
    assert recipe.config["head"]["init"] == "empirical"
    built = estimate.build_probe_run(recipe, torch.device("cpu"))
    head = built.model.head
    assert head.needs_data_init is False  # a forward pass would raise before the init
    # μ, σ are the mean and population std of x over the batch the probe reads (eval batch size, seed 0)
    shape = recipe.shape()
    loader = estimate.make_loader(shape, built.machine.eval_batch_size, 1, False, torch.device("cpu"),
                                  built.machine.channels_last, seed=0)
    (images, _, _), = list(loader)
    built.model.eval()
    with torch.no_grad():
        x = head.fc_outputs(built.model.backbone(images)).double()
    assert x.shape[0] == built.machine.eval_batch_size
    torch.testing.assert_close(head.mu.detach().double(), x.mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(head.sigma.detach().double(), x.std(0, unbiased=False).clamp_min(SIGMA_FLOOR),
                               rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        assert built.model(images).shape == (images.shape[0], shape["num_classes"])


def test_probe_of_a_jpeg_recipe_caps_the_training_rate_by_its_loader_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data here: the data set-up is left out
    monkeypatch.setattr(estimate, "loader_rate_per_worker", lambda recipe, shape: (100.0, 250.0))
    for workers, expect in (("0", 1), ("3", 3)):  # no worker: the main process decodes, at one worker's rate
        recipe = _smoke_coco_empirical(f"trainer.num_workers={workers}")
        out = estimate.probe(recipe, torch.device("cpu"), warmup=1, steps=1, eval_batches=1)
        assert out["workers"] == int(workers)
        assert out["loader_images_per_second"] == 100.0 * expect
        assert out["loader_eval_images_per_second"] == 250.0 * expect
        assert out["data_seconds"] is None and out["shape"]["files"] is True


def test_data_setup_is_timed_where_the_data_is_here_and_left_out_where_not(tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    digits = yaml.safe_load((Path(estimate.__file__).parent / "configs/dataset/digits.yaml").read_text())
    seconds = estimate.data_setup_seconds(estimate.Recipe({"dataset": {**digits, "subset": 16}}))
    assert seconds is not None and math.isfinite(seconds) and seconds >= 0  # the embedded digits load anywhere
    (coco,) = estimate.compose_experiments(["table3/resnet101_coco_softmax"], "full",
                                           [f"dataset.root={tmp_path / 'no_coco'}"]).values()
    assert estimate.data_setup_seconds(estimate.Recipe(coco)) is None  # no COCO here
    assert list(tmp_path.iterdir()) == []  # load_splits(write=False): no cache written


def test_a_dataset_or_an_experiment_list_the_estimate_cannot_use_is_a_config_error():
    with pytest.raises(ConfigError, match=r"dataset='imagenet21k': the estimate knows no shapes for it; known: .*cifar10"):
        estimate.Recipe({"dataset": {"name": "imagenet21k"}}).shape()
    with pytest.raises(ConfigError, match="at least one experiment"):
        estimate.compose_experiments([], "smoke", [])


@pytest.mark.parametrize("experiment, overrides, fixture", [
    ("table2/resnet101_tiny_imagenet_softmax", [], "make_tiny_imagenet"),  # the release's: inception, jitter, ...
    ("table2/resnet101_tiny_imagenet_softmax", ["dataset.train_crop=pad", "dataset.crop_padding=4",
                                                "dataset.pad_mode=reflect", "dataset.lighting=0"], "make_tiny_imagenet"),
    ("table3/resnet101_coco_softmax", ["dataset.train_crop=random_resized", "dataset.color_jitter=0.4"], "make_coco"),
])
def test_the_loader_probe_times_the_transforms_the_trainers_loader_applies(experiment, overrides, fixture, tmp_path,
                                                                           monkeypatch):
    """What the estimate times per worker is what load_splits gives the trainer for the same dataset config: every
    augmentation key (crop, padding, jitter, lighting, interpolation) and the reduced-size decoding, compared on a
    fixture in the official layout."""
    from gsm.data import fixtures, load_splits
    from gsm.data import files

    getattr(fixtures, fixture)(tmp_path / "data")
    (recipe,) = estimate.group_recipes(estimate.compose_experiments(
        [experiment], "full", [*overrides, f"dataset.root={tmp_path / 'data'}"]))
    probed = []
    real_init = files.ImageFiles.__init__

    def spy(self, paths, targets, transform, min_size=None):
        probed.append((repr(transform), min_size))
        real_init(self, paths, targets, transform, min_size)

    monkeypatch.setattr(files.ImageFiles, "__init__", spy)
    estimate.loader_rate_per_worker(recipe, recipe.shape(), images=1)
    splits = load_splits(recipe.config["dataset"], write=False)
    trained = [(repr(s.transform), s.min_size) for s in (splits.train.dataset, splits.test.dataset)]
    assert probed[:2] == trained
    train_repr = probed[0][0]
    ds = recipe.config["dataset"]
    expected = {"inception": "InceptionCrop", "pad": "reflect" if ds.get("pad_mode") == "reflect" else "Pad",
                "random_resized": "RandomResizedCrop", "multiscale": "MultiScaleCrop"}[ds["train_crop"]]
    assert expected in train_repr and ("ColorJitter" in train_repr) == (ds["color_jitter"] > 0) and \
        ("Lighting" in train_repr) == (ds["lighting"] > 0), train_repr
