"""The trainer: ``python train.py [group=option ...] [key=value ...]`` (Hydra app, also ``gsm-train``).

One function per stage, in the order a run goes through them:
set-up (distributed, device, run directory) → data → model → optimiser and
schedule → resume or empirical μ/σ init → epochs (train, evaluate, log,
checkpoint) → final analysis and ``results.json``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.distributed as torch_dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from gsm import analysis, runs
from gsm.data import DataBundle, DeviceLoader, build_data
from gsm.errors import ConfigError, GsmError, TrainingError
from gsm.heads import GSoftmaxHead, Head, head_loss
from gsm.metrics import multilabel_metrics, thresholded_metrics, top1_error, topk_error
from gsm.models import Classifier, build_classifier
from gsm.schedules import build_scheduler, epoch_factors

log = logging.getLogger("gsm.train")
runs.register_resolvers()
# configs/hydra/launcher/ray.yaml deliberately refines the plugin's `ray` schema of the same name.
warnings.filterwarnings("ignore", message=".*is validated against ConfigStore schema with the same name")

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


# --------------------------------------------------------------------------- set-up


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    if pref not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"trainer.device must be auto, cpu or cuda (got {pref!r})")
    if pref == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is visible; use trainer.device=auto or cpu")
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device: torch.device) -> Dist:
    """DDP under torchrun (WORLD_SIZE > 1): NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(torch_dist.get_rank(), torch_dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def amp_dtype(cfg: DictConfig, device: torch.device) -> torch.dtype | None:
    name = str(cfg.trainer.amp).lower() if cfg.trainer.amp not in (None, False) else "none"
    if name not in AMP_DTYPES:
        raise ConfigError(f"trainer.amp must be bf16, fp16 or none (got {cfg.trainer.amp!r})")
    return AMP_DTYPES[name] if device.type == "cuda" else None  # AMP only on the GPU


# --------------------------------------------------------------------------- model and optimiser


def build_optimizer(model: Classifier, cfg: DictConfig) -> torch.optim.SGD:
    """SGD; G-softmax μ, σ in their own group (lr × head.dist_lr_mult, no weight decay)."""
    head = model.head
    dist_params = [p for p in (getattr(head, "mu_param", None), getattr(head, "sigma_param", None)) if p is not None and p.requires_grad]
    dist_ids = {id(p) for p in dist_params}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in dist_ids]
    opt = cfg.optimizer
    for key in ("lr", "momentum", "weight_decay"):
        if not math.isfinite(float(opt[key])) or float(opt[key]) < 0:
            raise ConfigError(f"optimizer.{key} must be a finite number >= 0 (got {opt[key]!r})")
    groups: list[dict[str, Any]] = [{"params": others, "weight_decay": float(opt.weight_decay)}]
    if dist_params:
        groups.append({"params": dist_params, "lr": float(opt.lr) * head.dist_lr_mult, "weight_decay": 0.0})
    return torch.optim.SGD(groups, lr=float(opt.lr), momentum=float(opt.momentum), nesterov=bool(opt.get("nesterov", False)))


def sync_buffers(model: nn.Module, dist: Dist) -> None:
    """BatchNorm statistics (and the L-softmax step) from rank 0, so every rank evaluates the same model."""
    if dist.enabled:
        for buf in model.buffers():
            torch_dist.broadcast(buf, 0)


# --------------------------------------------------------------------------- evaluation


@dataclass
class EvalOutputs:
    x: Tensor  # fc outputs (N, m) or (N, m, 2), float32, CPU
    logits: Tensor  # (N, m)
    targets: Tensor

    def probabilities(self, multilabel: bool) -> Tensor:
        return torch.sigmoid(self.logits) if multilabel else torch.softmax(self.logits, dim=1)


def _gather(tensors: list[Tensor], dist: Dist) -> list[Tensor]:
    if not dist.enabled:
        return tensors
    gathered: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(gathered, tensors)
    return [torch.cat([g[i] for g in gathered]) for i in range(len(tensors))]


