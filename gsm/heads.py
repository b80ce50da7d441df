"""Classification heads: softmax, L-softmax, G-softmax (single- and multi-label) and MSML.

Every head owns the final fully connected layer ``fc`` and maps backbone
features ``f`` to the logits the loss consumes:

* single-label heads return CE logits (B, m) — for G-softmax these are
  ``z = x + λΦ((x − μ)/σ)`` (eqs. 3, 4, 13);
* multi-label heads return BCE-with-logits scores ``s`` (B, m) (eqs. 14–16).

``x = head.fc(f)`` is the paper's "feature" (the input of the softmax); the
analysis of §V reads it through :meth:`Head.fc_outputs`.
Gradients come from autograd (G-softmax with ``fused=True``: the hand-written backward of
:class:`FusedGSoftmaxLogits`, tested equal); the paper's printed gradients (eqs. 5, 6, 9, 10,
12) are wrong (erratum E1, docs/paper-notes.md).

A head is a plain ``nn.Module``: drop it on any backbone's features, build the
optimiser with :func:`param_groups`, set the μ, σ of a ``GSoftmaxHead(init="empirical")``
from the data with :func:`init_from_data` (paper §IV), and a trainer needs only the small
hooks of :class:`Head` (distribution parameters, learned statistics, TensorBoard histograms
and hyper-parameters). Constructors validate their settings and raise
:class:`~gsm.errors.ConfigError` naming the ``head.*`` key.
Importing this module has no side effects.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from gsm import analysis
from gsm.errors import CheckpointError, ConfigError, TrainingError
from gsm.values import DIST_UPDATES, LOSS_REDUCTIONS

if TYPE_CHECKING:
    from gsm.results import LearnedStats

log = logging.getLogger(__name__)

SIGMA_FLOOR = 1e-3
"""σ used in the forward pass is max(σ_param, SIGMA_FLOOR) (decision D1, docs/paper-notes.md)."""


def gsoftmax_logits(x: Tensor, mu: Tensor, sigma: Tensor, lam: float | Tensor, *, fused: bool = False) -> Tensor:
    """Eq. 3/4: ``z = x + λ·Φ((x − μ)/σ)`` with Φ the standard normal CDF.

    Broadcasts ``mu``/``sigma`` against ``x`` (e.g. x (B, m), mu (m,)).
    ``torch.special.ndtr`` is erfc-based, so Φ stays accurate in both tails.
    ``fused=True`` computes the same z with :class:`FusedGSoftmaxLogits` (one saved tensor, the
    derivatives of eqs. 5–10 in one backward pass; ``lam`` must then be a number); the default composes
    torch operations and lets autograd differentiate them (also twice).
    """
    if fused:
        if isinstance(lam, Tensor):
            raise ConfigError("gsoftmax_logits(fused=True) takes λ as a number (eq. 3: a fixed hyper-parameter), "
                              "not a tensor; pass float(lam) or use fused=False")
        return FusedGSoftmaxLogits.apply(x, mu, sigma, float(lam))
    return x + lam * torch.special.ndtr((x - mu) / sigma)


_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class FusedGSoftmaxLogits(torch.autograd.Function):
    """``z = x + λΦ(t)``, ``t = (x − μ)/σ`` (eqs. 3, 4) with a hand-written one-pass backward.

    The forward saves only the standardised value ``t`` (and the per-class σ); the backward forms the
    Gaussian density ``φ(t) = exp(−t²/2)/√(2π)`` once from it and gives, with ``w = g·λφ(t)/σ`` for the
    incoming gradient ``g = ∂L/∂z``::

        ∂L/∂x = g + w        ∂L/∂μ = −Σ_b w        ∂L/∂σ = −Σ_b w·t

    (the correct chain rule of eqs. 5–10, erratum E1, docs/paper-notes.md), summed over the dimensions
    μ and σ were broadcast along (the batch). σ is used as given: pass the head's floored σ
    (:attr:`GSoftmaxHead.sigma`, straight-through, D1) and its gradient reaches the raw parameter as on
    the autograd path. The values equal :func:`gsoftmax_logits` with ``fused=False``; the dtypes follow
    torch's type promotion as there (x in bfloat16 under autocast with float32 μ, σ gives float32 z,
    and each gradient comes back in its input's dtype). Differentiable once: a second derivative
    (``create_graph=True``) raises; use ``fused=False`` for that.

    Call it through :func:`gsoftmax_logits` (``fused=True``) or ``GSoftmaxHead(fused=True)``;
    ``FusedGSoftmaxLogits.apply(x, mu, sigma, lam)`` with ``lam`` a Python number.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, mu: Tensor, sigma: Tensor, lam: float) -> Tensor:
        t = (x - mu) / sigma
        ctx.save_for_backward(t, sigma)
        ctx.lam = lam
        ctx.inputs = ((x.shape, x.dtype), (mu.shape, mu.dtype), (sigma.shape, sigma.dtype))
        return torch.special.ndtr(t).mul_(lam).add_(x)  # the same operations, in order, as x + λ·ndtr(t)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        t, sigma = ctx.saved_tensors
        (x_meta, mu_meta, sigma_meta), need = ctx.inputs, ctx.needs_input_grad
        if not (need[0] or need[1] or need[2]):
            return None, None, None, None
        # minus w = −g·λφ(t)/σ, φ(t) = exp(−t²/2)/√(2π): one temporary, updated in place
        minus_w = t.square().mul_(-0.5).exp_().mul_(grad).mul_(sigma.reciprocal().mul_(-ctx.lam * _INV_SQRT_2PI))
        grad_mu = _reduced(minus_w, *mu_meta) if need[1] else None
        grad_sigma = _reduced(minus_w * t, *sigma_meta) if need[2] else None
        grad_x = _reduced(grad.sub(minus_w), *x_meta) if need[0] else None
        return grad_x, grad_mu, grad_sigma, None


