"""Image pipelines of the JPEG datasets (torchvision transforms v2 on uint8 tensors).

One place for the normalisation constants and the train/test pipelines
(docs/datasets.md):

* multi-label (COCO, NUS-WIDE), train (``dataset.train_crop``): resize to
  ``image_size * 8/7`` square (512 for 448), multi-scale crop
  (:class:`MultiScaleCrop`, the TSN/ML-GCN augmentation: crop side = (1, .875,
  .75, .66, .5) x the short side, aspect distortion of at most two scale steps,
  one of 13 fixed positions), resized to ``image_size`` (``multiscale``); or
  torchvision ``RandomResizedCrop`` with its default scale/ratio
  (``random_resized``); or the whole image resized to ``image_size`` x
  ``image_size``, aspect not kept (``resize``: the authors' ``t.ScaleWH``,
  datasets/coco.lua:86, nuswideclean.lua:95); then horizontal flip;
* test: resize to ``image_size`` x ``image_size`` (the release's test pipeline
  too: coco.lua:99-101, nuswideclean.lua:108);
* Tiny ImageNet above 64 px, train: resize, random crop with zero (or
  reflect) padding, flip (``train_crop: pad``); or the Inception crop of the
  release (``inception``: :class:`InceptionCrop`, Torch7 ``t.RandomSizedCrop``,
  tinyimagenet.lua:87), flip;
* optional photometric noise of the release (coco.lua:87-92,
  nuswideclean.lua:96-101, tinyimagenet.lua:88-93): :class:`ColorJitter`
  (``dataset.color_jitter``) then :class:`Lighting` (``dataset.lighting``), on
  the [0, 1] float image before normalisation;
* then scale to [0, 1] and normalise with the ImageNet mean/std (the
  backbones are ImageNet-pretrained), fused into one multiply-add
  (:class:`ScaleNormalize`) when no photometric noise is on.

Every resize uses ``dataset.interpolation`` (bilinear, the default, or bicubic:
Torch7 ``image.scale`` in the release's ``t.ScaleWH``/``t.Scale``/
``t.RandomSizedCrop``, transforms.lua:37-58, 163), antialiased. Randomness comes
from torch's default generator, which the DataLoader seeds per worker from
the loader's (seed, epoch, rank) generator (:class:`~gsm.data.loaders.FileLoader`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from gsm.errors import ConfigError
from gsm.values import INTERPOLATIONS, PAD_MODES, TRAIN_CROPS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# AlexNet's PCA of ImageNet RGB pixels, as the release gives it (datasets/coco.lua:73-80, nuswideclean.lua:83-90,
# tinyimagenet.lua:75-82): eigenvalues and eigenvectors (one per column).
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # transforms.lua:220

INTERPOLATION_MODES = dict(zip(INTERPOLATIONS, (v2.InterpolationMode.BILINEAR, v2.InterpolationMode.BICUBIC)))
# brightness, contrast, saturation: the operations of Torch7's ColorJitter, in this index order
JITTER_OPS = ("brightness", "contrast", "saturation")


def _mode(interpolation: str) -> v2.InterpolationMode:
    if interpolation not in INTERPOLATION_MODES:
        raise ValueError(f"unknown interpolation {interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")
    return INTERPOLATION_MODES[interpolation]


class MultiScaleCrop(nn.Module):
    """TSN's multi-scale crop (Wang et al. 2016), as ML-GCN and WILDCAT train multi-label COCO models.

    Crop width and height are each a scale of the short side (snapped to
    ``size`` when within 3 px), with at most ``max_distort`` scale steps
    between them; the crop sits at one of 13 fixed positions (corners, centre,
    edge midpoints, quarter points) and is resized to ``size`` x ``size``.
    Randomness comes from torch's generator, so DataLoader worker seeding
    makes it reproducible.
    """

    def __init__(self, size: int, scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66, 0.5), max_distort: int = 2,
                 interpolation: str = "bilinear") -> None:
        super().__init__()
        self.size, self.scales, self.max_distort = int(size), tuple(scales), int(max_distort)
        self.interpolation = _mode(interpolation)

    @staticmethod
    def offsets(w: int, h: int, cw: int, ch: int) -> list[tuple[int, int]]:
        ws, hs = (w - cw) // 4, (h - ch) // 4
        grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
        return [(i * ws, j * hs) for i, j in grid]

    def forward(self, img: Tensor) -> Tensor:
        h, w = img.shape[-2:]
        base = min(h, w)
        sides = [int(base * s) for s in self.scales]
        snap = [self.size if abs(x - self.size) < 3 else x for x in sides]
        pairs = [(cw, ch) for i, ch in enumerate(snap) for j, cw in enumerate(snap) if abs(i - j) <= self.max_distort]
        cw, ch = pairs[int(torch.randint(len(pairs), ()))]
        cw, ch = max(1, min(cw, w)), max(1, min(ch, h))
        offs = self.offsets(w, h, cw, ch)
        left, top = offs[int(torch.randint(len(offs), ()))]
        return TF.resized_crop(img, top, left, ch, cw, [self.size, self.size], interpolation=self.interpolation,
                               antialias=True)

    def extra_repr(self) -> str:
        return f"size={self.size}, scales={self.scales}, max_distort={self.max_distort}"


# --------------------------------------------------------------------------- the release's Inception crop


def round_half_up(x: float) -> int:
    """C ``round`` of a non-negative number (Torch7's ``torch.round``): halves go up, unlike Python's ``round``."""
    whole = math.floor(x)
    return int(whole) + (1 if x - whole >= 0.5 else 0)


def inception_box(height: int, width: int, uniform: Callable[[float, float], float],
                  randint: Callable[[int, int], int], attempts: int = 10) -> tuple[int, int, int, int] | None:
    """(top, left, h, w) of Torch7's ``t.RandomSizedCrop`` (datasets/transforms.lua:138-171), or None for its fallback.

    Per attempt (at most 10): area fraction U(0.08, 1), aspect ratio U(3/4, 4/3),
    ``w, h = round(sqrt(area * ar)), round(sqrt(area / ar))``, swapped when U(0, 1) < 0.5;
    if the crop fits, its offsets are uniform integers (top first). ``uniform(a, b)`` and
    ``randint(lo, hi)`` (inclusive) are the draws, so a test can drive them.
    """
    area = height * width
    for _ in range(attempts):
        target = uniform(0.08, 1.0) * area
        ratio = uniform(3 / 4, 4 / 3)
        w = round_half_up(math.sqrt(target * ratio))
        h = round_half_up(math.sqrt(target / ratio))
        if uniform(0.0, 1.0) < 0.5:
            w, h = h, w
        if 1 <= h <= height and 1 <= w <= width:  # (a 0-pixel side can only occur on images under 3x3 pixels)
            top = randint(0, height - h)
            left = randint(0, width - w)
            return top, left, h, w
    return None


def scale_center_crop(img: Tensor, size: int, interpolation: str = "bicubic") -> Tensor:
    """Torch7 ``t.CenterCrop(size)(t.Scale(size)(img))`` (transforms.lua:37-50, 61-67): the shorter side resized
    to ``size`` (the other to ``floor(long / short * size)``, as ``image.scale`` truncates), then the centred
    ``size`` x ``size`` patch at offset ``ceil((side - size) / 2)``."""
    h, w = img.shape[-2:]
    if not ((w <= h and w == size) or (h <= w and h == size)):
        new_h, new_w = (int(h / w * size), size) if w < h else (size, int(w / h * size))
        img = TF.resize(img, [new_h, new_w], interpolation=_mode(interpolation), antialias=True)
        h, w = new_h, new_w
    top, left = math.ceil((h - size) / 2), math.ceil((w - size) / 2)
    return TF.crop(img, top, left, size, size)


def _uniform(a: float, b: float) -> float:
    return a + (b - a) * float(torch.rand((), dtype=torch.float64))


def _randint(lo: int, hi: int) -> int:
    return int(torch.randint(lo, hi + 1, ()))


class InceptionCrop(nn.Module):
    """Torch7's ``t.RandomSizedCrop(size)`` (transforms.lua:138-171; the release's Tiny ImageNet train crop,
    tinyimagenet.lua:87): :func:`inception_box`, the crop resized to ``size`` x ``size``; after 10 failed
    attempts :func:`scale_center_crop`. Draws come from torch's default generator (DataLoader worker seeding)."""

    def __init__(self, size: int, interpolation: str = "bicubic") -> None:
        super().__init__()
        self.size, self.interpolation = int(size), interpolation
        _mode(interpolation)

    def forward(self, img: Tensor) -> Tensor:
        box = inception_box(img.shape[-2], img.shape[-1], _uniform, _randint)
        if box is None:
            return scale_center_crop(img, self.size, self.interpolation)
        top, left, h, w = box
        return TF.resized_crop(img, top, left, h, w, [self.size, self.size], interpolation=_mode(self.interpolation),
                               antialias=True)

    def extra_repr(self) -> str:
        return f"size={self.size}, interpolation={self.interpolation}"


