"""The composed config, checked before a run starts (:func:`validate_config`): its keys
(:func:`gsm.config.catalog.check_keys`), then every value gsm reads, type- and range-checked by its key's one rule
(:data:`RULES`, declared in :mod:`gsm.settings`; a model's and a schedule's keys by their own code), with a
:class:`~gsm.errors.ConfigError` naming the key and what is valid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gsm.config.catalog import ABSENT, check_keys, getter
from gsm.errors import ConfigError
from gsm.settings import DATASET, HEAD, OPTIMIZER, RECIPE, RUN, Check, TrainerSettings
from gsm.values import head_fits_labels, registered

if TYPE_CHECKING:
    from omegaconf import DictConfig

# Every key whose rule does not depend on a chosen option: key -> check(key, value), each declared once in
# gsm.settings. A model's and a schedule's keys are checked by their own code (gsm.models.check_model_config,
# gsm.schedules.epoch_factors), since they depend on the option chosen.
RULES: dict[str, Check] = {
    **RUN.checks(), **RECIPE.checks(), **TrainerSettings.checks(), **OPTIMIZER.checks(), **DATASET.checks(),
    **HEAD.checks(),
}


def _check_choices(get: Callable[[str], Any]) -> None:
    """The dataset, head and schedule names that gsm has code for, then what the chosen dataset's module declares
    (:data:`gsm.data.DATASETS`): the smallest input it takes (the multi-label sets train on crops of image_size:
    16), and whether its labels suit the head."""
    # torch-backed modules, imported here: gsm.cli imports gsm.config to check a command line without torch
    from gsm.data import DATASETS
    from gsm.heads import HEAD_NAMES
    from gsm.schedules import SCHEDULES

    for key, valid in (("dataset", DATASETS), ("head", HEAD_NAMES), ("schedule", SCHEDULES)):
        name = get(f"{key}.name")
        if name is not ABSENT:
            registered(key, name, valid)
    dataset, size, head = get("dataset.name"), get("dataset.image_size"), get("head.name")
    if dataset is ABSENT:
        return
    info = DATASETS[dataset]
    if size is not ABSENT:
        info.image_size(size)  # the dataset's own minimum, in the loader's words
    if head is not ABSENT:
        head_fits_labels(head, info.multilabel)


def check_values(cfg: Any) -> dict[str, Any]:
    """Type and range of every value gsm reads (see :data:`RULES`), then the checks across keys; returns the
    checked values of :data:`RULES`' keys that ``cfg`` has (dotted key -> value in its type)."""
    get = getter(cfg)
    checked = {key: rule(key, value) for key, rule in RULES.items() if (value := get(key)) is not ABSENT}
    _check_choices(get)
    if checked.get("optimizer.nesterov") is True and checked.get("optimizer.momentum", 0) <= 0:
        raise ConfigError(f"optimizer.nesterov=true needs optimizer.momentum > 0 (got {get('optimizer.momentum')!r}); "
                          "set a momentum such as 0.9, or optimizer.nesterov=false")
    # torch-backed modules, imported here: gsm.cli imports gsm.config to check a command line without torch
    from gsm.models import check_model_config
    from gsm.schedules import epoch_factors

    model = get("model")
    if model is not ABSENT:
        check_model_config(model)
    schedule = get("schedule")
    if isinstance(schedule, dict):
        params = dict(schedule)
        epoch_factors(str(params.pop("name", None)), get("trainer.epochs"), **params)
    return checked


def validate_config(cfg: DictConfig | Mapping[str, Any]) -> TrainerSettings:
    """Raise :class:`ConfigError` unless every key of the composed ``cfg`` is one gsm reads and every
    value it reads has a valid type and range. Call right after composition, before anything is written.
    Returns the checked ``trainer.*`` values (:class:`~gsm.settings.TrainerSettings`), so that the trainer
    does not check them a second time.

    ``cfg`` is the trainer's DictConfig (the search path, group choices and overrides come from Hydra), or a
    plain resolved mapping (checked against gsm's own configs)."""
    plain = check_keys(cfg)
    checked = check_values(plain)
    prefix = "trainer."
    return TrainerSettings(**{k[len(prefix):]: v for k, v in checked.items() if k.startswith(prefix)})
