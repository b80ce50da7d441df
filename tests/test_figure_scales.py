"""Figures a reviewer accepts: panels meant to be compared share their axis, probabilities span [0, 1], one scale
per quantity in a figure (log where it spans decades, said in the label), samples per class in the caption."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_runs import empirical_block, write_run

from gsm import figures, paper
from gsm.figure_parts import count_text, one_scale, scale_for
from gsm.grid import Grid

ALL = sorted({r.experiment for f in figures.FIGURES for r in paper.figure_rows(f)})


def _panels(fig) -> list[dict]:
    return [{"title": ax.get_title(), "yscale": ax.get_yscale(), "ylim": ax.get_ylim(), "xlim": ax.get_xlim(),
             "ylabel": ax.get_ylabel(), "xlabel": ax.get_xlabel(), "data": ax.has_data()} for ax in fig.axes]


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Every figure drawn from synthetic runs whose Fig. 6 test-set ratio spans 9 decades and whose train-set
    ratio does not: the panels (title, scales, ranges, labels) and the caption of each figure."""
    tmp = tmp_path_factory.mktemp("figs")
    rng = np.random.default_rng(0)
    for exp in ALL:
        fields = {}
        if exp == "table1/wrn_cifar10_gsoftmax":
            block = empirical_block(10, rng)
            block["ratio"] = [10.0 ** k for k in range(10)]
            fields["empirical"] = {"test": block, "train": empirical_block(10, rng)}
        if exp == "table3/resnet101_coco_gsoftmax_mu0_sigma5":  # one run's average ratio 1,000x the others'
            fields["empirical"] = {"test": empirical_block(80, rng, ratio=[5000.0] * 80)}
        write_run(tmp / "runs", exp, 0, outputs=True, rng=rng, n_test=200 if "cifar" in exp else 80, **fields)
    seen: dict[str, dict] = {}
    real = figures._save

    def spy(fig, out_dir, stem, number, caption, mark=None):
        seen[stem] = {"panels": _panels(fig), "caption": caption}
        return real(fig, out_dir, stem, number, caption, mark)

    mp = pytest.MonkeyPatch()
    mp.setattr(figures, "_save", spy)
    try:
        figures.make_figures(Grid(ALL, "full", tmp / "runs"), tmp / "out")
    finally:
        mp.undo()
    return seen


@pytest.mark.slow
def test_fig3_heads_share_x_within_a_dataset_and_p_spans_0_to_1(drawn):
    panels = drawn["fig3_x_vs_p_cifar"]["panels"]
    for row in (panels[:3], panels[3:]):
        shown = [p for p in row if p["data"]]
        assert len({p["xlim"] for p in shown}) == 1, [p["xlim"] for p in shown]
    for p in panels:
        if p["data"]:
            assert p["ylim"][0] <= 0 and p["ylim"][1] >= 1 and p["ylim"][1] - p["ylim"][0] < 1.1
    assert "Samples per class: CIFAR-10 'airplane' " in drawn["fig3_x_vs_p_cifar"]["caption"]


@pytest.mark.slow
def test_fig4_probabilities_on_0_1_and_one_scale_for_both_statistics_panels(drawn):
    panels = drawn["fig4_coco_classes"]["panels"]
    scatters = [panels[i] for i in (0, 1, 4, 5)]
    assert all(p["ylim"][0] <= 0 and p["ylim"][1] >= 1 for p in scatters)
    assert panels[0]["xlim"] == panels[1]["xlim"] and panels[4]["xlim"] == panels[5]["xlim"]
    stats = [panels[3], panels[7]]
    assert stats[0]["yscale"] == stats[1]["yscale"] and stats[0]["ylim"] == stats[1]["ylim"]
    caption = drawn["fig4_coco_classes"]["caption"]
    assert "Samples per class: 'cow' " in caption and " test images" in caption


@pytest.mark.slow
def test_figs_6_and_7_give_a_statistic_one_scale_and_range_on_both_sets(drawn):
    for stem in ("fig6_per_class_cifar10", "fig7_per_class_cifar100"):
        panels = drawn[stem]["panels"]
        for train, test in zip(panels[0::2], panels[1::2]):  # (3 x 2 grid): a statistic's train and test panel
            assert train["yscale"] == test["yscale"] and train["ylim"] == test["ylim"], (stem, train, test)
            for p in (train, test):
                assert p["ylabel"].endswith(f"({p['yscale']} scale)")
        assert "Samples per class: train set " in drawn[stem]["caption"]
    fig6 = {p["title"]: p for p in drawn["fig6_per_class_cifar10"]["panels"]}
    # the test-set ratio spans 9 decades: both ratio panels are log, though the training set's alone would not be
    assert fig6["ratio, train set"]["yscale"] == fig6["ratio, test set"]["yscale"] == "log"
    assert fig6["compactness, train set"]["yscale"] == "linear"


@pytest.mark.slow
def test_fig8_one_scale_for_its_three_statistics_and_fig5_per_statistic(drawn):
    fig8 = drawn["fig8_coco_averages"]
    assert {p["yscale"] for p in fig8["panels"]} == {"log"}  # one run's ratio is 1,000x: the figure goes log
    assert "one scale (log)" in fig8["caption"] and "Classes averaged: 80" in fig8["caption"]
    fig5 = drawn["fig5_gaussians_cifar"]["panels"]
    for k in (1, 2, 3):  # a statistic's CIFAR-10 and CIFAR-100 panels
        assert fig5[k]["yscale"] == fig5[k + 4]["yscale"] and fig5[k]["ylim"] == fig5[k + 4]["ylim"]


def test_scale_decisions_and_counts():
    assert scale_for([1.0, 50.0, np.nan]) == ("linear", None)
    assert scale_for([0.5, 6e6]) == ("log", None)
    assert scale_for([-1.0, 1e4]) == ("symlog", 1.0)
    assert count_text([10, 10, 10]) == "10" and count_text([3, 7, 5]) == "3–7" and count_text([np.nan]) == "unknown"

    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2)
    a.bar([0, 1], [1.0, 2.0])
    b.bar([0, 1], [1.0, 5e4])
    assert one_scale([a, b], [1.0, 2.0, 1.0, 5e4]) == "log"
    assert a.get_yscale() == b.get_yscale() == "log" and a.get_ylim() == b.get_ylim()
    plt.close(fig)
