"""``gsm-tables status TABLE``: every run of a table's grid and what it is doing, read from the runs folder alone.

A run (one row of the grid, one seed) is in one of five states, decided from its folder
``<runs>/<dataset>/*-<signature>`` (gsm.grid.Grid.run_dir; docs/runs.md) in this order:

* **finished**: a results.json of the row and seed (the one the tables read); its headline metric.
* **training**: the folder's lock (gsm.runs.RunLock, ``.lock``) is held right now. It is tested with a
  non-blocking acquire that is released at once, so a running job is never blocked or broken; ``.lock.owner``
  says which process (pid, host, since when). Epoch k of n and an ETA come from ``summary.csv`` (one row per
  epoch with its seconds) or, during the first epoch, from the last progress line of ``train.log``.
* **failed**: the last attempt in ``train.log`` (after its last ``run dir`` / ``resuming`` line) ends in a
  ``gsm: error:``, ``[ERROR]`` or ``Traceback`` line; the line and the log's path are shown.
* **interrupted**: a folder without a live lock (killed, preempted, Ctrl-C): the epoch of its last checkpoint
  (read lazily, without loading the weights); rerunning the same command resumes it.
* **not started**: no folder.

Nothing is written and nothing waits, so it works while a sweep runs, on any launcher, from any machine that
sees the runs folder. The remaining hours are measured from the folder: the ETAs of the training runs, the pace
of the interrupted ones, and for the rest the pace of a finished run of the same recipe (gsm.grid.recipe_key);
rows without any measurement are counted, with the command that estimates them (``gsm-tables TABLE --estimate``).
"""

from __future__ import annotations

import csv
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsm import runs
from gsm.checkpoint_file import read_checkpoint_meta
from gsm.errors import GsmError
from gsm.grid import Grid, recipe_key
from gsm.identity import FileKindError, RunPaths, regular_file
from gsm.text import hms, one_line, table_lines

STATES = ("finished", "training", "interrupted", "failed", "not started")
LOG_TAIL_BYTES = 1 << 20  # the part of train.log read (its last attempt and progress lines are at the end)
_START = re.compile(r"\] - (run dir |resuming )")  # the trainer's first lines of an attempt (gsm.train.epochs.Run.start)
_PROGRESS = re.compile(r"epoch (\d+)/(\d+) step \d+/\d+ .*run ETA (\d+):(\d\d):(\d\d)")  # gsm.train.loop.log_step


@dataclass
class GridRunStatus:
    """One run of the grid (a row and a seed) and what its folder says."""

    experiment: str
    seed: int
    state: str
    detail: str = ""
    run_dir: Path | None = None
    remaining_s: float | None = None  # seconds of training left, where the folder says (ETA, pace)
    epochs_left: int | None = None  # epochs to train after a (re)start (not for finished and training runs)
    device: str | None = None  # where remaining_s was measured (a finished peer run's device)


# --------------------------------------------------------------------------- reading one run folder


def probe_lock(run_dir: Path) -> tuple[bool | None, dict[str, Any]]:
    """(is the run's lock held now, its owner from ``.lock.owner``). None when the lock cannot be tested (e.g. a
    folder this user may not write). Non-blocking acquire + release: never waits and never breaks a holder."""
    from filelock import FileLock, Timeout

    owner: dict[str, Any] = dict(runs.read_lock_owner(RunPaths(run_dir).lock_owner))  # printable strings only
    if not (run_dir / ".lock").is_file():  # the trainer creates it when it takes the lock
        return False, owner
    lock = FileLock(str(run_dir / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True, owner
    except OSError as exc:
        owner.setdefault("note", f"its lock cannot be tested: {exc.strerror or exc}")
        return None, owner
    lock.release()
    return False, owner


def read_summary(run_dir: Path) -> list[dict[str, str]]:
    """summary.csv's rows (one per finished epoch), or [] without a readable one."""
    path = RunPaths(run_dir).summary
    try:
        if not regular_file(path):
            return []
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:  # a damaged file: its bytes as U+FFFD
            return list(csv.DictReader(fh))
    except (OSError, csv.Error, FileKindError):
        return []


def log_tail(path: Path, size: int = LOG_TAIL_BYTES) -> list[str]:
    """The last ``size`` bytes of a log as lines ([] without one)."""
    try:
        if not regular_file(path):
            return []
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - size))
            return [runs.printable(line, 400) for line in fh.read().decode("utf-8", "replace").splitlines()]
    except (OSError, FileKindError):
        return []


