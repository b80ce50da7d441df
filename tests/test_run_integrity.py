"""Run identity and integrity through the real CLI: data fingerprints, one writer per run folder,
interrupted writes, storage faults, corrupt files, Ctrl-C, permissions, no phantom folders, progress
lines without a terminal, readable folder names and the recorded environment (docs/runs.md)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, pinned, run_cli, run_dir_of
from gsm.data import fixtures as fx

TINY = ("trainer.epochs=1", "dataset.subset=64", "trainer.analyze_train=false")


_run_dir = run_dir_of


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder`` with its size and modification time (ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def _no_traceback(out: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in out.stderr, out.stderr[-3000:]


# --------------------------------------------------------------------------- data fingerprint


@pytest.mark.slow
def test_other_data_under_the_same_config_is_an_error_and_a_copy_is_the_same_run(tmp_path):
    first, copy, other = tmp_path / "data_a", tmp_path / "data_copy", tmp_path / "data_other"
    fx.make_cifar10(first, seed=0)
    shutil.copytree(first, copy)
    fx.make_cifar10(other, seed=1)  # same layout and sizes, other pixels and labels
    out_root = tmp_path / "out"
    args = ("dataset=cifar10", "model=convnet", "trainer.epochs=1", "trainer.batch_size=10", "trainer.analyze_train=false",
            f"output_root={out_root}")
    trained = run_cli(*args, f"dataset.root={first}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    run_dir = _run_dir(out_root)
    res = json.loads((run_dir / "results.json").read_text())
    assert res["data_root"] == str(first.resolve()) and res["data_fingerprint"]["train_samples"] == 30
    before = _snapshot(run_dir)

    same = run_cli(*args, f"dataset.root={copy}")  # the same files elsewhere: the same, finished run
    assert same.returncode == 0 and "this run is finished" in same.stdout, same.stderr[-2000:]

    wrong = run_cli(*args, f"dataset.root={other}")
    assert wrong.returncode == 2, wrong.stderr[-2000:]
    _no_traceback(wrong)
    assert str(first.resolve()) in wrong.stderr and str(other.resolve()) in wrong.stderr
    assert "train split contents" in wrong.stderr and "trainer.force=true" in wrong.stderr
    assert _snapshot(run_dir) == before  # neither rerun rewrote anything (config, overrides, logs, events)

    # an unfinished run does not resume from a checkpoint of other data
    (run_dir / "results.json").unlink()
    resumed = run_cli(*args, f"dataset.root={other}")
    assert resumed.returncode == 2 and "cannot resume" in resumed.stderr, resumed.stderr[-2000:]
    _no_traceback(resumed)
    assert not (run_dir / "results.json").exists()

    forced = run_cli(*args, f"dataset.root={other}", "trainer.force=true")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert json.loads((run_dir / "results.json").read_text())["data_root"] == str(other.resolve())


# --------------------------------------------------------------------------- environment, names, outputs


def test_finished_run_records_environment_names_and_overhead_and_skips_untouched(cli):
    out = cli("head.mu=-0.1", "seed=1", *TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = _run_dir(cli.root)
    assert run_dir.name.startswith("convnet-gsoftmax_mu-0.1") and "_s1-" in run_dir.name
    res = json.loads((run_dir / "results.json").read_text())
    env = res["environment"]
    for key in ("device", "device_name", "world_size", "cpu_threads", "torch", "cuda", "cudnn", "deterministic",
                "cudnn_benchmark", "git_rev", "git_dirty", "python", "num_workers"):
        assert key in env, key
    assert env["cpu_threads"] == torch.get_num_threads() or env["cpu_threads"] >= 1
    row = res["history"][-1]
    assert row["eval_seconds"] > 0 and row["checkpoint_seconds"] >= 0 and "test_top1_error_frac" in row
    header = (run_dir / "summary.csv").read_text().splitlines()[0].split(",")
    assert {"eval_seconds", "checkpoint_seconds", "test_top1_error_frac"} <= set(header)
    for name in ("results.json", "summary.csv", "test_outputs.pt", "checkpoints/last.pt"):  # readable by the group
        mode = stat.S_IMODE((run_dir / name).stat().st_mode)
        assert mode == 0o666 & ~_umask(), (name, oct(mode))

    before = _snapshot(run_dir)
    again = cli("head.mu=-0.1", "seed=1", *TINY, "trainer.cpu_threads=2")
    assert again.returncode == 0 and "this run is finished" in again.stdout
    assert "cpu_threads" in again.stderr and "another environment" in again.stderr  # one line says what differs
    assert _snapshot(run_dir) == before


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_dry_run_and_rejected_configs_leave_nothing_behind(cli):
    assert cli("dry_run=true").returncode == 0
    for args, key in ((("optimizer.momentum=5",), "optimizer.momentum"),  # would train to garbage
                      (("schedule=staircase", "schedule.gamma=-1"), "schedule.gamma"),  # gradient ascent
                      (("+trainer.epoch=3",), "did you mean trainer.epochs")):  # a typo gsm would ignore
        bad = cli("trainer.epochs=1", *args)
        assert bad.returncode == 2 and key in bad.stderr, (args, bad.stderr[-2000:])
        _no_traceback(bad)
    assert not any(cli.root.iterdir()), list(cli.root.rglob("*"))


@pytest.mark.slow
def test_two_job_sweep_readable_folders_one_sweep_record_each_and_hparams(cli):
    out = run_cli("-m", f"output_root={cli.root}", "head.mu=-0.1,0.1", *TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    names = sorted(p.name for p in (cli.root / "runs" / "digits").iterdir())
    assert len(names) == 2 and names[0].startswith("convnet-gsoftmax_mu-0.1") and names[1].startswith("convnet-gsoftmax_mu0.1")
    assert all(n.rsplit("-", 1)[1] == json.loads((cli.root / "runs" / "digits" / n / "results.json").read_text())["signature"]
               for n in names)
    again = run_cli("-m", f"output_root={cli.root}", "head.mu=-0.1,0.1", *TINY)  # finished: both skipped; a second sweep record
    assert again.returncode == 0 and again.stdout.count("this run is finished") == 2
    assert len(list((cli.root / "sweeps").glob("*/multirun.yaml"))) == 2

    import pandas as pd

    from gsm.reproduce import main

    assert main(["sweep", "--runs", str(cli.root / "runs"), "--out", str(cli.root / "tables")]) == 0

    rows = pd.read_csv(cli.root / "tables" / "sweep.csv")
    assert sorted(rows["head.mu"]) == [-0.1, 0.1] and list(rows["n"]) == [1, 1]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = cli.root / "runs" / "digits" / names[0] / "tensorboard"
    tags, plugins = set(), set()
    for event_file in tb.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(event_file))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
        try:
            plugins |= set(acc.PluginTagToContent("hparams"))
        except KeyError:  # an event file without hparams
            pass
    assert {"train/loss", "test/top1_error_frac", "lr", "time/eval_seconds", "time/checkpoint_seconds"} <= tags, tags
    assert "_hparams_/session_start_info" in plugins, plugins


def test_legacy_folder_name_is_found_as_finished(trained):
    root = trained("tiny")
    run_dir = _run_dir(root)
    sig = run_dir.name.rsplit("-", 1)[1]
    legacy = run_dir.parent / f"convnet-gsoftmax-{sig}"  # how earlier versions named it
    run_dir.rename(legacy)
    again = run_cli(f"output_root={root}", *TINY)
    assert again.returncode == 0 and "this run is finished" in again.stdout and str(legacy) in again.stdout
    assert sorted(p.name for p in run_dir.parent.iterdir()) == [legacy.name]


# --------------------------------------------------------------------------- faults


def test_corrupt_results_retrain_with_one_warning(trained):
    root = trained("tiny")
    results = _run_dir(root) / "results.json"
    for content in ("", results.read_text()[:50]):  # (every unreadable kind is covered by tests/test_results.py)
        results.write_text(content)
        out = run_cli(f"output_root={root}", *TINY)
        assert out.returncode == 0, (content, out.stderr[-2000:])
        assert "this run is finished" not in out.stdout
        assert str(results) in out.stderr and "trains again" in out.stderr
        _no_traceback(out)
        from gsm.results import SCHEMA_VERSION

        assert json.loads(results.read_text())["schema_version"] == SCHEMA_VERSION


def test_checkpoint_with_wrong_contents_and_debris(trained):
    args = ("trainer.epochs=2", "dataset.subset=64", "trainer.analyze_train=false")  # the shared run "two_epochs"
    root = trained("two_epochs")
    run_dir = _run_dir(root)
    (run_dir / "results.json").unlink()
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    del ckpt["scaler"]
    torch.save(ckpt, ckpt_path)
    debris = run_dir / "checkpoints" / ".last.pt.abc123.tmp"
    debris.write_bytes(b"x" * 1000)  # what a kill during a checkpoint write leaves
    out = run_cli(f"output_root={root}", *args)
    assert out.returncode == 2 and str(ckpt_path) in out.stderr and "trainer.force=true" in out.stderr, out.stderr[-2000:]
    _no_traceback(out)
    assert not debris.exists()


def test_disk_full_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(cli, monkeypatch):
    # torch.save fails with ENOSPC from the second checkpoint on (a full disk), through python -m gsm.train
    import errno

    real, calls = torch.save, []

    def save(obj, f, *a, **k):
        if isinstance(obj, dict) and "optimizer" in obj:
            calls.append(1)
            if len(calls) >= 2:
                f.write(b"partial")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    out = cli("trainer.epochs=3", "dataset.subset=64", "trainer.analyze_train=false", entry="python -m gsm.train")
    assert out.returncode == 2, out.stderr[-3000:]
    _no_traceback(out)
    run_dir = _run_dir(cli.root)
    assert "no space left on" in out.stderr and str(run_dir / "checkpoints" / "last.pt") in out.stderr
    assert "the checkpoint of epoch 1 is intact" in out.stderr
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / "results.json").exists()


@functools.cache
def _private_mount_namespace() -> tuple[str, ...] | None:
    """The ``unshare`` command that gives a shell its own mount namespace where a bind mount can be made read-only:
    ``-m`` as root, ``-rm`` (inside a user namespace, as its root) for anyone else; None where neither is allowed."""
    if not shutil.which("unshare"):
        return None
    with tempfile.TemporaryDirectory() as folder:  # the test's folder is a temporary one too
        for command in (("unshare", "-m"), ("unshare", "-rm")):
            probe = subprocess.run([*command, "sh", "-c", f"mount --bind {folder} {folder} && "
                                    f"mount -o remount,bind,ro {folder} && ! touch {folder}/written 2>/dev/null"],
                                   capture_output=True)
            if probe.returncode == 0:
                return command
    return None


@pytest.mark.slow
@pytest.mark.skipif(_private_mount_namespace() is None,
                    reason="needs a private mount namespace (unshare -m, or unshare -rm) for a read-only mount")
def test_finished_run_on_read_only_storage_is_reported(trained, tmp_path):
    output_root = trained("tiny")
    before = _snapshot(output_root)
    root = str(output_root)
    train = " ".join([sys.executable, str(REPO / "train.py"), f"output_root={root}", *pinned(TINY)])
    script = f"mount --bind {root} {root} && mount -o remount,bind,ro {root} && exec {train}"
    out = subprocess.run([*_private_mount_namespace(), "sh", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "this run is finished" in out.stdout, out.stderr[-3000:]
    _no_traceback(out)
    assert _snapshot(output_root) == before


def _ctrl_c_as_in_a_terminal() -> None:
    """preexec_fn: Ctrl-C (SIGINT) at its default, unblocked, as a shell starts a foreground command. A suite
    started as a background job (``make test &``) has SIGINT ignored, every child inherits that, and Python then
    installs no KeyboardInterrupt handler: the trainer would rightly never see the Ctrl-C this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not reached (process exit {proc.poll()})")


