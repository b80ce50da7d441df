import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

from gsm.metrics import average_precision, multilabel_metrics, thresholded_metrics, top1_error, voc_average_precision


def _ref(scores, targets, thr=0.5):
    pred = (scores >= thr).astype(int)
    valid = targets.sum(0) > 0
    ap = [average_precision_score(targets[:, c], scores[:, c]) for c in range(targets.shape[1]) if valid[c]]
    cp = precision_score(targets, pred, average="macro", zero_division=0)
    cr = recall_score(targets, pred, average="macro", zero_division=0)
    op = precision_score(targets, pred, average="micro", zero_division=0)
    orr = recall_score(targets, pred, average="micro", zero_division=0)
    return np.mean(ap), cp, cr, op, orr


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, m = 300, 12
    targets = (rng.random((n, m)) < 0.2).astype(int)
    scores = np.clip(targets * 0.3 + rng.random((n, m)) * 0.7, 0, 1)
    scores[:, 3] = np.round(scores[:, 3], 1)  # many tied scores
    targets[:, 5] = 0  # a class with no positive: excluded from mAP, reported
    scores[:, 7] = 0.1  # a class with no prediction: precision 0
    got = multilabel_metrics(torch.tensor(scores), torch.tensor(targets))
    mAP, cp, cr, op, orr = _ref(scores, targets)
    assert got["mAP"] == pytest.approx(mAP, abs=1e-6)
    assert got["CP"] == pytest.approx(cp, abs=1e-12) and got["CR"] == pytest.approx(cr, abs=1e-12)
    assert got["OP"] == pytest.approx(op, abs=1e-12) and got["OR"] == pytest.approx(orr, abs=1e-12)
    assert got["CF1"] == pytest.approx(2 * cp * cr / (cp + cr)) and got["OF1"] == pytest.approx(2 * op * orr / (op + orr))
    assert got["classes_without_positives"] == [5] and got["AP"][5] is None
    for c in (0, 3, 7):
        assert got["AP"][c] == pytest.approx(average_precision_score(targets[:, c], scores[:, c]), abs=1e-6)


def test_top3_variant_caps_predictions():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.1]])
    targets = torch.tensor([[1, 1, 1, 1, 0]])
    assert multilabel_metrics(scores, targets)["OR"] == 1.0
    assert multilabel_metrics(scores, targets, top_k=3)["OR"] == 0.75


def test_top1_error():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert top1_error(logits, torch.tensor([0, 1, 1])) == pytest.approx(1 / 3)


def test_all_tied_scores_and_top3_against_a_reference():
    """A class whose scores are all equal has AP = its prevalence (sklearn); top-3 against a loop reference."""
    rng = np.random.default_rng(7)
    n, m = 200, 9
    targets = (rng.random((n, m)) < 0.25).astype(int)
    scores = rng.random((n, m))
    scores[:, 2] = 0.7  # every image tied, all predicted
    got = multilabel_metrics(torch.tensor(scores), torch.tensor(targets))
    assert got["AP"][2] == pytest.approx(average_precision_score(targets[:, 2], scores[:, 2]), abs=1e-6)
    assert got["AP"][2] == pytest.approx(targets[:, 2].mean(), abs=1e-6)
    top3 = multilabel_metrics(torch.tensor(scores), torch.tensor(targets), top_k=3)
    pred = np.zeros_like(targets)
    for i in range(n):  # reference: the 3 highest scores of each image, each still >= 0.5
        for c in np.argsort(-scores[i], kind="stable")[:3]:
            pred[i, c] = scores[i, c] >= 0.5
    cp = precision_score(targets, pred, average="macro", zero_division=0)
    orr = recall_score(targets, pred, average="micro", zero_division=0)
    assert top3["CP"] == pytest.approx(cp, abs=1e-12) and top3["OR"] == pytest.approx(orr, abs=1e-12)


def _sk_ap(scores, targets):
    return [average_precision_score(targets[:, c], scores[:, c]) if targets[:, c].any() else None
            for c in range(targets.shape[1])]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decimals", [1, 2, 6])
