"""What a table costs before anything trains: ``gsm-tables tableN --estimate``.

Every experiment's config is composed exactly as the trainer composes it (the profile's overrides,
then ``-o`` overrides). Rows that train the same way (dataset shapes, model, head, batch, AMP,
channels_last, compile) form one *recipe*; for each recipe a short probe on synthetic data of the
recipe's shapes builds the real model, head and optimiser on the chosen device and times

* training steps of the trainer's own ``train_one_epoch`` (uint8 images augmented on the device by
  ``DeviceLoader`` for the in-memory sets; ready float batches for the JPEG sets) after a warm-up,
* one evaluation pass of ``evaluate`` at the eval batch size, plus the test-set metrics on outputs of
  the test split's full size,
* one checkpoint write of the trainer's checkpoint state into a temporary folder (removed),
* the training FLOPs per image (forward + backward, ``torch.utils.flop_counter``), hence MFU against
  the device's peak (a table of known GPUs, bf16/fp16 dense tensor-core peak, or ``peak_tflops``),
* for the JPEG sets, the decode + transform rate of one DataLoader worker on a synthetic JPEG of the
  dataset's usual size: the loader caps the training rate at ``workers x`` that rate.

Per experiment it prints images/s, MFU, peak memory, seconds per epoch (training images / rate +
evaluation + checkpoint), hours per run (with the start-up the warm-up steps show: torch.compile,
autotuning), and the total device-hours; with the launcher, how many
runs go in parallel and the wall time. Nothing is trained and no run folder is written.

Launchers: ``basic`` runs one job at a time; ``gsm_ray``/``ray`` one job per GPU of this machine;
``slurm`` up to ``hydra.launcher.array_parallelism`` jobs (submitit's default 256) at once, one GPU
each. ``<launcher>:N`` (e.g. ``ray:16``) says N GPUs in parallel explicitly.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from gsm.data import DATASETS
from gsm.errors import ConfigError
from gsm.heads import init_from_data
from gsm.settings import TrainerSettings
from gsm.train.build import BuiltRun, build_model, build_run
from gsm.train.checkpoints import Checkpointer, checkpoint_state
from gsm.train.device import Dist, Machine
from gsm.train.loop import EvalOutputs, compute_metrics, evaluate, train_one_epoch
from gsm.train.state import RunStatus, TrainState


# Dense bf16/fp16 tensor-core peak in TFLOP/s, matched against torch.cuda.get_device_name (first match wins).
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H800", 989.0),
    ("GH200", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0),
    ("A6000", 155.0), ("RTX 4090", 165.0), ("A10G", 70.0), ("A10", 125.0), ("L4", 121.0), ("V100", 125.0),
    ("T4", 65.0),
)

SLURM_DEFAULT_PARALLELISM = 256  # submitit's array_parallelism default


# --------------------------------------------------------------------------- recipes


@dataclass
class Recipe:
    """One way of training shared by several experiments (what the probe measures)."""

    config: dict[str, Any]  # the first experiment's resolved config
    experiments: list[str] = field(default_factory=list)
    name: str = ""

    @property
    def dataset(self) -> str:
        return self.config["dataset"]["name"]

    def shape(self) -> dict[str, Any]:
        """Input and label shapes, split sizes and whether the split is read from JPEG files."""
        ds = self.config["dataset"]
        name = ds["name"]
        if name not in DATASETS:
            raise ConfigError(f"dataset={name!r}: the estimate knows no shapes for it; known: {', '.join(DATASETS)}")
        info = DATASETS[name]
        # dataset.train_size / test_size exist only where the dataset's config defines them (digits_mosaic)
        n_train, n_test = int(ds.get("train_size") or info.train_size), int(ds.get("test_size") or info.test_size)
        size = int(ds.get("image_size") or info.default_image_size)
        cap = ds.get("subset")
        if cap is not None:
            n_train, n_test = min(n_train, int(cap)), min(n_test, int(cap))
        return {"in_channels": info.in_channels, "num_classes": info.num_classes, "multilabel": info.multilabel,
                "train": n_train, "test": n_test, "image_size": size, "files": info.reads_files(size),
                "source": info.file_size, "crop_padding": info.crop_padding(int(ds.get("crop_padding", 0) or 0), size),
                "flip": bool(ds.get("flip", False))}

    @property
    def trainer(self) -> TrainerSettings:
        return TrainerSettings.from_config(self.config["trainer"])

    @property
    def batch_size(self) -> int:
        return self.trainer.batch_size


def recipe_key(cfg: dict[str, Any]) -> str:
    """The settings that change the cost of a training step, an evaluation pass or a checkpoint."""
    ds = {k: v for k, v in cfg["dataset"].items() if k not in ("root", "download", "cache", "cache_dir", "on_missing")}
    model = {k: v for k, v in cfg["model"].items() if k not in ("pretrained", "weights_path")}
    head = {"name": cfg["head"]["name"], "margin": cfg["head"].get("margin")}
    tr = cfg["trainer"]
    trainer = {k: tr.get(k) for k in ("batch_size", "eval_batch_size", "amp", "channels_last", "compile",
                                      "compile_mode", "num_workers")}
    return json.dumps({"dataset": ds, "model": model, "head": head, "trainer": trainer}, sort_keys=True, default=str)


def group_recipes(configs: dict[str, dict[str, Any]]) -> list[Recipe]:
    recipes: dict[str, Recipe] = {}
    for exp, cfg in configs.items():
        recipes.setdefault(recipe_key(cfg), Recipe(cfg)).experiments.append(exp)
    out = list(recipes.values())
    for i, r in enumerate(out):
        r.name = f"R{i + 1}"
    return out


def compose_experiments(experiments: list[str], profile: str, overrides: list[str]) -> dict[str, dict[str, Any]]:
    """Each experiment's resolved config under the profile, as ``gsm-tables`` launches it."""
    from gsm.grid import compose_many
    from gsm.profiles import PROFILES

    if profile not in PROFILES:
        raise ConfigError(f"--profile {profile!r} is not a profile; valid: {', '.join(PROFILES)}")
    if not experiments:
        raise ConfigError("the estimate needs at least one experiment")
    prof = PROFILES[profile]
    exps = list(dict.fromkeys(experiments))
    jobs = [(exp, prof.overrides(exp, None) + list(overrides)) for exp in exps]
    return dict(zip(exps, compose_many(jobs)))


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


