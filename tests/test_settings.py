"""gsm.settings.TrainerSettings: the one declaration of the trainer.* keys (their checks and whether they change a
run's numbers), held against train.yaml, the run identity and the trainer's code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from gsm import runs
from gsm.config import RULES
from gsm.errors import ConfigError
from gsm.settings import TrainerSettings

REPO = Path(__file__).resolve().parents[1]
TRAIN_YAML = yaml.safe_load((REPO / "gsm" / "configs" / "train.yaml").read_text())


def test_fields_are_exactly_the_trainer_keys_of_train_yaml():
    assert set(TrainerSettings.__dataclass_fields__) == set(TRAIN_YAML["trainer"])


def test_train_yaml_defaults_pass_their_checks_and_come_back_typed():
    settings = TrainerSettings.from_config(TRAIN_YAML["trainer"])
    assert settings.epochs == 30 and settings.amp == "bf16" and settings.compile == "auto"
    assert settings.num_workers == "auto" and settings.cpu_threads is None and settings.wait_for_lock is None


def test_the_non_result_keys_are_those_runs_were_identified_without():
    """The set that gsm.runs left out of signatures before the keys were declared here (0.2): changing it would
    give every existing run a new identity."""
    before = {"device", "force", "compile", "compile_mode", "num_workers", "progress", "eval_batch_size",
              "checkpoint_every", "eval_every", "cpu_threads", "wait_for_lock", "log_every_n_steps", "resume_anyway"}
    assert TrainerSettings.non_result_keys() == before == runs.NON_RESULT_KEYS["trainer"]
    cfg = {"trainer": dict(TRAIN_YAML["trainer"]), "seed": 0}
    base = runs.signature(cfg)
    for key, other in (("progress", False), ("cpu_threads", 3), ("eval_every", 2)):
        assert runs.signature({**cfg, "trainer": {**cfg["trainer"], key: other}}) == base, key
    for key, other in (("epochs", 31), ("amp", "fp16"), ("analyze_train", False)):
        assert runs.signature({**cfg, "trainer": {**cfg["trainer"], key: other}}) != base, key


def test_each_check_is_the_config_rule_of_its_key():
    for key, check in TrainerSettings.checks().items():
        assert RULES[key] is check


@pytest.mark.parametrize("key, value, message", [
    ("epochs", 0, "trainer.epochs must be an integer >= 1 (got 0)"),
    ("amp", "fp32", "trainer.amp must be one of bf16, fp16, none (got 'fp32')"),
    ("num_workers", -1, "trainer.num_workers must be auto or an integer >= 0 (got -1)"),
    ("progress", "false", "trainer.progress must be true or false (got 'false')"),
    ("compile_mode", "fast", "trainer.compile_mode must be one of default, reduce-overhead"),
])
def test_a_bad_value_names_the_key_and_what_is_valid(key, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainerSettings.from_config({**TRAIN_YAML["trainer"], key: value})


def test_amp_spellings_are_normalised_and_a_missing_key_is_named():
    assert TrainerSettings.from_config({**TRAIN_YAML["trainer"], "amp": "BF16"}).amp == "bf16"
    assert TrainerSettings.from_config({**TRAIN_YAML["trainer"], "amp": None}).amp == "none"
    with pytest.raises(ConfigError, match="trainer.eval_every is missing"):
        TrainerSettings.from_config({k: v for k, v in TRAIN_YAML["trainer"].items() if k != "eval_every"})


def test_the_trainer_reads_settings_not_the_config_node():
    """gsm/train/*.py never reads cfg.trainer.<key>: one typed read per key, in gsm.settings."""
    offenders = []
    for path in sorted((REPO / "gsm" / "train").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "trainer" and isinstance(node.value, ast.Name) \
                    and node.value.id == "cfg":
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    app = (REPO / "gsm" / "train" / "app.py").read_text().splitlines()
    # the run's one read: validate_config checks every value once and returns trainer.* as TrainerSettings; the
    # exit message of a run stopped before validation ended reads its key through TrainerSettings too
    the_read = [f"gsm/train/app.py:{i}" for i, line in enumerate(app, 1) if "trainer = config.validate_config(cfg)" in line]
    typed = {f"gsm/train/app.py:{i}" for i, line in enumerate(app, 1) if "TrainerSettings.from_config(cfg.trainer)" in line}
    assert len(the_read) == 1 and not set(offenders) - typed, offenders
