"""gsm-tables: the paper's tables and figures from runs, training what is missing.

The orchestrator: grid -> launch the missing runs -> report. It is the only part of gsm that
starts training (the real trainer, through a Hydra launcher) or generates fixture datasets; the
tables themselves are pure functions in gsm.report, the figures in gsm.figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from gsm import paper
from gsm.errors import ConfigError, GsmError
from gsm.grid import Grid, as_written_experiments
from gsm.profiles import PROFILES
from gsm.results import load_records, warn_unreadable

REPO = Path(__file__).resolve().parent.parent

HELP = """\
Commands:
  table1 ... table6  train the runs of that table's grid that are missing (the real trainer, through
                     the chosen Hydra launcher), then write <out>/tableN.md, .csv and .tex: every paper
                     row, our value next to the paper's, the seeds and conditions of our runs, and
                     "not run" where a row has no run. table1 also draws Figures 3, 5, 6, 7 and table3
                     Figures 4 and 8 (PNG and PDF, with a caption file each).
  figures            draw Figures 3-8 from the runs that exist (no training).
  demo               the table of make demo (the embedded digits sets).
  sweep              one table of every run under --runs: the settings that differ, headline metrics,
                     seeds collapsed to mean +- std with n (written as sweep.md and sweep.csv).

--as-written (table2, table3, table4): the paper rows' G-softmax recipes update mu, sigma as the
authors' released code does (head.dist_update=release). With --as-written the grid also holds, for
every G-softmax row, the same run with head.dist_update=autograd (the method as the paper describes
it, eqs. 9-10), trains it if missing, and writes <out>/tableN_as_written.md, .csv and .tex: the
paper's number, ours as released and ours as written for every row (softmax and L-softmax rows have
no mu, sigma: the same run fills both). Works with --profile, --no-run, --seeds and --estimate.

Tables and figures read only results.json and test_outputs.pt of the runs.

Examples:
  gsm-tables table1 --profile smoke           tiny CPU runs on generated fixtures, in minutes
  gsm-tables table3 --no-run                  only read the runs that exist
  gsm-tables table1 --seeds 0,1,2             every row with three seeds (mean +- std, paired tests)
  gsm-tables table2 --estimate                what the missing runs would cost, without training
  gsm-tables table3 --as-written              also the paper's method as written (make table3 TABLE_ARGS=--as-written)
  gsm-tables sweep --runs outputs/runs        read a sweep
"""


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
                    seeds: list[int] | None = None) -> list[list[str]]:
    """One ``train.py -m`` command per set of overrides (models take different knobs, so groups differ)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for exp in experiments:
        groups.setdefault(tuple(grid.rows[exp].launch_overrides()), []).append(exp)
    entry = [sys.executable, str(REPO / "train.py")] if (REPO / "train.py").exists() else [sys.executable, "-m", "gsm.train"]
    cmds = []
    for overrides, exps in groups.items():
        # a variant row (x@as_written) is its experiment config plus the variant's overrides, which its
        # launch overrides hold (gsm.profiles.Profile.overrides), so it groups apart from the plain rows
        names = ",".join(dict.fromkeys(grid.rows[e].base_experiment for e in exps))
        cmd = [*entry, "-m", "experiment=" + names, *overrides, f"output_root={grid.output_root()}"]
        if launcher and launcher != "basic":
            cmd.append(f"hydra/launcher={launcher}")
        if seeds:
            cmd.append("seed=" + ",".join(str(s) for s in seeds))
        cmds.append(cmd)
    return cmds


def launch(grid: Grid, experiments: list[str], launcher: str = "basic", seeds: list[int] | None = None) -> None:
    """Run the trainer for ``experiments``, streaming its output; raise LaunchError if it fails."""
    for cmd in launch_commands(grid, experiments, launcher, seeds):
        printable = " ".join(_quote(c) for c in cmd)
        print(f"gsm-tables: running {printable}", flush=True)
        cwd = REPO if (REPO / "train.py").exists() else None
        proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, "HYDRA_FULL_ERROR": os.environ.get("HYDRA_FULL_ERROR", "0")})
        if proc.returncode != 0:
            raise LaunchError(
                f"the trainer failed (exit {proc.returncode}); its output is above. Command:\n  {printable}\n"
                f"Finished runs are kept: rerunning the same gsm-tables command resumes the rest."
            )
    grid.refresh()


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " []$*?") else arg