def _reduced(grad: Tensor, shape: torch.Size, dtype: torch.dtype) -> Tensor:
    """``grad`` summed over the dimensions its input was broadcast along, in the input's dtype."""
    if grad.shape != shape:
        grad = grad.sum_to_size(shape)
    return grad if grad.dtype == dtype else grad.to(dtype)


def _floor_sigma(sigma_param: Tensor) -> Tensor:
    """max(σ, floor) in the value, identity in the gradient (straight-through, D1).

    The optimiser may push the raw parameter below zero; the forward pass never
    sees σ < SIGMA_FLOOR, and the gradient can still pull σ back up.
    """
    return sigma_param + (sigma_param.clamp_min(SIGMA_FLOOR) - sigma_param).detach()


def _to_float32(x: Tensor) -> Tensor:
    """Heads compute in at least float32, also under AMP (Φ and norms need it, D2)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


# --------------------------------------------------------------------------- validation


def _number(key: str, value: Any, *, minimum: float | None = None, positive: bool = False) -> float:
    """A finite float for ``head.<key>``, optionally ≥ minimum or > 0; ConfigError otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"head.{key} must be a number (got {value!r})")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"head.{key} must be a number (got {value!r})") from None
    if not math.isfinite(v):
        raise ConfigError(f"head.{key} must be finite (got {value!r})")
    if positive and v <= 0:
        raise ConfigError(f"head.{key} must be > 0 (got {value!r})")
    if minimum is not None and v < minimum:
        raise ConfigError(f"head.{key} must be >= {minimum:g} (got {value!r})")
    return v


def _integer(key: str, value: Any, allowed: tuple[int, ...] | None = None, minimum: int | None = None) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and value.is_integer():
        ok, value = True, int(value)
    if ok and allowed is not None and value not in allowed:
        ok = False
    if ok and minimum is not None and value < minimum:
        ok = False
    if not ok:
        valid = ", ".join(map(str, allowed)) if allowed else f"an integer >= {minimum}"
        raise ConfigError(f"head.{key} must be {valid} (got {value!r})")
    return int(value)