def last_error(lines: list[str]) -> str | None:
    """The last error line of the log's last attempt: a ``gsm: error:`` line, a logged ``[ERROR]`` record, or the
    exception line that ends a ``Traceback``; None when the last attempt has none."""
    start = max((i for i, line in enumerate(lines) if _START.search(line)), default=-1)
    found = None
    tail = lines[start + 1:]
    for i, line in enumerate(tail):
        if "gsm: error:" in line:
            found = line[line.index("gsm: error:"):].strip()
        elif "[ERROR]" in line:
            found = line.split("] - ", 1)[-1].strip()
        elif line.startswith("Traceback (most recent call last)"):
            exc = next((x for x in tail[i + 1:] if x.strip() and not x[0].isspace()
                        and not x.startswith(("Traceback", "During handling", "The above exception"))), None)
            found = (exc or line).strip()
    return found


def checkpoint_epoch(paths: RunPaths) -> tuple[int | None, str | None]:
    """(the epoch of the folder's checkpoint, why it cannot be used): read without torch and without the weights
    (gsm.checkpoint_file.read_checkpoint_meta), and checked against the folder (a checkpoint copied from another
    run folder is not this run's)."""
    try:
        meta = read_checkpoint_meta(paths.checkpoint)
    except GsmError as exc:
        return None, str(exc)
    foreign = paths.foreign(paths.checkpoint, meta.get("signature"))
    if foreign:
        return None, foreign
    epoch = meta.get("epoch")
    return (epoch, None) if isinstance(epoch, int) and not isinstance(epoch, bool) else (None, f"{paths.checkpoint}: no epoch")


def epoch_seconds(rows: list[dict[str, str]], last: int = 5) -> float | None:
    """Mean seconds of the last ``last`` epochs of summary.csv (training + evaluation + checkpoint)."""
    times = []
    for row in rows[-last:]:
        try:
            times.append(sum(float(row.get(k) or 0) for k in ("train_seconds", "eval_seconds", "checkpoint_seconds")))
        except ValueError:
            continue
    return sum(times) / len(times) if times else None


def _owner_text(owner: dict[str, Any]) -> str:
    if "pid" not in owner:
        return "its owner is not recorded"
    job = f", SLURM job {owner['slurm_job']}" if owner.get("slurm_job") else ""
    return f"pid {owner['pid']} on {owner.get('host', '?')}{job} since {owner.get('since', '?')}"


def _age(path: Path, now: float) -> float:
    """Seconds since ``path`` was last written (0 if it cannot be read: the trainer replaced it meanwhile)."""
    try:
        return max(0.0, now - path.stat().st_mtime)
    except OSError:
        return 0.0


def _epochs(rows: list[dict[str, str]], default: int) -> tuple[int, int]:
    """(epochs done, epochs of the run) from summary.csv."""
    try:
        return int(rows[-1]["epoch"]), int(rows[-1]["epochs"])
    except (IndexError, KeyError, ValueError):
        return 0, default


def headline_text(rec: Any) -> str:
    """A finished run's headline in percent, as its table shows it: top-1 error, or the mAP the paper compares
    (VOC, the release's eval/evaluate.m) with gsm's eq. 21 mAP beside it (a record older than schema 3: eq. 21 only)."""
    names = (("mAP_voc", "mAP VOC"), ("mAP", "mAP eq. 21")) if rec.multilabel else (("top1_error", "top-1 error"),)
    parts = [f"{label} {100 * v:.2f} %" for key, label in names if (v := rec.metric(key)) is not None]
    return ", ".join(parts) or f"{names[0][1]}: no value recorded"


