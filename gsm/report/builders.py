"""The paper's tables from a grid of runs: one builder per table, each a pure function of the grid.

A builder takes the :class:`gsm.grid.Grid` (paper rows matched to their loaded :class:`RunRecord`s)
and returns a :class:`TableOutput`; it never launches anything. To add a Table VII: add its rows to
``gsm/paper_rows.yaml``, write ``table7(grid)`` here and register it in :data:`BUILDERS`.

:func:`as_written_table` (Tables II-IV, ``gsm-tables tableN --as-written``) sets, for each of our
rows, the paper's number beside ours as released (the default recipe, ``head.dist_update=release``)
and ours as written (the ``@as_written`` grid row, ``head.dist_update=autograd``).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import pandas as pd

from gsm import paper
from gsm.data import DATASET_NAMES
from gsm.errors import ConfigError, DataError
from gsm.grid import Grid, Row
from gsm.paper import PaperRow
from gsm.profiles import variant_name
from gsm.report.render import (LITERATURE, NOT_APPLICABLE, NOT_RECORDED, NOT_REPORTED, NOT_RUN, TableOutput, md_table,
                               md_text, paper_text, rounded, seeds_text)
from gsm.report.stats import AP_KEY, Summary, ap_ttest, correlation, fmt_p, metric_values, paired_ttest, per_class_ap
from gsm.report.sweep import differing_settings, settings_text
from gsm.results import RunRecord

CONVENTIONS = {
    "single": ("Top-1 error (%) on the test split (CIFAR test sets, the Tiny ImageNet validation set): the share of "
               "images whose highest logit is not the label. Records store fractions (top1_error_frac); tables show percent."),
    "multi": ("Columns compared with the paper ('… authors') use the definitions of the release's eval/evaluate.m, "
              "which produced the paper's numbers (with eval/tools/AP_VOC.m and eval/tools/precision_recall_f1.m): "
              "'mAP authors' is the plain mean over all classes of the VOC2012 interpolated AP (area under the "
              "precision envelope, tied scores in input order; record mAP_authors_frac), n/a when a class has no "
              "positive in the test split (its AP is 0/0, so evaluate.m's mean is NaN); 'C-P/C-R/C-F1 authors' are the "
              "means over all classes of the per-class precision, recall and F1 (C-F1 is mean(F1_C), not the harmonic "
              "mean of C-P and C-R) and 'O-P/O-R/O-F1 authors' pool all image-label pairs, every count with MATLAB's "
              "eps added: a class never predicted has precision 1 and a class without a positive recall ≈ 1 (records "
              "CP_authors_frac … OF1_authors_frac). gsm's definitions are shown beside them: C-P, C-R, O-P, O-R eq. 22 "
              "(a class with no predicted image has precision 0, one without a positive recall 0), 'C-F1 eq. 22' = "
              "2·C-P·C-R/(C-P+C-R) as eq. 22 writes (record CF1_frac), O-F1 eq. 22, 'C-F1 per-class mean' (the mean "
              "of per-class F1 with eq. 22's zeros; record CF1_mean_frac), 'mAP VOC' (the VOC2012 AP averaged over "
              "the classes with a positive; record mAP_voc_frac) and 'mAP eq. 21' (the non-interpolated AP, the mean "
              "of the precision at each positive's rank, = scikit-learn average_precision_score, over the classes "
              "with a positive; record mAP_frac). Prediction = (P(i) >= 0.5), P(i) = sigmoid of the head's logit (the "
              "release's p⁺ >= p⁻). Records store fractions; tables show percent."),
    "stats": ("Compactness, separability and ratio are the empirical test-set statistics (eqs. 18-20): for class c, "
              "N_pos = N(mean, std of x⁺_c over test images with label c), N_neg = the same over images without it; "
              "compactness = 1/σ_pos, separability = (KL(N_pos‖N_neg) + KL(N_neg‖N_pos))/2 (eq. 19 with m = 2), "
              "ratio = separability/σ_pos (eq. 20)."),
    "seeds": ("Several seeds: mean ± sample standard deviation (ddof = 1) over seeds; the seeds column gives n. "
              "p vs softmax: two-sided paired t-test (scipy.stats.ttest_rel) of the row's per-seed values against the "
              "softmax row of the same block, pairs matched by seed (seeds both rows have; needs at least 2)."),
    "rows": ("'not run': no results.json under the runs folder matches the row's config under this profile (the "
             "experiment config plus the profile's overrides, seed aside). Literature rows are quoted by the paper "
             "from other work, shown for reference and never run here: each of their cells that holds no number the "
             "paper quotes (our values, p-values, seeds, and the paper's columns it quotes nothing for) is '—'."),
}


# --------------------------------------------------------------------------- shared parts


def _join(values) -> str:
    vals = list(dict.fromkeys(str(v) for v in values if v is not None))
    return "/".join(vals) if vals else NOT_APPLICABLE


def _device(rec: RunRecord) -> str:
    """``cpu``, or the accelerator's name (``NVIDIA H100 80GB HBM3``), with `` xN`` for N processes."""
    kind = rec.environment.device or rec.device or "?"
    name = "cpu" if kind == "cpu" else (rec.environment.device_name or rec.device or kind)
    return name + (f" x{rec.world_size}" if rec.world_size > 1 else "")


def run_conditions(runs: list[RunRecord]) -> dict[str, str]:
    """Epochs, image size and device of runs, each as a compact string."""
    return {"epochs": _join(r.epochs for r in runs), "image size": _join(r.image_size for r in runs),
            "device": _join(_device(r) for r in runs)}


