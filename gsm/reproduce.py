"""gsm-tables: the paper's tables and figures from runs, training what is missing.

The orchestrator: grid -> launch the missing runs -> report. It is the only part of gsm that
starts training (the real trainer, through a Hydra launcher) or generates fixture datasets; the
tables themselves are pure functions in gsm.report, the figures in gsm.figures.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from gsm import paper
from gsm.errors import ConfigError, GsmError
from gsm.grid import Grid, as_written_experiments
from gsm.launch import (Interrupted, Terminated, check_hydra_overrides, ensure_fixtures, is_hydra_override, launch,
                        raise_terminated_once, shell_quote)
from gsm.overrides import literal_paths
from gsm.profiles import PROFILES
from gsm.results import load_records, warn_unreadable

REPO = Path(__file__).resolve().parent.parent

HELP = """\
Commands:
  table1 ... table6  train the runs of that table's grid that are missing (the real trainer, through
                     the chosen Hydra launcher), then write <out>/tableN.md, .csv and .tex: every paper
                     row, our value next to the paper's, the seeds and conditions of our runs, and
                     "not run" where a row has no run ("running" with --no-run for a row whose run is
                     training now). table1 also draws Figures 3, 5, 6, 7 and table3
                     Figures 4 and 8 (PNG and PDF, with a caption file each).
  figures            draw Figures 3-8 from the runs that exist (no training).
  demo               the table of make demo (the embedded digits sets).
  sweep              every run under --runs, one section per dataset and model: a run column, the
                     settings that vary within the section, headline metrics, seeds collapsed to
                     mean +- std with n (written as sweep.md and sweep.csv).
  status TABLE       every run of TABLE's grid (with --profile, --seeds, --as-written, -o as for the table)
                     and its state: finished (its metric), training (epoch k of n, ETA, pid and host
                     from the run's lock), interrupted (its checkpoint's epoch), failed (the error line
                     and train.log's path), not started; totals and the hours left. It reads only the
                     runs folder and writes nothing: use it while a sweep runs, on any launcher.

Launchers (--launcher): their settings are plain overrides, -o hydra.launcher.<key>=<value> (e.g.
--launcher slurm -o hydra.launcher.partition=gpu). The seeds are --seeds (not -o seed=...), the runs
folder --runs; Ctrl-C stops the trainer as it stops on its own (its last checkpoint kept), exit 130.

--as-written (table2, table3, table4): the paper rows' G-softmax recipes update mu, sigma as the
authors' released code does (head.dist_update=release). With --as-written the grid also holds, for
every G-softmax row, the same run with head.dist_update=autograd (the method as the paper describes
it, eqs. 9-10), trains it if missing, and writes <out>/tableN_as_written.md, .csv and .tex: the
paper's number, ours as released and ours as written for every row (softmax and L-softmax rows have
no mu, sigma: the same run fills both). Works with --profile, --no-run, --seeds and --estimate.

Tables and figures read only results.json and test_outputs.pt of the runs. A results.json that cannot
be read or whose identity (dataset, model, head, mu, sigma, lam, seed, epochs, signature, ...)
contradicts its own config, and a damaged or foreign test_outputs.pt, are skipped with a warning
naming the file and what is wrong; everything else is still written. Text from records is escaped
in the Markdown and LaTeX outputs.

Examples:
  gsm-tables table1 --profile smoke           tiny CPU runs on generated fixtures, in minutes
  gsm-tables table3 --no-run                  only read the runs that exist
  gsm-tables table1 --seeds 0,1,2             every row with three seeds (mean +- std, paired tests)
  gsm-tables table2 --estimate                what the missing runs would cost, without training
  gsm-tables table3 --as-written              also the paper's method as written (make table3 TABLE_ARGS=--as-written)
  gsm-tables sweep --runs outputs/runs        read a sweep
  gsm-tables status table3 --profile smoke    what each run of Table III is doing (make status TABLE=table3)
