"""The run record's schema (gsm.results.RunRecord): its versions and fraction keys, its typed parts (statistics,
environment), the check of every field against its annotation, and the upgrades of older versions on read.

No torch, no Hydra: every reader of a runs folder imports it.
"""

from __future__ import annotations

import functools
import math
import types
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from gsm.errors import DataError
from gsm.text import one_line

SCHEMA_VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)

# compute_metrics keys (gsm.train) -> record keys; all are fractions.
SINGLE_LABEL_FRACTIONS = ("top1_error", "top5_error")
MULTILABEL_FRACTIONS = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")
# the authors' definitions (gsm.metrics.multilabel_metrics since schema 3): None when a caller's metrics lack them
MULTILABEL_OPTIONAL_FRACTIONS = ("mAP_voc", "CF1_mean", "mAP_authors", "CP_authors", "CR_authors", "CF1_authors",
                                 "OP_authors", "OR_authors", "OF1_authors")
TOP3_FRACTIONS = ("CP", "CR", "CF1", "OP", "OR", "OF1", "CF1_mean")


class ResultsError(DataError):
    """A results.json cannot be read as a run record (the message names the file)."""


def frac_key(name: str) -> str:
    """The record key of a fraction-valued metric: ``top1_error`` -> ``top1_error_frac``."""
    return name if name.endswith("_frac") else f"{name}_frac"


