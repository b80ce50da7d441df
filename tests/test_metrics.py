import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_score, recall_score

from gsm.metrics import multilabel_metrics, top1_error


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
