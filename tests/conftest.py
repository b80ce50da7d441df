"""How the suite runs gsm's trainer.

* :func:`run_cli` is ``python train.py ARGS`` in this test process: the same entry (:func:`gsm.cli.train`, its
  Ctrl-C guard, the command-line checks, Hydra's main, its logging and sweep launcher), the same exit code,
  stdout and stderr, without the seconds a new process spends importing torch.
* :func:`run_process` is the same command in a new process, for the tests whose subject is the process
  (signals, a second process on the same run, the console scripts, a read-only mount).
* :func:`train` is ``gsm.train.run(cfg)`` on a config composed from the shipped configs with Hydra's compose API
  (as lightning-hydra-template tests its trainer); :func:`shared_run` trains a run once per test session (all
  xdist workers) and hands each test its own copy.

Every run pins ``trainer.cpu_threads=1`` unless the test names it: two xdist workers share the machine's cores.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
from filelock import FileLock

REPO = Path(__file__).resolve().parent.parent
CPU_THREADS = "trainer.cpu_threads=1"

torch.set_num_threads(1)


def pinned(args: tuple[str, ...] | list[str]) -> list[str]:
    """``args`` with ``trainer.cpu_threads=1`` added, unless they set it (or only ask for help)."""
    args = list(args)
    if any(a.startswith(("trainer.cpu_threads=", "+trainer.cpu_threads=")) for a in args) or "--help" in args:
        return args
    # beside the other overrides: Hydra's parser takes them as one run of positional arguments (not after --cfg job)
    at = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
    return [*args[:at], CPU_THREADS, *args[at:]]


def run_process(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python train.py ARGS`` in a new process, as a user runs it; returns the finished process (text output)."""
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *pinned(args)], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )


@contextlib.contextmanager
def _isolated(cwd: Path, env: dict | None):
    """The process-wide state a run of the CLI changes, restored afterwards: working directory, environment and argv
    (what a command line is), the root and hydra loggers' handlers (Hydra's job logging), Hydra's global config.
    The trainer itself sets back what it changes (torch's threads, the gsm logger's level, the thread excepthook)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    loggers = [logging.getLogger(), logging.getLogger("hydra")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    old_cwd, old_env, old_argv = os.getcwd(), dict(os.environ), sys.argv[:]
    os.chdir(cwd)
    os.environ.update({"HYDRA_FULL_ERROR": "0", **(env or {})})
    try:
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
        sys.argv[:] = old_argv
        for lg, handlers, level, propagate in saved:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate
        HydraConfig.instance().cfg = None  # a later run must not see this run's mode or overrides
        GlobalHydra.instance().clear()


def run_cli(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 300,
            entry: str = "train.py") -> subprocess.CompletedProcess:
    """``python train.py ARGS`` run in this process through :func:`gsm.cli.train`; returns what the process would
    have: exit code (``SystemExit``'s, 1 with the traceback on stderr for an uncaught exception), stdout, stderr.
    ``entry="python -m gsm.train"``: the package's ``__main__`` module, run as ``python -m`` runs it (it calls
    :func:`gsm.cli.train` too, as ``gsm-train`` and ``train.py`` do). ``timeout`` is accepted for the signature of
    :func:`run_process` (an in-process run is not cut short)."""
    if entry == "python -m gsm.train":
        import runpy

        def train() -> None:
            runpy.run_module("gsm.train", run_name="__main__", alter_sys=False)
    else:
        assert entry in ("train.py", "gsm-train"), entry
        from gsm.cli import train

    argv = [str(REPO / "train.py"), *pinned(args)]
    out, err = io.StringIO(), io.StringIO()
    code: int = 0
    with _isolated(cwd, env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        sys.argv[:] = argv
        try:
            train()
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:  # sys.exit("text"): the text on stderr, exit 1
                print(exc.code, file=sys.stderr)
                code = 1
        except Exception:  # noqa: BLE001 - what a process shows: the traceback, exit 1
            traceback.print_exc()
            code = 1
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli(tmp_path):
    """run_cli with output_root in a temporary folder."""

    def _run(*args: str, **kw) -> subprocess.CompletedProcess:
        return run_cli(f"output_root={tmp_path}", *args, **kw)

    _run.root = tmp_path
    return _run


@pytest.fixture(scope="session", autouse=True)
def compose_cache_of_the_session(tmp_path_factory):
    """gsm's cache of composed configs (gsm.compose_cache) in a folder of this session, shared by the xdist workers
    and the processes they start: the suite neither reads nor fills the user's ~/.cache/gsm."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "gsm-cache"
    os.environ["GSM_CACHE_DIR"] = str(folder)
    return folder


