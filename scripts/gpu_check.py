"""Every GPU check of gsm in one command, one summary table (run by scripts/gpu_check.sh).

Sections run each in its own process with a time limit (one failure or hang does not stop the rest), in the
order of SECTIONS, each only while the seconds it needs of ``--budget`` are left. The default run is what the
open GPU work (issue #19) needs measured in one session, about 450 s on one H100/H200 (the expected seconds
below; the machine's start comes on top):

  h. profile:          where a training step's time goes (gsm.profiling: torch.profiler by category, launch
                       gaps) for WRN-40-14 b128, DenseNet-100-24 b32 (also with shared_concat, where the
                       model has it) and b50, ResNet-101 448² b16, eager                                   ~40 s
  g. compile_densenet: DenseNet-100-24 b32: eager today vs model.shared_concat=true (where the model has it)
                       vs CUDA graphs (trainer.compile_mode=reduce-overhead): img/s, speedup, goal 2x     ~240 s
  d. head_cost:        the G-softmax A/B at 448² (ResNet-101 GMP b16 multi-label): heads alternating in rounds
                       on one backbone until the cost's 95 % interval is within ±1 % or 40 s of rounds have
                       passed; gsoftmax-fused as a third arm where GSoftmaxHead takes ``fused``            ~60 s
  g. compile:          WRN-40-14 b128 eager vs torch.compile: MFU of each and of the best, goal 40 %       ~55 s
  b. estimate1:        ``make estimate TABLE=table1`` (gsm.estimate.run_estimate; trainer.compile=false and
                       short probes to fit) and its GPU-hours against the goal of 50                       ~55 s

DenseNet's CUDA-graph compile is most of it (its default-mode compile took 216 s on an H100); when it runs
long, the sections after it are skipped and their rows say so: rerun them with ``--only``. There is no
shared_concat + CUDA graphs variant: a DenseNet that torch.compile traces takes the cat path
(gsm.models.densenet), so it would measure the CUDA-graphs row again.

Only with ``--only`` (already measured, or minutes each):

  g. compile_wrn_modes: WRN-40-14 b128 with reduce-overhead and max-autotune (max-autotune: many minutes)
  g. compile_resnet: ResNet-101 448² b16 eager vs compiled (compiled was slower: 290 → 250 img/s)
  d. head_cost_wrn: the same A/B on WRN-40-14 CIFAR-100 b128 (softmax, G-, L-softmax, fused G-softmax)
  a. heads:     CPU vs GPU loss and gradients of every head on deep copies (float64; L-softmax at its
                configured margin 4; fused G-softmax where there is one), and a finite bf16-autocast step
  c. overhead:  a 2-epoch full-size run of WRN-40-14 G-softmax on random-pixel CIFAR-100 in the official
                pickle layout: train seconds per epoch vs eval_seconds and checkpoint_seconds (results.json),
                and the recipe's overhead with its trainer.eval_every
  f. end_to_end: the real CLI on the digits sets (bf16 AMP, compile=auto on CUDA; multi-label, empirical init)
  b. estimate3, estimate2: ``gsm.estimate.run_estimate`` for Tables III and II
  e. loader:    the COCO recipe's JPEG pipeline, images/s per worker before/after, and a real DataLoader

Status: ok, FAIL (an error or a wrong value: exit 1), miss (a speed target not met), info.

    python scripts/gpu_check.py [--cpu-smoke] [--out DIR] [--budget SECONDS]
    python scripts/gpu_check.py --only heads,estimate3 [--cpu-smoke]                  # some sections

``--cpu-smoke`` runs every section (or those of ``--only``) with tiny sizes on the CPU, all in one process (to
test this script without a GPU); compiled variants run eager there. The summary (``gpu_check_summary.md`` and
``.json`` in ``--out``) has one row per check and, below the table, the tables the sections make (the profile).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import inspect
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

Row = tuple[str, str, str]  # (check, value, status: ok | FAIL | miss | info)


@dataclass
class Table:
    """A markdown table a section yields besides its rows: written below the summary table."""

    title: str
    text: str


def error_text(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` in at most ``limit`` characters, keeping the message's start and its end (the reason)."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]} ... {text[-half:]}"


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

    from gsm.heads import head_loss

    dev = _device(smoke)
    cases = [("softmax", False), ("softmax", True), ("gsoftmax", False), ("gsoftmax", True), ("lsoftmax", False),
             ("msml", True)] + ([("gsoftmax-fused", False), ("gsoftmax-fused", True)] if fused_available() else [])
    rows: list[Row] = []
    for name, ml in cases:
        label = f"{name}{' multi-label' if ml else ''}{' m=4' if name == 'lsoftmax' else ''}"
        try:
            torch.manual_seed(0)
            cpu = head_factory(name, 64, 100, ml)().double().train()
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
            rows.append((label, error_text(exc), "FAIL"))
    return rows


# --------------------------------------------------------------------------- b. / g. estimate


# GPU-hours a table's estimate should come to (issue #19: Table I measured 76.7 on one H100)
TABLE_GOAL_HOURS = {"table1": 50.0}


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
        if table in TABLE_GOAL_HOURS:
            rows.append(goal_row(table, total, TABLE_GOAL_HOURS[table], overrides, smoke))
    return rows


def goal_row(table: str, total_line: str, goal: float, overrides: list[str], smoke: bool) -> Row:
    """The estimate's total (its ``total: ...`` line) against the table's goal in GPU-hours."""
    import re

    found = re.search(r": ([\d,.]+) (GPU-hours|device-hours)", total_line)
    if not found:
        return (f"{table} estimate vs goal", f"no total in {total_line!r}", "FAIL")
    hours = float(found.group(1).replace(",", ""))
    status = "info" if smoke or found.group(2) != "GPU-hours" else ("ok" if hours <= goal else "miss")
    share = f"{hours / goal:.0%} of the goal; " if found.group(2) == "GPU-hours" else ""
    return (f"{table} estimate vs goal ≤ {goal:g} GPU-hours", f"{hours:,.4g} {found.group(2)} ({share}as make estimate "
            f"TABLE={table}, with {' '.join(overrides) or 'no overrides'})", status)


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


# The goals for torch.compile / CUDA graphs / the model's options on one H100 (against today's eager)
COMPILE_GOALS = {  # experiment: (label, what is compared, goal)
    "table1/wrn_cifar100_gsoftmax": ("WRN-40-14 C-100 b128", "mfu", 0.40),
    "table1/densenet_cifar100_gsoftmax": ("DenseNet-100-24 C-100 b32", "speedup", 2.0),
    "table3/resnet101_coco_gsoftmax_mu0_sigma1": ("ResNet-101 448² COCO b16", "speedup", 1.3),
}
EAGER = ["trainer.compile=false"]
GRAPHS = ["trainer.compile=true", "trainer.compile_mode=reduce-overhead"]


def shared_concat_available() -> bool:
    """Whether this gsm's DenseNet takes ``shared_concat`` (the memory-efficient concatenation, model.shared_concat)."""
    from gsm.models.densenet import DenseNet

    return "shared_concat" in inspect.signature(DenseNet).parameters


