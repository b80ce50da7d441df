"""The composed config, checked before a run starts (:func:`validate_config`): a key that no part of gsm reads
(``+trainer.epoch=3``) is an error naming the closest valid key, and every value gsm reads is type- and
range-checked by its key's one rule (:data:`RULES`, declared in :mod:`gsm.settings`; a model's and a schedule's
keys by their own code), with a :class:`~gsm.errors.ConfigError` naming the key and what is valid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from gsm.config.catalog import CODE_GROUPS, PRIMARY, Catalog, catalog, key_hint, within
from gsm.config.overrides import chdir_message, is_true
from gsm.errors import ConfigError
from gsm.settings import DATASET, HEAD, OPTIMIZER, RECIPE, RUN, Check, TrainerSettings
from gsm.values import head_fits_labels, registered

if TYPE_CHECKING:
    from omegaconf import DictConfig

_ABSENT = object()

# --------------------------------------------------------------------------- unknown keys


@dataclass
class _Context:
    catalog: Catalog
    choices: dict[str, str]
    overrides: list[str]


def _hydra_node(cfg: Any) -> Any:
    """``cfg.hydra`` (``compose(return_hydra_config=True)``), the running app's HydraConfig, or None."""
    if "hydra" in cfg:
        return cfg.hydra
    return HydraConfig.get() if HydraConfig.initialized() else None


def _hydra_context(cfg: Any) -> _Context:
    """Search path, group choices and overrides of the composed config, from ``cfg.hydra``
    (``compose(return_hydra_config=True)``) or from the running app's HydraConfig."""
    node = _hydra_node(cfg)
    if node is None:
        return _plain_context(cfg)
    if is_true(node.job.get("chdir")):  # set by a config file (the command line is checked by check_overrides)
        raise ConfigError(chdir_message("hydra.job.chdir=true"))
    sources = tuple((str(s.provider), f"{s.schema}://{s.path}") for s in node.runtime.config_sources)
    choices = {k: str(v) for k, v in OmegaConf.to_container(node.runtime.choices).items()
               if v is not None and not k.startswith("hydra/")}
    overrides = [str(o) for o in node.overrides.task]
    return _Context(catalog(sources, str(node.job.config_name or PRIMARY)), choices, overrides)


def _plain_context(cfg: Mapping[str, Any]) -> _Context:
    """No Hydra node: gsm's own configs, each code group's option taken to be its name."""
    choices = {g: str(cfg[g]["name"]) for g in CODE_GROUPS if isinstance(cfg.get(g), Mapping) and "name" in cfg[g]}
    return _Context(catalog(), choices, [])


def _override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0].split("@", 1)[0]


def _origin(key: str, ctx: _Context) -> str:
    """What set ``key``: the command-line override, or a preset file chosen by a group."""
    for ov in ctx.overrides:
        ok = _override_key(ov)
        if key == ok or key.startswith(ok + "."):
            return ov
    for group, option in ctx.choices.items():
        if group in CODE_GROUPS:
            continue
        keys = ctx.catalog.option_keys(group, option)
        if keys and key in keys:
            return f"{key} (set by {group}={option})"
    return key


def _code_keys(ctx: _Context, group: str, name: Any) -> tuple[frozenset[str] | None, str]:
    """Keys gsm's code reads for ``<group>.name=<name>``: those of gsm's own ``<group>/<name>.yaml``
    (a user's preset with that name may set them, not add to them), else those of the chosen option."""
    shipped = catalog().option_keys(group, str(name))
    chosen = ctx.choices.get(group)
    label = f"{group}={chosen}" if chosen in (None, str(name)) else f"{group}={chosen} (name: {name})"
    if shipped is None and chosen is not None:
        shipped = ctx.catalog.option_keys(group, chosen)
    if shipped is None:
        return None, label
    return shipped | {k for k in ctx.catalog.primary if k.split(".")[0] == group}, label


