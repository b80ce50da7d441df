"""Every paper row's experiment config composes to its recipe (real configs, Hydra compose): the paper's values
where it states them, else the authors' release (Tables II-IV) or the baseline's release (Table I); docs/recipes.md
gives each value's source. Rows are selected from the registry (gsm/paper_rows.yaml) by attribute."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import gsm.train  # noqa: F401  (registers the gsm.* resolvers)
from conftest import REPO, run_cli
from gsm import grid, paper
from gsm.paper import PaperRow
from gsm.schedules import epoch_factors

CONFIGS = REPO / "gsm" / "configs"
ROWS = {r.experiment: r for r in paper.rows(table=[1, 2, 3, 4]) if r.experiment}
EXPERIMENTS = sorted(ROWS)
WRN_STEPS = [59, 119, 159, 219, 259]  # lr x0.2 from the 60th, 120th, ... epoch (the WRN release's updateLR)
RECIPES_DOC = REPO / "docs" / "recipes.md"


def expected(r: PaperRow) -> dict:
    """The recipe of the paper's Sec. IV for a row, from the row's attributes in the registry."""
    if r.table == 1:
        exp = {"dataset": r.dataset, "head": r.head, "epochs": 300, "batch": 128, "lr": 0.1, "wd": 5e-4, "lam": 1.0,
               "schedule": ("staircase", [149, 224], 0.1), "model": r.model, "pad_mode": "zeros"}
        if r.model == "densenet":
            exp["batch"] = 50 if r.dataset == "cifar10" else 32
        if r.model in ("wrn", "wrn1100"):
            exp.update(model="wrn", schedule=("staircase", WRN_STEPS, 0.2), lam=0.5 if r.dataset == "cifar10" else 1.0,
                       pad_mode="reflect")
        if r.model == "wrn1100":
            exp.update(epochs=1100, schedule=("malleable", [[1000, 0, -8], [1100, -8, -9]], None))
        assert exp["epochs"] == r.epochs  # the registry's "# Epoch" agrees
        return exp
    common = {"model": "resnet101", "lam": 1.0, "head": r.head, "dist_update": "release"}
    if r.table == 2:
        crop = ("pad", 0.0, 0.0, "bilinear") if r.block == "64" else ("inception", 0.4, 0.1, "bicubic")
        return {**common, "dataset": "tiny_imagenet", "epochs": 30, "batch": 80, "lr": 1e-3, "wd": 1e-4, "lam": 0.1,
                "schedule": ("staircase", [10, 20], 0.1), "image_size": 64 if r.block == "64" else 224, "pool": "gmp",
                "loss_reduction": "mean", "augment": crop}
    return {**common, "dataset": r.dataset, "epochs": 8, "batch": 16, "lr": 1e-5, "wd": 1e-4, "schedule": ("staircase", [3], 0.1),
            "image_size": 448, "pool": "gmp", "dist_lr_mult": 100.0 if r.dataset == "nuswide" else 1.0,
            "loss_reduction": "sum", "augment": ("resize", 0.4, 0.1, "bicubic")}


def test_every_paper_row_has_an_experiment():
    configs = sorted(p.relative_to(CONFIGS / "experiment").with_suffix("").as_posix()
                     for p in (CONFIGS / "experiment").rglob("*.yaml"))
    assert configs == EXPERIMENTS
    assert [len(paper.rows(table=t, reference_only=False)) for t in (1, 2, 3, 4)] == [24, 8, 7, 6]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_resolves_to_paper_recipe(name):
    c = grid.compose(name)  # the resolved config, as the trainer and the table grids compose it
    row = ROWS[name]
    exp = expected(row)
    assert c["dataset"]["name"] == exp["dataset"] and c["model"]["name"] == exp["model"] and c["head"]["name"] == exp["head"]
    assert c["trainer"]["epochs"] == exp["epochs"] and c["trainer"]["batch_size"] == exp["batch"]
    assert c["optimizer"]["lr"] == exp["lr"] and c["optimizer"]["weight_decay"] == exp["wd"]
    assert c["optimizer"]["momentum"] == 0.9 and c["optimizer"]["nesterov"] is True
    kind, steps, gamma = exp["schedule"]
    assert c["schedule"]["name"] == kind
    if kind == "staircase":
        assert c["schedule"]["milestones"] == steps and c["schedule"]["gamma"] == gamma
    if kind == "malleable":
        assert c["schedule"]["pieces"] == steps
    params = {k: v for k, v in c["schedule"].items() if k != "name"}
    assert len(epoch_factors(kind, c["trainer"]["epochs"], **params)) == exp["epochs"]  # the schedule is usable
    if exp["head"] == "gsoftmax":
        assert c["head"]["lam"] == exp["lam"]
        assert c["head"]["dist_lr_mult"] == exp.get("dist_lr_mult", 1.0)
        assert (c["head"]["mu"], c["head"]["sigma"]) == (row.mu, row.sigma)
        assert c["head"]["init"] == row.init
        assert c["head"]["dist_update"] == exp.get("dist_update", "autograd")
        if row.init == "empirical":
            assert c["head"]["init_batches"] is None  # the whole training loader (Trainer:computeMuSigma)
    assert c["head"].get("loss_reduction", "mean") == exp.get("loss_reduction", "mean")
    if "pad_mode" in exp:
        assert c["dataset"]["pad_mode"] == exp["pad_mode"]
    if "augment" in exp:
        d = c["dataset"]
        assert (d["train_crop"], d["color_jitter"], d["lighting"], d["interpolation"]) == exp["augment"]
    if "image_size" in exp:
        assert c["dataset"]["image_size"] == exp["image_size"]
        assert c["model"]["pool"] == exp["pool"] and c["model"]["pretrained"] is True


def test_plain_command_resolves_recipe_via_cli():
    out = run_cli("dataset=cifar100", "model=wrn", "head=gsoftmax", "--cfg", "job", "--resolve")
    assert out.returncode == 0, out.stderr
    c = yaml.safe_load(out.stdout)
    assert c["trainer"]["epochs"] == 300 and c["trainer"]["batch_size"] == 128
    assert c["schedule"] == {"name": "staircase", "milestones": WRN_STEPS, "gamma": 0.2}
    assert c["head"]["lam"] == 1.0 and c["optimizer"]["lr"] == 0.1 and c["optimizer"]["weight_decay"] == 5e-4
    assert c["model"] == {**c["model"], "depth": 40, "width": 14}


def test_schedule_override_on_a_recipe_pair_does_not_leak():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["dataset=cifar10", "model=wrn", "schedule=malleable", "trainer.epochs=1100"])
    assert OmegaConf.to_container(cfg.schedule) == {"name": "malleable", "pieces": [[1000, 0, -8], [1100, -8, -9]]}


def test_pair_without_recipe_lists_the_options():
    out = run_cli("dataset=digits", "model=wrn", "dry_run=true")
    assert out.returncode == 2 and "no option digits_wrn" in out.stderr and "digits_convnet" in out.stderr


def test_recipe_files_never_set_schedule_parameters():
    """A recipe chooses a schedule preset; parameters in its body would leak into a CLI-chosen schedule."""
    for path in (CONFIGS / "dataset_model").glob("*.yaml"):
        body = yaml.safe_load(Path(path).read_text())
        assert "schedule" not in body, path


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            if k != "defaults":
                yield from _leaves(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix


def test_every_recipe_value_has_its_provenance_in_docs():
    """docs/recipes.md names every key a paper recipe sets (and its schedule), with the value's source."""
    text = RECIPES_DOC.read_text()
    for path in sorted((CONFIGS / "dataset_model").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        if "Not a paper row" in path.read_text() or path.stem.startswith("digits"):
            continue
        assert path.stem in text, f"docs/recipes.md has no section for {path.name}"
        section = text.split(path.stem, 1)[1].split("\n## ", 1)[0]
        for key in _leaves(body):
            assert f"`{key}`" in section, f"docs/recipes.md, section {path.stem}: no provenance line for `{key}`"
        schedule = next(d["/schedule"] for d in body["defaults"] if isinstance(d, dict) and "/schedule" in d)
        assert schedule in section, f"docs/recipes.md, section {path.stem}: the schedule {schedule} is not named"
