"""Helpers shared by the on-disk datasets (CIFAR, Tiny ImageNet, MS COCO, NUS-WIDE).

* path checks whose :class:`~gsm.errors.DataError` names the path, how to get
  the data and the layout gsm expects;
* text files read with universal newlines (CRLF-safe), blank lines checked;
* :func:`load_rgb`: decode one image file to uint8 RGB (grayscale, palette and
  CMYK files become 3 channels); JPEGs through libjpeg-turbo straight into a
  tensor (``torchvision.io.decode_jpeg``), optionally at a reduced size in the
  DCT domain (PIL ``draft``) when the pipeline shrinks them by 2x or more
  anyway; a corrupt or truncated file is a DataError naming it;
* :class:`ImageFiles`: the torch ``Dataset`` DataLoader workers read;
* :func:`decode_all`: decode a list of small images into one uint8 tensor
  (threads), with an optional on-disk cache keyed by the file list;
* :func:`find_missing` / :func:`report_missing`: ``dataset.on_missing``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from gsm.data.types import DatasetInfo, DatasetSplits, FileSplit, FileTransforms
from gsm.settings import DATASET
from gsm.errors import ConfigError, DataError

log = logging.getLogger("gsm.data")
# torchvision >= 0.29 deprecates its image codecs in favour of TorchCodec; they remain the fastest JPEG decode
# into a tensor that torchvision ships, and PIL takes over (same pixels) where they are missing or fail.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)

CACHE_VERSION = 1


# --------------------------------------------------------------------------- config values


def augment_options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``dataset.color_jitter``, ``dataset.lighting`` (>= 0; 0 = off) and ``dataset.interpolation``, checked."""
    return {
        "color_jitter": DATASET.check("color_jitter", cfg.get("color_jitter", 0.0)),
        "lighting": DATASET.check("lighting", cfg.get("lighting", 0.0)),
        "interpolation": DATASET.check("interpolation", cfg.get("interpolation", "bilinear")),
    }


def setting(cfg: Mapping[str, Any], key: str, default: str, valid: Sequence[str], where: str = "") -> str:
    """``dataset.<key>`` (default when absent or null) if it is one of ``valid``, else one ConfigError naming the
    key, the values valid ``where`` (e.g. "for dataset=coco") and the value given."""
    value = cfg.get(key)
    value = default if value is None else value
    if value not in valid:
        at = f" {where}" if where else ""
        raise ConfigError(f"dataset.{key} must be one of {', '.join(valid)}{at} (got {value!r})")
    return str(value)


def dataset_root(cfg: Mapping[str, Any], name: str, how_to_get: str, layout: str, holds: str) -> Path:
    """``dataset.root`` as an existing folder, or an error saying where to get the data. ``holds``: what the
    folder must hold, in a few words (the one-line error for a root that is a file)."""
    raw = cfg.get("root")
    if raw in (None, ""):
        raise ConfigError(f"dataset.root is not set: point it at the folder holding {name}.\n{how_to_get}\n{layout}")
    root = Path(str(raw)).expanduser()
    check_not_file(root, name, holds)
    if not root.is_dir():
        raise DataError(missing_message(name, root, root, how_to_get, layout))
    return root


def check_not_file(root: Path, name: str, holds: str) -> None:
    """One ConfigError line when ``dataset.root`` is a file (an archive, a list file): gsm reads a folder."""
    if root.is_file():
        raise ConfigError(f"dataset.root={root} is a file, not a folder: {name} reads the folder that holds {holds}")


def missing_message(name: str, root: Path, path: Path, how_to_get: str, layout: str) -> str:
    what = "folder" if path == root else "path"
    return (f"{name}: {what} {path} not found (dataset.root={root}).\n{how_to_get}\n"
            f"Expected layout under dataset.root:\n{layout}")


def require(path: Path, root: Path, name: str, how_to_get: str, layout: str, *, is_dir: bool = False) -> Path:
    ok = path.is_dir() if is_dir else path.is_file()
    if not ok and path.exists():  # there, but of the wrong kind: "not found" would mislead
        got = "a file" if path.is_file() else "a folder" if path.is_dir() else "a special file"
        raise DataError(f"{name}: {path} is {got}, not {'a folder' if is_dir else 'a file'} (dataset.root={root})")
    if not ok:
        raise DataError(missing_message(name, root, path, how_to_get, layout))
    return path


