"""One way to build a run from its config, shared by the trainer (:mod:`gsm.train.app`) and the estimate
(:mod:`gsm.estimate`): the model with its head (:func:`build_model`), then the loaders, optimiser, schedule,
AMP scaler and the compile decision (:func:`build_run`). What differs between the two is only where the
batches come from: the trainer's data splits, or the estimate's synthetic batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gsm.data import DataBundle, build_data
from gsm.data.types import DatasetSplits
from gsm.errors import ConfigError
from gsm.heads import param_groups
from gsm.models import Classifier, build_classifier
from gsm.schedules import build_scheduler, epoch_factors
from gsm.train.device import Dist, amp_dtype, compile_enabled, num_workers


def build_model(cfg: DictConfig, *, num_classes: int, multilabel: bool, in_channels: int, image_size: int) -> Classifier:
    """``cfg.model`` with ``cfg.head`` on top, for data of these shapes (on the CPU; :func:`build_run` moves it)."""
    return build_classifier(cfg.model, cfg.head, num_classes=num_classes, multilabel=multilabel,
                            in_channels=in_channels, image_size=image_size)


def build_optimizer(model: nn.Module, cfg: DictConfig) -> torch.optim.SGD:
    """SGD over :func:`gsm.heads.param_groups`: the heads' μ, σ in their own group (lr × dist_lr_mult, no decay)."""
    opt = cfg.optimizer
    groups = param_groups(model, float(opt.lr), float(opt.weight_decay))
    # nesterov: train.yaml says false; a hand-made config without the key (a library user's) means the same
    return torch.optim.SGD(groups, lr=float(opt.lr), momentum=float(opt.momentum), nesterov=bool(opt.get("nesterov")))


def per_process_batch(cfg: DictConfig, dist: Dist) -> int:
    """``trainer.batch_size`` (the global batch) split over the DDP processes; it must divide evenly."""
    batch_size = int(cfg.trainer.batch_size)
    if batch_size < 1 or batch_size % dist.world_size:
        raise ConfigError(f"trainer.batch_size={batch_size} (the global batch) must be a positive multiple of the "
                          f"{dist.world_size} processes")
    return batch_size // dist.world_size


def eval_batch_size(trainer: Mapping[str, Any], world_size: int = 1) -> int:
    """``trainer.eval_batch_size``; null: 4 x the per-process training batch (evaluation keeps no activations)."""
    value = trainer["eval_batch_size"]
    return int(value) if value is not None else 4 * int(trainer["batch_size"]) // world_size


@dataclass
class BuiltRun:
    """What a run trains with, on its device."""

    model: Classifier
    optimizer: torch.optim.SGD
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None  # autocast dtype (None: float32)
    channels_last: bool
    num_workers: int  # DataLoader workers of the JPEG sets
    compiled: bool  # whether training_model() compiles
    compile_mode: str | None
    data: DataBundle | None  # the loaders; None when the caller brings its own batches

    def training_model(self, dist: Dist, device: torch.device) -> nn.Module:
        """The model the training steps call: wrapped in DDP for several processes, then compiled when
        ``trainer.compile`` says so. Call it after the weights are final (resumed or initialised): DDP
        broadcasts rank 0's weights when it wraps."""
        model: nn.Module = self.model
        if dist.enabled:
            model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if self.compiled:
            model = torch.compile(model, mode=self.compile_mode)
        return model


def build_run(cfg: DictConfig, device: torch.device, model: Classifier, *, dist: Dist | None = None,
              splits: DatasetSplits | None = None) -> BuiltRun:
    """Loaders of ``splits`` (when given), ``model`` on ``device`` (channels-last on CUDA when
    ``trainer.channels_last``), SGD (:func:`build_optimizer`), the epoch schedule of ``cfg.schedule``
    (:mod:`gsm.schedules`), the AMP dtype and scaler (``trainer.amp``, CUDA only; fp16 scales the loss) and
    whether to compile (``trainer.compile``)."""
    dist = dist or Dist()
    channels_last = bool(cfg.trainer.channels_last) and device.type == "cuda"
    workers = num_workers(cfg)
    data = None
    if splits is not None:
        data = build_data(
            cfg.dataset, batch_size=per_process_batch(cfg, dist), device=device, seed=int(cfg.seed), rank=dist.rank,
            world_size=dist.world_size, num_workers=workers, eval_batch_size=eval_batch_size(cfg.trainer, dist.world_size),
            channels_last=channels_last, splits=splits,
        )
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    schedule = OmegaConf.to_container(cfg.schedule, resolve=True)
    scheduler = build_scheduler(optimizer, epoch_factors(schedule.pop("name"), int(cfg.trainer.epochs), **schedule))
    amp = amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
    return BuiltRun(model, optimizer, scheduler, scaler, amp, channels_last, workers, compile_enabled(cfg, device),
                    cfg.trainer.compile_mode or None, data)
