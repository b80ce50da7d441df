"""The data types every dataset module declares and returns (kept apart from ``gsm.data`` so that the
dataset modules, which ``gsm.data`` loads lazily, import them without an import cycle)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from torch import Tensor
from torch.utils.data import Dataset

from gsm.errors import ConfigError
from gsm.settings import DATASET


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


class FileTransforms(NamedTuple):
    """The per-image transforms of a set read from image files, as its loader builds them from the dataset config
    (the loader and the estimate's decode probe both take them from :attr:`DatasetInfo.file_transforms`)."""

    train: Callable[[Any], Tensor]
    train_min_side: int | None  # ImageFiles may decode the JPEG reduced to this side (None: full size)
    test: Callable[[Any], Tensor]
    test_min_side: int | None


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
    root: str | None = None  # dataset.root as an absolute path (None: the set needs none); set by gsm.data.load_splits


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of gsm needs to know about a dataset without reading its files: the one place for these
    facts. Each dataset module declares ``DATASET_INFO`` (a tuple of these, one per ``dataset.name`` it
    loads); :data:`gsm.data.DATASETS` collects them. The config checks, the estimate, the tables, the
    figures and ``gsm-tables status`` read them there."""

    name: str  # dataset.name: gsm/configs/dataset/<name>.yaml
    display_name: str  # how tables, figures and status name it ("CIFAR-10")
    load: Callable[..., DatasetSplits]  # load(dataset_cfg, *, write=True): the splits (gsm.data.load_splits)
    in_channels: int
    num_classes: int  # of the official files (the loader reports what the files at hand hold)
    multilabel: bool
    train_size: int  # images of the official train split (NUS-WIDE: listed, an upper bound: dead links drop)
    test_size: int  # images of the official test split (Tiny ImageNet: val; MS COCO: annotated val2014)
    default_image_size: int  # dataset.image_size when null: the side of the loader's square inputs
    min_image_size: int = 8  # smallest dataset.image_size the loader's pipeline accepts
    files_above: int | None = None  # image_size above which the splits are read from image files by DataLoader
    #                                 workers (0: always); None: always uint8 tensors augmented on the device
    file_size: tuple[int, int] | None = None  # usual (width, height) of one image file (the estimate's decode probe)
    padding_at: int | None = None  # dataset.crop_padding is in pixels at this image size and scales with
    #                                image_size; None: in pixels at image_size
    pad_modes: tuple[str, ...] = ("zeros",)  # dataset.pad_mode values its random crop implements
    file_transforms: Callable[[Any, DatasetInfo], FileTransforms] | None = None  # (dataset_cfg, info): the
    #                transforms of a set read from files (:class:`FileTransforms`); None: never read from files

    def image_size(self, value: Any) -> int:
        """``dataset.image_size`` for this dataset: null gives :attr:`default_image_size`, else an integer of at
        least :attr:`min_image_size` (the key's rule, :data:`gsm.settings.DATASET`, then this dataset's minimum;
        the config check and the loader give the same message)."""
        size = DATASET.check("image_size", value)
        if size is None:
            return self.default_image_size
        if size < self.min_image_size:
            raise ConfigError(f"dataset.image_size must be an integer >= {self.min_image_size} for dataset={self.name} "
                              f"(got {size})")
        return size

    def reads_files(self, image_size: int) -> bool:
        """Whether the splits at ``image_size`` are image files read by DataLoader workers (else tensors)."""
        return self.files_above is not None and image_size > self.files_above

    def crop_padding(self, padding: int, image_size: int) -> int:
        """The random crop's padding in pixels at ``image_size`` for ``dataset.crop_padding=padding``."""
        return round(padding * image_size / self.padding_at) if self.padding_at else padding
