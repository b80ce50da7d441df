"""The work of an epoch: the training pass (:func:`train_one_epoch`), evaluation (:func:`evaluate`,
:func:`compute_metrics`) and the head's empirical μ/σ initialisation (:func:`empirical_init`)."""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from gsm.errors import DataError, TrainingError
from gsm.heads import Head, head_loss, init_from_data, logged_loss
from gsm.metrics import multilabel_metrics, thresholded_metrics, top1_error, topk_error
from gsm.models import Classifier
from gsm.settings import TrainerSettings
from gsm.train.device import Dist, all_reduce, gather
from gsm.train.state import RunStatus
from gsm.text import hms

log = logging.getLogger("gsm.train")


# --------------------------------------------------------------------------- evaluation


@dataclass
class EvalOutputs:
    x: Tensor  # fc outputs (N, m) or (N, m, 2), float32, CPU
    logits: Tensor  # (N, m)
    targets: Tensor

    def probabilities(self, multilabel: bool) -> Tensor:
        return torch.sigmoid(self.logits) if multilabel else torch.softmax(self.logits, dim=1)


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
    x_all, l_all, t_all, i_all = gather(local, dist)
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


def check_finite(metrics: dict[str, Any], epoch: int, status: RunStatus | None = None) -> None:
    """A non-finite test loss or metric is divergence, like a non-finite train loss (nothing is recorded). A
    metric that has no value (mAP of a test split without positives: None) is not."""
    bad = [k for k, v in metrics.items()  # NaN is "no value" (a mean over no class) except for the loss
           if isinstance(v, float) and (math.isinf(v) or (k == "loss" and math.isnan(v)))]
    if bad:
        raise TrainingError(f"epoch {epoch}: the test {', '.join(f'{k} is {metrics[k]}' for k in bad)} (diverged). "
                            f"{(status or RunStatus()).divergence_hint()}")


# --------------------------------------------------------------------------- training


def train_one_epoch(
    model: nn.Module, head: Head, loader: Any, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
    amp: torch.dtype | None, epoch: int, progress: bool, *, log_every: int = 0, epochs: int | None = None,
    world_size: int = 1, on_step: Callable[[int, float, float], None] | None = None, step_every: int = 0,
    status: RunStatus | None = None,
) -> dict[str, float]:
    """One pass over the training split. The loss is read to the host once per epoch (and at log steps).

    The optimiser follows :func:`gsm.heads.head_loss` (``head.loss_reduction``); with ``sum`` under DDP the
    loss is multiplied by the number of processes, because DDP averages gradients and the sum is over the
    global batch. Logs show :func:`gsm.heads.logged_loss` (the mean per image) either way. The head's
    :meth:`~gsm.heads.Head.finish_distribution_gradients` runs between backward and the step.
    ``on_step(step, loss, images_per_second)`` is called every ``step_every`` steps and at the last (the per-step
    TensorBoard curves); the loss is read from the device only at those steps and at ``log_every`` steps.
    A non-finite epoch loss is a :class:`~gsm.errors.TrainingError` naming the checkpoint ``status`` knows of.
    """
    model.train()
    loader.set_epoch(epoch)
    loss_sum = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)
    seen = 0
    start = time.perf_counter()
    bar = progress_bar(loader, epoch, progress)
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
                log_step(epoch, epochs, step, steps, value, seen, elapsed)
            if reports:
                on_step(epoch * steps + step, value, seen / elapsed)
    if seen == 0:
        raise TrainingError(f"epoch {epoch + 1}: the training loader gave no batches")
    mean_loss = (loss_sum / seen).item()  # one device sync per epoch
    if not math.isfinite(mean_loss):
        raise TrainingError(f"epoch {epoch + 1}: the training loss is {mean_loss} (diverged). "
                            f"{(status or RunStatus()).divergence_hint()}")
    seconds = time.perf_counter() - start
    return {"train_loss": mean_loss, "train_seconds": seconds, "images_per_second": seen / seconds}


def log_every_steps(trainer: TrainerSettings, steps: int) -> int:
    """``trainer.log_every_n_steps``; null: none on a terminal with a progress bar, about ten lines per epoch in a log."""
    if trainer.log_every_n_steps is None:
        return 0 if (sys.stderr.isatty() and trainer.progress) else max(1, steps // 10)
    return trainer.log_every_n_steps


def log_step(epoch: int, epochs: int | None, step: int, steps: int, loss: float, seen: int, elapsed: float) -> None:
    """One progress line for logs without a terminal (SLURM, Ray): loss, images/s, epoch and run ETA
    (``gsm-tables status`` reads it: gsm.status)."""
    per_step = elapsed / step
    epoch_eta = per_step * (steps - step)
    run_eta = epoch_eta + per_step * steps * ((epochs or epoch + 1) - epoch - 1)
    log.info("epoch %d/%s step %d/%d  loss=%.4g  %.0f img/s  epoch ETA %s  run ETA %s", epoch + 1, epochs or "?",
             step, steps, loss, seen / elapsed, hms(epoch_eta), hms(run_eta))


def progress_bar(loader: Any, epoch: int, enabled: bool) -> Any:
    """A tqdm bar over ``loader`` on a terminal; the loader itself otherwise."""
    if not enabled or not sys.stderr.isatty():
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, unit="batch")


def empirical_init(model: Classifier, loader: Any, dist: Dist, amp: torch.dtype | None) -> None:
    """``head.init=empirical``: :func:`gsm.heads.init_from_data` over the training loader in its epoch-0 order
    (up to ``head.init_batches`` batches; ``None``: the whole loader, as the release's ``Trainer:computeMuSigma``),
    every rank's sums pooled, the backbone under ``amp``."""
    loader.set_epoch(0)
    init_from_data(model, loader, amp=amp, all_reduce=(lambda t: all_reduce(t, dist)) if dist.enabled else None)
