from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python train.py ARGS`` as a user would; returns the finished process (text output)."""
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def cli(tmp_path):
    """run_cli with output_root in a temporary folder."""

    def _run(*args: str, **kw) -> subprocess.CompletedProcess:
        return run_cli(f"output_root={tmp_path}", *args, **kw)

    _run.root = tmp_path
    return _run
