"""A writer of Torch7's binary serialisation, and fb.resnet.torch's ResNet as a tree of Torch7 modules: the tests'
independent oracle for gsm.models.torch7 (nothing here comes from gsm or from torchfile).

The format (torch7's File.lua ``writeObject`` and generic/Tensor.c, Storage.c ``write``), little-endian, binary mode:
every object starts with an int32 type tag — 0 nil, 1 number (a double), 2 string (int32 length, bytes), 3 table,
4 torch class, 5 boolean (int32). A table or torch object then has an int32 reference index (unique per object), a
table an int32 count of key/value pairs and the pairs as objects. A torch object has the version string ``"V 1"``
and its class name (each an int32 length and bytes, no tag); a tensor then has int32 ndim, ndim int64 sizes, ndim
int64 strides (in elements), an int64 1-based storage offset and its storage as an object; a storage has an int64
element count and the raw elements; any other class (an nn module) has its fields as one table object.

The tree (fb.resnet.torch models/resnet.lua, createModel for ImageNet): ``nn.Sequential{conv 7x7/2, BN, ReLU, max
pool 3x3/2, layer1 … layer4, avg pool, nn.View, nn.Linear}``, a layer ``nn.Sequential`` of bottlenecks
``nn.Sequential{nn.ConcatTable{nn.Sequential{conv 1x1, BN, ReLU, conv 3x3/stride, BN, ReLU, conv 1x1, BN},
shortcut}, nn.CAddTable, ReLU}``, the shortcut ``nn.Sequential{conv 1x1/stride, BN}`` when the block's input and
output widths differ (shortcut type B), else ``nn.Identity``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Module:
    """A Torch7 object of class ``typename`` whose fields are ``fields`` (written as its table)."""

    typename: str
    fields: dict[str, Any] = field(default_factory=dict)


class Writer:
    def __init__(self, f) -> None:
        self.f = f
        self.index = 0

    def _int(self, v: int) -> None:
        self.f.write(struct.pack("<i", v))

    def _long(self, v: int) -> None:
        self.f.write(struct.pack("<q", v))

    def _raw(self, s: str) -> None:
        b = s.encode()
        self._int(len(b))
        self.f.write(b)

    def _ref(self) -> None:
        self.index += 1
        self._int(self.index)

    def obj(self, x: Any) -> None:
        if x is None:
            self._int(0)
        elif isinstance(x, bool):
            self._int(5)
            self._int(int(x))
        elif isinstance(x, (int, float)):
            self._int(1)
            self.f.write(struct.pack("<d", float(x)))
        elif isinstance(x, str):
            self._int(2)
            self._raw(x)
        elif isinstance(x, np.ndarray):
            self.tensor(x)
        elif isinstance(x, Module):
            self._int(4)
            self._ref()
            self._raw("V 1")
            self._raw(x.typename)
            self.obj(dict(x.fields))
        elif isinstance(x, (list, tuple)):  # a Lua array: keys 1..n
            self.obj({i + 1: v for i, v in enumerate(x)})
        elif isinstance(x, dict):
            self._int(3)
            self._ref()
            self._int(len(x))
            for k, v in x.items():
                self.obj(k)
                self.obj(v)
        else:
            raise TypeError(f"cannot write {type(x).__name__}")

    def tensor(self, a: np.ndarray) -> None:
        kind = {np.dtype(np.float32): "Float", np.dtype(np.float64): "Double"}[a.dtype]
        a = np.ascontiguousarray(a)
        self._int(4)
        self._ref()
        self._raw("V 1")
        self._raw(f"torch.{kind}Tensor")
        self._int(a.ndim)
        for n in a.shape:
            self._long(n)
        for s in a.strides:
            self._long(s // a.itemsize)
        self._long(1)  # storage offset, 1-based
        self._int(4)  # the storage, an object of its own
        self._ref()
        self._raw("V 1")
        self._raw(f"torch.{kind}Storage")
        self._long(a.size)
        self.f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())


def write_t7(path, tree: Any) -> None:
    with open(path, "wb") as f:
        Writer(f).obj(tree)


# --------------------------------------------------------------------------- fb.resnet.torch's ResNet as modules


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.float32)


def conv(arrays: dict, name: str, rng, n_in: int, n_out: int, k: int, stride: int, pad: int, *, bias: bool = False,
         mm: bool = False) -> Module:
    """cudnn.SpatialConvolution(n_in, n_out, k, k, stride, stride, pad, pad); ``arrays[name.weight]`` its weight
    (``arrays[name.bias]`` too with ``bias``); ``mm``: nn.SpatialConvolutionMM's 2-D weight."""
    w = (rng.standard_normal((n_out, n_in, k, k)) * np.sqrt(2 / (k * k * n_out))).astype(np.float32)
    arrays[f"{name}.weight"] = w
    b = None
    if bias:
        b = (rng.standard_normal(n_out) * 0.1).astype(np.float32)
        arrays[f"{name}.bias"] = b
    return Module("nn.SpatialConvolutionMM" if mm else "cudnn.SpatialConvolution", {
        "nInputPlane": n_in, "nOutputPlane": n_out, "kW": k, "kH": k, "dW": stride, "dH": stride, "padW": pad,
        "padH": pad, "weight": w.reshape(n_out, -1) if mm else w, "bias": b, "gradWeight": np.zeros_like(w),
        "output": _empty(), "gradInput": _empty(), "train": False, "groups": 1})


