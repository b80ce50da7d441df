"""The trainer: ``python train.py [group=option ...] [key=value ...]`` (Hydra app, also ``gsm-train``).

One function per stage, in the order a run goes through them:
validate the config → set-up (threads, device, distributed) → data (and its fingerprint) →
the run folder (skip a finished run, lock, resume) → model → optimiser and schedule → resume or
empirical μ/σ init → epochs (train, evaluate, log, checkpoint in the background) → final analysis
and ``results.json``. docs/runs.md says when a rerun trains, resumes or skips.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.distributed as torch_dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from gsm import analysis, runs
from gsm.environment import environment, resume_differences, segments
from gsm.data import DataBundle, build_data, fingerprint_differences, load_splits
from gsm.data.types import DatasetSplits
from gsm.errors import CheckpointError, ConfigError, DataError, GsmError, ResumeError, TrainingError
from gsm.heads import Head, head_loss, logged_loss, param_groups
from gsm.metrics import multilabel_metrics, thresholded_metrics, top1_error, topk_error
from gsm.models import Classifier, build_classifier
from gsm.schedules import build_scheduler, epoch_factors

log = logging.getLogger("gsm.train")

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


# --------------------------------------------------------------------------- set-up


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    if pref not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"trainer.device must be auto, cpu or cuda (got {pref!r})")
    if pref == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is visible; use trainer.device=auto or cpu")
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device: torch.device) -> Dist:
    """DDP under torchrun (WORLD_SIZE > 1): NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(torch_dist.get_rank(), torch_dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def amp_dtype(cfg: DictConfig, device: torch.device) -> torch.dtype | None:
    name = str(cfg.trainer.amp).lower() if cfg.trainer.amp not in (None, False) else "none"
    if name not in AMP_DTYPES:
        raise ConfigError(f"trainer.amp must be bf16, fp16 or none (got {cfg.trainer.amp!r})")
    return AMP_DTYPES[name] if device.type == "cuda" else None  # AMP only on the GPU


# --------------------------------------------------------------------------- model and optimiser


def build_optimizer(model: nn.Module, cfg: DictConfig) -> torch.optim.SGD:
    """SGD over :func:`gsm.heads.param_groups`: the heads' μ, σ in their own group (lr × dist_lr_mult, no decay)."""
    opt = cfg.optimizer
    for key in ("lr", "momentum", "weight_decay"):
        if not math.isfinite(float(opt[key])) or float(opt[key]) < 0:
            raise ConfigError(f"optimizer.{key} must be a finite number >= 0 (got {opt[key]!r})")
    groups = param_groups(model, float(opt.lr), float(opt.weight_decay))
    return torch.optim.SGD(groups, lr=float(opt.lr), momentum=float(opt.momentum), nesterov=bool(opt.get("nesterov", False)))


def sync_buffers(model: nn.Module, dist: Dist) -> None:
    """BatchNorm statistics (and the L-softmax step) from rank 0, so every rank evaluates the same model."""
    if dist.enabled:
        for buf in model.buffers():
            torch_dist.broadcast(buf, 0)


# --------------------------------------------------------------------------- evaluation


@dataclass
class EvalOutputs:
    x: Tensor  # fc outputs (N, m) or (N, m, 2), float32, CPU
    logits: Tensor  # (N, m)
    targets: Tensor

    def probabilities(self, multilabel: bool) -> Tensor:
        return torch.sigmoid(self.logits) if multilabel else torch.softmax(self.logits, dim=1)


def _gather(tensors: list[Tensor], dist: Dist) -> list[Tensor]:
    if not dist.enabled:
        return tensors
    gathered: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(gathered, tensors)
    return [torch.cat([g[i] for g in gathered]) for i in range(len(tensors))]


@torch.no_grad()
def evaluate(model: Classifier, loader: Any, dist: Dist, amp: torch.dtype | None, log_every: int = 0) -> EvalOutputs:
    """Fc outputs x and logits for the whole split, gathered over ranks, in dataset order. Outputs stay on
    the device until the split is done (no host sync per batch)."""
    model.eval()
    xs, logits, targets, index = [], [], [], []
    start = time.perf_counter()
    for step, (images, y, idx) in enumerate(loader, 1):
        with torch.autocast(images.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            features = model.backbone(images)
        x = model.head.fc_outputs(features.float()).float()
        xs.append(x)
        logits.append(model.head.logits_from_x(x).float())
        targets.append(y)
        index.append(idx)
        if log_every and step % log_every == 0:
            log.info("evaluating: batch %d/%d, %.0f img/s", step, len(loader), step * images.shape[0] / (time.perf_counter() - start))
    if not xs:
        raise DataError("the evaluation loader gave no batches")
    local = [torch.cat(t).cpu() for t in (xs, logits, targets, index)]  # one transfer per split
    x_all, l_all, t_all, i_all = _gather(local, dist)
    order = i_all.argsort()
    keep = torch.ones_like(order, dtype=torch.bool)
    keep[1:] = i_all[order][1:] != i_all[order][:-1]  # DistributedSampler pads with repeats
    order = order[keep]
    return EvalOutputs(x_all[order], l_all[order], t_all[order])


def compute_metrics(out: EvalOutputs, multilabel: bool) -> dict[str, Any]:
    if multilabel:
        metrics = multilabel_metrics(out.probabilities(True), out.targets)
        metrics["top3"] = thresholded_metrics(out.probabilities(True), out.targets, top_k=3)
        metrics["loss"] = nn.functional.binary_cross_entropy_with_logits(out.logits, out.targets.float()).item()
        return metrics
    return {
        "top1_error": top1_error(out.logits, out.targets),
        "top5_error": topk_error(out.logits, out.targets, 5),
        "loss": nn.functional.cross_entropy(out.logits, out.targets).item(),
    }


# --------------------------------------------------------------------------- training


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    train_time: float = 0.0
    # the environments the epochs ran in: [{"first_epoch": 1, world_size, device, ...}, ...]; more than one only
    # after a resume with trainer.resume_anyway=true (gsm.environment)
    environments: list[dict[str, Any]] = field(default_factory=list)


def train_one_epoch(
    model: nn.Module, head: Head, loader: Any, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
    amp: torch.dtype | None, epoch: int, progress: bool, *, log_every: int = 0, epochs: int | None = None,
    world_size: int = 1, on_step: Any = None, step_every: int = 0,
) -> dict[str, float]:
    """One pass over the training split. The loss is read to the host once per epoch (and at log steps).

    The optimiser follows :func:`gsm.heads.head_loss` (``head.loss_reduction``); with ``sum`` under DDP the
    loss is multiplied by the number of processes, because DDP averages gradients and the sum is over the
    global batch. Logs show :func:`gsm.heads.logged_loss` (the mean per image) either way. The head's
    :meth:`~gsm.heads.Head.finish_distribution_gradients` runs between backward and the step.
    ``on_step(step, loss, images_per_second)`` is called every ``step_every`` steps and at the last (the per-step
    TensorBoard curves); the loss is read from the device only at those steps and at ``log_every`` steps.
    """
    model.train()
    loader.set_epoch(epoch)
    loss_sum = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)
    seen = 0
    start = time.perf_counter()
    bar = _progress(loader, epoch, progress)
    steps = len(loader)
    ddp_sum = world_size if head.loss_reduction == "sum" else 1
    for step, (images, targets, _) in enumerate(bar, 1):
        with torch.autocast(images.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(images, targets)
        loss = head_loss(head, logits, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss * ddp_sum if ddp_sum != 1 else loss).backward()
        scaler.unscale_(optimizer)  # a no-op without fp16's scaler; the head's hook sees true gradients
        head.finish_distribution_gradients(images.shape[0] * world_size)
        scaler.step(optimizer)
        scaler.update()
        per_image = logged_loss(head, loss.detach(), logits)
        loss_sum += per_image * images.shape[0]
        seen += images.shape[0]
        if bar is not loader and seen:
            bar.set_postfix(img_s=f"{seen / (time.perf_counter() - start):.0f}", refresh=False)
        logs = bool(log_every) and (step % log_every == 0 or step == steps)
        reports = on_step is not None and (step % step_every == 0 or step == steps)
        if logs or reports:
            value, elapsed = float(per_image), time.perf_counter() - start
            if logs:
                _log_step(epoch, epochs, step, steps, value, seen, elapsed)
            if reports:
                on_step(epoch * steps + step, value, seen / elapsed)
    if seen == 0:
        raise TrainingError(f"epoch {epoch + 1}: the training loader gave no batches")
    mean_loss = (loss_sum / seen).item()  # one device sync per epoch
    if not math.isfinite(mean_loss):
        raise TrainingError(f"epoch {epoch + 1}: the training loss is {mean_loss} (diverged). {_divergence_hint()}")
    seconds = time.perf_counter() - start
    return {"train_loss": mean_loss, "train_seconds": seconds, "images_per_second": seen / seconds}


def _log_step(epoch: int, epochs: int | None, step: int, steps: int, loss: float, seen: int, elapsed: float) -> None:
    """One progress line for logs without a terminal (SLURM, Ray): loss, images/s, epoch and run ETA."""
    per_step = elapsed / step
    epoch_eta = per_step * (steps - step)
    run_eta = epoch_eta + per_step * steps * ((epochs or epoch + 1) - epoch - 1)
    log.info("epoch %d/%s step %d/%d  loss=%.4g  %.0f img/s  epoch ETA %s  run ETA %s", epoch + 1, epochs or "?",
             step, steps, loss, seen / elapsed, _hms(epoch_eta), _hms(run_eta))


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _divergence_hint() -> str:
    """What to do after a NaN/inf, and which checkpoint is really on disk (never one that is not)."""
    return f"Lower optimizer.lr, or for L-softmax raise head.beta_min; {STATUS.checkpoint_text()}"


def _progress(loader: Any, epoch: int, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, unit="batch")


@torch.no_grad()
def empirical_init(model: Classifier, loader: Any, batches: int | None, dist: Dist, amp: torch.dtype | None) -> None:
    """``head.init=empirical``: the head's distribution ← mean, (population) std of x over up to ``batches``
    training batches (``None``: the whole loader, as the release's ``Trainer:computeMuSigma``), all ranks,
    in eval mode, through :meth:`Head.init_from_moments`."""
    head = model.head
    model.eval()
    loader.set_epoch(0)
    n, s1, s2 = 0.0, 0.0, 0.0
    for i, (images, _, _) in enumerate(loader):
        if batches is not None and i >= batches:
            break
        with torch.autocast(images.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            features = model.backbone(images)
        x = head.fc_outputs(features.float()).double()
        n, s1, s2 = n + x.shape[0], s1 + x.sum(0), s2 + (x**2).sum(0)
    stats = torch.stack([torch.full_like(s1, n), s1, s2])
    if dist.enabled:
        torch_dist.all_reduce(stats)
    n, s1, s2 = stats
    mu = s1 / n
    sigma = (s2 / n - mu**2).clamp_min(0).sqrt()
    head.init_from_moments(mu.float(), sigma.float())
    log.info("head.init=empirical: μ mean %.4f, σ mean %.4f over %d images", mu.mean(), sigma.mean(), int(n.flatten()[0]))


# --------------------------------------------------------------------------- checkpoints


@dataclass
class RunStatus:
    """Where the run in this process stands, for the one-line messages on Ctrl-C and on errors."""

    epoch: int | None = None  # the epoch being trained (1-based)
    checkpoint_epoch: int | None = None  # the epoch of the checkpoint on disk (complete and renamed)
    writing_epoch: int | None = None  # a checkpoint being written in the background (the run waits for it)
    defer_sigterm: bool = False  # between the end of an epoch's training and its checkpoint
    sigterm: bool = False  # a SIGTERM arrived while deferred: stop after this epoch's checkpoint

    def checkpoint_text(self) -> str:
        epoch = self.writing_epoch or self.checkpoint_epoch
        if epoch is None:
            return "no checkpoint was written yet, so a rerun starts over"
        return f"the checkpoint of epoch {epoch} is kept"


STATUS = RunStatus()


def checkpoint_state(model: Classifier, optimizer, scheduler, scaler, state: TrainState, sig: str,
                     fingerprint: dict[str, Any] | None = None, data_root: str | None = None,
                     env: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "signature": sig,
        "data_fingerprint": fingerprint or {},
        "data_root": data_root,
        "environment": env or {},
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


def restore(path: Path, model: Classifier, optimizer, scheduler, scaler, sig: str,
            fingerprint: dict[str, Any] | None = None, data_root: str | None = None,
            env: dict[str, Any] | None = None, resume_anyway: bool = False) -> TrainState:
    """Load a checkpoint of this config. Refuses other data (fingerprint) and, unless ``resume_anyway``, another
    environment (:func:`gsm.environment.resume_differences`: world size, device type, torch, code revision, CPU
    threads on the CPU), since the resumed run's numbers would be those of neither environment."""
    ckpt = runs.load_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("signature") != sig:
        other = ckpt.get("signature") if isinstance(ckpt, dict) else None
        raise CheckpointError(f"checkpoint {path} belongs to another config (signature {other} != {sig}); "
                              f"delete it or rerun with trainer.force=true")
    recorded = ckpt.get("data_fingerprint")
    if fingerprint and recorded:
        diff = fingerprint_differences(recorded, fingerprint)
        if diff:
            raise DataError(
                f"cannot resume {path.parent.parent}: its checkpoint was trained on other data "
                f"(dataset.root {ckpt.get('data_root')!r} then, {data_root!r} now; differs: {'; '.join(diff)}). "
                f"Point dataset.root at the data it started on, or rerun with trainer.force=true to start over on this data"
            )
    try:
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
    then = ckpt.get("environment")
    if env is not None and then:
        diff = resume_differences(then, env)
        if diff and not resume_anyway:
            raise ResumeError(
                f"cannot resume {path.parent.parent}: its checkpoint (epoch {state.epoch}) was written in another "
                f"environment ({', '.join(diff)}), so resuming here would give the numbers of neither. Rerun where it "
                f"ran, or add trainer.resume_anyway=true to continue here (results.json then lists which epochs ran where)"
            )
        if diff:
            log.warning("resuming in another environment (%s): trainer.resume_anyway=true; results.json lists "
                        "which epochs ran where", ", ".join(diff))
            state.environments = segments(state.environments or segments([], then, 1), env, state.epoch + 1)
    elif env is not None:
        print(f"gsm: note: {path} predates environment records, so this resume cannot check that it runs in the "
              f"environment the run started in", file=sys.stderr)
    STATUS.checkpoint_epoch = state.epoch
    return state


def _snapshot(obj: Any, pin: bool) -> Any:
    """A deep copy of a state dict with every tensor on the CPU (pinned when ``pin``), so training can go on."""
    if isinstance(obj, Tensor):
        if obj.device.type == "cpu":
            return obj.detach().clone()
        out = torch.empty(obj.shape, dtype=obj.dtype, device="cpu", pin_memory=pin)
        return out.copy_(obj.detach(), non_blocking=pin)
    if isinstance(obj, dict):
        return {k: _snapshot(v, pin) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_snapshot(v, pin) for v in obj)
    return copy.deepcopy(obj)


class Checkpointer:
    """Checkpoints written in a background thread: the state is snapshotted to (pinned) CPU memory, then
    written with the same atomic rename; at most one write is in flight, and :meth:`wait` joins it (before
    the next snapshot, at the end of the run, and on Ctrl-C)."""

    def __init__(self, path: Path, pin: bool) -> None:
        self.path, self.pin = path, pin
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, state: dict[str, Any], epoch: int) -> None:
        self.wait()
        snapshot = _snapshot(state, self.pin)
        if self.pin:
            torch.cuda.synchronize()

        def write() -> None:
            try:
                runs.save_checkpoint(self.path, snapshot)
                STATUS.checkpoint_epoch = epoch
            except BaseException as exc:  # re-raised in the main thread by wait()
                self._error = exc
            finally:
                STATUS.writing_epoch = None

        STATUS.writing_epoch = epoch

        self._thread = threading.Thread(target=write, name="gsm-checkpoint", daemon=False)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err


# --------------------------------------------------------------------------- reporting


def _tag(key: str) -> str:
    """TensorBoard tag of a history column: train/…, test/…, time/…, lr."""
    if key.startswith("train_") and not key.endswith("seconds"):
        return "train/" + key[len("train_"):]
    if key.startswith("test_"):
        return "test/" + key[len("test_"):]
    if key.endswith("seconds") or key == "images_per_second":
        return "time/" + key
    return key


def warn(message: str) -> None:
    """One ``gsm: warning:`` line on stderr."""
    print(f"gsm: warning: {message}", file=sys.stderr)


class Reporter:
    """train.log (via logging), TensorBoard events and summary.csv — rank 0 only.

    All three are telemetry: a write that fails (no space, no permission, the folder removed) is one
    warning naming the path and the cause, and the run goes on without that output; its results are
    not affected. (Results and checkpoints are not telemetry: their writes stop the run, StorageError.)
    """

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.run_dir, self.enabled, self.writer = run_dir, enabled, None
        self._summary_ok = True
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            _quiet_event_writer_threads()

            self._guard(lambda: setattr(self, "writer", SummaryWriter(log_dir=str(run_dir / "tensorboard"))))

    def _guard(self, write) -> None:
        """Run one TensorBoard write; on failure warn once and stop writing events."""
        try:
            write()
        except Exception as exc:  # noqa: BLE001 - telemetry: any failure of the event writer (OSError, its thread's)
            writer, self.writer = self.writer, None
            warn(f"cannot write TensorBoard events to {self.run_dir / 'tensorboard'} ({_cause(exc)}); "
                 "the run goes on without them (its results are not affected)")
            if writer is not None:
                try:
                    writer.close()
                except Exception:  # noqa: BLE001 - already reported
                    pass

    def epoch(self, row: dict[str, Any], head: Head) -> None:
        if not self.enabled:
            return
        step = row["epoch"]
        scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k not in ("epoch", "epochs")}
        log.info("epoch %d/%s  %s", step, row.get("epochs"), "  ".join(f"{k}={v:.4g}" for k, v in scalars.items()))
        if self.writer is None:
            return

        def write() -> None:
            for k, v in scalars.items():
                self.writer.add_scalar(_tag(k), v, step)
            for name, values in head.histograms().items():
                self.writer.add_histogram(f"head/{name}", values.detach().float().cpu(), step)
            self.writer.flush()

        self._guard(write)

    def step(self, global_step: int, loss: float, images_per_second: float) -> None:
        """Per-step curves (``trainer.log_every_n_steps``, by default ~10 points per epoch): ``train/loss_step``
        and ``time/images_per_second_step`` against the global step."""
        if self.writer is None:
            return

        def write() -> None:
            self.writer.add_scalar("train/loss_step", loss, global_step)
            self.writer.add_scalar("time/images_per_second_step", images_per_second, global_step)

        self._guard(write)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, Any]) -> None:
        """The run's settings → its final metrics, for TensorBoard's HParams tab (a (μ, σ) sweep side by side).
        A metric without a finite value (e.g. mAP of a test split without positives) is left out."""
        if self.writer is None:
            return
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items() if v is not None}
        finite = {f"hparam/{k}": float(v) for k, v in metrics.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}

        def write() -> None:
            self.writer.add_hparams(clean, finite, run_name=".")
            self.writer.flush()

        self._guard(write)

    def summary(self, history: list[dict[str, Any]]) -> None:
        """summary.csv: one row per epoch, rewritten whole (atomically) from the run's history."""
        if not self.enabled or not history or not self._summary_ok:
            return
        buf = io.StringIO()
        fields: dict[str, None] = {}  # every numeric column in first-seen order (epochs without evaluation lack test_*)
        for row in history:
            fields.update((k, None) for k, v in row.items() if isinstance(v, (int, float)))
        writer = csv.DictWriter(buf, fieldnames=list(fields), restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        try:
            runs.atomic_write_bytes(self.run_dir / "summary.csv", lambda fh: fh.write(buf.getvalue().encode()))
        except runs.StorageError as exc:
            self._summary_ok = False
            warn(f"{exc}; summary.csv is not updated any more (results.json will hold the whole history)")

    def close(self) -> None:
        self._guard(lambda: self.writer.close() if self.writer is not None else None)
        self.writer = None


def _quiet_event_writer_threads() -> None:
    """TensorBoard writes events in a thread of its own; a write that fails there is stored and raised again by
    the writer's next call (where :meth:`Reporter._guard` turns it into one warning), but the thread also prints
    it as a traceback on its way out. This hook (installed once per process) drops that duplicate."""
    previous = threading.excepthook
    if getattr(previous, "_gsm_quiet", False):
        return

    def hook(args: Any) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, Exception):
            return
        previous(args)

    hook._gsm_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _cause(exc: BaseException) -> str:
    """The reason of a failed write in a few words ("No space left on device", "Permission denied" ...)."""
    while exc.__cause__ is not None and not isinstance(exc, OSError):
        exc = exc.__cause__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def epoch_row(epoch: int, epochs: int, lr: float, train: dict[str, float], metrics: dict[str, Any],
              multilabel: bool) -> dict[str, Any]:
    """One history row: fractions under ``*_frac`` names (gsm.results.record_metrics), seconds under ``*_seconds``;
    no ``test_*`` columns for an epoch that was not evaluated (``metrics`` empty, ``trainer.eval_every``)."""
    from gsm.results import record_metrics

    test = record_metrics(metrics, multilabel, history=True) if metrics else {}
    return {"epoch": epoch, "epochs": epochs, "lr": lr, **train, **test}


