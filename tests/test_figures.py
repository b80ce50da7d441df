"""Figures 3–8 from synthetic run records (results.json + test_outputs.pt): PNG (>= 200 dpi), PDF and a
caption file each, log scales where values span decades and every axis label naming its scale, one legend
per figure that covers no panel, labelled empty panels, no warnings (run these tests with ``-W error``). The
smoke profile's watermark on the image: tests/test_tables.py::test_smoke_table3_and_figures_from_its_runs."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image
from synthetic_runs import empirical_block, write_run

from gsm import figures, paper
from gsm.grid import Grid
from gsm.reproduce import main

ALL = sorted({r.experiment for f in figures.FIGURES for r in paper.figure_rows(f)})
STEMS = ["fig3_x_vs_p_cifar", "fig4_coco_classes", "fig5_gaussians_cifar", "fig6_per_class_cifar10",
         "fig7_per_class_cifar100", "fig8_coco_averages"]


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _check(written, stem) -> str:
    png, pdf, txt = (p for p in written if p.stem == stem)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 1000 and im.size[1] > 600
        dpi = im.info.get("dpi", (0, 0))[0]
        assert dpi >= 199, dpi
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 2_000
    caption = txt.read_text()
    number = int(stem[3])
    assert caption.startswith(f"Figure {number}. ") and "Fig. " not in caption
    return caption


@pytest.mark.slow
def test_all_figures_from_runs(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    rng = np.random.default_rng(0)
    for exp in ALL:
        if exp == "table1/wrn_cifar100_lsoftmax":
            continue  # a missing run: its panels are labelled empty, the figures are still drawn
        fields = {}
        if exp == "table1/wrn_cifar10_gsoftmax":  # Fig. 6's ratio spans 7 decades: a log axis
            block = empirical_block(10, rng)
            block["ratio"] = [10.0 ** k for k in range(10)]
            fields["empirical"] = {"test": block, "train": empirical_block(10, rng)}
        write_run(runs, exp, 0, outputs=True, rng=rng, n_test=200 if "cifar" in exp else 80, **fields)
    grid = Grid(ALL, "full", runs)
    scales = {}
    real_save = figures._save

    def spy(fig, out_dir, stem, number, caption, mark=None):
        scales[stem] = [(ax.get_title(), ax.get_yscale()) for ax in fig.axes]
        scales[stem + ":texts"] = [t.get_text().replace("\n", " ") for ax in fig.axes for t in ax.texts]
        scales[stem + ":suptitle"] = fig._suptitle.get_text() if fig._suptitle else ""
        assert mark is None  # the full profile: no watermark
        paths = real_save(fig, out_dir, stem, number, caption, mark)
        scales[stem + ":layout"] = _layout(fig)  # as saved: laid out by the PNG's drawing, kept for the PDF
        return paths

    monkeypatch.setattr(figures, "_save", spy)
    written = figures.make_figures(grid, tmp_path / "figs")
    assert sorted({p.stem for p in written}) == STEMS and len(written) == 3 * len(STEMS)
    for stem in STEMS:
        caption = _check(written, stem)
        assert "Fig." not in scales[stem + ":suptitle"]
    assert "Not run: table1/wrn_cifar100_lsoftmax" in (tmp_path / "figs" / "fig3_x_vs_p_cifar.txt").read_text()
    assert any("not run: table1/wrn_cifar100_lsoftmax" in t for t in scales["fig3_x_vs_p_cifar:texts"])
    assert ("ratio, test set", "log") in scales["fig6_per_class_cifar10"]
    assert ("compactness, test set", "linear") in scales["fig6_per_class_cifar10"]
    fig4_titles = [t for t, _ in scales["fig4_coco_classes"]]
    assert len(fig4_titles) == 8 and fig4_titles[0].startswith("'cow'") and fig4_titles[4].startswith("'baseball bat'")
    for stem in STEMS:
        layout = scales[stem + ":layout"]
        assert layout["figure legends"] == 1 and layout["axes legends"] == 0, (stem, layout)
        assert not layout["legend covers"], (stem, layout["legend covers"])
        assert layout["axis labels"] and all(label.endswith(f"({scale} scale)") for label, scale in layout["axis labels"]), \
            (stem, layout["axis labels"])
    fig6_labels = dict(scales["fig6_per_class_cifar10:layout"]["axis labels"])
    assert fig6_labels["ratio (log scale)"] == "log" and fig6_labels["compactness (linear scale)"] == "linear"
    # Fig. 4's black ticks (the paper's values) are explained on the figure itself, not only in the caption
    assert "black tick: the value the paper states" in scales["fig4_coco_classes:layout"]["legend texts"]
    assert any(t.startswith("softmax") for t in scales["fig5_gaussians_cifar:layout"]["legend texts"])


def _layout(fig) -> dict:
    """What a reader sees of a saved figure's legends and axes: figure and axes legends, which panels the figure
    legend overlaps (extents as drawn), the legend's texts, and every numeric axis label with its axis's scale."""
    legends = list(fig.legends)
    boxes = [leg.get_window_extent() for leg in legends]
    covers = [ax.get_title() for ax in fig.axes for b in boxes if b.overlaps(ax.get_window_extent())]
    labels = [(ax.get_ylabel(), ax.get_yscale()) for ax in fig.axes if ax.get_ylabel()]
    labels += [(ax.get_xlabel(), ax.get_xscale()) for ax in fig.axes if ax.get_xlabel()]
    return {"figure legends": len(legends), "axes legends": sum(ax.get_legend() is not None for ax in fig.axes),
            "legend covers": covers, "legend texts": [t.get_text() for leg in legends for t in leg.get_texts()],
            "axis labels": labels}


def test_fig3_cifar100_imposters_are_the_first_ten_classes(tmp_path):
    runs = tmp_path / "runs"
    rng = np.random.default_rng(3)
    write_run(runs, "table1/wrn_cifar100_softmax", 0, outputs=True, rng=rng, n_test=300)
    grid = Grid(ALL, "full", runs)
    fig, ax = plt.subplots()
    rec = figures.first_run(grid, "table1/wrn_cifar100_softmax")
    out = figures.load_outputs(rec)
    assert figures._scatter(ax, out, 1, "aquarium_fish", False, first=10)
    imposters, own = ax.collections
    n_own = int((out.targets == 1).sum())
    assert len(own.get_offsets()) == n_own and len(imposters.get_offsets()) == 9 * n_own
    plt.close(fig)


def test_auto_scale_only_beyond_two_decades():
    fig, ax = plt.subplots()
    figures.auto_scale(ax, [1.0, 50.0, np.nan])
    assert ax.get_yscale() == "linear"
    figures.auto_scale(ax, [0.5, 6e6])
    assert ax.get_yscale() == "log"
    fig2, ax2 = plt.subplots()
    figures.auto_scale(ax2, [-1.0, 1e4])
    assert ax2.get_yscale() == "symlog"
    plt.close(fig)
    plt.close(fig2)


def test_figure_without_any_run_is_skipped_and_said(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "table3/resnet101_coco_softmax", 0, outputs=True)
    grid = Grid(ALL, "full", runs)
    written = figures.make_figures(grid, tmp_path / "figs", (3, 5, 6, 7, 8))
    assert sorted({p.stem for p in written}) == ["fig8_coco_averages"]
    out = capsys.readouterr().out
    for n in (3, 5, 6, 7):
        assert f"figure {n} skipped" in out
    caption = _check(written, "fig8_coco_averages")
    assert "Not run: table3/resnet101_coco_gsoftmax_mu0_sigma1" in caption


@pytest.mark.slow
def test_figures_subcommand_and_table_commands_draw_their_figures(tmp_path, monkeypatch):
    """The CLI wiring: which figures each command asks for (drawing itself is tested above)."""
    asked = []

    def fake(number):
        def draw(grid, out_dir):
            asked.append(number)
            path = out_dir / f"fig{number}.png"
            out_dir.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"png")
            return [path]
        return draw

    monkeypatch.setattr(figures, "FIGURES", {n: fake(n) for n in figures.FIGURES})
    runs = tmp_path / "runs"
    write_run(runs, "table1/wrn_cifar10_softmax", 0)
    write_run(runs, "table3/resnet101_coco_softmax", 0)
    assert main(["figures", "--runs", str(runs), "--figures-out", str(tmp_path / "f")]) == 0
    assert asked == [3, 4, 5, 6, 8]  # Fig. 7 (CIFAR-100) has no run: skipped
    asked.clear()
    assert main(["table1", "--runs", str(runs), "--out", str(tmp_path / "t"), "--figures-out", str(tmp_path / "f2"),
                 "--no-run"]) == 0
    assert asked == [3, 5, 6] and (tmp_path / "t" / "table1.md").exists()
    asked.clear()
    assert main(["table3", "--runs", str(runs), "--out", str(tmp_path / "t"), "--figures-out", str(tmp_path / "f2"),
                 "--no-run"]) == 0
    assert asked == [4, 8]


def test_smoke_fixtures_hold_the_classes_the_figures_plot(tmp_path):
    """The smoke profile's fixtures contain Fig. 3/7's CIFAR-100 classes and Fig. 4's COCO categories."""
    import collections

    from gsm.data.fixtures import make_cifar100, make_coco
    from gsm.profiles import PROFILES

    sizes = PROFILES["smoke"].fixture_sizes
    gt = make_cifar100(tmp_path / "c100", **sizes["cifar100"])
    first10 = gt["class_names"][:10]
    assert figures.FIG3_CLASS["cifar100"] == ("aquarium_fish", first10.index("aquarium_fish"))
    for split in ("train", "test"):
        counts = collections.Counter(gt[f"{split}_labels"])
        assert set(counts) == set(first10) and min(counts.values()) >= 2  # a std per class needs two images
        assert len(gt[f"{split}_labels"]) <= 48  # dataset.subset=48 keeps them all
    coco = make_coco(tmp_path / "coco", **sizes["coco"])
    for split in ("train", "val"):
        counts = collections.Counter(c for r in coco[split] for c in r["categories"])
        for name in paper.FIGURES[4].values["classes"]:
            assert counts[name] >= 3, (split, name)
        assert coco[split][-1]["categories"] == []  # the unlabelled-image trap is kept
    with pytest.raises(ValueError, match="not COCO categories"):
        make_coco(tmp_path / "x", ensure_classes=["unicorn"])