def _choice(key: str, value: Any, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ConfigError(f"head.{key} must be one of {', '.join(valid)} (got {value!r})")
    return str(value)


def _sizes(in_features: Any, num_classes: Any) -> tuple[int, int]:
    sizes = []
    for key, v in (("in_features", in_features), ("num_classes", num_classes)):
        try:
            n = operator.index(v)
        except TypeError:
            n = 0
        if isinstance(v, bool) or n < 1:
            raise ConfigError(f"head needs {key} >= 1 (got {v!r})")
        sizes.append(n)
    return sizes[0], sizes[1]


# --------------------------------------------------------------------------- heads


class Head(nn.Module):
    """Base class. Subclasses define ``fc`` and :meth:`logits_from_x`.

    The hooks below let a trainer (and :func:`param_groups`) treat every head
    alike; a head without a learnable distribution keeps the defaults.

    Args:
        num_classes (int): m, the number of classes.
        loss_reduction (str, default ``"mean"``): how :func:`head_loss` reduces the loss, ``"mean"`` or
            ``"sum"`` (see :func:`head_loss`).
    """

    fc: nn.Linear
    name: str = "head"
    config_keys: tuple[str, ...] = ()  # the head.* keys build_head passes to the constructor
    multilabel: bool = False
    paired: bool = False  # 2m outputs viewed as (B, m, 2): [..., 0] = x⁺, [..., 1] = x⁻
    dist_lr_mult: float = 1.0  # lr multiplier of distribution_parameters()
    empirical_init: bool = False  # True: μ, σ come from the data, by init_from_data before training
    init_batches: int | None = 0  # batches init_from_data averages over (None: the whole loader)
    loss_reduction: str = "mean"  # head_loss: mean (default) | sum over batch (and classes), see head_loss

    def __init__(self, num_classes: int, loss_reduction: str = "mean") -> None:
        super().__init__()
        self.num_classes = num_classes
        self.loss_reduction = _choice("loss_reduction", loss_reduction, LOSS_REDUCTIONS)

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

    # ---- hooks for trainers

    def distribution_parameters(self) -> list[nn.Parameter]:
        """The learnable μ, σ (own optimiser group: lr × dist_lr_mult, no weight decay); [] if none."""
        return []

    def distribution_group_options(self) -> dict[str, Any]:
        """Optimiser settings of the μ, σ group beyond lr and weight decay ({}: the optimiser's defaults)."""
        return {}

    def finish_distribution_gradients(self, global_batch: int) -> None:
        """Called after ``backward`` (gradients unscaled) and before the optimiser step; a no-op by default.
        :class:`GSoftmaxHead` with ``dist_update="release"`` turns the autograd gradients of μ, σ into the
        authors' released update rule here."""

    def init_from_moments(self, mean: Tensor, std: Tensor) -> None:
        """Set the distribution from the mean/std of x (``head.init=empirical``; :func:`init_from_data`)."""
        raise ConfigError(
            f"head.init=empirical needs a head with a learnable distribution (head=gsoftmax); head={self.name} has none"
        )

    def learned_stats(self) -> LearnedStats | None:
        """Compactness, separability, ratio of the learned Gaussians (eqs. 18–20); None without them."""
        return None

    def histograms(self) -> dict[str, Tensor]:
        """Tensors worth a TensorBoard histogram (name → CPU tensor)."""
        return {}

    def hparams(self) -> dict[str, float | int | str]:
        """The head's settings, for TensorBoard's ``add_hparams``."""
        return {"head": self.name, "loss_reduction": self.loss_reduction}

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, multilabel={self.multilabel}"


class SoftmaxHead(Head):
    """Plain softmax (eq. 2). Multi-label: 2m outputs, P(i) = sigmoid(x⁺ − x⁻) (eq. 15, E3).

    ``head(features)`` returns the cross-entropy logits x = ``fc(f)`` (B, m), or for multi-label the
    BCE-with-logits scores x⁺ − x⁻ (B, m).

    Args:
        in_features (int): width of the backbone features f (``fc`` maps it to x).
        num_classes (int): m, the number of classes.
        multilabel (bool, default False): False: m outputs, softmax cross-entropy (eqs. 2, 13).
            True: 2m outputs viewed as (x⁺, x⁻) pairs, the loss of eq. 15 (docs/paper-notes.md E3).
        loss_reduction (str, default ``"mean"``): ``"mean"`` or ``"sum"`` over the batch (and classes),
            see :func:`head_loss`.
    """

    name = "softmax"
    config_keys = ("loss_reduction",)

    def __init__(self, in_features: int, num_classes: int, multilabel: bool = False, loss_reduction: str = "mean") -> None:
        in_features, num_classes = _sizes(in_features, num_classes)
        super().__init__(num_classes, loss_reduction)
        self.multilabel = self.paired = bool(multilabel)
        self.fc = nn.Linear(in_features, 2 * num_classes if multilabel else num_classes)

    def logits_from_x(self, x: Tensor) -> Tensor:
        return x[..., 0] - x[..., 1] if self.multilabel else x


class MSMLHead(Head):
    """Multi-label soft margin (eq. 14): m outputs used directly as BCE-with-logits. Multi-label only.

    Args:
        in_features (int): width of the backbone features f.
        num_classes (int): m, the number of classes (m outputs x_i, eq. 14).
        multilabel (bool, keyword-only, default True): must be True; False raises ConfigError (use
            :class:`SoftmaxHead` on a single-label dataset).
        loss_reduction (str, keyword-only, default ``"mean"``): ``"mean"`` or ``"sum"``, see :func:`head_loss`.
    """

    name = "msml"
    multilabel = True
    config_keys = ("loss_reduction",)

    def __init__(self, in_features: int, num_classes: int, *, multilabel: bool = True, loss_reduction: str = "mean") -> None:
        if not multilabel:
            raise ConfigError(
                "head=msml is the multi-label soft margin loss (eq. 14); use head=softmax on a single-label dataset"
            )
        in_features, num_classes = _sizes(in_features, num_classes)
        super().__init__(num_classes, loss_reduction)
        self.fc = nn.Linear(in_features, num_classes)

    def logits_from_x(self, x: Tensor) -> Tensor:
        return x


class GSoftmaxHead(Head):
    """G-softmax (eqs. 3, 4, 13; multi-label eqs. 15–16 with erratum E3).

    ``head(features)`` returns ``z = x + λΦ((x − μ)/σ)`` (B, m) for cross-entropy, or for multi-label
    the BCE-with-logits scores ``z⁺ − z⁻`` (B, m). μ, σ are learnable (``learn_dist``), shape (m,) or
    (m, 2) with ``[:, 0]`` for x⁺ and ``[:, 1]`` for x⁻; ``head.mu`` and ``head.sigma`` read them (σ as
    used, ≥ :data:`SIGMA_FLOOR`). λ is a fixed hyper-parameter saved in the state dict (loading a state
    dict of another λ raises CheckpointError); λ = 0 gives exactly :class:`SoftmaxHead`.

    Args:
        in_features (int): width of the backbone features f (``fc`` maps it to x).
        num_classes (int): m, the number of classes.
        multilabel (bool, default False): False: m outputs, cross-entropy on z (eq. 13). True: 2m
            outputs viewed as (x⁺, x⁻) pairs, each with its own μ, σ, P(i) = sigmoid(z⁺ − z⁻) (eq. 16,
            docs/paper-notes.md E3).
        lam (float, default 1.0): λ of eq. 3, the height of the distribution term (fixed, not learned).
        mu (float, default 0.0): initial μ_i of every class (eq. 4) when ``init="constant"``.
        sigma (float, default 1.0): initial σ_i of every class (eq. 4, > 0) when ``init="constant"``.
        learn_dist (bool, default True): False freezes μ, σ (no gradient, not in the optimiser).
        dist_lr_mult (float, default 1.0): lr multiplier of the μ, σ optimiser group, ≥ 0 (the paper is
            silent; the release's ``-gsm_lr_w``, 100 on NUS-WIDE); :func:`param_groups` gives μ, σ no
            weight decay.
        init (str, default ``"constant"``): ``"constant"``: μ, σ start at ``mu``, ``sigma``.
            ``"empirical"``: μ_i, σ_i start at the mean and (population) standard deviation of x_i over
            the training data (paper §IV, "empirically computing the μ and σ from data with the
            pre-trained weights"; docs/paper-notes.md D12): call :func:`init_from_data` before training;
            until then (or until a state dict is loaded) the forward pass raises TrainingError
            (``head.needs_data_init`` is True).
        init_batches (int or None, default 50): how many batches :func:`init_from_data` reads
            (≥ 1); None reads the whole loader (the paper's Table III row).
        dist_update (str, default ``"autograd"``): how μ, σ move. ``"autograd"``: eqs. 9–10 as the
            paper intends, by autograd, with the optimiser's momentum. ``"release"``: the authors'
            released Torch7 code (docs/paper-notes.md E2): single-label μ, σ are never updated
            (``train.lua`` never calls ``updateParameters``); multi-label μ, σ take a plain step of
            lr × dist_lr_mult along the batch mean of the per-image gradient, no momentum, no weight
            decay, with μ moved in the ascent direction (``src/MltGaussianSoftMaxCriterion.lua``,
            ``updateParameters``).
        loss_reduction (str, default ``"mean"``): ``"mean"`` or ``"sum"``, see :func:`head_loss`.
        fused (bool, default False): True computes z of eqs. 3–4 with :class:`FusedGSoftmaxLogits`, whose
            backward forms the derivatives of Φ (eqs. 5–10, by the correct chain rule, erratum E1) in one
            pass from the standardised value the forward saved; False lets autograd differentiate the
            composed operations. The same values and gradients either way (to rounding), with every
            other setting (σ floor D1, ``learn_dist``, ``dist_update``, ``init``); a speed setting, not a
            different method. Not twice differentiable.
    """

    name = "gsoftmax"
    config_keys = ("lam", "mu", "sigma", "learn_dist", "dist_lr_mult", "init", "init_batches", "dist_update",
                   "loss_reduction", "fused")

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
        init_batches: int | None = 50,
        dist_update: str = "autograd",
        loss_reduction: str = "mean",
        fused: bool = False,
    ) -> None:
        in_features, num_classes = _sizes(in_features, num_classes)
        super().__init__(num_classes, loss_reduction)
        if not isinstance(fused, bool):
            raise ConfigError(f"head.fused must be true or false (got {fused!r})")
        self.fused = fused
        self.lam = _number("lam", lam)
        self.mu_init = _number("mu", mu)
        self.sigma_init = _number("sigma", sigma, positive=True)
        self.dist_lr_mult = _number("dist_lr_mult", dist_lr_mult, minimum=0.0)
        if init not in ("constant", "empirical"):
            raise ConfigError(f"head.init must be 'constant' or 'empirical' (got {init!r})")
        if not isinstance(learn_dist, bool):
            raise ConfigError(f"head.learn_dist must be true or false (got {learn_dist!r})")
        self.init = init
        self.empirical_init = init == "empirical"
        self.init_batches = None if init_batches is None else _integer("init_batches", init_batches, minimum=1)
        self.dist_update = _choice("dist_update", dist_update, DIST_UPDATES)
        self.multilabel = self.paired = bool(multilabel)
        self.fc = nn.Linear(in_features, 2 * num_classes if multilabel else num_classes)
        shape = (num_classes, 2) if multilabel else (num_classes,)
        # the release never updates single-label μ, σ: they stay at their initial (or empirical) values
        learn = learn_dist and not (self.dist_update == "release" and not self.multilabel)
        self.mu_param = nn.Parameter(torch.full(shape, self.mu_init), requires_grad=learn)
        self.sigma_param = nn.Parameter(torch.full(shape, self.sigma_init), requires_grad=learn)
        # init="empirical": μ, σ are placeholders until init_from_moments (init_from_data) or a loaded state dict
        self.needs_data_init = self.empirical_init

    @property
    def mu(self) -> Tensor:
        return self.mu_param

    @property
    def sigma(self) -> Tensor:
        """σ as used in the forward pass (always ≥ SIGMA_FLOOR > 0)."""
        return _floor_sigma(self.sigma_param)

    def logits_from_x(self, x: Tensor) -> Tensor:
        if self.needs_data_init:
            raise TrainingError(
                "GSoftmaxHead(init='empirical'): μ, σ have not been set from the data yet; call "
                "gsm.heads.init_from_data(model, loader) before training (or build the head with init='constant')"
            )
        z = gsoftmax_logits(x, self.mu, self.sigma, self.lam, fused=self.fused)
        return z[..., 0] - z[..., 1] if self.multilabel else z

    # ---- λ (and whether an empirical μ, σ is set) travel with the state dict

    def get_extra_state(self) -> dict[str, Any]:
        if self.empirical_init:
            return {"lam": self.lam, "empirical_init_done": not self.needs_data_init}
        return {"lam": self.lam}

    def set_extra_state(self, state: Any) -> None:
        saved = state.get("lam") if isinstance(state, dict) else None
        if saved is None or float(saved) != self.lam:
            raise CheckpointError(
                f"head.lam: the state dict was saved by a G-softmax head with lam={saved!r}, this head has "
                f"lam={self.lam!r}; λ is a fixed hyper-parameter (eq. 3), so build the head with lam={saved!r} to load it"
            )
        # a state dict without the flag (a constant-init head, or saved before gsm recorded it) brings its μ, σ
        self.needs_data_init = self.empirical_init and not bool(state.get("empirical_init_done", True))

    # ---- hooks

    def distribution_parameters(self) -> list[nn.Parameter]:
        return [p for p in (self.mu_param, self.sigma_param) if p.requires_grad]

    def distribution_group_options(self) -> dict[str, Any]:
        """``dist_update="release"``: a plain step (no momentum, no Nesterov); weight decay is 0 either way."""
        return {"momentum": 0.0, "dampening": 0.0, "nesterov": False} if self.dist_update == "release" else {}

    @torch.no_grad()
    def finish_distribution_gradients(self, global_batch: int) -> None:
        """``dist_update="release"``, multi-label: the autograd gradients of μ, σ become the release's step.

        ``MltGaussianSoftMaxCriterion:updateParameters`` in the release moves
        ``μ ← μ − lr·mean_b(λφ(t)/σ · g)`` and ``σ ← σ − lr·mean_b(λφ(t)(μ − x)/σ² · g)`` with
        ``g = p − t`` the per-image gradient of the summed loss. ``∂L/∂μ = −λφ(t)/σ · g`` and
        ``∂L/∂σ = λφ(t)(μ − x)/σ² · g``, so the release's μ step is the gradient *ascent* step
        (erratum E2) and its σ step is descent, both on the batch mean of the summed loss. Autograd gave
        the gradient of the trainer's loss, ``L_sum`` (``loss_reduction="sum"``) or
        ``L_sum / (B·m)`` (``"mean"``); dividing by ``B`` resp. multiplying by ``m`` gives the batch mean,
        and the μ group's plain SGD step (:meth:`distribution_group_options`) finishes the rule.
        """
        if self.dist_update != "release" or not self.mu_param.requires_grad:
            return
        per_image = 1.0 / global_batch if self.loss_reduction == "sum" else float(self.num_classes)
        if self.mu_param.grad is not None:
            self.mu_param.grad.mul_(-per_image)
        if self.sigma_param.grad is not None:
            self.sigma_param.grad.mul_(per_image)

    @torch.no_grad()
    def init_from_moments(self, mean: Tensor, std: Tensor) -> None:
        """μ ← mean, σ ← max(std, floor) of x (``head.init=empirical``); shapes (m,) or (m, 2).

        :func:`init_from_data` computes the moments from a loader and calls this."""
        for key, t in (("mean", mean), ("std", std)):
            if tuple(t.shape) != tuple(self.mu_param.shape):
                raise ConfigError(
                    f"head.init=empirical: {key} has shape {tuple(t.shape)}, expected {tuple(self.mu_param.shape)} (x per class)"
                )
        if not bool(torch.isfinite(mean).all() & torch.isfinite(std).all()):
            raise ConfigError("head.init=empirical: the features gave non-finite μ/σ")
        self.mu_param.copy_(mean)
        self.sigma_param.copy_(std.clamp_min(SIGMA_FLOOR))
        self.needs_data_init = False

    set_distribution = init_from_moments  # the older name

    def learned_stats(self) -> LearnedStats:
        return analysis.learned_stats(self.mu, self.sigma)

    def histograms(self) -> dict[str, Tensor]:
        return {"mu": self.mu.detach().float().cpu(), "sigma": self.sigma.detach().float().cpu()}

    def hparams(self) -> dict[str, float | int | str]:
        return {
            "head": self.name, "lam": self.lam, "mu": self.mu_init, "sigma": self.sigma_init,
            "learn_dist": int(self.mu_param.requires_grad), "dist_lr_mult": self.dist_lr_mult,
            "init": self.init, "init_batches": -1 if self.init_batches is None else self.init_batches,
            "dist_update": self.dist_update, "loss_reduction": self.loss_reduction,
        }

    def extra_repr(self) -> str:
        return super().extra_repr() + f", lam={self.lam}" + (", fused=True" if self.fused else "")