@torch.no_grad()
def evaluate(model: Classifier, loader: Any, dist: Dist, amp: torch.dtype | None) -> EvalOutputs:
    """Fc outputs x and logits for the whole split, gathered over ranks, in dataset order."""
    model.eval()
    xs, logits, targets, index = [], [], [], []
    for images, y, idx in loader:
        with torch.autocast(images.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            features = model.backbone(images)
        x = model.head.fc_outputs(features.float())
        xs.append(x.float().cpu())
        logits.append(model.head.logits_from_x(x).float().cpu())
        targets.append(y.cpu())
        index.append(idx.cpu())
    x_all, l_all, t_all, i_all = _gather([torch.cat(xs), torch.cat(logits), torch.cat(targets), torch.cat(index)], dist)
    order = i_all.argsort()
    keep = torch.ones_like(order, dtype=torch.bool)
    keep[1:] = i_all[order][1:] != i_all[order][:-1]  # DistributedSampler pads with repeats
    order = order[keep]
    return EvalOutputs(x_all[order], l_all[order], t_all[order])


def compute_metrics(out: EvalOutputs, multilabel: bool) -> dict[str, Any]:
    if multilabel:
        metrics = multilabel_metrics(out.probabilities(True), out.targets)
        metrics["top3"] = thresholded_metrics(out.probabilities(True), out.targets, top_k=3)
        metrics["loss"] = nn.functional.binary_cross_entropy_with_logits(out.logits, out.targets.float()).item()
        return metrics
    return {
        "top1_error": top1_error(out.logits, out.targets),
        "top5_error": topk_error(out.logits, out.targets, 5),
        "loss": nn.functional.cross_entropy(out.logits, out.targets).item(),
    }


# --------------------------------------------------------------------------- training


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    train_time: float = 0.0


def train_one_epoch(
    model: nn.Module, head: Head, loader: Any, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
    amp: torch.dtype | None, epoch: int, progress: bool,
) -> dict[str, float]:
    model.train()
    loader.set_epoch(epoch)
    loss_sum = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)
    seen = 0
    start = time.perf_counter()
    bar = _progress(loader, epoch, progress)
    for images, targets, _ in bar:
        with torch.autocast(images.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(images, targets)
        loss = head_loss(head, logits, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach() * images.shape[0]
        seen += images.shape[0]
        if bar is not loader and seen:
            bar.set_postfix(img_s=f"{seen / (time.perf_counter() - start):.0f}", refresh=False)
    if seen == 0:
        raise TrainingError(f"epoch {epoch + 1}: the training loader gave no batches")
    mean_loss = (loss_sum / seen).item()  # one device sync per epoch
    if not math.isfinite(mean_loss):
        raise TrainingError(
            f"epoch {epoch + 1}: the training loss is {mean_loss} (diverged). Lower optimizer.lr, "
            f"or for L-softmax raise head.beta_min; the checkpoint of epoch {epoch} is kept"
        )
    seconds = time.perf_counter() - start
    return {"train_loss": mean_loss, "train_seconds": seconds, "images_per_second": seen / seconds}


def _progress(loader: Any, epoch: int, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, unit="batch")


@torch.no_grad()
def empirical_init(model: Classifier, loader: Any, batches: int, dist: Dist, amp: torch.dtype | None) -> None:
    """``head.init=empirical``: μ, σ ← mean, std of x over up to ``batches`` training batches (all ranks)."""
    head = model.head
    assert isinstance(head, GSoftmaxHead)
    model.eval()
    loader.set_epoch(0)
    n, s1, s2 = 0.0, 0.0, 0.0
    for i, (images, _, _) in enumerate(loader):
        if i >= batches:
            break
        with torch.autocast(images.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            features = model.backbone(images)
        x = head.fc_outputs(features.float()).double()
        n, s1, s2 = n + x.shape[0], s1 + x.sum(0), s2 + (x**2).sum(0)
    stats = torch.stack([torch.full_like(s1, n), s1, s2])
    if dist.enabled:
        torch_dist.all_reduce(stats)
    n, s1, s2 = stats
    mu = s1 / n
    sigma = (s2 / n - mu**2).clamp_min(0).sqrt()
    head.set_distribution(mu.float(), sigma.float())
    log.info("head.init=empirical: μ mean %.4f, σ mean %.4f over %d images", mu.mean(), sigma.mean(), int(n.flatten()[0]))


# --------------------------------------------------------------------------- checkpoints


def checkpoint_state(model: Classifier, optimizer, scheduler, scaler, state: TrainState, sig: str) -> dict[str, Any]:
    return {
        "signature": sig,
        "epoch": state.epoch,
        "history": state.history,
        "train_time": state.train_time,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore(path: Path, model: Classifier, optimizer, scheduler, scaler, sig: str) -> TrainState:
    ckpt = runs.load_checkpoint(path)
    if ckpt.get("signature") != sig:
        raise runs.CheckpointError(f"checkpoint {path} belongs to another config (signature {ckpt.get('signature')} != {sig})")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    scaler.load_state_dict(ckpt["scaler"])
    torch.set_rng_state(ckpt["rng_cpu"])
    if ckpt["rng_cuda"] and torch.cuda.is_available() and len(ckpt["rng_cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
    return TrainState(ckpt["epoch"], list(ckpt["history"]), float(ckpt["train_time"]))


# --------------------------------------------------------------------------- reporting


class Reporter:
    """train.log (via logging), TensorBoard events and summary.csv — rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.run_dir, self.enabled, self.writer = run_dir, enabled, None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def epoch(self, row: dict[str, Any], head: Head) -> None:
        if not self.enabled:
            return
        step = row["epoch"]
        scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k not in ("epoch", "epochs")}
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, step)
        if isinstance(head, GSoftmaxHead):
            self.writer.add_histogram("head/mu", head.mu.detach().cpu(), step)
            self.writer.add_histogram("head/sigma", head.sigma.detach().cpu(), step)
        self.writer.flush()
        log.info("epoch %d/%s  %s", step, row.get("epochs"), "  ".join(f"{k}={v:.4g}" for k, v in scalars.items()))

    def summary(self, history: list[dict[str, Any]]) -> None:
        """summary.csv: one row per epoch, rewritten whole (atomically) from the run's history."""
        if not self.enabled or not history:
            return
        buf = io.StringIO()
        fields = [k for k in history[-1] if isinstance(history[-1][k], (int, float))]
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        runs.atomic_write_bytes(self.run_dir / "summary.csv", lambda fh: fh.write(buf.getvalue().encode()))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def epoch_row(epoch: int, epochs: int, lr: float, train: dict[str, float], metrics: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"epoch": epoch, "epochs": epochs, "lr": lr, **train}
    for k, v in metrics.items():
        if isinstance(v, float):
            row[f"test_{k}"] = v
    return row


def build_results(
    cfg: DictConfig, model: Classifier, splits: Any, test: EvalOutputs, train_out: EvalOutputs | None,
    state: TrainState, wall: float, sig: str, dist: Dist, device: torch.device,
) -> dict[str, Any]:
    multilabel = splits.multilabel
    metrics = compute_metrics(test, multilabel)
    head = model.head
    res: dict[str, Any] = {
        "dataset": cfg.dataset.name, "model": cfg.model.name, "head": cfg.head.name,
        "mu": cfg.head.get("mu"), "sigma": cfg.head.get("sigma"), "lam": cfg.head.get("lam"),
        "seed": int(cfg.seed), "epochs": int(cfg.trainer.epochs), "multilabel": multilabel,
        "num_classes": splits.num_classes, "class_names": list(splits.class_names),
        "train_samples": len(splits.train), "test_samples": len(splits.test),
        "data_notes": splits.notes,  # e.g. images skipped as missing or unlabelled, concepts dropped
    }
    if multilabel:
        res.update({k: metrics[k] for k in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")})
        res["per_class_ap"] = metrics["AP"]
        res["classes_without_positives"] = metrics["classes_without_positives"]
        res["top3"] = metrics["top3"]
    else:
        res["top1_error"] = metrics["top1_error"]
        res["top5_error"] = metrics["top5_error"]
    res["test_loss"] = metrics["loss"]
    res["learned"] = analysis.learned_stats(head.mu, head.sigma) if isinstance(head, GSoftmaxHead) else None
    res["empirical"] = {"test": analysis.empirical_stats(test.x, test.targets, multilabel)}
    if train_out is not None:
        res["empirical"]["train"] = analysis.empirical_stats(train_out.x, train_out.targets, multilabel)
    res.update({
        "history": state.history, "train_time_s": state.train_time, "wall_time_s": wall,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "world_size": dist.world_size, "git_rev": runs.git_revision(), "signature": sig,
        "torch": torch.__version__, "config": OmegaConf.to_container(cfg, resolve=True),
    })
    return res


def save_outputs(path: Path, out: EvalOutputs, multilabel: bool) -> None:
    """Test-set features x (float32) and probabilities p (float16) for the figures."""
    blob = {"x": out.x.float(), "p": out.probabilities(multilabel).half(), "targets": out.targets.to(torch.int16 if not multilabel else torch.uint8)}
    runs.atomic_write_bytes(path, lambda fh: torch.save(blob, fh))


# --------------------------------------------------------------------------- the run


def run(cfg: DictConfig) -> dict[str, Any] | None:
    """Train and evaluate one config; returns the results dict (None for dry runs)."""
    wall_start = time.perf_counter()
    device = resolve_device(str(cfg.trainer.device), int(os.environ.get("LOCAL_RANK", "0")))
    dist = init_distributed(device)
    if not dist.is_main:
        logging.getLogger("gsm").setLevel(logging.WARNING)
    try:
        return _run(cfg, dist, device, wall_start)
    finally:
        if dist.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def _run(cfg: DictConfig, dist: Dist, device: torch.device, wall_start: float) -> dict[str, Any] | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    results_path, ckpt_path = run_dir / "results.json", run_dir / "checkpoints" / "last.pt"
    sig = runs.signature(cfg)
    if not cfg.dry_run:
        if results_path.exists() and not cfg.trainer.force:
            if dist.is_main:
                print(f"gsm: this run is finished; results: {results_path} (trainer.force=true retrains)")
            return json.loads(results_path.read_text())
        if cfg.trainer.force and dist.is_main:
            for p in (results_path, ckpt_path, run_dir / "summary.csv"):
                p.unlink(missing_ok=True)
        dist.barrier()  # every rank now sees the same checkpoint state

    amp = amp_dtype(cfg, device)
    batch_size = int(cfg.trainer.batch_size)
    if batch_size < 1 or batch_size % dist.world_size:
        raise ConfigError(f"trainer.batch_size={batch_size} (the global batch) must be a positive multiple of the {dist.world_size} processes")
    channels_last = bool(cfg.trainer.channels_last) and device.type == "cuda"
    torch.manual_seed(int(cfg.seed))
    data: DataBundle = build_data(
        cfg.dataset, batch_size=batch_size // dist.world_size, device=device, seed=int(cfg.seed), rank=dist.rank,
        world_size=dist.world_size, num_workers=int(cfg.trainer.num_workers),
        eval_batch_size=int(cfg.trainer.eval_batch_size), channels_last=channels_last,
    )
    splits = data.splits
    model = build_classifier(
        cfg.model, cfg.head, num_classes=splits.num_classes, multilabel=splits.multilabel,
        in_channels=splits.in_channels, image_size=splits.image_size,
    )
    if cfg.dry_run:
        if dist.is_main:
            print(json.dumps({
                "params": sum(p.numel() for p in model.parameters()), "train_samples": len(splits.train),
                "test_samples": len(splits.test), "num_classes": splits.num_classes,
                "multilabel": splits.multilabel, "input_shape": data.input_shape,
            }))
        return None

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    epochs = int(cfg.trainer.epochs)
    schedule = OmegaConf.to_container(cfg.schedule, resolve=True)
    scheduler = build_scheduler(optimizer, epoch_factors(schedule.pop("name"), epochs, **schedule))
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)

    if ckpt_path.exists():
        state = restore(ckpt_path, model, optimizer, scheduler, scaler, sig)
        log.info("resuming %s from epoch %d/%d", run_dir, state.epoch, epochs)
    else:
        state = TrainState()
        if isinstance(model.head, GSoftmaxHead) and model.head.init == "empirical":
            empirical_init(model, data.train, model.head.init_batches, dist, amp)
    log.info("run dir %s | %s on %s x%d | %d train / %d test images", run_dir, cfg.model.name, device, dist.world_size,
             len(splits.train), len(splits.test))

    train_model: nn.Module = model
    if dist.enabled:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.trainer.compile:
        train_model = torch.compile(train_model)

    reporter = Reporter(run_dir, dist.is_main)
    last_eval: EvalOutputs | None = None
    try:
        for epoch in range(state.epoch, epochs):
            lr = optimizer.param_groups[0]["lr"]
            train_stats = train_one_epoch(train_model, model.head, data.train, optimizer, scaler, amp, epoch,
                                          bool(cfg.trainer.progress) and dist.is_main)
            scheduler.step()
            sync_buffers(model, dist)
            last_eval = evaluate(model, data.test, dist, amp)
            if not torch.isfinite(last_eval.logits).all():
                raise TrainingError(
                    f"epoch {epoch + 1}: the model's test outputs are not finite (diverged). Lower optimizer.lr; "
                    f"the checkpoint of epoch {state.epoch} is kept"
                )
            row = epoch_row(epoch + 1, epochs, lr, train_stats, compute_metrics(last_eval, splits.multilabel))
            state.epoch, state.train_time = epoch + 1, state.train_time + train_stats["train_seconds"]
            state.history.append(row)
            reporter.epoch(row, model.head)
            reporter.summary(state.history)
            if dist.is_main:
                runs.save_checkpoint(ckpt_path, checkpoint_state(model, optimizer, scheduler, scaler, state, sig))
            dist.barrier()
    finally:
        reporter.close()

    if last_eval is None:  # resumed after the last epoch's checkpoint
        last_eval = evaluate(model, data.test, dist, amp)
    train_eval = None
    if cfg.trainer.analyze_train and data.train_eval is not None:
        train_eval = evaluate(model, data.train_eval, dist, amp)
    results = build_results(cfg, model, splits, last_eval, train_eval, state, time.perf_counter() - wall_start, sig, dist, device)
    if dist.is_main:
        save_outputs(run_dir / "test_outputs.pt", last_eval, splits.multilabel)
        runs.write_json(results_path, results)
        headline = f"top1_error={results['top1_error']:.4f}" if not splits.multilabel else f"mAP={results['mAP']:.4f}"
        log.info("finished: %s | results: %s", headline, results_path)
    dist.barrier()
    return results


CONFIG_DIR = str(Path(__file__).resolve().parent / "configs")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        results = run(cfg)
    except GsmError as exc:
        print(f"gsm: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if not results:
        return None
    return results.get("top1_error", results.get("mAP"))


def cli() -> None:
    """Console script ``gsm-train``."""
    main()


if __name__ == "__main__":
    main()
