"""Figures 3–8 of the paper from run records (``results.json``) and ``test_outputs.pt``.

Each figure is written as ``<name>.png`` (200 dpi), ``<name>.pdf`` (vector) and ``<name>.txt``
(its caption: the figure number and what it shows live in the file name and the caption, not in the
image). The runs a figure plots are the paper rows whose ``figures`` list names it
(``gsm/paper_rows.yaml``); each panel uses the run with the lowest seed of its row.

* Fig. 3: x vs p for the test images of one class (CIFAR-10 "airplane", CIFAR-100 "aquarium_fish"):
  the class's own (x_c, p_c) against the imposter points (x_j, p_j), j ≠ c (CIFAR-100: j among the
  first 10 classes, as the paper shows); WRN with softmax, L-softmax, G-softmax.
* Fig. 4: MS COCO, categories "cow" and "baseball bat" (two rows), four panels each: x⁺ vs p for
  softmax and G-softmax (0, 1), the fitted Gaussians, and compactness / separability / ratio.
* Fig. 5: the fitted Gaussians of Fig. 3's class and its compactness / separability / ratio per head.
* Figs. 6, 7: per-class compactness, separability, ratio on CIFAR-10 (all classes) and CIFAR-100 (first
  10 classes), training and test set, WRN per head.
* Fig. 8: MS COCO averages over the classes, softmax vs the G-softmax runs, with the paper's values.

Statistics are the empirical ones of the record (eqs. 18-20 with N_pos, N_neg fitted on the evaluated
features; population std). A panel whose run or data is missing is drawn empty with a label saying
why; a figure with no run at all is skipped (and says so). Each quantity has one scale in a figure, log
where its values span more than two decades, and every numeric axis says its scale in its label ("(log
scale)", "(linear scale)"); panels meant to be compared share their range (Fig. 3's heads, Figs. 6 and 7's
training and test sets, Fig. 4's rows); probabilities span [0, 1]. Each caption gives the samples per class
its panels are computed from. Each figure has one legend, outside the panels (:func:`figure_legend`), that also
explains the marks drawn on them (Fig. 4's black ticks: the values the paper states). Figures drawn from
runs of a profile other than ``full`` (the smoke profile's tiny runs) carry a watermark on the image
itself, e.g. "smoke profile — not paper results" (:func:`profile_mark`), and their caption says so.

A damaged or foreign ``test_outputs.pt`` (truncated, empty, another structure: gsm.results.read_test_outputs)
is skipped with one warning line naming the file and what is wrong; that run's x-vs-p panels are drawn empty
(the caption says so) and every other panel and figure is drawn. Text from records (class names) is shown
literally: a ``$`` in it is not read as matplotlib mathtext.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from gsm import paper  # noqa: E402
from gsm.data import DATASET_NAMES  # noqa: E402
from gsm.figure_parts import (  # noqa: E402
    DAMAGED, DPI, HEAD_COLOR, HEAD_LABEL, HEADS, STATS, auto_scale, bars, class_index, count_text, damaged_text,
    empty_panel, figure_legend, first_run, gauss, gaussian_handles, head_patches, label_axis, load_outputs,
    no_outputs_text, one_scale, plain, probability_axis, profile_mark, run_label, runs_text, same_limits,
    scale_for, scatter, scatter_handles, stat, value_at, watermark,
)
from gsm.grid import Grid  # noqa: E402
from gsm.results import RunRecord  # noqa: E402

__all__ = ["FIGURES", "DATASET_NAMES", "auto_scale", "first_run", "load_outputs", "make_figures"]
_scatter = scatter  # the name the tests have used
FIG3_CLASS = {"cifar10": ("airplane", 0), "cifar100": ("aquarium_fish", 1)}  # (name, index in the official order)
FIG3_FIRST_CLASSES = {"cifar100": 10}  # the paper shows CIFAR-100's first 10 classes only


def experiment(figure: int, **attrs) -> str:
    """The experiment of the one row of ``figure`` with the given attributes (registry)."""
    (row,) = paper.figure_rows(figure, **attrs)
    return row.experiment


def figure_experiments(figure: int) -> list[str]:
    return [r.experiment for r in paper.figure_rows(figure)]


def _save(fig, out_dir: Path, stem: str, number: int, caption: str, mark: str | None = None) -> list[Path]:
    """PNG (200 dpi), PDF and the caption file; returns the three paths. ``mark`` (profile_mark): a watermark
    on the image and a sentence of the caption."""
    if mark:
        watermark(fig, mark)
        caption += f" Watermark '{mark}': drawn from test runs of that profile, not the paper's experiments."
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf", out_dir / f"{stem}.txt"]
    fig.savefig(paths[0], dpi=DPI)  # constrained layout: no second "tight" pass needed
    fig.set_layout_engine("none")  # the layout that drawing the PNG computed, kept: the PDF does not lay it out again
    fig.savefig(paths[1])
    plt.close(fig)
    paths[2].write_text(f"Figure {number}. {caption}\n")
    return paths


def _samples(counts: dict[str, str]) -> str:
    """' Samples per class: ...' from {what: count text}, the caption's sentence."""
    return (" Samples per class: " + "; ".join(f"{k} {v}" for k, v in counts.items()) + ".") if counts else ""