def test_average_precision_matches_sklearn_with_ties(dtype, decimals):
    """Scores rounded to few decimals: many ties per class (one threshold per distinct score)."""
    rng = np.random.default_rng(decimals)
    n, m = 2000, 15
    targets = (rng.random((n, m)) < rng.uniform(0.01, 0.6, size=m)).astype(np.int64)
    targets[:, 4] = 0  # no positive
    targets[:, 9] = 1  # every image positive: AP = 1
    scores = np.round(rng.normal(size=(n, m)) + targets * rng.uniform(0, 2, size=m), decimals).astype(dtype)
    scores[:, 6] = -0.0  # one tied score for the whole class (−0.0 ties with 0.0)
    scores[: n // 2, 6] = 0.0
    got = average_precision(torch.from_numpy(scores), torch.from_numpy(targets))
    for c, want in enumerate(_sk_ap(scores, targets)):
        if want is None:
            assert np.isnan(got[c].item())
        else:
            assert got[c].item() == pytest.approx(want, abs=1e-12), c
    assert got[9].item() == pytest.approx(1.0, abs=1e-12)
    assert got[6].item() == pytest.approx(targets[:, 6].mean(), abs=1e-12)


def test_all_negative_predictions_and_float64_precision():
    """No score reaches the threshold: precision 0 by convention, AP still by rank; float64 scores
    closer than float32 can resolve are not merged into one tie."""
    rng = np.random.default_rng(11)
    n, m = 500, 6
    targets = (rng.random((n, m)) < 0.3).astype(np.int64)
    scores = 0.2 + 1e-12 * rng.integers(0, 50, size=(n, m)) + 1e-13 * targets  # all < 0.5, float64-only ties
    got = multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets))
    mAP, cp, cr, op, orr = _ref(scores, targets)
    assert got["CP"] == cp == 0 and got["CR"] == cr == 0 and got["OP"] == op == 0 and got["OR"] == orr == 0
    assert got["CF1"] == 0 and got["OF1"] == 0
    assert got["mAP"] == pytest.approx(mAP, abs=1e-12)
    assert got["AP"] == pytest.approx(_sk_ap(scores, targets), abs=1e-12)
    as32 = multilabel_metrics(torch.from_numpy(scores.astype(np.float32)), torch.from_numpy(targets))
    assert as32["AP"] == pytest.approx(_sk_ap(scores.astype(np.float32), targets), abs=1e-12)


def test_integer_and_bool_inputs_and_bad_scores():
    targets = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=torch.bool)
    scores = torch.tensor([[3, 1], [2, 2], [2, 0], [1, 2]])  # integer scores, ties
    got = average_precision(scores, targets)
    ref = _sk_ap(scores.numpy(), targets.numpy().astype(int))
    assert got.tolist() == pytest.approx(ref, abs=1e-12)
    for bad in (float("nan"), float("inf"), float("-inf")):
        for dtype in (torch.float32, torch.float64):
            s = torch.rand(4, 2, dtype=dtype)
            s[1, 1] = bad
            with pytest.raises(ValueError, match="finite"):
                average_precision(s, targets)


# --- the authors' definitions (luoyan407/gsoftmax eval/evaluate.m; PASCAL VOC2012 devkit) ---


def _voc_ap_ref(score, gt):
    """VOCevalcls.m + VOCap.m, transcribed line by line (labels 0/1, no 'difficult'); None without a positive."""
    npos = int(np.sum(gt > 0))
    if npos == 0:
        return None
    si = np.argsort(-score, kind="stable")  # [~,si] = sort(-confidence): MATLAB's sort is stable
    tp = np.cumsum(gt[si] > 0)
    fp = np.cumsum(gt[si] == 0)
    rec = tp / npos
    prec = tp / (fp + tp)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def _cf1_mean_ref(labels, pred):
    """evaluate.m:21 and :24: per-class P, R, F1 of the 0/1 predictions, then mean(F1_C) over all classes."""
    f1 = []
    for c in range(labels.shape[1]):
        tp = sum(1 for i in range(labels.shape[0]) if labels[i, c] and pred[i, c])
        n_pred, n_gt = int(pred[:, c].sum()), int(labels[:, c].sum())
        p = tp / n_pred if n_pred else 0.0
        r = tp / n_gt if n_gt else 0.0
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    return sum(f1) / len(f1)


