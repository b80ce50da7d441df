"""The sweep's CSV keeps a metric's std column only where some row has a std (two or more seeds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from synthetic_runs import write_run

from gsm.reproduce import main


def test_single_seed_sweep_has_no_empty_std_columns_and_two_seeds_bring_them_back(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "table1/vgg16_cifar10_softmax", 0, top1_error=0.10)
    write_run(runs, "table1/vgg16_cifar10_gsoftmax", 0, top1_error=0.08)
    assert main(["sweep", "--runs", str(runs), "--out", str(tmp_path / "a")]) == 0
    csv = pd.read_csv(tmp_path / "a" / "sweep.csv")
    assert "top1_error_mean_pct" in csv.columns and not [c for c in csv.columns if c.endswith("_std_pct")]
    assert not csv.isna().all().any()  # no column is empty in every row
    write_run(runs, "table1/vgg16_cifar10_softmax", 1, top1_error=0.12)
    assert main(["sweep", "--runs", str(runs), "--out", str(tmp_path / "b")]) == 0
    csv = pd.read_csv(tmp_path / "b" / "sweep.csv")
    two = csv[csv.n == 2].iloc[0]
    assert two.top1_error_std_pct == round(float(np.std([10.0, 12.0], ddof=1)), 2)
    assert np.isnan(csv[csv.n == 1].iloc[0].top1_error_std_pct)  # the single-seed row of a column that has values
    capsys.readouterr()