def conditions(grid: Grid, tables: str) -> list[str]:
    """The table's conditions: profile, where the runs come from, revisions, and how the runs ran."""
    prof = grid.profile
    found = [r for row in grid.rows.values() for r in row.results()]
    out = [f"Profile {prof.name} ({prof.description}).",
           f"Runs read from {grid.runs_dir}; experiment configs gsm/configs/experiment/{tables}."]
    if prof.name != "full":
        out.append("These are smoke-test numbers of tiny models on generated fixtures: they check the pipeline, not the paper.")
    if grid.extra:
        out.append(f"Extra overrides: {' '.join(grid.extra)}.")
    if found:
        c = run_conditions(found)
        out.append(f"Our runs: epochs {c['epochs']}; image size {c['image size']}; device {c['device']}; "
                   f"git revision(s) {', '.join(sorted({r.git_rev or 'unknown' for r in found}))}.")
        subsets = sorted({str(s) for r in found if (s := (r.config.get("dataset") or {}).get("subset")) is not None})
        if subsets:
            out.append(f"The runs use dataset.subset={'/'.join(subsets)}: at most that many images per split, not the "
                       f"full splits the caption names.")
        mixed = sorted(r.run_name or r.signature for r in found if len(r.environment.segments or []) > 1)
        if mixed:
            out.append(f"Resumed in another environment (trainer.resume_anyway=true; results.json environment.segments "
                       f"says which epochs ran where): {', '.join(mixed)}.")
    else:
        out.append("No runs found yet.")
    out.append(f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.")
    return out


def _p_text(row: Row | None, base: Row | None, metric: str, r: PaperRow) -> tuple[str, float, int]:
    if r.reference_only:
        return LITERATURE, math.nan, 0
    if r.is_baseline:
        return "baseline", math.nan, 0
    a, b = metric_values(row, metric), metric_values(base, metric)
    if not a:
        return (NOT_RECORDED if row is not None and row.runs else NOT_RUN), math.nan, 0
    _, p, n = paired_ttest(a, b)
    if n < 2:  # a paired test over seeds needs two seeds both rows have
        return NOT_APPLICABLE, math.nan, n
    return f"{fmt_p(p)} (n = {n})", p, n


def _ours(r: PaperRow, summ: Summary, decimals: int) -> str:
    return LITERATURE if r.reference_only else summ.text(decimals)


def paper_cell(r: PaperRow, metric: str | None, decimals: int) -> str:
    """The paper's printed number of ``metric`` for a row: ``n.r.`` where it prints none for a row of ours, ``—``
    in a literature row (whose only numbers are those the paper quotes)."""
    v = r.printed(metric) if metric else None
    return LITERATURE if v is None and r.reference_only else paper_text(v, decimals)


def p_as_shown(p: float | None) -> float:
    """A p-value rounded as the tables print it (gsm.report.stats.fmt_p); NaN for none."""
    return math.nan if p is None or not math.isfinite(p) else float(fmt_p(p))


def summary_cell(row: Row | None, summ: Summary, decimals: int) -> str:
    """A row's value over its seeds: ``not run`` without runs, ``—`` when its records predate the metric,
    ``(n = k of m)`` appended when only some of its runs have it."""
    if row is None or not row.runs:
        return NOT_RUN
    if not summ.n:
        return NOT_RECORDED
    text = summ.text(decimals)
    return text if summ.n == len(row.runs) else f"{text} (n = {summ.n} of {len(row.runs)})"


def ours_cell(r: PaperRow, row: Row | None, metric: str, decimals: int) -> tuple[str, Summary]:
    """(display text, summary) of our value of ``metric`` for a paper row (``—`` for a literature row)."""
    summ = Summary(metric_values(row, metric))
    return (LITERATURE if r.reference_only else summary_cell(row, summ, decimals)), summ


def _status(r: PaperRow, summ: Summary, runs: list[RunRecord]) -> str:
    if r.reference_only:
        return "literature"
    return "measured" if summ.n else ("not recorded" if runs else "not run")


def _data_row(r: PaperRow, metric: str, summ: Summary, p: float, n_pairs: int, runs: list[RunRecord], decimals: int,
              paper_metric: str | None = "") -> dict[str, Any]:
    """One tidy CSV row, its numbers rounded as the table displays them (``decimals``; p-values as fmt_p prints
    them); ``paper_metric`` names the paper's printed quantity compared with (default: ``metric``; None: the paper
    prints no such number)."""
    cond = run_conditions(runs) if runs else {}
    printed = r.printed(metric if paper_metric == "" else paper_metric) if paper_metric is not None else None
    return {
        "table": r.table, "row_id": r.id, "block": r.block, "row": r.label, "experiment": r.experiment or "",
        "dataset": r.dataset or "", "reference_only": r.reference_only, "metric": metric,
        "ours_mean_pct": rounded(summ.mean, decimals), "ours_std_pct": rounded(summ.std, decimals), "n_seeds": summ.n,
        "ours_per_seed_pct": ";".join(f"{s}:{v:.{decimals}f}" for s, v in sorted(summ.values.items())),
        "paper_pct": printed, "p_vs_softmax": p_as_shown(p), "n_pairs": n_pairs,
        "status": _status(r, summ, runs),
        "epochs": cond.get("epochs", ""), "image_size": cond.get("image size", ""),
        "seeds": ",".join(str(s) for s in sorted(summ.values)), "device": cond.get("device", ""),
        "paper_source": r.source, "paper_note": r.note,
    }


def _unmatched_note(grid: Grid) -> list[str]:
    if not grid.unmatched:
        return []
    return [f"{len(grid.unmatched)} results.json under {grid.runs_dir} of this table's datasets and models belong to "
            f"no row under the '{grid.profile.name}' profile (other settings, e.g. another number of epochs, or a "
            f"config of an older revision): they are not shown."]


def malleable_note() -> str:
    """Eq. 17 as gsm reads it (docs/paper-notes.md, E4): when the *WRN rows' learning rate drops below 1e-5."""
    from gsm.grid import compose
    from gsm.schedules import epoch_factors

    r = paper.rows(table=1, model="wrn1100")[0]
    cfg = compose(r.experiment)
    sched = dict(cfg["schedule"])
    epochs = int(cfg["trainer"]["epochs"])
    lr = float(cfg["optimizer"]["lr"]) * np.asarray(epoch_factors(sched.pop("name"), epochs, **sched), dtype=float)
    below = np.flatnonzero(lr < 1e-5)
    if not below.size:
        return "*WRN rows: malleable learning rate (eq. 17)."
    first = int(below[0]) + 1
    return (f"*WRN rows: under our reading of eq. 17 (continuous, docs/paper-notes.md E4) the learning rate falls below "
            f"1e-5 from epoch {first} of {epochs} (to {lr[-1]:.0e} at the end), so {epochs - first + 1} of their {epochs} "
            f"epochs train at lr < 1e-5: they are not simply \"WRN trained for longer\".")


def cf1_note(rows: list[PaperRow]) -> str | None:
    """The paper's C-F1 against eq. 22 computed from its own printed C-P and C-R (its softmax row)."""
    base = next((r for r in rows if r.is_baseline), None)
    if base is None:
        return None
    cp, cr, cf1 = (base.printed(k) for k in ("CP", "CR", "CF1"))
    if None in (cp, cr, cf1):
        return None
    hm = 2 * cp * cr / (cp + cr)
    return (f"The paper's printed C-F1 does not follow eq. 22 from its own C-P and C-R (e.g. {base.label}: "
            f"2·{cp:.1f}·{cr:.1f}/{cp + cr:.1f} = {hm:.1f}, printed {cf1:.1f}): it is the mean of the per-class F1, "
            f"as the release's eval/evaluate.m computes it (mean(F1_C)). The 'C-F1 authors' column is that "
            f"definition and is compared with the paper; the 'C-F1 eq. 22' column is eq. 22 as the paper writes it.")


# Tables III/IV columns: (record metric, header, the paper's printed quantity it is compared with or None)
MULTILABEL_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    # the release's eval/evaluate.m, which printed the paper's numbers: compared with them
    ("CP_authors", "C-P authors (%)", "CP"),
    ("CR_authors", "C-R authors (%)", "CR"),
    ("CF1_authors", "C-F1 authors (%)", "CF1"),
    ("OP_authors", "O-P authors (%)", "OP"),
    ("OR_authors", "O-R authors (%)", "OR"),
    ("OF1_authors", "O-F1 authors (%)", "OF1"),
    ("mAP_authors", "mAP authors (%)", "mAP"),
    # gsm's definitions beside them, which the paper does not print
    ("CP", "C-P eq. 22 (%)", None),
    ("CR", "C-R eq. 22 (%)", None),
    ("CF1", "C-F1 eq. 22 (%)", None),
    ("CF1_mean", "C-F1 per-class mean (%)", None),
    ("OP", "O-P eq. 22 (%)", None),
    ("OR", "O-R eq. 22 (%)", None),
    ("OF1", "O-F1 eq. 22 (%)", None),
    ("mAP_voc", "mAP VOC (%)", None),
    ("mAP", "mAP eq. 21 (%)", None),
)
# what each record metric is, for the CSV's "definition" column
_AUTHORS = "the release's eval/evaluate.m, precision_recall_f1.m (eps on every count)"
DEFINITIONS = {"CP": "eq. 22", "CR": "eq. 22", "OP": "eq. 22", "OR": "eq. 22", "OF1": "eq. 22",
               "CP_authors": f"mean over classes of per-class precision ({_AUTHORS})",
               "CR_authors": f"mean over classes of per-class recall ({_AUTHORS})",
               "CF1_authors": f"mean over classes of per-class F1 ({_AUTHORS})",
               "OP_authors": f"precision over all image-label pairs ({_AUTHORS})",
               "OR_authors": f"recall over all image-label pairs ({_AUTHORS})",
               "OF1_authors": f"F1 over all image-label pairs ({_AUTHORS})",
               "mAP_authors": "VOC2012 interpolated AP, plain mean over all classes (the release's eval/evaluate.m, "
                              "AP_VOC.m; NaN with a class without a positive)",
               "CF1_mean": "mean of per-class F1, 0 for an empty count",
               "mAP_voc": "VOC2012 interpolated AP, mean over the classes with a positive",
               "mAP": "eq. 21, non-interpolated AP (scikit-learn), mean over classes",
               "CF1": "eq. 22, harmonic mean of C-P and C-R",
               "top1_error": "last epoch", "best_top1_error": "best evaluated epoch, selected on the test split"}
