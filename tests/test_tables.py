"""Tables I–VI from synthetic run records (the trainer's RunRecord, known numbers): every paper row, our value
and the paper's in the right place, "not run" where missing, and the statistics equal to scipy's."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from synthetic_runs import COCO_NAMES, read, write_run
from waiting_launch import waiting_launch

from gsm import paper
from gsm.grid import Grid, compose, row_key
from gsm.profiles import PROFILES
from gsm.launch import LaunchError, launch, launch_commands
from gsm.report import build_table
from gsm.reproduce import main


def grid_for(table: int, runs_dir: Path, profile: str = "full") -> Grid:
    return Grid(paper.experiments(table), profile, runs_dir)


def line(df: pd.DataFrame, method: str) -> pd.Series:
    hits = df[(df["Method"] == method) | (df["Method"] == method + " (literature)")]
    assert len(hits) == 1, (method, list(df["Method"]))
    return hits.iloc[0]


# --------------------------------------------------------------------------- paper data


def test_paper_rows_map_to_existing_experiment_configs():
    root = Path(__file__).resolve().parent.parent / "gsm" / "configs" / "experiment"
    configs = {str(p.relative_to(root))[:-5] for p in root.rglob("*.yaml")}
    ours = {r.experiment for r in paper.rows(table=[1, 2, 3, 4]) if r.experiment}
    assert ours == configs  # every experiment file is a paper row and every paper row has its file
    assert len(paper.rows(table=1, reference_only=False)) == 24 and len(paper.rows(table=2)) == 5 + 8
    assert len(paper.rows(table=5)) == 10 and len(paper.rows(table=6)) == 6
    grid_rows = {r.experiment for r in paper.rows(table=[3, 4], head="gsoftmax", init="constant")}
    assert len(grid_rows) == 10 and set(paper.experiments(6)) == grid_rows
    assert set(paper.experiments(5)) == grid_rows | {r.experiment for r in paper.rows(table=[3, 4], head="softmax")}
    # the registry's setting agrees with the config each row names
    for r in paper.rows(table=[1, 2, 3, 4]):
        if r.experiment:
            cfg = compose(r.experiment)
            assert (cfg["dataset"]["name"], cfg["head"]["name"]) == (r.dataset, r.head), r.id
            if r.head == "gsoftmax" and r.init == "constant":
                assert (cfg["head"]["mu"], cfg["head"]["sigma"]) == (r.mu, r.sigma), r.id
            assert r.baseline is None or paper.row(r.baseline).head == "softmax"


def test_registry_rejects_unknown_keys_and_duplicate_ids(tmp_path):
    bad = tmp_path / "rows.yaml"
    bad.write_text("rows:\n  - {id: a, table: 1, label: x, paper: {}, colour: red}\n")
    with pytest.raises(Exception, match="unknown keys.*colour"):
        paper.registry(str(bad))
    bad.write_text("rows:\n  - {id: a, table: 1, label: x, paper: {}}\n  - {id: a, table: 1, label: y, paper: {}}\n")
    with pytest.raises(Exception, match="appears twice"):
        paper.registry(str(bad))


def test_table6_transcription_consistent_with_five_runs():
    """The printed (ρ, p) pairs are two-sided Pearson tests on n = 5 (the (μ, σ) grid rows)."""
    for r in paper.rows(table=6):
        rho, n = r.printed("rho"), len(paper.correlation_rows(r))
        assert n == 5
        p = 2 * stats.t.sf(rho * math.sqrt(n - 2) / math.sqrt(1 - rho**2), n - 2)
        assert abs(p - r.printed("p")) < 2e-4, r


def test_profiles_overrides():
    smoke = PROFILES["smoke"]
    ov = smoke.overrides("table1/wrn1100_cifar10_gsoftmax", "/fx")
    assert "trainer.epochs=2" in ov and "schedule.pieces=[[1,0,-8],[2,-8,-9]]" in ov and "model.width=1" in ov
    assert "dataset.root='/fx'" in ov and "trainer.epochs=1" not in ov  # the later rule wins, one value per key
    assert "dataset.root='/fx'" in smoke.overrides("table3/resnet101_coco_softmax", "/fx")
    assert "dataset.image_size=24" in smoke.overrides("table2/resnet101_tiny_imagenet64_softmax")
    assert "dataset.image_size=32" in smoke.overrides("table2/resnet101_tiny_imagenet_softmax")
    assert PROFILES["full"].overrides("table3/resnet101_coco_softmax", "/fx") == []


# --------------------------------------------------------------------------- Table I


def test_table1_every_row_ours_and_paper_seeds_and_paired_test(tmp_path):
    runs = tmp_path / "runs"
    soft = {0: 0.040, 1: 0.036, 2: 0.041}
    gs = {0: 0.033, 1: 0.034, 2: 0.036}
    for seed in soft:
        write_run(runs, "table1/wrn_cifar10_softmax", seed, top1_error=soft[seed])
        write_run(runs, "table1/wrn_cifar10_gsoftmax", seed, top1_error=gs[seed])
    write_run(runs, "table1/vgg16_cifar100_gsoftmax", 0, top1_error=0.2512)
    write_run(runs, "table1/wrn1100_cifar100_lsoftmax", 5, top1_error=0.2, epochs=1100)
    out = build_table(1, grid_for(1, runs))
    df = out.display
    rows = paper.rows(table=1)
    labels = list(dict.fromkeys(r.label for r in rows))
    assert len(df) == len(labels) == 15
    for r in rows:  # the paper's value in its column, for every row
        col = "CIFAR-10 paper (%)" if r.dataset == "cifar10" else "CIFAR-100 paper (%)"
        assert line(df, r.label)[col] == f"{r.printed('top1_error'):.2f}"

    g = line(df, "WRN G-softmax")
    vals = [100 * gs[s] for s in (0, 1, 2)]
    assert g["CIFAR-10 ours (%)"] == f"{np.mean(vals):.2f} ± {np.std(vals, ddof=1):.2f}"
    assert g["CIFAR-10 paper (%)"] == "3.36" and g["CIFAR-100 ours (%)"] == "not run" and g["CIFAR-100 paper (%)"] == "17.41"
    expected = stats.ttest_rel([100 * gs[s] for s in (0, 1, 2)], [100 * soft[s] for s in (0, 1, 2)])
    assert g["CIFAR-10 p vs softmax"] == f"{expected.pvalue:.4f} (n = 3)"
    assert g["seeds"] == "CIFAR-10: n = 3 (seeds 0, 1, 2); CIFAR-100: not run"
    assert line(df, "WRN")["CIFAR-10 p vs softmax"] == "baseline"
    assert line(df, "VGG G-softmax")["CIFAR-100 ours (%)"] == "25.12" and line(df, "VGG G-softmax")["CIFAR-10 ours (%)"] == "not run"
    assert line(df, "*WRN L-softmax")["CIFAR-100 ours (%)"] == "20.00"
    assert line(df, "*WRN L-softmax")["seeds"] == "CIFAR-10: not run; CIFAR-100: n = 1 (seed 5)"
    assert line(df, "DSN")["CIFAR-10 ours (%)"] == "not run" and line(df, "DSN")["CIFAR-10 paper (%)"] == "3.77"
    lit = line(df, "DSN [19] (literature)")
    assert lit["CIFAR-10 ours (%)"] == "—" and lit["CIFAR-10 paper (%)"] == "3.46" and lit["# Epoch (paper)"] == "300"
    assert lit["CIFAR-10 p vs softmax"] == "—" and lit["seeds"] == "—"
    for r in paper.rows(table=1, reference_only=True):  # a literature row: the paper's numbers, "—" everywhere else
        cells = line(df, r.label).drop(["Method", "# Epoch (paper)", "CIFAR-10 paper (%)", "CIFAR-100 paper (%)"])
        assert set(cells) == {"—"}, cells

    data = out.data
    d = data[(data.experiment == "table1/wrn_cifar10_gsoftmax")].iloc[0]
    # the CSV holds the numbers as displayed: 2 decimals, the p-value as printed (4 decimals)
    assert d.ours_mean_pct == round(np.mean(vals), 2) and d.ours_std_pct == round(np.std(vals, ddof=1), 2)
    assert g["CIFAR-10 ours (%)"] == f"{d.ours_mean_pct:.2f} ± {d.ours_std_pct:.2f}"
    assert d.p_vs_softmax == round(expected.pvalue, 4) and d.n_seeds == 3 and d.paper_pct == 3.36
    assert (data.status == "not run").sum() == 24 - 4 and (data.status == "literature").sum() == 6

    paths = out.write(tmp_path / "tables")
    assert [p.name for p in paths] == ["table1.md", "table1.csv", "table1.tex"]
    md = paths[0].read_text()
    assert "not run" in md and "ttest_rel" in md and "Profile full" in md
    assert md.count("*Legend:*") == 1 and "n.r.: not reported by the paper" in md
    assert "—: a literature row, quoted by the paper from other work and never run here" in md
    assert "from epoch 501 of 1100" in md  # the *WRN note, computed from eq. 17's schedule
    header = next(ln for ln in md.splitlines() if ln.startswith("|---"))
    assert list(df.columns)[-1] == "seeds"
    assert header == "|---|" + "---:|" * (len(df.columns) - 2) + "---|"  # numeric columns right-aligned
    assert len(pd.read_csv(paths[1])) == 30
    tex = paths[2].read_text()
    assert "\\begin{tabular}{l" + "r" * (len(df.columns) - 2) + "l}" in tex
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "\\usepackage{booktabs,graphicx}" in tex
    body = [ln for ln in tex.splitlines() if ln and not ln.startswith("%")]
    assert all(ln.isascii() for ln in body)  # booktabs and graphicx alone: no Unicode
    # 9 columns do not fit one column of a two-column paper: both columns, shrunk to the line where still wider
    assert body[0] == "\\begin{table*}[t]" and body[-1] == "\\end{table*}"
    assert "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%" in body
    assert not any("Profile" in ln for ln in body)  # the conditions are comments
    (caption,) = [ln for ln in body if ln.startswith("\\caption{")]
    assert caption.count(". ") == 0 and caption.endswith(".}")  # one sentence


def test_paired_test_uses_only_common_seeds(tmp_path):
    runs = tmp_path / "runs"
    for seed, v in ((0, 0.05), (1, 0.06), (2, 0.07)):
        write_run(runs, "table1/vgg16_cifar10_softmax", seed, top1_error=v)
    for seed, v in ((1, 0.05), (2, 0.055), (3, 0.01)):
        write_run(runs, "table1/vgg16_cifar10_gsoftmax", seed, top1_error=v)
    write_run(runs, "table1/vgg16_cifar10_lsoftmax", 0, top1_error=0.08)
    df = build_table(1, grid_for(1, runs)).display
    expected = stats.ttest_rel([5.0, 5.5], [6.0, 7.0])
    assert line(df, "VGG G-softmax")["CIFAR-10 p vs softmax"] == f"{expected.pvalue:.4f} (n = 2)"
    assert line(df, "VGG L-softmax")["CIFAR-10 p vs softmax"] == "n/a"  # one seed: no paired test


def test_results_of_other_settings_are_not_attached(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "table1/wrn_cifar10_softmax", 0, top1_error=0.05)
    write_run(runs, "table1/wrn_cifar10_softmax", 0, top1_error=0.05, overrides=("trainer.epochs=7",),
              schema_version=2)  # another recipe: not this row
    grid = grid_for(1, runs)
    assert grid.rows["table1/wrn_cifar10_softmax"].seeds == [0] and len(grid.unmatched) == 1
    out = build_table(1, grid)
    assert any("belong to no row" in n for n in out.notes)


# --------------------------------------------------------------------------- Tables II, III, IV


BEST = "top-1 error ours, best epoch (%), selected on the evaluation split"


def test_table2_rows(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "table2/resnet101_tiny_imagenet64_softmax", 0, top1_error=0.3)
    write_run(runs, "table2/resnet101_tiny_imagenet_gsoftmax_mu0_sigma2", 0, top1_error=0.17)
    out = build_table(2, grid_for(2, runs))
    df = out.display
    assert len(df) == len(paper.rows(table=2))
    assert list(df.columns)[1:3] == ["top-1 error ours, last epoch (%)", "top-1 error paper (%)"]  # last epoch: primary
    for r in paper.rows(table=2):
        assert line(df, r.label)["top-1 error paper (%)"] == f"{r.printed('top1_error'):.2f}"
    r64 = line(df, "ResNet-101 (input 64x64)")
    assert r64["top-1 error ours, last epoch (%)"] == "30.00" and r64["image size"] == "64" and r64["seeds"] == "n = 1 (seed 0)"
    assert r64["p vs softmax (224x224)"] == "n/a"
    g = line(df, "ResNet-101 G-Softmax (mu=0, sigma=2)")
    assert g["top-1 error ours, last epoch (%)"] == "17.00" and g["image size"] == "224" and g["top-1 error paper (%)"] == "17.29"
    assert line(df, "ResNet-101 L-Softmax")["top-1 error ours, last epoch (%)"] == "not run"
    assert line(df, "ResNet-101 L-Softmax")[BEST] == "not run" and line(df, "ResNet-101 L-Softmax")["best epoch"] == "not run"
    assert "selected on the evaluation split" in " ".join(out.notes) and "main_single.lua" in " ".join(out.notes)


def test_table2_best_epoch_column(tmp_path):
    """The best epoch's error is the lowest test error of the history (as the release's main_single.lua picks it),
    next to the last epoch's; an older record (schema 2) shows "not recorded" there and keeps its last-epoch value."""
    runs = tmp_path / "runs"
    exp = "table2/resnet101_tiny_imagenet_gsoftmax_mu0_sigma1"
    hist = {0: [0.30, 0.18, 0.19, 0.20], 1: [0.25, 0.21, 0.17, 0.22]}
    for seed, errs in hist.items():
        rows = [{"epoch": i + 1, "test_top1_error_frac": e} for i, e in enumerate(errs)]
        write_run(runs, exp, seed, top1_error=errs[-1], history=rows)
    write_run(runs, "table2/resnet101_tiny_imagenet_softmax", 0, top1_error=0.19, schema_version=2)
    write_run(runs, "table2/resnet101_tiny_imagenet_lsoftmax", 0, top1_error=0.2, best_top1_error=0.15, best_epoch=7)
    out = build_table(2, grid_for(2, runs))
    df = out.display
    g = line(df, "ResNet-101 G-Softmax (mu=0, sigma=1)")
    last, best = [100 * h[-1] for h in hist.values()], [100 * min(h) for h in hist.values()]
    assert g["top-1 error ours, last epoch (%)"] == f"{np.mean(last):.2f} ± {np.std(last, ddof=1):.2f}"
    assert g[BEST] == f"{np.mean(best):.2f} ± {np.std(best, ddof=1):.2f}" and g["best epoch"] == "2, 3"
    soft = line(df, "ResNet-101 (input 224x224)")
    assert soft["top-1 error ours, last epoch (%)"] == "19.00" and soft[BEST] == "not recorded" and soft["best epoch"] == "not recorded"
    ls = line(df, "ResNet-101 L-Softmax")
    assert ls[BEST] == "15.00" and ls["best epoch"] == "7"
    assert line(df, "PyramidNet ShakeDrop [57]")[BEST] == "—"  # a literature row
    data = out.data
    d = data[(data.experiment == exp) & (data.metric == "best_top1_error")].iloc[0]
    assert d.ours_mean_pct == round(np.mean(best), 2) and d.best_epochs == "0:2;1:3" and d.paper_pct == 17.04
    assert "selected on the test split" in d.definition
    d = data[(data.experiment == "table2/resnet101_tiny_imagenet_softmax") & (data.metric == "best_top1_error")].iloc[0]
    assert d.status == "not recorded" and np.isnan(d.ours_mean_pct)
    assert "not recorded: the row's runs were recorded by an older gsm" in out.markdown()


