"""Wide Residual Network WRN-d-k (Zagoruyko & Komodakis 2016, arXiv:1605.07146).

Pre-activation basic blocks (BN-ReLU-conv3×3, dropout, BN-ReLU-conv3×3), three
groups of (d−4)/6 blocks with widths 16k, 32k, 64k after a 16-channel 3×3 stem,
strides 1, 2, 2; a 1×1 conv shortcut where the width or stride changes; final
BN-ReLU and global average pooling. The paper uses WRN-40-14 (≈109.4M params).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from gsm.settings import MODEL
from gsm.errors import ConfigError
from gsm.models.init import kaiming_fan_out_


class BasicBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3×3(stride), dropout, BN-ReLU-conv3×3, plus the shortcut.

    Args:
        cin (int): input channels.
        cout (int): output channels; a 1×1 conv shortcut when ``cin != cout`` or ``stride != 1``.
        stride (int): stride of the first conv (1 or 2).
        dropout (float): dropout probability between the convs (0: none).
    """

    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        o = F.relu(self.bn1(x))
        # As in the reference code, a projection shortcut takes the pre-activated input.
        shortcut = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = F.relu(self.bn2(o))
        if self.dropout > 0:
            o = F.dropout(o, p=self.dropout, training=self.training)
        return self.conv2(o) + shortcut


class WideResNet(nn.Module):
    """WRN-depth-width feature extractor: (B, C, H, W) -> (B, 64·width) (the paper's WRN rows of Table I:
    WRN-40-14).

    Args:
        in_channels (int, default 3): channels of the input images.
        depth (int, default 40): d = 6n + 4 with n ≥ 1 (``model.depth``), n blocks per group.
        width (int, default 14): k, the widening factor (``model.width``, ≥ 1); ``out_features`` is 64k.
        dropout (float, default 0.0): dropout probability inside each block, in [0, 1) (``model.dropout``).
    """

    @staticmethod
    def settings(depth: Any = 40, width: Any = 14, dropout: Any = 0.0) -> dict[str, Any]:
        """The ``model.*`` values, validated (ConfigError naming the key)."""
        s = MODEL.check_each(depth=depth, width=width, dropout=dropout)
        if s["depth"] < 10 or (s["depth"] - 4) % 6:
            raise ConfigError(f"model.depth={s['depth']}: a WRN needs depth = 6n + 4 with n >= 1 (e.g. 16, 28, 40)")
        return s

    def __init__(self, in_channels: int = 3, depth: int = 40, width: int = 14, dropout: float = 0.0) -> None:
        super().__init__()
        s = self.settings(depth, width, dropout)
        depth, width, dropout = s["depth"], s["width"], s["dropout"]
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        groups = []
        for g, stride in enumerate((1, 2, 2)):
            blocks = [BasicBlock(widths[g] if i == 0 else widths[g + 1], widths[g + 1], stride if i == 0 else 1, dropout)
                      for i in range(n)]
            groups.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(widths[3])
        self.out_features = widths[3]
        kaiming_fan_out_(self)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return F.relu(self.bn(x))

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(self.forward_features(x), 1).flatten(1)
