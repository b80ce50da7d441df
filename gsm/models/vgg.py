"""VGG-16 with batch normalisation, CIFAR variant (Simonyan & Zisserman 2015, arXiv:1409.1556).

The 13 3×3 conv layers of configuration D, each followed by BatchNorm and ReLU,
with 5 max-pools; the 4096-wide fully connected layers of the ImageNet model are
dropped (as in the usual CIFAR VGG, e.g. Liu et al.'s L-softmax experiments),
so a 32×32 image becomes a 1×1×512 map. An adaptive average pool makes any
input ≥ 32×32 give 512 features. The classifier is the gsm head.
"""

from __future__ import annotations

from torch import Tensor, nn

from gsm.models.init import kaiming_fan_out_
from gsm.settings import MODEL

CFG_D: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    """VGG-16-BN feature extractor: (B, C, H, W) -> (B, 512) (the paper's VGG rows of Table I).

    Args:
        in_channels (int, default 3): channels of the input images.
        width (int, default 64): channels of the first block (``model.width``); the blocks have width x (1, 2, 4,
            8, 8) channels, so 64 is VGG-16's 512 features and the smoke profile's 8 a VGG of the same 13 layers
            with 64 features and 1/64 of the parameters.
    """

    settings = staticmethod(MODEL.check_each)  # model.width's rule alone: no rule across keys

    def __init__(self, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        width = self.settings(width=width)["width"]
        layers: list[nn.Module] = []
        cin = in_channels
        for v in CFG_D:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                out = int(v) * width // 64
                layers += [nn.Conv2d(cin, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                cin = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = cin
        kaiming_fan_out_(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)
