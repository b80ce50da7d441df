"""The paper's numbers, as data (Luo, Wong, Kankanhalli, Zhao, "G-softmax: Improving Intra-class
Compactness and Inter-class Separability of Features", IEEE TNNLS).

The rows live in ``gsm/paper_rows.yaml`` (one registry, in the spirit of mmpretrain's
``metafile.yml``): row id, table, block, label, the experiment config that reproduces it, its
setting (dataset, model, head, μ, σ), the printed numbers and where they are printed, and the
figures that plot it. Everything else selects rows from it by attribute: :func:`rows`.
A Table VII is a new block of rows there plus one builder in ``gsm/report/builders.py``.

Printed numbers keep the paper's units: keys ending in ``_pct`` are percent (Tables I–IV), ``p``
and ``rho`` are as printed (Tables V–VI); None where the paper prints "-".

Transcription notes (also in docs/paper-notes.md):

* Table I, DSN G-softmax on CIFAR-10: the table prints 3.67, the text of Sec. IV says 3.70. We keep
  the table's value.
* Tables III/IV: the paper's C-F1 is not the harmonic mean of its C-P and C-R (eq. 22; e.g. ResNet-101
  on COCO: 2·81.3·70.2/151.5 = 75.3, printed 74.1): it is the mean of per-class F1, as the release's
  eval/evaluate.m computes it (``mean(F1_C)``), and its mAP is the mean VOC2012 interpolated AP
  (``mean(AP_VOC)``); its C-P and C-R add eps to every count (eval/tools/precision_recall_f1.m). O-F1 does
  match eq. 22. The tables compare every printed column with our values on those definitions (records'
  ``CP_authors_frac`` … ``OF1_authors_frac``, ``mAP_authors_frac``) and show eq. 21 / eq. 22 and the other
  variants in columns of their own. The registry keeps the printed keys (``CF1_pct``, ``mAP_pct``).
* Table III, G-softmax (μ = −0.1, σ = 1): C-R is printed 74.5, equal to its C-F1 and above every
  other row's C-R; it is very likely a typo, kept as printed.
* Table VI: with 5 G-softmax runs per dataset the printed (ρ, p) pairs are consistent with
  scipy's two-sided pearsonr on n = 5 (e.g. ρ = 0.9472 → p = 0.0144), so the correlation uses the
  five (μ, σ) grid rows of Table III / IV (not the empirical-init row of the text).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import yaml

from gsm.errors import ConfigError

REGISTRY = Path(__file__).resolve().parent / "paper_rows.yaml"

MULTILABEL_METRICS = ("CP", "CR", "CF1", "OP", "OR", "OF1", "mAP")
# Column headers as the paper prints them.
METRIC_LABELS = {"CP": "C-P", "CR": "C-R", "CF1": "C-F1", "OP": "O-P", "OR": "O-R", "OF1": "O-F1", "mAP": "mAP",
                 "top1_error": "top-1 error"}


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper table (one dataset column for Table I), as the registry lists it.

    ``paper`` maps printed quantities to values (``top1_error_pct``, ``CP_pct`` … ``mAP_pct``, ``p``,
    ``rho``; None where the paper prints "-"). ``baseline`` is the experiment of the softmax row of
    the same block (the reference of paired tests). ``over`` (Table VI) selects the rows whose runs a
    correlation uses; ``stat`` is the statistic it correlates with AP.
    """

    id: str
    table: int
    label: str
    paper: Mapping[str, float | None]
    experiment: str | None = None
    dataset: str | None = None
    model: str | None = None
    head: str | None = None
    mu: float | None = None
    sigma: float | None = None
    init: str | None = None
    baseline: str | None = None
    block: str = ""
    epochs: int | None = None  # epochs the paper states for the row (Table I "# Epoch")
    source: str = ""
    note: str = ""
    stat: str | None = None
    over: Mapping[str, Any] = field(default_factory=dict)
    figures: tuple[int, ...] = ()

    @property
    def reference_only(self) -> bool:
        """A literature row: quoted by the paper from other work, never run here."""
        return self.experiment is None and self.table in (1, 2, 3, 4)

    @property
    def is_baseline(self) -> bool:
        return self.experiment is not None and self.experiment == self.baseline

    def printed(self, metric: str) -> float | None:
        """The paper's value of ``metric`` (``top1_error`` → ``top1_error_pct``; ``p``; ``rho``)."""
        return self.paper.get(f"{metric}_pct", self.paper.get(metric))

    def matches(self, **attrs: Any) -> bool:
        """True when every attribute equals the given value (or is one of a given list / tuple / set)."""
        for key, want in attrs.items():
            have = getattr(self, key)
            if isinstance(want, (list, tuple, set, frozenset)):
                if have not in want:
                    return False
            elif have != want:
                return False
        return True


