"""Does the CPU kernel choice change a run's numbers, and what does pinning it cost? (docs/development.md)

Trains the same short digits run (G-softmax, 2 epochs, 300 images) once per setting of the CPU kernel choice:
this CPU's best (nothing set), ATen pinned to AVX2 or to the x86-64 baseline, and ATen + oneDNN + MKL all pinned.
Prints each run's test loss, the largest difference of its test-set fc outputs x from the unpinned run's, and its
training seconds. Usage: python scripts/bench_cpu_isa.py [OUT_DIR]   (about a minute a run on 2 cores)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
SETTINGS = {
    "this CPU's best": {},
    "ATen avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "ATen default": {"ATEN_CPU_CAPABILITY": "default"},
    "all avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"},
    "all baseline": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE"},
    "all baseline, again": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE"},
}
RUN = ["dataset=digits", "head=gsoftmax", "trainer.epochs=2", "dataset.subset=300", "trainer.analyze_train=false",
       "trainer.progress=false"]


def main(out: Path) -> None:
    print(f"torch {torch.__version__}, this CPU's kernels: {torch.backends.cpu.get_cpu_capability()}, "
          f"{os.cpu_count()} CPUs\n")
    print("| setting | test loss | max abs diff of x from the first | training s |")
    print("|---|---|---:|---:|")
    first = None
    for k, (name, env) in enumerate(SETTINGS.items()):
        root = out / f"run{k}"
        subprocess.run([sys.executable, str(REPO / "train.py"), f"output_root={root}", *RUN], cwd=REPO, check=True,
                       env={**os.environ, **env}, capture_output=True)
        record = next(root.rglob("results.json"))
        result = json.loads(record.read_text())
        x = torch.load(record.with_name("test_outputs.pt"), weights_only=True)["x"].double()
        first = x if first is None else first
        print(f"| {name} | {result['test_loss']!r} | {(x - first).abs().max().item():.3g} | "
              f"{result['train_time_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("outputs/bench_cpu_isa"))
