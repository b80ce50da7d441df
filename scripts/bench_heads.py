"""Cost of each head's forward + backward against ``nn.Linear`` + its loss, at the recipes' shapes.

    .venv/bin/python scripts/bench_heads.py [--device cpu|cuda] [--min-time 0.5]

For every recipe shape (features → classes, batch) it times, with the features requiring a gradient
(as they do when a backbone sits below): the head's forward, its loss (``gsm.heads.head_loss``) and
the backward, and the same for a plain ``nn.Linear`` with cross-entropy (single-label) or
BCE-with-logits (multi-label). The ratio head / Linear is the head's overhead on the head itself;
the backbone's step, far larger, is not included. ``gsoftmax fused`` is the G-softmax head with
``head.fused=true`` (``gsm.heads.FusedGSoftmaxLogits``: Φ's derivatives in one backward pass), next to
the default ``gsoftmax`` for an A/B of the two; a second table times the G-softmax term alone
(``head.logits_from_x`` on x of the recipe's shape, forward and backward to x, μ, σ), unfused and fused
alternately, where the difference is not drowned by ``fc``. On CUDA each head's step first runs under
``torch.cuda.set_sync_debug_mode("error")``: a read of a device value to the host fails it.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils import benchmark

from gsm.heads import GSoftmaxHead, build_head, head_loss

# recipe: (in_features, num_classes, batch, multilabel, heads)
RECIPES = {
    "WRN-40-14 CIFAR-100": (640, 100, 128, False, ("softmax", "gsoftmax", "gsoftmax fused", "lsoftmax")),
    "ResNet-101 Tiny ImageNet": (2048, 200, 80, False, ("softmax", "gsoftmax", "gsoftmax fused", "lsoftmax")),
    "ResNet-101 MS COCO (multi-label)": (2048, 80, 16, True, ("softmax", "gsoftmax", "gsoftmax fused", "msml")),
}
# a row label that is not a head name: (head name, head.* settings)
VARIANTS = {"gsoftmax fused": ("gsoftmax", {"fused": True})}


class LinearBaseline(nn.Module):
    """``nn.Linear`` with m outputs, the cost floor every head is compared with."""

    def __init__(self, in_features: int, num_classes: int, multilabel: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)
        self.multilabel = multilabel

    def loss(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = self.fc(features)
        if self.multilabel:
            return nn.functional.binary_cross_entropy_with_logits(logits, target)
        return nn.functional.cross_entropy(logits, target)


def step_fn(module: nn.Module, loss_fn, features: torch.Tensor, target: torch.Tensor):
    params = [p for p in module.parameters() if p.requires_grad]

    def step() -> None:
        loss = loss_fn(features, target)
        torch.autograd.grad(loss, [features, *params])

    return step


def check_no_host_sync(step) -> None:
    """On CUDA: one step under ``set_sync_debug_mode("error")`` fails on any device-to-host read."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def time_step(step, device: torch.device, min_time: float) -> float:
    """Median seconds per call (torch.utils.benchmark: warm-up, device sync, repeated blocks)."""
    for _ in range(5):
        step()
    timer = benchmark.Timer(stmt="step()", globals={"step": step})
    return timer.blocked_autorange(min_run_time=min_time).median


def phi_term_step(head: GSoftmaxHead, x: torch.Tensor, grad: torch.Tensor):
    """The G-softmax head after ``fc``: ``head.logits_from_x(x)`` (z of eqs. 3–4, z⁺ − z⁻ multi-label) and its
    gradients w.r.t. x, μ, σ."""

    def step() -> None:
        torch.autograd.grad(head.logits_from_x(x), [x, head.mu_param, head.sigma_param], grad)

    return step


def phi_term_table(device: torch.device, min_time: float, rounds: int) -> None:
    print("\n| recipe | x shape | Φ term unfused µs | fused µs | fused / unfused |")
    print("|---|---|---:|---:|---:|")
    for recipe, (_, m, b, multilabel, _) in RECIPES.items():
        heads = [GSoftmaxHead(1, m, multilabel, fused=fused).to(device) for fused in (False, True)]
        x = torch.randn(b, *heads[0].mu_param.shape, device=device, requires_grad=True)
        grad = torch.randn(b, m, device=device)
        steps = [phi_term_step(head, x, grad) for head in heads]
        best = [float("inf"), float("inf")]
        for _ in range(rounds):  # alternate, keep the best of each
            for i, step in enumerate(steps):
                best[i] = min(best[i], time_step(step, device, min_time))
        print(f"| {recipe} | {tuple(x.shape)} | {best[0] * 1e6:.1f} | {best[1] * 1e6:.1f} | {best[1] / best[0]:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds of timing per measurement")
    p.add_argument("--rounds", type=int, default=3, help="alternating head/baseline measurements (best kept)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, torch {torch.__version__}")
    print("| recipe | features → classes, batch | head | fwd+bwd µs | nn.Linear + loss µs | ratio |")
    print("|---|---|---|---:|---:|---:|")
    for recipe, (d, m, b, multilabel, heads) in RECIPES.items():
        features = torch.randn(b, d, device=device, requires_grad=True)
        target = torch.randint(0, 2, (b, m), device=device).float() if multilabel else torch.randint(0, m, (b,), device=device)
        base = LinearBaseline(d, m, multilabel).to(device)
        base_step = step_fn(base, base.loss, features, target)
        for name in heads:
            head_name, cfg = VARIANTS.get(name, (name, {}))
            head = build_head(head_name, d, m, multilabel, **cfg).to(device).train()
            step = step_fn(head, lambda f, y, h=head: head_loss(h, h(f, y), y), features, target)
            if device.type == "cuda":
                step()  # warm-up outside the check (first-call allocations)
                check_no_host_sync(step)
            # alternate head and baseline, keep the best of each: robust to a machine shared with others
            t_head, t_base = float("inf"), float("inf")
            for _ in range(args.rounds):
                t_base = min(t_base, time_step(base_step, device, args.min_time))
                t_head = min(t_head, time_step(step, device, args.min_time))
            print(f"| {recipe} | {d} → {m}, {b} | {name} | {t_head * 1e6:.0f} | {t_base * 1e6:.0f} "
                  f"| {t_head / t_base:.2f} |")
    phi_term_table(device, args.min_time, args.rounds)


if __name__ == "__main__":
    main()
