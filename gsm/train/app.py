"""The trainer's top: ``python train.py [group=option ...] [key=value ...]`` (also ``gsm-train`` and
``python -m gsm.train``, all through :func:`gsm.cli.train`, which calls :func:`main` here).

A run goes through its stages in this order, each in the module named:
validate the config (gsm.config) and read trainer.* once (gsm.settings) → threads, device, processes, AMP,
compile decision, batch per process (device: :class:`Machine`) → data, model, loaders, optimiser, schedule
(build) → the run folder: skip a finished run, lock, tidy (folders) → resume or empirical μ/σ init, the
epochs, the record (epochs, with loop, checkpoints and outputs).
docs/runs.md says when a rerun trains, resumes or skips.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import time
from typing import Any, Iterator

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from gsm import config, runs
from gsm.data import load_splits
from gsm.environment import environment
from gsm.errors import GsmError
from gsm.identity import RunIdentity, RunPaths
from gsm.results import RunRecord
from gsm.settings import TrainerSettings
from gsm.train.build import build_model, build_run
from gsm.train.device import Machine, close_distributed
from gsm.train.epochs import Run, Terminated
from gsm.train.folders import claim_run_dir, in_sweep
from gsm.train.outputs import attach_log_file, detach_log_file
from gsm.train.state import RunStatus

log = logging.getLogger("gsm.train")

CONFIG_DIR = str(config.CONFIG_DIR)


def run(cfg: DictConfig, status: RunStatus | None = None) -> RunRecord | None:
    """Train and evaluate one config; returns its :class:`gsm.results.RunRecord` (what results.json holds; the
    recorded one when the run had finished before), None for a dry run. ``status`` (a fresh one when
    None) follows where the run stands, for the caller's messages when it ends early."""
    trainer = config.validate_config(cfg)  # every value checked once; trainer.* comes back typed (gsm.settings)
    status = status if status is not None else RunStatus()
    wall_start = time.perf_counter()
    gsm_log, threads = logging.getLogger("gsm"), torch.get_num_threads()
    level = gsm_log.level
    machine = Machine.set_up(trainer)  # sets torch's CPU threads for the run (set back when the run ends)
    if not machine.dist.is_main:  # one rank reports; the others only warn (set back when the run ends)
        gsm_log.setLevel(logging.WARNING)
    try:
        with stop_on_sigterm(status):
            return _prepare_and_train(cfg, trainer, machine, status, wall_start)
    finally:
        gsm_log.setLevel(level)
        torch.set_num_threads(threads)
        close_distributed(machine.dist)


def _prepare_and_train(cfg: DictConfig, trainer: TrainerSettings, machine: Machine, status: RunStatus,
                       wall_start: float) -> RunRecord | None:
    """Data, model and what trains it, then the run folder (skip a finished run, else take it), then
    :meth:`Run.train`."""
    dist = machine.dist
    sig = runs.signature(cfg)
    torch.manual_seed(int(cfg.seed))  # before anything random: the data's subset, the model's initial weights
    splits = load_splits(cfg.dataset, write=not cfg.dry_run)  # a dry run writes nothing (no cache, no download)
    model = build_model(cfg, num_classes=splits.num_classes, multilabel=splits.multilabel,
                        in_channels=splits.in_channels, image_size=splits.image_size)
    if cfg.dry_run:  # nothing is written anywhere
        if dist.is_main:
            print(json.dumps({
                "params": sum(p.numel() for p in model.parameters()), "train_samples": len(splits.train),
                "test_samples": len(splits.test), "num_classes": splits.num_classes,
                "multilabel": splits.multilabel, "input_shape": [splits.in_channels, splits.image_size, splits.image_size],
            }))
        return None

    parts = build_run(cfg, trainer, machine, model, splits=splits)  # loaders, optimiser, schedule
    env = environment(machine.device, dist.world_size, machine.num_workers, machine.compiled)
    identity = RunIdentity(sig, splits.fingerprint, splits.root, env)  # what every file of the run carries
    claim = claim_run_dir(cfg, trainer, identity, dist)
    if claim.finished is not None:
        return claim.finished
    log_handler = attach_log_file(claim.run_dir) if dist.is_main else None
    try:
        dist.barrier()  # every rank now sees the same checkpoint state
        return Run(cfg, trainer, machine, status, identity, splits, parts, claim.paths, wall_start).train()
    except GsmError as exc:  # the run's own log ends with the line the user sees (gsm-tables status reads it)
        detach_log_file(log_handler, exc)
        log_handler = None
        raise
    finally:
        detach_log_file(log_handler)
        claim.release()


