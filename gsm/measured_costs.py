"""What each table cost where it was measured, as data: the planning figure of ``make estimate`` without a GPU.

``gsm-tables tableN --estimate`` on a machine without a GPU cannot probe the full profile's models (hours and many
GB on a CPU). It prints instead the GPU-hours that ``make estimate`` measured for the table on a named device, on a
named date, with a named torch (these values; docs/cost.md shows the same measurements), and the command that
measures them on the user's own GPU. A table that was never measured says so. A new measurement is a new entry
here and a line in docs/cost.md (``tests/test_estimate_plan.py`` checks that the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableCost:
    """One table's measured cost: ``gpu_hours`` for its ``runs`` runs, one seed each, one after another on one GPU."""

    table: int
    runs: int
    gpu_hours: float
    device: str
    torch: str
    date: str  # ISO date of the measurement
    settings: str  # precision and memory format the probe ran with
    per_run: str  # the hours per run of each model, as measured
    conditions: str  # what the figure does and does not include


H100 = "one NVIDIA H100 80GB"

MEASURED: dict[int, TableCost] = {
    1: TableCost(
        table=1, runs=24, gpu_hours=76.7, device=H100, torch="2.11", date="2026-11-27",
        settings="bf16 autocast, channels_last",
        per_run="VGG-16 0.26-0.36 h, DenseNet-100-24 5.0-7.8 h, WRN-40-14 1.27-1.30 h, *WRN (1,100 epochs) 4.67-4.77 h",
        conditions=("test-set evaluation every epoch, process start-up not included; the recipes now evaluate every "
                    "5 epochs, which the same GPU measured at 1.3 % of WRN-40-14's training time against 5.6 % for "
                    "every epoch"),
    ),
    3: TableCost(
        table=3, runs=7, gpu_hours=4.66, device=H100, torch="2.11", date="2026-11-27",
        settings="bf16 autocast, channels_last", per_run="softmax 0.58 h, each G-softmax run 0.68 h",
        conditions="evaluation every 4 epochs, as the recipe",
    ),
}
"""Table number -> its measured cost (Tables II and IV have not been measured on a GPU; V and VI train nothing)."""
