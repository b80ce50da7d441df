"""The command line, checked before Hydra composes anything (:func:`check_overrides`): a config-group
choice the group does not have (``head=gsofmax``, each option of a sweep) or a group that does not exist is
one line with the valid options and the closest one (:func:`check_group_choices`, also for ``gsm-tables -o``);
then a plain ``key=value`` whose key no config file defines is an error with a "did you mean" suggestion
(Hydra's own "Key 'epoch' is not in struct" gives none). No torch: ``gsm.cli`` answers from here before the
trainer is imported.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from hydra._internal.utils import create_config_search_path, get_args_parser
from hydra.core.default_element import GroupDefault
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, OverrideType, ValueType
from hydra.errors import HydraException

from gsm.config.catalog import (CODE_GROUPS, CONFIG_DIR, PRIMARY, catalog, chdir_message, config_groups, is_true,
                                key_hint, load_config, repository, suggest, within)
from gsm.errors import ConfigError


def _changes_directory(key: str, ov: Any) -> bool:
    """``hydra.job.chdir`` set to true (or swept over true), also as part of ``hydra.job={chdir: true}``."""
    if key not in ("hydra.job.chdir", "hydra.job"):
        return False
    values = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [ov.value()]
    if key == "hydra.job":
        values = [v.get("chdir") for v in values if isinstance(v, Mapping)]
    return any(is_true(v) for v in values)


def search_sources(config_dir: str | None, overrides: list[Any],
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


def app_config_groups() -> str:
    """What Hydra's help prints for ``$APP_CONFIG_GROUPS`` with gsm's configs: each group that has configs of its own,
    sorted, ``group: option, option``, one line each (Hydra's ``format_config_groups``, without Hydra's ~100
    compositions of the config repository; tests/test_train_cli.py holds the two equal)."""
    own = tuple((p.provider, p.path) for p in create_config_search_path(None).get_path())
    repo = repository(tuple(dict.fromkeys(own[:1] + (("main", CONFIG_DIR.as_uri()),) + own[1:])))
    lines = []
    for group in sorted(config_groups(repo)):
        options = sorted(repo.get_group_options(group, ObjectType.CONFIG))
        if options and not (group == "hydra" or group.startswith("hydra/")):
            lines.append(f"{group}: {', '.join(options)}\n")
    return "".join(lines)


@lru_cache(maxsize=8)
def primary_defaults(sources: tuple[tuple[str, str], ...], primary: str) -> dict[str, str | None]:
    """group -> option of the primary config's defaults list; an option may be an interpolation of other
    groups' choices (``dataset_model: ${dataset}_${model}``)."""
    result = load_config(repository(sources), primary)
    return {d.group: (None if d.value is None else str(d.value)) for d in (result.defaults_list or [] if result else [])
            if isinstance(d, GroupDefault) and d.group}


LISTED_OPTIONS = 16  # a group with more options (experiment: 45) lists the closest few


def _chosen(ov: Any) -> list[str]:
    """The options an override selects: one, a list (``group=[a,b]``) or a sweep's (``-m head=softmax,gsoftmax``);
    ``null`` (no option), ``glob(...)`` (picks among existing ones) and interpolations are not choices to check."""
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


def _derived_errors(overrides: list[Any], options: Mapping[str, Sequence[str]],
                    defaults: Mapping[str, str | None]) -> list[str]:
    """A default that follows other groups' choices and names an option that is not there: ``dataset=coco
    model=wrn`` -> ``dataset_model=coco_wrn`` (gsm has no such recipe; Hydra's message lists the search path).
    Not checked when the group is chosen on the command line or a preset group (``experiment``, default null)
    is, since a preset may choose other options."""
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
            is_key = within(group, known) or any(k.startswith(group + ".") for k in known)
            if "/" in group or (not is_key and difflib.get_close_matches(group, list(options), cutoff=0.6)):
                errors.append(_group_error(ov.input_line, group, chosen[0], options))
    return errors or _derived_errors(overrides, options, primary_defaults(sources, primary))


def check_group_choices(overrides: list[str]) -> None:
    """Raise :class:`ConfigError` (one line) unless every config-group choice among ``overrides`` (Hydra
    override strings, e.g. ``gsm-tables -o``) is an option the group has and every group exists: e.g.
    "head=gsofmax: head has no option gsofmax; did you mean head=gsoftmax? valid: gsoftmax, lsoftmax, msml,
    softmax". Options are those of gsm's configs, Hydra's and the ``hydra.searchpath`` folders among the
    overrides. A syntax error is left to Hydra, whose message names it."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return
    sources = search_sources(None, parsed, CONFIG_DIR)
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
    sources = search_sources(args.config_dir, overrides, Path(config_dir))
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
        if not within(key, known) and not any(k.startswith(key + ".") for k in known):  # not even a section
            errors.append(f"{ov.input_line}: no part of gsm reads {key}; {key_hint(key, known)}")
            continue
        group = key.split(".")[0]
        if group in swept and "." in key:
            lacking = [o for o in swept[group] if (ks := cat.option_keys(group, o)) is not None and not within(key, ks)]
            if lacking:
                having = [o for o in swept[group] if o not in lacking]
                errors.append(f"{ov.input_line}: {key} is not a setting of {group}={', '.join(lacking)} (swept here"
                              f"{'; it is a setting of ' + group + '=' + ', '.join(having) if having else ''}); sweep "
                              f"the options that have it in their own command, e.g. {group}={','.join(having) or '…'} "
                              f"{ov.input_line}")
            continue
        option_keys = cat.option_keys(group, chosen[group]) if group in chosen else None
        if option_keys is not None and "." in key and not within(key, option_keys):
            others = sorted(o for o, ks in cat.options.get(group, {}).items() if key in ks)
            where = f"it is a setting of {group}={', '.join(others)}; " if others else ""
            errors.append(f"{ov.input_line}: {key} is not a setting of {group}={chosen[group]}; {where}"
                          f"{group}={chosen[group]} reads {', '.join(sorted(option_keys))}")
    if errors:
        raise ConfigError("\n".join(errors))
