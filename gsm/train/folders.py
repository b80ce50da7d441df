"""The run folder (:func:`claim_run_dir`, in this order): where a config's run lives (:func:`locate_run_dir`),
whether it is finished (:func:`finished_results`), taking it (:func:`take_run_dir`: create, lock), checking again,
tidying it and recording how it was invoked. docs/runs.md says when a rerun trains, resumes or skips."""

from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from gsm import runs
from gsm.checkpoint_file import read_checkpoint_meta
from gsm.data import fingerprint_differences
from gsm.errors import DataError
from gsm.identity import ForeignFileError, RunIdentity, RunPaths, regular_file
from gsm.results import ResultsError, RunRecord, read_record, record_problems
from gsm.settings import TrainerSettings
from gsm.train.device import Dist

log = logging.getLogger("gsm.train")


def in_sweep() -> bool:
    """Whether this process is a job of a Hydra multirun (``train.py -m``)."""
    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


def recipe_config(cfg: DictConfig) -> DictConfig | None:
    """The same dataset, model and head with no other overrides (what a folder name is relative to). Composed
    once per process for each (config sources, dataset, model, head): the jobs of an in-process sweep share it."""
    try:
        hc = HydraConfig.get()
        choices = hc.runtime.choices
        extra = [o for o in hc.overrides.hydra if o.startswith("hydra.searchpath")]
        overrides = (f"dataset={choices['dataset']}", f"model={choices['model']}", f"head={choices['head']}", *extra)
        return _recipe(repr(OmegaConf.to_container(hc.runtime.config_sources)), overrides).copy()
    except Exception:  # noqa: BLE001 - only the readable part of the name depends on it
        return None


@functools.lru_cache(maxsize=16)  # keyed by the config sources and the overrides; a sweep's jobs share a few
def _recipe(sources: str, overrides: tuple[str, ...]) -> DictConfig:
    from hydra import compose

    return compose("train", overrides=list(overrides))


def locate_run_dir(cfg: DictConfig, sig: str) -> Path:
    """The run's folder: the existing one of this signature (any name), else a new readable name."""
    dataset_dir = Path(str(cfg.output_root)) / "runs" / str(cfg.dataset.name)
    found = runs.find_run_dir(dataset_dir, sig)
    return found if found is not None else dataset_dir / runs.readable_name(cfg, recipe_config(cfg), sig)


def finished_results(paths: RunPaths, identity: RunIdentity, warn: bool = True) -> RunRecord | None:
    """The record of the finished run in ``paths`` that this run may skip to; None when the run must (re)train.
    The record must be the folder's run (its signature and config: gsm.results.record_problems; otherwise
    :class:`ForeignFileError`) on this data (its fingerprint; otherwise :class:`DataError`). Reads only: a
    skipped run's folder is left exactly as it was."""
    path = paths.record
    if not regular_file(path, "run record"):  # a FIFO or a directory named results.json: refused, never waited on
        return None
    try:
        record = read_record(path)
    except ResultsError as exc:
        if warn:
            log.warning("%s; the run is treated as unfinished and trains again", exc)
        return None
    problems = record_problems(record)
    if problems or record.signature != identity.signature:
        why = problems[0] if problems else f"it carries signature {record.signature!r}, this config's is {identity.signature!r}"
        raise ForeignFileError(f"{path} is not this run's record: {why}. It is not used: move it away, or rerun with "
                               f"trainer.force=true to train this run and replace it")
    res = record.to_dict()
    recorded = res.get("data_fingerprint")
    if recorded:
        diff = fingerprint_differences(recorded, identity.fingerprint)
        if diff:
            raise DataError(
                f"{paths.run_dir} finished on other data than dataset.root={identity.data_root!r} holds now (it ran on "
                f"dataset.root={res.get('data_root')!r}; differs: {'; '.join(diff)}). Rerun with trainer.force=true to "
                f"retrain on this data (the recorded results are replaced), or use another output_root"
            )
    else:
        print(f"gsm: note: {path} predates data fingerprints, so its data cannot be checked", file=sys.stderr)
    env_now = identity.environment
    env_then = ({k: v for k, v in (res.get("environment") or {}).items() if v is not None}
                or {"git_rev": str(res.get("git_rev", "")).removesuffix("-dirty"), "torch": res.get("torch")})
    keys = ("code", "torch", "device_name", "world_size", "cpu_threads") if "code" in env_then else \
        ("git_rev", "git_dirty", "torch", "device_name", "world_size", "cpu_threads")
    changes = [f"{k} {env_then.get(k)} → {env_now.get(k)}" for k in keys if k in env_then and env_then.get(k) != env_now.get(k)]
    if changes:
        print(f"gsm: note: this run was made in another environment ({', '.join(changes)}); trainer.force=true retrains",
              file=sys.stderr)
    print(f"gsm: this run is finished; results: {path} (trainer.force=true retrains)")
    return record


