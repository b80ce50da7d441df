"""DenseNet's two concatenation paths, A/B: ``torch.cat`` per layer vs one shared buffer per block.

    .venv/bin/python scripts/bench_densenet.py                     # DenseNet-100-24, batch 4, 32x32, CPU
    .venv/bin/python scripts/bench_densenet.py --device cuda --batch 32   # bf16 autocast, channels_last
    .venv/bin/python scripts/bench_densenet.py --paths shared --rounds 1  # one path: its process's peak RSS

Times a training step's forward + backward of the backbone (``gsm.models.densenet.DenseNet`` at the
given depth and growth, the paper's DenseNet-100-24 by default) with a linear layer and cross-entropy
on top, for ``model.shared_concat`` false and true, alternating the two and keeping each one's best
median (robust to a machine shared with others). On CUDA the step runs as the trainer runs it there
(bf16 autocast, channels_last; ``--channels-last`` on the CPU too). Also reports, per path, the activation memory autograd keeps for the
backward pass (the bytes of the distinct storages of every saved tensor, via
``torch.autograd.graph.saved_tensors_hooks``), on CUDA the peak allocated memory of a step, and with
one path (``--paths``) the process's peak resident memory. With both paths it first checks that they
give the same loss and gradients on the same weights.
"""

from __future__ import annotations

import argparse
import platform
import resource

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils import benchmark

from gsm.models.densenet import DenseNet


def build(shared: bool, args: argparse.Namespace, device: torch.device, state: dict | None) -> nn.Module:
    torch.manual_seed(0)
    backbone = DenseNet(3, depth=args.depth, growth=args.growth, bc=args.bc, shared_concat=shared)
    model = nn.Sequential(backbone, nn.Linear(backbone.out_features, 100))
    if state is not None:
        model.load_state_dict(state)
    model.to(device).train()
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device):
    def loss() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return F.cross_entropy(model(x).float(), y)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss().backward()

    return loss, step


def saved_bytes(loss_fn) -> int:
    """Bytes of the distinct storages autograd saves for backward during one forward."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    del loss
    return sum(storages.values())


def time_step(step, device: torch.device, min_time: float) -> float:
    for _ in range(2):
        step()
    timer = benchmark.Timer(stmt="step()", globals={"step": step})
    return timer.blocked_autorange(min_run_time=min_time).median


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--growth", type=int, default=24)
    p.add_argument("--bc", action="store_true", help="DenseNet-BC")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--min-time", type=float, default=2.0, help="seconds of timing per measurement")
    p.add_argument("--rounds", type=int, default=2, help="alternating cat/shared measurements (best kept)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--channels-last", action="store_true", help="channels_last on the CPU (always on CUDA)")
    p.add_argument("--paths", default="cat,shared", help="which of cat, shared to run (comma-separated)")
    args = p.parse_args()
    paths = args.paths.split(",")
    if not paths or not set(paths) <= {"cat", "shared"}:
        p.error(f"--paths={args.paths}: a comma-separated subset of cat,shared")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.channels_last = args.channels_last or device.type == "cuda"
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen).to(device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (args.batch,), generator=gen).to(device)
    models = {name: build(name == "shared", args, device, None) for name in paths}  # seeded: same weights
    steps = {name: step_fn(m, x, y, device) for name, m in models.items()}
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}; DenseNet-{args.depth}-{args.growth}"
          f"{'-BC' if args.bc else ''}, batch {args.batch}, {args.size}x{args.size}"
          f"{', channels_last' if args.channels_last else ''}")

    if len(steps) == 2:
        grads = {}
        for name, (loss_fn, _) in steps.items():
            models[name].zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward()
            grads[name] = (loss.item(), [q.grad.float() for q in models[name].parameters()])
        diff = max((a - b).abs().max().item() for a, b in zip(grads["cat"][1], grads["shared"][1]))
        scale = max(a.abs().max().item() for a in grads["cat"][1])
        print(f"same step: loss cat {grads['cat'][0]:.6f} shared {grads['shared'][0]:.6f}, "
              f"max |grad difference| {diff:.2e} (largest |grad| {scale:.2e})")

    mem = {name: saved_bytes(loss_fn) for name, (loss_fn, _) in steps.items()}
    peak = {}
    if device.type == "cuda":
        for name, (_, step) in steps.items():
            step()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            step()
            torch.cuda.synchronize()
            peak[name] = torch.cuda.max_memory_allocated()
    best = {name: float("inf") for name in steps}
    for _ in range(args.rounds):
        for name, (_, step) in steps.items():
            best[name] = min(best[name], time_step(step, device, args.min_time))
    print("| path | fwd+bwd s/step | img/s | saved for backward MiB |" + (" peak allocated MiB |" if peak else ""))
    print("|---|---:|---:|---:|" + ("---:|" if peak else ""))
    for name in steps:
        row = f"| {name} | {best[name]:.3f} | {args.batch / best[name]:.1f} | {mem[name] / 2**20:.1f} |"
        print(row + (f" {peak[name] / 2**20:.0f} |" if peak else ""))
    if len(steps) == 2:
        print(f"shared / cat: time {best['shared'] / best['cat']:.3f}, saved memory {mem['shared'] / mem['cat']:.3f}")
    else:
        print(f"peak resident memory of this process ({paths[0]} only): "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()
