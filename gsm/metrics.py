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
``eval/evaluate.m`` with ``eval/tools/AP_VOC.m`` and ``eval/tools/precision_recall_f1.m``), which
produced the paper's table numbers (docs/recipes.md cites the lines):

* ``mAP_voc`` / ``AP_voc`` (``voc_average_precision``): AP_VOC.m, the PASCAL VOC2012 devkit's
  interpolated AP: rank the images by MATLAB's stable descending sort (tied scores keep their input
  order, so ties are not pooled as in eq. 21), then the area under the precision/recall curve with
  precision made monotone from the right. ``mAP_voc``: mean over the classes that have a positive,
  like ``mAP``. ``mAP_authors``: evaluate.m:24's plain ``mean`` over all classes, NaN when a class
  has no positive (AP_VOC divides by its zero positives).
* ``CF1_mean``: the mean over all C classes of the per-class F1 = 2PR/(P+R) (0 where P+R = 0), with
  the per-class P and R of eq. 22 above. The paper's C-F1 column follows this per-class mean: it is
  not the harmonic mean of its C-P and C-R (``CF1``, eq. 22).
* ``CP_authors``, ``CR_authors``, ``CF1_authors``, ``OP_authors``, ``OR_authors``, ``OF1_authors``:
  precision_recall_f1.m adds MATLAB's eps to every count, so a class never predicted has P = 1 and a
  class without a positive R ≈ 1 (gsm: 0 for both); C-* are plain means over all classes of the
  per-class values, O-* pool all image-label pairs (``authors_precision_recall_f1``).

Both APs come from one sort of every column (``both_average_precisions``).

All inputs are whole-split tensors: the trainer gathers every batch (and every
DDP rank) before calling these, so nothing here loops over samples or classes.
Everything is torch on the inputs' device (a CUDA tensor is evaluated on the
GPU); only the final numbers are read to the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
    threshold k per distinct score. Equivalently, each run of tied scores contributes (positives in the
    run) × P(run) / (all positives), where P(run) = #positives ≥ its score / #images ≥ its score.
    Scores must be finite (as sklearn requires). See :func:`both_average_precisions`.
    """
    return both_average_precisions(scores, targets, "average_precision")[0]


def voc_average_precision(scores: Tensor, targets: Tensor) -> Tensor:
    """Per-class VOC2012 AP of (N, m) scores, float64 (m,), NaN for classes without a positive.

    The authors' eval/tools/AP_VOC.m (the PASCAL VOC2012 devkit's VOCap), which eval/evaluate.m:20
    reports as mAP: rank by MATLAB's stable descending sort of the scores (``sort(out, 'descend')``,
    tied scores in input order), precision P_k = TP_k / k and recall R_k = TP_k / n_pos after the
    k-th image, precision made non-increasing from the right (P̂_k = max_{j ≥ k} P_j, VOCap's backward
    loop) and AP = Σ (R_k − R_{k−1}) P̂_k over the k where the recall changes: the positive images,
    each a step of 1/n_pos, so AP = Σ_{positive k} P̂_k / n_pos. Scores must be finite.
    """
    return both_average_precisions(scores, targets, "voc_average_precision")[1]


def both_average_precisions(scores: Tensor, targets: Tensor, name: str = "multilabel_metrics") -> tuple[Tensor, Tensor]:
    """(eq. 21 AP, VOC2012 AP) per class, float64 (m,) each, NaN for classes without a positive.

    One sort of every column at once ranks the images as AP_VOC.m does (descending score, ties in
    input order); both definitions are then read at the positives alone (a few per cent of the
    entries), no loop over classes:

    * VOC: the interpolated precision P̂ at a positive is the largest precision at it or at a later
      positive (between two positives the precision only falls), so a running maximum from the right
      over each class's positives gives it.
    * eq. 21: each positive counts the precision at the end of its run of tied scores, TP(e) / e,
      which pools the run whatever the order inside it; e and TP(e) are two binary searches (the run's
      last entry among the sorted keys, and among the sorted keys of the positives).
    """
    _check(scores, targets)
    key, flags, upper = _ranked(scores.detach(), targets.detach(), name)  # (m, N) ascending keys, 0/1 targets
    if key.device.type == "cpu":
        return _both_numpy(key.numpy(), flags.numpy())
    return _both_torch(key, flags, upper)


def _both_torch(key: Tensor, flags: Tensor, upper: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    """:func:`both_average_precisions` after the sort, as torch operations on the keys' device (a GPU): the
    positives' keys one row per class, two batched binary searches for the runs of ties."""
    m, n = key.shape
    where = flags.reshape(-1).nonzero().squeeze(1)  # the positives, row-major: by class, then by rank
    rows, ranks = where // n, where % n
    n_pos = torch.bincount(rows, minlength=m)
    before = torch.cumsum(n_pos, 0) - n_pos  # positives in the earlier classes
    slot = torch.arange(where.numel(), device=key.device) - before[rows]  # 0-based index among its class's positives
    width = max(int(n_pos.max()), 1)
    # the positives' keys, one row per class, padded with the largest key (never ≤ a search value)
    pos_key = torch.full((m, width), _key_max(key), dtype=key.dtype, device=key.device)
    pos_key[rows, slot] = key.reshape(-1)[where]
    precision = torch.zeros((m, width), dtype=torch.float64, device=key.device)
    precision[rows, slot] = (slot + 1).to(torch.float64) / (ranks + 1).to(torch.float64)
    voc = _reverse_cummax(precision).flip(1).sum(1)  # padding holds 0 and adds 0
    run_top = upper(pos_key)  # the largest key of each positive's run of tied scores
    images_through_run = torch.searchsorted(key, run_top, right=True)  # e: images ranked up to the run's end
    positives_through_run = torch.searchsorted(pos_key, run_top, right=True)  # TP(e)
    eq21 = torch.where(pos_key != _key_max(key), positives_through_run.double() / images_through_run.clamp_min(1).double(), 0.0)
    eq21 = eq21.sum(1, dtype=torch.float64)
    nan = torch.full_like(eq21, math.nan)
    denominator = n_pos.clamp_min(1).to(torch.float64)
    return (torch.where(n_pos > 0, eq21 / denominator, nan), torch.where(n_pos > 0, voc / denominator, nan))


