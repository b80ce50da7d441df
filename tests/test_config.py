"""Config validation on the real configs (Hydra compose of gsm/configs): unknown keys with a
suggestion, every value type- and range-checked with the key in the message, no false positives."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from conftest import REPO, run_cli
from gsm import config as gc
from gsm.config import catalog, check_overrides, suggest, validate_config
from gsm.errors import ConfigError
from gsm.grid import compose_many
from gsm.profiles import SMOKE

CONFIGS = REPO / "gsm" / "configs"
EXPERIMENTS = sorted(p.relative_to(CONFIGS / "experiment").with_suffix("").as_posix()
                     for p in (CONFIGS / "experiment").rglob("*.yaml"))
PAIRS = sorted(p.stem for p in (CONFIGS / "dataset_model").glob("*.yaml"))


@pytest.fixture(scope="module")
def hydra_compose():
    """compose(*overrides) -> the composed config with its hydra node, as the trainer sees it (cached per module)."""
    import gsm.runs

    gsm.runs.register_resolvers()
    cache: dict[tuple[str, ...], object] = {}

    def _compose(*overrides: str, search_dir: Path | None = None):
        ov = list(overrides) + ([f"hydra.searchpath=[file://{search_dir}]"] if search_dir else [])
        if tuple(ov) not in cache:
            with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3", job_name="train"):
                cache[tuple(ov)] = compose("train", overrides=ov, return_hydra_config=True)
        return cache[tuple(ov)].copy()

    return _compose


def _with(cfg, key: str, value):
    """A copy of the composed config with one value replaced (what ``key=value`` on the command line gives)."""
    out = cfg.copy()
    OmegaConf.set_struct(out, False)
    OmegaConf.update(out, key, value, force_add=True)
    return out


def _error(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    return str(err.value)


# --------------------------------------------------------------------------- no false positives


def test_every_paper_row_and_recipe_passes(hydra_compose):
    """All experiments of Tables I-IV (composed as the table grids compose them, cached per process), every
    other (dataset, model) recipe and every head validate as shipped."""
    covered = set()
    for cfg in compose_many([(name, []) for name in EXPERIMENTS]):
        validate_config(cfg)
        covered.add(f"{cfg['dataset']['name']}_{cfg['model']['name']}")
    assert len(covered) == 9
    for pair in sorted(set(PAIRS) - covered):  # the ConvNet recipes (smoke runs, quick baselines)
        dataset, model = pair.rsplit("_", 1)
        validate_config(hydra_compose(f"dataset={dataset}", f"model={model}"))
    for head in ("softmax", "lsoftmax"):
        validate_config(hydra_compose(f"head={head}"))
    validate_config(hydra_compose("dataset=digits_mosaic", "head=msml"))


def test_smoke_profile_overrides_pass(hydra_compose):
    """The smoke profile shortens 300-epoch recipes to 1 epoch: milestones beyond the last epoch are allowed."""
    distinct = {}
    for name in EXPERIMENTS:
        distinct.setdefault(tuple(SMOKE.overrides(name, "/fixtures")), name)
    assert len(distinct) >= 6  # wrn, wrn1100, densenet, vgg16, tables II (two sizes), III/IV
    for overrides, name in distinct.items():
        validate_config(hydra_compose(f"experiment={name}", *overrides))


# --------------------------------------------------------------------------- unknown keys


def test_typo_with_plus_names_the_key_and_the_closest_one(hydra_compose):
    msg = _error(hydra_compose("+trainer.epoch=3"))
    assert msg.startswith("+trainer.epoch=3: no part of gsm reads trainer.epoch") and "did you mean trainer.epochs?" in msg


@pytest.mark.parametrize(("override", "expected"), [
    ("+trainer.lr=0.1", "did you mean optimizer.lr?"),           # the same leaf under another section
    ("+optimizer.momentun=0.9", "did you mean optimizer.momentum?"),
    ("+foo=1", "valid top-level sections: dataset"),
    ("+dataset.subsett=4", "did you mean dataset.subset?"),
])
def test_unknown_keys_get_a_suggestion(hydra_compose, override, expected):
    msg = _error(hydra_compose(override))
    assert msg.startswith(override + ":") and expected in msg


def test_key_of_another_option_names_the_option_that_has_it(hydra_compose):
    msg = _error(hydra_compose("head=softmax", "+head.mu=0.1"))
    assert "head.mu is not a setting of head=softmax" in msg and "head=gsoftmax" in msg
    msg = _error(hydra_compose("model=convnet", "+model.pool=gmp"))
    assert "model.pool is not a setting of model=convnet" in msg and "model=resnet101" in msg


def test_all_unknown_keys_are_reported_at_once(hydra_compose):
    msg = _error(hydra_compose("+trainer.epoch=3", "+seeds=2"))
    assert "trainer.epoch" in msg and "did you mean seed?" in msg and len(msg.splitlines()) == 2


def test_typo_in_a_preset_file_names_the_file(hydra_compose, tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\ntrainer:\n  epoch: 3\n")
    msg = _error(hydra_compose("experiment=mine", search_dir=tmp_path))
    assert "trainer.epoch (set by experiment=mine)" in msg and "did you mean trainer.epochs?" in msg


def test_users_own_presets_on_the_search_path(hydra_compose, tmp_path):
    """A new head preset is one YAML file; it may set the keys its head reads, not invent new ones."""
    (tmp_path / "head").mkdir()
    (tmp_path / "head" / "gsoftmax_wide.yaml").write_text("defaults:\n  - gsoftmax\n  - _self_\nsigma: 3.0\n")
    (tmp_path / "head" / "gsoftmax_typo.yaml").write_text("defaults:\n  - gsoftmax\n  - _self_\nsigmma: 3.0\n")
    cfg = hydra_compose("head=gsoftmax_wide", search_dir=tmp_path)
    assert cfg.head.sigma == 3.0
    validate_config(cfg)
    msg = _error(hydra_compose("head=gsoftmax_typo", search_dir=tmp_path))
    assert "head.sigmma is not a setting of head=gsoftmax_typo (name: gsoftmax)" in msg and "did you mean head.sigma?" in msg


def test_removed_key_is_an_error(hydra_compose):
    assert _error(hydra_compose("~trainer.force")).startswith("trainer.force is missing (removed by ~trainer.force)")


def test_suggest():
    keys = ["trainer.epochs", "trainer.batch_size", "optimizer.lr", "dataset.subset"]
    assert suggest("trainer.epoch", keys) == "trainer.epochs"
    assert suggest("trainer.lr", keys) == "optimizer.lr"
    assert suggest("trainer.batchsize", keys) == "trainer.batch_size"
    assert suggest("zzz.qqq", keys) is None


# --------------------------------------------------------------------------- values


# The issue's list: each used to end in a traceback from int()/torch, or (momentum 5) to train to garbage.
@pytest.mark.parametrize(("overrides", "key"), [
    (("seed=x",), "seed"),
    (("dataset.subset=abc",), "dataset.subset"),
    (("head.init_batches=abc",), "head.init_batches"),
    (("dataset.image_size=abc",), "dataset.image_size"),
    (("schedule=staircase", "schedule.milestones=abc"), "schedule.milestones"),
    (("trainer.num_workers=-1",), "trainer.num_workers"),
    (("optimizer.nesterov=true", "optimizer.momentum=0"), "optimizer.nesterov"),
    (("optimizer.momentum=5",), "optimizer.momentum"),
    (("schedule.start=-1",), "schedule.start"),                      # linspace: gradient ascent
    (("schedule=staircase", "schedule.gamma=-1"), "schedule.gamma"),
    (("schedule.end=nan",), "schedule.end"),
])
def test_issue_examples_name_the_key(hydra_compose, overrides, key):
    msg = _error(hydra_compose(*overrides))
    assert msg.startswith(key), msg


BASES = {
    "default": (),  # digits, convnet, gsoftmax, linspace
    "lsoftmax": ("head=lsoftmax",),
    "coco": ("dataset=coco", "model=resnet101"),
    "tiny": ("dataset=tiny_imagenet", "model=resnet101"),
    "wrn": ("dataset=cifar10", "model=wrn"),
    "densenet": ("dataset=cifar100", "model=densenet"),
    "mosaic": ("dataset=digits_mosaic",),
    "malleable": ("schedule=malleable", "trainer.epochs=1100"),
    "logspace": ("schedule=logspace",),
    "staircase": ("schedule=staircase",),
}
BAD = [
    ("default", "trainer.epochs", 0), ("default", "trainer.epochs", 2.5), ("default", "trainer.epochs", True),
    ("default", "trainer.batch_size", "abc"), ("default", "trainer.eval_batch_size", 0),
    ("default", "trainer.device", "gpu"), ("default", "trainer.amp", "fp32"), ("default", "trainer.compile", "maybe"),
    ("default", "trainer.compile_mode", "fastest"),
    ("default", "trainer.channels_last", "yes"), ("default", "trainer.progress", 1),
    ("default", "trainer.analyze_train", "true"), ("default", "trainer.force", "false"),   # bool("false") is True
    ("default", "trainer.resume_anyway", "yes"), ("default", "trainer.resume_anyway", 1),
    ("default", "trainer.num_workers", "many"), ("default", "trainer.num_workers", 1.5),
    ("default", "trainer.cpu_threads", 0), ("default", "trainer.wait_for_lock", "yes"),
    ("default", "trainer.log_every_n_steps", -1), ("default", "trainer.checkpoint_every", 0),
    ("default", "optimizer.lr", -0.1), ("default", "optimizer.lr", math.inf), ("default", "optimizer.lr", "fast"),
    ("default", "optimizer.weight_decay", math.nan), ("default", "optimizer.momentum", 1.0),
    ("default", "optimizer.momentum", -0.5), ("default", "optimizer.nesterov", "true"),
    ("default", "seed", -1), ("default", "seed", 1.5), ("default", "dry_run", "no"), ("default", "output_root", ""),
    ("default", "recipe.lam", "abc"), ("default", "recipe.dist_lr_mult", -1),
    ("default", "dataset.subset", 0), ("default", "dataset.image_size", 4), ("default", "dataset.crop_padding", -1),
    ("default", "dataset.flip", "no"), ("default", "dataset.root", 5),
    ("default", "head.lam", math.nan), ("default", "head.mu", "zero"), ("default", "head.sigma", 0),
    ("default", "head.dist_lr_mult", -1), ("default", "head.init", "random"), ("default", "head.init_batches", 0),
    ("default", "head.learn_dist", "false"),
    ("lsoftmax", "head.margin", 5), ("lsoftmax", "head.margin", True), ("lsoftmax", "head.base", -1),
    ("lsoftmax", "head.gamma", "abc"), ("lsoftmax", "head.power", math.inf), ("lsoftmax", "head.beta_min", -0.1),
    ("coco", "dataset.image_size", 12), ("coco", "dataset.train_crop", "center"), ("coco", "dataset.on_missing", "ignore"),
    ("coco", "dataset.drop_unlabeled", "yes"), ("coco", "model.pool", "avg"), ("coco", "model.pretrained", "yes"),
    ("coco", "model.weights_path", 3),
    ("tiny", "dataset.cache", "off"), ("tiny", "dataset.cache_dir", 7),
    ("mosaic", "dataset.train_size", 0), ("mosaic", "dataset.test_size", "many"),
    ("wrn", "model.depth", 41), ("wrn", "model.depth", "forty"), ("wrn", "model.width", 0), ("wrn", "model.dropout", 1.0),
    ("densenet", "model.growth", 0), ("densenet", "model.bc", "no"), ("densenet", "model.dropout", -0.1),
    ("default", "model.width", 0), ("default", "model.width", 2.5),
    ("malleable", "schedule.pieces", "abc"), ("malleable", "schedule.pieces", [[1100, 0, "x"]]),
    ("malleable", "schedule.pieces", [[1000, 0, -8], [1100, -7, -9]]), ("malleable", "schedule.pieces", [[1100, 400, 0]]),
    ("logspace", "schedule.start", 400), ("logspace", "schedule.end", math.nan),
    ("staircase", "schedule.milestones", [225, 150]), ("staircase", "schedule.milestones", [0, 150]),
    ("staircase", "schedule.milestones", [150, "x"]), ("staircase", "schedule.gamma", math.inf),
    ("default", "schedule.start", math.nan), ("default", "schedule.end", -0.01),
]


@pytest.mark.parametrize(("base", "key", "value"), BAD, ids=[f"{b}-{k}={v!r}" for b, k, v in BAD])
def test_bad_value_names_the_key(hydra_compose, base, key, value):
    cfg = _with(hydra_compose(*BASES[base]), key, value)
    msg = _error(cfg)
    assert msg.startswith(key), msg
    assert "must" in msg or "needs" in msg or "overflows" in msg, msg


@pytest.mark.parametrize(("key", "value"), [
    ("trainer.num_workers", "auto"), ("trainer.num_workers", 0), ("trainer.compile", "auto"), ("trainer.compile", True),
    ("trainer.cpu_threads", None), ("trainer.cpu_threads", 3), ("trainer.log_every_n_steps", 0),
    ("trainer.wait_for_lock", True), ("trainer.amp", "none"), ("trainer.amp", None), ("trainer.eval_batch_size", None),
    ("dataset.subset", None), ("dataset.image_size", None), ("optimizer.lr", 0), ("schedule.end", 0.0),
    ("optimizer.nesterov", True),  # with the default momentum 0.9
    ("trainer.resume_anyway", True), ("trainer.resume_anyway", False),
])
def test_valid_edge_values_pass(hydra_compose, key, value):
    validate_config(_with(hydra_compose(), key, value))


def test_unknown_code_name_lists_the_valid_ones(hydra_compose):
    cfg = hydra_compose()
    with open_dict(cfg):
        cfg.dataset.name = "mnist"
    assert "dataset.name='mnist'" in _error(cfg) and "cifar10" in _error(cfg)


def test_every_key_the_configs_define_is_validated():
    """A key added to train.yaml or to a dataset/head file needs a rule; models and schedules check their own."""
    from gsm.models import MODELS
    from gsm.schedules import epoch_factors

    cat = catalog()
    assert not cat.primary - set(gc.RULES), "keys of train.yaml without a rule in gsm.config.RULES"
    for group in ("dataset", "head"):
        for option, keys in cat.options[group].items():
            assert not keys - set(gc.RULES), (group, option)
    from gsm.heads import HEADS

    for option, keys in cat.options["head"].items():  # the head file lists exactly the keys its class takes
        assert {k.split(".", 1)[1] for k in keys} - {"name"} == set(HEADS[option].config_keys), option
    for option, keys in cat.options["model"].items():
        assert {k.split(".", 1)[1] for k in keys} - {"name"} == set(MODELS[option][1])
    for option, keys in cat.options["schedule"].items():  # epoch_factors rejects a key it does not read
        name = yaml.safe_load((CONFIGS / "schedule" / f"{option}.yaml").read_text()).get("name")
        if name is None:  # a preset of another schedule file (defaults: [staircase, _self_])
            continue
        params = {k.split(".", 1)[1]: [] for k in keys if k != "schedule.name"}
        try:
            epoch_factors(name, 10, **params)
        except ConfigError as err:  # a bad value, never an unknown or a missing key
            assert "is not a setting of" not in str(err) and "is required by" not in str(err), (option, err)


def test_validation_without_hydra_node(hydra_compose):
    """A plain mapping (e.g. a results.json config) is validated against gsm's own configs."""
    composed = hydra_compose()
    cfg = {k: OmegaConf.to_container(composed[k], resolve=True) if OmegaConf.is_config(composed[k]) else composed[k]
           for k in composed if k != "hydra"}
    validate_config(cfg)
    cfg["trainer"]["epoch"] = 3
    with pytest.raises(ConfigError, match="did you mean trainer.epochs"):
        validate_config(cfg)


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize("argv", [
    [], ["dataset=cifar10", "model=wrn", "head=lsoftmax"], ["experiment=table1/wrn_cifar10_gsoftmax"],
    ["-m", "head.mu=-0.1,0.1", "seed=0,1"], ["--multirun", "hydra/launcher=gsm_ray", "trainer.epochs=1"],
    ["--help"], ["--hydra-help"], ["--cfg", "job", "--resolve"], ["hydra.run.dir=x", "hydra.job.chdir=false"], ["~hydra.job.chdir"],
    ["+trainer.epoch=3"], ["++trainer.epochs=3"], ["~trainer.force"], ["schedule.pieces=[[1,0,-8],[2,-8,-9]]"],
    ["dataset_model=cifar10_wrn"], ["head.mu=0.1"], ["trainer.epochs=range(1,3)"], ["recipe.lam=0.5"],
    ["dataset.root=/data/x"], ["trainer.cpu_threads=2"],
])
def test_check_overrides_accepts_valid_command_lines(argv):
    check_overrides(argv)


