"""A table's grid of runs: which ``results.json`` belongs to which paper row.

A row is identified by its experiment config composed with the profile's overrides (the same
composition the trainer does): a results file belongs to the row when the result-affecting part
of its stored config has the row's signature (``gsm.runs.signature(cfg, include_seed=False)``, the
one signature function of runs and rows). So the table shows exactly the runs that the trainer would
skip as finished, one per seed. Results are read as :class:`gsm.results.RunRecord`; unreadable
files are kept aside in ``Grid.unreadable`` (reported by the caller, never fatal). Launching the
missing runs is ``gsm.reproduce``'s job.

A grid row may be a variant of an experiment, ``<experiment>@as_written`` (gsm.profiles.VARIANTS):
the same experiment composed with the variant's overrides, a row (and runs) of its own. A grid has
such rows only when its caller lists them (``gsm-tables tableN --as-written``,
:func:`as_written_experiments`).
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from gsm import paper, runs
from gsm.compose_cache import ComposeCache
from gsm.errors import ConfigError
from gsm.profiles import PROFILES, Profile, split_variant, variant_name, variant_overrides
from gsm.results import RunRecord, load_records

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def row_key(config: dict[str, Any]) -> str:
    """A paper row's identity: the signature of a config's result-affecting settings without the seed."""
    return runs.signature(config, include_seed=False)


def as_written_experiments(table: int) -> list[str]:
    """The ``@as_written`` variants of a table's G-softmax rows (``head.dist_update=autograd``: the paper's
    method as written, beside the default recipe that follows the authors' release)."""
    return list(dict.fromkeys(variant_name(r.experiment, "as_written")
                              for r in paper.rows(table=table, head="gsoftmax") if r.experiment))


def compose(experiment: str, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The trainer's resolved config of ``experiment=<experiment> <overrides>`` (Hydra compose API);
    ``<experiment>@<variant>`` adds the variant's overrides (gsm.profiles.VARIANTS) unless already given."""
    return compose_many([(experiment, list(overrides))])[0]


def compose_many(jobs: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    """Resolved configs of several (experiment, overrides) pairs, composed as the trainer composes them."""
    return [cfg for cfg, _ in _compose(jobs)]


def _compose(jobs: list[tuple[str, list[str]]]) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """(resolved config without hydra.*, config-group choices) per job; cached per process and on disk
    (gsm.compose_cache: composition is pure, and keyed by everything it reads)."""
    runs.register_resolvers()
    todo = {}
    for experiment, overrides in jobs:
        if (str(CONFIG_DIR), experiment, tuple(overrides)) not in _COMPOSED:
            todo[(experiment, tuple(overrides))] = _hydra_overrides(experiment, list(overrides))
    if todo:
        cache = ComposeCache.open(CONFIG_DIR)
        missing = {}
        for (experiment, overrides), full in todo.items():
            hit = cache.get(full) if cache else None
            if hit is not None:
                _COMPOSED[(str(CONFIG_DIR), experiment, overrides)] = hit
            else:
                missing[(experiment, overrides)] = full
        if missing:
            _compose_with_hydra(missing, cache)
    found = {(e, tuple(ov)): _COMPOSED.get((str(CONFIG_DIR), e, tuple(ov))) for e, ov in jobs}
    if any(v is None for v in found.values()):  # more jobs than the cache holds: compose the rest again
        _compose_with_hydra({k: _hydra_overrides(k[0], list(k[1])) for k, v in found.items() if v is None}, None)
        found = {k: v if v is not None else _COMPOSED[(str(CONFIG_DIR), *k)] for k, v in found.items()}
    return [copy.deepcopy(found[(e, tuple(ov))]) for e, ov in jobs]


def _hydra_overrides(experiment: str, overrides: list[str]) -> list[str]:
    """What Hydra's compose gets for ``experiment`` (``<experiment>@<variant>`` adds the variant's overrides
    unless already given) and ``overrides``."""
    base, _ = split_variant(experiment)
    given = {ov.split("=", 1)[0] for ov in overrides}
    extra = [ov for ov in variant_overrides(experiment) if ov.split("=", 1)[0] not in given]
    return [f"experiment={base}", *overrides, *extra]


def _compose_with_hydra(missing: dict[tuple[str, tuple[str, ...]], list[str]], cache: ComposeCache | None) -> None:
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="train"):
        for (experiment, overrides), full in missing.items():
            try:
                cfg = hydra_compose("train", overrides=full, return_hydra_config=True)
                choices = {k: v for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items()
                           if not k.startswith("hydra/") and v is not None}
                plain = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
                         for k in cfg if k != "hydra"}
            except (HydraException, OmegaConfBaseException) as exc:
                raise ConfigError(f"cannot compose experiment={experiment} {' '.join(overrides)}: {exc}") from exc
            _COMPOSED[(str(CONFIG_DIR), experiment, overrides)] = (plain, choices)
            if cache is not None:
                cache.put(full, plain, choices)


