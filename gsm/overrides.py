"""Values that gsm itself writes into a Hydra command line (``train.py -m … output_root=<path>``): quoted, so that
a path is data, never Hydra syntax. Unquoted, Hydra's override grammar reads ``,`` as a sweep (``/data/x,y`` would
be two runs, into ``/data/x`` and ``y``), ``=``, ``{``, ``}``, ``[``, ``]``, spaces and quotes as syntax, and
``${…}`` as an interpolation. Nothing here imports torch or Hydra.
"""

from __future__ import annotations

import re
from pathlib import Path

# keys whose value is a file or folder: ``gsm-tables -o KEY=VALUE`` takes VALUE literally (quoting it for Hydra)
PATH_KEYS = ("output_root", "dataset.root", "dataset.cache_dir", "dataset.image_dir", "model.weights_path")

# a run of backslashes before what the grammar escapes inside a quoted value: ``${`` (an interpolation), the
# closing quote, or the end of the value
_ESCAPED = re.compile(r"(\\*)(\$\{|'|$)")


def quote(value: str | Path) -> str:
    """``value`` as one single-quoted Hydra string that composes back to exactly ``value``: quotes and ``${``
    escaped with a backslash, and the backslashes before them (or at the end) doubled, as Hydra's grammar and
    OmegaConf's interpolation grammar read them."""
    text = _ESCAPED.sub(lambda m: m.group(1) * 2 + ("\\" + m.group(2) if m.group(2) else ""), str(value))
    return f"'{text}'"


def path_override(key: str, path: str | Path) -> str:
    """``key='<path>'``: a path for a Hydra command line (``output_root``, ``dataset.root``)."""
    return f"{key}={quote(path)}"


def literal_paths(overrides: list[str]) -> list[str]:
    """``-o`` overrides of gsm-tables with the value of every path key (:data:`PATH_KEYS`) taken literally:
    ``dataset.root=/data/x,y`` becomes ``dataset.root='/data/x,y'`` (one folder, not a sweep of two). A value
    already quoted (``dataset.root="/data/x"``) and ``null`` are left as they are."""
    out = []
    for ov in overrides:
        key, eq, value = ov.partition("=")
        if eq and key.lstrip("+~") in PATH_KEYS and value != "null" and not _quoted(value):
            ov = f"{key}={quote(value)}"
        out.append(ov)
    return out


def _quoted(value: str) -> bool:
    """Whether ``value`` is one quoted Hydra string (``'…'`` or ``"…"``), as Hydra's parser reads it."""
    if len(value) < 2 or value[0] not in "'\"" or value[-1] != value[0]:
        return False
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_override(f"k={value}")
    except HydraException:
        return False
    # a quoted string is written back with its quotes; an unquoted one can never start with one
    return not parsed.is_sweep_override() and parsed.get_value_element_as_str()[:1] in ("'", '"')