# Tables III/IV: (record metric, header, the paper's printed quantity it is compared with)
ML_COLUMNS = [("CP_authors", "C-P authors (%)", "CP"), ("CR_authors", "C-R authors (%)", "CR"),
              ("CF1_authors", "C-F1 authors (%)", "CF1"), ("OP_authors", "O-P authors (%)", "OP"),
              ("OR_authors", "O-R authors (%)", "OR"), ("OF1_authors", "O-F1 authors (%)", "OF1"),
              ("mAP_authors", "mAP authors (%)", "mAP"),
              ("CP", "C-P eq. 22 (%)", None), ("CR", "C-R eq. 22 (%)", None), ("CF1", "C-F1 eq. 22 (%)", None),
              ("CF1_mean", "C-F1 per-class mean (%)", None), ("OP", "O-P eq. 22 (%)", None),
              ("OR", "O-R eq. 22 (%)", None), ("OF1", "O-F1 eq. 22 (%)", None), ("mAP_voc", "mAP VOC (%)", None),
              ("mAP", "mAP eq. 21 (%)", None)]


@pytest.mark.parametrize("number", [3, 4])
def test_multilabel_tables_every_metric_in_place(tmp_path, number):
    runs = tmp_path / "runs"
    rows = paper.rows(table=number)
    ours = [r for r in rows if r.experiment]
    values = {}
    for i, r in enumerate(ours[:3]):
        values[r.label] = {m: 0.5 + 0.01 * i + 0.001 * k for k, (m, _, _) in enumerate(ML_COLUMNS)}
        write_run(runs, r.experiment, 0, **values[r.label])
    out = build_table(number, grid_for(number, runs))
    df = out.display
    assert len(df) == len(rows) + len(ours)  # two lines (ours, paper) per row of ours, one per literature row
    assert list(df.columns) == ["Method", "values", *(h for _, h, _ in ML_COLUMNS), "p vs softmax (mAP VOC)", "seeds"]
    it = iter(df.to_dict("records"))
    for r in rows:
        first = next(it)
        if r.reference_only:
            assert first["Method"] == r.label + " (literature)" and first["values"] == "paper"
            printed = first
        else:
            printed = next(it)
            assert first["Method"] == r.label and first["values"] == "ours" and printed["values"] == "paper"
            for m, header, _ in ML_COLUMNS:
                want = f"{100 * values[r.label][m]:.1f}" if r.label in values else "not run"
                assert first[header] == want, (r.label, header)
            assert first["seeds"] == ("n = 1 (seed 0)" if r.label in values else "not run")
        for _, header, printed_key in ML_COLUMNS:  # the paper's number under the column of its definition
            v = r.printed(printed_key) if printed_key else None
            assert printed[header] == (f"{v:.1f}" if v is not None else "—" if r.reference_only else "n.r.")
        if r.reference_only:  # a literature row: no "n/a" or "n.r.", one mark
            assert printed["p vs softmax (mAP VOC)"] == printed["seeds"] == "—"
    base = df[(df["values"] == "ours") & (df["Method"] == ours[0].label)].iloc[0]
    assert base["p vs softmax (mAP VOC)"] == "baseline"
    data = out.data
    d = data[(data.experiment == ours[1].experiment) & (data.metric == "mAP_authors")].iloc[0]
    assert d.ours_mean_pct == round(100 * values[ours[1].label]["mAP_authors"], 1) and d.paper_pct == ours[1].printed("mAP")
    assert "VOC2012" in d.definition and "evaluate.m" in d.definition
    for m in ("CP_authors", "CF1_authors", "OR_authors"):  # every printed column is compared on the authors' definition
        d = data[(data.experiment == ours[1].experiment) & (data.metric == m)].iloc[0]
        assert d.paper_pct == ours[1].printed(m.removesuffix("_authors")) and "eps" in d.definition
    d = data[(data.experiment == ours[1].experiment) & (data.metric == "mAP")].iloc[0]
    assert np.isnan(d.paper_pct) and "eq. 21" in d.definition  # the paper prints no eq. 21 mAP
    md = out.markdown()
    assert "evaluate.m" in md and "mean(F1_C)" in md and "scikit-learn" in md
    cp, cr, cf1 = (ours[0].printed(k) for k in ("CP", "CR", "CF1"))
    note = f"2·{cp:.1f}·{cr:.1f}/{cp + cr:.1f} = {2 * cp * cr / (cp + cr):.1f}, printed {cf1:.1f}"
    assert any(note in n for n in out.notes), out.notes
    if number == 3:
        assert "2·81.3·70.2/151.5 = 75.3, printed 74.1" in note


