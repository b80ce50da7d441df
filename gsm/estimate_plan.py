"""The estimate's report: the device, the launcher's parallelism, the costs and disk of each run, the table's total.

:func:`run_estimate` composes the experiments and probes each recipe (:mod:`gsm.estimate`), then prints per
experiment images/s, MFU, peak memory, seconds per epoch (training images / rate + evaluation + checkpoint), the
time per run (with the start-up the warm-up steps show: torch.compile, autotuning), the disk each run writes
(its checkpoint and test outputs) and the table's device-hours and disk; with the launcher, how many runs go in
parallel and the wall time. Nothing is trained and no run folder is written.

Without a GPU the full profile is not probed (its models would take hours and many GB on a CPU): the estimate
prints the table's GPU-hours as measured on a named GPU (:mod:`gsm.measured_costs`), the disk its runs write
(computed from the models' sizes, nothing built in memory) and the command that measures the time on the
user's own GPU.

Launchers: ``basic`` runs one job at a time; ``gsm_ray``/``ray`` one job per GPU of this machine;
``slurm`` up to ``hydra.launcher.array_parallelism`` jobs (submitit's default 256) at once, one GPU
each. ``<launcher>:N`` (e.g. ``ray:16``) says N GPUs in parallel explicitly.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from gsm import paper
from gsm.errors import ConfigError
from gsm.estimate import Recipe, compose_experiments, group_recipes, probe, process_start_seconds
from gsm.measured_costs import MEASURED
from gsm.text import table_lines

# Dense bf16/fp16 tensor-core peak in TFLOP/s, matched against torch.cuda.get_device_name (first match wins).
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H800", 989.0),
    ("GH200", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0),
    ("A6000", 155.0), ("RTX 4090", 165.0), ("A10G", 70.0), ("A10", 125.0), ("L4", 121.0), ("V100", 125.0),
    ("T4", 65.0),
)

SLURM_DEFAULT_PARALLELISM = 256  # submitit's array_parallelism default


# --------------------------------------------------------------------------- device, peak, launcher


def choose_device(device: str) -> torch.device:
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device must be auto, cpu or cuda (got {device!r})")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is visible; use --device cpu or auto")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def peak_flops(device: torch.device, peak_tflops: float | None) -> tuple[float | None, str]:
    """(peak FLOP/s or None, where it comes from)."""
    if peak_tflops is not None:
        if not math.isfinite(peak_tflops) or peak_tflops <= 0:
            raise ConfigError(f"--peak-tflops must be a positive number (got {peak_tflops!r})")
        return peak_tflops * 1e12, f"{peak_tflops:g} TFLOP/s (--peak-tflops)"
    if device.type != "cuda":
        return None, "unknown for a CPU (pass --peak-tflops for an MFU)"
    name = torch.cuda.get_device_name(device)
    for pattern, tflops in PEAK_TFLOPS:
        if pattern in name:
            return tflops * 1e12, f"{tflops:g} TFLOP/s (bf16 dense, {pattern})"
    return None, f"unknown for {name} (pass --peak-tflops for an MFU)"


def parallel_gpus(launcher: str, launcher_overrides: list[str], runs: int) -> tuple[int, str]:
    """How many runs go at once under ``launcher`` (``name`` or ``name:N``), and why."""
    name, _, count = (launcher or "basic").partition(":")
    if count:
        try:
            n = int(count)
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"--launcher {launcher}: the number after ':' must be a positive number of GPUs")
        why = f"{n} GPUs ({launcher})"
    elif name == "basic":
        n, why = 1, "the basic launcher runs one job at a time"
    elif name in ("ray", "gsm_ray"):
        n = max(1, torch.cuda.device_count())
        why = f"{n} GPU(s) of this machine, one job each (say {name}:N for a cluster of N GPUs)"
    elif name == "slurm":
        n = SLURM_DEFAULT_PARALLELISM
        for ov in launcher_overrides:
            key, _, value = ov.lstrip("+").partition("=")
            if key == "hydra.launcher.array_parallelism":
                n = int(value)
        why = f"SLURM array of up to {n} one-GPU jobs at once (hydra.launcher.array_parallelism), if granted"
    else:
        raise ConfigError(f"--launcher {launcher!r}: the estimate knows basic, gsm_ray/ray and slurm, "
                          f"or <launcher>:N for N GPUs in parallel")
    return max(1, min(n, runs)), why


def makespan(hours: list[float], slots: int) -> float:
    """Wall time of jobs on ``slots`` GPUs, longest job first to the GPU free first."""
    free = [0.0] * max(1, slots)
    for h in sorted(hours, reverse=True):
        i = free.index(min(free))
        free[i] += h
    return max(free)


# --------------------------------------------------------------------------- costs and report


def _times(epochs: int, every: Any) -> int:
    """How many of ``epochs`` epochs evaluate / checkpoint when it happens every ``every`` epochs and at the last."""
    k = max(1, int(every or 1))
    return epochs // k + (1 if epochs % k else 0)


def run_costs(cfg: dict[str, Any], m: dict[str, Any]) -> dict[str, float]:
    """Seconds per epoch (train + eval + checkpoint) and hours per run of one experiment from its recipe's probe."""
    shape = m["shape"]
    rate = m["images_per_second"]
    eval_rate = m["eval_images_per_second"]
    if m.get("loader_images_per_second"):
        rate = min(rate, m["loader_images_per_second"])  # the JPEG workers cap the pace
        eval_rate = min(eval_rate, m["loader_eval_images_per_second"])
    epochs = int(cfg["trainer"]["epochs"])
    train_s = shape["train"] / rate
    # evaluation and checkpoint cost per epoch, averaged over the run: every k epochs and the last
    eval_s = (shape["test"] / eval_rate + m["metrics_seconds"]) * _times(epochs, cfg["trainer"].get("eval_every")) / epochs
    ckpt_s = m["checkpoint_seconds"] * _times(epochs, cfg["trainer"].get("checkpoint_every")) / epochs
    epoch_s = train_s + eval_s + ckpt_s
    extra = shape["train"] / eval_rate if cfg["trainer"].get("analyze_train") else 0.0  # final train-set pass
    extra += m.get("startup_seconds", 0.0)  # once per run: compiling, autotuning
    extra += m.get("data_seconds") or 0.0  # once per run: loading and fingerprinting the data
    extra += m.get("process_seconds", 0.0)  # once per process (each job of SLURM/Ray; at most once per run)
    head = cfg.get("head") or {}
    if head.get("init") == "empirical":  # μ, σ from the data: an eval-mode pass over head.init_batches batches
        batches = head.get("init_batches")
        extra += (shape["train"] if batches is None else min(shape["train"], int(batches) * int(cfg["trainer"]["batch_size"]))) / eval_rate
    return {"rate": rate, "train_s": train_s, "eval_s": eval_s, "ckpt_s": ckpt_s, "epoch_s": epoch_s,
            "epochs": epochs, "hours": (epochs * epoch_s + extra) / 3600}


