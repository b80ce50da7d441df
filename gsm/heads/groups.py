"""The optimiser's parameter groups of a model holding heads: :func:`param_groups`."""

from __future__ import annotations

from typing import Any

from torch import nn

from gsm.heads.base import Head
from gsm.settings import OPTIMIZER


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Optimiser groups for any model holding heads: ``torch.optim.SGD(param_groups(model, lr, wd), lr=lr, ...)``.

    Every trainable parameter appears once. The distribution parameters (μ, σ) of
    each :class:`Head` in ``model`` get a group of their own with weight decay 0
    and lr × that head's ``dist_lr_mult`` (plus :meth:`Head.distribution_group_options`); all others
    share one group with ``lr`` and ``weight_decay`` (listed first) — every other parameter decays,
    BatchNorm's included, as in the authors' release and the WRN / DenseNet releases (``optim.sgd``
    over ``model:getParameters()``).
    """
    lr = OPTIMIZER.check("lr", lr)  # the rules of optimizer.lr and optimizer.weight_decay (gsm.settings)
    weight_decay = OPTIMIZER.check("weight_decay", weight_decay)
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