# --------------------------------------------------------------------------- damaged test_outputs.pt


class _Payload:
    """A pickle that would create ``marker`` if unpickled without the safe loader (a stand-in for malicious code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _damage(kind: str, path, donor, marker) -> str:
    """Damage ``path`` (a valid test_outputs.pt) as ``kind``; returns what the warning must say."""
    import torch

    data = path.read_bytes()
    if kind == "random":
        path.write_bytes(np.random.default_rng(1).bytes(4096))
        return "not a torch file, truncated or corrupt"
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
        return "not a torch file, truncated or corrupt"
    if kind == "empty":
        path.write_bytes(b"")
        return "empty file"
    if kind == "foreign":  # a torch file of another structure (e.g. a state dict)
        torch.save({"weight": torch.zeros(3, 3), "bias": torch.zeros(3)}, path)
        return "not test outputs: no x, p, targets (keys: weight, bias)"
    if kind == "code":
        torch.save(_Payload(marker), path)
        return "which the safe loader refuses (not test outputs written by gsm; nothing in it was executed)"
    if kind == "other_run":  # another run's outputs copied in: 10 classes where the run has 100
        path.write_bytes(donor.read_bytes())
        return "outputs of 10 classes, but the run has 100"
    raise ValueError(kind)


def _save_unrendered(fig, out_dir, stem, number, caption, mark=None):
    """figures._save without the rendering: the three files named as _save names them, the figure closed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.{ext}" for ext in ("png", "pdf", "txt")]
    for path in paths[:2]:
        path.write_bytes(b"")
    paths[2].write_text(f"Figure {number}. {caption}\n")
    plt.close(fig)
    return paths