# --------------------------------------------------------------------------- CLI


def table_numbers() -> list[int]:
    from gsm.report import BUILDERS

    return sorted(BUILDERS)


def commands() -> list[str]:
    return ["demo", *(f"table{i}" for i in table_numbers()), "figures", "sweep"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gsm-tables", description=__doc__.split("\n\n")[0] + "\n\n" + HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=commands(), metavar="command", help="one of: " + ", ".join(commands()))
    p.add_argument("--profile", choices=sorted(PROFILES), default="full",
                   help="full: the paper's recipes; smoke: tiny CPU runs on generated fixtures (default: full)")
    p.add_argument("--runs", type=Path, default=None,
                   help="folder searched for results.json, <output_root>/runs (default: outputs/runs; smoke: outputs/smoke/runs)")
    p.add_argument("--out", type=Path, default=None, help="tables folder (default: outputs/tables; smoke: outputs/smoke/tables)")
    p.add_argument("--figures-out", type=Path, default=None,
                   help="figures folder (default: outputs/figures; smoke: outputs/smoke/figures)")
    p.add_argument("--launcher", default="basic",
                   help="Hydra launcher for the missing runs: basic (one after another, here), gsm_ray, slurm "
                        "(gsm/configs/hydra/launcher/), or any installed launcher plugin name (default: basic)")
    p.add_argument("--no-run", action="store_true", help="only read existing results; do not train missing rows")
    p.add_argument("--seeds", default=None,
                   help="comma-separated seeds every row should have, e.g. 0,1,2 (default: one run per row, seed from config)")
    p.add_argument("--override", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Hydra override for every run of the grid (repeatable), e.g. -o trainer.amp=none")
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
    args = _parser().parse_args(argv)
    try:
        if args.estimate and not args.table.startswith("table"):
            raise ConfigError(f"--estimate applies to table1 ... table6, not to {args.table}")
        if args.as_written:
            from gsm.report import AS_WRITTEN_TABLES

            if args.table not in [f"table{n}" for n in AS_WRITTEN_TABLES]:
                raise ConfigError(f"--as-written applies to {', '.join(f'table{n}' for n in AS_WRITTEN_TABLES)} (their "
                                  f"G-softmax recipes follow the released code), not to {args.table}")
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

    profile = PROFILES[args.profile]
    root = Path(profile.output_root)
    runs_dir = args.runs or root / "runs"
    out = args.out or root / "tables"
    fig_out = args.figures_out or root / "figures"
    fixtures_dir = (runs_dir.parent if runs_dir.name == "runs" else root) / "fixtures"
    seeds = _parse_seeds(args.seeds)
    launch_missing = not args.no_run and args.table != "figures"
    grid = Grid(_experiments_for(args.table, args.as_written), profile, runs_dir, args.override,
                fixtures_dir.resolve() if profile.fixtures else None)
    if launch_missing:
        missing = grid.missing(seeds)
        if missing:
            print(f"gsm-tables: {args.table}: {len(missing)} of {len(grid.rows)} runs to do "
                  f"(profile {profile.name}, launcher {args.launcher})", flush=True)
            if profile.fixtures:
                ensure_fixtures(fixtures_dir, profile.fixture_sizes)
            launch(grid, missing, args.launcher, seeds)
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
        table = build_table(number, grid)
        written += table.write(out)
        print(table.markdown())
        if args.as_written:
            both = as_written_table(number, grid)
            written += both.write(out)
            print(both.markdown())
        if table_figures(number):
            written += figures.make_figures(grid, fig_out, table_figures(number))
    for path in written:
        print(f"written: {path}")
    return 0


def cli() -> None:
    """Console script ``gsm-tables``."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
