"""A run's record: the one contract between the trainer and everything that reports on runs.

The trainer writes one :class:`RunRecord` per finished run to ``<run>/results.json``; the grid,
the tables, the figures and the tests' synthetic runs all read it back through :func:`read_record`.

Units rule: every fraction is stored as a fraction in [0, 1] and its key ends in ``_frac``
(``top1_error_frac``, ``mAP_frac``, ``per_class_ap_frac``, the ``top3`` dict's keys, the history's
``test_top1_error_frac`` ...). Tables show percent and say "(%)" in their headers.

Two definitions of the multi-label summary numbers are stored side by side: gsm's standard ones
(``mAP_frac`` / ``per_class_ap_frac``: non-interpolated AP, eq. 21, = scikit-learn's
average_precision_score; ``CF1_frac``: eq. 22, the harmonic mean of C-P and C-R) and the authors'
(``mAP_voc_frac`` / ``per_class_ap_voc_frac``: VOC2012 interpolated AP, what the release's
eval/evaluate.m prints as mAP; ``CF1_mean_frac``: the mean of the per-class F1, evaluate.m's
``mean(F1_C)``, the paper's C-F1). Single-label runs also store ``best_top1_error_frac`` and
``best_epoch``: the lowest test top-1 error over the evaluated epochs and its epoch, the number the
release's main_single.lua:65-91 reports (selected on the evaluation split, which is the test split).

Schema versions: ``schema_version`` 5 is this record (version 4 plus ``environment.code``, the content hash of
gsm's code, and ``test_outputs_sha256``, the digest of the test_outputs.pt written with it; a version-4 file
reads with both None). Its statistics, environment and their parts are typed
(:class:`LearnedStats`, :class:`EmpiricalSplits` of :class:`EmpiricalStats`, :class:`Environment` of
:class:`EnvironmentSegment`); in the file they are plain JSON objects under the same field names, and a null in
one of their lists of floats is NaN (non-finite floats are stored as null). The G-softmax head's initial μ, σ (the
config's ``head.mu``, ``head.sigma``) are ``mu_init``, ``sigma_init``; the learned ones, per class, are
``learned.mu``, ``learned.sigma``. Version 3 is the same record with the initial values under ``mu`` and
``sigma``; versions 3 and 2 are upgraded on read with no warning (the same values under the new names). Version 2
is version 3 without ``mAP_voc_frac``, ``CF1_mean_frac``, ``per_class_ap_voc_frac``, ``best_top1_error_frac``
and ``best_epoch``, which read as None (shown as "not recorded" in the tables). A results.json without ``schema_version``
is version 1 (version 2's content with unit-less metric keys such as ``top1_error``); it is upgraded the same
way, because its numbers are the same fractions under other names. Any other version, or a file that is
empty, truncated, not a JSON object, missing required keys or holding keys of no version (the message gives
their dotted name, e.g. ``environment.gpu``), raises :class:`ResultsError` naming the file.

Reading is defensive: :func:`load_records` (every reader of a runs folder) also checks a record's
identity fields against its own stored ``config`` (:func:`identity_problems`) and sets aside, with the
unreadable files, a record whose fields contradict it, so a hand-edited or foreign results.json never
lands in a table as another row.

``test_outputs.pt`` (the figures' x, p and targets of the test split) has its own small schema, written by
:func:`write_test_outputs` and validated on read by :func:`read_test_outputs` (``torch.load`` with
``weights_only=True``: nothing in the file is executed). Its ``schema_version`` is
:data:`OUTPUTS_SCHEMA_VERSION`; a file without the key (written before it existed) holds the same tensors
and is read as version 0.
"""

from __future__ import annotations

import errno
import json
import math
import re
import sys
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Iterable

from gsm.errors import DataError

if typing.TYPE_CHECKING:
    import numpy as np
    import torch

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


