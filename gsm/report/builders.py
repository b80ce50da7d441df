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
from typing import Any, Callable

import numpy as np
import pandas as pd

from gsm import paper
from gsm.data import DATASET_NAMES
from gsm.errors import DataError
from gsm.grid import Grid, Row
from gsm.report.cells import (BEST_HEADER, BEST_NOTE, CONVENTIONS, DEFINITIONS, MULTILABEL_COLUMNS, P_METRIC, VOC_AP,
                              best_epochs_text, cf1_note, conditions, data_row, malleable_note, ours_cell, ours_text,
                              p_as_shown, p_value_cell, paper_cell, run_conditions, unmatched_note)
from gsm.report.render import (LITERATURE, NOT_APPLICABLE, NOT_RECORDED, NOT_REPORTED, NOT_RUN, TableOutput, rounded,
                               seeds_text)
from gsm.report.stats import AP_KEY, Summary, ap_ttest, correlation, fmt_p, metric_values, per_class_ap
from gsm.results import RunRecord


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
            p_text, p, n_pairs = p_value_cell(row, base, "top1_error", r)
            line[f"{name} ours (%)"] = ours_text(r, summ, 2)
            line[f"{name} paper (%)"] = paper_cell(r, "top1_error", 2)
            line[f"{name} p vs softmax"] = p_text
            seeds[name] = row.seeds if row else []
            data.append(data_row(r, "top1_error", summ, p, n_pairs, row.results() if row else [], 2))
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
                       notes + unmatched_note(grid))


def table2(grid: Grid) -> TableOutput:
    display, data = [], []
    for r in paper.rows(table=2):
        row, base = grid.get(r.experiment), grid.get(r.baseline)
        last, summ = ours_cell(r, row, "top1_error", 2)
        best, best_summ = ours_cell(r, row, "best_top1_error", 2)
        p_text, p, n_pairs = p_value_cell(row, base, "top1_error", r)
        _, best_p, best_pairs = p_value_cell(row, base, "best_top1_error", r)
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
        data.append({**data_row(r, "top1_error", summ, p, n_pairs, runs, 2), "definition": DEFINITIONS["top1_error"]})
        data.append({**data_row(r, "best_top1_error", best_summ, best_p, best_pairs, runs, 2, "top1_error"),
                     "definition": DEFINITIONS["best_top1_error"],
                     "best_epochs": ";".join(f"{rec.seed}:{rec.best_epoch}" for rec in runs if rec.best_epoch is not None)})
    notes = ["ResNet-101 initialised from ImageNet weights, input 224x224 unless stated; paired tests against "
             "ResNet-101 softmax at 224x224 (of the last-epoch errors; the CSV also has them for the best epochs).",
             CONVENTIONS["single"], BEST_NOTE, CONVENTIONS["seeds"], CONVENTIONS["rows"]]
    return TableOutput("table2", "Table II: top-1 error (%) on Tiny ImageNet",
                       "Top-1 error (%) on the Tiny ImageNet validation set, ours next to the paper's Table II.",
                       pd.DataFrame(display), pd.DataFrame(data), conditions(grid, "table2/*"),
                       notes + unmatched_note(grid))


# --------------------------------------------------------------------------- Tables III and IV


def multilabel_table(grid: Grid, number: int, title: str, caption: str, intro: str) -> TableOutput:
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
            _, p, n_pairs = p_value_cell(row, base, m, r)
            printed[header] = paper_cell(r, paper_m, 1)
            line = {**data_row(r, m, summ, p, n_pairs, runs, 1, paper_m), "definition": DEFINITIONS[m]}
            if m == "mAP_authors" and not r.reference_only:
                ours[header], line["status"] = authors_map_text(ours[header], summ, runs, line["status"])
            data.append(line)
        ours[p_header] = p_value_cell(row, base, P_METRIC, r)[0]
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
                       conditions(grid, f"table{number}/*"), notes + unmatched_note(grid),
                       text_columns=("Method", "values", "seeds"))


def authors_map_text(text: str, summ: Any, runs: list[RunRecord], status: str) -> tuple[str, str]:
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
    return multilabel_table(
        grid, 3, "Table III: multi-label classification on MS COCO (validation set)",
        "Multi-label classification (%) on the MS COCO 2014 validation set, ours (first line) and the paper's "
        "Table III (second line).",
        "ResNet-101 with global max pooling, 448x448, batch 16, lr 1e-5. The empirical-init row is the paper's text "
        "(mAP 81.0 only).",
    )