def _fmt(v: float | None, spec: str = ",.0f", none: str = "n/a") -> str:
    return none if v is None else format(v, spec)


def _describe(recipe: Recipe) -> str:
    cfg, shape = recipe.config, recipe.shape()
    model = cfg["model"]
    extra = ",".join(f"{k}={model[k]}" for k in ("depth", "width", "growth", "pool") if k in model)
    src = "jpeg" if shape["files"] else "tensor"
    return (f"{model['name']}{'(' + extra + ')' if extra else ''} {cfg['dataset']['name']} {shape['image_size']}px "
            f"{src} {cfg['head']['name']} batch {recipe.batch_size}")


# --------------------------------------------------------------------------- disk


def model_size(cfg: dict[str, Any]) -> dict[str, int]:
    """The numbers a run's files are made of, from its model built on the meta device (no memory, no weights):
    parameters (trainable and frozen), buffers (BatchNorm statistics) and the head's fc outputs per image."""
    from omegaconf import OmegaConf

    from gsm.train.build import build_model

    shape = Recipe(cfg).shape()
    conf = OmegaConf.create(cfg)
    if "pretrained" in conf.model:
        conf.model.pretrained = False
    conf.model.pop("weights_path", None)
    with torch.device("meta"):
        model = build_model(conf, num_classes=shape["num_classes"], multilabel=shape["multilabel"],
                            in_channels=shape["in_channels"], image_size=shape["image_size"])
    params = list(model.parameters())
    return {"trainable": sum(p.numel() for p in params if p.requires_grad),
            "frozen": sum(p.numel() for p in params if not p.requires_grad),
            "buffers": sum(b.numel() * b.element_size() for b in model.buffers()),
            "x_width": int(model.head.fc.out_features)}


