"""Where a run computes: the device, the processes of a DDP run (:class:`Dist`), AMP, CPU threads, loader workers
and whether to ``torch.compile``. Every value comes from the config as :func:`gsm.config.validate_config`
checked it; what is decided here is only what depends on the machine (a GPU, the cores, ``torchrun``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as torch_dist
from omegaconf import DictConfig
from torch import Tensor, nn

from gsm.errors import ConfigError

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
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(torch_dist.get_rank(), torch_dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def close_distributed(dist: Dist) -> None:
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def amp_dtype(cfg: DictConfig, device: torch.device) -> torch.dtype | None:
    """``trainer.amp`` as a dtype; AMP only on the GPU (None on the CPU and for ``none``)."""
    name = str(cfg.trainer.amp).lower() if cfg.trainer.amp not in (None, False) else "none"
    return AMP_DTYPES[name] if device.type == "cuda" else None


def cpu_threads(cfg: DictConfig) -> int:
    """``trainer.cpu_threads``, or the cores this process may use shared among the local processes."""
    want = cfg.trainer.cpu_threads
    if want is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        want = max(1, cores // max(1, local_processes()))
    return int(want)


def num_workers(cfg: DictConfig) -> int:
    """``trainer.num_workers``: ``auto`` is :func:`gsm.data.loaders.auto_num_workers` for this machine's processes."""
    value = cfg.trainer.num_workers
    if value == "auto":
        from gsm.data.loaders import auto_num_workers

        return auto_num_workers(local_processes())
    return int(value)


def compile_enabled(cfg: DictConfig, device: torch.device) -> bool:
    """``trainer.compile``: ``auto`` compiles on CUDA only."""
    value = cfg.trainer.compile
    return device.type == "cuda" if value == "auto" else bool(value)


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
