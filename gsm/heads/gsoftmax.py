"""G-softmax (eqs. 3, 4, 13; multi-label eqs. 15-16 with erratum E3): :class:`GSoftmaxHead`, its learnable
Gaussians μ, σ and the floor of σ (decision D1, docs/paper-notes.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from gsm import analysis
from gsm.errors import CheckpointError, ConfigError, TrainingError
from gsm.heads.base import Head, head_sizes
from gsm.heads.phi import gsoftmax_logits
from gsm.settings import HEAD

if TYPE_CHECKING:
    from gsm.results import LearnedStats

SIGMA_FLOOR = 1e-3
"""σ used in the forward pass is max(σ_param, SIGMA_FLOOR) (decision D1, docs/paper-notes.md)."""


def _floor_sigma(sigma_param: Tensor) -> Tensor:
    """max(σ, floor) in the value, identity in the gradient (straight-through, D1).

    The optimiser may push the raw parameter below zero; the forward pass never
    sees σ < SIGMA_FLOOR, and the gradient can still pull σ back up.
    """
    return sigma_param + (sigma_param.clamp_min(SIGMA_FLOOR) - sigma_param).detach()



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
        in_features, num_classes = head_sizes(in_features, num_classes)
        super().__init__(num_classes, loss_reduction)
        # each argument is checked by its head.* key's rule (gsm.settings.HEAD), as a config's value is
        s = HEAD.check_each(fused=fused, lam=lam, mu=mu, sigma=sigma, dist_lr_mult=dist_lr_mult, init=init,
                            learn_dist=learn_dist, init_batches=init_batches, dist_update=dist_update)
        self.fused, self.lam, self.mu_init, self.sigma_init = s["fused"], s["lam"], s["mu"], s["sigma"]
        self.dist_lr_mult, self.init, learn_dist = s["dist_lr_mult"], s["init"], s["learn_dist"]
        self.empirical_init = self.init == "empirical"
        self.init_batches, self.dist_update = s["init_batches"], s["dist_update"]
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

