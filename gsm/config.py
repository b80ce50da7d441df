"""Config validation: every key gsm reads, its type and its range, checked before a run starts.

* :func:`check_overrides` runs on the command line before Hydra composes anything: a plain
  ``key=value`` whose key no config file defines is an error with a "did you mean" suggestion
  (Hydra's own "Key 'epoch' is not in struct" gives none); before that, a config-group choice the group
  does not have (``head=gsofmax``, each option of a sweep) or a group that does not exist is one line with
  the valid options and the closest one (:func:`check_group_choices`, also for ``gsm-tables -o``).
* :func:`validate_config` runs on the composed config: a key that no part of gsm reads
  (``+trainer.epoch=3``) is an error naming the closest valid key, and every value gsm reads is
  type- and range-checked, with a :class:`~gsm.errors.ConfigError` naming the key and what is valid.

The known keys are not listed in Python: they are the keys the config files define — the primary
config (``train.yaml``) and the options of the groups whose ``name`` picks code (``dataset``,
``model``, ``head``, ``schedule``), taken from every directory on Hydra's search path. A new head
preset is one new YAML file. Files with a global package (``experiment/*``, ``dataset_model/*``) are
presets: they set keys defined elsewhere and define none of their own, so a typo in them is caught too.

The value helpers (:func:`integer`, :func:`number`, :func:`boolean`, :func:`one_of`, :func:`text`) live
in :mod:`gsm.values`, shared with the models, schedules and datasets (which import them from there, so
the dependency runs one way).
This module imports no torch at import time.

Hydra's public API composes whole configs; it has no call that reads one config file of a search path
unmerged (with its ``# @package`` header and parsed defaults list), lists a search path's groups without
initialising the global Hydra instance, or parses the command line as ``@hydra.main`` will. Those three
come from ``hydra._internal`` (:func:`_repository`, :func:`group_options`, :func:`check_overrides`), each
marked where it is used; everything else uses Hydra's plugin-facing ``hydra.core`` and OmegaConf's public API.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsm.errors import ConfigError
from gsm.settings import DATASET, HEAD, OPTIMIZER, RECIPE, RUN, Check, TrainerSettings
from gsm.values import head_fits_labels, number

if TYPE_CHECKING:
    from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PRIMARY = "train"
# Groups whose option selects code through its ``name``; their keys are checked per chosen option.
CODE_GROUPS = ("dataset", "model", "head", "schedule")
_ABSENT = object()

# --------------------------------------------------------------------------- the known keys


@dataclass(frozen=True)
class Catalog:
    """Keys the config files define. Keys are dotted paths of leaves (a list value is one leaf)."""

    primary: frozenset[str]  # keys the primary config (train.yaml) defines, hydra.* excluded
    options: Mapping[str, Mapping[str, frozenset[str]]]  # group -> option -> keys it sets (global paths)
    groups: frozenset[str]  # every config group path: dataset, experiment/table1, hydra/launcher, ...
    defaults: Mapping[str, str] = field(default_factory=dict)  # code group -> the primary config's default option

    @cached_property
    def known(self) -> frozenset[str]:
        """The keys gsm reads: the primary config's and those of every option of the code groups."""
        keys = set(self.primary)
        for group in CODE_GROUPS:
            for option_keys in self.options.get(group, {}).values():
                keys |= option_keys
        return frozenset(keys)

    def option_keys(self, group: str, option: str) -> frozenset[str] | None:
        return self.options.get(group, {}).get(option)


def _leaves(node: Any, prefix: str) -> Iterator[str]:
    if isinstance(node, Mapping) and node:
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif prefix:
        yield prefix


def _package(group: str, header_package: str | None) -> str:
    """The global dotted path an option's keys land at (Hydra 1.1+ package rules)."""
    own = group.replace("/", ".")
    p = header_package or "_group_"
    for token, base in (("_global_", ""), ("_group_", own)):
        if p == token:
            return base
        if p.startswith(token + "."):
            rest = p[len(token) + 1:]
            return f"{base}.{rest}" if base else rest
    return p


