"""Figures 3–8 of the paper from run results (``results.json`` and ``test_outputs.pt`` only), as PNG.

* Fig. 3: x vs p for the test images of one class (CIFAR-10 "airplane", CIFAR-100 "aquarium_fish"):
  the ground-truth class's (x_c, p_c) against the imposter points (x_j, p_j), j ≠ c; WRN with softmax,
  L-softmax, G-softmax.
* Fig. 4: MS COCO, categories "cow" and "baseball bat": x⁺ vs p for images with / without the label
  (softmax and G-softmax (0, 1)), the fitted Gaussians, compactness / separability / ratio.
* Fig. 5: the fitted Gaussians of Fig. 3's class and its compactness / separability / ratio per head.
* Figs. 6, 7: per-class compactness, separability, ratio on CIFAR-10 (all classes) and CIFAR-100 (first
  10 classes), training and test set, WRN per head.
* Fig. 8: MS COCO averages over the classes, softmax vs the G-softmax runs, with the paper's values.

Statistics are the empirical ones stored in results.json (SPEC §2.4: N_pos, N_neg fitted on the
evaluated features; population std). Each panel uses the run with the lowest seed of its row; a
panel whose run is missing says "not run"; a figure with no run at all is skipped (and says so).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from gsm import paper  # noqa: E402
from gsm.grid import Grid  # noqa: E402

HEADS = ("softmax", "lsoftmax", "gsoftmax")
HEAD_LABEL = {"softmax": "softmax", "lsoftmax": "L-softmax", "gsoftmax": "G-softmax"}
HEAD_COLOR = {"softmax": "tab:blue", "lsoftmax": "tab:orange", "gsoftmax": "tab:green"}
DATASET_LABEL = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "coco": "MS COCO"}
STATS = ("compactness", "separability", "ratio")
WRN = {ds: {h: f"table1/wrn_{ds}_{h}" for h in HEADS} for ds in ("cifar10", "cifar100")}
COCO_SOFTMAX = paper.SOFTMAX_BASELINE["coco"]
COCO_GSOFTMAX = "table3/resnet101_coco_gsoftmax_mu0_sigma1"
FIG3_CLASS = {"cifar10": ("airplane", 0), "cifar100": ("aquarium_fish", 1)}  # (name, index in the official order)

FIGURE_EXPERIMENTS: dict[int, list[str]] = {
    3: [e for ds in WRN.values() for e in ds.values()],
    4: [COCO_SOFTMAX, COCO_GSOFTMAX],
    5: [e for ds in WRN.values() for e in ds.values()],
    6: list(WRN["cifar10"].values()),
    7: list(WRN["cifar100"].values()),
    8: [COCO_SOFTMAX, *paper.GSOFTMAX_GRID["coco"]],
}


# --------------------------------------------------------------------------- helpers


def first_run(grid: Grid, experiment: str) -> dict[str, Any] | None:
    row = grid.get(experiment)
    return row.results()[0] if row is not None and row.runs else None


def load_outputs(res: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """x (fc outputs; x⁺ for multi-label), p and targets of the test split, as float / int numpy arrays."""
    path = Path(res["_path"]).parent / "test_outputs.pt"
    if not path.exists():
        return None
    blob = torch.load(path, map_location="cpu", weights_only=True)
    x = blob["x"].float()
    if x.dim() == 3:
        x = x[..., 0]
    return {"x": x.numpy(), "p": blob["p"].float().numpy(), "targets": blob["targets"].long().numpy()}


def stat(res: dict[str, Any], split: str, key: str) -> np.ndarray:
    block = (res.get("empirical") or {}).get(split) or {}
    return np.array([np.nan if v is None else float(v) for v in block.get(key, [])], dtype=float)


def class_index(res: dict[str, Any], name: str, fallback: int | None) -> int | None:
    names = [str(n).replace(" ", "_").lower() for n in res.get("class_names") or []]
    key = name.replace(" ", "_").lower()
    if key in names:
        return names.index(key)
    return fallback if fallback is not None and fallback < int(res.get("num_classes", 0)) else None


def _at(values: np.ndarray, c: int | None) -> float:
    return float(values[c]) if c is not None and 0 <= c < values.size else math.nan


def _not_run(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _run_label(res: dict[str, Any]) -> str:
    return f"seed {res['seed']}, {res['epochs']} ep"


def _gauss(ax, mu: float, sigma: float, **kw) -> None:
    if not (math.isfinite(mu) and math.isfinite(sigma)) or sigma <= 0:
        return
    xs = np.linspace(mu - 4 * sigma, mu + 4 * sigma, 200)
    ax.plot(xs, np.exp(-0.5 * ((xs - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi)), **kw)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _any_run(grid: Grid, figure: int) -> bool:
    return any(first_run(grid, e) is not None for e in FIGURE_EXPERIMENTS[figure])


# --------------------------------------------------------------------------- Fig. 3 and 5


def _scatter(ax, out: dict[str, np.ndarray], c: int, name: str, multilabel: bool) -> bool:
    """Draw the class-vs-imposter scatter; False (and a note in the panel) when the class has no test image."""
    x, p, t = out["x"], out["p"], out["targets"]
    if multilabel:  # images with label c vs images without it, feature x⁺_c
        pos = t[:, c] == 1
        ax.scatter(x[~pos, c], p[~pos, c], s=4, c="tab:red", alpha=0.4, label=f"non-{name}")
        ax.scatter(x[pos, c], p[pos, c], s=6, c="tab:blue", alpha=0.7, label=name)
        return True
    rows = t == c
    if not rows.any():
        _not_run(ax, f"no test image of class {name}")
        return False
    xs, ps = x[rows], p[rows]
    other = np.ones(x.shape[1], dtype=bool)
    other[c] = False
    xi, pi = xs[:, other].ravel(), ps[:, other].ravel()
    if xi.size > 20000:  # keep the PNG light; a fixed subsample
        keep = np.random.default_rng(0).choice(xi.size, 20000, replace=False)
        xi, pi = xi[keep], pi[keep]
    ax.scatter(xi, pi, s=4, c="tab:red", alpha=0.3, label=f"non-{name} (imposters)")
    ax.scatter(xs[:, c], ps[:, c], s=6, c="tab:blue", alpha=0.7, label=name)
    return True


def fig3(grid: Grid, out_dir: Path) -> Path:
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), squeeze=False, layout="constrained")
    for i, ds in enumerate(("cifar10", "cifar100")):
        for j, head in enumerate(HEADS):
            ax = axes[i][j]
            res = first_run(grid, WRN[ds][head])
            ax.set_title(f"{DATASET_LABEL[ds]}: WRN {HEAD_LABEL[head]}", fontsize=10)
            out = load_outputs(res) if res else None
            if out is None:
                _not_run(ax, f"not run: {WRN[ds][head]}" if res is None else "no test_outputs.pt")
                continue
            name, idx = FIG3_CLASS[ds]
            c = class_index(res, name, idx)
            cname = (res.get("class_names") or [str(c)])[c]
            ax.set_title(f"{DATASET_LABEL[ds]}: WRN {HEAD_LABEL[head]} ({_run_label(res)})", fontsize=10)
            if not _scatter(ax, out, c, cname, bool(res.get("multilabel"))):
                continue
            ax.set_xlabel("x (fc output)")
            ax.set_ylabel("p")
            ax.legend(fontsize=7, loc="center right", markerscale=2)
    fig.suptitle("Fig. 3: prediction p vs feature x, test images of the ground-truth class (blue) and imposter points (red)")
    return _save(fig, out_dir / "fig3_x_vs_p_cifar.png")


def _bars(ax, labels: list[str], values: list[float], colors: list[str], title: str) -> None:
    pos = np.arange(len(values))
    ax.bar(pos, [v if math.isfinite(v) else 0 for v in values], color=colors)
    for k, v in enumerate(values):
        ax.text(k, v if math.isfinite(v) else 0, f"{v:.3g}" if math.isfinite(v) else "n/a", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(pos)
    ax.set_xticklabels(labels, fontsize=8, rotation=20)
    ax.set_title(title, fontsize=10)


def fig5(grid: Grid, out_dir: Path) -> Path:
    fig, axes = plt.subplots(2, 4, figsize=(16, 7), squeeze=False, layout="constrained")
    for i, ds in enumerate(("cifar10", "cifar100")):
        runs = {h: first_run(grid, WRN[ds][h]) for h in HEADS}
        name, idx = FIG3_CLASS[ds]
        ax = axes[i][0]
        ax.set_title(f"{DATASET_LABEL[ds]} '{name}': fitted Gaussians of x (test)", fontsize=10)
        present = [h for h in HEADS if runs[h] is not None]
        if not present:
            for ax in axes[i]:
                _not_run(ax, f"not run: table1/wrn_{ds}_*")
            continue
        vals: dict[str, dict[str, float]] = {}
        for h in present:
            res = runs[h]
            c = class_index(res, name, idx)
            g = {k: _at(stat(res, "test", k), c) for k in ("mu_pos", "sigma_pos", "mu_neg", "sigma_neg", *STATS)}
            vals[h] = g
            _gauss(ax, g["mu_pos"], g["sigma_pos"], color=HEAD_COLOR[h], label=f"{HEAD_LABEL[h]} {name}")
            _gauss(ax, g["mu_neg"], g["sigma_neg"], color=HEAD_COLOR[h], ls="--", label=f"{HEAD_LABEL[h]} non-{name}")
        ax.set_xlabel("x")
        ax.legend(fontsize=7)
        for k, s in enumerate(STATS):
            labels = [HEAD_LABEL[h] + ("" if runs[h] else "\n(not run)") for h in HEADS]
            _bars(axes[i][k + 1], labels, [vals[h][s] if h in vals else math.nan for h in HEADS],
                  [HEAD_COLOR[h] for h in HEADS], f"{s} ('{name}', test)")
    fig.suptitle("Fig. 5: Gaussians of x (solid: the class's own feature x_c; dashed: imposter features) and "
                 "compactness / separability / ratio, WRN, test set")
    return _save(fig, out_dir / "fig5_gaussians_cifar.png")


# --------------------------------------------------------------------------- Figs. 6 and 7


def _per_class(grid: Grid, out_dir: Path, ds: str, n_classes: int | None, number: int) -> Path:
    runs = {h: first_run(grid, WRN[ds][h]) for h in HEADS}
    fig, axes = plt.subplots(3, 2, figsize=(15, 10), squeeze=False, layout="constrained")
    ref = next((r for r in runs.values() if r), None)
    names = list(ref.get("class_names") or []) if ref else []
    m = min(n_classes or len(names), len(names))
    width = 0.8 / len(HEADS)
    for j, split in enumerate(("train", "test")):
        for i, s in enumerate(STATS):
            ax = axes[i][j]
            ax.set_title(f"{s}, {split} set", fontsize=10)
            drawn = False
            for k, h in enumerate(HEADS):
                res = runs[h]
                v = stat(res, split, s)[:m] if res else np.array([])
                if v.size == 0:
                    continue
                ax.bar(np.arange(v.size) + (k - 1) * width, np.nan_to_num(v), width, color=HEAD_COLOR[h],
                       label=f"{HEAD_LABEL[h]} ({_run_label(res)})")
                drawn = True
            if not drawn:
                why = "not run" if ref is None else f"no {split}-set statistics in results.json"
                _not_run(ax, why)
                continue
            ax.set_xticks(np.arange(m))
            ax.set_xticklabels(names[:m], rotation=45, ha="right", fontsize=7)
            ax.legend(fontsize=7)
    missing = [WRN[ds][h] for h in HEADS if runs[h] is None]
    sub = f" (not run: {', '.join(missing)})" if missing else ""
    first = f"first {m} classes" if n_classes else "each class"
    fig.suptitle(f"Fig. {number}: {DATASET_LABEL[ds]}, WRN: compactness, separability, ratio per class ({first}){sub}")
    return _save(fig, out_dir / f"fig{number}_per_class_{ds}.png")


def fig6(grid: Grid, out_dir: Path) -> Path:
    return _per_class(grid, out_dir, "cifar10", None, 6)


def fig7(grid: Grid, out_dir: Path) -> Path:
    return _per_class(grid, out_dir, "cifar100", 10, 7)


# --------------------------------------------------------------------------- Figs. 4 and 8


def fig4(grid: Grid, out_dir: Path) -> Path:
    soft, gs = first_run(grid, COCO_SOFTMAX), first_run(grid, COCO_GSOFTMAX)
    runs = {"softmax": soft, "gsoftmax": gs}
    ref = soft or gs
    ref_text = paper.FIGURES[4].values
    wanted = list(ref_text["classes"])
    classes: list[tuple[str, int]] = []
    for name in wanted:
        c = class_index(ref, name, None)
        if c is not None:
            classes.append((name, c))
    if len(classes) < 2:  # other label sets (fixtures): the first classes with positives
        counts = stat(ref, "test", "count_pos")
        for c in np.flatnonzero(counts > 1)[: 2 - len(classes)]:
            classes.append(((ref.get("class_names") or [str(c)])[c], int(c)))
    n = max(len(classes), 1)
    fig, axes = plt.subplots(n, 6, figsize=(24, 4 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [1.3, 1.3, 1.3, 0.7, 0.7, 0.7]}, layout="constrained")
    outs = {h: (load_outputs(r) if r else None) for h, r in runs.items()}
    for i, (name, c) in enumerate(classes):
        for j, h in enumerate(("softmax", "gsoftmax")):
            ax = axes[i][j]
            ax.set_title(f"'{name}': ResNet-101 {HEAD_LABEL[h]}", fontsize=10)
            if outs[h] is None:
                _not_run(ax, f"not run: {COCO_SOFTMAX if h == 'softmax' else COCO_GSOFTMAX}")
                continue
            if not _scatter(ax, outs[h], c, name, True):
                continue
            ax.set_title(f"'{name}': ResNet-101 {HEAD_LABEL[h]} ({_run_label(runs[h])})", fontsize=10)
            ax.set_xlabel("x⁺")
            ax.set_ylabel("p")
            ax.legend(fontsize=7)
        ax = axes[i][2]
        ax.set_title(f"'{name}': fitted Gaussians of x⁺ (test)", fontsize=10)
        vals = {}
        for h, res in runs.items():
            if res is None:
                continue
            g = {k: _at(stat(res, "test", k), c) for k in ("mu_pos", "sigma_pos", "mu_neg", "sigma_neg", *STATS)}
            vals[h] = g
            _gauss(ax, g["mu_pos"], g["sigma_pos"], color=HEAD_COLOR[h], label=f"{HEAD_LABEL[h]} {name}")
            _gauss(ax, g["mu_neg"], g["sigma_neg"], color=HEAD_COLOR[h], ls="--", label=f"{HEAD_LABEL[h]} non-{name}")
        ax.legend(fontsize=7)
        for k, s in enumerate(STATS):
            said = (ref_text.get(s) or {}).get(name) if isinstance(ref_text.get(s), dict) else None
            title = f"{s}" + (f"\npaper: {said['softmax']} vs {said['gsoftmax']}" if said else "")
            heads = ("softmax", "gsoftmax")
            _bars(axes[i][3 + k], [HEAD_LABEL[h] for h in heads], [vals[h][s] if h in vals else math.nan for h in heads],
                  [HEAD_COLOR[h] for h in heads], title)
    fig.suptitle("Fig. 4: MS COCO, x⁺ vs p (images with the label: blue, without: red), Gaussians and "
                 f"compactness / separability / ratio; G-softmax run: {COCO_GSOFTMAX}")
    return _save(fig, out_dir / "fig4_coco_classes.png")


def fig8(grid: Grid, out_dir: Path) -> Path:
    names = [COCO_SOFTMAX, *paper.GSOFTMAX_GRID["coco"]]
    rows = {e: first_run(grid, e) for e in names}
    label = {COCO_SOFTMAX: "softmax"}
    for r in paper.TABLE3:
        if r.experiment in names and r.mu is not None:
            label[r.experiment] = f"G({r.mu:g},{r.sigma:g})"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), squeeze=False, layout="constrained")
    ref = paper.FIGURES[8].values
    for k, s in enumerate(STATS):
        ax = axes[0][k]
        values, labels, colors = [], [], []
        for e in names:
            res = rows[e]
            v = stat(res, "test", s) if res else np.array([])
            v = v[np.isfinite(v)]
            values.append(float(v.mean()) if v.size else math.nan)
            labels.append(label[e] + ("" if res else "\n(not run)"))
            colors.append(HEAD_COLOR["softmax"] if e == COCO_SOFTMAX else HEAD_COLOR["gsoftmax"])
        _bars(ax, labels, values, colors, f"average {s} over classes (test)")
        said = ref.get(s)
        if isinstance(said, dict):
            ax.axhline(said["softmax"], color=HEAD_COLOR["softmax"], ls=":", lw=1, label=f"paper softmax {said['softmax']}")
            ax.axhline(said["gsoftmax"], color=HEAD_COLOR["gsoftmax"], ls=":", lw=1, label=f"paper G-softmax {said['gsoftmax']}")
            ax.legend(fontsize=7)
    fig.suptitle("Fig. 8: MS COCO, compactness / separability / ratio averaged over the classes with positives "
                 "(dotted: the paper's values)")
    return _save(fig, out_dir / "fig8_coco_averages.png")


FIGURES = {3: fig3, 4: fig4, 5: fig5, 6: fig6, 7: fig7, 8: fig8}


def make_figures(grid: Grid, out_dir: Path, which: tuple[int, ...] = (3, 4, 5, 6, 7, 8)) -> list[Path]:
    """Draw the figures in ``which`` whose runs exist under the grid; say which are skipped and why."""
    written = []
    for number in which:
        if not all(e in grid.rows for e in FIGURE_EXPERIMENTS[number]):
            raise KeyError(f"figure {number} needs {FIGURE_EXPERIMENTS[number]} in the grid")
        if not _any_run(grid, number):
            print(f"gsm-tables: figure {number} skipped: none of its runs exist ({', '.join(FIGURE_EXPERIMENTS[number])})")
            continue
        written.append(FIGURES[number](grid, Path(out_dir)))
    return written
