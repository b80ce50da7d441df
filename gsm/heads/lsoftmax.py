"""L-softmax (Liu et al. 2016; paper §III-B), single-label only: :class:`LSoftmaxHead`, its annealed β and the
Chebyshev form of cos(mθ)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from gsm.errors import ConfigError, TrainingError
from gsm.heads.base import Head, head_sizes, to_float32
from gsm.settings import HEAD
from gsm.values import head_fits_labels


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
        head_fits_labels(self.name, bool(multilabel))
        in_features, num_classes = head_sizes(in_features, num_classes)
        super().__init__(num_classes, loss_reduction)
        # each argument is checked by its head.* key's rule (gsm.settings.HEAD), as a config's value is
        s = HEAD.check_each(margin=margin, base=base, gamma=gamma, power=power, beta_min=beta_min)
        self.margin, self.base, self.gamma, self.power, self.beta_min = s.values()
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
        f = to_float32(features)
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
    return chebyshev_cos_multiple(c, HEAD.check("margin", m))  # not 1..4: head.margin's rule says what is valid