def _repository(sources: tuple[tuple[str, str], ...]):
    """Hydra's reader of the configs on the search path ``sources``. Private Hydra API, unavoidable: no public
    call loads one config unmerged with its header and defaults list (``ConfigResult``) or builds a search path
    outside an initialised Hydra; the compose API would merge the files and lose which file defines which key."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
    from hydra.core.plugins import Plugins

    Plugins.instance()  # registers Hydra's config sources (file://, pkg://, structured://)
    search_path = ConfigSearchPathImpl()
    for provider, path in sources:
        search_path.append(provider, path)
    return ConfigRepository(search_path)


def _load(repo: Any, path: str) -> Any:
    try:
        return repo.load_config(path)
    except Exception:  # a broken file elsewhere on the search path must not block every run
        return None


def _option_keys(repo: Any, group: str, path: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """Keys of config ``path`` (``group/option``) at their global paths, plus those of its same-group defaults."""
    from hydra.core.default_element import ConfigDefault
    from omegaconf import OmegaConf

    result = _load(repo, path)
    if result is None or path in seen:
        return set()
    body = OmegaConf.to_container(result.config, resolve=False)
    body.pop("defaults", None)
    package = _package(group, (result.header or {}).get("package"))
    keys = {k for k in _leaves(body, package) if k != "hydra" and not k.startswith("hydra.")}
    for default in result.defaults_list or []:
        if isinstance(default, ConfigDefault) and default.path not in (None, "_self_"):
            inner = default.path[1:] if default.path.startswith("/") else f"{group}/{default.path}"
            inner_group = inner.rsplit("/", 1)[0] if "/" in inner else ""
            keys |= _option_keys(repo, inner_group, inner, seen | {path})
    return keys


def _groups(repo: Any, parent: str = "") -> Iterator[str]:
    from hydra.core.object_type import ObjectType

    for sub in repo.get_group_options(parent, ObjectType.GROUP):
        group = f"{parent}/{sub}" if parent else sub
        yield group
        yield from _groups(repo, group)


def catalog(sources: tuple[tuple[str, str], ...] | None = None, primary: str = PRIMARY) -> Catalog:
    """The keys defined by the configs on the search path ``sources`` ((provider, url) pairs; default:
    gsm's own config folder). Cached: the config files are read once per process and search path (the
    default and the same path given explicitly are one entry)."""
    return _catalog(sources if sources is not None else (("main", CONFIG_DIR.as_uri()),), primary)


@lru_cache(maxsize=8)
def _catalog(sources: tuple[tuple[str, str], ...], primary: str) -> Catalog:
    from hydra.core.object_type import ObjectType
    from omegaconf import OmegaConf

    repo = _repository(sources)
    root = _load(repo, primary)
    primary_keys: set[str] = set()
    defaults: dict[str, str] = {}
    if root is not None:
        body = OmegaConf.to_container(root.config, resolve=False)
        body.pop("defaults", None)
        for item in root.defaults_list or []:  # Hydra's parsed defaults list (GroupDefault: group, value)
            group, value = getattr(item, "group", None), getattr(item, "value", None)
            if group in CODE_GROUPS and isinstance(value, str):
                defaults[group] = value
        body.pop("hydra", None)
        primary_keys = set(_leaves(body, ""))
    groups = sorted(_groups(repo))
    options: dict[str, dict[str, frozenset[str]]] = {}
    for group in groups:
        if group == "hydra" or group.startswith("hydra/"):
            continue
        for option in repo.get_group_options(group, ObjectType.CONFIG):
            options.setdefault(group, {})[option] = frozenset(_option_keys(repo, group, f"{group}/{option}"))
    return Catalog(frozenset(primary_keys), options, frozenset(groups), defaults)


# --------------------------------------------------------------------------- suggestions


def suggest(key: str, candidates: Iterable[str]) -> str | None:
    """The valid key the user most likely meant: a near-miss among the key's siblings, the same
    leaf name under another section (``trainer.lr`` -> ``optimizer.lr``), or the closest whole key."""
    cands = sorted(set(candidates))
    parent, _, leaf = key.rpartition(".")
    siblings = {c.rpartition(".")[2]: c for c in cands if c.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    if close:
        return siblings[close[0]]
    same_leaf = [c for c in cands if c.rpartition(".")[2] == leaf]
    if same_leaf:
        return same_leaf[0]
    close = difflib.get_close_matches(key, cands, n=1, cutoff=0.6)
    return close[0] if close else None


def _hint(key: str, candidates: Iterable[str]) -> str:
    cands = sorted(set(candidates))
    best = suggest(key, cands)
    if best:
        return f"did you mean {best}?"
    section = key.split(".")[0]
    same = [c for c in cands if c.split(".")[0] == section]
    if same:
        return f"the keys under {section} are {', '.join(same)}"
    return "valid top-level sections: " + ", ".join(sorted({c.split('.')[0] for c in cands}))


def _within(key: str, keys: frozenset[str] | set[str]) -> bool:
    """``key`` or one of its parents is a known leaf (a list or mapping given as one value)."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in keys for i in range(1, len(parts) + 1))


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
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def _hydra_context(cfg: Any) -> _Context:
    """Search path, group choices and overrides of the composed config, from ``cfg.hydra``
    (``compose(return_hydra_config=True)``) or from the running app's HydraConfig."""
    from omegaconf import OmegaConf

    node = _hydra_node(cfg)
    if node is None:
        return _plain_context(cfg)
    if _true(node.job.get("chdir")):  # set by a config file (the command line is checked by check_overrides)
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
            if _within(key, allowed):
                continue
            others = sorted(o for o, ks in catalog().options.get(group, {}).items() if key in ks)
            if others:
                hint = f"it is a setting of {group}={', '.join(others)}; {label} reads {', '.join(sorted(allowed))}"
            else:
                hint = _hint(key, allowed)
            errors.append(f"{_origin(key, ctx)}: {key} is not a setting of {label}; {hint}")
        elif not _within(key, known):
            errors.append(f"{_origin(key, ctx)}: no part of gsm reads {key}; {_hint(key, known)}")
    return errors