def _tied_problem(seed, decimals, dtype, n=1500, m=20):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, m)) < rng.uniform(0.02, 0.5, size=m)).astype(np.int64)
    scores = np.round(1 / (1 + np.exp(-(rng.normal(size=(n, m)) + targets * rng.uniform(0, 2, size=m)))), decimals)
    targets[:, 4] = 0  # no positive: NaN / None, excluded from mAP_voc
    targets[:, 9] = 1  # every image positive
    scores[:, 6] = 0.7  # one tie over the whole class
    scores[:, 11] = np.round(scores[:, 11] * 0.4, decimals)  # no prediction (all < 0.5)
    scores[: n // 3, 13] = -0.0  # −0.0 ties with 0.0
    scores[n // 3:, 13] = 0.0
    return scores.astype(dtype), targets


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decimals", [1, 2])
def test_voc_ap_and_cf1_mean_match_the_release_transcription(dtype, decimals):
    """Scores rounded to 1-2 decimals (many ties, whose input order decides the VOC AP), float32 (packed
    sort keys) and float64 (not float32-exact: the stable-argsort path)."""
    scores, targets = _tied_problem(decimals, decimals, dtype)
    want = [_voc_ap_ref(scores[:, c], targets[:, c]) for c in range(targets.shape[1])]
    got = voc_average_precision(torch.from_numpy(scores), torch.from_numpy(targets))
    assert got.dtype == torch.float64 and got.shape == (targets.shape[1],)
    for c, w in enumerate(want):
        if w is None:
            assert np.isnan(got[c].item())
        else:
            assert got[c].item() == pytest.approx(w, abs=1e-12), c
    assert want[9] == pytest.approx(1.0, abs=1e-12)
    out = multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets))
    assert out["AP_voc"] == pytest.approx(want, abs=1e-12) and out["AP_voc"][4] is None
    assert out["mAP_voc"] == pytest.approx(np.mean([w for w in want if w is not None]), abs=1e-12)
    assert out["classes_without_positives"] == [4]  # the same classes as mAP's
    pred = (scores >= 0.5).astype(np.int64)
    assert pred[:, 11].sum() == 0
    assert out["CF1_mean"] == pytest.approx(_cf1_mean_ref(targets, pred), abs=1e-12)
    assert out["CF1_mean"] == pytest.approx(f1_score(targets, pred, average="macro", zero_division=0), abs=1e-12)
    # the existing eq. 21 / eq. 22 values are untouched by the additions
    mAP, cp, cr, op, orr = _ref(scores, targets)
    assert out["mAP"] == pytest.approx(mAP, abs=1e-12)
    assert out["CF1"] == pytest.approx(2 * cp * cr / (cp + cr), abs=1e-12)


def test_voc_ap_float64_ties_finer_than_float32():
    """float64 scores closer than float32 resolves are ranked as float64 (not merged into float32 ties)."""
    rng = np.random.default_rng(3)
    n, m = 400, 5
    targets = (rng.random((n, m)) < 0.3).astype(np.int64)
    scores = 0.2 + 1e-12 * rng.integers(0, 20, size=(n, m)) + 1e-13 * targets
    got = voc_average_precision(torch.from_numpy(scores), torch.from_numpy(targets)).tolist()
    assert got == pytest.approx([_voc_ap_ref(scores[:, c], targets[:, c]) for c in range(m)], abs=1e-12)


