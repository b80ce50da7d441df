"""The parts Figures 3-8 are drawn from (gsm.figures): the runs' data, panels, legends, scales and captions.

Scales: a quantity gets one scale in a figure, decided on all the values its panels show (log where they span
more than two decades, symlog where some are ≤ 0), and panels meant to be compared share their range
(:func:`one_scale`, :func:`same_limits`); every numeric axis says its scale in its label (:func:`label_axis`).
Probabilities span [0, 1] (:func:`probability_axis`). A damaged or foreign ``test_outputs.pt`` is skipped with
one warning naming the file (:func:`load_outputs`).
"""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from gsm.grid import Grid  # noqa: E402
from gsm.results import OutputsError, RunRecord, TestOutputs, read_run_outputs  # noqa: E402

DPI = 200
HEADS = ("softmax", "lsoftmax", "gsoftmax")
HEAD_LABEL = {"softmax": "softmax", "lsoftmax": "L-softmax", "gsoftmax": "G-softmax"}
HEAD_COLOR = {"softmax": "tab:blue", "lsoftmax": "tab:orange", "gsoftmax": "tab:green"}
STATS = ("compactness", "separability", "ratio")
EMPTY = "gsm-empty-panel"  # the gid of a panel drawn empty (empty_panel)


def first_run(grid: Grid, exp: str) -> RunRecord | None:
    row = grid.get(exp)
    return row.results()[0] if row is not None and row.runs else None


# test_outputs.pt found damaged in this make_figures call: path -> what is wrong (each is warned about once)
DAMAGED: dict[Path, str] = {}


def outputs_path(rec: RunRecord) -> Path | None:
    return rec.run_dir / "test_outputs.pt" if rec.run_dir is not None else None


def load_outputs(rec: RunRecord) -> TestOutputs | None:
    """The run's test outputs (gsm.results.read_test_outputs, checked against the record); None when the run
    folder has no test_outputs.pt or it is damaged (then one warning line names the file and what is wrong)."""
    path = outputs_path(rec)
    if path is None or not path.exists() or path in DAMAGED:
        return None
    try:
        return read_run_outputs(rec)  # checked against the record: shape, signature, the digest written with it
    except OutputsError as exc:
        DAMAGED[path] = str(exc).removeprefix(f"{path}: ")
        print(f"gsm-tables: warning: skipped {exc}; this run's x-vs-p panels are drawn empty", file=sys.stderr)
        return None


def no_outputs_text(rec: RunRecord) -> str:
    """An empty x-vs-p panel's label: the file is missing, or damaged (see the warning)."""
    path = outputs_path(rec)
    return f"test_outputs.pt skipped: {DAMAGED[path]}" if path in DAMAGED else "no test_outputs.pt in the run folder"


def damaged_text(runs: dict[str, RunRecord | None]) -> str:
    bad = [e for e, r in runs.items() if r is not None and outputs_path(r) in DAMAGED]
    return f" Damaged test_outputs.pt skipped (x-vs-p panels left empty): {', '.join(bad)}." if bad else ""


def plain(text: str) -> str:
    """Text from a record shown literally by matplotlib (a ``$`` would start mathtext)."""
    return str(text).replace("$", r"\$")


def stat(rec: RunRecord | None, split: str, key: str) -> np.ndarray:
    return np.array(rec.stat(split, key) if rec else [], dtype=float)


def class_index(rec: RunRecord, name: str, fallback: int | None) -> int | None:
    names = [str(n).replace(" ", "_").lower() for n in rec.class_names]
    key = name.replace(" ", "_").lower()
    if key in names:
        return names.index(key)
    return fallback if fallback is not None and fallback < rec.num_classes else None


def value_at(values: np.ndarray, c: int | None) -> float:
    return float(values[c]) if c is not None and 0 <= c < values.size else math.nan


def empty_panel(ax, text: str) -> None:
    """A labelled empty panel: the frame stays, the label says what is missing."""
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(plain(text), 34)), ha="center", va="center", transform=ax.transAxes,
            fontsize=9, color="0.35")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_gid(EMPTY)  # same_limits and one_scale leave it alone


