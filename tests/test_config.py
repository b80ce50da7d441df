"""Config validation on the real configs (Hydra compose of gsm/configs): unknown keys with a
suggestion, every value type- and range-checked with the key in the message, no false positives."""

from __future__ import annotations

import math
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


@pytest.mark.slow
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


# --------------------------------------------------------------------------- one check per value


@pytest.mark.parametrize(("key", "value", "message"), [
    ("trainer.device", "gpu", "trainer.device must be one of auto, cpu, cuda (got 'gpu')"),
    ("trainer.amp", "fp32", "trainer.amp must be one of bf16, fp16, none (got 'fp32')"),
    ("optimizer.lr", -0.1, "optimizer.lr must be a finite number >= 0 (got -0.1)"),
    ("optimizer.weight_decay", math.nan, "optimizer.weight_decay must be a finite number >= 0 (got nan)"),
    ("optimizer.momentum", 1.0, "optimizer.momentum must be a finite number >= 0 and < 1 (got 1.0)"),
    ("dataset.subset", 0, "dataset.subset must be an integer >= 1 or null (got 0)"),
    ("head.sigma", 0, "head.sigma must be a finite number > 0 (got 0)"),
])
def test_the_config_check_is_the_message(hydra_compose, key, value, message):
    """The trainer validates each value once, here, before anything is read or built: this is the line a user sees."""
    assert _error(_with(hydra_compose(), key, value)) == message


def test_the_library_guards_give_the_config_checks_message(hydra_compose):
    """Called directly (not through the trainer), load_splits and param_groups guard the same values with the same
    rule and message as the config check."""
    import torch

    from gsm.data import load_splits
    from gsm.heads import param_groups

    with pytest.raises(ConfigError) as err:
        load_splits({"name": "digits", "subset": 0})
    assert str(err.value) == _error(_with(hydra_compose(), "dataset.subset", 0))
    with pytest.raises(ConfigError) as err:
        param_groups(torch.nn.Linear(2, 2), -0.1, 0.0)
    assert str(err.value) == _error(_with(hydra_compose(), "optimizer.lr", -0.1))


@pytest.mark.parametrize(("overrides", "head", "multilabel"), [
    (("dataset=coco", "model=resnet101", "head=lsoftmax"), "lsoftmax", True),
    (("dataset=digits_mosaic", "head=lsoftmax"), "lsoftmax", True),
    (("head=msml",), "msml", False),  # digits
    (("dataset=cifar10", "model=wrn", "head=msml"), "msml", False),
])
def test_a_head_that_cannot_train_the_datasets_labels_is_a_config_error(hydra_compose, overrides, head, multilabel):
    """Before any data is read (the dataset's module declares multi-label), with the head constructor's message."""
    from gsm.heads import build_head

    msg = _error(hydra_compose(*overrides))
    with pytest.raises(ConfigError) as err:
        build_head(head, 8, 4, multilabel=multilabel)
    assert msg == str(err.value)
    assert msg.startswith(f"head={head} is ")


