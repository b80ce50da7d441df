"""What a run writes besides checkpoints: its telemetry (train.log, TensorBoard events, summary.csv: a failed
write is one warning and the run goes on) and its results (:func:`build_results` → results.json,
:func:`save_outputs` → test_outputs.pt: a failed write stops the run)."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from omegaconf import OmegaConf

from gsm import analysis, runs
from gsm.errors import GsmError
from gsm.heads import Head
from gsm.identity import FileKindError, RunPaths
from gsm.train.loop import EvalOutputs, compute_metrics
from gsm.train.state import TrainState

if TYPE_CHECKING:
    from gsm.train.epochs import Run

log = logging.getLogger("gsm.train")


def warn(message: str) -> None:
    """One ``gsm: warning:`` line on stderr."""
    print(f"gsm: warning: {message}", file=sys.stderr)


def cause(exc: BaseException) -> str:
    """The reason of a failed write in a few words ("No space left on device", "Permission denied" ...)."""
    while exc.__cause__ is not None and not isinstance(exc, OSError):
        exc = exc.__cause__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


# --------------------------------------------------------------------------- telemetry


def tensorboard_tag(key: str) -> str:
    """TensorBoard tag of a history column: train/…, test/…, time/…, lr."""
    if key.startswith("train_") and not key.endswith("seconds"):
        return "train/" + key[len("train_"):]
    if key.startswith("test_"):
        return "test/" + key[len("test_"):]
    if key.endswith("seconds") or key == "images_per_second":
        return "time/" + key
    return key


class Reporter:
    """train.log (via logging), TensorBoard events and summary.csv — rank 0 only.

    All three are telemetry: a write that fails (no space, no permission, the folder removed) is one
    warning naming the path and the cause, and the run goes on without that output; its results are
    not affected. (Results and checkpoints are not telemetry: their writes stop the run, StorageError.)
    """

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.run_dir, self.enabled, self.writer = run_dir, enabled, None
        self._summary_ok = True
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._guard(lambda: setattr(self, "writer", SummaryWriter(log_dir=str(run_dir / "tensorboard"))))

    def _guard(self, write: Callable[[], Any]) -> None:
        """Run one TensorBoard write (Ctrl-C and SIGTERM held until it ends); on failure warn once and stop writing
        events."""
        try:
            with signals_held():
                write()
        except Exception as exc:  # noqa: BLE001 - telemetry: any failure of the event writer (OSError, its thread's)
            writer, self.writer = self.writer, None
            warn(f"cannot write TensorBoard events to {self.run_dir / 'tensorboard'} ({cause(exc)}); "
                 "the run goes on without them (its results are not affected)")
            if writer is not None:
                try:
                    writer.close()
                except Exception:  # noqa: BLE001 - already reported
                    pass

    def epoch(self, row: dict[str, Any], head: Head) -> None:
        if not self.enabled:
            return
        step = row["epoch"]
        scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k not in ("epoch", "epochs")}
        log.info("epoch %d/%s  %s", step, row.get("epochs"), "  ".join(f"{k}={v:.4g}" for k, v in scalars.items()))
        if self.writer is None:
            return

        def write() -> None:
            for k, v in scalars.items():
                self.writer.add_scalar(tensorboard_tag(k), v, step)
            for name, values in head.histograms().items():
                self.writer.add_histogram(f"head/{name}", values.detach().float().cpu(), step)
            self.writer.flush()

        self._guard(write)

    def step(self, global_step: int, loss: float, images_per_second: float) -> None:
        """Per-step curves (``trainer.log_every_n_steps``, by default ~10 points per epoch): ``train/loss_step``
        and ``time/images_per_second_step`` against the global step."""
        if self.writer is None:
            return

        def write() -> None:
            self.writer.add_scalar("train/loss_step", loss, global_step)
            self.writer.add_scalar("time/images_per_second_step", images_per_second, global_step)

        self._guard(write)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, Any]) -> None:
        """The run's settings → its final metrics, for TensorBoard's HParams tab (a (μ, σ) sweep side by side).
        A metric without a finite value (e.g. mAP of a test split without positives) is left out."""
        if self.writer is None:
            return
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items() if v is not None}
        finite = {f"hparam/{k}": float(v) for k, v in metrics.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}

        def write() -> None:
            self.writer.add_hparams(clean, finite, run_name=".")
            self.writer.flush()

        self._guard(write)

    def summary(self, history: list[dict[str, Any]]) -> None:
        """summary.csv: one row per epoch, rewritten whole (atomically) from the run's history."""
        if not self.enabled or not history or not self._summary_ok:
            return
        buf = io.StringIO()
        fields: dict[str, None] = {}  # every numeric column in first-seen order (epochs without evaluation lack test_*)
        for row in history:
            fields.update((k, None) for k, v in row.items() if isinstance(v, (int, float)))
        writer = csv.DictWriter(buf, fieldnames=list(fields), restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        try:
            runs.atomic_write_bytes(RunPaths(self.run_dir).summary, lambda fh: fh.write(buf.getvalue().encode()),
                                    create_folder=False)
        except (runs.StorageError, FileKindError, OSError) as exc:  # telemetry: any failed write is one warning
            self._summary_ok = False
            text = str(exc) if isinstance(exc, GsmError) else f"cannot write {self.run_dir / 'summary.csv'} ({cause(exc)})"
            warn(f"{text}; summary.csv is not updated any more (results.json will hold the whole history)")

    def close(self) -> None:
        self._guard(lambda: self.writer.close() if self.writer is not None else None)
        self.writer = None


@contextlib.contextmanager
def signals_held(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Ctrl-C and SIGTERM that arrive while the body runs are delivered when it ends, to the handlers that were in
    place (a second one of the same signal is delivered at once). TensorBoard's event writer shares a queue with
    its thread: a KeyboardInterrupt raised inside ``Queue.put`` after the item is counted but before the thread
    is notified loses the wake-up, and the writer's next flush (the one closing it) then waits for the thread's
    own timer, up to 120 s, before the interrupted run can stop. Only the main thread takes signals, so elsewhere
    this holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in signums}
    previous = {s: h for s, h in previous.items() if h is not None}  # a handler set outside Python: left alone
    arrived: list[int] = []

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    def hold(signum: int, frame: Any) -> None:
        arrived.append(signum)
        if arrived.count(signum) == 2:  # asked twice: deliver it now, wherever the write is
            restore()
            signal.raise_signal(signum)

    for s in previous:
        signal.signal(s, hold)
    try:
        yield
    finally:
        restore()
        first = arrived[0] if arrived else None
        if first is not None and arrived.count(first) == 1:
            signal.raise_signal(first)  # runs the handler that was in place, as if the signal came now


@contextlib.contextmanager
def quiet_event_writer_threads() -> Iterator[None]:
    """TensorBoard writes events in a thread of its own; a write that fails there is stored and raised again by
    the writer's next call (where :class:`Reporter` turns it into one warning), but the thread also prints
    it as a traceback on its way out. While a run reports, this hook drops that duplicate; the process's own
    hook is put back afterwards."""
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, Exception):
            return
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


