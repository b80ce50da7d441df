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
why; a figure with no run at all is skipped (and says so). A panel whose positive values span more
than two decades uses a log scale, and every numeric axis says its scale in its label ("(log scale)",
"(linear scale)"). Each figure has one legend, outside the panels (:func:`figure_legend`), that also
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
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from gsm import paper  # noqa: E402
from gsm.data import DATASET_NAMES  # noqa: E402
from gsm.grid import Grid  # noqa: E402
from gsm.results import OutputsError, RunRecord, TestOutputs, read_run_outputs  # noqa: E402

DPI = 200
HEADS = ("softmax", "lsoftmax", "gsoftmax")
HEAD_LABEL = {"softmax": "softmax", "lsoftmax": "L-softmax", "gsoftmax": "G-softmax"}
HEAD_COLOR = {"softmax": "tab:blue", "lsoftmax": "tab:orange", "gsoftmax": "tab:green"}
STATS = ("compactness", "separability", "ratio")
FIG3_CLASS = {"cifar10": ("airplane", 0), "cifar100": ("aquarium_fish", 1)}  # (name, index in the official order)
FIG3_FIRST_CLASSES = {"cifar100": 10}  # the paper shows CIFAR-100's first 10 classes only


def experiment(figure: int, **attrs) -> str:
    """The experiment of the one row of ``figure`` with the given attributes (registry)."""
    (row,) = paper.figure_rows(figure, **attrs)
    return row.experiment


def figure_experiments(figure: int) -> list[str]:
    return [r.experiment for r in paper.figure_rows(figure)]


# --------------------------------------------------------------------------- helpers


def first_run(grid: Grid, exp: str) -> RunRecord | None:
    row = grid.get(exp)
    return row.results()[0] if row is not None and row.runs else None


# test_outputs.pt found damaged in this make_figures call: path -> what is wrong (each is warned about once)
_DAMAGED: dict[Path, str] = {}


def outputs_path(rec: RunRecord) -> Path | None:
    return rec.run_dir / "test_outputs.pt" if rec.run_dir is not None else None


def load_outputs(rec: RunRecord) -> TestOutputs | None:
    """The run's test outputs (gsm.results.read_test_outputs, checked against the record); None when the run
    folder has no test_outputs.pt or it is damaged (then one warning line names the file and what is wrong)."""
    path = outputs_path(rec)
    if path is None or not path.exists() or path in _DAMAGED:
        return None
    try:
        return read_run_outputs(rec)  # checked against the record: shape, signature, the digest written with it
    except OutputsError as exc:
        _DAMAGED[path] = str(exc).removeprefix(f"{path}: ")
        print(f"gsm-tables: warning: skipped {exc}; this run's x-vs-p panels are drawn empty", file=sys.stderr)
        return None


def no_outputs_text(rec: RunRecord) -> str:
    """An empty x-vs-p panel's label: the file is missing, or damaged (see the warning)."""
    path = outputs_path(rec)
    return f"test_outputs.pt skipped: {_DAMAGED[path]}" if path in _DAMAGED else "no test_outputs.pt in the run folder"


def _damaged_text(runs: dict[str, RunRecord | None]) -> str:
    bad = [e for e, r in runs.items() if r is not None and outputs_path(r) in _DAMAGED]
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


def _at(values: np.ndarray, c: int | None) -> float:
    return float(values[c]) if c is not None and 0 <= c < values.size else math.nan


def empty_panel(ax, text: str) -> None:
    """A labelled empty panel: the frame stays, the label says what is missing."""
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(plain(text), 34)), ha="center", va="center", transform=ax.transAxes,
            fontsize=9, color="0.35")
    ax.set_xticks([])
    ax.set_yticks([])


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


def _watermark(fig, mark: str) -> None:
    """``mark`` across the image, large and translucent: a figure of test runs cannot pass for results."""
    fig.text(0.5, 0.5, mark, ha="center", va="center", rotation=20, fontsize=40, color="tab:red", alpha=0.22,
             fontweight="bold", zorder=1000)


def auto_scale(ax, values, axis: str = "y") -> None:
    """Log scale where the panel's finite non-zero magnitudes span more than two decades (symlog if any ≤ 0)."""
    v = np.asarray([x for x in np.ravel(values) if np.isfinite(x)], dtype=float)
    mags = np.abs(v[v != 0])
    if mags.size < 2 or mags.max() / mags.min() <= 100:
        return
    setter = ax.set_yscale if axis == "y" else ax.set_xscale
    if (v > 0).all():
        setter("log")
    else:
        setter("symlog", linthresh=float(mags.min()))


