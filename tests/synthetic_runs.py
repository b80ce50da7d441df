"""Synthetic run folders with the real structure of the trainer's outputs (results.json, test_outputs.pt).

Every results.json is a :class:`gsm.results.RunRecord` (the record the trainer writes), built by the
record's own parser (``RunRecord.from_dict``, what ``read_record`` uses: typed parts may be given as their
JSON objects) and written through ``write``, so the tests cannot drift from the schema. Every
test_outputs.pt is written by :func:`gsm.results.write_test_outputs`. The config stored in each is the real composed config of the experiment (plus the profile's
overrides), so the tables match it to its paper row exactly as they match real runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gsm import runs
from gsm.grid import CONFIG_DIR, compose_many
from gsm.profiles import PROFILES
from gsm.results import SCHEMA_VERSION, RunRecord, best_epoch, frac_key, read_record, write_test_outputs

# what schema 3 added to the record: absent from a version-2 file (write_run(..., schema_version=2))
V3_FIELDS = ("mAP_voc_frac", "CF1_mean_frac", "per_class_ap_voc_frac", "best_top1_error_frac", "best_epoch")
AUTHORS = ("mAP_authors", "CP_authors", "CR_authors", "CF1_authors", "OP_authors", "OR_authors", "OF1_authors")
# what schema 4 renamed: the initial μ, σ were "mu", "sigma" up to version 3 (write_run(..., schema_version=3))
V4_RENAMES = {"mu_init": "mu", "sigma_init": "sigma"}

COCO_NAMES = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
              "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
              "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
              "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
              "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
              "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
              "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
              "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
              "scissors", "teddy bear", "hair drier", "toothbrush"]
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def config_of(experiment: str, profile: str = "full", seed: int = 0, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    cfg = compose_many([(experiment, PROFILES[profile].overrides(experiment) + list(overrides))])[0]
    cfg["seed"] = seed
    return cfg


def demo_config(dataset: str, head: str, seed: int = 0, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """The trainer's resolved config of ``train.py dataset=<dataset> head=<head> seed=<seed> <overrides>`` (no
    experiment: what ``make demo`` runs)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    runs.register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="train"):
        cfg = compose("train", overrides=[f"dataset={dataset}", f"head={head}", f"seed={seed}", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def empirical_block(m: int, rng: np.random.Generator, **given: list[float]) -> dict[str, list[float]]:
    """One split's ``empirical`` statistics as results.json holds them (gsm.results.EmpiricalStats); ``given``
    replaces some."""
    block = {
        "mu_pos": rng.normal(2, 0.5, m).tolist(), "sigma_pos": rng.uniform(0.5, 2, m).tolist(),
        "mu_neg": rng.normal(-2, 0.5, m).tolist(), "sigma_neg": rng.uniform(0.5, 2, m).tolist(),
        "count_pos": [10.0] * m,
    }
    block["compactness"] = [1 / s for s in block["sigma_pos"]]
    block["separability"] = rng.uniform(1, 5, m).tolist()
    block["ratio"] = [d / s for d, s in zip(block["separability"], block["sigma_pos"])]
    block.update(given)
    return block


def write_run(runs_dir: Path, experiment: str | None, seed: int = 0, profile: str = "full", *, outputs: bool = False,
              rng: np.random.Generator | None = None, n_test: int = 60, schema_version: int = SCHEMA_VERSION,
              overrides: tuple[str, ...] = (), config: dict[str, Any] | None = None, **fields: Any) -> Path:
    """One finished run of ``experiment`` under ``runs_dir``; returns its results.json.

    ``fields`` override record fields; a metric may be given by name (``top1_error=0.05``, a fraction),
    which sets its record key (``top1_error_frac``). ``experiment`` may be a grid variant
    (``table3/x@as_written``); ``overrides`` are further Hydra overrides of its config. A single-label run gets
    a history of test errors per epoch whose last is ``top1_error`` and whose best gives ``best_top1_error`` and
    ``best_epoch`` (gsm.results.best_epoch), unless given. ``schema_version=3`` writes the file gsm wrote before
    schema 4 (the initial μ, σ under ``mu``, ``sigma``; the environment without the keys it does not know), and
    ``schema_version=2`` the one before schema 3 (also without the fields schema 3 added). ``config``: a composed config to use instead of the experiment's
    (``experiment=None``; e.g. :func:`demo_config`). ``outputs="legacy"`` writes test_outputs.pt as gsm did
    before its schema_version key."""
    rng = rng or np.random.default_rng(seed)
    cfg = config if config is not None else config_of(experiment, profile, seed, overrides)
    cfg["seed"] = seed
    ds, model, head = cfg["dataset"]["name"], cfg["model"]["name"], cfg["head"]["name"]
    multilabel = ds in ("coco", "nuswide", "digits_mosaic")
    m = {"cifar10": 10, "cifar100": 100, "tiny_imagenet": 200, "coco": 80, "nuswide": 81, "digits": 10,
         "digits_mosaic": 10}[ds]
    names = (CIFAR10_NAMES if ds == "cifar10" else COCO_NAMES if ds == "coco" else
             [str(i) for i in range(m)] if ds.startswith("digits") else [f"class_{i}" for i in range(m)])
    res: dict[str, Any] = {
        "dataset": ds, "model": model, "head": head, "mu_init": cfg["head"].get("mu"), "sigma_init": cfg["head"].get("sigma"),
        "lam": cfg["head"].get("lam"), "seed": seed, "epochs": cfg["trainer"]["epochs"], "multilabel": multilabel,
        "num_classes": m, "class_names": names, "train_samples": 1000, "test_samples": n_test,
    }
    if multilabel:
        res.update({frac_key(k): float(rng.uniform(0.5, 0.9))
                    for k in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "mAP_voc", "CF1_mean", *AUTHORS)})
        res["per_class_ap_frac"] = rng.uniform(0.2, 1, m).tolist()
        res["per_class_ap_voc_frac"] = rng.uniform(0.2, 1, m).tolist()
        res["classes_without_positives"] = []
        res["top3"] = {frac_key(k): 0.5 for k in ("CP", "CR", "CF1", "OP", "OR", "OF1", "CF1_mean")}
    else:
        res.update({"top1_error_frac": float(rng.uniform(0.02, 0.3)), "top5_error_frac": 0.01})
    res["test_loss"] = 0.5
    res["learned"] = ({"mu": [0.0] * m, "sigma": [1.0] * m, "compactness": rng.uniform(0.5, 2, m).tolist(),
                       "separability": rng.uniform(0, 1, m).tolist(), "ratio": rng.uniform(0, 1, m).tolist()}
                      if head == "gsoftmax" else None)
    res["empirical"] = {"test": empirical_block(m, rng), "train": empirical_block(m, rng)}
    res.update({"history": [], "train_time_s": 1.0, "wall_time_s": 2.0, "device": "cpu", "world_size": 1,
                "git_rev": "synthetic", "torch": torch.__version__, "config": cfg,
                "environment": {"device": "cpu", "world_size": 1, "torch": torch.__version__}})
    known = {k for k in RunRecord.__dataclass_fields__}
    res.update({(k if k in known else frac_key(k)): v for k, v in fields.items()})
    if not multilabel and "history" not in fields and res["top1_error_frac"] is not None:
        res["history"] = synthetic_history(res["top1_error_frac"], res["epochs"], rng)
    if not multilabel:  # as the trainer's record builder fills them, unless given
        given = {k if k in known else frac_key(k) for k in fields}
        best, epoch = best_epoch(res["history"])
        if "best_top1_error_frac" not in given:
            res["best_top1_error_frac"] = best
        if "best_epoch" not in given:
            res["best_epoch"] = epoch
    res["signature"] = runs.signature(cfg)
    run_name = f"{model}-{head}-{res['signature']}"
    res["run_name"] = run_name
    path = runs_dir / ds / run_name / "results.json"
    RunRecord.from_dict({**res, "schema_version": SCHEMA_VERSION}).write(path)
    if schema_version in (2, 3):  # what gsm wrote before schema 4 (and 3)
        data = {V4_RENAMES.get(k, k): v for k, v in json.loads(path.read_text()).items()}
        data["environment"] = {k: v for k, v in data["environment"].items() if v is not None}
        if schema_version == 2:
            for key in V3_FIELDS:
                data.pop(key, None)
            if isinstance(data.get("top3"), dict):
                data["top3"].pop("CF1_mean_frac", None)
        path.write_text(json.dumps({**data, "schema_version": schema_version}))
    elif schema_version != SCHEMA_VERSION:
        raise ValueError(f"schema_version {schema_version}: write_run writes 2, 3 or {SCHEMA_VERSION}")
    if outputs:
        write_outputs(path.parent / "test_outputs.pt", m, multilabel, n_test, rng, legacy=outputs == "legacy")
    return path


def synthetic_history(last: float, epochs: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Per-epoch history rows (the trainer's columns) whose test error ends at ``last``; at most 40 epochs are
    listed (the last ones), one of them, when there are several, below ``last``."""
    first = max(1, epochs - 39)
    errs = {e: min(1.0, last + float(rng.uniform(0.001, 0.1))) for e in range(first, epochs)}
    if errs:
        errs[int(rng.integers(first, epochs))] = last * 0.9
    errs[epochs] = last
    return [{"epoch": e, "epochs": epochs, "lr": 0.1, "train_loss": 1.0, "test_top1_error_frac": v, "test_loss": 0.5}
            for e, v in sorted(errs.items())]


def write_outputs(path: Path, m: int, multilabel: bool, n: int, rng: np.random.Generator, legacy: bool = False) -> None:
    """test_outputs.pt as the trainer writes it (gsm.results.write_test_outputs): x (N, m) or (N, m, 2), p (N, m),
    targets. ``legacy``: as gsm wrote it before the file had a schema_version (the same tensors, no key)."""
    if multilabel:
        targets = torch.from_numpy((rng.random((n, m)) < 0.3).astype(np.uint8))
        x = torch.from_numpy(rng.normal(size=(n, m, 2))).float()
        x[..., 0] += 2 * targets
        p = torch.sigmoid(x[..., 0] - x[..., 1])
    else:
        targets = torch.from_numpy(rng.integers(0, m, n)).to(torch.int16)
        x = torch.from_numpy(rng.normal(size=(n, m))).float()
        x[torch.arange(n), targets.long()] += 4
        p = torch.softmax(x, 1)
    write_test_outputs(path, x, p, targets, multilabel=multilabel)
    if legacy:  # the writer's own file less its version key: what gsm wrote before the key existed
        blob = torch.load(path, weights_only=True)
        del blob["schema_version"], blob["signature"]
        torch.save(blob, path)


def read(path: Path) -> dict[str, Any]:
    """The stored JSON of a run (validated through the record first)."""
    read_record(path)
    return json.loads(Path(path).read_text())