def _composed_leaves(node: Any, prefix: str, known: frozenset[str]) -> Iterator[str]:
    if prefix and prefix in known:
        yield prefix  # a known leaf, whatever its value's shape
    elif isinstance(node, Mapping) and node:
        for k, v in node.items():
            yield from _composed_leaves(v, f"{prefix}.{k}" if prefix else str(k), known)
    elif prefix:
        yield prefix


# --------------------------------------------------------------------------- values


def _resolved(cfg: Any) -> dict[str, Any]:
    """The config without ``hydra``, interpolations resolved, as plain containers (fast to look up)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

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
    from gsm.data import DATASETS
    from gsm.heads import HEAD_NAMES
    from gsm.schedules import SCHEDULES

    for key, valid in (("dataset", DATASETS), ("head", HEAD_NAMES), ("schedule", SCHEDULES)):
        name = get(f"{key}.name")
        if name is not _ABSENT and name not in valid:
            raise ConfigError(f"{key}.name={name!r} is not a {key} gsm has code for; valid: {', '.join(valid)}")


def _check_dataset(get: Callable[[str], Any]) -> None:
    """What the chosen dataset's module declares (:data:`gsm.data.DATASETS`): the smallest input it takes
    (the multi-label sets train on crops of image_size: 16), and whether its labels suit the head."""
    from gsm.data import DATASETS

    dataset = get("dataset.name")
    if dataset is _ABSENT:
        return
    info = DATASETS[dataset]
    size = get("dataset.image_size")
    if size not in (None, _ABSENT) and size < info.min_image_size:
        raise ConfigError(f"dataset.image_size must be an integer >= {info.min_image_size} for dataset={dataset} "
                          f"(got {size})")
    head = get("head.name")
    if head is not _ABSENT:
        head_fits_labels(head, info.multilabel)


def check_values(cfg: Any) -> None:
    """Type and range of every value gsm reads (see :data:`RULES`), then the checks across keys."""
    get = _getter(cfg)
    for key, rule in RULES.items():
        value = get(key)
        if value is not _ABSENT:
            rule(key, value)
    _check_registry(get)
    _check_dataset(get)
    if get("optimizer.nesterov") is True and number("optimizer.momentum", get("optimizer.momentum")) <= 0:
        raise ConfigError(f"optimizer.nesterov=true needs optimizer.momentum > 0 (got {get('optimizer.momentum')!r}); "
                          "set a momentum such as 0.9, or optimizer.nesterov=false")
    from gsm.models import check_model_config
    from gsm.schedules import epoch_factors

    model = get("model")
    if model is not _ABSENT:
        check_model_config(model)
    schedule = get("schedule")
    if isinstance(schedule, dict):
        params = dict(schedule)
        epoch_factors(str(params.pop("name", None)), get("trainer.epochs"), **params)


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


def validate_config(cfg: DictConfig | Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` unless every key of the composed ``cfg`` is one gsm reads and every
    value it reads has a valid type and range. Call right after composition, before anything is written.

    ``cfg`` is the trainer's DictConfig (the search path, group choices and overrides come from Hydra), or a
    plain resolved mapping (checked against gsm's own configs)."""
    from omegaconf import OmegaConf

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
    check_values(plain)