def disk_bytes(cfg: dict[str, Any], checkpoint_bytes: int | None = None) -> dict[str, int]:
    """What one run leaves on disk: ``checkpoints/last.pt`` (the weights, float32, plus SGD's momentum buffer per
    trainable parameter; ``checkpoint_bytes`` when a probe wrote one) and ``test_outputs.pt`` (the test split's
    x as float32, p as float16, targets as int16 or, multi-label, uint8 per class; gsm.results.write_test_outputs)."""
    shape = Recipe(cfg).shape()
    size = model_size(cfg)
    if checkpoint_bytes is None:
        momentum = float(((cfg.get("optimizer") or {}).get("momentum")) or 0.0)
        checkpoint_bytes = 4 * (size["trainable"] * (2 if momentum else 1) + size["frozen"]) + size["buffers"]
    m, n = shape["num_classes"], shape["test"]
    outputs = n * (4 * size["x_width"] + 2 * m + (m if shape["multilabel"] else 2))
    return {"checkpoint": int(checkpoint_bytes), "outputs": int(outputs), "total": int(checkpoint_bytes + outputs)}


def size_text(nbytes: float) -> str:
    """1,536 -> '1.5 KB', 3.4e8 -> '340 MB' (decimal units, as df -H)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if nbytes >= scale:
            value = nbytes / scale
            return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}" if value >= 10 else f"{value:.2f} {unit}"
    return f"{nbytes:.0f} B"


def duration_text(hours: float) -> str:
    """A run's time in the unit that reads best: '3.3 s', '12.5 min', '1.27 h', '1,043 h'."""
    seconds = hours * 3600
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{hours:,.0f} h" if hours >= 1000 else f"{hours:,.2f} h"


def hours_text(hours: float) -> str:
    """Hours with two significant digits at least and never in exponent form: 76.7, 4.66, 0.0019."""
    if hours >= 100:
        return f"{hours:,.0f}"
    if hours >= 10:
        return f"{hours:.1f}"
    if hours <= 0:
        return "0"
    return f"{hours:.{min(8, max(2, 1 - math.floor(math.log10(hours))))}f}"


# --------------------------------------------------------------------------- no GPU: the measured figure


def model_names(configs: dict[str, dict[str, Any]]) -> list[str]:
    """The models of these runs as the paper names them: VGG-16, DenseNet-100-24, WRN-40-14, ResNet-101 at 448x448."""
    names: list[str] = []
    for cfg in configs.values():
        model = cfg["model"]
        name = {"vgg16": "VGG-16", "resnet101": "ResNet-101", "convnet": "ConvNet", "vgg16_small": "small VGG-16",
                "resnet_small": "small ResNet"}.get(model["name"], model["name"])
        if model["name"] == "wrn":
            name = f"WRN-{model.get('depth')}-{model.get('width')}"
        elif model["name"] == "densenet":
            name = f"DenseNet-{model.get('depth')}-{model.get('growth')}"
        size = Recipe(cfg).shape()["image_size"]
        if model["name"] in ("resnet101", "resnet_small"):
            name += f" at {size}x{size}"
        if name not in names:
            names.append(name)
    return names


def _tables_of(experiments: list[str]) -> list[int]:
    from gsm.profiles import split_variant

    found = {r.table for r in (paper.row_of_experiment(split_variant(e)[0]) for e in experiments) if r is not None}
    return sorted(found)


def _disk_table(configs: dict[str, dict[str, Any]], measured: dict[str, int] | None = None) -> int:
    """Print each run's disk (checkpoint + test outputs) and return the total bytes."""
    total, rows = 0, []
    for exp, cfg in configs.items():
        d = disk_bytes(cfg, (measured or {}).get(exp))
        total += d["total"]
        rows.append([exp, size_text(d["checkpoint"]), size_text(d["outputs"]), size_text(d["total"])])
    print("\n".join(table_lines(["experiment", "checkpoint", "test outputs", "disk/run"], rows, list("lrrr"))))
    return total


