"""Run folders, their lock, checkpoints and results files (see docs/runs.md).

A run's folder is ``<output_root>/runs/<dataset>/<readable name>-<signature>``. The signature
(10 hex digits) hashes every result-affecting setting and is the run's identity: rerunning the same
command finds the folder whose name ends in it, whatever the readable part says (so folders named
``<model>-<head>-<signature>`` by earlier versions are found too). The readable part names the
settings that differ from the (dataset, model, head) recipe and the seed, e.g.
``wrn-gsoftmax_mu-0.1_s0-4a93c8b2c1``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gsm.errors import GsmError
from gsm.identity import FileKindError, RunPaths, regular_file
from gsm.settings import TrainerSettings

# Settings that do not change a run's numbers (where and how fast it runs, how it reports).
NON_RESULT_KEYS = {
    "trainer": TrainerSettings.non_result_keys(),  # declared per key in gsm/settings.py
    "dataset": {"root", "download", "cache", "cache_dir"},
    "head": {"fused"},  # G-softmax's one-pass Φ, φ (gsm.heads.FusedGSoftmaxLogits): the same numbers, another kernel count
    "model": {"shared_concat"},  # DenseNet's block buffer instead of a cat per layer: the same model, other memory
}
RESULT_GROUPS = ("dataset", "model", "head", "optimizer", "schedule", "trainer", "seed")
# Keys added after runs were first recorded, with the value that reproduces what runs did before them. A key at
# that value is left out of the signature, so a run made before the key existed keeps its identity (and is
# found, skipped or resumed as before); any other value makes a new run.
IDENTITY_DEFAULTS = {
    "head": {"loss_reduction": "mean", "dist_update": "autograd"},
    "dataset": {"pad_mode": "zeros", "color_jitter": 0.0, "lighting": 0.0, "interpolation": "bilinear",
                "train_crop": "pad"},  # train_crop: new for tiny_imagenet (coco and nuswide never had "pad")
    "model": {"weights": "torchvision"},  # ResNet-101's ImageNet weights before model.weights existed (D37)
}


def signature_payload(cfg: DictConfig | dict) -> dict[str, Any]:
    """The resolved, result-affecting part of a config."""
    payload = {}
    for key in RESULT_GROUPS:
        value = cfg.get(key)
        if isinstance(value, DictConfig):  # resolve only these nodes (the root also holds hydra.*)
            value = OmegaConf.to_container(value, resolve=True)
        if isinstance(value, dict):
            skip, defaults = NON_RESULT_KEYS.get(key, set()), IDENTITY_DEFAULTS.get(key, {})
            value = {k: v for k, v in value.items() if k not in skip and not (k in defaults and v == defaults[k])}
        payload[key] = value
    return payload


def signature(cfg: DictConfig | dict, *, include_seed: bool = True) -> str:
    """10 hex digits of the config's result-affecting settings: a run's identity (with the seed) or a
    paper row's (``include_seed=False``: every seed of the same settings)."""
    payload = signature_payload(cfg)
    if not include_seed:
        payload.pop("seed", None)
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


