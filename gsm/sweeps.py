"""Sweeps (``python train.py -m …``, any launcher): a job that fails does not stop the others.

A job that ends in a gsm error (a bad value of that job, a diverging run, a full disk) prints its one
``gsm: error:`` line, leaves a note in ``<sweep dir>/failed/``, and the launcher goes on with the next job.
When every job has run, :class:`SweepReport` (a Hydra callback, registered in ``gsm/configs/train.yaml``)
prints one line per failed job and ends the command with exit code 2; finished jobs are skipped when the
same command runs again, so fixing the bad value and rerunning trains only what is missing. Ctrl-C and
SIGTERM still stop the whole sweep. Nothing here imports torch (Hydra builds the callback for every command).

Where the notes go: one folder per sweep, ``failed/`` of the sweep folder the command itself made (absolute),
whatever a job's own config says. A job's ``hydra.sweep.dir`` may differ from the command's: ``output_root`` is
swept (``-m output_root=a,b``: each job's sweep folder is under its own output_root) or the job runs in another
directory (``hydra.job.chdir: true`` from a config file: a relative folder would be read from there). So when
the sweep starts, :class:`SweepReport` puts that folder in the environment (:data:`FAILURES_ENV`), which the jobs
inherit wherever they run as the command's children: in this process (Hydra's basic launcher), in Ray's worker
processes on this machine (the Ray launcher starts Ray after the sweep starts; the ``gsm_ray`` preset also passes
it in each task's ``runtime_env``, for a cluster started beforehand), in SLURM jobs (``sbatch`` passes the
submitting environment on by default). A job that does not have it writes into its own sweep folder, made
absolute from where Hydra resolved it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

FAILED_DIR = "failed"
FAILURES_ENV = "GSM_SWEEP_FAILURES"  # the absolute folder of this sweep's failure notes (set by SweepReport)


def record_failure(sweep_dir: str | Path, job_num: int, overrides: list[str], message: str) -> None:
    """Note that job ``job_num`` of the sweep failed (read by :class:`SweepReport`): in the sweep's folder of
    notes (:data:`FAILURES_ENV`), else in ``<sweep_dir>/failed``."""
    folder = Path(os.environ.get(FAILURES_ENV) or Path(sweep_dir) / FAILED_DIR)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{job_num}.json").write_text(json.dumps({"job": job_num, "overrides": overrides, "error": message}))
    except OSError as exc:  # the job's own line is already printed; the summary just misses it
        print(f"gsm: warning: cannot note the failure of job {job_num} in {folder} ({exc.strerror})", file=sys.stderr)


def job_sweep_dir(hydra_cfg: Any) -> Path:
    """The absolute sweep folder of the running job (``HydraConfig.get()``), however its job ran: Hydra resolves
    ``hydra.runtime.output_dir`` (``<sweep.dir>/<sweep.subdir>``, absolute) before it changes directory."""
    out = Path(str(hydra_cfg.runtime.output_dir))
    sub = Path(str(hydra_cfg.sweep.subdir))
    if sub.is_absolute():
        return Path(str(hydra_cfg.sweep.dir)).absolute()
    for part in sub.parts:
        out = out if part == "." else out.parent
    return out


def failures(sweep_dir: str | Path) -> list[dict[str, Any]]:
    folder = Path(sweep_dir) / FAILED_DIR
    found = []
    for path in folder.glob("*.json") if folder.is_dir() else ():
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            found.append({"job": path.stem, "overrides": [], "error": f"(unreadable note {path})"})
    return sorted(found, key=lambda f: int(f["job"]) if str(f["job"]).isdigit() else 0)


class JobDirectory(Callback):
    """Each job of a sweep runs in the folder the command was started in (``hydra.runtime.cwd``, composed where the
    command runs), which is where gsm reads every relative path from (``output_root``, ``dataset.root``). Hydra's
    basic launcher and SLURM jobs are there already; the workers of a Ray cluster started beforehand are in the
    folder ``ray start`` ran in, so a relative ``output_root`` put the runs there (and a relative ``dataset.root``
    read the data there). When that folder does not exist on the job's machine the job stays where it is, with one
    warning naming both folders."""

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        hc = config.hydra
        if str(hc.mode) != "RunMode.MULTIRUN" or str(hc.job.chdir).lower() == "true":
            return  # a single run runs where it was started; hydra.job.chdir is refused by the config check
        wanted, here = Path(str(hc.runtime.cwd)), Path.cwd()
        if wanted == here:
            return
        if wanted.is_dir():
            os.chdir(wanted)
            return
        import socket

        print(f"gsm: warning: this job runs on {socket.gethostname()} in {here}, not in {wanted} where the sweep was "
              f"started (no such folder here): relative paths (output_root, dataset.root) are read from {here}",
              file=sys.stderr)


class SweepReport(Callback):
    """At the end of a sweep: one line per failed job, then exit code 2 (0 when every job finished)."""

    def __init__(self) -> None:
        self._before: str | None = None
        self._sweep_dir: Path | None = None

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        """The jobs' failure notes go to this sweep's folder, whatever their own config says (module docstring)."""
        self._sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        self._before = os.environ.get(FAILURES_ENV)
        os.environ[FAILURES_ENV] = str(self._sweep_dir / FAILED_DIR)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if self._before is None:
            os.environ.pop(FAILURES_ENV, None)
        else:
            os.environ[FAILURES_ENV] = self._before
        sweep_dir = self._sweep_dir or Path(str(config.hydra.sweep.dir)).absolute()
        failed = failures(sweep_dir)
        if not failed:
            return
        print(f"gsm: {len(failed)} job(s) of this sweep failed; the others ran (rerun the same command after "
              f"fixing them: finished jobs are skipped):", file=sys.stderr)
        for f in failed:
            print(f"gsm:   job {f['job']} ({' '.join(f['overrides'])}): {f['error']}", file=sys.stderr)
        sys.exit(2)