P_METRIC = "mAP_voc"  # the paired test of Tables III/IV: on the mAP compared with the paper
BEST_HEADER = "top-1 error ours, best epoch (%), selected on the evaluation split"
BEST_NOTE = ("Best epoch, selected on the evaluation split: the lowest test top-1 error over the run's evaluated epochs (every trainer.eval_every epochs "
             "and the last) and that epoch (record best_top1_error_frac, best_epoch). This is how the authors' "
             "main_single.lua:65-91 picks the number it reports (the lowest test_top1 after each epoch's test pass); "
             "the selection is made on the evaluation split, which is also the split reported (Tiny ImageNet's "
             "validation set), so it is optimistic. The last epoch's error (no choice made on the test split) is the "
             "primary column.")


def best_epochs_text(r: PaperRow, row: Row | None) -> str:
    """The best epochs of a row's runs, in seed order (``23`` or ``23, 25``)."""
    if r.reference_only:
        return LITERATURE
    if row is None or not row.runs:
        return NOT_RUN
    epochs = [rec.best_epoch for rec in row.results() if rec.best_epoch is not None]
    return ", ".join(str(e) for e in epochs) if epochs else NOT_RECORDED


# --------------------------------------------------------------------------- Tables I and II


def table1(grid: Grid) -> TableOutput:
    rows = paper.rows(table=1)
    labels = list(dict.fromkeys(r.label for r in rows))
    display, data = [], []
    for label in labels:
        by_ds = {r.dataset: r for r in rows if r.label == label}
        first = by_ds["cifar10"]
        line: dict[str, Any] = {"Method": label + (" (literature)" if first.reference_only else ""),
                                "# Epoch (paper)": str(first.epochs)}
        seeds = {}
        for ds in ("cifar10", "cifar100"):
            r, name = by_ds[ds], DATASET_NAMES[ds]
            row, base = grid.get(r.experiment), grid.get(r.baseline)
            summ = Summary(metric_values(row, "top1_error"))
            p_text, p, n_pairs = _p_text(row, base, "top1_error", r)
            line[f"{name} ours (%)"] = _ours(r, summ, 2)
            line[f"{name} paper (%)"] = paper_cell(r, "top1_error", 2)
            line[f"{name} p vs softmax"] = p_text
            seeds[name] = row.seeds if row else []
            data.append(_data_row(r, "top1_error", summ, p, n_pairs, row.results() if row else [], 2))
        if first.reference_only:
            line["seeds"] = LITERATURE
        elif len({tuple(v) for v in seeds.values()}) == 1:  # the same seeds on both datasets
            line["seeds"] = seeds_text(next(iter(seeds.values())))
        else:
            line["seeds"] = "; ".join(f"{k}: {seeds_text(v)}" for k, v in seeds.items())
        display.append(line)
    notes = [CONVENTIONS["single"], CONVENTIONS["seeds"], CONVENTIONS["rows"], malleable_note(),
             "Paper: DSN G-softmax CIFAR-10 is 3.67 in Table I and 3.70 in the text of Sec. IV (the table's value is shown)."]
    return TableOutput("table1", "Table I: top-1 error (%) on CIFAR-10 and CIFAR-100",
                       "Top-1 error (%) of G-softmax and the baselines on the CIFAR-10 and CIFAR-100 test sets, "
                       "ours next to the paper's Table I.",
                       pd.DataFrame(display), pd.DataFrame(data), conditions(grid, "table1/*"),
                       notes + _unmatched_note(grid))


