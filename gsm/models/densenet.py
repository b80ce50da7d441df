"""DenseNet-L-k (Huang, Liu, van der Maaten, Weinberger, CVPR 2017, arXiv:1608.06993), CIFAR variant.

Three dense blocks on 32×32, 16×16 and 8×8 maps, joined by transitions
(BN-ReLU-conv1×1, then 2×2 average pool), then BN-ReLU and global average pooling.

* original (``bc=False``, the paper's DenseNet-100-24, ≈27.2M params): a 16-channel
  3×3 stem, (L−4)/3 layers per block, each BN-ReLU-conv3×3 adding k channels;
  transitions keep the channel count;
* DenseNet-BC (``bc=True``): a 2k-channel stem, (L−4)/6 layers per block, each a
  bottleneck BN-ReLU-conv1×1 (4k) then BN-ReLU-conv3×3 (k); transitions halve
  the channels (compression 0.5).

Dropout (``dropout``) follows each conv, as in the authors' code (0 with augmentation).

Shared-storage concatenation (``shared_concat=True``, ``model.shared_concat``; off by default). Each
dense layer's input is the concatenation of the block input and every earlier layer's k new channels.
The default path builds it with one ``torch.cat`` per layer, so a block of L layers copies O(L²)
channels. With ``shared_concat`` a block allocates one buffer of its final width (the input's memory
format, so channels_last stays channels_last), copies its input in once and writes each layer's k
new channels once (O(L) copies in all); layer i reads a tensor aliasing the buffer's first c_i
channels. Autograd then keeps one buffer per block for backward instead of every layer's
concatenation. It is the same model: the same modules, parameters and ``state_dict`` keys (a
checkpoint of either path loads into the other), the same operations on the same numbers (in float64
outputs and gradients agree to 1e-10; in float32 to rounding, since a kernel may sum a strided input
in another order), and the layers run in the same order, so dropout draws the same random numbers
(the same masks for a given seed), in training and eval.

Measured on the CPU (``scripts/bench_densenet.py``, DenseNet-100-24, batch 4, one thread): autograd
keeps 41 % less for backward (569 vs 963 MiB) but a step is 9 % slower in NCHW and 1.8× slower in
channels_last, because ATen's CPU BatchNorm takes a slow general path for a channel slice of a wider
tensor (its share of a profiled step: 3.1 % → 8.8 %), while the cat copies saved were 1.1 % of the
step. Whether it pays on a GPU, where the shares differ, is for the GPU check to measure.

Why a custom autograd Function (:class:`BlockInput`) and not the method of Pleiss et al.,
"Memory-Efficient Implementation of DenseNets" (arXiv:1707.06990): theirs keeps the concatenation
and BN-ReLU outputs in shared storage and recomputes them in the backward pass, which saves memory
but spends more time, while the aim here is speed. Autograd needs two things the plain slice
``buffer[:, :c]`` does not give: (1) BatchNorm saves its input for backward, and a slice shares its
base's version counter, so writing the next layer's channels into the buffer would fail backward's
in-place check; the alias is therefore a tensor of its own (``Tensor.set_`` on the buffer's storage)
with its own version counter. Later writes touch only channels >= c_i, which is memory disjoint from
the first c_i channels in both NCHW and channels_last, so nothing a saved tensor holds ever changes
(tests/test_densenet_shared.py compares every gradient with the cat path). (2) Gradients must reach
the pieces: :class:`BlockInput` is autograd's ``cat([features, new], 1)`` of two pieces already
written into the buffer (no copy in forward; backward splits the gradient by channels, as ``cat``'s
backward does), so the autograd graph, and the gradient additions it makes, are the cat path's.

Eager only: while ``torch.compile`` traces the model (``torch.compiler.is_compiling()``), the
cat path runs instead, since ``Tensor.set_`` cannot be traced (13 graph breaks in a 3-block
DenseNet, each of which would also split a CUDA graph) and the compiler plans the concatenation's
memory itself. The numbers are the same either way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gsm.settings import MODEL
from gsm.errors import ConfigError
from gsm.models.init import kaiming_fan_out_


class DenseLayer(nn.Module):
    """One layer of a dense block: (bottleneck BN-ReLU-conv1×1 to 4k,) BN-ReLU-conv3×3 to k channels,
    concatenated to its input.

    Args:
        cin (int): input channels.
        growth (int): k, the channels the layer adds.
        bc (bool): True adds the 1×1 bottleneck (DenseNet-BC).
        dropout (float): dropout probability after each conv (0: none).
    """

    def __init__(self, cin: int, growth: int, bc: bool, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.growth = growth
        if bc:
            self.bottleneck = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                                            nn.Conv2d(cin, 4 * growth, 1, bias=False))
            cin = 4 * growth
        else:
            self.bottleneck = None
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, padding=1, bias=False)

    def _drop(self, x: Tensor) -> Tensor:
        return F.dropout(x, p=self.dropout, training=self.training) if self.dropout > 0 else x

    def new_features(self, x: Tensor) -> Tensor:
        """The k channels this layer adds to its input ``x``."""
        o = x if self.bottleneck is None else self._drop(self.bottleneck(x))
        return self._drop(self.conv(F.relu(self.bn(o))))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.new_features(x)], 1)


def storage_alias(buffer: Tensor, channels: int) -> Tensor:
    """A tensor on ``buffer``'s memory holding its first ``channels`` channels, with a version counter of
    its own (a slice would share the buffer's, and every later write into the buffer would count as an
    in-place change of the slice). Never written through; its memory is written only before it is made."""
    alias = torch.empty(0, dtype=buffer.dtype, device=buffer.device)
    size = (buffer.shape[0], channels, *buffer.shape[2:])
    return alias.set_(buffer.untyped_storage(), buffer.storage_offset(), size, buffer.stride())


class BlockInput(torch.autograd.Function):
    """``torch.cat([features, new], 1)`` where both are already written, in that order, at the start of
    ``buffer``'s channels: forward returns :func:`storage_alias` (no copy); backward splits the gradient
    by channels, as ``cat``'s backward does, so the autograd graph is the cat path's. ``buffer`` itself
    takes no gradient."""

    @staticmethod
    def forward(ctx: Any, buffer: Tensor, features: Tensor, new: Tensor) -> Tensor:
        ctx.widths = (features.shape[1], new.shape[1])
        return storage_alias(buffer, sum(ctx.widths))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return (None, *grad.split(ctx.widths, 1))


def memory_format_of(x: Tensor) -> torch.memory_format:
    """channels_last when ``x`` is laid out so (and not also plain contiguous), else contiguous."""
    if not x.is_contiguous() and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def dense_block_shared(layers: list[DenseLayer], x: Tensor) -> Tensor:
    """The output of the dense block ``layers`` on ``x``, equal to running them one after the other
    (each ``cat([input, new], 1)``), built in one pre-allocated buffer of the block's final width."""
    total = x.shape[1] + sum(layer.growth for layer in layers)
    buffer = torch.empty((x.shape[0], total, *x.shape[2:]), dtype=x.dtype, device=x.device,
                         memory_format=memory_format_of(x))
    with torch.no_grad():
        buffer[:, :x.shape[1]].copy_(x)
    features = x  # the first layer reads x itself; layer i + 1 reads an alias of the first c_i channels
    for layer in layers:
        new = layer.new_features(features)
        if new.dtype != buffer.dtype:
            raise RuntimeError(f"dense layer made {new.dtype} features from a {buffer.dtype} block input; "
                               "shared_concat needs one dtype per block (use model.shared_concat=false)")
        c = features.shape[1]
        with torch.no_grad():
            buffer[:, c:c + new.shape[1]].copy_(new)
        features = BlockInput.apply(buffer, features, new)
    return features


