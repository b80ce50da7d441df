"""Run directories, checkpoints and results files (SPEC §7).

A run's directory is ``<output_root>/runs/<dataset>/<model>-<head>-<signature>``
where the signature hashes every result-affecting setting, so rerunning the
same command finds the same directory: it resumes from ``checkpoints/last.pt``
or, when ``results.json`` exists, reports it and does not train again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from gsm.errors import CheckpointError

# Settings that do not change a run's numbers (where and how fast it runs, how it reports).
NON_RESULT_KEYS = {
    "trainer": {"device", "force", "compile", "num_workers", "progress", "eval_batch_size", "checkpoint_every"},
    "dataset": {"root", "download", "cache", "cache_dir"},
}
RESULT_GROUPS = ("dataset", "model", "head", "optimizer", "schedule", "trainer", "seed")


def signature_payload(cfg: DictConfig | dict) -> dict[str, Any]:
    """The resolved, result-affecting part of a config."""
    payload = {}
    for key in RESULT_GROUPS:
        value = cfg.get(key)
        if isinstance(value, DictConfig):  # resolve only these nodes (the root also holds hydra.*)
            value = OmegaConf.to_container(value, resolve=True)
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in NON_RESULT_KEYS.get(key, set())}
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


def run_name(cfg: DictConfig) -> str:
    """``<dataset>/<model>-<head>-<signature>``: readable and unique per result-affecting config."""
    return f"{cfg.dataset.name}/{cfg.model.name}-{cfg.head.name}-{signature(cfg)}"


def register_resolvers() -> None:
    """``${gsm.run_name:}`` names the Hydra run/sweep dir; ``${gsm.hydra_subdir:}`` keeps .hydra on rank 0 only;
    ``${gsm.gpus_per_job:}`` is 1 where CUDA is visible, else 0 (Ray launcher)."""
    if not OmegaConf.has_resolver("gsm.run_name"):
        OmegaConf.register_new_resolver("gsm.run_name", lambda *, _root_: run_name(_root_), use_cache=False)
    if not OmegaConf.has_resolver("gsm.gpus_per_job"):
        OmegaConf.register_new_resolver("gsm.gpus_per_job", lambda: 1 if torch.cuda.is_available() else 0)
    if not OmegaConf.has_resolver("gsm.hydra_subdir"):
        OmegaConf.register_new_resolver(
            "gsm.hydra_subdir", lambda: ".hydra" if int(os.environ.get("RANK", "0")) == 0 else None
        )


def atomic_write_bytes(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic JSON; non-finite floats become null (strict JSON)."""
    text = json.dumps(_json_safe(data), indent=2, sort_keys=False, allow_nan=False)
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated/corrupt file: say which and what to do
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(exc).__name__}: {exc}). It is truncated or corrupt: "
            f"delete it to restart this run, or rerun with trainer.force=true"
        ) from exc


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5,
        )
        rev = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return (rev + ("-dirty" if dirty else "")) if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
