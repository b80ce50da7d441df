"""What a table costs before anything trains: the recipes and the probe of ``gsm-tables tableN --estimate``.

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

The device, the launcher's parallelism, the costs per epoch and run, the disk a run writes and the printed
report (:func:`run_estimate`, and the measured planning figure where there is no GPU) are in
:mod:`gsm.estimate_plan`; their names stay importable from here. Nothing is trained and no run folder is written.
"""

from __future__ import annotations

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
from gsm.grid import recipe_key  # the grid's: status groups finished runs by it without torch
from gsm.heads import init_from_data
from gsm.settings import TrainerSettings
from gsm.train.build import BuiltRun, build_model, build_run
from gsm.identity import RunIdentity
from gsm.train.checkpoints import Checkpointer, checkpoint_state
from gsm.train.device import Dist, Machine
from gsm.train.loop import EvalOutputs, compute_metrics, evaluate, train_one_epoch
from gsm.train.state import RunStatus, TrainState


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
    from gsm.data.loaders import DeviceLoader, Placement

    gen = torch.Generator().manual_seed(seed)
    c, s, n = shape["in_channels"], shape["image_size"], batch * batches
    targets = _targets(n, shape, gen)
    if not shape["files"]:
        images = torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=gen)
        return DeviceLoader(images, targets, batch, train=train, mean=[0.5] * c, std=[0.25] * c,
                            place=Placement(device, channels_last=channels_last),
                            crop_padding=shape["crop_padding"] if train else 0, flip=shape["flip"] and train)
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
    state = checkpoint_state(model, optimizer, scheduler, scaler, TrainState(), RunIdentity("estimate", {}, None, {}))
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

    info = DATASETS[recipe.dataset]
    if info.file_transforms is None:
        raise ConfigError(f"dataset={recipe.dataset} is never read from image files; there is no loader to time")
    tf = info.file_transforms(recipe.config["dataset"], info)  # the transforms the trainer's loader applies
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
        for transform, min_side in ((tf.train, tf.train_min_side), (tf.test, tf.test_min_side)):
            files = ImageFiles([path] * images, targets, transform, min_side)
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


# The launcher, the costs and the report (``run_estimate``) are in gsm.estimate_plan; they stay importable from here.
_PLAN = ("PEAK_TFLOPS", "SLURM_DEFAULT_PARALLELISM", "choose_device", "peak_flops", "parallel_gpus", "makespan",
         "run_costs", "run_estimate", "disk_bytes")


def __getattr__(name: str) -> Any:
    if name in _PLAN:
        from gsm import estimate_plan

        return getattr(estimate_plan, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
