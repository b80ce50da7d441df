"""Classification heads: softmax, L-softmax, G-softmax (single- and multi-label) and MSML.

Every head owns the final fully connected layer ``fc`` and maps backbone
features ``f`` to the logits the loss consumes:

* single-label heads return CE logits (B, m) — for G-softmax these are
  ``z = x + λΦ((x − μ)/σ)`` (eqs. 3, 4, 13);
* multi-label heads return BCE-with-logits scores ``s`` (B, m) (SPEC §2.3).

``x = head.fc(f)`` is the paper's "feature" (the input of the softmax); the
analysis of §V reads it through :meth:`Head.fc_outputs`.
Gradients come from autograd; the paper's printed gradients (eqs. 5, 6, 9, 10,
12) are wrong (erratum E1, docs/paper-notes.md).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from gsm.errors import ConfigError

SIGMA_FLOOR = 1e-3
"""σ used in the forward pass is max(σ_param, SIGMA_FLOOR) (decision D2)."""


def gsoftmax_logits(x: Tensor, mu: Tensor, sigma: Tensor, lam: float | Tensor) -> Tensor:
    """Eq. 3/4: ``z = x + λ·Φ((x − μ)/σ)`` with Φ the standard normal CDF.

    Broadcasts ``mu``/``sigma`` against ``x`` (e.g. x (B, m), mu (m,)).
    ``torch.special.ndtr`` is erfc-based, so Φ stays accurate in both tails.
    """
    return x + lam * torch.special.ndtr((x - mu) / sigma)


def _floor_sigma(sigma_param: Tensor) -> Tensor:
    """max(σ, floor) in the value, identity in the gradient (straight-through).

    The optimiser may push the raw parameter below zero; the forward pass never
    sees σ < SIGMA_FLOOR, and the gradient can still pull σ back up.
    """
    return sigma_param + (sigma_param.clamp_min(SIGMA_FLOOR) - sigma_param).detach()


def _to_float32(x: Tensor) -> Tensor:
    """Heads compute in at least float32, also under AMP (Φ and norms need it)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class Head(nn.Module):
    """Base class. Subclasses define ``fc`` and :meth:`logits_from_x`."""

    fc: nn.Linear
    name: str = "head"
    multilabel: bool = False
    paired: bool = False  # 2m outputs viewed as (B, m, 2): [..., 0] = x⁺, [..., 1] = x⁻

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def fc_outputs(self, features: Tensor) -> Tensor:
        """x: (B, m) single-label / MSML, (B, m, 2) for 2m-output multi-label heads."""
        x = self.fc(_to_float32(features))
        if self.paired:
            x = x.view(x.shape[0], self.num_classes, 2)
        return x

    def logits_from_x(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, features: Tensor, target: Tensor | None = None) -> Tensor:
        return self.logits_from_x(self.fc_outputs(features))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, multilabel={self.multilabel}"


class SoftmaxHead(Head):
    """Plain softmax (eq. 2). Multi-label: 2m outputs, P(i) = sigmoid(x⁺ − x⁻) (eq. 15, E3)."""

    name = "softmax"

    def __init__(self, in_features: int, num_classes: int, multilabel: bool = False) -> None:
        super().__init__(num_classes)
        self.multilabel = self.paired = multilabel
        self.fc = nn.Linear(in_features, 2 * num_classes if multilabel else num_classes)

    def logits_from_x(self, x: Tensor) -> Tensor:
        return x[..., 0] - x[..., 1] if self.multilabel else x


class MSMLHead(Head):
    """Multi-label soft margin (eq. 14): m outputs used directly as BCE-with-logits."""

    name = "msml"
    multilabel = True

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__(num_classes)
        self.fc = nn.Linear(in_features, num_classes)

    def logits_from_x(self, x: Tensor) -> Tensor:
        return x


