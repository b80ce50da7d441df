"""SLURM and Ray sweeps (``hydra/launcher=slurm``/``submitit_slurm``, ``hydra/launcher=gsm_ray``/``ray``, and
``gsm-tables --launcher …``): the plugins submit the jobs as they always do; gsm waits for them.

Measured on a one-node SLURM and a Ray head (tests/test_cluster_slurm.py, tests/test_cluster_ray.py), the plugins'
own waits fail a cluster user:

* SLURM (submitit): each job is awaited in turn with ``job.results()``, which reads its state from ``sacct``. A job
  that SLURM ends without a result (``scancel``, a node failure, a memory limit) stopped the command at once with
  submitit's error while the other jobs still ran, and the summary of failed jobs was never printed; without SLURM
  accounting (no slurmdbd) every poll printed submitit's ``Bypassing sacct error`` warning three times, and a job
  ended without a result was never seen as ended: the command waited forever.
* Ray: ``[ray.get(run) for run in runs]`` stopped the command at the first task whose worker died (after Ray's
  retries) with a traceback, and with it every other run of the sweep.

So :class:`LauncherWait`, a Hydra callback of every command (``gsm/configs/train.yaml``), gives those launchers
gsm's wait when a sweep starts with one: the same submission, then a wait for every job. For SLURM it reads
``squeue`` (which answers with or without accounting): a job is over when its result file exists, or when SLURM
no longer lists it as pending or running. A job that ended without a result (SLURM), or a task Ray gave up
(``WorkerCrashedError``, a dead node), is noted as a failed job of the sweep (gsm.sweeps): when every job has
ended the command lists it and exits 2, like any failed run; its run keeps its last checkpoint and the same
command resumes it. The plugins (``pip install 'gsm[sweep]'``) are imported only when they are the launcher.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from hydra.experimental.callback import Callback

from gsm.sweeps import record_failure

log = logging.getLogger(__name__)

# squeue's states of a job that has not ended yet (a requeued job is PENDING again)
UNFINISHED = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING",
              "SUSPENDED", "STOPPED", "RESV_DEL_HOLD", "SIGNALING", "STAGE_OUT"}
RESULT_GRACE_S = 15.0  # how long a result file may lag behind its job's end (a shared file system's cache)
POLL_MAX_S = 30.0


def queue_states(array_ids: Sequence[str]) -> dict[str, str] | None:
    """``{job id: state}`` of the jobs of these arrays that SLURM still lists (``squeue --array --states=all``:
    pending and running ones, and ended ones for MinJobAge seconds); None when squeue does not answer."""
    cmd = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T", "--jobs", ",".join(array_ids)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        # a job id SLURM has forgotten (older than MinJobAge) is an error of squeue, not of the cluster
        if "Invalid job id" in out.stderr:
            return {}
        return None
    states = {}
    for line in out.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id:
            states[job_id] = state.split()[0] if state else "UNKNOWN"
    return states


PLUGIN_SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
PLUGIN_RAY = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"


class LauncherWait(Callback):
    """At the start of a sweep whose launcher is the submitit plugin's SLURM launcher or the Ray plugin's launcher:
    the plugin's ``launch`` becomes gsm's (:func:`launch` for SLURM, :func:`ray_launch` for Ray): the same
    submission, then a wait for every job in which a job that ended without a result is a failed job of the sweep."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        target = str(config.hydra.launcher.get("_target_", ""))
        if target == PLUGIN_SLURM:
            from hydra_plugins.hydra_submitit_launcher import submitit_launcher

            submitit_launcher.SlurmLauncher.launch = launch
        elif target == PLUGIN_RAY:
            from hydra_plugins.hydra_ray_launcher import _core

            _core.launch = ray_launch