def _run_label(rec: RunRecord) -> str:
    return f"seed {rec.seed}, {rec.epochs} ep"


def _gauss(ax, mu: float, sigma: float, **kw) -> bool:
    if not (math.isfinite(mu) and math.isfinite(sigma)) or sigma <= 0:
        return False
    xs = np.linspace(mu - 4 * sigma, mu + 4 * sigma, 200)
    ax.plot(xs, np.exp(-0.5 * ((xs - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi)), **kw)
    return True


def _save(fig, out_dir: Path, stem: str, number: int, caption: str, mark: str | None = None) -> list[Path]:
    """PNG (200 dpi), PDF and the caption file; returns the three paths. ``mark`` (profile_mark): a watermark
    on the image and a sentence of the caption."""
    if mark:
        _watermark(fig, mark)
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


def _runs_text(runs: dict[str, RunRecord | None]) -> str:
    have = [f"{e} ({_run_label(r)})" for e, r in runs.items() if r is not None]
    missing = [e for e, r in runs.items() if r is None]
    text = f" Runs: {'; '.join(have)}." if have else ""
    return text + (f" Not run: {', '.join(missing)}." if missing else "")


def _bars(ax, labels: list[str], values: list[float], colors: list[str], title: str, ylabel: str | None = None) -> None:
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
    auto_scale(ax, values)
    label_axis(ax, title.rsplit(" ", 1)[-1] if ylabel is None else ylabel)


# --------------------------------------------------------------------------- Fig. 3 and 5


def scatter_handles(own: str, others: str) -> list:
    """Legend entries of the x-vs-p scatters (blue: the class, red: the others), as drawn by _scatter."""
    return [Line2D([], [], ls="none", marker="o", markersize=5, color="tab:blue", label=own),
            Line2D([], [], ls="none", marker="o", markersize=5, color="tab:red", alpha=0.6, label=others)]


def gaussian_handles(own: str, others: str) -> list:
    """Legend entries of the fitted Gaussians' line styles (colours are the heads', head_patches)."""
    return [Line2D([], [], color="0.3", label=f"Gaussian fit: {own}"),
            Line2D([], [], color="0.3", ls="--", label=f"Gaussian fit: {others}")]


def _scatter(ax, out: TestOutputs, c: int, name: str, multilabel: bool, first: int | None = None) -> bool:
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


def fig3(grid: Grid, out_dir: Path) -> list[Path]:
    fig, axes = plt.subplots(2, 3, figsize=(12, 7), squeeze=False, layout="constrained")
    runs = {}
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
            if not _scatter(ax, out, c, rec.class_names[c], rec.multilabel, FIG3_FIRST_CLASSES.get(ds)):
                continue
            label_axis(ax, "x, the fc output", "x")
            label_axis(ax, "p")
    figure_legend(fig, scatter_handles("the class's own (x_c, p_c)", "imposters (x_j, p_j), j ≠ c"))
    caption = ("Prediction p vs feature x for all test images of the ground-truth class (blue: the class's own "
               "(x_c, p_c); red: the imposter points (x_j, p_j), j ≠ c), CIFAR-10 'airplane' (top) and CIFAR-100 "
               "'aquarium_fish' (bottom, imposters among the first 10 classes as in the paper), WRN with softmax, "
               "L-softmax and G-softmax." + _runs_text(runs) + _damaged_text(runs))
    return _save(fig, out_dir, "fig3_x_vs_p_cifar", 3, caption, profile_mark(grid))


def _gaussians_panel(ax, runs: dict[str, RunRecord | None], name: str, fallback: int | None, split: str = "test",
                     xlabel: str = "x") -> dict:
    """Fitted Gaussians of x_c (solid) and of the imposter features (dashed) per head; returns the statistics."""
    vals: dict[str, dict[str, float]] = {}
    drawn = False
    for h, rec in runs.items():
        if rec is None:
            continue
        c = class_index(rec, name, fallback)
        g = {k: _at(stat(rec, split, k), c) for k in ("mu_pos", "sigma_pos", "mu_neg", "sigma_neg", *STATS)}
        vals[h] = g
        drawn |= _gauss(ax, g["mu_pos"], g["sigma_pos"], color=HEAD_COLOR[h], label=f"{HEAD_LABEL[h]} {plain(name)}")
        drawn |= _gauss(ax, g["mu_neg"], g["sigma_neg"], color=HEAD_COLOR[h], ls="--",
                        label=f"{HEAD_LABEL[h]} non-{plain(name)}")
    if drawn:
        label_axis(ax, xlabel, "x")
        label_axis(ax, "density")
    else:
        empty_panel(ax, "not run" if not vals else f"no fitted Gaussian: '{name}' has fewer than 2 test images")
    return vals


def fig5(grid: Grid, out_dir: Path) -> list[Path]:
    fig, axes = plt.subplots(2, 4, figsize=(15, 7), squeeze=False, layout="constrained")
    all_runs = {}
    for i, ds in enumerate(("cifar10", "cifar100")):
        exps = {h: experiment(5, dataset=ds, head=h) for h in HEADS}
        runs = {h: first_run(grid, e) for h, e in exps.items()}
        all_runs.update({exps[h]: r for h, r in runs.items()})
        name, idx = FIG3_CLASS[ds]
        axes[i][0].set_title(f"{DATASET_NAMES[ds]} '{name}': Gaussians of x", fontsize=10)
        vals = _gaussians_panel(axes[i][0], runs, name, idx)
        for k, s in enumerate(STATS):
            labels = [HEAD_LABEL[h] + ("" if runs[h] else "\n(not run)") for h in HEADS]
            _bars(axes[i][k + 1], labels, [vals[h][s] if h in vals else math.nan for h in HEADS],
                  [HEAD_COLOR[h] for h in HEADS], f"{DATASET_NAMES[ds]} '{name}': {s}")
    figure_legend(fig, head_patches(HEADS) + gaussian_handles("the class's own x_c", "imposter features x_j, j ≠ c"),
                  ncol=5)
    caption = ("Gaussians fitted to x on the test set (solid: the class's own feature x_c; dashed: the imposter "
               "features) and the class's compactness, separability and ratio (eqs. 18-20), WRN per head, for the "
               "classes of Figure 3." + _runs_text(all_runs))
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
    for j, split in enumerate(("train", "test")):
        for i, s in enumerate(STATS):
            ax = axes[i][j]
            ax.set_title(f"{s}, {split} set", fontsize=10)
            drawn, shown = False, []
            for k, h in enumerate(HEADS):
                v = stat(runs[h], split, s)[:m]
                if v.size == 0 or not np.isfinite(v).any():
                    continue
                ax.bar(np.arange(v.size) + (k - 1) * width, np.where(np.isfinite(v), v, 0), width, color=HEAD_COLOR[h],
                       label=f"{HEAD_LABEL[h]} ({_run_label(runs[h])})")
                shown.append(v)
                drawn = True
            if not drawn:
                empty_panel(ax, "not run" if ref is None else f"no {split}-set statistics in the runs")
                continue
            auto_scale(ax, np.concatenate(shown))
            label_axis(ax, s)
            ax.set_xticks(np.arange(m))
            ax.set_xticklabels([plain(n) for n in names[:m]], rotation=45, ha="right", fontsize=7)
    figure_legend(fig, [Patch(color=HEAD_COLOR[h], label=f"{HEAD_LABEL[h]} ({_run_label(runs[h])})")
                        for h in HEADS if runs[h] is not None], ncol=3)
    which = f"the first {m} classes" if n_classes else "each class"
    caption = (f"{DATASET_NAMES[ds]}, WRN: compactness, separability and ratio (eqs. 18-20) of {which}, training set "
               f"(left) and test set (right), per head." + _runs_text({exps[h]: r for h, r in runs.items()}))
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
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), squeeze=False, layout="constrained")
    for i, (name, c) in enumerate(_fig4_classes(ref)):
        for j, h in enumerate(("softmax", "gsoftmax")):
            ax = axes[i][j]
            ax.set_title(f"'{plain(name)}': {HEAD_LABEL[h]}", fontsize=10)
            if outs[h] is None or c is None:
                empty_panel(ax, f"not run: {exps[h]}" if runs[h] is None else
                            (no_outputs_text(runs[h]) if outs[h] is None else f"no class '{name}'"))
                continue
            if _scatter(ax, outs[h], c, name, True):
                label_axis(ax, "$x^+$", "x")
                label_axis(ax, "p")
        axes[i][2].set_title(f"'{plain(name)}': Gaussians of $x^+$", fontsize=10)
        vals = _gaussians_panel(axes[i][2], runs, name, c, xlabel="$x^+$")
        ax = axes[i][3]
        ax.set_title(f"'{plain(name)}': statistics", fontsize=10)
        heads = ("softmax", "gsoftmax")
        values = np.array([[vals[h][s] if h in vals else math.nan for s in STATS] for h in heads])
        if not np.isfinite(values).any():
            empty_panel(ax, "no statistics: not run, or fewer than 2 test images with the label")
            continue
        pos = np.arange(len(STATS))
        for k, h in enumerate(heads):
            ax.bar(pos + (k - 0.5) * 0.4, np.where(np.isfinite(values[k]), values[k], 0), 0.4, color=HEAD_COLOR[h],
                   label=HEAD_LABEL[h])
        for s_i, s in enumerate(STATS):
            ref_vals = (said.get(s) or {}).get(name)
            if ref_vals:
                for k, h in enumerate(heads):
                    ax.plot(s_i + (k - 0.5) * 0.4, ref_vals[h], marker="_", markersize=14, color="k")
        ax.set_xticks(pos)
        ax.set_xticklabels(STATS, fontsize=8)
        auto_scale(ax, values)
        label_axis(ax, "value")
    figure_legend(fig, scatter_handles("images with the label (x⁺_c, p_c)", "images without it")
                  + head_patches(("softmax", "gsoftmax"))
                  + gaussian_handles("images with the label", "images without it")
                  + [Line2D([], [], ls="none", marker="_", markersize=14, markeredgewidth=2, color="k",
                            label="black tick: the value the paper states")], ncol=4)
    caption = ("MS COCO, categories 'cow' (top) and 'baseball bat' (bottom): x⁺ vs p for the test images with the "
               "label (blue) and without it (red) for softmax and G-softmax (0, 1), the Gaussians fitted to x⁺ "
               "(solid: with the label; dashed: without), and compactness, separability and ratio (black ticks: the "
               "values the paper states). On label sets without these categories (fixtures) the first classes with "
               "two positives are shown." + _runs_text({exps[h]: r for h, r in runs.items()})
               + _damaged_text({exps[h]: r for h, r in runs.items()}))
    return _save(fig, out_dir, "fig4_coco_classes", 4, caption, profile_mark(grid))


