"""What the ``cluster`` tests share (tests/test_cluster_*.py): when they may run, waiting for a state, comparing a
run's numbers with an uninterrupted run's.

The cluster tests install system packages and start daemons (SLURM, Ray) and take minutes, so they run only when
asked for: ``make test-cluster`` (``pytest -m cluster``); ``make test`` deselects them. Where they cannot run (not
root, no apt-get, not Linux) each skips with one line saying why, except in CI (``CI=true``), where that line is a
failure: CI must show that they ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# every value of a run's history that is a number of the run (not a duration)
TIMINGS = ("train_seconds", "eval_seconds", "checkpoint_seconds", "images_per_second")
FINAL = ("top1_error_frac", "top5_error_frac", "test_loss", "learned", "test_outputs_sha256")


def cannot_run(reason: str) -> None:
    """Skip with ``reason``; in CI (CI=true) fail instead: there the cluster tests must run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"cluster test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_selected(request: pytest.FixtureRequest) -> None:
    """The cluster tests run only when selected with ``-m cluster`` (make test-cluster): they install system
    packages and start daemons."""
    if "cluster" not in (request.config.getoption("markexpr", "") or "") or \
            "not cluster" in (request.config.getoption("markexpr", "") or ""):
        pytest.skip("a cluster test: run it with make test-cluster (pytest -m cluster); it installs and starts daemons")


def wait_for(what: str, check: Callable[[], T], timeout: float, every: float = 0.5,
             alive: subprocess.Popen | None = None) -> T:
    """``check()``'s first truthy value, polled every ``every`` seconds; fails after ``timeout`` seconds (or when
    ``alive`` has ended before the state came) naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if alive is not None and alive.poll() is not None:
            value = check()
            if value:
                return value
            pytest.fail(f"the command ended (exit {alive.returncode}) before {what}", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)
        time.sleep(every)


def checkpoint_epoch(run_dir: Path) -> int:
    """The epoch of the run's checkpoints/last.pt (0 without one, or while it is being replaced)."""
    path = run_dir / "checkpoints" / "last.pt"
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001 - absent, or replaced right now (atomic rename): 0, asked again
        return 0


def run_dirs(root: Path) -> list[Path]:
    """The run folders under an output_root (those with a train.log)."""
    return sorted(p.parent for p in Path(root).rglob("train.log") if "sweeps" not in p.parts)


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def numbers(res: dict) -> dict:
    """What must be equal between a run and the same run uninterrupted: every epoch's numbers (lr, train loss,
    test metrics; not its durations) and the final metrics, learned mu/sigma and the test outputs' hash."""
    history = [{k: v for k, v in row.items() if k not in TIMINGS} for row in res["history"]]
    return {"history": history, **{k: res.get(k) for k in FINAL}}


def assert_same_numbers(got: dict, want: dict) -> None:
    a, b = numbers(got), numbers(want)
    assert len(a["history"]) == len(b["history"]) == int(want["epochs"]), (len(a["history"]), len(b["history"]))
    for i, (x, y) in enumerate(zip(a["history"], b["history"])):
        assert x == y, f"epoch {i + 1} differs from the uninterrupted run's:\n{x}\n{y}"
    for key in FINAL:
        assert a[key] == b[key], f"{key} differs from the uninterrupted run's: {a[key]!r} != {b[key]!r}"
