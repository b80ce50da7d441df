"""The empirical initialisation of paper §IV: μ, σ of every ``init="empirical"`` head from the data
(:func:`init_from_data`, docs/paper-notes.md D12)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from gsm.errors import ConfigError, TrainingError
from gsm.heads.base import Head

log = logging.getLogger("gsm.heads")


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
    (n, Σx, Σx² per column, so (m,) single-label and (m, 2) multi-label alike); σ ≥ :data:`gsm.heads.SIGMA_FLOOR`.
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