def check_checkpoint(paths: RunPaths, identity: RunIdentity) -> None:
    """Refuse a checkpoint in the folder that is not this run's (another run's copied in: its signature is not the
    folder's), read without the weights; the full checks (data, environment, code) come with the resume."""
    if not (paths.checkpoint.exists() or paths.checkpoint.is_symlink()):
        return
    signature = read_checkpoint_meta(paths.checkpoint).get("signature")
    foreign = paths.foreign(paths.checkpoint, signature)
    if foreign or signature != identity.signature:
        raise ForeignFileError(f"{foreign or f'{paths.checkpoint} belongs to another config (signature {signature!r}, this run is {identity.signature!r})'}"
                               f"; it is not used: move it away, or rerun with trainer.force=true to start over")


def take_run_dir(run_dir: Path, wait: bool | None) -> runs.RunLock:
    """Create the run folder and take its lock: wait for another process that holds it when
    ``trainer.wait_for_lock`` says so (null: in a sweep, which may launch the same config twice), else fail."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise runs.StorageError(f"cannot create the run folder {run_dir} ({exc.strerror})") from exc
    lock = runs.RunLock(run_dir)
    if wait is None:  # a sweep that launches the same config twice waits, then finds it finished
        wait = in_sweep()
    lock.acquire(bool(wait), on_wait=lambda who: print(f"gsm: {run_dir} is in use by {who}; waiting for it", file=sys.stderr))
    return lock


def tidy_run_dir(paths: RunPaths, force: bool) -> None:
    """Remove what interrupted writes left; with ``trainer.force=true`` also the earlier run's results, checkpoint,
    summary and test outputs (regular files only: anything else is refused). Makes the checkpoints folder, so
    that the run's writes never create folders (a run folder removed mid-run is an error, not made anew)."""
    for tmp in runs.remove_debris(paths.run_dir):
        log.info("removed %s (left by an interrupted write)", tmp)
    if force:
        for path in (paths.record, paths.checkpoint, paths.summary, paths.outputs):
            if regular_file(path) or path.is_symlink():
                path.unlink()
    try:
        paths.checkpoint.parent.mkdir(exist_ok=True)
    except OSError as exc:
        raise runs.StorageError(f"cannot create {paths.checkpoint.parent} ({exc.strerror or exc})") from None


def record_invocation(run_dir: Path, cfg: DictConfig) -> None:
    """``.hydra/config.yaml`` and ``overrides.yaml``: the config and command line that this run trains with."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    runs.atomic_write_bytes(run_dir / ".hydra" / "config.yaml", lambda fh: fh.write(OmegaConf.to_yaml(cfg).encode()))
    runs.atomic_write_bytes(run_dir / ".hydra" / "overrides.yaml",
                            lambda fh: fh.write(OmegaConf.to_yaml(OmegaConf.create(overrides)).encode()))


@dataclass
class ClaimedRunDir:
    """The run's folder as :func:`claim_run_dir` leaves it: the record of a finished run to skip to, or the
    folder taken (rank 0 holds its ``lock``)."""

    paths: RunPaths
    finished: RunRecord | None
    lock: runs.RunLock | None = None

    @property
    def run_dir(self) -> Path:
        return self.paths.run_dir

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def claim_run_dir(cfg: DictConfig, trainer: TrainerSettings, identity: RunIdentity, dist: Dist) -> ClaimedRunDir:
    """Every rank gets the run's folder. A finished run (unless ``trainer.force``) is skipped to; otherwise
    rank 0 takes the folder (lock, waiting per ``trainer.wait_for_lock``), looks again (another process may
    have finished it meanwhile), removes what interrupted writes (and ``trainer.force``) leave, and records
    how the run was invoked."""
    paths = RunPaths(dist.from_main(locate_run_dir(cfg, identity.signature) if dist.is_main else None))

    def finished(warn: bool) -> RunRecord | None:
        return None if trainer.force else finished_results(paths, identity, warn=warn)

    done = dist.on_main(lambda: finished(warn=True))
    if done is not None:
        return ClaimedRunDir(paths, done)
    claim = ClaimedRunDir(paths, None, take_run_dir(paths.run_dir, trainer.wait_for_lock) if dist.is_main else None)
    try:
        claim.finished = dist.on_main(lambda: finished(warn=False))  # finished while we waited?
        if claim.finished is None and dist.is_main:
            if not trainer.force:
                check_checkpoint(paths, identity)  # before anything in the folder is touched
            tidy_run_dir(paths, trainer.force)
            record_invocation(paths.run_dir, cfg)
    except BaseException:
        claim.release()
        raise
    if claim.finished is not None:
        claim.release()
    return claim
