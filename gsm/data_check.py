"""Missing data, found once for a whole table before any of its jobs starts.

``gsm-tables tableN`` launches every missing run of the table's grid. Without this check, each job would find
the same missing dataset and print the same block (a table of 7 COCO runs: 14 copies). :func:`check_data`
looks at each (dataset, ``dataset.root``) pair of the runs about to start and raises one :class:`DataError`
naming every dataset that is not there: where its runs look, what is missing there, the expected layout and
the page to download it from. It only looks for the files a loader opens first (the layout's top level),
so a dataset that is there is never read twice; a damaged file is still the trainer's one error.

The embedded datasets (digits, digits_mosaic, toy) need nothing on disk; CIFAR with ``dataset.download=true``
is fetched by the trainer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gsm.errors import DataError

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Needs:
    """What one on-disk dataset must hold under ``dataset.root``, and where to get it."""

    title: str
    page: str  # where to download it
    how_to_get: str
    layout: str
    missing: Callable[[Path], list[str]]  # root -> the expected paths that are not there (empty: present)


def _first_found(root: Path, candidates: Iterable[tuple[str, ...]]) -> list[str]:
    """The paths of the first candidate layout (relative to ``root``) that is complete: [] ; else the missing paths
    of the first candidate (the official one)."""
    candidates = list(candidates)
    for paths in candidates:
        absent = [p for p in paths if not (root / p.rstrip("/")).exists()]
        if not absent:
            return []
    return [p for p in candidates[0] if not (root / p.rstrip("/")).exists()]


def _cifar(name: str) -> Needs:
    from gsm.data.cifar import SPECS

    spec = SPECS[name]
    files = [*spec["train"], *spec["test"], spec["meta"]]
    folder = spec["folder"]
    archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
    return Needs(
        title=spec["title"], page="https://www.cs.toronto.edu/~kriz/cifar.html",
        how_to_get=(f"Add -o dataset.download=true to fetch it (torchvision's downloader), or download {archive} "
                    "from https://www.cs.toronto.edu/~kriz/cifar.html and extract it into dataset.root."),
        layout="\n".join(f"  {folder}/{f}" for f in files),
        missing=lambda root: _first_found(root, [tuple(f"{folder}/{f}" for f in files), tuple(files)]),
    )


def _tiny_imagenet() -> Needs:
    from gsm.data import tiny_imagenet as t

    return Needs(t.TITLE, "http://cs231n.stanford.edu/tiny-imagenet-200.zip", t.HOW_TO_GET, t.LAYOUT,
                 lambda root: _first_found(root, [(f"{t.FOLDER}/wnids.txt", f"{t.FOLDER}/train/", f"{t.FOLDER}/val/"),
                                                  ("wnids.txt", "train/", "val/")]))


def _coco() -> Needs:
    from gsm.data import coco as c

    paths = ("annotations/instances_train2014.json", "annotations/instances_val2014.json", "train2014/", "val2014/")
    return Needs(c.TITLE, "https://cocodataset.org/#download", c.HOW_TO_GET, c.LAYOUT,
                 lambda root: _first_found(root, [paths]))


def _nuswide() -> Needs:
    from gsm.data import nuswide as n

    paths = ("ImageList/TrainImagelist.txt", "ImageList/TestImagelist.txt", "ConceptsList/Concepts81.txt",
             "Groundtruth/TrainTestLabels/")
    return Needs(n.TITLE, "https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html",
                 n.HOW_TO_GET, n.LAYOUT, lambda root: _first_found(root, [paths]))


ON_DISK: dict[str, Callable[[], Needs]] = {
    "cifar10": lambda: _cifar("cifar10"), "cifar100": lambda: _cifar("cifar100"),
    "tiny_imagenet": _tiny_imagenet, "coco": _coco, "nuswide": _nuswide,
}
"""The datasets read from files, by ``dataset.name`` (the others are embedded in gsm)."""


def trainer_cwd() -> Path:
    """The folder a launched trainer runs in, which a relative ``dataset.root`` is read from: the repository
    (where ``train.py`` is, as gsm-tables launches it) or, for an installed gsm, the current folder."""
    return REPO if (REPO / "train.py").exists() else Path.cwd()


def missing_data(configs: Iterable[Mapping[str, Any]], cwd: Path | None = None) -> str | None:
    """One block naming every on-disk dataset of ``configs`` (resolved run configs) that is not under its
    ``dataset.root``, or None when every one is there."""
    cwd = trainer_cwd() if cwd is None else Path(cwd)
    runs: dict[tuple[str, str], int] = {}
    for cfg in configs:
        ds = cfg.get("dataset") or {}
        name = ds.get("name")
        if name not in ON_DISK or (name in ("cifar10", "cifar100") and ds.get("download") is True):
            continue
        key = (str(name), "" if ds.get("root") in (None, "") else str(ds.get("root")))
        runs[key] = runs.get(key, 0) + 1
    blocks = []
    for (name, raw), count in runs.items():
        needs = ON_DISK[name]()
        jobs = f"{count} run{'s' if count != 1 else ''}"
        if not raw:
            what = "dataset.root is not set."
        else:
            root = Path(raw).expanduser()
            root = root if root.is_absolute() else cwd / root
            absent = needs.missing(root) if root.is_dir() else []
            if root.is_dir() and not absent:
                continue
            where = f"dataset.root={raw}" + (f" ({root})" if str(root) != raw else "")
            what = f"{where} lacks {', '.join(absent)}." if absent else f"{where} does not exist."
        blocks.append(f"{needs.title} (dataset={name}, {jobs}): {what}\n"
                      f"  {needs.how_to_get}\n  Download page: {needs.page}\n"
                      f"  Expected layout under dataset.root:\n" + "\n".join(f"  {ln}" for ln in needs.layout.splitlines()))
    if not blocks:
        return None
    n = len(blocks)
    head = (f"{n} dataset{'s' if n != 1 else ''} this table needs {'are' if n != 1 else 'is'} missing; no run was "
            "started. Put the data there, or point the runs at it with -o dataset.root=DIR, and rerun:")
    return head + "\n" + "\n".join(blocks)


def check_data(configs: Iterable[Mapping[str, Any]], cwd: Path | None = None) -> None:
    """Raise one :class:`DataError` naming every missing dataset of ``configs`` (:func:`missing_data`)."""
    message = missing_data(configs, cwd)
    if message:
        raise DataError(message)