# --------------------------------------------------------------------------- in-process training


def compose_train(*overrides: str):
    """The trainer's config of ``python train.py OVERRIDES`` from the shipped configs (Hydra's compose API), with
    Hydra's runtime config set as ``hydra.main`` sets it (the run folder's readable name reads it)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from gsm import runs
    from gsm.train import CONFIG_DIR

    runs.register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="train"):
        cfg = compose("train", overrides=pinned(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def train(root: Path, *overrides: str) -> "RunRecord | None":
    """``gsm.train.run(cfg)`` in this process with ``output_root=root``; returns the run's record (the trainer's
    errors are raised as they are)."""
    import gsm.train

    with _isolated(REPO, None):
        logging.getLogger().setLevel(logging.INFO)  # as Hydra's job_logging sets it: train.log gets the INFO lines
        cfg = compose_train(f"output_root={root}", *overrides)
        from hydra import initialize_config_dir

        with initialize_config_dir(config_dir=str(gsm.train.CONFIG_DIR), version_base="1.3", job_name="train"):
            return gsm.train.run(cfg)


def run_dir_of(root: Path) -> Path:
    """The one run folder under ``root``."""
    found = [p.parent for p in Path(root).rglob("results.json")] or \
        [p.parent.parent for p in Path(root).rglob("checkpoints/last.pt")]
    assert len(found) == 1, found
    return found[0]


# Runs that several tests read or damage: trained once per session, whichever worker needs one first.
SHARED_RUNS: dict[str, tuple[str, ...]] = {
    # one finished epoch of G-softmax on 64 digits: what most "then damage it" tests start from
    "tiny": ("trainer.epochs=1", "dataset.subset=64", "trainer.analyze_train=false"),
    # two epochs, a checkpoint per epoch
    "two_epochs": ("trainer.epochs=2", "dataset.subset=64", "trainer.analyze_train=false"),
    # six epochs on 128 digits, uninterrupted: what the runs stopped by SIGKILL or SIGTERM must end up equal to
    "six_epochs": ("trainer.epochs=6", "dataset.subset=128", "trainer.analyze_train=false"),
}


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory):
    """``get(name)``: the output_root of the shared run ``name`` (SHARED_RUNS), trained once per session. Under
    xdist the workers share one folder beside their base temp, and a file lock makes one of them train it."""
    base = tmp_path_factory.getbasetemp()
    store = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-runs"
    store.mkdir(exist_ok=True)

    def get(name: str) -> Path:
        root = store / name
        with FileLock(str(store / f"{name}.lock")):
            if not (root / "done").exists():
                shutil.rmtree(root, ignore_errors=True)
                results = train(root, *SHARED_RUNS[name])
                assert results is not None
                (root / "done").write_text(json.dumps(SHARED_RUNS[name]))
        return root

    return get


@pytest.fixture
def trained(shared_runs, tmp_path):
    """``trained(name)``: a copy of the shared run ``name`` of this test's own (output_root under tmp_path), so it
    may damage, skip or force it; returns that output_root."""

    def copy(name: str) -> Path:
        dest = tmp_path / f"trained-{name}"
        shutil.copytree(shared_runs(name), dest, ignore=shutil.ignore_patterns("done"))
        return dest

    return copy


def pytest_collection_modifyitems(config, items):
    """Modules with slow tests first, and in each its slow tests first (a module's tests stay together, so a
    module-scoped fixture is made once per worker). ``make test`` runs ``--dist worksteal``: the worker that
    starts on the fast half takes from the other's queue when it runs out, so the two finish together."""
    def module(item) -> str:
        return item.module.__name__ if item.module else ""

    slow_modules = {module(item) for item in items if item.get_closest_marker("slow")}
    first = {}
    for i, item in enumerate(items):
        first.setdefault(module(item), i)
    items.sort(key=lambda item: (module(item) not in slow_modules, first[module(item)],
                                 item.get_closest_marker("slow") is None))
