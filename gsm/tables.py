"""Tables from run results (``results.json`` files only): ``gsm-tables <table> --runs DIR --out DIR``.

Every table shows what was measured, with the run's seed and conditions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from gsm.errors import DataError


def load_results(runs_dir: Path) -> list[dict[str, Any]]:
    """All ``results.json`` below ``runs_dir`` (each with its path under ``_path``)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise DataError(f"--runs {runs_dir}: no such folder (run the experiments first, e.g. make demo)")
    out = []
    for path in sorted(runs_dir.rglob("results.json")):
        try:
            res = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from exc
        res["_path"] = str(path)
        out.append(res)
    return out


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _dist_summary(res: dict[str, Any]) -> str:
    learned = res.get("learned")
    if not learned:
        return "–"
    mu, sigma = pd.Series(learned["mu"]), pd.Series(learned["sigma"])
    return f"μ {mu.mean():+.3f} [{mu.min():+.3f}, {mu.max():+.3f}]; σ {sigma.mean():.3f} [{sigma.min():.3f}, {sigma.max():.3f}]"


HEAD_ORDER = {"softmax": 0, "lsoftmax": 1, "msml": 2, "gsoftmax": 3}


def demo_table(results: list[dict[str, Any]]) -> str:
    """The ``make demo`` table: digits (top-1 error) and digits_mosaic (mAP, CF1, OF1) per head."""
    single = sorted((r for r in results if r["dataset"] == "digits"), key=lambda r: HEAD_ORDER.get(r["head"], 9))
    multi = sorted((r for r in results if r["dataset"] == "digits_mosaic"), key=lambda r: HEAD_ORDER.get(r["head"], 9))
    if not single and not multi:
        raise DataError("no digits or digits_mosaic results found: run `make demo` first")
    lines = [
        "# gsm demo: the embedded digits sets (measured, not the paper's data)",
        "",
        "Small ConvNet, CPU, one seed per row. Single-label: scikit-learn digits (1,347 train / 450 test);",
        "multi-label: 2×2 digit mosaics (2,000 train / 600 test). Numbers in percent. μ, σ: learned G-softmax",
        "parameters (mean [min, max] over classes; for multi-label, the positive column μ⁺, σ⁺).",
        "",
        "## Single-label: digits",
        "",
        "| head | top-1 error (%) | epochs | seed | train s | learned μ, σ |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in single:
        lines.append(f"| {r['head']} | {_pct(r['top1_error'])} | {r['epochs']} | {r['seed']} | {r['train_time_s']:.0f} | {_dist_summary(r)} |")
    lines += ["", "## Multi-label: digits_mosaic", "",
              "| head | mAP (%) | CF1 (%) | OF1 (%) | epochs | seed | train s | learned μ⁺, σ⁺ |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in multi:
        lines.append(
            f"| {r['head']} | {_pct(r['mAP'])} | {_pct(r['CF1'])} | {_pct(r['OF1'])} | {r['epochs']} | {r['seed']} "
            f"| {r['train_time_s']:.0f} | {_dist_summary(r)} |"
        )
    revs = sorted({r.get("git_rev", "unknown") for r in single + multi})
    lines += ["", f"git revision(s): {', '.join(revs)}; device(s): {', '.join(sorted({r.get('device', '?') for r in single + multi}))}", ""]
    return "\n".join(lines)


TABLES = {"demo": demo_table}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gsm-tables", description=__doc__)
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("--runs", type=Path, default=Path("outputs/runs"), help="folder searched for results.json")
    parser.add_argument("--out", type=Path, default=Path("outputs/tables"), help="where tables are written")
    args = parser.parse_args(argv)
    try:
        text = TABLES[args.table](load_results(args.runs))
    except DataError as exc:
        print(f"gsm-tables: error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.table}.md"
    path.write_text(text)
    print(text)
    print(f"written: {path}")
    return 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
