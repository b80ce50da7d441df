"""Every GPU check of gsm in one command, one summary table (run by scripts/gpu_check.sh).

Sections (each in its own process with a time limit, so one failure or hang does not stop the rest; they
run in the order of SECTIONS, each only while enough of ``--budget`` is left):

  a. heads:     CPU vs GPU loss and gradients of every head on deep copies (float64; L-softmax at its
                configured margin 4), and a finite bf16-autocast step on the GPU
  d. head cost: each head's cost in a real training step against softmax (WRN-40-14 CIFAR-100 batch 128;
                ResNet-101 448² batch 16 multi-label), heads alternating in rounds on one backbone; and
                head-only forward+backward vs nn.Linear + its loss
  c. overhead:  a 2-epoch full-size run of WRN-40-14 G-softmax on random-pixel CIFAR-100 in the official
                pickle layout: train seconds per epoch vs eval_seconds and checkpoint_seconds (results.json),
                and the recipe's overhead with its trainer.eval_every
  g. compile:   eager vs torch.compile on the WRN-40-14 and ResNet-101 448² recipes, against the speed goals;
                compile_densenet (last, needs 300 s of the budget): DenseNet-100-24 batch 32 eager vs
                reduce-overhead (CUDA graphs), e.g. ``--only compile_densenet``
  f. end to end: the real CLI on the digits sets (bf16 AMP, compile=auto on CUDA; multi-label, empirical init)
  b. estimate3, estimate1, estimate2: ``gsm.estimate.run_estimate`` for Tables III, I, II under the full
                profile (short probes, trainer.compile=false to fit the time; section g has compiled rates)
  e. loader:    the COCO recipe's JPEG pipeline, images/s per worker before/after, and a real DataLoader

Status: ok, FAIL (an error or a wrong value: exit 1), miss (a speed target not met), info.

    python scripts/gpu_check.py [--cpu-smoke] [--out DIR] [--budget SECONDS]
    python scripts/gpu_check.py --only heads,estimate3 [--cpu-smoke]                  # some sections

``--cpu-smoke`` runs every section with tiny sizes on the CPU (to test this script without a GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

Row = tuple[str, str, str]  # (check, value, status: ok | FAIL | info)


def _device(smoke: bool):
    import torch

    if smoke:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device visible (use --cpu-smoke to test the script on a CPU)")
    return torch.device("cuda")


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# --------------------------------------------------------------------------- a. heads


def sec_heads(smoke: bool) -> list[Row]:
    import torch

    from gsm.heads import build_head, head_loss

    dev = _device(smoke)
    cases = [("softmax", False, {}), ("softmax", True, {}), ("gsoftmax", False, {}), ("gsoftmax", True, {}),
             ("lsoftmax", False, {"margin": 4}), ("msml", True, {})]
    rows: list[Row] = []
    for name, ml, kw in cases:
        label = f"{name}{' multi-label' if ml else ''}{' m=4' if kw else ''}"
        try:
            torch.manual_seed(0)
            cpu = build_head(name, 64, 100, ml, **kw).double().train()
            gpu = copy.deepcopy(cpu).to(dev)  # the same state: a stateful head (L-softmax's step) must not advance twice
            f = torch.randn(32, 64, dtype=torch.float64) * 2
            y = (torch.rand(32, 100) < 0.1).double() if ml else torch.randint(0, 100, (32,))
            results = []
            for head, d in ((cpu, torch.device("cpu")), (gpu, dev)):
                x = f.detach().clone().to(d).requires_grad_(True)  # a leaf on each device (its .grad is compared)
                loss = head_loss(head, head(x, y.to(d)), y.to(d))
                loss.backward()
                grads = [x.grad] + [p.grad for p in head.parameters() if p.grad is not None]
                results.append((loss.detach().cpu(), [g.detach().cpu() for g in grads]))
            (l_cpu, g_cpu), (l_gpu, g_gpu) = results
            dl = abs(float(l_cpu) - float(l_gpu))
            dg = max(float((a - b).abs().max() / a.abs().max().clamp_min(1e-30)) for a, b in zip(g_cpu, g_gpu))
            ok = dl <= 1e-9 * max(1.0, abs(float(l_cpu))) and dg <= 1e-8 and len(g_cpu) == len(g_gpu)
            rows.append((f"{label}: CPU vs {dev.type} (float64)", f"Δloss {dl:.1e}, max relative Δgrad {dg:.1e}",
                         "ok" if ok else "FAIL"))
            if dev.type == "cuda":
                h = copy.deepcopy(cpu).float().to(dev)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    z = torch.nn.Linear(64, 64).to(dev)(f.float().to(dev))
                loss = head_loss(h, h(z.float(), y.to(dev).float() if ml else y.to(dev)), y.to(dev))
                loss.backward()
                rows.append((f"{label}: bf16 backbone step", f"loss {float(loss):.4f}",
                             "ok" if torch.isfinite(loss) else "FAIL"))
        except Exception as exc:  # noqa: BLE001 - reported in the table
            rows.append((label, f"{type(exc).__name__}: {exc}"[:160], "FAIL"))
    return rows


# --------------------------------------------------------------------------- b. / g. estimate


def _estimate_rows(tables: dict[str, list[str]], overrides: list[str], smoke: bool, tag: str,
                   probe: dict[str, int]) -> list[Row]:
    from gsm.estimate import run_estimate

    rows: list[Row] = []
    for table, exps in tables.items():
        buf = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(buf):
            rc = run_estimate(exps, "smoke" if smoke else "full", overrides, "basic",
                              device="cpu" if smoke else "cuda", **probe)
        text = buf.getvalue()
        print(text, flush=True)
        lines = text.splitlines()
        head = next(i for i, line in enumerate(lines) if line.startswith("| recipe |"))
        for line in lines[head + 2:]:
            if not line.startswith("|"):
                break
            c = [x.strip() for x in line.strip("|").split("|")]
            rows.append((f"{table}{tag} {c[0]}: {c[1]}", f"{c[2]} img/s, MFU {c[4]}, peak {c[5]}, "
                         f"eval {c[6]} img/s, ckpt {c[7]}, loader {c[8]}, start-up {c[9]} s", "info"))
        total = next(line for line in lines if line.startswith("total:"))
        rows.append((f"{table}{tag} total", f"{total.split(': ', 2)[-1]} (probe {time.perf_counter() - start:.0f} s)",
                     "ok" if rc == 0 else "FAIL"))
    return rows


def sec_estimate(table: int, smoke: bool) -> list[Row]:
    from gsm import paper

    if smoke:
        # a smoke row or two per table: Table II's are ResNet-101 like Table III's (a minute each on a busy CPU)
        exps = {1: ["table1/wrn_cifar100_gsoftmax", "table1/wrn_cifar100_lsoftmax"], 2: paper.experiments(2)[:1],
                3: paper.experiments(3)[:1]}[table]
        probe = {"warmup": 1, "steps": 1, "eval_batches": 1}
    else:
        exps = paper.experiments(table)
        probe = {"warmup": 3, "steps": 10, "eval_batches": 2}
    return _estimate_rows({f"table{table}": exps}, ["trainer.compile=false"], smoke, "", probe)


# The goals for torch.compile / CUDA graphs on one H100 (img/s of gsm 0.1 eager, bf16, channels_last).
COMPILE_GOALS = {  # experiment: (label, what is compared, goal)
    "table1/wrn_cifar100_gsoftmax": ("WRN-40-14 C-100 b128", "mfu", 0.40),
    "table1/densenet_cifar100_gsoftmax": ("DenseNet-100-24 C-100 b32", "speedup", 2.0),
    "table3/resnet101_coco_gsoftmax_mu0_sigma1": ("ResNet-101 448² COCO b16", "speedup", 1.3),
}


def sec_compile(smoke: bool, densenet: bool = False):
    """Eager vs torch.compile on the recipes the issue names, through the estimate's probe (the trainer's own
    train_one_epoch). ``densenet``: DenseNet-100-24 at batch 32, eager vs mode reduce-overhead (CUDA graphs);
    its default-mode compile took 216 s for +4 % on an H100 (docs/paper-notes.md D30), so it is a section of
    its own that the default budget does not reach. Rows come as they are measured, so a time limit keeps
    the finished ones."""
    from gsm import estimate

    dev = _device(smoke)
    peak, _ = estimate.peak_flops(dev, None)
    if smoke:
        plan = [("table1/wrn_cifar100_gsoftmax", [("eager", ["trainer.compile=false"]),
                                                  ("eager again (no compile on CPU)", ["trainer.compile=false"])])]
        probe_kw = {"warmup": 1, "steps": 1, "eval_batches": 1}
        profile = "smoke"
    elif densenet:
        plan = [("table1/densenet_cifar100_gsoftmax", [("eager", ["trainer.compile=false"]), (
            "reduce-overhead", ["trainer.compile=true", "trainer.compile_mode=reduce-overhead"])])]
        probe_kw = {"warmup": 3, "steps": 15, "eval_batches": 2}
        profile = "full"
    else:
        plan = [("table1/wrn_cifar100_gsoftmax", [("eager", ["trainer.compile=false"]), ("compiled", ["trainer.compile=true"])]),
                ("table3/resnet101_coco_gsoftmax_mu0_sigma1", [("eager", ["trainer.compile=false"]),
                                                               ("compiled", ["trainer.compile=true"])])]
        probe_kw = {"warmup": 3, "steps": 15, "eval_batches": 2}
        profile = "full"
    for exp, variants in plan:
        label, measure, goal = COMPILE_GOALS[exp]
        eager_rate = None
        for name, overrides in variants:
            start = time.perf_counter()
            try:
                recipe = estimate.group_recipes(estimate.compose_experiments([exp], profile, overrides))[0]
                m = estimate.probe(recipe, dev, **probe_kw)
            except Exception as exc:  # noqa: BLE001
                yield (f"{label} {name}", f"{type(exc).__name__}: {exc}"[:160], "FAIL")
                continue
            took = time.perf_counter() - start
            rate = m["images_per_second"]
            mfu = m["flops_per_image"] * rate / peak if peak else None
            eager_rate = rate if name == "eager" else eager_rate
            text = (f"{rate:,.1f} img/s, MFU {'n/a' if mfu is None else f'{mfu:.1%}'}, eval {m['eval_images_per_second']:,.0f} "
                    f"img/s, start-up {m['startup_seconds']:.0f} s, probe {took:.0f} s")
            status = "info"
            if name != "eager" and eager_rate:
                text += f", {rate / eager_rate:.2f}x eager"
                ok = (mfu or 0) >= goal if measure == "mfu" else rate / eager_rate >= goal
                text += f" (goal {'MFU ≥ ' + format(goal, '.0%') if measure == 'mfu' else format(goal, '.1f') + 'x'})"
                status = "info" if smoke else ("ok" if ok else "miss")
            yield (f"{label} {name}", text, status)


# --------------------------------------------------------------------------- c. overhead of a real run


def sec_overhead(smoke: bool) -> list[Row]:
    from gsm.data.fixtures import make_cifar100

    with tempfile.TemporaryDirectory(prefix="gsm-gpu-check-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        if smoke:
            make_cifar100(root / "cifar100", train_per_class=4, test_per_class=2)
            extra = ["model.depth=10", "model.width=1", "trainer.device=cpu", "trainer.batch_size=32"]
        else:  # full size: 50,000 / 10,000 random-pixel images in the official pickles
            make_cifar100(root / "cifar100", train_per_class=500, test_per_class=100)
            extra = ["trainer.device=cuda"]
        made = time.perf_counter() - start
        # every epoch evaluated here, to time the test pass twice; the recipe itself evaluates every 5 epochs
        overrides = ["experiment=table1/wrn_cifar100_gsoftmax", f"dataset.root={root / 'cifar100'}", "trainer.epochs=2",
                     f"output_root={root / 'out'}", "trainer.progress=false", "trainer.compile=false",
                     "trainer.eval_every=1", *extra]
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(REPO / "train.py"), *overrides], cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - start
        sys.stdout.write(proc.stdout[-4000:])
        sys.stderr.write(proc.stderr[-4000:])
        if proc.returncode != 0:
            return [("2-epoch run", f"train.py exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1][:150]}", "FAIL")]
        results = sorted((root / "out").rglob("results.json"))
        if not results:
            return [("2-epoch run", "no results.json written", "FAIL")]
        res = json.loads(results[0].read_text())
    rows: list[Row] = [("2-epoch run", f"{' '.join(o for o in overrides if not o.startswith(('dataset.root', 'output_root')))}; "
                        f"data made in {made:.0f} s; process wall {wall:.1f} s, results wall_time_s "
                        f"{res.get('wall_time_s', float('nan')):.1f} s vs train_time_s {res.get('train_time_s', float('nan')):.1f} s",
                        "info")]
    for row in res.get("history", []):
        t, e, c = row.get("train_seconds"), row.get("eval_seconds"), row.get("checkpoint_seconds")
        if e is None or c is None:
            rows.append((f"epoch {row.get('epoch')}", f"train {t:.2f} s; eval_seconds/checkpoint_seconds missing "
                         f"from the history (keys: {', '.join(sorted(row))})", "FAIL"))
            continue
        share = (e + c) / t
        rows.append((f"epoch {row.get('epoch')}: train s / eval s / checkpoint s", f"{t:.2f} / {e:.2f} / {c:.2f} "
                     f"→ overhead {share:.1%} of training when evaluating every epoch "
                     f"({row.get('images_per_second', 0):,.0f} img/s)", "info"))
    last = res.get("history", [{}])[-1]
    every = int(res.get("config", {}).get("trainer", {}).get("eval_every") or 1)
    from omegaconf import OmegaConf

    recipe_every = int(OmegaConf.load(REPO / "gsm/configs/dataset_model/cifar100_wrn.yaml").trainer.eval_every)
    if {"train_seconds", "eval_seconds", "checkpoint_seconds"} <= set(last) and every == 1:
        t, e, c = last["train_seconds"], last["eval_seconds"], last["checkpoint_seconds"]
        share = (e / recipe_every + c) / t
        rows.append((f"recipe's overhead outside the hot loop (eval every {recipe_every} epochs, checkpoint every epoch)",
                     f"({e:.2f} s / {recipe_every} + {c:.2f} s) / {t:.2f} s = {share:.1%} (target ≤ 3 %)",
                     "info" if smoke else ("ok" if share <= 0.03 else "miss")))
    return rows


# --------------------------------------------------------------------------- d. head cost


def _interleaved_rates(model_cfg: dict, size: int, classes: int, multilabel: bool, batch: int, heads: tuple[str, ...],
                       dev, steps: int, rounds: int) -> dict[str, list[float]]:
    """Training images/s of each head on one shared backbone, measured in alternating rounds (A B C, B C A, ...)
    so that clock drift, allocator growth or cuDNN autotuning cannot favour whichever head runs first."""
    import torch

    from gsm.data.loaders import DeviceLoader
    from gsm.heads import build_head
    from gsm.models import Classifier, build_backbone
    from gsm.train import train_one_epoch

    torch.manual_seed(0)
    backbone = build_backbone(model_cfg, 3, size)
    cl = dev.type == "cuda"
    amp = torch.bfloat16 if cl else None
    scaler = torch.amp.GradScaler(dev.type, enabled=False)
    models, opts = {}, {}
    for head in heads:
        kw = {"margin": 4} if head == "lsoftmax" else {}
        models[head] = Classifier(backbone, build_head(head, backbone.out_features, classes, multilabel, **kw)).to(dev)
        if cl:
            models[head].to(memory_format=torch.channels_last)
        opts[head] = torch.optim.SGD(models[head].parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (steps * batch, 3, size, size), dtype=torch.uint8, generator=g)
    y = ((torch.rand(steps * batch, classes, generator=g) < 0.05).float() if multilabel
         else torch.randint(0, classes, (steps * batch,), generator=g))
    loader = DeviceLoader(images, y, batch, train=True, mean=[0.5] * 3, std=[0.25] * 3, device=dev,
                          crop_padding=4 if size <= 64 else 0, flip=True, channels_last=cl)
    rates: dict[str, list[float]] = {h: [] for h in heads}
    for r in range(rounds + 1):  # round 0 warms every head up (cuDNN autotuning, allocator) and is not counted
        order = heads[r % len(heads):] + heads[:r % len(heads)]
        for head in order:
            _sync(dev)
            stats = train_one_epoch(models[head], models[head].head, loader, opts[head], scaler, amp, r, False)
            if r:
                rates[head].append(float(stats["images_per_second"]))
    return rates


def _head_only_ms(head: str, d: int, classes: int, multilabel: bool, batch: int, dev, iters: int) -> tuple[float, float]:
    """(head fwd+bwd ms, nn.Linear + its loss ms) at one recipe's shapes."""
    import torch
    from torch import nn

    from gsm.heads import build_head, head_loss

    kw = {"margin": 4} if head == "lsoftmax" else {}
    h = build_head(head, d, classes, multilabel, **kw).to(dev).train()
    lin = nn.Linear(d, classes).to(dev)
    f = torch.randn(batch, d, device=dev, requires_grad=True)
    y = (torch.rand(batch, classes, device=dev) < 0.05).float() if multilabel else torch.randint(0, classes, (batch,), device=dev)
    loss_fn = nn.functional.binary_cross_entropy_with_logits if multilabel else nn.functional.cross_entropy

    def time_it(fn: Callable[[], Any]) -> float:
        for _ in range(3):
            fn()
        _sync(dev)
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        _sync(dev)
        return (time.perf_counter() - start) / iters * 1e3

    return (time_it(lambda: head_loss(h, h(f, y), y).backward()), time_it(lambda: loss_fn(lin(f), y).backward()))


