"""Where a run computes (:class:`Machine`): the device, the processes of a DDP run (:class:`Dist`), CPU threads,
loader workers, AMP, channels-last, whether to ``torch.compile`` and each process's batch. Every value comes from
the checked :class:`gsm.settings.TrainerSettings`; what is decided here is only what depends on the machine
(a GPU, the cores, ``torchrun``), once, at the start of the run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn

from gsm.errors import ConfigError
from gsm.settings import TrainerSettings

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


@dataclass
class Dist:
    """This process's place in a DDP run (one process: rank 0 of 1)."""

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

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a picklable object)."""
        if not self.enabled:
            return value
        holder = [value]
        torch_dist.broadcast_object_list(holder, 0)
        return holder[0]

    def on_main(self, check: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
        """Run ``check`` on rank 0 only; every rank gets whether it found a finished run (its results on rank 0)."""
        done = check() if self.is_main else None
        if self.from_main(done is not None) and done is None:
            return {}
        return done


def local_processes() -> int:
    """The processes of this run on this machine (``torchrun``'s LOCAL_WORLD_SIZE; 1 without it)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """``trainer.device`` (auto | cpu | cuda) on this machine; cuda without a visible GPU is an error."""
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
        backend = "nccl" if device.type == "cuda" else "gloo"
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        if restart == "0":
            torch_dist.init_process_group(backend)
        else:
            # a group torchrun restarted (--max-restarts): torchrun's store still holds the failed group's addresses
            # under the same keys, and gloo connected to them (connection refused, the restart failed). Each attempt
            # gets keys of its own.
            from torch.distributed.rendezvous import rendezvous

            store, rank, size = next(rendezvous("env://"))
            torch_dist.init_process_group(backend, store=torch_dist.PrefixStore(f"gsm/attempt_{restart}", store),
                                          rank=rank, world_size=size)
    return Dist(torch_dist.get_rank(), torch_dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def close_distributed(dist: Dist) -> None:
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def cpu_threads(trainer: TrainerSettings) -> int:
    """``trainer.cpu_threads``, or the cores this process may use shared among the local processes."""
    if trainer.cpu_threads is not None:
        return trainer.cpu_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, local_processes()))


def num_workers(trainer: TrainerSettings) -> int:
    """``trainer.num_workers``: ``auto`` is :func:`gsm.data.loaders.auto_num_workers` for this machine's processes."""
    if trainer.num_workers == "auto":
        from gsm.data.loaders import auto_num_workers

        return auto_num_workers(local_processes())
    return int(trainer.num_workers)


def per_process_batch(trainer: TrainerSettings, world_size: int) -> int:
    """``trainer.batch_size`` (the global batch) split over the DDP processes; it must divide evenly."""
    if trainer.batch_size % world_size:
        raise ConfigError(f"trainer.batch_size={trainer.batch_size} (the global batch) must be a positive multiple "
                          f"of the {world_size} processes")
    return trainer.batch_size // world_size


@dataclass(frozen=True)
class Machine:
    """How one process of a run computes, decided once from ``trainer.*`` (:meth:`set_up` for the trainer,
    :meth:`decide` for a given device, as the estimate probes one)."""

    device: torch.device
    dist: Dist
    cpu_threads: int
    num_workers: int  # DataLoader workers of the JPEG sets
    amp: torch.dtype | None  # autocast dtype: trainer.amp on CUDA, None (float32) on the CPU
    channels_last: bool  # trainer.channels_last, CUDA only
    compiled: bool  # trainer.compile (auto: on CUDA)
    compile_mode: str | None
    batch_size: int  # this process's share of trainer.batch_size
    eval_batch_size: int  # trainer.eval_batch_size; null: 4 x the per-process training batch

    @classmethod
    def decide(cls, trainer: TrainerSettings, device: torch.device, dist: Dist | None = None) -> Machine:
        """The decisions for ``device`` and ``dist`` (one process when None); changes nothing."""
        dist = dist or Dist()
        cuda = device.type == "cuda"
        batch = per_process_batch(trainer, dist.world_size)  # a batch the processes cannot share fails here
        return cls(
            device=device, dist=dist, cpu_threads=cpu_threads(trainer), num_workers=num_workers(trainer),
            amp=AMP_DTYPES[trainer.amp] if cuda else None, channels_last=trainer.channels_last and cuda,
            compiled=cuda if trainer.compile == "auto" else bool(trainer.compile),
            compile_mode=trainer.compile_mode or None, batch_size=batch,
            eval_batch_size=trainer.eval_batch_size if trainer.eval_batch_size is not None else 4 * batch,
        )

    @classmethod
    def set_up(cls, trainer: TrainerSettings) -> Machine:
        """This process's machine: its CPU threads set, its device chosen (``trainer.device``; torchrun's
        LOCAL_RANK picks the GPU) and, under torchrun, the process group joined."""
        torch.set_num_threads(cpu_threads(trainer))
        device = resolve_device(trainer.device, int(os.environ.get("LOCAL_RANK", "0")))
        dist = init_distributed(device)
        try:
            return cls.decide(trainer, device, dist)
        except BaseException:
            close_distributed(dist)
            raise


def sync_buffers(model: nn.Module, dist: Dist) -> None:
    """BatchNorm statistics (and the L-softmax step) from rank 0, so every rank evaluates the same model."""
    if dist.enabled:
        for buf in model.buffers():
            torch_dist.broadcast(buf, 0)


def gather(tensors: list[Tensor], dist: Dist) -> list[Tensor]:
    """Each tensor concatenated over the ranks (rank order)."""
    if not dist.enabled:
        return tensors
    gathered: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(gathered, tensors)
    return [torch.cat([g[i] for g in gathered]) for i in range(len(tensors))]


def all_reduce(tensor: Tensor, dist: Dist) -> Tensor:
    """The sum over the ranks, in place."""
    if dist.enabled:
        torch_dist.all_reduce(tensor)
    return tensor
