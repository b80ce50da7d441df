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
    assert list(csv.columns[:2]) == ["head.mu", "head.sigma"]  # the keys that differ, nothing else
    assert len(csv) == 3
    for exp, (mu, sigma) in GRID.items():
        row = csv[(csv["head.mu"] == mu) & (csv["head.sigma"] == sigma)].iloc[0]
        vals = [100 * v for (e, _), v in values.items() if e == exp]
        assert row.n == len(vals) and row.mAP_mean_pct == np.mean(vals)
        if len(vals) > 1:
            assert np.isclose(row.mAP_std_pct, np.std(vals, ddof=1))
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