class Transition(nn.Sequential):
    """Between dense blocks: BN-ReLU-conv1×1 (cin → cout), dropout, 2×2 average pool.

    Args:
        cin (int): input channels.
        cout (int): output channels (cin, or cin // 2 for DenseNet-BC's compression 0.5).
        dropout (float): dropout probability after the conv.
    """

    def __init__(self, cin: int, cout: int, dropout: float) -> None:
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.Dropout(dropout), nn.AvgPool2d(2))


class DenseNet(nn.Module):
    """DenseNet-depth-growth feature extractor: (B, C, H, W) -> (B, out_features) (the paper's DenseNet
    rows of Table I: DenseNet-100-24, ``bc=False``).

    Args:
        in_channels (int, default 3): channels of the input images.
        depth (int, default 100): L = 3n + 4 (original) or 6n + 4 (``bc=True``), n ≥ 1 (``model.depth``).
        growth (int, default 24): k, the growth rate (``model.growth``, ≥ 1).
        bc (bool, default False): DenseNet-BC: bottleneck layers and compression 0.5 (``model.bc``).
        dropout (float, default 0.0): dropout probability after each conv, in [0, 1) (``model.dropout``).
        shared_concat (bool, default False): build each dense block in one pre-allocated buffer instead of a
            ``torch.cat`` per layer (``model.shared_concat``; see the module docstring). Speed and memory
            only: the same model, parameters, state_dict keys, outputs and gradients. Eager only: a model
            being compiled by ``torch.compile`` takes the cat path.
    """

    @staticmethod
    def settings(depth: Any = 100, growth: Any = 24, bc: Any = False, dropout: Any = 0.0,
                 shared_concat: Any = False) -> dict[str, Any]:
        """The ``model.*`` values, validated (ConfigError naming the key)."""
        s = MODEL.check_each(depth=depth, bc=bc, growth=growth, dropout=dropout, shared_concat=shared_concat)
        per = 6 if s["bc"] else 3
        if s["depth"] < 4 + per or (s["depth"] - 4) % per:
            kind = "DenseNet-BC needs depth = 6n + 4 (e.g. 100, 190)" if s["bc"] else "DenseNet needs depth = 3n + 4 (e.g. 40, 100)"
            raise ConfigError(f"model.depth={s['depth']}: {kind} with n >= 1")
        return {k: s[k] for k in ("depth", "growth", "bc", "dropout", "shared_concat")}

    def __init__(self, in_channels: int = 3, depth: int = 100, growth: int = 24, bc: bool = False,
                 dropout: float = 0.0, shared_concat: bool = False) -> None:
        super().__init__()
        s = self.settings(depth, growth, bc, dropout, shared_concat)
        depth, growth, bc, dropout = s["depth"], s["growth"], s["bc"], s["dropout"]
        self.shared_concat = s["shared_concat"]
        per = 6 if bc else 3
        n = (depth - 4) // per
        channels = 2 * growth if bc else 16
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)]
        for b in range(3):
            for _ in range(n):
                layers.append(DenseLayer(channels, growth, bc, dropout))
                channels += growth
            if b < 2:
                out = channels // 2 if bc else channels
                layers.append(Transition(channels, out, dropout))
                channels = out
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.out_features = channels
        kaiming_fan_out_(self)

    def forward_features(self, x: Tensor) -> Tensor:
        if not self.shared_concat or torch.compiler.is_compiling():
            return self.features(x)
        modules, i = list(self.features), 0
        while i < len(modules):  # each run of consecutive DenseLayers is one block
            j = i
            while j < len(modules) and isinstance(modules[j], DenseLayer):
                j += 1
            if j > i:
                x, i = dense_block_shared(modules[i:j], x), j
            else:
                x, i = modules[i](x), i + 1
        return x

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(self.forward_features(x), 1).flatten(1)
