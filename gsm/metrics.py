"""Evaluation metrics with the paper's conventions (eqs. 21, 22; docs/paper-notes.md).

* ``top1_error``: fraction of test images whose argmax logit is not the label.
* ``multilabel_metrics``: AP (eq. 21, non-interpolated = sklearn
  ``average_precision_score``: one threshold per distinct score) per class and
  mAP over classes that have a positive; CP, CR, CF1, OP, OR, OF1 (eq. 22) with
  prediction = score ≥ threshold on P(i) = sigmoid(s). A class with no
  predicted image has precision 0, a class with no positive has recall 0
  (C = all classes, as eq. 22 writes), and CF1/OF1 are harmonic means of the
  averaged P and R.

Beside these, the definitions the authors' release evaluates with (luoyan407/gsoftmax
``eval/evaluate.m``), which produced the paper's table numbers:

* ``mAP_voc`` / ``AP_voc`` (``voc_average_precision``): evaluate.m:20 calls
  ``AP_VOC(labels, probs)``, whose file (eval/tools/AP_VOC.m) is not in the release; it
  is taken to be the PASCAL VOC2012 devkit's classification AP (VOCevalcls.m + VOCap.m):
  rank the images by a *stable* sort of −score (ties keep their input order, so tied
  scores are not pooled as in eq. 21), then the area under the precision/recall curve
  with precision made monotone from the right ("interpolated" AP). Mean over the
  classes that have a positive, like ``mAP``.
* ``CF1_mean``: evaluate.m:21 takes per-class ``[P_C, R_C, F1_C]`` and :24 reports
  ``mean(F1_C)``: the mean over all C classes of the per-class F1 = 2PR/(P+R) (0 where
  P+R = 0), with the per-class P and R of eq. 22 above. The paper's C-F1 column follows
  this per-class mean: it is not the harmonic mean of its C-P and C-R (``CF1``, eq. 22).
  O-F1 is the same in both (evaluate.m:22 pools all image-label pairs).

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


def voc_average_precision(scores: Tensor, targets: Tensor) -> Tensor:
    """Per-class VOC2012 AP of (N, m) scores, float64 (m,), NaN for classes without a positive.

    The PASCAL VOC2012 devkit's classification AP (VOCevalcls.m + VOCap.m), which the authors'
    eval/evaluate.m:20 reports as mAP: rank by a stable descending sort of the scores (ties in input
    order), precision P_k = TP_k / k and recall R_k = TP_k / n_pos after the k-th image, precision
    made non-increasing from the right (P̂_k = max_{j ≥ k} P_j, VOCap's backward loop), and
    AP = Σ (R_k − R_{k−1}) P̂_k over the k where the recall changes: the positive images, each a step
    of 1/n_pos, so AP = Σ_{positive k} P̂_k / n_pos.
    One sort of every column at once, then a cumsum and a reversed running max; no loop.
    Scores must be finite.
    """
    _check(scores, targets)
    ranked = _voc_ranked_targets(scores.detach(), targets.detach())  # (m, N) 0/1
    m, n = ranked.shape
    tp = ranked.cumsum(1)
    precision = tp / torch.arange(1, n + 1, dtype=torch.float64, device=tp.device)
    interpolated = _reverse_cummax(precision)  # column n−1−k holds max_{j ≥ k} precision
    rows, cols = ranked.nonzero(as_tuple=True)  # the positives: there the recall steps up by 1 / n_pos
    summed = torch.zeros(m, dtype=torch.float64, device=tp.device)
    summed.index_add_(0, rows, interpolated[rows, n - 1 - cols])
    n_pos = tp[:, -1]
    ap = summed / n_pos.clamp_min(1)
    return torch.where(n_pos > 0, ap, torch.full_like(ap, math.nan))


def _sorted_columns(scores: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Each column of ``scores`` sorted ascending, as an (m, N) tensor, and its targets in that order.

    Scores that are exactly float32 sort as one int64 key per entry, ``order-preserving bits << 1 |
    target``: a value sort with no permutation (NumPy's on the CPU, several times faster than
    ``torch.sort`` there). Other scores (float64 beyond float32's precision) take an argsort.
    """
    scores = _float32_if_exact(scores)
    if scores.dtype != torch.float32:
        _check_finite(scores, "average_precision")
        s = scores.double().t()
        order = torch.from_numpy(s.numpy().argsort(axis=1)) if s.device.type == "cpu" else s.argsort(dim=1)
        return s.gather(1, order), targets.t().bool().gather(1, order)
    key = _columns_as_int64(_sortable_bits(scores))
    key <<= 1
    key |= targets.t().bool()
    key = _sort_rows(key)
    _check_finite_bits(key[:, 0].min() >> 1, key[:, -1].max() >> 1, "average_precision")
    return key >> 1, key & 1


def _voc_ranked_targets(scores: Tensor, targets: Tensor) -> Tensor:
    """(m, N) int64 0/1: each column's targets in VOCevalcls.m's order ``[~,si] = sort(-confidence)``.

    MATLAB's sort is stable: descending score, tied scores in their input order. Scores that are
    exactly float32 sort as one int64 key per entry, ``reversed order-preserving bits << 32 | input
    index << 1 | target`` (distinct keys, so any sort gives the stable order; NumPy's on the CPU).
    Other scores take a stable argsort.
    """
    scores = _float32_if_exact(scores)
    n = scores.shape[0]
    if scores.dtype != torch.float32 or n >= 2**31:
        _check_finite(scores, "voc_average_precision")
        s = scores.double().t().neg() + 0.0  # −score ascending; + 0.0 turns −0.0 into +0.0 (a tie)
        if s.device.type == "cpu":
            order = torch.from_numpy(s.numpy().argsort(axis=1, kind="stable"))
        else:
            order = s.sort(dim=1, stable=True).indices
        return targets.t().bool().long().gather(1, order)
    key = _columns_as_int64(_sortable_bits(scores).bitwise_not_())  # ~: descending score first
    key <<= 32
    key |= torch.arange(n, device=key.device) << 1
    key |= targets.t().bool()
    key = _sort_rows(key)
    _check_finite_bits(~(key[:, -1] >> 32).max(), ~(key[:, 0] >> 32).min(), "voc_average_precision")
    return key & 1


_FLOAT32_INF_BITS = 0x7F800000  # +inf as int32; NaN bit patterns lie beyond ±inf in the sortable keys


def _float32_if_exact(scores: Tensor) -> Tensor:
    """``scores`` as float32 when that is lossless (also float16/bfloat16 and integer scores)."""
    if scores.dtype != torch.float32 and torch.equal(scores.float().to(scores.dtype), scores):
        return scores.float()
    return scores


def _sortable_bits(scores: Tensor) -> Tensor:
    """int32 bits of float32 ``scores`` whose integer order is the scores' order (−0.0 ties with 0.0)."""
    bits = (scores + 0.0).view(torch.int32)  # a new tensor; + 0.0 turns −0.0 into +0.0 (a tie, as in sklearn)
    bits ^= (bits >> 31) & 0x7FFFFFFF  # negative floats: reverse the order of their magnitude bits
    return bits


def _columns_as_int64(bits: Tensor) -> Tensor:
    """The (N, m) ``bits`` as an (m, N) int64 tensor: one column per row."""
    key = torch.empty(bits.shape[::-1], dtype=torch.int64, device=bits.device)
    key.copy_(bits.t())
    return key


def _sort_rows(key: Tensor) -> Tensor:
    if key.device.type == "cpu":
        key.numpy().sort(axis=1)  # in place, on the tensor's memory
        return key
    return key.sort(dim=1).values


def _check_finite_bits(lo: Tensor, hi: Tensor, name: str) -> None:
    """``lo``/``hi``: the smallest/largest sortable bits of the scores (one read of two extremes)."""
    if not bool((lo > -_FLOAT32_INF_BITS - 1) & (hi < _FLOAT32_INF_BITS)):
        raise ValueError(f"{name}: scores must be finite (no NaN or inf)")


def _check_finite(scores: Tensor, name: str) -> None:
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"{name}: scores must be finite (no NaN or inf)")


