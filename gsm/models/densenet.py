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
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gsm.values import boolean, integer, number
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

    def forward(self, x: Tensor) -> Tensor:
        o = x if self.bottleneck is None else self._drop(self.bottleneck(x))
        o = self._drop(self.conv(F.relu(self.bn(o))))
        return torch.cat([x, o], 1)


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
    """

    @staticmethod
    def settings(depth: Any = 100, growth: Any = 24, bc: Any = False, dropout: Any = 0.0) -> dict[str, Any]:
        """The ``model.*`` values, validated (ConfigError naming the key)."""
        depth, bc = integer("model.depth", depth, minimum=1), boolean("model.bc", bc)
        per = 6 if bc else 3
        if depth < 4 + per or (depth - 4) % per:
            kind = "DenseNet-BC needs depth = 6n + 4 (e.g. 100, 190)" if bc else "DenseNet needs depth = 3n + 4 (e.g. 40, 100)"
            raise ConfigError(f"model.depth={depth}: {kind} with n >= 1")
        return {"depth": depth, "growth": integer("model.growth", growth, minimum=1), "bc": bc,
                "dropout": number("model.dropout", dropout, minimum=0, below=1)}

    def __init__(self, in_channels: int = 3, depth: int = 100, growth: int = 24, bc: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        s = self.settings(depth, growth, bc, dropout)
        depth, growth, bc, dropout = s["depth"], s["growth"], s["bc"], s["dropout"]
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
        return self.features(x)

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