def figure_legend(fig, handles: list, ncol: int | None = None) -> None:
    """The figure's one legend, below the panels (constrained layout makes room for it): it covers no data."""
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=ncol or min(len(handles), 4), fontsize=8,
                   frameon=False)


def head_patches(heads) -> list:
    """Legend entries for the heads' colours (bars and curves)."""
    return [Patch(color=HEAD_COLOR[h], label=HEAD_LABEL[h]) for h in heads]


def label_axis(ax, text: str, axis: str = "y") -> None:
    """An axis label that says the axis's scale: ``ratio (log scale)``, ``p (linear scale)``."""
    scale = ax.get_yscale() if axis == "y" else ax.get_xscale()
    (ax.set_ylabel if axis == "y" else ax.set_xlabel)(f"{text} ({scale} scale)")


def profile_mark(grid: Grid) -> str | None:
    """The watermark of figures drawn from a profile's runs other than ``full`` (which reproduces the paper)."""
    name = grid.profile.name
    return None if name == "full" else f"{name} profile — not paper results"


def watermark(fig, mark: str) -> None:
    """``mark`` across the image, large and translucent: a figure of test runs cannot pass for results."""
    fig.text(0.5, 0.5, mark, ha="center", va="center", rotation=20, fontsize=40, color="tab:red", alpha=0.22,
             fontweight="bold", zorder=1000)


def scale_for(values) -> tuple[str, float | None]:
    """("log", None) where the finite non-zero magnitudes span more than two decades and all are positive,
    ("symlog", the smallest magnitude) where they span them with values ≤ 0, else ("linear", None)."""
    v = np.asarray([x for x in np.ravel(values) if np.isfinite(x)], dtype=float)
    mags = np.abs(v[v != 0])
    if mags.size < 2 or mags.max() / mags.min() <= 100:
        return "linear", None
    return ("log", None) if (v > 0).all() else ("symlog", float(mags.min()))


def apply_scale(ax, scale: tuple[str, float | None], axis: str = "y") -> None:
    name, linthresh = scale
    setter = ax.set_yscale if axis == "y" else ax.set_xscale
    if name == "symlog":
        setter("symlog", linthresh=linthresh)
    elif name == "log":
        setter("log")


def auto_scale(ax, values, axis: str = "y") -> None:
    """Log scale where the panel's finite non-zero magnitudes span more than two decades (symlog if any ≤ 0)."""
    apply_scale(ax, scale_for(values), axis)


def drawn(axes) -> list:
    """The panels of ``axes`` that hold data (not labelled empty: empty_panel)."""
    return [ax for ax in axes if ax.get_gid() != EMPTY and ax.has_data()]


def one_scale(axes, values, axis: str = "y", same_range: bool = True) -> str:
    """One scale for one quantity across ``axes`` (decided on all their ``values``: log where they span more than
    two decades), and with ``same_range`` one range, so that the panels compare by eye; returns the scale's name."""
    scale = scale_for(values)
    panels = drawn(axes)
    for ax in panels:
        apply_scale(ax, scale, axis)
    if same_range:
        same_limits(panels, axis)
    return scale[0]


def same_limits(axes, axis: str = "x") -> None:
    """The union of the drawn panels' ranges on ``axis``, set on each of them."""
    panels = drawn(axes)
    if len(panels) < 2:
        return
    get = (lambda a: a.get_xlim()) if axis == "x" else (lambda a: a.get_ylim())
    lows, highs = zip(*(get(a) for a in panels))
    for ax in panels:
        (ax.set_xlim if axis == "x" else ax.set_ylim)(min(lows), max(highs))


def probability_axis(ax) -> None:
    """p is a probability: the axis spans [0, 1] (a margin for the markers), whatever the points span."""
    ax.set_ylim(-0.03, 1.03)


def count_text(counts) -> str:
    """Samples per class as a caption says it: '50' when every class has as many, else '3–7' (min–max)."""
    c = [int(x) for x in np.ravel(counts) if np.isfinite(x)]
    if not c:
        return "unknown"
    return f"{min(c):,}" if min(c) == max(c) else f"{min(c):,}–{max(c):,}"


