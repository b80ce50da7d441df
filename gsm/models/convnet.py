"""A small VGG-style ConvNet for the embedded digits sets and CPU smoke runs."""

from __future__ import annotations

from torch import Tensor, nn

from gsm.settings import MODEL
from gsm.models.init import kaiming_fan_out_


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConvNet(nn.Module):
    """conv(w)–conv(w)–pool–conv(2w)–conv(2w)–pool–conv(4w)–GAP; features of size 4w.

    gsm's own small backbone for the embedded digits sets and CPU smoke runs (not a model of the paper);
    every conv is 3×3 without bias, followed by BatchNorm and ReLU.

    Args:
        in_channels (int, default 3): channels of the input images (1 for digits).
        width (int, default 32): w, the channels of the first two convs (``model.width``, ≥ 1);
            ``out_features`` is 4w.
    """

    settings = staticmethod(MODEL.check_each)  # model.width's rule alone: no rule across keys

    def __init__(self, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        w = self.settings(width=width)["width"]
        self.body = nn.Sequential(
            _block(in_channels, w), _block(w, w), nn.MaxPool2d(2),
            _block(w, 2 * w), _block(2 * w, 2 * w), nn.MaxPool2d(2),
            _block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.out_features = 4 * w
        kaiming_fan_out_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)
