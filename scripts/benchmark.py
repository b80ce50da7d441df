"""Training throughput of gsm's hot loop (images/s), per backbone and head.

    python scripts/benchmark.py --preset cpu            # what the README's CPU numbers come from
    python scripts/benchmark.py --preset gpu            # on a CUDA machine (bf16 AMP, channels_last)
    python scripts/benchmark.py --preset gpu --compile  # with torch.compile

Data are synthetic uint8 images held on the device and fed through gsm's
DeviceLoader (batched crop/flip/normalise on the device) and the trainer's own
``train_one_epoch``; only the timed epoch counts (a warm-up epoch runs first).
Prints one markdown row per configuration.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from gsm.data.loaders import DeviceLoader
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
    loader = DeviceLoader(images, targets, batch, train=True, mean=[0.5] * in_ch, std=[0.25] * in_ch, device=device,
                          crop_padding=4, flip=True, channels_last=channels_last)
    warm = DeviceLoader(images[: 3 * batch], targets[: 3 * batch], batch, train=True, mean=[0.5] * in_ch,
                        std=[0.25] * in_ch, device=device, crop_padding=4, flip=True, channels_last=channels_last)
    train_one_epoch(train_model, model.head, warm, opt, scaler, amp, 0, False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    train_one_epoch(train_model, model.head, loader, opt, scaler, amp, 1, False)  # ends with a device sync
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default: 10 cpu, 50 gpu)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--heads", default=",".join(HEADS))
    args = p.parse_args()
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