def _both_numpy(key: np.ndarray, flags: np.ndarray) -> tuple[Tensor, Tensor]:
    """:func:`both_average_precisions` after the sort, in NumPy (the CPU: one thread, no pool of threads to wait
    on when other processes hold the cores). Runs of tied scores are found by one binary search per positive in
    a key that grows along the whole flattened (m, N) array: (class, score) for packed keys, (class, dense rank
    of the score) otherwise."""
    m, n = key.shape
    rows_all = np.arange(m, dtype=np.int64)[:, None]
    if key.dtype == np.int64:  # packed: the score bits are the high 32, shifted to [0, 2^32)
        tie = (key >> 32) + (2**31 + (rows_all << 32))
    else:  # float64 scores: the dense rank of the score within its class
        tie = np.cumsum(np.diff(key, axis=1, prepend=key[:, :1]) != 0, axis=1) + rows_all * n
    tie = tie.reshape(-1)
    where = np.flatnonzero(flags)  # the positives, row-major: by class, then by rank
    rows, ranks = np.divmod(where, n)
    n_pos = np.bincount(rows, minlength=m)
    before = np.cumsum(n_pos) - n_pos  # positives in the earlier classes
    slot = np.arange(where.size) - before[rows]  # 0-based index among its class's positives
    # eq. 21: each positive counts TP(e)/e at the end e of its run of tied scores
    pos_tie = tie[where]
    images_through_run = np.searchsorted(tie, pos_tie, side="right") - rows * n
    positives_through_run = np.searchsorted(pos_tie, pos_tie, side="right") - before[rows]
    eq21 = np.bincount(rows, weights=positives_through_run / images_through_run, minlength=m)
    # VOC: the running maximum from the right of the precision at each class's positives
    precision = np.zeros((m, max(int(n_pos.max(initial=0)), 1)))
    precision[rows, slot] = (slot + 1) / (ranks + 1)
    voc = np.maximum.accumulate(precision[:, ::-1], axis=1).sum(1)  # padding holds 0 and adds 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return torch.from_numpy(eq21 / n_pos), torch.from_numpy(voc / n_pos)  # 0/0: NaN without a positive


def _key_max(key: Tensor) -> float | int:
    return math.inf if key.dtype.is_floating_point else torch.iinfo(key.dtype).max


