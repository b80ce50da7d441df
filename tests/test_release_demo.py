"""scripts/release_gradient_demo.py: the mean-vs-sum fine-tuning demonstration runs gsm's own pipeline, and one
optimiser step of gsm's trainer on the summed loss moves the head B·m times as far as on the mean
(the release's ``src/MultiCrossEntropyCriterion.lua:53`` backward is ``p − t`` with no 1/B, erratum E5)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from gsm.data import load_splits
from gsm.train import build_optimizer, train_one_epoch

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("release_gradient_demo", REPO / "scripts" / "release_gradient_demo.py")
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)


@pytest.mark.slow
def test_quick_run_gives_both_rows_with_valid_maps(tmp_path):
    result = demo.main(["--quick", "--heads", "softmax", "--out", str(tmp_path / "demo")])
    assert [(r["head"], r["loss_reduction"]) for r in result["rows"]] == [("softmax", "mean"), ("softmax", "sum")]
    maps = [result["floor"]["softmax"][k] for k in ("mAP", "mAP_voc")]
    maps += [r[k] for r in result["rows"] for k in ("mAP", "mAP_voc")]
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in maps), maps
    assert all(math.isfinite(r["train_loss"]) and r["train_loss"] > 0 for r in result["rows"])
    assert 0.0 < result["label_rate"] < 1.0
    # the fine-tuning recipe is Table III's, composed from the real configs
    rec = result["recipe"]
    assert (rec["lr"], rec["momentum"], rec["weight_decay"], rec["nesterov"], rec["batch_size"]) == (1e-5, 0.9, 1e-4, True, 16)
    assert rec["schedule"] == {"name": "staircase", "milestones": [3], "gamma": 0.1}
    assert result["rows"][0]["history"][0]["lr"] == pytest.approx(1e-5)
    # both runs start from the same model and see the same data: they differ only through the reduction
    mean_row, sum_row = result["rows"]
    assert mean_row["train_loss"] != sum_row["train_loss"]
    written = json.loads((tmp_path / "demo.json").read_text())
    assert written["rows"][1]["mAP"] == sum_row["mAP"]
    table = (tmp_path / "demo.md").read_text()
    assert "| softmax | mean |" in table and "| softmax | sum |" in table and "epoch 0" in table


def _one_step(head: str, reduction: str, backbone: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int, int]:
    """The change of every head parameter after gsm's train_one_epoch on a one-batch loader (Table III optimiser)."""
    cfg = demo.finetune_config(head, reduction, seed=0, quick=True)
    batch = int(cfg["trainer"]["batch_size"])
    cfg["dataset"]["train_size"] = batch  # exactly one training batch
    splits = load_splits(cfg["dataset"])
    model = demo.fresh_multilabel(cfg, splits, backbone)
    data = demo.loaders(cfg, splits)
    assert len(data.train) == 1
    before = {k: v.detach().clone() for k, v in model.head.named_parameters()}
    from omegaconf import OmegaConf

    optimizer = build_optimizer(model, OmegaConf.create(cfg))
    train_one_epoch(model, model.head, data.train, optimizer, torch.amp.GradScaler("cpu", enabled=False), None, 0, False)
    after = dict(model.head.named_parameters())
    return {k: (after[k].detach() - before[k]).flatten() for k in before}, batch, splits.num_classes


@pytest.mark.parametrize("head", ["softmax", "gsoftmax"])
def test_one_sum_step_moves_the_head_b_times_m_as_far_as_a_mean_step(head):
    torch.manual_seed(0)
    cfg = demo.finetune_config(head, "mean", seed=0, quick=True)
    splits = load_splits({**cfg["dataset"], "train_size": 16, "test_size": 16})
    backbone = demo.build_model(cfg, splits).backbone.state_dict()
    mean_step, batch, m = _one_step(head, "mean", backbone)
    sum_step, _, _ = _one_step(head, "sum", backbone)
    for name in ("fc.weight", "fc.bias"):
        a, b = mean_step[name], sum_step[name]
        assert a.norm() > 0
        # weight decay (1e-4 · w) is the only term not scaled by B·m: under 0.1 % of the step here
        assert (b.norm() / a.norm()).item() == pytest.approx(batch * m, rel=5e-3)
        assert torch.nn.functional.cosine_similarity(a, b, dim=0).item() > 0.9999
    if head == "gsoftmax":  # dist_update=release: mu, sigma take the batch-mean step under either reduction
        for name in ("mu_param", "sigma_param"):
            assert sum_step[name].norm() > 0
            torch.testing.assert_close(sum_step[name], mean_step[name], rtol=1e-4, atol=1e-9)