def build_results(
    cfg: DictConfig, model: Classifier, splits: DatasetSplits, test: EvalOutputs, train_out: EvalOutputs | None,
    state: TrainState, wall: float, sig: str, env: dict[str, Any], run_dir: Path,
    metrics: dict[str, Any] | None = None,
) -> Any:
    """The run's :class:`gsm.results.RunRecord` (what results.json holds; tables and figures read only it)."""
    from gsm.results import RunRecord, best_epoch, record_metrics

    multilabel = splits.multilabel
    metrics = metrics if metrics is not None else compute_metrics(test, multilabel)  # the last epoch's, when known
    empirical = {"test": analysis.empirical_stats(test.x, test.targets, multilabel)}
    if train_out is not None:
        empirical["train"] = analysis.empirical_stats(train_out.x, train_out.targets, multilabel)
    history = state.history
    return RunRecord(
        run_name=run_dir.name, signature=sig,
        dataset=cfg.dataset.name, model=cfg.model.name, head=cfg.head.name,
        mu=cfg.head.get("mu"), sigma=cfg.head.get("sigma"), lam=cfg.head.get("lam"),
        seed=int(cfg.seed), epochs=int(cfg.trainer.epochs), multilabel=multilabel,
        num_classes=splits.num_classes, class_names=list(splits.class_names),
        train_samples=len(splits.train), test_samples=len(splits.test), data_notes=splits.notes,
        data_fingerprint=splits.fingerprint, data_root=_data_root(cfg),
        **record_metrics(metrics, multilabel),
        **({} if multilabel else dict(zip(("best_top1_error_frac", "best_epoch"), best_epoch(state.history)))),
        learned=model.head.learned_stats(), empirical=empirical,
        history=history, train_time_s=state.train_time, wall_time_s=wall,
        eval_seconds_total=sum(r.get("eval_seconds", 0.0) for r in history),
        checkpoint_seconds_total=sum(r.get("checkpoint_seconds", 0.0) for r in history),
        environment={**env, "segments": state.environments} if len(state.environments) > 1 else env,
        device=env["device_name"] if env["device"] == "cuda" else "cpu", world_size=env["world_size"],
        git_rev=env["git_rev"] + ("-dirty" if env["git_dirty"] else ""), torch=env["torch"],
        config=OmegaConf.to_container(cfg, resolve=True),
    )


