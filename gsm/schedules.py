"""Per-epoch learning-rate multipliers (paper §III-C, SPEC §2.5).

``lr(n) = base_lr · f(n)`` for epochs n = 1..M; every schedule is a float64
tensor ``f`` of length M with ``f[n − 1]`` the multiplier of epoch n.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gsm.errors import ConfigError

SCHEDULES = ("constant", "staircase", "linspace", "logspace", "malleable")


def malleable_factors(pieces: Sequence[Sequence[float]]) -> torch.Tensor:
    """Eq. 17, continuous reading (decision E4).

    ``pieces = [(n_1, a_1, b_1), (n_2, a_2, b_2), …]`` with ``a_{i+1} = b_i``:
    piece i covers epochs n_{i−1}+1 … n_i (n_0 = 0) and is
    ``torch.logspace(a_i, b_i, n_i − n_{i−1})`` (base-10 exponents).
    Paper setting: ``[(1000, 0, −8), (1100, −8, −9)]``.
    """
    if not pieces:
        raise ConfigError("schedule.pieces must list at least one (end_epoch, a, b) piece")
    out, prev_end, prev_b = [], 0, None
    for i, piece in enumerate(pieces):
        if len(piece) != 3:
            raise ConfigError(f"schedule.pieces[{i}] must be (end_epoch, a, b) (got {list(piece)!r})")
        end, a, b = int(piece[0]), float(piece[1]), float(piece[2])
        if end <= prev_end:
            raise ConfigError(f"schedule.pieces[{i}] ends at epoch {end}, not after the previous piece's end {prev_end}")
        if prev_b is not None and a != prev_b:
            raise ConfigError(f"schedule.pieces[{i}] starts at a={a} but must continue from b={prev_b} (a_(i+1) = b_i)")
        out.append(torch.logspace(a, b, end - prev_end, dtype=torch.float64))
        prev_end, prev_b = end, b
    return torch.cat(out)


def epoch_factors(name: str, epochs: int, **params: Any) -> torch.Tensor:
    """Multipliers f(1..epochs) of schedule ``name`` (config group ``schedule``)."""
    if epochs < 1:
        raise ConfigError(f"trainer.epochs must be >= 1 (got {epochs})")
    expected = {
        "constant": set(),
        "staircase": {"milestones", "gamma"},
        "linspace": {"start", "end"},
        "logspace": {"start", "end"},
        "malleable": {"pieces"},
    }
    if name not in expected:
        raise ConfigError(f"schedule={name!r} is not a schedule; valid: {', '.join(SCHEDULES)}")
    unknown = set(params) - expected[name]
    missing = expected[name] - set(params)
    if unknown or missing:
        bad = sorted(unknown or missing)[0]
        why = "is not a setting of" if unknown else "is required by"
        raise ConfigError(f"schedule.{bad} {why} schedule={name} (keys: {sorted(expected[name]) or 'none'})")
    if name == "constant":
        return torch.ones(epochs, dtype=torch.float64)
    if name == "staircase":
        # torch MultiStepLR semantics: epoch n (1-based) has gamma^#{milestones <= n - 1}.
        milestones = torch.tensor(sorted(int(m) for m in params["milestones"]), dtype=torch.float64)
        n0 = torch.arange(epochs, dtype=torch.float64)
        return float(params["gamma"]) ** (milestones[None, :] <= n0[:, None]).sum(1).to(torch.float64)
    if name == "linspace":
        return torch.linspace(float(params["start"]), float(params["end"]), epochs, dtype=torch.float64)
    if name == "logspace":
        return torch.logspace(float(params["start"]), float(params["end"]), epochs, dtype=torch.float64)
    factors = malleable_factors(params["pieces"])
    if len(factors) != epochs:
        raise ConfigError(f"schedule.pieces ends at epoch {len(factors)} but trainer.epochs={epochs}; they must agree")
    return factors


def build_scheduler(optimizer: torch.optim.Optimizer, factors: torch.Tensor) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR stepped once per epoch: epoch index e (0-based) gets ``factors[e]``."""
    values = [float(v) for v in factors]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: values[min(e, len(values) - 1)])