def table2(grid: Grid) -> TableOutput:
    display, data = [], []
    for r in paper.rows(table=2):
        row, base = grid.get(r.experiment), grid.get(r.baseline)
        last, summ = ours_cell(r, row, "top1_error", 2)
        best, best_summ = ours_cell(r, row, "best_top1_error", 2)
        p_text, p, n_pairs = _p_text(row, base, "top1_error", r)
        _, best_p, best_pairs = _p_text(row, base, "best_top1_error", r)
        if not r.reference_only and r.baseline is None:
            p_text = NOT_APPLICABLE  # the 64x64 row: no softmax row of its own block
        runs = row.results() if row else []
        display.append({
            "Method": r.label + (" (literature)" if r.reference_only else ""),
            "top-1 error ours, last epoch (%)": last,
            "top-1 error paper (%)": paper_cell(r, "top1_error", 2),
            "p vs softmax (224x224)": p_text,
            BEST_HEADER: best,
            "best epoch": best_epochs_text(r, row),
            "image size": LITERATURE if r.reference_only else (run_conditions(runs)["image size"] if runs else NOT_RUN),
            "seeds": LITERATURE if r.reference_only else seeds_text(row.seeds if row else []),
        })
        data.append({**_data_row(r, "top1_error", summ, p, n_pairs, runs, 2), "definition": DEFINITIONS["top1_error"]})
        data.append({**_data_row(r, "best_top1_error", best_summ, best_p, best_pairs, runs, 2, "top1_error"),
                     "definition": DEFINITIONS["best_top1_error"],
                     "best_epochs": ";".join(f"{rec.seed}:{rec.best_epoch}" for rec in runs if rec.best_epoch is not None)})
    notes = ["ResNet-101 initialised from ImageNet weights, input 224x224 unless stated; paired tests against "
             "ResNet-101 softmax at 224x224 (of the last-epoch errors; the CSV also has them for the best epochs).",
             CONVENTIONS["single"], BEST_NOTE, CONVENTIONS["seeds"], CONVENTIONS["rows"]]
    return TableOutput("table2", "Table II: top-1 error (%) on Tiny ImageNet",
                       "Top-1 error (%) on the Tiny ImageNet validation set, ours next to the paper's Table II.",
                       pd.DataFrame(display), pd.DataFrame(data), conditions(grid, "table2/*"),
                       notes + _unmatched_note(grid))


# --------------------------------------------------------------------------- Tables III and IV