def fig8(grid: Grid, out_dir: Path) -> list[Path]:
    rows = paper.figure_rows(8)
    runs = {r.experiment: first_run(grid, r.experiment) for r in rows}
    label = {r.experiment: "softmax" if r.head == "softmax" else f"G({r.mu:g},{r.sigma:g})" for r in rows}
    color = {r.experiment: HEAD_COLOR["softmax" if r.head == "softmax" else "gsoftmax"] for r in rows}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), squeeze=False, layout="constrained")
    said = paper.FIGURES[8].values
    for k, s in enumerate(STATS):
        ax = axes[0][k]
        values = []
        for r in rows:
            v = stat(runs[r.experiment], "test", s)
            v = v[np.isfinite(v)]
            values.append(float(v.mean()) if v.size else math.nan)
        labels = [label[r.experiment] + ("" if runs[r.experiment] else "\n(not run)") for r in rows]
        _bars(ax, labels, values, [color[r.experiment] for r in rows], f"average {s} over classes (test)", f"average {s}")
        ref = said.get(s)
        if isinstance(ref, dict) and any(math.isfinite(v) for v in values):
            ax.axhline(ref["softmax"], color=HEAD_COLOR["softmax"], ls=":", lw=1.2)
            ax.axhline(ref["gsoftmax"], color=HEAD_COLOR["gsoftmax"], ls=":", lw=1.2)
            auto_scale(ax, [*values, ref["softmax"], ref["gsoftmax"]])
            label_axis(ax, f"average {s}")
    figure_legend(fig, [Patch(color=HEAD_COLOR["softmax"], label="softmax"),
                        Patch(color=HEAD_COLOR["gsoftmax"], label="G-softmax (μ, σ)"),
                        Line2D([], [], color=HEAD_COLOR["softmax"], ls=":", label="dotted: the paper's softmax value"),
                        Line2D([], [], color=HEAD_COLOR["gsoftmax"], ls=":", label="dotted: the paper's G-softmax value")])
    caption = ("MS COCO: compactness, separability and ratio averaged over the classes with positives in the test "
               "set, softmax against the G-softmax (μ, σ) runs of Table III (dotted: the paper's values)."
               + _runs_text(runs))
    return _save(fig, out_dir, "fig8_coco_averages", 8, caption, profile_mark(grid))


FIGURES = {3: fig3, 4: fig4, 5: fig5, 6: fig6, 7: fig7, 8: fig8}


def make_figures(grid: Grid, out_dir: Path, which: tuple[int, ...] = (3, 4, 5, 6, 7, 8)) -> list[Path]:
    """Draw the figures in ``which`` whose runs exist under the grid; say which are skipped and why.
    Returns the written files (PNG, PDF and caption of each). A damaged test_outputs.pt is warned about once
    and skipped (load_outputs); the figures are drawn without it."""
    _DAMAGED.clear()
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
