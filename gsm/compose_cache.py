"""A cache on disk of composed experiment configs, shared by every gsm process of a machine.

A table's grid composes each of its experiments with Hydra (``gsm.grid``): about 0.2 s each, so 5 s for
Table I's 24 rows, in every ``gsm-tables`` command (a table, ``status``, the estimate, the figures). A
composition is a pure function of its inputs, and this cache keys it by all of them:

* the exact override list given to Hydra's compose (``experiment=...``, the profile's and the user's
  overrides, a variant's),
* every file of the config folder (path and bytes), and this module's and ``gsm/grid.py``'s own source
  (the code that turns Hydra's answer into what is stored),
* the versions of gsm, Hydra and OmegaConf, and the files of the installed Hydra plugins (``hydra_plugins``:
  a plugin may add config sources) by path, size and modification time.

A change to any of them is another key, so a stale entry is never read: it is simply not found. An override
of a ``hydra.*`` key (``hydra.searchpath`` brings in other folders) is never cached. What is stored is the
resolved config without its ``hydra`` node and the config-group choices; configs outside ``hydra/`` use
only interpolations between their own keys (``tests/test_compose_cache.py`` holds them to it: an
``${oc.env:...}`` or ``${now:...}`` value would depend on more than the key).

Where: ``$GSM_CACHE_DIR`` if set (``GSM_CACHE_DIR=off`` turns the cache off), else
``$XDG_CACHE_HOME/gsm`` or ``~/.cache/gsm``; the entries are under ``compose/``, one JSON file each
(a few KB), written atomically. Deleting the folder is always safe. A cache that cannot be read or written
only costs the composition (a debug log line); it never fails a command.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OFF = "off"
_FORMAT = 1  # the layout of an entry; bumped when it changes


def cache_root() -> Path | None:
    """gsm's cache folder (``$GSM_CACHE_DIR``, else ``$XDG_CACHE_HOME/gsm``, else ``~/.cache/gsm``); None when
    ``GSM_CACHE_DIR=off``."""
    given = os.environ.get("GSM_CACHE_DIR")
    if given is not None:
        return None if given.strip().lower() in (OFF, "") else Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gsm"


def _tree_digest(h, root: Path, stat_only: bool = False) -> None:
    """Every file under ``root`` into ``h``: its relative path and its bytes (or size and mtime)."""
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        if stat_only:
            st = path.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            h.update(hashlib.sha256(path.read_bytes()).digest())


def _plugin_dirs() -> list[Path]:
    """The folders of the ``hydra_plugins`` namespace package (where Hydra finds its plugins), found without
    importing it."""
    import importlib.util

    spec = importlib.util.find_spec("hydra_plugins")
    return sorted(Path(p) for p in (spec.submodule_search_locations or [])) if spec else []


def _identical(a: Any, b: Any) -> bool:
    """``a == b`` with equal types throughout (1 == 1.0 == True for ``==``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)  # NaN equals NaN here


class ComposeCache:
    """The entries of one config folder (see the module's docstring)."""

    def __init__(self, folder: Path, config_dir: Path) -> None:
        import hydra
        import omegaconf

        import gsm

        self.folder = folder
        h = hashlib.sha256(f"gsm-compose-{_FORMAT}|{gsm.__version__}|{hydra.__version__}|{omegaconf.__version__}".encode())
        _tree_digest(h, Path(config_dir))
        for source in (Path(__file__), Path(__file__).with_name("grid.py")):
            h.update(hashlib.sha256(source.read_bytes()).digest())
        for plugins in _plugin_dirs():
            h.update(str(plugins).encode())
            _tree_digest(h, plugins, stat_only=True)
        self._base = h.hexdigest()

    @classmethod
    def open(cls, config_dir: Path) -> ComposeCache | None:
        """The cache of ``config_dir``'s compositions; None when it is off or its key cannot be computed."""
        root = cache_root()
        if root is None:
            return None
        try:
            return cls(root / "compose", config_dir)
        except OSError as exc:
            log.debug("compose cache off: %s", exc)
            return None

    @staticmethod
    def cacheable(overrides: list[str]) -> bool:
        """Whether a composition with ``overrides`` may be cached: none of them sets a ``hydra.*`` key or group."""
        return not any(ov.split("=", 1)[0].lstrip("+~").startswith("hydra") for ov in overrides)

    def _path(self, overrides: list[str]) -> Path:
        key = hashlib.sha256((self._base + "\0" + json.dumps(list(overrides))).encode()).hexdigest()
        return self.folder / f"{key}.json"

    def get(self, overrides: list[str]) -> tuple[dict[str, Any], dict[str, str]] | None:
        """The stored (config, choices) of a composition with ``overrides``, or None."""
        if not self.cacheable(overrides):
            return None
        path = self._path(overrides)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            if entry.get("overrides") == list(overrides):
                return entry["config"], entry["choices"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            log.debug("compose cache: %s unreadable (%s); composing again", path, exc)
        return None

    def put(self, overrides: list[str], config: dict[str, Any], choices: dict[str, str]) -> None:
        """Store a composition (atomically; a failure is only logged)."""
        if not self.cacheable(overrides):
            return
        path = self._path(overrides)
        try:
            entry = {"overrides": list(overrides), "config": config, "choices": choices}
            text = json.dumps(entry)
            if not _identical(json.loads(text), entry):  # e.g. an int dict key would come back a string
                log.debug("compose cache: %s does not survive JSON unchanged; not stored", overrides)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except (OSError, TypeError, ValueError) as exc:
            log.debug("compose cache: cannot write %s (%s)", path, exc)
