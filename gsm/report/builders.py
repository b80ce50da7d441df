"""The paper's tables from a grid of runs: one builder per table, each a pure function of the grid.

A builder takes the :class:`gsm.grid.Grid` (paper rows matched to their loaded :class:`RunRecord`s)
and returns a :class:`TableOutput`; it never launches anything. To add a Table VII: add its rows to
``gsm/paper_rows.yaml``, write ``table7(grid)`` here and register it in :data:`BUILDERS`.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import pandas as pd

from gsm import paper
from gsm.errors import DataError
from gsm.grid import Grid, Row
from gsm.paper import METRIC_LABELS, MULTILABEL_METRICS, PaperRow
from gsm.report.render import NOT_APPLICABLE, NOT_REPORTED, NOT_RUN, TableOutput, paper_text, seeds_text
from gsm.report.stats import Summary, ap_ttest, correlation, fmt_p, metric_values, paired_ttest, per_class_ap
from gsm.results import RunRecord

CONVENTIONS = {
    "single": ("Top-1 error (%) on the test split (CIFAR test sets, the Tiny ImageNet validation set): the share of "
               "images whose highest logit is not the label. Records store fractions (top1_error_frac); tables show percent."),
    "multi": ("AP (eq. 21) is non-interpolated: the mean of the precision at each positive's rank (= scikit-learn "
              "average_precision_score); mAP is the mean over classes, a class without a positive in the test split is "
              "excluded from mAP (and listed). C-P, C-R, O-P, O-R follow eq. 22 with prediction = (P(i) >= 0.5), "
              "P(i) = sigmoid of the head's logit; a class with no predicted image has precision 0. "
              "C-F1 = 2·C-P·C-R/(C-P+C-R) and O-F1 likewise (harmonic means of the averages, as eq. 22 writes). "
              "Records store fractions (mAP_frac, CP_frac, ...); tables show percent."),
    "stats": ("Compactness, separability and ratio are the empirical test-set statistics (eqs. 18-20): for class c, "
              "N_pos = N(mean, std of x⁺_c over test images with label c), N_neg = the same over images without it; "
              "compactness = 1/σ_pos, separability = (KL(N_pos‖N_neg) + KL(N_neg‖N_pos))/2 (eq. 19 with m = 2), "
              "ratio = separability/σ_pos (eq. 20)."),
    "seeds": ("Several seeds: mean ± sample standard deviation (ddof = 1) over seeds; the seeds column gives n. "
              "p vs softmax: two-sided paired t-test (scipy.stats.ttest_rel) of the row's per-seed values against the "
              "softmax row of the same block, pairs matched by seed (seeds both rows have; needs at least 2)."),
    "rows": ("'not run': no results.json under the runs folder matches the row's config under this profile (the "
             "experiment config plus the profile's overrides, seed aside). Literature rows are quoted by the paper "
             "from other work, shown for reference and never run here."),
}


# --------------------------------------------------------------------------- shared parts


def _join(values) -> str:
    vals = list(dict.fromkeys(str(v) for v in values if v is not None))
    return "/".join(vals) if vals else NOT_APPLICABLE


def _device(rec: RunRecord) -> str:
    """``cpu``, or the accelerator's name (``NVIDIA H100 80GB HBM3``), with `` xN`` for N processes."""
    kind = rec.environment.get("device") or rec.device or "?"
    name = "cpu" if kind == "cpu" else (rec.environment.get("device_name") or rec.device or kind)
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
    else:
        out.append("No runs found yet.")
    out.append(f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.")
    return out


def _p_text(row: Row | None, base: Row | None, metric: str, r: PaperRow) -> tuple[str, float, int]:
    if r.reference_only:
        return NOT_APPLICABLE, math.nan, 0
    if r.is_baseline:
        return "baseline", math.nan, 0
    a, b = metric_values(row, metric), metric_values(base, metric)
    if not a:
        return NOT_RUN, math.nan, 0
    _, p, n = paired_ttest(a, b)
    if n < 2:  # a paired test over seeds needs two seeds both rows have
        return NOT_APPLICABLE, math.nan, n
    return f"{fmt_p(p)} (n = {n})", p, n


def _ours(r: PaperRow, summ: Summary, decimals: int) -> str:
    return NOT_APPLICABLE if r.reference_only else summ.text(decimals)


def _data_row(r: PaperRow, metric: str, summ: Summary, p: float, n_pairs: int, runs: list[RunRecord]) -> dict[str, Any]:
    cond = run_conditions(runs) if runs else {}
    return {
        "table": r.table, "row_id": r.id, "block": r.block, "row": r.label, "experiment": r.experiment or "",
        "dataset": r.dataset or "", "reference_only": r.reference_only, "metric": metric,
        "ours_mean_pct": summ.mean if summ.n else math.nan, "ours_std_pct": summ.std, "n_seeds": summ.n,
        "ours_per_seed_pct": ";".join(f"{s}:{v:.6g}" for s, v in sorted(summ.values.items())),
        "paper_pct": r.printed(metric), "p_vs_softmax": p, "n_pairs": n_pairs,
        "status": "literature" if r.reference_only else ("measured" if summ.n else "not run"),
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
            f"2·{cp:.1f}·{cr:.1f}/{cp + cr:.1f} = {hm:.1f}, printed {cf1:.1f}); our C-F1 follows eq. 22, so compare "
            f"the C-F1 column with care.")


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
        for ds, name in (("cifar10", "CIFAR-10"), ("cifar100", "CIFAR-100")):
            r = by_ds[ds]
            row, base = grid.get(r.experiment), grid.get(r.baseline)
            summ = Summary(metric_values(row, "top1_error"))
            p_text, p, n_pairs = _p_text(row, base, "top1_error", r)
            line[f"{name} ours (%)"] = _ours(r, summ, 2)
            line[f"{name} paper (%)"] = paper_text(r.printed("top1_error"), 2)
            line[f"{name} p vs softmax"] = p_text
            seeds[name] = row.seeds if row else []
            data.append(_data_row(r, "top1_error", summ, p, n_pairs, row.results() if row else []))
        if first.reference_only:
            line["seeds"] = NOT_APPLICABLE
        elif seeds["CIFAR-10"] == seeds["CIFAR-100"]:
            line["seeds"] = seeds_text(seeds["CIFAR-10"])
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
        summ = Summary(metric_values(row, "top1_error"))
        p_text, p, n_pairs = _p_text(row, base, "top1_error", r)
        if not r.reference_only and r.baseline is None:
            p_text = NOT_APPLICABLE  # the 64x64 row: no softmax row of its own block
        runs = row.results() if row else []
        display.append({
            "Method": r.label + (" (literature)" if r.reference_only else ""),
            "top-1 error ours (%)": _ours(r, summ, 2),
            "top-1 error paper (%)": paper_text(r.printed("top1_error"), 2),
            "p vs softmax (224x224)": p_text,
            "image size": NOT_APPLICABLE if r.reference_only else (run_conditions(runs)["image size"] if runs else NOT_RUN),
            "seeds": NOT_APPLICABLE if r.reference_only else seeds_text(row.seeds if row else []),
        })
        data.append(_data_row(r, "top1_error", summ, p, n_pairs, runs))
    notes = ["ResNet-101 initialised from ImageNet weights, input 224x224 unless stated; paired tests against "
             "ResNet-101 softmax at 224x224.", CONVENTIONS["single"], CONVENTIONS["seeds"], CONVENTIONS["rows"]]
    return TableOutput("table2", "Table II: top-1 error (%) on Tiny ImageNet",
                       "Top-1 error (%) on the Tiny ImageNet validation set, ours next to the paper's Table II.",
                       pd.DataFrame(display), pd.DataFrame(data), conditions(grid, "table2/*"),
                       notes + _unmatched_note(grid))


# --------------------------------------------------------------------------- Tables III and IV


def _multilabel_table(grid: Grid, number: int, title: str, caption: str, intro: str) -> TableOutput:
    rows = paper.rows(table=number)
    display, data = [], []
    for r in rows:
        row, base = grid.get(r.experiment), grid.get(r.baseline)
        runs = row.results() if row else []
        ours: dict[str, Any] = {"Method": r.label, "values": "ours"}
        printed: dict[str, Any] = {"Method": r.label + (" (literature)" if r.reference_only else ""), "values": "paper"}
        for m in MULTILABEL_METRICS:
            summ = Summary(metric_values(row, m))
            _, p, n_pairs = _p_text(row, base, m, r)
            ours[f"{METRIC_LABELS[m]} (%)"] = summ.text(1)
            printed[f"{METRIC_LABELS[m]} (%)"] = paper_text(r.printed(m), 1)
            data.append(_data_row(r, m, summ, p, n_pairs, runs))
        ours["p vs softmax (mAP)"] = _p_text(row, base, "mAP", r)[0]
        ours["seeds"] = seeds_text(row.seeds if row else [])
        printed["p vs softmax (mAP)"] = NOT_REPORTED
        printed["seeds"] = NOT_REPORTED
        if r.reference_only:
            display.append(printed)
        else:  # two lines per row: ours, then the paper's (the table fits a page)
            printed["Method"] = ""
            display += [ours, printed]
    notes = [intro, CONVENTIONS["multi"], CONVENTIONS["seeds"].replace("per-seed values", "per-seed mAP"),
             CONVENTIONS["rows"]]
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
        notes.append(f"{len(missing)} classes without a positive in the test split, excluded from mAP, in "
                     f"{'every measured row' if len(where) == n_runs else '; '.join(where)}: {', '.join(missing)}.")
    notes += [f"{r.label}: {r.note}" for r in rows if r.experiment and r.note]
    return TableOutput(f"table{number}", title, caption, pd.DataFrame(display), pd.DataFrame(data),
                       conditions(grid, f"table{number}/*"), notes + _unmatched_note(grid),
                       text_columns=("Method", "values", "seeds"))


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


DATASET_NAMES = {"coco": "MS COCO", "nuswide": "NUS-WIDE", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
                 "tiny_imagenet": "Tiny ImageNet"}


def table5(grid: Grid) -> TableOutput:
    display, data = [], []
    for r in paper.rows(table=5):
        soft_row, g_row = grid.get(r.baseline), grid.get(r.experiment)
        soft, g = per_class_ap(soft_row), per_class_ap(g_row)
        seeds = (f"{seeds_text(soft_row.seeds if soft_row else [])} / {seeds_text(g_row.seeds if g_row else [])}")
        line = {"dataset": DATASET_NAMES[r.dataset], "G-softmax (μ, σ)": r.label, "p ours": NOT_RUN,
                "p paper": fmt_p(r.printed("p")), "t": NOT_RUN, "mean AP diff, G - softmax (%)": NOT_RUN,
                "classes used": NOT_RUN, "classes excluded": NOT_RUN, "seeds (softmax / G-softmax)": seeds}
        t = p = diff = math.nan
        used = excluded = 0
        if soft is not None and g is not None and len(soft) == len(g):
            t, p, used, excluded = ap_ttest(soft, g)
            a, b = np.asarray(soft), np.asarray(g)
            keep = np.isfinite(a) & np.isfinite(b)
            diff = float(np.mean(b[keep] - a[keep]) * 100) if keep.any() else math.nan
            line.update({"p ours": fmt_p(p), "t": f"{t:.3f}" if math.isfinite(t) else "nan",
                         "mean AP diff, G - softmax (%)": f"{diff:+.2f}" if math.isfinite(diff) else "nan",
                         "classes used": str(used), "classes excluded": str(excluded)})
        elif soft is None and g is not None:
            line["p ours"] = "not run (softmax)"
        display.append(line)
        data.append({"table": 5, "row_id": r.id, "dataset": r.dataset, "row": r.label, "experiment": r.experiment,
                     "baseline": r.baseline, "t": t, "p": p, "paper_p": r.printed("p"), "classes_used": used,
                     "classes_excluded": excluded, "mean_ap_diff_pct": diff,
                     "status": "measured" if math.isfinite(p) or used else "not run",
                     "seeds_softmax": ",".join(map(str, soft_row.seeds)) if soft_row else "",
                     "seeds_gsoftmax": ",".join(map(str, g_row.seeds)) if g_row else ""})
    notes = ["Two-sided paired-sample t-test (scipy.stats.ttest_rel) of the per-class APs of the softmax run against "
             "those of the G-softmax run, pairs matched by class. Classes without a positive in the test split (AP "
             "undefined in either run) are excluded from both. Where a row has several seeds, each class's AP is first "
             "averaged over that row's seeds. p-values with 4 decimals, as the paper prints them.",
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
            if math.isfinite(res["rho"]):
                ours = _pair(res["rho"], res["p"])
            else:
                ours = NOT_RUN if res["n_runs"] == 0 else res.get("reason", "nan")
            target.append({
                "dataset": DATASET_NAMES[r.dataset], "correlation": r.label, "(ρ, p) ours": ours,
                "(ρ, p) paper": _pair(r.printed("rho"), r.printed("p")),
                "class (best mean)": NOT_APPLICABLE if res["class"] is None else f"{res['class_name']} (#{res['class']})",
                "its mean value": f"{res['mean_value']:.4g}" if res["class"] is not None else NOT_APPLICABLE,
                "G-softmax runs used": f"{res['n_runs']} of {len(over)}",
            })
            data.append({"table": 6, "row_id": r.id, "dataset": r.dataset, "statistic": r.stat, "source": source,
                         "rho": res["rho"], "p": res["p"],
                         "paper_rho": r.printed("rho") if source == "empirical" else math.nan,
                         "paper_p": r.printed("p") if source == "empirical" else math.nan,
                         "class": res["class"], "class_name": res["class_name"], "n_runs": res["n_runs"],
                         "experiments": ";".join(res["experiments"]),
                         "values": ";".join(f"{v:.6g}" for v in res["values"]),
                         "aps_frac": ";".join(f"{v:.6g}" for v in res["aps"]),
                         "status": "measured" if math.isfinite(res["rho"]) else res.get("reason", "not run")})
    notes = ["For each statistic, the class with the highest mean value of that statistic across the five G-softmax "
             "(μ, σ) runs of Table III (MS COCO) or Table IV (NUS-WIDE) is chosen (among classes with an AP and the "
             "statistic in every run; the empirical-init COCO row is not one of them); then scipy.stats.pearsonr of that "
             "class's value with its AP across the runs gives (ρ, two-sided p). Where a row has several seeds, its values "
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
    if not rec.learned:
        return NOT_APPLICABLE
    mu, sigma = pd.Series(rec.learned["mu"], dtype=float), pd.Series(rec.learned["sigma"], dtype=float)
    return f"μ {mu.mean():+.3f} [{mu.min():+.3f}, {mu.max():+.3f}]; σ {sigma.mean():.3f} [{sigma.min():.3f}, {sigma.max():.3f}]"


HEAD_ORDER = {"softmax": 0, "lsoftmax": 1, "msml": 2, "gsoftmax": 3}


def demo_table(results: list[RunRecord]) -> str:
    """The ``make demo`` table: digits (top-1 error) and digits_mosaic (mAP, C-F1, O-F1) per head, in percent."""
    single = sorted((r for r in results if r.dataset == "digits"), key=lambda r: (HEAD_ORDER.get(r.head, 9), r.seed))
    multi = sorted((r for r in results if r.dataset == "digits_mosaic"), key=lambda r: (HEAD_ORDER.get(r.head, 9), r.seed))
    if not single and not multi:
        raise DataError("no digits or digits_mosaic results found: run `make demo` first")
    lines = [
        "# gsm demo: the embedded digits sets (measured, not the paper's data)",
        "",
        "Small ConvNet, CPU, one seed per row. Single-label: scikit-learn digits (1,347 train / 450 test);",
        "multi-label: 2×2 digit mosaics (2,000 train / 600 test). Numbers in percent. μ, σ: learned G-softmax",
        "parameters (mean [min, max] over classes; for multi-label, the positive column μ⁺, σ⁺).",
        "",
        "## Single-label: digits",
        "",
        "| head | top-1 error (%) | epochs | seed | train s | learned μ, σ |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in single:
        lines.append(f"| {r.head} | {_pct(r.top1_error_frac)} | {r.epochs} | {r.seed} | {r.train_time_s or 0:.0f} "
                     f"| {_dist_summary(r)} |")
    lines += ["", "## Multi-label: digits_mosaic", "",
              "| head | mAP (%) | C-F1 (%) | O-F1 (%) | epochs | seed | train s | learned μ⁺, σ⁺ |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in multi:
        lines.append(f"| {r.head} | {_pct(r.mAP_frac)} | {_pct(r.CF1_frac)} | {_pct(r.OF1_frac)} | {r.epochs} | {r.seed} "
                     f"| {r.train_time_s or 0:.0f} | {_dist_summary(r)} |")
    revs = sorted({r.git_rev or "unknown" for r in single + multi})
    lines += ["", f"git revision(s): {', '.join(revs)}; device(s): {', '.join(sorted({_device(r) for r in single + multi}))}", ""]
    return "\n".join(lines)