def unknown_key_errors(body: Mapping[str, Any], ctx: _Context, plain: Mapping[str, Any]) -> list[str]:
    """One message per key of the composed config that no part of gsm reads. ``body``: the config as plain
    containers, interpolations unresolved; ``plain``: resolved. Under the code groups (dataset, model,
    head, schedule) a key must be one that the chosen ``name`` reads."""
    body = {k: v for k, v in body.items() if k != "hydra"}
    get = _getter(plain)
    cat, known = ctx.catalog, ctx.catalog.known
    errors = []
    for key in _composed_leaves(body, "", known):
        group = key.split(".")[0]
        allowed, label = (None, "")
        if group in CODE_GROUPS and isinstance(body.get(group), Mapping):
            name = get(f"{group}.name")
            if name is not _ABSENT:
                allowed, label = _code_keys(ctx, group, name)
        if allowed is not None:
            if within(key, allowed):
                continue
            others = sorted(o for o, ks in catalog().options.get(group, {}).items() if key in ks)
            if others:
                hint = f"it is a setting of {group}={', '.join(others)}; {label} reads {', '.join(sorted(allowed))}"
            else:
                hint = key_hint(key, allowed)
            errors.append(f"{_origin(key, ctx)}: {key} is not a setting of {label}; {hint}")
        elif not within(key, known):
            errors.append(f"{_origin(key, ctx)}: no part of gsm reads {key}; {key_hint(key, known)}")
    return errors


def _composed_leaves(node: Any, prefix: str, known: frozenset[str]) -> Iterator[str]:
    if prefix and prefix in known:
        yield prefix  # a known leaf, whatever its value's shape
    elif isinstance(node, Mapping) and node:
        for k, v in node.items():
            yield from _composed_leaves(v, f"{prefix}.{k}" if prefix else str(k), known)
    elif prefix:
        yield prefix


def _resolved(cfg: Any) -> dict[str, Any]:
    """The config without ``hydra``, interpolations resolved, as plain containers (fast to look up)."""
    try:
        return {str(k): OmegaConf.to_container(cfg[k], resolve=True, throw_on_missing=True)
                if OmegaConf.is_config(cfg[k]) else cfg[k] for k in cfg if k != "hydra"}
    except MissingMandatoryValue as exc:
        key = getattr(exc, "full_key", None) or "a key"
        raise ConfigError(f"{key} has no value (???); set it, e.g. {key}=<value>") from None
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "the config"
        raise ConfigError(f"{key}: cannot resolve its value ({type(exc).__name__}: {exc})") from None


def _getter(cfg: Any) -> Callable[[str], Any]:
    """``get(dotted_key)``: the resolved value, or ``_ABSENT``."""
    plain = cfg if isinstance(cfg, dict) else _resolved(cfg)

    def get(key: str) -> Any:
        node: Any = plain
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return _ABSENT
            node = node[part]
        return node

    return get


# Every key whose rule does not depend on a chosen option: key -> check(key, value), each declared once in
# gsm.settings. A model's and a schedule's keys are checked by their own code (gsm.models.check_model_config,
# gsm.schedules.epoch_factors), since they depend on the option chosen.
RULES: dict[str, Check] = {
    **RUN.checks(), **RECIPE.checks(), **TrainerSettings.checks(), **OPTIMIZER.checks(), **DATASET.checks(),
    **HEAD.checks(),
}


def _check_registry(get: Callable[[str], Any]) -> None:
    """dataset/model/head/schedule names that gsm has code for."""
    # torch-backed modules, imported here: gsm.cli imports gsm.config to check a command line without torch
    from gsm.data import DATASETS
    from gsm.heads import HEAD_NAMES
    from gsm.schedules import SCHEDULES

    for key, valid in (("dataset", DATASETS), ("head", HEAD_NAMES), ("schedule", SCHEDULES)):
        name = get(f"{key}.name")
        if name is not _ABSENT:
            registered(key, name, valid)