# --------------------------------------------------------------------------- Table V


def test_table5_ttest_rel_of_per_class_aps(tmp_path):
    """Table V tests the authors' per-class VOC AP (the AP their numbers came from); gsm's eq. 21 AP has its own column."""
    runs = tmp_path / "runs"
    rng = np.random.default_rng(0)
    soft_ap = rng.uniform(0.3, 0.9, 80)
    soft_eq21 = soft_ap - rng.uniform(0, 0.05, 80)  # another definition, other numbers
    soft_list: list = soft_ap.tolist()
    soft_list[3] = None  # a class without positives in the softmax run
    soft_eq21_list: list = soft_eq21.tolist()
    soft_eq21_list[3] = None
    write_run(runs, "table3/resnet101_coco_softmax", 0, per_class_ap_voc=soft_list, per_class_ap=soft_eq21_list,
              classes_without_positives=[3])
    g_name = "table3/resnet101_coco_gsoftmax_mu0_sigma0p5"
    g_ap = soft_ap + rng.normal(0.01, 0.02, 80)
    g_eq21 = soft_eq21 + rng.normal(-0.01, 0.03, 80)
    g_list: list = g_ap.tolist()
    g_list[7] = None
    g_eq21_list: list = g_eq21.tolist()
    g_eq21_list[7] = None
    write_run(runs, g_name, 0, per_class_ap_voc=g_list, per_class_ap=g_eq21_list, classes_without_positives=[7])
    # a second G-softmax row with two seeds: per-class APs averaged over its seeds
    g2 = "table3/resnet101_coco_gsoftmax_mu0_sigma1"
    a1, a2 = soft_ap + rng.normal(0, 0.03, 80), soft_ap + rng.normal(0, 0.03, 80)
    write_run(runs, g2, 0, per_class_ap_voc=a1.tolist())
    write_run(runs, g2, 1, per_class_ap_voc=a2.tolist())
    # a row whose record predates the VOC AP (schema 2): "not recorded", not a test of another definition
    write_run(runs, "table3/resnet101_coco_gsoftmax_mu0_sigma5", 0, schema_version=2)
    out = build_table(5, Grid(paper.experiments(5), "full", runs))
    df, data = out.display, out.data
    assert len(df) == 10

    keep = [c for c in range(80) if c not in (3, 7)]
    expected = stats.ttest_rel(soft_ap[keep], g_ap[keep])
    row = df[(df["dataset"] == "MS COCO") & (df["G-softmax (μ, σ)"] == "G-softmax(0,0.5)")].iloc[0]
    assert row["p paper"] == "0.0359" and row["classes used"] == "78" and row["classes excluded"] == "2"
    assert row["p ours (VOC AP)"] == (f"{expected.pvalue:.4f}" if expected.pvalue >= 1e-4 else f"{expected.pvalue:.1e}")
    d = data[data.experiment == g_name].iloc[0]  # the CSV: the numbers as displayed (p as printed, t to 3 decimals)
    assert d.p == float(row["p ours (VOC AP)"]) and d.t == round(expected.statistic, 3) and row["t"] == f"{d.t:.3f}"
    assert d.ap == "voc"
    expected_eq21 = stats.ttest_rel(soft_eq21[keep], g_eq21[keep])
    assert d.p_ap_eq21 == float(row["p ours (AP eq. 21)"]) and d.p_ap_eq21 != d.p
    assert row["p ours (AP eq. 21)"] == (f"{expected_eq21.pvalue:.4f}" if expected_eq21.pvalue >= 1e-4
                                         else f"{expected_eq21.pvalue:.1e}")

    keep2 = [c for c in range(80) if c != 3]
    expected2 = stats.ttest_rel(soft_ap[keep2], ((a1 + a2) / 2)[keep2])
    d2 = data[data.experiment == g2].iloc[0]
    assert d2.p == float(f"{expected2.pvalue:.4f}" if expected2.pvalue >= 1e-4 else f"{expected2.pvalue:.1e}")
    assert d2.seeds_gsoftmax == "0,1"

    old = df[(df["dataset"] == "MS COCO") & (df["G-softmax (μ, σ)"] == "G-softmax(0,5)")].iloc[0]
    assert old["p ours (VOC AP)"] == "not recorded" and old["classes used"] == "not recorded"
    assert old["p ours (AP eq. 21)"] != "not recorded"
    assert data[data.experiment == "table3/resnet101_coco_gsoftmax_mu0_sigma5"].iloc[0].status == "not recorded"
    nus = df[df["dataset"] == "NUS-WIDE"]
    assert len(nus) == 5 and (nus["p ours (VOC AP)"] == "not run").all()
    assert sorted(nus["p paper"]) == sorted(["0.0049", "0.0001", "0.0098", "0.6773", "0.0131"])
    assert "VOC2012 interpolated AP" in out.notes[0]


# --------------------------------------------------------------------------- Table VI


def test_table6_pearson_of_best_class(tmp_path):
    runs = tmp_path / "runs"
    rng = np.random.default_rng(1)
    grid_rows = [r.experiment for r in paper.rows(table=3, head="gsoftmax", init="constant")]
    comps, seps, aps = [], [], []
    for i, exp in enumerate(grid_rows):
        comp = rng.uniform(1, 3, 80)
        comp[11] = 10 + i + rng.normal(0, 0.3)  # class 11: the best mean compactness
        sep = rng.uniform(1, 3, 80)
        sep[42] = 8 + rng.normal(0, 1)  # class 42: the best mean separability
        sep[5] = math.nan  # a class without the statistic in one run: never chosen
        ap = rng.uniform(0.3, 0.9, 80)
        ap[11] = 0.5 + 0.05 * i + rng.normal(0, 0.01)
        empirical = {"compactness": comp.tolist(), "separability": [None if math.isnan(v) else v for v in sep],
                     "ratio": (sep * comp).tolist()}
        res = write_run(runs, exp, 0, per_class_ap_voc_frac=ap.tolist(), rng=rng)
        data = read(res)
        data["empirical"]["test"].update(empirical)
        res.write_text(json.dumps(data))
        comps.append(comp)
        seps.append(sep)
        aps.append(ap)
    out = build_table(6, Grid(paper.experiments(6), "full", runs))
    C, S, A = np.array(comps), np.array(seps), np.array(aps)
    R = C * S
    d = out.data[(out.data.source == "empirical") & (out.data.dataset == "coco")].set_index("statistic")
    for stat, M in (("compactness", C), ("separability", S), ("ratio", R)):
        ok = np.isfinite(M).all(0)
        c = int(np.argmax(np.where(ok, M.mean(0), -np.inf)))
        expected = stats.pearsonr(M[:, c], A[:, c])
        assert d.loc[stat, "class"] == c
        assert d.loc[stat, "rho"] == round(expected.statistic, 4)  # as displayed: (ρ to 4 decimals, p as printed)
        assert d.loc[stat, "p"] == float(f"{expected.pvalue:.4f}" if expected.pvalue >= 1e-4 else f"{expected.pvalue:.1e}")
        assert d.loc[stat, "n_runs"] == 5
    assert d.loc["compactness", "class"] == 11 and d.loc["separability", "class"] == 42
    df = out.display
    row = df[(df["dataset"] == "MS COCO") & (df["correlation"] == "Correlation(compactness, AP)")].iloc[0]
    assert row["(ρ, p) paper"] == "(0.9472, 0.0144)" and row["class (best mean)"] == f"{COCO_NAMES[11]} (#11)"
    assert row["G-softmax runs used"] == "5 of 5"
    nus = df[df["dataset"] == "NUS-WIDE"]
    assert (nus["(ρ, p) ours"] == "not run").all() and len(nus) == 3
    assert out.extra and len(out.extra[0][1]) == 6  # the learned-statistics variant, for reference