# --------------------------------------------------------------------------- the release's photometric noise


def color_jitter(img: Tensor, order: Sequence[int], alphas: Sequence[float]) -> Tensor:
    """Torch7's ``t.ColorJitter`` for given draws (transforms.lua:213-298) on a float (3, H, W) image in [0, 1].

    ``order``: a permutation of (0, 1, 2) = (brightness, contrast, saturation), applied in that order;
    ``alphas[op]``: that operation's blend factor (``1 + U(-v, v)``). Each operation is
    ``img * alpha + (1 - alpha) * other`` with other = 0 (brightness), the mean of the grayscale image
    (contrast) or the grayscale image (saturation); grayscale = 0.299 R + 0.587 G + 0.114 B. No clamping
    (Torch7 does not clamp; torchvision's ColorJitter does, and also jitters hue).
    """
    weights = img.new_tensor(GRAY_WEIGHTS).view(3, 1, 1)
    for op in order:
        alpha = float(alphas[op])
        if op == 0:
            img = img * alpha
        else:
            gray = (img * weights).sum(0, keepdim=True)
            other = gray.mean() if op == 1 else gray
            img = img * alpha + (1.0 - alpha) * other
    return img


def lighting(img: Tensor, alpha: Sequence[float]) -> Tensor:
    """AlexNet PCA lighting noise for given draws (Torch7 ``t.Lighting``, transforms.lua:192-211): adds
    ``rgb[i] = sum_j eigvec[i, j] * alpha[j] * eigval[j]`` to channel i of a float (3, H, W) image."""
    vec = torch.tensor(IMAGENET_EIGVEC, dtype=torch.float64)
    val = torch.tensor(IMAGENET_EIGVAL, dtype=torch.float64)
    rgb = (vec * torch.as_tensor(alpha, dtype=torch.float64).view(1, 3) * val.view(1, 3)).sum(1)
    return img + rgb.to(img.dtype).view(3, 1, 1)


