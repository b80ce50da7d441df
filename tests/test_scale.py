"""Scale (docs/runs.md): a 2-process gloo DDP run and a 2-job Ray sweep, both on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import CPU_THREADS, REPO, run_cli, run_process
from gsm.data import build_data
from gsm.metrics import top1_error
from gsm.models import build_classifier


@pytest.mark.slow
def test_ddp_gloo_two_processes_write_one_result_over_the_whole_test_set(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node=2", "--master_port=29531", str(REPO / "train.py"),
           f"output_root={tmp_path}", "trainer.epochs=2", "dataset.subset=250", "trainer.analyze_train=false", CPU_THREADS]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    results = list(tmp_path.rglob("results.json"))
    assert len(results) == 1
    run_dir = results[0].parent
    res = json.loads(results[0].read_text())
    assert res["world_size"] == 2 and res["test_samples"] == 250
    writers = {p.name.split(".")[-2] for p in (run_dir / "tensorboard").rglob("events.*")}
    assert len(writers) == 1  # only rank 0 writes (one process id in the event file names)
    assert len(res["history"]) == 2

    # the reported error covers the whole test set (250 = odd split over 2 ranks): re-evaluate the
    # checkpoint in one process and compare
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    data = build_data(cfg.dataset, batch_size=50)
    model = build_classifier(cfg.model, cfg.head, num_classes=10, multilabel=False, in_channels=1,
                             image_size=data.splits.image_size)
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"])
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x) for x, _, _ in data.test])
    assert top1_error(logits, data.splits.test.targets) == pytest.approx(res["top1_error_frac"], abs=1e-12)

    # a requeue without torchrun (world size 2 -> 1) must not resume the 2-process checkpoint silently
    (run_dir / "results.json").unlink()
    single = run_cli(f"output_root={tmp_path}", "trainer.epochs=2", "dataset.subset=250", "trainer.analyze_train=false")
    assert single.returncode == 2, single.stderr[-2000:]
    line = single.stderr.strip().splitlines()[-1]
    assert line.startswith(f"gsm: error: cannot resume {run_dir}") and "world_size 2 → 1" in line
    assert not (run_dir / "results.json").exists()


@pytest.mark.slow
def test_ray_sweep_two_jobs(tmp_path):
    out = run_process("-m", "hydra/launcher=gsm_ray", f"output_root={tmp_path}", "head.mu=-0.1,0.1", "trainer.epochs=1",
                  "dataset.subset=96", "trainer.analyze_train=false", timeout=400,
                  env={"RAY_USAGE_STATS_ENABLED": "0"})
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    results = sorted(tmp_path.rglob("results.json"))
    assert len(results) == 2
    mus = sorted(json.loads(p.read_text())["config"]["head"]["mu"] for p in results)
    assert mus == [-0.1, 0.1]
    assert all(json.loads(p.read_text())["learned"] is not None for p in results)