def record_metrics(metrics: dict[str, Any], multilabel: bool, *, history: bool = False) -> dict[str, Any]:
    """Map ``gsm.train.compute_metrics`` output to the record's key names (fractions end in ``_frac``).

    ``history=False``: the fields of a :class:`RunRecord` (``top1_error_frac``, ``top5_error_frac`` or
    ``mAP_frac`` ... ``OF1_frac``, ``mAP_voc_frac``, ``CF1_mean_frac``, ``per_class_ap_frac`` (eq. 21 per
    class), ``per_class_ap_voc_frac`` (VOC AP per class), ``classes_without_positives``, ``top3`` and
    ``test_loss``). ``history=True``: the scalar columns of a history row / summary.csv / TensorBoard
    (``test_top1_error_frac``, ``test_mAP_frac``, ..., ``test_mAP_voc_frac``, ``test_CF1_mean_frac``,
    ``test_loss``). The authors' definitions (``mAP_voc``, ``CF1_mean``, ``AP_voc``, ``mAP_authors``,
    ``CP_authors`` … ``OF1_authors``) are optional: a metrics dict without them (an older caller) gives None there.
    """
    names = MULTILABEL_FRACTIONS if multilabel else SINGLE_LABEL_FRACTIONS
    prefix = "test_" if history else ""
    out: dict[str, Any] = {}
    for name in names:
        if name not in metrics:
            raise KeyError(f"compute_metrics gave no {name!r} (keys: {sorted(metrics)})")
        out[prefix + frac_key(name)] = _float_or_none(metrics[name])
    if multilabel:
        for name in MULTILABEL_OPTIONAL_FRACTIONS:
            out[prefix + frac_key(name)] = _float_or_none(metrics.get(name))
    out["test_loss"] = _float_or_none(metrics.get("loss"))
    if multilabel and not history:
        out["per_class_ap_frac"] = [_float_or_none(v) for v in metrics.get("AP") or []]
        voc = metrics.get("AP_voc")
        out["per_class_ap_voc_frac"] = None if voc is None else [_float_or_none(v) for v in voc]
        out["classes_without_positives"] = [int(c) for c in metrics.get("classes_without_positives") or []]
        top3 = metrics.get("top3")
        out["top3"] = None if top3 is None else {frac_key(k): _float_or_none(v) for k, v in top3.items()}
    return out