def test_a_run_without_test_outputs_gets_a_labelled_empty_panel_and_no_warning(tmp_path, monkeypatch, capsys):
    """A finished run whose folder has no test_outputs.pt (deleted, or copied without it) is not damaged: its
    x-vs-p panel says so, the other run's panel is drawn, and nothing is printed."""
    runs = tmp_path / "runs"
    rng = np.random.default_rng(1)
    write_run(runs, "table1/wrn_cifar10_softmax", 0, outputs=True, rng=rng, n_test=80)
    bare = write_run(runs, "table1/wrn_cifar10_gsoftmax", 0, outputs=False)
    assert not (bare.parent / "test_outputs.pt").exists()
    texts = {}

    def spy(fig, out_dir, stem, number, caption, mark=None):
        texts.update({ax.get_title(): ([t.get_text().replace("\n", " ") for t in ax.texts], len(ax.collections))
                      for ax in fig.axes})
        return _save_unrendered(fig, out_dir, stem, number, caption)

    monkeypatch.setattr(figures, "_save", spy)
    figures.make_figures(Grid(ALL, "full", runs), tmp_path / "figs", (3,))
    assert texts["CIFAR-10: WRN G-softmax"] == (["no test_outputs.pt in the run folder"], 0)
    assert texts["CIFAR-10: WRN softmax"][1] == 2  # own points and imposters
    assert capsys.readouterr().err == ""


