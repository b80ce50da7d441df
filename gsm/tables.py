"""The paper's tables from run results: ``gsm-tables <table> [--profile full|smoke] [--launcher ...] [--no-run]``.

``table1`` … ``table6`` first launch the runs of that table's grid that are missing (through the
real trainer, ``train.py -m experiment=...``, with the chosen Hydra launcher), then write
``<out>/tableN.{md,csv,tex}``: every paper row, our measured value next to the paper's, the
seeds and conditions of our runs, "not run" where a row has no run. ``table1`` also draws Figures
3, 5, 6, 7 and ``table3`` Figures 4, 8 (see :mod:`gsm.figures`); ``figures`` draws all of them
from existing runs. ``demo`` is the ``make demo`` table of the embedded digits sets.

Tables and figures read only ``results.json`` (and ``test_outputs.pt`` for the figures).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats

from gsm import paper
from gsm.errors import DataError, GsmError
from gsm.grid import Grid, Row, ensure_fixtures, load_results
from gsm.paper import METRIC_LABELS, MULTILABEL_METRICS, PaperRow
from gsm.profiles import PROFILES

__all__ = ["load_results", "demo_table", "build_table", "main"]

LIT = "—"  # our column of a literature row (the paper quotes other work; not run here)

CONVENTIONS = {
    "single": (
        "Top-1 error (%) on the test split (CIFAR test set, Tiny ImageNet validation set): the share of images "
        "whose highest logit is not the label."
    ),
    "multi": (
        "AP (eq. 21) is non-interpolated: the mean of the precision at each positive's rank (= scikit-learn "
        "average_precision_score); mAP is the mean over classes, a class without a positive in the test split is "
        "excluded from mAP (and listed). C-P, C-R, O-P, O-R follow eq. 22 with prediction = (P(i) >= 0.5), "
        "P(i) = sigmoid of the head's logit; a class with no predicted image has precision 0. "
        "C-F1 = 2·C-P·C-R/(C-P+C-R) and O-F1 likewise (harmonic means of the averages, as eq. 22 writes; the "
        "paper's printed C-F1 is lower than this for its own C-P, C-R, so compare C-F1 with care). "
        "All values in percent."
    ),
    "stats": (
        "Compactness, separability and ratio are the empirical test-set statistics of SPEC §2.4: for class c, "
        "N_pos = N(mean, std of x⁺_c over test images with label c), N_neg = the same over images without it; "
        "compactness = 1/σ_pos, separability = (KL(N_pos‖N_neg) + KL(N_neg‖N_pos))/2 (eq. 19 with m = 2), "
        "ratio = separability/σ_pos (eq. 20)."
    ),
    "seeds": (
        "Several seeds: mean ± sample standard deviation (ddof = 1) over seeds, n = number of seeds. "
        "p vs softmax: two-sided paired t-test (scipy.stats.ttest_rel) of the row's per-seed values against the "
        "softmax row of the same block, pairs matched by seed (seeds both rows have; needs at least 2)."
    ),
    "rows": (
        "'not run': no results.json under the runs folder matches the row's config under this profile (the "
        "experiment config plus the profile's overrides, seed aside). 'literature': a row the paper quotes from "
        "other work, shown for reference only and never run here ('—' in our columns)."
    ),
}


# --------------------------------------------------------------------------- numbers from results


def metric_values(row: Row | None, metric: str, scale: float = 100.0) -> dict[int, float]:
    """seed -> the run's value of ``metric`` (percent by default); runs without it are skipped."""
    if row is None:
        return {}
    out = {}
    for seed, res in row.runs.items():
        v = res.get(metric)
        if v is not None and math.isfinite(float(v)):
            out[seed] = float(v) * scale
    return out


@dataclass
class Summary:
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

    def text(self, decimals: int) -> str:
        if not self.values:
            return "not run"
        if self.n == 1:
            return f"{self.mean:.{decimals}f}"
        return f"{self.mean:.{decimals}f} ± {self.std:.{decimals}f} (n={self.n})"


def paired_ttest(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int]:
    """(t, p, n) of scipy.stats.ttest_rel(a, b) over the seeds both have; NaN when fewer than 2 pairs."""
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return math.nan, math.nan, len(common)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical pairs: NaN, reported as such
        res = stats.ttest_rel([a[s] for s in common], [b[s] for s in common])
    return float(res.statistic), float(res.pvalue), len(common)


