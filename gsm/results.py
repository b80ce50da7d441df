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

Schema versions: ``schema_version`` 3 is this record. Version 2 is the same record without
``mAP_voc_frac``, ``CF1_mean_frac``, ``per_class_ap_voc_frac``, ``best_top1_error_frac`` and
``best_epoch``; it is upgraded on read with those fields None (shown as "—" in the tables), with no
warning. A results.json without ``schema_version`` is version 1 (version 2's content with
unit-less metric keys such as ``top1_error``); it is upgraded the same way, with no warning,
because its numbers are the same fractions under other names. Any other version, or a file that
is empty, truncated, not a JSON object or missing required keys, raises :class:`ResultsError`
naming the file.
"""

from __future__ import annotations

import json
import math
import sys
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from gsm.errors import DataError

SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)

# compute_metrics keys (gsm.train) -> record keys; all are fractions.
SINGLE_LABEL_FRACTIONS = ("top1_error", "top5_error")
MULTILABEL_FRACTIONS = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")
# the authors' definitions (gsm.metrics.multilabel_metrics since schema 3): None when a caller's metrics lack them
MULTILABEL_OPTIONAL_FRACTIONS = ("mAP_voc", "CF1_mean")
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
    ``test_loss``). The authors' definitions (``mAP_voc``, ``CF1_mean``, ``AP_voc``) are optional: a
    metrics dict without them (an older caller) gives None there.
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


@dataclass
class RunRecord:
    """``results.json`` of one finished run (schema version 3). Fractions end in ``_frac``."""

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
    mu: float | None = None
    sigma: float | None = None
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
    per_class_ap_frac: list[float | None] | None = None
    per_class_ap_voc_frac: list[float | None] | None = None  # VOC AP per class (None where no positive)
    classes_without_positives: list[int] | None = None
    top3: dict[str, float | None] | None = None
    test_loss: float | None = None
    # G-softmax statistics (eqs. 18-20): learned (head parameters) and empirical (fitted on features)
    learned: dict[str, Any] | None = None
    empirical: dict[str, Any] | None = None
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
    environment: dict[str, Any] = field(default_factory=dict)
    # where it was read from (not written)
    path: Path | None = field(default=None, repr=False, compare=False, metadata={"stored": False})

    def __post_init__(self) -> None:
        problems = _type_problems(self)
        if problems:
            raise ResultsError(f"{self.path or 'run record'}: {'; '.join(problems)}")

    # ------------------------------------------------------------------ construction and I/O

    @classmethod
    def from_dict(cls, data: Any, path: Path | str | None = None) -> RunRecord:
        """Validate and build a record from a parsed results.json (versions 1 and 2 are upgraded)."""
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
        if version in (1, 2):
            data = {**data, "schema_version": SCHEMA_VERSION}  # the fields schema 3 added keep their None defaults
        names = {f.name for f in fields(cls) if f.metadata.get("stored", True)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ResultsError(f"{where}: keys this gsm does not know: {', '.join(unknown)} (schema_version {version})")
        required = [f.name for f in fields(cls) if f.default is _NODEFAULT and f.default_factory is _NODEFAULT]
        missing = [k for k in required if k not in data]
        if missing:
            raise ResultsError(f"{where}: not a complete run record, missing {', '.join(missing)}")
        try:
            return cls(**data, path=Path(path) if path is not None else None)
        except ResultsError as exc:
            raise ResultsError(f"{where}: {str(exc).split(': ', 1)[-1]}") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON content of results.json (``path`` left out)."""
        out = asdict(self)
        for f in fields(self):
            if not f.metadata.get("stored", True):
                out.pop(f.name, None)
        return out

    def write(self, path: Path | str) -> Path:
        """Write atomically (gsm.runs.write_json: readers never see half a file)."""
        from gsm import runs

        path = Path(path)
        runs.write_json(path, self.to_dict())
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
        """Empirical statistic ``key`` of ``split`` per class (NaN where undefined); [] if not stored."""
        block = (self.empirical or {}).get(split) or {}
        return [math.nan if v is None else float(v) for v in block.get(key, [])]


_NODEFAULT = fields(RunRecord)[0].default  # dataclasses.MISSING


def _hints() -> dict[str, Any]:
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(RunRecord, globalns={**vars(typing), "Path": Path, "Any": Any}))
    return _HINTS


_HINTS: dict[str, Any] = {}


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


def _type_problems(rec: RunRecord) -> list[str]:
    hints = _hints()
    problems = []
    for f in fields(rec):
        value = getattr(rec, f.name)
        if not _conforms(value, hints[f.name]):
            problems.append(f"{f.name} = {value!r:.60} is not {_type_name(hints[f.name])}")
        elif f.name.endswith("_frac") and value is not None:
            values = value if isinstance(value, list) else [value]
            bad = [v for v in values if v is not None and not (-1e-9 <= float(v) <= 1 + 1e-9)]
            if bad:
                problems.append(f"{f.name} must be fractions in [0, 1] (found {bad[0]!r}; percent?)")
    return problems


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


# --------------------------------------------------------------------------- schema versions 1 and 2


_V1_RENAMES = {**{k: frac_key(k) for k in SINGLE_LABEL_FRACTIONS + MULTILABEL_FRACTIONS}, "per_class_ap": "per_class_ap_frac"}


def upgrade_v1(data: dict[str, Any], path: Path | str | None = None) -> dict[str, Any]:
    """A results.json written before schema_version existed, renamed to version 2 (same values); from_dict
    then adds what version 3 added (None)."""
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


def _history_key(key: str) -> str:
    if key.startswith("test_") and key[5:] in _V1_RENAMES:
        return "test_" + _V1_RENAMES[key[5:]]
    return key


# --------------------------------------------------------------------------- reading


def read_record(path: Path | str) -> RunRecord:
    """Read and validate ``results.json``; :class:`ResultsError` (naming ``path``) when it is not a run record."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not text.strip():
        raise ResultsError(f"{path}: empty file (an interrupted write?)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON, truncated or corrupt ({exc.msg} at line {exc.lineno})") from exc
    return RunRecord.from_dict(data, path)


def load_records(runs_dir: Path | str) -> tuple[list[RunRecord], list[tuple[Path, str]]]:
    """Every readable ``results.json`` below ``runs_dir`` and, separately, the unreadable ones with why."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise DataError(f"--runs {runs_dir}: no such folder (run the experiments first, e.g. make demo)")
    good, bad = [], []
    for path in sorted(runs_dir.rglob("results.json")):
        try:
            good.append(read_record(path))
        except ResultsError as exc:
            bad.append((path, str(exc).removeprefix(f"{path}: ")))
    return good, bad


def warn_unreadable(bad: Iterable[tuple[Path, str]], prog: str = "gsm-tables", file=None) -> None:
    """One warning that lists every unreadable results.json (they are skipped, not fatal)."""
    bad = list(bad)
    if not bad:
        return
    lines = [f"{prog}: warning: skipped {len(bad)} unreadable results.json (treated as not run):"]
    lines += [f"  {p}: {why}" for p, why in bad]
    print("\n".join(lines), file=file or sys.stderr)