def table4(grid: Grid) -> TableOutput:
    return multilabel_table(
        grid, 4, "Table IV: multi-label classification on NUS-WIDE (test set)",
        "Multi-label classification (%) on the NUS-WIDE test split, ours (first line) and the paper's Table IV "
        "(second line).",
        "Same setting as MS COCO, with the μ, σ learning rate x100.",
    )


def _over_tables_3_4(grid: Grid, name: str, title: str, caption: str, display: list[dict[str, Any]],
                     data: list[dict[str, Any]], notes: list[str], **kw: Any) -> TableOutput:
    """Tables V and VI: computed over the runs of Tables III and IV."""
    return TableOutput(name, title, caption, pd.DataFrame(display), pd.DataFrame(data),
                       conditions(grid, "table3/*, table4/*"), notes + unmatched_note(grid), **kw)


# --------------------------------------------------------------------------- Table V


def ap_test(soft_row: Row | None, g_row: Row | None, key: str) -> dict[str, Any]:
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
        voc, std = ap_test(soft_row, g_row, AP_KEY), ap_test(soft_row, g_row, "per_class_ap_frac")
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
             f"those of the G-softmax run, pairs matched by class. The AP is {VOC_AP}, the AP the paper's Tables III/IV "
             "mAP and so, we take it, its Table V came from; 'p ours (AP eq. 21)' is the same test on gsm's eq. 21 AP "
             "(per_class_ap_frac), for reference. Classes without a positive in the test split (AP undefined in either "
             "run) are excluded from both. Where a row has several seeds, each class's AP is first averaged over that "
             "row's seeds. p-values with 4 decimals, as the paper prints them.", CONVENTIONS["multi"], CONVENTIONS["rows"]]
    return _over_tables_3_4(grid, "table5", "Table V: paired t-test of per-class APs, softmax vs G-softmax",
                            "Paired t-test of the per-class APs of softmax against each G-softmax run of Tables III and "
                            "IV, ours next to the paper's Table V.", display, data, notes,
                            text_columns=("dataset", "G-softmax (μ, σ)", "seeds (softmax / G-softmax)"))


# --------------------------------------------------------------------------- Table VI


def pair_text(rho: float | None, p: float | None) -> str:
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
                ours = pair_text(res.rho, res.p)
            else:
                ours = NOT_RUN if res.n_runs == 0 else res.reason or "nan"
            target.append({
                "dataset": DATASET_NAMES[r.dataset], "correlation": r.label, "(ρ, p) ours": ours,
                "(ρ, p) paper": pair_text(r.printed("rho"), r.printed("p")),
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
             f"class's value with its AP across the runs gives (ρ, two-sided p). The AP is {VOC_AP}, the AP behind the "
             "paper's numbers; the CSV's aps_frac column holds the chosen class's APs. Where a row has several seeds, its values "
             "and APs are the means over its seeds. Main table: the empirical test-set statistics (our choice; the paper "
             "does not say whether it used the learned μ, σ or fitted ones: its Fig. 8 values are test-set fits). Second "
             "table: the same with the learned μ⁺, σ⁺ of the G-softmax head (eqs. 19, 20 across classes), for reference.",
             CONVENTIONS["stats"], CONVENTIONS["rows"]]
    return _over_tables_3_4(grid, "table6", "Table VI: correlation of compactness / separability / ratio with AP",
                            "Pearson correlation (ρ, p) between each statistic of the best class and its AP across the "
                            "G-softmax runs, ours next to the paper's Table VI.", display, data, notes,
                            text_columns=("dataset", "correlation", "class (best mean)"),
                            extra=[("learned μ⁺, σ⁺ (reference)", pd.DataFrame(learned_display))])


BUILDERS: dict[int, Callable[[Grid], TableOutput]] = {1: table1, 2: table2, 3: table3, 4: table4, 5: table5, 6: table6}


def table_figures(number: int) -> tuple[int, ...]:
    """The figures drawn with a table: those that plot the table's rows (from the registry)."""
    return tuple(sorted({f for r in paper.rows(table=number) for f in r.figures}))


def build_table(number: int, grid: Grid) -> TableOutput:
    if number not in BUILDERS:
        raise DataError(f"no builder for Table {number}; tables: {sorted(BUILDERS)}")
    return BUILDERS[number](grid)