def fmt_p(p: float) -> str:
    """p-values as the paper prints them (4 decimals), small ones in scientific notation."""
    if p is None or not math.isfinite(p):
        return "nan"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def fmt_paper(v: float | None, decimals: int) -> str:
    return "-" if v is None else f"{v:.{decimals}f}"


def _p_text(row: Row | None, base: Row | None, metric: str, is_baseline: bool) -> tuple[str, float, int]:
    if is_baseline:
        return "(baseline)", math.nan, 0
    a, b = metric_values(row, metric), metric_values(base, metric)
    if not a:
        return "–", math.nan, 0
    _, p, n = paired_ttest(a, b)
    if n < 2:  # a paired test over seeds needs two seeds both rows have
        return "–", math.nan, n
    return f"{fmt_p(p)} (n={n})", p, n


def _conditions(runs: list[dict[str, Any]]) -> dict[str, str]:
    """Epochs, image size, device, seeds and world size of the runs, each as a compact string."""
    def join(values):
        vals = list(dict.fromkeys(str(v) for v in values if v is not None))
        return "/".join(vals) if vals else "–"

    return {
        "epochs": join(r.get("epochs") for r in runs),
        "image size": join((r.get("config") or {}).get("dataset", {}).get("image_size") for r in runs),
        "seeds": ",".join(str(s) for s in sorted({int(r["seed"]) for r in runs})) or "–",
        "device": join(f"{r.get('device', '?')}" + (f" x{r['world_size']}" if (r.get("world_size") or 1) > 1 else "") for r in runs),
    }


# --------------------------------------------------------------------------- writers


@dataclass
class TableOutput:
    name: str
    title: str
    caption: list[str]  # paragraphs
    display: pd.DataFrame  # paper layout, formatted strings (md and tex)
    data: pd.DataFrame  # tidy numbers (csv)
    notes: list[str]
    extra: list[tuple[str, pd.DataFrame]] | None = None  # further display sections (md and tex)

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for para in self.caption:
            lines += [para, ""]
        lines += [_md_table(self.display), ""]
        for heading, df in self.extra or []:
            lines += [f"## {heading}", "", _md_table(df), ""]
        for note in self.notes:
            lines += [f"- {note}"]
        return "\n".join(lines).rstrip() + "\n"

    def latex(self) -> str:
        parts = []
        for i, (heading, df) in enumerate([(None, self.display), *(self.extra or [])]):
            body = df.to_latex(index=False, escape=True)
            caption = _tex_escape(self.title if heading is None else f"{self.title}: {heading}")
            text = " ".join(self.caption) if i == 0 else ""
            parts.append(
                "\\begin{table}[t]\n\\centering\n\\resizebox{\\linewidth}{!}{%\n" + body + "}\n"
                f"\\caption{{{caption}. {_tex_escape(text)}}}\n\\end{{table}}\n"
            )
        return "\n".join(parts)

    def write(self, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / f"{self.name}.md", out_dir / f"{self.name}.csv", out_dir / f"{self.name}.tex"]
        paths[0].write_text(self.markdown())
        self.data.to_csv(paths[1], index=False)
        paths[2].write_text(self.latex())
        return paths