class GSoftmaxHead(Head):
    """G-softmax (eqs. 3, 4, 13; multi-label per SPEC §2.3 / erratum E3).

    μ, σ are learnable (``learn_dist``), shape (m,) or (m, 2) with ``[:, 0]``
    for x⁺ and ``[:, 1]`` for x⁻. λ is a fixed hyper-parameter; λ = 0 gives
    exactly :class:`SoftmaxHead`. ``dist_lr_mult``, ``init`` and
    ``init_batches`` are read by the trainer (optimiser group, empirical init).
    """

    name = "gsoftmax"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        multilabel: bool = False,
        lam: float = 1.0,
        mu: float = 0.0,
        sigma: float = 1.0,
        learn_dist: bool = True,
        dist_lr_mult: float = 1.0,
        init: str = "constant",
        init_batches: int = 50,
    ) -> None:
        super().__init__(num_classes)
        self.multilabel = self.paired = multilabel
        self.lam = float(lam)
        self.dist_lr_mult = float(dist_lr_mult)
        self.init = init
        self.init_batches = int(init_batches)
        self.fc = nn.Linear(in_features, 2 * num_classes if multilabel else num_classes)
        shape = (num_classes, 2) if multilabel else (num_classes,)
        self.mu_param = nn.Parameter(torch.full(shape, float(mu)), requires_grad=learn_dist)
        self.sigma_param = nn.Parameter(torch.full(shape, float(sigma)), requires_grad=learn_dist)

    @property
    def mu(self) -> Tensor:
        return self.mu_param

    @property
    def sigma(self) -> Tensor:
        """σ as used in the forward pass (always ≥ SIGMA_FLOOR > 0)."""
        return _floor_sigma(self.sigma_param)

    def logits_from_x(self, x: Tensor) -> Tensor:
        z = gsoftmax_logits(x, self.mu, self.sigma, self.lam)
        return z[..., 0] - z[..., 1] if self.multilabel else z

    @torch.no_grad()
    def set_distribution(self, mu: Tensor, sigma: Tensor) -> None:
        """Set μ, σ (e.g. to the empirical mean/std of x, ``head.init=empirical``)."""
        if not (torch.isfinite(mu).all() and torch.isfinite(sigma).all()):
            raise ConfigError("head.init=empirical: the features gave non-finite μ/σ")
        self.mu_param.copy_(mu)
        self.sigma_param.copy_(sigma.clamp_min(SIGMA_FLOOR))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", lam={self.lam}"


class LSoftmaxHead(Head):
    """L-softmax (Liu et al. 2016), single-label only (SPEC §2.2).

    Target logit ``(β·W_yᵀf + ‖W_y‖‖f‖ψ(θ)) / (1 + β)`` with
    ``ψ(θ) = (−1)^k cos(mθ) − 2k`` on ``θ ∈ [kπ/m, (k+1)π/m]``; other logits
    ``W_jᵀf``. β anneals per training step:
    ``β = max(base·(1 + gamma·step)^(−power), beta_min)``; ``step`` is a buffer
    (saved in ``state_dict``). Eval mode and calls without targets return W f.
    """

    name = "lsoftmax"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        margin: int = 2,
        base: float = 1000.0,
        gamma: float = 1e-5,
        power: float = 45.0,
        beta_min: float = 0.0,
    ) -> None:
        super().__init__(num_classes)
        self.margin = int(margin)
        self.base, self.gamma, self.power, self.beta_min = float(base), float(gamma), float(power), float(beta_min)
        self.fc = nn.Linear(in_features, num_classes, bias=False)
        nn.init.kaiming_normal_(self.fc.weight)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        # cos(jπ/m), j = 1..m-1: thresholds that give k from cos θ without acos.
        self.register_buffer(
            "cos_thresholds",
            torch.tensor([math.cos(j * math.pi / self.margin) for j in range(1, self.margin)], dtype=torch.float64),
            persistent=False,
        )

    @property
    def beta(self) -> float:
        b = self.base * (1.0 + self.gamma * float(self.step)) ** (-self.power)
        return max(b, self.beta_min)

    def logits_from_x(self, x: Tensor) -> Tensor:
        return x

    def psi_of_cos(self, cos: Tensor) -> Tensor:
        """ψ(θ) from cos θ: Chebyshev T_m(cos θ) = cos(mθ), k from thresholds."""
        cos_m = chebyshev_cos_multiple(cos, self.margin)
        k = (cos.unsqueeze(-1) <= self.cos_thresholds.to(cos.dtype)).sum(-1)
        sign = 1.0 - 2.0 * (k % 2).to(cos.dtype)
        return sign * cos_m - 2.0 * k.to(cos.dtype)

    def forward(self, features: Tensor, target: Tensor | None = None) -> Tensor:
        f = _to_float32(features)
        wf = self.fc(f)
        if target is None or not self.training or self.margin == 1:
            return wf
        if target.dim() != 1:
            raise ConfigError("head=lsoftmax needs single-label integer targets (got shape %s)" % (tuple(target.shape),))
        w_y = self.fc.weight[target]  # (B, d)
        norms = w_y.norm(dim=1) * f.norm(dim=1)
        wf_y = wf.gather(1, target[:, None]).squeeze(1)
        cos = (wf_y / norms.clamp_min(1e-12)).clamp(-1.0, 1.0)
        beta = self.beta
        target_logit = (beta * wf_y + norms * self.psi_of_cos(cos)) / (1.0 + beta)
        self.step += 1
        return wf.scatter(1, target[:, None], target_logit[:, None])


