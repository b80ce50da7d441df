"""Run directories: resume after SIGKILL, skip finished runs, force, bad checkpoints, divergence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, pinned, run_cli

ARGS = ("trainer.epochs=6", "dataset.subset=128", "trainer.analyze_train=false")  # the shared run "six_epochs"
COMPARED = ("top1_error_frac", "top5_error_frac", "test_loss", "learned", "empirical")


def _results(root: Path) -> dict:
    found = list(root.rglob("results.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


def _metrics_history(res: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.endswith("seconds") and k != "images_per_second"} for row in res["history"]]
    # (train/eval/checkpoint seconds differ between runs; every metric must not)


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_and_matches_uninterrupted(trained, tmp_path):
    killed = tmp_path / "killed"
    reference = _results(trained("six_epochs"))  # the same command, uninterrupted

    cmd = [sys.executable, str(REPO / "train.py"), f"output_root={killed}", *pinned(ARGS)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_epoch, deadline = 0, time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        ckpts = list(killed.rglob("checkpoints/last.pt"))
        if ckpts:
            try:
                ckpt_epoch = torch.load(ckpts[0], map_location="cpu", weights_only=True)["epoch"]
            except Exception:  # being replaced right now: atomic rename, so just retry
                ckpt_epoch = 0
            if ckpt_epoch >= 2:
                os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert 2 <= ckpt_epoch < 6, f"the run was not killed between its 2nd checkpoint and its end (epoch {ckpt_epoch})"
    assert proc.returncode == -signal.SIGKILL
    assert not list(killed.rglob("results.json"))

    again = run_cli(f"output_root={killed}", *ARGS)
    assert again.returncode == 0, again.stderr
    log = next(killed.rglob("train.log")).read_text()
    assert f"from epoch {ckpt_epoch}/6" in log
    resumed = _results(killed)
    for key in COMPARED:
        assert resumed[key] == reference[key], key
    assert _metrics_history(resumed) == _metrics_history(reference)


def test_force_retrains_and_truncated_checkpoint_is_a_clear_error(trained):
    args = ("trainer.epochs=1", "dataset.subset=64", "trainer.analyze_train=false")  # the shared run "tiny"
    root = trained("tiny")
    res_path = next(root.rglob("results.json"))
    first = res_path.stat().st_mtime_ns
    forced = run_cli(f"output_root={root}", *args, "trainer.force=true")
    assert forced.returncode == 0, forced.stderr
    assert "this run is finished" not in forced.stdout and res_path.stat().st_mtime_ns != first
    # a truncated checkpoint of an unfinished run: one clear error naming the file
    ckpt = next(root.rglob("checkpoints/last.pt"))
    res_path.unlink()
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    bad = run_cli(f"output_root={root}", *args)
    assert bad.returncode == 2 and str(ckpt) in bad.stderr and "truncated or corrupt" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_diverging_loss_is_an_error_not_a_result(cli):
    out = cli("trainer.epochs=2", "dataset.subset=64", "head=softmax", "optimizer.lr=1e30")
    assert out.returncode == 2, out.stderr
    assert "diverged" in out.stderr and "Traceback" not in out.stderr
    assert not list(cli.root.rglob("results.json"))


def test_readable_name_names_what_differs_from_the_recipe_and_is_capped():
    from gsm.runs import MAX_NAME, readable_name

    recipe = {"dataset": {"name": "cifar100"}, "model": {"name": "wrn"}, "head": {"name": "gsoftmax", "mu": 0.0, "sigma": 1.0},
              "optimizer": {"lr": 0.1}, "schedule": {"name": "staircase", "milestones": [60, 120]}, "trainer": {"epochs": 300}, "seed": 0}
    ours = {**recipe, "head": {"name": "gsoftmax", "mu": -0.1, "sigma": 1.0}, "seed": 2}
    assert readable_name(ours, recipe, "4a93c8b2c1") == "wrn-gsoftmax_mu-0.1_s2-4a93c8b2c1"
    assert readable_name(recipe, recipe, "0123456789") == "wrn-gsoftmax_s0-0123456789"
    long = {**ours, "schedule": {"name": "staircase", "milestones": list(range(1, 60))}}
    name = readable_name(long, recipe, "4a93c8b2c1")
    assert len(name) == MAX_NAME and name.endswith("~-4a93c8b2c1") and name.startswith("wrn-gsoftmax_mu-0.1_milestones1,2,3")


def test_signature_ignores_device_and_changes_with_results():
    from omegaconf import OmegaConf

    from gsm.runs import signature

    base = OmegaConf.create({"dataset": {"name": "digits", "root": "a"}, "model": {"name": "convnet"},
                             "head": {"name": "gsoftmax", "mu": 0.0}, "optimizer": {"lr": 0.1}, "schedule": {"name": "constant"},
                             "trainer": {"epochs": 3, "device": "cpu"}, "seed": 0})
    other_device = OmegaConf.merge(base, {"trainer": {"device": "cuda"}, "dataset": {"root": "b"}})
    other_mu = OmegaConf.merge(base, {"head": {"mu": 0.1}})
    assert signature(base) == signature(other_device)
    assert signature(base) != signature(other_mu)


# Signatures of configs whose recipes did not change, computed by gsm 0.2.0 (before the fidelity keys existed):
# a key added later at its default value must leave them as they were, so runs made before are still found.
SIGNATURES_BEFORE_FIDELITY_KEYS = {
    ("dataset=digits", "head=gsoftmax"): "6af0751227",
    ("dataset=digits", "head=softmax"): "b90b78e122",
    ("dataset=digits", "head=lsoftmax"): "46f6dd13e8",
    ("dataset=digits_mosaic", "head=gsoftmax"): "15b4db8f9f",
    ("dataset=cifar100", "model=convnet", "head=gsoftmax"): "cfc2a49e5f",
    ("dataset=coco", "model=convnet", "head=softmax"): "6201dd8778",
    ("dataset=tiny_imagenet", "model=convnet", "head=gsoftmax"): "d422abe895",
}


@pytest.mark.parametrize("overrides", sorted(SIGNATURES_BEFORE_FIDELITY_KEYS))
def test_new_keys_at_their_defaults_keep_a_run_identity(overrides):
    from hydra import compose, initialize_config_dir

    from gsm import runs

    with initialize_config_dir(config_dir=str(REPO / "gsm" / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
        changed = compose("train", overrides=[*overrides, "head.loss_reduction=sum"])
    assert runs.signature(cfg) == SIGNATURES_BEFORE_FIDELITY_KEYS[overrides]
    assert runs.signature(changed) != runs.signature(cfg)  # any other value is another run


@pytest.mark.parametrize("overrides, speed_key", [
    (("dataset=digits", "head=gsoftmax"), "head.fused=true"),
    (("experiment=table1/densenet_cifar100_gsoftmax",), "model.shared_concat=true"),
])
def test_speed_paths_keep_a_run_identity(overrides, speed_key):
    """head.fused and model.shared_concat change kernels and memory, not the method: a run made with or without
    them (or before they existed) is the same run. d063748993 is the DenseNet row's signature before the key."""
    from hydra import compose, initialize_config_dir

    from gsm import runs

    with initialize_config_dir(config_dir=str(REPO / "gsm" / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
        fast = compose("train", overrides=[*overrides, speed_key])
    before = SIGNATURES_BEFORE_FIDELITY_KEYS.get(tuple(overrides), "d063748993")
    assert runs.signature(cfg) == runs.signature(fast) == before