@lru_cache(maxsize=4)  # the shipped registry (tests read a few others)
def registry(path: str | None = None) -> tuple[PaperRow, ...]:
    """All rows of the registry file, validated (unique ids; known keys)."""
    path = Path(path) if path else REGISTRY
    try:
        # libyaml's safe loader where PyYAML was built with it: the same document, ~10x faster than pure Python
        doc = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the paper-row registry ({exc})") from exc
    known = {f.name for f in fields(PaperRow)}
    out, seen = [], set()
    for i, entry in enumerate(doc.get("rows") or []):
        unknown = set(entry) - known
        if unknown:
            raise ConfigError(f"{path}: row {i} ({entry.get('id')}): unknown keys {sorted(unknown)}; valid: {sorted(known)}")
        if entry["id"] in seen:
            raise ConfigError(f"{path}: row id {entry['id']!r} appears twice")
        seen.add(entry["id"])
        entry = {**entry, "figures": tuple(entry.get("figures") or ()), "block": entry.get("block") or "",
                 "note": entry.get("note") or ""}
        out.append(PaperRow(**entry))
    return tuple(out)


def rows(**attrs: Any) -> list[PaperRow]:
    """Rows whose attributes match, in registry order, e.g. ``rows(table=1, block="WRN")``,
    ``rows(table=(3, 4), head="gsoftmax")`` (a list or tuple matches any of its values)."""
    return [r for r in registry() if r.matches(**attrs)]


def row(row_id: str) -> PaperRow:
    for r in registry():
        if r.id == row_id:
            return r
    raise ConfigError(f"no paper row {row_id!r} in {REGISTRY}")


def figure_rows(figure: int, **attrs: Any) -> list[PaperRow]:
    """Rows whose runs figure ``figure`` plots."""
    return [r for r in registry() if figure in r.figures and r.matches(**attrs)]


def row_of_experiment(experiment: str) -> PaperRow | None:
    """The Table I–IV row an experiment config reproduces (None for an experiment of no paper row)."""
    return next((r for r in registry() if r.experiment == experiment and r.table in (1, 2, 3, 4)), None)


def correlation_rows(r: PaperRow) -> list[PaperRow]:
    """The rows a Table VI row correlates over (its ``over`` attributes, same dataset)."""
    return [x for x in rows(dataset=r.dataset, **r.over) if x.experiment]


def experiments(table: int) -> list[str]:
    """The experiment configs whose runs a table needs, in registry order (Tables V and VI reuse III and IV)."""
    seen: dict[str, None] = {}
    for r in rows(table=table):
        for e in (r.experiment, r.baseline):
            if e:
                seen.setdefault(e)
        for x in correlation_rows(r) if r.over else ():
            seen.setdefault(x.experiment)
    return list(seen)


def tables() -> list[int]:
    return sorted({r.table for r in registry()})


# --------------------------------------------------------------------------- figures and text


@dataclass(frozen=True)
class FigureRef:
    """Values the paper states for a figure (in its caption or the text that discusses it)."""

    figure: int
    description: str
    values: Mapping[str, object] = field(default_factory=dict)
    source: str = ""


FIGURES: dict[int, FigureRef] = {
    3: FigureRef(3, "x vs p scatter, test images of one class, WRN softmax / L-softmax / G-softmax",
                 {"class": {"cifar10": "airplane", "cifar100": "aquarium_fish"},
                  "x_c_range": {"cifar10": {"gsoftmax": (0, 9), "softmax": (0, 11), "lsoftmax": (0, 24)},
                                "cifar100": {"gsoftmax": (0, 11), "softmax": (0, 15), "lsoftmax": (0, 14)}},
                  "gsoftmax_imposter_range": (-5, 0)},
                 "Fig. 3 caption; Sec. V text"),
    4: FigureRef(4, "MS COCO, categories 'cow' and 'baseball bat': x vs p, Gaussians, compactness/separability/ratio",
                 {"classes": ("cow", "baseball bat"),
                  "compactness": {"baseball bat": {"softmax": 2.1, "gsoftmax": 2.3}},
                  "separability": {"cow": {"softmax": 1.8, "gsoftmax": 4.3}}},
                 "Fig. 4 caption; Sec. V text"),
    5: FigureRef(5, "Gaussians of x and compactness/separability/ratio on the test set of Fig. 3",
                 {"class": {"cifar10": "airplane", "cifar100": "aquarium_fish"}}, "Fig. 5 caption"),
    6: FigureRef(6, "CIFAR-10 per-class compactness, separability, ratio (WRN), train and test", {}, "Fig. 6 caption"),
    7: FigureRef(7, "CIFAR-100 first 10 classes: compactness, separability, ratio (WRN), train and test",
                 {"classes": 10}, "Fig. 7 caption"),
    8: FigureRef(8, "MS COCO averages over the 80 categories, ResNet-101 vs ResNet-101 G-softmax",
                 {"compactness": {"softmax": 2.6, "gsoftmax": 2.8}, "separability": {"softmax": 4.2, "gsoftmax": 4.5},
                  "ratio": "G-softmax higher (no number printed)"},
                 "Fig. 8 caption; Sec. V text"),
}
