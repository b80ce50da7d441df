"""``test_outputs.pt``: the figures' x, p and targets of a run's test split, with its own small schema.

Written by :func:`write_test_outputs` (stamped with the run's signature; the run's record keeps the file's SHA-256)
and validated on read by :func:`read_test_outputs` (``torch.load`` with ``weights_only=True``: nothing in the file is
executed); :func:`read_run_outputs` reads a run's file checked against its record. Its ``schema_version`` is
:data:`OUTPUTS_SCHEMA_VERSION`; a file without the key (written before it existed) holds the same tensors and is
read as version 0; version 1 is version 2 without the signature.
"""

from __future__ import annotations

import errno
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsm.errors import DataError
from gsm.text import one_line

if typing.TYPE_CHECKING:
    import numpy as np
    import torch

    from gsm.results import RunRecord


OUTPUTS_SCHEMA_VERSION = 2
READABLE_OUTPUTS_VERSIONS = (0, 1, 2)  # 0: written before the key existed (the same three tensors); 2: + signature
OUTPUTS_KEYS = ("x", "p", "targets")


class OutputsError(DataError):
    """A test_outputs.pt cannot be read as a run's test outputs (the message names the file and what is wrong)."""


@dataclass(frozen=True)
class TestOutputs:
    """A run's ``test_outputs.pt``: what the figures plot, for the N test images of the run's m classes."""

    __test__ = False  # not a pytest test class

    x: np.ndarray  # fc outputs, float32: (N, m), or (N, m, 2) for multi-label [x⁺, x⁻]
    p: np.ndarray  # probabilities, float32 (stored float16): softmax (N, m) or sigmoid (N, m)
    targets: np.ndarray  # int64: class index (N,), or 0/1 labels (N, m) for multi-label
    multilabel: bool
    schema_version: int  # 0 for a file written before the version key

    @property
    def x_pos(self) -> np.ndarray:
        """The feature the figures plot: x (N, m), or x⁺ of a multi-label run."""
        return self.x[..., 0] if self.x.ndim == 3 else self.x


def write_test_outputs(path: Path | str, x: torch.Tensor, p: torch.Tensor, targets: torch.Tensor, *,
                       multilabel: bool, signature: str | None = None, create_folder: bool = True) -> Path:
    """Write ``test_outputs.pt`` (schema :data:`OUTPUTS_SCHEMA_VERSION`) atomically: x as float32, p as float16,
    targets as int16 (class indices) or uint8 (multi-label 0/1), and the run's ``signature``, checked by the
    reader's own validation first. The run's record keeps the file's digest (:func:`file_sha256`)."""
    import torch

    from gsm import runs

    path = Path(path)
    blob = {"schema_version": OUTPUTS_SCHEMA_VERSION, "x": x.detach().float().cpu(), "p": p.detach().half().cpu(),
            "targets": targets.detach().cpu().to(torch.uint8 if multilabel else torch.int16), "signature": signature}
    check_test_outputs(blob, path, multilabel=multilabel)
    runs.atomic_write_bytes(path, lambda fh: torch.save(blob, fh), create_folder=create_folder)
    return path


def file_sha256(path: Path | str) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_run_outputs(rec: RunRecord) -> TestOutputs:
    """The test outputs of a run read from its folder, checked against its record: the record's shape, the
    record's signature and, where the record keeps it (schema 5), the digest of the file written with it. A file
    copied from another run, or written by another attempt than the record's, raises :class:`OutputsError`."""
    if rec.run_dir is None:
        raise OutputsError("a record that was not read from a run folder has no test outputs")
    path = rec.run_dir / "test_outputs.pt"
    out = read_test_outputs(path, multilabel=rec.multilabel, num_classes=rec.num_classes, samples=rec.test_samples,
                            signature=rec.signature)
    if rec.test_outputs_sha256 is not None and file_sha256(path) != rec.test_outputs_sha256:
        raise OutputsError(f"{path}: not the test outputs written with {rec.path.name} (its digest differs: replaced "
                           f"after the run, or copied from another run)")
    return out