def save_outputs(path: Path, out: EvalOutputs, multilabel: bool) -> None:
    """Test-set x, p and targets for the figures: gsm.results.write_test_outputs (versioned; read back safely)."""
    from gsm.results import write_test_outputs

    write_test_outputs(path, out.x, out.probabilities(multilabel), out.targets, multilabel=multilabel)


# --------------------------------------------------------------------------- the run folder


def _data_root(cfg: DictConfig) -> str | None:
    root = cfg.dataset.get("root")
    return str(Path(str(root)).expanduser().resolve()) if root not in (None, "") else None


def _recipe_config(cfg: DictConfig) -> DictConfig | None:
    """The same dataset, model and head with no other overrides (what a folder name is relative to)."""
    try:
        from hydra import compose

        hc = HydraConfig.get()
        choices = hc.runtime.choices
        extra = [o for o in hc.overrides.hydra if o.startswith("hydra.searchpath")]
        return compose("train", overrides=[f"dataset={choices['dataset']}", f"model={choices['model']}",
                                           f"head={choices['head']}", *extra])
    except Exception:  # noqa: BLE001 - only the readable part of the name depends on it
        return None


def locate_run_dir(cfg: DictConfig, sig: str) -> Path:
    """The run's folder: the existing one of this signature (any name), else a new readable name."""
    dataset_dir = Path(str(cfg.output_root)) / "runs" / str(cfg.dataset.name)
    found = runs.find_run_dir(dataset_dir, sig)
    return found if found is not None else dataset_dir / runs.readable_name(cfg, _recipe_config(cfg), sig)


