"""Multi-label metrics at the test sets' sizes: gsm.metrics against sklearn's per-class loop.

    .venv/bin/python scripts/bench_metrics.py [--device cpu|cuda] [--repeats 7] [--threads N]

Shapes: MS COCO val2014 (40,137 images × 80 classes) and NUS-WIDE test (≈ 108k × 81). Scores are
float32 probabilities, either rounded to 4 decimals, so many are tied (sklearn's one threshold per
distinct score is what both sides must agree on), or unrounded (almost all distinct: the most runs of
tied scores to walk). gsm's side is the whole ``multilabel_metrics`` call (both AP definitions, the
thresholded counts, gsm's and the authors'); sklearn's side is ``average_precision_score`` per class
alone. The two are timed in turn (A B A B …) ``--repeats`` times; the table gives the median of each
and the median of the pairwise ratios (the machine is shared: medians, not minima), the largest |AP
difference| and the start-up cost of ``import gsm.metrics``.
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

CASES = {"MS COCO val2014, 4-decimal scores": (40_137, 80, 4), "MS COCO val2014, unrounded scores": (40_137, 80, None),
         "NUS-WIDE test, 4-decimal scores": (107_859, 81, 4)}


def synthetic(n: int, m: int, decimals: int | None = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sparse labels (≈ 3 % positive, one class without positives), informative scores (tied when rounded)."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, m)) < 0.03).astype(np.int64)
    targets[:, -1] = 0
    logits = rng.normal(size=(n, m)) + 2.0 * targets
    probs = 1.0 / (1.0 + np.exp(-logits))
    scores = (probs if decimals is None else np.round(probs, decimals)).astype(np.float32)
    return scores, targets


def sklearn_ap(scores: np.ndarray, targets: np.ndarray) -> list[float]:
    return [average_precision_score(targets[:, c], scores[:, c]) for c in range(targets.shape[1]) if targets[:, c].any()]


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def import_seconds(module: str) -> float:
    """Cumulative import time of ``module`` (python -X importtime), in a fresh interpreter."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                         capture_output=True, text=True, check=True).stderr
    last = [line for line in err.splitlines() if line.rstrip().endswith(f"| {module}")][-1]
    return int(last.split("|")[1]) / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch threads: {torch.get_num_threads()}, device: {device}")
    print(f"import gsm.metrics: {import_seconds('gsm.metrics'):.2f} s (cumulative, includes torch)")
    print(f"| scores | N × m | gsm multilabel_metrics s | sklearn AP loop s | ratio (median of {args.repeats} pairs) "
          "| max |ΔAP| | ΔmAP |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, (n, m, decimals) in CASES.items():
        scores, targets = synthetic(n, m, decimals)
        s_t, t_t = torch.from_numpy(scores).to(device), torch.from_numpy(targets).to(device)

        def ours():
            out = multilabel_metrics(s_t, t_t)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return out

        ours()  # warm-up (CUDA context, kernels)
        mine, theirs = [], []
        for _ in range(args.repeats):
            t, got = timed(ours)
            mine.append(t)
            t, ref = timed(lambda: sklearn_ap(scores, targets))
            theirs.append(t)
        ratio = float(np.median(np.array(mine) / np.array(theirs)))
        got_ap = [v for v in got["AP"] if v is not None]
        diff = max(abs(a - b) for a, b in zip(got_ap, ref))
        print(f"| {name} | {n:,} × {m} | {np.median(mine):.3f} | {np.median(theirs):.3f} | {ratio:.2f} | {diff:.1e} "
              f"| {abs(got['mAP'] - float(np.mean(ref))):.1e} |", flush=True)


if __name__ == "__main__":
    main()