def test_no_module_imports_a_private_name_of_another():
    """gsm.config reads gsm.values' public helpers (is_int, as_int): no ``from gsm.x import _name`` anywhere."""
    import ast

    offenders = []
    for path in sorted((REPO / "gsm").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gsm"):
                offenders += [f"{path.relative_to(REPO)}:{node.lineno} {a.name}"
                              for a in node.names if a.name.startswith("_")]
    assert not offenders


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
    check_overrides(["-m", "head=softmax,lsoftmax,msml", "head.loss_reduction=sum"])  # every swept option has it


def test_a_key_that_a_swept_option_lacks_is_one_line():
    """``-m head=softmax,gsoftmax head.mu=0.1``: Hydra fails on the softmax job with "Key 'mu' is not in struct"."""
    with pytest.raises(ConfigError) as err:
        check_overrides(["-m", "head=softmax,gsoftmax", "head.mu=0.1"])
    assert str(err.value) == ("head.mu=0.1: head.mu is not a setting of head=softmax (swept here; it is a setting of "
                              "head=gsoftmax); sweep the options that have it in their own command, e.g. head=gsoftmax "
                              "head.mu=0.1")


@pytest.mark.parametrize("argv", [["-m", "--cfg", "job"], ["--run", "-m"], ["--info", "--cfg", "job"]])
def test_hydra_modes_that_cannot_be_combined_are_one_line(argv):
    """Hydra's own check is a ValueError traceback."""
    with pytest.raises(ConfigError, match="cannot be combined; give one of them"):
        check_overrides([*argv, "dataset=digits"])


def test_check_overrides_reads_the_users_search_path(tmp_path):
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "mydata.yaml").write_text("name: cifar10\nroot: /x\nmy_key: 1\n")
    (tmp_path / "dataset_model").mkdir()  # the recipe dataset_model=${dataset}_${model} looks up
    (tmp_path / "dataset_model" / "mydata_convnet.yaml").write_text("# @package _global_\n")
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
    proc = run_cli(*(["-m", "head.mu=-0.1,0.1"] if how.endswith("-m") else []), *args, cwd=cwd,
                   entry="gsm-train" if how == "gsm-train" else "train.py")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gsm: error: hydra.job.chdir=true: {CHDIR_HINT}"), proc.stderr
    assert "output_root chooses where runs go" in lines[0] and proc.stdout == ""
    assert _files(tmp_path) == ["cwd"]  # no output_root, no sweep folder, nothing in the working directory


# --------------------------------------------------------------------------- config-group typos (issue 17)


def _options(group: str) -> list[str]:
    """The options of a group of gsm's configs, read from the folder (nested ones as sub/option)."""
    return sorted(p.relative_to(CONFIGS / group).with_suffix("").as_posix() for p in (CONFIGS / group).rglob("*.yaml"))


def _launchers() -> list[str]:
    """hydra/launcher options: gsm's files and those Hydra and its plugins register in the ConfigStore."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()  # importing the plugins registers their launchers
    stored = [name.removesuffix(".yaml") for name in ConfigStore.instance().list("hydra/launcher")]
    return sorted(set(stored) | {p.stem for p in (CONFIGS / "hydra" / "launcher").glob("*.yaml")})


# (override, group, the option meant): the issue's typos and one per group gsm has
GROUP_TYPOS = [
    ("head=gsofmax", "head", "gsoftmax"),
    ("dataset=cifar1000", "dataset", "cifar100"),
    ("model=wrm", "model", "wrn"),
    ("schedule=stairs", "schedule", "staircase"),
    ("dataset_model=cifar10_wrm", "dataset_model", "cifar10_wrn"),
    ("hydra/launcher=slrm", "hydra/launcher", "slurm"),
]


def _typo_message(override: str, group: str, meant: str) -> str:
    bad = override.split("=", 1)[1].split(",")[-1]
    valid = _launchers() if group == "hydra/launcher" else _options(group)
    assert meant in valid and bad not in valid and len(valid) <= 16
    return f"{override}: {group} has no option {bad}; did you mean {group}={meant}? valid: {', '.join(valid)}"


@pytest.mark.parametrize(("override", "group", "meant"), GROUP_TYPOS)
def test_group_typo_is_one_line_with_the_options_and_the_closest(override, group, meant):
    """Hydra's own message: "In 'train': Could not find 'head/gsofmax'", the options one per line, the search path."""
    with pytest.raises(ConfigError) as err:
        check_overrides([override])
    assert str(err.value) == _typo_message(override, group, meant)
    assert {"basic", "slurm", "submitit_slurm", "gsm_ray"} <= set(_launchers())