def finished_results(run_dir: Path, splits: DatasetSplits, cfg: DictConfig, env_now: dict[str, Any],
                     warn: bool = True) -> dict[str, Any] | None:
    """The results of a finished run that this config may skip to, after checking its data; None when the run
    must (re)train. Reads only: a skipped run's folder is left exactly as it was."""
    from gsm.results import ResultsError, read_record

    path = run_dir / "results.json"
    if cfg.trainer.force or not path.exists():
        return None
    try:
        record = read_record(path)
    except ResultsError as exc:
        if warn:
            log.warning("%s; the run is treated as unfinished and trains again", exc)
        return None
    res = record.to_dict()
    recorded = res.get("data_fingerprint")
    if recorded:
        diff = fingerprint_differences(recorded, splits.fingerprint)
        if diff:
            raise DataError(
                f"{run_dir} finished on other data than dataset.root={_data_root(cfg)!r} holds now (it ran on "
                f"dataset.root={res.get('data_root')!r}; differs: {'; '.join(diff)}). Rerun with trainer.force=true to "
                f"retrain on this data (the recorded results are replaced), or use another output_root"
            )
    else:
        print(f"gsm: note: {path} predates data fingerprints, so its data cannot be checked", file=sys.stderr)
    env_then = res.get("environment") or {"git_rev": str(res.get("git_rev", "")).removesuffix("-dirty"), "torch": res.get("torch")}
    changes = [f"{k} {env_then.get(k)} → {env_now.get(k)}" for k in ("git_rev", "git_dirty", "torch", "device_name", "world_size", "cpu_threads")
               if k in env_then and env_then.get(k) != env_now.get(k)]
    if changes:
        print(f"gsm: note: this run was made in another environment ({', '.join(changes)}); trainer.force=true retrains",
              file=sys.stderr)
    print(f"gsm: this run is finished; results: {path} (trainer.force=true retrains)")
    return res


