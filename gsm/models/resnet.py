"""ResNet-101 (He, Zhang, Ren, Sun, CVPR 2016, arXiv:1512.03385) from torchvision, without its fc.

The modules are torchvision's ``resnet101`` (``conv1 … layer4``, same state-dict
keys, minus ``fc``), followed by global average (``pool: gap``) or global max
(``pool: gmp``, the paper's MS COCO / NUS-WIDE setting) pooling: 2048 features
at any input size ≥ 32 (64, 224 and 448 in the paper).

Weights: ``pretrained: true`` starts from ImageNet weights, ``weights`` says whose:
``torchvision`` (``ResNet101_Weights.IMAGENET1K_V1`` through torch's hub cache, downloading
once) or ``fb_resnet_torch`` (the authors' starting point: fb.resnet.torch's ``resnet-101.t7``,
read from ``weights_path`` or from torch's hub checkpoint folder; gsm.models.torch7).
``weights_path`` loads a local file, also with ``pretrained: false``: for ``weights:
torchvision`` a torchvision ``resnet101`` state dict (``fc.*`` ignored), a state dict
of this backbone, or a gsm checkpoint / classifier state dict (``backbone.*``
keys); for ``weights: fb_resnet_torch`` the Torch7 file. ``in_channels != 3`` replaces ``conv1`` by a conv with that many inputs;
loaded RGB filters are adapted as timm does (summed for 1 channel, otherwise
repeated cyclically and scaled by 3/in_channels).
"""

from __future__ import annotations

import http.client
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import ResNet101_Weights

from gsm.settings import MODEL
from gsm.errors import ConfigError

WEIGHTS = ResNet101_Weights.IMAGENET1K_V1
_STEM = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
BLOCKS = (3, 4, 23, 3)  # ResNet-101's bottleneck blocks per stage


def hub_weights_file() -> Path:
    """Where torch.hub looks for (and caches) the ImageNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(WEIGHTS.url)


def adapt_input_conv(weight: Tensor, in_channels: int) -> Tensor:
    """RGB filters (out, 3, kh, kw) -> (out, in_channels, kh, kw) (timm's ``adapt_input_conv``)."""
    if weight.shape[1] == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    reps = -(-in_channels // weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


class ResNet101(nn.Module):
    """torchvision ResNet-101 feature extractor: (B, C, H, W) -> (B, 2048) (the paper's Tables II–IV).

    Args:
        in_channels (int, default 3): channels of the input images; other than 3 replaces ``conv1``
            (loaded RGB filters are adapted, see the module docstring).
        pretrained (bool, default False): start from ImageNet weights, those ``weights`` names
            (``model.pretrained``; the paper's Tables II–IV).
        weights_path (str or None, default None): a local file to load, also without ``pretrained``
            (``model.weights_path``): a state dict (torchvision, backbone or gsm checkpoint keys) for
            ``weights="torchvision"``, fb.resnet.torch's resnet-101.t7 for ``weights="fb_resnet_torch"``.
        pool (str, default ``"gap"``): global ``"gap"`` (average) or ``"gmp"`` (max, the paper's MS COCO /
            NUS-WIDE setting) pooling of the last feature map (``model.pool``).
        blocks (list of 4 ints, default ``[3, 4, 23, 3]``): bottleneck blocks per stage (``model.blocks``); other
            than ResNet-101's, a smaller ResNet of the same layout (the smoke profile's ``[1, 1, 1, 1]``).
        width (int, default 64): channels of the stem; stage k's bottlenecks are ``width * 2**k`` wide and
            output 4 times that (``model.width``; 64 is ResNet-101's 2048 features, the smoke profile's 8 gives 256).
        weights (str, default ``"torchvision"``): whose ImageNet weights (``model.weights``): ``"torchvision"``
            (``IMAGENET1K_V1`` through torch's hub cache, downloading once) or ``"fb_resnet_torch"`` (the
            authors' starting point, fb.resnet.torch's resnet-101.t7: ``weights_path``, else
            gsm.models.torch7.default_file(); the paper rows' recipes set it, docs/recipes.md).
    """

    def __init__(self, in_channels: int = 3, pretrained: bool = False, weights_path: str | None = None,
                 pool: str = "gap", blocks: Any = BLOCKS, width: Any = 64, weights: str = "torchvision") -> None:
        super().__init__()
        s = self.settings(pretrained, weights_path, pool, blocks, width, weights)
        pretrained, weights_path, pool = s["pretrained"], s["weights_path"], s["pool"]
        paper_size = s["blocks"] == list(BLOCKS) and s["width"] == 64
        net = torchvision.models.resnet101(weights=None) if paper_size else _smaller_resnet(s["blocks"], s["width"])
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        for name in _STEM:
            setattr(self, name, getattr(net, name))
        self.in_channels = in_channels
        self.pool_name = pool
        self.pool = nn.AdaptiveAvgPool2d(1) if pool == "gap" else nn.AdaptiveMaxPool2d(1)
        self.out_features = net.fc.in_features
        if s["weights"] == "fb_resnet_torch" and (pretrained or weights_path is not None):
            from gsm.models.torch7 import load_fb_resnet_torch

            source = f"model.weights=fb_resnet_torch{'' if weights_path is None else f', model.weights_path={weights_path!r}'}"
            self.load_weights(load_fb_resnet_torch(weights_path, self, source), source)
        elif weights_path is not None:
            path = Path(os.path.expanduser(str(weights_path)))
            self.load_weights(_read_local(path), f"model.weights_path={str(path)!r}")
        elif pretrained:
            self.load_weights(_download_imagenet(), f"model.pretrained=true ({hub_weights_file()})")

    @staticmethod
    def settings(pretrained: Any = False, weights_path: Any = None, pool: Any = "gap", blocks: Any = BLOCKS,
                 width: Any = 64, weights: Any = "torchvision") -> dict[str, Any]:
        """The ``model.*`` values, validated (ConfigError naming the key); an empty weights_path is none."""
        return MODEL.check_each(pretrained=pretrained, weights_path=weights_path, pool=pool, blocks=blocks, width=width,
                                weights=weights)

    def load_weights(self, state: Mapping[str, Any], source: str) -> None:
        """Load a torchvision / gsm state dict (see the module docstring); errors name ``source``."""
        state = _unwrap(state)
        if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
            raise ConfigError(f"{source}: not a state dict (a mapping of parameter names to tensors)")
        if any(k.startswith("backbone.") for k in state):  # a gsm Classifier / checkpoint
            state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        w = state.get("conv1.weight")
        if isinstance(w, Tensor) and w.ndim == 4 and w.shape[1] != self.in_channels and w.shape[1] == 3:
            state["conv1.weight"] = adapt_input_conv(w, self.in_channels)
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ConfigError(
                f"{source}: not ResNet-101 weights: {len(missing)} missing keys {missing[:3]}, "
                f"{len(unexpected)} unexpected keys {unexpected[:3]} (expected a torchvision resnet101 state dict)"
            )
        bad = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if v.shape != own[k].shape]
        if bad:
            k, got, want = bad[0]
            raise ConfigError(f"{source}: {len(bad)} tensors have the wrong shape, e.g. {k} {got} (expected {want})")
        self.load_state_dict(state, strict=True)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.forward_features(x)).flatten(1)

    def extra_repr(self) -> str:
        return f"pool={self.pool_name}, in_channels={self.in_channels}"


