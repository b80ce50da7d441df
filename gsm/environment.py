"""The environment a run trains in, and which changes of it a resume must not cross (docs/runs.md).

A checkpoint stores the environment it was written in. Resuming in another one would silently give
numbers of neither: the world size decides the data split and BatchNorm's batches, the device type and the
torch version the kernels, the code revision the code, and on the CPU the number of threads how reductions
are split (``trainer.cpu_threads``; on a GPU the threads only feed the data loader). Such a resume is
refused unless ``trainer.resume_anyway=true``, and then the run records which epochs ran where.

The code is compared by its content (``code``: gsm.identity.code_identity, a hash of gsm's source and config
files), which also works outside a git checkout; the git revision is kept beside it as provenance and is compared
only for a checkpoint written before the content hash existed.
"""

from __future__ import annotations

import platform
import socket
from typing import Any

import torch

RESUME_KEYS = ("world_size", "device", "torch", "code")
"""Environment values a resume must keep (every device)."""
LEGACY_CODE_KEYS = ("git_rev", "git_dirty")
"""How a checkpoint without ``code`` (written before gsm hashed its code) says which code it ran."""
CPU_RESUME_KEYS = ("cpu_threads",)
"""... and on the CPU also these."""


def environment(device: torch.device, world_size: int, num_workers: int, compiled: bool) -> dict[str, Any]:
    """How the run trains (recorded in results.json and every checkpoint; a rerun that skips says when it differs)."""
    from gsm.identity import code_identity

    code = code_identity()
    rev = code.git_rev
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine() or "cpu"),
        "world_size": world_size,
        "cpu_threads": torch.get_num_threads(),
        "num_workers": num_workers,
        "torch": str(torch.__version__),  # a plain str: TorchVersion cannot be loaded with weights_only
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "compiled": compiled,
        "code": code.digest,
        "git_rev": rev.removesuffix("-dirty"),
        "git_dirty": rev.endswith("-dirty"),
        "python": platform.python_version(),
        "hostname": socket.gethostname(),
    }


def resume_differences(then: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``"world_size 2 → 1"``-style texts for every value of :data:`RESUME_KEYS` (and, on the CPU,
    :data:`CPU_RESUME_KEYS`) that differs between the checkpoint's environment and this process's."""
    keys = RESUME_KEYS if then.get("code") else tuple(k for k in RESUME_KEYS if k != "code") + LEGACY_CODE_KEYS
    keys += CPU_RESUME_KEYS if now.get("device") == "cpu" and then.get("device") == "cpu" else ()
    return [f"{k} {then.get(k)} → {now.get(k)}" for k in keys if then.get(k) != now.get(k)]


def segments(history: list[dict[str, Any]], environment_now: dict[str, Any], first_epoch: int) -> list[dict[str, Any]]:
    """The run's environment segments after a resume at ``first_epoch`` in ``environment_now``: the earlier
    segments (``history``; a run's first segment starts at epoch 1) plus this one."""
    keys = RESUME_KEYS + LEGACY_CODE_KEYS + CPU_RESUME_KEYS
    return [*history, {"first_epoch": first_epoch, **{k: environment_now.get(k) for k in keys}}]