class LogFile(logging.FileHandler):
    """train.log; a record that cannot be written is one warning, then the log file is given up (telemetry)."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        exc = sys.exc_info()[1]
        logging.getLogger().removeHandler(self)
        self._warn(exc)

    def close(self) -> None:
        """Closed even when its last buffered lines cannot be written (a full disk): one warning, never raised."""
        try:
            super().close()
        except OSError as exc:  # the file is closed all the same (io closes after a failed flush)
            self._warn(exc)

    def _warn(self, exc: BaseException | None) -> None:
        if not self.failed:
            self.failed = True
            warn(f"cannot write {self.baseFilename} ({cause(exc) if exc else 'write failed'}); "
                 "the log goes on on stderr only (the run's results are not affected)")


def attach_log_file(run_dir: Path) -> logging.Handler | None:
    """The run's train.log beside the console log (None, after one warning, when it cannot be opened)."""
    try:
        handler = LogFile(RunPaths(run_dir).log)
    except OSError as exc:
        warn(f"cannot write {RunPaths(run_dir).log} ({cause(exc)}); the log goes on on stderr only")
        return None
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def detach_log_file(handler: logging.Handler | None, error: BaseException | None = None) -> None:
    """Close train.log; an ``error`` that ends the run is its last line (``gsm-tables status`` reads it)."""
    if handler is None:
        return
    if error is not None:
        handler.emit(logging.LogRecord("gsm.train", logging.ERROR, __file__, 0, "gsm: error: %s", (error,), None))
    logging.getLogger().removeHandler(handler)
    handler.close()


