"""The ``trainer.*`` keys as one typed object: :class:`TrainerSettings`.

Each field is one key of ``trainer:`` in ``gsm/configs/train.yaml`` (which holds its default and its comment),
declared here once with

* its check (type and range; :func:`gsm.config.validate_config` runs it, and so does
  :meth:`TrainerSettings.from_config`), and
* whether it changes a run's numbers (``result=True``: part of the run's identity, :func:`gsm.runs.signature`)
  or only where, how fast or how verbosely the run goes (``result=False``).

The trainer reads ``settings.<key>`` from the object, never ``cfg.trainer.<key>``. Adding a trainer key is its
line in train.yaml, its field here, and the code that reads it (docs/development.md shows an example).

The other groups whose keys do not depend on a chosen option are :class:`KeyRules` tables declared here once
too: the top-level keys (:data:`RUN`), ``recipe.*`` (:data:`RECIPE`), ``optimizer.*`` (:data:`OPTIMIZER`),
``dataset.*`` (:data:`DATASET`) and ``head.*`` (:data:`HEAD`). :func:`gsm.config.validate_config` checks a
composed config with them, and the code that takes the values (the heads' constructors, :func:`gsm.heads.param_groups`,
the dataset loaders) calls the same rule, so each key has one rule and one message. ``model.*`` (:data:`MODEL`) is
checked by each model's ``settings`` with these rules, for the keys that model takes; a schedule's keys depend on the
schedule chosen and are checked by :func:`gsm.schedules.epoch_factors`.
No torch, no Hydra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from gsm.errors import ConfigError
from gsm.values import (DIST_UPDATES, INTERPOLATIONS, LOSS_REDUCTIONS, PAD_MODES, POOLS, TINY_CROPS, TRAIN_CROPS,
                        WEIGHT_SOURCES, boolean, integer, is_int, number, one_of, text)

Check = Callable[[str, Any], Any]
AMP_NAMES = ("bf16", "fp16", "none")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _key(check: Check, *, result: bool) -> Any:
    """A field of :class:`TrainerSettings`: ``check(key, value)`` returns the value in its type or raises a
    ConfigError; ``result`` says whether the key belongs to the run's identity. No default: train.yaml has it."""
    return field(metadata={"check": check, "result": result})


def _count(minimum: int, allow_none: bool = False) -> Check:
    return lambda k, v: integer(k, v, minimum=minimum, allow_none=allow_none)


def _choice(*valid: Any, allow_none: bool = False) -> Check:
    return lambda k, v: one_of(k, v, valid, allow_none=allow_none)


def _number(**bounds: float) -> Check:
    return lambda k, v: number(k, v, **bounds)


def _text(allow_none: bool = False) -> Check:
    return lambda k, v: text(k, v, allow_none=allow_none)


def _amp(key: str, value: Any) -> str:
    """bf16 | fp16 | none, in lower case (YAML's ``false`` and null also mean none)."""
    if value is None or value is False:
        return "none"
    if isinstance(value, str) and value.lower() in AMP_NAMES:
        return value.lower()
    raise ConfigError(f"{key} must be one of {', '.join(AMP_NAMES)} (got {value!r})")


def _workers(key: str, value: Any) -> int | str:
    if value == "auto":
        return value
    if is_int(value) and value >= 0:
        return int(value)
    raise ConfigError(f"{key} must be auto or an integer >= 0 (got {value!r})")


def _blocks(key: str, value: Any) -> list[int]:
    """A ResNet's bottleneck blocks per stage: 4 counts >= 1 (ResNet-101: [3, 4, 23, 3])."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 4:
        raise ConfigError(f"{key} must be 4 block counts, one per stage, e.g. [3, 4, 23, 3] (got {value!r})")
    return [integer(f"{key}[{i}]", b, minimum=1) for i, b in enumerate(value)]


def _compile_mode(key: str, value: Any) -> str | None:
    return one_of(key, value, COMPILE_MODES, allow_none=True)


@dataclass(frozen=True)
class TrainerSettings:
    """The checked ``trainer.*`` values of one run (train.yaml documents each key)."""

    # what the run computes (part of its identity)
    epochs: int = _key(_count(1), result=True)
    batch_size: int = _key(_count(1), result=True)  # the global batch, split evenly over DDP processes
    amp: str = _key(_amp, result=True)  # bf16 | fp16 | none (CUDA only)
    channels_last: bool = _key(boolean, result=True)  # CUDA only
    analyze_train: bool = _key(boolean, result=True)  # also fit the empirical Gaussians on the training set
    # where, how fast and how verbosely it runs (not part of its identity)
    eval_batch_size: int | None = _key(_count(1, allow_none=True), result=False)
    device: str = _key(_choice("auto", "cpu", "cuda"), result=False)
    compile: bool | str = _key(_choice(True, False, "auto"), result=False)
    compile_mode: str | None = _key(_compile_mode, result=False)
    num_workers: int | str = _key(_workers, result=False)
    cpu_threads: int | None = _key(_count(1, allow_none=True), result=False)
    progress: bool = _key(boolean, result=False)
    log_every_n_steps: int | None = _key(_count(0, allow_none=True), result=False)
    checkpoint_every: int = _key(_count(1), result=False)
    eval_every: int = _key(_count(1), result=False)
    wait_for_lock: bool | None = _key(_choice(True, False, None), result=False)
    force: bool = _key(boolean, result=False)
    resume_anyway: bool = _key(boolean, result=False)

    @classmethod
    def checks(cls) -> dict[str, Check]:
        """``trainer.<key>`` -> its check, for :func:`gsm.config.validate_config`."""
        return {f"trainer.{f.name}": f.metadata["check"] for f in fields(cls)}

    @classmethod
    def non_result_keys(cls) -> frozenset[str]:
        """The keys that do not change a run's numbers (left out of :func:`gsm.runs.signature`)."""
        return frozenset(f.name for f in fields(cls) if not f.metadata["result"])

    @classmethod
    def from_config(cls, trainer: Mapping[str, Any]) -> TrainerSettings:
        """The checked values of a ``trainer`` config node (a DictConfig or a mapping); a missing key is a
        ConfigError naming it (train.yaml has every key)."""
        values = {}
        for f in fields(cls):
            if f.name not in trainer:
                raise ConfigError(f"trainer.{f.name} is missing; gsm reads it, so it needs a value "
                                  "(gsm/configs/train.yaml has its default)")
            values[f.name] = f.metadata["check"](f"trainer.{f.name}", trainer[f.name])
        return cls(**values)


