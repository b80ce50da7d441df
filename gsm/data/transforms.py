"""Image pipelines of the JPEG datasets (torchvision transforms v2 on uint8 tensors).

One place for the normalisation constants and the train/test pipelines
(docs/datasets.md):

* multi-label (COCO, NUS-WIDE), train: resize to ``image_size * 8/7`` square
  (512 for 448), multi-scale crop (:class:`MultiScaleCrop`, the TSN/ML-GCN
  augmentation: crop side = (1, .875, .75, .66, .5) x the short side, aspect
  distortion of at most two scale steps, one of 13 fixed positions), resized
  to ``image_size``, horizontal flip; or ``train_crop: random_resized``
  (torchvision ``RandomResizedCrop`` with its default scale/ratio) + flip;
* test: resize to ``image_size`` x ``image_size``;
* Tiny ImageNet above 64 px, train: resize, random crop with zero padding, flip;
* then scale to [0, 1] and normalise with the ImageNet mean/std (the
  backbones are ImageNet-pretrained), fused into one multiply-add
  (:class:`ScaleNormalize`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TRAIN_CROPS = ("multiscale", "random_resized")


class MultiScaleCrop(nn.Module):
    """TSN's multi-scale crop (Wang et al. 2016), as ML-GCN and WILDCAT train multi-label COCO models.

    Crop width and height are each a scale of the short side (snapped to
    ``size`` when within 3 px), with at most ``max_distort`` scale steps
    between them; the crop sits at one of 13 fixed positions (corners, centre,
    edge midpoints, quarter points) and is resized to ``size`` x ``size``.
    Randomness comes from torch's generator, so DataLoader worker seeding
    makes it reproducible.
    """

    def __init__(self, size: int, scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66, 0.5), max_distort: int = 2) -> None:
        super().__init__()
        self.size, self.scales, self.max_distort = int(size), tuple(scales), int(max_distort)

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
        return TF.resized_crop(img, top, left, ch, cw, [self.size, self.size], antialias=True)

    def extra_repr(self) -> str:
        return f"size={self.size}, scales={self.scales}, max_distort={self.max_distort}"


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


def multiscale_side(image_size: int) -> int:
    """The square side the multi-scale crop's input is resized to: image_size * 8/7 (448 -> 512, as ML-GCN)."""
    return round(int(image_size) * 8 / 7)


def _finish(mean: Sequence[float], std: Sequence[float]) -> list[nn.Module]:
    return [ScaleNormalize(mean, std)]


def multilabel_train(image_size: int, crop: str = "multiscale", flip: bool = True,
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    s = int(image_size)
    if crop == "multiscale":
        big = multiscale_side(s)
        steps: list[nn.Module] = [v2.Resize((big, big), antialias=True), MultiScaleCrop(s)]
    elif crop == "random_resized":
        steps = [v2.RandomResizedCrop(s, antialias=True)]
    else:
        raise ValueError(f"unknown crop {crop!r}; valid: {', '.join(TRAIN_CROPS)}")
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _finish(mean, std))


def pad_crop_train(image_size: int, padding: int, flip: bool = True,
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """Resize to image_size, random crop with zero padding, flip (Tiny ImageNet above 64 px)."""
    s = int(image_size)
    steps: list[nn.Module] = [v2.Resize((s, s), antialias=True)]
    if padding > 0:
        steps.append(v2.RandomCrop(s, padding=int(padding)))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _finish(mean, std))


def eval_transform(image_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    s = int(image_size)
    return v2.Compose([v2.Resize((s, s), antialias=True), *_finish(mean, std)])