class _LogFile(logging.FileHandler):
    """train.log; a record that cannot be written is one warning, then the log file is given up (telemetry)."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        exc = sys.exc_info()[1]
        logging.getLogger().removeHandler(self)
        warn(f"cannot write {self.baseFilename} ({_cause(exc) if exc else 'write failed'}); "
             "the log goes on on stderr only (the run's results are not affected)")


def _attach_log_file(run_dir: Path) -> logging.Handler | None:
    try:
        handler = _LogFile(run_dir / "train.log")
    except OSError as exc:
        warn(f"cannot write {run_dir / 'train.log'} ({_cause(exc)}); the log goes on on stderr only")
        return None
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def _record_invocation(run_dir: Path, cfg: DictConfig) -> None:
    """``.hydra/config.yaml`` and ``overrides.yaml``: the config and command line that this run trains with."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    runs.atomic_write_bytes(run_dir / ".hydra" / "config.yaml", lambda fh: fh.write(OmegaConf.to_yaml(cfg).encode()))
    runs.atomic_write_bytes(run_dir / ".hydra" / "overrides.yaml",
                            lambda fh: fh.write(OmegaConf.to_yaml(OmegaConf.create(overrides)).encode()))


# --------------------------------------------------------------------------- the run


def _on_main(dist: Dist, check) -> dict[str, Any] | None:
    """Run ``check`` on rank 0 only; every rank gets whether it found a finished run (its results on rank 0)."""
    done = check() if dist.is_main else None
    if dist.enabled:
        holder = [done is not None]
        torch_dist.broadcast_object_list(holder, 0)
        if holder[0] and done is None:
            return {}
    return done


