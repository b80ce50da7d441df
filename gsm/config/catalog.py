"""The keys: those the config files define (:func:`catalog`), read from the config search path, and the composed
config held against them (:func:`check_keys`): a key that no part of gsm reads (``+trainer.epoch=3``) is an error
naming the closest valid key (:func:`suggest`), a key the primary config defines must still be there, and
``hydra.job.chdir=true`` is refused (:func:`chdir_message`).

The known keys are not listed in Python: they are the keys the config files define — the primary
config (``train.yaml``) and the options of the groups whose ``name`` picks code (``dataset``,
``model``, ``head``, ``schedule``), taken from every directory on Hydra's search path. A new head
preset is one new YAML file. Files with a global package (``experiment/*``, ``dataset_model/*``) are
presets: they set keys defined elsewhere and define none of their own, so a typo in them is caught too.

Hydra's public API composes whole configs; it has no call that reads one config file of a search path
unmerged (with its ``# @package`` header and parsed defaults list), lists a search path's groups without
initialising the global Hydra instance, or parses the command line as ``@hydra.main`` will. Those three
come from ``hydra._internal`` (:func:`repository`, :func:`gsm.config.overrides.group_options` and
:func:`gsm.config.overrides.check_overrides`), each marked where it is used; everything else uses Hydra's
plugin-facing ``hydra.core`` and OmegaConf's public API. No torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
from hydra._internal.config_repository import ConfigRepository
from hydra.core.default_element import ConfigDefault
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from hydra.core.plugins import Plugins
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from gsm.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
PRIMARY = "train"
# Groups whose option selects code through its ``name``; their keys are checked per chosen option.
CODE_GROUPS = ("dataset", "model", "head", "schedule")

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


def repository(sources: tuple[tuple[str, str], ...]):
    """Hydra's reader of the configs on the search path ``sources``. Private Hydra API, unavoidable: no public
    call loads one config unmerged with its header and defaults list (``ConfigResult``) or builds a search path
    outside an initialised Hydra; the compose API would merge the files and lose which file defines which key."""
    Plugins.instance()  # registers Hydra's config sources (file://, pkg://, structured://)
    search_path = ConfigSearchPathImpl()
    for provider, path in sources:
        search_path.append(provider, path)
    return ConfigRepository(search_path)


def load_config(repo: Any, path: str) -> Any:
    try:
        return repo.load_config(path)
    except Exception:  # a broken file elsewhere on the search path must not block every run
        return None


def _option_keys(repo: Any, group: str, path: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """Keys of config ``path`` (``group/option``) at their global paths, plus those of its same-group defaults."""
    result = load_config(repo, path)
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


def config_groups(repo: Any, parent: str = "") -> Iterator[str]:
    for sub in repo.get_group_options(parent, ObjectType.GROUP):
        group = f"{parent}/{sub}" if parent else sub
        yield group
        yield from config_groups(repo, group)


def catalog(sources: tuple[tuple[str, str], ...] | None = None, primary: str = PRIMARY) -> Catalog:
    """The keys defined by the configs on the search path ``sources`` ((provider, url) pairs; default:
    gsm's own config folder). Cached: the config files are read once per process and search path (the
    default and the same path given explicitly are one entry)."""
    return _catalog(sources if sources is not None else (("main", CONFIG_DIR.as_uri()),), primary)


@lru_cache(maxsize=8)
def _catalog(sources: tuple[tuple[str, str], ...], primary: str) -> Catalog:
    repo = repository(sources)
    root = load_config(repo, primary)
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
    groups = sorted(config_groups(repo))
    options: dict[str, dict[str, frozenset[str]]] = {}
    for group in groups:
        if group == "hydra" or group.startswith("hydra/"):
            continue
        for option in repo.get_group_options(group, ObjectType.CONFIG):
            options.setdefault(group, {})[option] = frozenset(_option_keys(repo, group, f"{group}/{option}"))
    return Catalog(frozenset(primary_keys), options, frozenset(groups), defaults)


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


def key_hint(key: str, candidates: Iterable[str]) -> str:
    cands = sorted(set(candidates))
    best = suggest(key, cands)
    if best:
        return f"did you mean {best}?"
    section = key.split(".")[0]
    same = [c for c in cands if c.split(".")[0] == section]
    if same:
        return f"the keys under {section} are {', '.join(same)}"
    return "valid top-level sections: " + ", ".join(sorted({c.split('.')[0] for c in cands}))


def within(key: str, keys: frozenset[str] | set[str]) -> bool:
    """``key`` or one of its parents is a known leaf (a list or mapping given as one value)."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in keys for i in range(1, len(parts) + 1))