FIG3_DAMAGE = {"table1/wrn_cifar10_softmax": "random", "table1/wrn_cifar10_lsoftmax": "truncated",
               "table1/wrn_cifar100_softmax": "empty", "table1/wrn_cifar100_lsoftmax": "foreign",
               "table1/wrn_cifar100_gsoftmax": "other_run", "table3/resnet101_coco_gsoftmax_mu0_sigma1": "code"}


@pytest.mark.slow
def test_damaged_test_outputs_are_skipped_with_one_warning_each(tmp_path, monkeypatch, capsys):
    """gsm-tables figures and table1 on runs whose test_outputs.pt is random bytes, truncated, empty, another torch
    structure, another run's, or a pickle that would run code: exit 0, one warning line per damaged file naming it
    and what is wrong, every figure written, the intact runs' panels drawn, the damaged ones labelled, nothing run.
    Figs. 3 and 4 (the two that read test_outputs.pt) are rendered to PNG and PDF; the other four are laid out and
    saved without rendering (their drawing is test_all_figures_from_runs's subject), and table1's second pass
    renders none: its subject is the warnings."""
    runs = tmp_path / "runs"
    rng = np.random.default_rng(0)
    outputs = {}
    for exp in ALL:  # the COCO softmax run keeps a file written before test_outputs.pt had a schema_version
        rec = write_run(runs, exp, 0, outputs="legacy" if exp == "table3/resnet101_coco_softmax" else True, rng=rng,
                        n_test=120 if "cifar" in exp else 80)
        outputs[exp] = rec.parent / "test_outputs.pt"
    marker = tmp_path / "EXECUTED"
    expected = {exp: _damage(kind, outputs[exp], outputs["table1/wrn_cifar10_gsoftmax"], marker)
                for exp, kind in FIG3_DAMAGE.items()}
    texts = {}
    real_save = figures._save

    def spy(fig, out_dir, stem, number, caption, mark=None):
        texts[stem] = {ax.get_title(): ([t.get_text().replace("\n", " ") for t in ax.texts], len(ax.collections))
                       for ax in fig.axes}
        if number in (3, 4):
            return real_save(fig, out_dir, stem, number, caption, mark)
        return _save_unrendered(fig, out_dir, stem, number, caption)

    monkeypatch.setattr(figures, "_save", spy)
    capsys.readouterr()
    assert main(["figures", "--runs", str(runs), "--figures-out", str(tmp_path / "figs")]) == 0
    out, err = capsys.readouterr()
    warnings_ = [ln for ln in err.splitlines() if ln.strip()]
    assert len(warnings_) == len(FIG3_DAMAGE), err  # one line per damaged file, nothing else (no traceback)
    for exp, why in expected.items():
        (hit,) = [ln for ln in warnings_ if str(outputs[exp]) in ln]
        assert hit.startswith(f"gsm-tables: warning: skipped {outputs[exp]}: ") and why in hit, hit
    assert not marker.exists()  # the pickle's code never ran
    written = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert written == sorted(f"{s}.{e}" for s in STEMS for e in ("png", "pdf", "txt"))  # every figure drawn
    for stem in STEMS:
        if stem.startswith(("fig3", "fig4")):
            _check([tmp_path / "figs" / f"{stem}.{e}" for e in ("png", "pdf", "txt")], stem)
        assert f"{stem}.png" in out
    fig3 = texts["fig3_x_vs_p_cifar"]
    assert fig3["CIFAR-10: WRN G-softmax"][1] == 2  # the intact run: own points and imposters
    for title in ("CIFAR-10: WRN softmax", "CIFAR-100: WRN L-softmax"):
        labels, scatters = fig3[title]
        assert scatters == 0 and any(t.startswith("test_outputs.pt skipped:") for t in labels), (title, labels)
    fig4 = texts["fig4_coco_classes"]
    assert fig4["'cow': softmax"][1] == 2  # the file without schema_version (today's) still reads
    assert fig4["'cow': G-softmax"][1] == 0
    caption3 = (tmp_path / "figs" / "fig3_x_vs_p_cifar.txt").read_text()
    assert "Damaged test_outputs.pt skipped (x-vs-p panels left empty): " in caption3
    assert all(e in caption3.split("Damaged")[1] for e in expected if e.startswith("table1/"))
    assert "table3/resnet101_coco_gsoftmax_mu0_sigma1" in (tmp_path / "figs" / "fig4_coco_classes.txt").read_text()
    # gsm-tables table1 draws Figs. 3, 5, 6, 7 with the table: the same warnings (its CIFAR runs), table and figures written
    monkeypatch.setattr(figures, "_save", _save_unrendered)
    assert main(["table1", "--no-run", "--runs", str(runs), "--out", str(tmp_path / "t"),
                 "--figures-out", str(tmp_path / "f1")]) == 0
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if "test_outputs.pt" in ln] == \
        [ln for ln in warnings_ if "table3" not in ln and "coco" not in ln]
    assert (tmp_path / "t" / "table1.md").exists()
    assert {p.stem for p in (tmp_path / "f1").glob("*.png")} == {"fig3_x_vs_p_cifar", "fig5_gaussians_cifar",
                                                                 "fig6_per_class_cifar10", "fig7_per_class_cifar100"}