"""


# --------------------------------------------------------------------------- CLI


def table_numbers() -> list[int]:
    """The paper's tables (gsm/paper_rows.yaml; gsm.report has a builder for each, tests/test_identity.py checks):
    read without importing the builders, so status and --help need neither torch nor pandas."""
    return paper.tables()


def commands() -> list[str]:
    return ["demo", *(f"table{i}" for i in table_numbers()), "figures", "sweep", "status"]


def grid_commands() -> list[str]:
    """The commands with a grid of runs (what ``status`` takes)."""
    return [*(f"table{i}" for i in table_numbers()), "figures"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gsm-tables", description=__doc__.split("\n\n")[0] + "\n\n" + HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=commands(), metavar="command", help="one of: " + ", ".join(commands()))
    p.add_argument("target", nargs="?", default=None, metavar="TABLE",
                   help="status only: the table whose runs to show (table1 ... table6, figures)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="full",
                   help="full: the paper's recipes; smoke: tiny CPU runs on generated fixtures (default: full)")
    p.add_argument("--runs", type=Path, default=None,
                   help="folder searched for results.json, <output_root>/runs (default: outputs/runs; smoke: outputs/smoke/runs)")
    p.add_argument("--out", type=Path, default=None, help="tables folder (default: outputs/tables; smoke: outputs/smoke/tables)")
    p.add_argument("--figures-out", type=Path, default=None,
                   help="figures folder (default: outputs/figures; smoke: outputs/smoke/figures)")
    p.add_argument("--launcher", default="basic",
                   help="Hydra launcher for the missing runs: basic (one after another, here), gsm_ray, slurm "
                        "(gsm/configs/hydra/launcher/), or an installed launcher plugin (ray, submitit_slurm, ...); its "
                        "settings as plain overrides, e.g. -o hydra.launcher.partition=gpu (default: basic)")
    p.add_argument("--no-run", action="store_true", help="only read existing results; do not train missing rows")
    p.add_argument("--seeds", default=None,
                   help="comma-separated seeds every row should have, e.g. 0,1,2 (default: one run per row, seed from config)")
    p.add_argument("--override", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Hydra override for every run of the grid (repeatable), e.g. -o trainer.amp=none; "
                        "hydra.launcher.<key>=... sets the --launcher's <key> (the seeds are --seeds, the runs folder --runs)")
    p.add_argument("--as-written", action="store_true",
                   help="table2/3/4 only: also train every G-softmax row with head.dist_update=autograd (the paper's "
                        "method as written) and write tableN_as_written.{md,csv,tex}: the paper's number, ours as "
                        "released (the default recipe) and ours as written, per row")
    p.add_argument("--estimate", action="store_true",
                   help="tableN only: print what the table's runs would cost (time, memory) instead of running them")
    p.add_argument("--peak-tflops", type=float, default=None, metavar="X",
                   help="with --estimate: the accelerator's peak TFLOP/s (default: measured or looked up)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="with --estimate: the device to estimate for (default: auto)")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        previous_term = signal.signal(signal.SIGTERM, raise_terminated_once())
    except ValueError:  # not the main thread: signals are not ours to handle
        previous_term = None
    try:
        return _main(argv)
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


def _main(argv: list[str] | None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.estimate and not args.table.startswith("table"):
            raise ConfigError(f"--estimate applies to table1 ... table6, not to {args.table}")
        check_options(args)
        args.override = literal_paths(args.override)  # -o dataset.root=/data/x,y: one folder (gsm.overrides)
        if args.as_written:
            from gsm.report import AS_WRITTEN_TABLES

            name = args.target if args.table == "status" else args.table
            if name not in [f"table{n}" for n in AS_WRITTEN_TABLES]:
                raise ConfigError(f"--as-written applies to {', '.join(f'table{n}' for n in AS_WRITTEN_TABLES)} (their "
                                  f"G-softmax recipes follow the released code), not to {name}")
        if args.table == "status":
            return _status(args)
        if args.table == "demo":
            return _demo(args)
        if args.table == "sweep":
            return _sweep(args)
        if args.estimate:
            return _estimate(args)
        return _run_table(args)
    except GsmError as exc:
        print(f"gsm-tables: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C anywhere (a launch, a table, the estimate): one line
        print(f"gsm-tables: {exc if isinstance(exc, Interrupted) else 'interrupted'}", file=sys.stderr)
        return 130
    except Terminated as exc:  # SIGTERM anywhere: one line, after the trainer (if one ran) has stopped
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(f"gsm-tables: {exc}", file=sys.stderr)
        return 143


# --------------------------------------------------------------------------- options that cannot apply

# -o keys that gsm-tables itself decides, and the option that sets them
OWN_KEYS = {
    "seed": "the seeds of the grid's runs are chosen by --seeds (e.g. --seeds 7, or --seeds 0,1,2 for three runs per row)",
    "output_root": "the runs folder is chosen by --runs (runs are written to <output_root>/runs: --runs <output_root>/runs)",
    "experiment": "the experiments are the table's rows: choose the table (gsm-tables table1 ... table6)",
    "hydra/launcher": "the launcher is chosen by --launcher (e.g. --launcher slurm)",
}


def check_options(args: argparse.Namespace) -> None:
    """An option that cannot apply is a ConfigError naming the option that does (one line, exit 2)."""
    if args.table == "status":
        if args.target not in grid_commands():
            raise ConfigError(f"status needs the table whose runs to show, one of {', '.join(grid_commands())}"
                              + (f" (not {args.target!r})" if args.target else "") + ", e.g. gsm-tables status table3")
    elif args.target is not None:
        raise ConfigError(f"unexpected argument {args.target!r}: only 'gsm-tables status TABLE' takes a second one")
    for ov in args.override:
        key = ov.split("=", 1)[0].lstrip("+~")
        if key in OWN_KEYS:
            raise ConfigError(f"-o {ov}: {OWN_KEYS[key]}")
    if args.table in ("demo", "sweep") and (args.override or args.seeds):
        raise ConfigError(f"{'-o' if args.override else '--seeds'} applies to the grid of a table (table1 ... table6, "
                          f"figures, status); {args.table} tables every run under --runs as it is")
    name, _, count = args.launcher.partition(":")
    hydra_ovs = [ov for ov in args.override if is_hydra_override(ov)]
    if args.table == "status":  # the same options as the table command are accepted; the launch ones change no row
        return
    trains = args.table.startswith("table") and not args.no_run and not args.estimate
    if (name != "basic" or count or hydra_ovs) and not (trains or args.estimate):
        what = f"--launcher {args.launcher}" if name != "basic" or count else f"-o {hydra_ovs[0]}"
        why = ("--no-run launches nothing" if args.no_run else f"{args.table} trains nothing")
        raise ConfigError(f"{what} does nothing here: {why}; drop it"
                          + (", or drop --no-run to train the missing runs" if args.no_run else ""))
    if count and not args.estimate:
        raise ConfigError(f"--launcher {args.launcher}: ':{count}' (GPUs in parallel) applies to --estimate only; a launch "
                          f"takes its parallelism from the launcher's settings (e.g. -o hydra.launcher.array_parallelism=8)")
    if name != "basic" or hydra_ovs:
        check_hydra_overrides(name, hydra_ovs)


def _parse_seeds(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None


def _records(runs_dir: Path):
    records, bad = load_records(runs_dir)
    warn_unreadable(bad)
    return records


def _demo(args: argparse.Namespace) -> int:
    from gsm.report import demo_table

    text = demo_table(_records(args.runs or Path("outputs/runs")))
    out = args.out or Path("outputs/tables")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo.md"
    path.write_text(text)
    print(text)
    print(f"written: {path}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from gsm.report.sweep import sweep_markdown

    runs_dir = args.runs or Path(PROFILES[args.profile].output_root) / "runs"
    records = _records(runs_dir)
    if not records:
        raise ConfigError(f"--runs {runs_dir}: no readable results.json under it")
    text, numeric = sweep_markdown(records, str(runs_dir))
    out = args.out or (runs_dir.parent / "tables" if runs_dir.name == "runs" else runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.md").write_text(text)
    numeric.to_csv(out / "sweep.csv", index=False)
    print(text)
    print(f"written: {out / 'sweep.md'}\nwritten: {out / 'sweep.csv'}")
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from gsm.estimate import run_estimate

    return run_estimate(_experiments_for(args.table, args.as_written), args.profile, list(args.override),
                        args.launcher, device=args.device, peak_tflops=args.peak_tflops)


def _experiments_for(command: str, as_written: bool = False) -> list[str]:
    """The grid of a command: a table's experiments, plus (``as_written``) the ``@as_written`` variants of its
    G-softmax rows."""
    if command == "figures":
        from gsm.figures import FIGURES

        return list(dict.fromkeys(r.experiment for f in FIGURES for r in paper.figure_rows(f)))
    number = int(command[5:])
    return paper.experiments(number) + (as_written_experiments(number) if as_written else [])


def _run_table(args: argparse.Namespace) -> int:
    from gsm import figures
    from gsm.report import as_written_table, build_table, table_figures
    from gsm.report.running import mark_running
    from gsm.status import training_now

    profile = PROFILES[args.profile]
    root = Path(profile.output_root)
    runs_dir = args.runs or root / "runs"
    out = args.out or root / "tables"
    fig_out = args.figures_out or root / "figures"
    fixtures_dir = (runs_dir.parent if runs_dir.name == "runs" else root) / "fixtures"
    seeds = _parse_seeds(args.seeds)
    launch_missing = not args.no_run and args.table != "figures"
    grid = Grid(_experiments_for(args.table, args.as_written), profile, runs_dir,
                [ov for ov in args.override if not is_hydra_override(ov)], fixtures_dir.resolve() if profile.fixtures else None)
    if launch_missing:
        missing = grid.missing(seeds)
        if missing:
            print(f"gsm-tables: {args.table}: {len(missing)} of {len(grid.rows)} runs to do "
                  f"(profile {profile.name}, launcher {args.launcher})", flush=True)
            if profile.fixtures:
                ensure_fixtures(fixtures_dir, profile.fixture_sizes)
            from gsm.data_check import check_data  # every missing dataset in one message, before any job starts
            check_data(grid.rows[e].config for e in missing)
            launch(grid, missing, args.launcher, seeds, [ov for ov in args.override if is_hydra_override(ov)])
            still = grid.missing(seeds)
            if still:
                print(f"gsm-tables: warning: the trainer finished but no matching results.json was found for: "
                      f"{', '.join(still)}", file=sys.stderr)
        else:
            print(f"gsm-tables: {args.table}: all {len(grid.rows)} runs of the grid are there", flush=True)
    warn_unreadable(grid.unreadable)
    written: list[Path] = []
    if args.table == "figures":
        written += figures.make_figures(grid, fig_out)
    else:
        number = int(args.table[5:])
        live = training_now(grid, seeds) if args.no_run else {}  # rows being trained right now say "running"
        table = build_table(number, grid)
        mark_running(table, number, grid, live)
        written += table.write(out)
        print(table.markdown())
        if args.as_written:
            both = as_written_table(number, grid)
            mark_running(both, number, grid, live)
            written += both.write(out)
            print(both.markdown())
        if table_figures(number):
            written += figures.make_figures(grid, fig_out, table_figures(number))
    for path in written:
        print(f"written: {path}")
    return 0


def _status(args: argparse.Namespace) -> int:
    """``gsm-tables status TABLE``: every run of the table's grid and its state, from the runs folder alone."""
    from gsm.status import grid_status, render

    profile = PROFILES[args.profile]
    runs_dir = args.runs or Path(profile.output_root) / "runs"
    run_ovs = [ov for ov in args.override if not is_hydra_override(ov)]
    grid = Grid(_experiments_for(args.target, args.as_written), profile, runs_dir, run_ovs)
    warn_unreadable(grid.unreadable)
    tables = [args.target] if args.target != "figures" else ["table1", "table3"]  # the figures plot their rows
    estimate = " and ".join(" ".join(["gsm-tables", t, "--estimate", "--profile", profile.name,
                                      *(["--as-written"] if args.as_written else []),
                                      *(f"-o {shell_quote(ov)}" for ov in run_ovs)]) for t in tables)
    print(render(args.target, grid, grid_status(grid, _parse_seeds(args.seeds)), estimate), end="")
    return 0


def cli() -> None:
    """Console script ``gsm-tables``."""
    try:
        code = main()
    except KeyboardInterrupt:  # between main's own handlers (e.g. while Python starts up or shuts down)
        print("gsm-tables: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    cli()