def chebyshev_cos_multiple(c: Tensor, m: int) -> Tensor:
    """cos(mθ) as a polynomial of c = cos θ (Chebyshev T_m), m = 1..4."""
    if m == 1:
        return c
    if m == 2:
        return 2 * c**2 - 1
    if m == 3:
        return 4 * c**3 - 3 * c
    if m == 4:
        return 8 * c**4 - 8 * c**2 + 1
    raise ConfigError(f"head.margin must be 1, 2, 3 or 4 (got {m})")


# --------------------------------------------------------------------------- factory

_HEAD_KEYS: dict[str, tuple[str, ...]] = {
    "softmax": (),
    "msml": (),
    "gsoftmax": ("lam", "mu", "sigma", "learn_dist", "dist_lr_mult", "init", "init_batches"),
    "lsoftmax": ("margin", "base", "gamma", "power", "beta_min"),
}
HEAD_NAMES = tuple(_HEAD_KEYS)


def _finite(key: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"head.{key} must be a number (got {value!r})") from None
    if not math.isfinite(v):
        raise ConfigError(f"head.{key} must be finite (got {value!r})")
    return v


def _validate(name: str, multilabel: bool, cfg: dict[str, Any]) -> None:
    if name == "lsoftmax" and multilabel:
        raise ConfigError(
            "head=lsoftmax is single-label only: L-softmax needs the one ground-truth class "
            "(paper §III-B); use head=softmax, gsoftmax or msml on a multi-label dataset"
        )
    if name == "msml" and not multilabel:
        raise ConfigError("head=msml is the multi-label soft margin loss (eq. 14); use head=softmax on a single-label dataset")
    if name == "gsoftmax":
        for key in ("lam", "mu", "sigma", "dist_lr_mult"):
            if key in cfg:
                _finite(key, cfg[key])
        if "sigma" in cfg and float(cfg["sigma"]) <= 0:
            raise ConfigError(f"head.sigma must be > 0 (got {cfg['sigma']!r})")
        if "dist_lr_mult" in cfg and float(cfg["dist_lr_mult"]) < 0:
            raise ConfigError(f"head.dist_lr_mult must be >= 0 (got {cfg['dist_lr_mult']!r})")
        if cfg.get("init", "constant") not in ("constant", "empirical"):
            raise ConfigError(f"head.init must be 'constant' or 'empirical' (got {cfg['init']!r})")
        if "init_batches" in cfg and int(cfg["init_batches"]) < 1:
            raise ConfigError(f"head.init_batches must be >= 1 (got {cfg['init_batches']!r})")
    if name == "lsoftmax":
        margin = cfg.get("margin", 2)
        if margin not in (1, 2, 3, 4) or isinstance(margin, bool):
            raise ConfigError(f"head.margin must be 1, 2, 3 or 4 (got {margin!r}); margin < 1 is undefined")
        for key in ("base", "gamma", "power", "beta_min"):
            if key in cfg and _finite(key, cfg[key]) < 0:
                raise ConfigError(f"head.{key} must be >= 0 (got {cfg[key]!r})")


def build_head(name: str, in_features: int, num_classes: int, multilabel: bool, **cfg: Any) -> Head:
    """Build a head by name from the ``head.*`` config keys (SPEC §3).

    Unknown keys, keys of another head, and invalid values raise
    :class:`~gsm.errors.ConfigError` naming the key and what would be valid.
    """
    if name not in _HEAD_KEYS:
        raise ConfigError(f"head={name!r} is not a head; valid: {', '.join(HEAD_NAMES)}")
    allowed = _HEAD_KEYS[name]
    for key in cfg:
        if key not in allowed:
            valid = ", ".join(f"head.{k}" for k in allowed) or "none"
            raise ConfigError(f"head.{key} is not a setting of head={name} (valid keys: {valid})")
    if num_classes < 1 or in_features < 1:
        raise ConfigError(f"head needs in_features >= 1 and num_classes >= 1 (got {in_features}, {num_classes})")
    _validate(name, multilabel, cfg)
    if name == "softmax":
        return SoftmaxHead(in_features, num_classes, multilabel)
    if name == "msml":
        return MSMLHead(in_features, num_classes)
    if name == "gsoftmax":
        return GSoftmaxHead(in_features, num_classes, multilabel, **cfg)
    return LSoftmaxHead(in_features, num_classes, **cfg)


def head_loss(head: Head, logits: Tensor, target: Tensor) -> Tensor:
    """CE for single-label heads, BCE-with-logits (mean over batch and classes) for multi-label."""
    if head.multilabel:
        return nn.functional.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
    return nn.functional.cross_entropy(logits, target)