def test_voc_ap_hand_computed_and_tie_order():
    """Scores 0.9, 0.8, 0.8, 0.7, 0.6 with three positives, the tied pair in both input orders.

    Negative first within the tie: ranks 1..5 are 1,0,1,0,1 -> precision 1, 1/2, 2/3, 1/2, 3/5; made
    non-increasing from the right: 1, 2/3, 2/3, 3/5, 3/5; each positive adds recall 1/3:
    AP = (1 + 2/3 + 3/5) / 3 = 34/45. Positive first: 1,1,0,0,1 -> AP = (1 + 1 + 3/5) / 3 = 13/15.
    Eq. 21 (sklearn) pools the tie, so it gives 34/45 for both orders.
    """
    scores = torch.tensor([[0.9], [0.8], [0.8], [0.7], [0.6]])
    negative_first = torch.tensor([[1], [0], [1], [0], [1]])
    positive_first = torch.tensor([[1], [1], [0], [0], [1]])
    assert voc_average_precision(scores, negative_first).item() == pytest.approx(34 / 45, abs=1e-15)
    assert voc_average_precision(scores, positive_first).item() == pytest.approx(13 / 15, abs=1e-15)
    for t in (negative_first, positive_first):
        assert average_precision(scores, t).item() == pytest.approx(34 / 45, abs=1e-12)
    # the same pairs with the rows shuffled: only the input order within the tie matters
    rows = [4, 2, 0, 3, 1]  # the tied pair swapped: positive first
    assert voc_average_precision(scores[rows], negative_first[rows]).item() == pytest.approx(13 / 15, abs=1e-15)
    rows = [4, 1, 0, 3, 2]  # the tied pair in its order: negative first
    assert voc_average_precision(scores[rows], negative_first[rows]).item() == pytest.approx(34 / 45, abs=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_voc_ap_follows_the_input_order_of_ties(dtype):
    """Permuting the images changes the VOC AP exactly as the stable order dictates; eq. 21 does not move."""
    rng = np.random.default_rng(5)
    n, m = 300, 8
    targets = (rng.random((n, m)) < 0.3).astype(np.int64)
    scores = np.round(rng.random((n, m)) + 0.3 * targets, 1)  # ~14 distinct values per class
    scores[:, 2] = 0.5  # all tied: the VOC AP depends only on the order of the labels
    seen = set()
    for k in range(6):
        perm = rng.permutation(n)
        s, t = scores[perm], targets[perm]
        got = voc_average_precision(torch.from_numpy(s).to(dtype), torch.from_numpy(t)).tolist()
        assert got == pytest.approx([_voc_ap_ref(s[:, c].astype(np.float64), t[:, c]) for c in range(m)], abs=1e-12)
        eq21 = average_precision(torch.from_numpy(s), torch.from_numpy(t)).tolist()
        assert eq21 == pytest.approx(_sk_ap(scores, targets), abs=1e-12)
        seen.add(round(got[2], 12))
    assert len(seen) > 1  # the definition depends on the tie order


def test_cf1_mean_hand_computed_and_top3():
    """Class 0: P = R = 1 (F1 = 1). Class 1: 1 of 2 predictions right, 1 of 4 positives found (P = 1/2,
    R = 1/4, F1 = 1/3). CF1_mean = 2/3; eq. 22's CF1 = F1(mean P = 3/4, mean R = 5/8) = 15/22."""
    targets = torch.zeros(8, 2, dtype=torch.int64)
    targets[:2, 0] = 1
    targets[:4, 1] = 1
    scores = torch.full((8, 2), 0.1)
    scores[:2, 0] = 0.9
    scores[[0, 4], 1] = 0.7
    got = thresholded_metrics(scores, targets)
    assert got["CF1_mean"] == pytest.approx(2 / 3, abs=1e-15) and got["CF1"] == pytest.approx(15 / 22, abs=1e-15)
    rng = np.random.default_rng(9)
    targets = (rng.random((200, 10)) < 0.3).astype(np.int64)
    scores = rng.random((200, 10))
    pred = np.zeros_like(targets)
    for i in range(200):  # the 3 highest scores of each image, each still >= 0.5
        for c in np.argsort(-scores[i], kind="stable")[:3]:
            pred[i, c] = scores[i, c] >= 0.5
    top3 = thresholded_metrics(torch.from_numpy(scores), torch.from_numpy(targets), top_k=3)
    assert top3["CF1_mean"] == pytest.approx(_cf1_mean_ref(targets, pred), abs=1e-12)


def test_voc_ap_rejects_non_finite_scores():
    targets = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])
    for bad in (float("nan"), float("inf"), float("-inf")):
        for dtype in (torch.float16, torch.float32, torch.float64):
            s = torch.rand(4, 2, dtype=torch.float64).to(dtype)
            s[2, 0] = bad
            with pytest.raises(ValueError, match="voc_average_precision: scores must be finite"):
                voc_average_precision(s, targets)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_voc_ap_and_cf1_mean_on_cuda_match_cpu():
    for dtype in (np.float32, np.float64):
        scores, targets = _tied_problem(1, 1, dtype)
        cpu = multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets))
        gpu = multilabel_metrics(torch.from_numpy(scores).cuda(), torch.from_numpy(targets).cuda())
        assert gpu["AP_voc"] == pytest.approx(cpu["AP_voc"], abs=1e-12) and gpu["AP_voc"][4] is None
        assert gpu["mAP_voc"] == pytest.approx(cpu["mAP_voc"], abs=1e-12)
        assert gpu["CF1_mean"] == pytest.approx(cpu["CF1_mean"], abs=1e-12)
        with pytest.raises(ValueError, match="finite"):
            voc_average_precision(torch.tensor([[float("nan")], [0.5]], device="cuda"),
                                  torch.tensor([[1], [0]], device="cuda"))


