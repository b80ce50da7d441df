"""The heads by name (``head.name``, ``gsm/configs/head/<name>.yaml``): :data:`HEADS` and :func:`build_head`."""

from __future__ import annotations

from typing import Any

from gsm.errors import ConfigError
from gsm.heads.base import Head, MSMLHead, SoftmaxHead
from gsm.heads.gsoftmax import GSoftmaxHead
from gsm.heads.lsoftmax import LSoftmaxHead
from gsm.values import registered

HEADS: dict[str, type[Head]] = {cls.name: cls for cls in (SoftmaxHead, MSMLHead, GSoftmaxHead, LSoftmaxHead)}
"""head name (``head.name``, ``gsm/configs/head/<name>.yaml``) → class. A new head adds itself here."""
HEAD_NAMES = tuple(HEADS)


def build_head(name: str, in_features: int, num_classes: int, multilabel: bool = False, **cfg: Any) -> Head:
    """Build a head by name from the ``head.*`` config keys (``gsm/configs/head/<name>.yaml``).

    Unknown keys, keys of another head, and invalid values raise
    :class:`~gsm.errors.ConfigError` naming the key and what would be valid.
    """
    cls = HEADS[registered("head", name, HEADS)]
    for key in cfg:
        if key not in cls.config_keys:
            valid = ", ".join(f"head.{k}" for k in cls.config_keys) or "none"
            raise ConfigError(f"head.{key} is not a setting of head={name} (valid keys: {valid})")
    return cls(in_features, num_classes, multilabel=multilabel, **cfg)
