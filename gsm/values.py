"""Value checks shared by every module that reads a config value (models, schedules, datasets, the
config validator): each returns the value in its type or raises a ConfigError naming the key and what
would be valid, so a value is judged the same way everywhere. No torch, no Hydra."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from gsm.errors import ConfigError

LOSS_REDUCTIONS = ("mean", "sum")
"""``head.loss_reduction`` / ``recipe.loss_reduction``: how :func:`gsm.heads.head_loss` reduces the loss."""
DIST_UPDATES = ("autograd", "release")
"""``head.dist_update`` / ``recipe.dist_update``: how G-softmax's μ, σ move (docs/paper-notes.md E2)."""
TRAIN_CROPS = ("multiscale", "random_resized", "resize")
"""``dataset.train_crop`` of MS COCO and NUS-WIDE (gsm.data.transforms.multilabel_train)."""
TINY_CROPS = ("pad", "inception")
"""``dataset.train_crop`` of Tiny ImageNet (gsm.data.transforms.pad_crop_train, inception_train)."""
PAD_MODES = ("zeros", "reflect")
"""``dataset.pad_mode``: what the padded crop pads with."""
INTERPOLATIONS = ("bilinear", "bicubic")
"""``dataset.interpolation``: how the JPEG pipelines resize."""
POOLS = ("gap", "gmp")
"""``model.pool`` of ResNet-101: global average or max pooling of the last feature map (gsm.models.resnet)."""
WEIGHT_SOURCES = ("torchvision", "fb_resnet_torch")
"""``model.weights`` of ResNet-101: whose ImageNet weights (docs/paper-notes.md D37)."""


def is_int(value: Any) -> bool:
    """``value`` is an int, and not a bool (``True`` is an int to Python, not to a config)."""
    return isinstance(value, int) and not isinstance(value, bool)


def as_int(value: Any) -> int | None:
    """``value`` as an int when it is one or a string of one (``"3"``); None otherwise (floats, bools, text)."""
    if is_int(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _range_text(minimum: float | None, maximum: float | None, below: float | None) -> str:
    parts = []
    if minimum is not None:
        parts.append(f">= {minimum:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    if below is not None:
        parts.append(f"< {below:g}")
    return " and ".join(parts)


def integer(key: str, value: Any, *, minimum: int | None = None, maximum: int | None = None,
            allow_none: bool = False) -> int | None:
    """``value`` as an int (an int, or a string of one; not a bool or a float), within the bounds."""
    if value is None and allow_none:
        return None
    what = "an integer" + (f" {_range_text(minimum, maximum, None)}" if minimum is not None or maximum is not None else "")
    what += " or null" if allow_none else ""
    v = as_int(value)
    if v is None or (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise ConfigError(f"{key} must be {what} (got {value!r})")
    return v


FLOAT32_MAX = 3.4028234663852886e38
"""The largest finite float32: a config number beyond it would become inf (or fail) in a float32 tensor."""


def number(key: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
           below: float | None = None, above: float | None = None, allow_none: bool = False) -> float | None:
    """``value`` as a finite float (a number, or a string of one; not a bool), within the bounds and within
    float32's range (±:data:`FLOAT32_MAX`): the heads, models and optimiser compute in float32, where a larger
    value is inf (``head.mu=1e39`` would otherwise fail inside torch)."""
    if value is None and allow_none:
        return None
    bounds = _range_text(minimum, maximum, below)
    if above is not None:
        bounds = " and ".join(b for b in (f"> {above:g}", bounds) if b)
    what = "a finite number" + (f" {bounds}" if bounds else "") + (" or null" if allow_none else "")
    v: float | None = None
    if not isinstance(value, bool) and isinstance(value, (int, float, str)):
        try:
            v = float(value)
        except (ValueError, OverflowError):
            v = None
    if (v is None or not math.isfinite(v) or (minimum is not None and v < minimum)
            or (maximum is not None and v > maximum) or (below is not None and v >= below)
            or (above is not None and v <= above)):
        raise ConfigError(f"{key} must be {what} (got {value!r})")
    if abs(v) > FLOAT32_MAX:  # the bounds above hold, so with a lower bound only the upper end can be exceeded
        unbounded = minimum is None and above is None
        span = (f"within float32's range, -{FLOAT32_MAX:.6g} to {FLOAT32_MAX:.6g}" if unbounded
                else f"and <= {FLOAT32_MAX:.6g}, float32's largest")
        raise ConfigError(f"{key} must be {what} {span} (got {value!r})")
    return v


def boolean(key: str, value: Any) -> bool:
    """``value`` if it is true or false (a string such as "false" is not: ``bool("false")`` is True)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false (got {value!r})")
    return value


def one_of(key: str, value: Any, valid: Sequence[Any], *, allow_none: bool = False) -> Any:
    """``value`` if it is one of ``valid`` (compared as given; bools never match strings)."""
    if value is None and allow_none:
        return None
    if any(value == v and type(value) is type(v) for v in valid):
        return value
    shown = ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in valid)
    raise ConfigError(f"{key} must be one of {shown}{' or null' if allow_none else ''} (got {value!r})")


def text(key: str, value: Any, *, allow_none: bool = False) -> str | None:
    """A non-empty string (a path, a folder name); with ``allow_none``, null or "" give None."""
    if value in (None, "") and allow_none:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} must be a non-empty string{' or null' if allow_none else ''} (got {value!r})")
    return value


def registered(group: str, name: Any, valid: Sequence[str]) -> str:
    """``<group>.name`` if gsm has code for it (a dataset, model, head or schedule of ``valid``), else one ConfigError
    listing the valid names: the config check and the code that builds the part give this one message."""
    names = tuple(valid)
    if not isinstance(name, str) or name not in names:
        raise ConfigError(f"{group}.name={name!r} is not a {group} gsm has code for; valid: {', '.join(names)}")
    return name


def head_fits_labels(head: str, multilabel: bool) -> None:
    """Raise a ConfigError when ``head`` cannot train the dataset's kind of labels: L-softmax needs the one
    ground-truth class of a single-label set (paper §III-B); MSML is the multi-label soft margin loss (eq. 14).
    The config check (before any data is read) and the heads' constructors give this one message."""
    if multilabel and head == "lsoftmax":
        raise ConfigError("head=lsoftmax is single-label only: L-softmax needs the one ground-truth class "
                          "(paper §III-B); use head=softmax, gsoftmax or msml on a multi-label dataset")
    if not multilabel and head == "msml":
        raise ConfigError("head=msml is the multi-label soft margin loss (eq. 14); use head=softmax on a "
                          "single-label dataset")