@pytest.mark.slow
def test_second_process_on_the_same_run_is_refused_or_waits_and_ctrl_c_is_one_line(cli):
    # Far more epochs than the test lasts (it ends the first process with Ctrl-C): on a loaded machine the
    # second process's start-up once took longer than 30 epochs of the first. One CPU thread each, so the two
    # processes and the other test worker do not oversubscribe the CPUs. The second comes from this test's own
    # process (train.py's entry, in-process: another process than the first, without a second torch import while
    # the first trains beside it).
    args = [sys.executable, str(REPO / "train.py"), f"output_root={cli.root}", "trainer.epochs=5000", "dataset.subset=256",
            "trainer.analyze_train=false", "trainer.cpu_threads=1"]
    err_path = cli.root.parent / "first.err"
    with open(err_path, "w") as err_file:  # PYTHONFAULTHANDLER: a process that will not stop is aborted with its stacks
        first = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err_file, text=True,
                                 env={**os.environ, "PYTHONFAULTHANDLER": "1"}, preexec_fn=_ctrl_c_as_in_a_terminal)
    try:
        _wait_for(lambda: any(cli.root.rglob(".lock.owner")) and any(cli.root.rglob("checkpoints/last.pt")), first)
        second = run_cli(*args[2:])
        assert second.returncode == 2, second.stderr[-2000:]
        _no_traceback(second)
        assert "is in use by process" in second.stderr and str(first.pid) in second.stderr
        assert "trainer.wait_for_lock=true" in second.stderr
        first.send_signal(signal.SIGINT)
        try:
            first.wait(timeout=120)
        except subprocess.TimeoutExpired:
            first.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack to first.err
            first.wait(timeout=30)
            raise AssertionError("the first process did not stop within 120 s of Ctrl-C:\n" + err_path.read_text()[-6000:])
    finally:
        if first.poll() is None:
            first.kill()
    err = err_path.read_text()
    assert first.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    line = [ln for ln in err.splitlines() if ln.startswith("gsm: interrupted")]
    assert len(line) == 1 and "rerun the same command to resume" in line[0] and "the checkpoint of epoch" in line[0], err[-2000:]
    kept = int(line[0].rsplit("epoch ", 1)[1].split(" ")[0])
    run_dir = _run_dir(cli.root)
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == kept