def _reverse_cummax(x: Tensor) -> Tensor:
    """Running maximum of each row of ``x`` from its end, returned with the rows reversed.

    (NumPy's accumulate on the CPU: ``torch.cummax`` there is ten times slower.)
    """
    r = x.flip(1)
    if r.device.type == "cpu":
        np.maximum.accumulate(r.numpy(), axis=1, out=r.numpy())
        return r
    return r.cummax(dim=1).values


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _check(scores: Tensor, targets: Tensor) -> None:
    if scores.shape != targets.shape or scores.dim() != 2 or scores.shape[0] == 0:
        raise ValueError(f"multilabel_metrics: scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must be equal (N>0, m)")


def thresholded_metrics(scores: Tensor, targets: Tensor, threshold: float = 0.5, top_k: int | None = None) -> dict:
    """CP, CR, CF1, OP, OR, OF1 (eq. 22) and CF1_mean only — no ranking, so no AP (cheap; the top-3
    variant uses it).

    ``CF1_mean`` is the authors' C-F1 (eval/evaluate.m:21, :24 ``mean(F1_C)``): the mean over all
    classes of the per-class F1 = 2PR/(P+R) of the per-class P and R below, 0 where P+R = 0.
    """
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
    per_class_f1 = (2 * per_class_p * per_class_r / (per_class_p + per_class_r)).nan_to_num(0.0)  # 0/0: F1 = 0
    totals = torch.stack([per_class_p.mean(), per_class_r.mean(), per_class_f1.mean(),
                          n_correct.sum(), n_pred.sum(), n_gt.sum()])
    cp, cr, cf1_mean, correct, predicted, positives = totals.tolist()  # one read from the device
    op = correct / predicted if predicted > 0 else 0.0
    orr = correct / positives if positives > 0 else 0.0
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": orr, "OF1": _f1(op, orr), "CF1_mean": cf1_mean}


def multilabel_metrics(scores: Tensor, targets: Tensor, threshold: float = 0.5, top_k: int | None = None) -> dict:
    """mAP, CP, CR, CF1, OP, OR, OF1, CF1_mean, mAP_voc (fractions), per-class ``AP`` and ``AP_voc``.

    ``mAP_voc``/``AP_voc``: VOC2012 AP (``voc_average_precision``), the mean over the same classes
    as ``mAP`` (those with a positive); a class without a positive has ``None`` in both lists.

    ``scores`` are probabilities P(i) (sigmoid of the head's logits); with
    ``top_k`` (the paper's top-3 variant) an image predicts at most its k
    highest-scoring labels, each still ≥ threshold.
    """
    counts = thresholded_metrics(scores, targets, threshold, top_k)
    ap, voc = average_precision(scores, targets), voc_average_precision(scores, targets)
    m = ap.shape[0]
    # means over the classes with a positive; one read from the device
    values = torch.cat([ap, ap.nanmean()[None], voc, voc.nanmean()[None]]).tolist()
    per_class, mean_ap, per_class_voc, mean_voc = values[:m], values[m], values[m + 1:-1], values[-1]
    return {
        "mAP": mean_ap,
        **counts,
        "AP": [None if math.isnan(v) else v for v in per_class],
        "classes_without_positives": [c for c, v in enumerate(per_class) if math.isnan(v)],
        "mAP_voc": mean_voc,
        "AP_voc": [None if math.isnan(v) else v for v in per_class_voc],
    }
