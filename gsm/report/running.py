"""A ``--no-run`` table marks the rows whose run is training right now (``gsm.status.training_now``) "running"."""

from __future__ import annotations

from typing import Any

from gsm import paper
from gsm.grid import Grid
from gsm.status import GridRunStatus


RUNNING = "running"


def mark_running(table: Any, number: int, grid: Grid, live: dict[str, GridRunStatus]) -> None:
    """In a table built from the runs that exist (``--no-run``), the "not run" cells of a row whose run is training
    now say "running"; so does the CSV's status column, and a note says where to watch it.

    A display line is the paper row(s) of its label (its ``Method`` or, in Table V, ``G-softmax (μ, σ)``, with the
    dataset of its ``dataset`` column); a cell whose column (or ``Name: ...`` part) starts with a dataset's name is
    that dataset's row; a line or column "as written" is the row's ``@as_written`` run. A cell is marked when every
    row it stands for that has no run is training; a cell of several datasets' rows, some training, names each
    (``CIFAR-10: running; CIFAR-100: not run``)."""
    if not live:
        return
    from gsm.profiles import variant_name
    from gsm.data import DATASET_NAMES

    rows_of: dict[str, list[paper.PaperRow]] = {}
    for r in paper.rows(table=number):
        if r.experiment:
            rows_of.setdefault(r.label, []).append(r)

    def exps(cands: list[paper.PaperRow], where: str, written: bool, softmax: bool) -> list[str]:
        named = [r for r in cands if r.dataset and (where == DATASET_NAMES.get(r.dataset)
                                                    or where.startswith(f"{DATASET_NAMES.get(r.dataset)} "))]
        out = []
        for r in named or cands:
            exp = r.baseline if softmax else r.experiment
            if written and exp and variant_name(exp, "as_written") in grid.rows:
                exp = variant_name(exp, "as_written")
            out.append(exp)
        return [e for e in out if e in grid.rows]

    def mark(seg: str, col: str, cands: list[paper.PaperRow], written: bool) -> str:
        where, sep, text = seg.rpartition(": ")
        if text not in ("not run", "not run (softmax)"):  # Table V's "a / b" seeds cell is left as it is
            return seg
        todo = [e for e in exps(cands, where if sep else col, written, text == "not run (softmax)")
                if not grid.rows[e].runs]
        if not any(e in live for e in todo):
            return seg
        if all(e in live for e in todo):
            return seg.replace("not run", RUNNING, 1)
        # one cell for rows of several datasets (Table I's seeds), some training: say which, as the builder does
        names = {e: DATASET_NAMES.get(grid.rows[e].config["dataset"]["name"], e) for e in todo}
        if sep or text != "not run" or len(set(names.values())) < len(todo):
            return seg
        return "; ".join(f"{names[e]}: {RUNNING if e in live else 'not run'}" for e in todo)

    df, label = table.display, None
    for i in df.index:
        line = df.loc[i]
        text = next((str(line[c]) for c in ("Method", "G-softmax (μ, σ)") if c in df.columns and str(line[c])), "")
        if text:
            label = text.removesuffix(" (literature)")
        values = str(line["values"]) if "values" in df.columns else ""
        if values == "paper" or label not in rows_of:
            continue
        cands = rows_of[label]
        if "dataset" in df.columns:
            cands = [r for r in cands if DATASET_NAMES.get(r.dataset) == line["dataset"]] or cands
        for col in df.columns:
            cell = line[col]
            if isinstance(cell, str) and "not run" in cell:
                written = "as written" in values or "as written" in col
                df.at[i, col] = "; ".join(mark(seg, col, cands, written) for seg in cell.split("; "))
    data = table.data
    if "status" in data.columns:
        exp_col = data["grid_row"] if "grid_row" in data.columns else data.get("experiment")
        if exp_col is not None:
            hit = exp_col.isin(list(live)) & data["status"].eq("not run")
            data.loc[hit, "status"] = RUNNING
    table.notes.append(f"{RUNNING}: the row's run is training now ({', '.join(sorted(live))}); "
                       f"gsm-tables status table{number} shows its epoch and ETA.")