MAX_NAME = 96  # characters of a run folder's name, signature included


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _value_text(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if v is None:
        return "null"  # as the override is written (head.init_batches=null)
    if isinstance(v, (list, tuple)):
        return ",".join(_value_text(x) for x in v)
    return re.sub(r"[^A-Za-z0-9.,+-]", "~", str(v))


def readable_name(cfg: DictConfig | dict, recipe: DictConfig | dict | None, sig: str) -> str:
    """``<model>-<head>[_<key><value>…]_s<seed>-<signature>``: the settings that differ from ``recipe`` (the
    same dataset, model and head with no other overrides), capped at MAX_NAME characters; the signature
    stays whole, so the name is unique whatever the cap cuts."""
    ours = _flat(signature_payload(cfg))
    base = _flat(signature_payload(recipe)) if recipe is not None else ours
    order = {g: i for i, g in enumerate(("head", "model", "optimizer", "schedule", "trainer", "dataset"))}
    parts = []
    for key in sorted(ours, key=lambda k: (order.get(k.split(".")[0], len(order)), k)):
        if key in ("seed", "dataset.name", "model.name", "head.name") or ours[key] == base.get(key, object()):
            continue
        parts.append(f"{key.rsplit('.', 1)[-1]}{_value_text(ours[key])}")
    model, head = _value_text(ours.get("model.name")), _value_text(ours.get("head.name"))
    stem = "_".join([f"{model}-{head}", *parts, f"s{_value_text(ours.get('seed'))}"])
    room = MAX_NAME - len(sig) - 1
    if len(stem) > room:
        stem = stem[: room - 1] + "~"
    return f"{stem}-{sig}"


def find_run_dir(dataset_dir: Path, sig: str) -> Path | None:
    """The existing run folder of signature ``sig`` under ``<output_root>/runs/<dataset>``, if any."""
    if not dataset_dir.is_dir():
        return None
    found = sorted(p for p in dataset_dir.glob(f"*-{sig}") if p.is_dir())
    if len(found) > 1:  # same identity under two names (e.g. copied by hand): prefer the one with results
        found.sort(key=lambda p: not RunPaths(p).record.exists())
    return found[0] if found else None


def register_resolvers() -> None:
    """``${gsm.gpus_per_job:}`` is 1 where CUDA is visible, else 0 (the Ray launcher's GPUs per job);
    ``${gsm.ray_object_store:<address>}`` is the Ray launcher's object store size: the plugin's 75 MB for the Ray it
    starts itself (no address, or ``local``), None (no size) when it joins a running cluster, where ray.init refuses
    any size."""
    if not OmegaConf.has_resolver("gsm.gpus_per_job"):
        OmegaConf.register_new_resolver("gsm.gpus_per_job", _gpus_per_job)
    if not OmegaConf.has_resolver("gsm.ray_object_store"):
        OmegaConf.register_new_resolver("gsm.ray_object_store", _ray_object_store)


def _ray_object_store(address: str | None = None) -> int | None:
    return 78643200 if address in (None, "", "local") else None  # hydra-ray-launcher's own size: 75 MB


def _gpus_per_job() -> int:
    import torch  # only when a launcher config asks (the Ray launcher's GPUs per job)

    return 1 if torch.cuda.is_available() else 0


# --------------------------------------------------------------------------- one writer per run folder


def slurm_job_id() -> str | None:
    """The SLURM job this process runs in, as squeue shows it (``<array>_<task>`` for a job of an array); None
    outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID") or None


class RunLockedError(GsmError):
    """Another process holds the run folder's lock."""


class RunLock:
    """An exclusive lock on a run folder for the whole run (``filelock``: fcntl/flock, which the kernel, or
    the NFS server, releases when the holder dies, so a killed run never blocks the next one). The holder
    writes who it is into ``.lock.owner`` so that a second process can say whom it waits for."""

    def __init__(self, run_dir: Path) -> None:
        from filelock import FileLock

        self.run_dir = run_dir
        self.owner_path = run_dir / ".lock.owner"
        self._lock = FileLock(str(run_dir / ".lock"))

    def owner(self) -> str:
        info = read_lock_owner(self.owner_path)
        if "pid" not in info:
            return "another process"
        return f"process {info['pid']} on {info.get('host', '?')} (since {info.get('since', '?')})"

    def acquire(self, wait: bool, on_wait=None) -> None:
        from filelock import Timeout

        waited_notice = False
        while True:
            try:
                regular_file(Path(self._lock.lock_file), "lock file")
                self._lock.acquire(timeout=0 if not wait else 30)
                break
            except FileKindError as exc:
                raise StorageError(f"cannot lock the run folder: {exc}") from None
            except Timeout:
                if not wait:
                    raise RunLockedError(
                        f"run folder {self.run_dir} is in use by {self.owner()}; wait for it to finish, "
                        f"or rerun with trainer.wait_for_lock=true to wait"
                    ) from None
                if on_wait is not None and not waited_notice:
                    on_wait(self.owner())
                    waited_notice = True
            except OSError as exc:  # a read-only remount, no permission: filelock cannot open .lock (Timeout is one too)
                raise StorageError(f"cannot lock the run folder: cannot open {self._lock.lock_file} "
                                   f"({exc.strerror or exc})") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        if slurm_job_id():  # gsm-tables status names the job (the id squeue and scancel take)
            info["slurm_job"] = slurm_job_id()
        try:
            self.owner_path.unlink(missing_ok=True)  # never write into a FIFO or through a link left there
            self.owner_path.write_text(json.dumps(info) + "\n")
        except OSError as exc:  # who holds the lock is for others' messages only: the lock itself is held
            print(f"gsm: warning: cannot write {self.owner_path} ({exc.strerror or exc}); other processes will not "
                  f"see who holds the run", file=sys.stderr)

    def release(self) -> None:
        """The lock released, always; the owner file removed first where it can be (one that is a directory, or
        on a folder gone read-only, is left: it names nobody once the lock is free)."""
        if self._lock.is_locked:
            try:
                self.owner_path.unlink(missing_ok=True)
            except OSError:
                pass
            finally:
                self._lock.release()


def printable(text: Any, limit: int = 120) -> str:
    """``text`` with control characters (escape sequences, line breaks) shown as ``?``: for values read from
    files that any process could have written, before they reach a terminal."""
    out = "".join(c if c.isprintable() else "?" for c in str(text))
    return out if len(out) <= limit else out[: limit - 1] + "…"


def read_lock_owner(path: Path) -> dict[str, str]:
    """``.lock.owner`` as printable strings (pid, host, since, ...); {} when it is missing, not a regular file
    or not the JSON object the lock's holder writes."""
    try:
        if not regular_file(path):
            return {}
        with open(path, "rb") as fh:
            info = json.loads(fh.read(4096).decode("utf-8", "replace"))
    except (OSError, ValueError, FileKindError, RecursionError):
        return {}
    if not isinstance(info, dict):
        return {}
    return {printable(k, 40): printable(v) for k, v in list(info.items())[:16]}


def remove_debris(run_dir: Path) -> list[Path]:
    """Delete the temporary files an interrupted atomic write left behind (``.<name>.*.tmp``)."""
    removed = []
    for folder in (run_dir, run_dir / "checkpoints"):
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


# --------------------------------------------------------------------------- files


class StorageError(GsmError):
    """A file could not be written: the disk is full, the folder is not writable or was removed."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give: teammates sharing a runs folder can read results

def atomic_write_bytes(path: Path, write, *, create_folder: bool = True) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file.
    The file gets the mode the umask gives (not mkstemp's 0600). A full disk, an I/O error or a folder that is
    gone is a StorageError naming the file; a path that is no regular file (a directory, a FIFO) is refused
    (gsm.identity.FileKindError). ``create_folder=False``: the folder must exist (a run's files: a run folder
    removed or renamed while it trains is an error, never silently made anew without its log and lock)."""
    regular_file(path)
    try:
        if create_folder:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _storage_error(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, (OSError, RuntimeError)) and _is_storage_fault(exc, path):
            raise _storage_error(exc, path) from exc
        raise


def _is_storage_fault(exc: BaseException, path: Path) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG,
                                                  errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EIO, errno.EISDIR,
                                                  errno.ENOTEMPTY, errno.ENXIO, errno.ESTALE):
        return True
    # torch.save reports a full disk as RuntimeError("[enforce fail at inline_container.cc] ... unexpected pos")
    if isinstance(exc, RuntimeError):
        try:
            return shutil.disk_usage(path.parent).free < (64 << 20)
        except OSError:
            return True
    return False


