"""The estimate without a GPU (the measured planning figure), the disk a run writes, and readable numbers
(gsm.estimate_plan, gsm.measured_costs)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gsm import estimate, paper
from gsm.estimate_plan import disk_bytes, duration_text, hours_text, size_text
from gsm.measured_costs import MEASURED

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(estimate.torch.cuda, "is_available", lambda: False)


@pytest.mark.slow
def test_table1_without_a_gpu_prints_its_measured_hours_with_device_date_and_torch(no_gpu, capsys):
    assert estimate.run_estimate(paper.experiments(1), "full", [], "basic") == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert "VGG-16" in first and "DenseNet-100-24" in first and "WRN-40-14" in first
    assert "ResNet" not in out and "448" not in out  # Table I has no ResNet-101
    assert "table1: 76.7 GPU-hours for its 24 runs" in out
    assert "one NVIDIA H100 80GB" in out and "torch 2.11" in out and "2026-11-27" in out
    assert "make estimate TABLE=table1 on the GPU machine" in out
    disk = [ln for ln in out.splitlines() if ln.startswith("| table1/")]
    assert len(disk) == 24
    # WRN-40-14 holds ~55 M parameters: its checkpoint (weights + momentum, float32) is ~0.9 GB, VGG-16's ~0.12 GB
    wrn = next(ln for ln in disk if ln.startswith("| table1/wrn_cifar10_softmax "))
    assert re.search(r"\| 8\d\d MB \|", wrn), wrn
    assert "total disk: 12.6 GB for 24 run(s)" in out


@pytest.mark.slow
def test_table3_names_its_resnet_and_an_unmeasured_table_says_so(no_gpu, capsys):
    estimate.run_estimate(paper.experiments(3), "full", [], "basic")
    out = capsys.readouterr().out
    assert "ResNet-101 at 448x448" in out.splitlines()[0] and "table3: 4.66 GPU-hours for its 7 runs" in out
    estimate.run_estimate(paper.experiments(2), "full", [], "basic")
    out = capsys.readouterr().out
    assert "table2: no GPU measurement is stored" in out and "make estimate TABLE=table2" in out
    assert "ResNet-101 at 224x224" in out and "ResNet-101 at 64x64" in out


def test_the_stored_measurements_are_those_docs_cost_md_shows():
    text = (REPO / "docs" / "cost.md").read_text()
    assert "**one NVIDIA H100 80GB, torch 2.11, bf16 autocast, channels_last, on\n2026-11-27**" in text
    for number, label in ((1, "I (CIFAR)"), (3, "III (MS COCO)")):
        cost = MEASURED[number]
        row = next(ln for ln in text.splitlines() if ln.startswith(f"| {label} |"))
        assert f"| {cost.runs} | **{cost.gpu_hours:g}**" in row, row
        assert (cost.device, cost.torch, cost.date, cost.settings) == (
            "one NVIDIA H100 80GB", "2.11", "2026-11-27", "bf16 autocast, channels_last")


@pytest.mark.slow
def test_disk_of_a_run_is_what_a_real_run_wrote(trained):
    run_dir = next(trained("tiny").rglob("results.json")).parent
    config = json.loads((run_dir / "results.json").read_text())["config"]
    d = disk_bytes(config)
    checkpoint = (run_dir / "checkpoints" / "last.pt").stat().st_size
    outputs = (run_dir / "test_outputs.pt").stat().st_size
    # the weights and momentum buffers are the file; what else it holds (RNG state, identity) is a few KB
    assert d["checkpoint"] <= checkpoint <= d["checkpoint"] * 1.1 + 65536, (d, checkpoint)
    assert d["outputs"] <= outputs <= d["outputs"] + 4096, (d, outputs)


def test_numbers_are_printed_readably():
    assert duration_text(0.0009253) == "3.3 s"
    assert duration_text(0.25) == "15.0 min" and duration_text(1.2734) == "1.27 h" and duration_text(1043.2) == "1,043 h"
    assert hours_text(0.0009253) == "0.00093" and hours_text(0.0123) == "0.012" and hours_text(4.66) == "4.66"
    assert hours_text(76.7) == "76.7" and hours_text(1043.2) == "1,043"
    assert "e" not in hours_text(3e-7)
    assert size_text(343_000_000) == "343 MB" and size_text(6_020_000) == "6.02 MB" and size_text(12.6e9) == "12.6 GB"
    assert size_text(512) == "512 B"


def test_the_peak_of_a_gpu_is_read_from_its_name_the_first_matching_entry_winning(monkeypatch):
    from gsm import estimate_plan

    cuda = estimate_plan.torch.device("cuda")
    names = iter(["NVIDIA H100 PCIe", "NVIDIA H100 80GB HBM3", "NVIDIA A10G", "Tesla K80"])
    monkeypatch.setattr(estimate_plan.torch.cuda, "get_device_name", lambda device: next(names))
    # "H100 PCIe" comes before "H100" in the table, "A10G" before "A10": the longer name decides
    assert estimate_plan.peak_flops(cuda, None) == (756e12, "756 TFLOP/s (bf16 dense, H100 PCIe)")
    assert estimate_plan.peak_flops(cuda, None) == (989e12, "989 TFLOP/s (bf16 dense, H100)")
    assert estimate_plan.peak_flops(cuda, None)[0] == 70e12
    assert estimate_plan.peak_flops(cuda, None) == (None, "unknown for Tesla K80 (pass --peak-tflops for an MFU)")
    # --peak-tflops wins over any name (and is all a CPU can have)
    assert estimate_plan.peak_flops(estimate_plan.torch.device("cpu"), 1.5) == (1.5e12, "1.5 TFLOP/s (--peak-tflops)")


def test_device_launcher_and_probe_size_mistakes_are_one_config_error_each(no_gpu, monkeypatch):
    from gsm import estimate_plan
    from gsm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--device cuda:1: no CUDA device is visible; use --device cpu or auto"):
        estimate_plan.choose_device("cuda:1")
    assert estimate_plan.choose_device("auto").type == "cpu"
    with pytest.raises(ConfigError, match=r"--launcher ray:two: the number after ':' must be a positive number"):
        estimate_plan.parallel_gpus("ray:two", [], 4)
    # Ray on this machine: one job per visible GPU (at least one), never more than the runs
    monkeypatch.setattr(estimate_plan.torch.cuda, "device_count", lambda: 3)
    assert estimate_plan.parallel_gpus("gsm_ray", [], 8)[0] == 3 and estimate_plan.parallel_gpus("ray", [], 2)[0] == 2
    monkeypatch.setattr(estimate_plan.torch.cuda, "device_count", lambda: 0)
    n, why = estimate_plan.parallel_gpus("ray", [], 8)
    assert n == 1 and "say ray:N for a cluster of N GPUs" in why
    with pytest.raises(ConfigError, match="at least one warm-up step, one timed step and one evaluation batch"):
        estimate.run_estimate(["table1/wrn_cifar10_softmax"], "smoke", [], "basic", device="cpu", steps=0)
    assert hours_text(0.0) == "0"