def _multilabel_table(grid: Grid, number: int, title: str, caption: str, intro: str) -> TableOutput:
    rows = paper.rows(table=number)
    display, data = [], []
    p_header = "p vs softmax (mAP VOC)"
    for r in rows:
        row, base = grid.get(r.experiment), grid.get(r.baseline)
        runs = row.results() if row else []
        ours: dict[str, Any] = {"Method": r.label, "values": "ours"}
        printed: dict[str, Any] = {"Method": r.label + (" (literature)" if r.reference_only else ""), "values": "paper"}
        for m, header, paper_m in MULTILABEL_COLUMNS:
            ours[header], summ = ours_cell(r, row, m, 1)
            _, p, n_pairs = _p_text(row, base, m, r)
            printed[header] = paper_cell(r, paper_m, 1)
            line = {**_data_row(r, m, summ, p, n_pairs, runs, 1, paper_m), "definition": DEFINITIONS[m]}
            if m == "mAP_authors" and not r.reference_only:
                ours[header], line["status"] = _authors_map_text(ours[header], summ, runs, line["status"])
            data.append(line)
        ours[p_header] = _p_text(row, base, P_METRIC, r)[0]
        ours["seeds"] = seeds_text(row.seeds if row else [])
        printed[p_header] = LITERATURE if r.reference_only else NOT_REPORTED
        printed["seeds"] = LITERATURE if r.reference_only else NOT_REPORTED
        if r.reference_only:
            display.append(printed)
        else:  # two lines per row: ours, then the paper's
            printed["Method"] = ""
            display += [ours, printed]
    notes = [intro, CONVENTIONS["multi"],
             "The paper's line in gsm's columns (eq. 21, eq. 22, per-class mean, mAP VOC) is n.r.: the paper prints "
             "only the authors' definitions.",
             CONVENTIONS["seeds"].replace("per-seed values", "per-seed VOC mAP"), CONVENTIONS["rows"]]
    cf1 = cf1_note(rows)
    if cf1:
        notes.append(cf1)
    without: dict[tuple[str, ...], list[str]] = {}  # classes without a positive -> rows (and seeds) with that list
    n_runs = 0
    for r in rows:
        row = grid.get(r.experiment)
        for rec in row.results() if row else []:
            n_runs += 1
            if rec.classes_without_positives:
                names = rec.class_names
                missing = tuple(names[i] if i < len(names) else str(i) for i in rec.classes_without_positives)
                without.setdefault(missing, []).append(f"{r.label} (seed {rec.seed})")
    for missing, where in without.items():
        notes.append(f"{len(missing)} classes without a positive in the test split (left out of mAP VOC and mAP "
                     f"eq. 21; 'mAP authors' is {NOT_APPLICABLE} there, evaluate.m's mean being NaN), in "
                     f"{'every measured row' if len(where) == n_runs else '; '.join(where)}: {', '.join(missing)}.")
    notes += [f"{r.label}: {r.note}" for r in rows if r.experiment and r.note]
    return TableOutput(f"table{number}", title, caption, pd.DataFrame(display), pd.DataFrame(data),
                       conditions(grid, f"table{number}/*"), notes + _unmatched_note(grid),
                       text_columns=("Method", "values", "seeds"))


def _authors_map_text(text: str, summ: Any, runs: list[RunRecord], status: str) -> tuple[str, str]:
    """(cell, CSV status) of 'mAP authors': a run whose test split has a class without a positive recorded the
    authors' values but not this one (evaluate.m's plain mean is NaN, stored as null), shown as n/a with why."""
    nan = [rec for rec in runs if rec.mAP_authors_frac is None and rec.CP_authors_frac is not None]
    if not nan:
        return text, status
    why = f"{NOT_APPLICABLE}: NaN, a class without a positive"
    if not summ.n:
        return why, why
    return f"{text}; {why} in {len(nan)} of {len(runs)} runs", status


def table3(grid: Grid) -> TableOutput:
    return _multilabel_table(
        grid, 3, "Table III: multi-label classification on MS COCO (validation set)",
        "Multi-label classification (%) on the MS COCO 2014 validation set, ours (first line) and the paper's "
        "Table III (second line).",
        "ResNet-101 with global max pooling, 448x448, batch 16, lr 1e-5. The empirical-init row is the paper's text "
        "(mAP 81.0 only).",
    )


def table4(grid: Grid) -> TableOutput:
    return _multilabel_table(
        grid, 4, "Table IV: multi-label classification on NUS-WIDE (test set)",
        "Multi-label classification (%) on the NUS-WIDE test split, ours (first line) and the paper's Table IV "
        "(second line).",
        "Same setting as MS COCO, with the μ, σ learning rate x100.",
    )


# --------------------------------------------------------------------------- Table V


def _ap_test(soft_row: Row | None, g_row: Row | None, key: str) -> dict[str, Any]:
    """Table V's test of one AP definition: t, p, classes used / excluded, mean AP difference (%), or why not."""
    out: dict[str, Any] = {"t": math.nan, "p": math.nan, "used": 0, "excluded": 0, "diff": math.nan, "why": None}
    soft, g = per_class_ap(soft_row, key), per_class_ap(g_row, key)
    if soft is not None and g is not None and len(soft) == len(g):
        out["t"], out["p"], out["used"], out["excluded"] = ap_ttest(soft, g)
        a, b = np.asarray(soft), np.asarray(g)
        keep = np.isfinite(a) & np.isfinite(b)
        out["diff"] = float(np.mean(b[keep] - a[keep]) * 100) if keep.any() else math.nan
    elif g_row is None or not g_row.runs:
        out["why"] = NOT_RUN
    elif soft_row is None or not soft_row.runs:
        out["why"] = "not run (softmax)"
    elif soft is None or g is None:
        out["why"] = NOT_RECORDED  # a run of either row was recorded without this AP
    else:
        out["why"] = "nan"
    return out


