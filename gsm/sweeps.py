"""Sweeps (``python train.py -m …``, any launcher): a job that fails does not stop the others.

A job that ends in a gsm error (a bad value of that job, a diverging run, a full disk) prints its one
``gsm: error:`` line, leaves a note in ``<sweep dir>/failed/``, and the launcher goes on with the next job.
When every job has run, :class:`SweepReport` (a Hydra callback, registered in ``gsm/configs/train.yaml``)
prints one line per failed job and ends the command with exit code 2; finished jobs are skipped when the
same command runs again, so fixing the bad value and rerunning trains only what is missing. Ctrl-C and
SIGTERM still stop the whole sweep. Nothing here imports torch (Hydra builds the callback for every command).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

FAILED_DIR = "failed"


def record_failure(sweep_dir: str | Path, job_num: int, overrides: list[str], message: str) -> None:
    """Note that job ``job_num`` of the sweep in ``sweep_dir`` failed (read by :class:`SweepReport`)."""
    folder = Path(sweep_dir) / FAILED_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{job_num}.json").write_text(json.dumps({"job": job_num, "overrides": overrides, "error": message}))
    except OSError as exc:  # the job's own line is already printed; the summary just misses it
        print(f"gsm: warning: cannot note the failure of job {job_num} in {folder} ({exc.strerror})", file=sys.stderr)


def failures(sweep_dir: str | Path) -> list[dict[str, Any]]:
    folder = Path(sweep_dir) / FAILED_DIR
    found = []
    for path in folder.glob("*.json") if folder.is_dir() else ():
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            found.append({"job": path.stem, "overrides": [], "error": f"(unreadable note {path})"})
    return sorted(found, key=lambda f: int(f["job"]) if str(f["job"]).isdigit() else 0)


class SweepReport(Callback):
    """At the end of a sweep: one line per failed job, then exit code 2 (0 when every job finished)."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        failed = failures(config.hydra.sweep.dir)
        if not failed:
            return
        print(f"gsm: {len(failed)} job(s) of this sweep failed; the others ran (rerun the same command after "
              f"fixing them: finished jobs are skipped):", file=sys.stderr)
        for f in failed:
            print(f"gsm:   job {f['job']} ({' '.join(f['overrides'])}): {f['error']}", file=sys.stderr)
        sys.exit(2)