def _float_or_none(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def best_epoch(history: Iterable[dict[str, Any]]) -> tuple[float | None, int | None]:
    """(lowest ``test_top1_error_frac``, its epoch) over the evaluated epochs of a run's history.

    How the release's main_single.lua picks the number it reports (lines 65-91: ``if test_top1 <
    bestErr`` after every epoch's test pass, so the first epoch wins a tie); the selection is made on
    the evaluation split, which is the test split. Epochs without a test pass (``trainer.eval_every``)
    or with a non-finite value are skipped; (None, None) when no epoch was evaluated.
    """
    best: tuple[float | None, int | None] = (None, None)
    for row in history:
        err = _float_or_none(row.get("test_top1_error_frac"))
        if err is not None and (best[0] is None or err < best[0]):
            best = (err, int(row["epoch"]))
    return best


# --------------------------------------------------------------------------- the record's typed parts


class Checked:
    """A dataclass of the record whose fields are checked against their annotations when it is built
    (:class:`ResultsError` naming the class and every field that does not conform)."""

    def __post_init__(self) -> None:
        problems = _field_problems(type(self), {f.name: getattr(self, f.name) for f in fields(self)})
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
        return _parse_block(cls, data, "the run's environment (gsm.environment.environment)", "environment")


@dataclass
class RunRecord:
    """``results.json`` of one finished run (schema version 5). Fractions end in ``_frac``."""

    # identity and data
    dataset: str
    model: str
    head: str
    seed: int
    epochs: int
    multilabel: bool
    num_classes: int
    class_names: list[str]
    signature: str
    config: dict[str, Any]
    schema_version: int = SCHEMA_VERSION
    run_name: str | None = None  # the run folder's name
    mu_init: float | None = None  # the G-softmax head's initial μ, σ (head.mu, head.sigma); learned.mu/sigma: learned
    sigma_init: float | None = None
    lam: float | None = None
    train_samples: int | None = None
    test_samples: int | None = None
    data_notes: Any = None
    data_fingerprint: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    # metrics on the test split (fractions)
    top1_error_frac: float | None = None  # the last epoch's
    top5_error_frac: float | None = None
    best_top1_error_frac: float | None = None  # the lowest over the evaluated epochs (best_epoch); None before schema 3
    best_epoch: int | None = None
    mAP_frac: float | None = None  # eq. 21 (non-interpolated AP), classes with a positive
    CP_frac: float | None = None
    CR_frac: float | None = None
    CF1_frac: float | None = None
    OP_frac: float | None = None
    OR_frac: float | None = None
    OF1_frac: float | None = None
    mAP_voc_frac: float | None = None  # the authors' VOC2012 interpolated mAP (eval/evaluate.m); None before schema 3
    CF1_mean_frac: float | None = None  # the authors' C-F1: mean of per-class F1; None before schema 3
    # every column as the release's eval/evaluate.m computes it (gsm.metrics: eps on every count, plain mean over
    # classes); None when not recorded, and mAP_authors_frac None also when a class lacks a positive (NaN there)
    mAP_authors_frac: float | None = None
    CP_authors_frac: float | None = None
    CR_authors_frac: float | None = None
    CF1_authors_frac: float | None = None
    OP_authors_frac: float | None = None
    OR_authors_frac: float | None = None
    OF1_authors_frac: float | None = None
    per_class_ap_frac: list[float | None] | None = None
    per_class_ap_voc_frac: list[float | None] | None = None  # VOC AP per class (None where no positive)
    classes_without_positives: list[int] | None = None
    top3: dict[str, float | None] | None = None
    test_loss: float | None = None
    test_outputs_sha256: str | None = None  # test_outputs.pt as written with this record (None before schema 5)
    # statistics (eqs. 18-20): learned (the G-softmax head's μ, σ; None for other heads) and empirical (fitted on x)
    learned: LearnedStats | None = None
    empirical: EmpiricalSplits | None = None
    # how it ran
    history: list[dict[str, Any]] = field(default_factory=list)
    train_time_s: float | None = None
    wall_time_s: float | None = None
    eval_seconds_total: float | None = None
    checkpoint_seconds_total: float | None = None
    device: str | None = None
    world_size: int = 1
    git_rev: str | None = None
    torch: str | None = None
    environment: Environment = field(default_factory=Environment)
    # where it was read from (not written)
    path: Path | None = field(default=None, repr=False, compare=False, metadata={"stored": False})

    def __post_init__(self) -> None:
        problems = _field_problems(type(self), {f.name: getattr(self, f.name) for f in fields(self)})
        if problems:
            raise ResultsError(f"{self.path or 'run record'}: {'; '.join(problems)}")

    # ------------------------------------------------------------------ construction and I/O

    @classmethod
    def from_dict(cls, data: Any, path: Path | str | None = None) -> RunRecord:
        """Validate and build a record from a parsed results.json (versions 1 to 3 are upgraded)."""
        where = str(path) if path is not None else "results.json"
        if not isinstance(data, dict):
            raise ResultsError(f"{where}: expected a JSON object (a run record), found {type(data).__name__}"
                               f"{' (empty)' if not data else ''}")
        if not data:
            raise ResultsError(f"{where}: an empty JSON object, not a run record")
        version = data.get("schema_version", 1)
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise ResultsError(f"{where}: schema_version {version!r}; this gsm reads versions "
                               f"{', '.join(map(str, READABLE_VERSIONS))}. "
                               f"Use the gsm revision that wrote it, or rerun the run with trainer.force=true")
        if version == 1:
            data = upgrade_v1(data, path)
        if version in (1, 2, 3):
            data = upgrade_v3(data, where, version)  # the fields schema 3 added keep their None defaults for 1 and 2
        elif version == 4:  # schema 5 only adds optional fields (the code hash, the test outputs' digest): None here
            data = {**data, "schema_version": SCHEMA_VERSION}
        return _parse_block(cls, data, where, "", version, path=Path(path) if path is not None else None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON content of results.json (``path`` left out)."""
        out = asdict(self)
        for f in fields(self):
            if not f.metadata.get("stored", True):
                out.pop(f.name, None)
        return out

    def write(self, path: Path | str, *, create_folder: bool = True) -> Path:
        """Write atomically (gsm.runs.write_json: readers never see half a file)."""
        from gsm import runs

        path = Path(path)
        runs.write_json(path, self.to_dict(), create_folder=create_folder)
        self.path = path
        return path

    # ------------------------------------------------------------------ reading helpers

    @property
    def run_dir(self) -> Path | None:
        return self.path.parent if self.path is not None else None

    @property
    def headline_key(self) -> str:
        return "mAP_frac" if self.multilabel else "top1_error_frac"

    @property
    def headline(self) -> float | None:
        return getattr(self, self.headline_key)

    def metric(self, key: str) -> float | None:
        """A fraction-valued metric by record key (``top1_error_frac``) or by name (``top1_error``)."""
        value = getattr(self, frac_key(key), None)
        return None if value is None or not math.isfinite(float(value)) else float(value)

    @property
    def image_size(self) -> Any:
        return (self.config.get("dataset") or {}).get("image_size")

    def stat(self, split: str, key: str) -> list[float]:
        """Empirical statistic ``key`` (a field of :class:`EmpiricalStats`) of ``split`` ("test" or "train") per
        class (NaN where undefined); [] when the record has no statistics of that split."""
        if split not in ("test", "train") or key not in EmpiricalStats.__dataclass_fields__:
            raise ValueError(f"no empirical statistic {split}.{key} (splits: test, train; statistics: "
                             f"{', '.join(EmpiricalStats.__dataclass_fields__)})")
        block = getattr(self.empirical, split) if self.empirical is not None else None
        return [] if block is None else list(getattr(block, key))


# --------------------------------------------------------------------------- checking and parsing typed fields


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


_HINTS: dict[type, dict[str, Any]] = {}


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


def _field_problems(cls: type, values: dict[str, Any], prefix: str = "") -> list[str]:
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


def _parse_block(cls: type, data: Any, where: str, key: str, version: int = SCHEMA_VERSION, **extra: Any) -> Any:
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
    problems = _field_problems(cls, values, dotted)
    if problems:
        raise ResultsError(f"{where}: {'; '.join(problems)}")
    return cls(**values, **extra)


def _from_json(value: Any, tp: Any, where: str, key: str, version: int) -> Any:
    """A JSON value as the annotation ``tp`` wants it: typed parts built, nulls in a list of floats as NaN."""
    options = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    for option in options:
        if is_dataclass(option) and isinstance(value, dict):
            return _parse_block(option, value, where, key, version)
        if typing.get_origin(option) is list and isinstance(value, list):
            (inner,) = typing.get_args(option)
            if is_dataclass(inner):
                return [_parse_block(inner, v, where, f"{key}[{i}]", version) for i, v in enumerate(value)]
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


# --------------------------------------------------------------------------- reading


def read_record(path: Path | str) -> RunRecord:
    """Read and validate ``results.json``; :class:`ResultsError` (naming ``path``) when it is not a run record."""
    from gsm.identity import FileKindError, regular_file

    path = Path(path)
    try:
        if not regular_file(path, "run record"):
            raise ResultsError(f"{path}: no such file")
        text = path.read_bytes().decode("utf-8")
    except FileKindError as exc:
        raise ResultsError(str(exc)) from None
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path}: not UTF-8 text (byte {exc.start}), so not a run record gsm wrote") from None
    if not text.strip():
        raise ResultsError(f"{path}: empty file (an interrupted write?)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON, truncated or corrupt ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise ResultsError(f"{path}: nested too deeply to be a run record") from None
    return RunRecord.from_dict(data, path)


def record_problems(rec: RunRecord) -> list[str]:
    """Why a record read from a run folder is not that folder's run: it contradicts its own config
    (:func:`identity_problems`) or carries another signature than the folder's name (a results.json copied from
    another run folder); [] when it is the folder's."""
    from gsm.identity import RunPaths

    problems = identity_problems(rec)
    if problems:
        return ["contradicts its own config: " + "; ".join(problems)]
    foreign = RunPaths(rec.path.parent).foreign(rec.path, rec.signature) if rec.path is not None else None
    return [foreign.removeprefix(f"{rec.path} ")] if foreign else []


def load_records(runs_dir: Path | str) -> tuple[list[RunRecord], list[tuple[Path, str]]]:
    """Every readable ``results.json`` below ``runs_dir`` that is its folder's run and, separately, the others with
    why (unreadable, or :func:`record_problems`: it contradicts its config or its folder)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise DataError(f"--runs {runs_dir}: no such folder (run the experiments first, e.g. make demo)")
    good, bad = [], []
    for path in sorted(runs_dir.rglob("results.json")):
        try:
            rec = read_record(path)
        except ResultsError as exc:
            bad.append((path, one_line(str(exc).removeprefix(f"{path}: "))))
            continue
        problems = record_problems(rec)
        if problems:
            bad.append((path, problems[0]))
        else:
            good.append(rec)
    return good, bad


def warn_unreadable(bad: Iterable[tuple[Path, str]], prog: str = "gsm-tables", file=None) -> None:
    """One warning that lists every results.json set aside (unreadable or contradicting its config: skipped, not fatal)."""
    bad = list(bad)
    if not bad:
        return
    lines = [f"{prog}: warning: skipped {len(bad)} unreadable or foreign results.json (treated as not run):"]
    lines += [f"  {p}: {one_line(why)}" for p, why in bad]
    print("\n".join(lines), file=file or sys.stderr)


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line (line breaks as spaces), at most ``limit`` characters: for warnings quoting file content."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- identity against the config

# record field -> the config key the trainer takes it from (gsm.train.build_results)
IDENTITY_KEYS = {"dataset": "dataset.name", "model": "model.name", "head": "head.name", "mu_init": "head.mu",
                 "sigma_init": "head.sigma", "lam": "head.lam", "seed": "seed", "epochs": "trainer.epochs"}
OPTIONAL_IDENTITY_KEYS = ("mu_init", "sigma_init", "lam")  # ``cfg.head.get(...)``: None where the head has no such key


def identity_problems(rec: RunRecord) -> list[str]:
    """Where a record's identity fields contradict its own stored ``config``: one text per field, [] when none.

    Checked: dataset, model, head, mu_init, sigma_init, lam, seed and epochs against the config keys the trainer takes
    them from (:data:`IDENTITY_KEYS`); signature against ``gsm.runs.signature(config)``; multilabel against
    the metrics the record holds (a multi-label record has no top-1 error, a single-label one no mAP);
    num_classes against class_names and the per-class AP lists. A record the trainer wrote passes all of them.
    """
    from gsm import runs

    cfg = rec.config
    problems = []
    for name, key in IDENTITY_KEYS.items():
        value, found = _config_value(cfg, key)
        if not found and name not in OPTIONAL_IDENTITY_KEYS:
            problems.append(f"{name} = {_short(getattr(rec, name))} but its config has no {key}")
        elif not _same(getattr(rec, name), value):
            problems.append(f"{name} = {_short(getattr(rec, name))} but its config has {key} = {_short(value)}")
    try:
        sig = runs.signature(cfg)
    except Exception as exc:  # noqa: BLE001 - a config of any shape only fails the check
        problems.append(f"signature {rec.signature!r}: its config has no signature ({one_line(str(exc), 80)})")
    else:
        if sig != rec.signature:
            problems.append(f"signature = {_short(rec.signature)} but its config's signature is {sig!r}")
    other = [k for k in (("top1_error_frac", "top5_error_frac", "best_top1_error_frac") if rec.multilabel else
                         tuple(map(frac_key, MULTILABEL_FRACTIONS + MULTILABEL_OPTIONAL_FRACTIONS)))
             if getattr(rec, k) is not None]
    if other:
        problems.append(f"multilabel = {str(rec.multilabel).lower()} but it holds {', '.join(other)} (metrics of a "
                        f"{'single' if rec.multilabel else 'multi'}-label run)")
    lists = {"class_names": rec.class_names, "per_class_ap_frac": rec.per_class_ap_frac,
             "per_class_ap_voc_frac": rec.per_class_ap_voc_frac}
    for name, values in lists.items():
        if values and len(values) != rec.num_classes:
            problems.append(f"num_classes = {rec.num_classes} but {name} has {len(values)} entries")
    outside = [c for c in rec.classes_without_positives or [] if not 0 <= c < rec.num_classes]
    if outside:
        problems.append(f"num_classes = {rec.num_classes} but classes_without_positives holds {outside[0]}")
    return problems


def _config_value(cfg: Any, dotted: str) -> tuple[Any, bool]:
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None, False
        node = node[part]
    return node, True


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return a == b


def _short(v: Any) -> str:
    return one_line(repr(v), 60)


# --------------------------------------------------------------------------- test_outputs.pt

OUTPUTS_SCHEMA_VERSION = 2
READABLE_OUTPUTS_VERSIONS = (0, 1, 2)  # 0: written before the key existed (the same three tensors); 2: + signature
OUTPUTS_KEYS = ("x", "p", "targets")


class OutputsError(DataError):
    """A test_outputs.pt cannot be read as a run's test outputs (the message names the file and what is wrong)."""


@dataclass(frozen=True)
class TestOutputs:
    """A run's ``test_outputs.pt``: what the figures plot, for the N test images of the run's m classes."""

    __test__ = False  # not a pytest test class

    x: np.ndarray  # fc outputs, float32: (N, m), or (N, m, 2) for multi-label [x⁺, x⁻]
    p: np.ndarray  # probabilities, float32 (stored float16): softmax (N, m) or sigmoid (N, m)
    targets: np.ndarray  # int64: class index (N,), or 0/1 labels (N, m) for multi-label
    multilabel: bool
    schema_version: int  # 0 for a file written before the version key

    @property
    def x_pos(self) -> np.ndarray:
        """The feature the figures plot: x (N, m), or x⁺ of a multi-label run."""
        return self.x[..., 0] if self.x.ndim == 3 else self.x


def write_test_outputs(path: Path | str, x: torch.Tensor, p: torch.Tensor, targets: torch.Tensor, *,
                       multilabel: bool, signature: str | None = None, create_folder: bool = True) -> Path:
    """Write ``test_outputs.pt`` (schema :data:`OUTPUTS_SCHEMA_VERSION`) atomically: x as float32, p as float16,
    targets as int16 (class indices) or uint8 (multi-label 0/1), and the run's ``signature``, checked by the
    reader's own validation first. The run's record keeps the file's digest (:func:`file_sha256`)."""
    import torch

    from gsm import runs

    path = Path(path)
    blob = {"schema_version": OUTPUTS_SCHEMA_VERSION, "x": x.detach().float().cpu(), "p": p.detach().half().cpu(),
            "targets": targets.detach().cpu().to(torch.uint8 if multilabel else torch.int16), "signature": signature}
    check_test_outputs(blob, path, multilabel=multilabel)
    runs.atomic_write_bytes(path, lambda fh: torch.save(blob, fh), create_folder=create_folder)
    return path


def file_sha256(path: Path | str) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_run_outputs(rec: RunRecord) -> TestOutputs:
    """The test outputs of a run read from its folder, checked against its record: the record's shape, the
    record's signature and, where the record keeps it (schema 5), the digest of the file written with it. A file
    copied from another run, or written by another attempt than the record's, raises :class:`OutputsError`."""
    if rec.run_dir is None:
        raise OutputsError("a record that was not read from a run folder has no test outputs")
    path = rec.run_dir / "test_outputs.pt"
    out = read_test_outputs(path, multilabel=rec.multilabel, num_classes=rec.num_classes, samples=rec.test_samples,
                            signature=rec.signature)
    if rec.test_outputs_sha256 is not None and file_sha256(path) != rec.test_outputs_sha256:
        raise OutputsError(f"{path}: not the test outputs written with {rec.path.name} (its digest differs: replaced "
                           f"after the run, or copied from another run)")
    return out


def read_test_outputs(path: Path | str, *, multilabel: bool | None = None, num_classes: int | None = None,
                      samples: int | None = None, signature: str | None = None) -> TestOutputs:
    """Read and validate ``test_outputs.pt``; :class:`OutputsError` naming the file and what is wrong.

    ``torch.load(weights_only=True)``: only tensors and plain containers are unpickled, nothing in the file is
    executed. ``multilabel``, ``num_classes`` and ``samples`` (the run's record: test_samples) are checked when given.
    """
    import pickle

    import torch

    from gsm.identity import FileKindError, regular_file

    path = Path(path)
    try:
        if not regular_file(path, "test outputs file"):
            raise OutputsError(f"{path}: cannot read (no such file)")
        size = path.stat().st_size
    except FileKindError as exc:
        raise OutputsError(str(exc)) from None
    except OSError as exc:
        raise OutputsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise OutputsError(f"{path}: empty file (an interrupted write?)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOENT, errno.ENOTDIR, errno.EIO):
            raise OutputsError(f"{path}: cannot read ({exc.strerror or exc})") from None
        # torch's reader reports some truncations as an OSError (EINVAL: a seek past the end)
        raise OutputsError(f"{path}: not a torch file, truncated or corrupt ({exc.strerror or exc})") from None
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise OutputsError(f"{path}: refers to {found.group(1)}, which the safe loader refuses (not test outputs "
                               f"written by gsm; nothing in it was executed)") from None
        detail = str(exc).rsplit("WeightsUnpickler error:", 1)[-1]
        raise OutputsError(f"{path}: not a torch file, truncated or corrupt ({_first_sentence(detail)})") from None
    except Exception as exc:  # noqa: BLE001 - torch reports damaged files as RuntimeError, EOFError, ValueError, ...
        raise OutputsError(f"{path}: not a torch file, truncated or corrupt "
                           f"({type(exc).__name__}: {_first_sentence(str(exc))})") from None
    out = check_test_outputs(blob, path, multilabel=multilabel, num_classes=num_classes, samples=samples)
    if signature is not None and blob.get("signature") not in (None, signature):
        raise OutputsError(f"{path}: belongs to another run: it carries signature {blob.get('signature')!r}, the "
                           f"run's is {signature!r} (copied from another run folder?)")
    return out


def _first_sentence(text: str) -> str:
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return one_line(line.split(". ")[0].removesuffix("."), 100)


def check_test_outputs(blob: Any, path: Path | str, *, multilabel: bool | None = None, num_classes: int | None = None,
                       samples: int | None = None) -> TestOutputs:
    """The one validation of test outputs (the reader's and the writer's): keys, version, shapes, dtypes, values."""
    import torch

    def bad(why: str) -> OutputsError:
        return OutputsError(f"{path}: {why}")

    if not isinstance(blob, dict):
        raise bad(f"a {type(blob).__name__}, not test outputs (a dict of {', '.join(OUTPUTS_KEYS)})")
    version = blob.get("schema_version", 0)
    if type(version) is not int or version not in READABLE_OUTPUTS_VERSIONS or ("schema_version" in blob and version == 0):
        raise bad(f"schema_version {one_line(repr(version), 40)}; this gsm reads test outputs of version "
                  f"{OUTPUTS_SCHEMA_VERSION} (and files without the key)")
    missing = [k for k in OUTPUTS_KEYS if k not in blob]
    if missing:
        keys = ", ".join(one_line(str(k), 40) for k in list(blob)[:8]) or "none"
        raise bad(f"not test outputs: no {', '.join(missing)} (keys: {keys})")
    known = (*OUTPUTS_KEYS, "schema_version", *(("signature",) if version >= 2 else ()))
    unknown = sorted(str(k) for k in blob if k not in known)
    if unknown:
        raise bad(f"keys this gsm does not know: {one_line(', '.join(unknown), 80)} (schema_version {version})")
    if not isinstance(blob.get("signature"), (str, type(None))):
        raise bad(f"signature is a {type(blob['signature']).__name__}, not a run signature")
    x, p, t = (blob[k] for k in OUTPUTS_KEYS)
    for name, v in zip(OUTPUTS_KEYS, (x, p, t)):
        if not isinstance(v, torch.Tensor):
            raise bad(f"{name} is a {type(v).__name__}, not a tensor")
    if not (x.is_floating_point() and p.is_floating_point()):
        raise bad(f"x and p must be floating point (found {x.dtype}, {p.dtype})")
    if t.is_floating_point() or t.is_complex():
        raise bad(f"targets must be integers (found {t.dtype})")
    if p.dim() != 2:
        raise bad(f"p has shape {tuple(p.shape)}, expected (N, m)")
    n, m = p.shape
    if tuple(x.shape) not in ((n, m), (n, m, 2)):
        raise bad(f"x has shape {tuple(x.shape)}, expected ({n}, {m}) or ({n}, {m}, 2) like p {tuple(p.shape)}")
    is_multi = t.dim() == 2
    if tuple(t.shape) != ((n, m) if is_multi else (n,)):
        raise bad(f"targets has shape {tuple(t.shape)}, expected ({n},) class indices or ({n}, {m}) labels")
    if multilabel is not None and is_multi != multilabel:
        raise bad(f"targets of shape {tuple(t.shape)} are {'multi' if is_multi else 'single'}-label, but the run is "
                  f"{'multi' if multilabel else 'single'}-label")
    if num_classes is not None and m != num_classes:
        raise bad(f"outputs of {m} classes, but the run has {num_classes}")
    if samples is not None and n != samples:
        raise bad(f"outputs of {n} test images, but the run evaluated {samples}")
    if n == 0 or m == 0:
        raise bad(f"no outputs (shape {tuple(p.shape)})")
    targets = t.long()
    if is_multi and not ((targets == 0) | (targets == 1)).all():
        raise bad("multi-label targets must be 0 or 1")
    if not is_multi and ((targets < 0) | (targets >= m)).any():
        raise bad(f"targets must be class indices in 0..{m - 1} (found {int(targets.min())}..{int(targets.max())})")
    pf = p.float()
    if not ((pf >= 0) & (pf <= 1)).all():
        raise bad("p must be probabilities in [0, 1]")
    return TestOutputs(x.float().numpy(), pf.numpy(), targets.numpy(), is_multi, int(version))
