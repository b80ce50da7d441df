"""``gsm-tables status TABLE`` and the "running" mark of ``--no-run`` tables, on run folders in every state.

Finished runs are synthetic records (tests/synthetic_runs.py: the trainer's RunRecord and composed config); the
other states are folders made by hand the way the trainer leaves them (gsm.train: ``checkpoints/last.pt``,
``summary.csv``, ``train.log``, the run lock of gsm.runs.RunLock), at the path the trainer itself would use
(checked with gsm.train.locate_run_dir). The training run's lock is held by this test process through filelock,
as a trainer holds it; the first test runs the CLI in a new process, which sees another process's lock, the
others in this process (a lock this process holds is as held to the CLI's new non-blocking acquire).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from filelock import FileLock
from omegaconf import OmegaConf
from synthetic_runs import config_of, write_run

from gsm import paper, runs
from gsm.reproduce import main

REPO = Path(__file__).resolve().parent.parent
SOFTMAX = "table3/resnet101_coco_softmax"
G = "table3/resnet101_coco_gsoftmax_mu0_sigma1"
TRAINING = "table3/resnet101_coco_gsoftmax_mu0_sigma0p5"
INTERRUPTED = "table3/resnet101_coco_gsoftmax_mu0_sigma5"
FAILED = "table3/resnet101_coco_gsoftmax_mu-0p1_sigma1"
NOT_STARTED = ("table3/resnet101_coco_gsoftmax_mu0p1_sigma1", "table3/resnet101_coco_gsoftmax_empirical")
EPOCH_S = {"train_seconds": 100.0, "eval_seconds": 9.0, "checkpoint_seconds": 1.0}  # 110 s per epoch


def run_folder(runs_dir: Path, experiment: str, seed: int = 0) -> Path:
    """The folder the trainer makes for ``experiment`` (seed ``seed``), made here as the trainer names it."""
    cfg = config_of(experiment, seed=seed)
    sig = runs.signature(cfg)
    folder = runs_dir / cfg["dataset"]["name"] / f"{cfg['model']['name']}-{cfg['head']['name']}-{sig}"
    folder.mkdir(parents=True)
    from gsm.train import locate_run_dir  # the trainer finds (and would resume) exactly this folder

    assert locate_run_dir(OmegaConf.create({**cfg, "output_root": str(runs_dir.parent)}), sig) == folder
    return folder


def write_summary(folder: Path, done: int, epochs: int) -> None:
    with open(folder / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["epoch", "epochs", "lr", "train_loss", *EPOCH_S, "test_mAP_frac"])
        w.writeheader()
        for e in range(1, done + 1):
            w.writerow({"epoch": e, "epochs": epochs, "lr": 1e-5, "train_loss": 0.5, **EPOCH_S, "test_mAP_frac": 0.1})


def log_line(text: str, level: str = "INFO") -> str:
    return f"[2026-11-30 08:00:00,000][gsm.train][{level}] - {text}"


@pytest.fixture
def states(tmp_path):
    """A table3 runs folder with every state; yields (runs dir, the held lock, the folders by state)."""
    runs_dir = tmp_path / "out" / "runs"
    write_run(runs_dir, SOFTMAX, 0, mAP_voc=0.4567, mAP=0.4012)
    write_run(runs_dir, G, 0, mAP_voc=0.5012, mAP=0.4444)
    epochs = config_of(TRAINING)["trainer"]["epochs"]

    training = run_folder(runs_dir, TRAINING)
    write_summary(training, 2, epochs)
    past = time.time() - 50
    os.utime(training / "summary.csv", (past, past))  # 50 s into epoch 3
    lock = FileLock(str(training / ".lock"))
    lock.acquire(timeout=0)
    (training / ".lock.owner").write_text(json.dumps({"pid": 4242, "host": "node7", "since": "2026-11-30 07:00:00"}))

    interrupted = run_folder(runs_dir, INTERRUPTED)
    (interrupted / "checkpoints").mkdir()
    torch.save({"signature": interrupted.name[-10:], "epoch": 3, "history": [], "model": {"w": torch.zeros(1000)}},
               interrupted / "checkpoints" / "last.pt")  # a checkpoint carries its run's signature (gsm.identity)
    write_summary(interrupted, 3, epochs)
    (interrupted / ".lock").touch()  # a lock file nobody holds: the run was killed (the kernel released its lock)
    (interrupted / ".lock.owner").write_text(json.dumps({"pid": 1, "host": "gone", "since": "2026-11-29 00:00:00"}))

    failed = run_folder(runs_dir, FAILED)
    (failed / "train.log").write_text("\n".join([
        log_line(f"run dir {failed} | resnet101 on cuda x1 | 82081 train / 40137 test images"),
        log_line("epoch 1/8  lr=1e-05  train_loss=0.53"),
        "gsm: error: epoch 2: the training loss is nan (diverged). Lower optimizer.lr",
        log_line(f"run dir {failed} | resnet101 on cuda x1 | 82081 train / 40137 test images"),
        log_line("epoch 2/8 step 10/100  loss=nan  100 img/s  epoch ETA 0:01:00  run ETA 0:10:00"),
        "gsm: error: epoch 2: the training loss is nan (diverged). Lower optimizer.lr, or for L-softmax raise head.beta_min",
    ]) + "\n")
    yield runs_dir, lock, {"training": training, "interrupted": interrupted, "failed": failed}, epochs
    lock.release()


def cli(*args: str, process: bool = False) -> subprocess.CompletedProcess:
    """``gsm-tables ARGS``: in this process (``gsm.reproduce.main``; a lock this process holds is as held to a new
    non-blocking acquire as another process's), or with ``process=True`` as ``python -m gsm.reproduce`` in a new
    process, as a user runs it."""
    if process:
        return subprocess.run([sys.executable, "-m", "gsm.reproduce", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=300)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["gsm-tables", *args], code, out.getvalue(), err.getvalue())


def lines_by_experiment(out: str) -> dict[str, str]:
    return {line.split()[0]: line for line in out.splitlines() if line.startswith("table3/")}


@pytest.mark.slow
def test_status_shows_every_state_and_totals_from_the_runs_folder(states):
    runs_dir, lock, folders, epochs = states
    before = sorted(str(p) for p in runs_dir.rglob("*"))
    mtimes = {p: p.stat().st_mtime_ns for p in runs_dir.rglob("*") if p.is_file()}
    started = time.time()
    proc = cli("status", "table3", "--runs", str(runs_dir), process=True)  # another process sees the lock held
    ended = time.time()
    assert proc.returncode == 0, proc.stderr
    rows = lines_by_experiment(proc.stdout)
    assert len(rows) == 7 and proc.stderr == ""
    state = {exp: line.split()[2] for exp, line in rows.items()}
    assert state == {SOFTMAX: "finished", G: "finished", TRAINING: "training", INTERRUPTED: "interrupted",
                     FAILED: "failed", NOT_STARTED[0]: "not", NOT_STARTED[1]: "not"}  # "not started"
    assert all("  not started" in rows[e] for e in NOT_STARTED)
    # finished: the mAP the paper compares (VOC) and gsm's eq. 21 mAP, in percent
    assert "mAP VOC 45.67 %, mAP eq. 21 40.12 %" in rows[SOFTMAX] and "mAP VOC 50.12 %" in rows[G]
    # training: the epoch in progress, the ETA from summary.csv's epoch times, the lock's owner
    line = rows[TRAINING]
    assert f"epoch 3 of {epochs}" in line and "pid 4242 on node7 since 2026-11-30 07:00:00" in line
    h, m, s = map(int, re.search(r"ETA (\d+):(\d\d):(\d\d)", line).groups())
    # epochs left at 110 s, less what the current epoch has run: summary.csv's age when status read the clock, which
    # it did while its process ran (under load that process can take many seconds to start)
    epoch_start = (folders["training"] / "summary.csv").stat().st_mtime
    eta_high, eta_low = ((epochs - 2) * 110 - (t - epoch_start) for t in (started, ended))
    assert eta_low - 0.5 <= h * 3600 + m * 60 + s <= eta_high + 0.5, (line, eta_low, eta_high)  # printed to the second
    # interrupted: the checkpoint's epoch and what to do
    assert f"checkpoint of epoch 3 of {epochs}: rerun to resume" in rows[INTERRUPTED]
    # failed: the last attempt's error line and the log's path
    assert ("gsm: error: epoch 2: the training loss is nan (diverged). Lower optimizer.lr, or for L-softmax raise "
            "head.beta_min") in rows[FAILED]
    assert str(folders["failed"] / "train.log") in rows[FAILED] and "no checkpoint" in rows[FAILED]
    assert "totals: 2 finished, 1 training, 1 interrupted, 1 failed, 2 not started (7 runs)" in proc.stdout
    # remaining: the ETA, the interrupted run's own pace, the others at the pace of a finished run of their recipe
    hours = float(re.search(r"remaining of the 1 training run\(s\): ([\d.]+) run-hours by their ETAs", proc.stdout)[1])
    assert eta_low / 3600 - 0.005 <= hours <= eta_high / 3600 + 0.005  # printed to 0.01 h
    # the interrupted run: 5 epochs at its own 110 s; failed and not started (8 epochs each, G-softmax): the pace of
    # the finished G-softmax run (synthetic: wall_time_s 2 over its 8 epochs)
    hours = float(re.search(r"remaining of 4 run\(s\) to \(re\)start: ([\d.]+) run-hours .* \(measured on cpu\)",
                            proc.stdout)[1])
    assert hours == pytest.approx((5 * 110 + 3 * 8 * 2.0 / 8) / 3600, abs=0.006)
    assert "no measurement" not in proc.stdout
    # the running job is untouched: its lock is still ours, and status wrote nothing
    assert lock.is_locked and sorted(str(p) for p in runs_dir.rglob("*")) == before
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    other = subprocess.run([sys.executable, "-c", f"from filelock import FileLock, Timeout\ntry:\n FileLock("
                            f"{str(folders['training'] / '.lock')!r}).acquire(timeout=0); print('free')\nexcept Timeout: "
                            f"print('held')"], capture_output=True, text=True, timeout=60)
    assert other.stdout.strip() == "held"


def test_status_after_the_lock_is_released_and_with_seeds(states):
    runs_dir, lock, folders, epochs = states
    lock.release()  # the trainer was killed: its folder is an interrupted run (no checkpoint yet)
    proc = cli("status", "table3", "--runs", str(runs_dir), "--seeds", "0,1")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("table3/")]
    assert len(lines) == 14  # 7 rows x 2 seeds; seed 1 of every row is not started
    assert sum("  not started" in line for line in lines) == 9
    training = next(line for line in lines if line.startswith(TRAINING) and line.split()[1] == "0")
    assert "interrupted" in training and "no checkpoint: a rerun starts it over" in training
    assert "totals: 2 finished, 0 training, 2 interrupted, 1 failed, 9 not started (14 runs)" in proc.stdout


def test_status_without_any_measurement_says_how_to_estimate(tmp_path):
    proc = cli("status", "table3", "--runs", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    assert "totals: 0 finished, 0 training, 0 interrupted, 0 failed, 7 not started (7 runs)" in proc.stdout
    assert "remaining of 7 run(s) to start: no measurement" in proc.stdout
    assert "`gsm-tables table3 --estimate --profile full` estimates" in proc.stdout


@pytest.mark.parametrize("argv, message", [
    (["status"], "status needs the table whose runs to show, one of table1, table2, table3, table4, table5, table6, "
                 "figures, e.g. gsm-tables status table3"),
    (["status", "sweep"], "(not 'sweep')"),
    (["table3", "table4"], "unexpected argument 'table4': only 'gsm-tables status TABLE' takes a second one"),
    (["status", "table1", "--as-written"], "--as-written applies to table2, table3, table4"),
    (["status", "table3", "-o", "seed=7"], "-o seed=7: the seeds of the grid's runs are chosen by --seeds"),
])
def test_status_arguments_are_checked(tmp_path, capsys, argv, message):
    assert main([*argv, "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("gsm-tables: error: ") and message in err, err


@pytest.mark.slow
def test_no_run_tables_mark_training_rows_running(states, tmp_path, capsys, monkeypatch):
    from gsm import figures

    runs_dir, lock, folders, epochs = states
    monkeypatch.setattr(figures, "make_figures", lambda *a, **k: [])  # the table is the subject (figures: test_figures)
    out = tmp_path / "tables"
    figs = ["--figures-out", str(tmp_path / "figures")]
    assert main(["table3", "--runs", str(runs_dir), "--out", out.as_posix(), "--no-run", *figs]) == 0
    md = (out / "table3.md").read_text()
    label = {e: next(r.label for r in paper.rows(table=3) if r.experiment == e)
             for e in (TRAINING, INTERRUPTED, *NOT_STARTED)}
    row_line = {e: next(line for line in md.splitlines() if line.startswith(f"| {label[e]} | ours"))
                for e in label}
    assert "running" in row_line[TRAINING] and "not run" not in row_line[TRAINING]
    for e in (INTERRUPTED, *NOT_STARTED):  # not training now: still "not run"
        assert "not run" in row_line[e] and "running" not in row_line[e]
    data = pd.read_csv(out / "table3.csv")
    assert set(data[data["experiment"] == TRAINING]["status"]) == {"running"}
    assert set(data[data["experiment"] == INTERRUPTED]["status"]) == {"not run"}
    assert f"running: the row's run is training now ({TRAINING})" in md
    lock.release()  # once it is no longer training, the row is "not run" again
    assert main(["table3", "--runs", str(runs_dir), "--out", out.as_posix(), "--no-run", *figs]) == 0
    assert "running" not in (out / "table3.md").read_text().split("Notes:")[0]


def test_no_run_table1_marks_only_the_dataset_that_trains(tmp_path):
    """Table I has one line per method and a column block per dataset: only CIFAR-10's cells say running."""
    runs_dir = tmp_path / "runs"
    c10, c100 = "table1/wrn_cifar10_gsoftmax", "table1/wrn_cifar100_gsoftmax"
    assert {c10, c100} <= set(paper.experiments(1))
    folder = run_folder(runs_dir, c10)
    lock = FileLock(str(folder / ".lock"))
    lock.acquire(timeout=0)
    try:
        out = tmp_path / "tables"
        assert main(["table1", "--runs", str(runs_dir), "--out", str(out), "--no-run", "--figures-out",
                     str(tmp_path / "figures")]) == 0
    finally:
        lock.release()
    df = pd.read_csv(out / "table1.csv")
    assert set(df[df["experiment"] == c10]["status"]) == {"running"}
    assert set(df[df["experiment"] == c100]["status"]) == {"not run"}
    label = next(r.label for r in paper.rows(table=1) if r.experiment == c10)
    line = next(line for line in (out / "table1.md").read_text().splitlines() if line.startswith(f"| {label} |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    header = next(line for line in (out / "table1.md").read_text().splitlines() if line.startswith("| Method"))
    cols = dict(zip([c.strip() for c in header.strip("|").split("|")], cells))
    assert cols["CIFAR-10 ours (%)"] == "running" and cols["CIFAR-10 p vs softmax"] == "running"
    assert cols["CIFAR-100 ours (%)"] == "not run" and cols["CIFAR-100 p vs softmax"] == "not run"
    assert cols["seeds"] == "CIFAR-10: running; CIFAR-100: not run"


def test_status_names_the_process_holding_a_run_lock(tmp_path):
    """Host and PID of a live run come from the lock's owner file as gsm.runs.RunLock writes it."""
    runs_dir = tmp_path / "runs"
    folder = run_folder(runs_dir, TRAINING)
    lock = runs.RunLock(folder)
    lock.acquire(wait=False)  # this process, as a trainer: .lock held, .lock.owner written
    try:
        first = lines_by_experiment(cli("status", "table3", "--runs", str(runs_dir)).stdout)[TRAINING]
        # during the first epoch the ETA is the last progress line's (gsm.train.loop.log_step), less its age
        (folder / "train.log").write_text(log_line(f"run dir {folder} | resnet101 on cuda x1") + "\n" + log_line(
            "epoch 1/8 step 50/500  loss=0.7  120 img/s  epoch ETA 0:05:00  run ETA 1:00:00") + "\n")
        past = time.time() - 600
        os.utime(folder / "train.log", (past, past))
        second = lines_by_experiment(cli("status", "table3", "--runs", str(runs_dir)).stdout)[TRAINING]
    finally:
        lock.release()
    assert first.split()[2] == "training"
    assert f"epoch 1 of {config_of(TRAINING)['trainer']['epochs']}, ETA after its first epoch" in first
    assert f"pid {os.getpid()} on {socket.gethostname()}" in first
    h, m, s = map(int, re.search(r"epoch 1 of 8, ETA (\d+):(\d\d):(\d\d)", second).groups())
    assert abs(h * 3600 + m * 60 + s - 3000) < 30, second


# --------------------------------------------------------------------------- reading one folder's files


def test_the_last_attempts_error_is_a_gsm_line_a_logged_error_or_a_tracebacks_exception():
    from gsm.status import last_error

    start = log_line("run dir /r | convnet on cpu x1")
    resume = log_line("resuming /r from epoch 2")
    logged = log_line("a worker died", level="ERROR")
    traceback = ["Traceback (most recent call last):", '  File "x.py", line 1, in <module>', "    f()",
                 "KeyError: 'mu'", "", "During handling of the above exception, another exception occurred:", "",
                 "Traceback (most recent call last):", '  File "y.py", line 2', "RuntimeError: CUDA error: out of memory"]
    assert last_error([start, logged]) == "a worker died"  # the record's message, without its prefix
    assert last_error([start, *traceback]) == "RuntimeError: CUDA error: out of memory"  # the last exception
    assert last_error([start, "Traceback (most recent call last):", '  File "x.py", line 1']) == \
        "Traceback (most recent call last):"  # cut short before its exception line
    # only the last attempt counts: an error before the last start line is history
    assert last_error([start, "gsm: error: disk full", resume, log_line("epoch 3/8")]) is None
    assert last_error([resume, log_line("x"), "  noise gsm: error: epoch 4: diverged  "]) == "gsm: error: epoch 4: diverged"
    assert last_error([]) is None


def test_a_directory_or_fifo_named_like_a_run_file_reads_as_absent_without_blocking(tmp_path):
    from gsm.identity import RunPaths
    from gsm.status import log_tail, read_summary

    folder = tmp_path / "run"
    folder.mkdir()
    paths = RunPaths(folder)
    paths.summary.mkdir()
    os.mkfifo(paths.log)  # opening it for reading would wait for a writer forever
    assert read_summary(folder) == [] and log_tail(paths.log) == []
    assert log_tail(tmp_path / "missing.log") == []
    # a log longer than the tail: its last lines, control characters shown as '?'
    log = tmp_path / "train.log"
    last = b"last \x1b[2J line\n"
    log.write_bytes(b"first line\n" + b"x" * 100 + b"\n" + last)
    assert log_tail(log, size=40) == ["x" * (40 - len(last) - 1), "last ?[2J line"]


def test_pace_and_age_skip_what_cannot_be_read(tmp_path):
    from gsm.status import _age, epoch_seconds

    rows = [{"train_seconds": "100", "eval_seconds": "9", "checkpoint_seconds": "1"},
            {"train_seconds": "n/a"},  # a damaged row: left out, not zero
            {"train_seconds": "50", "eval_seconds": "", "checkpoint_seconds": "0"}]
    assert epoch_seconds(rows) == pytest.approx((110 + 50) / 2)
    assert epoch_seconds(rows, last=1) == 50 and epoch_seconds([{"train_seconds": "x"}]) is None
    assert _age(tmp_path / "replaced_meanwhile", time.time()) == 0.0


def _grid(runs_dir: Path):
    from gsm.grid import Grid

    return Grid([TRAINING], "full", runs_dir)


def test_a_run_whose_checkpoint_cannot_be_used_is_interrupted_and_says_why(tmp_path):
    from gsm.status import run_status

    runs_dir = tmp_path / "runs"
    folder = run_folder(runs_dir, TRAINING)
    (folder / "checkpoints").mkdir()
    ckpt = folder / "checkpoints" / "last.pt"
    ckpt.write_bytes(b"PK\x03\x04 cut short")
    st = run_status(_grid(runs_dir), TRAINING, 0)
    epochs = config_of(TRAINING)["trainer"]["epochs"]
    assert (st.state, st.epochs_left) == ("interrupted", epochs)  # nothing of the checkpoint counts
    assert st.detail.startswith(f"checkpoint not used: cannot read checkpoint {ckpt}")
    assert st.detail.endswith(f": a rerun starts it over ({folder})")
    torch.save({"signature": "0123456789", "epoch": 5}, ckpt)  # copied from another run folder
    st = run_status(_grid(runs_dir), TRAINING, 0)
    assert st.detail.startswith(f"checkpoint not used: {ckpt} belongs to another run: it carries signature "
                                f"'0123456789'") and st.epochs_left == epochs
    torch.save({"signature": folder.name[-10:], "epoch": True}, ckpt)  # a bool is no epoch
    assert run_status(_grid(runs_dir), TRAINING, 0).detail.startswith(f"checkpoint not used: {ckpt}: no epoch")
    torch.save({"signature": folder.name[-10:], "epoch": 2}, ckpt)
    st = run_status(_grid(runs_dir), TRAINING, 0)
    assert st.detail.startswith(f"checkpoint of epoch 2 of {epochs}: rerun to resume") and st.epochs_left == epochs - 2


def test_a_held_lock_after_the_last_epoch_is_finishing_and_an_untestable_lock_trusts_its_owner(tmp_path, monkeypatch):
    import filelock

    from gsm.status import run_status

    runs_dir = tmp_path / "runs"
    folder = run_folder(runs_dir, TRAINING)
    epochs = config_of(TRAINING)["trainer"]["epochs"]
    write_summary(folder, epochs, epochs)  # every epoch done: the last evaluation and the records are being written
    lock = FileLock(str(folder / ".lock"))
    lock.acquire(timeout=0)
    try:
        st = run_status(_grid(runs_dir), TRAINING, 0)
    finally:
        lock.release()
    assert st.state == "training" and st.remaining_s == 0.0
    assert st.detail.startswith(f"epoch {epochs} of {epochs}, finishing (evaluation and records); its owner is not recorded")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(filelock.FileLock, "acquire", denied)  # a folder this user may not write
    st = run_status(_grid(runs_dir), TRAINING, 0)
    assert st.state == "interrupted"  # no owner recorded: nothing says it trains
    (folder / ".lock.owner").write_text(json.dumps({"pid": 99, "host": "node3", "since": "today", "slurm_job": "12_3"}))
    st = run_status(_grid(runs_dir), TRAINING, 0)
    assert st.state == "training"
    assert ("pid 99 on node3, SLURM job 12_3 since today; its lock cannot be tested: Permission denied") in st.detail


def test_status_of_a_grid_that_has_finished_says_nothing_remains(tmp_path):
    runs_dir = tmp_path / "runs"
    experiments = paper.experiments(3)
    for exp in experiments:
        write_run(runs_dir, exp, 0)
    proc = cli("status", "table3", "--runs", str(runs_dir))
    assert proc.returncode == 0, proc.stderr
    assert f"totals: {len(experiments)} finished, 0 training" in proc.stdout
    assert "remaining: nothing; every run of the grid has finished" in proc.stdout
    assert "run-hours" not in proc.stdout