# --------------------------------------------------------------------------- text files


def read_lines(path: Path) -> list[str]:
    """Lines without line ends or surrounding whitespace (LF or CRLF); trailing blank lines dropped.

    A blank line in the middle would silently shift every later line of an
    aligned list or label file, so it is a DataError naming the line.
    """
    try:
        with open(path, encoding="utf-8", newline=None) as f:  # universal newlines: \r\n -> \n
            lines = [line.strip() for line in f.read().split("\n")]
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise DataError(f"cannot read {path} as text: {exc}") from None
    while lines and not lines[-1]:
        lines.pop()
    for i, line in enumerate(lines):
        if not line:
            raise DataError(f"{path}: line {i + 1} is blank (lines must align one to one with the image list)")
    return lines


# --------------------------------------------------------------------------- images


JPEG_MAGIC = b"\xff\xd8\xff"


def load_rgb(path: str | os.PathLike, min_size: int | None = None) -> Tensor:
    """Decode an image file fully to uint8 (3, H, W) RGB; DataError naming the file if it is unreadable.

    JPEGs go through ``torchvision.io.decode_jpeg`` (the same libjpeg-turbo decode as PIL, without PIL's
    image object and the numpy copies: about twice as fast). ``min_size``: the pipeline resizes the image
    to at least this many pixels per side next, so a JPEG at least twice that size is decoded at 1/2, 1/4
    or 1/8 scale in the DCT domain (PIL ``draft``), both sides staying >= ``min_size``.
    """
    if min_size is not None:
        reduced = _decode_reduced(path, int(min_size))
        if reduced is not None:
            return reduced
    try:
        with open(path, "rb") as fh:
            data = bytearray(fh.read())
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    decode_jpeg = jpeg_decoder() if data[:3] == JPEG_MAGIC else None
    if decode_jpeg is not None:
        try:
            return decode_jpeg(torch.frombuffer(data, dtype=torch.uint8))
        except RuntimeError:
            pass  # truncated or unusual JPEG: PIL decodes it or names the file in a DataError
    return _load_rgb_pil(path)


@functools.lru_cache(maxsize=1)
def jpeg_decoder() -> Callable[[Tensor], Tensor] | None:
    """torchvision's JPEG decode to an RGB uint8 tensor, None where torchvision lacks its image codecs. Imported on
    the first JPEG (importing torchvision takes seconds: a run on in-memory data never pays it)."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return None
    return functools.partial(decode_jpeg, mode=ImageReadMode.RGB)


def _load_rgb_pil(path: str | os.PathLike, min_size: int | None = None) -> Tensor:
    try:
        with Image.open(path) as im:
            if min_size is not None:
                im.draft("RGB", (min_size, min_size))
            arr = np.array(im.convert("RGB"))  # convert() forces the full decode: truncation shows here
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def _decode_reduced(path: str | os.PathLike, min_size: int) -> Tensor | None:
    """The JPEG decoded at a reduced scale if it is at least 2 x ``min_size`` on both sides, else None."""
    try:
        with Image.open(path) as im:  # reads the header only
            if im.format != "JPEG" or min(im.size) < 2 * min_size:
                return None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None  # the full decode path reports it
    return _load_rgb_pil(path, min_size)


def resize_uint8(images: Tensor, size: int) -> Tensor:
    """uint8 (N, C, h, w) or (C, h, w) -> size x size, bilinear (antialiased when shrinking)."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    batched = images.dim() == 4
    x = (images if batched else images[None]).float()
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = x.round().clamp(0, 255).to(torch.uint8)
    return x if batched else x[0]


