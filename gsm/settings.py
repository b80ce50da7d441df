"""The ``trainer.*`` keys as one typed object: :class:`TrainerSettings`.

Each field is one key of ``trainer:`` in ``gsm/configs/train.yaml`` (which holds its default and its comment),
declared here once with

* its check (type and range; :func:`gsm.config.validate_config` runs it, and so does
  :meth:`TrainerSettings.from_config`), and
* whether it changes a run's numbers (``result=True``: part of the run's identity, :func:`gsm.runs.signature`)
  or only where, how fast or how verbosely the run goes (``result=False``).

The trainer reads ``settings.<key>`` from the object, never ``cfg.trainer.<key>``. Adding a trainer key is its
line in train.yaml, its field here, and the code that reads it (docs/development.md shows an example).
No torch, no Hydra.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from gsm.errors import ConfigError
from gsm.values import boolean, integer, is_int, one_of

Check = Callable[[str, Any], Any]
AMP_NAMES = ("bf16", "fp16", "none")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _key(check: Check, *, result: bool) -> Any:
    """A field of :class:`TrainerSettings`: ``check(key, value)`` returns the value in its type or raises a
    ConfigError; ``result`` says whether the key belongs to the run's identity. No default: train.yaml has it."""
    return field(metadata={"check": check, "result": result})


def _count(minimum: int, allow_none: bool = False) -> Check:
    return lambda k, v: integer(k, v, minimum=minimum, allow_none=allow_none)


def _choice(*valid: Any) -> Check:
    return lambda k, v: one_of(k, v, valid)


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
