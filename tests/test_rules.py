"""One rule per config key: every key of every group in the shipped configs (gsm/configs/**.yaml, as
gsm.config.catalog reads them) has exactly one rule, the code that takes a value (the heads' constructors,
param_groups, the dataset loaders) raises the same message as the config check, and a number beyond float32's
range is refused at validation with one line naming the key."""

from __future__ import annotations

import importlib
import inspect

import pytest
import torch
import yaml

from conftest import run_cli
from gsm.config import CODE_GROUPS, CONFIG_DIR, RULES, catalog
from gsm.data import load_splits
from gsm.errors import ConfigError
from gsm.heads import GSoftmaxHead, LSoftmaxHead, build_head, param_groups
from gsm.models import MODELS, check_model_config
from gsm.schedules import SCHEDULE_KEYS
from gsm.settings import DATASET, HEAD, MODEL, OPTIMIZER, RECIPE, RUN, TrainerSettings
from gsm.values import FLOAT32_MAX

# the tables that declare the rules of the keys whose rule does not depend on an option (gsm.settings)
TABLES = {"gsm.settings.RUN": RUN.checks(), "gsm.settings.RECIPE": RECIPE.checks(),
          "gsm.settings.TrainerSettings": TrainerSettings.checks(), "gsm.settings.OPTIMIZER": OPTIMIZER.checks(),
          "gsm.settings.DATASET": DATASET.checks(), "gsm.settings.HEAD": HEAD.checks()}
# model.*: each model's settings checks the keys it takes with these (a model takes only its own keys)
MODEL_RULES = {"gsm.settings.MODEL": MODEL.checks()}


def _model_class(option: str) -> type:
    module, cls = MODELS[option][0].split(":")
    return getattr(importlib.import_module(module), cls)


def _code_name(group: str, option: str) -> str:
    """The ``name`` an option of a shipped group sets (``schedule=staircase_wrn`` -> staircase), following its
    defaults list to the file that sets it."""
    body = yaml.safe_load((CONFIG_DIR / group / f"{option}.yaml").read_text()) or {}
    if "name" in body:
        return str(body["name"])
    return _code_name(group, next(d for d in body.get("defaults", []) if d != "_self_"))


def _rules_of(group: str | None, option: str | None, key: str) -> list[str]:
    """Where the rule of ``key`` (as ``group=option`` sets it) is declared: every place, so a test can ask for one."""
    found = [name for name, table in {**TABLES, **MODEL_RULES}.items() if key in table]
    leaf = key.split(".", 1)[1] if "." in key else key
    if group == "model":
        if key == "model.name":
            found.append("gsm.models.MODELS")
        elif leaf not in MODELS[_code_name("model", option)][1]:  # the keys model.name=<name> takes
            found.append(f"not a setting of model.name={_code_name('model', option)}")
    if group == "schedule":
        if key == "schedule.name":
            found.append("gsm.schedules.SCHEDULE_KEYS")
        elif leaf in SCHEDULE_KEYS.get(_code_name("schedule", option), ()):
            found.append(f"gsm.schedules.epoch_factors (schedule.name={_code_name('schedule', option)})")
    return found


def _every_key() -> list[tuple[str | None, str | None, str]]:
    """(group, option, key) for every key the shipped configs define: train.yaml's, and each option's of the
    groups whose name picks code (dataset, model, head, schedule)."""
    cat = catalog()
    keys: list[tuple[str | None, str | None, str]] = [(None, None, key) for key in sorted(cat.primary)]
    for group in CODE_GROUPS:
        for option, option_keys in sorted(cat.options[group].items()):
            keys += [(group, option, key) for key in sorted(option_keys)]
    return keys


def test_every_key_of_every_group_has_exactly_one_rule():
    keys = _every_key()
    assert len(keys) > 100 and {g for g, _, _ in keys} == {None, *CODE_GROUPS}
    wrong = {f"{key} ({group}={option})" if group else key: where for group, option, key in keys
             if len(where := _rules_of(group, option, key)) != 1}
    assert not wrong, wrong


def test_the_config_check_uses_the_declared_rules_and_nothing_else():
    """gsm.config.RULES is the union of the tables, each key's rule the very object declared."""
    union = {key: rule for table in TABLES.values() for key, rule in table.items()}
    assert sum(len(t) for t in TABLES.values()) == len(union) == len(RULES)
    assert all(RULES[key] is rule for key, rule in union.items())
    assert not any(key.startswith(("model.", "schedule.")) for key in RULES)  # their rules depend on the option


def test_every_shipped_model_and_schedule_reads_exactly_its_declared_keys():
    cat = catalog()

    def constructor_keys(name: str) -> set[str]:  # the model.* keys its class's constructor takes
        return set(inspect.signature(_model_class(name).__init__).parameters) - {"self", "in_channels", "image_size"}

    for option, keys in cat.options["model"].items():  # a model name takes some of its class's settings
        name = _code_name("model", option)
        assert {k.split(".", 1)[1] for k in keys} - {"name"} <= set(MODELS[name][1]) <= constructor_keys(name), option
    for name in MODELS:  # every key a model's constructor takes has its rule in gsm.settings.MODEL
        assert constructor_keys(name) <= set(MODEL), name
    for option, keys in cat.options["schedule"].items():
        assert {k.split(".", 1)[1] for k in keys} - {"name"} == set(SCHEDULE_KEYS[_code_name("schedule", option)]), option


def _message(make) -> str:
    with pytest.raises(ConfigError) as err:
        make()
    return str(err.value)


