"""Statistics of the tables: per-seed summaries, paired t-tests and Table VI's correlation (pure functions)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Iterable

import numpy as np
from scipy import stats

from gsm.grid import Row
from gsm.report.render import NOT_RECORDED
from gsm.results import STATISTICS, RunRecord


def metric_values(row: Row | None, metric: str, scale: float = 100.0) -> dict[int, float]:
    """seed -> the run's value of ``metric`` (a fraction in the record; percent by default); runs without it skipped."""
    if row is None:
        return {}
    out = {}
    for seed, rec in row.runs.items():
        v = rec.metric(metric)
        if v is not None:
            out[seed] = v * scale
    return out


@dataclass
class Summary:
    """Values of one row over its seeds: mean and sample standard deviation (ddof = 1)."""

    values: dict[int, float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.values.values()))) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(list(self.values.values()), ddof=1)) if self.n > 1 else math.nan

    def text(self, decimals: int, missing: str = "not run") -> str:
        """``12.34`` for one seed, ``12.34 ± 0.56`` for several (the seeds column gives n)."""
        if not self.values:
            return missing
        if self.n == 1:
            return f"{self.mean:.{decimals}f}"
        return f"{self.mean:.{decimals}f} ± {self.std:.{decimals}f}"


def paired_ttest(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int]:
    """(t, p, n) of scipy.stats.ttest_rel(a, b) over the seeds both have; NaN when fewer than 2 pairs."""
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return math.nan, math.nan, len(common)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical pairs: NaN, reported as such
        res = stats.ttest_rel([a[s] for s in common], [b[s] for s in common])
    return float(res.statistic), float(res.pvalue), len(common)


def fmt_p(p: float | None) -> str:
    """p-values as the paper prints them (4 decimals), small ones in scientific notation."""
    if p is None or not math.isfinite(p):
        return "nan"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


# the per-class AP Tables V and VI use: the authors' VOC2012 interpolated AP (eval/evaluate.m's AP_VOC), the AP
# their printed p and rho came from; "per_class_ap_frac" is gsm's eq. 21 AP
AP_KEY = "per_class_ap_voc_frac"


def class_aps(rec: RunRecord, key: str = AP_KEY) -> list[float] | None:
    """A run's per-class AP (fractions, NaN where a class has no positive); None when the record lacks it."""
    values = getattr(rec, key)
    return None if not values else [math.nan if v is None else float(v) for v in values]


def per_class_ap(row: Row | None, key: str = AP_KEY) -> list[float] | None:
    """Per-class AP (fraction) averaged over the row's seeds (NaN where a class has no positive in some run);
    None when the row has no run, or a run whose record lacks ``key`` (an older record: no VOC AP)."""
    if row is None or not row.runs:
        return None
    aps = [class_aps(rec, key) for rec in row.results()]
    if any(a is None for a in aps) or any(len(a) != len(aps[0]) for a in aps):
        return None
    return list(np.mean(np.array(aps, dtype=float), axis=0))


def ap_ttest(soft: Iterable[float], gsm_ap: Iterable[float]) -> tuple[float, float, int, int]:
    """scipy.stats.ttest_rel over the classes both runs have an AP for: (t, p, classes used, classes excluded)."""
    a, b = np.asarray(list(soft), dtype=float), np.asarray(list(gsm_ap), dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 2:
        return math.nan, math.nan, int(keep.sum()), int((~keep).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_rel(a[keep], b[keep])
    return float(res.statistic), float(res.pvalue), int(keep.sum()), int((~keep).sum())


def class_stat(rec: RunRecord, stat: str, source: str) -> list[float]:
    """Per-class ``stat`` (compactness, separability or ratio) of a run: the empirical test-set statistic
    (``source="empirical"``) or the learned one (``"learned"``, eqs. 18-20 on the head's μ, σ); [] when not stored."""
    if stat not in STATISTICS or source not in ("empirical", "learned"):
        raise ValueError(f"no {source} statistic {stat!r} (statistics: {', '.join(STATISTICS)}; sources: empirical, learned)")
    if source == "empirical":
        return rec.stat("test", stat)
    return [] if rec.learned is None else list(getattr(rec.learned, stat))


@dataclass(frozen=True)
class Correlation:
    """Table VI for one statistic over a set of rows (:func:`correlation`): Pearson's ρ and two-sided p of the
    best class's statistic with its AP across the runs; ρ, p NaN and ``reason`` saying why where undefined."""

    n_runs: int  # rows with at least one run
    experiments: list[str]  # those rows' experiments
    rho: float = math.nan
    p: float = math.nan
    class_index: int | None = None  # the class with the highest mean statistic (None before one is chosen)
    class_name: str | None = None
    mean_value: float | None = None  # its statistic's mean over the runs
    candidates: int | None = None  # classes with the statistic and an AP in every run
    values: list[float] = field(default_factory=list)  # its statistic per run (each run = its seeds' mean)
    aps: list[float] = field(default_factory=list)  # its AP per run (fractions)
    reason: str | None = None  # why ρ is undefined; None when measured

    @property
    def measured(self) -> bool:
        return math.isfinite(self.rho)


def correlation(rows: list[Row], stat: str, source: str = "empirical", ap_key: str = AP_KEY) -> Correlation:
    """Table VI for one statistic: the class with the best (highest) mean ``stat`` across the runs, then
    scipy.stats.pearsonr of that class's ``stat`` with its AP (``ap_key``) across the runs (each run = its
    seeds' mean)."""
    used = [r for r in rows if r.runs]
    base = Correlation(n_runs=len(used), experiments=[r.experiment for r in used])
    if len(used) < 3:
        return replace(base, reason=f"needs >= 3 G-softmax runs (have {len(used)})")
    vals, aps = [], []
    for r in used:
        v = [class_stat(rec, stat, source) for rec in r.results()]
        a = [class_aps(rec, ap_key) for rec in r.results()]
        if any(x is None for x in a):
            return replace(base, reason=f"{NOT_RECORDED} ({r.experiment}: a record without {ap_key}, written by an older gsm)")
        if not v or any(len(x) != len(v[0]) or not x for x in v) or any(len(x) != len(v[0]) for x in a):
            return replace(base, reason=f"{r.experiment}: no per-class {source} {stat} or AP in results.json")
        vals.append(np.mean(np.array(v, dtype=float), axis=0))
        aps.append(np.mean(np.array(a, dtype=float), axis=0))
    V, A = np.array(vals), np.array(aps)  # (runs, classes)
    ok = np.isfinite(V).all(0) & np.isfinite(A).all(0)
    if not ok.any():
        return replace(base, reason="no class has the statistic and an AP in every run")
    mean = np.where(ok, V.mean(0), -np.inf)
    c = int(np.argmax(mean))
    names = used[0].results()[0].class_names
    chosen = replace(base, class_index=c, class_name=names[c] if c < len(names) else str(c),
                     mean_value=float(V[:, c].mean()), values=V[:, c].tolist(), aps=A[:, c].tolist(),
                     candidates=int(ok.sum()))
    if np.ptp(V[:, c]) == 0 or np.ptp(A[:, c]) == 0:
        return replace(chosen, reason="undefined (constant input)")
    res = stats.pearsonr(V[:, c], A[:, c])
    return replace(chosen, rho=float(res.statistic), p=float(res.pvalue))