class ImageFiles(Dataset):
    """(transform(decoded image), target) for a list of image files; read by DataLoader workers.

    ``min_size``: the smallest side the transform resizes to first (see :func:`load_rgb`); None decodes
    every image at full size (needed when a crop may take a small part of the image, e.g. RandomResizedCrop).
    """

    def __init__(self, paths: Sequence[str | os.PathLike], targets: Tensor, transform: Callable[[Tensor], Tensor],
                 min_size: int | None = None) -> None:
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} paths but {len(targets)} targets")
        # A numpy array of strings, not a list of str objects: forked workers then share it without copy-on-write.
        self.paths = np.asarray([str(p) for p in paths], dtype=str)
        self.targets = targets
        self.transform = transform
        self.min_size = min_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.transform(load_rgb(self.paths[i], self.min_size)), self.targets[i]


# --------------------------------------------------------------------------- decode to one tensor (+ cache)


def _decode_into(out: Tensor, paths: Sequence[Path], size: int, threads: int) -> None:
    def work(i: int) -> None:
        out[i] = resize_uint8(load_rgb(paths[i]), size)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:  # decoding runs outside the GIL
        for _ in pool.map(work, range(len(paths))):  # re-raises the first DataError (it names the file)
            pass


def file_list_key(paths: Sequence[Path], base: Path, extra: str = "") -> str:
    """sha1 of (relative path, size, mtime) of every file, plus ``extra``: any added/changed file changes it."""
    h = hashlib.sha1(f"gsm-cache-v{CACHE_VERSION}|{extra}\n".encode())
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise DataError(f"image file not found: {p}") from None
        h.update(f"{os.path.relpath(p, base)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def decode_all(
    paths: Sequence[Path], size: int, *, cache_file: Path | None = None, key: str = "", threads: int | None = None,
    write: bool = True,
) -> Tensor:
    """Decode every file to uint8 (N, 3, size, size). With ``cache_file``, reuse/write a decoded copy.

    The cache file stores ``key`` (see :func:`file_list_key`) and is used only
    if the key, dtype and shape all match; it is written to a temporary file
    and renamed, so an interrupted run or a concurrent process never leaves a
    half-written cache behind. An unreadable or stale cache is rebuilt; a
    cache folder we cannot write to only costs the decode next time (warning).
    ``write=False`` (a dry run) reads a valid cache but writes nothing, not even its folder.
    """
    n = len(paths)
    if cache_file is not None and cache_file.is_file():
        try:
            blob = torch.load(cache_file, map_location="cpu", weights_only=True, mmap=True)
            images = blob["images"]
            if blob.get("key") == key and images.dtype == torch.uint8 and tuple(images.shape) == (n, 3, size, size):
                log.info("decoded images from cache %s", cache_file)
                return images  # memory-mapped: a later os.replace of the file keeps this mapping valid
            log.info("cache %s is stale (the image files changed); decoding again", cache_file)
        except Exception as exc:  # noqa: BLE001 - any unreadable cache is rebuilt, never trusted
            log.warning("ignoring unreadable cache %s (%s: %s); decoding again", cache_file, type(exc).__name__, exc)
    if not write:
        cache_file = None
    if n > 1000:
        log.info("decoding %d images%s", n, f" (cached afterwards in {cache_file})" if cache_file else "")
    images = torch.empty((n, 3, size, size), dtype=torch.uint8)
    _decode_into(images, paths, size, threads or min(8, os.cpu_count() or 1))
    if cache_file is not None:
        tmp = cache_file.with_name(f".{cache_file.name}.{uuid.uuid4().hex}.tmp")
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"key": key, "images": images}, tmp)
            os.replace(tmp, cache_file)
        except OSError as exc:
            with contextlib.suppress(OSError):  # e.g. the cache folder is a file: there is no temp file to remove
                tmp.unlink(missing_ok=True)
            log.warning("could not write the decoded-image cache %s (%s); set dataset.cache_dir to a writable "
                        "folder or dataset.cache=false", cache_file, exc)
    return images


# --------------------------------------------------------------------------- missing files


