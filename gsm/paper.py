"""The paper's numbers, transcribed as data (Luo, Wong, Kankanhalli, Zhao, "G-softmax: Improving
Intra-class Compactness and Inter-class Separability of Features", IEEE TNNLS; the text is in
``paper/gsoftmax-paper.txt`` beside the SPEC).

Every number is as printed (percent for Tables I–IV, p-values and ρ for Tables V–VI), with the
table, figure or paragraph it comes from in ``source``. A row that corresponds to one of our
experiments names its config (``configs/experiment/<experiment>.yaml``); rows with
``experiment=None`` are the literature rows the paper quotes: reference only, never run here.

Transcription notes (also in docs/paper-notes.md):

* Table I, DSN G-softmax on CIFAR-10: the table prints 3.67, the text of Sec. IV says 3.70. We keep
  the table's value.
* Tables III/IV: the paper's C-F1 is not the harmonic mean of its C-P and C-R (e.g. ResNet-101 on
  COCO: 2·81.3·70.2/151.5 = 75.3, printed 74.1); it looks like the mean of per-class F1. O-F1 does
  match eq. 22. We compute C-F1 as eq. 22 writes (SPEC §4), so our C-F1 sits above a
  per-class-mean C-F1 by construction.
* Table III, G-softmax (μ = −0.1, σ = 1): C-R is printed 74.5, equal to its C-F1 and above every
  other row's C-R; it is very likely a typo, kept as printed.
* Table VI: with 5 G-softmax runs per dataset the printed (ρ, p) pairs are consistent with
  scipy's two-sided pearsonr on n = 5 (e.g. ρ = 0.9472 → p = 0.0144), so the correlation uses the
  five (μ, σ) grid rows of Table III / IV (not the empirical-init row of the text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

MULTILABEL_METRICS = ("CP", "CR", "CF1", "OP", "OR", "OF1", "mAP")
# Column headers as the paper prints them.
METRIC_LABELS = {"CP": "C-P", "CR": "C-R", "CF1": "C-F1", "OP": "O-P", "OR": "O-R", "OF1": "O-F1", "mAP": "mAP",
                 "top1_error": "top-1 error"}


@dataclass(frozen=True)
class PaperRow:
    """One row (one dataset column for Table I) of a paper table.

    ``paper`` maps our metric keys (``top1_error``, ``CP`` … ``mAP``, ``p``, ``rho``) to the printed
    value (None where the paper prints "-"). ``baseline`` names the experiment of the softmax row
    of the same block (the reference of paired tests); ``stat`` is the statistic of a Table VI row.
    """

    table: int
    label: str
    paper: Mapping[str, float | None]
    experiment: str | None = None
    dataset: str | None = None
    baseline: str | None = None
    block: str = ""
    epochs: int | None = None  # epochs the paper states for the row (Table I "# Epoch")
    source: str = ""
    note: str = ""
    stat: str | None = None
    mu: float | None = None
    sigma: float | None = None

    @property
    def reference_only(self) -> bool:
        return self.experiment is None and self.table in (1, 2, 3, 4)


# --------------------------------------------------------------------------- Table I

def _table1() -> list[PaperRow]:
    rows: list[PaperRow] = []
    lit = [("DSN [19]", 300, 3.46, 17.18), ("WRN [62]", 200, 3.80, 18.30), ("L-softmax [35]", 80, 5.92, 29.53)]
    for label, ep, c10, c100 in lit:
        for ds, v in (("cifar10", c10), ("cifar100", c100)):
            rows.append(PaperRow(1, label, {"top1_error": v}, dataset=ds, block="literature", epochs=ep,
                                 source="Table I", note="literature row, reference only"))
    ours = {  # block: (label prefix, config prefix, epochs, {head: (C10, C100)})
        "VGG": ("VGG", "vgg16", 300, {"softmax": (5.69, 25.07), "lsoftmax": (7.79, 32.89), "gsoftmax": (5.54, 24.92)}),
        "DSN": ("DSN", "densenet", 300, {"softmax": (3.77, 19.25), "lsoftmax": (4.84, 23.22), "gsoftmax": (3.67, 18.89)}),
        "WRN": ("WRN", "wrn", 300, {"softmax": (3.49, 17.66), "lsoftmax": (4.27, 20.53), "gsoftmax": (3.36, 17.41)}),
        "*WRN": ("*WRN", "wrn1100", 1100, {"softmax": (3.18, 17.60), "lsoftmax": (4.11, 20.45), "gsoftmax": (3.14, 17.04)}),
    }
    suffix = {"softmax": "", "lsoftmax": " L-softmax", "gsoftmax": " G-softmax"}
    for block, (prefix, cfg, ep, heads) in ours.items():
        for head, values in heads.items():
            for ds, v in zip(("cifar10", "cifar100"), values):
                note = ""
                if block == "DSN" and head == "gsoftmax" and ds == "cifar10":
                    note = "Sec. IV text says 3.70"
                if block == "*WRN":
                    note = "malleable learning rate, 1100 epochs"
                rows.append(PaperRow(
                    1, prefix + suffix[head], {"top1_error": v}, experiment=f"table1/{cfg}_{ds}_{head}", dataset=ds,
                    baseline=f"table1/{cfg}_{ds}_softmax", block=block, epochs=ep, source="Table I", note=note,
                ))
    return rows


# --------------------------------------------------------------------------- Table II

def _gname(v: float) -> str:
    """Config-name spelling of μ / σ: -0.05 → -0p05, 0.5 → 0p5, 1 → 1."""
    return ("-" if v < 0 else "") + f"{abs(v):g}".replace(".", "p")


def _table2() -> list[PaperRow]:
    rows = [PaperRow(2, label, {"top1_error": v}, source="Table II", block="literature", note="literature row, reference only")
            for label, v in (("Wide-ResNet [62]", 39.63), ("Wide-ResNet SE [18]", 32.90), ("DenseNet [19]", 39.09),
                             ("IGC-V2 [55]", 39.02), ("PyramidNet ShakeDrop [57]", 31.15))]
    base = "table2/resnet101_tiny_imagenet_softmax"
    rows.append(PaperRow(2, "ResNet-101 (input 64x64)", {"top1_error": 31.66}, experiment="table2/resnet101_tiny_imagenet64_softmax",
                         dataset="tiny_imagenet", block="64", source="Table II", note="input 64x64"))
    rows.append(PaperRow(2, "ResNet-101 (input 224x224)", {"top1_error": 18.36}, experiment=base, dataset="tiny_imagenet",
                         baseline=base, block="224", source="Table II"))
    rows.append(PaperRow(2, "ResNet-101 L-Softmax", {"top1_error": 17.57}, experiment="table2/resnet101_tiny_imagenet_lsoftmax",
                         dataset="tiny_imagenet", baseline=base, block="224", source="Table II"))
    for mu, sigma, v in ((-0.05, 1, 16.86), (0.05, 1, 16.95), (0, 1, 17.04), (0, 2, 17.29), (0, 3, 16.96)):
        rows.append(PaperRow(
            2, f"ResNet-101 G-Softmax (mu={mu:g}, sigma={sigma:g})", {"top1_error": v},
            experiment=f"table2/resnet101_tiny_imagenet_gsoftmax_mu{_gname(mu)}_sigma{_gname(sigma)}", dataset="tiny_imagenet",
            baseline=base, block="224", source="Table II", mu=mu, sigma=sigma,
        ))
    return rows


# --------------------------------------------------------------------------- Tables III and IV

def _ml(values: str) -> dict[str, float | None]:
    parts = values.split()
    assert len(parts) == len(MULTILABEL_METRICS), values
    return {k: (None if p == "-" else float(p)) for k, p in zip(MULTILABEL_METRICS, parts)}


COCO_GRID = ((0, 1), (0, 0.5), (0, 5), (-0.1, 1), (0.1, 1))
NUSWIDE_GRID = ((0, 1), (0, 2), (0, 3), (-0.05, 1), (0.05, 1))


def _table3() -> list[PaperRow]:
    lit = [
        ("VGG MCE [28]", "- - - - - - 70.2"), ("Weak sup (GMP) [40]", "- - - - - - 62.8"),
        ("CNN-RNN [52]", "66.0 55.6 60.4 69.2 66.4 67.8 -"), ("RGNN [67]", "- - - - - - 73.0"),
        ("WELDON [10]", "- - - - - - 68.8"), ("Multi-CNN [65]", "54.8 51.4 53.1 56.7 58.6 57.6 60.4"),
        ("CNN+LSTM [65]", "62.1 51.2 56.1 68.1 56.6 61.8 61.8"), ("MCG-CNN+LSTM [65]", "64.2 53.1 58.1 61.3 59.3 61.3 64.4"),
        ("RLSD [65]", "67.6 57.2 62.0 70.1 63.4 66.5 68.2"), ("Pairwise ranking [27]", "73.5 56.4 - 76.3 61.8 - -"),
        ("MIML-FCN [58]", "- - - - - - 66.2"), ("RDAR [54]", "79.1 58.7 67.4 84.0 63.0 72.0 72.2"),
        ("ResNet-101 (GAP, 224x224, bz 96, lr 1e-3) [69]", "80.8 63.4 69.5 82.2 68.0 74.4 75.2"),
        ("SRN [69]", "81.6 65.4 71.2 82.7 69.9 75.8 77.1"),
        ("ResNet-101 (GAP, 448x448, unknown bz and lr) [9]", "- - - - - - 72.5"), ("WILDCAT [9]", "- - - - - - 80.7"),
    ]
    rows = [PaperRow(3, label, _ml(v), dataset="coco", block="literature", source="Table III", note="literature row, reference only")
            for label, v in lit]
    base = "table3/resnet101_coco_softmax"
    rows.append(PaperRow(3, "ResNet-101 (GMP, 448x448, bz 16, lr 1e-5)", _ml("81.3 70.2 74.1 81.9 74.3 77.9 80.6"),
                         experiment=base, dataset="coco", baseline=base, block="ours", source="Table III"))
    printed = {(0, 1): "82.4 69.3 74.1 83.2 73.3 77.9 80.8", (0, 0.5): "82.7 69.3 74.0 83.5 72.9 77.8 81.1",
               (0, 5): "80.6 71.0 74.4 81.3 74.7 77.8 80.9", (-0.1, 1): "81.3 74.5 74.5 83.4 73.8 78.3 81.3",
               (0.1, 1): "83.2 68.6 73.7 84.3 72.3 77.9 81.1"}
    for mu, sigma in COCO_GRID:
        rows.append(PaperRow(
            3, f"ResNet-101 G-softmax w/ (mu={mu:g}, sigma={sigma:g})", _ml(printed[(mu, sigma)]),
            experiment=f"table3/resnet101_coco_gsoftmax_mu{_gname(mu)}_sigma{_gname(sigma)}", dataset="coco", baseline=base,
            block="ours", source="Table III", mu=mu, sigma=sigma,
            note="C-R printed 74.5 (= its C-F1; likely a typo)" if (mu, sigma) == (-0.1, 1) else "",
        ))
    rows.append(PaperRow(3, "ResNet-101 G-softmax, empirical (mu, sigma) init", _ml("- - - - - - 81.0"),
                         experiment="table3/resnet101_coco_gsoftmax_empirical", dataset="coco", baseline=base, block="ours",
                         source="Sec. IV text (Evaluations on MS COCO)", note="mAP only, from the text"))
    return rows


def _table4() -> list[PaperRow]:
    lit = [("LSEP [27]", "66.7 45.9 54.4 76.8 65.7 70.8 -"), ("Order-free RNN [2]", "59.4 50.7 54.7 69.0 71.4 70.2 -"),
           ("ResNet-101 [69]", "65.8 51.9 55.7 75.9 69.5 72.5 59.8")]
    rows = [PaperRow(4, label, _ml(v), dataset="nuswide", block="literature", source="Table IV", note="literature row, reference only")
            for label, v in lit]
    base = "table4/resnet101_nuswide_softmax"
    rows.append(PaperRow(4, "ResNet-101", _ml("62.0 56.3 56.9 74.7 71.4 73.0 59.9"), experiment=base, dataset="nuswide",
                         baseline=base, block="ours", source="Table IV"))
    printed = {(0, 1): "62.5 56.5 57.8 74.7 71.7 73.2 60.3", (0, 2): "62.3 56.0 57.2 74.9 71.3 73.0 60.3",
               (0, 3): "62.9 55.9 57.1 74.9 71.2 73.0 60.1", (-0.05, 1): "63.2 55.8 57.1 74.9 71.3 73.1 60.0",
               (0.05, 1): "62.0 55.9 57.3 74.9 71.4 73.1 60.4"}
    for mu, sigma in NUSWIDE_GRID:
        rows.append(PaperRow(
            4, f"ResNet-101 G-softmax (mu={mu:g}, sigma={sigma:g})", _ml(printed[(mu, sigma)]),
            experiment=f"table4/resnet101_nuswide_gsoftmax_mu{_gname(mu)}_sigma{_gname(sigma)}", dataset="nuswide",
            baseline=base, block="ours", source="Table IV", mu=mu, sigma=sigma,
        ))
    return rows


# --------------------------------------------------------------------------- Tables V and VI

def _table5() -> list[PaperRow]:
    rows = []
    for ds, table, grid, printed, base in (
        ("coco", 3, COCO_GRID, (0.9060, 0.0359, 0.0548, 0.0764, 0.3160), "table3/resnet101_coco_softmax"),
        ("nuswide", 4, NUSWIDE_GRID, (0.0049, 0.0001, 0.0098, 0.6773, 0.0131), "table4/resnet101_nuswide_softmax"),
    ):
        name = "resnet101_coco" if ds == "coco" else "resnet101_nuswide"
        for (mu, sigma), p in zip(grid, printed):
            rows.append(PaperRow(
                5, f"G-softmax({mu:g},{sigma:g})", {"p": p}, experiment=f"table{table}/{name}_gsoftmax_mu{_gname(mu)}_sigma{_gname(sigma)}",
                dataset=ds, baseline=base, source="Table V", mu=mu, sigma=sigma,
            ))
    return rows


def _table6() -> list[PaperRow]:
    printed = {"coco": {"compactness": (0.9472, 0.0144), "separability": (0.9791, 0.0036), "ratio": (0.9636, 0.0083)},
               "nuswide": {"compactness": (0.9635, 0.0083), "separability": (0.9045, 0.0349), "ratio": (0.9702, 0.0062)}}
    return [PaperRow(6, f"Correlation({stat}, AP)", {"rho": rho, "p": p}, dataset=ds, stat=stat, source="Table VI")
            for ds, by_stat in printed.items() for stat, (rho, p) in by_stat.items()]


TABLE1 = _table1()
TABLE2 = _table2()
TABLE3 = _table3()
TABLE4 = _table4()
TABLE5 = _table5()
TABLE6 = _table6()
TABLES: dict[int, list[PaperRow]] = {1: TABLE1, 2: TABLE2, 3: TABLE3, 4: TABLE4, 5: TABLE5, 6: TABLE6}

# Table VI correlates over the G-softmax (μ, σ) grid rows of Tables III / IV.
GSOFTMAX_GRID: dict[str, list[str]] = {
    "coco": [r.experiment for r in TABLE3 if r.mu is not None],
    "nuswide": [r.experiment for r in TABLE4 if r.mu is not None],
}
SOFTMAX_BASELINE = {"coco": "table3/resnet101_coco_softmax", "nuswide": "table4/resnet101_nuswide_softmax"}


def experiments(table: int) -> list[str]:
    """The experiment configs whose runs a table needs (Tables V and VI reuse the grids of III and IV)."""
    if table in (5, 6):
        names = [e for t in (3, 4) for e in experiments(t)]
        if table == 6:
            return [e for e in names if e in GSOFTMAX_GRID["coco"] + GSOFTMAX_GRID["nuswide"]]
        return [e for e in names if e in {r.experiment for r in TABLE5} | set(SOFTMAX_BASELINE.values())]
    seen: dict[str, None] = {}
    for row in TABLES[table]:
        if row.experiment:
            seen.setdefault(row.experiment)
    return list(seen)


# --------------------------------------------------------------------------- figures and text


@dataclass(frozen=True)
class FigureRef:
    """Values the paper states for a figure (in its caption or the text that discusses it)."""

    figure: int
    description: str
    values: Mapping[str, object] = field(default_factory=dict)
    source: str = ""


FIGURES: dict[int, FigureRef] = {
    3: FigureRef(3, "x vs p scatter, test images of one class, WRN softmax / L-softmax / G-softmax",
                 {"class": {"cifar10": "airplane", "cifar100": "aquarium_fish"},
                  "x_c_range": {"cifar10": {"gsoftmax": (0, 9), "softmax": (0, 11), "lsoftmax": (0, 24)},
                                "cifar100": {"gsoftmax": (0, 11), "softmax": (0, 15), "lsoftmax": (0, 14)}},
                  "gsoftmax_imposter_range": (-5, 0)},
                 "Fig. 3 caption; Sec. V text"),
    4: FigureRef(4, "MS COCO, categories 'cow' and 'baseball bat': x vs p, Gaussians, compactness/separability/ratio",
                 {"classes": ("cow", "baseball bat"),
                  "compactness": {"baseball bat": {"softmax": 2.1, "gsoftmax": 2.3}},
                  "separability": {"cow": {"softmax": 1.8, "gsoftmax": 4.3}}},
                 "Fig. 4 caption; Sec. V text"),
    5: FigureRef(5, "Gaussians of x and compactness/separability/ratio on the test set of Fig. 3",
                 {"class": {"cifar10": "airplane", "cifar100": "aquarium_fish"}}, "Fig. 5 caption"),
    6: FigureRef(6, "CIFAR-10 per-class compactness, separability, ratio (WRN), train and test", {}, "Fig. 6 caption"),
    7: FigureRef(7, "CIFAR-100 first 10 classes: compactness, separability, ratio (WRN), train and test",
                 {"classes": 10}, "Fig. 7 caption"),
    8: FigureRef(8, "MS COCO averages over the 80 categories, ResNet-101 vs ResNet-101 G-softmax",
                 {"compactness": {"softmax": 2.6, "gsoftmax": 2.8}, "separability": {"softmax": 4.2, "gsoftmax": 4.5},
                  "ratio": "G-softmax higher (no number printed)"},
                 "Fig. 8 caption; Sec. V text"),
}