# --------------------------------------------------------------------------- the probe


class SyntheticLoader:
    """The loader interface the trainer uses (set_epoch, iteration, len) over ready batches."""

    def __init__(self, batches: list[tuple[Tensor, Tensor, Tensor]]) -> None:
        self.batches = batches

    def set_epoch(self, epoch: int) -> None:
        pass

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _targets(n: int, shape: dict[str, Any], gen: torch.Generator) -> Tensor:
    if shape["multilabel"]:
        y = (torch.rand(n, shape["num_classes"], generator=gen) < 0.05).float()
        y[torch.arange(n), torch.randint(0, shape["num_classes"], (n,), generator=gen)] = 1.0  # >= 1 label each
        return y
    return torch.randint(0, shape["num_classes"], (n,), generator=gen)


def make_loader(shape: dict[str, Any], batch: int, batches: int, train: bool, device: torch.device,
                channels_last: bool, seed: int = 0) -> Any:
    """Synthetic batches of the recipe's shapes: uint8 on the device (DeviceLoader) or ready floats (JPEG sets)."""
    from gsm.data.loaders import DeviceLoader

    gen = torch.Generator().manual_seed(seed)
    c, s, n = shape["in_channels"], shape["image_size"], batch * batches
    targets = _targets(n, shape, gen)
    if not shape["files"]:
        images = torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=gen)
        return DeviceLoader(images, targets, batch, train=train, mean=[0.5] * c, std=[0.25] * c, device=device,
                            crop_padding=shape["crop_padding"] if train else 0, flip=shape["flip"] and train,
                            channels_last=channels_last)
    x = torch.randn(batch, c, s, s, generator=gen).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = []
    for i in range(batches):
        idx = torch.arange(i * batch, (i + 1) * batch)
        out.append((x, targets[idx].to(device), idx.to(device)))
    return SyntheticLoader(out)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_flops_per_image(model: torch.nn.Module, loader: Any, amp: torch.dtype | None) -> float:
    """Forward + backward FLOPs of one training step per image (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    from gsm.heads import head_loss

    images, targets, _ = next(iter(loader))
    n = min(images.shape[0], 4)
    n = n if n >= 2 else images.shape[0]  # BatchNorm needs two samples in training mode
    images, targets = images[:n], targets[:n]
    model.train()
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(images.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(images, targets)
        head_loss(model.head, logits, targets).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / n


def checkpoint_seconds(model, optimizer, scheduler, scaler, device: torch.device) -> tuple[float, float, int]:
    """(seconds the training loop waits, seconds until the file is written, bytes) of one checkpoint
    of the trainer's state into a temporary folder (removed), written as the trainer writes it: in the
    background, the loop waiting for the snapshot only."""
    state = checkpoint_state(model, optimizer, scheduler, scaler, TrainState(), "estimate")
    with tempfile.TemporaryDirectory(prefix="gsm-estimate-") as tmp:
        path = Path(tmp) / "last.pt"
        start = time.perf_counter()
        ckpt = Checkpointer(path, device.type == "cuda", RunStatus())
        ckpt.save(state, 0)
        blocking = time.perf_counter() - start
        ckpt.wait()
        total = time.perf_counter() - start
        size = path.stat().st_size
    return blocking, total, size


def metrics_seconds(shape: dict[str, Any]) -> float:
    """The per-epoch test metrics on outputs of the test split's full size (CPU, as the trainer computes them)."""
    n, m = shape["test"], shape["num_classes"]
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(n, m, generator=gen)
    out = EvalOutputs(logits.clone(), logits, _targets(n, shape, gen))
    start = time.perf_counter()
    compute_metrics(out, shape["multilabel"])
    return time.perf_counter() - start


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def loader_rate_per_worker(recipe: Recipe, shape: dict[str, Any], images: int = 8) -> tuple[float, float]:
    """(train, eval) images/s of one DataLoader worker (one thread): decode a synthetic JPEG of the dataset's
    usual size and apply the recipe's transforms, as gsm.data.files.ImageFiles does."""
    import numpy as np
    from PIL import Image

    from gsm.data.files import ImageFiles
    from gsm.data.transforms import eval_transform, multilabel_train, multiscale_side, pad_crop_train

    ds, size = recipe.config["dataset"], shape["image_size"]
    if not DATASETS[recipe.dataset].multilabel:
        train_tf, train_min = pad_crop_train(size, shape["crop_padding"], shape["flip"]), size
    else:
        crop = ds.get("train_crop") or "multiscale"
        train_tf = multilabel_train(size, crop, shape["flip"])
        train_min = multiscale_side(size) if crop == "multiscale" else None
    w, h = shape["source"]
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * rng.uniform(0.1, 0.5) + yy * rng.uniform(0.1, 0.5) + rng.uniform(0, 255)) % 256
                     for _ in range(3)], -1)
    pixels = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    rates = []
    with tempfile.TemporaryDirectory(prefix="gsm-estimate-") as tmp, _threads(1):
        path = Path(tmp) / "probe.jpg"
        Image.fromarray(pixels).save(path, "JPEG", quality=90)
        targets = torch.zeros(images, dtype=torch.long)
        for tf, min_size in ((train_tf, train_min), (eval_transform(size), size)):
            files = ImageFiles([path] * images, targets, tf, min_size)
            files[0]
            start = time.perf_counter()
            for i in range(images):
                files[i]
            rates.append(images / (time.perf_counter() - start))
    return rates[0], rates[1]