# --------------------------------------------------------------------------- Fig. 3 and 5


def fig3(grid: Grid, out_dir: Path) -> list[Path]:
    fig, axes = plt.subplots(2, 3, figsize=(12, 7), squeeze=False, layout="constrained")
    runs, counts = {}, {}
    for i, ds in enumerate(("cifar10", "cifar100")):
        for j, head in enumerate(HEADS):
            ax = axes[i][j]
            exp = experiment(3, dataset=ds, head=head)
            rec = runs[exp] = first_run(grid, exp)
            ax.set_title(f"{DATASET_NAMES[ds]}: WRN {HEAD_LABEL[head]}", fontsize=10)
            out = load_outputs(rec) if rec else None
            if out is None:
                empty_panel(ax, f"not run: {exp}" if rec is None else no_outputs_text(rec))
                continue
            name, idx = FIG3_CLASS[ds]
            c = class_index(rec, name, idx)
            if c is None:
                empty_panel(ax, f"the run has no class '{name}'")
                continue
            if not scatter(ax, out, c, rec.class_names[c], rec.multilabel, FIG3_FIRST_CLASSES.get(ds)):
                continue
            counts.setdefault(f"{DATASET_NAMES[ds]} '{name}'", set()).add(int((np.asarray(out.targets) == c).sum()))
            probability_axis(ax)
            label_axis(ax, "x, the fc output", "x")
            label_axis(ax, "p")
        same_limits(axes[i], "x")  # the heads of one dataset compare on one x range
    figure_legend(fig, scatter_handles("the class's own (x_c, p_c)", "imposters (x_j, p_j), j ≠ c"))
    caption = ("Prediction p vs feature x for all test images of the ground-truth class (blue: the class's own "
               "(x_c, p_c); red: the imposter points (x_j, p_j), j ≠ c), CIFAR-10 'airplane' (top) and CIFAR-100 "
               "'aquarium_fish' (bottom, imposters among the first 10 classes as in the paper), WRN with softmax, "
               "L-softmax and G-softmax. The panels of a row share their x range; p spans [0, 1]."
               + _samples({k: count_text(sorted(v)) + " test images" for k, v in counts.items()})
               + runs_text(runs) + damaged_text(runs))
    return _save(fig, out_dir, "fig3_x_vs_p_cifar", 3, caption, profile_mark(grid))