def table5(grid: Grid) -> TableOutput:
    display, data = [], []
    for r in paper.rows(table=5):
        soft_row, g_row = grid.get(r.baseline), grid.get(r.experiment)
        seeds = (f"{seeds_text(soft_row.seeds if soft_row else [])} / {seeds_text(g_row.seeds if g_row else [])}")
        voc, std = _ap_test(soft_row, g_row, AP_KEY), _ap_test(soft_row, g_row, "per_class_ap_frac")
        why = voc["why"]
        line = {"dataset": DATASET_NAMES[r.dataset], "G-softmax (μ, σ)": r.label,
                "p ours (VOC AP)": why or fmt_p(voc["p"]), "p paper": fmt_p(r.printed("p")),
                "t": why or (f"{voc['t']:.3f}" if math.isfinite(voc["t"]) else "nan"),
                "mean AP diff, G - softmax (%)": why or (f"{voc['diff']:+.2f}" if math.isfinite(voc["diff"]) else "nan"),
                "classes used": why or str(voc["used"]), "classes excluded": why or str(voc["excluded"]),
                "p ours (AP eq. 21)": std["why"] or fmt_p(std["p"]),
                "seeds (softmax / G-softmax)": seeds}
        display.append(line)
        data.append({"table": 5, "row_id": r.id, "dataset": r.dataset, "row": r.label, "experiment": r.experiment,
                     "baseline": r.baseline, "ap": "voc", "t": rounded(voc["t"], 3), "p": p_as_shown(voc["p"]),
                     "paper_p": r.printed("p"), "classes_used": voc["used"], "classes_excluded": voc["excluded"],
                     "mean_ap_diff_pct": rounded(voc["diff"], 2), "t_ap_eq21": rounded(std["t"], 3),
                     "p_ap_eq21": p_as_shown(std["p"]), "mean_ap_eq21_diff_pct": rounded(std["diff"], 2),
                     "status": "measured" if math.isfinite(voc["p"]) or voc["used"] else
                               ("not recorded" if why == NOT_RECORDED else "not run"),
                     "seeds_softmax": ",".join(map(str, soft_row.seeds)) if soft_row else "",
                     "seeds_gsoftmax": ",".join(map(str, g_row.seeds)) if g_row else ""})
    notes = ["Two-sided paired-sample t-test (scipy.stats.ttest_rel) of the per-class APs of the softmax run against "
             "those of the G-softmax run, pairs matched by class. The AP is the authors' VOC2012 interpolated AP "
             "(the release's eval/evaluate.m, AP_VOC; record per_class_ap_voc_frac), the AP the paper's Tables III/IV "
             "mAP and so, we take it, its Table V came from; 'p ours (AP eq. 21)' is the same test on gsm's eq. 21 AP "
             "(per_class_ap_frac), for reference. Classes without a positive in the test split (AP undefined in either "
             "run) are excluded from both. Where a row has several seeds, each class's AP is first averaged over that "
             "row's seeds. p-values with 4 decimals, as the paper prints them.",
             CONVENTIONS["multi"], CONVENTIONS["rows"]]
    return TableOutput("table5", "Table V: paired t-test of per-class APs, softmax vs G-softmax",
                       "Paired t-test of the per-class APs of softmax against each G-softmax run of Tables III and IV, "
                       "ours next to the paper's Table V.",
                       pd.DataFrame(display), pd.DataFrame(data), conditions(grid, "table3/*, table4/*"),
                       notes + _unmatched_note(grid),
                       text_columns=("dataset", "G-softmax (μ, σ)", "seeds (softmax / G-softmax)"))


# --------------------------------------------------------------------------- Table VI


def _pair(rho: float | None, p: float | None) -> str:
    if rho is None or not math.isfinite(rho):
        return "nan"
    return f"({rho:.4f}, {fmt_p(p)})"


def table6(grid: Grid) -> TableOutput:
    display, data, learned_display = [], [], []
    for r in paper.rows(table=6):
        over = [x.experiment for x in paper.correlation_rows(r)]
        rows = [grid.rows[e] for e in over if e in grid.rows]
        for source, target in (("empirical", display), ("learned", learned_display)):
            res = correlation(rows, r.stat, source)
            if res.measured:
                ours = _pair(res.rho, res.p)
            else:
                ours = NOT_RUN if res.n_runs == 0 else res.reason or "nan"
            target.append({
                "dataset": DATASET_NAMES[r.dataset], "correlation": r.label, "(ρ, p) ours": ours,
                "(ρ, p) paper": _pair(r.printed("rho"), r.printed("p")),
                "class (best mean)": NOT_APPLICABLE if res.class_index is None else f"{res.class_name} (#{res.class_index})",
                "its mean value": f"{res.mean_value:.4g}" if res.class_index is not None else NOT_APPLICABLE,
                "G-softmax runs used": f"{res.n_runs} of {len(over)}",
            })
            data.append({"table": 6, "row_id": r.id, "dataset": r.dataset, "statistic": r.stat, "source": source,
                         "rho": rounded(res.rho, 4), "p": p_as_shown(res.p),
                         "paper_rho": r.printed("rho") if source == "empirical" else math.nan,
                         "paper_p": r.printed("p") if source == "empirical" else math.nan,
                         "class": res.class_index, "class_name": res.class_name, "n_runs": res.n_runs,
                         "experiments": ";".join(res.experiments),
                         "values": ";".join(f"{v:.6g}" for v in res.values),
                         "aps_frac": ";".join(f"{v:.6g}" for v in res.aps),
                         "status": "measured" if res.measured else res.reason or "not run"})
    notes = ["For each statistic, the class with the highest mean value of that statistic across the five G-softmax "
             "(μ, σ) runs of Table III (MS COCO) or Table IV (NUS-WIDE) is chosen (among classes with an AP and the "
             "statistic in every run; the empirical-init COCO row is not one of them); then scipy.stats.pearsonr of that "
             "class's value with its AP across the runs gives (ρ, two-sided p). The AP is the authors' VOC2012 "
             "interpolated AP (the release's eval/evaluate.m, AP_VOC; record per_class_ap_voc_frac), the AP behind the "
             "paper's numbers; the CSV's aps_frac column holds the chosen class's APs. Where a row has several seeds, its values "
             "and APs are the means over its seeds. Main table: the empirical test-set statistics (our choice; the paper "
             "does not say whether it used the learned μ, σ or fitted ones: its Fig. 8 values are test-set fits). Second "
             "table: the same with the learned μ⁺, σ⁺ of the G-softmax head (eqs. 19, 20 across classes), for reference.",
             CONVENTIONS["stats"], CONVENTIONS["rows"]]
    return TableOutput("table6", "Table VI: correlation of compactness / separability / ratio with AP",
                       "Pearson correlation (ρ, p) between each statistic of the best class and its AP across the "
                       "G-softmax runs, ours next to the paper's Table VI.",
                       pd.DataFrame(display), pd.DataFrame(data), conditions(grid, "table3/*, table4/*"),
                       notes + _unmatched_note(grid), text_columns=("dataset", "correlation", "class (best mean)"),
                       extra=[("learned μ⁺, σ⁺ (reference)", pd.DataFrame(learned_display))])