class ColorJitter(nn.Module):
    """:func:`color_jitter` with the release's draws (transforms.lua:266-275, 233/246/260): a random order
    (randperm) and ``alpha = 1 + U(-strength, strength)`` per operation, per image."""

    def __init__(self, strength: float) -> None:
        super().__init__()
        self.strength = float(strength)

    def forward(self, img: Tensor) -> Tensor:
        order = torch.randperm(3).tolist()
        alphas = (1.0 + (2.0 * torch.rand(3, dtype=torch.float64) - 1.0) * self.strength).tolist()
        return color_jitter(img, order, alphas)

    def extra_repr(self) -> str:
        return f"brightness=contrast=saturation={self.strength}"


class Lighting(nn.Module):
    """:func:`lighting` with ``alpha ~ N(0, alphastd)`` per eigenvector, per image (transforms.lua:198)."""

    def __init__(self, alphastd: float) -> None:
        super().__init__()
        self.alphastd = float(alphastd)

    def forward(self, img: Tensor) -> Tensor:
        return lighting(img, (torch.randn(3, dtype=torch.float64) * self.alphastd).tolist())

    def extra_repr(self) -> str:
        return f"alphastd={self.alphastd}"


class ScaleNormalize(nn.Module):
    """uint8 [0, 255] -> float32 ``(x / 255 - mean) / std`` in one multiply-add per pixel.

    The same values as ``ToDtype(float32, scale=True)`` + ``Normalize(mean, std)`` up to float rounding
    (about 1e-7), with one pass over the image instead of four.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        std_t = torch.tensor(std, dtype=torch.float64)
        self.register_buffer("scale", (1.0 / (255.0 * std_t)).float().view(-1, 1, 1), persistent=False)
        self.register_buffer("shift", (-torch.tensor(mean, dtype=torch.float64) / std_t).float().view(-1, 1, 1),
                             persistent=False)

    def forward(self, img: Tensor) -> Tensor:
        if img.dtype != torch.uint8:
            raise TypeError(f"ScaleNormalize expects a uint8 image (got {img.dtype})")
        return torch.addcmul(self.shift, img.to(torch.float32), self.scale)


# --------------------------------------------------------------------------- pipelines


def multiscale_side(image_size: int) -> int:
    """The square side the multi-scale crop's input is resized to: image_size * 8/7 (448 -> 512, as ML-GCN)."""
    return round(int(image_size) * 8 / 7)


