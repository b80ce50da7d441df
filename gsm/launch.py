"""gsm-tables' launching: the fixture datasets, one ``train.py -m`` command per group of a table's missing runs, and
the trainer process run to its end (Ctrl-C and SIGTERM passed on and waited for: no trainer outlives gsm-tables);
the launcher's ``hydra.*`` settings checked before anything starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gsm.cli import raise_once
from gsm.errors import ConfigError, GsmError
from gsm.grid import Grid
from gsm.overrides import path_override

REPO = Path(__file__).resolve().parent.parent


class LaunchError(GsmError):
    """The trainer subprocess failed."""


# --------------------------------------------------------------------------- fixtures and launching


def ensure_fixtures(out_dir: Path, sizes: dict[str, dict] | None = None) -> Path:
    """Generate the fixture datasets (official on-disk layouts, gsm.data.fixtures) once, all into ``out_dir``."""
    from gsm.data.fixtures import MAKERS

    out_dir = Path(out_dir).resolve()
    stamp = out_dir / ".complete"
    sizes = sizes if sizes is not None else {name: {} for name in MAKERS}
    if stamp.exists() and stamp.read_text().strip() == json.dumps(sizes):
        return out_dir
    print(f"gsm-tables: generating fixture datasets in {out_dir}", flush=True)
    for name, kwargs in sizes.items():
        MAKERS[name](out_dir, **kwargs)
    stamp.write_text(json.dumps(sizes) + "\n")
    return out_dir


def launch_commands(grid: Grid, experiments: list[str], launcher: str = "basic",
                    seeds: list[int] | None = None, hydra_overrides: list[str] | tuple[str, ...] = ()) -> list[list[str]]:
    """One ``train.py -m`` command per set of overrides (models take different knobs, so groups differ).

    ``hydra_overrides`` (``-o hydra.launcher.partition=gpu``) follow ``hydra/launcher=<launcher>`` as they are:
    the launcher's config has their keys once the launcher is chosen (:func:`check_hydra_overrides`), so they
    need no ``+``. They are no part of the grid's rows (a row's config has no ``hydra`` node)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for exp in experiments:
        groups.setdefault(tuple(grid.rows[exp].launch_overrides()), []).append(exp)
    entry = [sys.executable, str(REPO / "train.py")] if (REPO / "train.py").exists() else [sys.executable, "-m", "gsm.train"]
    cmds = []
    for overrides, exps in groups.items():
        # a variant row (x@as_written) is its experiment config plus the variant's overrides, which its
        # launch overrides hold (gsm.profiles.Profile.overrides), so it groups apart from the plain rows
        names = ",".join(dict.fromkeys(grid.rows[e].base_experiment for e in exps))
        # a path is data: quoted, so that Hydra reads "/data/x,y" as one folder, not as a sweep of two
        cmd = [*entry, "-m", "experiment=" + names, *overrides, path_override("output_root", grid.output_root())]
        if launcher and launcher != "basic":
            cmd.append(f"hydra/launcher={launcher}")
        cmd += list(hydra_overrides)
        if seeds:
            cmd.append("seed=" + ",".join(str(s) for s in seeds))
        cmds.append(cmd)
    return cmds