@pytest.mark.slow
def test_figures_cli_process_on_a_truncated_file(tmp_path):
    """python -m gsm.reproduce figures, as a user runs it: exit 0, one warning line naming the file, no traceback."""
    import subprocess
    import sys

    runs = tmp_path / "runs"
    # a COCO run: its two figures (4, 8) are the cheapest to draw of any run's
    path = write_run(runs, "table3/resnet101_coco_softmax", 0, outputs=True, n_test=80).parent / "test_outputs.pt"
    path.write_bytes(path.read_bytes()[:300])
    proc = subprocess.run([sys.executable, "-m", "gsm.reproduce", "figures", "--runs", str(runs), "--figures-out",
                           str(tmp_path / "figs")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"gsm-tables: warning: skipped {path}: not a torch file, truncated or corrupt (RuntimeError: PytorchStreamReader "
        f"failed reading zip archive: failed finding central directory); this run's x-vs-p panels are drawn empty"]
    assert {p.stem for p in (tmp_path / "figs").glob("*.pdf")} == {"fig4_coco_classes", "fig8_coco_averages"}


@pytest.mark.slow
def test_class_names_with_dollar_signs_are_drawn_literally(tmp_path):
    """A class name from a record is text, not matplotlib mathtext ('$\\frac{' would fail the drawing)."""
    runs = tmp_path / "runs"
    names = ["$\\frac{", *[f"c{i}$" for i in range(1, 10)]]
    write_run(runs, "table1/wrn_cifar10_gsoftmax", 0, outputs=True, n_test=80, class_names=names)
    written = figures.make_figures(Grid(ALL, "full", runs), tmp_path / "figs", (3, 6))
    assert {p.stem for p in written} == {"fig3_x_vs_p_cifar", "fig6_per_class_cifar10"}