def process_start_seconds() -> float:
    """Seconds a new trainer process takes before its first run: the interpreter, torch and the trainer's imports
    (measured once, in a fresh process). A launcher pays it per process: once per command with the basic launcher,
    once per job with SLURM or Ray."""
    import subprocess
    import sys

    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gsm.train.app"], check=True, capture_output=True)
    return time.perf_counter() - start


def data_setup_seconds(recipe: Recipe) -> float | None:
    """Seconds one run takes to load and fingerprint its data (``load_splits`` without writing), when the data is
    on this machine; None when it is not (the estimate then leaves it out and says so)."""
    from gsm.data import load_splits
    from gsm.errors import DataError

    start = time.perf_counter()
    try:
        load_splits(dict(recipe.config["dataset"]), write=False)
    except (DataError, ConfigError):
        return None
    return time.perf_counter() - start


@dataclass
class ProbeRun:
    """A recipe built as the trainer builds it (:mod:`gsm.train.build`), on one device, one process: what the
    probe here and :func:`gsm.profiling.profile_recipe` time, on synthetic batches (:func:`make_loader`)."""

    model: Any  # gsm.models.Classifier
    machine: Machine
    parts: BuiltRun
    train_model: torch.nn.Module  # what the training steps call (compiled when the trainer would compile)


