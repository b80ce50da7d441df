import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_score, recall_score

from gsm.metrics import average_precision, multilabel_metrics, top1_error


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
