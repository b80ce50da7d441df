"""The release's multi-label gradient scale, shown on real pixels with gsm's own pipeline (CPU, minutes).

    .venv/bin/python scripts/release_gradient_demo.py [--epochs N] [--seed S] [--threads T] [--heads softmax gsoftmax]
                                                      [--out PATH] [--quick]

The authors' release trains the multi-label tables on the gradient of the BCE loss *summed* over batch and
classes (``src/MultiCrossEntropyCriterion.lua``: its backward is ``p − t`` with no 1/B); its lr 1e-5 assumes
that scale. With the mean over batch and classes (gsm's ``head.loss_reduction=mean``) the same lr takes
steps B·m times smaller. This script shows what that does, with nothing but gsm's pieces:

1. pretrain the small ConvNet on ``digits`` (single-label, softmax head) with gsm's digits recipe
   (``dataset=digits model=convnet``: gsm/configs/dataset_model/digits_convnet.yaml);
2. copy its backbone into a fresh multi-label model for ``digits_mosaic`` (a fresh 2m-output head) and
   fine-tune it with the optimiser recipe of Table III composed from the real configs (experiment
   ``table3/resnet101_coco_<head>``: lr, momentum, Nesterov, weight decay, batch, epochs, schedule, and
   for G-softmax its head settings), once with ``head.loss_reduction=mean`` and once with ``sum``
   (the recipe's value): same seed, same initial weights, same data order;
3. print a markdown table: test mAP (eq. 21 and the VOC AP of the authors' ``eval/evaluate.m``), the last
   epoch's mean train loss per label (``gsm.heads.logged_loss``, comparable between the two), the
   pretrained backbone with the untrained head ("epoch 0") as the floor, and the label rate (chance).

``--out PATH`` writes the table to ``PATH`` with suffix ``.md`` and everything (per-epoch history
included) to the same name with suffix ``.json``. ``--quick`` shrinks every size (the test's smoke run).
Deterministic on CPU for a given ``--threads`` (one by default).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from gsm.config import validate_config
from gsm.data import build_data, load_splits
from gsm.data.loaders import Placement
from gsm.data.types import DatasetSplits
from gsm.errors import ConfigError
from gsm.grid import CONFIG_DIR, compose
from gsm.models import Classifier, build_classifier
from gsm.schedules import build_scheduler, epoch_factors
from gsm.train import Dist, build_optimizer, compute_metrics, evaluate, train_one_epoch

CPU = torch.device("cpu")
# The Table III row whose optimiser recipe (and head settings) each head's fine-tuning takes.
TABLE3_ROWS = {"softmax": "table3/resnet101_coco_softmax", "gsoftmax": "table3/resnet101_coco_gsoftmax_mu0_sigma1"}
REDUCTIONS = ("mean", "sum")
QUICK = {"pretrain_subset": 160, "pretrain_epochs": 1, "train_size": 96, "test_size": 64, "epochs": 2}


def compose_train(overrides: Sequence[str]) -> dict[str, Any]:
    """``python train.py OVERRIDES`` as a resolved plain dict (Hydra's compose API on gsm/configs); a copy."""
    return copy.deepcopy(_composed(tuple(overrides)))


@functools.cache
def _composed(overrides: tuple[str, ...]) -> dict[str, Any]:
    from hydra import compose as hydra_compose, initialize_config_dir

    from gsm import runs

    runs.register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="train"):
        cfg = hydra_compose("train", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def pretrain_config(seed: int, quick: bool) -> dict[str, Any]:
    """gsm's digits recipe with the softmax head (epochs, batch, lr, wd, momentum, linspace schedule)."""
    cfg = compose_train(["dataset=digits", "model=convnet", "head=softmax", f"seed={seed}"])
    if quick:
        cfg["dataset"]["subset"], cfg["trainer"]["epochs"] = QUICK["pretrain_subset"], QUICK["pretrain_epochs"]
    validate_config(cfg)
    return cfg


def finetune_config(head: str, reduction: str, seed: int, epochs: int | None = None, quick: bool = False) -> dict[str, Any]:
    """``dataset=digits_mosaic model=convnet`` with Table III's optimiser, schedule, batch, epochs and head
    settings, taken from the composed paper row (``TABLE3_ROWS``), and ``head.loss_reduction=reduction``."""
    if head not in TABLE3_ROWS:
        raise ConfigError(f"head={head!r}: the demo fine-tunes the head of a Table III row, one of {', '.join(TABLE3_ROWS)}")
    row = compose(TABLE3_ROWS[head])
    cfg = compose_train(["dataset=digits_mosaic", "model=convnet", f"head={head}", f"seed={seed}"])
    cfg["optimizer"] = copy.deepcopy(row["optimizer"])
    cfg["schedule"] = copy.deepcopy(row["schedule"])
    cfg["head"] = {**row["head"], "loss_reduction": reduction}
    cfg["trainer"]["batch_size"] = row["trainer"]["batch_size"]
    cfg["trainer"]["epochs"] = row["trainer"]["epochs"]
    if quick:
        cfg["dataset"]["train_size"], cfg["dataset"]["test_size"] = QUICK["train_size"], QUICK["test_size"]
        cfg["trainer"]["epochs"] = QUICK["epochs"]
    if epochs is not None:
        cfg["trainer"]["epochs"] = epochs
    validate_config(cfg)
    return cfg


def build_model(cfg: dict[str, Any], splits: DatasetSplits) -> Classifier:
    return build_classifier(cfg["model"], cfg["head"], num_classes=splits.num_classes, multilabel=splits.multilabel,
                            in_channels=splits.in_channels, image_size=splits.image_size)


def loaders(cfg: dict[str, Any], splits: DatasetSplits):
    batch = int(cfg["trainer"]["batch_size"])
    return build_data(cfg["dataset"], batch_size=batch, place=Placement(CPU, seed=int(cfg["seed"])), num_workers=0,
                      eval_batch_size=4 * batch, splits=splits)


def eval_metrics(model: Classifier, loader, multilabel: bool) -> dict[str, Any]:
    return compute_metrics(evaluate(model, loader, Dist(), None), multilabel)


def summary(metrics: dict[str, Any], multilabel: bool) -> dict[str, float]:
    if multilabel:
        return {"mAP": metrics["mAP"], "mAP_voc": metrics.get("mAP_voc", math.nan), "test_loss": metrics["loss"]}
    return {"top1_error": metrics["top1_error"], "test_loss": metrics["loss"]}


def train(model: Classifier, cfg: dict[str, Any], splits: DatasetSplits) -> list[dict[str, float]]:
    """gsm's trainer pieces: build_optimizer (param groups), the schedule's per-epoch factors, train_one_epoch
    (head_loss with head.loss_reduction), evaluate + compute_metrics after every epoch."""
    data = loaders(cfg, splits)
    epochs = int(cfg["trainer"]["epochs"])
    optimizer = build_optimizer(model, OmegaConf.create(cfg))
    schedule = dict(cfg["schedule"])
    scheduler = build_scheduler(optimizer, epoch_factors(schedule.pop("name"), epochs, **schedule))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    history = []
    for epoch in range(epochs):
        lr = optimizer.param_groups[0]["lr"]
        stats = train_one_epoch(model, model.head, data.train, optimizer, scaler, None, epoch, False, epochs=epochs)
        scheduler.step()
        history.append({"epoch": epoch + 1, "lr": lr, "train_loss": stats["train_loss"],
                        **summary(eval_metrics(model, data.test, splits.multilabel), splits.multilabel)})
    return history


def pretrain(seed: int, quick: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    cfg = pretrain_config(seed, quick)
    torch.manual_seed(seed)
    splits = load_splits(cfg["dataset"])
    model = build_model(cfg, splits)
    history = train(model, cfg, splits)
    setup = {"optimizer": cfg["optimizer"], "schedule": cfg["schedule"], "epochs": cfg["trainer"]["epochs"],
             "batch_size": cfg["trainer"]["batch_size"], "train_images": len(splits.train)}
    info = {"config": setup, **history[-1]}
    return copy.deepcopy(model.backbone.state_dict()), info


def fresh_multilabel(cfg: dict[str, Any], splits: DatasetSplits, backbone: dict[str, torch.Tensor]) -> Classifier:
    """A new multi-label model (fresh head, seeded) carrying the pretrained backbone."""
    torch.manual_seed(int(cfg["seed"]))
    model = build_model(cfg, splits)
    model.backbone.load_state_dict(backbone)
    return model


def markdown(result: dict[str, Any]) -> str:
    pct = lambda v: "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.1f}"  # noqa: E731
    rec = result["recipe"]
    lines = [
        f"Fine-tuning on digits_mosaic ({result['train_images']} train / {result['test_images']} test mosaics) "
        f"with Table III's optimiser: lr {rec['lr']:g}, momentum {rec['momentum']:g}, Nesterov {rec['nesterov']}, "
        f"wd {rec['weight_decay']:g}, batch {rec['batch_size']}, {rec['epochs']} epochs, schedule {rec['schedule']}; "
        f"backbone pretrained on digits (top-1 error {pct(result['pretrain']['top1_error'])} %).",
        "",
        "| head | loss reduction | mAP eq. 21 (%) | mAP VOC (%) | train loss, last epoch |",
        "|---|---|---:|---:|---:|",
    ]
    for head, floor in result["floor"].items():
        lines.append(f"| {head} | epoch 0 (untrained head) | {pct(floor['mAP'])} | {pct(floor['mAP_voc'])} | |")
        for row in result["rows"]:
            if row["head"] == head:
                lines.append(f"| {head} | {row['loss_reduction']} | {pct(row['mAP'])} | {pct(row['mAP_voc'])} | "
                             f"{row['train_loss']:.4f} |")
    lines += ["", f"Label rate (chance-level AP): {pct(result['label_rate'])} %. "
              f"Wall time {result['wall_seconds']:.0f} s on {result['threads']} thread(s)."]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default: Table III's, 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: deterministic)")
    p.add_argument("--heads", nargs="+", default=["softmax", "gsoftmax"], choices=sorted(TABLE3_ROWS))
    p.add_argument("--out", type=Path, default=None, help="write PATH.md (the table) and PATH.json (everything)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run of seconds)")
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs must be >= 1 (got {args.epochs})")
    if args.threads < 1:
        p.error(f"--threads must be >= 1 (got {args.threads})")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        start = time.perf_counter()
        backbone, pre = pretrain(args.seed, args.quick)
        rows, floors, recipe, splits = [], {}, None, None
        for head in dict.fromkeys(args.heads):
            for reduction in REDUCTIONS:
                cfg = finetune_config(head, reduction, args.seed, args.epochs, args.quick)
                if splits is None:
                    splits = load_splits(cfg["dataset"])
                    recipe = {**cfg["optimizer"], "batch_size": cfg["trainer"]["batch_size"],
                              "epochs": cfg["trainer"]["epochs"], "schedule": cfg["schedule"]}
                model = fresh_multilabel(cfg, splits, backbone)
                if head not in floors:  # the same initial model for both reductions (same seed)
                    floors[head] = summary(eval_metrics(model, loaders(cfg, splits).test, True), True)
                history = train(model, cfg, splits)
                rows.append({"head": head, "loss_reduction": reduction, **history[-1], "history": history})
                print(f"{head:8s} {reduction:4s}: mAP {100 * history[-1]['mAP']:.1f} %  "
                      f"(train loss {history[-1]['train_loss']:.4f})", file=sys.stderr)
        assert splits is not None and recipe is not None
        result = {
            "seed": args.seed, "threads": args.threads, "quick": args.quick, "recipe": recipe, "pretrain": pre,
            "train_images": len(splits.train), "test_images": len(splits.test),
            "label_rate": splits.test.targets.float().mean().item(),
            "floor": floors, "rows": rows, "wall_seconds": time.perf_counter() - start,
        }
        table = markdown(result)
        result["markdown"] = table
        print(table, end="")
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.with_suffix(".md").write_text(table)
            args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        return result
    finally:
        torch.set_num_threads(threads_before)


if __name__ == "__main__":
    main()