def _finish(mean: Sequence[float], std: Sequence[float], color_jitter: float = 0.0,
            lighting: float = 0.0) -> list[nn.Module]:
    """uint8 -> normalised float32; with photometric noise, on the [0, 1] image before normalising, as the
    release orders them: ColorJitter, Lighting, ColorNormalize (coco.lua:87-93). The release flips last
    (coco.lua:94); gsm flips the uint8 image before this, which gives the same images (both noises are
    per-pixel or whole-image operations, which commute with a flip)."""
    if not color_jitter and not lighting:
        return [ScaleNormalize(mean, std)]
    steps: list[nn.Module] = [v2.ToDtype(torch.float32, scale=True)]
    if color_jitter:
        steps.append(ColorJitter(color_jitter))
    if lighting:
        steps.append(Lighting(lighting))
    return steps + [v2.Normalize(list(mean), list(std))]


def multilabel_train(image_size: int, crop: str = "multiscale", flip: bool = True,
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, *,
                     color_jitter: float = 0.0, lighting: float = 0.0,
                     interpolation: str = "bilinear") -> v2.Compose:
    s, mode = int(image_size), _mode(interpolation)
    if crop == "multiscale":
        big = multiscale_side(s)
        steps: list[nn.Module] = [v2.Resize((big, big), interpolation=mode, antialias=True),
                                  MultiScaleCrop(s, interpolation=interpolation)]
    elif crop == "random_resized":
        steps = [v2.RandomResizedCrop(s, interpolation=mode, antialias=True)]
    elif crop == "resize":  # t.ScaleWH(imgSize): transforms.lua:53-58, coco.lua:86
        steps = [v2.Resize((s, s), interpolation=mode, antialias=True)]
    else:
        raise ValueError(f"unknown crop {crop!r}; valid: {', '.join(TRAIN_CROPS)}")
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _finish(mean, std, color_jitter, lighting))


def pad_crop_train(image_size: int, padding: int, flip: bool = True,
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, *,
                   pad_mode: str = "zeros", color_jitter: float = 0.0, lighting: float = 0.0,
                   interpolation: str = "bilinear") -> v2.Compose:
    """Resize to image_size, random crop with zero (or reflect) padding, flip (Tiny ImageNet above 64 px)."""
    s = int(image_size)
    steps: list[nn.Module] = [v2.Resize((s, s), interpolation=_mode(interpolation), antialias=True)]
    if padding > 0:
        if pad_mode not in PAD_MODES:
            raise ValueError(f"unknown pad_mode {pad_mode!r}; valid: {', '.join(PAD_MODES)}")
        mode = "constant" if pad_mode == "zeros" else "reflect"
        steps.append(v2.RandomCrop(s, padding=int(padding), padding_mode=mode))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _finish(mean, std, color_jitter, lighting))


def inception_train(image_size: int, flip: bool = True, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD, *, color_jitter: float = 0.0, lighting: float = 0.0,
                    interpolation: str = "bicubic") -> v2.Compose:
    """The release's Tiny ImageNet train pipeline (tinyimagenet.lua:86-95): Inception crop, flip, noise."""
    steps: list[nn.Module] = [InceptionCrop(image_size, interpolation)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _finish(mean, std, color_jitter, lighting))


def eval_transform(image_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD, *, interpolation: str = "bilinear") -> v2.Compose:
    s = int(image_size)
    return v2.Compose([v2.Resize((s, s), interpolation=_mode(interpolation), antialias=True),
                       *_finish(mean, std)])


# --------------------------------------------------------------------------- config keys