# --- the release's own files, transcribed line by line (luoyan407/gsoftmax eval/; independent of gsm.metrics) ---
# eval/tools/AP_VOC.m and eval/tools/precision_recall_f1.m as the release ships them (imported, its README says, from
# zhufengx/SRN_multilabel: tools/AP_VOC.m and tools/precision_recall_f1.m at 5d5dc6b, whose line numbers the
# comments give); eval/evaluate.m:20-24 (luoyan407/gsoftmax 0e1278a).

MATLAB_EPS = np.finfo(np.float64).eps  # MATLAB's eps = 2^-52


def _ap_voc_m(labels, probs):
    """eval/tools/AP_VOC.m: one VOC2012 AP per column, NaN where the column has no positive."""
    num_cls = labels.shape[1]                                  # :3 num_cls = size(labels, 2);
    ap_voc12 = np.zeros(num_cls)                               # :4 AP_voc12 = zeros(num_cls, 1);
    for m in range(num_cls):                                   # :5 for m = 1:num_cls
        gt = labels[:, m].astype(np.float64)                   # :6   gt = labels(:,m);
        out = probs[:, m].astype(np.float64)                   # :7   out = probs(:,m);
        si = np.argsort(-out, kind="stable")                   # :9   [~,si]=sort(out, 'descend');  (stable)
        tp = gt[si]                                            # :10  tp = gt(si);
        fp = (gt[si] == 0).astype(np.float64)                  # :11  fp = (~gt(si));
        fp = np.cumsum(fp)                                     # :12  fp = cumsum(fp);
        tp = np.cumsum(tp)                                     # :13  tp = cumsum(tp);
        with np.errstate(invalid="ignore", divide="ignore"):
            rec = tp / np.sum(gt)                              # :14  rec = tp/sum(gt);
            prec = tp / (fp + tp)                              # :15  prec = tp./(fp+tp);
        ap_voc12[m] = _vocap_m(rec, prec)                      # :17-18 AP_voc12(m) = VOCap(rec,prec);
    return ap_voc12