BUILDERS: dict[int, Callable[[Grid], TableOutput]] = {1: table1, 2: table2, 3: table3, 4: table4, 5: table5, 6: table6}


# --------------------------------------------------------------------------- "as written" beside "as released"

AS_WRITTEN_TABLES = (2, 3, 4)  # the tables whose G-softmax recipes follow the release's μ, σ update
AS_WRITTEN_NOTE = (
    "Ours as released: the row's default recipe, whose G-softmax μ, σ are updated as the authors' released code "
    "does (head.dist_update=release: single-label, frozen at their initial values, src/GaussianSoftMaxCriterion.lua; "
    "multi-label, a hand-written step of the batch mean, without momentum or weight decay, that moves μ in the ascent "
    "direction, src/MltGaussianSoftMaxCriterion.lua with train_multi.lua). Ours as written: the same recipe with "
    "head.dist_update=autograd, μ and σ learned by the gradients of eqs. 9-10 as the paper describes (every other "
    "setting, e.g. head.loss_reduction, as released). Softmax and L-softmax rows have no μ, σ: one run fills both "
    "columns (marked 'same run').")


def _same_run(released: Row | None, written: Row | None) -> bool:
    return written is None or (released is not None and written.key == released.key)


def _variant_rows(grid: Grid, r: PaperRow) -> tuple[Row | None, Row | None, bool]:
    """(as released, as written, same run?) grid rows of a paper row of ours."""
    released = grid.get(r.experiment)
    written = grid.get(variant_name(r.experiment, "as_written")) if r.head == "gsoftmax" else None
    same = _same_run(released, written)
    return released, (released if same else written), same


def _variant_data(r: PaperRow, metric: str, row: Row | None, variant: str, same: bool, decimals: int,
                  paper_metric: str | None = "") -> dict[str, Any]:
    summ = Summary(metric_values(row, metric))
    runs = row.results() if row else []
    row_data = _data_row(r, metric, summ, math.nan, 0, runs, decimals, paper_metric)
    for key in ("p_vs_softmax", "n_pairs"):  # no paired tests in this table
        row_data.pop(key)
    return {**row_data, "variant": variant,
            "grid_row": row.experiment if row else "", "same_run_as_released": same,
            "definition": DEFINITIONS.get(metric, "")}


def as_written_table(number: int, grid: Grid) -> TableOutput:
    """Table ``number`` (II-IV): for each of our rows, the paper's number, ours as released and ours as written.

    The grid must hold the ``<experiment>@as_written`` rows of the table's G-softmax rows
    (gsm.grid.as_written_experiments); a row without runs shows "not run"."""
    if number not in AS_WRITTEN_TABLES:
        raise ConfigError(f"--as-written applies to tables {', '.join(map(str, AS_WRITTEN_TABLES))} (their G-softmax "
                          f"recipes follow the released code), not to table {number}")
    rows = [r for r in paper.rows(table=number) if r.experiment]
    display, data = [], []
    for r in rows:
        released, written, same = _variant_rows(grid, r)
        seeds_w = f"same run ({'no μ, σ' if r.head != 'gsoftmax' else 'same config'})" if same else \
            seeds_text(written.seeds if written else [])
        if number == 2:
            line: dict[str, Any] = {"Method": r.label, "top-1 error paper (%)": paper_text(r.printed("top1_error"), 2)}
            for metric, what in (("top1_error", "last epoch"), ("best_top1_error", "best epoch")):
                for name, row in (("as released", released), ("as written", written)):
                    line[f"ours {name}, {what} (%)"] = ours_cell(r, row, metric, 2)[0]
            line["image size"] = run_conditions(released.results())["image size"] if released and released.runs else NOT_RUN
            line["seeds as released"] = seeds_text(released.seeds if released else [])
            line["seeds as written"] = seeds_w
            display.append(line)
            metrics: tuple[tuple[str, str | None], ...] = (("top1_error", "top1_error"), ("best_top1_error", "top1_error"))
        else:
            lines = []
            for name, row in (("ours as released", released), ("ours as written", written)):
                line = {"Method": r.label if not lines else "",
                        "values": name + (" (same run)" if same and name.endswith("written") else "")}
                for m, header, _ in MULTILABEL_COLUMNS:
                    line[header] = ours_cell(r, row, m, 1)[0]
                line["seeds"] = seeds_text(row.seeds if row else []) if not (same and lines) else seeds_w
                lines.append(line)
            printed = {"Method": "", "values": "paper",
                       **{header: paper_text(r.printed(pm) if pm else None, 1) for _, header, pm in MULTILABEL_COLUMNS},
                       "seeds": NOT_REPORTED}
            display += [*lines, printed]
            metrics = tuple((m, pm) for m, _, pm in MULTILABEL_COLUMNS)
        for metric, paper_metric in metrics:
            decimals = 2 if number == 2 else 1  # as the table shows them
            data.append(_variant_data(r, metric, released, "as_released", same, decimals, paper_metric))
            data.append(_variant_data(r, metric, written, "as_written", same, decimals, paper_metric))
    notes = [AS_WRITTEN_NOTE,
             "Literature rows are left out (they are in the main table). " + CONVENTIONS["rows"].split(". ", 1)[0] + ".",
             CONVENTIONS["single"] if number == 2
             else CONVENTIONS["multi"].replace("(listed below)", "(listed under the main table)")]
    if number == 2:
        notes.append(BEST_NOTE)
    else:
        notes.append("The paper's line in the 'mAP eq. 21' and 'C-F1 eq. 22' columns is n.r.: the paper prints only "
                     "the authors' definitions.")
    notes.append("Several seeds: mean ± sample standard deviation (ddof = 1) over seeds; the seeds columns give n.")
    name = {2: "Table II: top-1 error (%) on Tiny ImageNet", 3: "Table III: multi-label classification on MS COCO",
            4: "Table IV: multi-label classification on NUS-WIDE"}[number]
    text_columns = ("Method", "seeds as released", "seeds as written") if number == 2 else ("Method", "values", "seeds")
    return TableOutput(f"table{number}_as_written", f"{name}, as released and as written",
                       f"The paper's Table {'II' if number == 2 else 'III' if number == 3 else 'IV'} numbers next to ours "
                       f"with the μ, σ update of the authors' released code and with the update the paper describes.",
                       pd.DataFrame(display), pd.DataFrame(data), conditions(grid, f"table{number}/*"),
                       notes + _unmatched_note(grid), text_columns=text_columns)