def _ranked(scores: Tensor, targets: Tensor, name: str) -> tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]:
    """Each column ranked as AP_VOC.m's ``sort(out, 'descend')``: (keys, targets, upper), both (m, N).

    MATLAB's sort is stable: descending score, tied scores in their input order. ``keys`` ascend along
    each row; ``upper(k)`` is the largest key tied with key ``k`` (the same score), so the images of a
    run of tied scores are the keys in [k, upper(k)]; targets are int64 0/1. Scores that are exactly float32
    sort as one int64 key per entry, ``reversed order-preserving bits << 32 | input index << 1 |
    target`` (distinct keys, so any sort gives the stable order; NumPy's in place on the CPU, several
    times faster than ``torch.sort`` there). Other scores (float64 beyond float32) take a stable argsort.
    """
    scores = _float32_if_exact(scores)
    n = scores.shape[0]
    if scores.dtype != torch.float32 or n >= 2**31:
        _check_finite(scores, name)
        s = scores.double().t().neg() + 0.0  # −score ascending; + 0.0 turns −0.0 into +0.0 (a tie)
        if s.device.type == "cpu":
            order = torch.from_numpy(s.numpy().argsort(axis=1, kind="stable"))
        else:
            order = s.sort(dim=1, stable=True).indices
        return s.gather(1, order).contiguous(), targets.t().bool().long().gather(1, order), lambda k: k
    if scores.device.type == "cpu":  # the same steps in NumPy: one strided pass instead of several in torch
        bits = (scores.numpy() + np.float32(0.0)).view(np.int32)  # a new array; + 0.0: −0.0 ties with 0.0
        bits ^= (bits >> 31) & 0x7FFFFFFF
        np.invert(bits, out=bits)  # ~: descending score first
        packed = np.array(bits.T, dtype=np.int64, order="C")
        packed <<= 32
        packed |= np.arange(n, dtype=np.int64) << 1
        np.bitwise_or(packed, _numpy(targets).T != 0, out=packed)
        packed.sort(axis=1)
        key, flags = torch.from_numpy(packed), torch.from_numpy(packed & 1)
    else:
        key = _columns_as_int64(_sortable_bits(scores).bitwise_not_())  # ~: descending score first
        key <<= 32
        key |= torch.arange(n, device=key.device) << 1
        key |= targets.t().bool()
        key = _sort_rows(key)
        flags = key & 1
    _check_finite_bits(~(key[:, -1] >> 32).max(), ~(key[:, 0] >> 32).min(), name)
    return key, flags, lambda k: k | 0xFFFFFFFF  # the same score bits, the largest index and target


def _numpy(t: Tensor) -> np.ndarray:
    """A CPU tensor as a NumPy array (no copy), bfloat16 (which NumPy lacks) as float32."""
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


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
    """CP, CR, CF1, OP, OR, OF1 (eq. 22), CF1_mean and the authors' ``*_authors`` counts only — no
    ranking, so no AP (cheap; the top-3 variant uses it).

    ``CF1_mean`` is the mean over all classes of the per-class F1 = 2PR/(P+R) of the per-class P and R
    below, 0 where P+R = 0 (evaluate.m:21, :24 ``mean(F1_C)``, with gsm's 0 for an empty count).
    ``CP_authors`` … ``OF1_authors``: :func:`authors_precision_recall_f1` of the same predictions.
    """
    _check(scores, targets)
    n_correct, n_pred, n_gt = _counts(scores.detach(), targets.detach(), threshold, top_k)
    zero = torch.zeros_like(n_pred)
    per_class_p = torch.where(n_pred > 0, n_correct / n_pred.clamp_min(1), zero)
    per_class_r = torch.where(n_gt > 0, n_correct / n_gt.clamp_min(1), zero)
    per_class_f1 = (2 * per_class_p * per_class_r / (per_class_p + per_class_r)).nan_to_num(0.0)  # 0/0: F1 = 0
    authors = authors_precision_recall_f1(n_correct, n_pred, n_gt)
    totals = torch.stack([per_class_p.mean(), per_class_r.mean(), per_class_f1.mean(),
                          n_correct.sum(), n_pred.sum(), n_gt.sum(), *authors.values()])
    cp, cr, cf1_mean, correct, predicted, positives, *by_authors = totals.tolist()  # one read from the device
    op = correct / predicted if predicted > 0 else 0.0
    orr = correct / positives if positives > 0 else 0.0
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": orr, "OF1": _f1(op, orr), "CF1_mean": cf1_mean,
            **dict(zip(authors, by_authors))}


