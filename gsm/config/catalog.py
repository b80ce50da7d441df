"""The keys the config files define (:func:`catalog`) and the groups and options Hydra can compose
(:func:`group_options`), read from the config search path; the near-miss suggestions (:func:`suggest`).

The known keys are not listed in Python: they are the keys the config files define — the primary
config (``train.yaml``) and the options of the groups whose ``name`` picks code (``dataset``,
``model``, ``head``, ``schedule``), taken from every directory on Hydra's search path. A new head
preset is one new YAML file. Files with a global package (``experiment/*``, ``dataset_model/*``) are
presets: they set keys defined elsewhere and define none of their own, so a typo in them is caught too.

Hydra's public API composes whole configs; it has no call that reads one config file of a search path
unmerged (with its ``# @package`` header and parsed defaults list), lists a search path's groups without
initialising the global Hydra instance, or parses the command line as ``@hydra.main`` will. Those three
come from ``hydra._internal`` (:func:`repository`, :func:`group_options`, and
:func:`gsm.config.overrides.check_overrides`), each marked where it is used; everything else uses Hydra's
plugin-facing ``hydra.core`` and OmegaConf's public API. No torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
from hydra._internal.config_repository import ConfigRepository
from hydra._internal.utils import create_config_search_path
from hydra.core.default_element import ConfigDefault, GroupDefault
from hydra.core.object_type import ObjectType
from hydra.core.plugins import Plugins
from omegaconf import OmegaConf

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


@lru_cache(maxsize=8)
def group_options(sources: tuple[tuple[str, str], ...] | None = None) -> dict[str, tuple[str, ...]]:
    """Every config group Hydra can compose from the search path ``sources`` (default: gsm's configs), with
    the options it accepts: those of Hydra itself and its plugins (``pkg://hydra.conf``, the ConfigStore:
    ``hydra/launcher=submitit_slurm``) are added, as Hydra adds them. A group's options include those of its
    subgroups as ``sub/option`` (``experiment=table1/wrn_cifar10_gsoftmax``)."""
    # Private Hydra API: Hydra's default search path (pkg://hydra.conf, the ConfigStore, SearchPathPlugins) has no
    # public accessor short of initialising the global Hydra instance, which a running app already holds.
    if sources is None:
        sources = (("main", CONFIG_DIR.as_uri()),)
    own = tuple((p.provider, p.path) for p in create_config_search_path(None).get_path())
    repo = repository(tuple(dict.fromkeys(own[:1] + sources + own[1:])))
    groups = sorted(config_groups(repo))
    direct = {g: repo.get_group_options(g, ObjectType.CONFIG) for g in groups}
    return {g: tuple(sorted(o if sub == g else f"{sub[len(g) + 1:]}/{o}"
                            for sub in groups if sub == g or sub.startswith(g + "/") for o in direct[sub]))
            for g in groups}


@lru_cache(maxsize=8)
def primary_defaults(sources: tuple[tuple[str, str], ...], primary: str) -> dict[str, str | None]:
    """group -> option of the primary config's defaults list; an option may be an interpolation of other
    groups' choices (``dataset_model: ${dataset}_${model}``)."""
    result = load_config(repository(sources), primary)
    return {d.group: (None if d.value is None else str(d.value)) for d in (result.defaults_list or [] if result else [])
            if isinstance(d, GroupDefault) and d.group}
