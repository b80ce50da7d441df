"""scripts/gpu_check.sh runs once on scarce GPU time: what a CPU can check of it is checked here (its CPU
smoke mode on the real sections of the default run, the budget that skips sections, the summary files, the
A/B statistics and the goals)."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "scripts" / "gpu_check.py"
_spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gpu_check  # dataclasses look their module up by name
_spec.loader.exec_module(gpu_check)


def _run(*args: str, out) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_cpu_smoke_sections_pass_and_write_one_summary(tmp_path):
    """Every section of the default run and the heads check, all in the smoke run's one process."""
    sections = ["heads", "profile", "head_cost", "compile", "compile_densenet", "estimate1"]
    proc = _run("--cpu-smoke", "--only", ",".join(sections), out=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu_check_summary.json").read_text())
    checks = {row[1]: row for row in summary["rows"]}
    assert [c for c in checks if c.endswith(": section time")] == [f"{s}: section time" for s in sections]
    for head in ("softmax", "gsoftmax", "gsoftmax multi-label", "lsoftmax m=4", "msml multi-label"):
        assert checks[f"{head}: CPU vs cpu (float64)"][3] == "ok"
    # profile: one row per smoke recipe whose shares add up to 100 % (each rounded), and the table below the summary
    profiled = [row for c, row in checks.items() if c.endswith("where a training step's time goes")]
    assert len(profiled) == 2 + gpu_check.shared_concat_available()
    for row in profiled:
        shares = [int(x) for x in re.findall(r"(\d+)%", row[2].split(";")[0])]
        assert len(shares) == 9 and abs(sum(shares) - 100) <= 5, row
    md = (tmp_path / "gpu_check_summary.md").read_text()
    assert md.startswith("gsm GPU check on CPU") and "| recipe | conv | matmul | norm |" in md
    # head_cost: the cost with its spread and rounds; the fused arm measured or skipped with a note
    cost = checks["ConvNet multi-label b8 gsoftmax: cost vs softmax"][2]
    assert re.search(r"[+-]\d+\.\d% ± \d+\.\d% \(95 % interval of the mean over \d+ rounds", cost), cost
    fused = [c for c in checks if "gsoftmax-fused" in c]
    assert fused and (gpu_check.fused_available() or "skipped" in checks[fused[0]][2])
    # compile sections: today's eager first, every other variant against it, the best of them
    wrn = "table1/wrn_cifar100_gsoftmax [smoke size]"
    assert "x eager" in checks[f"{wrn} compiled (eager on CPU)"][2] and f"{wrn}: best of 2" in checks
    dn = "table1/densenet_cifar100_gsoftmax [smoke size]"
    assert "img/s" in checks[f"{dn} eager today"][2]
    assert "x eager today" in checks[f"{dn} CUDA graphs (reduce-overhead) (eager on CPU)"][2]
    concat = checks[f"{dn} shared_concat, eager"][2]
    assert ("x eager today" in concat) if gpu_check.shared_concat_available() else concat.startswith("skipped")
    # estimate1: Table I's total against its goal (a CPU's device-hours say nothing about it: info)
    assert checks["table1 total"][3] == "ok"
    assert checks["table1 estimate vs goal ≤ 50 GPU-hours"][2].endswith("(as make estimate TABLE=table1, with "
                                                                      "trainer.compile=false)")
    assert "all checks passed" in proc.stdout


def test_sections_that_do_not_fit_the_budget_are_skipped_not_started(tmp_path):
    proc = _run("--only", "heads,compile_densenet", "--budget", "10", out=tmp_path)  # no GPU needed: nothing starts
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((tmp_path / "gpu_check_summary.json").read_text())["rows"]
    assert [r[1] for r in rows] == ["heads: skipped", "compile_densenet: skipped"]
    assert "needs 20 s" in rows[0][2] and "needs 230 s" in rows[1][2]
    bad = _run("--only", "profile,nope", out=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith(
        "error: --only: unknown section(s) nope; valid: " + ", ".join(gpu_check.SECTIONS))


def test_the_default_run_fits_its_budget_and_measures_what_the_issue_asks():
    default = [name for name, s in gpu_check.SECTIONS.items() if s.default]
    assert default == ["profile", "compile_densenet", "head_cost", "compile", "estimate1"]
    assert sum(gpu_check.SECTIONS[n].needs for n in default) <= 450  # --budget's default
    assert [label for label, _ in gpu_check.PROFILE_RECIPES] == [
        "WRN-40-14 C-100 b128", "DenseNet-100-24 C-100 b32", "DenseNet-100-24 C-10 b50", "ResNet-101 448² COCO b16"]
    exp, variants = gpu_check.compile_plan("densenet")
    assert exp == "table1/densenet_cifar100_gsoftmax"
    assert [name for name, _ in variants] == ["eager today", "shared_concat, eager", "CUDA graphs (reduce-overhead)"]
    assert "trainer.compile_mode=reduce-overhead" in variants[2][1] and "trainer.compile=false" in variants[0][1]
    assert (variants[1][1] is not None) == gpu_check.shared_concat_available()


def _t_cdf(t: float, df: int, n: int = 4000) -> float:
    """Student's t distribution function, its density integrated from 0 to t by Simpson's rule."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    h = t / n
    total = sum((1 if i in (0, n) else 4 if i % 2 else 2) * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(n + 1))
    return 0.5 + c * total * h / 3


def test_t_quantiles_are_the_975_points_of_students_t():
    for df in (1, 2, 5, 12, 30, 31, 45, 200):
        assert _t_cdf(gpu_check.t975(df), df) == pytest.approx(0.975, abs=2e-5)
    with pytest.raises(ValueError):
        gpu_check.t975(0)


def test_paired_cost_is_the_mean_per_round_cost_with_its_95_percent_interval():
    base = [100.0, 102.0, 98.0, 101.0]
    head = [98.0, 100.0, 97.0, 98.0]
    costs = [b / h - 1 for b, h in zip(base, head)]
    mean = sum(costs) / 4
    sd = (sum((c - mean) ** 2 for c in costs) / 3) ** 0.5
    c = gpu_check.PairedCost.of(base, head)
    assert c.rounds == 4 and c.cost == pytest.approx(mean) and c.round_std == pytest.approx(sd)
    assert c.spread == pytest.approx(3.182 * sd / 2)
    one = gpu_check.PairedCost.of([100.0], [98.0])
    assert one.rounds == 1 and one.spread == float("inf")  # one round settles nothing


def test_the_estimate_total_against_its_goal():
    row = gpu_check.goal_row("table1", "total: 24 run(s), one seed each: 76.7 GPU-hours", 50.0, ["trainer.compile=false"], False)
    assert row == ("table1 estimate vs goal ≤ 50 GPU-hours", "76.7 GPU-hours (153% of the goal; as make estimate "
                   "TABLE=table1, with trainer.compile=false)", "miss")
    assert gpu_check.goal_row("table1", "total: 24 run(s), one seed each: 1,043 GPU-hours", 1100.0, [], False)[2] == "ok"
    assert gpu_check.goal_row("table1", "total: 2 run(s), one seed each: 0.003 device-hours (this CPU)", 50.0, [],
                              False)[2] == "info"
    assert gpu_check.goal_row("table1", "total: nothing", 50.0, [], False)[2] == "FAIL"


def test_an_error_row_keeps_the_start_and_the_reason():
    assert gpu_check.error_text(ValueError("short")) == "ValueError: short"
    long = gpu_check.error_text(RuntimeError("cannot compose " + "x=1 " * 100 + "\nbecause: the key is unknown"), 120)
    assert len(long) <= 120 and long.startswith("RuntimeError: cannot compose") and long.endswith("the key is unknown")
