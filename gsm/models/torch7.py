"""fb.resnet.torch's ImageNet ResNet-101 (``resnet-101.t7``, a Torch7 file) as gsm's ResNet-101 weights.

The authors' release fine-tunes Tables II–IV from this file (``-retrain …/pretrained/resnet-101.t7`` in
train_coco.sh, train_nuswide.sh, train_tinyimgnet.sh; README step 2), trained by fb.resnet.torch
(facebookarchive/fb.resnet.torch, pretrained/README.md: 22.44 % top-1 error, 1 crop). Its network is
models/resnet.lua: ``nn.Sequential{conv, BN, ReLU, max pool, layer1 … layer4, avg pool, view, Linear}``;
each layer a Sequential of bottlenecks ``Sequential{ConcatTable{Sequential{conv 1x1, BN, ReLU, conv 3x3
(the stride), BN, ReLU, conv 1x1, BN}, shortcut}, CAddTable, ReLU}`` with the shortcut ``Sequential{conv 1x1
(stride), BN}`` where the width changes and ``Identity`` elsewhere (shortcut type B). That is torchvision's
layout with the stride on the 3x3 convolution, so every tensor has a torchvision name:
:func:`state_dict_from_torch7` walks the file's module tree beside gsm's module tree and checks each
module's class, kernel, stride, padding and every tensor's shape, naming the first thing that differs.

Read with the ``torchfile`` package (plain data: tensors, numbers, strings and tables; nothing in the file
is executed). Conventions handled: a convolution's weight stored 2-D (``SpatialConvolutionMM``) is reshaped;
a non-zero convolution bias (cuDNN < 4 kept one) is folded into the next BatchNorm's running mean, which is
exact (BN(x + b) with mean μ is BN(x) with mean μ − b, and batch statistics remove a constant); a BatchNorm
saved before nn's version 2 stores ``running_std`` = 1/sqrt(var + eps), converted as nn's own
BatchNormalization:read does (var = running_std^-2 − eps). The ImageNet classifier (``nn.Linear`` 2048 →
1000) is skipped, as torchvision's ``fc``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gsm.errors import ConfigError

FILE_NAME = "resnet-101.t7"
URL = "http://torch7.s3-website-us-east-1.amazonaws.com/data/resnet-101.t7"
PAGE = "https://github.com/facebookarchive/fb.resnet.torch/tree/master/pretrained"
_TYPE_TORCH = 4  # Torch7's tag of a serialised torch class (File.lua); a saved model starts with it
_TAIL = ("SpatialAveragePooling", "View", "Reshape", "Linear", "Dropout")  # after layer4: no backbone tensors


def default_file() -> Path:
    """Where gsm looks for resnet-101.t7 without ``model.weights_path``: torch's hub checkpoint folder, beside
    torchvision's ImageNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FILE_NAME


def missing_file_message(path: Path, source: str) -> str:
    return (f"{source}: the authors' ImageNet weights {FILE_NAME} (fb.resnet.torch) are not at {path}. "
            f"Download {URL} (listed on {PAGE}) and put it at {default_file()}, or pass model.weights_path=<the "
            f"file>; model.weights=torchvision starts from torchvision's IMAGENET1K_V1 instead")


