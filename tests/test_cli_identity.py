"""The command line and the processes of a run (issue #26): paths are data, never Hydra syntax; a sweep reports
every failed job and exits 2 wherever its failure note lands; SIGTERM is one line and leaves no trainer behind;
a sweep without -m is one line. Every test goes through the real entry points (train.py, gsm-tables)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, pinned, run_cli, run_process
from waiting_launch import waiting_launch

TINY = ("trainer.epochs=1", "dataset.subset=64", "trainer.analyze_train=false")  # the shared run "tiny"
TWO_EPOCHS = ("trainer.epochs=2", "dataset.subset=64", "trainer.analyze_train=false")  # the shared run "two_epochs"
# a folder name made of what Hydra's override grammar reads as syntax: a sweep (,), a key (=), a dict ({ }),
# whitespace and both quotes
HOSTILE = "a,b=c {d} 'e\""


def _gsm_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(("gsm:", "gsm-tables:"))]


def _hydra_value(override: str):
    """What Hydra's own parser makes of ``key=value`` on a command line (as ``train.py -m`` reads it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(override)
    assert not parsed.is_sweep_override(), override
    return parsed.value()


# --------------------------------------------------------------------------- paths are data


@pytest.mark.parametrize("value", [
    HOSTILE, "/data/x,y/runs", "with space", "${oc.env:HOME}", "$HOME/x", "a\\b", "trailing\\", "it\\'s", "\\${x}",
    "[1,2]", "{a: 1}", "null", "true", "1e3", "~x", "a:b", "x=y", "'", '"', "",
])
def test_a_quoted_path_composes_back_to_itself(value):
    """gsm.overrides.quote: whatever a path holds, Hydra's parser and OmegaConf's interpolation give it back."""
    from omegaconf import OmegaConf

    from gsm.overrides import path_override

    cfg = OmegaConf.create({"output_root": "outputs"})
    OmegaConf.update(cfg, "output_root", _hydra_value(path_override("output_root", value)), merge=True)
    assert cfg.output_root == value


def test_o_path_values_are_taken_literally_unless_quoted_already():
    """gsm-tables -o: the value of a path key is one folder (quoted for Hydra); a value the user quoted in Hydra's
    syntax, null and keys that are no paths are passed as written."""
    from gsm.overrides import literal_paths

    given = ["dataset.root=/data/x,y", "+model.weights_path=/w/a b.pt", 'dataset.root="${oc.env:DATA}"',
             "dataset.cache_dir=null", "head=softmax,gsoftmax", "trainer.amp=none"]
    out = literal_paths(given)
    assert [_hydra_value(o) for o in out[:2]] == ["/data/x,y", "/w/a b.pt"]
    assert out[2:] == given[2:]


@pytest.mark.slow
def test_gsm_tables_launches_into_a_folder_named_with_hydra_syntax(tmp_path, capsys):
    """The issue's case: --runs "/data/x,y/runs" launched every row twice, into /data/x and y. A one-row grid of
    the smoke profile, whose runs folder and fixtures (dataset.root) live in a folder named a,b=c {d} 'e", is
    launched as gsm-tables launches (the real train.py -m): the run lands in that exact folder, on those fixtures,
    and the printed command, pasted into a shell, is the command that ran."""
    from gsm.grid import Grid
    from gsm.profiles import PROFILES
    from gsm.launch import ensure_fixtures, launch, launch_commands

    base = tmp_path / HOSTILE
    exp = "table1/vgg16_cifar10_softmax"
    fixtures = ensure_fixtures(base / "fixtures", {"cifar10": PROFILES["smoke"].fixture_sizes.get("cifar10", {})})
    grid = Grid([exp], "smoke", base / "runs", fixtures_dir=fixtures)
    (cmd,) = launch_commands(grid, [exp])
    launch(grid, [exp])
    assert grid.missing() == []
    records = list(tmp_path.rglob("results.json"))
    assert len(records) == 1 and records[0].is_relative_to(base / "runs" / "cifar10"), records
    assert sorted(p.name for p in tmp_path.iterdir()) == [HOSTILE]  # nothing split off beside it
    assert json.loads(records[0].read_text())["data_root"] == str(fixtures)
    printed = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("gsm-tables: running "))
    assert shlex.split(printed.removeprefix("gsm-tables: running ")) == cmd