# --------------------------------------------------------------------------- command-line overrides


def chdir_message(where: str) -> str:
    """Why ``hydra.job.chdir=true`` is refused: with it a sweep's runs land under ``sweeps/<time>/<output_root>``,
    the logged run folder does not exist and a second sweep retrains instead of skipping finished runs."""
    return (f"{where}: gsm does not run in another directory (hydra.job.chdir=true): it resolves dataset.root, "
            "output_root and every other path itself, from the folder it is started in, and output_root chooses "
            "where runs go (e.g. output_root=/scratch/me/gsm); drop hydra.job.chdir")


def _true(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "yes", "on", "y", "1")


def _changes_directory(key: str, ov: Any) -> bool:
    """``hydra.job.chdir`` set to true (or swept over true), also as part of ``hydra.job={chdir: true}``."""
    if key not in ("hydra.job.chdir", "hydra.job"):
        return False
    values = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [ov.value()]
    if key == "hydra.job":
        values = [v.get("chdir") for v in values if isinstance(v, Mapping)]
    return any(_true(v) for v in values)


def _search_sources(config_dir: str | None, overrides: list[Any],
                    primary_dir: Path) -> tuple[tuple[str, str], ...] | None:
    """gsm's search path for this command line: ``--config-dir``, the primary folder and ``hydra.searchpath``
    (None when that is not a list: Hydra reports it)."""
    sources = [("main", primary_dir.as_uri())]
    if config_dir:
        sources.insert(0, ("command-line", Path(config_dir).expanduser().resolve().as_uri()))
    for ov in overrides:
        if ov.key_or_group == "hydra.searchpath":
            value = ov.value()
            if not isinstance(value, list):
                return None
            for path in value:
                url = str(path)
                sources.append(("hydra.searchpath in command-line", url if "://" in url else Path(url).resolve().as_uri()))
    return tuple(sources)


# --------------------------------------------------------------------------- group choices

LISTED_OPTIONS = 16  # a group with more options (experiment: 45) lists the closest few


@lru_cache(maxsize=8)
def group_options(sources: tuple[tuple[str, str], ...] | None = None) -> dict[str, tuple[str, ...]]:
    """Every config group Hydra can compose from the search path ``sources`` (default: gsm's configs), with
    the options it accepts: those of Hydra itself and its plugins (``pkg://hydra.conf``, the ConfigStore:
    ``hydra/launcher=submitit_slurm``) are added, as Hydra adds them. A group's options include those of its
    subgroups as ``sub/option`` (``experiment=table1/wrn_cifar10_gsoftmax``)."""
    # Private Hydra API: Hydra's default search path (pkg://hydra.conf, the ConfigStore, SearchPathPlugins) has no
    # public accessor short of initialising the global Hydra instance, which a running app already holds.
    from hydra._internal.utils import create_config_search_path
    from hydra.core.object_type import ObjectType

    if sources is None:
        sources = (("main", CONFIG_DIR.as_uri()),)
    own = tuple((p.provider, p.path) for p in create_config_search_path(None).get_path())
    repo = _repository(tuple(dict.fromkeys(own[:1] + sources + own[1:])))
    groups = sorted(_groups(repo))
    direct = {g: repo.get_group_options(g, ObjectType.CONFIG) for g in groups}
    return {g: tuple(sorted(o if sub == g else f"{sub[len(g) + 1:]}/{o}"
                            for sub in groups if sub == g or sub.startswith(g + "/") for o in direct[sub]))
            for g in groups}


