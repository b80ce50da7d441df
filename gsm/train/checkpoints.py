"""Checkpoints: what one holds (:func:`checkpoint_state`: the run's identity and its state), loading one back
(:func:`restore`, with its identity, data and environment checks) and writing them in the background (:class:`Checkpointer`). docs/runs.md says when a
rerun resumes."""

from __future__ import annotations

import copy
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gsm import runs
from gsm.checkpoint_file import read_checkpoint
from gsm.data import fingerprint_differences
from gsm.environment import resume_differences, segments
from gsm.errors import CheckpointError, DataError, ResumeError
from gsm.identity import RunIdentity, RunPaths, code_identity
from gsm.models import Classifier
from gsm.train.build import BuiltRun
from gsm.train.state import RunStatus, TrainState

log = logging.getLogger("gsm.train")


def checkpoint_state(model: Classifier, optimizer, scheduler, scaler, state: TrainState,
                     identity: RunIdentity) -> dict[str, Any]:
    """What ``checkpoints/last.pt`` holds: the run's identity (:meth:`RunIdentity.stamp`: signature, data
    fingerprint and root, environment with the code hash, the code's per-file hashes), where the run stands, and
    the weights, optimiser, schedule, AMP scaler and RNG states."""
    return {
        **identity.stamp(),
        "environments": state.environments,
        "epoch": state.epoch,
        "history": state.history,
        "train_time": state.train_time,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore(paths: RunPaths, parts: BuiltRun, identity: RunIdentity, resume_anyway: bool = False) -> TrainState:
    """Load the run folder's checkpoint into ``parts``. Refuses a checkpoint of another run (its signature is not
    the folder's and this config's), other data (fingerprint) and, unless ``resume_anyway``, another environment
    (:func:`gsm.environment.resume_differences`: world size, device type, torch, the code's content, CPU threads
    on the CPU), since the resumed run's numbers would be those of neither."""
    path = paths.checkpoint
    ckpt = read_checkpoint(path)
    then = RunIdentity.from_stamp(ckpt)
    foreign = paths.foreign(path, ckpt.get("signature"))
    if foreign or then.signature != identity.signature:
        raise CheckpointError(f"{foreign or f'checkpoint {path} belongs to another config (signature {then.signature} != {identity.signature})'}"
                              f"; it is not used: move it away, or rerun with trainer.force=true to start over")
    if identity.fingerprint and then.fingerprint:
        diff = fingerprint_differences(then.fingerprint, identity.fingerprint)
        if diff:
            raise DataError(
                f"cannot resume {paths.run_dir}: its checkpoint was trained on other data "
                f"(dataset.root {then.data_root!r} then, {identity.data_root!r} now; differs: {'; '.join(diff)}). "
                f"Point dataset.root at the data it started on, or rerun with trainer.force=true to start over on this data"
            )
    env_then, env = then.environment, identity.environment
    diff = resume_differences(env_then, env) if env_then else []
    if diff and not resume_anyway:
        changed = code_identity().changed_files(ckpt.get("code_files")) if "code" in " ".join(diff) else []
        files = f"; files changed: {', '.join(changed[:6])}{' …' if len(changed) > 6 else ''}" if changed else ""
        raise ResumeError(
            f"cannot resume {paths.run_dir}: its checkpoint (epoch {ckpt.get('epoch')}) was written in another "
            f"environment ({', '.join(diff)}{files}), so resuming here would give the numbers of neither. Rerun where "
            f"it ran, or add trainer.resume_anyway=true to continue here (results.json then lists which epochs ran where)"
        )
    try:
        model, optimizer, scheduler, scaler = parts.model, parts.optimizer, parts.scheduler, parts.scaler
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng_cpu"])
        if ckpt["rng_cuda"] and torch.cuda.is_available() and len(ckpt["rng_cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
        state = TrainState(int(ckpt["epoch"]), list(ckpt["history"]), float(ckpt["train_time"]),
                           list(ckpt.get("environments") or []))
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} has this config's signature but contents this code cannot load "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); delete it or rerun with trainer.force=true"
        ) from exc
    if diff:
        log.warning("resuming in another environment (%s): trainer.resume_anyway=true; results.json lists "
                    "which epochs ran where", ", ".join(diff))
        state.environments = segments(state.environments or segments([], env_then, 1), env, state.epoch + 1)
    elif not env_then:
        print(f"gsm: note: {path} predates environment records, so this resume cannot check that it runs in the "
              f"environment the run started in", file=sys.stderr)
    return state


def snapshot(obj: Any, pin: bool) -> Any:
    """A deep copy of a state dict with every tensor on the CPU (pinned when ``pin``), so training can go on."""
    if isinstance(obj, Tensor):
        if obj.device.type == "cpu":
            return obj.detach().clone()
        out = torch.empty(obj.shape, dtype=obj.dtype, device="cpu", pin_memory=pin)
        return out.copy_(obj.detach(), non_blocking=pin)
    if isinstance(obj, dict):
        return {k: snapshot(v, pin) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v, pin) for v in obj)
    return copy.deepcopy(obj)


class Checkpointer:
    """Checkpoints written in a background thread: the state is snapshotted to (pinned) CPU memory, then
    written with the same atomic rename; at most one write is in flight, and :meth:`wait` joins it (before
    the next snapshot, at the end of the run, and on Ctrl-C). ``status`` (the run's own) says which
    checkpoint is being written and which is on disk."""

    def __init__(self, path: Path, pin: bool, status: RunStatus) -> None:
        self.path, self.pin, self.status = path, pin, status
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, state: dict[str, Any], epoch: int) -> None:
        self.wait()
        copied = snapshot(state, self.pin)
        if self.pin:
            torch.cuda.synchronize()
        status = self.status

        def write() -> None:
            try:
                runs.save_checkpoint(self.path, copied)
                status.checkpoint_epoch = epoch
            except BaseException as exc:  # re-raised in the main thread by wait()
                self._error = exc
            finally:
                status.writing_epoch = None

        status.writing_epoch = epoch
        self._thread = threading.Thread(target=write, name="gsm-checkpoint", daemon=False)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err
