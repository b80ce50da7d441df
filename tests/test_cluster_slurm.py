"""SLURM for real (issue #27): a one-node cluster started by scripts/slurm_local.sh, driven through gsm's own commands
(``gsm-tables table1 --launcher slurm``, ``train.py -m hydra/launcher=slurm``), and what each fault does.

Marked ``cluster``: ``make test-cluster`` runs them, ``make test`` does not (cluster_support.py says why). The
cluster has no accounting (no slurmdbd): ``sacct`` fails there, as on clusters without it. Every wait is for a
state (a log line, a checkpoint, squeue's RUNNING), with generous limits, never for a number of seconds.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cluster_support import (REPO, assert_same_numbers, cannot_run, checkpoint_epoch, require_selected, results,
                             run_dirs, wait_for)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SCRIPT = REPO / "scripts" / "slurm_local.sh"
PARTITION = "debug"
GSM_TABLES = str(Path(sys.executable).with_name("gsm-tables"))
# gsm's SLURM preset on a CPU node: one core and no GPU per job, a memory request the node has
LAUNCH = (f"hydra.launcher.partition={PARTITION}", "hydra.launcher.cpus_per_task=1", "hydra.launcher.gpus_per_node=0",
          "hydra.launcher.mem_gb=1")
PINNED = "trainer.cpu_threads=1"  # two jobs share the node's two cores (not part of a run's identity)
SACCT_WARNING = "Bypassing sacct error"


@pytest.fixture(scope="session")
def slurm(request):
    """A one-node SLURM (scripts/slurm_local.sh start), stopped after the session unless it ran before it."""
    require_selected(request)
    if sys.platform != "linux":
        cannot_run(f"not Linux ({sys.platform}): SLURM's daemons need Linux")
    why = subprocess.run(["bash", str(SCRIPT), "why-not"], capture_output=True, text=True).stdout.strip()
    if why:
        cannot_run(why)
    before = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True).returncode == 0
    start = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=1200)
    assert start.returncode == 0, f"scripts/slurm_local.sh start failed:\n{start.stdout}\n{start.stderr}"
    yield PARTITION
    if not before:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------- helpers


def spawn(cmd: list[str], log: Path, cwd: Path = REPO) -> subprocess.Popen:
    """The command in its own session (so that it and its children can be killed as a terminal would), its
    stdout and stderr into ``log``."""
    fh = open(log, "w")
    return subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "HYDRA_FULL_ERROR": "0"})


def finish(proc: subprocess.Popen, log: Path, timeout: float = 1800) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the command did not end within {timeout:.0f} s:\n{log.read_text()[-4000:]}", pytrace=False)
    return log.read_text()


def array_ids(text: str) -> list[tuple[str, int]]:
    """(array id, number of jobs) of every job array gsm's SLURM wait announced."""
    return [(a, int(n)) for a, n in re.findall(r"SLURM job array (\d+): (\d+) job\(s\)", text)]


def queue(*jobs: str) -> dict[str, str]:
    """{job id: state} of the jobs SLURM lists (pending, running and recently ended ones)."""
    out = subprocess.run(["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T",
                          *(["--jobs", ",".join(jobs)] if jobs else [])], capture_output=True, text=True)
    return dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)


