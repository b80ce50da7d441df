"""G-softmax's distribution term, eqs. 3-4: ``z = x + λΦ((x − μ)/σ)``, composed of torch operations
(:func:`gsoftmax_logits`) or fused with a one-pass backward (:class:`FusedGSoftmaxLogits`, the derivatives of
eqs. 5-10 by the correct chain rule, erratum E1 in docs/paper-notes.md)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from gsm.errors import ConfigError


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