def launch(self: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Any]:
    """The plugin's ``BaseSubmititLauncher.launch`` up to the submission, then :func:`wait` for every job; the
    returns of the jobs that finished (a job ended without a result is noted in the sweep's failed/)."""
    import submitit
    from hydra.core.singleton import Singleton
    from hydra.core.utils import filter_overrides
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    assert self.config is not None
    assert len(job_overrides) > 0
    # the executor and its parameters exactly as the plugin builds them (BaseSubmititLauncher.launch)
    init_keys = {"max_num_timeout", "submitit_folder"}
    executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
                                     **{f"{self._EXECUTOR}_max_num_timeout": self.params["max_num_timeout"]})
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v
                                  for k, v in self.params.items() if k not in init_keys})
    sweep_dir = Path(str(self.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in self.config.hydra.sweep:
        os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
    log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
    params = []
    for i, overrides in enumerate(job_overrides):
        idx = initial_job_idx + i
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
    jobs = executor.map_array(self, *zip(*params))
    arrays = sorted({str(j.job_id).split("_")[0] for j in jobs})
    log.info(f"SLURM job array {', '.join(arrays)}: {len(jobs)} job(s) (squeue -j {arrays[0]}); waiting for them "
             f"(if this command ends, the jobs go on: gsm-tables status shows them)")
    try:
        ended = wait(jobs, arrays)
    except BaseException:  # Ctrl-C, SIGTERM (a closed terminal): only this wait ends, not the jobs
        print(f"gsm: stopped waiting for SLURM job array {', '.join(arrays)}; its jobs go on (squeue -j {arrays[0]}, "
              f"gsm-tables status): once they have ended, gsm-tables --no-run writes the table from them, and the same "
              f"command submits what is still missing", file=sys.stderr, flush=True)
        raise
    returns = []
    for i, job in enumerate(jobs):
        idx = initial_job_idx + i
        if job.paths.result_pickle.exists():
            returns.append(job.results()[0])
            continue
        state = ended.get(str(job.job_id), "UNKNOWN")
        message = (f"SLURM job {job.job_id} ended {state} before its run finished (its run keeps its last "
                   f"checkpoint: gsm-tables status shows it; the job's log: {job.paths.stderr})")
        record_failure(sweep_dir, idx, list(job_overrides[i]), message)
    return returns


def wait(jobs: Sequence[Any], arrays: Sequence[str]) -> dict[str, str]:
    """Wait until every job has a result file or SLURM lists it as ended (or no longer lists it); returns the
    last state SLURM listed for each job without a result file."""
    waiting = {str(j.job_id): j for j in jobs}
    last: dict[str, str] = {}
    gone_since: dict[str, float] = {}
    start, warned = time.monotonic(), False
    while waiting:
        for job_id, job in list(waiting.items()):
            if job.paths.result_pickle.exists():
                del waiting[job_id]
        if not waiting:
            break
        states = queue_states(arrays)
        now = time.monotonic()
        if states is None:
            if not warned:
                print("gsm: warning: squeue does not answer; still waiting for the jobs", file=sys.stderr, flush=True)
                warned = True
        else:
            for job_id in list(waiting):
                state = states.get(job_id)
                if state is not None:
                    last[job_id] = state
                if state in UNFINISHED:
                    gone_since.pop(job_id, None)
                    continue
                # ended (or forgotten): give its result file a moment to appear on a shared file system
                if now - gone_since.setdefault(job_id, now) >= RESULT_GRACE_S:
                    del waiting[job_id]
        if waiting:
            time.sleep(min(POLL_MAX_S, max(2.0, (time.monotonic() - start) / 10)))
    return last


def ray_launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Any]:
    """The Ray plugin's ``_core.launch``, except its end: the plugin's ``[ray.get(run) for run in runs]`` stopped
    the command at the first task whose worker died (after Ray's retries, ``max_retries``, 3 by default), with a
    traceback, and with it every other run of the sweep (their tasks belong to this driver). Here every task is
    waited for; one that Ray could not finish (its worker process or node died) is noted as a failed job of the
    sweep, so the command lists it and exits 2 after the others, and the same command resumes it from its
    checkpoint. An error raised by the run itself is the plugin's (Hydra reports it)."""
    import ray
    from hydra.core.singleton import Singleton
    from hydra.core.utils import configure_log, filter_overrides, setup_globals
    from hydra_plugins.hydra_ray_launcher._launcher_util import launch_job_on_ray, start_ray
    from omegaconf import open_dict

    setup_globals()
    assert launcher.config is not None and launcher.hydra_context is not None and launcher.task_function is not None
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log.info(f"Ray Launcher is launching {len(job_overrides)} jobs, sweep output dir: {sweep_dir}")
    launcher.ray_cfg.init.setdefault("object_store_memory", 78643200)  # the plugin's (gsm_ray.yaml sets it)
    start_ray(launcher.ray_cfg.init)
    runs = []
    for i, overrides in enumerate(job_overrides):
        idx = initial_job_idx + i
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"job_id_for_{idx}"
            sweep_config.hydra.job.num = idx
            runs.append((idx, list(overrides), launch_job_on_ray(launcher.hydra_context, launcher.ray_cfg.remote,
                                                                 sweep_config, launcher.task_function,
                                                                 Singleton.get_state())))
    returns = []
    for idx, overrides, run in runs:
        try:
            returns.append(ray.get(run))
        except ray.exceptions.RayTaskError:
            raise
        except ray.exceptions.RayError as exc:  # WorkerCrashedError, NodeDiedError, ...: Ray gave the task up
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            record_failure(sweep_dir, idx, overrides, f"Ray could not finish this run ({type(exc).__name__}: {why}); "
                                                      f"its run keeps its last checkpoint")
    return returns