def run_status(grid: Grid, experiment: str, seed: int, now: float | None = None) -> GridRunStatus:
    """The state of one run of the grid, from its folder alone."""
    now = time.time() if now is None else now
    row = grid.rows[experiment]
    rec = row.runs.get(seed)
    if rec is not None:
        return GridRunStatus(experiment, seed, "finished", headline_text(rec), rec.run_dir)
    epochs = int(row.config["trainer"]["epochs"])
    run_dir = grid.run_dir(experiment, seed)
    if run_dir is None:
        return GridRunStatus(experiment, seed, "not started", epochs_left=epochs)
    summary = read_summary(run_dir)
    done, epochs = _epochs(summary, epochs)
    held, owner = probe_lock(run_dir)
    log = RunPaths(run_dir).log
    lines = log_tail(log)
    if held or (held is None and "pid" in owner):
        return _training(experiment, seed, run_dir, summary, done, epochs, lines, log, owner, now)
    paths = RunPaths(run_dir)
    at, unusable = checkpoint_epoch(paths) if paths.checkpoint.exists() else (None, None)
    kept = (f"checkpoint of epoch {at} of {epochs}" if at is not None else
            f"checkpoint not used: {one_line(unusable, 240)}" if unusable else "no checkpoint")
    pace, todo = epoch_seconds(summary), epochs - (at or 0)
    left = todo * pace if pace is not None else None
    error = last_error(lines)
    if error is not None:
        return GridRunStatus(experiment, seed, "failed", f"{error} (log: {log}; {kept})", run_dir, left, todo)
    resume = "rerun to resume" if at is not None else "a rerun starts it over"
    return GridRunStatus(experiment, seed, "interrupted", f"{kept}: {resume} ({run_dir})", run_dir, left, todo)


def _training(experiment: str, seed: int, run_dir: Path, summary: list[dict[str, str]], done: int, epochs: int,
              lines: list[str], log: Path, owner: dict[str, Any], now: float) -> GridRunStatus:
    """A run whose lock is held: epoch k of n, its ETA and who trains it."""
    pace = epoch_seconds(summary)
    eta = None
    if pace is not None:  # the epochs left at the recent pace, less what the current epoch has run
        eta = max(0.0, (epochs - done) * pace - _age(RunPaths(run_dir).summary, now))
    else:  # the first epoch: the last progress line of train.log (gsm.train.loop.log_step)
        for line in reversed(lines):
            m = _PROGRESS.search(line)
            if m:
                epochs = int(m.group(2))
                eta = max(0.0, int(m.group(3)) * 3600 + int(m.group(4)) * 60 + int(m.group(5)) - _age(log, now))
                break
    current = min(done + 1, epochs)
    when = f"ETA {hms(eta)}" if eta is not None else "ETA after its first epoch"
    if done >= epochs:
        when = "finishing (evaluation and records)"
    note = f"; {owner['note']}" if owner.get("note") else ""
    return GridRunStatus(experiment, seed, "training", f"epoch {current} of {epochs}, {when}; {_owner_text(owner)}{note} "
                     f"(log: {log})", run_dir, eta)


def grid_status(grid: Grid, seeds: list[int] | None = None) -> list[GridRunStatus]:
    """Every run of the grid: each row with each of its seeds (``--seeds``, else its finished ones, else its config's)."""
    now = time.time()
    return [run_status(grid, exp, s, now) for exp in grid.rows for s in grid.seeds_of(exp, seeds)]


