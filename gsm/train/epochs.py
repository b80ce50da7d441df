"""A run once its folder is taken (:class:`Run`): resume or initialise, the epochs (train, evaluate, log,
checkpoint in the background), then the final analysis and ``results.json``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from gsm.data.types import DatasetSplits
from gsm.environment import segments
from gsm.errors import TrainingError
from gsm.identity import RunIdentity, RunPaths
from gsm.results import RunRecord
from gsm.train.build import BuiltRun
from gsm.train.checkpoints import Checkpointer, checkpoint_state, restore
from gsm.settings import TrainerSettings
from gsm.train.device import Dist, Machine, sync_buffers
from gsm.train.loop import EvalOutputs, check_finite, compute_metrics, empirical_init, evaluate, log_every_steps, train_one_epoch
from gsm.train.outputs import Reporter, build_results, epoch_row, quiet_event_writer_threads, save_outputs
from gsm.train.state import RunStatus, TrainState

log = logging.getLogger("gsm.train")


class Terminated(BaseException):
    """SIGTERM (``kill``, ``scancel``, a preempted SLURM job): the run stops like on Ctrl-C (one line, exit 143)."""


@dataclass
class Run:
    """What the stages of one run share, from its folder on."""

    cfg: DictConfig
    trainer: TrainerSettings  # the checked trainer.* values
    machine: Machine  # device, processes, AMP, batch per process
    status: RunStatus  # where the run stands (the entry point's exit messages read it)
    identity: RunIdentity  # signature, data fingerprint, environment with the code hash: stamped on every file
    splits: DatasetSplits
    parts: BuiltRun
    paths: RunPaths  # the run folder's files
    wall_start: float  # time.perf_counter() when the run started

    @property
    def run_dir(self) -> Path:
        return self.paths.run_dir

    @property
    def epochs(self) -> int:
        return self.trainer.epochs

    @property
    def dist(self) -> Dist:
        return self.machine.dist

    def train(self) -> RunRecord:
        """Train the remaining epochs and record the results; returns the run's record."""
        state = self.start()
        train_model = self.parts.training_model(self.machine)
        checkpointer = None
        if self.dist.is_main:
            checkpointer = Checkpointer(self.paths.checkpoint, self.machine.device.type == "cuda", self.status)
        with quiet_event_writer_threads():  # the hook is this run's only: the process's own comes back after
            reporter = Reporter(self.run_dir, self.dist.is_main)
            try:
                last_eval, last_metrics = self.train_epochs(state, train_model, checkpointer, reporter)
                return self.finish(state, last_eval, last_metrics, reporter)
            finally:
                reporter.close()

    def start(self) -> TrainState:
        """The checkpoint's state when there is one; else a fresh state, after ``head.init=empirical``."""
        parts = self.parts
        if self.paths.checkpoint.exists() or self.paths.checkpoint.is_symlink():
            state = restore(self.paths, parts, self.identity, self.trainer.resume_anyway)
            self.status.checkpoint_epoch = state.epoch
            log.info("resuming %s from epoch %d/%d", self.run_dir, state.epoch, self.epochs)
        else:
            state = TrainState(environments=segments([], self.identity.environment, 1))
            if parts.model.head.empirical_init:
                empirical_init(parts.model, parts.data.train, self.dist, self.machine.amp)
        log.info("run dir %s | %s on %s x%d | %d train / %d test images | %d CPU threads", self.run_dir,
                 self.cfg.model.name, self.machine.device, self.dist.world_size, len(self.splits.train), len(self.splits.test),
                 torch.get_num_threads())
        return state

    def train_epochs(self, state: TrainState, train_model: nn.Module, checkpointer: Checkpointer | None,
                     reporter: Reporter) -> tuple[EvalOutputs | None, dict[str, Any] | None]:
        """Epochs ``state.epoch + 1 .. trainer.epochs``; returns the last evaluation and its metrics (None when
        no epoch was left to train). A SIGTERM after an epoch's training raises :class:`Terminated` once its
        checkpoint is written."""
        trainer, dist, amp, parts, status, epochs = self.trainer, self.dist, self.machine.amp, self.parts, self.status, self.epochs
        model, data, multilabel = parts.model, parts.data, self.splits.multilabel
        log_every = log_every_steps(trainer, len(data.train))
        every, eval_every = trainer.checkpoint_every, trainer.eval_every
        last_eval: EvalOutputs | None = None
        last_metrics: dict[str, Any] | None = None
        try:
            for epoch in range(state.epoch, epochs):
                status.epoch = epoch + 1
                lr = parts.optimizer.param_groups[0]["lr"]
                train_stats = train_one_epoch(
                    train_model, model.head, data.train, parts.optimizer, parts.scaler, amp, epoch,
                    trainer.progress and dist.is_main, log_every=log_every, epochs=epochs,
                    world_size=dist.world_size, on_step=reporter.step if reporter.writer else None,
                    step_every=log_every or max(1, len(data.train) // 10), status=status)
                status.defer_sigterm = True  # the epoch is trained: a SIGTERM from here waits for its checkpoint
                parts.scheduler.step()
                sync_buffers(model, dist)
                eval_seconds, metrics = 0.0, {}
                if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:  # evaluation changes no state or RNG stream
                    t0 = time.perf_counter()
                    last_eval = evaluate(model, data.test, dist, amp, log_every=log_every)
                    eval_seconds = time.perf_counter() - t0
                    if not torch.isfinite(last_eval.logits).all():
                        raise TrainingError(f"epoch {epoch + 1}: the model's test outputs are not finite (diverged). "
                                            f"{status.divergence_hint()}")
                    metrics = last_metrics = compute_metrics(last_eval, multilabel)
                    check_finite(metrics, epoch + 1, status)
                row = epoch_row(epoch + 1, epochs, lr, train_stats, metrics, multilabel)
                row["eval_seconds"] = eval_seconds
                # the checkpoint holds this row too; its checkpoint_seconds (the time the loop waits for the
                # snapshot, the write runs behind) is only known after the snapshot, so the saved copy says 0
                row["checkpoint_seconds"] = 0.0
                state.history.append(row)
                t0 = time.perf_counter()
                state.epoch, state.train_time = epoch + 1, state.train_time + train_stats["train_seconds"]
                due = (epoch + 1) % every == 0 or epoch + 1 == epochs or status.sigterm  # a SIGTERM: keep this epoch
                if checkpointer is not None and due:
                    checkpointer.save(checkpoint_state(model, parts.optimizer, parts.scheduler, parts.scaler, state,
                                                       self.identity), epoch + 1)
                row["checkpoint_seconds"] = time.perf_counter() - t0
                reporter.epoch(row, model.head)
                reporter.summary(state.history)
                status.defer_sigterm = False
                if status.sigterm:
                    raise Terminated()
                dist.barrier()
            if checkpointer is not None:
                checkpointer.wait()  # a write error surfaces here, before any result is recorded
        finally:
            if checkpointer is not None:
                try:
                    checkpointer.wait()
                except BaseException:  # the error that ends the run is already propagating
                    pass
        return last_eval, last_metrics

    def finish(self, state: TrainState, last_eval: EvalOutputs | None, last_metrics: dict[str, Any] | None,
               reporter: Reporter) -> RunRecord:
        """The final analysis and the record; rank 0 writes test_outputs.pt, then results.json (a run is
        finished exactly when its record exists)."""
        cfg, dist, amp, parts, multilabel = self.cfg, self.dist, self.machine.amp, self.parts, self.splits.multilabel
        model = parts.model
        if last_eval is None:  # resumed after the last epoch's checkpoint
            last_eval = evaluate(model, parts.data.test, dist, amp)
        train_eval = None
        if self.trainer.analyze_train and parts.data.train_eval is not None:
            train_eval = evaluate(model, parts.data.train_eval, dist, amp)
        record = build_results(self, state, last_eval, train_eval, last_metrics)
        if dist.is_main:
            headline_key = "mAP_frac" if multilabel else "top1_error_frac"
            hp = {"dataset": cfg.dataset.name, "model": cfg.model.name, "head": cfg.head.name, "seed": int(cfg.seed),
                  "lr": float(cfg.optimizer.lr), "epochs": self.epochs, **model.head.hparams()}
            reporter.hparams(hp, {headline_key: getattr(record, headline_key)})
            record.test_outputs_sha256 = save_outputs(self.paths, last_eval, multilabel, self.identity.signature)
            record.write(self.paths.record, create_folder=False)
            log.info("finished: %s=%s | results: %s", headline_key, _fmt(getattr(record, headline_key)), self.paths.record)
        dist.barrier()
        return record


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
