"""A run's identity checked at every read and write (gsm.identity, docs/runs.md "Identity checks").

Each test is one of the ways a result could be recorded or accepted for other code, another config or another
folder, tried on the real CLI (in-process, through gsm.cli.train) or gsm-tables, with the property that matters
asserted: nothing foreign is used or reported, every fault is one line naming the file and the cause.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_cli, run_dir_of
from gsm import identity, runs
from gsm.checkpoint_file import OPAQUE, read_checkpoint_meta
from gsm.errors import CheckpointError
from gsm.identity import RunPaths, code_identity, hash_tree
from gsm.results import OutputsError, ResultsError, load_records, read_record, read_run_outputs

TINY = ("trainer.epochs=1", "dataset.subset=64", "trainer.analyze_train=false")  # the shared run "tiny"
TWO = ("trainer.epochs=2", "dataset.subset=64", "trainer.analyze_train=false")  # the shared run "two_epochs"


def _one_line_error(out: subprocess.CompletedProcess, *needles: str) -> str:
    """The run failed with exit 2 and exactly one ``gsm: error:`` line (no traceback) holding every needle."""
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("gsm: error:")]
    assert len(lines) == 1, out.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- code identity


def test_code_identity_hashes_every_source_and_config_file_and_names_what_changed(tmp_path):
    """The digest covers each .py and .yaml file of the package by path and content, nothing else; an edit, a new
    file and a removed file each change it, and changed_files names them (an independent hashlib over the tree)."""
    import hashlib

    code = code_identity()
    pkg = Path(identity.__file__).parent
    expected = {p.relative_to(pkg).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()[:12]
                for p in pkg.rglob("*") if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts}
    assert code.files == expected and "train/loop.py" in code.files and "configs/train.yaml" in code.files
    tree = tmp_path / "gsm"
    shutil.copytree(pkg, tree, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "data" / "digits_split.npz").write_bytes(b"other data")  # data is the fingerprint's, not the code's
    same, files = hash_tree(tree)
    assert same == code.digest and files == code.files
    (tree / "metrics.py").write_text((tree / "metrics.py").read_text() + "\n# an edit\n")
    (tree / "new.py").write_text("x = 1\n")
    (tree / "schedules.py").unlink()
    edited, files = hash_tree(tree)
    assert edited != code.digest
    changed = identity.CodeIdentity(edited, files).changed_files(code.files)
    assert changed == ["metrics.py", "new.py", "schedules.py"]


def test_the_environment_carries_the_code_hash_and_a_resume_compares_it():
    from gsm.environment import environment, resume_differences

    env = environment(torch.device("cpu"), 1, 0, False)
    assert env["code"] == code_identity().digest and len(env["code"]) == 16
    assert resume_differences(env, dict(env, code="0" * 16)) == [f"code {env['code']} → {'0' * 16}"]
    assert resume_differences(env, dict(env, git_rev="elsewhere", git_dirty=True)) == []  # same content, other commit
    legacy = {k: v for k, v in env.items() if k != "code"}  # a checkpoint from before the hash: git decides
    assert resume_differences(legacy, dict(env, git_dirty=not env["git_dirty"])) == [
        f"git_dirty {env['git_dirty']} → {not env['git_dirty']}"]


# --------------------------------------------------------------------------- foreign files in a run folder


def test_no_foreign_record_checkpoint_or_test_outputs_is_ever_used_or_reported(trained, capsys):
    """Another config's results.json, another run's checkpoint and another run's test_outputs.pt, each copied into
    a run folder: the trainer refuses them in one line and trains nothing; gsm-tables and the outputs reader skip
    them naming the file."""
    from gsm.reproduce import main

    ours_root, theirs_root = trained("tiny"), trained("two_epochs")
    ours, theirs = run_dir_of(ours_root), run_dir_of(theirs_root)
    assert ours.name[-10:] != theirs.name[-10:]
    own_record = read_record(ours / "results.json")

    # 1. another config's record in our folder: never "finished", refused before anything trains
    shutil.copy2(theirs / "results.json", ours / "results.json")
    before = _files(ours)
    out = run_cli(f"output_root={ours_root}", *TINY)
    _one_line_error(out, str(ours / "results.json"), "not this run's record", f"signature {theirs.name[-10:]!r}")
    assert "this run is finished" not in out.stdout and _files(ours) == before
    good, bad = load_records(ours_root / "runs")
    assert good == [] and [p for p, _ in bad] == [ours / "results.json"] and "belongs to another run" in bad[0][1]
    assert main(["sweep", "--runs", str(ours_root / "runs")]) in (0, 2)
    shown = capsys.readouterr()
    assert str(ours / "results.json") in shown.err and "belongs to another run" in shown.err
    assert f"{100 * read_record(theirs / 'results.json').top1_error_frac:.2f}" not in shown.out.split("warning")[0]

    # 2. another run's checkpoint in our (unfinished) folder: not resumed from
    (ours / "results.json").unlink()
    shutil.copy2(theirs / "checkpoints" / "last.pt", ours / "checkpoints" / "last.pt")
    before = _files(ours)
    out = run_cli(f"output_root={ours_root}", *TINY)
    _one_line_error(out, str(ours / "checkpoints" / "last.pt"), "belongs to another run", "move it away")
    assert _files(ours) == before

    # 3. another run's test outputs beside our record: the figures' reader refuses them
    own_record.write(ours / "results.json")
    shutil.copy2(theirs / "test_outputs.pt", ours / "test_outputs.pt")
    rec = read_record(ours / "results.json")
    with pytest.raises(OutputsError, match="belongs to another run"):
        read_run_outputs(rec)
    # ... and a file with our signature that is not the one written with the record (another attempt, edited)
    blob = torch.load(theirs / "test_outputs.pt", weights_only=True)
    torch.save({**blob, "signature": rec.signature}, ours / "test_outputs.pt")
    with pytest.raises(OutputsError, match="not the test outputs written with results.json"):
        read_run_outputs(rec)


def test_a_record_that_contradicts_its_folder_or_its_config_is_set_aside(trained):
    root = trained("tiny")
    run_dir = run_dir_of(root)
    record = json.loads((run_dir / "results.json").read_text())
    renamed = run_dir.with_name(run_dir.name[:-10] + "0123456789")  # the folder claims another run
    run_dir.rename(renamed)
    good, bad = load_records(root / "runs")
    assert good == [] and "carries signature" in bad[0][1] and renamed.name in bad[0][1]
    renamed.rename(run_dir)
    record["config"]["optimizer"]["lr"] = 1000.0  # edited config: its signature no longer matches
    (run_dir / "results.json").write_text(json.dumps(record))
    good, bad = load_records(root / "runs")
    assert good == [] and bad[0][1].startswith("contradicts its own config: signature")


# --------------------------------------------------------------------------- code changes between interrupt and rerun


@pytest.mark.slow
def test_an_edit_on_an_already_dirty_git_tree_refuses_the_resume(tmp_path):
    """A git clone made dirty, a run interrupted after its checkpoint, then another edit: the commit and the dirty
    flag are the same as before, the code is not, and the resume is refused naming the file."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    metrics = clone / "gsm" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\n# a first local edit: the tree is dirty\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, str(clone / "train.py"), f"output_root={tmp_path / 'out'}", "trainer.cpu_threads=1", *TINY]
    first = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = run_dir_of(tmp_path / "out")
    rec = read_record(run_dir / "results.json")
    assert rec.git_rev.endswith("-dirty") and rec.environment.code is not None
    (run_dir / "results.json").unlink()  # as if interrupted after its last checkpoint
    loop = clone / "gsm" / "train" / "loop.py"
    loop.write_text(loop.read_text() + "\n# a second edit: same commit, still dirty\n")
    again = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    _one_line_error(again, "cannot resume", f"code {rec.environment.code} →", "files changed: train/loop.py")
    assert not (run_dir / "results.json").exists()


