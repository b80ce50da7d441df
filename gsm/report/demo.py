"""The ``make demo`` table (outputs/tables/demo.md): digits and digits_mosaic per head, in percent."""

from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from gsm.errors import DataError
from gsm.report.cells import device_text, join_values
from gsm.report.render import NOT_APPLICABLE, md_table, md_text
from gsm.report.sweep import differing_settings, settings_text
from gsm.results import RunRecord


# --------------------------------------------------------------------------- the demo table (make demo)


def pct(v: float | None) -> str:
    return NOT_APPLICABLE if v is None else f"{100 * v:.2f}"


def dist_summary(rec: RunRecord) -> str:
    if rec.learned is None:
        return NOT_APPLICABLE
    mu, sigma = pd.Series(rec.learned.mu, dtype=float), pd.Series(rec.learned.sigma, dtype=float)
    return f"μ {mu.mean():+.3f} [{mu.min():+.3f}, {mu.max():+.3f}]; σ {sigma.mean():.3f} [{sigma.min():.3f}, {sigma.max():.3f}]"


HEAD_ORDER = {"softmax": 0, "lsoftmax": 1, "msml": 2, "gsoftmax": 3}


def split_text(runs: list[RunRecord]) -> str:
    """The train / test images of the runs, each size with where it comes from: the full split or dataset.subset."""
    sizes: dict[str, None] = {}
    for r in runs:
        subset = (r.config.get("dataset") or {}).get("subset")
        train, test = ("?" if n is None else n for n in (r.train_samples, r.test_samples))
        images = f"{train} train / {test} test images"
        sizes[f"{images} ({'the full split' if subset is None else f'dataset.subset={subset}'})"] = None
    return "; ".join(sizes)


def demo_section(title: str, runs: list[RunRecord], metrics: list[tuple[str, Callable[[RunRecord], str]]],
                  dist_header: str) -> list[str]:
    lines = [f"## {title}", ""]
    if not runs:
        return lines + ["No run.", ""]
    differ = differing_settings(runs, shown=("trainer.epochs",))
    lines += [md_text(f"Model {join_values(r.model for r in runs)}; {split_text(runs)}."), ""]
    rows = []
    for r in runs:
        row: dict[str, Any] = {"head": r.head, **{h: f(r) for h, f in metrics}, "epochs": r.epochs, "seed": r.seed}
        if differ:
            row["settings that differ"] = settings_text(r, differ)
        rows.append({**row, "train s": f"{r.train_time_s or 0:.0f}", dist_header: dist_summary(r)})
    text_columns = ("head", "settings that differ", dist_header)
    df = pd.DataFrame(rows)
    lines += [md_table(df, ["l" if c in text_columns else "r" for c in df.columns]), ""]
    if differ:
        lines += [md_text(f"These runs differ in more than the head and the seed: {', '.join(differ)} (the column "
                          f"'settings that differ' gives each run's values); rows are comparable only where these agree."), ""]
    return lines


def demo_table(results: list[RunRecord]) -> str:
    """The ``make demo`` table: digits (top-1 error) and digits_mosaic (mAP, C-F1, O-F1) per head, in percent.

    What the header says of the runs (model, train / test images, the full split or ``dataset.subset``) is read
    from the records, and settings in which runs differ beyond the head and the seed (e.g. ``dataset.subset``,
    ``head.mu``; gsm.report.sweep.differing_settings) get a column and a note, so runs of other settings never
    look like the same experiment. Text from records is escaped (gsm.report.render.md_text)."""
    single = sorted((r for r in results if r.dataset == "digits"), key=lambda r: (HEAD_ORDER.get(r.head, 9), r.seed))
    multi = sorted((r for r in results if r.dataset == "digits_mosaic"), key=lambda r: (HEAD_ORDER.get(r.head, 9), r.seed))
    if not single and not multi:
        raise DataError("no digits or digits_mosaic results found: run `make demo` first")
    lines = [
        "# gsm demo: the embedded digits sets (measured, not the paper's data)",
        "",
        "One run (one seed) per row. Single-label: scikit-learn's 8x8 digits; multi-label: 2×2 mosaics of them. "
        "Numbers in percent. μ, σ: learned G-softmax parameters (mean [min, max] over classes; for multi-label, "
        "the positive column μ⁺, σ⁺).",
        "",
    ]
    lines += demo_section("Single-label: digits", single, [("top-1 error (%)", lambda r: pct(r.top1_error_frac))],
                           "learned μ, σ")
    lines += demo_section("Multi-label: digits_mosaic", multi,
                           [("mAP (%)", lambda r: pct(r.mAP_frac)), ("C-F1 (%)", lambda r: pct(r.CF1_frac)),
                            ("O-F1 (%)", lambda r: pct(r.OF1_frac))], "learned μ⁺, σ⁺")
    revs = sorted({r.git_rev or "unknown" for r in single + multi})
    lines += [md_text(f"git revision(s): {', '.join(revs)}; device(s): "
                      f"{', '.join(sorted({device_text(r) for r in single + multi}))}", block=True), ""]
    return "\n".join(lines)
