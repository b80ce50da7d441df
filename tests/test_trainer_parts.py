"""Trainer stages in isolation: optimiser groups, empirical μ/σ init, TensorBoard content."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from gsm.data import build_data
from gsm.models import build_classifier
from gsm.train import Dist, build_optimizer, empirical_init


def _model(head: dict):
    data = build_data({"name": "digits", "image_size": 16, "subset": 96}, batch_size=32)
    model = build_classifier({"name": "convnet", "width": 8}, head, num_classes=10, multilabel=False,
                             in_channels=1, image_size=16)
    return data, model


def test_mu_sigma_in_their_own_group_without_weight_decay():
    _, model = _model({"name": "gsoftmax", "dist_lr_mult": 100.0})
    cfg = OmegaConf.create({"optimizer": {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}})
    opt = build_optimizer(model, cfg)
    main, dist = opt.param_groups
    assert {id(p) for p in dist["params"]} == {id(model.head.mu_param), id(model.head.sigma_param)}
    assert dist["lr"] == pytest.approx(1.0) and dist["weight_decay"] == 0.0
    assert main["lr"] == 0.01 and main["weight_decay"] == 5e-4
    n_all = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(main["params"]) + len(dist["params"]) == n_all


def test_frozen_distribution_is_not_optimised():
    _, model = _model({"name": "gsoftmax", "learn_dist": False})
    opt = build_optimizer(model, OmegaConf.create({"optimizer": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}}))
    assert len(opt.param_groups) == 1


def test_empirical_init_sets_mean_and_std_of_x():
    data, model = _model({"name": "gsoftmax", "init": "empirical", "init_batches": 2})
    empirical_init(model, data.train, Dist(), None)
    model.eval()
    data.train.set_epoch(0)
    xs = []
    with torch.no_grad():
        for i, (images, _, _) in enumerate(data.train):
            if i >= 2:
                break
            xs.append(model.head.fc_outputs(model.backbone(images)))
    x = torch.cat(xs).double()
    torch.testing.assert_close(model.head.mu.double(), x.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.head.sigma.double(), x.std(0, unbiased=False), rtol=1e-4, atol=1e-5)


def test_tensorboard_has_losses_metrics_and_mu_sigma_histograms(cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = cli("trainer.epochs=2", "dataset.subset=64", "trainer.analyze_train=false")
    assert out.returncode == 0, out.stderr
    events = next(cli.root.rglob("tensorboard"))
    (event_file,) = [p for p in events.glob("events.*") if p.stat().st_size > 0 and "hparams" not in p.read_bytes().decode("latin1")]
    acc = EventAccumulator(str(event_file))
    acc.Reload()
    scalars, hists = set(acc.Tags()["scalars"]), set(acc.Tags()["histograms"])
    assert {"train/loss", "lr", "test/top1_error_frac", "test/loss", "time/images_per_second", "time/eval_seconds",
            "time/checkpoint_seconds"} <= scalars
    assert {"head/mu", "head/sigma"} <= hists
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
    res = json.loads(next(cli.root.rglob("results.json")).read_text())
    assert [round(e.value, 5) for e in acc.Scalars("test/top1_error_frac")] == [round(r["test_top1_error_frac"], 5) for r in res["history"]]


def test_head_runs_in_float32_under_autocast():
    _, model = _model({"name": "gsoftmax", "sigma": 0.5})
    model.eval()
    images = torch.randn(4, 1, 16, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(images)
        features = model.backbone(images)
    assert logits.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(logits, model.head(features.float()), rtol=0, atol=0)


def test_empirical_init_multilabel_pairs():
    data = build_data({"name": "digits_mosaic", "image_size": 16, "subset": 64, "train_size": 64, "test_size": 32},
                      batch_size=32)
    model = build_classifier({"name": "convnet", "width": 8}, {"name": "gsoftmax", "init": "empirical"}, num_classes=10,
                             multilabel=True, in_channels=1, image_size=16)
    empirical_init(model, data.train, Dist(), None)
    assert model.head.mu.shape == (10, 2) and (model.head.sigma > 0).all()
    assert not torch.allclose(model.head.mu, torch.zeros(10, 2))


def test_a_run_leaves_the_process_as_it_found_it(tmp_path):
    """gsm.train.run as a library call changes no process-wide state for good: torch's CPU threads, the gsm
    logger's level and the thread excepthook (TensorBoard's writer-thread hook) are what they were before."""
    import logging
    import threading

    from conftest import train

    before = (torch.get_num_threads(), logging.getLogger("gsm").level, threading.excepthook)
    rec = train(tmp_path, "trainer.epochs=1", "dataset.subset=64", "trainer.analyze_train=false", "trainer.cpu_threads=2")
    assert rec is not None and rec.environment.cpu_threads == 2  # the run itself trained with 2 threads
    assert (torch.get_num_threads(), logging.getLogger("gsm").level, threading.excepthook) == before
