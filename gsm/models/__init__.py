"""Backbones (config group ``model``) and the classifier = backbone + head.

Every backbone maps images to a feature vector (B, ``out_features``); the head
from :func:`gsm.heads.build_head` replaces the classifier layer.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from gsm.errors import ConfigError
from gsm.heads import Head, build_head
from gsm.values import registered

# name -> ("module:class", config keys the constructor takes besides in_channels/image_size); each class has a
# static ``settings(**keys)`` that validates them (ConfigError naming model.<key>) without building anything.
MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "convnet": ("gsm.models.convnet:ConvNet", ("width",)),
    "vgg16": ("gsm.models.vgg:VGG16", ()),
    "vgg16_small": ("gsm.models.vgg:VGG16", ("width",)),  # VGG-16's layers, narrower (the smoke profile)
    "wrn": ("gsm.models.wrn:WideResNet", ("depth", "width", "dropout")),
    "densenet": ("gsm.models.densenet:DenseNet", ("depth", "growth", "bc", "dropout", "shared_concat")),
    "resnet101": ("gsm.models.resnet:ResNet101", ("pretrained", "weights_path", "pool", "weights")),
    # ResNet-101's layout with fewer blocks and channels (the smoke profile; gsm/configs/model/resnet_small.yaml)
    "resnet_small": ("gsm.models.resnet:ResNet101", ("pretrained", "weights_path", "pool", "blocks", "width",
                                                     "weights")),
}


class Classifier(nn.Module):
    """``head(backbone(images), target)``; ``target`` only matters for L-softmax in training.

    Under AMP the backbone runs in reduced precision and the head in float32 (docs/paper-notes.md, D2).

    Args:
        backbone (nn.Module): maps images (B, C, H, W) to features (B, ``backbone.out_features``).
        head (gsm.heads.Head): the classification head on those features (softmax eq. 2, G-softmax
            eqs. 3–4, L-softmax, MSML eq. 14); its ``fc`` replaces the backbone's classifier layer.
    """

    def __init__(self, backbone: nn.Module, head: Head) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: Tensor, target: Tensor | None = None) -> Tensor:
        features = self.backbone(images)
        with torch.autocast(features.device.type, enabled=False):  # the head runs in float32 or wider (D2)
            return self.head(features.float() if features.dtype in (torch.float16, torch.bfloat16) else features, target)


def check_model_config(cfg: Mapping[str, Any]) -> tuple[type[nn.Module], dict[str, Any]]:
    """The backbone class of ``model.name`` and its validated ``model.*`` settings, without building it.

    An unknown name, a key the model does not take, or a bad value is a ConfigError naming the key.
    """
    name = registered("model", cfg.get("name"), MODELS)
    target, keys = MODELS[name]
    unknown = [k for k in cfg if k not in keys and k != "name"]
    if unknown:
        raise ConfigError(f"model.{unknown[0]} is not a setting of model={name} (valid keys: {', '.join(keys) or 'none'})")
    module, cls = target.split(":")
    builder = getattr(importlib.import_module(module), cls)
    return builder, builder.settings(**{k: cfg[k] for k in keys if k in cfg})


def build_backbone(cfg: Mapping[str, Any], in_channels: int, image_size: int) -> nn.Module:
    builder, kwargs = check_model_config(cfg)
    if "image_size" in builder.__init__.__code__.co_varnames:
        kwargs["image_size"] = image_size
    return builder(in_channels=in_channels, **kwargs)


def build_classifier(
    model_cfg: Mapping[str, Any], head_cfg: Mapping[str, Any], *, num_classes: int, multilabel: bool,
    in_channels: int, image_size: int,
) -> Classifier:
    backbone = build_backbone(model_cfg, in_channels, image_size)
    head_kwargs = {k: v for k, v in head_cfg.items() if k != "name"}
    head = build_head(head_cfg["name"], backbone.out_features, num_classes, multilabel, **head_kwargs)
    return Classifier(backbone, head)