def build_probe_run(recipe: Recipe, device: torch.device) -> ProbeRun:
    """The model (no pretrained weights: they do not change the cost, and nothing is downloaded), the trainer's
    decisions for ``device`` (:meth:`Machine.decide`) and its optimiser, schedule and scaler; an empirical head
    is initialised from one synthetic batch (a step's cost does not depend on μ, σ)."""
    from omegaconf import OmegaConf

    cfg, shape = OmegaConf.create(recipe.config), recipe.shape()
    if "pretrained" in cfg.model:
        cfg.model.pretrained = False
    cfg.model.pop("weights_path", None)
    torch.manual_seed(int(cfg.seed))
    model = build_model(cfg, num_classes=shape["num_classes"], multilabel=shape["multilabel"],
                        in_channels=shape["in_channels"], image_size=shape["image_size"])
    machine = Machine.decide(recipe.trainer, device)
    parts = build_run(cfg, recipe.trainer, machine, model)
    train_model = parts.training_model(machine)
    if getattr(model.head, "needs_data_init", False):
        loader = make_loader(shape, machine.eval_batch_size, 1, False, device, machine.channels_last, seed=0)
        init_from_data(model, loader, amp=machine.amp)
    return ProbeRun(model, machine, parts, train_model)


def probe(recipe: Recipe, device: torch.device, *, warmup: int, steps: int, eval_batches: int) -> dict[str, Any]:
    """Time one recipe on synthetic data (see the module docstring); returns the measurements."""
    shape = recipe.shape()
    built = build_probe_run(recipe, device)
    model, machine, parts, train_model = built.model, built.machine, built.parts, built.train_model
    optimizer, scheduler, scaler, amp = parts.optimizer, parts.scheduler, parts.scaler, machine.amp
    channels_last, compiled = machine.channels_last, machine.compiled
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    bs, ebs = machine.batch_size, machine.eval_batch_size
    warm = make_loader(shape, bs, warmup, True, device, channels_last, seed=1)
    timed = make_loader(shape, bs, steps, True, device, channels_last, seed=2)
    start = time.perf_counter()
    train_one_epoch(train_model, model.head, warm, optimizer, scaler, amp, 0, False)
    _sync(device)
    warm_seconds = time.perf_counter() - start
    stats = train_one_epoch(train_model, model.head, timed, optimizer, scaler, amp, 1, False)
    rate = float(stats["images_per_second"])
    # what the first steps took beyond the steady pace: torch.compile, cuDNN autotuning, allocator growth;
    # paid once per run (again when a run resumes)
    startup = max(0.0, warm_seconds - warmup * bs / rate)

    eval_loader = make_loader(shape, ebs, eval_batches, False, device, channels_last, seed=3)
    evaluate(model, make_loader(shape, ebs, 1, False, device, channels_last, seed=4), Dist(), amp)
    _sync(device)
    start = time.perf_counter()
    evaluate(model, eval_loader, Dist(), amp)
    _sync(device)
    eval_rate = ebs * eval_batches / (time.perf_counter() - start)
    peak_mem = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None

    flops = train_flops_per_image(model, timed, amp)
    ckpt_wait, ckpt_total, ckpt_bytes = checkpoint_seconds(model, optimizer, scheduler, scaler, device)
    metrics_s = metrics_seconds(shape)
    out = {"images_per_second": rate, "eval_images_per_second": eval_rate, "flops_per_image": flops,
           "peak_memory": peak_mem, "checkpoint_seconds": ckpt_wait, "checkpoint_write_seconds": ckpt_total,
           "checkpoint_bytes": ckpt_bytes, "metrics_seconds": metrics_s, "compiled": compiled, "shape": shape,
           "startup_seconds": startup, "data_seconds": data_setup_seconds(recipe),
           "loader_images_per_second": None, "workers": None}
    if shape["files"] and shape["source"] is not None:
        per_worker_train, per_worker_eval = loader_rate_per_worker(recipe, shape)
        workers = machine.num_workers  # the trainer's trainer.num_workers (auto: gsm.data.loaders.auto_num_workers)
        out["workers"] = workers
        out["loader_images_per_second"] = per_worker_train * max(1, workers)
        out["loader_eval_images_per_second"] = per_worker_eval * max(1, workers)
    del model, train_model, optimizer, parts, built, warm, timed, eval_loader
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


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
    if profile == "full" and device == "auto" and dev.type == "cpu":
        raise ConfigError(
            "no GPU here: the full profile's estimate probes the paper's full-size models (WRN-40-14, DenseNet-100-24, "
            "ResNet-101 at 448x448), which takes hours and many GB on a CPU; run it on a GPU node, use --profile smoke "
            "to check the pipeline here, or --device cpu to probe on this CPU anyway")
    peak, peak_note = peak_flops(dev, peak_tflops)
    on_gpu = dev.type == "cuda"
    warmup = warmup if warmup is not None else (5 if on_gpu else 1)
    steps = steps if steps is not None else (20 if on_gpu else 2)
    eval_batches = eval_batches if eval_batches is not None else (3 if on_gpu else 1)
    if min(warmup, steps, eval_batches) < 1:
        raise ConfigError("the probe needs at least one warm-up step, one timed step and one evaluation batch")

    configs = compose_experiments(experiments, profile, run_ovs)
    recipes = group_recipes(configs)
    dev_name = torch.cuda.get_device_name(dev) if on_gpu else "cpu"
    print(f"gsm estimate: profile {profile}, device {dev_name}, peak {peak_note}; {len(configs)} experiment(s), "
          f"{len(recipes)} recipe(s)", flush=True)
    print(f"probe per recipe on synthetic data: {warmup} warm-up + {steps} timed training steps, "
          f"{eval_batches} evaluation batch(es), the test metrics, 1 checkpoint write; nothing is trained or kept\n")

    process_s = process_start_seconds()
    print(f"process start-up (python, torch, the trainer's imports; measured in a fresh process): {process_s:,.1f} s\n")
    measured: dict[str, dict[str, Any]] = {}
    print("| recipe | what | train images/s | GFLOP/image | MFU | peak memory | eval images/s | checkpoint s | "
          "loader images/s | start-up s | data set-up s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for recipe in recipes:
        m = probe(recipe, dev, warmup=warmup, steps=steps, eval_batches=eval_batches)
        m["process_seconds"] = process_s
        measured[recipe.name] = m
        mfu = m["flops_per_image"] * m["images_per_second"] / peak if peak else None
        m["mfu"] = mfu
        loader = (f"{m['loader_images_per_second']:,.0f} ({m['workers']} workers)"
                  if m["loader_images_per_second"] else "on device")
        print(f"| {recipe.name} | {_describe(recipe)}{' compiled' if m['compiled'] else ''} | "
              f"{m['images_per_second']:,.1f} | {m['flops_per_image'] / 1e9:,.3f} | {_fmt(mfu, '.1%')} | "
              f"{_fmt(m['peak_memory'] / 2**30 if m['peak_memory'] else None, '.2f')}{' GiB' if m['peak_memory'] else ''} | "
              f"{m['eval_images_per_second']:,.1f} | {m['checkpoint_seconds']:.3f} "
              f"({m['checkpoint_bytes'] / 2**20:,.1f} MiB) | {loader} | {m['startup_seconds']:,.1f} | "
              f"{_fmt(m['data_seconds'], ',.1f', 'n/a (data not here)')} |", flush=True)

    print("\n| experiment | recipe | images/s | MFU | peak memory | train s/epoch | eval s/epoch | "
          "checkpoint s/epoch | s/epoch | epochs | h/run |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    hours: list[float] = []
    for recipe in recipes:
        m = measured[recipe.name]
        for exp in recipe.experiments:
            c = run_costs(configs[exp], m)
            hours.append(c["hours"])
            mem = f"{m['peak_memory'] / 2**30:.2f} GiB" if m["peak_memory"] else "n/a"
            print(f"| {exp} | {recipe.name} | {c['rate']:,.1f} | {_fmt(m['mfu'], '.1%')} | {mem} | "
                  f"{c['train_s']:,.2f} | {c['eval_s']:,.2f} | {c['ckpt_s']:,.3f} | {c['epoch_s']:,.2f} | "
                  f"{c['epochs']} | {c['hours']:,.4g} |")
    total = sum(hours)
    slots, why = parallel_gpus(launcher, launcher_ovs, len(hours))
    unit = "GPU-hours" if on_gpu else "device-hours (this CPU)"
    print(f"\ntotal: {len(hours)} run(s), one seed each: {total:,.4g} {unit}")
    print(f"launcher {launcher}: {slots} in parallel ({why}); wall time {makespan(hours, slots):,.4g} h")
    print("Seconds per epoch = training images / min(step rate, JPEG loader rate) + test evaluation and metrics + "
          "checkpoint (the time the training loop waits for it); evaluation and checkpoints count once every "
          "trainer.eval_every / checkpoint_every epochs and at the last, averaged over the run's epochs. "
          "Hours per run add, once, the start-up: what the first training steps took beyond the steady pace "
          "(torch.compile, cuDNN autotuning), the data set-up (loading and fingerprinting the data, where it is on "
          "this machine) and the process start-up (paid per job with SLURM or Ray; with the basic launcher once per "
          "command, so the total is then an upper bound).")
    return 0