def _check_dataset(get: Callable[[str], Any]) -> None:
    """What the chosen dataset's module declares (:data:`gsm.data.DATASETS`): the smallest input it takes
    (the multi-label sets train on crops of image_size: 16), and whether its labels suit the head."""
    from gsm.data import DATASETS  # torch-backed: imported when a config is validated, not with gsm.config

    dataset = get("dataset.name")
    if dataset is _ABSENT:
        return
    info = DATASETS[dataset]
    size = get("dataset.image_size")
    if size is not _ABSENT:
        info.image_size(size)  # the dataset's own minimum, in the loader's words
    head = get("head.name")
    if head is not _ABSENT:
        head_fits_labels(head, info.multilabel)


def check_values(cfg: Any) -> dict[str, Any]:
    """Type and range of every value gsm reads (see :data:`RULES`), then the checks across keys; returns the
    checked values of :data:`RULES`' keys that ``cfg`` has (dotted key -> value in its type)."""
    get = _getter(cfg)
    checked = {key: rule(key, value) for key, rule in RULES.items() if (value := get(key)) is not _ABSENT}
    _check_registry(get)
    _check_dataset(get)
    if checked.get("optimizer.nesterov") is True and checked.get("optimizer.momentum", 0) <= 0:
        raise ConfigError(f"optimizer.nesterov=true needs optimizer.momentum > 0 (got {get('optimizer.momentum')!r}); "
                          "set a momentum such as 0.9, or optimizer.nesterov=false")
    # torch-backed modules, imported here: gsm.cli imports gsm.config to check a command line without torch
    from gsm.models import check_model_config
    from gsm.schedules import epoch_factors

    model = get("model")
    if model is not _ABSENT:
        check_model_config(model)
    schedule = get("schedule")
    if isinstance(schedule, dict):
        params = dict(schedule)
        epoch_factors(str(params.pop("name", None)), get("trainer.epochs"), **params)
    return checked


def check_required(cfg: Any, ctx: _Context) -> None:
    """Every key the primary config defines is still there (``~trainer.epochs`` would crash the trainer)."""
    get = _getter(cfg)
    for key in sorted(ctx.catalog.primary):
        if get(key) is _ABSENT:
            origin = next((ov for ov in ctx.overrides if ov.startswith("~") and key.startswith(_override_key(ov))), None)
            by = f" (removed by {origin})" if origin else ""
            raise ConfigError(f"{key} is missing{by}; gsm reads it, so it needs a value")
    for group in CODE_GROUPS:
        if get(f"{group}.name") is _ABSENT:
            raise ConfigError(f"{group}.name is missing: choose a {group} with {group}=<option>")


def validate_config(cfg: DictConfig | Mapping[str, Any]) -> TrainerSettings:
    """Raise :class:`ConfigError` unless every key of the composed ``cfg`` is one gsm reads and every
    value it reads has a valid type and range. Call right after composition, before anything is written.
    Returns the checked ``trainer.*`` values (:class:`~gsm.settings.TrainerSettings`), so that the trainer
    does not check them a second time.

    ``cfg`` is the trainer's DictConfig (the search path, group choices and overrides come from Hydra), or a
    plain resolved mapping (checked against gsm's own configs)."""
    if OmegaConf.is_config(cfg):
        ctx = _hydra_context(cfg)
        body = OmegaConf.to_container(cfg, resolve=False)
        plain = _resolved(cfg)
    else:
        body = plain = {k: v for k, v in cfg.items() if k != "hydra"}
        ctx = _plain_context(plain)
    errors = unknown_key_errors(body, ctx, plain)
    if errors:
        raise ConfigError("\n".join(errors))
    check_required(plain, ctx)
    checked = check_values(plain)
    prefix = "trainer."
    return TrainerSettings(**{k[len(prefix):]: v for k, v in checked.items() if k.startswith(prefix)})