# --------------------------------------------------------------------------- results


def epoch_row(epoch: int, epochs: int, lr: float, train: dict[str, float], metrics: dict[str, Any],
              multilabel: bool) -> dict[str, Any]:
    """One history row: fractions under ``*_frac`` names (gsm.results.record_metrics), seconds under ``*_seconds``;
    no ``test_*`` columns for an epoch that was not evaluated (``metrics`` empty, ``trainer.eval_every``)."""
    from gsm.results import record_metrics

    test = record_metrics(metrics, multilabel, history=True) if metrics else {}
    return {"epoch": epoch, "epochs": epochs, "lr": lr, **train, **test}


def build_results(run: Run, state: TrainState, test: EvalOutputs, train_out: EvalOutputs | None,
                  metrics: dict[str, Any] | None = None) -> Any:
    """The :class:`gsm.results.RunRecord` of ``run`` (what results.json holds; tables and figures read only it):
    its identity (signature, data, environment with the code hash), the last evaluation's ``metrics`` (computed
    from ``test`` when None), the statistics of ``test`` and ``train_out``, and ``state``'s history."""
    from gsm.results import EmpiricalSplits, Environment, RunRecord, best_epoch, record_metrics

    cfg, model, splits, identity = run.cfg, run.parts.model, run.splits, run.identity
    env, multilabel = identity.environment, splits.multilabel
    metrics = metrics if metrics is not None else compute_metrics(test, multilabel)  # the last epoch's, when known
    empirical = EmpiricalSplits(
        test=analysis.empirical_stats(test.x, test.targets, multilabel),
        train=None if train_out is None else analysis.empirical_stats(train_out.x, train_out.targets, multilabel),
    )
    history = state.history
    return RunRecord(
        run_name=run.paths.run_dir.name, signature=identity.signature,
        dataset=cfg.dataset.name, model=cfg.model.name, head=cfg.head.name,
        mu_init=cfg.head.get("mu"), sigma_init=cfg.head.get("sigma"), lam=cfg.head.get("lam"),
        seed=int(cfg.seed), epochs=state.epoch, multilabel=multilabel,
        num_classes=splits.num_classes, class_names=list(splits.class_names),
        train_samples=len(splits.train), test_samples=len(splits.test), data_notes=splits.notes,
        data_fingerprint=identity.fingerprint, data_root=identity.data_root,
        **record_metrics(metrics, multilabel),
        **({} if multilabel else dict(zip(("best_top1_error_frac", "best_epoch"), best_epoch(state.history)))),
        learned=model.head.learned_stats(), empirical=empirical,
        history=history, train_time_s=state.train_time, wall_time_s=time.perf_counter() - run.wall_start,
        eval_seconds_total=sum(r.get("eval_seconds", 0.0) for r in history),
        checkpoint_seconds_total=sum(r.get("checkpoint_seconds", 0.0) for r in history),
        environment=Environment.of_run(env, state.environments),
        device=env["device_name"] if env["device"] == "cuda" else "cpu", world_size=env["world_size"],
        git_rev=env["git_rev"] + ("-dirty" if env["git_dirty"] else ""), torch=env["torch"],
        config=OmegaConf.to_container(cfg, resolve=True),
    )


def save_outputs(paths: RunPaths, out: EvalOutputs, multilabel: bool, signature: str) -> str:
    """Test-set x, p and targets for the figures, stamped with the run's signature (gsm.results.write_test_outputs:
    versioned, read back safely); returns the file's SHA-256, which the record keeps."""
    from gsm.results import file_sha256, write_test_outputs

    path = write_test_outputs(paths.outputs, out.x, out.probabilities(multilabel), out.targets, multilabel=multilabel,
                              signature=signature, create_folder=False)
    return file_sha256(path)