@pytest.mark.parametrize(("argv", "bad", "hint"), [
    (["trainer.epoch=3"], "trainer.epoch=3", "did you mean trainer.epochs?"),
    (["dataset=cifar10", "optimizer.lrr=0.1"], "optimizer.lrr=0.1", "did you mean optimizer.lr?"),
    (["-m", "head.muu=0,1"], "head.muu=0,1", "did you mean head.mu?"),
    (["epochs=5"], "epochs=5", "did you mean trainer.epochs?"),
])
def test_check_overrides_rejects_unknown_keys(argv, bad, hint):
    with pytest.raises(ConfigError) as err:
        check_overrides(argv)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: no part of gsm reads") and hint in msg


def test_check_overrides_knows_the_keys_of_the_chosen_option():
    """Hydra's own message for this is "Key 'mu' is not in struct"."""
    with pytest.raises(ConfigError) as err:
        check_overrides(["head=softmax", "head.mu=0.1"])
    assert str(err.value).startswith("head.mu=0.1: head.mu is not a setting of head=softmax; it is a setting of head=gsoftmax")
    check_overrides(["head=gsoftmax", "head.mu=0.1"])
    check_overrides(["-m", "head=softmax,gsoftmax", "head.mu=0.1"])  # a sweep: left to the composed config


