"""Ray as users run it (issue #27): a head started with ``ray start --head`` as a process of its own, gsm's
``gsm_ray`` launcher joining it with ``hydra.launcher.ray.init.address=auto``, and a Ray worker killed mid-run.

Marked ``cluster`` (make test-cluster; cluster_support.py). The head gets a home folder of its own (Ray keeps its
authentication token in ~/.ray) and RAY_ADDRESS names it, so another Ray on the machine is never joined.
"""

from __future__ import annotations

import json
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

RAY = Path(sys.executable).with_name("ray")
ARGS = ("trainer.epochs=12", "dataset.subset=256", "trainer.analyze_train=false", "trainer.cpu_threads=1")


@pytest.fixture(scope="module")
def ray_head(request, tmp_path_factory):
    """``ray start --head --block`` (two CPUs, on 127.0.0.1); the environment that joins it. Stopped afterwards by
    ending that process (``ray stop`` would stop every Ray of this user on the machine)."""
    require_selected(request)
    if sys.platform != "linux":
        cannot_run(f"not Linux ({sys.platform}): the Ray tests start a Ray head here")
    if not RAY.exists():
        cannot_run(f"{RAY} is missing: Ray is not installed (pip install 'gsm[sweep]'; make install does it)")
    home = tmp_path_factory.mktemp("ray-home")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
    log = home / "head.log"
    head = subprocess.Popen([str(RAY), "start", "--head", "--block", "--num-cpus=2", "--node-ip-address=127.0.0.1",
                             f"--port={port}", "--include-dashboard=false", "--disable-usage-stats"],
                            env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for("ray start --head to report the runtime started", lambda: "Ray runtime started" in log.read_text(),
                 600, alive=head)
        yield {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # ray start --block stops the head's processes on SIGTERM
        try:
            head.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        # the head's address file (what address=auto and ray.init() without an address join) must not outlive it:
        # a later ray.init() on this machine would try to join the dead head
        current = Path("/tmp/ray/ray_current_cluster")
        if current.exists() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()


def ray_sweep(tmp_path: Path, *extra: str) -> tuple[list[str], Path, Path]:
    """``train.py -m`` through gsm_ray joining the head: the same run into two folders (job 0: the one a worker is
    killed under, job 1: the uninterrupted reference)."""
    a, b = tmp_path / "killed", tmp_path / "reference"
    cmd = [sys.executable, str(REPO / "train.py"), "-m", "hydra/launcher=gsm_ray", "hydra.launcher.ray.init.address=auto",
           *extra, f"output_root={a},{b}", f"hydra.sweep.dir={tmp_path / 'sweep'}", *ARGS]
    return cmd, a, b


def kill_worker_mid_run(cmd: list[str], root: Path, env: dict, log: Path) -> tuple[subprocess.Popen, Path, int]:
    """Start the sweep; once job 0's run has a checkpoint, SIGKILL the Ray worker process training it (the pid its
    run lock names). Returns the running command, the run folder and the checkpoint's epoch at the kill."""
    proc = subprocess.Popen(cmd, cwd=REPO, env={**env, "HYDRA_FULL_ERROR": "0"}, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    run = wait_for("job 0's first checkpoint", lambda: next((d for d in run_dirs(root) if checkpoint_epoch(d) >= 1), None),
                   900, alive=proc)
    pid = json.loads((run / ".lock.owner").read_text())["pid"]
    assert "ray::" in Path(f"/proc/{pid}/cmdline").read_text(), "the run's lock holder is not a Ray worker"
    at = checkpoint_epoch(run)
    os.kill(pid, signal.SIGKILL)
    return proc, run, at


def ended(proc: subprocess.Popen, log: Path, timeout: float = 1800) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the sweep did not end within {timeout:.0f} s:\n{log.read_text()[-4000:]}", pytrace=False)
    return log.read_text()


def test_ray_worker_killed_ray_retries_the_task_which_resumes_to_the_uninterrupted_numbers(ray_head, tmp_path):
    """Ray's default for a task whose worker dies (max_retries 3): it runs the task again in a new worker; the run
    resumes from its checkpoint there and ends with the numbers of the same run uninterrupted (job 1)."""
    cmd, a, b = ray_sweep(tmp_path)
    log = tmp_path / "sweep.log"
    proc, run, at = kill_worker_mid_run(cmd, a, ray_head, log)
    text = ended(proc, log)
    assert proc.returncode == 0, text[-4000:]
    assert "the task will be retried" in text
    resumed = re.findall(r"resuming .* from epoch (\d+)/12", (run / "train.log").read_text())
    assert resumed and int(resumed[0]) >= at
    (ref,) = run_dirs(b)
    assert_same_numbers(results(run), results(ref))


def test_ray_worker_killed_without_retries_listed_failed_exit_2_same_command_resumes(ray_head, tmp_path):
    """With hydra.launcher.ray.remote.max_retries=0 (or once Ray's retries are spent) the task fails: the other run
    finishes, the command lists the failed run and exits 2; the same command resumes it from its checkpoint (the
    finished run is skipped), and it ends with the uninterrupted run's numbers."""
    cmd, a, b = ray_sweep(tmp_path, "+hydra.launcher.ray.remote.max_retries=0")
    log = tmp_path / "sweep.log"
    proc, run, at = kill_worker_mid_run(cmd, a, ray_head, log)
    text = ended(proc, log)
    assert proc.returncode == 2, text[-4000:]
    failed = [line for line in text.splitlines() if line.startswith("gsm:   job ")]
    assert len(failed) == 1 and failed[0].startswith(f"gsm:   job 0 (output_root={a} ") and "WorkerCrashedError" in failed[0]
    (ref,) = run_dirs(b)
    assert (ref / "results.json").is_file() and not (run / "results.json").exists()
    at = checkpoint_epoch(run)
    mtime = (ref / "results.json").stat().st_mtime_ns

    again_log = tmp_path / "again.log"
    # the same command (its sweep folder a new one, as gsm-tables' are: the first one's failure notes stay there)
    cmd = [c if not c.startswith("hydra.sweep.dir=") else f"hydra.sweep.dir={tmp_path / 'sweep-again'}" for c in cmd]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**ray_head, "HYDRA_FULL_ERROR": "0"}, stdout=open(again_log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    text = ended(proc, again_log)
    assert proc.returncode == 0, text[-4000:]
    assert (ref / "results.json").stat().st_mtime_ns == mtime  # the finished run is not trained again
    assert f"from epoch {at}/12" in (run / "train.log").read_text()
    assert_same_numbers(results(run), results(ref))