def run_label(rec: RunRecord) -> str:
    return f"seed {rec.seed}, {rec.epochs} ep"


def gauss(ax, mu: float, sigma: float, **kw) -> bool:
    if not (math.isfinite(mu) and math.isfinite(sigma)) or sigma <= 0:
        return False
    xs = np.linspace(mu - 4 * sigma, mu + 4 * sigma, 200)
    ax.plot(xs, np.exp(-0.5 * ((xs - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi)), **kw)
    return True



def runs_text(runs: dict[str, RunRecord | None]) -> str:
    have = [f"{e} ({run_label(r)})" for e, r in runs.items() if r is not None]
    missing = [e for e, r in runs.items() if r is None]
    text = f" Runs: {'; '.join(have)}." if have else ""
    return text + (f" Not run: {', '.join(missing)}." if missing else "")


def bars(ax, labels: list[str], values: list[float], colors: list[str], title: str, ylabel: str | None = None,
         scale: tuple[str, float | None] | None = None) -> None:
    """A bar per value (n/a where undefined) on ``scale`` (default: this panel's values decide, scale_for)."""
    ax.set_title(title, fontsize=9)
    if not any(math.isfinite(v) for v in values):
        empty_panel(ax, "no value: " + ", ".join(lb.split("\n")[0] for lb in labels) + " not run or undefined")
        return
    pos = np.arange(len(values))
    ax.bar(pos, [v if math.isfinite(v) else 0 for v in values], color=colors)
    for k, v in enumerate(values):
        if not math.isfinite(v):
            ax.text(k, 0, "n/a", ha="center", va="bottom", fontsize=7, color="0.35")
    ax.set_xticks(pos)
    ax.set_xticklabels(labels, fontsize=8)
    apply_scale(ax, scale or scale_for(values))
    label_axis(ax, title.rsplit(" ", 1)[-1] if ylabel is None else ylabel)


def scatter_handles(own: str, others: str) -> list:
    """Legend entries of the x-vs-p scatters (blue: the class, red: the others), as drawn by scatter."""
    return [Line2D([], [], ls="none", marker="o", markersize=5, color="tab:blue", label=own),
            Line2D([], [], ls="none", marker="o", markersize=5, color="tab:red", alpha=0.6, label=others)]


def gaussian_handles(own: str, others: str) -> list:
    """Legend entries of the fitted Gaussians' line styles (colours are the heads', head_patches)."""
    return [Line2D([], [], color="0.3", label=f"Gaussian fit: {own}"),
            Line2D([], [], color="0.3", ls="--", label=f"Gaussian fit: {others}")]


def scatter(ax, out: TestOutputs, c: int, name: str, multilabel: bool, first: int | None = None) -> bool:
    """The class-vs-imposter scatter; False (and a label in the panel) when the class has no test image."""
    x, p, t = out.x_pos, out.p, out.targets
    shown = plain(name)
    if multilabel:  # images with label c vs images without it, feature x⁺_c
        pos = t[:, c] == 1
        if not pos.any():
            empty_panel(ax, f"no test image with the label '{name}'")
            return False
        ax.scatter(x[~pos, c], p[~pos, c], s=4, c="tab:red", alpha=0.4, label=f"non-{shown}")
        ax.scatter(x[pos, c], p[pos, c], s=6, c="tab:blue", alpha=0.7, label=shown)
        return True
    rows = t == c
    if not rows.any():
        empty_panel(ax, f"no test image of class '{name}'")
        return False
    xs, ps = x[rows], p[rows]
    other = np.zeros(x.shape[1], dtype=bool)
    other[: first or x.shape[1]] = True
    other[c] = False
    xi, pi = xs[:, other].ravel(), ps[:, other].ravel()
    if xi.size > 20000:  # keep the files light; a fixed subsample
        keep = np.random.default_rng(0).choice(xi.size, 20000, replace=False)
        xi, pi = xi[keep], pi[keep]
    ax.scatter(xi, pi, s=4, c="tab:red", alpha=0.3, label=f"non-{shown} (imposters)")
    ax.scatter(xs[:, c], ps[:, c], s=6, c="tab:blue", alpha=0.7, label=shown)
    return True