_MISSING = object()


def _default_config() -> dict[str, Any]:
    """``python train.py`` with no overrides (the primary config of a multirun), unresolved values kept as is."""
    if "default" not in _DEFAULT:
        from hydra import compose as hydra_compose, initialize_config_dir
        from omegaconf import OmegaConf

        runs.register_resolvers()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="train"):
            _DEFAULT["default"] = OmegaConf.to_container(hydra_compose("train"), resolve=False)
    return _DEFAULT["default"]


class _Bounded(OrderedDict):
    """A dict that keeps its ``limit`` most recently stored entries (a process-wide cache must not grow without end)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


_DEFAULT: dict[str, dict[str, Any]] = {}  # one entry: the primary config
# compositions of this process, keyed by (config folder, experiment, overrides): Hydra's compose is pure
_COMPOSED: _Bounded = _Bounded(1024)


@dataclass
class Row:
    """One experiment of a grid: its overrides under the profile and the runs found for it (by seed)."""

    experiment: str
    overrides: list[str]
    key: str
    config: dict[str, Any]
    choices: dict[str, str] = field(default_factory=dict)  # config-group choices (dataset, model, schedule, ...)
    runs: dict[int, RunRecord] = field(default_factory=dict)

    @property
    def base_experiment(self) -> str:
        """The experiment config of the row (without its ``@variant``)."""
        return split_variant(self.experiment)[0]

    @property
    def variant(self) -> str | None:
        return split_variant(self.experiment)[1]

    @property
    def seeds(self) -> list[int]:
        return sorted(self.runs)

    def results(self) -> list[RunRecord]:
        return [self.runs[s] for s in self.seeds]

    def launch_overrides(self) -> list[str]:
        """The overrides as a multirun command line needs them: ``++key=value`` for a key the default config lacks.

        Hydra applies the non-swept overrides of a multirun to the primary config (``python train.py``, no
        experiment) before sweeping, where a key that only this row's model or schedule has (model.depth,
        schedule.pieces) does not exist. ``++`` adds it there and sets it in the job, whose config has it
        (the row's config was composed with the plain override), so the job's config is unchanged.
        """
        default = _default_config()
        out = []
        for ov in self.overrides:
            key = ov.split("=", 1)[0]
            node: Any = default
            for part in key.lstrip("+~").split("."):
                node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
            out.append("++" + ov if node is _MISSING and not key.startswith(("+", "~")) else ov)
        return out


class Grid:
    """Experiments of one or more tables under a profile, matched against the results under ``runs_dir``."""

    def __init__(self, experiments: Iterable[str], profile: Profile | str = "full", runs_dir: Path | None = None,
                 extra_overrides: Iterable[str] = (), fixtures_dir: Path | None = None) -> None:
        self.profile = PROFILES[profile] if isinstance(profile, str) else profile
        self.runs_dir = Path(runs_dir) if runs_dir is not None else Path(self.profile.output_root) / "runs"
        self.extra = list(extra_overrides)
        self.fixtures_dir = fixtures_dir
        jobs = [(exp, self.profile.overrides(exp, str(fixtures_dir) if fixtures_dir else None) + self.extra)
                for exp in dict.fromkeys(experiments)]
        self.rows: dict[str, Row] = {
            exp: Row(exp, ov, row_key(cfg), cfg, choices) for (exp, ov), (cfg, choices) in zip(jobs, _compose(jobs))
        }
        self._pairs = {(r.config["dataset"]["name"], r.config["model"]["name"]) for r in self.rows.values()}
        self.unmatched: list[str] = []  # results.json of the grid's datasets and models that match no row
        self.unreadable: list[tuple[Path, str]] = []  # results.json that are no run record (path, why)
        self.refresh()

    def refresh(self) -> None:
        """(Re)read every results.json under runs_dir and attach it to its row."""
        by_key: dict[str, list[Row]] = {}
        for row in self.rows.values():
            row.runs = {}
            by_key.setdefault(row.key, []).append(row)
        self.unmatched = []
        records, self.unreadable = load_records(self.runs_dir) if self.runs_dir.is_dir() else ([], [])
        for rec in records:
            rows = by_key.get(row_key(rec.config))
            if not rows:
                if (rec.dataset, rec.model) in self._pairs:  # same data and model, other settings
                    self.unmatched.append(str(rec.path))
                continue
            for row in rows:
                prev = row.runs.get(rec.seed)
                if prev is None or rec.path.stat().st_mtime >= prev.path.stat().st_mtime:
                    row.runs[rec.seed] = rec

    def get(self, experiment: str | None) -> Row | None:
        return self.rows.get(experiment) if experiment else None

    def seeds_of(self, experiment: str, seeds: list[int] | None = None) -> list[int]:
        """The seeds a row should have: ``seeds`` (``--seeds``), else those of its finished runs, else its config's."""
        row = self.rows[experiment]
        return list(seeds) if seeds else (row.seeds or [int(row.config.get("seed", 0))])

    def run_dir(self, experiment: str, seed: int) -> Path | None:
        """The folder of the row's run with ``seed`` if the trainer has made it, found as the trainer finds it:
        ``<runs>/<dataset>/*-<signature>`` (gsm.runs.find_run_dir), whether or not the run has finished."""
        row = self.rows[experiment]
        sig = runs.signature({**row.config, "seed": int(seed)})
        return runs.find_run_dir(self.runs_dir / str(row.config["dataset"]["name"]), sig)

    def missing(self, seeds: list[int] | None = None) -> list[str]:
        """Experiments without any run (or, with ``seeds``, without a run for one of them)."""
        if seeds:
            return [e for e, r in self.rows.items() if not set(seeds) <= set(r.runs)]
        return [e for e, r in self.rows.items() if not r.runs]

    def output_root(self) -> Path:
        """<output_root> of the runs folder (runs are written to <output_root>/runs)."""
        if self.runs_dir.name != "runs":
            raise ConfigError(f"--runs {self.runs_dir}: runs are written to <output_root>/runs, so the folder must be "
                              f"named 'runs' to launch training (or pass --no-run to only read it)")
        return self.runs_dir.parent.resolve()


def recipe_key(cfg: dict[str, Any]) -> str:
    """The settings that change the cost of a training step, an evaluation pass or a checkpoint."""
    ds = {k: v for k, v in cfg["dataset"].items() if k not in ("root", "download", "cache", "cache_dir", "on_missing")}
    model = {k: v for k, v in cfg["model"].items() if k not in ("pretrained", "weights_path")}
    head = {"name": cfg["head"]["name"], "margin": cfg["head"].get("margin")}
    tr = cfg["trainer"]
    trainer = {k: tr.get(k) for k in ("batch_size", "eval_batch_size", "amp", "channels_last", "compile",
                                      "compile_mode", "num_workers")}
    return json.dumps({"dataset": ds, "model": model, "head": head, "trainer": trainer}, sort_keys=True, default=str)
