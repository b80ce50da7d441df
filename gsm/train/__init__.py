"""The trainer (``python train.py``, ``gsm-train``, ``python -m gsm.train``; docs/development.md shows its layout).

Modules, from the top of a run down:

* :mod:`gsm.train.app` — :func:`run` (one config, one run), the Hydra app :func:`main`, SIGTERM handling;
* :mod:`gsm.train.epochs` — :class:`Run`: resume or initialise, the epochs, the record;
* :mod:`gsm.train.build` — :func:`build_model`, :func:`build_run` (shared with :mod:`gsm.estimate`);
* :mod:`gsm.train.folders` — :func:`claim_run_dir`: locate the run folder, skip when finished, lock, tidy;
* :mod:`gsm.train.outputs` — telemetry (train.log, TensorBoard, summary.csv) and results;
* :mod:`gsm.train.checkpoints` — checkpoint contents, resume checks, background writes;
* :mod:`gsm.train.loop` — one training epoch, evaluation, metrics, empirical μ/σ init;
* :mod:`gsm.train.device` — :class:`Machine`: device, DDP processes, AMP, threads, workers, compile, batch per process;
* :mod:`gsm.train.state` — what a run has done (:class:`TrainState`) and where it stands (:class:`RunStatus`).

The names below are loaded on first use, so that ``import gsm.train`` (and ``python -m gsm.train --help``,
which :func:`gsm.cli.train` answers) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "run": "app", "main": "app", "CONFIG_DIR": "app", "stop_on_sigterm": "app",
    "Run": "epochs", "Terminated": "epochs",
    "BuiltRun": "build", "build_model": "build", "build_optimizer": "build", "build_run": "build",
    "ClaimedRunDir": "folders", "claim_run_dir": "folders", "finished_results": "folders", "locate_run_dir": "folders",
    "Reporter": "outputs", "build_results": "outputs", "epoch_row": "outputs", "save_outputs": "outputs", "warn": "outputs",
    "Checkpointer": "checkpoints", "checkpoint_state": "checkpoints", "restore": "checkpoints",
    "EvalOutputs": "loop", "check_finite": "loop", "compute_metrics": "loop", "empirical_init": "loop",
    "evaluate": "loop", "train_one_epoch": "loop",
    "AMP_DTYPES": "device", "Dist": "device", "Machine": "device", "cpu_threads": "device",
    "init_distributed": "device", "num_workers": "device", "per_process_batch": "device", "resolve_device": "device",
    "sync_buffers": "device",
    "RunStatus": "state", "TrainState": "state",
}
__all__ = sorted(_WHERE)

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ loads each name
    from gsm.train.build import BuiltRun, build_model, build_optimizer, build_run
    from gsm.train.checkpoints import Checkpointer, checkpoint_state, restore
    from gsm.train.device import (AMP_DTYPES, Dist, Machine, cpu_threads, init_distributed, num_workers,
                                  per_process_batch, resolve_device, sync_buffers)
    from gsm.train.epochs import Run, Terminated
    from gsm.train.folders import ClaimedRunDir, claim_run_dir, finished_results, locate_run_dir
    from gsm.train.loop import EvalOutputs, check_finite, compute_metrics, empirical_init, evaluate, train_one_epoch
    from gsm.train.outputs import Reporter, build_results, epoch_row, save_outputs, warn
    from gsm.train.app import CONFIG_DIR, main, run, stop_on_sigterm
    from gsm.train.state import RunStatus, TrainState


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'gsm.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gsm.train.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
