"""Run directories: resume after SIGKILL, skip finished runs, force, bad checkpoints, divergence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, pinned, run_cli

ARGS = ("trainer.epochs=6", "dataset.subset=128", "trainer.analyze_train=false")  # the shared run "six_epochs"
COMPARED = ("top1_error_frac", "top5_error_frac", "test_loss", "learned", "empirical")


def _results(root: Path) -> dict:
    found = list(root.rglob("results.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


def _metrics_history(res: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.endswith("seconds") and k != "images_per_second"} for row in res["history"]]
    # (train/eval/checkpoint seconds differ between runs; every metric must not)


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_and_matches_uninterrupted(trained, tmp_path):
    killed = tmp_path / "killed"
    reference = _results(trained("six_epochs"))  # the same command, uninterrupted

    cmd = [sys.executable, str(REPO / "train.py"), f"output_root={killed}", *pinned(ARGS)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_epoch, deadline = 0, time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        ckpts = list(killed.rglob("checkpoints/last.pt"))
        if ckpts:
            try:
                ckpt_epoch = torch.load(ckpts[0], map_location="cpu", weights_only=True)["epoch"]
            except Exception:  # being replaced right now: atomic rename, so just retry
                ckpt_epoch = 0
            if ckpt_epoch >= 2:
                os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert 2 <= ckpt_epoch < 6, f"the run was not killed between its 2nd checkpoint and its end (epoch {ckpt_epoch})"
    assert proc.returncode == -signal.SIGKILL
    assert not list(killed.rglob("results.json"))

    again = run_cli(f"output_root={killed}", *ARGS)
    assert again.returncode == 0, again.stderr
    log = next(killed.rglob("train.log")).read_text()
    assert f"from epoch {ckpt_epoch}/6" in log
    resumed = _results(killed)
    for key in COMPARED:
        assert resumed[key] == reference[key], key
    assert _metrics_history(resumed) == _metrics_history(reference)


def test_force_retrains_and_truncated_checkpoint_is_a_clear_error(trained):
    args = ("trainer.epochs=1", "dataset.subset=64", "trainer.analyze_train=false")  # the shared run "tiny"
    root = trained("tiny")
    res_path = next(root.rglob("results.json"))
    first = res_path.stat().st_mtime_ns
    forced = run_cli(f"output_root={root}", *args, "trainer.force=true")
    assert forced.returncode == 0, forced.stderr
    assert "this run is finished" not in forced.stdout and res_path.stat().st_mtime_ns != first
    # a truncated checkpoint of an unfinished run: one clear error naming the file
    ckpt = next(root.rglob("checkpoints/last.pt"))
    res_path.unlink()
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    bad = run_cli(f"output_root={root}", *args)
    assert bad.returncode == 2 and str(ckpt) in bad.stderr and "truncated or corrupt" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_diverging_loss_is_an_error_not_a_result(cli):
    out = cli("trainer.epochs=2", "dataset.subset=64", "head=softmax", "optimizer.lr=1e30")
    assert out.returncode == 2, out.stderr
    assert "diverged" in out.stderr and "Traceback" not in out.stderr
    assert not list(cli.root.rglob("results.json"))


def test_readable_name_names_what_differs_from_the_recipe_and_is_capped():
    from gsm.runs import MAX_NAME, readable_name

    recipe = {"dataset": {"name": "cifar100"}, "model": {"name": "wrn"}, "head": {"name": "gsoftmax", "mu": 0.0, "sigma": 1.0},
              "optimizer": {"lr": 0.1}, "schedule": {"name": "staircase", "milestones": [60, 120]}, "trainer": {"epochs": 300}, "seed": 0}
    ours = {**recipe, "head": {"name": "gsoftmax", "mu": -0.1, "sigma": 1.0}, "seed": 2}
    assert readable_name(ours, recipe, "4a93c8b2c1") == "wrn-gsoftmax_mu-0.1_s2-4a93c8b2c1"
    assert readable_name(recipe, recipe, "0123456789") == "wrn-gsoftmax_s0-0123456789"
    long = {**ours, "schedule": {"name": "staircase", "milestones": list(range(1, 60))}}
    name = readable_name(long, recipe, "4a93c8b2c1")
    assert len(name) == MAX_NAME and name.endswith("~-4a93c8b2c1") and name.startswith("wrn-gsoftmax_mu-0.1_milestones1,2,3")


def test_signature_ignores_device_and_changes_with_results():
    from omegaconf import OmegaConf

    from gsm.runs import signature

    base = OmegaConf.create({"dataset": {"name": "digits", "root": "a"}, "model": {"name": "convnet"},
                             "head": {"name": "gsoftmax", "mu": 0.0}, "optimizer": {"lr": 0.1}, "schedule": {"name": "constant"},
                             "trainer": {"epochs": 3, "device": "cpu"}, "seed": 0})
    other_device = OmegaConf.merge(base, {"trainer": {"device": "cuda"}, "dataset": {"root": "b"}})
    other_mu = OmegaConf.merge(base, {"head": {"mu": 0.1}})
    assert signature(base) == signature(other_device)
    assert signature(base) != signature(other_mu)


# Signatures of configs whose recipes did not change, computed by gsm 0.2.0 (before the fidelity keys existed):
# a key added later at its default value must leave them as they were, so runs made before are still found.
SIGNATURES_BEFORE_FIDELITY_KEYS = {
    ("dataset=digits", "head=gsoftmax"): "6af0751227",
    ("dataset=digits", "head=softmax"): "b90b78e122",
    ("dataset=digits", "head=lsoftmax"): "46f6dd13e8",
    ("dataset=digits_mosaic", "head=gsoftmax"): "15b4db8f9f",
    ("dataset=cifar100", "model=convnet", "head=gsoftmax"): "cfc2a49e5f",
    ("dataset=coco", "model=convnet", "head=softmax"): "6201dd8778",
    ("dataset=tiny_imagenet", "model=convnet", "head=gsoftmax"): "d422abe895",
}


@pytest.mark.parametrize("overrides", sorted(SIGNATURES_BEFORE_FIDELITY_KEYS))
def test_new_keys_at_their_defaults_keep_a_run_identity(overrides):
    from hydra import compose, initialize_config_dir

    from gsm import runs

    with initialize_config_dir(config_dir=str(REPO / "gsm" / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
        changed = compose("train", overrides=[*overrides, "head.loss_reduction=sum"])
    assert runs.signature(cfg) == SIGNATURES_BEFORE_FIDELITY_KEYS[overrides]
    assert runs.signature(changed) != runs.signature(cfg)  # any other value is another run


@pytest.mark.parametrize("overrides, speed_key", [
    (("dataset=digits", "head=gsoftmax"), "head.fused=true"),
    (("experiment=table1/densenet_cifar100_gsoftmax",), "model.shared_concat=true"),
])
def test_speed_paths_keep_a_run_identity(overrides, speed_key):
    """head.fused and model.shared_concat change kernels and memory, not the method: a run made with or without
    them (or before they existed) is the same run. d063748993 is the DenseNet row's signature before the key."""
    from hydra import compose, initialize_config_dir

    from gsm import runs

    with initialize_config_dir(config_dir=str(REPO / "gsm" / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
        fast = compose("train", overrides=[*overrides, speed_key])
    before = SIGNATURES_BEFORE_FIDELITY_KEYS.get(tuple(overrides), "d063748993")
    assert runs.signature(cfg) == runs.signature(fast) == before


# --------------------------------------------------------------------------- gsm.runs in this process


def test_readable_name_writes_values_as_their_overrides_are_written():
    from gsm.runs import readable_name

    recipe = {"dataset": {"name": "coco"}, "model": {"name": "resnet101"}, "head": {"name": "gsoftmax"}, "seed": 0}
    ours = {**recipe, "head": {"name": "gsoftmax", "init_batches": None, "learn_dist": False, "note": "a b/c"}}
    # null, false, and anything outside [A-Za-z0-9.,+-] as '~' (a folder name never holds '/' or a space)
    assert readable_name(ours, recipe, "0123456789") == \
        "resnet101-gsoftmax_init_batchesnull_learn_distfalse_notea~b~c_s0-0123456789"


def test_two_folders_of_one_signature_the_one_with_results_is_the_run(tmp_path):
    from gsm.runs import find_run_dir

    dataset_dir = tmp_path / "runs" / "digits"
    older, copy = dataset_dir / "a-name-0123456789", dataset_dir / "b-name-0123456789"
    older.mkdir(parents=True)
    copy.mkdir()
    (dataset_dir / "c-file-0123456789").write_text("")  # a file of that name is no run folder
    assert find_run_dir(dataset_dir, "0123456789") == older  # neither finished: the first by name
    (copy / "results.json").write_text("{}")
    assert find_run_dir(dataset_dir, "0123456789") == copy
    assert find_run_dir(dataset_dir, "9999999999") is None and find_run_dir(tmp_path / "none", "0123456789") is None


def test_the_lock_owner_file_names_the_holder_and_its_slurm_job(tmp_path, monkeypatch):
    import socket

    from gsm.runs import RunLock, read_lock_owner

    for env, job in (({"SLURM_ARRAY_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "3", "SLURM_JOB_ID": "15"}, "12_3"),
                     ({"SLURM_JOB_ID": "77"}, "77"), ({}, None)):
        for key in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        lock = RunLock(tmp_path)
        assert lock.owner() == "another process"  # nothing recorded yet
        lock.acquire(wait=False)
        try:
            info = read_lock_owner(tmp_path / ".lock.owner")
            assert info["pid"] == str(os.getpid()) and info["host"] == socket.gethostname()
            assert info.get("slurm_job") == job
            assert lock.owner() == f"process {os.getpid()} on {socket.gethostname()} (since {info['since']})"
        finally:
            lock.release()
        assert not (tmp_path / ".lock.owner").exists()  # released: nobody is named


def test_a_lock_owner_file_that_is_not_the_holders_json_object_names_nobody(tmp_path):
    from gsm.runs import read_lock_owner

    owner = tmp_path / ".lock.owner"
    for text in ("{cut short", "[1, 2]", "7", "[" * 50000 + "]" * 50000):
        owner.write_text(text)
        assert read_lock_owner(owner) == {}, text[:20]
    owner.write_bytes(b'{"pid": 7, "host": "n\xff"}')  # bytes that are not UTF-8: shown, not fatal
    assert read_lock_owner(owner) == {"pid": "7", "host": "n\ufffd"}
    owner.unlink()
    os.mkfifo(owner)  # never opened: reading it would wait for a writer
    assert read_lock_owner(owner) == {}


def test_waiting_for_a_lock_says_once_whom_it_waits_for(tmp_path):
    import filelock

    from gsm.runs import RunLock

    (tmp_path / ".lock.owner").write_text(json.dumps({"pid": 4242, "host": "node7", "since": "07:00"}))
    lock = RunLock(tmp_path)
    real, calls, told = lock._lock.acquire, [], []

    def busy_twice(timeout):
        calls.append(timeout)
        if len(calls) <= 2:
            raise filelock.Timeout(str(tmp_path / ".lock"))  # what 30 s of waiting ends in
        return real(timeout=0)

    lock._lock.acquire = busy_twice
    lock.acquire(wait=True, on_wait=told.append)
    try:
        assert calls == [30, 30, 30] and told == ["process 4242 on node7 (since 07:00)"]
        assert json.loads((tmp_path / ".lock.owner").read_text())["pid"] == os.getpid()  # now ours
    finally:
        lock.release()


def test_a_lock_that_cannot_be_opened_or_whose_owner_cannot_be_written(tmp_path, monkeypatch, capsys):
    import filelock

    from gsm.runs import RunLock, StorageError

    lock = RunLock(tmp_path)

    def denied(timeout):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(lock._lock, "acquire", denied)
    with pytest.raises(StorageError) as info:
        lock.acquire(wait=False)
    assert str(info.value) == f"cannot lock the run folder: cannot open {tmp_path / '.lock'} (Permission denied)"

    (tmp_path / ".lock.owner").mkdir()  # the owner file cannot be replaced: the lock is held all the same
    lock = RunLock(tmp_path)
    lock.acquire(wait=False)
    try:
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(f"gsm: warning: cannot write {tmp_path / '.lock.owner'} (")
        assert err[0].endswith("); other processes will not see who holds the run")
        with pytest.raises(filelock.Timeout):
            filelock.FileLock(str(tmp_path / ".lock")).acquire(timeout=0)
    finally:
        lock.release()  # the directory in the owner file's place stays; the lock is free all the same
    assert (tmp_path / ".lock.owner").is_dir()
    filelock.FileLock(str(tmp_path / ".lock")).acquire(timeout=0)


def test_atomic_writes_tell_a_full_disk_from_a_bug_and_write_strict_json(tmp_path, monkeypatch):
    import errno
    import shutil

    from gsm import runs

    path = tmp_path / "out" / "results.json"
    runs.write_json(path, {"a": float("nan"), "b": [1.5, float("inf")], "c": {"d": -float("inf")}, "e": (1, 2)})
    assert json.loads(path.read_text()) == {"a": None, "b": [1.5, None], "c": {"d": None}, "e": [1, 2]}
    assert oct(path.stat().st_mode & 0o777) == oct(runs.FILE_MODE)  # the umask's mode, not mkstemp's 0600

    def fails_with(exc):
        def write(fh):
            fh.write(b"half")
            raise exc
        return write

    # a bug in the writer is not a storage error: it propagates as it is, and no temporary file is left
    with pytest.raises(ValueError, match="not storage"):
        runs.atomic_write_bytes(path, fails_with(ValueError("not storage")))
    # torch.save reports a full disk as a RuntimeError: a storage error when the folder has under 64 MB free
    free = {"bytes": 10 << 20}
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 40, 0, free["bytes"]))
    with pytest.raises(runs.StorageError) as info:
        runs.atomic_write_bytes(path, fails_with(RuntimeError("[enforce fail at inline_container.cc] unexpected pos")))
    dev = os.stat(path.parent).st_dev
    assert str(info.value) == (f"no space left on {path.parent} (device {os.major(dev)}:{os.minor(dev)}) while "
                               f"writing {path}")
    free["bytes"] = 1 << 40  # plenty of room: the RuntimeError is not about the disk
    with pytest.raises(RuntimeError, match="inline_container"):
        runs.atomic_write_bytes(path, fails_with(RuntimeError("[enforce fail at inline_container.cc] unexpected pos")))

    def no_usage(p):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(shutil, "disk_usage", no_usage)  # the disk cannot even say: a storage fault
    with pytest.raises(runs.StorageError, match="no space left on"):
        runs.atomic_write_bytes(path, fails_with(RuntimeError("unexpected pos")))
    with pytest.raises(runs.StorageError, match=f"cannot write {path}: a directory of that name is in the way"):
        runs.atomic_write_bytes(path, fails_with(IsADirectoryError(errno.EISDIR, "Is a directory")))
    with pytest.raises(runs.StorageError) as info:
        runs.atomic_write_bytes(path, fails_with(OSError(errno.ENXIO, "No such device or address")))
    assert str(info.value) == f"cannot write {path} (No such device or address)"
    with pytest.raises(OSError) as raw:  # an error that is no storage fault (a bad argument) is not dressed as one
        runs.atomic_write_bytes(path, fails_with(OSError(errno.EINVAL, "Invalid argument")))
    assert not isinstance(raw.value, runs.StorageError) and raw.value.errno == errno.EINVAL
    assert json.loads(path.read_text())["e"] == [1, 2]  # the first file is whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]  # no debris