def sec_head_cost(smoke: bool):
    """Rows as they are measured (a generator: a section cut off by its time limit keeps what it has)."""
    import statistics

    dev = _device(smoke)
    if smoke:
        recipes = [("WRN-10-1 CIFAR-100 b16", {"name": "wrn", "depth": 10, "width": 1}, 32, 100, False, 16,
                    ("softmax", "gsoftmax", "lsoftmax"), 2, 2),
                   ("ConvNet multi-label b8", {"name": "convnet", "width": 8}, 32, 80, True, 8, ("softmax", "gsoftmax"), 2, 2)]
    else:
        recipes = [("WRN-40-14 CIFAR-100 b128", {"name": "wrn", "depth": 40, "width": 14}, 32, 100, False, 128,
                    ("softmax", "gsoftmax", "lsoftmax"), 12, 4),
                   ("ResNet-101 448² GMP b16 multi-label", {"name": "resnet101", "pretrained": False, "pool": "gmp"},
                    448, 80, True, 16, ("softmax", "gsoftmax"), 12, 5)]
    for label, cfg, size, classes, ml, batch, heads, steps, rounds in recipes:
        try:
            rates = _interleaved_rates(cfg, size, classes, ml, batch, heads, dev, steps, rounds)
        except Exception as exc:  # noqa: BLE001
            yield (f"{label}", f"{type(exc).__name__}: {exc}"[:160], "FAIL")
            continue
        base = rates["softmax"]
        yield (f"{label} softmax: training step", f"{statistics.median(base):,.1f} img/s (median of {len(base)} rounds "
               f"of {steps} steps, heads alternating on one backbone)", "info")
        for head in heads[1:]:
            cost = statistics.median(b / h - 1 for b, h in zip(base, rates[head]))  # paired by round
            spread = max(b / h - 1 for b, h in zip(base, rates[head])) - min(b / h - 1 for b, h in zip(base, rates[head]))
            target = 0.03 if head == "lsoftmax" else 0.02
            yield (f"{label} {head}: cost vs softmax", f"{statistics.median(rates[head]):,.1f} img/s, {cost:+.1%} "
                   f"(rounds spread {spread:.1%}; target ≤ {target:.0%})",
                   "info" if smoke else ("ok" if cost <= target else "miss"))
    from gsm.models import build_backbone

    for label, cfg, size, classes, ml, batch, heads, steps, rounds in recipes:
        d = build_backbone(cfg, 3, size).out_features
        for head in heads:
            try:
                ms, ms_lin = _head_only_ms(head, d, classes, ml, batch, dev, 5 if smoke else 50)
                yield (f"{label} {head}: head alone fwd+bwd", f"{ms:.3f} ms vs nn.Linear+loss {ms_lin:.3f} ms "
                       f"({ms / ms_lin:.2f}x)", "info")
            except Exception as exc:  # noqa: BLE001
                yield (f"{label} {head}: head alone", f"{type(exc).__name__}: {exc}"[:160], "FAIL")