@pytest.mark.parametrize(("override", "meant"), [
    ("experiment=table1/wrn_cifar100_gsofmax", "table1/wrn_cifar100_gsoftmax"),
    ("experiment=wrn_cifar100_gsoftmax", "table1/wrn_cifar100_gsoftmax"),  # the table's folder left out
    ("experiment=table3/resnet101_coco_gsoftmax_empiric", "table3/resnet101_coco_gsoftmax_empirical"),
    ("experiment=table4/resnet101_nuswide_sofmax", "table4/resnet101_nuswide_softmax"),
])
def test_experiment_typo_lists_the_closest_few(override, meant):
    with pytest.raises(ConfigError) as err:
        check_overrides([override])
    msg = str(err.value)
    assert len(EXPERIMENTS) == 45 and meant in EXPERIMENTS and "\n" not in msg
    head = (f"{override}: experiment has no option {override.split('=')[1]}; did you mean experiment={meant}? "
            f"the closest of its 45 options: {meant}, ")
    assert msg.startswith(head), msg
    listed = msg[len(head) - len(meant) - 2:].split(" (all of them")[0].split(", ")
    assert len(listed) == 5 and set(listed) <= set(EXPERIMENTS), listed
    assert msg.endswith("(all of them: python train.py --help)")


@pytest.mark.parametrize(("override", "meant", "groups"), [
    ("heads=gsoftmax", "head=gsoftmax", "dataset, dataset_model, experiment, head, model, schedule"),
    ("heads=gsofmax", "head=gsoftmax", "dataset, dataset_model, experiment, head, model, schedule"),
    ("mode=wrn", "model=wrn", "dataset, dataset_model, experiment, head, model, schedule"),
    ("hydra/launchr=slurm", "hydra/launcher=slurm", "hydra/env, hydra/help, hydra/hydra_help, hydra/hydra_logging, "
                                                    "hydra/job_logging, hydra/launcher, hydra/output, hydra/sweeper"),
])
def test_a_group_that_does_not_exist_names_the_closest_group(override, meant, groups):
    with pytest.raises(ConfigError) as err:
        check_overrides([override])
    group = override.split("=")[0]
    assert str(err.value) == f"{override}: there is no config group {group}; did you mean {meant}? the groups are {groups}"
    assert groups.split(", ")[:6] == sorted(p.name for p in CONFIGS.iterdir() if p.is_dir() and p.name != "hydra") \
        or group.startswith("hydra/")


def test_a_word_close_to_no_group_is_still_a_key_typo():
    with pytest.raises(ConfigError, match=r"^epochs=5: no part of gsm reads epochs; did you mean trainer.epochs\?$"):
        check_overrides(["epochs=5"])


@pytest.mark.parametrize(("argv", "line", "bad", "meant"), [
    (["-m", "head=softmax,gsofmax"], "head=softmax,gsofmax", "gsofmax", "gsoftmax"),
    (["-m", "head=choice(gsofmax,softmax)"], "head=choice(gsofmax,softmax)", "gsofmax", "gsoftmax"),
    (["-m", "seed=0,1", "dataset=cifar10,cifar1000"], "dataset=cifar10,cifar1000", "cifar1000", "cifar100"),
    (["head=[softmax,gsofmax]"], "head=[softmax,gsofmax]", "gsofmax", "gsoftmax"),  # a list of options
    (["+head=gsofmax"], "+head=gsofmax", "gsofmax", "gsoftmax"),
])
def test_every_option_of_a_sweep_is_checked(argv, line, bad, meant):
    with pytest.raises(ConfigError) as err:
        check_overrides(argv)
    group = line.lstrip("+").split("=")[0]
    assert str(err.value).startswith(f"{line}: {group} has no option {bad}; did you mean {group}={meant}? valid: ")


@pytest.mark.parametrize("argv", [
    ["-m", "head=softmax,gsoftmax"], ["-m", "head=glob(*)"], ["-m", "head=choice(softmax,lsoftmax)"],
    ["experiment=null"], ["~experiment"], ["-m", "experiment=table1/wrn_cifar10_gsoftmax,table1/wrn_cifar10_softmax"],
    ["experiment=table2/resnet101_tiny_imagenet_softmax"], ["dataset_model=cifar10_wrn"], ["hydra/launcher=submitit_slurm"],
    ["--multirun", "hydra/launcher=basic"], ["dataset=coco", "model=resnet101"], ["hydra/job_logging=disabled"],
])
def test_valid_group_choices_pass(argv):
    check_overrides(argv)