@pytest.mark.slow
def test_gsm_tables_takes_runs_and_o_paths_literally(tmp_path, monkeypatch, capsys):
    """--runs and -o dataset.root with a comma, '=', braces and quotes: Table IV's 6 rows are still 6 jobs in
    one command (with Table I's rows it was 48 jobs for 24: every row twice, into two wrong folders), with one
    output_root and one dataset.root, exactly the folders given."""
    import gsm.data_check
    import gsm.reproduce

    started: list[list[str]] = []
    monkeypatch.setattr(gsm.launch, "run_trainer", lambda cmd, *a, **kw: started.append(cmd) or (0, False))
    monkeypatch.setattr(gsm.data_check, "check_data", lambda *a, **kw: None)  # no dataset there: not the subject
    runs, data = tmp_path / HOSTILE / "runs", tmp_path / "data,x=y {z}"
    code = gsm.reproduce.main(["table4", "--runs", str(runs), "-o", f"dataset.root={data}", "--out", str(tmp_path / "t"),
                               "--figures-out", str(tmp_path / "f")])
    assert code == 0, capsys.readouterr().err[-3000:]
    (cmd,) = started
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeps = [o for o in OverridesParser.create().parse_overrides(cmd[3:]) if o.is_sweep_override()]
    assert [(o.key_or_group, len(list(o.sweep_string_iterator()))) for o in sweeps] == [("experiment", 6)]
    (root,) = [_hydra_value(a) for a in cmd if a.startswith("output_root=")]
    (data_root,) = [_hydra_value(a) for a in cmd if a.startswith("dataset.root=")]
    assert (root, data_root) == (str(runs.parent.resolve()), str(data))


# --------------------------------------------------------------------------- sweeps: every failed job, exit 2


def _failed_jobs(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("gsm:   job ")]