# --------------------------------------------------------------------------- e. loader


def sec_loader(smoke: bool) -> list[Row]:
    import benchmark

    from gsm.data.loaders import auto_num_workers, available_cpus

    n = 8 if smoke else 48
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="gsm-gpu-check-jpeg-") as tmp:
        paths = benchmark.write_jpegs(Path(tmp), n)
        rates = benchmark.per_worker_rates(paths, rounds=1 if smoke else 3)
        for split in ("train", "test"):
            b, a = rates[f"{split} before"], rates[f"{split} after"]
            rows.append((f"COCO {split} pipeline, 640x480 JPEG, per worker", f"before {b:,.1f} → after {a:,.1f} img/s "
                         f"({a / b:.2f}x)", "ok" if a >= b else "FAIL"))
        if not smoke:
            paths = paths * 5  # 240 images: several batches per worker
        auto = auto_num_workers()
        for workers in sorted({0 if smoke else 4, auto}):
            rate = benchmark.dataloader_rate(paths, workers)
            rows.append((f"DataLoader, COCO train pipeline, {workers} workers{' (auto)' if workers == auto else ''}",
                         f"{rate:,.1f} img/s ({available_cpus()} usable cores)", "info"))
    return rows


# --------------------------------------------------------------------------- f. end to end


def sec_end_to_end(smoke: bool) -> list[Row]:
    """The real CLI on the embedded digits sets: bf16 AMP + channels_last (+ compile=auto on CUDA), and
    multi-label G-softmax with the empirical μ/σ init."""
    rows: list[Row] = []
    device = "cpu" if smoke else "cuda"
    runs = [("digits G-softmax, compile=auto", ["dataset=digits"]),
            ("digits_mosaic G-softmax, head.init=empirical, eager", ["dataset=digits_mosaic", "head.init=empirical",
                                                                      "trainer.compile=false"])]
    with tempfile.TemporaryDirectory(prefix="gsm-gpu-check-e2e-") as tmp:
        for label, extra in runs:
            out = Path(tmp) / label.split()[0]
            cmd = [sys.executable, str(REPO / "train.py"), *extra, "trainer.epochs=2", f"trainer.device={device}",
                   f"output_root={out}", "trainer.progress=false", *(["dataset.subset=256"] if smoke else [])]
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            wall = time.perf_counter() - start
            found = sorted(out.rglob("results.json"))
            if proc.returncode != 0 or not found:
                err = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                rows.append((label, f"exit {proc.returncode}: {err[:150]}", "FAIL"))
                continue
            res = json.loads(found[0].read_text())
            metric = next((k for k in ("top1_error_frac", "top1_error", "mAP_frac", "mAP")
                           if isinstance(res.get(k), float)), None)
            value = res.get(metric) if metric else None
            ok = isinstance(value, float) and 0.0 <= value <= 1.0
            env = res.get("environment") or {}
            rows.append((label, f"{metric} {value} after 2 epochs, wall {wall:.1f} s, device "
                         f"{env.get('device_name', res.get('device'))}, compiled {env.get('compiled', '?')}",
                         "ok" if ok else "FAIL"))
    return rows