class LSoftmaxHead(Head):
    """L-softmax (Liu et al. 2016), single-label only (paper §III-B).

    Target logit ``(β·W_yᵀf + ‖W_y‖‖f‖ψ(θ)) / (1 + β)`` with
    ``ψ(θ) = (−1)^k cos(mθ) − 2k`` on ``θ ∈ [kπ/m, (k+1)π/m]``; other logits
    ``W_jᵀf``. β anneals per training step as in the authors' Caffe layer: the
    counter ``step`` (a buffer, saved in ``state_dict``) is incremented first,
    then ``β = max(base·(1 + gamma·step)^(−power), beta_min)`` — the first step
    uses step 1. β is computed on the device (no host sync). Training needs the
    targets, ``head(features, target)``; eval mode returns ``W f``.

    Args:
        in_features (int): width of the backbone features f (``fc``: W without bias).
        num_classes (int): m, the number of classes.
        margin (int, default 4): the angular margin m̃ of §III-B (cos(m̃θ_y)), 1, 2, 3 or 4; 1 is the
            plain softmax.
        base (float, default 1000.0): β at step 0, ≥ 0 (Caffe's ``base``).
        gamma (float, default 1e-5): β's decay rate per step, ≥ 0 (Caffe's ``gamma``).
        power (float, default 45.0): β's decay exponent, ≥ 0 (Caffe's ``power``).
        beta_min (float, default 0.0): the floor of β, ≥ 0 (Caffe's ``lambda_min``).
        multilabel (bool, keyword-only, default False): must be False; True raises ConfigError
            (L-softmax needs the one ground-truth class, §III-B).
        loss_reduction (str, keyword-only, default ``"mean"``): ``"mean"`` or ``"sum"``, see :func:`head_loss`.
    """

    name = "lsoftmax"
    config_keys = ("margin", "base", "gamma", "power", "beta_min", "loss_reduction")

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        margin: int = 4,
        base: float = 1000.0,
        gamma: float = 1e-5,
        power: float = 45.0,
        beta_min: float = 0.0,
        *,
        multilabel: bool = False,
        loss_reduction: str = "mean",
    ) -> None:
        if multilabel:
            raise ConfigError(
                "head=lsoftmax is single-label only: L-softmax needs the one ground-truth class "
                "(paper §III-B); use head=softmax, gsoftmax or msml on a multi-label dataset"
            )
        in_features, num_classes = _sizes(in_features, num_classes)
        super().__init__(num_classes, loss_reduction)
        self.margin = _integer("margin", margin, allowed=(1, 2, 3, 4))
        self.base = _number("base", base, minimum=0.0)
        self.gamma = _number("gamma", gamma, minimum=0.0)
        self.power = _number("power", power, minimum=0.0)
        self.beta_min = _number("beta_min", beta_min, minimum=0.0)
        if LSoftmaxHead._advance_outside_graph is None:  # imports torch._dynamo: not at import of gsm.heads
            LSoftmaxHead._advance_outside_graph = torch.compiler.disable(LSoftmaxHead._advance)
        self.fc = nn.Linear(in_features, num_classes, bias=False)
        nn.init.kaiming_normal_(self.fc.weight)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        # cos(jπ/m), j = 1..m-1: thresholds that give k from cos θ without acos.
        self.register_buffer(
            "cos_thresholds",
            torch.tensor([math.cos(j * math.pi / self.margin) for j in range(1, self.margin)], dtype=torch.float64),
            persistent=False,
        )

    def beta_tensor(self) -> Tensor:
        """β at the current ``step``, a float64 tensor on the head's device (no host sync)."""
        b = self.base * (1.0 + self.gamma * self.step.double()).pow(-self.power)
        return b.clamp_min(self.beta_min)

    def _advance(self) -> Tensor:
        """Caffe's LargeMarginInnerProduct: ``iter_ += 1``, then β of this step (a fresh tensor).

        Runs outside torch.compile's graph (``_advance_outside_graph``): AOT autograd may otherwise
        recompute β in the backward from the counter it has already incremented, giving silently
        wrong gradients (pytorch/pytorch#197039). The cost is one graph break per step when compiled.
        """
        self.step += 1
        return self.beta_tensor()

    _advance_outside_graph: Any = None  # torch.compiler.disable(_advance), made at the first construction

    @property
    def beta(self) -> float:
        """β of the latest training step (for logs and tests; reads the device)."""
        return float(self.beta_tensor())

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
        if not self.training:
            return wf
        if target is None:
            raise TrainingError(
                "head=lsoftmax in training mode needs the targets: call head(features, target) "
                "(or head.eval() for inference); without them it would train a plain softmax"
            )
        if target.dim() != 1:
            raise ConfigError(f"head=lsoftmax needs single-label integer targets (got shape {tuple(target.shape)})")
        beta = self._advance_outside_graph().to(wf.dtype)
        if self.margin == 1:  # ψ(θ) = cos θ: the target logit is W_yᵀf for every β
            return wf
        # ‖W_y‖‖f‖ from squared row norms; the floor keeps the gradient finite (zero) for an all-zero f
        norms = (_row_squared_norm(self.fc.weight)[target] * _row_squared_norm(f)).clamp_min(1e-24).sqrt()
        wf_y = wf.gather(1, target[:, None]).squeeze(1)
        cos = (wf_y / norms).clamp(-1.0, 1.0)
        target_logit = (beta * wf_y + norms * self.psi_of_cos(cos)) / (1.0 + beta)
        is_target = target[:, None] == torch.arange(wf.shape[1], device=wf.device)
        return torch.where(is_target, target_logit[:, None], wf)

    def hparams(self) -> dict[str, float | int | str]:
        return {"head": self.name, "margin": self.margin, "base": self.base, "gamma": self.gamma,
                "power": self.power, "beta_min": self.beta_min, "loss_reduction": self.loss_reduction}

    def extra_repr(self) -> str:
        return super().extra_repr() + f", margin={self.margin}"