def test_the_recipe_that_follows_dataset_and_model_must_exist():
    """dataset_model=${dataset}_${model} (train.yaml): dataset=coco model=wrn has no recipe, and Hydra's message
    for it is several lines with the search path."""
    with pytest.raises(ConfigError) as err:
        check_overrides(["dataset=coco", "model=wrn"])
    assert str(err.value) == ("dataset=coco model=wrn: dataset_model follows dataset and model (${dataset}_${model}) "
                              "and has no option coco_wrn; choose one with dataset_model=<option>, valid: "
                              + ", ".join(PAIRS))
    with pytest.raises(ConfigError, match=r"^model=wrn: .* no option digits_wrn;"):  # digits: train.yaml's default
        check_overrides(["model=wrn"])
    with pytest.raises(ConfigError, match=r"^dataset=cifar10,coco model=wrn: .* no option coco_wrn;"):
        check_overrides(["-m", "dataset=cifar10,coco", "model=wrn"])
    check_overrides(["dataset=coco", "model=wrn", "dataset_model=coco_resnet101"])  # chosen: no lookup
    check_overrides(["dataset=coco", "model=wrn", "experiment=table1/wrn_cifar10_gsoftmax"])  # a preset decides


def _user_configs(folder: Path) -> Path:
    """A head of the user's own (a copy of softmax) and an experiment in a subfolder."""
    (folder / "head").mkdir(parents=True)
    (folder / "head" / "myhead.yaml").write_text((CONFIGS / "head" / "softmax.yaml").read_text())
    (folder / "experiment" / "mine").mkdir(parents=True)
    (folder / "experiment" / "mine" / "quick.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 1\n")
    return folder


def test_options_on_the_users_search_path_are_choices(tmp_path):
    user = _user_configs(tmp_path / "user")
    for where in ([f"hydra.searchpath=[file://{user}]"], [f"hydra.searchpath=[{user}]"], ["--config-dir", str(user)]):
        check_overrides([*where, "head=myhead", "experiment=mine/quick"])
        check_overrides(["-m", *where, "head=myhead,gsoftmax"])
        with pytest.raises(ConfigError) as err:
            check_overrides([*where, "head=myhed"])
        assert str(err.value) == ("head=myhed: head has no option myhed; did you mean head=myhead? "
                                  "valid: gsoftmax, lsoftmax, msml, myhead, softmax")
    with pytest.raises(ConfigError, match=r"^head=myhead: head has no option myhead; valid: gsoftmax, lsoftmax, msml, softmax$"):
        check_overrides(["head=myhead"])  # not on the search path: not an option


def test_check_group_choices_for_other_commands(tmp_path):
    """The function gsm-tables -o uses: the same one-line message as the trainer's command line."""
    from gsm.config import check_group_choices

    for override, group, meant in GROUP_TYPOS:
        with pytest.raises(ConfigError) as err:
            check_group_choices([override])
        assert str(err.value) == _typo_message(override, group, meant)
    with pytest.raises(ConfigError, match=r"^seed=7 \| heads=softmax: there is no config group heads; did you mean head=softmax\?"
                                          r"|^heads=softmax: there is no config group heads; did you mean head=softmax\?"):
        check_group_choices(["seed=7", "heads=softmax"])
    user = _user_configs(tmp_path / "user")
    check_group_choices([f"hydra.searchpath=[file://{user}]", "head=myhead", "seed=7", "trainer.epochs=2"])
    check_group_choices(["head=lsoftmax", "dataset=cifar100", "model=wrn", "experiment=null"])
    check_group_choices(["head=("])  # a syntax error: Hydra's own message names it