# --------------------------------------------------------------------------- the composed config's keys

def chdir_message(where: str) -> str:
    """Why ``hydra.job.chdir=true`` is refused: with it a sweep's runs land under ``sweeps/<time>/<output_root>``,
    the logged run folder does not exist and a second sweep retrains instead of skipping finished runs."""
    return (f"{where}: gsm does not run in another directory (hydra.job.chdir=true): it resolves dataset.root, "
            "output_root and every other path itself, from the folder it is started in, and output_root chooses "
            "where runs go (e.g. output_root=/scratch/me/gsm); drop hydra.job.chdir")


def is_true(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "yes", "on", "y", "1")


ABSENT = object()

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
    get = getter(plain)
    cat, known = ctx.catalog, ctx.catalog.known
    errors = []
    for key in _composed_leaves(body, "", known):
        group = key.split(".")[0]
        allowed, label = (None, "")
        if group in CODE_GROUPS and isinstance(body.get(group), Mapping):
            name = get(f"{group}.name")
            if name is not ABSENT:
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


def resolved(cfg: Any) -> dict[str, Any]:
    """The config without ``hydra``, interpolations resolved, as plain containers (fast to look up)."""
    try:
        return {str(k): OmegaConf.to_container(cfg[k], resolve=True, throw_on_missing=True)
                if OmegaConf.is_config(cfg[k]) else cfg[k] for k in cfg if k != "hydra"}
    except MissingMandatoryValue as exc:
        key = getattr(exc, "full_key", None) or "a key"
        raise ConfigError(f"{key} has no value (???); set it, e.g. {key}=<value>") from None
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "the config"
        reason = (str(exc).strip().splitlines() or [""])[0]  # OmegaConf appends full_key/object_type lines
        raise ConfigError(f"{key}: cannot resolve its value ({type(exc).__name__}: {reason})") from None


def getter(cfg: Any) -> Callable[[str], Any]:
    """``get(dotted_key)``: the resolved value, or ``ABSENT``."""
    plain = cfg if isinstance(cfg, dict) else resolved(cfg)

    def get(key: str) -> Any:
        node: Any = plain
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return ABSENT
            node = node[part]
        return node

    return get


def check_required(cfg: Any, ctx: _Context) -> None:
    """Every key the primary config defines is still there (``~trainer.epochs`` would crash the trainer)."""
    get = getter(cfg)
    for key in sorted(ctx.catalog.primary):
        if get(key) is ABSENT:
            origin = next((ov for ov in ctx.overrides if ov.startswith("~") and key.startswith(_override_key(ov))), None)
            by = f" (removed by {origin})" if origin else ""
            raise ConfigError(f"{key} is missing{by}; gsm reads it, so it needs a value")
    for group in CODE_GROUPS:
        if get(f"{group}.name") is ABSENT:
            raise ConfigError(f"{group}.name is missing: choose a {group} with {group}=<option>")


def check_keys(cfg: Any) -> dict[str, Any]:
    """Raise :class:`ConfigError` unless every key of the composed ``cfg`` is one gsm reads (one line per unknown
    key, with the closest valid one) and every key the primary config defines is there; returns ``cfg`` without
    ``hydra``, interpolations resolved, as plain containers. ``cfg`` is the trainer's DictConfig (the search path,
    group choices and overrides come from Hydra) or a plain resolved mapping (checked against gsm's own configs)."""
    if OmegaConf.is_config(cfg):
        ctx = _hydra_context(cfg)
        body = OmegaConf.to_container(cfg, resolve=False)
        plain = resolved(cfg)
    else:
        body = plain = {k: v for k, v in cfg.items() if k != "hydra"}
        ctx = _plain_context(plain)
    errors = unknown_key_errors(body, ctx, plain)
    if errors:
        raise ConfigError("\n".join(errors))
    check_required(plain, ctx)
    return plain