def _vocap_m(rec, prec):
    mrec = np.concatenate([[0.0], rec, [1.0]])                 # :22 mrec=[0 ; rec ; 1];
    mpre = np.concatenate([[0.0], prec, [0.0]])                # :23 mpre=[0 ; prec ; 0];
    for i in range(len(mpre) - 2, -1, -1):                     # :24 for i=numel(mpre)-1:-1:1
        mpre[i] = max(mpre[i], mpre[i + 1])                    # :25   mpre(i)=max(mpre(i),mpre(i+1));
    i = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1               # :27 i=find(mrec(2:end)~=mrec(1:end-1))+1;  (NaN ~= NaN)
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))    # :28 ap=sum((mrec(i)-mrec(i-1)).*mpre(i));


def _precision_recall_f1_m(labels, label_pred):
    """eval/tools/precision_recall_f1.m on (images × classes) logical arrays: per-column P, R, F1."""
    tp = labels.astype(bool) & label_pred.astype(bool)         # :5  tp = (labels & label_pred);
    num_tp = tp.sum(0) + MATLAB_EPS                            # :6  num_tp = sum(tp, 1)+eps;
    num_pred = label_pred.astype(bool).sum(0) + MATLAB_EPS     # :7  num_pred = sum(label_pred, 1)+eps;
    num_p = labels.astype(bool).sum(0) + MATLAB_EPS            # :8  num_p = sum(labels, 1)+eps;
    p_class = num_tp / num_pred                                # :9  P_class = num_tp./num_pred;
    r_class = num_tp / num_p + MATLAB_EPS                      # :10 R_class = num_tp./num_p+eps;
    f1_class = 2 * p_class * r_class / (p_class + r_class)     # :11 F1_class = 2*P_class.*R_class./(P_class + R_class);
    return p_class, r_class, f1_class


def _evaluate_m(labels, probs, pred_labels):
    """eval/evaluate.m:20-24 (fractions, not its 100×): mAP, C-F1, C-P, C-R, O-F1, O-P, O-R."""
    map_voc = _ap_voc_m(labels, probs)                                          # :20
    p_c, r_c, f1_c = _precision_recall_f1_m(labels, pred_labels)                # :21
    p_o, r_o, f1_o = _precision_recall_f1_m(labels.reshape(-1, 1, order="F"),   # :22 labels(:), column-major
                                            pred_labels.reshape(-1, 1, order="F"))
    return {"mAP_authors": np.mean(map_voc), "CF1_authors": np.mean(f1_c), "CP_authors": np.mean(p_c),  # :24
            "CR_authors": np.mean(r_c), "OF1_authors": f1_o[0], "OP_authors": p_o[0], "OR_authors": r_o[0]}


AUTHORS_KEYS = ("mAP_authors", "CP_authors", "CR_authors", "CF1_authors", "OP_authors", "OR_authors", "OF1_authors")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decimals", [1, 2])
@pytest.mark.parametrize("empty_class", [True, False])
def test_authors_metrics_match_the_release_m_files(dtype, decimals, empty_class):
    """Every ``*_authors`` value equals evaluate.m with AP_VOC.m and precision_recall_f1.m: ties in input
    order, a class never predicted (P = eps/eps = 1), a class with every image positive, and with
    ``empty_class`` a class without a positive (R ≈ 1; the plain mean(AP_VOC) is NaN)."""
    scores, targets = _tied_problem(decimals + 7, decimals, dtype)
    if not empty_class:
        targets[:5, 4] = 1
    pred = (scores >= 0.5).astype(np.int64)  # the release's predLabel: p+ >= p-, i.e. sigmoid >= 0.5
    want = _evaluate_m(targets, scores, pred)
    got = multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets))
    for k in AUTHORS_KEYS:
        if np.isnan(want[k]):
            assert k == "mAP_authors" and empty_class and np.isnan(got[k])
        else:
            assert got[k] == pytest.approx(want[k], abs=1e-12), k
    assert np.isnan(got["mAP_authors"]) == empty_class
    # the per-class VOC AP is AP_VOC.m's, column by column
    ap_m = _ap_voc_m(targets, scores)
    assert [None if np.isnan(v) else v for v in ap_m] == pytest.approx(got["AP_voc"], abs=1e-12)
    # where the eps semantics and gsm's eq. 22 part: class 11 is never predicted
    assert pred[:, 11].sum() == 0 and targets[:, 11].sum() > 0
    p_c, r_c, _ = _precision_recall_f1_m(targets, pred)
    assert p_c[11] == 1.0
    never_predicted = int(np.sum(pred.sum(0) == 0))  # P = 1 there (gsm's CP: 0); elsewhere the two differ by ~eps
    assert got["CP_authors"] - got["CP"] == pytest.approx(never_predicted / targets.shape[1], abs=1e-12)
    if empty_class:
        assert r_c[4] == pytest.approx(1.0, abs=1e-15) and got["CR_authors"] > got["CR"]


