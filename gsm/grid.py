"""A table's grid of runs: which ``results.json`` belongs to which paper row, and launching the
missing ones through the real trainer (``python train.py -m experiment=... hydra/launcher=...``).

A row is identified by its experiment config composed with the profile's overrides (the same
composition the trainer does): a results file belongs to the row when the result-affecting part
of its stored config (``gsm.runs.signature_payload``) equals the row's, seed aside. So the table
shows exactly the runs that the trainer would skip as finished, one per seed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from gsm import runs
from gsm.errors import ConfigError, DataError, GsmError
from gsm.profiles import PROFILES, Profile

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class LaunchError(GsmError):
    """The trainer subprocess failed."""


def row_key(config: dict[str, Any]) -> str:
    """Hash of a config's result-affecting settings without the seed (one key per paper row)."""
    payload = runs.signature_payload(config)
    payload.pop("seed", None)
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def compose(experiment: str, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The trainer's resolved config of ``experiment=<experiment> <overrides>`` (Hydra compose API)."""
    return compose_many([(experiment, list(overrides))])[0]


def compose_many(jobs: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    """Resolved configs of several (experiment, overrides) pairs, composed as the trainer composes them."""
    return [cfg for cfg, _ in _compose(jobs)]


def _compose(jobs: list[tuple[str, list[str]]]) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """(resolved config without hydra.*, config-group choices) per job; cached per process (composition is pure)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    runs.register_resolvers()
    todo = [(e, tuple(ov)) for e, ov in jobs if (str(CONFIG_DIR), e, tuple(ov)) not in _COMPOSED]
    if todo:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="train"):
            for experiment, overrides in dict.fromkeys(todo):
                try:
                    cfg = hydra_compose("train", overrides=[f"experiment={experiment}", *overrides], return_hydra_config=True)
                    choices = {k: v for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items()
                               if not k.startswith("hydra/") and v is not None}
                    plain = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
                             for k in cfg if k != "hydra"}
                except (HydraException, OmegaConfBaseException) as exc:
                    raise ConfigError(f"cannot compose experiment={experiment} {' '.join(overrides)}: {exc}") from exc
                _COMPOSED[(str(CONFIG_DIR), experiment, overrides)] = (plain, choices)
    return [copy.deepcopy(_COMPOSED[(str(CONFIG_DIR), e, tuple(ov))]) for e, ov in jobs]


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


_DEFAULT: dict[str, dict[str, Any]] = {}
_COMPOSED: dict[tuple[str, str, tuple[str, ...]], tuple[dict[str, Any], dict[str, str]]] = {}


@dataclass
class Row:
    """One experiment of a grid: its overrides under the profile and the runs found for it (by seed)."""

    experiment: str
    overrides: list[str]
    key: str
    config: dict[str, Any]
    choices: dict[str, str] = field(default_factory=dict)  # config-group choices (dataset, model, schedule, ...)
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.runs)

    def results(self) -> list[dict[str, Any]]:
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
        self.refresh()

    def refresh(self) -> None:
        """(Re)read every results.json under runs_dir and attach it to its row."""
        by_key: dict[str, list[Row]] = {}
        for row in self.rows.values():
            row.runs = {}
            by_key.setdefault(row.key, []).append(row)
        self.unmatched = []
        for res in load_results(self.runs_dir) if self.runs_dir.is_dir() else []:
            cfg = res.get("config")
            rows = by_key.get(row_key(cfg)) if isinstance(cfg, dict) else None
            if not rows:
                if (res.get("dataset"), res.get("model")) in self._pairs:  # same data and model, other settings
                    self.unmatched.append(res["_path"])
                continue
            for row in rows:
                prev = row.runs.get(int(res["seed"]))
                if prev is None or Path(res["_path"]).stat().st_mtime >= Path(prev["_path"]).stat().st_mtime:
                    row.runs[int(res["seed"])] = res

    def get(self, experiment: str | None) -> Row | None:
        return self.rows.get(experiment) if experiment else None

    def missing(self, seeds: list[int] | None = None) -> list[str]:
        """Experiments without any run (or, with ``seeds``, without a run for one of them)."""
        if seeds:
            return [e for e, r in self.rows.items() if not set(seeds) <= set(r.runs)]
        return [e for e, r in self.rows.items() if not r.runs]

    # ------------------------------------------------------------------ launching

    def output_root(self) -> Path:
        if self.runs_dir.name != "runs":
            raise ConfigError(f"--runs {self.runs_dir}: runs are written to <output_root>/runs, so the folder must be "
                              f"named 'runs' to launch training (or pass --no-run to only read it)")
        return self.runs_dir.parent.resolve()

    def launch_commands(self, experiments: list[str], launcher: str = "basic", seeds: list[int] | None = None) -> list[list[str]]:
        """One ``train.py -m`` command per set of overrides (models take different knobs, so groups differ)."""
        groups: dict[tuple[str, ...], list[str]] = {}
        for exp in experiments:
            groups.setdefault(tuple(self.rows[exp].launch_overrides()), []).append(exp)
        entry = [sys.executable, str(REPO / "train.py")] if (REPO / "train.py").exists() else [sys.executable, "-m", "gsm.train"]
        cmds = []
        for overrides, exps in groups.items():
            cmd = [*entry, "-m", "experiment=" + ",".join(exps), *overrides, f"output_root={self.output_root()}"]
            if launcher and launcher != "basic":
                cmd.append(f"hydra/launcher={launcher}")
            if seeds:
                cmd.append("seed=" + ",".join(str(s) for s in seeds))
            cmds.append(cmd)
        return cmds

    def launch(self, experiments: list[str], launcher: str = "basic", seeds: list[int] | None = None) -> None:
        """Run the trainer for ``experiments``, streaming its output; raise LaunchError if it fails."""
        for cmd in self.launch_commands(experiments, launcher, seeds):
            printable = " ".join(_quote(c) for c in cmd)
            print(f"gsm-tables: running {printable}", flush=True)
            proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "HYDRA_FULL_ERROR": os.environ.get("HYDRA_FULL_ERROR", "0")})
            if proc.returncode != 0:
                raise LaunchError(
                    f"the trainer failed (exit {proc.returncode}); its output is above. Command:\n  {printable}\n"
                    f"Finished runs are kept: rerunning the same gsm-tables command resumes the rest."
                )
        self.refresh()


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " []$*?") else arg


def load_results(runs_dir: Path) -> list[dict[str, Any]]:
    """All ``results.json`` below ``runs_dir`` (each with its path under ``_path``)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise DataError(f"--runs {runs_dir}: no such folder (run the experiments first, e.g. make demo)")
    out = []
    for path in sorted(runs_dir.rglob("results.json")):
        try:
            res = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from exc
        res["_path"] = str(path)
        out.append(res)
    return out


def ensure_fixtures(out_dir: Path, sizes: dict[str, dict[str, int]] | None = None) -> Path:
    """Generate the fixture datasets (official on-disk layouts, ``gsm.data.fixtures``) once, all into ``out_dir``."""
    out_dir = Path(out_dir).resolve()
    stamp = out_dir / ".complete"
    try:
        from gsm.data.fixtures import MAKERS
    except ImportError as exc:
        raise ConfigError(f"the smoke profile needs gsm.data.fixtures (fixture datasets), which is missing: {exc}") from exc
    sizes = sizes if sizes is not None else {name: {} for name in MAKERS}
    if stamp.exists() and stamp.read_text().strip() == json.dumps(sizes):
        return out_dir
    print(f"gsm-tables: generating fixture datasets in {out_dir}", flush=True)
    for name, kwargs in sizes.items():
        MAKERS[name](out_dir, **kwargs)
    stamp.write_text(json.dumps(sizes) + "\n")
    return out_dir
