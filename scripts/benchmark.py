"""Training throughput of gsm's hot loop (images/s), per backbone and head.

    python scripts/benchmark.py --preset cpu            # what docs/cost.md's CPU numbers come from
    python scripts/benchmark.py --preset gpu            # on a CUDA machine (bf16 AMP, channels_last)
    python scripts/benchmark.py --preset gpu --compile  # with torch.compile
    python scripts/benchmark.py --loader                # JPEG pipeline: images/s per DataLoader worker

Data are synthetic uint8 images held on the device and fed through gsm's
DeviceLoader (batched crop/flip/normalise on the device) and the trainer's own
``train_one_epoch``; only the timed epoch counts (a warm-up epoch runs first).
Prints one markdown row per configuration.

``--loader``: the COCO recipe's JPEG pipeline (448 px: resize to 512, multi-scale crop,
flip, normalise; test: resize to 448) on 640x480 JPEGs generated in a temporary folder,
one worker's rate (one process, one thread, as a DataLoader worker runs) before (PIL
decode, separate ToDtype + Normalize) and after (``gsm.data.files.load_rgb``'s
libjpeg-turbo decode into a tensor, fused normalisation), and optionally a real
DataLoader with ``--workers N,...``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gsm.data.loaders import DeviceLoader, Placement
from gsm.heads import build_head
from gsm.models import Classifier, build_backbone
from gsm.train import train_one_epoch

# (label, model config, in_channels, image size, classes, batch size)
PRESETS = {
    "cpu": [
        ("ConvNet (digits demo)", {"name": "convnet", "width": 24}, 1, 32, 10, 64),
        ("WRN-16-4", {"name": "wrn", "depth": 16, "width": 4}, 3, 32, 100, 128),
    ],
    "gpu": [
        ("WRN-40-14 (CIFAR)", {"name": "wrn", "depth": 40, "width": 14}, 3, 32, 100, 128),
        ("DenseNet-100-24 (CIFAR-100)", {"name": "densenet", "depth": 100, "growth": 24}, 3, 32, 100, 32),
        ("VGG-16-BN (CIFAR)", {"name": "vgg16"}, 3, 32, 100, 128),
        ("ResNet-101 224 (Tiny ImageNet)", {"name": "resnet101", "pretrained": False}, 3, 224, 200, 80),
    ],
}
HEADS = ("softmax", "gsoftmax", "lsoftmax")


def bench(model_cfg, in_ch, size, classes, batch, head, device, amp, compile_, steps) -> float:
    torch.manual_seed(0)
    backbone = build_backbone(model_cfg, in_ch, size)
    model = Classifier(backbone, build_head(head, backbone.out_features, classes, False)).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    train_model = torch.compile(model) if compile_ else model
    images = torch.randint(0, 256, (steps * batch, in_ch, size, size), dtype=torch.uint8)
    targets = torch.randint(0, classes, (steps * batch,))
    place = Placement(device, channels_last=channels_last)
    loader = DeviceLoader(images, targets, batch, train=True, mean=[0.5] * in_ch, std=[0.25] * in_ch, place=place,
                          crop_padding=4, flip=True)
    warm = DeviceLoader(images[: 3 * batch], targets[: 3 * batch], batch, train=True, mean=[0.5] * in_ch,
                        std=[0.25] * in_ch, place=place, crop_padding=4, flip=True)
    train_one_epoch(train_model, model.head, warm, opt, scaler, amp, 0, False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    train_one_epoch(train_model, model.head, loader, opt, scaler, amp, 1, False)  # ends with a device sync
    return steps * batch / (time.perf_counter() - start)


# --------------------------------------------------------------------------- JPEG pipeline


def write_jpegs(folder: Path, n: int, size: tuple[int, int] = (640, 480), seed: int = 0) -> list[Path]:
    """n textured 640x480 JPEGs (quality 90, ~150 KB like COCO's) in ``folder``."""
    from PIL import Image

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    paths = []
    for k in range(n):
        rng = np.random.default_rng(seed + k)
        base = np.stack([(xx * rng.uniform(0.1, 0.5) + yy * rng.uniform(0.1, 0.5) + rng.uniform(0, 255)) % 256
                         for _ in range(3)], -1)
        img = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{k:05d}.jpg"
        Image.fromarray(img).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def _legacy_rgb(path) -> torch.Tensor:
    """The decode gsm used before: PIL, converted to RGB, through numpy."""
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()


def coco_pipelines(size: int = 448) -> dict[str, tuple]:
    """name -> (decode(path), transform): the COCO recipe's train/test pipelines, before and after."""
    from torchvision.transforms import v2

    from gsm.data.files import load_rgb
    from gsm.data.transforms import IMAGENET_MEAN, IMAGENET_STD, MultiScaleCrop, eval_transform, multilabel_train
    from gsm.data.transforms import multiscale_side

    big = multiscale_side(size)
    old_finish = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))]
    return {
        "train before": (_legacy_rgb, v2.Compose([v2.Resize((big, big), antialias=True), MultiScaleCrop(size),
                                                  v2.RandomHorizontalFlip(), *old_finish])),
        "train after": (lambda p: load_rgb(p, big), multilabel_train(size)),
        "test before": (_legacy_rgb, v2.Compose([v2.Resize((size, size), antialias=True), *old_finish])),
        "test after": (lambda p: load_rgb(p, size), eval_transform(size)),
    }