def find_missing(paths: Sequence[Path]) -> list[bool]:
    """Which files are absent. Lists each parent folder once (fast for 10^5 files, also on network disks)."""
    listing: dict[Path, set[str]] = {}
    out = []
    for p in paths:
        parent = p.parent
        if parent not in listing:
            try:
                listing[parent] = set(os.listdir(parent))
            except (FileNotFoundError, NotADirectoryError):
                listing[parent] = set()
        out.append(p.name not in listing[parent])
    return out


def report_missing(name: str, missing: Mapping[str, tuple[list[Path], int]], on_missing: str, where: Path) -> None:
    """One warning (``skip``) or one DataError (``error``) for listed images whose file is absent.

    ``missing`` maps split -> (absent paths, number listed).
    """
    total = sum(len(m) for m, _ in missing.values())
    if not total:
        return
    first = next(m[0] for m, _ in missing.values() if m)
    counts = ", ".join(f"{len(m)} of {n} {split}" for split, (m, n) in missing.items())
    if on_missing == "error":
        raise DataError(f"{name}: {total} listed image file(s) are missing under {where} ({counts}), e.g. {first}. "
                        "Restore them, or set dataset.on_missing=skip to train without them.")
    log.warning("%s: skipped %d listed image(s) whose file is missing under %s (%s), e.g. %s "
                "(dataset.on_missing=skip)", name, total, where, counts, first)


# --------------------------------------------------------------------------- multi-label JPEG sets


def account_for_missing(name: str, missing: Mapping[str, tuple[list[Path], int]], on_missing: str, where: Path,
                        notes: dict[str, Any], dropped: str | None) -> None:
    """:func:`report_missing`, then the count of skipped images in ``notes`` and one log line for the images
    ``dataset.drop_unlabeled`` dropped (``dropped``: what the test split's dropped images are, e.g. "val images
    without annotations"; None: none were dropped)."""
    report_missing(name, missing, on_missing, where)
    notes["missing_skipped"] = sum(len(m) for m, _ in missing.values())
    if dropped:
        log.info("%s: dropped %d train / %d %s (dataset.drop_unlabeled=true)", name, notes["train_unlabeled_dropped"],
                 notes["test_unlabeled_dropped"], dropped)


def multilabel_file_splits(cfg: Mapping[str, Any], info: DatasetInfo, class_names: list[str],
                           train: tuple[Sequence[Path], Tensor], test: tuple[Sequence[Path], Tensor],
                           notes: dict[str, Any]) -> Any:
    """DatasetSplits of FileSplits with the multi-label pipelines of docs/datasets.md (COCO, NUS-WIDE)."""
    from gsm.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    tf = multilabel_transforms(cfg, info)
    train_split = FileSplit(ImageFiles(train[0], train[1], tf.train, tf.train_min_side), train[1],
                            ImageFiles(train[0], train[1], tf.test, tf.test_min_side))
    test_split = FileSplit(ImageFiles(test[0], test[1], tf.test, tf.test_min_side), test[1])
    size, flip = info.image_size(cfg.get("image_size")), DATASET.check("flip", cfg.get("flip", True))
    return DatasetSplits(
        name=info.name, num_classes=len(class_names), multilabel=True, class_names=class_names,
        train=train_split, test=test_split, in_channels=info.in_channels, image_size=size,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, flip=flip, notes=notes,
    )


def multilabel_transforms(cfg: Mapping[str, Any], info: DatasetInfo) -> FileTransforms:
    """The train and test transforms of a multi-label set (docs/datasets.md) for its dataset config."""
    # torchvision's transforms only where they are used: importing them costs seconds a tensor dataset never needs
    from gsm.data.transforms import TRAIN_CROPS, eval_transform, multilabel_train, multiscale_side

    size = info.image_size(cfg.get("image_size"))
    crop = setting(cfg, "train_crop", "multiscale", TRAIN_CROPS, f"for dataset={info.name}")
    opts = augment_options(cfg)
    # Reduced-size JPEG decoding where the first step shrinks the whole image anyway (never for random_resized).
    return FileTransforms(multilabel_train(size, crop, DATASET.check("flip", cfg.get("flip", True)), **opts),
                          {"multiscale": multiscale_side(size), "resize": size}.get(crop),
                          eval_transform(size, interpolation=opts["interpolation"]), size)
