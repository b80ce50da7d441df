"""``gsm-tables sweep``: every run under a folder, the settings that vary, seeds collapsed to mean ± std."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
from synthetic_runs import write_run

from gsm import paper
from gsm.reproduce import main

GRID = {"table4/resnet101_nuswide_gsoftmax_mu0_sigma1": (0.0, 1.0), "table4/resnet101_nuswide_gsoftmax_mu0_sigma2": (0.0, 2.0),
        "table4/resnet101_nuswide_gsoftmax_mu-0p05_sigma1": (-0.05, 1.0)}


def test_sweep_table_varying_keys_and_seed_means(tmp_path, capsys):
    runs = tmp_path / "runs"
    values = {}
    for i, exp in enumerate(GRID):
        for seed in (0, 1) if i < 2 else (0,):
            values[(exp, seed)] = 0.5 + 0.1 * i + 0.03 * seed
            write_run(runs, exp, seed, mAP=values[(exp, seed)], CF1=0.4, OF1=0.45)
    assert main(["sweep", "--runs", str(runs)]) == 0
    printed = capsys.readouterr().out
    md, csv = (tmp_path / "tables" / "sweep.md").read_text(), pd.read_csv(tmp_path / "tables" / "sweep.csv")
    assert md in printed and "3 settings" in md and "5 runs" in md
    # the section (dataset, model), the run folders, then the keys that differ, nothing else
    assert list(csv.columns[:csv.columns.get_loc("n")]) == ["dataset", "model", "run", "head.mu", "head.sigma"]
    assert len(csv) == 3
    for exp, (mu, sigma) in GRID.items():
        row = csv[(csv["head.mu"] == mu) & (csv["head.sigma"] == sigma)].iloc[0]
        vals = [100 * v for (e, _), v in values.items() if e == exp]
        assert row.n == len(vals) and row.mAP_mean_pct == round(np.mean(vals), 2)
        assert len(row.run.split(";")) == len(vals)  # the run folders, one per seed
        if len(vals) > 1:
            assert row.mAP_std_pct == round(np.std(vals, ddof=1), 2)
            assert f"{np.mean(vals):.2f} ± {np.std(vals, ddof=1):.2f}" in md and "n = 2 (seeds 0, 1)" in md
        else:
            assert np.isnan(row.mAP_std_pct)
    assert "top-1 error" not in md  # only metrics the runs have


def test_sweep_of_one_setting_and_of_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "table1/vgg16_cifar10_softmax", 0, top1_error=0.1)
    write_run(runs, "table1/vgg16_cifar10_softmax", 1, top1_error=0.2)
    assert main(["sweep", "--runs", str(runs), "--out", str(tmp_path / "o")]) == 0
    csv = pd.read_csv(tmp_path / "o" / "sweep.csv")
    assert len(csv) == 1 and csv.n[0] == 2 and np.isclose(csv.top1_error_mean_pct[0], 15.0)
    (tmp_path / "empty").mkdir()
    assert main(["sweep", "--runs", str(tmp_path / "empty")]) == 2
    assert "no readable results.json" in capsys.readouterr().err


def test_estimate_flag_calls_run_estimate_with_the_tables_experiments(monkeypatch):
    calls = []
    fake = types.ModuleType("gsm.estimate")

    def run_estimate(experiments, profile, overrides, launcher, device="auto", peak_tflops=None):
        calls.append((experiments, profile, overrides, launcher, device, peak_tflops))
        return 0

    fake.run_estimate = run_estimate
    monkeypatch.setitem(sys.modules, "gsm.estimate", fake)
    assert main(["table3", "--estimate", "--peak-tflops", "400", "--device", "cuda", "--profile", "smoke",
                 "-o", "trainer.amp=none"]) == 0
    assert calls == [(paper.experiments(3), "smoke", ["trainer.amp=none"], "basic", "cuda", 400.0)]
    assert main(["sweep", "--estimate"]) == 2


def test_help_is_plain_text(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":mod:" not in out and "sweep" in out and "--estimate" in out


def test_sweep_shows_both_definitions_and_the_best_epoch_when_records_have_them(tmp_path):
    """Schema-3 records: VOC mAP and per-class-mean C-F1 beside eq. 21 / eq. 22, best-epoch error beside the last;
    only schema-2 records: those columns are left out, as for any metric no run has."""
    new, old = tmp_path / "new" / "runs", tmp_path / "old" / "runs"
    exp = "table4/resnet101_nuswide_gsoftmax_mu0_sigma1"
    write_run(new, exp, 0, mAP=0.5, mAP_voc=0.52, CF1=0.41, CF1_mean=0.39)
    write_run(new, "table1/vgg16_cifar10_softmax", 0, top1_error=0.1, best_top1_error=0.08, best_epoch=3)
    write_run(old, exp, 0, mAP=0.5, schema_version=2)
    assert main(["sweep", "--runs", str(new)]) == 0
    csv = pd.read_csv(tmp_path / "new" / "tables" / "sweep.csv")
    ml = csv[csv.mAP_mean_pct.notna()].iloc[0]
    assert (ml.mAP_mean_pct, ml.mAP_voc_mean_pct, ml.CF1_mean_pct, ml.CF1_mean_mean_pct) == (50.0, 52.0, 41.0, 39.0)
    assert csv[csv.top1_error_mean_pct.notna()].iloc[0].best_top1_error_mean_pct == 8.0
    md = (tmp_path / "new" / "tables" / "sweep.md").read_text()
    assert "mAP VOC (%)" in md and "mAP eq. 21 (%)" in md and "C-F1 per-class mean (%)" in md
    assert main(["sweep", "--runs", str(old)]) == 0
    md = (tmp_path / "old" / "tables" / "sweep.md").read_text()
    assert "mAP eq. 21 (%)" in md and "VOC" not in md and "best-epoch" not in md


def _sections(md: str) -> dict[str, list[dict[str, str]]]:
    """The Markdown's sections: heading -> its table's rows as {column: cell}."""
    out: dict[str, list[dict[str, str]]] = {}
    heading, header = None, None
    for ln in md.splitlines():
        if ln.startswith("## "):
            heading, header = ln[3:], None
            out[heading] = []
        elif ln.startswith("| ") and heading is not None:
            cells = [c.strip() for c in ln.strip().strip("|").split(" | ")]
            if header is None:
                header = cells
            else:
                out[heading].append(dict(zip(header, cells)))
    return out


def test_sweep_of_a_mixed_folder_shows_per_dataset_and_model_only_what_varies(tmp_path):
    """A folder of Table I, III and IV runs: one section per dataset and model, each with a run column, the
    settings that differ among its own runs (head.mu of G-softmax runs only: a softmax run leaves it empty) and
    its own metrics; the CSV holds the numbers rounded as displayed (float32 noise gone)."""
    runs = tmp_path / "runs"
    noisy = 0.8999999761581421  # a float32 error fraction: 89.99999761581421 %
    write_run(runs, "table1/vgg16_cifar10_softmax", 0, top1_error=noisy)
    g_runs = [write_run(runs, "table1/vgg16_cifar10_gsoftmax", seed, top1_error=e).parent.name
              for seed, e in ((0, 0.25), (1, 0.2))]
    write_run(runs, "table1/densenet_cifar100_softmax", 0, top1_error=0.5)
    for exp in ("table3/resnet101_coco_softmax", "table3/resnet101_coco_gsoftmax_mu0_sigma1",
                "table3/resnet101_coco_gsoftmax_mu0p1_sigma1"):
        write_run(runs, exp, 0)
    write_run(runs, "table4/resnet101_nuswide_gsoftmax_mu0_sigma1", 0)
    write_run(runs, "table4/resnet101_nuswide_gsoftmax_mu0_sigma2", 0)
    assert main(["sweep", "--runs", str(runs)]) == 0
    md, csv = (tmp_path / "tables" / "sweep.md").read_text(), pd.read_csv(tmp_path / "tables" / "sweep.csv")
    sections = _sections(md)
    assert [h.split(":")[0] for h in sections] == ["cifar10, vgg16", "cifar100, densenet", "coco, resnet101",
                                                   "nuswide, resnet101"]
    columns = {h.split(":")[0]: list(rows[0]) for h, rows in sections.items()}
    single = ["top-1 error (%)", "best-epoch top-1 error (%)", "top-5 error (%)"]
    assert columns["cifar10, vgg16"] == ["run", "head.name", "seeds", *single]
    assert columns["cifar100, densenet"] == ["run", "seeds", *single]
    multi = ["mAP eq. 21 (%)", "mAP VOC (%)", "C-F1 eq. 22 (%)", "C-F1 per-class mean (%)", "O-F1 (%)"]
    assert columns["coco, resnet101"] == ["run", "head.name", "head.mu", "seeds", *multi]
    assert columns["nuswide, resnet101"] == ["run", "head.sigma", "seeds", *multi]
    assert all(cell not in ("null", "None", "nan", "") for rows in sections.values() for r in rows for cell in r.values())
    coco = {r["head.name"] + r["head.mu"]: r for r in sections[next(h for h in sections if h.startswith("coco"))]}
    assert set(coco) == {"softmax—", "gsoftmax0.0", "gsoftmax0.1"}  # —: a softmax head has no μ
    vgg = {r["head.name"]: r for r in sections[next(h for h in sections if h.startswith("cifar10,"))]}
    assert vgg["softmax"]["top-1 error (%)"] == "90.00" and vgg["gsoftmax"]["top-1 error (%)"] == "22.50 ± 3.54"
    assert vgg["gsoftmax"]["run"] == ", ".join(g_runs)  # the run folders, in seed order
    # the CSV: the section, the run folders, the union of the sections' varying settings, rounded numbers
    assert list(csv.columns[:csv.columns.get_loc("n")]) == ["dataset", "model", "run", "head.name", "head.mu",
                                                             "head.sigma"]
    soft = csv[(csv.dataset == "cifar10") & (csv["head.name"] == "softmax")].iloc[0]
    assert soft.top1_error_mean_pct == 90.0 and "89.999" not in (tmp_path / "tables" / "sweep.csv").read_text()
    g = csv[(csv.dataset == "cifar10") & (csv["head.name"] == "gsoftmax")].iloc[0]
    assert (g.top1_error_mean_pct, g.top1_error_std_pct) == (22.5, round(float(np.std([25.0, 20.0], ddof=1)), 2))
    for _, row in csv.iterrows():  # every number in the CSV is the one displayed
        for col in [c for c in csv.columns if c.endswith("_pct")]:
            if np.isfinite(row[col]):
                assert row[col] == round(row[col], 2), (col, row[col])
