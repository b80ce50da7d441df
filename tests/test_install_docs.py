"""What the README promises a newcomer about installing: the CPU build of torch through ``make install
TORCH_INDEX=cpu`` (torch's CPU wheel index), and the snippet's comment on a multi-label head's outputs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _install_commands(*args: str) -> list[str]:
    """The commands ``make install`` would run on a fresh clone (make -n, the stamp taken as missing)."""
    out = subprocess.run(["make", "--no-print-directory", "-n", "-B", ".venv/.installed-stamp", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [ln for ln in out.stdout.splitlines() if "pip install" in ln]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_torch_index_cpu_installs_the_pinned_torch_from_torch_s_cpu_index():
    cpu = _install_commands("TORCH_INDEX=cpu")
    torch_line = next(ln for ln in cpu if "torch==" in ln)
    assert f"--index-url {CPU_INDEX} torch==2.14.1 torchvision==0.29.1" in torch_line
    assert not any("--index-url" in ln for ln in cpu if "torch==" not in ln)  # gsm and its extras: the usual index
    default = next(ln for ln in _install_commands() if "torch==" in ln)
    assert "--index-url" not in default and "torch==2.14.1" in default
    mirror = next(ln for ln in _install_commands("TORCH_INDEX=https://example.org/simple") if "torch==" in ln)
    assert "--index-url https://example.org/simple torch==2.14.1" in mirror


def test_readme_names_the_cpu_install_and_its_weight():
    text = (REPO / "README.md").read_text()
    assert "make install TORCH_INDEX=cpu" in text and f"--index-url {CPU_INDEX}" in text
    assert "6.3 GB" in text and "3.2 GB are NVIDIA's CUDA libraries" in text
    assert "TORCH_INDEX ?=" in (REPO / "Makefile").read_text()


def test_the_snippet_s_comment_on_multilabel_outputs_is_what_the_head_does():
    from gsm.heads import GSoftmaxHead

    head = GSoftmaxHead(512, num_classes=10, multilabel=True)
    assert head(torch.randn(4, 512)).shape == (4, 10) and head.fc.out_features == 20
    assert "multilabel=True: m labels, (N, m) logits from a 2m-output fc" in (REPO / "README.md").read_text()


def test_the_demo_spread_and_the_pinning_decision_are_documented_with_the_script_that_measured_them():
    import sys

    readme, dev = (" ".join((REPO / f).read_text().split()) for f in ("README.md", "docs/development.md"))
    for numbers in ("0.89 / 2.00 / 0.89 %", "66.94 / 80.68 %", "0.22 / 1.56 / 0.22 %", "66.79 / 80.64 %"):
        assert numbers in readme and numbers in dev
    assert "docs/development.md#demo-numbers-across-cpus" in readme and "## Demo numbers across CPUs" in dev
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import bench_cpu_isa
    finally:
        sys.path.remove(str(REPO / "scripts"))
    pinned = bench_cpu_isa.SETTINGS["all baseline"]
    assert " ".join(f"{k}={v}" for k, v in pinned.items()) in dev  # the row the decision rests on