def compile_plan(which: str) -> tuple[str, list[tuple[str, list[str] | None]]]:
    """(experiment, [(variant, overrides or None where this gsm lacks the option)]) of a compile section; the
    first variant is the baseline the others' speedups are against."""
    concat = shared_concat_available()
    today = ["model.shared_concat=false"] if concat else []  # today's DenseNet, whatever the recipe's default
    plans = {
        "wrn": ("table1/wrn_cifar100_gsoftmax", [("eager", EAGER), ("compiled", ["trainer.compile=true"])]),
        "wrn_modes": ("table1/wrn_cifar100_gsoftmax", [
            ("eager", EAGER), ("CUDA graphs (reduce-overhead)", GRAPHS),
            ("max-autotune", ["trainer.compile=true", "trainer.compile_mode=max-autotune"])]),
        "densenet": ("table1/densenet_cifar100_gsoftmax", [
            ("eager today", EAGER + today), ("shared_concat, eager", EAGER + ["model.shared_concat=true"] if concat else None),
            ("CUDA graphs (reduce-overhead)", GRAPHS + today)]),
        "resnet": ("table3/resnet101_coco_gsoftmax_mu0_sigma1", [("eager", EAGER), ("compiled", ["trainer.compile=true"])]),
    }
    return plans[which]