def test_authors_metrics_hand_computed():
    """Three classes over four images. Class 0: predicted twice, one right of two positives (P = 1/2,
    R = 1/2). Class 1: never predicted, one positive (P = eps/eps = 1, R = eps/(1 + eps) + eps ≈ 0).
    Class 2: no positive, predicted once (P = eps/(1 + eps) ≈ 0, R = eps/eps + eps ≈ 1).
    C-P = (1/2 + 1 + 0)/3 = 1/2, C-R = (1/2 + 0 + 1)/3 = 1/2, C-F1 = (1/2 + 0 + 0)/3 = 1/6 (per-class F1s
    1/2, ≈ 0, ≈ 0). Pooled: 1 right of 3 predictions and 3 positives: O-P = O-R = O-F1 = 1/3."""
    targets = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    scores = torch.tensor([[0.9, 0.1, 0.2], [0.3, 0.2, 0.1], [0.8, 0.1, 0.7], [0.1, 0.3, 0.2]])
    got = multilabel_metrics(scores, targets)
    assert got["CP_authors"] == pytest.approx(1 / 2, abs=1e-15) and got["CR_authors"] == pytest.approx(1 / 2, abs=1e-15)
    assert got["CF1_authors"] == pytest.approx(1 / 6, abs=1e-15)
    for k in ("OP_authors", "OR_authors", "OF1_authors"):
        assert got[k] == pytest.approx(1 / 3, abs=1e-15)
    assert got["CP"] == pytest.approx(1 / 6, abs=1e-15) and got["CR"] == pytest.approx(1 / 6, abs=1e-15)  # gsm: 0, 0
    assert np.isnan(got["mAP_authors"]) and got["classes_without_positives"] == [2]
    # AP_VOC: class 0 ranks 0.9 (+), 0.8 (−), 0.3 (+), 0.1: (1 + 2/3)/2 = 5/6; class 1 ranks 0.3 (−), 0.2 (−),
    # then the tie 0.1, 0.1 in input order: image 0 (+) at rank 3, so 1/3
    assert got["AP_voc"][:2] == pytest.approx([5 / 6, 1 / 3], abs=1e-15)
    assert got["mAP_voc"] == pytest.approx((5 / 6 + 1 / 3) / 2, abs=1e-15)
    with_positive = multilabel_metrics(scores[:, :2], targets[:, :2])
    assert with_positive["mAP_authors"] == pytest.approx((5 / 6 + 1 / 3) / 2, abs=1e-15)


def test_authors_metrics_of_the_top3_variant():
    """thresholded_metrics(top_k=3) gives the authors' counts of the same top-3 predictions."""
    rng = np.random.default_rng(12)
    targets = (rng.random((300, 12)) < 0.25).astype(np.int64)
    scores = rng.random((300, 12))  # distinct: which of tied scores torch.topk keeps is not specified
    targets[:, 3] = 0
    pred = np.zeros_like(targets)
    for i in range(300):
        for c in np.argsort(-scores[i], kind="stable")[:3]:
            pred[i, c] = scores[i, c] >= 0.5
    want = _evaluate_m(targets, scores, pred)
    got = thresholded_metrics(torch.from_numpy(scores), torch.from_numpy(targets), top_k=3)
    for k in AUTHORS_KEYS[1:]:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k