# --------------------------------------------------------------------------- non-regular files and storage faults


def test_a_fifo_or_directory_named_like_a_run_file_is_refused_without_waiting(trained, capsys):
    from gsm.reproduce import main

    root = trained("tiny")
    run_dir = run_dir_of(root)
    (run_dir / "results.json").unlink()
    os.mkfifo(run_dir / "results.json")
    out = run_cli(f"output_root={root}", *TINY)
    _one_line_error(out, str(run_dir / "results.json"), "FIFO")
    assert main(["sweep", "--runs", str(root / "runs")]) in (0, 2)
    err = capsys.readouterr().err
    assert str(run_dir / "results.json") in err and "FIFO" in err
    (run_dir / "results.json").unlink()
    (run_dir / "results.json").mkdir()
    _one_line_error(run_cli(f"output_root={root}", *TINY), str(run_dir / "results.json"), "is a directory")
    (run_dir / "results.json").rmdir()
    ckpt = run_dir / "checkpoints" / "last.pt"
    ckpt.unlink()
    os.mkfifo(ckpt)
    _one_line_error(run_cli(f"output_root={root}", *TINY), str(ckpt), "FIFO")
    ckpt.unlink()
    lock = run_dir / ".lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()
    _one_line_error(run_cli(f"output_root={root}", *TINY), "cannot lock the run folder", str(lock), "is a directory")


