"""Multi-label metrics at the test sets' sizes: gsm.metrics against sklearn's per-class loop.

    .venv/bin/python scripts/bench_metrics.py [--device cpu|cuda] [--repeats 3]

Shapes: MS COCO val2014 (40,137 images × 80 classes) and NUS-WIDE test (≈ 108k × 81). Scores are
float32 probabilities rounded to 4 decimals, so many are tied (sklearn's one threshold per distinct
score is what both sides must agree on). Prints the best of ``--repeats`` wall times, the ratio, the
largest |AP difference| and the start-up cost of ``import gsm.metrics``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from gsm.metrics import multilabel_metrics

SHAPES = {"MS COCO val2014": (40_137, 80), "NUS-WIDE test": (107_859, 81)}


def synthetic(n: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sparse labels (≈ 3 % positive, one class without positives), informative tied scores."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, m)) < 0.03).astype(np.int64)
    targets[:, -1] = 0
    logits = rng.normal(size=(n, m)) + 2.0 * targets
    scores = np.round(1.0 / (1.0 + np.exp(-logits)), 4).astype(np.float32)
    return scores, targets


def sklearn_ap(scores: np.ndarray, targets: np.ndarray) -> list[float]:
    return [average_precision_score(targets[:, c], scores[:, c]) for c in range(targets.shape[1]) if targets[:, c].any()]


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def import_seconds(module: str) -> float:
    """Cumulative import time of ``module`` (python -X importtime), in a fresh interpreter."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                         capture_output=True, text=True, check=True).stderr
    last = [line for line in err.splitlines() if line.rstrip().endswith(f"| {module}")][-1]
    return int(last.split("|")[1]) / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"torch threads: {torch.get_num_threads()}, device: {device}")
    print(f"import gsm.metrics: {import_seconds('gsm.metrics'):.2f} s (cumulative, includes torch)")
    print("| test set | N × m | gsm.metrics s | sklearn loop s | ratio | max |ΔAP| | ΔmAP |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, (n, m) in SHAPES.items():
        scores, targets = synthetic(n, m)
        s_t, t_t = torch.from_numpy(scores).to(device), torch.from_numpy(targets).to(device)

        def ours():
            out = multilabel_metrics(s_t, t_t)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return out

        ours()  # warm-up (CUDA context, kernels)
        t_ours, got = best_of(ours, args.repeats)
        t_ref, ref = best_of(lambda: sklearn_ap(scores, targets), args.repeats)
        got_ap = [v for v in got["AP"] if v is not None]
        diff = max(abs(a - b) for a, b in zip(got_ap, ref))
        print(f"| {name} | {n:,} × {m} | {t_ours:.3f} | {t_ref:.3f} | {t_ours / t_ref:.2f} | {diff:.1e} "
              f"| {abs(got['mAP'] - float(np.mean(ref))):.1e} |")


if __name__ == "__main__":
    main()