def test_one_sort_per_class_for_both_aps(monkeypatch):
    """multilabel_metrics ranks the scores once (one sort of every column) for both AP definitions."""
    import gsm.metrics as gm

    calls = []
    original = gm._ranked
    monkeypatch.setattr(gm, "_ranked", lambda *a, **k: calls.append(1) or original(*a, **k))
    scores, targets = _tied_problem(3, 2, np.float32, n=200)
    out = multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets))
    assert len(calls) == 1 and len(out["AP"]) == len(out["AP_voc"]) == 20


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_device_path_after_the_sort_equals_the_cpu_path(dtype):
    """On a GPU the steps after the sort are torch operations (_both_torch); run on CPU tensors they give what the
    CPU's NumPy steps give, ties (packed float32 keys, float64 dense ranks) and an empty class included."""
    import gsm.metrics as gm

    scores, targets = _tied_problem(4, 2, dtype)
    key, flags, upper = gm._ranked(torch.from_numpy(scores), torch.from_numpy(targets), "test")
    on_device = gm._both_torch(key, flags, upper)
    on_cpu = gm._both_numpy(key.numpy(), flags.numpy())
    for a, b in zip(on_device, on_cpu):
        assert torch.allclose(a, b, rtol=0, atol=1e-12, equal_nan=True) and bool(a[4].isnan())



def test_no_samples_or_unequal_shapes_are_value_errors_naming_the_shapes():
    with pytest.raises(ValueError, match="top1_error: no samples"):
        top1_error(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long))
    for scores, targets in ((torch.rand(4, 3), torch.ones(4, 2)), (torch.rand(4), torch.ones(4)),
                            (torch.rand(0, 3), torch.ones(0, 3))):
        with pytest.raises(ValueError) as info:
            multilabel_metrics(scores, targets)
        assert str(info.value) == (f"multilabel_metrics: scores {tuple(scores.shape)} and targets "
                                   f"{tuple(targets.shape)} must be equal (N>0, m)")


def test_the_device_keys_sortable_bits_order_float32_as_the_floats_do():
    """The device path ranks float32 scores by their int32 bits (_sortable_bits, then one int64 row per class,
    _columns_as_int64): the bits' integer order is the floats' order, -0.0 ties with 0.0, and NaN lies beyond ±inf
    (what _check_finite_bits tests)."""
    import gsm.metrics as gm

    tiny = float(np.finfo(np.float32).smallest_subnormal)
    ordered = torch.tensor([-float("inf"), -3e38, -1.5, -tiny, 0.0, tiny, 1e-30, 1.0, 1.0000001, 3e38, float("inf")],
                           dtype=torch.float32)
    bits = gm._sortable_bits(ordered).long()
    assert bool((bits[1:] > bits[:-1]).all())
    assert int(gm._sortable_bits(torch.tensor([-0.0]))[0]) == int(gm._sortable_bits(torch.tensor([0.0]))[0])
    assert int(bits[-1]) == gm._FLOAT32_INF_BITS and int(bits[0]) == -gm._FLOAT32_INF_BITS - 1
    nans = gm._sortable_bits(torch.tensor([float("nan"), -float("nan")]))
    assert int(nans[0]) > gm._FLOAT32_INF_BITS and int(nans[1]) < -gm._FLOAT32_INF_BITS - 1
    rng = np.random.default_rng(3)
    scores = torch.from_numpy((rng.standard_normal((50, 3)) * 10.0 ** rng.integers(-30, 30, (50, 3))).astype(np.float32))
    key = gm._columns_as_int64(gm._sortable_bits(scores))
    assert key.dtype == torch.int64 and key.shape == (3, 50)
    for c in range(3):  # the rank of every score is its rank among the keys
        assert torch.equal(key[c].argsort(stable=True), scores[:, c].argsort(stable=True))
