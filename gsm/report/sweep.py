"""``gsm-tables sweep --runs DIR``: every run under a folder in one document, for reading a sweep.

One section per dataset and model (a folder may mix them). Its columns: the run folders, the result-affecting
config keys whose values differ among the section's runs (dotted names, e.g. ``head.mu``; a head's own keys
compared among runs of that head only, so a softmax run does not make ``head.mu`` a column), the seeds, then
the headline metrics in percent that the section's runs have (the authors' definitions and the best epoch
exist in records of schema 3 on). Runs with the same settings and different seeds collapse into one row:
mean ± sample standard deviation (ddof = 1) and n, rounded to 2 decimals as displayed (the CSV too).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from gsm import runs
from gsm.report.render import md_table, md_text, rounded, seeds_text
from gsm.results import RunRecord

# (record key, column label) of the headline metrics, in percent
METRICS = (("top1_error_frac", "top-1 error (%)"), ("best_top1_error_frac", "best-epoch top-1 error (%)"),
           ("top5_error_frac", "top-5 error (%)"), ("mAP_frac", "mAP eq. 21 (%)"), ("mAP_voc_frac", "mAP VOC (%)"),
           ("CF1_frac", "C-F1 eq. 22 (%)"), ("CF1_mean_frac", "C-F1 per-class mean (%)"), ("OF1_frac", "O-F1 (%)"))


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; lists kept as their JSON text (hashable, comparable)."""
    if not isinstance(d, dict):
        return {prefix: json.dumps(d) if isinstance(d, list) else d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def settings(rec: RunRecord) -> dict[str, Any]:
    """The run's result-affecting settings (seed aside) as dotted keys."""
    payload = runs.signature_payload(rec.config)
    payload.pop("seed", None)
    return flatten(payload)


def differing_settings(records: list[RunRecord], shown: tuple[str, ...] = ()) -> list[str]:
    """The settings (dotted keys) in which runs differ beyond what a table shows of them: a ``head.*`` key
    whose value differs between runs of the same head (heads have different keys by nature), any other key
    whose value differs between any of the runs; ``head.name`` and the keys in ``shown`` (a table's own
    columns, e.g. ``trainer.epochs``) are left out. [] when rows of the same head are the same but for the seed."""
    flat = [settings(r) for r in records]
    by_head: dict[Any, list[dict[str, Any]]] = {}
    for f in flat:
        by_head.setdefault(f.get("head.name"), []).append(f)
    keys = sorted(set().union(*flat)) if flat else []
    out = []
    for k in keys:
        if k == "head.name" or k in shown:
            continue
        groups = by_head.values() if k.startswith("head.") else [flat]
        if any(len({json.dumps(f.get(k), sort_keys=True, default=str) for f in g}) > 1 for g in groups):
            out.append(k)
    return out


def settings_text(rec: RunRecord, keys: list[str]) -> str:
    """``key=value; ...`` of the run's values of ``keys`` (keys it has no value for left out; ``—`` for none)."""
    flat = settings(rec)
    parts = [f"{k}={_cell(flat[k])}" for k in keys if k in flat]
    return "; ".join(parts) if parts else "—"


GROUP_KEYS = ("dataset.name", "model.name")  # a sweep table has one section per dataset and model
NOT_SET = "—"  # no value: the run's config has no such key (head.mu of a softmax head, a key newer than the run) or null
DECIMALS = 2  # metrics in percent, as displayed (the CSV holds the same rounding)


def varying_keys(records: list[RunRecord]) -> list[str]:
    """The settings in which runs of one section (one dataset and model) differ: ``head.name`` where the heads
    differ, then the keys of gsm.report.sweep.differing_settings (a head's own keys compared among runs of that
    head, every other key among all the runs)."""
    heads = {settings(r).get("head.name") for r in records}
    return (["head.name"] if len(heads) > 1 else []) + differing_settings(records, shown=GROUP_KEYS)


def run_names(recs: list[RunRecord]) -> list[str]:
    """The run folders' names of a row's runs, in seed order."""
    return [r.run_name or (r.run_dir.name if r.run_dir is not None else r.signature) for r in sorted(recs, key=lambda r: r.seed)]


def _section(records: list[RunRecord]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(display table of strings, numeric table, its varying keys) of one section's runs, one row per setting; the
    numeric table holds every setting of the row (sweep_markdown keeps those that vary in some section)."""
    keys = varying_keys(records)
    metrics = [(k, label) for k, label in METRICS if any(r.metric(k) is not None for r in records)]
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        groups.setdefault(runs.signature(r.config, include_seed=False), []).append(r)
    display, numeric = [], []
    for recs in groups.values():
        flat = settings(recs[0])
        names = run_names(recs)
        seeds = sorted({r.seed for r in recs})
        row_d: dict[str, Any] = {"run": ", ".join(names), **{k: _sweep_cell(flat.get(k)) for k in keys},
                                 "seeds": seeds_text(seeds)}
        row_n: dict[str, Any] = {"dataset": flat.get("dataset.name"), "model": flat.get("model.name"),
                                 "run": ";".join(names), **{k: v for k, v in flat.items() if k not in GROUP_KEYS},
                                 "n": len(recs), "seeds": ",".join(map(str, seeds))}
        for key, label in metrics:
            vals = np.array([100 * v for v in (r.metric(key) for r in recs) if v is not None], dtype=float)
            mean = rounded(float(vals.mean()), DECIMALS) if vals.size else np.nan
            std = rounded(float(vals.std(ddof=1)), DECIMALS) if vals.size > 1 else np.nan
            row_d[label] = ("" if not vals.size else f"{mean:.{DECIMALS}f}" if vals.size == 1
                            else f"{mean:.{DECIMALS}f} ± {std:.{DECIMALS}f}")
            base = key.removesuffix("_frac")
            row_n[f"{base}_mean_pct"], row_n[f"{base}_std_pct"] = mean, std
        display.append(row_d)
        numeric.append(row_n)
    order = sorted(range(len(display)), key=lambda i: ([_sort_key(numeric[i].get(k)) for k in keys], display[i]["run"]))
    return pd.DataFrame([display[i] for i in order]), pd.DataFrame([numeric[i] for i in order]), keys


def sweep_frames(records: list[RunRecord]) -> list[tuple[tuple[str, str], pd.DataFrame, pd.DataFrame, list[str]]]:
    """One section per (dataset, model) of the runs, in name order: ((dataset, model), display table of strings,
    numeric table for the CSV, the settings that vary among the section's runs)."""
    sections: dict[tuple[str, str], list[RunRecord]] = {}
    for r in records:
        flat = settings(r)
        sections.setdefault((str(flat.get("dataset.name")), str(flat.get("model.name"))), []).append(r)
    return [(group, *_section(sections[group])) for group in sorted(sections)]


def _sort_key(v: Any) -> tuple:
    """Numbers in numeric order before text (None last)."""
    if v is None:
        return (2, "")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v))
    return (1, str(v))


def _cell(v: Any) -> str:
    """A setting's value as settings_text writes it (``null`` for None)."""
    return "null" if v is None else str(v)


def _sweep_cell(v: Any) -> str:
    """A setting's value in a sweep table (NOT_SET for none)."""
    return NOT_SET if v is None else str(v)


def sweep_markdown(records: list[RunRecord], runs_dir: str) -> tuple[str, pd.DataFrame]:
    """The sweep as Markdown, one section (a heading and a table) per dataset and model, and the numeric frame of
    every row for the CSV: dataset, model, the run folders, the settings that vary in any section (each row's own
    value; empty where its config has no such key), n, seeds and the metrics' means and stds in percent, rounded
    as displayed (a metric's std column only where some row has two or more seeds)."""
    sections = sweep_frames(records)
    n_rows = sum(len(display) for _, display, _, _ in sections)
    lines = [f"# Sweep: {len(records)} runs under {md_text(runs_dir)}, {n_rows} settings in {len(sections)} "
             f"section{'s' if len(sections) > 1 else ''} (dataset, model)", "",
             md_text("One section per dataset and model. Columns: the run folders of the row (one per seed), the "
                     "settings that differ among the section's runs (a head's own settings, e.g. head.mu, compared "
                     f"among runs of that head; {NOT_SET}: no value, the run's config has no such key, e.g. head.mu of a softmax "
                     "head or a key newer than the run, or sets it to null), the seeds, then the "
                     "headline metrics in percent (mean ± sample std over seeds, ddof = 1) that the section's runs "
                     "have. Settings every run of a section shares are not shown."), ""]
    for (dataset, model), display, numeric, keys in sections:
        n_runs = int(numeric["n"].sum())
        lines += [f"## {md_text(dataset)}, {md_text(model)}: {n_runs} run{'s' if n_runs > 1 else ''}, "
                  f"{len(display)} setting{'s' if len(display) > 1 else ''}", "",
                  md_text("Settings that differ: " + (", ".join(keys) if keys else "none (one setting; seeds aside).")),
                  "", md_table(display, ["l" if c in ("run", "seeds", *keys) else "r" for c in display.columns]), ""]
    numeric = pd.concat([n for _, _, n, _ in sections], ignore_index=True)
    keys = sorted({k for _, _, _, ks in sections for k in ks}, key=lambda k: (k != "head.name", k))
    # a std column only where some row has two or more seeds: a sweep of single seeds has none (empty in every row)
    metrics = [c for c in numeric.columns
               if c.endswith("_mean_pct") or (c.endswith("_std_pct") and numeric[c].notna().any())]
    numeric = numeric[["dataset", "model", "run", *keys, "n", "seeds", *metrics]]
    return "\n".join(lines).rstrip() + "\n", numeric