def _gaussians_panel(ax, runs: dict[str, RunRecord | None], name: str, fallback: int | None, split: str = "test",
                     xlabel: str = "x") -> dict:
    """Fitted Gaussians of x_c (solid) and of the imposter features (dashed) per head; returns the statistics."""
    vals: dict[str, dict[str, float]] = {}
    drew = False
    for h, rec in runs.items():
        if rec is None:
            continue
        c = class_index(rec, name, fallback)
        g = {k: value_at(stat(rec, split, k), c) for k in ("mu_pos", "sigma_pos", "mu_neg", "sigma_neg", "count_pos",
                                                           *STATS)}
        vals[h] = g
        drew |= gauss(ax, g["mu_pos"], g["sigma_pos"], color=HEAD_COLOR[h], label=f"{HEAD_LABEL[h]} {plain(name)}")
        drew |= gauss(ax, g["mu_neg"], g["sigma_neg"], color=HEAD_COLOR[h], ls="--",
                      label=f"{HEAD_LABEL[h]} non-{plain(name)}")
    if drew:
        label_axis(ax, xlabel, "x")
        label_axis(ax, "density")
    else:
        empty_panel(ax, "not run" if not vals else f"no fitted Gaussian: '{name}' has fewer than 2 test images")
    return vals


def fig5(grid: Grid, out_dir: Path) -> list[Path]:
    fig, axes = plt.subplots(2, 4, figsize=(15, 7), squeeze=False, layout="constrained")
    all_runs, values, counts = {}, {s: [] for s in STATS}, {}
    for i, ds in enumerate(("cifar10", "cifar100")):
        exps = {h: experiment(5, dataset=ds, head=h) for h in HEADS}
        runs = {h: first_run(grid, e) for h, e in exps.items()}
        all_runs.update({exps[h]: r for h, r in runs.items()})
        name, idx = FIG3_CLASS[ds]
        axes[i][0].set_title(f"{DATASET_NAMES[ds]} '{name}': Gaussians of x", fontsize=10)
        vals = _gaussians_panel(axes[i][0], runs, name, idx)
        counts[f"{DATASET_NAMES[ds]} '{name}'"] = count_text([v["count_pos"] for v in vals.values()]) + " test images"
        for s in STATS:
            values[s] += [vals[h][s] if h in vals else math.nan for h in HEADS]
    for k, s in enumerate(STATS):  # a statistic has one scale and one range in both rows
        scale = scale_for(values[s])
        for i, ds in enumerate(("cifar10", "cifar100")):
            runs = {h: all_runs[experiment(5, dataset=ds, head=h)] for h in HEADS}
            labels = [HEAD_LABEL[h] + ("" if runs[h] else "\n(not run)") for h in HEADS]
            bars(axes[i][k + 1], labels, values[s][3 * i:3 * i + 3], [HEAD_COLOR[h] for h in HEADS],
                 f"{DATASET_NAMES[ds]} '{FIG3_CLASS[ds][0]}': {s}", scale=scale)
        one_scale([axes[0][k + 1], axes[1][k + 1]], values[s])
    figure_legend(fig, head_patches(HEADS) + gaussian_handles("the class's own x_c", "imposter features x_j, j ≠ c"),
                  ncol=5)
    caption = ("Gaussians fitted to x on the test set (solid: the class's own feature x_c; dashed: the imposter "
               "features) and the class's compactness, separability and ratio (eqs. 18-20), WRN per head, for the "
               "classes of Figure 3; each statistic has one scale and range in both rows."
               + _samples(counts) + runs_text(all_runs))
    return _save(fig, out_dir, "fig5_gaussians_cifar", 5, caption, profile_mark(grid))


# --------------------------------------------------------------------------- Figs. 6 and 7