@contextlib.contextmanager
def stop_on_sigterm(status: RunStatus) -> Iterator[None]:
    """While a run trains, SIGTERM raises :class:`Terminated` — at once during an epoch's training, or after the
    epoch's checkpoint when the epoch is already trained (so a finished epoch is never lost). The previous handler
    is restored afterwards. Only the main thread can take signals (a run in another thread keeps the default)."""
    raised: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if status.defer_sigterm:
            status.sigterm = True
        elif not raised:  # only the first: a second SIGTERM (kill of the process and of its group) changes nothing
            raised.append(signum)
            raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    """One job: the run, and its end as one line and an exit code (130 Ctrl-C, 143 SIGTERM, 2 an error).
    In a sweep a failed job is recorded (gsm.sweeps) and the others go on."""
    status = RunStatus()
    try:
        results = run(cfg, status)
    except KeyboardInterrupt:
        if status.epoch:
            print(f"gsm: interrupted in epoch {status.epoch}; rerun the same command to resume ({status.checkpoint_text()})",
                  file=sys.stderr)
        else:
            print(f"gsm: interrupted before training started; no result was recorded; {rerun_before_training(cfg)}",
                  file=sys.stderr)
        sys.exit(130)
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ending: a second SIGTERM must not cut the line short
        if status.epoch:
            print(f"gsm: terminated (SIGTERM) in epoch {status.epoch}; rerun the same command to resume "
                  f"({status.checkpoint_text()})", file=sys.stderr)
        else:
            print(f"gsm: terminated (SIGTERM) before training started; {rerun_before_training(cfg)}", file=sys.stderr)
        sys.exit(143)
    except runs.StorageError as exc:
        kept = ""
        if status.epoch:
            kept = (f"; the checkpoint of epoch {status.checkpoint_epoch} is intact" if status.checkpoint_epoch
                    else "; no checkpoint was written yet")
        print(f"gsm: error: {exc}{kept}", file=sys.stderr)
        sys.exit(2)  # a full or vanished disk: the next jobs of a sweep would fail the same way
    except GsmError as exc:
        print(f"gsm: error: {exc}", file=sys.stderr)
        if in_sweep():  # the other jobs go on; gsm.sweeps.SweepReport lists this one at the end
            hc = HydraConfig.get()
            from gsm.sweeps import job_sweep_dir, record_failure

            record_failure(job_sweep_dir(hc), int(hc.job.num), list(hc.overrides.task), str(exc))
            return None
        sys.exit(2)
    if results is None:
        return None
    return results.mAP_frac if results.multilabel else results.top1_error_frac


def rerun_before_training(cfg: DictConfig) -> str:
    """What a rerun of the same command does when this process stopped before it trained an epoch (while loading
    data, or waiting for the lock of a run that another process trains): read from the run's folder, which may
    hold a checkpoint (of an earlier run, or of the process it waited for) that the rerun resumes from."""
    try:
        if TrainerSettings.from_config(cfg.trainer).force:  # its rule's value: bool("false") would be True
            return "a rerun with trainer.force=true starts the run over"
        from gsm.checkpoint_file import read_checkpoint_meta
        from gsm.train.folders import locate_run_dir

        paths = RunPaths(locate_run_dir(cfg, runs.signature(cfg)))
        run_dir = paths.run_dir
        if paths.record.is_file():
            return f"the run in {run_dir} has a record: a rerun checks it and skips the run when it is finished"
        if paths.checkpoint.is_file():
            epoch = read_checkpoint_meta(paths.checkpoint).get("epoch")
            return f"rerun the same command to resume from the checkpoint of epoch {epoch} in {run_dir}"
    except Exception:  # noqa: BLE001 - the folder cannot be read now: say what is certain
        return "rerun the same command: it resumes from the run's checkpoint if one was written, else starts over"
    return "no checkpoint of this run exists, so a rerun starts over"


def main() -> None:
    """The Hydra app on ``sys.argv``. Entry points call it through :func:`gsm.cli.train`, which answers
    ``--help`` and checks the command line first (one ``gsm: error:`` line, exit 2)."""
    runs.register_resolvers()
    _hydra_main()
