"""Evaluation metrics with the paper's conventions (SPEC §4).

* ``top1_error``: fraction of test images whose argmax logit is not the label.
* ``multilabel_metrics``: AP (eq. 21, non-interpolated = sklearn
  ``average_precision_score``) per class and mAP over classes that have a
  positive; CP, CR, CF1, OP, OR, OF1 (eq. 22) with prediction = score ≥
  threshold on P(i) = sigmoid(s). A class with no predicted image has
  precision 0, a class with no positive has recall 0 (C = all classes, as eq. 22
  writes), and CF1/OF1 are harmonic means of the averaged P and R.

All inputs are whole-split tensors: the trainer gathers every batch (and every
DDP rank) before calling these, so nothing here loops over samples.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor
from torchmetrics.functional.classification import multilabel_average_precision


def top1_error(logits: Tensor, targets: Tensor) -> float:
    """Top-1 error as a fraction in [0, 1]."""
    if logits.shape[0] == 0:
        raise ValueError("top1_error: no samples")
    return (logits.argmax(dim=1) != targets).float().mean().item()


def topk_error(logits: Tensor, targets: Tensor, k: int = 5) -> float:
    topk = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return 1.0 - (topk == targets[:, None]).any(dim=1).float().mean().item()


def average_precision(scores: Tensor, targets: Tensor) -> Tensor:
    """Per-class AP (eq. 21), NaN for classes without a positive."""
    targets = targets.int()
    with warnings.catch_warnings():  # classes without positives: handled below (NaN, excluded from mAP)
        warnings.filterwarnings("ignore", message="No positive samples found in target")
        ap = multilabel_average_precision(scores.double(), targets, num_labels=scores.shape[1], average=None, thresholds=None)
    ap = ap.to(torch.float64)
    ap[targets.sum(0) == 0] = float("nan")
    return ap


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _check(scores: Tensor, targets: Tensor) -> None:
    if scores.shape != targets.shape or scores.dim() != 2 or scores.shape[0] == 0:
        raise ValueError(f"multilabel_metrics: scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must be equal (N>0, m)")


def thresholded_metrics(scores: Tensor, targets: Tensor, threshold: float = 0.5, top_k: int | None = None) -> dict:
    """CP, CR, CF1, OP, OR, OF1 (eq. 22) only — no ranking, so no AP (cheap; the top-3 variant uses it)."""
    _check(scores, targets)
    scores = scores.double()
    gt = targets.bool()
    pred = scores >= threshold
    if top_k is not None:
        keep = torch.zeros_like(pred)
        keep.scatter_(1, scores.topk(min(top_k, scores.shape[1]), dim=1).indices, True)
        pred &= keep
    n_correct = (pred & gt).sum(0).double()
    n_pred = pred.sum(0).double()
    n_gt = gt.sum(0).double()
    cp = torch.where(n_pred > 0, n_correct / n_pred.clamp_min(1), torch.zeros_like(n_pred)).mean().item()
    cr = torch.where(n_gt > 0, n_correct / n_gt.clamp_min(1), torch.zeros_like(n_gt)).mean().item()
    op = n_correct.sum().item() / n_pred.sum().item() if n_pred.sum() > 0 else 0.0
    orr = n_correct.sum().item() / n_gt.sum().item() if n_gt.sum() > 0 else 0.0
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": orr, "OF1": _f1(op, orr)}


def multilabel_metrics(scores: Tensor, targets: Tensor, threshold: float = 0.5, top_k: int | None = None) -> dict:
    """mAP, CP, CR, CF1, OP, OR, OF1 (fractions) and per-class ``AP``.

    ``scores`` are probabilities P(i) (sigmoid of the head's logits); with
    ``top_k`` (the paper's top-3 variant) an image predicts at most its k
    highest-scoring labels, each still ≥ threshold.
    """
    counts = thresholded_metrics(scores, targets, threshold, top_k)
    ap = average_precision(scores, targets)
    valid = ~torch.isnan(ap)
    return {
        "mAP": ap[valid].mean().item() if valid.any() else math.nan,
        **counts,
        "AP": [None if math.isnan(v) else v for v in ap.tolist()],
        "classes_without_positives": (~valid).nonzero().flatten().tolist(),
    }