def _chosen(ov: Any) -> list[str]:
    """The options an override selects: one, a list (``group=[a,b]``) or a sweep's (``-m head=softmax,gsoftmax``);
    ``null`` (no option), ``glob(...)`` (picks among existing ones) and interpolations are not choices to check."""
    from hydra.core.override_parser.types import ValueType

    if ov.value_type == ValueType.GLOB_CHOICE_SWEEP:
        return []
    if ov.is_sweep_override():
        values: list[Any] = list(ov.sweep_string_iterator())
    else:
        value = ov.value()
        values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if v is not None and str(v) != "null" and "${" not in str(v)]


def _closest_option(value: str, options: Sequence[str]) -> str | None:
    """:func:`suggest` over option paths (``table1/wrn_cifar10_gsoftmax``): a near-miss in the same subfolder,
    the same name in another one, or the closest whole path."""
    dotted = {o.replace("/", "."): o for o in options}
    best = suggest(value.replace("/", "."), dotted)
    return dotted.get(best) if best else None


def _valid(group: str, value: str, options: Sequence[str]) -> str:
    """The options to show: all of them, or the closest few of a long list (experiment: 45)."""
    if len(options) <= LISTED_OPTIONS:
        return f"valid: {', '.join(options)}"
    best = _closest_option(value, options)
    few = ([best] if best else []) + difflib.get_close_matches(value, options, n=6, cutoff=0)
    help_flag = "--hydra-help" if group.startswith("hydra/") else "--help"
    return (f"the closest of its {len(options)} options: {', '.join(list(dict.fromkeys(few))[:5])} "
            f"(all of them: python train.py {help_flag})")


def _option_error(line: str, group: str, value: str, options: Sequence[str]) -> str:
    if not options:
        return f"{line}: config group {group} has no options"
    best = _closest_option(value, options)
    mean = f"did you mean {group}={best}? " if best else ""
    return f"{line}: {group} has no option {value}; {mean}{_valid(group, value, options)}"


def _group_error(line: str, group: str, value: str, options: Mapping[str, Sequence[str]]) -> str:
    """An override of a config group that does not exist: the closest group (and option) there is."""
    parent = group.rpartition("/")[0]
    siblings = [g for g in options if g.rpartition("/")[0] == parent and g != "hydra"]
    best = difflib.get_close_matches(group, siblings, n=1, cutoff=0.6)
    mean = ""
    if best:
        option = value if value in options[best[0]] else _closest_option(value, options[best[0]])
        mean = f"did you mean {best[0]}={option}? " if option else f"did you mean {best[0]}? "
    return f"{line}: there is no config group {group}; {mean}the groups are {', '.join(sorted(siblings))}"


@lru_cache(maxsize=8)
def _primary_defaults(sources: tuple[tuple[str, str], ...], primary: str) -> dict[str, str | None]:
    """group -> option of the primary config's defaults list; an option may be an interpolation of other
    groups' choices (``dataset_model: ${dataset}_${model}``)."""
    from hydra.core.default_element import GroupDefault

    result = _load(_repository(sources), primary)
    return {d.group: (None if d.value is None else str(d.value)) for d in (result.defaults_list or [] if result else [])
            if isinstance(d, GroupDefault) and d.group}


