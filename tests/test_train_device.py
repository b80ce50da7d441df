"""Where a run computes (gsm.train.device): the device, each process's batch, threads and workers, decided from the
checked trainer settings, on this CPU (the CUDA and multi-process cases: tests/test_scale.py, the cluster tests)."""

from __future__ import annotations

import os

import pytest
import torch
import yaml

from gsm.config import CONFIG_DIR
from gsm.errors import ConfigError
from gsm.settings import TrainerSettings
from gsm.train import device as gdev
from gsm.train.device import Dist, Machine


def _trainer(**values) -> TrainerSettings:
    """train.yaml's trainer settings with ``values`` in place of its defaults."""
    defaults = yaml.safe_load((CONFIG_DIR / "train.yaml").read_text())["trainer"]
    return TrainerSettings.from_config({**defaults, **values})


def test_cuda_without_a_visible_gpu_is_a_config_error_and_auto_falls_back_to_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as info:
        gdev.resolve_device("cuda")
    assert str(info.value) == ("trainer.device=cuda but no CUDA device is visible; use trainer.device=auto or cpu")
    assert gdev.resolve_device("auto") == gdev.resolve_device("cpu") == torch.device("cpu")


def test_the_global_batch_is_shared_by_the_processes_and_must_divide_evenly():
    trainer = _trainer(batch_size=12)
    machine = Machine.decide(trainer, torch.device("cpu"), Dist(rank=1, world_size=3, local_rank=1))
    assert (machine.batch_size, machine.eval_batch_size) == (4, 16)  # 12 / 3; evaluation: 4 x the process's batch
    assert Machine.decide(_trainer(batch_size=12, eval_batch_size=5), torch.device("cpu")).eval_batch_size == 5
    with pytest.raises(ConfigError) as info:
        Machine.decide(_trainer(batch_size=10), torch.device("cpu"), Dist(rank=0, world_size=3))
    assert str(info.value) == "trainer.batch_size=10 (the global batch) must be a positive multiple of the 3 processes"


def test_on_a_cpu_amp_and_channels_last_are_off_and_compile_follows_its_setting():
    on_cpu = Machine.decide(_trainer(amp="bf16", channels_last=True, compile="auto"), torch.device("cpu"))
    assert (on_cpu.amp, on_cpu.channels_last, on_cpu.compiled) == (None, False, False)
    assert Machine.decide(_trainer(compile=True, compile_mode="max-autotune"), torch.device("cpu")).compiled is True
    # on a GPU (decided, nothing is moved there): the AMP dtype, channels-last and compile=auto apply
    on_gpu = Machine.decide(_trainer(amp="fp16", channels_last=True, compile="auto"), torch.device("cuda", 0))
    assert (on_gpu.amp, on_gpu.channels_last, on_gpu.compiled) == (torch.float16, True, True)


def test_cpu_threads_are_the_cores_shared_by_this_machines_processes(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert gdev.cpu_threads(_trainer(cpu_threads=None)) == cores
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores * 4))  # more processes than cores: one thread each
    assert gdev.cpu_threads(_trainer(cpu_threads=None)) == 1
    assert gdev.cpu_threads(_trainer(cpu_threads=3)) == 3  # a set value wins
    assert gdev.num_workers(_trainer(num_workers=2)) == 2


def test_a_machine_that_cannot_be_decided_leaves_no_process_group_behind(monkeypatch):
    """Machine.set_up under torchrun: when the decision fails (a batch the processes cannot share), the process
    group it joined is closed before the error goes on."""
    group = Dist(rank=0, world_size=3)
    closed = []
    monkeypatch.setattr(gdev, "init_distributed", lambda device: group)
    monkeypatch.setattr(gdev, "close_distributed", closed.append)
    before = torch.get_num_threads()
    try:
        with pytest.raises(ConfigError, match="multiple of the 3 processes"):
            Machine.set_up(_trainer(batch_size=10, device="cpu", cpu_threads=1))
        assert closed == [group]
        assert Machine.set_up(_trainer(batch_size=12, device="cpu", cpu_threads=1)).batch_size == 4
        assert closed == [group] and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_every_rank_learns_whether_rank_0_found_a_finished_run(monkeypatch):
    """Dist.on_main: only rank 0 looks; the others get {} when it found a run (its record stays on rank 0)."""
    said = {}

    def broadcast(holder, src):
        assert src == 0
        holder[0] = said["rank0"]

    monkeypatch.setattr(gdev.torch_dist, "broadcast_object_list", broadcast)
    other = Dist(rank=1, world_size=2, local_rank=1)
    for found, expect in ((True, {}), (False, None)):
        said["rank0"] = found
        assert other.on_main(lambda: pytest.fail("only rank 0 looks")) == expect
    assert Dist().on_main(lambda: {"epoch": 3}) == {"epoch": 3}  # one process: its own answer