def _per_class(grid: Grid, out_dir: Path, ds: str, n_classes: int | None, number: int) -> list[Path]:
    exps = {h: experiment(number, dataset=ds, head=h) for h in HEADS}
    runs = {h: first_run(grid, e) for h, e in exps.items()}
    fig, axes = plt.subplots(3, 2, figsize=(14, 10), squeeze=False, layout="constrained")
    ref = next((r for r in runs.values() if r), None)
    names = list(ref.class_names) if ref else []
    m = min(n_classes or len(names), len(names))
    width = 0.8 / len(HEADS)
    counts = {}
    for split in ("train", "test"):
        per_run = [stat(r, split, "count_pos")[:m] for r in runs.values() if r is not None]
        if any(v.size for v in per_run):
            counts[f"{split} set"] = count_text(np.concatenate(per_run)) + " images"
    for i, s in enumerate(STATS):
        shown = []
        for j, split in enumerate(("train", "test")):
            ax = axes[i][j]
            ax.set_title(f"{s}, {split} set", fontsize=10)
            for k, h in enumerate(HEADS):
                v = stat(runs[h], split, s)[:m]
                if v.size == 0 or not np.isfinite(v).any():
                    continue
                ax.bar(np.arange(v.size) + (k - 1) * width, np.where(np.isfinite(v), v, 0), width, color=HEAD_COLOR[h],
                       label=f"{HEAD_LABEL[h]} ({run_label(runs[h])})")
                shown.append(v)
            if not ax.has_data():
                empty_panel(ax, "not run" if ref is None else f"no {split}-set statistics in the runs")
                continue
            ax.set_xticks(np.arange(m))
            ax.set_xticklabels([plain(n) for n in names[:m]], rotation=45, ha="right", fontsize=7)
        # one quantity, one scale: the training and test panels of a statistic share scale and range
        one_scale(axes[i], np.concatenate(shown) if shown else [])
        for ax in axes[i]:
            if ax.has_data():
                label_axis(ax, s)
    figure_legend(fig, [Patch(color=HEAD_COLOR[h], label=f"{HEAD_LABEL[h]} ({run_label(runs[h])})")
                        for h in HEADS if runs[h] is not None], ncol=3)
    which = f"the first {m} classes" if n_classes else "each class"
    caption = (f"{DATASET_NAMES[ds]}, WRN: compactness, separability and ratio (eqs. 18-20) of {which}, training set "
               f"(left) and test set (right), per head; a statistic's two panels share scale and range."
               + _samples(counts) + runs_text({exps[h]: r for h, r in runs.items()}))
    return _save(fig, out_dir, f"fig{number}_per_class_{ds}", number, caption, profile_mark(grid))


def fig6(grid: Grid, out_dir: Path) -> list[Path]:
    return _per_class(grid, out_dir, "cifar10", None, 6)


def fig7(grid: Grid, out_dir: Path) -> list[Path]:
    return _per_class(grid, out_dir, "cifar100", paper.FIGURES[7].values.get("classes", 10), 7)


# --------------------------------------------------------------------------- Figs. 4 and 8


def _fig4_classes(ref: RunRecord | None) -> list[tuple[str, int | None]]:
    """The paper's two categories; on label sets without them, the first classes with two positives."""
    wanted = list(paper.FIGURES[4].values["classes"])
    if ref is None:
        return [(name, None) for name in wanted]
    out = [(name, class_index(ref, name, None)) for name in wanted]
    if all(c is not None for _, c in out):
        return out
    counts = stat(ref, "test", "count_pos")
    extra = [int(c) for c in np.flatnonzero(counts > 1)]
    return [(name, c) if c is not None else ((ref.class_names[extra[k]], extra[k]) if k < len(extra) else (name, None))
            for k, (name, c) in enumerate(out)]


