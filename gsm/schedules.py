"""Per-epoch learning-rate multipliers (paper §III-C, eq. 17; docs/paper-notes.md D3, E4).

``lr(n) = base_lr · f(n)`` for epochs n = 1..M; every schedule is a float64
tensor ``f`` of length M with ``f[n − 1]`` the multiplier of epoch n.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import torch

from gsm.values import integer, number, registered
from gsm.errors import ConfigError

SCHEDULE_KEYS: dict[str, tuple[str, ...]] = {
    "constant": (),
    "staircase": ("milestones", "gamma"),
    "linspace": ("start", "end"),
    "logspace": ("start", "end"),
    "malleable": ("pieces",),
}
"""``schedule.name`` -> the ``schedule.*`` keys it reads; :func:`epoch_factors` holds each one's rule."""
SCHEDULES = tuple(SCHEDULE_KEYS)
# The largest base-10 exponent whose power is a finite float64 (logspace and malleable factors are 10^x).
MAX_EXPONENT = math.log10(sys.float_info.max)


def _exponent(key: str, value: Any) -> float:
    x = number(key, value)
    if x > MAX_EXPONENT:
        raise ConfigError(f"{key}={value!r} makes the factor 10^{x:g}, which overflows; exponents must be <= {MAX_EXPONENT:.0f}")
    return x


def _milestones(value: Any) -> list[int]:
    """Staircase milestones: a list of strictly increasing epoch numbers >= 1.

    A milestone at or beyond ``trainer.epochs`` is allowed and has no effect (a shortened smoke run of a
    300-epoch recipe keeps the recipe's milestones)."""
    key = "schedule.milestones"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"{key} must be a list of increasing epoch numbers >= 1, e.g. [150, 225] (got {value!r})")
    out = [integer(f"{key}[{i}]", m, minimum=1) for i, m in enumerate(value)]
    for i in range(1, len(out)):
        if out[i] <= out[i - 1]:
            raise ConfigError(f"{key} must be strictly increasing (got {list(value)!r}: {out[i]} after {out[i - 1]})")
    return out


def _check_factors(name: str, factors: torch.Tensor, keys: str) -> torch.Tensor:
    """Every factor finite and >= 0: a negative one trains by gradient ascent, a NaN one destroys the model."""
    bad = (~torch.isfinite(factors)) | (factors < 0)
    if bad.any():
        n = int(bad.nonzero()[0, 0]) + 1
        raise ConfigError(f"{keys}: schedule={name} gives the learning-rate factor {factors[n - 1].item()} at epoch {n}; "
                          "every factor must be finite and >= 0")
    return factors


def malleable_factors(pieces: Sequence[Sequence[float]]) -> torch.Tensor:
    """Eq. 17, continuous reading (decision E4).

    ``pieces = [(n_1, a_1, b_1), (n_2, a_2, b_2), …]`` with ``a_{i+1} = b_i``:
    piece i covers epochs n_{i−1}+1 … n_i (n_0 = 0) and is
    ``torch.logspace(a_i, b_i, n_i − n_{i−1})`` (base-10 exponents).
    Paper setting: ``[(1000, 0, −8), (1100, −8, −9)]``.
    """
    if isinstance(pieces, (str, bytes)) or not isinstance(pieces, Sequence) or not pieces:
        raise ConfigError(f"schedule.pieces must list at least one (end_epoch, a, b) piece (got {pieces!r})")
    out, prev_end, prev_b = [], 0, None
    for i, piece in enumerate(pieces):
        if isinstance(piece, (str, bytes)) or not isinstance(piece, Sequence) or len(piece) != 3:
            raise ConfigError(f"schedule.pieces[{i}] must be (end_epoch, a, b) (got {piece!r})")
        key = f"schedule.pieces[{i}]"
        end = integer(f"{key}[0] (end_epoch)", piece[0], minimum=1)
        a, b = _exponent(f"{key}[1] (a)", piece[1]), _exponent(f"{key}[2] (b)", piece[2])
        if end <= prev_end:
            raise ConfigError(f"schedule.pieces[{i}] ends at epoch {end}, not after the previous piece's end {prev_end}")
        if prev_b is not None and a != prev_b:
            raise ConfigError(f"schedule.pieces[{i}] starts at a={a} but must continue from b={prev_b} (a_(i+1) = b_i)")
        out.append(torch.logspace(a, b, end - prev_end, dtype=torch.float64))
        prev_end, prev_b = end, b
    return _check_factors("malleable", torch.cat(out), "schedule.pieces")


def epoch_factors(name: str, epochs: int, **params: Any) -> torch.Tensor:
    """Multipliers f(1..epochs) of schedule ``name`` (config group ``schedule``), each finite and >= 0.

    Every parameter is validated here, so a bad ``schedule.*`` value is a ConfigError naming the key
    before training starts (never a negative learning rate, i.e. gradient ascent, nor a NaN one).
    """
    epochs = integer("trainer.epochs", epochs, minimum=1)
    name = registered("schedule", name, SCHEDULES)
    expected = set(SCHEDULE_KEYS[name])
    unknown = set(params) - expected
    missing = expected - set(params)
    if unknown or missing:
        bad = sorted(unknown or missing)[0]
        why = "is not a setting of" if unknown else "is required by"
        raise ConfigError(f"schedule.{bad} {why} schedule={name} (keys: {sorted(expected) or 'none'})")
    if name == "constant":
        return torch.ones(epochs, dtype=torch.float64)
    if name == "staircase":
        # torch MultiStepLR semantics: epoch n (1-based) has gamma^#{milestones <= n - 1}.
        milestones = torch.tensor(_milestones(params["milestones"]), dtype=torch.float64)
        gamma = number("schedule.gamma", params["gamma"], minimum=0)
        n0 = torch.arange(epochs, dtype=torch.float64)
        factors = gamma ** (milestones[None, :] <= n0[:, None]).sum(1).to(torch.float64)
        return _check_factors(name, factors, "schedule.gamma")
    if name == "linspace":
        start = number("schedule.start", params["start"], minimum=0)
        end = number("schedule.end", params["end"], minimum=0)
        return _check_factors(name, torch.linspace(start, end, epochs, dtype=torch.float64), "schedule.start/end")
    if name == "logspace":
        start, end = _exponent("schedule.start", params["start"]), _exponent("schedule.end", params["end"])
        return _check_factors(name, torch.logspace(start, end, epochs, dtype=torch.float64), "schedule.start/end")
    factors = malleable_factors(params["pieces"])
    if len(factors) != epochs:
        raise ConfigError(f"schedule.pieces ends at epoch {len(factors)} but trainer.epochs={epochs}; they must agree")
    return factors


def build_scheduler(optimizer: torch.optim.Optimizer, factors: torch.Tensor) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR stepped once per epoch: epoch index e (0-based) gets ``factors[e]``."""
    values = [float(v) for v in factors]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: values[min(e, len(values) - 1)])