def _derived_errors(overrides: list[Any], options: Mapping[str, Sequence[str]],
                    defaults: Mapping[str, str | None]) -> list[str]:
    """A default that follows other groups' choices and names an option that is not there: ``dataset=coco
    model=wrn`` -> ``dataset_model=coco_wrn`` (gsm has no such recipe; Hydra's message lists the search path).
    Not checked when the group is chosen on the command line or a preset group (``experiment``, default null)
    is, since a preset may choose other options."""
    import itertools
    import re

    given = {ov.key_or_group: ov for ov in overrides if ov.key_or_group in options and _chosen(ov)}
    if any(defaults.get(g) is None and not g.startswith("hydra") for g in given):
        return []
    errors = []
    for group, value in defaults.items():
        refs = re.findall(r"\$\{([\w/]+)\}", value or "")
        if not refs or group in given or group not in options or not any(r in given for r in refs):
            continue
        for combo in itertools.product(*[_chosen(given[r]) if r in given else [defaults.get(r) or ""] for r in refs]):
            name = value
            for ref, choice in zip(refs, combo):
                name = name.replace("${" + ref + "}", choice)
            if name not in options[group]:
                line = " ".join(given[r].input_line for r in dict.fromkeys(refs) if r in given)
                errors.append(f"{line}: {group} follows {' and '.join(dict.fromkeys(refs))} ({value}) and has no "
                              f"option {name}; choose one with {group}=<option>, {_valid(group, name, options[group])}")
                break
    return errors


def _choice_errors(overrides: list[Any], sources: tuple[tuple[str, str], ...], known: frozenset[str],
                   primary: str = PRIMARY) -> list[str]:
    """One message per override that picks an option its config group does not have (each option of a sweep
    is checked) or names a config group that does not exist (``heads=gsoftmax``, ``hydra/launchr=slurm``; a
    word close to no group is left to the key checks: ``epochs=5`` -> trainer.epochs); then a default that
    follows the choices made and is missing (:func:`_derived_errors`)."""
    from hydra.core.override_parser.types import ChoiceSweep, OverrideType

    options = group_options(sources)
    errors = []
    for ov in overrides:
        if ov.type == OverrideType.DEL:
            continue
        group, chosen = ov.key_or_group, _chosen(ov)
        if group in options:
            bad = next((v for v in chosen if v not in options[group]), None)
            if bad is not None:
                errors.append(_option_error(ov.input_line, group, bad, options[group]))
        elif ov.type == OverrideType.CHANGE and chosen and "." not in group:
            is_key = _within(group, known) or any(k.startswith(group + ".") for k in known)
            if "/" in group or (not is_key and difflib.get_close_matches(group, list(options), cutoff=0.6)):
                errors.append(_group_error(ov.input_line, group, chosen[0], options))
    return errors or _derived_errors(overrides, options, _primary_defaults(sources, primary))


