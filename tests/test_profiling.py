"""gsm.profiling: the classification table on hand-made names and a hand-made CUDA event list, and real CPU
profiles of tiny models (shares sum to 100 %; pure Linear is matmul, a convolution is conv, torch.cat is copies,
SGD's step is the optimiser, the loader's batches are the input)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.autograd import DeviceType
from torch.autograd.profiler_util import FunctionEvent

from gsm.profiling import (CATEGORIES, CATEGORY_RULES, ENGINE_SCOPE, INPUT_SCOPE, ScopedLoader, StepProfile, classify,
                           markdown_table, profile_callable, summarize, timed_items)

CPU = torch.device("cpu")


@pytest.mark.parametrize("chain, category", [
    (["aten::conv2d", "aten::convolution", "aten::cudnn_convolution", "sm90_xmma_fprop_implicit_gemm_bf16"], "conv"),
    ([ENGINE_SCOPE + "ConvolutionBackward0", "ConvolutionBackward0", "aten::convolution_backward",
      "sm80_xmma_dgrad_implicit_gemm"], "conv"),
    (["aten::linear", "aten::addmm", "sm90_xmma_gemm_bf16bf16_bf16f32"], "matmul"),
    ([ENGINE_SCOPE + "AddmmBackward0", "AddmmBackward0", "aten::mm"], "matmul"),
    (["aten::batch_norm", "aten::cudnn_batch_norm", "cudnn::bn_fw_tr_1C11_kernel_NCHW"], "norm"),
    ([ENGINE_SCOPE + "NativeBatchNormBackward0", "NativeBatchNormBackward0", "aten::native_batch_norm_backward",
      "batch_norm_backward_reduce_channels_last_kernel"], "norm"),
    # the engine adding up the gradients of a tensor used twice: its own operator, not the node it ran after
    ([ENGINE_SCOPE + "NativeBatchNormBackward0", "aten::add", "vectorized_elementwise_kernel"], "elementwise"),
    (["aten::cross_entropy_loss", "aten::log_softmax", "aten::_log_softmax", "cunn_SoftMaxForward"], "reduce/loss"),
    (["aten::adaptive_avg_pool2d", "aten::mean", "aten::div_", "aten::to"], "reduce/loss"),
    (["aten::cat", "CatArrayBatchedCopy_contig"], "copy/memory"),
    (["BlockInput", "aten::copy_"], "copy/memory"),  # DenseNet's model.shared_concat
    ([ENGINE_SCOPE + "BlockInputBackward", "BlockInputBackward", "aten::split_with_sizes"], "copy/memory"),
    (["aten::to", "aten::_to_copy", "aten::copy_", "direct_copy_kernel_cuda"], "copy/memory"),
    (["aten::contiguous", "aten::clone", "aten::copy_"], "copy/memory"),
    (["Memcpy DtoD (Device -> Device)"], "copy/memory"),
    (["Memset (Device)"], "copy/memory"),
    (["aten::relu_", "aten::clamp_min_"], "elementwise"),
    (["aten::addcmul_"], "elementwise"),
    (["aten::erf", "vectorized_elementwise_kernel"], "elementwise"),
    (["Optimizer.step#SGD.step", "aten::_foreach_add_", "multi_tensor_apply_kernel"], "optimiser"),
    (["Optimizer.zero_grad#SGD.zero_grad"], "optimiser"),
    ([INPUT_SCOPE, "aten::index", "index_elementwise_kernel"], "input"),
    # names no rule knows pass the decision inwards: compiled graphs are classified by their kernels
    (["CompiledFunction", "triton_poi_fused_add_relu_0"], "elementwise"),
    (["CompiledFunction", "triton_red_fused_sum_1"], "reduce/loss"),
    (["torch::autograd::AccumulateGrad", "aten::detach"], "other"),
    (["aten::some_new_op"], "other"),
    ([], "other"),
])
def test_classification_table(chain, category):
    assert classify(chain) == category


def test_every_rule_names_a_category_and_every_category_is_reachable():
    assert {r.category for r in CATEGORY_RULES} | {"other"} == set(CATEGORIES)


def _event(name: str, start: float, end: float, device: DeviceType = DeviceType.CPU, parent=None) -> FunctionEvent:
    e = FunctionEvent(id=0, name=name, thread=1, start_us=start, end_us=end, device_type=device)
    if parent is not None:
        e.set_cpu_parent(parent)
        parent.append_cpu_child(e)
    return e


def test_a_hand_made_cuda_event_list():
    """Kernels are put under the operator that launched them (FunctionEvent.kernels); a device event no operator
    claims (a replayed CUDA graph's kernel) counts by its own name."""
    conv = _event("aten::conv2d", 0, 50)
    cudnn = _event("aten::cudnn_convolution", 1, 49, parent=conv)
    cudnn.append_kernel("sm90_xmma_fprop_implicit_gemm", 0, 100.0)
    step = _event("Optimizer.step#SGD.step", 60, 90)
    foreach = _event("aten::_foreach_add_", 61, 80, parent=step)
    foreach.append_kernel("multi_tensor_apply_kernel", 0, 10.0)
    engine = _event(ENGINE_SCOPE + "NativeBatchNormBackward0", 100, 120)
    add = _event("aten::add", 101, 110, parent=engine)
    add.append_kernel("vectorized_elementwise_kernel", 0, 3.0)
    device = [_event("sm90_xmma_fprop_implicit_gemm", 5, 105, DeviceType.CUDA),
              _event("multi_tensor_apply_kernel", 70, 80, DeviceType.CUDA),
              _event("vectorized_elementwise_kernel", 111, 114, DeviceType.CUDA),
              _event("Memcpy DtoD (Device -> Device)", 130, 135, DeviceType.CUDA)]
    items = timed_items([conv, cudnn, step, foreach, engine, add, *device], "cuda")
    assert sorted((classify(c), round(s * 1e6, 6)) for c, s in items) == [
        ("conv", 100.0), ("copy/memory", 5.0), ("elementwise", 3.0), ("optimiser", 10.0)]
    seconds = summarize(items)
    assert list(seconds) == list(CATEGORIES)
    p = StepProfile("hand-made", "cuda", steps=2, batch_size=4, seconds=seconds, wall_seconds=236e-6)
    assert p.busy_seconds == pytest.approx(118e-6)
    assert p.launch_gaps == pytest.approx(0.5)
    assert p.shares()["conv"] == pytest.approx(100 / 118)
    assert "launch gaps 50% of wall" in p.describe() and "conv 85%" in p.describe()
    # on a CPU profile the same operators count with their self time, and there are no launch gaps
    cpu_items = timed_items([conv, cudnn], "cpu")
    assert sorted((c[-1], round(s * 1e6, 6)) for c, s in cpu_items) == [("aten::conv2d", 2.0), ("aten::cudnn_convolution", 48.0)]
    assert StepProfile("cpu", "cpu", 1, 4, summarize(cpu_items), 1.0).launch_gaps is None


# The models below are sized so that their main operator takes tens of milliseconds: a shared machine that
# pauses this process for a few milliseconds inside another operator cannot change which category leads.
def _profile(fn) -> dict[str, float]:
    seconds = summarize(profile_callable(fn, CPU))
    total = sum(seconds.values())
    assert total > 0
    shares = {k: v / total for k, v in seconds.items()}
    assert math.isclose(sum(shares.values()), 1.0)
    return shares


def test_a_pure_linear_model_spends_its_time_in_matmuls():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 512, bias=False), nn.Linear(512, 512, bias=False))
    x = torch.randn(256, 512)
    shares = _profile(lambda: [model(x).square().mean().backward() for _ in range(3)])
    assert shares["matmul"] > 0.6 and max(shares, key=shares.get) == "matmul", shares


