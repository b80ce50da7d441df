"""The head interface every head implements (:class:`Head`), the plain softmax (eq. 2, multi-label eq. 15) and
the multi-label soft margin (eq. 14), and the loss the optimiser follows (:func:`head_loss`)."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from gsm.errors import ConfigError
from gsm.settings import HEAD
from gsm.values import head_fits_labels

if TYPE_CHECKING:
    from gsm.results import LearnedStats


def to_float32(x: Tensor) -> Tensor:
    """Heads compute in at least float32, also under AMP (Φ and norms need it, D2)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x



def head_sizes(in_features: Any, num_classes: Any) -> tuple[int, int]:
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
        self.loss_reduction = HEAD.check("loss_reduction", loss_reduction)

    def fc_outputs(self, features: Tensor) -> Tensor:
        """x: (B, m) single-label / MSML, (B, m, 2) for 2m-output multi-label heads."""
        x = self.fc(to_float32(features))
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
        in_features, num_classes = head_sizes(in_features, num_classes)
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
        head_fits_labels(self.name, bool(multilabel))
        in_features, num_classes = head_sizes(in_features, num_classes)
        super().__init__(num_classes, loss_reduction)
        self.fc = nn.Linear(in_features, num_classes)

    def logits_from_x(self, x: Tensor) -> Tensor:
        return x



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

