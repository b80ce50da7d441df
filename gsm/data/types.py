"""The data types every dataset module returns (kept apart from ``gsm.data`` so that the dataset
modules, which ``gsm.data`` loads lazily, import them without an import cycle)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset


@dataclass
class TensorSplit:
    images: Tensor  # uint8 (N, C, H, W)
    targets: Tensor  # (N,) long, or (N, m) float 0/1 for multi-label

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class FileSplit:
    dataset: Dataset  # yields (float image tensor, target), already normalised
    targets: Tensor  # all targets, for counts and analysis
    eval_dataset: Dataset | None = None  # the same images with test-time transforms (train split only)

    def __len__(self) -> int:
        return len(self.targets)


Split = TensorSplit | FileSplit


@dataclass
class DatasetSplits:
    name: str
    num_classes: int
    multilabel: bool
    class_names: list[str]
    train: Split
    test: Split
    in_channels: int
    image_size: int
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    crop_padding: int = 0
    flip: bool = False
    notes: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)  # set by gsm.data.load_splits