def bn(arrays: dict, name: str, rng, n: int, *, old: bool = False) -> Module:
    """nn.SpatialBatchNormalization(n), eps 1e-5, with trained-looking values; ``old``: stored as before nn's
    version 2, with running_std = 1/sqrt(var + eps) instead of running_var."""
    vals = {"weight": rng.uniform(0.5, 1.5, n), "bias": rng.normal(0, 0.1, n), "running_mean": rng.normal(0, 0.2, n),
            "running_var": rng.uniform(0.5, 2.0, n)}
    vals = {k: v.astype(np.float32) for k, v in vals.items()}
    arrays.update({f"{name}.{k}": v for k, v in vals.items()})
    fields = {"eps": 1e-5, "momentum": 0.1, "affine": True, "train": False, "output": _empty(), **vals}
    if old:
        fields["running_std"] = (1 / np.sqrt(vals["running_var"].astype(np.float64) + 1e-5)).astype(np.float32)
        del fields["running_var"]
    return Module("nn.SpatialBatchNormalization", fields)


def relu() -> Module:
    return Module("cudnn.ReLU", {"inplace": True, "train": False})


def seq(*modules: Module, typename: str = "nn.Sequential") -> Module:
    return Module(typename, {"modules": list(modules), "train": False, "output": _empty()})


def fb_resnet(rng, blocks=(3, 4, 23, 3), width: int = 64, classes: int = 1000, *, conv_bias: bool = False,
              old_bn: bool = False, mm: bool = False) -> tuple[Module, dict[str, np.ndarray]]:
    """fb.resnet.torch's ImageNet ResNet of ``blocks`` bottlenecks per stage and a stem of ``width`` channels (101:
    (3, 4, 23, 3), 64) with random trained-looking values; returns (tree, arrays by torchvision name)."""
    arrays: dict[str, np.ndarray] = {}
    kw = {"bias": conv_bias, "mm": mm}
    mods = [conv(arrays, "conv1", rng, 3, width, 7, 2, 3, **kw), bn(arrays, "bn1", rng, width, old=old_bn), relu(),
            Module("nn.SpatialMaxPooling", {"kW": 3, "kH": 3, "dW": 2, "dH": 2, "padW": 1, "padH": 1, "ceil_mode": False})]
    channels = width
    for stage, count in enumerate(blocks):
        n = width * 2 ** stage
        layer = []
        for j in range(count):
            stride = 2 if stage > 0 and j == 0 else 1
            p = f"layer{stage + 1}.{j}"
            res = seq(conv(arrays, f"{p}.conv1", rng, channels, n, 1, 1, 0, **kw), bn(arrays, f"{p}.bn1", rng, n, old=old_bn),
                      relu(), conv(arrays, f"{p}.conv2", rng, n, n, 3, stride, 1, **kw),
                      bn(arrays, f"{p}.bn2", rng, n, old=old_bn), relu(),
                      conv(arrays, f"{p}.conv3", rng, n, 4 * n, 1, 1, 0, **kw), bn(arrays, f"{p}.bn3", rng, 4 * n, old=old_bn))
            if channels != 4 * n:
                short = seq(conv(arrays, f"{p}.downsample.0", rng, channels, 4 * n, 1, stride, 0, **kw),
                            bn(arrays, f"{p}.downsample.1", rng, 4 * n, old=old_bn))
            else:
                short = Module("nn.Identity", {"train": False})
            layer.append(seq(seq(res, short, typename="nn.ConcatTable"), Module("nn.CAddTable", {"inplace": True}), relu()))
            channels = 4 * n
        mods.append(seq(*layer))
    fc_w = rng.standard_normal((classes, channels)).astype(np.float32) * 0.01
    mods += [Module("cudnn.SpatialAveragePooling", {"kW": 7, "kH": 7, "dW": 1, "dH": 1}),
             Module("nn.View", {"size": [channels], "numInputDims": 3}),
             Module("nn.Linear", {"weight": fc_w, "bias": np.zeros(classes, dtype=np.float32)})]
    return seq(*mods), arrays