@pytest.mark.parametrize("key, value, build", [
    ("head.sigma", -1, lambda v: GSoftmaxHead(8, 3, sigma=v)),
    ("head.mu", 1e39, lambda v: GSoftmaxHead(8, 3, mu=v)),
    ("head.lam", float("nan"), lambda v: build_head("gsoftmax", 8, 3, lam=v)),
    ("head.init", "kmeans", lambda v: GSoftmaxHead(8, 3, init=v)),
    ("head.init_batches", 0, lambda v: GSoftmaxHead(8, 3, init_batches=v)),
    ("head.fused", "yes", lambda v: GSoftmaxHead(8, 3, fused=v)),
    ("head.learn_dist", 1, lambda v: GSoftmaxHead(8, 3, learn_dist=v)),
    ("head.dist_update", "sgd", lambda v: GSoftmaxHead(8, 3, dist_update=v)),
    ("head.loss_reduction", "max", lambda v: build_head("softmax", 8, 3, loss_reduction=v)),
    ("head.margin", 5, lambda v: LSoftmaxHead(8, 3, margin=v)),
    ("head.power", -1.0, lambda v: LSoftmaxHead(8, 3, power=v)),
    ("model.width", 0, lambda v: check_model_config({"name": "convnet", "width": v})),
    ("model.dropout", 1.0, lambda v: check_model_config({"name": "wrn", "dropout": v})),
    ("model.dropout", -0.5, lambda v: check_model_config({"name": "densenet", "dropout": v})),
    ("model.pool", "avg", lambda v: check_model_config({"name": "resnet101", "pool": v})),
    ("model.blocks", [3, 4], lambda v: check_model_config({"name": "resnet_small", "blocks": v})),
    ("optimizer.lr", -0.1, lambda v: param_groups(torch.nn.Linear(2, 2), lr=v, weight_decay=0.0)),
    ("optimizer.weight_decay", float("inf"), lambda v: param_groups(torch.nn.Linear(2, 2), lr=0.1, weight_decay=v)),
    ("dataset.subset", 0, lambda v: load_splits({"name": "digits", "subset": v}, write=False)),
    ("dataset.crop_padding", -1, lambda v: load_splits({"name": "digits", "crop_padding": v}, write=False)),
    ("dataset.image_size", 4, lambda v: load_splits({"name": "digits", "image_size": v}, write=False)),
])
def test_the_code_that_takes_a_value_gives_the_config_checks_message(key, value, build):
    """A head, param_groups or a loader used on its own (the README's snippet) refuses a bad value with the
    message validate_config gives for the same value: the same rule, called from both."""
    rule = RULES.get(key) or MODEL.checks()[key]
    assert _message(lambda: build(value)) == _message(lambda: rule(key, value))
    assert _message(lambda: build(value)).startswith(f"{key} must be")


def test_a_dataset_s_own_minimum_is_one_message():
    coco = __import__("gsm.data", fromlist=["DATASETS"]).DATASETS["coco"]
    assert _message(lambda: coco.image_size(12)) == "dataset.image_size must be an integer >= 16 for dataset=coco (got 12)"


def _float_keys() -> list[str]:
    """The keys whose rule takes any number up to float32's largest (what reaches a tensor or the optimiser)."""
    keys = []
    for key, rule in RULES.items():
        try:
            keys += [key] if isinstance(rule(key, FLOAT32_MAX), float) else []
        except ConfigError:
            pass
    return sorted(keys)


def test_the_float_keys_are_those_expected():
    assert {"head.lam", "head.mu", "head.sigma", "head.dist_lr_mult", "head.gamma", "optimizer.lr",
            "optimizer.weight_decay", "recipe.lam", "dataset.color_jitter"} <= set(_float_keys())


@pytest.mark.parametrize("key", _float_keys())
@pytest.mark.parametrize("value", [1e39, "1e39"])
def test_a_number_beyond_float32_is_refused_naming_the_key_and_the_range(key, value):
    message = _message(lambda: RULES[key](key, value))
    assert message.startswith(f"{key} must be a finite number")
    unbounded = f"a finite number within float32's range, -{FLOAT32_MAX:.6g} to {FLOAT32_MAX:.6g} (got {value!r})"
    above_zero = f" and <= {FLOAT32_MAX:.6g}, float32's largest (got {value!r})"  # a key with a lower bound
    assert message.endswith(unbounded) or (message.endswith(above_zero) and ("> " in message or ">= " in message))


def test_a_bounded_key_names_its_own_lower_bound_and_float32_s_largest():
    assert _message(lambda: RULES["optimizer.lr"]("optimizer.lr", 1e39)) == (
        f"optimizer.lr must be a finite number >= 0 and <= {FLOAT32_MAX:.6g}, float32's largest (got 1e+39)")


@pytest.mark.parametrize("key", ["head.mu", "head.lam", "recipe.lam"])
def test_a_negative_number_beyond_float32_too(key):
    assert "within float32's range" in _message(lambda: RULES[key](key, -1e39))


def test_the_largest_float32_passes():
    assert RULES["head.mu"]("head.mu", FLOAT32_MAX) == FLOAT32_MAX
    assert RULES["head.mu"]("head.mu", -3.4e38) == -3.4e38


def test_head_mu_beyond_float32_is_one_error_line_not_a_traceback(tmp_path):
    out = run_cli(f"output_root={tmp_path}", "head.mu=1e39", "trainer.epochs=1", "dataset.subset=64")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert lines == [f"gsm: error: head.mu must be a finite number within float32's range, -{FLOAT32_MAX:.6g} to "
                     f"{FLOAT32_MAX:.6g} (got 1e+39)"], lines
    assert not list(tmp_path.iterdir())  # refused before anything was written