def launch(grid: Grid, experiments: list[str], launcher: str = "basic", seeds: list[int] | None = None,
           hydra_overrides: list[str] | tuple[str, ...] = ()) -> None:
    """Run the trainer for ``experiments``, one command per group of runs, streaming its output. A group that
    fails does not stop the others: after the last one, LaunchError lists every failed command. Ctrl-C raises
    Interrupted at once (after the trainer has stopped: it keeps its last checkpoint)."""
    commands = launch_commands(grid, experiments, launcher, seeds, hydra_overrides)
    failed: list[tuple[int, str]] = []
    for cmd in commands:
        printable = " ".join(shell_quote(c) for c in cmd)
        print(f"gsm-tables: running {printable}", flush=True)
        cwd = REPO if (REPO / "train.py").exists() else None
        code, interrupted = run_trainer(cmd, cwd, {**os.environ, "HYDRA_FULL_ERROR": os.environ.get("HYDRA_FULL_ERROR", "0")})
        # SIGTERM here, or to the trainer alone (not the SIGTERM that a Ctrl-C's escalation sent it)
        if interrupted == "SIGTERM" or (not interrupted and code in (143, -signal.SIGTERM)):
            raise Terminated(TERMINATED_LAUNCH)
        if interrupted or code in (130, -signal.SIGINT):  # Ctrl-C here, or in the trainer alone
            raise Interrupted(INTERRUPTED_LAUNCH)
        if code != 0:
            failed.append((code, printable))
            if len(commands) > 1:
                print(f"gsm-tables: this group failed (exit {code}); going on with the other groups", file=sys.stderr,
                      flush=True)
    grid.refresh()
    if failed:
        listed = "\n".join(f"  exit {code}: {printable}" for code, printable in failed)
        raise LaunchError(
            f"the trainer failed in {len(failed)} of {len(commands)} command(s) (exit {failed[0][0]}); their output "
            f"is above:\n{listed}\nFinished runs are kept: rerunning the same gsm-tables command resumes the rest."
        )


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what it stopped (gsm-tables ends in this one line and exit code 130)."""


INTERRUPTED_LAUNCH = ("interrupted; the trainer stopped (runs that finished are kept, an unfinished one keeps its last "
                      "checkpoint): rerun the same command to resume")


class Terminated(BaseException):
    """SIGTERM (``kill``, ``timeout``, a cluster's job stop), with what it stopped: gsm-tables ends in this one line
    and exit code 143, after the trainer has stopped (never leaving it running on its own)."""

    def __init__(self, message: str = "terminated (SIGTERM)") -> None:
        super().__init__(message)


TERMINATED_LAUNCH = ("terminated (SIGTERM); the trainer stopped (runs that finished are kept, an unfinished one keeps "
                     "its last checkpoint): rerun the same command to resume")


def raise_terminated_once():
    """gsm-tables' SIGTERM handler outside a launch: :class:`Terminated` once, later SIGTERMs ignored."""
    return raise_once(Terminated)


# After a Ctrl-C, what the trainer gets if it is still running: (signal, seconds after the previous step)
STOP_STEPS = ((signal.SIGINT, 5.0), (signal.SIGTERM, 60.0), (signal.SIGKILL, 60.0))


def run_trainer(cmd: list[str], cwd: Path | None, env: dict[str, str]) -> tuple[int, bool | str]:
    """Run the trainer to its end: (exit code, what came meanwhile: False, True for Ctrl-C, "SIGTERM"). Neither
    raises here: the trainer stops as it does on its own (one line, its last checkpoint intact), and gsm-tables
    waits for it, so no trainer is left running (holding run locks, starting the next job) after gsm-tables ends.

    Ctrl-C: in a terminal the trainer got the SIGINT too; if it still runs 5 s later (``kill -INT`` of gsm-tables
    alone) it gets one, then SIGTERM (it stops after the epoch's checkpoint), then SIGKILL; a further Ctrl-C takes
    the next step at once. SIGTERM (``kill`` of gsm-tables, ``timeout``, a cluster stopping the job): passed on to the
    trainer at once (a second one, when the sender signalled the whole process group, changes nothing: the trainer
    acts on its first), then SIGKILL if it still runs 60 s later. The handlers are set before the trainer starts, so
    the trainer starts with Ctrl-C at its default even where gsm-tables started with it ignored."""
    hits: list[None] = []
    terms: list[None] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: hits.append(None))
    except ValueError:  # not the main thread: signals are not ours to handle
        proc = subprocess.Popen(cmd, cwd=cwd, env=env)
        return proc.wait(), False
    previous_term = signal.signal(signal.SIGTERM, lambda *_: terms.append(None))
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env)
        sent, seen, since = 0, 0, 0.0
        while proc.poll() is None:
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if not (hits or terms) or proc.poll() is not None:
                continue
            now = time.monotonic()
            if terms and sent < 2:  # SIGTERM: the SIGINT step is skipped, the trainer gets SIGTERM now
                proc.send_signal(signal.SIGTERM)
                sent, seen, since = 2, len(hits), now
                continue
            if not since:  # the first Ctrl-C
                seen, since = 1, now
            if sent < len(STOP_STEPS) and (len(hits) > seen or now - since >= STOP_STEPS[sent][1]):
                proc.send_signal(STOP_STEPS[sent][0])
                sent, seen, since = sent + 1, len(hits), now
        return proc.returncode, ("SIGTERM" if terms else bool(hits))
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)


def shell_quote(arg: str) -> str:
    """``arg`` as a POSIX shell reads it back (the printed command can be pasted into a shell)."""
    import shlex

    return shlex.quote(arg)


def is_hydra_override(override: str) -> bool:
    """``hydra.launcher.partition=gpu`` and other ``hydra.*`` settings: of the launch, not of a run."""
    return override.lstrip("+~").startswith("hydra.")


def check_hydra_overrides(launcher: str, overrides: list[str]) -> None:
    """``launcher`` is one of Hydra's launchers here (gsm's presets in gsm/configs/hydra/launcher/, Hydra's basic,
    installed plugins) and every ``hydra.*`` override is a setting of its config, as ``train.py -m
    hydra/launcher=<launcher> <overrides>`` composes it; else a ConfigError naming the launcher that has the key."""
    import difflib

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from gsm.grid import CONFIG_DIR
    from gsm.runs import register_resolvers

    register_resolvers()
    errors = (HydraException, OmegaConfBaseException)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="train"):
        options = GlobalHydra.instance().config_loader().get_group_options("hydra/launcher")
        ours = sorted(p.stem for p in (CONFIG_DIR / "hydra" / "launcher").glob("*.yaml"))
        if launcher not in options:
            plugins = [o for o in options if o not in ours and o != "basic"]
            close = difflib.get_close_matches(launcher, options, 1)
            raise ConfigError(f"--launcher {launcher!r} is no Hydra launcher; valid: basic (Hydra's: one run after "
                              f"another, here), {', '.join(ours)} (gsm's presets, gsm/configs/hydra/launcher/)"
                              + (f", {', '.join(plugins)} (installed Hydra plugins)" if plugins else "")
                              + (f"; did you mean {close[0]}?" if close else ""))

        def composes(name: str, ovs: list[str]) -> Exception | None:
            try:
                compose("train", overrides=[f"hydra/launcher={name}", *ovs], return_hydra_config=True)
            except errors as exc:
                return exc
            return None

        alone = composes(launcher, [])
        if alone is not None:
            raise ConfigError(f"--launcher {launcher}: {str(alone).splitlines()[0]} (is its Hydra plugin installed? "
                              f"pip install 'gsm[sweep]')")
        for ov in overrides:
            exc = composes(launcher, [ov])
            if exc is None:
                continue
            key = ov.split("=", 1)[0].lstrip("+~")
            setting = key.removeprefix("hydra.launcher.")
            others = [o for o in options if o != launcher and composes(o, [ov]) is None]
            if others and setting != key:
                raise ConfigError(f"-o {ov}: the {launcher} launcher has no setting {setting}; it is a setting of "
                                  f"--launcher {', '.join(others)}")
            raise ConfigError(f"-o {ov}: not a setting of the {launcher} launcher ({str(exc).splitlines()[0]})")