def plan_without_gpu(experiments: list[str], configs: dict[str, dict[str, Any]]) -> int:
    """The full profile on a machine without a GPU: the measured GPU-hours of the table (device, date, torch), the
    disk of each run and of the table, and how to measure the time on one's own GPU. Returns 0."""
    tables = _tables_of(experiments)
    label = ", ".join(f"table{t}" for t in tables) or "these experiments"
    print(f"gsm estimate: no GPU here, so nothing is probed: {label}'s models ({', '.join(model_names(configs))}) "
          f"would take hours and many GB on this CPU.\n")
    for t in tables:
        cost = MEASURED.get(t)
        if cost is None:
            print(f"table{t}: no GPU measurement is stored (docs/cost.md: not measured).")
            continue
        ours = sum(1 for e in experiments if (r := paper.row_of_experiment(e)) is not None and r.table == t)
        print(f"table{t}: {hours_text(cost.gpu_hours)} GPU-hours for its {cost.runs} runs (one seed each, one after "
              f"another), measured with make estimate on {cost.device}, torch {cost.torch}, {cost.settings}, on "
              f"{cost.date}; per run: {cost.per_run}; {cost.conditions}."
              + (f" This estimate's grid has {len(experiments)} runs ({len(experiments) - ours} more than measured)."
                 if len(experiments) != ours else ""))
    print("\nDisk each run leaves (computed from the models' sizes):")
    total = _disk_table(configs)
    print(f"\ntotal disk: {size_text(total)} for {len(configs)} run(s), one seed each (each further seed as much again)")
    tables_arg = " ".join(f"TABLE=table{t}" for t in tables[:1]) or "TABLE=tableN"
    print(f"To measure the time on your GPU: make estimate {tables_arg} on the GPU machine "
          f"(gsm-tables {label.split(',')[0]} --estimate). Here: --profile smoke checks the pipeline in minutes; "
          "--device cpu probes the full-size models on this CPU (hours).")
    return 0


