"""Batch iterators the trainer consumes. Each yields ``(images, targets, index)`` on the device.

* :class:`DeviceLoader` — small-image sets (digits, CIFAR, Tiny ImageNet at 64²):
  the whole split lives on the training device as uint8 (N, C, H, W); random
  crop with zero (or reflect, ``dataset.pad_mode``) padding, horizontal flip and
  normalisation run batched on the device (airbench style), with no per-sample
  Python or PIL work.
* :class:`FileLoader` — JPEG sets (COCO, NUS-WIDE, Tiny ImageNet at 224²):
  a torch DataLoader with workers and torchvision transforms.

Both shard the data per DDP rank; the trainer gathers evaluation outputs by
``index``, so metrics always cover the whole test split.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from gsm.errors import ConfigError, GsmError

Batch = tuple[Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class Placement:
    """Where a process's batches go and which ones it gets, the same for every loader of a run: the ``device``
    (in channels-last memory format when ``channels_last``), and the shard of DDP rank ``rank`` of ``world_size``
    in an order drawn from ``seed`` (:func:`epoch_generator`)."""

    device: torch.device = torch.device("cpu")
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    channels_last: bool = False


def epoch_generator(seed: int, epoch: int, rank: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator that depends only on (seed, epoch, rank): resumed runs replay the same batches."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(epoch) * 9_176 + int(rank) * 131) % (2**63 - 1))
    return g


def random_crop_flip(images: Tensor, padding: int, flip: bool, generator: torch.Generator,
                     pad_mode: str = "zeros") -> Tensor:
    """Per-sample random crop and horizontal flip, batched.

    ``pad_mode``: ``zeros`` (as torchvision RandomCrop) or ``reflect`` (mirror without repeating the edge,
    numpy.pad's ``reflect``: the Wide ResNet release's ``randomcrop_type=reflection``, its
    augmentation.lua:11-12 ``nn.SpatialReflectionPadding``). Reflection commutes with the per-channel
    normalisation that follows, so padding the uint8 images equals the release's padding of normalised ones.
    The release draws one crop offset per batch and flips exactly half of it (augmentation.lua:26-27, 48);
    gsm draws per image, as for zero padding.
    """
    b, c, h, w = images.shape
    out = images
    if padding > 0:
        if pad_mode == "zeros":
            padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
        elif pad_mode == "reflect":
            if padding >= min(h, w):
                raise ValueError(f"reflect padding of {padding} px needs images larger than that (got {h}x{w})")
            padded = torch.nn.functional.pad(images, (padding, padding, padding, padding), mode="reflect")
        else:
            raise ValueError(f"unknown pad_mode {pad_mode!r}; valid: zeros, reflect")
        dy = torch.randint(0, 2 * padding + 1, (b,), device=images.device, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b,), device=images.device, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
        batch = torch.arange(b, device=images.device)[:, None, None, None]
        chan = torch.arange(c, device=images.device)[None, :, None, None]
        out = padded[batch, chan, rows, cols]
    if flip:
        mask = torch.rand(b, device=images.device, generator=generator) < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(-1), out)
    return out


class DeviceLoader:
    """uint8 images held on the device; batched augmentation and normalisation there."""

    def __init__(
        self,
        images: Tensor,
        targets: Tensor,
        batch_size: int,
        *,
        train: bool,
        mean: Sequence[float],
        std: Sequence[float],
        place: Placement = Placement(),
        crop_padding: int = 0,
        flip: bool = False,
        pad_mode: str = "zeros",
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"DeviceLoader needs uint8 (N, C, H, W) images (got {images.dtype}, {tuple(images.shape)})")
        device = place.device
        self.images = images.to(device)
        self.targets = targets.to(device)
        self.batch_size, self.train, self.place, self.epoch = int(batch_size), train, place, 0
        self.crop_padding, self.flip, self.pad_mode = int(crop_padding), bool(flip), pad_mode
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255.0

    @property
    def num_samples(self) -> int:
        return self.images.shape[0]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> Tensor:
        n, place = self.num_samples, self.place
        if self.train:
            perm = torch.randperm(n, generator=epoch_generator(place.seed, self.epoch, 0))
            per_rank = n // place.world_size  # equal shards keep DDP ranks in step
            return perm[place.rank * per_rank : (place.rank + 1) * per_rank]
        return torch.arange(place.rank, n, place.world_size)

    def __len__(self) -> int:
        place = self.place
        n = (self.num_samples // place.world_size if self.train
             else len(range(place.rank, self.num_samples, place.world_size)))
        return math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        place = self.place
        idx_all = self._indices().to(place.device)
        gen = epoch_generator(place.seed, self.epoch, place.rank + 1, place.device) if self.train else None
        for start in range(0, len(idx_all), self.batch_size):
            idx = idx_all[start : start + self.batch_size]
            x = self.images[idx]
            if self.train and (self.crop_padding or self.flip):
                x = random_crop_flip(x, self.crop_padding, self.flip, gen, self.pad_mode)
            x = (x.float() - self.mean) / self.std
            if place.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.targets[idx], idx


class IndexedDataset(Dataset):
    """Wraps a dataset of (image, target) so items also carry their index."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        image, target = self.base[i]
        return image, target, i


def available_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. a SLURM or container limit)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def auto_num_workers(local_jobs: int = 1) -> int:
    """``trainer.num_workers=auto``: DataLoader workers per process for the JPEG sets.

    The cores this process may use, divided among the ``local_jobs`` training processes sharing them
    (one per local GPU under torchrun, or parallel jobs of a sweep on one machine), minus one core per
    process for its own main thread (it launches the GPU work and collates the batches). With one core
    or fewer per process that is 0: the main process decodes, as workers would only compete with it.
    """
    if isinstance(local_jobs, bool) or not isinstance(local_jobs, int) or local_jobs < 1:
        raise ConfigError(f"auto_num_workers: local_jobs must be a positive integer (got {local_jobs!r})")
    per_job = available_cpus() // local_jobs
    return max(0, per_job - 1)


class FileLoader:
    """DataLoader over a file-backed dataset, moving batches to the device."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        train: bool,
        place: Placement = Placement(),
        num_workers: int = 4,
    ) -> None:
        self.dataset = IndexedDataset(dataset)
        self.train, self.place, self.epoch = train, place, 0
        self.sampler = DistributedSampler(self.dataset, num_replicas=place.world_size, rank=place.rank, shuffle=train,
                                          seed=int(place.seed), drop_last=train)
        cpus = available_cpus()
        self.loader = DataLoader(
            self.dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=min(int(num_workers), cpus),  # more workers than CPUs only adds contention
            pin_memory=place.device.type == "cuda",
            drop_last=False,
        )

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        # Worker seeds (random crops/flips) derive from (seed, epoch, rank): resumed epochs replay exactly.
        self.loader.generator = epoch_generator(self.place.seed, self.epoch, self.place.rank)
        batches = iter(self.loader)
        while True:
            try:
                x, y, idx = next(batches)
            except StopIteration:
                return
            except GsmError as exc:  # e.g. a corrupt JPEG: the user needs the file's name, not a worker traceback
                raise worker_error(exc) from None
            device = self.place.device
            x = x.to(device, non_blocking=True)
            if self.place.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(device, non_blocking=True), idx.to(device, non_blocking=True)


def worker_error(exc: GsmError) -> GsmError:
    """The original message of a gsm error re-raised by a DataLoader worker (which wraps it in a traceback)."""
    text = str(exc)
    marker = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    pos = text.rfind(marker)
    if "Original Traceback" not in text or pos < 0:
        return exc
    return type(exc)(text[pos + len(marker):].strip())