def fig4(grid: Grid, out_dir: Path) -> list[Path]:
    exps = {"softmax": experiment(4, head="softmax"), "gsoftmax": experiment(4, head="gsoftmax")}
    runs = {h: first_run(grid, e) for h, e in exps.items()}
    ref = runs["softmax"] or runs["gsoftmax"]
    outs = {h: (load_outputs(r) if r else None) for h, r in runs.items()}
    said = paper.FIGURES[4].values
    heads = ("softmax", "gsoftmax")
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), squeeze=False, layout="constrained")
    stats_values, counts = [], {}
    for i, (name, c) in enumerate(_fig4_classes(ref)):
        for j, h in enumerate(heads):
            ax = axes[i][j]
            ax.set_title(f"'{plain(name)}': {HEAD_LABEL[h]}", fontsize=10)
            if outs[h] is None or c is None:
                empty_panel(ax, f"not run: {exps[h]}" if runs[h] is None else
                            (no_outputs_text(runs[h]) if outs[h] is None else f"no class '{name}'"))
                continue
            if scatter(ax, outs[h], c, name, True):
                t = np.asarray(outs[h].targets)
                counts.setdefault(f"'{name}'", set()).add(f"{int(t[:, c].sum()):,} of {t.shape[0]:,} test images")
                probability_axis(ax)
                label_axis(ax, "$x^+$", "x")
                label_axis(ax, "p")
        axes[i][2].set_title(f"'{plain(name)}': Gaussians of $x^+$", fontsize=10)
        vals = _gaussians_panel(axes[i][2], runs, name, c, xlabel="$x^+$")
        same_limits(axes[i][:2], "x")  # the two heads' scatters of a class on one x⁺ range
        ax = axes[i][3]
        ax.set_title(f"'{plain(name)}': statistics", fontsize=10)
        values = np.array([[vals[h][s] if h in vals else math.nan for s in STATS] for h in heads])
        if not np.isfinite(values).any():
            empty_panel(ax, "no statistics: not run, or fewer than 2 test images with the label")
            continue
        pos = np.arange(len(STATS))
        for k, h in enumerate(heads):
            ax.bar(pos + (k - 0.5) * 0.4, np.where(np.isfinite(values[k]), values[k], 0), 0.4, color=HEAD_COLOR[h],
                   label=HEAD_LABEL[h])
        stats_values += list(values.ravel())
        for s_i, s in enumerate(STATS):
            ref_vals = (said.get(s) or {}).get(name)
            if ref_vals:
                for k, h in enumerate(heads):
                    ax.plot(s_i + (k - 0.5) * 0.4, ref_vals[h], marker="_", markersize=14, color="k")
                    stats_values.append(ref_vals[h])
        ax.set_xticks(pos)
        ax.set_xticklabels(STATS, fontsize=8)
    one_scale([axes[0][3], axes[1][3]], stats_values)  # one scale and range for the statistics of both classes
    for ax in (axes[0][3], axes[1][3]):
        if ax.has_data():
            label_axis(ax, "value")
    figure_legend(fig, scatter_handles("images with the label (x⁺_c, p_c)", "images without it")
                  + head_patches(heads)
                  + gaussian_handles("images with the label", "images without it")
                  + [Line2D([], [], ls="none", marker="_", markersize=14, markeredgewidth=2, color="k",
                            label="black tick: the value the paper states")], ncol=4)
    caption = ("MS COCO, categories 'cow' (top) and 'baseball bat' (bottom): x⁺ vs p for the test images with the "
               "label (blue) and without it (red) for softmax and G-softmax (0, 1), the Gaussians fitted to x⁺ "
               "(solid: with the label; dashed: without), and compactness, separability and ratio (black ticks: the "
               "values the paper states). p spans [0, 1]; a row's two x⁺-vs-p panels share their x⁺ range, the two "
               "statistics panels their scale and range. On label sets without these categories (fixtures) the first classes "
               "with two positives are shown."
               + _samples({k: ", ".join(sorted(v)) for k, v in counts.items()})
               + runs_text({exps[h]: r for h, r in runs.items()})
               + damaged_text({exps[h]: r for h, r in runs.items()}))
    return _save(fig, out_dir, "fig4_coco_classes", 4, caption, profile_mark(grid))


