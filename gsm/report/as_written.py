"""The "as written" tables (Tables II-IV, ``gsm-tables tableN --as-written``): for each of our rows, the paper's
number beside ours as released (the default recipe, ``head.dist_update=release``) and ours as written (the
``@as_written`` grid row, ``head.dist_update=autograd``)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from gsm import paper
from gsm.errors import ConfigError
from gsm.grid import Grid, Row
from gsm.paper import PaperRow
from gsm.profiles import variant_name
from gsm.report.cells import (BEST_NOTE, CONVENTIONS, DEFINITIONS, MULTILABEL_COLUMNS, conditions, data_row,
                              ours_cell, run_conditions, unmatched_note)
from gsm.report.render import NOT_REPORTED, NOT_RUN, TableOutput, paper_text, seeds_text
from gsm.report.stats import Summary, metric_values


# --------------------------------------------------------------------------- "as written" beside "as released"

AS_WRITTEN_TABLES = (2, 3, 4)  # the tables whose G-softmax recipes follow the release's μ, σ update
AS_WRITTEN_NOTE = (
    "Ours as released: the row's default recipe, whose G-softmax μ, σ are updated as the authors' released code "
    "does (head.dist_update=release: single-label, frozen at their initial values, src/GaussianSoftMaxCriterion.lua; "
    "multi-label, a hand-written step of the batch mean, without momentum or weight decay, that moves μ in the ascent "
    "direction, src/MltGaussianSoftMaxCriterion.lua with train_multi.lua). Ours as written: the same recipe with "
    "head.dist_update=autograd, μ and σ learned by the gradients of eqs. 9-10 as the paper describes (every other "
    "setting, e.g. head.loss_reduction, as released). Softmax and L-softmax rows have no μ, σ: one run fills both "
    "columns (marked 'same run').")


def same_run(released: Row | None, written: Row | None) -> bool:
    return written is None or (released is not None and written.key == released.key)


def variant_rows(grid: Grid, r: PaperRow) -> tuple[Row | None, Row | None, bool]:
    """(as released, as written, same run?) grid rows of a paper row of ours."""
    released = grid.get(r.experiment)
    written = grid.get(variant_name(r.experiment, "as_written")) if r.head == "gsoftmax" else None
    same = same_run(released, written)
    return released, (released if same else written), same


def variant_data(r: PaperRow, metric: str, row: Row | None, variant: str, same: bool, decimals: int,
                  paper_metric: str | None = "") -> dict[str, Any]:
    summ = Summary(metric_values(row, metric))
    runs = row.results() if row else []
    row_data = data_row(r, metric, summ, math.nan, 0, runs, decimals, paper_metric)
    for key in ("p_vs_softmax", "n_pairs"):  # no paired tests in this table
        row_data.pop(key)
    return {**row_data, "variant": variant,
            "grid_row": row.experiment if row else "", "same_run_as_released": same,
            "definition": DEFINITIONS.get(metric, "")}


def as_written_table(number: int, grid: Grid) -> TableOutput:
    """Table ``number`` (II-IV): for each of our rows, the paper's number, ours as released and ours as written.

    The grid must hold the ``<experiment>@as_written`` rows of the table's G-softmax rows
    (gsm.grid.as_written_experiments); a row without runs shows "not run"."""
    if number not in AS_WRITTEN_TABLES:
        raise ConfigError(f"--as-written applies to tables {', '.join(map(str, AS_WRITTEN_TABLES))} (their G-softmax "
                          f"recipes follow the released code), not to table {number}")
    rows = [r for r in paper.rows(table=number) if r.experiment]
    display, data = [], []
    for r in rows:
        released, written, same = variant_rows(grid, r)
        seeds_w = f"same run ({'no μ, σ' if r.head != 'gsoftmax' else 'same config'})" if same else \
            seeds_text(written.seeds if written else [])
        if number == 2:
            line: dict[str, Any] = {"Method": r.label, "top-1 error paper (%)": paper_text(r.printed("top1_error"), 2)}
            for metric, what in (("top1_error", "last epoch"), ("best_top1_error", "best epoch")):
                for name, row in (("as released", released), ("as written", written)):
                    line[f"ours {name}, {what} (%)"] = ours_cell(r, row, metric, 2)[0]
            line["image size"] = run_conditions(released.results())["image size"] if released and released.runs else NOT_RUN
            line["seeds as released"] = seeds_text(released.seeds if released else [])
            line["seeds as written"] = seeds_w
            display.append(line)
            metrics: tuple[tuple[str, str | None], ...] = (("top1_error", "top1_error"), ("best_top1_error", "top1_error"))
        else:
            lines = []
            for name, row in (("ours as released", released), ("ours as written", written)):
                line = {"Method": r.label if not lines else "",
                        "values": name + (" (same run)" if same and name.endswith("written") else "")}
                for m, header, _ in MULTILABEL_COLUMNS:
                    line[header] = ours_cell(r, row, m, 1)[0]
                line["seeds"] = seeds_text(row.seeds if row else []) if not (same and lines) else seeds_w
                lines.append(line)
            printed = {"Method": "", "values": "paper",
                       **{header: paper_text(r.printed(pm) if pm else None, 1) for _, header, pm in MULTILABEL_COLUMNS},
                       "seeds": NOT_REPORTED}
            display += [*lines, printed]
            metrics = tuple((m, pm) for m, _, pm in MULTILABEL_COLUMNS)
        for metric, paper_metric in metrics:
            decimals = 2 if number == 2 else 1  # as the table shows them
            data.append(variant_data(r, metric, released, "as_released", same, decimals, paper_metric))
            data.append(variant_data(r, metric, written, "as_written", same, decimals, paper_metric))
    notes = [AS_WRITTEN_NOTE,
             "Literature rows are left out (they are in the main table). " + CONVENTIONS["rows"].split(". ", 1)[0] + ".",
             CONVENTIONS["single"] if number == 2
             else CONVENTIONS["multi"].replace("(listed below)", "(listed under the main table)")]
    if number == 2:
        notes.append(BEST_NOTE)
    else:
        notes.append("The paper's line in the 'mAP eq. 21' and 'C-F1 eq. 22' columns is n.r.: the paper prints only "
                     "the authors' definitions.")
    notes.append("Several seeds: mean ± sample standard deviation (ddof = 1) over seeds; the seeds columns give n.")
    name = {2: "Table II: top-1 error (%) on Tiny ImageNet", 3: "Table III: multi-label classification on MS COCO",
            4: "Table IV: multi-label classification on NUS-WIDE"}[number]
    text_columns = ("Method", "seeds as released", "seeds as written") if number == 2 else ("Method", "values", "seeds")
    return TableOutput(f"table{number}_as_written", f"{name}, as released and as written",
                       f"The paper's Table {'II' if number == 2 else 'III' if number == 3 else 'IV'} numbers next to ours "
                       f"with the μ, σ update of the authors' released code and with the update the paper describes.",
                       pd.DataFrame(display), pd.DataFrame(data), conditions(grid, f"table{number}/*"),
                       notes + unmatched_note(grid), text_columns=text_columns)