class KeyRules(Mapping[str, Check]):
    """The rules of one config group's keys (``key`` -> ``check(dotted_key, value)``), declared once.

    ``rules.check("sigma", value)`` returns the value in its type or raises the ConfigError naming
    ``head.sigma``; :meth:`checks` gives the dotted keys for :data:`gsm.config.RULES`."""

    def __init__(self, group: str, rules: Mapping[str, Check]) -> None:
        self.group = group
        self._rules = dict(rules)

    def __getitem__(self, key: str) -> Check:
        return self._rules[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def dotted(self, key: str) -> str:
        return f"{self.group}.{key}" if self.group else key

    def check(self, key: str, value: Any) -> Any:
        """``value`` of ``<group>.<key>`` checked by the key's rule."""
        return self._rules[key](self.dotted(key), value)

    def check_each(self, **values: Any) -> dict[str, Any]:
        """Each ``key=value`` checked by its key's rule, in the order given: ``{key: checked value}``."""
        return {key: self.check(key, value) for key, value in values.items()}

    def checks(self) -> dict[str, Check]:
        """``<group>.<key>`` -> its rule."""
        return {self.dotted(k): rule for k, rule in self._rules.items()}


RUN = KeyRules("", {"seed": _count(0), "dry_run": boolean, "output_root": text})
"""The top-level keys of train.yaml."""

RECIPE = KeyRules("recipe", {
    "lam": _number(),
    "dist_lr_mult": _number(minimum=0),
    "lsoftmax_gamma": _number(minimum=0),
    "loss_reduction": _choice(*LOSS_REDUCTIONS),
    "dist_update": _choice(*DIST_UPDATES),
})
"""``recipe.*``: the per-recipe values the head configs read (train.yaml, docs/recipes.md)."""

OPTIMIZER = KeyRules("optimizer", {
    "lr": _number(minimum=0),
    "weight_decay": _number(minimum=0),
    "momentum": _number(minimum=0, below=1),
    "nesterov": boolean,
})
"""``optimizer.*`` of SGD; :func:`gsm.heads.param_groups` checks its ``lr`` and ``weight_decay`` with these."""

DATASET = KeyRules("dataset", {
    "name": text,
    "root": _text(allow_none=True),
    "download": boolean,
    "subset": _count(1, allow_none=True),
    "image_size": _count(8, allow_none=True),  # and >= the dataset's own minimum (gsm.config checks it per dataset)
    "crop_padding": _count(0),
    "flip": boolean,
    "train_crop": _choice(*TRAIN_CROPS, *TINY_CROPS),  # per dataset: its loader
    "color_jitter": _number(minimum=0),
    "lighting": _number(minimum=0),
    "interpolation": _choice(*INTERPOLATIONS),
    "pad_mode": _choice(*PAD_MODES),
    "drop_unlabeled": boolean,
    "on_missing": _choice("error", "skip"),
    "image_dir": text,
    "cache": boolean,
    "cache_dir": _text(allow_none=True),
    "train_size": _count(1),
    "test_size": _count(1),
})
"""``dataset.*``: each dataset's loader reads its keys through these rules (``gsm.data``)."""

HEAD = KeyRules("head", {
    "name": text,
    "lam": _number(),  # λ of eq. 3
    "mu": _number(),  # μ of eq. 4 (init="constant")
    "sigma": _number(above=0),  # σ of eq. 4 (init="constant")
    "learn_dist": boolean,
    "dist_lr_mult": _number(minimum=0),
    "init": _choice("constant", "empirical"),
    "init_batches": _count(1, allow_none=True),
    "dist_update": _choice(*DIST_UPDATES),
    "loss_reduction": _choice(*LOSS_REDUCTIONS),
    "fused": boolean,
    "margin": lambda k, v: integer(k, v, minimum=1, maximum=4),  # L-softmax's m of cos(mθ)
    "base": _number(minimum=0),
    "gamma": _number(minimum=0),
    "power": _number(minimum=0),
    "beta_min": _number(minimum=0),
})
"""``head.*``: the heads' constructors (``gsm.heads``) check their arguments with these rules."""

MODEL = KeyRules("model", {
    "width": _count(1),  # ConvNet's, VGG-16's and ResNet's channel width, WRN's widening factor k
    "depth": _count(1),  # and the form the model's layout needs (WRN 6n + 4, DenseNet 3n + 4 or 6n + 4): its settings
    "growth": _count(1),
    "bc": boolean,
    "dropout": _number(minimum=0, below=1),
    "shared_concat": boolean,
    "pretrained": boolean,
    "weights_path": _text(allow_none=True),
    "weights": _choice(*WEIGHT_SOURCES),
    "pool": _choice(*POOLS),
    "blocks": _blocks,
})
"""``model.*``: each model's ``settings`` (``gsm.models.MODELS``) checks the keys it takes with these rules, then what
its layout needs of them; a model takes only its own keys, so these are not in :data:`gsm.config.RULES`."""