def float_or_none(v: Any) -> float | None:
    """A finite float, or None (for None and for NaN/inf)."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------- the record's typed parts


class Checked:
    """A dataclass of the record whose fields are checked against their annotations when it is built
    (:class:`ResultsError` naming the class and every field that does not conform)."""

    def __post_init__(self) -> None:
        problems = field_problems(type(self), {f.name: getattr(self, f.name) for f in fields(self)})
        if problems:
            raise ResultsError(f"{type(self).__name__}: {'; '.join(problems)}")


# the per-class statistics of eqs. 18-20, in both LearnedStats and EmpiricalStats (Table VI correlates them with AP)
STATISTICS = ("compactness", "separability", "ratio")


@dataclass(frozen=True)
class LearnedStats(Checked):
    """A G-softmax head's learned Gaussians and their statistics, per class (``gsm.analysis.learned_stats``):
    μ⁺, σ⁺ (the positive column of a multi-label head), compactness 1/σ, separability eq. 19, ratio eq. 20.
    NaN where a value is not finite (stored as null)."""

    mu: list[float]
    sigma: list[float]
    compactness: list[float]
    separability: list[float]
    ratio: list[float]


@dataclass(frozen=True)
class EmpiricalStats(Checked):
    """Gaussians fitted to the features x⁺ of one split, per class c (``gsm.analysis.empirical_stats``, §V):
    N_pos over the images of (with label) c, N_neg over the others; compactness 1/σ_pos, separability eq. 19 with
    m = 2, ratio separability/σ_pos. NaN where a class has fewer than two samples on a side (stored as null)."""

    mu_pos: list[float]
    sigma_pos: list[float]
    mu_neg: list[float]
    sigma_neg: list[float]
    count_pos: list[float]  # images of (with label) c in the split
    compactness: list[float]
    separability: list[float]
    ratio: list[float]


@dataclass(frozen=True)
class EmpiricalSplits(Checked):
    """The empirical statistics of a run: on the test split, and on the training split (None when the run did not
    evaluate it, ``trainer.analyze_train=false``)."""

    test: EmpiricalStats
    train: EmpiricalStats | None = None


@dataclass(frozen=True)
class EnvironmentSegment(Checked):
    """The epochs from ``first_epoch`` on that ran in one environment (a run resumed elsewhere with
    ``trainer.resume_anyway=true``; gsm.environment.segments): the values a resume must keep."""

    first_epoch: int
    world_size: int | None = None
    device: str | None = None
    torch: str | None = None
    git_rev: str | None = None
    git_dirty: bool | None = None
    cpu_threads: int | None = None
    code: str | None = None


@dataclass(frozen=True)
class Environment(Checked):
    """How the run trained (``gsm.environment.environment``). None where an older record does not say (version 1
    records keep only device, world_size and torch). ``segments``: where the run was resumed in another
    environment, which epochs ran where (None when it ran in one)."""

    device: str | None = None  # the device type: cpu, cuda
    device_name: str | None = None
    world_size: int | None = None
    cpu_threads: int | None = None
    num_workers: int | None = None
    torch: str | None = None
    cuda: str | None = None
    cudnn: int | None = None
    deterministic: bool | None = None
    cudnn_benchmark: bool | None = None
    compiled: bool | None = None
    git_rev: str | None = None  # without "-dirty" (git_dirty says)
    git_dirty: bool | None = None
    code: str | None = None  # gsm.identity.code_identity: the content hash of gsm's code (None before schema 5)
    python: str | None = None
    hostname: str | None = None
    segments: list[EnvironmentSegment] | None = None

    @classmethod
    def of_run(cls, env: dict[str, Any], segments: list[dict[str, Any]]) -> Environment:
        """The record's environment: ``env`` (``gsm.environment.environment()``) and the run's environment
        segments (``gsm.environment.segments``), kept only when there is more than one."""
        data = {**env, "segments": segments if len(segments) > 1 else None}
        return parse_block(cls, data, "the run's environment (gsm.environment.environment)", "environment")


# --------------------------------------------------------------------------- checking and parsing typed fields


@functools.lru_cache(maxsize=32)  # the record's dataclasses: a handful
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _conforms(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return isinstance(value, list) and all(_conforms(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def field_problems(cls: type, values: dict[str, Any], prefix: str = "") -> list[str]:
    """``name = value is not type`` for each value that does not conform to its field's annotation in ``cls``, and
    ``name must be fractions`` for a ``*_frac`` value outside [0, 1] (a percent where a fraction belongs)."""
    hints = _hints(cls)
    problems = []
    for name, value in values.items():
        if not _conforms(value, hints[name]):
            problems.append(f"{prefix}{name} = {value!r:.60} is not {_type_name(hints[name])}")
        elif name.endswith("_frac") and value is not None:
            bad = [v for v in (value if isinstance(value, list) else [value])
                   if v is not None and not (-1e-9 <= float(v) <= 1 + 1e-9)]
            if bad:
                problems.append(f"{prefix}{name} must be fractions in [0, 1] (found {bad[0]!r}; percent?)")
    return problems


def _required(f: Any) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def parse_block(cls: type, data: Any, where: str, key: str, version: int = SCHEMA_VERSION, **extra: Any) -> Any:
    """Build the record or one of its typed parts (``cls``) from its JSON object ``data``: unknown and missing keys
    and values that do not conform raise :class:`ResultsError` naming ``where`` and the dotted key (``key``: the
    part's place in results.json, "" for the record); nested parts are built the same way, and a null in a list of
    floats is NaN (how results.json stores a non-finite value). ``extra``: fields that are not stored (``path``)."""
    dotted = f"{key}." if key else ""
    if not isinstance(data, dict):
        raise ResultsError(f"{where}: {key} = {one_line(repr(data), 60)} is not a JSON object ({cls.__name__})")
    stored = [f for f in fields(cls) if f.metadata.get("stored", True)]
    unknown = sorted(set(data) - {f.name for f in stored})
    if unknown:
        raise ResultsError(f"{where}: keys this gsm does not know: {', '.join(dotted + k for k in unknown)} "
                           f"(schema_version {version})")
    missing = [dotted + f.name for f in stored if _required(f) and f.name not in data]
    if missing:
        raise ResultsError(f"{where}: not a complete run record, missing {', '.join(missing)}")
    hints = _hints(cls)
    values = {name: _from_json(value, hints[name], where, dotted + name, version) for name, value in data.items()}
    problems = field_problems(cls, values, dotted)
    if problems:
        raise ResultsError(f"{where}: {'; '.join(problems)}")
    return cls(**values, **extra)


def _from_json(value: Any, tp: Any, where: str, key: str, version: int) -> Any:
    """A JSON value as the annotation ``tp`` wants it: typed parts built, nulls in a list of floats as NaN."""
    options = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    for option in options:
        if is_dataclass(option) and isinstance(value, dict):
            return parse_block(option, value, where, key, version)
        if typing.get_origin(option) is list and isinstance(value, list):
            (inner,) = typing.get_args(option)
            if is_dataclass(inner):
                return [parse_block(inner, v, where, f"{key}[{i}]", version) for i, v in enumerate(value)]
            if inner is float:
                return [math.nan if v is None else v for v in value]
    return value


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "").replace(f"{__name__}.", "")


# --------------------------------------------------------------------------- schema versions 1 to 3


_V1_RENAMES = {**{k: frac_key(k) for k in SINGLE_LABEL_FRACTIONS + MULTILABEL_FRACTIONS}, "per_class_ap": "per_class_ap_frac"}


def upgrade_v1(data: dict[str, Any], path: Path | str | None = None) -> dict[str, Any]:
    """A results.json written before schema_version existed, renamed to version 2 (same values); from_dict
    then upgrades it further (:func:`upgrade_v3`)."""
    out = {_V1_RENAMES.get(k, k): v for k, v in data.items()}
    if isinstance(out.get("top3"), dict):
        out["top3"] = {frac_key(k): v for k, v in out["top3"].items()}
    hist = out.get("history")
    if isinstance(hist, list):
        out["history"] = [{_history_key(k): v for k, v in row.items()} if isinstance(row, dict) else row for row in hist]
    out["schema_version"] = 2
    if path is not None and out.get("run_name") is None:
        out["run_name"] = Path(path).parent.name
    if not out.get("environment"):
        out["environment"] = {k: out.get(k) for k in ("device", "world_size", "torch") if out.get(k) is not None}
    if out.get("data_root") is None and isinstance(out.get("config"), dict):
        out["data_root"] = (out["config"].get("dataset") or {}).get("root")
    return out


# version 3 -> 4: the initial μ, σ under names that cannot be taken for the learned ones (learned.mu, learned.sigma)
_V3_RENAMES = {"mu": "mu_init", "sigma": "sigma_init"}


def upgrade_v3(data: dict[str, Any], where: str = "results.json", version: int = 3) -> dict[str, Any]:
    """A results.json of version 2 or 3 renamed to version 4 (same values: ``mu`` -> ``mu_init``, ``sigma`` ->
    ``sigma_init``); what version 3 added keeps its None default in a version-2 file. The typed parts
    (``learned``, ``empirical``, ``environment``) have the same JSON shape in every version."""
    stray = [new for new in _V3_RENAMES.values() if new in data]
    if stray:
        raise ResultsError(f"{where}: keys this gsm does not know: {', '.join(stray)} (schema_version {version})")
    out = {_V3_RENAMES.get(k, k): v for k, v in data.items()}
    out["schema_version"] = SCHEMA_VERSION
    return out


def _history_key(key: str) -> str:
    if key.startswith("test_") and key[5:] in _V1_RENAMES:
        return "test_" + _V1_RENAMES[key[5:]]
    return key
