"""Faults outside the checkpoint: telemetry that cannot be written is a warning, never a lost run; a sweep's
failed job does not stop the others (real CLI, tiny digits runs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli

TINY = ("trainer.epochs=1", "dataset.subset=64", "trainer.analyze_train=false")  # the shared run "tiny"


@pytest.mark.slow
def test_a_failed_sweep_job_does_not_stop_the_others(tmp_path):
    out = run_cli("-m", f"output_root={tmp_path}", "head.sigma=1.5,-1,2.5", *TINY)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("gsm:")]
    assert "gsm: error: head.sigma must be a finite number > 0 (got -1)" in lines
    assert any(ln.startswith("gsm: 1 job(s) of this sweep failed") for ln in lines)
    assert any(ln.startswith("gsm:   job 1 (") and "head.sigma=-1" in ln for ln in lines)
    finished = sorted(p.parent.name.split("_")[1] for p in tmp_path.rglob("results.json"))
    assert finished == ["sigma1.5", "sigma2.5"]  # the job after the bad one ran too
    assert "Traceback" not in out.stderr
    again = run_cli("-m", f"output_root={tmp_path}", "head.sigma=1.5,2.5", *TINY)  # fixed: nothing left to train
    assert again.returncode == 0 and again.stdout.count("this run is finished") == 2


def test_unwritable_tensorboard_is_a_warning_and_the_run_is_recorded(trained):
    root = trained("tiny")
    run_dir = next(root.rglob("results.json")).parent
    shutil.rmtree(run_dir / "tensorboard")
    (run_dir / "tensorboard").write_text("a file where the event folder should be")
    out = run_cli(f"output_root={root}", *TINY, "trainer.force=true")
    assert out.returncode == 0, out.stderr[-2000:]
    warning = [ln for ln in out.stderr.splitlines() if ln.startswith("gsm: warning:")]
    assert len(warning) == 1 and str(run_dir / "tensorboard") in warning[0] and "results are not affected" in warning[0]
    assert "Traceback" not in out.stderr
    record = json.loads((run_dir / "results.json").read_text())
    assert record["top1_error_frac"] is not None and (run_dir / "test_outputs.pt").exists()


def test_telemetry_into_a_removed_folder_warns_and_a_metric_without_value_is_skipped(tmp_path, capsys):
    from gsm.heads import SoftmaxHead
    from gsm.train import Reporter
    from gsm.train.outputs import quiet_event_writer_threads

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with quiet_event_writer_threads():  # as the trainer reports: the event thread's own traceback is dropped
        reporter = Reporter(run_dir, enabled=True)
        reporter.hparams({"head": "softmax"}, {"mAP_frac": None})  # a test split without positives: no mAP
        shutil.rmtree(run_dir)
        (tmp_path / "run").write_text("")  # not even a folder any more: every write fails
        row = {"epoch": 1, "epochs": 2, "lr": 0.1, "train_loss": 1.0}
        reporter.epoch(row, SoftmaxHead(4, 3))
        reporter.summary([row])
        reporter.summary([row, dict(row, epoch=2)])
        reporter.close()
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.startswith("gsm: warning:")]
    assert len(warnings) == 2, err  # once for the events, once for summary.csv: not once per write
    assert any("summary.csv" in w for w in warnings) and any("tensorboard" in w for w in warnings)


@pytest.mark.parametrize("errno_name", ["ENOENT", "EACCES"])
def test_a_result_file_that_cannot_be_written_is_one_storage_error(tmp_path, errno_name):
    import errno

    from gsm import runs

    def fail(fh):
        raise OSError(getattr(errno, errno_name), "simulated")

    with pytest.raises(runs.StorageError) as info:
        runs.atomic_write_bytes(tmp_path / "results.json", fail)
    assert str(tmp_path / "results.json") in str(info.value)
    assert not list(Path(tmp_path).glob(".results.json.*"))  # no debris


def test_a_train_log_that_cannot_be_opened_or_written_is_one_warning_and_logging_goes_on(tmp_path, capsys):
    """train.log is telemetry: a directory in its place (cannot open) or a device that is full (every write fails,
    /dev/full) is one warning naming the file and the cause; the log goes on on stderr, the run is not stopped."""
    import logging

    from gsm.train.outputs import attach_log_file

    blocked = tmp_path / "blocked"
    (blocked / "train.log").mkdir(parents=True)
    assert attach_log_file(blocked) is None
    full = tmp_path / "full"
    full.mkdir()
    (full / "train.log").symlink_to("/dev/full")
    root = logging.getLogger()
    handler = attach_log_file(full)
    assert handler is not None and handler in root.handlers
    try:
        logging.getLogger("gsm.test").warning("first record")
        logging.getLogger("gsm.test").warning("second record")
    finally:
        root.removeHandler(handler)
        handler.close()  # its buffered lines cannot be written either: no second warning, nothing raised
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("gsm: warning:")]
    assert warnings[0] == (f"gsm: warning: cannot write {blocked / 'train.log'} (Is a directory); the log goes on on "
                           "stderr only")
    assert len(warnings) == 2 and warnings[1].startswith(f"gsm: warning: cannot write {full / 'train.log'} (No space "
                                                         "left on device); the log goes on on stderr only")


@pytest.fixture
def python_ctrl_c():
    """Python's own Ctrl-C handler (KeyboardInterrupt) for the test, whatever the process started with: a shell
    starts a background job (``make test &``, nohup) with SIGINT ignored, and Python then installs no handler."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_signals_held_deliver_a_ctrl_c_after_the_body_a_second_at_once_and_restore_the_handlers(python_ctrl_c):
    import signal

    from gsm.train.outputs import signals_held

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            signal.raise_signal(signal.SIGINT)
            steps.append("body ended")  # the Ctrl-C waited for it
    assert steps == ["body ended"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # asked twice: delivered here
            steps.append("not reached")
    assert steps == ["body ended"] and signal.getsignal(signal.SIGINT) == before[0]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a process started with Ctrl-C ignored keeps ignoring it
    try:
        with signals_held():
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_inside_the_event_writers_queue_put_does_not_lose_its_threads_wake_up(tmp_path, python_ctrl_c):
    """The Ctrl-C arrives in TensorBoard's Queue.put after the event is counted, before the writer thread is
    notified (the moment that once kept an interrupted trainer alive for ~115 s: the closing flush waited for the
    thread's 120 s timer). The notify must happen before the KeyboardInterrupt, so the close does not wait."""
    import signal

    from gsm.heads import SoftmaxHead
    from gsm.train import Reporter
    from gsm.train.outputs import quiet_event_writer_threads

    with quiet_event_writer_threads():
        reporter = Reporter(tmp_path, enabled=True)
        byte_queue = reporter.writer._get_file_writer().event_writer._async_writer._byte_queue
        events = []
        original = byte_queue.not_empty.notify

        def interrupted_notify(n=1):
            if not events:
                events.append("ctrl-c")
                signal.raise_signal(signal.SIGINT)  # without gsm's hold: KeyboardInterrupt here, the notify lost
            original(n)
            events.append("notified")

        byte_queue.not_empty.notify = interrupted_notify
        row = {"epoch": 1, "epochs": 2, "lr": 0.1, "train_loss": 1.0}
        with pytest.raises(KeyboardInterrupt):
            reporter.epoch(row, SoftmaxHead(4, 3))
        assert events[:2] == ["ctrl-c", "notified"]
        assert byte_queue.unfinished_tasks == 0  # the write was not cut short: its flush saw the thread take every event
        reporter.close()
    assert reporter.writer is None