def is_torch7_file(path: Path) -> bool:
    """Whether ``path`` starts like a saved Torch7 object (a little-endian int32 tag 4)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return len(head) == 4 and int.from_bytes(head, "little") == _TYPE_TORCH


def read_torch7(path: Path, source: str) -> Any:
    """The file's object tree (torchfile's TorchObject / list / numpy arrays); one ConfigError when unreadable."""
    import torchfile

    if not path.is_file():
        raise ConfigError(missing_file_message(path, source))
    try:
        if not is_torch7_file(path):
            raise ConfigError(f"{source}: {path} is not a Torch7 file (a saved Torch7 model starts with the tag "
                              f"{_TYPE_TORCH}); a PyTorch state dict loads with model.weights=torchvision")
        return torchfile.load(str(path))
    except ConfigError:
        raise
    except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError, MemoryError, NotImplementedError,
            torchfile.T7ReaderException, struct.error) as exc:
        raise ConfigError(f"{source}: {path} cannot be read as a Torch7 file ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:120]})") from None


def state_dict_from_torch7(tree: Any, backbone: nn.Module, source: str) -> dict[str, Tensor]:
    """A state dict of ``backbone`` (torchvision's ResNet names: conv1, bn1, layer1 … layer4) from the Torch7
    object tree of fb.resnet.torch's model; every tensor of the backbone is set, and anything unexpected in the
    file (a module class, a kernel, stride or padding, a shape, a module too many or too few) is a ConfigError."""
    walk = _Walk(source)
    mods = walk.modules(tree, "model", "nn.Sequential")
    stem = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    if len(mods) < len(stem):
        raise walk.error("model", f"{len(mods)} modules, expected at least {len(stem)} (conv, BN, ReLU, max pool, "
                                  f"4 layers)")
    walk.conv(mods[0], "model.modules[1]", backbone.conv1, "conv1", mods[1])
    walk.bn(mods[1], "model.modules[2]", backbone.bn1, "bn1")
    walk.kind(mods[2], "model.modules[3]", "ReLU")
    walk.maxpool(mods[3], "model.modules[4]", backbone.maxpool)
    for i in range(4):
        name, where = f"layer{i + 1}", f"model.modules[{i + 5}]"
        ours = getattr(backbone, name)
        blocks = walk.modules(mods[4 + i], where, "Sequential")
        if len(blocks) != len(ours):
            raise walk.error(where, f"{len(blocks)} bottlenecks; gsm's {name} has {len(ours)}")
        for j, (block, mine) in enumerate(zip(blocks, ours)):
            walk.bottleneck(block, f"{where}.modules[{j + 1}]", mine, f"{name}.{j}")
    for k, tail in enumerate(mods[len(stem):]):
        walk.kind(tail, f"model.modules[{len(stem) + k + 1}]", *_TAIL)
    own = backbone.state_dict()
    for key, value in own.items():
        if key.endswith("num_batches_tracked"):
            walk.out[key] = value.clone()
    missing = [k for k in own if k not in walk.out]
    if missing:  # a backbone of another layout than the walk knows (e.g. a module added to gsm's ResNet)
        raise ConfigError(f"{source}: the Torch7 model sets no value for {len(missing)} tensors of gsm's backbone, "
                          f"e.g. {missing[0]}")
    return walk.out


class _Walk:
    """The walk of one file: its tensors by gsm name (``out``) and the errors, each naming the file's module."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.out: dict[str, Tensor] = {}
        self.folded: dict[int, np.ndarray] = {}  # id(a BN module of the file) -> the bias of the conv before it

    def error(self, where: str, what: str) -> ConfigError:
        return ConfigError(f"{self.source}: not fb.resnet.torch's ResNet layout: {where} has {what}")

    def kind(self, obj: Any, where: str, *suffixes: str) -> str:
        """The module's Torch7 class (e.g. ``cudnn.SpatialConvolution``), which must end with one of ``suffixes``."""
        typename = getattr(obj, "_typename", None)
        name = typename.decode("latin-1") if isinstance(typename, bytes) else None
        if name is None or not any(name.split(".")[-1] == s for s in suffixes):
            found = name or type(obj).__name__
            raise self.error(where, f"a {found}, expected {' or '.join(suffixes)}")
        return name

    def modules(self, obj: Any, where: str, suffix: str) -> list:
        self.kind(obj, where, suffix.split(".")[-1])
        mods = obj.modules
        if not isinstance(mods, list):
            raise self.error(where, "no list of modules")
        return mods

    def array(self, obj: Any, field: str, where: str, required: bool = True) -> np.ndarray | None:
        value = obj[field]
        if value is None or (isinstance(value, np.ndarray) and value.size == 0):
            if required:
                raise self.error(where, f"no {field}")
            return None
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise self.error(where, f"a {field} that is not a float tensor ({type(value).__name__})")
        return np.array(value, dtype=np.float32)  # a copy: torchfile's arrays are views into the file's storages

    def put(self, name: str, value: np.ndarray, ours: Tensor, where: str) -> None:
        if name == "conv1.weight" and value.ndim == 4 and value.shape[1] == 3 and ours.shape[1] != 3:
            from gsm.models.resnet import adapt_input_conv  # RGB filters for other input channels, as timm does

            value = adapt_input_conv(torch.from_numpy(value), ours.shape[1]).numpy()
        if value.shape != tuple(ours.shape):
            if value.ndim == 2 and ours.ndim == 4 and value.size == ours.numel():  # SpatialConvolutionMM's 2-D weight
                value = value.reshape(tuple(ours.shape))
            else:
                raise self.error(where, f"{name} of shape {tuple(value.shape)}; gsm's is {tuple(ours.shape)}")
        if not np.isfinite(value).all():
            raise self.error(where, f"non-finite values in {name}")
        self.out[name] = torch.from_numpy(value)

    def conv(self, obj: Any, where: str, ours: nn.Conv2d, name: str, next_bn: Any) -> None:
        self.kind(obj, where, "SpatialConvolution", "SpatialConvolutionMM")
        got = tuple(int(obj[k] or 0) for k in ("kH", "kW", "dH", "dW", "padH", "padW"))
        want = (*ours.kernel_size, *ours.stride, *ours.padding)
        if got != want:
            raise self.error(where, f"kernel, stride, padding {got[:2]}, {got[2:4]}, {got[4:]}; gsm's {name} has "
                                    f"{want[:2]}, {want[2:4]}, {want[4:]}")
        if int(obj["groups"] or 1) != ours.groups:
            raise self.error(where, f"{obj['groups']} groups; gsm's {name} has {ours.groups}")
        self.put(f"{name}.weight", self.array(obj, "weight", where), ours.weight, where)
        bias = self.array(obj, "bias", where, required=False)
        if bias is not None and np.any(bias != 0):  # fold into the next BN: BN(x + b; μ) = BN(x; μ − b)
            if bias.shape != (ours.out_channels,):
                raise self.error(where, f"a bias of shape {bias.shape}; {name} has {ours.out_channels} outputs")
            self.folded[id(next_bn)] = bias

    def bn(self, obj: Any, where: str, ours: nn.BatchNorm2d, name: str) -> None:
        self.kind(obj, where, "SpatialBatchNormalization", "BatchNormalization")
        eps = obj["eps"]
        if not isinstance(eps, (int, float)) or abs(float(eps) - ours.eps) > 1e-9:
            raise self.error(where, f"eps {eps!r}; gsm's BatchNorm uses {ours.eps}")
        self.put(f"{name}.weight", self.array(obj, "weight", where), ours.weight, where)
        self.put(f"{name}.bias", self.array(obj, "bias", where), ours.bias, where)
        mean = self.array(obj, "running_mean", where)
        var = self.array(obj, "running_var", where, required=False)
        if var is None:  # saved before nn's BatchNormalization version 2: 1/sqrt(var + eps)
            std = self.array(obj, "running_std", where)
            with np.errstate(divide="ignore"):
                var = (1.0 / std.astype(np.float64) ** 2 - float(eps)).astype(np.float32)
        if np.any(var < 0):
            raise self.error(where, f"a negative running variance in {name}")
        bias = self.folded.get(id(obj))
        if bias is not None:
            mean = mean - bias
        self.put(f"{name}.running_mean", mean, ours.running_mean, where)
        self.put(f"{name}.running_var", var, ours.running_var, where)

    def maxpool(self, obj: Any, where: str, ours: nn.MaxPool2d) -> None:
        self.kind(obj, where, "SpatialMaxPooling")
        got = tuple(int(obj[k] or 0) for k in ("kH", "dH", "padH"))
        want = (ours.kernel_size, ours.stride, ours.padding)
        if got != want:
            raise self.error(where, f"max pooling kernel, stride, padding {got}; gsm's maxpool has {want}")

    def bottleneck(self, obj: Any, where: str, ours: nn.Module, name: str) -> None:
        parts = self.modules(obj, where, "Sequential")
        if len(parts) != 3:
            raise self.error(where, f"{len(parts)} modules, expected ConcatTable, CAddTable, ReLU")
        branches = self.modules(parts[0], f"{where}.modules[1]", "ConcatTable")
        self.kind(parts[1], f"{where}.modules[2]", "CAddTable")
        self.kind(parts[2], f"{where}.modules[3]", "ReLU")
        if len(branches) != 2:
            raise self.error(f"{where}.modules[1]", f"{len(branches)} branches, expected residual and shortcut")
        at = f"{where}.modules[1].modules[1]"
        res = self.modules(branches[0], at, "Sequential")
        if len(res) != 8:
            raise self.error(at, f"{len(res)} modules, expected conv, BN, ReLU, conv, BN, ReLU, conv, BN")
        for k, i in enumerate((0, 3, 6)):
            self.conv(res[i], f"{at}.modules[{i + 1}]", getattr(ours, f"conv{k + 1}"), f"{name}.conv{k + 1}", res[i + 1])
            self.bn(res[i + 1], f"{at}.modules[{i + 2}]", getattr(ours, f"bn{k + 1}"), f"{name}.bn{k + 1}")
        for i in (2, 5):
            self.kind(res[i], f"{at}.modules[{i + 1}]", "ReLU")
        at = f"{where}.modules[1].modules[2]"
        if ours.downsample is None:
            self.kind(branches[1], at, "Identity")
            return
        short = self.modules(branches[1], at, "Sequential")
        if len(short) != 2:
            raise self.error(at, f"{len(short)} modules, expected the shortcut's conv 1x1 and BN")
        self.conv(short[0], f"{at}.modules[1]", ours.downsample[0], f"{name}.downsample.0", short[1])
        self.bn(short[1], f"{at}.modules[2]", ours.downsample[1], f"{name}.downsample.1")


def load_fb_resnet_torch(path: str | os.PathLike | None, backbone: nn.Module, source: str) -> dict[str, Tensor]:
    """The backbone's state dict from fb.resnet.torch's ``resnet-101.t7`` at ``path`` (None: :func:`default_file`)."""
    file = Path(os.path.expanduser(str(path))) if path is not None else default_file()
    return state_dict_from_torch7(read_torch7(file, source), backbone, source)
