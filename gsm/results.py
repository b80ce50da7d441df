"""A run's record: the one contract between the trainer and everything that reports on runs.

The trainer writes one :class:`RunRecord` per finished run to ``<run>/results.json``; every reader (the grid, the
tables, the figures, the tests' synthetic runs) reads it back through :func:`read_record`.

Units rule: every fraction is stored in [0, 1] under a key ending in ``_frac`` (``top1_error_frac``, ``mAP_frac``,
the ``top3`` dict's keys, the history's ``test_top1_error_frac`` ...); tables show percent, saying "(%)".

Two definitions of the multi-label summary numbers are stored side by side: gsm's standard ones
(``mAP_frac`` / ``per_class_ap_frac``: non-interpolated AP, eq. 21, = scikit-learn's
average_precision_score; ``CF1_frac``: eq. 22, the harmonic mean of C-P and C-R) and the authors'
(``mAP_voc_frac`` / ``per_class_ap_voc_frac``: VOC2012 interpolated AP, what the release's
eval/evaluate.m prints as mAP; ``CF1_mean_frac``: the mean of the per-class F1, evaluate.m's
``mean(F1_C)``, the paper's C-F1). Single-label runs also store ``best_top1_error_frac`` and
``best_epoch``: the lowest test top-1 error over the evaluated epochs and its epoch, the number the
release's main_single.lua:65-91 reports (selected on the evaluation split, which is the test split).

Schema versions (docs/runs.md has the table): 5 is this record; 4 lacks ``environment.code`` and
``test_outputs_sha256``; 3 held the initial μ, σ under ``mu``, ``sigma`` (now ``mu_init``, ``sigma_init``; the learned
ones are ``learned.mu``, ``learned.sigma``); 2 also lacks the authors' definitions and the best epoch; 1 (no
``schema_version``) used unit-less metric keys. Older versions are upgraded on read with no warning (the same values,
new fields None: gsm.record_schema). Any other version, or a file that is empty, truncated, not a JSON object,
missing required keys or holding keys of no version (named by their dotted path, e.g. ``environment.gpu``), raises
:class:`ResultsError` naming the file. The statistics and the environment are typed dataclasses; in the file they are
plain JSON objects, a null in a list of floats being NaN.

Reading is defensive: :func:`load_records` (every reader of a runs folder) sets aside, with the unreadable files, a
record that contradicts its own stored ``config`` (:func:`identity_problems`) or its folder (:func:`record_problems`),
so a hand-edited or foreign results.json never lands in a table. The schema is gsm.record_schema and
``test_outputs.pt`` is gsm.test_outputs; both are re-exported here, the one module callers import.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from gsm.errors import DataError
from gsm.text import one_line
from gsm.record_schema import (MULTILABEL_FRACTIONS, MULTILABEL_OPTIONAL_FRACTIONS, READABLE_VERSIONS, SCHEMA_VERSION,
                               SINGLE_LABEL_FRACTIONS, STATISTICS, TOP3_FRACTIONS, Checked, EmpiricalSplits,
                               EmpiricalStats, Environment, EnvironmentSegment, LearnedStats, ResultsError,
                               field_problems, float_or_none, frac_key, parse_block, upgrade_v1, upgrade_v3)
from gsm.test_outputs import (OUTPUTS_KEYS, OUTPUTS_SCHEMA_VERSION, READABLE_OUTPUTS_VERSIONS, OutputsError,
                              TestOutputs, check_test_outputs, file_sha256, read_run_outputs, read_test_outputs,
                              write_test_outputs)

__all__ = [  # the record and its readers; the schema's and the test outputs' names callers use, re-exported
    "RunRecord", "read_record", "load_records", "record_problems", "identity_problems", "warn_unreadable",
    "record_metrics", "best_epoch", "one_line", "SCHEMA_VERSION", "READABLE_VERSIONS", "SINGLE_LABEL_FRACTIONS",
    "MULTILABEL_FRACTIONS", "MULTILABEL_OPTIONAL_FRACTIONS", "TOP3_FRACTIONS", "STATISTICS", "ResultsError",
    "frac_key", "Checked", "LearnedStats", "EmpiricalStats", "EmpiricalSplits", "EnvironmentSegment", "Environment",
    "upgrade_v1", "upgrade_v3", "OUTPUTS_SCHEMA_VERSION", "READABLE_OUTPUTS_VERSIONS", "OUTPUTS_KEYS", "OutputsError",
    "TestOutputs", "write_test_outputs", "read_test_outputs", "read_run_outputs", "check_test_outputs", "file_sha256",
]

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
        out[prefix + frac_key(name)] = float_or_none(metrics[name])
    if multilabel:
        for name in MULTILABEL_OPTIONAL_FRACTIONS:
            out[prefix + frac_key(name)] = float_or_none(metrics.get(name))
    out["test_loss"] = float_or_none(metrics.get("loss"))
    if multilabel and not history:
        out["per_class_ap_frac"] = [float_or_none(v) for v in metrics.get("AP") or []]
        voc = metrics.get("AP_voc")
        out["per_class_ap_voc_frac"] = None if voc is None else [float_or_none(v) for v in voc]
        out["classes_without_positives"] = [int(c) for c in metrics.get("classes_without_positives") or []]
        top3 = metrics.get("top3")
        out["top3"] = None if top3 is None else {frac_key(k): float_or_none(v) for k, v in top3.items()}
    return out


def best_epoch(history: Iterable[dict[str, Any]]) -> tuple[float | None, int | None]:
    """(lowest ``test_top1_error_frac``, its epoch) over the evaluated epochs of a run's history.

    How the release's main_single.lua picks the number it reports (lines 65-91: ``if test_top1 <
    bestErr`` after every epoch's test pass, so the first epoch wins a tie); the selection is made on
    the evaluation split, which is the test split. Epochs without a test pass (``trainer.eval_every``)
    or with a non-finite value are skipped; (None, None) when no epoch was evaluated.
    """
    best: tuple[float | None, int | None] = (None, None)
    for row in history:
        err = float_or_none(row.get("test_top1_error_frac"))
        if err is not None and (best[0] is None or err < best[0]):
            best = (err, int(row["epoch"]))
    return best


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
        problems = field_problems(type(self), {f.name: getattr(self, f.name) for f in fields(self)})
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
        return parse_block(cls, data, where, "", version, path=Path(path) if path is not None else None)

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