def test_check_overrides_reads_the_users_search_path(tmp_path):
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "mydata.yaml").write_text("name: cifar10\nroot: /x\nmy_key: 1\n")
    check_overrides([f"hydra.searchpath=[file://{tmp_path}]", "dataset=mydata", "dataset.my_key=2"])
    check_overrides(["--config-dir", str(tmp_path), "dataset=mydata", "dataset.my_key=2"])
    with pytest.raises(ConfigError, match="dataset.my_key"):
        check_overrides(["dataset.my_key=2"])


# --------------------------------------------------------------------------- hydra.job.chdir (issue 18)

CHDIR_HINT = ("gsm does not run in another directory (hydra.job.chdir=true): it resolves dataset.root, output_root "
              "and every other path itself")


@pytest.mark.parametrize(("argv", "line"), [
    (["hydra.job.chdir=true"], "hydra.job.chdir=true"),
    (["+hydra.job.chdir=True"], "+hydra.job.chdir=True"),
    (["-m", "head.mu=0,1", "hydra.job.chdir=false,true"], "hydra.job.chdir=false,true"),  # swept over true
    (["hydra.job={chdir:true}"], "hydra.job={chdir:true}"),
    (["--config-name", "other", "hydra.job.chdir=yes"], "hydra.job.chdir=yes"),  # whatever the primary config
])
def test_check_overrides_rejects_chdir(argv, line):
    with pytest.raises(ConfigError) as err:
        check_overrides(argv)
    msg = str(err.value)
    assert msg.startswith(f"{line}: {CHDIR_HINT}") and "output_root chooses where runs go" in msg and "\n" not in msg