def unfinished(array: str) -> list[str]:
    return [j for j, s in queue(array).items() if s in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED", "CONFIGURING")]


def scontrol_job(job: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout


def status(runs: Path, *overrides: str) -> str:
    out = subprocess.run([GSM_TABLES, "status", "table1", "--profile", "smoke", "--runs", str(runs),
                          *(x for ov in overrides for x in ("-o", ov))], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def table1_smoke(root: Path) -> list[str]:
    """``gsm-tables table1 --profile smoke --launcher slurm`` into ``root`` (runs, tables, figures)."""
    return [GSM_TABLES, "table1", "--profile", "smoke", "--launcher", "slurm", "--runs", str(root / "runs"),
            "--out", str(root / "tables"), "--figures-out", str(root / "figures"), "-o", PINNED,
            *(x for ov in LAUNCH for x in ("-o", ov))]


def sweep(outputs: list[Path], *args: str) -> list[str]:
    """``train.py -m`` through gsm's SLURM preset: one job per output_root (the same run in each); the sweep's
    folder (multirun.yaml, submitit's logs in .submitit/) beside the first output_root."""
    return [sys.executable, str(REPO / "train.py"), "-m", "hydra/launcher=slurm", *LAUNCH,
            "output_root=" + ",".join(str(o) for o in outputs), f"hydra.sweep.dir={outputs[0].parent / 'sweep'}",
            *args, PINNED]


def row_command(root: Path, experiment: str, *overrides: str) -> tuple[list[str], Path]:
    """What gsm-tables runs for one row of Table I's smoke grid with ``overrides`` (its ``train.py -m`` command
    through the SLURM preset, fixtures generated), and the row's runs folder."""
    from gsm import paper
    from gsm.grid import Grid
    from gsm.profiles import PROFILES
    from gsm.launch import ensure_fixtures, launch_commands

    profile = PROFILES["smoke"]
    fixtures = ensure_fixtures(root / "fixtures", {"cifar10": profile.fixture_sizes["cifar10"]})
    grid = Grid(paper.experiments(1), profile, root / "runs", [*overrides, PINNED], fixtures)
    (cmd,) = launch_commands(grid, [experiment], "slurm", None, list(LAUNCH))
    return cmd, root / "runs"


# --------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def table1_uninterrupted(slurm, tmp_path_factory):
    """Table I's smoke grid trained through SLURM by ``gsm-tables table1 --profile smoke --launcher slurm``:
    (root, the command's output)."""
    root = tmp_path_factory.mktemp("table1-slurm")
    log = root / "gsm-tables.log"
    proc = spawn(table1_smoke(root), log)
    text = finish(proc, log)
    assert proc.returncode == 0, text[-4000:]
    return root, text


def test_table1_smoke_through_slurm_one_array_per_command(table1_uninterrupted):
    root, text = table1_uninterrupted
    commands = text.count("gsm-tables: running ")
    arrays = array_ids(text)
    # one job array per train.py -m command (Table I's smoke grid: one command per model), one job per run
    assert commands == len(arrays) == 4, text[-3000:]
    assert sum(n for _, n in arrays) == 24 and all(n == 6 for _, n in arrays)
    for suffix in ("md", "csv", "tex"):
        assert (root / "tables" / f"table1.{suffix}").is_file()
    with open(root / "tables" / "table1.csv", newline="") as fh:
        assert {row["status"] for row in csv.DictReader(fh)} == {"measured", "literature"}  # every row of ours measured
    assert len(list((root / "runs").rglob("results.json"))) == 24
    assert "totals: 24 finished" in status(root / "runs", PINNED)
    # no accounting on this cluster: submitit's sacct warning at most once in the whole output
    assert subprocess.run(["sacct"], capture_output=True).returncode != 0
    assert text.count(SACCT_WARNING) <= 1


def test_no_accounting_keeps_the_output_readable(slurm, tmp_path):
    """Without SLURM accounting, sacct fails on every call; the plugin's wait printed submitit's warning three
    times per poll (hundreds of lines in a long sweep). gsm waits with squeue: not once."""
    assert subprocess.run(["sacct"], capture_output=True).returncode != 0  # this cluster has no accounting
    log = tmp_path / "sweep.log"
    proc = spawn(sweep([tmp_path / "a", tmp_path / "b"], "trainer.epochs=1", "dataset.subset=64",
                       "trainer.analyze_train=false"), log)
    text = finish(proc, log, 900)
    assert proc.returncode == 0, text[-3000:]
    assert text.count(SACCT_WARNING) <= 1 and "accounting storage is disabled" not in text
    assert len(array_ids(text)) == 1 and len(list(tmp_path.rglob("results.json"))) == 2


# epochs enough that the run is still training when SLURM next checks the shortened limit (every ~30 s) on an idle
# machine (about a second an epoch here, two jobs at once): 150 leaves minutes, not seconds
REQUEUE_EPOCHS = 150
REQUEUE_ARGS = (f"trainer.epochs={REQUEUE_EPOCHS}", "dataset.subset=256", "trainer.analyze_train=false")


def test_a_job_at_its_time_limit_is_requeued_and_resumes_to_the_uninterrupted_numbers(slurm, tmp_path):
    """Two jobs of one array train the same run into two folders; job 0 reaches its time limit, job 1 is the
    uninterrupted reference. The limit is shortened with ``scontrol update`` once job 0 has a checkpoint, so that
    the test does not depend on how fast the machine trains: SLURM then sends submitit's USR2 (signal_delay_s=120
    before the limit), submitit requeues the job, SLURM's requeue stops the run with SIGTERM (gsm: one line, the
    checkpoint kept), and the requeued job resumes from it."""
    a, b = tmp_path / "limited", tmp_path / "reference"
    log = tmp_path / "sweep.log"
    proc = spawn(sweep([a, b], "hydra.launcher.timeout_min=10", *REQUEUE_ARGS), log)
    array = wait_for("the job array's id", lambda: array_ids(log.read_text()), 300, alive=proc)[0][0]
    job = f"{array}_0"
    run_a = wait_for("job 0's first checkpoint", lambda: next((d for d in run_dirs(a) if checkpoint_epoch(d) >= 1), None),
                     900, alive=proc)
    assert queue(job).get(job) == "RUNNING"
    at = checkpoint_epoch(run_a)
    # the limit at 1-2 minutes from now: inside the 120 s before it, SLURM signals at its next check
    elapsed = re.search(r"RunTime=(\d+):(\d+):(\d+)", scontrol_job(job))
    minutes = (int(elapsed.group(1)) * 3600 + int(elapsed.group(2)) * 60 + int(elapsed.group(3))) // 60 + 2
    subprocess.run(["scontrol", "update", f"JobId={job}", f"TimeLimit={minutes}"], check=True)
    wait_for("the job to be requeued", lambda: re.search(r"Restarts=[1-9]", scontrol_job(job)), 600, every=1,
             alive=proc)
    subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=10"], check=True)  # the requeued job has time
    text = finish(proc, log, 1800)
    assert proc.returncode == 0, text[-3000:]
    err = (tmp_path / "sweep" / ".submitit" / job / f"{job}_0_log.err").read_text()
    # submitit's USR2 handler: a time-out, the job requeued (SLURM's requeue then ends this attempt, which stops the
    # run at once; its last checkpoint is kept)
    assert "this job is timed-out" in err and f"Requeued job {job}" in err, err[-3000:]
    (run_a,) = run_dirs(a)
    (run_b,) = run_dirs(b)
    resumed = re.findall(rf"resuming .* from epoch (\d+)/{REQUEUE_EPOCHS}", (run_a / "train.log").read_text())
    assert resumed and int(resumed[0]) >= at, (run_a / "train.log").read_text()[-3000:]
    assert "resuming" not in (run_b / "train.log").read_text()
    assert_same_numbers(results(run_a), results(run_b))


def test_scancel_of_one_job_the_others_finish_exit_2_status_interrupted_rerun_trains_only_it(slurm, tmp_path):
    """A job of an array cancelled (scancel) mid-run: the other jobs finish; the command lists the cancelled run and
    exits 2; ``gsm-tables status`` shows the run interrupted with its checkpoint; the same command again trains only
    that run, which resumes and ends with the numbers of the same run uninterrupted (the array's other job)."""
    exp = "table1/densenet_cifar10_gsoftmax"
    epochs = "trainer.epochs=40"
    cmd, runs = row_command(tmp_path / "smoke", exp, epochs)
    reference = tmp_path / "reference"
    # job 0 into the grid's runs folder, job 1 (the reference) into another; the sweep's folder beside them
    cmd = [c if not c.startswith("output_root=") else f"{c},{reference}" for c in cmd] + [f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    log = tmp_path / "sweep.log"
    proc = spawn(cmd, log)
    array = wait_for("the job array's id", lambda: array_ids(log.read_text()), 300, alive=proc)[0][0]
    run = wait_for("job 0's first checkpoint", lambda: next((d for d in run_dirs(runs.parent) if checkpoint_epoch(d) >= 1),
                                                            None), 900, alive=proc)
    # status while the job trains: the run's row names the SLURM job. A smoke epoch takes a fraction of a second, so
    # the job is suspended (SIGSTOP, its lock still held) while status reads the folder, then resumed and cancelled
    subprocess.run(["scontrol", "suspend", f"{array}_0"], check=True)
    wait_for("job 0 suspended", lambda: queue(f"{array}_0").get(f"{array}_0") == "SUSPENDED", 120)
    row = next(line for line in status(runs, epochs, PINNED).splitlines() if line.startswith(exp + " "))
    assert re.search(rf"\btraining\s+epoch \d+ of 40, .*\bSLURM job {array}_0 since ", row), row
    subprocess.run(["scontrol", "resume", f"{array}_0"], check=True)
    subprocess.run(["scancel", f"{array}_0"], check=True)
    text = finish(proc, log, 1800)
    assert proc.returncode == 2, text[-3000:]
    failed = [line for line in text.splitlines() if line.startswith("gsm:   job ")]
    assert len(failed) == 1 and failed[0].startswith("gsm:   job 0 (") and f"SLURM job {array}_0 ended CANCELLED" in failed[0]
    assert "gsm: 1 job(s) of this sweep failed" in text
    assert queue(f"{array}_1")[f"{array}_1"] == "COMPLETED"
    (ref,) = run_dirs(reference)
    assert (ref / "results.json").is_file() and not (run / "results.json").exists()
    at = checkpoint_epoch(run)
    assert 1 <= at < 40
    row = next(line for line in status(runs, epochs, PINNED).splitlines() if line.startswith(exp + " "))
    assert re.search(rf"\binterrupted\s+checkpoint of epoch {at} of 40: rerun to resume", row), row

    mtime = (ref / "results.json").stat().st_mtime_ns
    again_log = tmp_path / "again.log"
    # the same command (its sweep folder a new one, as gsm-tables' are: the first one's failure notes stay there)
    again = spawn([c if not c.startswith("hydra.sweep.dir=") else f"hydra.sweep.dir={tmp_path / 'sweep-again'}"
                   for c in cmd], again_log)
    text = finish(again, again_log, 1800)
    assert again.returncode == 0, text[-3000:]
    assert (ref / "results.json").stat().st_mtime_ns == mtime  # the finished run was not trained again
    log_a = (run / "train.log").read_text()
    assert f"from epoch {at}/40" in log_a and (ref / "train.log").read_text().count("resuming") == 0
    assert_same_numbers(results(run), results(ref))


def test_submitting_command_killed_jobs_finish_no_run_writes_the_table_resubmission_trains_nothing_twice(
        table1_uninterrupted, tmp_path):
    """``gsm-tables table1 --launcher slurm`` killed while its jobs run (SIGTERM to its process group, as a closed
    terminal; then a second submission, made while the first one's runs train, killed with SIGKILL): the jobs go on
    and finish; ``--no-run`` writes the table from them; no run is trained twice; every run's numbers equal the
    same run's in the uninterrupted table (table1_uninterrupted)."""
    reference_root = table1_uninterrupted[0]
    root = tmp_path / "smoke"
    first_log = tmp_path / "first.log"
    first = spawn(table1_smoke(root), first_log)
    array1 = wait_for("the first array's id", lambda: array_ids(first_log.read_text()), 600, alive=first)[0][0]
    wait_for("a job of the first array RUNNING", lambda: "RUNNING" in queue(array1).values(), 600, alive=first)
    # its pending jobs held while the command is killed (smoke runs take seconds: without the hold the array could
    # end first), released once the kill has shown that the jobs outlive it
    subprocess.run(["scontrol", "hold", array1], check=True)
    os.killpg(first.pid, signal.SIGTERM)
    first.wait(timeout=120)
    assert unfinished(array1), "the first array ended before the kill could show anything"
    assert f"stopped waiting for SLURM job array {array1}; its jobs go on" in first_log.read_text()
    subprocess.run(["scontrol", "release", array1], check=True)

    # a second submission while the first one's runs are training: its jobs wait for the runs' locks
    second_log = tmp_path / "second.log"
    second = spawn(table1_smoke(root), second_log)
    array2 = wait_for("the second array's id", lambda: array_ids(second_log.read_text()), 600, alive=second)[0][0]
    wait_for("a job of the second array RUNNING", lambda: "RUNNING" in queue(array2).values(), 900, alive=second)
    os.killpg(second.pid, signal.SIGKILL)
    second.wait(timeout=120)
    wait_for("every job of both arrays to end", lambda: not unfinished(array1) and not unfinished(array2), 1800, every=2)
    assert all(s == "COMPLETED" for s in queue(array1, array2).values()), queue(array1, array2)

    done = sorted(p.parent for p in (root / "runs").rglob("results.json"))
    assert len(done) >= 6  # the first array's six runs at least
    for run in done:
        log = (run / "train.log").read_text()
        assert log.count("] - run dir ") == 1 and "resuming" not in log, log[-3000:]  # trained once, start to end
        ref = reference_root / run.relative_to(root)
        assert_same_numbers(results(run), results(ref))

    no_run = subprocess.run([GSM_TABLES, "table1", "--profile", "smoke", "--no-run", "--runs", str(root / "runs"),
                             "--out", str(root / "tables"), "--figures-out", str(root / "figures"), "-o", PINNED],
                            capture_output=True, text=True, timeout=900)
    assert no_run.returncode == 0, no_run.stderr[-3000:]
    with open(root / "tables" / "table1.csv", newline="") as fh:
        statuses = [row["status"] for row in csv.DictReader(fh) if row["status"] != "literature"]
    # the rows whose runs finished are measured, the others not run; none is "running" (no job is left)
    assert statuses.count("measured") == len(done) and set(statuses) <= {"measured", "not run"}, statuses
