"""A requeued job on a cluster: SIGTERM stops a run like Ctrl-C, and a resume refuses another environment.

Real CLI, tiny digits runs on the CPU. The SIGTERM case compares the rerun's final numbers with an uninterrupted
run; the environment cases assert that nothing is recorded when a resume is refused, and that
``trainer.resume_anyway=true`` records which epochs ran where.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from conftest import REPO, run_cli

ARGS = ("dataset.subset=128", "trainer.analyze_train=false", "trainer.cpu_threads=1")
COMPARED = ("top1_error_frac", "top5_error_frac", "test_loss", "learned")


def _one(root: Path, pattern: str) -> Path:
    found = list(root.rglob(pattern))
    assert len(found) == 1, found
    return found[0]


def _checkpoint_epoch(root: Path) -> int:
    ckpts = list(root.rglob("checkpoints/last.pt"))
    if not ckpts:
        return 0
    try:
        return int(torch.load(ckpts[0], map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001 - being renamed into place right now
        return 0


def _terminated_run(root: Path) -> tuple[subprocess.CompletedProcess, int]:
    """Start the run, SIGTERM it once its first checkpoint is on disk; returns the process and that epoch."""
    cmd = [sys.executable, str(REPO / "train.py"), f"output_root={root}", *ARGS, "trainer.epochs=6"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and _checkpoint_epoch(root) < 1:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), _checkpoint_epoch(root)


@pytest.fixture(scope="session")
def terminated_store(tmp_path_factory) -> Path:
    """One run SIGTERMed after its first checkpoint (:func:`_terminated_run`), made once per session (all xdist
    workers): ``out/`` is its output_root, ``process.json`` the process's exit code, stderr and the epoch kept."""
    base = tmp_path_factory.getbasetemp()
    store = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-runs"
    store.mkdir(exist_ok=True)
    root = store / "terminated"
    with FileLock(str(store / "terminated.lock")):
        if not (root / "process.json").exists():
            shutil.rmtree(root, ignore_errors=True)
            stopped, epoch = _terminated_run(root / "out")
            (root / "process.json").write_text(json.dumps(
                {"returncode": stopped.returncode, "stderr": stopped.stderr, "epoch": epoch}))
    return root


@pytest.fixture
def terminated(terminated_store, tmp_path) -> tuple[Path, subprocess.CompletedProcess, int]:
    """This test's own copy of the terminated run: (output_root, the stopped process, the epoch it kept)."""
    dest = tmp_path / "run"
    shutil.copytree(terminated_store / "out", dest)
    info = json.loads((terminated_store / "process.json").read_text())
    return dest, subprocess.CompletedProcess([], info["returncode"], "", info["stderr"]), info["epoch"]


@pytest.mark.slow
def test_sigterm_keeps_the_epoch_releases_the_lock_and_the_rerun_matches(terminated, trained):
    root, stopped, epoch = terminated
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    line = stopped.stderr.strip().splitlines()[-1]
    assert line.startswith("gsm: terminated (SIGTERM) in epoch") and f"the checkpoint of epoch {epoch} is kept" in line
    assert "Traceback" not in stopped.stderr
    run_dir = _one(root, "checkpoints/last.pt").parent.parent
    assert not (run_dir / ".lock.owner").exists() and not (run_dir / "results.json").exists()
    assert 1 <= epoch < 6

    again = run_cli(f"output_root={root}", *ARGS, "trainer.epochs=6")  # the same command resumes
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"from epoch {epoch}/6" in _one(root, "train.log").read_text()
    got = json.loads(_one(root, "results.json").read_text())
    want = json.loads(_one(trained("six_epochs"), "results.json").read_text())  # the same command, uninterrupted
    for key in COMPARED:
        assert got[key] == want[key], key
    assert [r["test_loss"] for r in got["history"]] == [r["test_loss"] for r in want["history"]]


@pytest.mark.slow
def test_resume_in_another_environment_is_refused_unless_asked(terminated):
    root, stopped, epoch = terminated
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    run_dir = _one(root, "checkpoints/last.pt").parent.parent
    args = (f"output_root={root}", "dataset.subset=128", "trainer.analyze_train=false", "trainer.epochs=6")

    other = run_cli(*args, "trainer.cpu_threads=2")  # a requeue onto another allocation
    assert other.returncode == 2, other.stderr[-2000:]
    line = other.stderr.strip().splitlines()[-1]
    assert line.startswith(f"gsm: error: cannot resume {run_dir}") and "cpu_threads 1 → 2" in line
    assert "trainer.resume_anyway=true" in line and "Traceback" not in other.stderr
    assert not (run_dir / "results.json").exists() and _checkpoint_epoch(root) == epoch  # nothing changed

    resumed = run_cli(*args, "trainer.cpu_threads=2", "trainer.resume_anyway=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = json.loads((run_dir / "results.json").read_text())
    segments = record["environment"]["segments"]
    assert [s["cpu_threads"] for s in segments] == [1, 2] and segments[1]["first_epoch"] == epoch + 1
    assert record["environment"]["cpu_threads"] == 2


def test_environment_differences_that_count():
    from gsm.environment import resume_differences

    base = {"world_size": 1, "device": "cpu", "torch": "2.14.1", "git_rev": "abc", "git_dirty": False, "cpu_threads": 2,
            "hostname": "a", "num_workers": 4, "device_name": "x86_64"}
    assert resume_differences(base, dict(base, hostname="b", num_workers=0, device_name="arm")) == []
    assert resume_differences(base, dict(base, world_size=2)) == ["world_size 1 → 2"]
    assert resume_differences(base, dict(base, git_rev="def", cpu_threads=1)) == ["git_rev abc → def", "cpu_threads 2 → 1"]
    gpu = dict(base, device="cuda")
    assert resume_differences(gpu, dict(gpu, cpu_threads=8)) == []  # on a GPU the threads only feed the loader
    assert resume_differences(base, gpu) == ["device cpu → cuda"]


def test_non_finite_test_loss_is_divergence():
    from gsm.train import check_finite as _check_finite
    from gsm.errors import TrainingError

    with pytest.raises(TrainingError, match="epoch 3: the test loss is inf"):
        _check_finite({"loss": float("inf"), "top1_error": 0.5}, 3)
    _check_finite({"loss": 0.3, "mAP": float("nan"), "AP": [None]}, 3)  # no positives: no value, not divergence