SECTIONS: dict[str, tuple[str, Callable[[bool], Any], int, int]] = {
    # name: (letter, function, time limit on the GPU, seconds of the budget it needs to start), in the order they
    # run: what the open targets need first, the already measured estimate and loader rates last
    "heads": ("a", sec_heads, 60, 20),
    "head_cost": ("d", sec_head_cost, 120, 60),
    "overhead": ("c", sec_overhead, 150, 80),
    "compile": ("g", sec_compile, 240, 150),  # WRN-40-14 and ResNet-101 448², eager and compiled
    "end_to_end": ("f", sec_end_to_end, 150, 90),  # the first run compiles (trainer.compile=auto) on CUDA
    "estimate3": ("b", functools.partial(sec_estimate, 3), 60, 30),
    "estimate1": ("b", functools.partial(sec_estimate, 1), 100, 65),
    "loader": ("e", sec_loader, 45, 25),
    "estimate2": ("b", functools.partial(sec_estimate, 2), 60, 35),
    # DenseNet-100-24 batch 32 with CUDA graphs: compiling takes minutes, so only with --only or a larger --budget
    "compile_densenet": ("g", functools.partial(sec_compile, densenet=True), 420, 300),
}


def run_one(name: str, smoke: bool, json_path: Path) -> int:
    """Run one section, rewriting its rows to ``json_path`` after each one (a section that runs out of time
    keeps the rows it finished)."""
    rows: list[Row] = []
    json_path.write_text("[]")
    for row in SECTIONS[name][1](smoke):
        rows.append(row)
        tmp = json_path.with_suffix(".part")
        tmp.write_text(json.dumps(rows))
        tmp.replace(json_path)
    return 0


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (tests this script)")
    p.add_argument("--section", choices=sorted(SECTIONS), help="run one section and write its rows to --json")
    p.add_argument("--json", type=Path)
    p.add_argument("--only", default="", help="comma-separated sections to run (default: all)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "/tmp/gsm-gpu-check"))
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all sections: a section starts only "
                   "with the seconds it needs left, and its limit is cut to what is left")
    args = p.parse_args()
    if args.section:
        return run_one(args.section, args.cpu_smoke, args.json)

    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="gsm-gpu-check-sections-"))  # $OUT keeps only the summary files
    start = time.perf_counter()
    table: list[tuple[str, str, str, str]] = []
    names = [s for s in args.only.split(",") if s] or list(SECTIONS)
    for name in names:
        letter, _, limit, needs = SECTIONS[name]
        left = args.budget - (time.perf_counter() - start)
        if not args.cpu_smoke and left < needs:
            table.append((letter, f"{name}: skipped", f"{left:.0f} s of the --budget left, needs {needs} s", "info"))
            continue
        limit = min(limit, left) if not args.cpu_smoke else 600
        print(f"\n===== {letter}. {name} (limit {limit:.0f} s) =====", flush=True)
        json_path = scratch / f"section_{name}.json"
        json_path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, __file__, "--section", name, "--json", str(json_path)] + (["--cpu-smoke"] if args.cpu_smoke else [])
        try:
            proc = subprocess.run(cmd, cwd=REPO, timeout=limit, capture_output=True, text=True)
            sys.stdout.write(proc.stdout[-6000:])
            sys.stdout.flush()
            rows = json.loads(json_path.read_text()) if json_path.exists() else []
            if proc.returncode != 0:
                err = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                sys.stdout.write(proc.stderr[-3000:])
                rows.append((f"{name}", f"section failed (exit {proc.returncode}): {err[:200]}", "FAIL"))
        except subprocess.TimeoutExpired as exc:
            sys.stdout.write((exc.stdout or b"")[-4000:].decode(errors="replace") if isinstance(exc.stdout, bytes)
                             else (exc.stdout or "")[-4000:])
            rows = json.loads(json_path.read_text()) if json_path.exists() else []
            rows.append((f"{name}", f"section timed out after {limit:.0f} s (the rows above finished)", "FAIL"))
        took = time.perf_counter() - t0
        for check, value, status in rows:
            table.append((letter, check, value, status))
        table.append((letter, f"{name}: section time", f"{took:.1f} s", "info"))

    total = time.perf_counter() - start
    import platform

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.cpu_smoke else f"CPU ({platform.machine()})"
    lines = [f"gsm GPU check on {device}; torch {torch.__version__}; {'CPU smoke mode; ' if args.cpu_smoke else ''}"
             f"total {total:.0f} s", "", "| § | check | value | status |", "|---|---|---|---|"]
    lines += [f"| {a} | {_cell(b)} | {_cell(c)} | {d} |" for a, b, c, d in table]
    failed = sum(1 for row in table if row[3] == "FAIL")
    missed = sum(1 for row in table if row[3] == "miss")
    lines += ["", (f"{failed} check(s) failed" if failed else "all checks passed")
              + (f"; {missed} speed target(s) missed (status miss)" if missed else "")]
    text = "\n".join(lines)
    print("\n" + text)
    (args.out / "gpu_check_summary.md").write_text(text + "\n")
    (args.out / "gpu_check_summary.json").write_text(json.dumps(
        {"device": device, "seconds": total, "rows": table}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
