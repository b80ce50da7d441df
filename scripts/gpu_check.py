"""Every GPU check of gsm in one command, one summary table (run by scripts/gpu_check.sh).

Sections (each in its own process with a time limit, so one failure or hang does not stop the rest):

  a. heads:     CPU vs GPU loss and gradients of every head on deep copies (float64; L-softmax at its
                configured margin 4), and a finite bf16-autocast step on the GPU
  b. estimate1, estimate2, estimate3: ``gsm.estimate.run_estimate`` for Tables I, II, III under the full
                profile on the GPU (short probes; trainer.compile=false to fit the time, see section g)
  c. overhead:  a 2-epoch full-size run of WRN-40-14 G-softmax on random-pixel CIFAR-100 in the official
                pickle layout: train seconds per epoch vs eval_seconds and checkpoint_seconds (results.json)
  d. head cost: each head's share of a real training step (WRN-40-14 CIFAR-100 batch 128; ResNet-101 448²
                batch 16 multi-label), and head-only forward+backward vs nn.Linear + its loss
  e. loader:    the COCO recipe's JPEG pipeline, images/s per worker before/after, and a real DataLoader
  f. end to end: the real CLI on the digits sets (bf16 AMP, compile=auto on CUDA; multi-label, empirical init)
  g. compile:   the estimate of WRN-40-14 and DenseNet-100-24 rows with trainer.compile=true (if time is left)

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
                         f"eval {c[6]} img/s, ckpt {c[7]}, loader {c[8]}", "info"))
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


def sec_compile(smoke: bool) -> list[Row]:
    if smoke:
        tables = {"table1": ["table1/wrn_cifar100_gsoftmax"]}
        return _estimate_rows(tables, ["trainer.compile=false"], True, " (compile skipped on CPU)",
                              {"warmup": 1, "steps": 1, "eval_batches": 1})
    tables = {"table1": ["table1/wrn_cifar100_gsoftmax", "table1/densenet_cifar100_gsoftmax"]}
    rows = _estimate_rows(tables, ["trainer.compile=true"], False, " compiled", {"warmup": 3, "steps": 15, "eval_batches": 2})
    rows += _estimate_rows({"table1": ["table1/densenet_cifar100_gsoftmax"]},
                           ["trainer.compile=true", "trainer.compile_mode=reduce-overhead"], False,
                           " reduce-overhead", {"warmup": 3, "steps": 15, "eval_batches": 2})
    return rows


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
        overrides = ["experiment=table1/wrn_cifar100_gsoftmax", f"dataset.root={root / 'cifar100'}", "trainer.epochs=2",
                     f"output_root={root / 'out'}", "trainer.progress=false", "trainer.compile=false", *extra]
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
        status = "info" if smoke or row.get("epoch") == 1 else ("ok" if share <= 0.03 else "FAIL")
        rows.append((f"epoch {row.get('epoch')}: train s / eval s / checkpoint s", f"{t:.2f} / {e:.2f} / {c:.2f} "
                     f"→ overhead {share:.1%} of training ({row.get('images_per_second', 0):,.0f} img/s)", status))
    return rows


# --------------------------------------------------------------------------- d. head cost


def _step_rate(model_cfg: dict, size: int, classes: int, multilabel: bool, batch: int, head: str, dev, steps: int,
               warmup: int) -> float:
    import torch

    from gsm.data.loaders import DeviceLoader
    from gsm.heads import build_head
    from gsm.models import Classifier, build_backbone
    from gsm.train import train_one_epoch

    torch.manual_seed(0)
    backbone = build_backbone(model_cfg, 3, size)
    kw = {"margin": 4} if head == "lsoftmax" else {}
    model = Classifier(backbone, build_head(head, backbone.out_features, classes, multilabel, **kw)).to(dev)
    cl = dev.type == "cuda"
    if cl:
        model.to(memory_format=torch.channels_last)
    amp = torch.bfloat16 if cl else None
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(dev.type, enabled=False)

    def loader(n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n * batch, 3, size, size), dtype=torch.uint8, generator=g)
        y = ((torch.rand(n * batch, classes, generator=g) < 0.05).float() if multilabel
             else torch.randint(0, classes, (n * batch,), generator=g))
        return DeviceLoader(images, y, batch, train=True, mean=[0.5] * 3, std=[0.25] * 3, device=dev,
                            crop_padding=4 if size <= 64 else 0, flip=True, channels_last=cl)

    train_one_epoch(model, model.head, loader(warmup, 1), opt, scaler, amp, 0, False)
    _sync(dev)
    stats = train_one_epoch(model, model.head, loader(steps, 2), opt, scaler, amp, 1, False)
    return float(stats["images_per_second"])


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


def sec_head_cost(smoke: bool) -> list[Row]:
    dev = _device(smoke)
    if smoke:
        recipes = [("WRN-10-1 CIFAR-100 b16", {"name": "wrn", "depth": 10, "width": 1}, 32, 100, False, 16,
                    ("softmax", "gsoftmax", "lsoftmax"), 2, 1),
                   ("ConvNet multi-label b8", {"name": "convnet", "width": 8}, 32, 80, True, 8, ("softmax", "gsoftmax"), 2, 1)]
    else:
        recipes = [("WRN-40-14 CIFAR-100 b128", {"name": "wrn", "depth": 40, "width": 14}, 32, 100, False, 128,
                    ("softmax", "gsoftmax", "lsoftmax"), 20, 5),
                   ("ResNet-101 448² GMP b16 multi-label", {"name": "resnet101", "pretrained": False, "pool": "gmp"},
                    448, 80, True, 16, ("softmax", "gsoftmax"), 15, 5)]
    rows: list[Row] = []
    for label, cfg, size, classes, ml, batch, heads, steps, warmup in recipes:
        rates = {}
        for head in heads:
            try:
                rates[head] = _step_rate(cfg, size, classes, ml, batch, head, dev, steps, warmup)
            except Exception as exc:  # noqa: BLE001
                rows.append((f"{label} {head}", f"{type(exc).__name__}: {exc}"[:160], "FAIL"))
        base = rates.get("softmax")
        for head, rate in rates.items():
            if head == "softmax" or base is None:
                rows.append((f"{label} {head}: training step", f"{rate:,.1f} img/s", "info"))
                continue
            cost = base / rate - 1
            target = 0.03 if head == "lsoftmax" else 0.02
            rows.append((f"{label} {head}: share of the step vs softmax", f"{rate:,.1f} img/s, {cost:+.1%} "
                         f"(target ≤ {target:.0%})", "info" if smoke else ("ok" if cost <= target else "FAIL")))
    from gsm.models import build_backbone

    for label, cfg, size, classes, ml, batch, heads, steps, warmup in recipes:
        d = build_backbone(cfg, 3, size).out_features
        for head in heads:
            try:
                ms, ms_lin = _head_only_ms(head, d, classes, ml, batch, dev, 5 if smoke else 50)
                rows.append((f"{label} {head}: head alone fwd+bwd", f"{ms:.3f} ms vs nn.Linear+loss {ms_lin:.3f} ms "
                             f"({ms / ms_lin:.2f}x)", "info"))
            except Exception as exc:  # noqa: BLE001
                rows.append((f"{label} {head}: head alone", f"{type(exc).__name__}: {exc}"[:160], "FAIL"))
    return rows


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
            ("digits_mosaic G-softmax, head.init=empirical", ["dataset=digits_mosaic", "head.init=empirical"])]
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


SECTIONS: dict[str, tuple[str, Callable[[bool], list[Row]], int]] = {
    # name: (letter, function, time limit in seconds on the GPU)
    "heads": ("a", sec_heads, 90),
    "estimate1": ("b", functools.partial(sec_estimate, 1), 200),
    "estimate2": ("b", functools.partial(sec_estimate, 2), 90),
    "estimate3": ("b", functools.partial(sec_estimate, 3), 90),
    "overhead": ("c", sec_overhead, 200),
    "head_cost": ("d", sec_head_cost, 120),
    "loader": ("e", sec_loader, 90),
    "end_to_end": ("f", sec_end_to_end, 180),  # two runs, each compiling (trainer.compile=auto) on CUDA
    "compile": ("g", sec_compile, 150),
}


def run_one(name: str, smoke: bool, json_path: Path) -> int:
    rows = SECTIONS[name][1](smoke)
    json_path.write_text(json.dumps(rows))
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
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all sections (a section that would "
                   "overrun its limit past the budget is skipped)")
    args = p.parse_args()
    if args.section:
        return run_one(args.section, args.cpu_smoke, args.json)

    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="gsm-gpu-check-sections-"))  # $OUT keeps only the summary files
    start = time.perf_counter()
    table: list[tuple[str, str, str, str]] = []
    names = [s for s in args.only.split(",") if s] or list(SECTIONS)
    for name in names:
        letter, _, limit = SECTIONS[name]
        left = args.budget - (time.perf_counter() - start)
        if name == "compile" and left < limit:
            table.append((letter, f"{name}: skipped", f"{left:.0f} s of the budget left, needs up to {limit} s", "info"))
            continue
        limit = max(30, min(limit, left)) if not args.cpu_smoke else 600
        print(f"\n===== {letter}. {name} (limit {limit:.0f} s) =====", flush=True)
        json_path = scratch / f"section_{name}.json"
        json_path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, __file__, "--section", name, "--json", str(json_path)] + (["--cpu-smoke"] if args.cpu_smoke else [])
        try:
            proc = subprocess.run(cmd, cwd=REPO, timeout=limit, capture_output=True, text=True)
            sys.stdout.write(proc.stdout[-6000:])
            sys.stdout.flush()
            if proc.returncode == 0 and json_path.exists():
                rows = json.loads(json_path.read_text())
            else:
                err = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                sys.stdout.write(proc.stderr[-3000:])
                rows = [(f"{name}", f"section failed (exit {proc.returncode}): {err[:200]}", "FAIL")]
        except subprocess.TimeoutExpired:
            rows = [(f"{name}", f"section timed out after {limit:.0f} s", "FAIL")]
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
    lines += ["", f"{failed} check(s) failed" if failed else "all checks passed"]
    text = "\n".join(lines)
    print("\n" + text)
    (args.out / "gpu_check_summary.md").write_text(text + "\n")
    (args.out / "gpu_check_summary.json").write_text(json.dumps(
        {"device": device, "seconds": total, "rows": table}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