def test_table6_needs_three_runs(tmp_path):
    runs = tmp_path / "runs"
    for r in paper.rows(table=4, head="gsoftmax")[:2]:
        write_run(runs, r.experiment, 0)
    df = build_table(6, Grid(paper.experiments(6), "full", runs)).display
    nus = df[df["dataset"] == "NUS-WIDE"]
    assert nus["(ρ, p) ours"].str.contains("needs >= 3").all()


# --------------------------------------------------------------------------- CLI and launching


def test_cli_no_run_writes_all_files(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "table4/resnet101_nuswide_softmax", 0)
    out = tmp_path / "tables"
    assert main(["table4", "--runs", str(runs), "--out", str(out), "--no-run"]) == 0
    for ext in ("md", "csv", "tex"):
        assert (out / f"table4.{ext}").stat().st_size > 0
    assert "not run" in capsys.readouterr().out
    assert main(["table2", "--runs", str(tmp_path / "nowhere" / "runs"), "--out", str(out), "--no-run"]) == 0
    assert "not run" in (out / "table2.md").read_text()


@pytest.mark.slow
def test_launch_commands_group_by_model_and_pass_launcher_and_seeds(tmp_path):
    grid = Grid(paper.experiments(1), "smoke", tmp_path / "runs", fixtures_dir=tmp_path / "fx")
    assert grid.missing() == paper.experiments(1)
    cmds = launch_commands(grid, grid.missing(), "gsm_ray", [0, 1])
    assert len(cmds) == 4  # vgg16, densenet, wrn, wrn1100 (both datasets read the one fixtures folder)
    for cmd in cmds:
        assert cmd[2] == "-m" and cmd[-2] == "hydra/launcher=gsm_ray" and cmd[-1] == "seed=0,1"
        assert f"output_root='{tmp_path.resolve()}'" in cmd and "trainer.device=cpu" in cmd  # a path, quoted
    wrn1100 = next(c for c in cmds if "table1/wrn1100_cifar10_softmax" in c[3])
    assert wrn1100[3] == "experiment=" + ",".join(e for e in paper.experiments(1) if e.startswith("table1/wrn1100_"))
    # keys the default config lacks are forced (++) so that Hydra's primary config accepts them
    assert "++model.depth=10" in wrn1100 and "++schedule.pieces=[[1,0,-8],[2,-8,-9]]" in wrn1100
    assert "dataset.subset=48" in wrn1100 and "trainer.epochs=2" in wrn1100
    vgg = next(c for c in cmds if "table1/vgg16_cifar10_softmax" in c[3])
    # the smoke profile's small VGG-16 (gsm.profiles): its one knob, the width, is forced like wrn1100's
    assert "model.name=vgg16_small" in vgg and [c for c in vgg if c.startswith("++")] == ["++model.width=8"]
    # the forced keys leave every row's config (hence its run) unchanged
    for cmd in cmds:
        overrides = [c for c in cmd[4:] if not c.startswith(("output_root=", "hydra/launcher=", "seed="))]
        for exp in cmd[3].split("=", 1)[1].split(","):
            assert row_key(compose(exp, overrides)) == grid.rows[exp].key, (exp, overrides)
    full = Grid(paper.experiments(3), "full", tmp_path / "runs")
    (cmd,) = launch_commands(full, full.missing())
    assert cmd[3].count(",") == 6 and not any(c.startswith("hydra/launcher") for c in cmd)


def test_launch_failure_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import gsm.reproduce

    calls = []

    class FakeTrainer:  # launch waits on a subprocess.Popen (for Ctrl-C): this trainer exits at once with code 3
        def __init__(self, cmd, **kw):
            calls.append(cmd)
            self.returncode = 3

        def poll(self):
            return self.returncode

        def wait(self, timeout=None):
            return self.returncode

    monkeypatch.setattr(gsm.launch.subprocess, "Popen", FakeTrainer)
    grid = Grid(paper.experiments(3), "full", tmp_path / "runs")
    with pytest.raises(LaunchError, match="exit 3"):
        launch(grid, grid.missing())
    from gsm.data.fixtures import make_coco

    make_coco(tmp_path / "coco")  # the data is there (gsm.data_check), so the trainer is started and fails
    code = main(["table3", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "t"),
                 "-o", f"dataset.root={tmp_path / 'coco'}"])
    assert code == 2 and "the trainer failed in 1 of 1 command(s) (exit 3)" in capsys.readouterr().err
    assert len(calls) == 2 and not (tmp_path / "t").exists()


def test_a_failed_group_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    """Table I's smoke grid launches one command per model; the first fails, the others still run, and the error
    lists it."""
    import gsm.reproduce

    calls = []

    class FakeTrainer:
        def __init__(self, cmd, **kw):
            calls.append(cmd)
            self.returncode = 1 if len(calls) == 1 else 0

        def poll(self):
            return self.returncode

        def wait(self, timeout=None):
            return self.returncode

    monkeypatch.setattr(gsm.launch.subprocess, "Popen", FakeTrainer)
    grid = Grid(paper.experiments(1), "smoke", tmp_path / "runs")  # the smoke profile: one command per model
    commands = launch_commands(grid, grid.missing())
    assert len(commands) > 1
    with pytest.raises(LaunchError) as err:
        launch(grid, grid.missing())
    assert len(calls) == len(commands)  # every group ran
    first = " ".join(commands[0])
    assert f"failed in 1 of {len(commands)} command(s) (exit 1)" in str(err.value) and "exit 1: " in str(err.value)
    assert "going on with the other groups" in capsys.readouterr().err
    assert first.split(" -m ")[-1].split()[0] in str(err.value)


# --------------------------------------------------------------------------- end to end (smoke profile)

REPO = Path(__file__).resolve().parent.parent


def _make_table(table: str, root: Path) -> subprocess.CompletedProcess:
    """``make tableN PROFILE=smoke`` (the install stamp taken as up to date), writing under ``root``."""
    args = f"--runs {root}/runs --out {root}/tables --figures-out {root}/figures"
    if shutil.which("make"):
        cmd = ["make", "--no-print-directory", "-o", ".venv/.installed-stamp", table, "PROFILE=smoke",
               f"BIN={Path(sys.executable).parent}", f"TABLE_ARGS={args}"]
    else:
        cmd = [sys.executable, "-m", "gsm.reproduce", table, "--profile", "smoke", *args.split()]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)


def _md_rows(md: str) -> list[list[str]]:
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in lines[1:]]  # first block: the table


SMOKE_FIGURES = {
    "table1": ["fig3_x_vs_p_cifar", "fig5_gaussians_cifar", "fig6_per_class_cifar10", "fig7_per_class_cifar100"],
    "table3": ["fig4_coco_classes", "fig8_coco_averages"],
}


def _check_smoke_outputs(root: Path, table: str) -> None:
    """The smoke profile's table (every row of ours measured, every cell filled) and its figures under ``root``."""
    data = pd.read_csv(root / "tables" / f"{table}.csv")
    ours = data[~data.reference_only]
    number = int(table[5:])
    assert len(ours) == (24 if table == "table1" else 7 * len(ML_COLUMNS))  # table3: 7 rows x 9 metrics
    assert (ours.status == "measured").all(), ours[ours.status != "measured"][["row", "metric"]]
    assert np.isfinite(ours.ours_mean_pct).all() and (ours.n_seeds == 1).all() and (ours.device == "cpu").all()
    md = (root / "tables" / f"{table}.md").read_text()
    assert "Profile smoke" in md
    rows = _md_rows(md)
    n_ours = len(paper.rows(table=number, reference_only=False))
    if table == "table1":
        assert len(rows) == len(paper.rows(table=1)) // 2
    else:
        assert len(rows) == len(paper.rows(table=number)) + n_ours
    for cells in rows:  # every cell of every row is filled, and no row of ours says "not run"
        assert all(cells) or cells[1] == "paper", cells
        assert "not run" not in cells, cells
    assert (root / "tables" / f"{table}.tex").stat().st_size > 0
    for name in SMOKE_FIGURES[table]:
        assert (root / "figures" / f"{name}.png").stat().st_size > 5_000
        assert (root / "figures" / f"{name}.pdf").stat().st_size > 2_000
        caption = (root / "figures" / f"{name}.txt").read_text()
        assert caption.startswith("Figure ") and "Not run" not in caption, caption
    check_publishable(root / "tables", root / "figures", table, SMOKE_FIGURES[table])


def check_publishable(tables: Path, figures_dir: Path, table: str, figure_stems: list[str]) -> None:
    """What a paper needs of a smoke-profile table and its figures, read from the written files: the CSV's numbers
    are the displayed ones (rounded, no float32 noise), literature rows use the one mark "—", a table wider than a
    column is a two-column ``table*`` shrunk to the line, and the figures' captions name the watermark that marks
    them as smoke results on the image (test_smoke_table3_and_figures_from_its_runs checks the image's text itself)."""
    data = pd.read_csv(tables / f"{table}.csv")
    decimals = 2 if table in ("table1", "table2") else 1
    for col in ("ours_mean_pct", "ours_std_pct"):
        vals = data[col].dropna()
        assert (vals == vals.round(decimals)).all(), (col, vals[vals != vals.round(decimals)].head())
    assert not any("99999" in ln for ln in (tables / f"{table}.csv").read_text().splitlines()[1:])
    rows = _md_rows((tables / f"{table}.md").read_text())
    literature = [cells for cells in rows if cells[0].endswith("(literature)")]
    assert literature and all("n/a" not in cells and "n.r." not in cells and "—" in cells for cells in literature)
    tex = (tables / f"{table}.tex").read_text()
    assert tex.startswith("% ") and "\\usepackage{booktabs,graphicx}" in tex.splitlines()[0]
    assert "\\begin{table*}[t]" in tex and "\\resizebox{\\ifdim\\width>\\linewidth" in tex  # 9+ columns
    for name in figure_stems:
        assert "Watermark 'smoke profile — not paper results'" in (figures_dir / f"{name}.txt").read_text()