def _smaller_resnet(blocks: list[int], width: int) -> nn.Module:
    """torchvision's ResNet layout and module names (conv1 ... layer4, fc) with ``blocks`` bottlenecks per stage and
    a stem of ``width`` channels, initialised as torchvision initialises it (Kaiming fan-out, BatchNorm 1 and 0)."""
    from torchvision.models.resnet import Bottleneck, conv1x1

    from gsm.models.init import kaiming_fan_out_

    net = nn.Module()
    net.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
    net.bn1, net.relu, net.maxpool = nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
    inplanes = width
    for stage, (count, stride) in enumerate(zip(blocks, (1, 2, 2, 2))):
        planes = width * 2 ** stage
        down = nn.Sequential(conv1x1(inplanes, planes * 4, stride), nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(inplanes, planes, stride, down)] + [Bottleneck(planes * 4, planes) for _ in range(count - 1)]
        setattr(net, f"layer{stage + 1}", nn.Sequential(*layers))
        inplanes = planes * 4
    net.fc = nn.Linear(inplanes, 1000)  # not kept: its in_features are the backbone's out_features
    kaiming_fan_out_(net)
    return net


def _unwrap(state: Any) -> Any:
    """Accept {'state_dict': …} / {'model': …} wrappers and DDP's 'module.' prefix."""
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if isinstance(state, Mapping) and state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _read_local(path: Path) -> Any:
    key = f"model.weights_path={str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{key}: no such file (give the path of a saved ResNet-101 state dict)")
    from gsm.models.torch7 import is_torch7_file

    try:
        if is_torch7_file(path):
            raise ConfigError(f"{key}: a Torch7 file, not a torch state dict; fb.resnet.torch's resnet-101.t7 loads "
                              f"with model.weights=fb_resnet_torch")
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as e:
        raise ConfigError(f"{key}: cannot be read as a torch state dict ({type(e).__name__}: {e})") from e


def _download_imagenet() -> Mapping[str, Tensor]:
    """ImageNet weights via torch.hub (cached under $TORCH_HOME/hub/checkpoints)."""
    try:
        return torch.hub.load_state_dict_from_url(WEIGHTS.url, progress=True, check_hash=True, map_location="cpu")
    except (OSError, http.client.HTTPException, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise ConfigError(
            f"model.pretrained=true: cannot get the ImageNet weights {WEIGHTS} ({type(e).__name__}: {e}). "
            f"Without internet, copy {WEIGHTS.url} to {hub_weights_file()} (the torch hub cache; "
            f"set TORCH_HOME to move it), or set model.weights_path=<local resnet101 state dict>, "
            f"or model.pretrained=false to train from scratch."
        ) from e