def table_figures(number: int) -> tuple[int, ...]:
    """The figures drawn with a table: those that plot the table's rows (from the registry)."""
    return tuple(sorted({f for r in paper.rows(table=number) for f in r.figures}))


def build_table(number: int, grid: Grid) -> TableOutput:
    if number not in BUILDERS:
        raise DataError(f"no builder for Table {number}; tables: {sorted(BUILDERS)}")
    return BUILDERS[number](grid)


# --------------------------------------------------------------------------- the demo table (make demo)


def _pct(v: float | None) -> str:
    return NOT_APPLICABLE if v is None else f"{100 * v:.2f}"


def _dist_summary(rec: RunRecord) -> str:
    if rec.learned is None:
        return NOT_APPLICABLE
    mu, sigma = pd.Series(rec.learned.mu, dtype=float), pd.Series(rec.learned.sigma, dtype=float)
    return f"μ {mu.mean():+.3f} [{mu.min():+.3f}, {mu.max():+.3f}]; σ {sigma.mean():.3f} [{sigma.min():.3f}, {sigma.max():.3f}]"


HEAD_ORDER = {"softmax": 0, "lsoftmax": 1, "msml": 2, "gsoftmax": 3}


def _split_text(runs: list[RunRecord]) -> str:
    """The train / test images of the runs, each size with where it comes from: the full split or dataset.subset."""
    sizes: dict[str, None] = {}
    for r in runs:
        subset = (r.config.get("dataset") or {}).get("subset")
        train, test = ("?" if n is None else n for n in (r.train_samples, r.test_samples))
        images = f"{train} train / {test} test images"
        sizes[f"{images} ({'the full split' if subset is None else f'dataset.subset={subset}'})"] = None
    return "; ".join(sizes)


def _demo_section(title: str, runs: list[RunRecord], metrics: list[tuple[str, Callable[[RunRecord], str]]],
                  dist_header: str) -> list[str]:
    lines = [f"## {title}", ""]
    if not runs:
        return lines + ["No run.", ""]
    differ = differing_settings(runs, shown=("trainer.epochs",))
    lines += [md_text(f"Model {_join(r.model for r in runs)}; {_split_text(runs)}."), ""]
    rows = []
    for r in runs:
        row: dict[str, Any] = {"head": r.head, **{h: f(r) for h, f in metrics}, "epochs": r.epochs, "seed": r.seed}
        if differ:
            row["settings that differ"] = settings_text(r, differ)
        rows.append({**row, "train s": f"{r.train_time_s or 0:.0f}", dist_header: _dist_summary(r)})
    text_columns = ("head", "settings that differ", dist_header)
    df = pd.DataFrame(rows)
    lines += [md_table(df, ["l" if c in text_columns else "r" for c in df.columns]), ""]
    if differ:
        lines += [md_text(f"These runs differ in more than the head and the seed: {', '.join(differ)} (the column "
                          f"'settings that differ' gives each run's values); rows are comparable only where these agree."), ""]
    return lines


def demo_table(results: list[RunRecord]) -> str:
    """The ``make demo`` table: digits (top-1 error) and digits_mosaic (mAP, C-F1, O-F1) per head, in percent.

    What the header says of the runs (model, train / test images, the full split or ``dataset.subset``) is read
    from the records, and settings in which runs differ beyond the head and the seed (e.g. ``dataset.subset``,
    ``head.mu``; gsm.report.sweep.differing_settings) get a column and a note, so runs of other settings never
    look like the same experiment. Text from records is escaped (gsm.report.render.md_text)."""
    single = sorted((r for r in results if r.dataset == "digits"), key=lambda r: (HEAD_ORDER.get(r.head, 9), r.seed))
    multi = sorted((r for r in results if r.dataset == "digits_mosaic"), key=lambda r: (HEAD_ORDER.get(r.head, 9), r.seed))
    if not single and not multi:
        raise DataError("no digits or digits_mosaic results found: run `make demo` first")
    lines = [
        "# gsm demo: the embedded digits sets (measured, not the paper's data)",
        "",
        "One run (one seed) per row. Single-label: scikit-learn's 8x8 digits; multi-label: 2×2 mosaics of them. "
        "Numbers in percent. μ, σ: learned G-softmax parameters (mean [min, max] over classes; for multi-label, "
        "the positive column μ⁺, σ⁺).",
        "",
    ]
    lines += _demo_section("Single-label: digits", single, [("top-1 error (%)", lambda r: _pct(r.top1_error_frac))],
                           "learned μ, σ")
    lines += _demo_section("Multi-label: digits_mosaic", multi,
                           [("mAP (%)", lambda r: _pct(r.mAP_frac)), ("C-F1 (%)", lambda r: _pct(r.CF1_frac)),
                            ("O-F1 (%)", lambda r: _pct(r.OF1_frac))], "learned μ⁺, σ⁺")
    revs = sorted({r.git_rev or "unknown" for r in single + multi})
    lines += [md_text(f"git revision(s): {', '.join(revs)}; device(s): "
                      f"{', '.join(sorted({_device(r) for r in single + multi}))}", block=True), ""]
    return "\n".join(lines)