@pytest.mark.slow
def test_smoke_profile_end_to_end(tmp_path):
    """``make table1 PROFILE=smoke``, the whole pipeline once: fixtures, what is missing of the grid trained through
    ``train.py -m``, the table and Figs. 3, 5, 6, 7 from the runs. 22 of the 24 runs are there already (synthetic
    records, as a finished sweep leaves them), so one launch trains the two WRN G-softmax rows for real (with the
    training-set statistics that Figs. 6 and 7 draw) and the other 22 are found and skipped; the other tables
    share every step but the rows (Table III's smoke outputs are checked from runs below)."""
    trained = ["table1/wrn_cifar10_gsoftmax", "table1/wrn_cifar100_gsoftmax"]
    rng = np.random.default_rng(0)
    fixtures = f"dataset.root={(tmp_path / 'fixtures').resolve()}"  # where gsm-tables makes them, as its launch sets it
    for exp in paper.experiments(1):
        if exp not in trained:
            write_run(tmp_path / "runs", exp, 0, "smoke", outputs=True, rng=rng, n_test=40, overrides=(fixtures,))
    proc = _make_table("table1", tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert f"table1: {len(trained)} of 24 runs to do" in proc.stdout + proc.stderr
    grid = Grid(paper.experiments(1), "smoke", tmp_path / "runs", fixtures_dir=(tmp_path / "fixtures").resolve())
    for exp in trained:  # trained by the launch: the trainer's own record, with its environment and history
        record = read(grid.rows[exp].runs[0].path)
        assert record["environment"]["device"] == "cpu" and len(record["history"]) == 1, exp
        assert record["empirical"]["train"] is not None, exp  # trainer.analyze_train=true: the statistics of Figs. 6, 7
    assert "UserWarning" not in proc.stderr and "No artists with labels" not in proc.stderr, proc.stderr[-4000:]
    _check_smoke_outputs(tmp_path, "table1")


@pytest.mark.slow
def test_smoke_table3_and_figures_from_its_runs(tmp_path, capsys, monkeypatch):
    """``gsm-tables table3 --profile smoke --no-run`` on one run of each row (the records and test outputs the
    trainer writes, gsm.results): the table with every row measured and Figs. 4 and 8, without a warning. Figures
    drawn from the smoke profile's runs say so on the image (a large figure text) and in the caption; the full
    profile's carry no such mark (tests/test_figures.py::test_all_figures_from_runs)."""
    import warnings

    from gsm import figures

    rng = np.random.default_rng(0)
    for exp in paper.experiments(3):
        write_run(tmp_path / "runs", exp, 0, "smoke", outputs=True, rng=rng, n_test=40)
    texts = {}
    real_save = figures._save

    def spy(fig, out_dir, stem, number, caption, mark=None):
        paths = real_save(fig, out_dir, stem, number, caption, mark)  # draws the watermark
        texts[stem] = [t.get_text() for t in fig.texts]
        return paths

    monkeypatch.setattr(figures, "_save", spy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["table3", "--profile", "smoke", "--no-run", "--runs", str(tmp_path / "runs"),
                     "--out", str(tmp_path / "tables"), "--figures-out", str(tmp_path / "figures")]) == 0
    problems = [str(w.message) for w in caught if issubclass(w.category, UserWarning) or "No artists" in str(w.message)]
    assert problems == [] and "Warning" not in capsys.readouterr().err
    _check_smoke_outputs(tmp_path, "table3")
    assert sorted(texts) == SMOKE_FIGURES["table3"]
    for stem, found in texts.items():  # the watermark on the image itself (the caption's: check_publishable)
        assert "smoke profile — not paper results" in found, (stem, found)


# --------------------------------------------------------------------------- the authors' definitions, older records


def test_multilabel_older_records_show_a_dash_in_the_authors_columns(tmp_path):
    """A schema-2 record has no VOC mAP or per-class-mean C-F1: "not recorded" there (and in the p column), its eq. 21 / eq. 22
    values still shown; a row whose seeds only partly have the value says how many do."""
    runs = tmp_path / "runs"
    write_run(runs, "table3/resnet101_coco_softmax", 0, mAP=0.61, CF1=0.55, schema_version=2)
    g = "table3/resnet101_coco_gsoftmax_mu0_sigma1"
    write_run(runs, g, 0, mAP_voc=0.70, CF1_mean=0.50)
    write_run(runs, g, 1, schema_version=2)
    df = build_table(3, grid_for(3, runs)).display
    ours = df[df["values"] == "ours"].set_index("Method")
    soft = ours.loc[paper.row("table3/resnet101_coco_softmax").label]
    assert soft["mAP VOC (%)"] == "not recorded" and soft["C-F1 per-class mean (%)"] == "not recorded"
    assert soft["mAP eq. 21 (%)"] == "61.0" and soft["C-F1 eq. 22 (%)"] == "55.0"
    gs = ours.loc[paper.row(g).label]
    assert gs["mAP VOC (%)"] == "70.0 (n = 1 of 2)" and gs["C-F1 per-class mean (%)"] == "50.0 (n = 1 of 2)"
    assert gs["seeds"] == "n = 2 (seeds 0, 1)"
    assert ours.loc[paper.row("table3/resnet101_coco_gsoftmax_mu0_sigma0p5").label]["mAP VOC (%)"] == "not run"


def test_multilabel_map_authors_is_na_with_the_reason_when_a_class_lacks_a_positive(tmp_path):
    """evaluate.m's plain mean(AP_VOC) is NaN when a class has no positive (the record stores null): the cell and
    the CSV say n/a and why, the other authors' columns keep their numbers; a seed that has it keeps its number."""
    runs = tmp_path / "runs"
    soft = "table3/resnet101_coco_softmax"
    write_run(runs, soft, 0, mAP_authors=None, CP_authors=0.66, classes_without_positives=[3])
    g = "table3/resnet101_coco_gsoftmax_mu0_sigma1"
    write_run(runs, g, 0, mAP_authors=0.7, CP_authors=0.6)
    write_run(runs, g, 1, mAP_authors=None, CP_authors=0.6, classes_without_positives=[3])
    out = build_table(3, grid_for(3, runs))
    ours = out.display[out.display["values"] == "ours"].set_index("Method")
    row = ours.loc[paper.row(soft).label]
    assert row["mAP authors (%)"] == "n/a: NaN, a class without a positive" and row["C-P authors (%)"] == "66.0"
    assert ours.loc[paper.row(g).label]["mAP authors (%)"] == "70.0 (n = 1 of 2); n/a: NaN, a class without a positive in 1 of 2 runs"
    d = out.data[(out.data.experiment == soft) & (out.data.metric == "mAP_authors")].iloc[0]
    assert d.status == "n/a: NaN, a class without a positive" and np.isnan(d.ours_mean_pct)
    assert any("without a positive in the test split" in n and "'mAP authors' is n/a" in n for n in out.notes)


# --------------------------------------------------------------------------- as released / as written


def write_both(runs: Path, number: int, value, profile: str = "full") -> dict[str, tuple]:
    """A run of every row of ours of a table and, for G-softmax rows, of its @as_written variant; returns the values."""
    from gsm.grid import as_written_experiments

    got = {}
    for i, r in enumerate(r for r in paper.rows(table=number) if r.experiment):
        names = [r.experiment] + ([f"{r.experiment}@as_written"] if r.head == "gsoftmax" else [])
        assert set(names[1:]) <= set(as_written_experiments(number))
        for k, name in enumerate(names):
            v = value(i, k)
            write_run(runs, name, 0, profile, **v)
            got[name] = v
    return got


def test_as_written_rows_are_in_the_grid_only_when_asked(tmp_path):
    from gsm.grid import as_written_experiments

    names = as_written_experiments(3)
    assert names == [f"{r.experiment}@as_written" for r in paper.rows(table=3, head="gsoftmax")] and len(names) == 6
    assert as_written_experiments(2) and all(n.endswith("@as_written") for n in as_written_experiments(4))
    plain = Grid(paper.experiments(3), "full", tmp_path / "runs")
    assert not any("@" in e for e in plain.rows)
    both = Grid(paper.experiments(3) + names, "full", tmp_path / "runs")
    assert len(both.rows) == len(plain.rows) + 6
    for name in names:
        w, rel = both.rows[name], both.rows[name.split("@")[0]]
        assert w.config["head"]["dist_update"] == "autograd" and rel.config["head"]["dist_update"] == "release"
        assert w.key != rel.key and w.base_experiment == rel.experiment and w.variant == "as_written"
        assert {k: v for k, v in w.config.items() if k != "head"} == {k: v for k, v in rel.config.items() if k != "head"}
        assert {**w.config["head"], "dist_update": "release"} == rel.config["head"]  # nothing else differs
    with pytest.raises(Exception, match="unknown variant 'as_read'"):
        Grid(["table3/resnet101_coco_softmax@as_read"], "full", tmp_path / "runs")


def test_as_written_table3_values_in_place(tmp_path):
    from gsm.report import as_written_table

    runs = tmp_path / "runs"
    cols = [(m, h) for m, h, _ in ML_COLUMNS]
    vals = write_both(runs, 3, lambda i, k: {m: 0.5 + 0.02 * i + 0.01 * k + 0.001 * j for j, (m, _) in enumerate(cols)})
    out = as_written_table(3, Grid(paper.experiments(3) + [n for n in vals if "@" in n], "full", runs))
    df = out.display
    ours = [r for r in paper.rows(table=3) if r.experiment]
    assert len(df) == 3 * len(ours) and out.name == "table3_as_written"
    assert list(df.columns) == ["Method", "values", *(h for _, h in cols), "seeds"]
    it = iter(df.to_dict("records"))
    for r in ours:
        rel, wri, pap = next(it), next(it), next(it)
        assert (rel["Method"], wri["Method"], pap["Method"]) == (r.label, "", "")
        assert rel["values"] == "ours as released" and pap["values"] == "paper"
        written = vals.get(f"{r.experiment}@as_written", vals[r.experiment])
        assert wri["values"] == ("ours as written" if r.head == "gsoftmax" else "ours as written (same run)")
        for m, h in cols:
            assert rel[h] == f"{100 * vals[r.experiment][m]:.1f}" and wri[h] == f"{100 * written[m]:.1f}", (r.label, h)
        for _, h, printed_key in ML_COLUMNS:
            v = r.printed(printed_key) if printed_key else None
            assert pap[h] == ("n.r." if v is None else f"{v:.1f}")
        assert rel["seeds"] == "n = 1 (seed 0)"
        assert wri["seeds"] == ("n = 1 (seed 0)" if r.head == "gsoftmax" else "same run (no μ, σ)")
    data = out.data
    g = "table3/resnet101_coco_gsoftmax_mu0p1_sigma1"
    d = data[(data.experiment == g) & (data.metric == "mAP_authors")].set_index("variant")
    assert d.loc["as_written", "ours_mean_pct"] == pytest.approx(100 * vals[g + "@as_written"]["mAP_authors"])
    assert d.loc["as_released", "ours_mean_pct"] == pytest.approx(100 * vals[g]["mAP_authors"])
    assert d.loc["as_written", "grid_row"] == g + "@as_written" and d.loc["as_written", "paper_pct"] == paper.row(g).printed("mAP")
    soft = data[(data.experiment == "table3/resnet101_coco_softmax") & (data.variant == "as_written")]
    assert soft.same_run_as_released.all() and (soft.grid_row == "table3/resnet101_coco_softmax").all()
    md = out.markdown()
    assert "head.dist_update=autograd" in md and "head.dist_update=release" in md and "same run" in md


def test_as_written_table2_and_missing_variants(tmp_path):
    from gsm.report import as_written_table

    runs = tmp_path / "runs"
    g = "table2/resnet101_tiny_imagenet_gsoftmax_mu0_sigma2"
    released = read(write_run(runs, g, 0, top1_error=0.17))
    write_run(runs, g + "@as_written", 0, top1_error=0.19, best_top1_error=0.185, best_epoch=27)
    write_run(runs, "table2/resnet101_tiny_imagenet_softmax", 0, top1_error=0.2)
    from gsm.grid import as_written_experiments

    out = as_written_table(2, Grid(paper.experiments(2) + as_written_experiments(2), "full", runs))
    df = out.display
    assert len(df) == len([r for r in paper.rows(table=2) if r.experiment])  # no literature rows
    row = line(df, paper.row(g).label)
    assert row["top-1 error paper (%)"] == "17.29" and row["ours as released, last epoch (%)"] == "17.00"
    assert row["ours as written, last epoch (%)"] == "19.00" and row["ours as written, best epoch (%)"] == "18.50"
    assert row["ours as released, best epoch (%)"] == f"{100 * released['best_top1_error_frac']:.2f}"
    assert row["seeds as released"] == row["seeds as written"] == "n = 1 (seed 0)"
    soft = line(df, "ResNet-101 (input 224x224)")
    assert soft["ours as released, last epoch (%)"] == soft["ours as written, last epoch (%)"] == "20.00"
    assert soft["seeds as written"] == "same run (no μ, σ)"
    other = line(df, "ResNet-101 G-Softmax (mu=0, sigma=3)")
    assert other["ours as released, last epoch (%)"] == other["ours as written, last epoch (%)"] == "not run"
    assert other["seeds as written"] == "not run"
    assert any("selected on the evaluation split" in n for n in out.notes)
    with pytest.raises(Exception, match="--as-written applies to tables 2, 3, 4"):
        as_written_table(5, Grid(paper.experiments(5), "full", runs))


@pytest.mark.parametrize("command", ["table1", "table5", "table6", "figures", "sweep", "demo"])
def test_as_written_is_rejected_outside_tables_2_to_4(tmp_path, capsys, command):
    assert main([command, "--as-written", "--no-run", "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("gsm-tables: error: --as-written applies to table2, table3, table4")
    assert command in err


def test_as_written_cli_no_run_writes_both_tables(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "tables"
    vals = write_both(runs, 4, lambda i, k: {"mAP_voc": 0.6 + 0.01 * i + 0.1 * k})
    assert main(["table4", "--as-written", "--no-run", "--runs", str(runs), "--out", str(out)]) == 0
    for ext in ("md", "csv", "tex"):
        assert (out / f"table4_as_written.{ext}").stat().st_size > 0 and (out / f"table4.{ext}").stat().st_size > 0
    csv = pd.read_csv(out / "table4_as_written.csv")
    g = "table4/resnet101_nuswide_gsoftmax_mu0_sigma1"
    d = csv[(csv.experiment == g) & (csv.metric == "mAP_voc")].set_index("variant")
    assert d.loc["as_written", "ours_mean_pct"] == pytest.approx(100 * vals[g + "@as_written"]["mAP_voc"])
    assert d.loc["as_released", "ours_mean_pct"] == pytest.approx(100 * vals[g]["mAP_voc"])
    assert not any("not run" in cells for cells in _md_rows((out / "table4_as_written.md").read_text()))
    # the plain table4 is unchanged by the variant runs (they belong to no row of it)
    plain = pd.read_csv(out / "table4.csv")
    assert plain[(plain.experiment == g) & (plain.metric == "mAP_voc")].ours_mean_pct.iloc[0] == pytest.approx(100 * vals[g]["mAP_voc"])
    assert "table4_as_written.md" in capsys.readouterr().out


@pytest.mark.slow
def test_as_written_smoke_no_run_and_help(tmp_path, capsys):
    runs = tmp_path / "smoke" / "runs"
    g = "table3/resnet101_coco_gsoftmax_mu0_sigma1"
    write_run(runs, g + "@as_written", 0, "smoke", mAP_voc=0.42)
    assert main(["table3", "--profile", "smoke", "--as-written", "--no-run", "--runs", str(runs),
                 "--out", str(tmp_path / "t"), "--figures-out", str(tmp_path / "f")]) == 0
    df = pd.read_csv(tmp_path / "t" / "table3_as_written.csv")
    d = df[(df.experiment == g) & (df.metric == "mAP_voc")].set_index("variant")
    assert d.loc["as_written", "ours_mean_pct"] == pytest.approx(42.0) and d.loc["as_released", "status"] == "not run"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    assert "--as-written" in help_text and "TABLE_ARGS=--as-written" in help_text and "tableN_as_written" in help_text
    makefile = (REPO / "Makefile").read_text()
    assert "TABLE_ARGS=--as-written" in makefile


@pytest.mark.slow
def test_as_written_launch_commands_and_estimate(tmp_path, monkeypatch):
    import gsm.estimate
    from gsm.grid import as_written_experiments

    names = as_written_experiments(3)
    grid = Grid(paper.experiments(3) + names, "smoke", tmp_path / "runs", fixtures_dir=tmp_path / "fx")
    cmds = launch_commands(grid, grid.missing())
    assert len(cmds) == 2  # the release recipes, then the same G-softmax rows with head.dist_update=autograd
    plain, written = cmds
    assert not any("dist_update" in c for c in plain) and plain[3].count(",") == 6
    assert "head.dist_update=autograd" in written and "@" not in " ".join(written)
    assert written[3] == "experiment=" + ",".join(n.split("@")[0] for n in names)
    for cmd in cmds:  # each launched job's config is its grid row's
        overrides = [c for c in cmd[4:] if not c.startswith("output_root=")]
        for exp in cmd[3].split("=", 1)[1].split(","):
            name = exp + "@as_written" if cmd is written else exp
            assert row_key(compose(exp, overrides)) == grid.rows[name].key, name
    seen = []
    monkeypatch.setattr(gsm.estimate, "run_estimate", lambda exps, *a, **k: seen.append(list(exps)) or 0)
    assert main(["table3", "--estimate", "--profile", "smoke"]) == 0
    assert main(["table3", "--estimate", "--profile", "smoke", "--as-written"]) == 0
    assert seen == [paper.experiments(3), paper.experiments(3) + names]
    configs = gsm.estimate.compose_experiments(seen[1], "smoke", [])
    assert all(configs[n]["head"]["dist_update"] == "autograd" for n in names)
    assert configs[paper.experiments(3)[1]]["head"]["dist_update"] == "release"


# --------------------------------------------------------------------------- text from records; settings that differ

HOSTILE = "gsoftmax | 0.00 |\n# heading `code` <b>bold</b> *em* _u_"
SHOWN = " ".join(HOSTILE.splitlines())  # what a reader must see: the text itself, on one line


def rendered(md: str) -> dict[str, list]:
    """Headings, tables (rows of cell texts) and other text blocks of Markdown, as a Markdown renderer
    (Python-Markdown with its tables extension) reads them."""
    import markdown
    from html.parser import HTMLParser

    class Blocks(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.out: dict[str, list] = {"headings": [], "tables": [], "text": []}
            self.buf: list[str] | None = None
            self.tag = None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.out["tables"].append([])
            elif tag == "tr":
                self.out["tables"][-1].append([])
            elif tag in ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "td", "th"):
                self.buf, self.tag = [], tag

        def handle_endtag(self, tag):
            if tag != self.tag or self.buf is None:
                return
            text = "".join(self.buf)
            kind = "headings" if tag.startswith("h") and tag != "th" else "text" if tag in ("p", "li") else None
            if kind:
                self.out[kind].append(text)
            else:
                self.out["tables"][-1][-1].append(text)
            self.buf = self.tag = None

        def handle_data(self, data):
            if self.buf is not None:
                self.buf.append(data)

    parser = Blocks()
    html = markdown.markdown(md, extensions=["tables"])
    assert "<b>" not in html and "<code>" not in html, html  # no markup from the records
    assert html.count("<em>") == html.count("<em>Legend:</em>"), html  # the tables' own legend only
    parser.feed(html)
    return parser.out


def _retitle(path: Path, **config_head: Any) -> None:
    """Give a record another head name consistently (field, config and signature): a foreign but coherent record."""
    from gsm import runs as gruns

    data = json.loads(path.read_text())
    data["config"]["head"].update(config_head)
    data["head"] = data["config"]["head"]["name"]
    data["signature"] = gruns.signature(data["config"])
    path.write_text(json.dumps(data))
    path.parent.rename(path.parent.with_name(f"{path.parent.name[:-10]}{data['signature']}"))  # its folder names it too


def test_demo_escapes_record_text_and_shows_the_settings_that_differ(tmp_path, capsys):
    """gsm-tables demo on runs of other settings (dataset.subset 160 vs the full split, mu 0 vs 0.3) and records
    whose strings carry Markdown: the rows say how they differ, the header claims the full split only for the runs
    that used it, and the record text shows as itself (no extra column, heading or markup)."""
    from synthetic_runs import demo_config

    runs = tmp_path / "runs"
    write_run(runs, None, 0, config=demo_config("digits", "softmax"), top1_error=0.05, git_rev=HOSTILE)
    write_run(runs, None, 0, config=demo_config("digits", "gsoftmax"), top1_error=0.04)
    write_run(runs, None, 0, config=demo_config("digits", "gsoftmax", overrides=("head.mu=0.3", "dataset.subset=160")),
              top1_error=0.11, train_samples=160, n_test=160)
    mosaic = write_run(runs, None, 0, config=demo_config("digits_mosaic", "softmax"), mAP=0.8)
    _retitle(mosaic, name=HOSTILE)
    assert main(["demo", "--runs", str(runs), "--out", str(tmp_path / "t")]) == 0
    assert "warning" not in capsys.readouterr().err  # a coherent record is shown, escaped
    out = rendered((tmp_path / "t" / "demo.md").read_text())
    assert out["headings"] == ["gsm demo: the embedded digits sets (measured, not the paper's data)",
                               "Single-label: digits", "Multi-label: digits_mosaic"]
    single, multi = out["tables"]
    assert all(len(r) == len(single[0]) for r in single) and all(len(r) == len(multi[0]) for r in multi)
    cols = single[0]
    assert cols[:6] == ["head", "top-1 error (%)", "epochs", "seed", "settings that differ", "train s"]
    rows = {(r[0], r[1]): r[cols.index("settings that differ")] for r in single[1:]}
    assert rows == {("softmax", "5.00"): "dataset.subset=null", ("gsoftmax", "4.00"): "dataset.subset=null; head.mu=0.0",
                    ("gsoftmax", "11.00"): "dataset.subset=160; head.mu=0.3"}
    assert [r[0] for r in multi[1:]] == [SHOWN] and "settings that differ" not in multi[0]
    text = out["text"]
    assert "Model convnet; 1000 train / 60 test images (the full split); 160 train / 160 test images " \
           "(dataset.subset=160)." in text
    assert any(t.startswith("These runs differ in more than the head and the seed: dataset.subset, head.mu") for t in text)
    assert "Model convnet; 1000 train / 60 test images (the full split)." in text  # the mosaic run: the full split
    assert any(t.startswith(f"git revision(s): {SHOWN}, synthetic;") for t in text)
    assert not any("full split" in t and "1,347" in t for t in text)  # no size is claimed that no run had


def test_demo_without_differing_settings_has_no_settings_column(tmp_path):
    from synthetic_runs import demo_config

    runs = tmp_path / "runs"
    for head in ("softmax", "gsoftmax"):
        for seed in (0, 1):
            write_run(runs, None, seed, config=demo_config("digits", head, seed))
    assert main(["demo", "--runs", str(runs), "--out", str(tmp_path / "t")]) == 0
    out = rendered((tmp_path / "t" / "demo.md").read_text())
    (single,) = out["tables"]
    assert single[0] == ["head", "top-1 error (%)", "epochs", "seed", "train s", "learned μ, σ"] and len(single) == 5
    assert not any("differ" in t for t in out["text"])


def test_tables_escape_record_text_in_markdown_and_latex(tmp_path, capsys):
    """Class names and revisions from records reach the notes and conditions of Table IV: Markdown shows them as
    themselves, LaTeX keeps them in comments on single lines; a cell with such text is escaped in both."""
    from gsm.report.render import TableOutput

    runs = tmp_path / "runs"
    names = [HOSTILE] + [f"class_{i}" for i in range(1, 81)]
    for exp in ("table4/resnet101_nuswide_softmax", "table4/resnet101_nuswide_gsoftmax_mu0_sigma1"):
        write_run(runs, exp, 0, mAP=0.6, class_names=names, classes_without_positives=[0], git_rev=HOSTILE)
    assert main(["table4", "--runs", str(runs), "--out", str(tmp_path / "t"), "--no-run"]) == 0
    assert "warning" not in capsys.readouterr().err
    md = (tmp_path / "t" / "table4.md").read_text()
    out = rendered(md)
    assert out["headings"] == ["Table IV: multi-label classification on NUS-WIDE (test set)"]
    (table,) = out["tables"]
    assert all(len(r) == len(table[0]) for r in table)
    assert any(t.startswith("1 classes without a positive in the test split") and t.endswith(f": {SHOWN}.")
               for t in out["text"])
    assert any(t.startswith("Conditions: ") and f"git revision(s) {SHOWN}." in t for t in out["text"])
    tex = (tmp_path / "t" / "table4.tex").read_text()
    assert all(ln.startswith("% ") for ln in tex.splitlines() if "heading" in ln or "bold" in ln)
    # a cell holding record text (Table VI's class column, Table II's image size): escaped in both formats
    df = pd.DataFrame([{"Method": HOSTILE, "value": "1.00"}])
    table = TableOutput("t", "T", "Caption.", df, df)
    out = rendered(table.markdown())
    assert out["tables"] == [[["Method", "value"], [SHOWN, "1.00"]]] and out["headings"] == ["T"]
    body = table.latex()
    (row,) = [ln for ln in body.splitlines() if "heading" in ln]
    assert row.rstrip().endswith(r"\\") and row.count("&") - row.count(r"\&") == 1  # one line, two cells
    assert r"\# heading" in row and r"\textbackslash" not in row and r"\_u\_" in row


def test_table_conditions_say_when_runs_use_a_subset(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "table4/resnet101_nuswide_softmax", 0, "smoke", mAP=0.6)
    md = build_table(4, grid_for(4, runs, "smoke")).markdown()
    assert "The runs use dataset.subset=48: at most that many images per split, not the full splits the caption names." in md
    write_run(runs, "table4/resnet101_nuswide_softmax", 0, mAP=0.6)
    assert "dataset.subset" not in " ".join(build_table(4, grid_for(4, runs)).conditions)


def test_table_conditions_mark_a_run_resumed_in_another_environment(tmp_path):
    runs = tmp_path / "runs"
    segments = [{"first_epoch": 1, "cpu_threads": 1}, {"first_epoch": 5, "cpu_threads": 2}]
    path = write_run(runs, "table4/resnet101_nuswide_softmax", 0, mAP=0.6,
                     environment={"device": "cpu", "world_size": 1, "segments": segments})
    text = " ".join(build_table(4, grid_for(4, runs)).conditions)
    assert "Resumed in another environment (trainer.resume_anyway=true" in text and path.parent.name in text
    write_run(runs, "table4/resnet101_nuswide_softmax", 0, mAP=0.6, environment={"device": "cpu", "world_size": 1})
    assert "Resumed in another environment" not in " ".join(build_table(4, grid_for(4, runs)).conditions)


# --------------------------------------------------------------------------- options that cannot apply, launcher settings, Ctrl-C


@pytest.mark.parametrize("argv, message", [
    (["table3", "-o", "seed=7"], "-o seed=7: the seeds of the grid's runs are chosen by --seeds (e.g. --seeds 7"),
    (["table3", "-o", "+seed=1,2"], "-o +seed=1,2: the seeds of the grid's runs are chosen by --seeds"),
    (["table3", "-o", "output_root=/x"], "-o output_root=/x: the runs folder is chosen by --runs"),
    (["table3", "-o", "hydra/launcher=slurm"], "the launcher is chosen by --launcher"),
    (["table3", "--launcher", "gsm_ray", "--no-run"],
     "--launcher gsm_ray does nothing here: --no-run launches nothing; drop it, or drop --no-run to train the missing runs"),
    (["table3", "--launcher", "ray_gsm", "--no-run"], "--launcher ray_gsm does nothing here: --no-run launches nothing"),
    (["figures", "--launcher", "slurm"], "--launcher slurm does nothing here: figures trains nothing"),
    (["table3", "--no-run", "-o", "hydra.launcher.partition=gpu"],
     "-o hydra.launcher.partition=gpu does nothing here: --no-run launches nothing"),
    (["table3", "--launcher", "ray_gsm"],
     "--launcher 'ray_gsm' is no Hydra launcher; valid: basic (Hydra's: one run after another, here), gsm_ray, slurm "
     "(gsm's presets, gsm/configs/hydra/launcher/), "),
    (["table3", "--launcher", "slurmm"], "; did you mean slurm?"),
    (["table3", "--launcher", "ray:4"], "--launcher ray:4: ':4' (GPUs in parallel) applies to --estimate only"),
    (["table3", "-o", "hydra.launcher.partition=gpu"],
     "-o hydra.launcher.partition=gpu: the basic launcher has no setting partition; it is a setting of --launcher slurm, "
     "submitit_slurm"),
    (["table3", "--launcher", "slurm", "-o", "hydra.launcher.partitoin=gpu"],
     "-o hydra.launcher.partitoin=gpu: not a setting of the slurm launcher"),
    (["sweep", "--seeds", "0,1"], "--seeds applies to the grid of a table"),
    (["demo", "-o", "trainer.amp=none"], "-o applies to the grid of a table"),
])
def test_options_that_cannot_apply_are_one_line_errors(tmp_path, monkeypatch, capsys, argv, message):
    import gsm.reproduce

    def no_launch(*a, **k):
        raise AssertionError("nothing may be launched")

    monkeypatch.setattr(gsm.launch.subprocess, "Popen", no_launch)
    assert main([*argv, "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gsm-tables: error: ") and message in err, err
    assert not (tmp_path / "t").exists()


@pytest.mark.slow
def test_seed_override_through_the_real_cli_names_seeds(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gsm.reproduce", "table3", "-o", "seed=7", "--no-run", "--runs",
                           str(tmp_path / "runs"), "--out", str(tmp_path / "t")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "gsm-tables: error: -o seed=7: the seeds of the grid's runs are chosen by --seeds (e.g. --seeds 7, or --seeds "
        "0,1,2 for three runs per row)"]


class _FakeTrainer:
    """subprocess.Popen for the trainer: records the command, 'runs' at once with the given exit code."""

    calls: list[list[str]] = []

    def __init__(self, cmd, **kw):
        self.cmd, self.returncode = cmd, 0
        _FakeTrainer.calls.append(cmd)

    def wait(self, timeout=None):
        return self.returncode

    def poll(self):
        return self.returncode


@pytest.mark.slow
def test_launcher_settings_pass_as_plain_overrides(tmp_path, monkeypatch, capsys):
    """-o hydra.launcher.partition=gpu with --launcher slurm: no '+' needed. It failed before because the grid composed
    every -o into each row's config, where the basic launcher (the default) has no 'partition'; the rows now get the
    run overrides only and the launch command the hydra.* ones after hydra/launcher=slurm, whose config has the key."""
    from hydra import compose as hydra_compose, initialize_config_dir

    import gsm.reproduce
    from gsm.grid import CONFIG_DIR

    import gsm.data_check

    monkeypatch.setattr(gsm.launch.subprocess, "Popen", _FakeTrainer)
    monkeypatch.setattr(gsm.data_check, "check_data", lambda *a, **k: None)  # no COCO here: the launch is the subject
    _FakeTrainer.calls = []
    runs = tmp_path / "runs"
    argv = ["table3", "--launcher", "slurm", "-o", "hydra.launcher.partition=gpu", "-o", "hydra.launcher.timeout_min=60",
            "-o", "trainer.amp=none", "--runs", str(runs), "--out", str(tmp_path / "t"),
            "--figures-out", str(tmp_path / "f")]
    assert main(argv) == 0
    (cmd,) = _FakeTrainer.calls
    assert cmd[cmd.index("hydra/launcher=slurm") + 1:cmd.index("hydra/launcher=slurm") + 3] == [
        "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=60"]
    assert "trainer.amp=none" in cmd and not any(c.startswith("+") and "hydra" in c for c in cmd)
    # the launch's config as Hydra composes it for train.py -m: SLURM with the preset's defaults and our settings
    overrides = [c for c in cmd[3:] if not c.startswith("experiment=")]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="train"):
        cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu" and launcher.timeout_min == 60
    assert (launcher.gpus_per_node, launcher.cpus_per_task, launcher.mem_gb) == (1, 8, 64)  # the preset's
    # the rows are those of the run overrides alone (a launcher setting changes no run)
    grid = Grid(paper.experiments(3), "full", runs, ["trainer.amp=none"])
    for exp in cmd[3].split("=", 1)[1].split(","):
        assert row_key(compose(exp, [c for c in overrides if not c.startswith(("hydra", "output_root"))])) == \
            grid.rows[exp].key
    # launch_commands: the hydra.* overrides right after the launcher, before the seeds
    (cmd2,) = launch_commands(grid, grid.missing(), "slurm", [0, 1], ["hydra.launcher.partition=gpu"])
    assert cmd2[-3:] == ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "seed=0,1"]


def test_ctrl_c_in_main_is_one_line(tmp_path, monkeypatch, capsys):
    import gsm.reproduce

    def interrupted(args):
        raise KeyboardInterrupt

    for name in ("_run_table", "_estimate", "_status"):
        monkeypatch.setattr(gsm.reproduce, name, interrupted)
    for argv in (["table3"], ["table3", "--estimate"], ["status", "table3"]):
        assert main([*argv, "--runs", str(tmp_path / "runs")]) == 130
        assert capsys.readouterr().err == "gsm-tables: interrupted\n"


def _sigint_default() -> None:
    """preexec_fn: Ctrl-C at its default, unblocked, as a shell starts a foreground command (a suite started in the
    background has SIGINT ignored, and children inherit that; see tests/test_run_integrity.py)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


# gsm-tables with its launch command replaced by a child that waits like a trainer and stops like one on Ctrl-C
_WAITING_LAUNCH = waiting_launch("SIGINT", 130, "interrupted")


@pytest.mark.slow
@pytest.mark.parametrize("who", ["gsm-tables only", "the process group (a terminal's Ctrl-C)"])
def test_ctrl_c_during_a_launch_is_one_line_and_exit_130(tmp_path, who):
    import os
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-c", _WAITING_LAUNCH, "table3", "--runs", str(tmp_path / "runs"),
                             "--out", str(tmp_path / "t")], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_sigint_default, start_new_session=True)
    try:
        lines = []
        for line in proc.stdout:  # gsm-tables composes the grid, prints its command, starts the child
            lines.append(line)
            if line.startswith("child: training"):
                break
        assert any(line.startswith("gsm-tables: running ") for line in lines), lines
        start = time.monotonic()
        if who.startswith("gsm-tables"):
            proc.send_signal(signal.SIGINT)  # the child did not get it: gsm-tables passes it on
        else:
            os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "child: interrupted, checkpoint kept" in out  # the trainer stopped its own way, not killed
    assert err.splitlines() == ["gsm-tables: interrupted; the trainer stopped (runs that finished are kept, an "
                                "unfinished one keeps its last checkpoint): rerun the same command to resume"]
    assert "Traceback" not in out + err and time.monotonic() - start < 20
    assert not (tmp_path / "t").exists()  # nothing was tabled after the interrupted launch


def test_latex_float_fits_a_two_column_paper(tmp_path):
    """A table whose tabular is wider than one column of a two-column paper is a ``table*``, a narrow one stays a
    ``table``; both shrink to the line only where wider (never enlarged). Where pdflatex is installed, every table
    of a full grid is compiled in a two-column article: no overfull box (nothing runs into the margin)."""
    from gsm.report.render import COLUMN_WIDTH_PT, TableOutput, latex_environment, tabular_width_pt

    narrow = pd.DataFrame({"Method": ["VGG"], "error (%)": ["5.69"]})
    assert tabular_width_pt(narrow) <= COLUMN_WIDTH_PT and latex_environment(narrow) == "table"
    tex = TableOutput("n", "T", "C.", narrow, pd.DataFrame()).latex()
    assert "\\begin{table}[t]" in tex and "\\begin{table*}" not in tex and "\\resizebox{\\ifdim\\width>" in tex
    runs = tmp_path / "runs"
    write_run(runs, "table1/vgg16_cifar10_softmax", 0, top1_error=0.8999999761581421)
    paths = {n: build_table(n, grid_for(n, runs)).write(tmp_path / "t")[2] for n in (1, 2, 3, 5, 6)}
    for n, path in paths.items():
        assert "\\begin{table*}[t]" in path.read_text(), n  # every paper table is wider than one column
    if not shutil.which("pdflatex"):
        return
    for n, path in paths.items():
        doc = tmp_path / f"doc{n}.tex"
        doc.write_text("\\documentclass[10pt,twocolumn]{article}\n\\usepackage[margin=0.75in]{geometry}\n"
                       "\\usepackage{booktabs,graphicx}\n\\begin{document}\n\\input{" + str(path) + "}\nText.\n\\end{document}\n")
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        log = (tmp_path / f"doc{n}.log").read_text(errors="replace")
        assert proc.returncode == 0, log[-2000:]
        assert "Overfull \\hbox" not in log, (n, [ln for ln in log.splitlines() if "Overfull" in ln])