def _storage_error(exc: BaseException, path: Path) -> StorageError:
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StorageError(f"cannot write {path}: {path.parent} is not writable ({exc.strerror})")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ESTALE):
        return StorageError(f"cannot write {path}: the folder {path.parent} was removed or renamed while the run was "
                            f"writing to it")
    if isinstance(exc, OSError) and exc.errno in (errno.EISDIR, errno.ENOTEMPTY):
        return StorageError(f"cannot write {path}: a directory of that name is in the way")
    if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StorageError(f"cannot write {path} ({exc.strerror or exc})")
    try:
        device = os.stat(path.parent).st_dev if path.parent.exists() else None
    except OSError:
        device = None
    where = f"{path.parent}" + (f" (device {os.major(device)}:{os.minor(device)})" if device is not None else "")
    return StorageError(f"no space left on {where} while writing {path}")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_json(path: Path, data: dict[str, Any], *, create_folder: bool = True) -> None:
    """Atomic JSON; non-finite floats become null (strict JSON)."""
    text = json.dumps(_json_safe(data), indent=2, sort_keys=False, allow_nan=False)
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()), create_folder=create_folder)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically (read back by gsm.checkpoint_file)."""
    import torch

    atomic_write_bytes(path, lambda fh: torch.save(state, fh), create_folder=False)