def test_chdir_from_a_config_file_is_rejected_when_validated(hydra_compose, tmp_path):
    """A preset that sets hydra.job.chdir (the command line never names it) is caught on the composed config."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "cd.yaml").write_text("# @package _global_\nhydra:\n  job:\n    chdir: true\n")
    cfg = hydra_compose("experiment=cd", search_dir=tmp_path)
    assert cfg.hydra.job.chdir is True
    msg = _error(cfg)
    assert msg.startswith(f"hydra.job.chdir=true: {CHDIR_HINT}"), msg
    validate_config(hydra_compose())  # the shipped configs keep chdir false


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["train.py", "gsm-train", "train.py -m"])
def test_cli_rejects_chdir_in_one_line_and_writes_nothing(tmp_path, how):
    """The issue's case: with chdir a sweep's runs land under sweeps/<time>/<output_root>/runs and a second sweep
    retrains. gsm refuses it before Hydra starts: exit 2, one line, no folder anywhere."""
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    args = [f"output_root={out}", "trainer.epochs=1", "hydra.job.chdir=true"]
    if how == "gsm-train":
        script = Path(sys.executable).with_name("gsm-train")
        assert script.is_file(), script
        proc = subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    else:
        proc = run_cli(*(["-m", "head.mu=-0.1,0.1"] if how.endswith("-m") else []), *args, cwd=cwd)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gsm: error: hydra.job.chdir=true: {CHDIR_HINT}"), proc.stderr
    assert "output_root chooses where runs go" in lines[0] and proc.stdout == ""
    assert _files(tmp_path) == ["cwd"]  # no output_root, no sweep folder, nothing in the working directory
