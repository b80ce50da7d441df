"""scripts/gpu_check.sh runs once on scarce GPU time: what a CPU can check of it is checked here (its CPU
smoke mode on real sections, the budget that skips sections, the summary files)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "scripts" / "gpu_check.py"


def _run(*args: str, out) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_cpu_smoke_sections_pass_and_write_one_summary(tmp_path):
    proc = _run("--cpu-smoke", "--only", "heads,head_cost", out=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu_check_summary.json").read_text())
    checks = {row[1]: row for row in summary["rows"]}
    for head in ("softmax", "gsoftmax", "gsoftmax multi-label", "lsoftmax m=4", "msml multi-label"):
        assert checks[f"{head}: CPU vs cpu (float64)"][3] == "ok"
    assert any("gsoftmax: cost vs softmax" in c for c in checks) and "all checks passed" in proc.stdout
    assert (tmp_path / "gpu_check_summary.md").read_text().startswith("gsm GPU check on CPU")


def test_sections_that_do_not_fit_the_budget_are_skipped_not_started(tmp_path):
    proc = _run("--only", "heads,compile_densenet", "--budget", "10", out=tmp_path)  # no GPU needed: nothing starts
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((tmp_path / "gpu_check_summary.json").read_text())["rows"]
    assert [r[1] for r in rows] == ["heads: skipped", "compile_densenet: skipped"]
    assert "needs 20 s" in rows[0][2] and "needs 300 s" in rows[1][2]