def check_group_choices(overrides: list[str]) -> None:
    """Raise :class:`ConfigError` (one line) unless every config-group choice among ``overrides`` (Hydra
    override strings, e.g. ``gsm-tables -o``) is an option the group has and every group exists: e.g.
    "head=gsofmax: head has no option gsofmax; did you mean head=gsoftmax? valid: gsoftmax, lsoftmax, msml,
    softmax". Options are those of gsm's configs, Hydra's and the ``hydra.searchpath`` folders among the
    overrides. A syntax error is left to Hydra, whose message names it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return
    sources = _search_sources(None, parsed, CONFIG_DIR)
    if sources is None:
        return
    errors = _choice_errors(parsed, sources, catalog(sources).known)
    if errors:
        raise ConfigError(" | ".join(errors))


def check_overrides(argv: Sequence[str], config_dir: Path | str = CONFIG_DIR, config_name: str = PRIMARY) -> None:
    """Reject a config-group choice that the group does not have (``head=gsofmax``, also in a sweep) or a
    group that does not exist, in one line with the valid options and the closest one; then a plain
    ``key=value`` override whose key no config file defines, with a suggestion.

    Valid group choices (``dataset=cifar10``), ``hydra.*``, ``+``/``++``/``~`` overrides, sweeps and flags
    (``-m``, ``--help``, ``--cfg job``) pass; so does anything Hydra itself will reject (a syntax error).
    """
    # Private Hydra API: the parser @hydra.main uses, so that argv is read exactly as the app will read it (a copy
    # of its flags here would drift from the installed Hydra's).
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, OverrideType
    from hydra.errors import HydraException

    try:
        args = get_args_parser().parse_args(list(argv))
    except SystemExit:
        return  # Hydra prints its own usage error
    modes = [flag for flag, on in (("--run", args.run), ("--multirun/-m", args.multirun), ("--cfg", args.cfg),
                                   ("--info", args.info), ("--shell-completion", args.shell_completion)) if on]
    if len(modes) > 1:  # Hydra's own check is a ValueError traceback
        raise ConfigError(f"{' and '.join(modes)} cannot be combined; give one of them (e.g. --cfg job without -m "
                          "shows the composed config of one run)")
    if args.help or args.hydra_help or args.shell_completion or args.info or args.experimental_rerun:
        return
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except HydraException:
        return
    for ov in overrides:
        if ov.type != OverrideType.DEL and _changes_directory(ov.key_or_group, ov):
            raise ConfigError(chdir_message(ov.input_line))
    if args.config_path or (args.config_name and args.config_name != config_name):
        return  # another primary config: its keys are unknown here
    sources = _search_sources(args.config_dir, overrides, Path(config_dir))
    if sources is None:
        return
    cat = catalog(sources, config_name)
    known = cat.known
    choice_errors = _choice_errors(overrides, sources, known, config_name)
    if choice_errors:  # before the keys: which keys are valid depends on the options chosen
        raise ConfigError(" | ".join(choice_errors))
    plain = [ov for ov in overrides
             if ov.type == OverrideType.CHANGE and ov.package is None and not ov.is_hydra_override()]
    # code-group options chosen on the command line (not swept): their keys are known before composing
    chosen = {ov.key_or_group: str(ov.value()) for ov in plain
              if ov.key_or_group in CODE_GROUPS and not ov.is_sweep_override()}
    # a group left at the primary config's default option has that option's keys too, unless something on the
    # command line may change it (the group swept or deleted, or a preset such as experiment= chosen)
    named = {ov.key_or_group.lstrip("+~") for ov in overrides}
    if not named & {"experiment", "dataset_model"}:
        for group, option in cat.defaults.items():
            if group not in named:
                chosen.setdefault(group, option)
    # code-group options swept on the command line (head=softmax,gsoftmax): a key must be a setting of each
    swept = {ov.key_or_group: [str(v) for v in ov.sweep_string_iterator()] for ov in plain
             if ov.key_or_group in CODE_GROUPS and ov.is_choice_sweep() and isinstance(ov.value(), ChoiceSweep)}
    errors = []
    for ov in plain:
        key = ov.key_or_group
        if key in cat.groups or key.replace(".", "/") in cat.groups:
            continue
        if not _within(key, known) and not any(k.startswith(key + ".") for k in known):  # not even a section
            errors.append(f"{ov.input_line}: no part of gsm reads {key}; {_hint(key, known)}")
            continue
        group = key.split(".")[0]
        if group in swept and "." in key:
            lacking = [o for o in swept[group] if (ks := cat.option_keys(group, o)) is not None and not _within(key, ks)]
            if lacking:
                having = [o for o in swept[group] if o not in lacking]
                errors.append(f"{ov.input_line}: {key} is not a setting of {group}={', '.join(lacking)} (swept here"
                              f"{'; it is a setting of ' + group + '=' + ', '.join(having) if having else ''}); sweep "
                              f"the options that have it in their own command, e.g. {group}={','.join(having) or '…'} "
                              f"{ov.input_line}")
            continue
        option_keys = cat.option_keys(group, chosen[group]) if group in chosen else None
        if option_keys is not None and "." in key and not _within(key, option_keys):
            others = sorted(o for o, ks in cat.options.get(group, {}).items() if key in ks)
            where = f"it is a setting of {group}={', '.join(others)}; " if others else ""
            errors.append(f"{ov.input_line}: {key} is not a setting of {group}={chosen[group]}; {where}"
                          f"{group}={chosen[group]} reads {', '.join(sorted(option_keys))}")
    if errors:
        raise ConfigError("\n".join(errors))

