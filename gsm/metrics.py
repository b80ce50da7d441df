"""Evaluation metrics with the paper's conventions (eqs. 21, 22; docs/paper-notes.md).

* ``top1_error``: fraction of test images whose argmax logit is not the label.
* ``multilabel_metrics``: AP (eq. 21, non-interpolated = sklearn
  ``average_precision_score``: one threshold per distinct score) per class and
  mAP over classes that have a positive; CP, CR, CF1, OP, OR, OF1 (eq. 22) with
  prediction = score ≥ threshold on P(i) = sigmoid(s). A class with no
  predicted image has precision 0, a class with no positive has recall 0
  (C = all classes, as eq. 22 writes), and CF1/OF1 are harmonic means of the
  averaged P and R.

All inputs are whole-split tensors: the trainer gathers every batch (and every
DDP rank) before calling these, so nothing here loops over samples or classes.
Everything is torch on the inputs' device (a CUDA tensor is evaluated on the
GPU); only the final numbers are read to the host.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def top1_error(logits: Tensor, targets: Tensor) -> float:
    """Top-1 error as a fraction in [0, 1]."""
    if logits.shape[0] == 0:
        raise ValueError("top1_error: no samples")
    return (logits.argmax(dim=1) != targets).float().mean().item()


def topk_error(logits: Tensor, targets: Tensor, k: int = 5) -> float:
    topk = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return 1.0 - (topk == targets[:, None]).any(dim=1).float().mean().item()


def average_precision(scores: Tensor, targets: Tensor) -> Tensor:
    """Per-class AP (eq. 21) of (N, m) scores, float64 (m,), NaN for classes without a positive.

    Exactly sklearn's ``average_precision_score`` per column: AP = Σ_k (R_k − R_{k−1}) P_k with one
    threshold k per distinct score. Equivalently, each run of tied scores v contributes
    (positives in the run) × P(v) / (all positives), where P(v) = #positives ≥ v / #images ≥ v.
    One sort of every column at once, then prefix sums over the runs; no loop over classes.
    Scores must be finite (as sklearn requires).
    """
    _check(scores, targets)
    values, flags = _sorted_columns(scores.detach(), targets.detach())  # (m, N) ascending, targets in that order
    m, n = values.shape
    values, flags = values.reshape(-1), flags.reshape(-1)
    # starts of the runs of tied scores (each column starts a run) in the flattened m·N order
    is_start = torch.empty_like(values, dtype=torch.bool)
    torch.ne(values[1:], values[:-1], out=is_start[1:])
    is_start[::n] = True
    start = is_start.nonzero().squeeze(1)
    stop = torch.cat([start[1:], start.new_tensor([m * n])])  # a run ends where the next one starts
    column_end = (start // n + 1) * n
    cum = torch.zeros(m * n + 1, dtype=torch.int64, device=values.device)
    torch.cumsum(flags, 0, out=cum[1:])  # cum[b] − cum[a]: positives in [a, b)
    in_run = (cum[stop] - cum[start]).to(torch.float64)
    pos_at_or_above = (cum[column_end] - cum[start]).to(torch.float64)  # ascending: this run and after
    all_at_or_above = (column_end - start).to(torch.float64)
    summed = torch.zeros(m, dtype=torch.float64, device=values.device)
    summed.index_add_(0, start // n, in_run * pos_at_or_above / all_at_or_above)
    n_pos = cum[n::n] - cum[:-1:n]
    ap = summed / n_pos.clamp_min(1)
    return torch.where(n_pos > 0, ap, torch.full_like(ap, math.nan))


_FLOAT32_INF_BITS = 0x7F800000  # +inf as int32; NaN bit patterns lie beyond ±inf in the sortable keys


def _sorted_columns(scores: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Each column of ``scores`` sorted ascending, as an (m, N) tensor, and its targets in that order.

    Scores that are exactly float32 sort as one int64 key per entry, ``order-preserving bits << 1 |
    target``: a value sort with no permutation (NumPy's on the CPU, several times faster than
    ``torch.sort`` there). Other scores (float64 beyond float32's precision) take an argsort.
    """
    if scores.dtype != torch.float32 and torch.equal(scores.float().to(scores.dtype), scores):
        scores = scores.float()  # lossless (also float16/bfloat16 and integer scores)
    if scores.dtype != torch.float32:
        if not bool(torch.isfinite(scores).all()):
            raise ValueError("average_precision: scores must be finite (no NaN or inf)")
        s = scores.double().t()
        order = torch.from_numpy(s.numpy().argsort(axis=1)) if s.device.type == "cpu" else s.argsort(dim=1)
        return s.gather(1, order), targets.t().bool().gather(1, order)
    bits = (scores + 0.0).view(torch.int32)  # a new tensor; + 0.0 turns −0.0 into +0.0 (a tie, as in sklearn)
    bits ^= (bits >> 31) & 0x7FFFFFFF  # negative floats: reverse the order of their magnitude bits
    key = torch.empty(bits.shape[::-1], dtype=torch.int64, device=bits.device)
    key.copy_(bits.t())  # (m, N): one column per row
    key <<= 1
    key |= targets.t().bool()
    if key.device.type == "cpu":
        key.numpy().sort(axis=1)  # in place, on the tensor's memory
    else:
        key = key.sort(dim=1).values
    lo, hi = key[:, 0].min() >> 1, key[:, -1].max() >> 1
    if not bool((lo > -_FLOAT32_INF_BITS - 1) & (hi < _FLOAT32_INF_BITS)):  # one read of two extremes
        raise ValueError("average_precision: scores must be finite (no NaN or inf)")
    return key >> 1, key & 1


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _check(scores: Tensor, targets: Tensor) -> None:
    if scores.shape != targets.shape or scores.dim() != 2 or scores.shape[0] == 0:
        raise ValueError(f"multilabel_metrics: scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must be equal (N>0, m)")