def _fail_fsync_of(name: str, monkeypatch) -> None:
    """os.fsync fails with EIO for the temporary file of ``name`` (what a failing disk or NFS server returns)."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if f".{name}." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_telemetry_faults_warn_and_the_run_goes_on(cli, monkeypatch):
    _fail_fsync_of("summary.csv", monkeypatch)
    out = cli(*TWO)
    assert out.returncode == 0, out.stderr[-2000:]
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("gsm: warning:") and "summary.csv" in ln]
    assert len(warnings) == 1 and "Input/output error" in warnings[0] and "results.json will hold" in warnings[0]
    rec = read_record(run_dir_of(cli.root) / "results.json")
    assert [r["epoch"] for r in rec.history] == [1, 2]


def test_a_record_that_cannot_be_written_is_one_line_and_the_checkpoint_is_kept(cli, monkeypatch):
    _fail_fsync_of("results.json", monkeypatch)
    out = cli(*TINY)
    run_dir = run_dir_of(cli.root)
    _one_line_error(out, str(run_dir / "results.json"), "Input/output error")
    assert not (run_dir / "results.json").exists() and (run_dir / "checkpoints" / "last.pt").exists()


@pytest.mark.parametrize("fault", ["removed", "renamed"])
def test_a_run_folder_removed_or_renamed_mid_run_is_an_error_not_made_anew(cli, monkeypatch, fault):
    real = runs.save_checkpoint
    calls = []

    def save(path: Path, state: dict) -> None:
        calls.append(path)
        if len(calls) == 2:  # epoch 2's checkpoint: the folder is gone (rm -rf, mv) before it is written
            run_dir = path.parent.parent
            run_dir.rename(run_dir.with_name("moved"))  # atomic: the run's other writers may be busy in it
            if fault == "removed":
                shutil.rmtree(run_dir.with_name("moved"), ignore_errors=True)
        real(path, state)

    monkeypatch.setattr(runs, "save_checkpoint", save)
    out = cli(*TWO)
    run_dir = calls[0].parent.parent
    _one_line_error(out, str(run_dir / "checkpoints" / "last.pt"), "was removed or renamed while the run was writing")
    assert not run_dir.exists()  # never silently made anew without its train.log, .hydra and lock
    if fault == "renamed":
        kept = run_dir.with_name("moved")
        assert torch.load(kept / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1


def test_an_unreadable_checkpoint_is_one_line_without_torchs_advice(trained):
    root = trained("tiny")
    run_dir = run_dir_of(root)
    (run_dir / "results.json").unlink()
    ckpt = run_dir / "checkpoints" / "last.pt"
    torch.save({"signature": run_dir.name[-10:], "model": collections.Counter(a=1)}, ckpt)  # a global the safe loader refuses
    line = _one_line_error(run_cli(f"output_root={root}", *TINY), str(ckpt), "truncated or corrupt")
    assert "weights_only" not in line and "will likely succeed" not in line


# --------------------------------------------------------------------------- readers of other processes' files


def test_checkpoint_meta_is_read_without_the_weights_and_equals_torch_load(trained):
    ckpt = run_dir_of(trained("two_epochs")) / "checkpoints" / "last.pt"
    meta, full = read_checkpoint_meta(ckpt), torch.load(ckpt, weights_only=True)
    for key in ("signature", "epoch", "history", "train_time", "data_fingerprint", "data_root", "environment",
                "environments", "code_files"):
        assert meta[key] == full[key], key
    assert meta["rng_cpu"] is OPAQUE and set(meta["model"]) == set(full["model"])
    ckpt.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint_meta(ckpt)


def test_deeply_nested_or_binary_records_and_hostile_owner_files_are_one_line(tmp_path):
    run_dir = tmp_path / "runs" / "digits" / "convnet-gsoftmax_s0-0123456789"
    run_dir.mkdir(parents=True)
    path = run_dir / "results.json"
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ResultsError, match="nested too deeply"):
        read_record(path)
    path.write_bytes(b'{"dataset": "\xff\xfe"}')
    with pytest.raises(ResultsError, match="not UTF-8"):
        read_record(path)
    good, bad = load_records(tmp_path / "runs")
    assert good == [] and len(bad) == 1
    owner = RunPaths(run_dir).lock_owner
    owner.write_text(json.dumps({"pid": 7, "host": "evil\x1b[2J\x07host", "since": "now\r\nfake line"}))
    info = runs.read_lock_owner(owner)
    assert info == {"pid": "7", "host": "evil?[2J?host", "since": "now??fake line"}
    assert all(c.isprintable() for c in runs.RunLock(run_dir).owner())


def test_status_reads_a_damaged_summary_and_a_foreign_checkpoint_without_failing(tmp_path):
    from gsm.status import checkpoint_epoch, read_summary

    run_dir = tmp_path / "convnet-gsoftmax_s0-0123456789"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "summary.csv").write_bytes(b"epoch,epochs,train_seconds\n1,4,\xff\xfe2.5\n")
    rows = read_summary(run_dir)
    assert rows[0]["epoch"] == "1" and rows[0]["epochs"] == "4"
    paths = RunPaths(run_dir)
    torch.save({"signature": "9876543210", "epoch": 3}, paths.checkpoint)
    epoch, why = checkpoint_epoch(paths)
    assert epoch is None and "belongs to another run" in why and "9876543210" in why
    torch.save({"signature": "0123456789", "epoch": 3, "model": {"w": torch.zeros(3)}}, paths.checkpoint)
    assert checkpoint_epoch(paths) == (3, None)


def test_gsm_tables_status_and_sweep_on_hostile_files_are_readable_lines(tmp_path):
    """On the real gsm-tables (in-process): status reads a non-UTF-8 summary.csv and a .lock.owner full of control
    characters, and shows a foreign checkpoint as not used; sweep sets a deeply nested results.json aside with one
    warning. Exit 0, no traceback, nothing unprintable on the screen."""
    from test_status import INTERRUPTED, TRAINING, cli, run_folder

    runs_dir = tmp_path / "out" / "runs"
    training = run_folder(runs_dir, TRAINING)
    (training / "summary.csv").write_bytes(b"epoch,epochs,train_seconds,eval_seconds,checkpoint_seconds\n1,8,1\xff0,9,1\n")
    (training / ".lock.owner").write_text(json.dumps({"pid": 4242, "host": "node\x1b[2J\x07", "since": "x\r\ny"}))
    from filelock import FileLock

    lock = FileLock(str(training / ".lock"))
    lock.acquire(timeout=0)
    try:
        interrupted = run_folder(runs_dir, INTERRUPTED)
        (interrupted / "checkpoints").mkdir()
        torch.save({"signature": "0123456789", "epoch": 3}, interrupted / "checkpoints" / "last.pt")  # another run's
        out = cli("status", "table3", "--runs", str(runs_dir))
    finally:
        lock.release()
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert all(c.isprintable() or c == "\n" for c in out.stdout + out.stderr)
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith("table3/")}
    assert "training" in rows[TRAINING] and "pid 4242 on node?[2J? since x??y" in rows[TRAINING]
    assert "interrupted" in rows[INTERRUPTED] and "checkpoint not used" in rows[INTERRUPTED] \
        and "belongs to another run" in rows[INTERRUPTED]
    nested = runs_dir / "digits" / "convnet-gsoftmax_s0-0123456789" / "results.json"
    nested.parent.mkdir(parents=True)
    nested.write_text("[" * 100000 + "]" * 100000)
    out = cli("sweep", "--runs", str(runs_dir))
    assert "Traceback" not in out.stderr and str(nested) in out.stderr and "nested too deeply" in out.stderr


def test_a_directory_named_summary_csv_is_one_warning_and_the_run_goes_on(trained):
    root = trained("two_epochs")
    run_dir = run_dir_of(root)
    for name in ("results.json", "summary.csv", "checkpoints/last.pt"):
        (run_dir / name).unlink()
    (run_dir / "summary.csv").mkdir()  # EISDIR for the telemetry writer
    out = run_cli(f"output_root={root}", *TWO)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("gsm: warning:")]
    assert len(warnings) == 1 and "summary.csv is a directory" in warnings[0]
    assert [r["epoch"] for r in read_record(run_dir / "results.json").history] == [1, 2]


def test_both_checkpoint_readers_refuse_every_damaged_file_in_one_line(tmp_path):
    """gsm.checkpoint_file: the meta reader (no torch) and the full reader agree on what a checkpoint is: a dict in a
    torch zip archive. A list, a zip without data.pkl, a truncated archive, text, a missing path and a directory
    are each one CheckpointError naming the file; a good one reads the same through both."""
    import zipfile

    from gsm.checkpoint_file import read_checkpoint

    good = tmp_path / "good.pt"
    torch.save({"signature": "0123456789", "epoch": 2, "w": torch.ones(2)}, good)
    assert read_checkpoint_meta(good)["epoch"] == read_checkpoint(good)["epoch"] == 2
    cases = {}
    torch.save([1, 2], cases.setdefault("list", tmp_path / "list.pt"))
    with zipfile.ZipFile(cases.setdefault("nopkl", tmp_path / "nopkl.pt"), "w") as z:
        z.writestr("archive/version", "3\n")
    cases.setdefault("cut", tmp_path / "cut.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases.setdefault("text", tmp_path / "text.pt").write_text("not a checkpoint\n")
    cases["missing"] = tmp_path / "missing.pt"
    (cases.setdefault("dir", tmp_path / "dir.pt")).mkdir()
    for kind, path in cases.items():
        for reader in (read_checkpoint_meta, read_checkpoint):
            with pytest.raises(CheckpointError) as info:
                reader(path)
            text = str(info.value)
            assert str(path) in text and "\n" not in text and "weights_only" not in text, (kind, reader, text)
            if kind == "list":
                assert "not a gsm checkpoint's state" in text
            if kind == "dir":
                assert "is a directory" in text


class _RunsACommand:
    """A pickle that runs a command when unpickled (what a hostile last.pt could hold)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_the_meta_reader_executes_nothing_a_hostile_checkpoint_holds(tmp_path):
    """The meta reader admits plain containers, numbers and torch objects only: a checkpoint whose data.pkl calls
    another global (os.system here) is one CheckpointError naming that global, and the call never happens."""
    import pickle
    import zipfile

    marker = tmp_path / "executed"
    hostile = tmp_path / "hostile.pt"
    with zipfile.ZipFile(hostile, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"epoch": 1, "model": _RunsACommand(marker)}))
    with pytest.raises(CheckpointError) as info:
        read_checkpoint_meta(hostile)
    text = str(info.value)
    assert str(hostile) in text and f"refers to {os.system.__module__}.system" in text and "\n" not in text
    assert not marker.exists()
    # what it admits: a tensor stays unread, shown as <tensor>; an OrderedDict (a state dict) is rebuilt
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(3), "od": collections.OrderedDict(a=1)}, good)
    meta = read_checkpoint_meta(good)
    assert meta["w"] is OPAQUE and repr(meta["w"]) == "<tensor>" and meta["od"] == collections.OrderedDict(a=1)
    # the builtins torch.save writes under their Python 2 names (protocol 2): read as the full reader reads them
    from gsm.checkpoint_file import read_checkpoint

    plain = {"s": {1, 2}, "c": complex(1, -2), "od": collections.OrderedDict(b=2)}
    torch.save(plain, good)
    assert read_checkpoint_meta(good) == read_checkpoint(good) == plain
    torch.save({"f": frozenset({3})}, good)  # what torch's safe loader refuses, the meta reader refuses too
    for reader in (read_checkpoint_meta, read_checkpoint):
        with pytest.raises(CheckpointError, match="frozenset"):
            reader(good)


