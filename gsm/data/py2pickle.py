"""Python 2 pickles as CIFAR's official files hold them, emitted opcode by opcode as Python 2's cPickle did (str keys
as SHORT_BINSTRING/BINSTRING; the array data as a py2 str; ``numpy.core.multiarray._reconstruct``): loaded with
``encoding='latin1'`` the keys are ``str``, with ``encoding='bytes'`` they are ``bytes``. The fixtures'
(gsm.data.fixtures) CIFAR files are written with it."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np


def _emit(obj: Any, out: io.BytesIO) -> None:
    """Protocol-2 opcodes as Python 2.7's cPickle writes them (no memo: optional for readers)."""
    if obj is None:
        out.write(b"N")
    elif obj is True or obj is False:
        out.write(b"\x88" if obj else b"\x89")  # NEWTRUE / NEWFALSE
    elif isinstance(obj, int):
        if 0 <= obj < 256:
            out.write(b"K" + bytes([obj]))  # BININT1
        elif 0 <= obj < 65536:
            out.write(b"M" + struct.pack("<H", obj))  # BININT2
        else:
            out.write(b"J" + struct.pack("<i", obj))  # BININT
    elif isinstance(obj, str | bytes):  # a py2 str: 8-bit bytes, no encoding
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            out.write(b"U" + bytes([len(raw)]) + raw)  # SHORT_BINSTRING
        else:
            out.write(b"T" + struct.pack("<I", len(raw)) + raw)  # BINSTRING
    elif isinstance(obj, list):
        out.write(b"]")  # EMPTY_LIST
        if obj:
            out.write(b"(")
            for item in obj:
                _emit(item, out)
            out.write(b"e")  # APPENDS
    elif isinstance(obj, tuple):
        if 1 <= len(obj) <= 3:
            for item in obj:
                _emit(item, out)
            out.write(bytes([0x84 + len(obj)]))  # TUPLE1..3
        else:
            out.write(b"(")
            for item in obj:
                _emit(item, out)
            out.write(b"t")
    elif isinstance(obj, dict):
        out.write(b"}(")
        for key, value in obj.items():
            _emit(key, out)
            _emit(value, out)
        out.write(b"u")  # SETITEMS
    elif isinstance(obj, np.ndarray):
        if obj.dtype != np.uint8:
            raise TypeError("only uint8 arrays (CIFAR data)")
        out.write(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
        _emit((0,), out)
        _emit("b", out)
        out.write(b"\x87R(")  # TUPLE3 REDUCE MARK
        _emit(1, out)
        _emit(tuple(int(d) for d in obj.shape), out)
        out.write(b"cnumpy\ndtype\n")
        _emit(("u1", 0, 1), out)
        out.write(b"R")
        _emit((3, "|", None, None, None, -1, -1, 0), out)
        out.write(b"b")  # BUILD (dtype state)
        _emit(False, out)  # not Fortran order
        _emit(np.ascontiguousarray(obj).tobytes(), out)
        out.write(b"tb")  # TUPLE BUILD (array state)
    else:
        raise TypeError(f"cannot write {type(obj).__name__} as a Python 2 pickle")


def py2_pickle_bytes(obj: Any) -> bytes:
    out = io.BytesIO()
    out.write(b"\x80\x02")
    _emit(obj, out)
    out.write(b".")
    return out.getvalue()


def write_py2_pickle(path: Path, obj: dict[str, Any]) -> None:
    """Write ``obj`` as Python 2 did and check it loads as the real files do under both encodings."""
    blob = py2_pickle_bytes(obj)
    as_str = pickle.loads(blob, encoding="latin1")
    as_bytes = pickle.loads(blob, encoding="bytes")
    assert all(isinstance(k, str) for k in as_str) and all(isinstance(k, bytes) for k in as_bytes), path
    path.write_bytes(blob)