class _RowSquaredNorm(torch.autograd.Function):
    """‖x_i‖² per row with a one-pass backward 2·x·g (autograd's x.square().sum(1) takes several)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.linalg.vecdot(x, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return x * (2.0 * grad).unsqueeze(-1)


def _row_squared_norm(x: Tensor) -> Tensor:
    return _RowSquaredNorm.apply(x)


def chebyshev_cos_multiple(c: Tensor, m: int) -> Tensor:
    """cos(mθ) as a polynomial of c = cos θ (Chebyshev T_m), m = 1..4."""
    if m == 1:
        return c
    if m == 2:
        return 2 * c**2 - 1
    if m == 3:
        return 4 * c**3 - 3 * c
    if m == 4:
        c2 = c * c
        return 8 * c2 * c2 - 8 * c2 + 1
    raise ConfigError(f"head.margin must be 1, 2, 3 or 4 (got {m})")


# --------------------------------------------------------------------------- factory and optimiser groups

HEADS: dict[str, type[Head]] = {cls.name: cls for cls in (SoftmaxHead, MSMLHead, GSoftmaxHead, LSoftmaxHead)}
"""head name (``head.name``, ``gsm/configs/head/<name>.yaml``) → class. A new head adds itself here."""
HEAD_NAMES = tuple(HEADS)


def build_head(name: str, in_features: int, num_classes: int, multilabel: bool = False, **cfg: Any) -> Head:
    """Build a head by name from the ``head.*`` config keys (``gsm/configs/head/<name>.yaml``).

    Unknown keys, keys of another head, and invalid values raise
    :class:`~gsm.errors.ConfigError` naming the key and what would be valid.
    """
    cls = HEADS.get(name)
    if cls is None:
        raise ConfigError(f"head={name!r} is not a head; valid: {', '.join(HEADS)}")
    for key in cfg:
        if key not in cls.config_keys:
            valid = ", ".join(f"head.{k}" for k in cls.config_keys) or "none"
            raise ConfigError(f"head.{key} is not a setting of head={name} (valid keys: {valid})")
    return cls(in_features, num_classes, multilabel=multilabel, **cfg)


def head_loss(head: Head, logits: Tensor, target: Tensor) -> Tensor:
    """The loss the optimiser follows: CE (single-label) or BCE-with-logits (multi-label), reduced by
    ``head.loss_reduction``.

    ``mean`` (the default): over the batch, and for multi-label over batch and classes. ``sum``: summed
    over batch and classes — the gradient the authors' release trains the multi-label tables on
    (``MultiCrossEntropyCriterion.lua``: its backward is ``p − t`` with no 1/B, erratum E5), which their
    lr 1e-5 assumes. :func:`logged_loss` gives the per-image value that logs and curves show either way.
    """
    if head.multilabel:
        return nn.functional.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction=head.loss_reduction)
    return nn.functional.cross_entropy(logits, target, reduction=head.loss_reduction)


def logged_loss(head: Head, loss: Tensor, logits: Tensor) -> Tensor:
    """The value of :func:`head_loss` with ``mean`` reduction, whatever ``head.loss_reduction`` is: the train
    loss logs, summary.csv and TensorBoard show (comparable with the test loss and across recipes)."""
    if head.loss_reduction == "mean":
        return loss
    return loss / (logits.numel() if head.multilabel else logits.shape[0])


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Optimiser groups for any model holding heads: ``torch.optim.SGD(param_groups(model, lr, wd), lr=lr, ...)``.

    Every trainable parameter appears once. The distribution parameters (μ, σ) of
    each :class:`Head` in ``model`` get a group of their own with weight decay 0
    and lr × that head's ``dist_lr_mult`` (plus :meth:`Head.distribution_group_options`); all others
    share one group with ``lr`` and ``weight_decay`` (listed first) — every other parameter decays,
    BatchNorm's included, as in the authors' release and the WRN / DenseNet releases (``optim.sgd``
    over ``model:getParameters()``).
    """
    lr = _optim_number("lr", lr)
    weight_decay = _optim_number("weight_decay", weight_decay)
    seen: set[int] = set()
    dist_groups: list[dict[str, Any]] = []
    for module in model.modules():
        if not isinstance(module, Head):
            continue
        params = [p for p in module.distribution_parameters() if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            dist_groups.append({"params": params, "lr": lr * module.dist_lr_mult, "weight_decay": 0.0,
                                **module.distribution_group_options()})
    rest: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            rest.append(p)
    main = [{"params": rest, "lr": lr, "weight_decay": weight_decay}] if rest else []
    return main + dist_groups


def _optim_number(key: str, value: Any) -> float:
    """A library caller's argument of :func:`param_groups`, in gsm.config's words for the key (the trainer's
    optimizer.* values are checked there, once, before they get here)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not math.isfinite(v) or v < 0:
        raise ConfigError(f"optimizer.{key} must be a finite number >= 0 (got {value!r})")
    return v


# --------------------------------------------------------------------------- empirical initialisation (paper §IV)


class _HeadsReached(Exception):
    """Raised by init_from_data's forward pre-hook once every head's features are captured: the rest of the
    forward pass is not needed."""


@torch.no_grad()
def init_from_data(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    amp: torch.dtype | None = None,
    all_reduce: Callable[[Tensor], Any] | None = None,
) -> int:
    """The empirical initialisation of paper §IV ("empirically computing the μ and σ from data with the
    pre-trained weights"): μ_i, σ_i of Φ(x_i; μ_i, σ_i) (eqs. 3–4; x⁺_i, x⁻_i separately for eq. 16) ←
    the mean and population standard deviation of x_i over the images ``loader`` gives, for every
    head in ``model`` built with ``init="empirical"`` (docs/paper-notes.md D12). Call it once before
    training; the forward pass of such a head raises TrainingError until it has run (or a state dict
    is loaded).

    The statistics pool all images, not only those of class i, and are accumulated in float64
    (n, Σx, Σx² per column, so (m,) single-label and (m, 2) multi-label alike); σ ≥ :data:`SIGMA_FLOOR`.
    Usage::

        head = GSoftmaxHead(512, num_classes=10, init="empirical")
        model = nn.Sequential(backbone, head)
        gsm.heads.init_from_data(model, train_loader)

    Args:
        model (nn.Module): the model; ``model(images)`` must call the head(s) on the backbone features.
            A ``torch.compile`` or (Distributed)DataParallel wrapper is unwrapped: the plain model runs,
            in eval mode (each module's train/eval mode is restored afterwards), and stops at the head,
            so nothing after it runs.
        loader (iterable): gives image tensors or ``(images, ...)`` tuples/lists (a ``DataLoader``);
            images are moved to the head's device. The first ``head.init_batches`` batches are read
            (the head's ``init_batches``; None: all of them).
        amp (torch.dtype or None, keyword-only, default None): the autocast dtype of the forward pass up
            to the head (``torch.bfloat16``/``torch.float16``); x itself is computed in float32 as in
            training (docs/paper-notes.md D2).
        all_reduce (callable or None, keyword-only, default None): for data-parallel training, a
            function that sums a float64 tensor in place across processes (e.g.
            ``torch.distributed.all_reduce``), so every process sets the same μ, σ from all images.

    Returns:
        The number of images the statistics were computed from (all processes together).

    Raises:
        ConfigError: ``model`` has no head with ``init="empirical"``, its heads disagree on
            ``init_batches``, or the loader gives something that is not images.
        TrainingError: the loader gave no images, or ``model(images)`` never called a head.
    """
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while isinstance(model, wrappers) or hasattr(model, "_orig_mod"):  # _orig_mod: torch.compile's wrapper
        model = model.module if isinstance(model, wrappers) else model._orig_mod
    heads = [m for m in model.modules() if isinstance(m, Head) and m.empirical_init]
    if not heads:
        raise ConfigError(
            "gsm.heads.init_from_data: the model has no head with init='empirical' "
            "(build it as GSoftmaxHead(..., init='empirical') for μ, σ from the data)"
        )
    limits = {h.init_batches for h in heads}
    if len(limits) > 1:
        raise ConfigError(f"gsm.heads.init_from_data: the model's heads read different init_batches {sorted(limits, key=str)}; "
                          f"give them one value")
    (batches,) = limits
    device = heads[0].fc.weight.device
    features: dict[int, Tensor] = {}

    def capture(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        features[id(module)] = args[0] if args else kwargs["features"]
        if len(features) == len(heads):
            raise _HeadsReached

    sums: list[list[Any]] = [[0.0, None, None] for _ in heads]  # n, Σx, Σx² per head
    modes = [(m, m.training) for m in model.modules()]
    hooks = [h.register_forward_pre_hook(capture, with_kwargs=True) for h in heads]
    model.eval()
    try:
        for i, batch in enumerate(loader):
            if batches is not None and i >= batches:
                break
            images = _images_of(batch).to(device, non_blocking=True)
            features.clear()
            try:
                with torch.autocast(images.device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    model(images)
            except _HeadsReached:
                pass
            missing = [type(h).__name__ for h in heads if id(h) not in features]
            if missing:
                raise TrainingError(f"gsm.heads.init_from_data: model(images) never called its {', '.join(missing)}; "
                                    f"pass the model whose forward applies the head to the backbone's features")
            for head, acc in zip(heads, sums):
                x = head.fc_outputs(features[id(head)]).double()  # x in float32 (or wider), summed in float64
                acc[0] += x.shape[0]
                acc[1] = x.sum(0) if acc[1] is None else acc[1] + x.sum(0)
                acc[2] = (x**2).sum(0) if acc[2] is None else acc[2] + (x**2).sum(0)
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes:
            module.training = training
    total = 0
    for head, (n, s1, s2) in zip(heads, sums):
        if s1 is None:  # this process read no batch; others may have
            width = head.fc_outputs(torch.zeros(1, head.fc.in_features, device=device)).shape[1:]
            s1 = s2 = torch.zeros(width, dtype=torch.float64, device=device)
        stats = torch.stack([torch.full_like(s1, n), s1, s2])
        if all_reduce is not None:
            all_reduce(stats)
        n, s1, s2 = stats
        count = int(n.flatten()[0])
        if count == 0:
            raise TrainingError("gsm.heads.init_from_data: the loader gave no images; μ, σ need at least one batch")
        mu = s1 / n
        sigma = (s2 / n - mu**2).clamp_min(0).sqrt()
        dtype = head.fc.weight.dtype
        head.init_from_moments(mu.to(dtype), sigma.to(dtype))
        log.info("head.init=empirical: μ mean %.4f, σ mean %.4f over %d images", mu.mean(), sigma.mean(), count)
        total = count
    return total


def _images_of(batch: Any) -> Tensor:
    """The image tensor of a loader's batch: the batch itself or its first element."""
    images = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    if not isinstance(images, Tensor):
        raise ConfigError(f"gsm.heads.init_from_data: the loader must give image tensors or (images, ...) tuples "
                          f"(got a batch of type {type(batch).__name__})")
    return images