def _cpu_threads(cfg: DictConfig) -> int:
    """trainer.cpu_threads, or the cores this process may use shared among the local processes."""
    want = cfg.trainer.get("cpu_threads")
    if want is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        want = max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    return int(want)


def _num_workers(cfg: DictConfig) -> int:
    value = cfg.trainer.num_workers
    if value == "auto":
        from gsm.data.loaders import auto_num_workers

        return auto_num_workers(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return int(value)


def _compile(cfg: DictConfig, device: torch.device) -> bool:
    value = cfg.trainer.get("compile", False)
    return device.type == "cuda" if value == "auto" else bool(value)


def _log_every(cfg: DictConfig, steps: int) -> int:
    value = cfg.trainer.get("log_every_n_steps")
    if value is None:  # a progress bar on a terminal; about ten lines per epoch in a log file
        return 0 if (sys.stderr.isatty() and cfg.trainer.progress) else max(1, steps // 10)
    return int(value)


class Terminated(BaseException):
    """SIGTERM (``kill``, ``scancel``, a preempted SLURM job): the run stops like on Ctrl-C (one line, exit 143)."""


@contextlib.contextmanager
def _stop_on_sigterm():
    """While a run trains, SIGTERM raises :class:`Terminated` — at once during an epoch's training, or after the
    epoch's checkpoint when the epoch is already trained (so a finished epoch is never lost). The previous handler
    is restored afterwards. Only the main thread can take signals (a run in another thread keeps the default)."""
    def handler(signum: int, frame: Any) -> None:
        if STATUS.defer_sigterm:
            STATUS.sigterm = True
        else:
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


def _check_finite(metrics: dict[str, Any], epoch: int) -> None:
    """A non-finite test loss or metric is divergence, like a non-finite train loss (nothing is recorded). A
    metric that has no value (mAP of a test split without positives: None) is not."""
    bad = [k for k, v in metrics.items()  # NaN is "no value" (a mean over no class) except for the loss
           if isinstance(v, float) and (math.isinf(v) or (k == "loss" and math.isnan(v)))]
    if bad:
        raise TrainingError(f"epoch {epoch}: the test {', '.join(f'{k} is {metrics[k]}' for k in bad)} (diverged). "
                            f"{_divergence_hint()}")


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def run(cfg: DictConfig) -> dict[str, Any] | None:
    """Train and evaluate one config; returns the results dict (None for dry runs)."""
    from gsm.config import validate_config

    validate_config(cfg)
    wall_start = time.perf_counter()
    torch.set_num_threads(_cpu_threads(cfg))
    device = resolve_device(str(cfg.trainer.device), int(os.environ.get("LOCAL_RANK", "0")))
    dist = init_distributed(device)
    if not dist.is_main:
        logging.getLogger("gsm").setLevel(logging.WARNING)
    STATUS.epoch = STATUS.checkpoint_epoch = STATUS.writing_epoch = None
    STATUS.defer_sigterm = STATUS.sigterm = False
    try:
        with _stop_on_sigterm():
            return _run(cfg, dist, device, wall_start)
    finally:
        if dist.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def _run(cfg: DictConfig, dist: Dist, device: torch.device, wall_start: float) -> dict[str, Any] | None:
    sig = runs.signature(cfg)
    amp = amp_dtype(cfg, device)
    batch_size = int(cfg.trainer.batch_size)
    if batch_size < 1 or batch_size % dist.world_size:
        raise ConfigError(f"trainer.batch_size={batch_size} (the global batch) must be a positive multiple of the {dist.world_size} processes")
    torch.manual_seed(int(cfg.seed))  # before anything random: the data's subset, the model's initial weights
    splits = load_splits(cfg.dataset, write=not cfg.dry_run)  # a dry run writes nothing (no cache, no download)
    model = build_classifier(
        cfg.model, cfg.head, num_classes=splits.num_classes, multilabel=splits.multilabel,
        in_channels=splits.in_channels, image_size=splits.image_size,
    )
    if cfg.dry_run:  # nothing is written anywhere
        if dist.is_main:
            print(json.dumps({
                "params": sum(p.numel() for p in model.parameters()), "train_samples": len(splits.train),
                "test_samples": len(splits.test), "num_classes": splits.num_classes,
                "multilabel": splits.multilabel, "input_shape": [splits.in_channels, splits.image_size, splits.image_size],
            }))
        return None

    num_workers, compiled = _num_workers(cfg), _compile(cfg, device)
    env = environment(device, dist.world_size, num_workers, compiled)
    run_dir = locate_run_dir(cfg, sig) if dist.is_main else None
    if dist.enabled:
        holder = [run_dir]
        torch_dist.broadcast_object_list(holder, 0)
        run_dir = holder[0]
    assert run_dir is not None
    done = _on_main(dist, lambda: finished_results(run_dir, splits, cfg, env))
    if done is not None:
        return done

    lock = log_handler = None
    if dist.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise runs.StorageError(f"cannot create the run folder {run_dir} ({exc.strerror})") from exc
        lock = runs.RunLock(run_dir)
        wait = cfg.trainer.get("wait_for_lock")
        if wait is None:  # a sweep that launches the same config twice waits, then finds it finished
            wait = _in_sweep()
        lock.acquire(bool(wait), on_wait=lambda who: print(f"gsm: {run_dir} is in use by {who}; waiting for it", file=sys.stderr))
    try:
        done = _on_main(dist, lambda: finished_results(run_dir, splits, cfg, env, warn=False))  # finished while we waited?
        if done is not None:
            return done
        if dist.is_main:
            for tmp in runs.remove_debris(run_dir):
                log.info("removed %s (left by an interrupted write)", tmp)
            if cfg.trainer.force:
                for p in (run_dir / "results.json", run_dir / "checkpoints" / "last.pt", run_dir / "summary.csv",
                          run_dir / "test_outputs.pt"):
                    p.unlink(missing_ok=True)
            log_handler = _attach_log_file(run_dir)
            _record_invocation(run_dir, cfg)
        dist.barrier()  # every rank now sees the same checkpoint state
        return _train(cfg, dist, device, wall_start, sig, amp, batch_size, splits, model, run_dir, env, num_workers, compiled)
    except GsmError as exc:  # the run's own log ends with the line the user sees (gsm-tables status reads it)
        if log_handler is not None:
            log_handler.emit(logging.LogRecord("gsm.train", logging.ERROR, __file__, 0, "gsm: error: %s", (exc,), None))
        raise
    finally:
        if log_handler is not None:
            logging.getLogger().removeHandler(log_handler)
            log_handler.close()
        if lock is not None:
            lock.release()


def _train(cfg: DictConfig, dist: Dist, device: torch.device, wall_start: float, sig: str, amp: torch.dtype | None,
           batch_size: int, splits: DatasetSplits, model: Classifier, run_dir: Path, env: dict[str, Any],
           num_workers: int, compiled: bool) -> dict[str, Any]:
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    channels_last = bool(cfg.trainer.channels_last) and device.type == "cuda"
    eval_batch = cfg.trainer.get("eval_batch_size")
    data: DataBundle = build_data(
        cfg.dataset, batch_size=batch_size // dist.world_size, device=device, seed=int(cfg.seed), rank=dist.rank,
        world_size=dist.world_size, num_workers=num_workers,
        eval_batch_size=int(eval_batch) if eval_batch is not None else 4 * batch_size // dist.world_size,
        channels_last=channels_last, splits=splits,
    )
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    epochs = int(cfg.trainer.epochs)
    schedule = OmegaConf.to_container(cfg.schedule, resolve=True)
    scheduler = build_scheduler(optimizer, epoch_factors(schedule.pop("name"), epochs, **schedule))
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
    data_root = _data_root(cfg)

    if ckpt_path.exists():
        state = restore(ckpt_path, model, optimizer, scheduler, scaler, sig, splits.fingerprint, data_root, env,
                        bool(cfg.trainer.get("resume_anyway", False)))
        log.info("resuming %s from epoch %d/%d", run_dir, state.epoch, epochs)
    else:
        state = TrainState(environments=segments([], env, 1))
        if model.head.empirical_init:
            empirical_init(model, data.train, model.head.init_batches, dist, amp)
    log.info("run dir %s | %s on %s x%d | %d train / %d test images | %d CPU threads", run_dir, cfg.model.name, device,
             dist.world_size, len(splits.train), len(splits.test), torch.get_num_threads())

    train_model: nn.Module = model
    if dist.enabled:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if compiled:
        train_model = torch.compile(train_model, mode=cfg.trainer.get("compile_mode") or None)

    checkpointer = Checkpointer(ckpt_path, pin=device.type == "cuda") if dist.is_main else None
    reporter = Reporter(run_dir, dist.is_main)
    try:
        return _epochs_and_results(cfg, dist, amp, splits, model, train_model, data, optimizer, scheduler, scaler,
                                   state, checkpointer, reporter, sig, env, run_dir, wall_start)
    finally:
        reporter.close()


def _epochs_and_results(cfg: DictConfig, dist: Dist, amp: torch.dtype | None, splits: DatasetSplits, model: Classifier,
                        train_model: nn.Module, data: DataBundle, optimizer, scheduler, scaler, state: TrainState,
                        checkpointer: Checkpointer | None, reporter: Reporter, sig: str, env: dict[str, Any],
                        run_dir: Path, wall_start: float) -> dict[str, Any]:
    epochs, data_root = int(cfg.trainer.epochs), _data_root(cfg)
    log_every = _log_every(cfg, len(data.train))
    every = int(cfg.trainer.get("checkpoint_every") or 1)
    eval_every = int(cfg.trainer.get("eval_every") or 1)
    last_eval: EvalOutputs | None = None
    last_metrics: dict[str, Any] | None = None
    try:
        for epoch in range(state.epoch, epochs):
            STATUS.epoch = epoch + 1
            lr = optimizer.param_groups[0]["lr"]
            train_stats = train_one_epoch(train_model, model.head, data.train, optimizer, scaler, amp, epoch,
                                          bool(cfg.trainer.progress) and dist.is_main, log_every=log_every, epochs=epochs,
                                          world_size=dist.world_size, on_step=reporter.step if reporter.writer else None,
                                          step_every=log_every or max(1, len(data.train) // 10))
            STATUS.defer_sigterm = True  # the epoch is trained: a SIGTERM from here waits for its checkpoint
            scheduler.step()
            sync_buffers(model, dist)
            eval_seconds, metrics = 0.0, {}
            if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:  # evaluation changes no state or RNG stream
                t0 = time.perf_counter()
                last_eval = evaluate(model, data.test, dist, amp, log_every=log_every)
                eval_seconds = time.perf_counter() - t0
                if not torch.isfinite(last_eval.logits).all():
                    raise TrainingError(f"epoch {epoch + 1}: the model's test outputs are not finite (diverged). {_divergence_hint()}")
                metrics = last_metrics = compute_metrics(last_eval, splits.multilabel)
                _check_finite(metrics, epoch + 1)
            row = epoch_row(epoch + 1, epochs, lr, train_stats, metrics, splits.multilabel)
            row["eval_seconds"] = eval_seconds
            # the checkpoint holds this row too; its checkpoint_seconds (the time the loop waits for the
            # snapshot, the write runs behind) is only known after the snapshot, so the saved copy says 0
            row["checkpoint_seconds"] = 0.0
            state.history.append(row)
            t0 = time.perf_counter()
            state.epoch, state.train_time = epoch + 1, state.train_time + train_stats["train_seconds"]
            due = (epoch + 1) % every == 0 or epoch + 1 == epochs or STATUS.sigterm  # a SIGTERM: keep this epoch
            if checkpointer is not None and due:
                checkpointer.save(checkpoint_state(model, optimizer, scheduler, scaler, state, sig, splits.fingerprint,
                                                   data_root, env), epoch + 1)
            row["checkpoint_seconds"] = time.perf_counter() - t0
            reporter.epoch(row, model.head)
            reporter.summary(state.history)
            STATUS.defer_sigterm = False
            if STATUS.sigterm:
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

    if last_eval is None:  # resumed after the last epoch's checkpoint
        last_eval = evaluate(model, data.test, dist, amp)
    train_eval = None
    if cfg.trainer.analyze_train and data.train_eval is not None:
        train_eval = evaluate(model, data.train_eval, dist, amp)
    record = build_results(cfg, model, splits, last_eval, train_eval, state, time.perf_counter() - wall_start, sig, env,
                           run_dir, metrics=last_metrics)
    results = record.to_dict()
    if dist.is_main:  # results.json last: a run is finished exactly when its record exists
        headline_key = "mAP_frac" if splits.multilabel else "top1_error_frac"
        hp = {"dataset": cfg.dataset.name, "model": cfg.model.name, "head": cfg.head.name, "seed": int(cfg.seed),
              "lr": float(cfg.optimizer.lr), "epochs": epochs, **model.head.hparams()}
        reporter.hparams(hp, {headline_key: results[headline_key]})
        save_outputs(run_dir / "test_outputs.pt", last_eval, splits.multilabel)
        record.write(run_dir / "results.json")
        log.info("finished: %s=%s | results: %s", headline_key, _fmt(results[headline_key]), run_dir / "results.json")
    dist.barrier()
    return results


CONFIG_DIR = str(Path(__file__).resolve().parent / "configs")


def _in_sweep() -> bool:
    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        results = run(cfg)
    except KeyboardInterrupt:
        if STATUS.epoch:
            print(f"gsm: interrupted in epoch {STATUS.epoch}; rerun the same command to resume ({STATUS.checkpoint_text()})",
                  file=sys.stderr)
        else:
            print("gsm: interrupted before training started; no result was recorded", file=sys.stderr)
        sys.exit(130)
    except Terminated:
        where = f"in epoch {STATUS.epoch}" if STATUS.epoch else "before training started"
        print(f"gsm: terminated (SIGTERM) {where}; rerun the same command to resume ({STATUS.checkpoint_text()})",
              file=sys.stderr)
        sys.exit(143)
    except runs.StorageError as exc:
        kept = ""
        if STATUS.epoch:
            kept = (f"; the checkpoint of epoch {STATUS.checkpoint_epoch} is intact" if STATUS.checkpoint_epoch
                    else "; no checkpoint was written yet")
        print(f"gsm: error: {exc}{kept}", file=sys.stderr)
        sys.exit(2)  # a full or vanished disk: the next jobs of a sweep would fail the same way
    except GsmError as exc:
        print(f"gsm: error: {exc}", file=sys.stderr)
        if _in_sweep():  # the other jobs go on; gsm.sweeps.SweepReport lists this one at the end
            hc = HydraConfig.get()
            from gsm.sweeps import record_failure

            record_failure(hc.sweep.dir, int(hc.job.num), list(hc.overrides.task), str(exc))
            return None
        sys.exit(2)
    if not results:
        return None
    return results.get("top1_error_frac", results.get("mAP_frac"))


def main() -> None:
    """``python train.py …`` and the console script ``gsm-train``: checks the command line, then runs Hydra."""
    from gsm.cli import HELP_FLAGS, help_and_exit
    from gsm.config import check_overrides

    if any(arg in HELP_FLAGS for arg in sys.argv[1:]):  # python -m gsm.train --help: the same help as train.py
        help_and_exit(sys.argv[1:])
    runs.register_resolvers()
    try:
        check_overrides(sys.argv[1:])
    except GsmError as exc:
        print(f"gsm: error: {exc}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


def cli() -> None:
    """Console script ``gsm-train``."""
    main()


if __name__ == "__main__":
    main()
