"""The one reader of ``checkpoints/last.pt``: :func:`read_checkpoint` (the whole state, with torch, for a resume)
and :func:`read_checkpoint_meta` (everything but the tensors, without torch, for ``gsm-tables status`` and the
identity checks). Both refuse a path that is no regular file and turn every way a file can be damaged into one
:class:`gsm.errors.CheckpointError` naming the file and what to do.

A torch checkpoint is a zip archive whose ``data.pkl`` pickles the state with the tensors' storages stored
beside it. The meta reader unpickles ``data.pkl`` with an unpickler that admits only plain containers and
numbers, and puts an :data:`OPAQUE` placeholder where a tensor was; nothing in the file is executed.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

from gsm.errors import CheckpointError
from gsm.identity import FileKindError, regular_file


class Opaque:
    """Where the meta reader found a tensor (or any other torch object): its value is not read."""

    def __repr__(self) -> str:
        return "<tensor>"


OPAQUE = Opaque()
# the globals torch.load(weights_only=True) admits that a checkpoint's metadata may hold (not frozenset: it refuses it)
_PLAIN = {("collections", "OrderedDict"): collections.OrderedDict, ("builtins", "set"): set,
          ("builtins", "complex"): complex}
# torch.save pickles with protocol 2, which names builtins by their Python 2 module; pickle's own find_class
# translates those names, this one (which replaces it) looks them up as written
_PLAIN.update({("__builtin__", name): value for (module, name), value in list(_PLAIN.items()) if module == "builtins"})


def _opaque(*args: Any, **kwargs: Any) -> Opaque:
    return OPAQUE


class _MetaUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PLAIN:
            return _PLAIN[(module, name)]
        if module == "torch" or module.startswith("torch."):
            return _opaque
        raise pickle.UnpicklingError(f"refers to {module}.{name}, which is not part of a gsm checkpoint")

    def persistent_load(self, pid: Any) -> Opaque:
        return OPAQUE


def _damaged(path: Path, detail: str) -> CheckpointError:
    return CheckpointError(f"cannot read checkpoint {path} ({detail}). It is truncated or corrupt, or not a gsm "
                           f"checkpoint: delete it to restart this run, or rerun with trainer.force=true")


def _checked(path: Path) -> None:
    try:
        if not regular_file(path, "checkpoint"):
            raise CheckpointError(f"no checkpoint at {path}")
    except FileKindError as exc:
        raise CheckpointError(str(exc)) from None


def read_checkpoint_meta(path: Path | str) -> dict[str, Any]:
    """The checkpoint's state with every tensor as :data:`OPAQUE`: its epoch, history, signature, data
    fingerprint and environment, without importing torch or reading the weights."""
    path = Path(path)
    _checked(path)
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if name is None:
                raise _damaged(path, "no data.pkl in the archive")
            blob = archive.read(name)
        state = _MetaUnpickler(io.BytesIO(blob)).load()
    except CheckpointError:
        raise
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path} ({exc.strerror or exc})") from None
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, RecursionError) as exc:
        raise _damaged(path, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}") from None
    if not isinstance(state, dict):
        raise _damaged(path, f"it holds a {type(state).__name__}, not a gsm checkpoint's state")
    return state


def read_checkpoint(path: Path | str) -> dict[str, Any]:
    """The whole checkpoint (``torch.load`` with ``weights_only=True``: tensors and plain containers only)."""
    import torch

    path = Path(path)
    _checked(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path} ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - torch reports damaged files as RuntimeError, UnpicklingError, EOFError ...
        # torch's message repeats advice that does not apply (weights_only=False would execute the file): one line
        detail = str(exc).rsplit("WeightsUnpickler error:", 1)[-1].strip().splitlines()
        raise _damaged(path, f"{type(exc).__name__}: {(detail[0] if detail else 'no detail')[:200]}") from None
    if not isinstance(state, dict):
        raise _damaged(path, f"it holds a {type(state).__name__}, not a gsm checkpoint's state")
    return state