def test_a_conv_model_spends_its_time_in_convolutions():
    torch.manual_seed(0)
    model = nn.Conv2d(32, 32, 3, padding=1, bias=False)
    x = torch.randn(8, 32, 32, 32)
    shares = _profile(lambda: [model(x).square().mean().backward() for _ in range(2)])
    assert shares["conv"] > 0.5 and max(shares, key=shares.get) == "conv", shares


def test_concatenation_shows_in_copies():
    parts = [torch.randn(64, 64, 32) for _ in range(8)]
    shares = _profile(lambda: [torch.cat(parts, dim=1) for _ in range(20)])
    assert shares["copy/memory"] > 0.6 and max(shares, key=shares.get) == "copy/memory", shares


def test_a_training_step_has_its_optimiser_step_and_input_apart():
    """A small training loop over ScopedLoader: every kind of work it does lands in its category."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    class Loader:
        def __init__(self):
            self.images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
            self.epoch = None

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return 2

        def __iter__(self):
            for i in range(2):
                x = self.images[i * 8:(i + 1) * 8].float().flip(3) / 255
                yield x, torch.arange(8) % 10

    loader = ScopedLoader(Loader())
    loader.set_epoch(3)
    assert loader.loader.epoch == 3 and len(loader) == 2

    def train():
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(torch.cat([x, x])[:8]), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    shares = _profile(train)
    for category in ("conv", "matmul", "norm", "elementwise", "reduce/loss", "copy/memory", "optimiser", "input"):
        assert shares[category] > 0, (category, shares)


def test_the_summary_row_and_markdown_table():
    a = StepProfile("WRN b128", "cuda", 5, 128, dict.fromkeys(CATEGORIES, 0.0) | {"conv": 0.03, "matmul": 0.01}, 0.05)
    b = StepProfile("tiny", "cpu", 1, 8, dict.fromkeys(CATEGORIES, 0.0) | {"other": 0.002}, 0.004)
    check, value, status = a.row()
    assert check == "WRN b128: where a training step's time goes" and status == "info"
    assert value.startswith("conv 75% · matmul 25% · norm 0%") and "device 8.0 ms/step of 10.0 ms wall" in value
    lines = markdown_table([a, b]).splitlines()
    assert lines[0] == "| recipe | " + " | ".join(CATEGORIES) + " | busy ms/step | wall ms/step | launch gaps | steps |"
    assert lines[2] == "| WRN b128 (cuda) | 75% | 25% | 0% | 0% | 0% | 0% | 0% | 0% | 0% | 8.0 | 10.0 | 20% | 5 × batch 128 |"
    assert lines[3].endswith("| 100% | 2.0 | 4.0 | n/a (CPU) | 1 × batch 8 |") and len(lines) == 4
    assert "(batch 8, 1 step)" in b.describe() and "(batch 128, 5 steps)" in a.describe()
