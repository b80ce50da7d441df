"""A run's identity (:class:`RunIdentity`) and its folder's files (:class:`RunPaths`), checked at every read.

A number belongs to a run only if four things are the run's: its **config** (the signature, which ends the run
folder's name), its **data** (the fingerprint), its **code** (:func:`code_identity`: a content hash of gsm's own
source and config files, with the git revision beside it as provenance) and its **environment** (device, world
size, torch, CPU threads; gsm.environment). The trainer computes one :class:`RunIdentity` per run and every file
it writes carries it; every reader (the trainer's skip and resume, gsm-tables, status, sweeps, figures) checks a
file against the folder it is read from through this module. docs/runs.md lists each check and what the user sees.

No torch and no Hydra here: ``gsm-tables status`` and the command-line checks import it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gsm.errors import GsmError

SIGNATURE = re.compile(r"-([0-9a-f]{10})$")
"""A run folder's name ends in ``-<signature>`` (gsm.runs.readable_name)."""
CODE_SUFFIXES = (".py", ".yaml")
"""What the code identity covers: every Python and YAML file of the installed ``gsm`` package (its modules, its
Hydra configs, the paper-row registry). Not data files (the digits split is covered by the data fingerprint),
not caches, not the tests or docs."""


class FileKindError(GsmError):
    """A path a run reads or writes is not a regular file (a FIFO, a directory, a device)."""


class ForeignFileError(GsmError):
    """A file in a run folder is not that folder's run (another run's record or checkpoint, copied or edited)."""


# --------------------------------------------------------------------------- code identity


@dataclass(frozen=True)
class CodeIdentity:
    """The content of the gsm code this process runs: ``digest`` (16 hex digits) over ``files`` (each file's
    path inside the package and the first 12 hex digits of its SHA-256), and the git revision where there is
    one (``unknown`` outside a checkout, e.g. after ``pip install``)."""

    digest: str
    files: dict[str, str] = field(repr=False)
    git_rev: str = "unknown"

    def changed_files(self, then: dict[str, str] | None) -> list[str]:
        """The package files whose content differs from ``then`` (another process's :attr:`files`): edited,
        added or removed."""
        if not then:
            return []
        names = sorted(set(then) | set(self.files))
        return [n for n in names if then.get(n) != self.files.get(n)]


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def hash_tree(root: Path, suffixes: tuple[str, ...] = CODE_SUFFIXES) -> tuple[str, dict[str, str]]:
    """(digest, per-file hashes) of every file under ``root`` ending in one of ``suffixes`` (``__pycache__``
    left out), by path relative to ``root``: the same bytes give the same digest on any machine."""
    files: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix not in suffixes or "__pycache__" in path.parts or not path.is_file():
            continue
        files[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    blob = "".join(f"{name}\0{digest}\n" for name, digest in files.items())
    return hashlib.sha256(blob.encode()).hexdigest()[:16], files


@functools.lru_cache(maxsize=1)
def code_identity() -> CodeIdentity:
    """This process's :class:`CodeIdentity`, computed once (about 100 files, a few milliseconds)."""
    digest, files = hash_tree(package_dir())
    return CodeIdentity(digest, files, git_revision())


def git_revision() -> str:
    """The short git revision of the code, with ``-dirty`` when tracked files have uncommitted changes;
    ``unknown`` outside a git checkout (a pip-installed gsm)."""
    where = package_dir()
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=where, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (rev + ("-dirty" if dirty else "")) if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --------------------------------------------------------------------------- a run folder's files


RUN_FILES = {"record": "results.json", "checkpoint": "checkpoints/last.pt", "outputs": "test_outputs.pt",
             "summary": "summary.csv", "log": "train.log", "lock": ".lock", "lock_owner": ".lock.owner",
             "tensorboard": "tensorboard", "hydra": ".hydra"}
"""A run folder's files and folders, by the name :class:`RunPaths` gives them (docs/runs.md lists what each holds)."""


@dataclass(frozen=True)
class RunPaths:
    """The files of one run folder ``<output_root>/runs/<dataset>/<name>-<signature>`` (:data:`RUN_FILES`: ``record``,
    ``checkpoint``, ``outputs``, ``summary``, ``log``, ``lock``, ``lock_owner``, ``tensorboard``, ``hydra``).
    :attr:`signature` is what the folder claims to hold: every file read from it must carry the same."""

    run_dir: Path
    record: Path = field(init=False, repr=False)
    checkpoint: Path = field(init=False, repr=False)
    outputs: Path = field(init=False, repr=False)
    summary: Path = field(init=False, repr=False)
    log: Path = field(init=False, repr=False)
    lock: Path = field(init=False, repr=False)
    lock_owner: Path = field(init=False, repr=False)
    tensorboard: Path = field(init=False, repr=False)
    hydra: Path = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))
        for name, relative in RUN_FILES.items():
            object.__setattr__(self, name, self.run_dir / relative)

    @property
    def signature(self) -> str | None:
        """The signature the folder's name ends in; None for a folder not named by gsm."""
        m = SIGNATURE.search(self.run_dir.name)
        return m.group(1) if m else None

    def foreign(self, what: Path, signature: Any) -> str | None:
        """Why ``what`` (a file of this folder carrying ``signature``) is not this folder's run; None when it is
        (or when the folder's name carries no signature)."""
        mine = self.signature
        if mine is None or signature == mine:
            return None
        return (f"{what} belongs to another run: it carries signature {signature!r}, its folder {self.run_dir.name} "
                f"is run {mine} (copied from another run folder?)")


def regular_file(path: Path, what: str = "file") -> bool:
    """Whether ``path`` exists; raises :class:`FileKindError` when it exists but is no regular file (a FIFO
    would block the reader forever, a directory cannot be read or replaced)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise FileKindError(f"cannot read {path} ({exc.strerror})") from exc
    if stat.S_ISREG(mode):
        return True
    kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "not a regular file")
    raise FileKindError(f"{path} is {kind}, not a regular {what}; move it away (gsm reads and writes regular files only)")


# --------------------------------------------------------------------------- the run's identity


@dataclass(frozen=True)
class RunIdentity:
    """What a run's numbers belong to: its config's ``signature`` (gsm.runs.signature), its data
    (``fingerprint``, with ``data_root`` as provenance) and the ``environment`` it trains in
    (gsm.environment.environment, whose ``code`` is :attr:`CodeIdentity.digest`)."""

    signature: str
    fingerprint: dict[str, Any]
    data_root: str | None
    environment: dict[str, Any]

    @property
    def code(self) -> str | None:
        return self.environment.get("code")

    def stamp(self) -> dict[str, Any]:
        """What every checkpoint carries of the identity (read back by :meth:`from_stamp`)."""
        return {"signature": self.signature, "data_fingerprint": self.fingerprint, "data_root": self.data_root,
                "environment": self.environment, "code_files": code_identity().files}

    @classmethod
    def from_stamp(cls, stamp: dict[str, Any]) -> RunIdentity:
        return cls(str(stamp.get("signature")), dict(stamp.get("data_fingerprint") or {}), stamp.get("data_root"),
                   dict(stamp.get("environment") or {}))
