"""The parts every paper table shares: the conventions line, the conditions of the runs, the paper's and our cells,
the p-value, a data row, and the notes several tables print (gsm.report.builders, gsm.report.as_written)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import numpy as np

from gsm import paper
from gsm.grid import Grid, Row
from gsm.paper import PaperRow
from gsm.report.render import LITERATURE, NOT_APPLICABLE, NOT_RECORDED, NOT_RUN, paper_text, rounded
from gsm.report.stats import Summary, fmt_p, metric_values, paired_ttest
from gsm.results import RunRecord

# the AP behind the paper's multi-label numbers, as Tables V and VI's notes name it
VOC_AP = "the authors' VOC2012 interpolated AP (the release's eval/evaluate.m, AP_VOC; record per_class_ap_voc_frac)"

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


def join_values(values) -> str:
    vals = list(dict.fromkeys(str(v) for v in values if v is not None))
    return "/".join(vals) if vals else NOT_APPLICABLE


def device_text(rec: RunRecord) -> str:
    """``cpu``, or the accelerator's name (``NVIDIA H100 80GB HBM3``), with `` xN`` for N processes."""
    kind = rec.environment.device or rec.device or "?"
    name = "cpu" if kind == "cpu" else (rec.environment.device_name or rec.device or kind)
    return name + (f" x{rec.world_size}" if rec.world_size > 1 else "")


def run_conditions(runs: list[RunRecord]) -> dict[str, str]:
    """Epochs, image size and device of runs, each as a compact string."""
    return {"epochs": join_values(r.epochs for r in runs), "image size": join_values(r.image_size for r in runs),
            "device": join_values(device_text(r) for r in runs)}


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


def p_value_cell(row: Row | None, base: Row | None, metric: str, r: PaperRow) -> tuple[str, float, int]:
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


def ours_text(r: PaperRow, summ: Summary, decimals: int) -> str:
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


def status_text(r: PaperRow, summ: Summary, runs: list[RunRecord]) -> str:
    if r.reference_only:
        return "literature"
    return "measured" if summ.n else ("not recorded" if runs else "not run")


def data_row(r: PaperRow, metric: str, summ: Summary, p: float, n_pairs: int, runs: list[RunRecord], decimals: int,
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
        "status": status_text(r, summ, runs),
        "epochs": cond.get("epochs", ""), "image_size": cond.get("image size", ""),
        "seeds": ",".join(str(s) for s in sorted(summ.values)), "device": cond.get("device", ""),
        "paper_source": r.source, "paper_note": r.note,
    }


def unmatched_note(grid: Grid) -> list[str]:
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
AUTHORS_SOURCE = "the release's eval/evaluate.m, precision_recall_f1.m (eps on every count)"
DEFINITIONS = {"CP": "eq. 22", "CR": "eq. 22", "OP": "eq. 22", "OR": "eq. 22", "OF1": "eq. 22",
               "CP_authors": f"mean over classes of per-class precision ({AUTHORS_SOURCE})",
               "CR_authors": f"mean over classes of per-class recall ({AUTHORS_SOURCE})",
               "CF1_authors": f"mean over classes of per-class F1 ({AUTHORS_SOURCE})",
               "OP_authors": f"precision over all image-label pairs ({AUTHORS_SOURCE})",
               "OR_authors": f"recall over all image-label pairs ({AUTHORS_SOURCE})",
               "OF1_authors": f"F1 over all image-label pairs ({AUTHORS_SOURCE})",
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
