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
and hyper-parameters). Constructors validate their settings with the rules of the ``head.*`` keys
(:data:`gsm.settings.HEAD`, the same ones a config is checked with) and raise
:class:`~gsm.errors.ConfigError` naming the key.
Importing this package has no side effects.

Modules:

* :mod:`gsm.heads.base` — :class:`Head`, :class:`SoftmaxHead`, :class:`MSMLHead`, :func:`head_loss`;
* :mod:`gsm.heads.phi` — Φ of eqs. 3–4: :func:`gsoftmax_logits`, :class:`FusedGSoftmaxLogits`;
* :mod:`gsm.heads.gsoftmax` — :class:`GSoftmaxHead`, :data:`SIGMA_FLOOR`;
* :mod:`gsm.heads.lsoftmax` — :class:`LSoftmaxHead`;
* :mod:`gsm.heads.registry` — :data:`HEADS`, :func:`build_head`;
* :mod:`gsm.heads.groups` — :func:`param_groups`;
* :mod:`gsm.heads.empirical` — :func:`init_from_data` (paper §IV).
"""

from __future__ import annotations

from gsm.heads.base import Head, MSMLHead, SoftmaxHead, head_loss, logged_loss
from gsm.heads.empirical import init_from_data
from gsm.heads.groups import param_groups
from gsm.heads.gsoftmax import SIGMA_FLOOR, GSoftmaxHead
from gsm.heads.lsoftmax import LSoftmaxHead, chebyshev_cos_multiple
from gsm.heads.phi import FusedGSoftmaxLogits, gsoftmax_logits
from gsm.heads.registry import HEAD_NAMES, HEADS, build_head

__all__ = [
    "HEADS", "HEAD_NAMES", "SIGMA_FLOOR", "FusedGSoftmaxLogits", "GSoftmaxHead", "Head", "LSoftmaxHead", "MSMLHead",
    "SoftmaxHead", "build_head", "chebyshev_cos_multiple", "gsoftmax_logits", "head_loss", "init_from_data",
    "logged_loss", "param_groups",
]