def test_progress_lines_without_a_terminal(cli):
    out = cli(*TINY, "trainer.batch_size=16")
    assert out.returncode == 0, out.stderr[-2000:]
    log = (_run_dir(cli.root) / "train.log").read_text()
    steps = [ln for ln in log.splitlines() if " step " in ln]
    assert len(steps) >= 4 and all("img/s" in ln and "epoch ETA" in ln and "run ETA" in ln and "loss=" in ln for ln in steps)
    assert "evaluating:" in log


# train.py as a terminal runs it, held at the start of ``import torch`` (the start-up a Ctrl-C is meant to interrupt)
# until the test has sent its Ctrl-C: the hook writes argv[1] when the import begins and goes on once argv[2] exists.
# Nothing else differs from ``python train.py ARGS``: the same entry (gsm.cli.train), its guard and its exit.
_HELD_AT_TORCH_IMPORT = """
import importlib.abc, os, runpy, sys, time
reached, go = sys.argv[1], sys.argv[2]
class HoldTorchImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            open(reached, "w").close()
            while not os.path.exists(go):
                time.sleep(0.01)
        return None
sys.meta_path.insert(0, HoldTorchImport())
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_ctrl_c_while_starting_up_is_one_line(cli, tmp_path):
    # The Ctrl-C is sent once the process is importing torch, never after a fixed time: a 1 s sleep once landed
    # after the tiny run had finished (the test worker was not scheduled for seconds on a loaded machine), so the
    # signal met an exiting process and the run ended 0.
    reached, go = tmp_path / "importing-torch", tmp_path / "ctrl-c-sent"
    proc = subprocess.Popen([sys.executable, "-c", _HELD_AT_TORCH_IMPORT, str(reached), str(go), str(REPO / "train.py"),
                             f"output_root={cli.root}", *pinned(TINY)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_as_in_a_terminal)
    try:
        _wait_for(reached.exists, proc, timeout=300)
        proc.send_signal(signal.SIGINT)
    finally:
        go.touch()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "terminate called" not in err
    assert err.strip().splitlines()[-1].startswith("gsm: interrupted before training started")
    assert not list(cli.root.rglob("results.json"))