def sec_compile(which: str, smoke: bool):
    """Variants of one recipe (``compile_plan``) through the estimate's probe (the trainer's own set-up and
    train_one_epoch): images/s, MFU and the speedup against the first variant (today's eager), then the best of
    them against the issue's goal (COMPILE_GOALS). DenseNet-100-24's default-mode compile took 216 s for +4 % on
    an H100 (docs/paper-notes.md D30). Under --cpu-smoke the recipe is the smoke profile's tiny one and compiled
    variants run eager. Rows come as they are measured, so a time limit keeps the finished ones."""
    from gsm import estimate

    dev = _device(smoke)
    peak, _ = estimate.peak_flops(dev, None)
    exp, variants = compile_plan(which)
    label, measure, goal = COMPILE_GOALS[exp]
    label = f"{exp} [smoke size]" if smoke else label
    probe_kw = {"warmup": 1, "steps": 1, "eval_batches": 1} if smoke else {"warmup": 3, "steps": 15, "eval_batches": 2}
    measured: list[tuple[str, float, float | None]] = []  # (variant, img/s, MFU)
    for name, overrides in variants:
        if overrides is None:
            yield (f"{label} {name}", "skipped: this gsm's DenseNet takes no shared_concat (model.shared_concat)", "info")
            continue
        compiles = any(o in ("trainer.compile=true", "trainer.compile=auto") for o in overrides)
        if smoke and compiles:  # no compiler on the smoke machine: the variant's path, eager
            overrides = [o for o in overrides if not o.startswith("trainer.compile")] + EAGER
            name += " (eager on CPU)"
        start = time.perf_counter()
        try:
            recipe = estimate.group_recipes(estimate.compose_experiments([exp], "smoke" if smoke else "full", overrides))[0]
            m = estimate.probe(recipe, dev, **probe_kw)
        except Exception as exc:  # noqa: BLE001
            yield (f"{label} {name}", error_text(exc), "FAIL")
            continue
        took = time.perf_counter() - start
        rate = m["images_per_second"]
        mfu = m["flops_per_image"] * rate / peak if peak else None
        text = (f"{rate:,.1f} img/s, MFU {'n/a' if mfu is None else f'{mfu:.1%}'}, eval {m['eval_images_per_second']:,.0f} "
                f"img/s, start-up {m['startup_seconds']:.0f} s, probe {took:.0f} s")
        if measured:
            text += f", {rate / measured[0][1]:.2f}x {measured[0][0]}"
        measured.append((name, rate, mfu))
        yield (f"{label} {name}", text, "info")
    if len(measured) < 2:
        return
    best_name, best_rate, best_mfu = max(measured, key=lambda v: v[1])
    base_name, base_rate, base_mfu = measured[0]
    if measure == "mfu":
        each = ", ".join(f"{n} {'n/a' if f is None else format(f, '.1%')}" for n, _, f in measured)
        text = f"MFU {each}; best: {best_name} (goal MFU ≥ {goal:.0%})"
        ok = (best_mfu or 0) >= goal
    else:
        each = ", ".join(f"{n} {r / base_rate:.2f}x" for n, r, _ in measured[1:])
        text = f"against {base_name} ({base_rate:,.1f} img/s): {each}; best: {best_name} (goal {goal:.1f}x)"
        ok = best_rate / base_rate >= goal
    yield (f"{label}: best of {len(measured)}", text, "info" if smoke else ("ok" if ok else "miss"))


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
        from gsm.overrides import path_override  # a temporary folder's path is data, never Hydra syntax

        overrides = ["experiment=table1/wrn_cifar100_gsoftmax", path_override("dataset.root", root / "cifar100"),
                     "trainer.epochs=2", path_override("output_root", root / "out"), "trainer.progress=false",
                     "trainer.compile=false",
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

# t quantiles of the two-sided 95 % interval, t_0.975(df) for df = 1 ... 30 (beyond: the Cornish-Fisher series)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (3 decimals)."""
    if df < 1:
        raise ValueError(f"t975 needs df >= 1 (got {df})")
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass
class PairedCost:
    """A head's cost against the baseline head from rounds in which both ran on the same backbone.

    Per round i the cost is c_i = rate_base_i / rate_head_i - 1 (+2 % = a step takes 2 % longer). ``cost`` is
    their mean; the *spread* is the half-width of its 95 % confidence interval, t_0.975(n-1) * s / sqrt(n) with s
    the standard deviation of the c_i over the n rounds: it shrinks as rounds are added, and the cost is settled
    when it is below 1 %. ``round_std`` (s) is how much one round varies."""

    cost: float
    spread: float
    round_std: float
    rounds: int

    @classmethod
    def of(cls, base: list[float], head: list[float]) -> "PairedCost":
        import statistics

        costs = [b / h - 1 for b, h in zip(base, head)]
        n = len(costs)
        if n < 2:
            return cls(costs[0] if costs else float("nan"), float("inf"), float("nan"), n)
        s = statistics.stdev(costs)
        return cls(statistics.fmean(costs), t975(n - 1) * s / n**0.5, s, n)


SETTLED = 0.01  # the spread (95 % half-width) under which a head's cost counts as measured


def fused_available() -> bool:
    """Whether this gsm's GSoftmaxHead takes ``fused`` (Φ and its derivative in one fused pass)."""
    from gsm.heads import GSoftmaxHead

    return "fused" in inspect.signature(GSoftmaxHead).parameters


def head_factory(arm: str, d: int, classes: int, multilabel: bool) -> Callable[[], Any]:
    """A builder of one A/B arm's head: a head name of gsm.heads (L-softmax at margin 4), or ``gsoftmax-fused``."""
    from gsm.heads import GSoftmaxHead, build_head

    if arm == "gsoftmax-fused":
        return lambda: GSoftmaxHead(d, classes, multilabel=multilabel, fused=True)
    kw = {"margin": 4} if arm == "lsoftmax" else {}
    return lambda: build_head(arm, d, classes, multilabel, **kw)


def _interleaved_rates(model_cfg: dict, size: int, classes: int, multilabel: bool, batch: int, arms: tuple[str, ...],
                       dev, steps: int, min_rounds: int, max_rounds: int, seconds: float) -> dict[str, list[float]]:
    """Training images/s of each arm's head on one shared backbone, measured in alternating rounds (A B C, B C A,
    ...) so that clock drift, allocator growth or cuDNN autotuning cannot favour whichever head runs first.
    Rounds go on until every arm's cost against the first is settled (PairedCost.spread < SETTLED) after at
    least ``min_rounds``, or ``seconds`` of rounds have passed, or ``max_rounds``."""
    import torch

    from gsm.data.loaders import DeviceLoader, Placement
    from gsm.models import Classifier, build_backbone
    from gsm.train import train_one_epoch

    torch.manual_seed(0)
    backbone = build_backbone(model_cfg, 3, size)
    cl = dev.type == "cuda"
    amp = torch.bfloat16 if cl else None
    scaler = torch.amp.GradScaler(dev.type, enabled=False)
    models, opts = {}, {}
    for arm in arms:
        models[arm] = Classifier(backbone, head_factory(arm, backbone.out_features, classes, multilabel)()).to(dev)
        if cl:
            models[arm].to(memory_format=torch.channels_last)
        opts[arm] = torch.optim.SGD(models[arm].parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (steps * batch, 3, size, size), dtype=torch.uint8, generator=g)
    y = ((torch.rand(steps * batch, classes, generator=g) < 0.05).float() if multilabel
         else torch.randint(0, classes, (steps * batch,), generator=g))
    loader = DeviceLoader(images, y, batch, train=True, mean=[0.5] * 3, std=[0.25] * 3,
                          place=Placement(dev, channels_last=cl), crop_padding=4 if size <= 64 else 0, flip=True)
    rates: dict[str, list[float]] = {a: [] for a in arms}
    start = None
    for r in range(max_rounds + 1):  # round 0 warms every head up (cuDNN autotuning, allocator) and is not counted
        order = arms[r % len(arms):] + arms[:r % len(arms)]
        for arm in order:
            _sync(dev)
            stats = train_one_epoch(models[arm], models[arm].head, loader, opts[arm], scaler, amp, r, False)
            if r:
                rates[arm].append(float(stats["images_per_second"]))
        if r == 0:
            start = time.perf_counter()
            continue
        settled = all(PairedCost.of(rates[arms[0]], rates[a]).spread < SETTLED for a in arms[1:])
        if r >= min_rounds and (settled or time.perf_counter() - start >= seconds):
            break
    return rates


def _head_only_ms(make_head: Callable[[], Any], d: int, classes: int, multilabel: bool, batch: int, dev,
                  iters: int) -> tuple[float, float]:
    """(head fwd+bwd ms, nn.Linear + its loss ms) at one recipe's shapes."""
    import torch
    from torch import nn

    from gsm.heads import head_loss

    h = make_head().to(dev).train()
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


HEAD_TARGETS = {"lsoftmax": 0.03}  # a head's cost in a training step may be at most this (default 2 %)


def sec_head_cost(which: str, smoke: bool):
    """The A/B of the heads on one recipe's backbone (``which``: ``resnet448`` or ``wrn``), rounds until settled,
    then each head alone against nn.Linear + its loss. Rows as they are measured (a generator: a section cut off
    by its time limit keeps what it has)."""
    import statistics

    from gsm.models import build_backbone

    dev = _device(smoke)
    fused = fused_available()
    # (label, backbone config, image size, classes, multi-label, batch, arms, steps per round, min rounds,
    #  max rounds, seconds of rounds)
    recipes = {
        "resnet448": ("ResNet-101 448² GMP b16 multi-label", {"name": "resnet101", "pretrained": False, "pool": "gmp"},
                      448, 80, True, 16, ("softmax", "gsoftmax"), 16, 4, 400, 40.0),
        "wrn": ("WRN-40-14 CIFAR-100 b128", {"name": "wrn", "depth": 40, "width": 14}, 32, 100, False, 128,
                ("softmax", "gsoftmax", "lsoftmax"), 12, 4, 400, 25.0),
    }
    smoke_recipes = {
        "resnet448": ("ConvNet multi-label b8", {"name": "convnet", "width": 8}, 32, 80, True, 8, ("softmax", "gsoftmax"),
                      2, 2, 3, 0.2),
        "wrn": ("WRN-10-1 CIFAR-100 b16", {"name": "wrn", "depth": 10, "width": 1}, 32, 100, False, 16,
                ("softmax", "gsoftmax", "lsoftmax"), 2, 2, 3, 0.2),
    }
    label, cfg, size, classes, ml, batch, arms, steps, min_rounds, max_rounds, seconds = (smoke_recipes if smoke else recipes)[which]
    if fused:
        arms = arms + ("gsoftmax-fused",)
    else:
        yield (f"{label} gsoftmax-fused", "skipped: this gsm's GSoftmaxHead takes no fused= (no fused arm)", "info")
    try:
        rates = _interleaved_rates(cfg, size, classes, ml, batch, arms, dev, steps, min_rounds, max_rounds, seconds)
    except Exception as exc:  # noqa: BLE001
        yield (f"{label}", error_text(exc), "FAIL")
        return
    base = rates[arms[0]]
    yield (f"{label} {arms[0]}: training step", f"{statistics.median(base):,.1f} img/s (median of {len(base)} rounds "
           f"of {steps} steps, heads alternating on one backbone)", "info")
    for arm in arms[1:]:
        c = PairedCost.of(base, rates[arm])
        target = HEAD_TARGETS.get(arm, 0.02)
        settled = c.spread < SETTLED
        yield (f"{label} {arm}: cost vs {arms[0]}", f"{statistics.median(rates[arm]):,.1f} img/s, {c.cost:+.1%} "
               f"± {c.spread:.1%} (95 % interval of the mean over {c.rounds} rounds of {steps} steps; one round's std "
               f"{c.round_std:.1%}; {'settled' if settled else 'not settled'}: ± < {SETTLED:.0%}; target ≤ {target:.0%})",
               "info" if smoke else ("ok" if settled and c.cost <= target else "miss"))
    d = build_backbone(cfg, 3, size).out_features
    for arm in arms:
        try:
            ms, ms_lin = _head_only_ms(head_factory(arm, d, classes, ml), d, classes, ml, batch, dev, 5 if smoke else 50)
            yield (f"{label} {arm}: head alone fwd+bwd", f"{ms:.3f} ms vs nn.Linear+loss {ms_lin:.3f} ms "
                   f"({ms / ms_lin:.2f}x)", "info")
        except Exception as exc:  # noqa: BLE001
            yield (f"{label} {arm}: head alone", error_text(exc), "FAIL")


# --------------------------------------------------------------------------- h. profile


PROFILE_RECIPES = [  # (label, experiment) — eager, as these recipes train today (or would without compiling); the
    # DenseNet b32 recipe again with model.shared_concat=true where the model has it
    ("WRN-40-14 C-100 b128", "table1/wrn_cifar100_gsoftmax"),
    ("DenseNet-100-24 C-100 b32", "table1/densenet_cifar100_gsoftmax"),
    ("DenseNet-100-24 C-10 b50", "table1/densenet_cifar10_gsoftmax"),
    ("ResNet-101 448² COCO b16", "table3/resnet101_coco_gsoftmax_mu0_sigma1"),
]
SMOKE_PROFILE_RECIPES = [  # the smoke profile's sizes (ResNet-101 is seconds per step on a CPU even at 32²)
    ("WRN-10-1 C-100 b16 [smoke size]", "table1/wrn_cifar100_gsoftmax"),
    ("DenseNet-10-4 C-100 b16 [smoke size]", "table1/densenet_cifar100_gsoftmax"),
]


def sec_profile(smoke: bool):
    """gsm.profiling's summary of each recipe's eager training steps (the trainer's model, head, optimiser, AMP and
    channels_last), one row each as measured, then the markdown table (into the summary file)."""
    from gsm import estimate
    from gsm.profiling import markdown_table, profile_recipe

    dev = _device(smoke)
    profile = "smoke" if smoke else "full"
    plan = [(label, exp, None) for label, exp in (SMOKE_PROFILE_RECIPES if smoke else PROFILE_RECIPES)]
    if shared_concat_available():  # DenseNet b32 after the memory-efficient concatenation, beside today's
        label, exp, _ = plan[1]
        plan.insert(2, (f"{label} shared_concat", exp, EAGER + ["model.shared_concat=true"]))
    steps = {"warmup": 1, "steps": 1} if smoke else {"warmup": 3, "steps": 5}
    configs = estimate.compose_experiments([exp for _, exp, extra in plan if extra is None], profile, EAGER)
    profiles = []
    for label, exp, extra in plan:
        try:
            config = configs[exp] if extra is None else estimate.compose_experiments([exp], profile, extra)[exp]
            recipe = estimate.group_recipes({exp: config})[0]
            p = profile_recipe(recipe, dev, label=label, **steps)
        except Exception as exc:  # noqa: BLE001
            yield (f"{label}: profile", error_text(exc), "FAIL")
            continue
        profiles.append(p)
        yield p.row()
    if profiles:
        text = markdown_table(profiles)
        print(text, flush=True)
        yield Table(f"Where a training step's time goes ({'CPU smoke sizes' if smoke else dev.type}, eager; "
                    f"profiled steps after {steps['warmup']} warm-up, the wall time from as many unprofiled; "
                    f"gsm.profiling)", text)


# --------------------------------------------------------------------------- e. loader


def sec_loader(smoke: bool) -> list[Row]:
    sys.path.insert(0, str(REPO / "scripts"))
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
    from gsm.overrides import path_override  # a temporary folder's path is data, never Hydra syntax

    with tempfile.TemporaryDirectory(prefix="gsm-gpu-check-e2e-") as tmp:
        for label, extra in runs:
            out = Path(tmp) / label.split()[0]
            cmd = [sys.executable, str(REPO / "train.py"), *extra, "trainer.epochs=2", f"trainer.device={device}",
                   path_override("output_root", out), "trainer.progress=false", *(["dataset.subset=256"] if smoke else [])]
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


class Section(NamedTuple):
    letter: str  # the group of checks (docstring)
    run: Callable[[bool], Any]  # run(smoke) -> rows (and Tables)
    limit: int  # seconds it may take on the GPU
    needs: int  # seconds of the budget that must be left for it to start
    default: bool  # in the default run (else only with --only)


SECTIONS: dict[str, Section] = {
    # The default run, in this order: what the open targets need measured in one session (about 450 s; the
    # expected seconds are the docstring's); DenseNet's CUDA-graph compile second, so that the sections after it
    # are the ones a long compile pushes out of the budget.
    "profile": Section("h", sec_profile, 100, 40, True),
    "compile_densenet": Section("g", functools.partial(sec_compile, "densenet"), 330, 230, True),
    "head_cost": Section("d", functools.partial(sec_head_cost, "resnet448"), 100, 60, True),
    "compile": Section("g", functools.partial(sec_compile, "wrn"), 110, 55, True),
    "estimate1": Section("b", functools.partial(sec_estimate, 1), 100, 50, True),
    # with --only (or a larger --budget): already measured, or too long for one session beside the above
    "compile_wrn_modes": Section("g", functools.partial(sec_compile, "wrn_modes"), 600, 400, False),
    "compile_resnet": Section("g", functools.partial(sec_compile, "resnet"), 150, 100, False),
    "head_cost_wrn": Section("d", functools.partial(sec_head_cost, "wrn"), 90, 50, False),
    "heads": Section("a", sec_heads, 60, 20, False),
    "overhead": Section("c", sec_overhead, 150, 80, False),
    "end_to_end": Section("f", sec_end_to_end, 150, 90, False),  # the first run compiles (compile=auto) on CUDA
    "estimate3": Section("b", functools.partial(sec_estimate, 3), 60, 30, False),
    "loader": Section("e", sec_loader, 45, 25, False),
    "estimate2": Section("b", functools.partial(sec_estimate, 2), 60, 35, False),
}


def _write(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


def run_sections(names: list[str], smoke: bool, folder: Path) -> int:
    """Run sections in this process, writing each one's record to ``folder/section_<name>.json`` after every row
    (a section that runs out of time keeps the rows it finished): its rows, tables, seconds (None until it ends),
    the device and torch's version. A section that raises gets a FAIL row and the next one runs."""
    import platform
    import traceback

    import torch

    device = torch.cuda.get_device_name(0) if not smoke and torch.cuda.is_available() else f"CPU ({platform.machine()})"
    rc = 0
    for name in names:
        path = folder / f"section_{name}.json"
        record: dict[str, Any] = {"rows": [], "tables": [], "seconds": None, "device": device, "torch": torch.__version__}
        _write(path, record)
        start = time.perf_counter()
        try:
            for item in SECTIONS[name].run(smoke):
                if isinstance(item, Table):
                    record["tables"].append([item.title, item.text])
                else:
                    record["rows"].append(list(item))
                _write(path, record)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            traceback.print_exc()
            record["rows"].append([name, f"section failed: {error_text(exc)}", "FAIL"])
            rc = 1
        record["seconds"] = time.perf_counter() - start
        _write(path, record)
    return rc


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def _tail(text: str | bytes | None, n: int) -> str:
    text = text or ""
    return (text.decode(errors="replace") if isinstance(text, bytes) else text)[-n:]


def run_child(names: list[str], smoke: bool, limit: float, scratch: Path) -> list[tuple[str, dict[str, Any], float]]:
    """Run ``names`` in one new process within ``limit`` seconds: (name, record, seconds) each; a section that did
    not finish gets a FAIL row (timed out, or the process failed)."""
    for name in names:
        (scratch / f"section_{name}.json").unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--section", ",".join(names), "--scratch", str(scratch)] + (["--cpu-smoke"] if smoke else [])
    start = time.perf_counter()
    failure = None
    try:
        proc = subprocess.run(cmd, cwd=REPO, timeout=limit, capture_output=True, text=True)
        sys.stdout.write(_tail(proc.stdout, 6000 * len(names)))
        if proc.returncode != 0:
            sys.stdout.write(_tail(proc.stderr, 3000))
            err = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            failure = f"section failed (exit {proc.returncode}): {err[:200]}"
    except subprocess.TimeoutExpired as exc:
        sys.stdout.write(_tail(exc.stdout, 4000))
        failure = f"section timed out after {limit:.0f} s (the rows above finished)"
    sys.stdout.flush()
    wall = time.perf_counter() - start
    out = []
    for name in names:
        path = scratch / f"section_{name}.json"
        record = json.loads(path.read_text()) if path.exists() else {"rows": [], "tables": [], "seconds": None}
        if record["seconds"] is None and failure:
            record["rows"].append([name, failure, "FAIL"])
        # one section per process: its wall time, process start included (what the budget pays)
        out.append((name, record, wall if len(names) == 1 else (record["seconds"] or 0.0)))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU, every section in one process "
                   "(tests this script)")
    p.add_argument("--section", help="(internal) run these comma-separated sections here, records into --scratch")
    p.add_argument("--scratch", type=Path)
    p.add_argument("--only", default="", help="comma-separated sections to run (default: the default run, "
                   f"{','.join(n for n, s in SECTIONS.items() if s.default)}; with --cpu-smoke every section); any "
                   f"of {', '.join(SECTIONS)}")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "/tmp/gsm-gpu-check"))
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all sections: a section starts only "
                   "with the seconds it needs left, and its limit is cut to what is left")
    args = p.parse_args()
    # default: the default run on a GPU; every section under --cpu-smoke (the whole script, tested)
    names = [s for s in (args.section or args.only).split(",") if s] or [
        n for n, s in SECTIONS.items() if s.default or args.cpu_smoke]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        p.error(f"--only: unknown section(s) {', '.join(unknown)}; valid: {', '.join(SECTIONS)}")
    if args.section:
        return run_sections(names, args.cpu_smoke, args.scratch)

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gsm-gpu-check-sections-") as tmp:  # $OUT keeps only the summary files
        return summarize_run(args, names, Path(tmp))