def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(_md_cell(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_md_cell(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def _tex_escape(s: str) -> str:
    s = s.replace("**", "").replace("`", "")  # the md header's emphasis and code spans
    for a, b in (("\\", "\\textbackslash{}"), ("&", "\\&"), ("%", "\\%"), ("$", "\\$"), ("#", "\\#"), ("_", "\\_"),
                 ("{", "\\{"), ("}", "\\}"), ("~", "\\textasciitilde{}"), ("^", "\\textasciicircum{}")):
        s = s.replace(a, b)
    return s


def _header(grid: Grid, tables: str) -> list[str]:
    prof = grid.profile
    found = [r for row in grid.rows.values() for r in row.results()]
    revs = sorted({r.get("git_rev", "unknown") for r in found})
    text = (f"Profile: **{prof.name}** ({prof.description}). Runs read from `{grid.runs_dir}`; "
            f"experiment configs `configs/experiment/{tables}`.")
    if prof.name != "full":
        text += " These are smoke-test numbers of tiny models on generated fixtures: they check the pipeline, not the paper."
    if grid.extra:
        text += f" Extra overrides: `{' '.join(grid.extra)}`."
    text += f" Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
    text += f"; git revision(s) of the runs: {', '.join(revs)}." if revs else "; no runs found yet."
    return [text]


# --------------------------------------------------------------------------- Tables I and II


def table1(grid: Grid) -> TableOutput:
    labels = list(dict.fromkeys(r.label for r in paper.TABLE1))
    display, data = [], []
    for label in labels:
        prow = {r.dataset: r for r in paper.TABLE1 if r.label == label}
        line: dict[str, Any] = {"Method": label + (" (literature)" if prow["cifar10"].reference_only else ""),
                                "# Epoch (paper)": prow["cifar10"].epochs}
        all_runs = []
        for ds, name in (("cifar10", "CIFAR10"), ("cifar100", "CIFAR100")):
            r = prow[ds]
            row, base = grid.get(r.experiment), grid.get(r.baseline)
            summ = Summary(metric_values(row, "top1_error"))
            p_text, p, n_pairs = _p_text(row, base, "top1_error", r.experiment == r.baseline)
            line[f"{name} ours"] = LIT if r.reference_only else summ.text(2)
            line[f"{name} paper"] = fmt_paper(r.paper["top1_error"], 2)
            line[f"{name} p vs softmax"] = "–" if r.reference_only else p_text
            runs = row.results() if row else []
            all_runs += runs
            data.append(_data_row(r, "top1_error", summ, p, n_pairs, runs))
        cond = _conditions(all_runs) if all_runs else {k: "–" for k in ("epochs", "image size", "seeds", "device")}
        line.update({"epochs run": cond["epochs"], "seeds": cond["seeds"], "device": cond["device"]})
        display.append(line)
    caption = [
        "Top-1 error (%) of G-softmax and the baselines on CIFAR-10 and CIFAR-100 (paper Table I): our measured value "
        "next to the paper's. *WRN rows: malleable learning rate (eq. 17), 1100 epochs.",
        CONVENTIONS["single"], CONVENTIONS["seeds"], CONVENTIONS["rows"],
    ]
    notes = ["Paper: DSN G-softmax CIFAR-10 is 3.67 in Table I and 3.70 in the text of Sec. IV (the table's value is shown)."]
    notes += _unmatched_note(grid)
    return TableOutput("table1", "Table I: top-1 error (%) on CIFAR-10 and CIFAR-100", _header(grid, "table1/*") + caption,
                       pd.DataFrame(display), pd.DataFrame(data), notes)


def table2(grid: Grid) -> TableOutput:
    display, data = [], []
    for r in paper.TABLE2:
        row, base = grid.get(r.experiment), grid.get(r.baseline)
        summ = Summary(metric_values(row, "top1_error"))
        p_text, p, n_pairs = _p_text(row, base, "top1_error", r.experiment == r.baseline)
        runs = row.results() if row else []
        cond = _conditions(runs) if runs else {k: "–" for k in ("epochs", "image size", "seeds", "device")}
        display.append({
            "Method": r.label + (" (literature)" if r.reference_only else ""),
            "top-1 error ours": LIT if r.reference_only else summ.text(2),
            "top-1 error paper": fmt_paper(r.paper["top1_error"], 2),
            "p vs softmax (224)": "–" if r.reference_only or r.baseline is None else p_text,
            "image size": cond["image size"], "epochs run": cond["epochs"], "seeds": cond["seeds"], "device": cond["device"],
        })
        data.append(_data_row(r, "top1_error", summ, p, n_pairs, runs))
    caption = [
        "Top-1 error (%) on the Tiny ImageNet validation set (paper Table II), ResNet-101 initialised from ImageNet "
        "weights, input 224x224 unless stated; paired tests against ResNet-101 softmax at 224x224.",
        CONVENTIONS["single"], CONVENTIONS["seeds"], CONVENTIONS["rows"],
    ]
    return TableOutput("table2", "Table II: top-1 error (%) on Tiny ImageNet", _header(grid, "table2/*") + caption,
                       pd.DataFrame(display), pd.DataFrame(data), _unmatched_note(grid))


def _data_row(r: PaperRow, metric: str, summ: Summary, p: float, n_pairs: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    cond = _conditions(runs) if runs else {}
    return {
        "table": r.table, "block": r.block, "row": r.label, "experiment": r.experiment or "", "dataset": r.dataset or "",
        "reference_only": r.reference_only, "metric": metric,
        "ours_mean": summ.mean if summ.n else math.nan, "ours_std": summ.std, "n_seeds": summ.n,
        "ours_per_seed": ";".join(f"{s}:{v:.6g}" for s, v in sorted(summ.values.items())),
        "paper": r.paper.get(metric), "p_vs_softmax": p, "n_pairs": n_pairs,
        "status": "literature" if r.reference_only else ("measured" if summ.n else "not run"),
        "epochs": cond.get("epochs", ""), "image_size": cond.get("image size", ""), "seeds": cond.get("seeds", ""),
        "device": cond.get("device", ""), "paper_source": r.source, "paper_note": r.note,
    }


def _unmatched_note(grid: Grid) -> list[str]:
    if not grid.unmatched:
        return []
    return [f"{len(grid.unmatched)} results.json under `{grid.runs_dir}` of this table's datasets and models belong to "
            f"no row under the '{grid.profile.name}' profile (other settings, e.g. "
            f"another number of epochs, or a config of an older revision): they are not shown."]


# --------------------------------------------------------------------------- Tables III and IV


def _multilabel_table(grid: Grid, number: int, rows: list[PaperRow], title: str, intro: str) -> TableOutput:
    display, data = [], []
    for r in rows:
        row, base = grid.get(r.experiment), grid.get(r.baseline)
        line: dict[str, Any] = {"Method": r.label + (" (literature)" if r.reference_only else "")}
        runs = row.results() if row else []
        for m in MULTILABEL_METRICS:
            summ = Summary(metric_values(row, m))
            is_base = r.experiment is not None and r.experiment == r.baseline
            _, p, n_pairs = _p_text(row, base, m, is_base)
            line[f"{METRIC_LABELS[m]} ours"] = LIT if r.reference_only else summ.text(1)
            line[f"{METRIC_LABELS[m]} paper"] = fmt_paper(r.paper.get(m), 1)
            data.append(_data_row(r, m, summ, p, n_pairs, runs))
        p_text = _p_text(row, base, "mAP", r.experiment == r.baseline)[0]
        cond = _conditions(runs) if runs else {k: "–" for k in ("epochs", "image size", "seeds", "device")}
        line.update({"p vs softmax (mAP)": "–" if r.reference_only else p_text, "image size": cond["image size"],
                     "epochs run": cond["epochs"], "seeds": cond["seeds"], "device": cond["device"]})
        display.append(line)
    caption = [intro, CONVENTIONS["multi"],
               CONVENTIONS["seeds"].replace("per-seed values", "per-seed mAP"), CONVENTIONS["rows"]]
    notes = []
    without: dict[tuple[str, ...], list[str]] = {}  # classes without a positive -> rows (and seeds) with that list
    for r in rows:
        row = grid.get(r.experiment)
        for res in row.results() if row else []:
            if res.get("classes_without_positives"):
                names = res.get("class_names") or []
                missing = tuple(names[i] if i < len(names) else str(i) for i in res["classes_without_positives"])
                without.setdefault(missing, []).append(f"{r.label} (seed {res['seed']})")
    for missing, where in without.items():
        notes.append(f"{len(missing)} classes without a positive in the test split, excluded from mAP, in "
                     f"{'every measured row' if len(where) == sum(len(grid.get(r.experiment).runs) for r in rows if grid.get(r.experiment)) else '; '.join(where)}: "
                     f"{', '.join(missing)}.")
    notes += [n for n in (r.note for r in rows if r.experiment) if n]
    notes += _unmatched_note(grid)
    return TableOutput(f"table{number}", title, _header(grid, f"table{number}/*") + caption,
                       pd.DataFrame(display), pd.DataFrame(data), notes)


def table3(grid: Grid) -> TableOutput:
    return _multilabel_table(
        grid, 3, paper.TABLE3, "Table III: multi-label classification on MS COCO (validation set)",
        "MS COCO 2014 validation set (paper Table III): ResNet-101 with global max pooling, 448x448, batch 16, lr 1e-5; "
        "our value next to the paper's for each metric. The empirical-init row is the paper's text (mAP 81.0 only).",
    )


def table4(grid: Grid) -> TableOutput:
    return _multilabel_table(
        grid, 4, paper.TABLE4, "Table IV: multi-label classification on NUS-WIDE (test set)",
        "NUS-WIDE official test split (paper Table IV), same setting as MS COCO (μ, σ learning rate x100); our value "
        "next to the paper's for each metric.",
    )


# --------------------------------------------------------------------------- Table V


def per_class_ap(row: Row | None) -> list[float] | None:
    """Per-class AP averaged over the row's seeds (NaN where a class has no positive in some run)."""
    if row is None or not row.runs:
        return None
    aps = [[math.nan if v is None else float(v) for v in res.get("per_class_ap") or []] for res in row.results()]
    if not aps or not aps[0] or any(len(a) != len(aps[0]) for a in aps):
        return None
    return list(np.mean(np.array(aps, dtype=float), axis=0))


def ap_ttest(soft: list[float], gsm_ap: list[float]) -> tuple[float, float, int, int]:
    """scipy.stats.ttest_rel over the classes both runs have an AP for: (t, p, classes used, classes excluded)."""
    a, b = np.asarray(soft, dtype=float), np.asarray(gsm_ap, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 2:
        return math.nan, math.nan, int(keep.sum()), int((~keep).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_rel(a[keep], b[keep])
    return float(res.statistic), float(res.pvalue), int(keep.sum()), int((~keep).sum())


def table5(grid: Grid) -> TableOutput:
    display, data = [], []
    for r in paper.TABLE5:
        soft_row, g_row = grid.get(r.baseline), grid.get(r.experiment)
        soft, g = per_class_ap(soft_row), per_class_ap(g_row)
        name = "MS COCO" if r.dataset == "coco" else "NUS-WIDE"
        line = {"dataset": name, "G-softmax (mu, sigma)": r.label, "p-val ours": "not run", "p-val paper": fmt_p(r.paper["p"]),
                "t": "–", "mean AP diff (G - softmax, %)": "–", "classes used": "–", "classes excluded": "–",
                "seeds (softmax / G-softmax)": f"{','.join(map(str, soft_row.seeds)) if soft_row and soft_row.runs else '–'} / "
                                               f"{','.join(map(str, g_row.seeds)) if g_row and g_row.runs else '–'}"}
        t = p = math.nan
        used = excluded = 0
        diff = math.nan
        if soft is not None and g is not None and len(soft) == len(g):
            t, p, used, excluded = ap_ttest(soft, g)
            a, b = np.asarray(soft), np.asarray(g)
            keep = np.isfinite(a) & np.isfinite(b)
            diff = float(np.mean(b[keep] - a[keep]) * 100) if keep.any() else math.nan
            line.update({"p-val ours": fmt_p(p), "t": f"{t:.3f}" if math.isfinite(t) else "nan",
                         "mean AP diff (G - softmax, %)": f"{diff:+.2f}" if math.isfinite(diff) else "nan",
                         "classes used": used, "classes excluded": excluded})
        elif soft is None and g is not None:
            line["p-val ours"] = "not run (softmax)"
        elif g is None and soft is not None:
            line["p-val ours"] = "not run"
        display.append(line)
        data.append({"table": 5, "dataset": r.dataset, "row": r.label, "experiment": r.experiment, "baseline": r.baseline,
                     "t": t, "p": p, "paper_p": r.paper["p"], "classes_used": used, "classes_excluded": excluded,
                     "mean_ap_diff_pct": diff, "status": "measured" if math.isfinite(p) or used else "not run",
                     "seeds_softmax": ",".join(map(str, soft_row.seeds)) if soft_row else "",
                     "seeds_gsoftmax": ",".join(map(str, g_row.seeds)) if g_row else ""})
    caption = [
        "Significance of the AP differences between softmax and each G-softmax run of Tables III and IV (paper Table V): "
        "two-sided paired-sample t-test (scipy.stats.ttest_rel) of the per-class APs of the softmax run against those "
        "of the G-softmax run, pairs matched by class. Classes without a positive in the test split (AP undefined in "
        "either run) are excluded from both. Where a row has several seeds, each class's AP is first averaged over "
        "that row's seeds. p-values with 4 decimals, as the paper prints them.",
        CONVENTIONS["multi"], CONVENTIONS["rows"],
    ]
    return TableOutput("table5", "Table V: paired t-test of per-class APs, softmax vs G-softmax",
                       _header(grid, "table3/*, table4/*") + caption, pd.DataFrame(display), pd.DataFrame(data), _unmatched_note(grid))


# --------------------------------------------------------------------------- Table VI

STATS = ("compactness", "separability", "ratio")


def _class_stat(res: dict[str, Any], stat: str, source: str) -> list[float]:
    block = (res.get("empirical") or {}).get("test") if source == "empirical" else res.get("learned")
    if not block or stat not in block:
        return []
    return [math.nan if v is None else float(v) for v in block[stat]]


def correlation(rows: list[Row], stat: str, source: str = "empirical") -> dict[str, Any]:
    """Table VI for one statistic: the class with the best (highest) mean ``stat`` across the runs, then
    scipy.stats.pearsonr of that class's ``stat`` with its AP across the runs (each run = its seeds' mean)."""
    used = [r for r in rows if r.runs]
    out: dict[str, Any] = {"n_runs": len(used), "experiments": [r.experiment for r in used], "rho": math.nan, "p": math.nan,
                           "class": None, "class_name": None, "values": [], "aps": []}
    if len(used) < 3:
        out["reason"] = f"needs >= 3 G-softmax runs (have {len(used)})"
        return out
    vals, aps = [], []
    for r in used:
        v = [_class_stat(res, stat, source) for res in r.results()]
        a = [[math.nan if x is None else float(x) for x in res.get("per_class_ap") or []] for res in r.results()]
        if not v or any(len(x) != len(v[0]) or not x for x in v) or any(len(x) != len(v[0]) for x in a):
            out["reason"] = f"{r.experiment}: no per-class {source} {stat} or AP in results.json"
            return out
        vals.append(np.mean(np.array(v, dtype=float), axis=0))
        aps.append(np.mean(np.array(a, dtype=float), axis=0))
    V, A = np.array(vals), np.array(aps)  # (runs, classes)
    ok = np.isfinite(V).all(0) & np.isfinite(A).all(0)
    if not ok.any():
        out["reason"] = "no class has the statistic and an AP in every run"
        return out
    mean = np.where(ok, V.mean(0), -np.inf)
    c = int(np.argmax(mean))
    out.update({"class": c, "mean_value": float(V[:, c].mean()), "values": V[:, c].tolist(), "aps": A[:, c].tolist(),
                "candidates": int(ok.sum())})
    names = used[0].results()[0].get("class_names") or []
    out["class_name"] = names[c] if c < len(names) else str(c)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input -> NaN, reported below
        res = stats.pearsonr(V[:, c], A[:, c])
    out["rho"], out["p"] = float(res.statistic), float(res.pvalue)
    if not math.isfinite(out["rho"]):
        out["reason"] = "undefined (constant input)"
    return out


def _pair(rho: float, p: float) -> str:
    if not math.isfinite(rho):
        return "nan"
    return f"({rho:.4f}, {fmt_p(p)})"


def table6(grid: Grid) -> TableOutput:
    display, data, learned_display = [], [], []
    for r in paper.TABLE6:
        rows = [grid.rows[e] for e in paper.GSOFTMAX_GRID[r.dataset] if e in grid.rows]
        name = "MS COCO" if r.dataset == "coco" else "NUS-WIDE"
        for source, target in (("empirical", display), ("learned", learned_display)):
            res = correlation(rows, r.stat, source)
            ours = _pair(res["rho"], res["p"]) if math.isfinite(res["rho"]) else ("not run" if res["n_runs"] == 0 else res.get("reason", "nan"))
            target.append({
                "dataset": name, "correlation": r.label, "(rho, p-val) ours": ours,
                "(rho, p-val) paper": _pair(r.paper["rho"], r.paper["p"]),
                "class (best mean)": "–" if res["class"] is None else f"{res['class_name']} (#{res['class']})",
                "its mean value": f"{res['mean_value']:.4g}" if res["class"] is not None else "–",
                "G-softmax runs used": f"{res['n_runs']} of {len(paper.GSOFTMAX_GRID[r.dataset])}",
            })
            data.append({"table": 6, "dataset": r.dataset, "statistic": r.stat, "source": source, "rho": res["rho"], "p": res["p"],
                         "paper_rho": r.paper["rho"] if source == "empirical" else math.nan,
                         "paper_p": r.paper["p"] if source == "empirical" else math.nan,
                         "class": res["class"], "class_name": res["class_name"], "n_runs": res["n_runs"],
                         "experiments": ";".join(res["experiments"]),
                         "values": ";".join(f"{v:.6g}" for v in res["values"]), "aps": ";".join(f"{v:.6g}" for v in res["aps"]),
                         "status": "measured" if math.isfinite(res["rho"]) else res.get("reason", "not run")})
    caption = [
        "Correlation between compactness (separability, ratio) and AP across the five G-softmax (μ, σ) runs of "
        "Table III (MS COCO) and Table IV (NUS-WIDE) (paper Table VI; the empirical-init COCO row is not one of them). "
        "For each statistic, the class with the highest mean value of that statistic across the runs is chosen "
        "(among classes with an AP and the statistic in every run); then scipy.stats.pearsonr of that class's value "
        "with its AP across the runs gives (ρ, two-sided p-val). Where a row has several seeds, its values and APs are "
        "the means over its seeds. Main table: the empirical test-set statistics (our choice; the paper does not say "
        "whether it used the learned μ, σ or fitted ones: its Fig. 8 values are test-set fits). Second table: the same "
        "with the learned μ⁺, σ⁺ of the G-softmax head (eqs. 19, 20 across classes), for reference.",
        CONVENTIONS["stats"], CONVENTIONS["rows"],
    ]
    return TableOutput("table6", "Table VI: correlation of compactness / separability / ratio with AP",
                       _header(grid, "table3/*, table4/*") + caption, pd.DataFrame(display), pd.DataFrame(data),
                       _unmatched_note(grid),
                       extra=[("learned μ⁺, σ⁺ (reference)", pd.DataFrame(learned_display))])


TABLE_BUILDERS: dict[int, Callable[[Grid], TableOutput]] = {1: table1, 2: table2, 3: table3, 4: table4, 5: table5, 6: table6}
TABLE_FIGURES = {1: (3, 5, 6, 7), 3: (4, 8)}


def build_table(number: int, grid: Grid) -> TableOutput:
    return TABLE_BUILDERS[number](grid)


# --------------------------------------------------------------------------- the demo table (make demo)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _dist_summary(res: dict[str, Any]) -> str:
    learned = res.get("learned")
    if not learned:
        return "–"
    mu, sigma = pd.Series(learned["mu"]), pd.Series(learned["sigma"])
    return f"μ {mu.mean():+.3f} [{mu.min():+.3f}, {mu.max():+.3f}]; σ {sigma.mean():.3f} [{sigma.min():.3f}, {sigma.max():.3f}]"


HEAD_ORDER = {"softmax": 0, "lsoftmax": 1, "msml": 2, "gsoftmax": 3}


def demo_table(results: list[dict[str, Any]]) -> str:
    """The ``make demo`` table: digits (top-1 error) and digits_mosaic (mAP, CF1, OF1) per head."""
    single = sorted((r for r in results if r["dataset"] == "digits"), key=lambda r: HEAD_ORDER.get(r["head"], 9))
    multi = sorted((r for r in results if r["dataset"] == "digits_mosaic"), key=lambda r: HEAD_ORDER.get(r["head"], 9))
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
        lines.append(f"| {r['head']} | {_pct(r['top1_error'])} | {r['epochs']} | {r['seed']} | {r['train_time_s']:.0f} | {_dist_summary(r)} |")
    lines += ["", "## Multi-label: digits_mosaic", "",
              "| head | mAP (%) | CF1 (%) | OF1 (%) | epochs | seed | train s | learned μ⁺, σ⁺ |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in multi:
        lines.append(
            f"| {r['head']} | {_pct(r['mAP'])} | {_pct(r['CF1'])} | {_pct(r['OF1'])} | {r['epochs']} | {r['seed']} "
            f"| {r['train_time_s']:.0f} | {_dist_summary(r)} |"
        )
    revs = sorted({r.get("git_rev", "unknown") for r in single + multi})
    lines += ["", f"git revision(s): {', '.join(revs)}; device(s): {', '.join(sorted({r.get('device', '?') for r in single + multi}))}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


COMMANDS = ["demo", *(f"table{i}" for i in range(1, 7)), "figures"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gsm-tables", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("table", choices=COMMANDS, help="table to build (demo: the digits table of make demo; figures: Figs. 3-8)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="full",
                   help="full: the paper's recipes; smoke: tiny CPU runs on generated fixtures (default: full)")
    p.add_argument("--runs", type=Path, default=None,
                   help="folder searched for results.json, <output_root>/runs (default: outputs/runs; smoke: outputs/smoke/runs)")
    p.add_argument("--out", type=Path, default=None, help="tables folder (default: outputs/tables; smoke: outputs/smoke/tables)")
    p.add_argument("--figures-out", type=Path, default=None,
                   help="figures folder (default: outputs/figures; smoke: outputs/smoke/figures)")
    p.add_argument("--launcher", default="basic",
                   help="Hydra launcher for the missing runs: basic (one after another, here), ray, slurm "
                        "(configs/hydra/launcher/), or any installed launcher plugin name (default: basic)")
    p.add_argument("--no-run", action="store_true", help="only read existing results; do not train missing rows")
    p.add_argument("--seeds", default=None,
                   help="comma-separated seeds every row should have, e.g. 0,1,2 (default: one run per row, seed from config)")
    p.add_argument("--override", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Hydra override for every run of the grid (repeatable), e.g. -o trainer.amp=none")
    return p


def _experiments_for(command: str) -> list[str]:
    if command == "figures":
        from gsm.figures import FIGURE_EXPERIMENTS

        return [e for exps in FIGURE_EXPERIMENTS.values() for e in exps]
    return paper.experiments(int(command[-1]))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.table == "demo":
            return _demo(args)
        return _run_table(args)
    except GsmError as exc:
        print(f"gsm-tables: error: {exc}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    text = demo_table(load_results(args.runs or Path("outputs/runs")))
    out = args.out or Path("outputs/tables")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo.md"
    path.write_text(text)
    print(text)
    print(f"written: {path}")
    return 0


def _run_table(args: argparse.Namespace) -> int:
    from gsm import figures

    profile = PROFILES[args.profile]
    root = Path(profile.output_root)
    runs_dir = args.runs or root / "runs"
    out = args.out or root / "tables"
    fig_out = args.figures_out or root / "figures"
    fixtures_dir = (runs_dir.parent if runs_dir.name == "runs" else root) / "fixtures"
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    launch = not args.no_run and args.table != "figures"
    grid = Grid(_experiments_for(args.table), profile, runs_dir, args.override, fixtures_dir.resolve() if profile.fixtures else None)
    if launch:
        missing = grid.missing(seeds)
        if missing:
            print(f"gsm-tables: {args.table}: {len(missing)} of {len(grid.rows)} runs to do "
                  f"(profile {profile.name}, launcher {args.launcher})", flush=True)
            if profile.fixtures:
                ensure_fixtures(fixtures_dir, profile.fixture_sizes)
            grid.launch(missing, args.launcher, seeds)
            still = grid.missing(seeds)
            if still:
                print(f"gsm-tables: warning: the trainer finished but no matching results.json was found for: "
                      f"{', '.join(still)}", file=sys.stderr)
        else:
            print(f"gsm-tables: {args.table}: all {len(grid.rows)} runs of the grid are there", flush=True)
    written: list[Path] = []
    if args.table == "figures":
        written += figures.make_figures(grid, fig_out)
    else:
        number = int(args.table[-1])
        table = build_table(number, grid)
        written += table.write(out)
        print(table.markdown())
        if number in TABLE_FIGURES:
            written += figures.make_figures(grid, fig_out, TABLE_FIGURES[number])
    for path in written:
        print(f"written: {path}")
    return 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
