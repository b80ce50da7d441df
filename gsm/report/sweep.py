"""``gsm-tables sweep --runs DIR``: one table of every run under a folder, for reading a sweep.

Columns: the result-affecting config keys whose values differ across the runs (dotted names, e.g.
``head.mu``), then the headline metrics in percent (a metric no run has is left out: the authors'
definitions and the best epoch exist in records of schema 3 on). Runs with the same settings and different
seeds collapse into one row: mean ± sample standard deviation (ddof = 1) and n.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from gsm import runs
from gsm.report.render import md_table, md_text, seeds_text
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


def varying_keys(records: list[RunRecord]) -> list[str]:
    flat = [settings(r) for r in records]
    keys = sorted(set().union(*flat)) if flat else []
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]


def sweep_frames(records: list[RunRecord]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(display table of strings, numeric table for the CSV, the varying keys), one row per setting."""
    keys = varying_keys(records)
    metrics = [(k, label) for k, label in METRICS if any(r.metric(k) is not None for r in records)]
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        groups.setdefault(runs.signature(r.config, include_seed=False), []).append(r)
    display, numeric = [], []
    for sig, recs in groups.items():
        flat = settings(recs[0])
        shown = {k: flat.get(k) for k in keys} if keys else {"settings": sig}
        seeds = sorted({r.seed for r in recs})
        row_d: dict[str, Any] = {**{k: _cell(v) for k, v in shown.items()}, "seeds": seeds_text(seeds)}
        row_n: dict[str, Any] = {**shown, "n": len(recs), "seeds": ",".join(map(str, seeds))}
        for key, label in metrics:
            vals = np.array([100 * v for v in (r.metric(key) for r in recs) if v is not None], dtype=float)
            mean = float(vals.mean()) if vals.size else np.nan
            std = float(vals.std(ddof=1)) if vals.size > 1 else np.nan
            row_d[label] = ("" if not vals.size else f"{mean:.2f}" if vals.size == 1 else f"{mean:.2f} ± {std:.2f}")
            base = key.removesuffix("_frac")
            row_n[f"{base}_mean_pct"], row_n[f"{base}_std_pct"] = mean, std
        display.append(row_d)
        numeric.append(row_n)
    order = sorted(range(len(display)), key=lambda i: [str(numeric[i].get(k)) for k in (keys or ["settings"])])
    return (pd.DataFrame([display[i] for i in order]), pd.DataFrame([numeric[i] for i in order]), keys)


def _cell(v: Any) -> str:
    return "null" if v is None else str(v)


def sweep_markdown(records: list[RunRecord], runs_dir: str) -> tuple[str, pd.DataFrame]:
    """The sweep table as Markdown (and its numeric frame for the CSV)."""
    display, numeric, keys = sweep_frames(records)
    aligns = ["l" if c in keys or c in ("settings", "seeds") else "r" for c in display.columns]
    head = (f"# Sweep: {len(records)} runs under {md_text(runs_dir)}, {len(display)} settings\n\n"
            f"Columns: the settings that differ across the runs ({md_text(', '.join(keys)) if keys else 'none: one setting'}), "
            f"then the headline metrics in percent (mean ± sample std over seeds, ddof = 1).\n\n")
    return head + md_table(display, aligns) + "\n", numeric