def read_test_outputs(path: Path | str, *, multilabel: bool | None = None, num_classes: int | None = None,
                      samples: int | None = None, signature: str | None = None) -> TestOutputs:
    """Read and validate ``test_outputs.pt``; :class:`OutputsError` naming the file and what is wrong.

    ``torch.load(weights_only=True)``: only tensors and plain containers are unpickled, nothing in the file is
    executed. ``multilabel``, ``num_classes`` and ``samples`` (the run's record: test_samples) are checked when given.
    """
    import pickle

    import torch

    from gsm.identity import FileKindError, regular_file

    path = Path(path)
    try:
        if not regular_file(path, "test outputs file"):
            raise OutputsError(f"{path}: cannot read (no such file)")
        size = path.stat().st_size
    except FileKindError as exc:
        raise OutputsError(str(exc)) from None
    except OSError as exc:
        raise OutputsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise OutputsError(f"{path}: empty file (an interrupted write?)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOENT, errno.ENOTDIR, errno.EIO):
            raise OutputsError(f"{path}: cannot read ({exc.strerror or exc})") from None
        # torch's reader reports some truncations as an OSError (EINVAL: a seek past the end)
        raise OutputsError(f"{path}: not a torch file, truncated or corrupt ({exc.strerror or exc})") from None
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise OutputsError(f"{path}: refers to {found.group(1)}, which the safe loader refuses (not test outputs "
                               f"written by gsm; nothing in it was executed)") from None
        detail = str(exc).rsplit("WeightsUnpickler error:", 1)[-1]
        raise OutputsError(f"{path}: not a torch file, truncated or corrupt ({_first_sentence(detail)})") from None
    except Exception as exc:  # noqa: BLE001 - torch reports damaged files as RuntimeError, EOFError, ValueError, ...
        raise OutputsError(f"{path}: not a torch file, truncated or corrupt "
                           f"({type(exc).__name__}: {_first_sentence(str(exc))})") from None
    out = check_test_outputs(blob, path, multilabel=multilabel, num_classes=num_classes, samples=samples)
    if signature is not None and blob.get("signature") not in (None, signature):
        raise OutputsError(f"{path}: belongs to another run: it carries signature {blob.get('signature')!r}, the "
                           f"run's is {signature!r} (copied from another run folder?)")
    return out


def _first_sentence(text: str) -> str:
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return one_line(line.split(". ")[0].removesuffix("."), 100)


def check_test_outputs(blob: Any, path: Path | str, *, multilabel: bool | None = None, num_classes: int | None = None,
                       samples: int | None = None) -> TestOutputs:
    """The one validation of test outputs (the reader's and the writer's): keys, version, shapes, dtypes, values."""
    import torch

    def bad(why: str) -> OutputsError:
        return OutputsError(f"{path}: {why}")

    if not isinstance(blob, dict):
        raise bad(f"a {type(blob).__name__}, not test outputs (a dict of {', '.join(OUTPUTS_KEYS)})")
    version = blob.get("schema_version", 0)
    if type(version) is not int or version not in READABLE_OUTPUTS_VERSIONS or ("schema_version" in blob and version == 0):
        raise bad(f"schema_version {one_line(repr(version), 40)}; this gsm reads test outputs of version "
                  f"{OUTPUTS_SCHEMA_VERSION} (and files without the key)")
    missing = [k for k in OUTPUTS_KEYS if k not in blob]
    if missing:
        keys = ", ".join(one_line(str(k), 40) for k in list(blob)[:8]) or "none"
        raise bad(f"not test outputs: no {', '.join(missing)} (keys: {keys})")
    known = (*OUTPUTS_KEYS, "schema_version", *(("signature",) if version >= 2 else ()))
    unknown = sorted(str(k) for k in blob if k not in known)
    if unknown:
        raise bad(f"keys this gsm does not know: {one_line(', '.join(unknown), 80)} (schema_version {version})")
    if not isinstance(blob.get("signature"), (str, type(None))):
        raise bad(f"signature is a {type(blob['signature']).__name__}, not a run signature")
    x, p, t = (blob[k] for k in OUTPUTS_KEYS)
    for name, v in zip(OUTPUTS_KEYS, (x, p, t)):
        if not isinstance(v, torch.Tensor):
            raise bad(f"{name} is a {type(v).__name__}, not a tensor")
    if not (x.is_floating_point() and p.is_floating_point()):
        raise bad(f"x and p must be floating point (found {x.dtype}, {p.dtype})")
    if t.is_floating_point() or t.is_complex():
        raise bad(f"targets must be integers (found {t.dtype})")
    if p.dim() != 2:
        raise bad(f"p has shape {tuple(p.shape)}, expected (N, m)")
    n, m = p.shape
    if tuple(x.shape) not in ((n, m), (n, m, 2)):
        raise bad(f"x has shape {tuple(x.shape)}, expected ({n}, {m}) or ({n}, {m}, 2) like p {tuple(p.shape)}")
    is_multi = t.dim() == 2
    if tuple(t.shape) != ((n, m) if is_multi else (n,)):
        raise bad(f"targets has shape {tuple(t.shape)}, expected ({n},) class indices or ({n}, {m}) labels")
    if multilabel is not None and is_multi != multilabel:
        raise bad(f"targets of shape {tuple(t.shape)} are {'multi' if is_multi else 'single'}-label, but the run is "
                  f"{'multi' if multilabel else 'single'}-label")
    if num_classes is not None and m != num_classes:
        raise bad(f"outputs of {m} classes, but the run has {num_classes}")
    if samples is not None and n != samples:
        raise bad(f"outputs of {n} test images, but the run evaluated {samples}")
    if n == 0 or m == 0:
        raise bad(f"no outputs (shape {tuple(p.shape)})")
    targets = t.long()
    if is_multi and not ((targets == 0) | (targets == 1)).all():
        raise bad("multi-label targets must be 0 or 1")
    if not is_multi and ((targets < 0) | (targets >= m)).any():
        raise bad(f"targets must be class indices in 0..{m - 1} (found {int(targets.min())}..{int(targets.max())})")
    pf = p.float()
    if not ((pf >= 0) & (pf <= 1)).all():
        raise bad("p must be probabilities in [0, 1]")
    return TestOutputs(x.float().numpy(), pf.numpy(), targets.numpy(), is_multi, int(version))