def summarize_run(args: argparse.Namespace, names: list[str], scratch: Path) -> int:
    """Run ``names`` (budgeted, one process each; under --cpu-smoke all in one) and write the summary files."""
    start = time.perf_counter()
    table: list[tuple[str, str, str, str]] = []
    records: list[dict[str, Any]] = []
    if args.cpu_smoke:  # no time limits to keep apart: one process (one torch import) for all
        print(f"\n===== {', '.join(names)} (CPU smoke, one process) =====", flush=True)
        done = run_child(names, True, 600.0 * len(names), scratch)
    else:
        done = []
        for name in names:
            section = SECTIONS[name]
            left = args.budget - (time.perf_counter() - start)
            if left < section.needs:
                skipped = {"rows": [[f"{name}: skipped", f"{left:.0f} s of the --budget left, needs {section.needs} s",
                                     "info"]], "tables": []}
                done.append((name, skipped, None))
                continue
            limit = min(section.limit, left)
            print(f"\n===== {section.letter}. {name} (limit {limit:.0f} s) =====", flush=True)
            done += run_child([name], False, limit, scratch)
    for name, record, took in done:
        letter = SECTIONS[name].letter
        table += [(letter, *row) for row in record["rows"]]
        if took is not None:
            table.append((letter, f"{name}: section time", f"{took:.1f} s", "info"))
        records.append(record)

    total = time.perf_counter() - start
    ran = next((r for r in records if r.get("device")), None)
    if ran:
        device, version = ran["device"], ran["torch"]
    else:  # nothing started: no need to import torch for its name
        import importlib.metadata

        device, version = "no device (no section ran)", importlib.metadata.version("torch")
    lines = [f"gsm GPU check on {device}; torch {version}; {'CPU smoke mode; ' if args.cpu_smoke else ''}"
             f"total {total:.0f} s", "", "| § | check | value | status |", "|---|---|---|---|"]
    lines += [f"| {a} | {_cell(b)} | {_cell(c)} | {d} |" for a, b, c, d in table]
    failed = sum(1 for row in table if row[3] == "FAIL")
    missed = sum(1 for row in table if row[3] == "miss")
    lines += ["", (f"{failed} check(s) failed" if failed else "all checks passed")
              + (f"; {missed} speed target(s) missed (status miss)" if missed else "")]
    for record in records:
        for title, text in record.get("tables", []):
            lines += ["", f"{title}:", "", text]
    text = "\n".join(lines)
    print("\n" + text)
    (args.out / "gpu_check_summary.md").write_text(text + "\n")
    (args.out / "gpu_check_summary.json").write_text(json.dumps(
        {"device": device, "seconds": total, "rows": table,
         "tables": [t for r in records for t in r.get("tables", [])]}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
