"""Config validation: every key gsm reads, its type and its range, checked before a run starts.

* :func:`check_overrides` (:mod:`gsm.config.overrides`) runs on the command line before Hydra composes
  anything: a config-group choice the group does not have (``head=gsofmax``, each option of a sweep) or a
  group that does not exist is one line with the valid options and the closest one
  (:func:`check_group_choices`, also for ``gsm-tables -o``); then a plain ``key=value`` whose key no config
  file defines is an error with a "did you mean" suggestion.
* :func:`validate_config` (:mod:`gsm.config.validate`) runs on the composed config: a key that no part of
  gsm reads (``+trainer.epoch=3``) is an error naming the closest valid key, and every value gsm reads is
  type- and range-checked by its key's one rule (:data:`RULES`, declared in :mod:`gsm.settings`), with a
  :class:`~gsm.errors.ConfigError` naming the key and what is valid.
* :func:`catalog` (:mod:`gsm.config.catalog`): the keys the config files on Hydra's search path define, and
  :func:`check_keys`: the composed config has only keys gsm reads and every key the primary config defines;
  :func:`group_options` (:mod:`gsm.config.overrides`): the groups and options Hydra can compose.

The value helpers (:func:`~gsm.values.integer`, :func:`~gsm.values.number`, ...) live in :mod:`gsm.values`,
shared with the models, schedules, datasets and heads. Importing this package imports Hydra, not torch.
"""

from __future__ import annotations

from gsm.config.catalog import (CODE_GROUPS, CONFIG_DIR, PRIMARY, Catalog, catalog, chdir_message, check_keys,
                                check_required, key_hint, suggest, unknown_key_errors, within)
from gsm.config.overrides import LISTED_OPTIONS, check_group_choices, check_overrides, group_options
from gsm.config.validate import RULES, check_values, validate_config
from gsm.errors import ConfigError

__all__ = [
    "CODE_GROUPS", "CONFIG_DIR", "LISTED_OPTIONS", "PRIMARY", "RULES", "Catalog", "ConfigError", "catalog",
    "chdir_message", "check_group_choices", "check_keys", "check_overrides", "check_required", "check_values", "group_options",
    "key_hint", "suggest", "unknown_key_errors", "validate_config", "within",
]