def test_an_io_error_while_reading_a_checkpoint_is_one_line_with_the_systems_reason(tmp_path, monkeypatch):
    import zipfile

    from gsm.checkpoint_file import read_checkpoint

    ckpt = tmp_path / "last.pt"
    torch.save({"epoch": 1}, ckpt)

    def eio(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(zipfile, "ZipFile", eio)
    monkeypatch.setattr(torch, "load", eio)
    for reader in (read_checkpoint_meta, read_checkpoint):
        with pytest.raises(CheckpointError) as info:
            reader(ckpt)
        assert str(info.value) == f"cannot read checkpoint {ckpt} ({os.strerror(errno.EIO)})", reader


def test_the_data_fingerprint_of_a_large_in_memory_set_hashes_every_label_and_a_sample_of_images(monkeypatch):
    """Above gsm.data._FULL_HASH_BYTES (Tiny ImageNet's 1.2 GB of decoded train images) the pixels are hashed on
    every ``step``-th image, computed here from the threshold independently; every label is hashed always."""
    import hashlib

    import gsm.data as data
    from gsm.data.types import TensorSplit

    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    targets = torch.arange(10) % 3
    monkeypatch.setattr(data, "_FULL_HASH_BYTES", 200)  # 480 bytes of images: every 3rd image (ceil(480 / 200))
    digest = data._split_digest(TensorSplit(images, targets))
    h = hashlib.sha1()
    h.update(b"torch.int64" + b"(10,)")
    h.update(targets.numpy().tobytes())
    h.update(b"(10, 3, 4, 4)")
    h.update(images[[0, 3, 6, 9]].numpy().tobytes())
    assert digest == h.hexdigest()[:16]
    for changed_image in (0, 9):  # in the sample: another fingerprint
        other = images.clone()
        other[changed_image, 0, 0, 0] ^= 1
        assert data._split_digest(TensorSplit(other, targets)) != digest
    relabelled = targets.clone()
    relabelled[4] = (relabelled[4] + 1) % 3  # an image outside the sample: its label still counts
    assert data._split_digest(TensorSplit(images, relabelled)) != digest
    monkeypatch.setattr(data, "_FULL_HASH_BYTES", 256 << 20)  # small sets: every pixel
    unsampled = images.clone()
    unsampled[4, 0, 0, 0] ^= 1
    assert data._split_digest(TensorSplit(unsampled, targets)) != data._split_digest(TensorSplit(images, targets))