def fig8(grid: Grid, out_dir: Path) -> list[Path]:
    rows = paper.figure_rows(8)
    runs = {r.experiment: first_run(grid, r.experiment) for r in rows}
    label = {r.experiment: "softmax" if r.head == "softmax" else f"G({r.mu:g},{r.sigma:g})" for r in rows}
    color = {r.experiment: HEAD_COLOR["softmax" if r.head == "softmax" else "gsoftmax"] for r in rows}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), squeeze=False, layout="constrained")
    said = paper.FIGURES[8].values
    averages, everything = {}, []
    for s in STATS:
        averages[s] = []
        for r in rows:
            v = stat(runs[r.experiment], "test", s)
            v = v[np.isfinite(v)]
            averages[s].append(float(v.mean()) if v.size else math.nan)
        ref = said.get(s)
        everything += averages[s] + ([ref["softmax"], ref["gsoftmax"]] if isinstance(ref, dict) else [])
    scale = scale_for(everything)  # the three statistics side by side: one scale for the figure
    for k, s in enumerate(STATS):
        ax = axes[0][k]
        values = averages[s]
        labels = [label[r.experiment] + ("" if runs[r.experiment] else "\n(not run)") for r in rows]
        bars(ax, labels, values, [color[r.experiment] for r in rows], f"average {s} over classes (test)",
             f"average {s}", scale=scale)
        ref = said.get(s)
        if isinstance(ref, dict) and any(math.isfinite(v) for v in values):
            ax.axhline(ref["softmax"], color=HEAD_COLOR["softmax"], ls=":", lw=1.2)
            ax.axhline(ref["gsoftmax"], color=HEAD_COLOR["gsoftmax"], ls=":", lw=1.2)
            label_axis(ax, f"average {s}")
    positives = [stat(r, "test", "count_pos") for r in runs.values() if r is not None]
    classes = [int((p > 0).sum()) for p in positives if p.size]
    figure_legend(fig, [Patch(color=HEAD_COLOR["softmax"], label="softmax"),
                        Patch(color=HEAD_COLOR["gsoftmax"], label="G-softmax (μ, σ)"),
                        Line2D([], [], color=HEAD_COLOR["softmax"], ls=":", label="dotted: the paper's softmax value"),
                        Line2D([], [], color=HEAD_COLOR["gsoftmax"], ls=":", label="dotted: the paper's G-softmax value")])
    caption = ("MS COCO: compactness, separability and ratio averaged over the classes with positives in the test "
               "set, softmax against the G-softmax (μ, σ) runs of Table III (dotted: the paper's values); the three "
               f"panels share one scale ({scale[0]})."
               + (f" Classes averaged: {count_text(classes)}." if classes else "")
               + _samples({"test images with the label": count_text(np.concatenate(positives)[np.concatenate(positives) > 0])}
                          if positives and any(p.size for p in positives) else {})
               + runs_text(runs))
    return _save(fig, out_dir, "fig8_coco_averages", 8, caption, profile_mark(grid))


FIGURES = {3: fig3, 4: fig4, 5: fig5, 6: fig6, 7: fig7, 8: fig8}


def make_figures(grid: Grid, out_dir: Path, which: tuple[int, ...] = (3, 4, 5, 6, 7, 8)) -> list[Path]:
    """Draw the figures in ``which`` whose runs exist under the grid; say which are skipped and why.
    Returns the written files (PNG, PDF and caption of each). A damaged test_outputs.pt is warned about once
    and skipped (load_outputs); the figures are drawn without it."""
    DAMAGED.clear()
    written: list[Path] = []
    for number in which:
        exps = figure_experiments(number)
        absent = [e for e in exps if e not in grid.rows]
        if absent:
            raise KeyError(f"figure {number} needs {absent} in the grid")
        if not any(first_run(grid, e) is not None for e in exps):
            print(f"gsm-tables: figure {number} skipped: none of its runs exist ({', '.join(exps)})")
            continue
        written += FIGURES[number](grid, Path(out_dir))
    return written
