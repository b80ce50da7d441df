"""One way to build a run from its config, shared by the trainer (:mod:`gsm.train.app`) and the estimate
(:mod:`gsm.estimate`): the model with its head (:func:`build_model`), then the loaders, optimiser, schedule and
AMP scaler on the run's :class:`~gsm.train.device.Machine` (:func:`build_run`). What differs between the two is
only where the batches come from: the trainer's data splits, or the estimate's synthetic batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gsm.data import DataBundle, build_data
from gsm.data.loaders import Placement
from gsm.data.types import DatasetSplits
from gsm.heads import param_groups
from gsm.models import Classifier, build_classifier
from gsm.schedules import build_scheduler, epoch_factors
from gsm.settings import TrainerSettings
from gsm.train.device import Machine


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


@dataclass
class BuiltRun:
    """What a run trains with, on its machine."""

    model: Classifier
    optimizer: torch.optim.SGD
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    data: DataBundle | None  # the loaders; None when the caller brings its own batches

    def training_model(self, machine: Machine) -> nn.Module:
        """The model the training steps call: wrapped in DDP for several processes, then compiled when
        ``trainer.compile`` says so. Call it after the weights are final (resumed or initialised): DDP
        broadcasts rank 0's weights when it wraps."""
        model: nn.Module = self.model
        device = machine.device
        if machine.dist.enabled:
            model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if machine.compiled:
            model = torch.compile(model, mode=machine.compile_mode)
        return model


def build_run(cfg: DictConfig, trainer: TrainerSettings, machine: Machine, model: Classifier, *,
              splits: DatasetSplits | None = None) -> BuiltRun:
    """Loaders of ``splits`` (when given), ``model`` on the machine's device (channels-last when the machine
    says so), SGD (:func:`build_optimizer`), the epoch schedule of ``cfg.schedule`` over ``trainer.epochs``
    (:mod:`gsm.schedules`) and the AMP scaler (fp16 scales the loss)."""
    dist, device = machine.dist, machine.device
    data = None
    if splits is not None:
        place = Placement(device, int(cfg.seed), dist.rank, dist.world_size, machine.channels_last)
        data = build_data(cfg.dataset, batch_size=machine.batch_size, place=place, num_workers=machine.num_workers,
                          eval_batch_size=machine.eval_batch_size, splits=splits)
    model.to(device)
    if machine.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    schedule = OmegaConf.to_container(cfg.schedule, resolve=True)
    scheduler = build_scheduler(optimizer, epoch_factors(schedule.pop("name"), trainer.epochs, **schedule))
    scaler = torch.amp.GradScaler(device.type, enabled=machine.amp is torch.float16)
    return BuiltRun(model, optimizer, scheduler, scaler, data)
