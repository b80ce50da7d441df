"""torchrun with restarts (issue #27): ``torchrun --nproc_per_node=2 --max-restarts=1`` with one rank killed
mid-epoch. torchrun's agent stops the other rank (SIGTERM: gsm's one line, the last checkpoint kept) and starts the
group again; the restarted group (the same world size, so the resume is allowed) resumes from the last checkpoint
and ends with the numbers of an uninterrupted 2-process run.

Marked ``cluster`` (make test-cluster; cluster_support.py): it is the fault behaviour of a real multi-process
launcher, measured, next to the SLURM and Ray ones.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cluster_support import (REPO, assert_same_numbers, cannot_run, checkpoint_epoch, require_selected, results,
                             run_dirs, wait_for)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TORCHRUN = Path(sys.executable).with_name("torchrun")
EPOCHS = 6
ARGS = (f"trainer.epochs={EPOCHS}", "dataset.subset=512", "trainer.analyze_train=false", "trainer.cpu_threads=1",
        "trainer.log_every_n_steps=1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(root: Path, log: Path) -> subprocess.Popen:
    cmd = [str(TORCHRUN), "--nproc_per_node=2", "--max-restarts=1", "--rdzv-backend=c10d",
           f"--rdzv-endpoint=127.0.0.1:{free_port()}",
           str(REPO / "train.py"), f"output_root={root}", *ARGS]
    return subprocess.Popen(cmd, cwd=REPO, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"})


def rank_pid(agent: int, rank: int) -> int | None:
    """The pid of the worker process of ``rank`` that torchrun's agent (pid ``agent``) started."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == agent and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


def finished(proc: subprocess.Popen, log: Path, timeout: float = 1200) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"torchrun did not end within {timeout:.0f} s:\n{log.read_text()[-4000:]}", pytrace=False)
    return log.read_text()


def test_torchrun_restarts_the_group_after_a_rank_is_killed_and_it_resumes_to_the_uninterrupted_numbers(request, tmp_path):
    require_selected(request)
    if sys.platform != "linux" or not TORCHRUN.exists():
        cannot_run(f"needs Linux and torchrun ({TORCHRUN}; make install installs torch)")
    killed_root, ref_root = tmp_path / "killed", tmp_path / "reference"
    log, ref_log = tmp_path / "killed.log", tmp_path / "reference.log"
    proc = torchrun(killed_root, log)
    reference = torchrun(ref_root, ref_log)  # the same command, uninterrupted, beside it

    run = wait_for("the run's first checkpoint", lambda: next((d for d in run_dirs(killed_root)
                                                               if checkpoint_epoch(d) >= 1), None), 900, alive=proc)
    at = checkpoint_epoch(run)
    # mid-epoch: a progress line of the epoch after the checkpoint's
    wait_for(f"a step of epoch {at + 1}", lambda: re.search(rf"epoch {at + 1}/{EPOCHS} step \d+/",
                                                             (run / "train.log").read_text()), 600, every=0.1, alive=proc)
    pid = wait_for("rank 1's process", lambda: rank_pid(proc.pid, 1), 60, alive=proc)
    os.kill(pid, signal.SIGKILL)

    text = finished(proc, log)
    assert proc.returncode == 0, text[-4000:]
    ref_text = finished(reference, ref_log)
    assert reference.returncode == 0, ref_text[-4000:]
    train_log = (run / "train.log").read_text()
    resumed = [int(e) for e in re.findall(rf"resuming .* from epoch (\d+)/{EPOCHS}", train_log)]
    assert resumed and resumed[0] >= at, train_log[-3000:]
    assert "restart" in text.lower(), text[-3000:]  # torchrun's agent says it restarts the workers
    res, (ref,) = results(run), run_dirs(ref_root)
    assert res["world_size"] == 2
    assert_same_numbers(res, results(ref))
