"""Weight initialisation shared by the CIFAR backbones."""

from torch import nn


def kaiming_fan_out_(module: nn.Module) -> None:
    """Conv: Kaiming normal (fan-out, ReLU), as in the WRN/DenseNet reference code; BatchNorm: weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