def thresholded_metrics(scores: Tensor, targets: Tensor, threshold: float = 0.5, top_k: int | None = None) -> dict:
    """CP, CR, CF1, OP, OR, OF1 (eq. 22) only — no ranking, so no AP (cheap; the top-3 variant uses it)."""
    _check(scores, targets)
    gt = targets.bool()
    pred = scores >= threshold
    if top_k is not None:
        keep = torch.zeros_like(pred)
        keep.scatter_(1, scores.topk(min(top_k, scores.shape[1]), dim=1).indices, True)
        pred &= keep
    n_correct = (pred & gt).sum(0, dtype=torch.float64)
    n_pred = pred.sum(0, dtype=torch.float64)
    n_gt = gt.sum(0, dtype=torch.float64)
    zero = torch.zeros_like(n_pred)
    per_class_p = torch.where(n_pred > 0, n_correct / n_pred.clamp_min(1), zero)
    per_class_r = torch.where(n_gt > 0, n_correct / n_gt.clamp_min(1), zero)
    totals = torch.stack([per_class_p.mean(), per_class_r.mean(), n_correct.sum(), n_pred.sum(), n_gt.sum()])
    cp, cr, correct, predicted, positives = totals.tolist()  # one read from the device
    op = correct / predicted if predicted > 0 else 0.0
    orr = correct / positives if positives > 0 else 0.0
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": orr, "OF1": _f1(op, orr)}


def multilabel_metrics(scores: Tensor, targets: Tensor, threshold: float = 0.5, top_k: int | None = None) -> dict:
    """mAP, CP, CR, CF1, OP, OR, OF1 (fractions) and per-class ``AP``.

    ``scores`` are probabilities P(i) (sigmoid of the head's logits); with
    ``top_k`` (the paper's top-3 variant) an image predicts at most its k
    highest-scoring labels, each still ≥ threshold.
    """
    counts = thresholded_metrics(scores, targets, threshold, top_k)
    ap = average_precision(scores, targets)
    *per_class, mean_ap = torch.cat([ap, ap.nanmean()[None]]).tolist()  # mAP over classes with a positive
    return {
        "mAP": mean_ap,
        **counts,
        "AP": [None if math.isnan(v) else v for v in per_class],
        "classes_without_positives": [c for c, v in enumerate(per_class) if math.isnan(v)],
    }