def test_the_check_imports_no_torch():
    """The typo is reported in about a second: no torch (nor the trainer) on the way."""
    code = ("import sys\nfrom gsm.config import check_overrides\nfrom gsm.errors import ConfigError\n"
            "try:\n    check_overrides(['head=gsofmax'])\nexcept ConfigError:\n    pass\nelse:\n    sys.exit(3)\n"
            "sys.exit(4 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])


def _run_as(how: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The command line through the entry ``how`` is (gsm-train and train.py: gsm.cli.train; python -m gsm.train:
    gsm.train.main), in this process; tests/test_package.py runs the installed console script itself."""
    return run_cli(*args, cwd=cwd, entry=how)


@pytest.mark.slow
@pytest.mark.parametrize(("how", "flags", "override", "expected"), [
    ("train.py", [], "head=gsofmax", _typo_message("head=gsofmax", "head", "gsoftmax")),
    ("gsm-train", [], "dataset=cifar1000", _typo_message("dataset=cifar1000", "dataset", "cifar100")),
    ("python -m gsm.train", [], "model=wrm", _typo_message("model=wrm", "model", "wrn")),
    ("train.py", ["-m"], "head=softmax,gsofmax", _typo_message("head=softmax,gsofmax", "head", "gsoftmax")),
    ("gsm-train", ["-m"], "hydra/launcher=slrm", "hydra/launcher=slrm: hydra/launcher has no option slrm; "
                                                  "did you mean hydra/launcher=slurm? valid: basic, "),
    ("train.py", ["--help"], "schedule=stairs", _typo_message("schedule=stairs", "schedule", "staircase")),
    ("gsm-train", [], "experiment=table1/wrn_cifar100_gsofmax",
     "experiment=table1/wrn_cifar100_gsofmax: experiment has no option table1/wrn_cifar100_gsofmax; "
     "did you mean experiment=table1/wrn_cifar100_gsoftmax? the closest of its 45 options: "),
    ("train.py", [], "heads=gsoftmax", "heads=gsoftmax: there is no config group heads; did you mean head=gsoftmax? "),
])
def test_cli_group_typo_is_one_line_exit_2_and_writes_nothing(tmp_path, how, flags, override, expected):
    """Hydra alone: several lines (options, search path, "Set the environment variable HYDRA_FULL_ERROR=1"),
    exit 1. gsm: one line naming the option, the closest one and the valid ones; exit 2; nothing written."""
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    proc = _run_as(how, [*flags, override, f"output_root={out}", "trainer.epochs=1"], cwd)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gsm: error: {expected}"), proc.stderr
    assert proc.stdout == ""
    assert _files(tmp_path) == ["cwd"]  # no output_root, no sweep folder, nothing in the working directory


@pytest.mark.slow
def test_cli_accepts_an_option_of_the_users_search_path(tmp_path):
    """A head of the user's own (a copy of softmax) swept with a packaged one: both compose and build; the
    user's has no μ, σ (2 x 10 parameters fewer than G-softmax on the 10 digit classes)."""
    user = _user_configs(tmp_path / "user")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = run_cli("-m", f"hydra.searchpath=[file://{user}]", "head=myhead,gsoftmax", "dry_run=true",
                   f"output_root={tmp_path / 'out'}", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 2 and rows[1]["params"] - rows[0]["params"] == 2 * rows[0]["num_classes"] == 20, rows
    assert "gsm: error" not in proc.stderr


def test_a_key_of_another_option_than_the_default_one_is_one_line(tmp_path):
    """The group left at its default option (dataset=digits) is checked like a chosen one: a COCO-only key is
    gsm's one line naming the options that have it, not Hydra's multi-line struct error."""
    from conftest import run_cli

    out = run_cli(f"output_root={tmp_path}", "dry_run=true", "dataset.train_crop=inception")
    assert out.returncode == 2 and out.stdout == ""
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("gsm: error: dataset.train_crop=inception: dataset.train_crop is not a setting of "
                           "dataset=digits; it is a setting of dataset=coco, nuswide, tiny_imagenet")
    assert not any(tmp_path.iterdir())
    ok = run_cli(f"output_root={tmp_path}", "dry_run=true", "dataset=coco", "model=convnet", "dataset.train_crop=resize",
                 "dataset.root=/nonexistent")
    assert "not a setting" not in ok.stderr  # chosen on the command line: the key is coco's


def test_a_value_left_mandatory_or_an_interpolation_that_cannot_resolve_names_the_key(hydra_compose):
    assert _error(_with(hydra_compose(), "trainer.epochs", "???")) == \
        "trainer.epochs has no value (???); set it, e.g. trainer.epochs=<value>"
    assert _error(_with(hydra_compose(), "optimizer.lr", "${no_such.key}")) == \
        "optimizer.lr: cannot resolve its value (InterpolationKeyError: Interpolation key 'no_such.key' not found)"


def test_an_unresolvable_interpolation_on_the_command_line_is_one_line(tmp_path):
    out = run_cli(f"output_root={tmp_path}", "dry_run=true", "optimizer.lr=${nonexistent.key}")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "gsm: error: optimizer.lr: cannot resolve its value (InterpolationKeyError: "
        "Interpolation key 'nonexistent.key' not found)"]


def test_a_code_group_without_its_name_says_how_to_choose_one(hydra_compose):
    assert _error(hydra_compose("~head.name")) == "head.name is missing: choose a head with head=<option>"


def test_an_unknown_key_far_from_any_lists_the_keys_of_its_section(hydra_compose):
    msg = _error(hydra_compose("+trainer.qqqqqqqqqqqqqqqqqqqq=1"))
    assert msg.startswith("+trainer.qqqqqqqqqqqqqqqqqqqq=1: no part of gsm reads trainer.qqqqqqqqqqqqqqqqqqqq; "
                          "the keys under trainer are trainer.amp, trainer.analyze_train, ")
    assert "trainer.epochs" in msg and "optimizer." not in msg


def test_a_preset_with_a_package_header_is_checked_where_its_keys_land(hydra_compose, tmp_path):
    """``# @package _global_.trainer`` (or ``trainer``) puts a preset's keys under trainer: a typo there is named at
    trainer.*."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "pkg.yaml").write_text("# @package _global_.trainer\nepoch: 3\n")
    (tmp_path / "experiment" / "pkg_ok.yaml").write_text("# @package _global_.trainer\nepochs: 3\n")
    (tmp_path / "experiment" / "absolute.yaml").write_text("# @package trainer\nepoch: 3\n")  # the same place
    for name in ("pkg", "absolute"):
        msg = _error(hydra_compose(f"experiment={name}", search_dir=tmp_path))
        assert msg.startswith(f"trainer.epoch (set by experiment={name}): no part of gsm reads trainer.epoch; did you "
                              f"mean trainer.epochs?")
    cfg = hydra_compose("experiment=pkg_ok", search_dir=tmp_path)
    assert cfg.trainer.epochs == 3
    validate_config(cfg)


def test_a_broken_or_self_referring_preset_elsewhere_on_the_search_path_blocks_no_run(hydra_compose, tmp_path):
    """The check reads every option on the search path (for its keys): one that cannot be read, or whose defaults
    name itself, is skipped, and the runs that do not choose it are checked as before."""
    (tmp_path / "head").mkdir()
    (tmp_path / "head" / "broken.yaml").write_text("name: [unclosed\n  - : :\n")
    (tmp_path / "head" / "loop.yaml").write_text("defaults:\n  - loop\n  - _self_\nname: gsoftmax\n")
    validate_config(hydra_compose("head=softmax", search_dir=tmp_path))
    assert "did you mean head.sigma?" in _error(hydra_compose("+head.sigmma=2", search_dir=tmp_path))