def _counts(scores: Tensor, targets: Tensor, threshold: float, top_k: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """Per class, float64: images predicted (score ≥ threshold, within the top k) and positive, predicted, positive."""
    if scores.device.type == "cpu" and top_k is None and scores.dtype in (torch.float32, torch.float64):
        gt, pred = _numpy(targets) != 0, scores.numpy() >= threshold  # NumPy: one thread, no pool to wait on
        counts = [np.count_nonzero(a, axis=0) for a in (pred & gt, pred, gt)]
        return tuple(torch.from_numpy(c.astype(np.float64)) for c in counts)
    gt = targets.bool()
    pred = scores >= threshold
    if top_k is not None:
        keep = torch.zeros_like(pred)
        keep.scatter_(1, scores.topk(min(top_k, scores.shape[1]), dim=1).indices, True)
        pred &= keep
    return pred.logical_and(gt).sum(0, dtype=torch.float64), pred.sum(0, dtype=torch.float64), gt.sum(0, dtype=torch.float64)


MATLAB_EPS = 2.0**-52  # MATLAB's eps: the spacing of doubles at 1


def authors_precision_recall_f1(n_correct: Tensor, n_pred: Tensor, n_gt: Tensor) -> dict[str, Tensor]:
    """C-P, C-R, C-F1, O-P, O-R, O-F1 as the release's eval/evaluate.m:21-24 computes them (0-d tensors).

    eval/tools/precision_recall_f1.m adds eps to every count (true positives, predictions, positives):
    P = (TP + eps)/(#pred + eps), R = (TP + eps)/(#pos + eps) + eps, F1 = 2PR/(P + R). A class never
    predicted has P = eps/eps = 1 (gsm's ``CP``: 0), a class without a positive R ≈ 1 (``CR``: 0).
    evaluate.m:21 applies it per class (columns) and reports ``mean(P_C)``, ``mean(R_C)``,
    ``mean(F1_C)`` over all classes; :22 applies it once to all (image, class) pairs (O-P, O-R, O-F1).
    """
    def prf(tp: Tensor, pred: Tensor, pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p = (tp + MATLAB_EPS) / (pred + MATLAB_EPS)
        r = (tp + MATLAB_EPS) / (pos + MATLAB_EPS) + MATLAB_EPS
        return p, r, 2 * p * r / (p + r)

    cp, cr, cf1 = prf(n_correct, n_pred, n_gt)
    op, orr, of1 = prf(n_correct.sum(), n_pred.sum(), n_gt.sum())
    return {"CP_authors": cp.mean(), "CR_authors": cr.mean(), "CF1_authors": cf1.mean(),
            "OP_authors": op, "OR_authors": orr, "OF1_authors": of1}


def multilabel_metrics(scores: Tensor, targets: Tensor, threshold: float = 0.5, top_k: int | None = None) -> dict:
    """mAP, CP, CR, CF1, OP, OR, OF1, CF1_mean, mAP_voc, the authors' ``mAP_authors``, ``CP_authors`` …
    ``OF1_authors`` (fractions), per-class ``AP`` and ``AP_voc``.

    ``mAP_voc``/``AP_voc``: VOC2012 AP (``voc_average_precision``), the mean over the same classes
    as ``mAP`` (those with a positive); a class without a positive has ``None`` in both lists.
    ``mAP_authors``: evaluate.m:24's plain ``mean(AP_VOC)`` over all classes, NaN when a class has no
    positive (its AP_VOC is 0/0). ``*_authors`` counts: :func:`authors_precision_recall_f1`.

    ``scores`` are probabilities P(i) (sigmoid of the head's logits); with
    ``top_k`` (the paper's top-3 variant) an image predicts at most its k
    highest-scoring labels, each still ≥ threshold.
    """
    counts = thresholded_metrics(scores, targets, threshold, top_k)
    ap, voc = both_average_precisions(scores, targets)
    m = ap.shape[0]
    # means over the classes with a positive, and the authors' plain mean; one read from the device
    values = torch.cat([ap, ap.nanmean()[None], voc, voc.nanmean()[None], voc.mean()[None]]).tolist()
    per_class, mean_ap, per_class_voc, mean_voc, mean_authors = (values[:m], values[m], values[m + 1:-2],
                                                                 values[-2], values[-1])
    return {
        "mAP": mean_ap,
        **counts,
        "AP": [None if math.isnan(v) else v for v in per_class],
        "classes_without_positives": [c for c, v in enumerate(per_class) if math.isnan(v)],
        "mAP_voc": mean_voc,
        "AP_voc": [None if math.isnan(v) else v for v in per_class_voc],
        "mAP_authors": mean_authors,
    }