def run_estimate(experiments: list[str], profile: str, overrides: list[str], launcher: str, device: str = "auto",
                 peak_tflops: float | None = None, *, warmup: int | None = None, steps: int | None = None,
                 eval_batches: int | None = None) -> int:
    """Print the cost of training ``experiments`` under ``profile`` (+ ``overrides``); trains nothing. Returns 0.

    ``overrides`` are Hydra overrides of the runs; ``hydra.launcher.*`` ones only inform the launcher's
    parallelism. Probe sizes default to 5 warm-up + 20 timed steps and 3 evaluation batches on a GPU,
    1 + 2 and 1 on a CPU.
    """
    launcher_ovs = [o for o in overrides if o.lstrip("+~").startswith("hydra.launcher.")]
    run_ovs = [o for o in overrides if o not in launcher_ovs]
    dev = choose_device(device)
    peak, peak_note = peak_flops(dev, peak_tflops)
    on_gpu = dev.type == "cuda"
    warmup = warmup if warmup is not None else (5 if on_gpu else 1)
    steps = steps if steps is not None else (20 if on_gpu else 2)
    eval_batches = eval_batches if eval_batches is not None else (3 if on_gpu else 1)
    if min(warmup, steps, eval_batches) < 1:
        raise ConfigError("the probe needs at least one warm-up step, one timed step and one evaluation batch")

    configs = compose_experiments(experiments, profile, run_ovs)
    if profile == "full" and device == "auto" and dev.type == "cpu":
        return plan_without_gpu(experiments, configs)
    recipes = group_recipes(configs)
    dev_name = torch.cuda.get_device_name(dev) if on_gpu else "cpu"
    print(f"gsm estimate: profile {profile}, device {dev_name}, peak {peak_note}; {len(configs)} experiment(s), "
          f"{len(recipes)} recipe(s)", flush=True)
    print(f"probe per recipe on synthetic data: {warmup} warm-up + {steps} timed training steps, "
          f"{eval_batches} evaluation batch(es), the test metrics, 1 checkpoint write; nothing is trained or kept\n")

    process_s = process_start_seconds()
    print(f"process start-up (python, torch, the trainer's imports; measured in a fresh process): {process_s:,.1f} s\n")
    measured: dict[str, dict[str, Any]] = {}
    probe_head = ["recipe", "what", "train images/s", "GFLOP/image", "MFU", "peak memory", "eval images/s",
                  "checkpoint s", "loader images/s", "start-up s", "data set-up s"]
    print("\n".join(table_lines(probe_head, [], list("ll" + "r" * 9))))  # each row printed once measured
    for recipe in recipes:
        m = probe(recipe, dev, warmup=warmup, steps=steps, eval_batches=eval_batches)
        m["process_seconds"] = process_s
        measured[recipe.name] = m
        mfu = m["flops_per_image"] * m["images_per_second"] / peak if peak else None
        m["mfu"] = mfu
        loader = (f"{m['loader_images_per_second']:,.0f} ({m['workers']} workers)"
                  if m["loader_images_per_second"] else "on device")
        row = [recipe.name, f"{_describe(recipe)}{' compiled' if m['compiled'] else ''}", f"{m['images_per_second']:,.1f}",
               f"{m['flops_per_image'] / 1e9:,.3f}", _fmt(mfu, ".1%"),
               f"{_fmt(m['peak_memory'] / 2**30 if m['peak_memory'] else None, '.2f')}{' GiB' if m['peak_memory'] else ''}",
               f"{m['eval_images_per_second']:,.1f}",
               f"{m['checkpoint_seconds']:.3f} ({m['checkpoint_bytes'] / 2**20:,.1f} MiB)", loader,
               f"{m['startup_seconds']:,.1f}", _fmt(m["data_seconds"], ",.1f", "n/a (data not here)")]
        print(table_lines(probe_head, [row])[-1], flush=True)

    run_head = ["experiment", "recipe", "images/s", "MFU", "peak memory", "train s/epoch", "eval s/epoch",
                "checkpoint s/epoch", "s/epoch", "epochs", "time/run", "disk/run"]
    run_rows: list[list[str]] = []
    hours: list[float] = []
    disk = 0
    for recipe in recipes:
        m = measured[recipe.name]
        for exp in recipe.experiments:
            c = run_costs(configs[exp], m)
            hours.append(c["hours"])
            run_disk = disk_bytes(configs[exp], m["checkpoint_bytes"])["total"]
            disk += run_disk
            mem = f"{m['peak_memory'] / 2**30:.2f} GiB" if m["peak_memory"] else "n/a"
            run_rows.append([exp, recipe.name, f"{c['rate']:,.1f}", _fmt(m["mfu"], ".1%"), mem, f"{c['train_s']:,.2f}",
                             f"{c['eval_s']:,.2f}", f"{c['ckpt_s']:,.3f}", f"{c['epoch_s']:,.2f}", str(c["epochs"]),
                             duration_text(c["hours"]), size_text(run_disk)])
    print("\n" + "\n".join(table_lines(run_head, run_rows, list("ll" + "r" * 10))))
    total = sum(hours)
    slots, why = parallel_gpus(launcher, launcher_ovs, len(hours))
    unit = "GPU-hours" if on_gpu else "device-hours (this CPU)"
    print(f"\ntotal: {len(hours)} run(s), one seed each: {hours_text(total)} {unit}; disk {size_text(disk)} "
          "(checkpoints and test outputs; each further seed as much again)")
    print(f"launcher {launcher}: {slots} in parallel ({why}); wall time {duration_text(makespan(hours, slots))}")
    print("Seconds per epoch = training images / min(step rate, JPEG loader rate) + test evaluation and metrics + "
          "checkpoint (the time the training loop waits for it); evaluation and checkpoints count once every "
          "trainer.eval_every / checkpoint_every epochs and at the last, averaged over the run's epochs. "
          "Time per run adds, once, the start-up: what the first training steps took beyond the steady pace "
          "(torch.compile, cuDNN autotuning), the data set-up (loading and fingerprinting the data, where it is on "
          "this machine) and the process start-up (paid per job with SLURM or Ray; with the basic launcher once per "
          "command, so the total is then an upper bound). Disk per run = its checkpoint (as the probe wrote it) "
          "and its test outputs (the test split's x, p and targets).")
    return 0