@pytest.mark.slow
def test_a_sweep_over_output_root_reports_every_failed_job(tmp_path):
    """-m output_root=a,b: each job's own sweep folder is under its own output_root; both failures are reported
    and the sweep exits 2 (it printed two errors and exited 0)."""
    a, b = tmp_path / "a", tmp_path / "b"
    # started in tmp_path: the command's own sweep folder is under the default output_root (outputs/), relative
    out = run_cli("-m", f"output_root={a},{b}", "optimizer.lr=-1", *TINY, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.count("gsm: error: optimizer.lr must be") == 2
    assert "gsm: 2 job(s) of this sweep failed" in out.stderr and len(_failed_jobs(out.stderr)) == 2
    assert "Traceback" not in out.stderr
    (notes,) = {p.parent for p in tmp_path.rglob("failed/*.json")}  # all in the command's own sweep folder
    assert notes.parent.parent == tmp_path / "outputs" / "sweeps" and len(list(notes.iterdir())) == 2


@pytest.mark.slow
def test_a_sweep_whose_config_file_changes_directory_reports_its_failed_jobs(tmp_path):
    """hydra.job.chdir: true from a user's experiment (--config-dir): the jobs run in their sweep folder, every
    job is refused (gsm resolves paths from where it starts) and the sweep says so and exits 2."""
    (tmp_path / "cfg" / "experiment").mkdir(parents=True)
    (tmp_path / "cfg" / "experiment" / "mine.yaml").write_text("# @package _global_\nhydra:\n  job:\n    chdir: true\n")
    out = run_cli("-m", "--config-dir", str(tmp_path / "cfg"), "experiment=mine", "optimizer.lr=0.1,0.2", *TINY,
                  "output_root=runs_here", cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(_failed_jobs(out.stderr)) == 2 and all("hydra.job.chdir" in ln for ln in _failed_jobs(out.stderr))
    notes = sorted(p.relative_to(tmp_path).parts for p in tmp_path.rglob("failed/*.json"))
    assert len(notes) == 2 and all(len(parts) == 5 for parts in notes), notes  # runs_here/sweeps/<time>/failed/N.json


@pytest.mark.slow
def test_a_ray_sweep_reports_the_failed_jobs_of_its_workers(tmp_path):
    """The Ray launcher runs each job in a worker process: their failures (each job with its own output_root) reach
    the command's report, exit 2. Ray is started by the sweep (address=local), never joined: a cluster another
    process left running on this machine would otherwise be joined (ray.init's default)."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    out = run_process("-m", "hydra/launcher=gsm_ray", "hydra.launcher.ray.init.address=local",
                      f"output_root={tmp_path / 'a'},{tmp_path / 'b'}", "optimizer.lr=-1",
                      *TINY, cwd=tmp_path, timeout=400, env={"RAY_USAGE_STATS_ENABLED": "0"})
    assert out.returncode == 2, (out.stdout[-2000:], out.stderr[-3000:])
    assert "gsm: 2 job(s) of this sweep failed" in out.stderr and len(_failed_jobs(out.stderr)) == 2


@pytest.fixture(scope="module")
def slurm_partition(request):
    """The one-node SLURM of scripts/slurm_local.sh (as tests/test_cluster_slurm.py starts it): only with -m cluster
    (make test-cluster), stopped afterwards unless it ran before."""
    from cluster_support import cannot_run, require_selected

    require_selected(request)
    script = str(REPO / "scripts" / "slurm_local.sh")
    why = subprocess.run(["bash", script, "why-not"], capture_output=True, text=True).stdout.strip()
    if why:
        cannot_run(why)
    before = subprocess.run(["bash", script, "status"], capture_output=True, text=True).returncode == 0
    start = subprocess.run(["bash", script, "start"], capture_output=True, text=True, timeout=1200)
    assert start.returncode == 0, f"scripts/slurm_local.sh start failed:\n{start.stdout}\n{start.stderr}"
    yield "debug"
    if not before:
        subprocess.run(["bash", script, "stop"], capture_output=True, text=True, timeout=300)


@pytest.mark.cluster
@pytest.mark.slow
def test_a_slurm_sweep_reports_the_failed_jobs_of_its_batch_jobs(slurm_partition, tmp_path):
    """gsm's SLURM preset: each job runs in a SLURM batch job; with output_root swept, their failures still reach
    the command's report (sbatch passes the sweep's folder of notes on in the environment), exit 2."""
    out = run_process("-m", "hydra/launcher=slurm", f"hydra.launcher.partition={slurm_partition}",
                      "hydra.launcher.cpus_per_task=1", "hydra.launcher.gpus_per_node=0", "hydra.launcher.mem_gb=1",
                      f"output_root={tmp_path / 'a'},{tmp_path / 'b'}", "optimizer.lr=-1", *TINY, cwd=tmp_path,
                      timeout=900)
    assert out.returncode == 2, (out.stdout[-2000:], out.stderr[-3000:])
    assert "gsm: 2 job(s) of this sweep failed" in out.stderr and len(_failed_jobs(out.stderr)) == 2
    assert all("optimizer.lr must be" in ln for ln in _failed_jobs(out.stderr))


@pytest.fixture
def ray_head(request):
    """A Ray head started beforehand (``ray start --head``), as a user's cluster is: its own port and temporary
    folder (a short path: Ray's sockets live there), so it neither joins nor disturbs another Ray on this machine;
    started in that folder, where its workers then run. Only with -m cluster (make test-cluster). Yields (address,
    temporary folder, environment)."""
    import shutil
    import socket
    import tempfile

    from cluster_support import require_selected

    require_selected(request)
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = Path(tempfile.mkdtemp(prefix="gsm-ray-", dir="/tmp"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    with open(temp / "head.log", "w") as log:
        head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}",
                                 "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=temp)
    try:
        address_file = temp / "ray_current_cluster"
        _wait_for(lambda: address_file.exists() and "block forever" in (temp / "head.log").read_text(), head)
        yield address_file.read_text().strip(), temp, env
    finally:
        head.terminate()  # ray start --block stops its processes on SIGTERM
        try:
            head.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.cluster
@pytest.mark.slow
def test_a_sweep_on_a_ray_cluster_started_beforehand_reports_its_failed_jobs(ray_head, tmp_path):
    """The workers of a Ray cluster started beforehand do not inherit the command's environment: the gsm_ray preset
    passes the sweep's folder of notes in each task's runtime_env, so both failures (output_root swept) are listed,
    exit 2. (Without it the notes landed under the workers' own directory and the sweep exited 0.)"""
    address, temp, env = ray_head
    out = run_process("-m", "hydra/launcher=gsm_ray", f"hydra.launcher.ray.init.address={address}",
                      f"++hydra.launcher.ray.init._temp_dir={temp}", "++hydra.launcher.ray.init.object_store_memory=null",
                      f"output_root={tmp_path / 'a'},{tmp_path / 'b'}", "optimizer.lr=-1", *TINY, cwd=tmp_path,
                      timeout=600, env=env)
    assert out.returncode == 2, (out.stdout[-2000:], out.stderr[-3000:])
    assert "gsm: 2 job(s) of this sweep failed" in out.stderr and len(_failed_jobs(out.stderr)) == 2


@pytest.mark.cluster
@pytest.mark.slow
def test_a_ray_cluster_started_elsewhere_writes_a_relative_output_root_where_the_sweep_was_started(ray_head, tmp_path):
    """The workers of a Ray cluster run in the folder ``ray start`` ran in; each job moves to the folder the sweep
    was started in (gsm.sweeps.JobDirectory), so output_root=runs is <that folder>/runs, as for every other
    launcher (the runs landed in the cluster's folder). The failed job of the two is listed, exit 2."""
    address, temp, env = ray_head
    out = run_process("-m", "hydra/launcher=gsm_ray", f"hydra.launcher.ray.init.address={address}",
                      f"++hydra.launcher.ray.init._temp_dir={temp}", "++hydra.launcher.ray.init.object_store_memory=null",
                      "output_root=runs", "head.sigma=1,-1", *TINY, cwd=tmp_path, timeout=600, env=env)
    assert out.returncode == 2, (out.stdout[-2000:], out.stderr[-3000:])
    assert len(_failed_jobs(out.stderr)) == 1 and "head.sigma=-1" in _failed_jobs(out.stderr)[0]
    records = list(tmp_path.rglob("results.json"))
    assert len(records) == 1 and records[0].is_relative_to(tmp_path / "runs" / "runs"), records
    assert not list(temp.rglob("results.json"))


def test_a_sweep_without_multirun_is_one_line(cli):
    for arg in ("head.loss_reduction=mean,sum", "head=softmax,gsoftmax"):
        out = cli(arg)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        line = out.stderr.strip()
        assert line.startswith(f"gsm: error: {arg} is a sweep") and f"python train.py -m {arg}" in line, line
    assert not any(cli.root.iterdir())


# --------------------------------------------------------------------------- SIGTERM


# train.py as a shell starts it, held at the start of ``import <argv[1]>`` until the test has sent its signal: the
# hook writes argv[2] when the import begins and goes on once argv[3] exists (as tests/test_run_integrity.py's
# Ctrl-C test)
_HELD_AT_IMPORT = """
import importlib.abc, os, runpy, sys, time
module, reached, go = sys.argv[1], sys.argv[2], sys.argv[3]
class HoldImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == module:
            sys.meta_path.remove(self)
            open(reached, "w").close()
            while not os.path.exists(go):
                time.sleep(0.01)
        return None
sys.meta_path.insert(0, HoldImport())
sys.argv = sys.argv[4:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until ``predicate()`` (a state of the process, never a time); fails if the process ends first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"state not reached (process exit {proc.poll()})")
        time.sleep(0.01)


BEFORE_TRAINING = "gsm: terminated (SIGTERM) before training started; nothing was written"
NO_RUN_TRAINING = ("gsm: terminated (SIGTERM) while no run was training; runs that finished are kept: rerun the same "
                   "command to go on")


@pytest.mark.slow
@pytest.mark.parametrize("module, line", [
    ("hydra", BEFORE_TRAINING),  # the command-line check imports Hydra
    ("torch", BEFORE_TRAINING),  # the trainer's imports (the first seconds, where SIGTERM killed without a line)
    ("gsm.sweeps", NO_RUN_TRAINING),  # Hydra's main builds its callbacks, before it runs the job
], ids=["hydra", "torch", "gsm.sweeps"])
def test_sigterm_while_the_trainer_starts_is_one_line(tmp_path, module, line):
    """SIGTERM at each stage of the start-up, held there until it is sent: one line, exit 143, nothing written."""
    reached, go = tmp_path / f"importing-{module}", tmp_path / "sigterm-sent"
    proc = subprocess.Popen([sys.executable, "-c", _HELD_AT_IMPORT, module, str(reached), str(go), str(REPO / "train.py"),
                             f"output_root={tmp_path / 'out'}", *pinned(TINY)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(reached.exists, proc)
        proc.send_signal(signal.SIGTERM)
    finally:
        go.touch()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines() == [line]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sigterm_while_waiting_for_a_run_lock_says_the_rerun_resumes_from_the_checkpoint(trained):
    """A second process on a run that holds the checkpoint of epoch 2 waits for the run's lock (held here); a
    SIGTERM then says what a rerun does: resume from that checkpoint (it said "no checkpoint was written yet, so a
    rerun starts over"). The SIGTERM is sent once the trainer is inside the lock's wait (its stack says so)."""
    from filelock import FileLock

    root = trained("two_epochs")
    run_dir = next(root.rglob("results.json")).parent
    (run_dir / "results.json").unlink()  # stopped after its checkpoint of epoch 2, before its record
    holder = FileLock(str(run_dir / ".lock"))
    holder.acquire()
    main = threading.get_ident()  # the thread that runs the trainer (and takes the signal): this one
    got: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: got.append(1))  # the suite's own, should the trainer's be unset

    def in_lock_wait() -> bool:
        frame = sys._current_frames().get(main)
        while frame is not None:
            if frame.f_code.co_name == "acquire" and "filelock" in frame.f_code.co_filename:
                return True
            frame = frame.f_back
        return False

    def send_when_waiting() -> None:
        deadline = time.monotonic() + 300
        while not in_lock_wait() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send_when_waiting, daemon=True)
    try:
        sender.start()
        out = run_cli(f"output_root={root}", *TWO_EPOCHS, "trainer.wait_for_lock=true")
        sender.join(timeout=300)
    finally:
        signal.signal(signal.SIGTERM, previous)
        holder.release()
    assert not got, "the SIGTERM reached the suite, not the trainer"
    assert out.returncode == 143, out.stderr[-3000:]
    assert _gsm_lines(out.stderr) == [f"gsm: terminated (SIGTERM) before training started; rerun the same command to "
                                      f"resume from the checkpoint of epoch 2 in {run_dir}"]
    assert not (run_dir / "results.json").exists()


# gsm-tables whose launch command is a child that waits like a trainer and stops like one on SIGTERM (printing its
# pid, so that the test can see it is gone)
_WAITING_LAUNCH = waiting_launch("SIGTERM", 143, "terminated", extra_group=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("who", ["gsm-tables only", "the process group"])
def test_sigterm_to_gsm_tables_stops_its_trainer_first_one_line_exit_143(tmp_path, who):
    proc = subprocess.Popen([sys.executable, "-c", _WAITING_LAUNCH, "table3", "--runs", str(tmp_path / "runs"),
                             "--out", str(tmp_path / "t")], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        lines = []
        for line in proc.stdout:  # gsm-tables composes the grid, prints its command, starts the child
            lines.append(line)
            if line.startswith("child: training"):
                break
        child = int(lines[-1].split()[-1])
        if who == "gsm-tables only":
            proc.send_signal(signal.SIGTERM)  # kill <pid>, timeout(1): the child did not get it
        else:
            os.killpg(proc.pid, signal.SIGTERM)  # both got it: the child acts on its first
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert "child: terminated, checkpoint kept" in out  # the trainer stopped its own way
    assert "child: second group" not in out  # nothing launched after it
    assert err.splitlines() == ["gsm-tables: terminated (SIGTERM); the trainer stopped (runs that finished are kept, an "
                                "unfinished one keeps its last checkpoint): rerun the same command to resume"]
    assert not _alive(child)  # no orphan left training
    assert not (tmp_path / "t").exists()  # nothing was tabled after the stopped launch


@pytest.mark.parametrize("trainer, ends_in", [
    ((143, "SIGTERM"), "Terminated"),  # SIGTERM to gsm-tables, passed on
    ((143, False), "Terminated"),  # SIGTERM to the trainer alone: the launch stops too
    ((143, True), "Interrupted"),  # Ctrl-C whose escalation sent the trainer SIGTERM: still a Ctrl-C (exit 130)
    ((130, False), "Interrupted"),
])
def test_how_a_launch_ends_follows_what_stopped_it(monkeypatch, trainer, ends_in):
    import gsm.reproduce

    ran: list[list[str]] = []
    monkeypatch.setattr(gsm.launch, "launch_commands", lambda *a, **k: [["first"], ["second"]])
    monkeypatch.setattr(gsm.launch, "run_trainer", lambda cmd, *a, **kw: ran.append(cmd) or trainer)
    with pytest.raises((gsm.launch.Terminated, gsm.launch.Interrupted)) as info:
        gsm.launch.launch(None, ["x"])
    assert type(info.value).__name__ == ends_in and ran == [["first"]]  # nothing launched after it


@pytest.mark.parametrize("subdir", [".", "3", "x/${hydra.job.num}"])
def test_a_job_without_the_sweeps_folder_notes_its_failure_in_its_own_sweep_folder(tmp_path, monkeypatch, subdir):
    """A job that did not get GSM_SWEEP_FAILURES (a launcher on other machines) writes into its own sweep folder,
    absolute as Hydra resolved it before any change of directory, whatever hydra.sweep.subdir is."""
    from omegaconf import OmegaConf

    from gsm.sweeps import FAILURES_ENV, failures, job_sweep_dir, record_failure

    monkeypatch.delenv(FAILURES_ENV, raising=False)
    resolved = subdir.replace("${hydra.job.num}", "3")
    hc = OmegaConf.create({"runtime": {"output_dir": str(tmp_path / "out/sweeps/T" / resolved)},
                           "sweep": {"dir": "out/sweeps/T", "subdir": resolved}})
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # as hydra.job.chdir leaves a job
    assert job_sweep_dir(hc) == tmp_path / "out/sweeps/T"
    record_failure(job_sweep_dir(hc), 3, ["optimizer.lr=-1"], "optimizer.lr must be …")
    assert failures(tmp_path / "out/sweeps/T") == [{"job": 3, "overrides": ["optimizer.lr=-1"],
                                                   "error": "optimizer.lr must be …"}]


def test_an_override_hydra_cannot_parse_is_one_line_with_how_to_quote_it(tmp_path):
    """A path with a space and '=' left unquoted: Hydra's three-line grammar error became one gsm line naming the
    override and the quoted form that works, exit 2, nothing written."""
    from conftest import run_cli

    folder = tmp_path / "a b,c=d"
    out = run_cli(f"output_root={folder}", "trainer.epochs=1")
    assert out.returncode == 2 and out.stderr.splitlines() == [
        f"gsm: error: output_root={folder}: not a valid override (mismatched input '=' expecting <EOF>); a value with "
        f"spaces, commas, '=', brackets or quotes must be quoted as a whole: output_root='{folder}'"]
    assert not folder.exists()


def _hydra_cfg(mode: str, cwd: Path, chdir: bool = False, sweep_dir: Path | None = None):
    from omegaconf import OmegaConf

    return OmegaConf.create({"hydra": {"mode": mode, "job": {"chdir": chdir}, "runtime": {"cwd": str(cwd)},
                                       "sweep": {"dir": str(sweep_dir or cwd)}}})


def test_a_sweep_job_runs_in_the_folder_the_command_started_in_or_says_why_not(tmp_path, monkeypatch, capsys):
    """gsm.sweeps.JobDirectory: a job of a sweep moves to hydra.runtime.cwd (a Ray worker starts elsewhere); a single
    run, a job with hydra.job.chdir and a job already there stay; a folder this machine lacks is one warning."""
    import socket

    from gsm.sweeps import JobDirectory

    started, worker = tmp_path / "started", tmp_path / "worker"
    started.mkdir()
    worker.mkdir()
    monkeypatch.chdir(worker)
    JobDirectory().on_job_start(_hydra_cfg("RunMode.RUN", started))
    JobDirectory().on_job_start(_hydra_cfg("RunMode.MULTIRUN", started, chdir=True))
    assert Path.cwd() == worker
    JobDirectory().on_job_start(_hydra_cfg("RunMode.MULTIRUN", started))
    assert Path.cwd() == started
    JobDirectory().on_job_start(_hydra_cfg("RunMode.MULTIRUN", started))  # already there
    assert Path.cwd() == started and capsys.readouterr().err == ""
    gone = tmp_path / "not_on_this_machine"
    JobDirectory().on_job_start(_hydra_cfg("RunMode.MULTIRUN", gone))
    assert Path.cwd() == started
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"gsm: warning: this job runs on {socket.gethostname()} in {started}, "
                                               f"not in {gone} where the sweep was started")


def test_the_sweep_report_restores_the_environment_and_exits_2_listing_each_failed_job(tmp_path, monkeypatch, capsys):
    from gsm.sweeps import FAILURES_ENV, SweepReport, failures, job_sweep_dir, record_failure

    sweep = tmp_path / "sweeps" / "T"
    cfg = _hydra_cfg("RunMode.MULTIRUN", tmp_path, sweep_dir=sweep)
    # no failure: exit code 0 and the variable as before (unset, or the outer sweep's folder)
    for before in (None, "/outer/failed"):
        if before is None:
            monkeypatch.delenv(FAILURES_ENV, raising=False)
        else:
            monkeypatch.setenv(FAILURES_ENV, before)
        report = SweepReport()
        report.on_multirun_start(cfg)
        assert os.environ[FAILURES_ENV] == str(sweep / "failed")
        report.on_multirun_end(cfg)
        assert os.environ.get(FAILURES_ENV) == before
    assert capsys.readouterr().err == ""
    monkeypatch.delenv(FAILURES_ENV)
    report = SweepReport()
    report.on_multirun_start(cfg)
    record_failure(tmp_path / "elsewhere", 10, ["seed=1", "optimizer.lr=-1"], "gsm: error: optimizer.lr must be > 0")
    record_failure(tmp_path / "elsewhere", 2, ["seed=0"], "gsm: error: the loss diverged")
    (sweep / "failed" / "7.json").write_text("{not json")  # a note cut short
    assert not (tmp_path / "elsewhere").exists()  # the notes went to the sweep's folder (the environment)
    with pytest.raises(SystemExit) as info:
        report.on_multirun_end(cfg)
    assert info.value.code == 2 and FAILURES_ENV not in os.environ
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("gsm: 3 job(s) of this sweep failed; the others ran")
    assert err[1:] == ["gsm:   job 2 (seed=0): gsm: error: the loss diverged",  # by job number: 2, 7, 10
                       f"gsm:   job 7 (): (unreadable note {sweep / 'failed' / '7.json'})",
                       "gsm:   job 10 (seed=1 optimizer.lr=-1): gsm: error: optimizer.lr must be > 0"]
    assert [f["job"] for f in failures(sweep)] == [2, "7", 10]
    # an absolute hydra.sweep.subdir: the job's sweep folder is hydra.sweep.dir itself
    from omegaconf import OmegaConf

    hc = OmegaConf.create({"runtime": {"output_dir": "/abs/sub"}, "sweep": {"dir": str(sweep), "subdir": "/abs/sub"}})
    assert job_sweep_dir(hc) == sweep


def test_a_failure_note_that_cannot_be_written_is_a_warning_not_a_second_error(tmp_path, monkeypatch, capsys):
    import errno

    from gsm.sweeps import FAILURES_ENV, record_failure

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(FAILURES_ENV, str(blocker / "failed"))  # its parent is a file: no folder can be made
    record_failure(tmp_path, 4, ["seed=3"], "gsm: error: boom")
    assert capsys.readouterr().err.splitlines() == [
        f"gsm: warning: cannot note the failure of job 4 in {blocker / 'failed'} ({os.strerror(errno.ENOTDIR)})"]