def training_now(grid: Grid, seeds: list[int] | None = None) -> dict[str, GridRunStatus]:
    """The rows without a finished run that have a run training right now (experiment -> its status)."""
    live = {}
    for exp, row in grid.rows.items():
        if row.runs:
            continue
        for s in grid.seeds_of(exp, seeds):
            st = run_status(grid, exp, s)
            if st.state == "training":
                live[exp] = st
                break
    return live


# --------------------------------------------------------------------------- remaining hours


def _pace_of_finished(grid: Grid) -> dict[str, tuple[float, str]]:
    """recipe key -> (seconds per epoch, device) of a finished run of the grid with that recipe."""

    paces: dict[str, tuple[float, str]] = {}
    for row in grid.rows.values():
        for rec in row.results():
            if rec.wall_time_s and rec.epochs:
                try:
                    key = recipe_key(rec.config)
                except (KeyError, TypeError):
                    continue
                paces.setdefault(key, (float(rec.wall_time_s) / int(rec.epochs), str(rec.device or "?")))
    return paces


def fill_remaining(grid: Grid, statuses: list[GridRunStatus]) -> None:
    """Runs left to train without a pace of their own take the pace of a finished run of the same recipe."""

    paces = _pace_of_finished(grid)
    for st in statuses:
        if st.remaining_s is not None or st.epochs_left is None:
            continue
        key = recipe_key(grid.rows[st.experiment].config)
        if key in paces:
            pace, device = paces[key]
            st.remaining_s, st.device = pace * st.epochs_left, device


# --------------------------------------------------------------------------- the report


def render(table: str, grid: Grid, statuses: list[GridRunStatus], estimate_command: str) -> str:
    """The status table (plain text), totals per state and the remaining hours."""
    fill_remaining(grid, statuses)
    body = [[st.experiment, str(st.seed), st.state, st.detail] for st in statuses]
    out = [f"gsm-tables status {table}: profile {grid.profile.name}, runs under {grid.runs_dir} "
           f"(read {time.strftime('%Y-%m-%d %H:%M:%S')})", ""]
    out += table_lines(["experiment", "seed", "state", "detail"], body, ["l", "r", "l", "l"], style="text")
    counts = {s: sum(st.state == s for st in statuses) for s in STATES}
    out += ["", "totals: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" ({len(statuses)} runs)"]
    out += _remaining_lines(statuses, estimate_command)
    return "\n".join(out) + "\n"


def _remaining_lines(statuses: list[GridRunStatus], estimate_command: str) -> list[str]:
    todo = [st for st in statuses if st.state != "finished"]
    if not todo:
        return ["remaining: nothing; every run of the grid has finished"]
    live = [st for st in todo if st.state == "training"]
    rest = [st for st in todo if st.state != "training"]
    lines = []
    known = [st.remaining_s for st in live if st.remaining_s is not None]
    if live:
        lines.append(f"remaining of the {len(live)} training run(s): {sum(known) / 3600:.2f} run-hours by their ETAs"
                     + (f" ({len(live) - len(known)} without an ETA yet)" if len(known) < len(live) else ""))
    measured = [st for st in rest if st.remaining_s is not None]
    if measured:
        devices = sorted({st.device for st in measured if st.device})
        lines.append(f"remaining of {len(measured)} run(s) to (re)start: {sum(st.remaining_s for st in measured) / 3600:.2f} "
                     f"run-hours at the pace of finished or earlier epochs of the same recipe"
                     + (f" (measured on {', '.join(devices)})" if devices else ""))
    unmeasured = len(rest) - len(measured)
    if unmeasured:
        lines.append(f"remaining of {unmeasured} run(s) to start: no measurement in this runs folder; "
                     f"`{estimate_command}` estimates the table's "
                     + ("run-hours (a short probe per recipe on this CPU, nothing trained)" if "--profile smoke" in estimate_command
                        else "GPU-hours (a short probe per recipe on a GPU node, nothing trained)"))
    lines.append("(run-hours: the wall time of one run, summed over runs; GPU-hours for runs of one GPU each)")
    return lines