def per_worker_rates(paths: list[Path], size: int = 448, rounds: int = 3) -> dict[str, float]:
    """Images/s of one worker (one process, one torch thread) for each pipeline of :func:`coco_pipelines`:
    the best of ``rounds`` passes, the pipelines interleaved so that a busy machine slows all of them alike."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # what a DataLoader worker runs with
    try:
        pipes = coco_pipelines(size)
        rates = dict.fromkeys(pipes, 0.0)
        for name, (decode, tf) in pipes.items():
            tf(decode(paths[0]))  # warm-up
        for _ in range(rounds):
            for name, (decode, tf) in pipes.items():
                start = time.perf_counter()
                for p in paths:
                    tf(decode(p))
                rates[name] = max(rates[name], len(paths) / (time.perf_counter() - start))
        return rates
    finally:
        torch.set_num_threads(before)


def dataloader_rate(paths: list[Path], workers: int, size: int = 448, batch: int = 16) -> float:
    """Images/s of a real DataLoader (gsm's ImageFiles, the COCO train pipeline) with ``workers`` workers."""
    from torch.utils.data import DataLoader

    from gsm.data.files import ImageFiles
    from gsm.data.transforms import multilabel_train, multiscale_side

    ds = ImageFiles(paths, torch.zeros(len(paths), 80), multilabel_train(size), multiscale_side(size))
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, persistent_workers=workers > 0)
    for _ in loader:  # warm-up epoch: workers start
        break
    start = time.perf_counter()
    seen = sum(x.shape[0] for x, _ in loader)
    return seen / (time.perf_counter() - start)


def loader_section(images: int, workers: list[int]) -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"JPEG pipeline, COCO recipe (448 px), {images} JPEGs of 640x480; {cpus} usable cores; "
          f"{platform.processor() or platform.machine()}\n")
    with tempfile.TemporaryDirectory(prefix="gsm-bench-jpeg-") as tmp:
        paths = write_jpegs(Path(tmp), images)
        rates = per_worker_rates(paths)
        print("| pipeline | images/s per worker | after / before |")
        print("|---|---:|---:|")
        for split in ("train", "test"):
            b, a = rates[f"{split} before"], rates[f"{split} after"]
            print(f"| {split} before (PIL decode, ToDtype + Normalize) | {b:,.1f} | |")
            print(f"| {split} after (decode_jpeg / draft, fused normalise) | {a:,.1f} | {a / b:.2f}x |", flush=True)
        if workers:
            print("\n| DataLoader workers | train images/s |")
            print("|---:|---:|")
            for w in workers:
                print(f"| {w} | {dataloader_rate(paths, w):,.1f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--loader", action="store_true", help="benchmark the JPEG pipeline instead of training")
    p.add_argument("--images", type=int, default=64, help="--loader: JPEGs to generate and decode")
    p.add_argument("--workers", default="", help="--loader: also time a DataLoader with these worker counts, e.g. 0,2")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default: 10 cpu, 50 gpu)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--heads", default=",".join(HEADS))
    args = p.parse_args()
    if args.loader:
        loader_section(args.images, [int(w) for w in args.workers.split(",") if w.strip()])
        return
    device = torch.device(args.device)
    amp = torch.bfloat16 if device.type == "cuda" else None
    steps = args.steps or (50 if device.type == "cuda" else 10)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; amp: {amp}; compile: {args.compile}; {steps} timed steps\n")
    print("| model | batch | input | head | train images/s |")
    print("|---|---:|---:|---|---:|")
    for label, cfg, in_ch, size, classes, batch in PRESETS[args.preset]:
        for head in args.heads.split(","):
            ips = bench(cfg, in_ch, size, classes, batch, head, device, amp, args.compile, steps)
            print(f"| {label} | {batch} | {size} | {head} | {ips:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
