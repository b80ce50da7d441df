"""gsm as a package: a wheel built from this checkout, installed outside it, runs from any directory.

The wheel is built from a clean copy of the sources (pyproject.toml, README.md, LICENSE, gsm/), as a fresh
clone would build it: an in-tree ``build/`` folder can hold files deleted since, and parallel builds would
share it. It is installed with ``pip install --target`` into a temporary folder that is the only place
``gsm`` can come from (PYTHONPATH), and every command runs with a temporary folder as its working directory.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import gsm

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _pip(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the wheel, install it under ``site/``; returns (wheel path, site folder, a clean working folder)."""
    root = tmp_path_factory.mktemp("package")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "gsm", src / "gsm", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _pip("wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(root / "dist"), str(src))
    (wheel,) = (root / "dist").glob("gsm-*.whl")
    site = root / "site"
    _pip("install", "--no-deps", "--no-index", "--quiet", "--target", str(site), str(wheel))
    work = root / "elsewhere"
    work.mkdir()
    return wheel, site, work


def _run(cmd: list[str], site: Path, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), HYDRA_FULL_ERROR="1")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _dry_run_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON line in the dry run's output:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1])


def _installed_dist(site: Path) -> importlib.metadata.Distribution:
    (dist,) = [d for d in importlib.metadata.distributions(path=[str(site)]) if d.metadata["Name"] == "gsm"]
    return dist


def test_wheel_ships_every_module_config_and_marker(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(REPO).as_posix() for p in (REPO / "gsm").rglob("*")
                if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts}
    assert any(n.startswith("gsm/configs/") for n in expected) and "gsm/configs/train.yaml" in expected
    assert expected - names == set(), f"missing from the wheel: {sorted(expected - names)}"
    assert "gsm/py.typed" in names
    assert not any(n.startswith("hydra_plugins/") for n in names)
    dist_info = f"gsm-{gsm.__version__}.dist-info"
    assert wheel.name == f"gsm-{gsm.__version__}-py3-none-any.whl"
    license_text = zipfile.ZipFile(wheel).read(f"{dist_info}/licenses/LICENSE").decode()
    assert "MIT License" in license_text and "Copyright (c) 2026 the gsm authors" in license_text


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_is_a_declared_dependency(installed):
    """A module gsm imports must come from a distribution the wheel requires (not only transitively)."""
    wheel, _, _ = installed
    metadata = zipfile.ZipFile(wheel).read(f"gsm-{gsm.__version__}.dist-info/METADATA").decode()
    required = {_normalise(re.split(r"[\s<>=!~;\[(]", line.split(":", 1)[1].strip())[0])
                for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line}
    # gsm.launchers waits for the sweeps of the launcher plugins and imports them only when a sweep runs with one:
    # they may come from the [sweep] extra that installs those plugins
    sweep_extra = {_normalise(re.split(r"[\s<>=!~;\[(]", line.split(":", 1)[1].strip())[0])
                   for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra == \"sweep\"" in line}
    sweep_extra |= {"ray", "submitit"}  # what hydra-ray-launcher and hydra-submitit-launcher require
    imported: set[str] = set()
    for path in (REPO / "gsm").rglob("*.py"):
        if path.name == "launchers.py":
            found = {node.module.split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
                     for node in ast.walk(ast.parse(path.read_text(), str(path)))
                     if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "level", 0) == 0
                     for alias in (node.names if isinstance(node, ast.Import) else [None])
                     if not isinstance(node, ast.ImportFrom) or node.module}
            providers_ = importlib.metadata.packages_distributions()
            optional = {m for m in found if {_normalise(d) for d in providers_.get(m, [m])} & sweep_extra}
            imported.update(found - optional)
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"gsm", "__future__"}
    providers = importlib.metadata.packages_distributions()
    undeclared = {m: providers.get(m) for m in third_party
                  if not {_normalise(d) for d in providers.get(m, [m])} & required}
    assert not undeclared, f"imported by gsm but not in [project] dependencies: {undeclared}"
    assert "torchmetrics" not in required  # no longer used: AP is computed by gsm.metrics


def test_version_has_one_source(installed):
    _, site, work = installed
    assert _installed_dist(site).version == gsm.__version__
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and gsm.__version__ in changelog
    # the installed package, not the checkout, is what `import gsm` finds from elsewhere
    probe = ("import gsm, importlib.util; print(gsm.__file__); print(importlib.util.find_spec('gsm.train').origin);"
             " print(gsm.__version__)")
    proc = _run([sys.executable, "-c", probe], site, work)
    assert proc.returncode == 0, proc.stderr
    init_file, train_file, version = proc.stdout.split()
    assert Path(init_file).resolve() == (site / "gsm" / "__init__.py").resolve()
    assert Path(train_file).resolve() == (site / "gsm" / "train" / "__init__.py").resolve()
    assert version == gsm.__version__


def test_python_m_gsm_train_dry_run_from_another_directory(installed):
    _, site, work = installed
    out = _dry_run_json(_run([sys.executable, "-m", "gsm.train", "dry_run=true"], site, work))
    # the packaged default: the embedded digits set (1,347 / 450 images, 10 classes, 1x32x32)
    assert (out["train_samples"], out["test_samples"], out["num_classes"]) == (1347, 450, 10)
    assert out["multilabel"] is False and out["params"] > 0


def test_console_scripts_of_the_wheel_run_from_another_directory(installed):
    _, site, work = installed
    scripts = {ep.name: ep for ep in _installed_dist(site).entry_points if ep.group == "console_scripts"}
    assert {"gsm-train", "gsm-tables"} <= set(scripts), sorted(scripts)
    for name, ep in scripts.items():  # every entry point's module is inside the installed wheel
        module_file = (site / Path(*ep.module.split("."))).with_suffix(".py")
        assert module_file.is_file(), f"{name} -> {ep.value}: {module_file} is not in the wheel"
    # pip generated the scripts from these entry points (pip install --target puts them in bin/)
    out = _dry_run_json(_run([str(site / "bin" / "gsm-train"), "dry_run=true"], site, work))
    assert (out["train_samples"], out["num_classes"]) == (1347, 10)
    proc = _run([str(site / "bin" / "gsm-tables"), "--help"], site, work)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "usage:" in proc.stdout.lower() and "gsm-tables" in proc.stdout


def test_an_edit_of_the_installed_code_refuses_the_resume_without_git(installed, tmp_path):
    """A pip-installed gsm (no .git anywhere: git_rev "unknown" before and after) sees an edit of its own source
    between an interrupted run and its rerun through the content hash, names the file, and resumes with
    trainer.resume_anyway=true, recording both code hashes."""
    from gsm.results import read_record

    _, site, work = installed
    copy = tmp_path / "site"
    shutil.copytree(site, copy, symlinks=True)  # our own copy: the module's installed folder stays as built
    cmd = [sys.executable, "-m", "gsm.train", f"output_root={tmp_path / 'out'}", "trainer.cpu_threads=1",
           "trainer.epochs=1", "dataset.subset=64", "trainer.analyze_train=false"]
    first = _run(cmd, copy, work)
    assert first.returncode == 0, first.stderr[-3000:]
    (result,) = (tmp_path / "out").rglob("results.json")
    rec = read_record(result)
    assert rec.git_rev == "unknown" and rec.environment.code is not None
    result.unlink()  # as if it had been interrupted after its last checkpoint
    metrics = copy / "gsm" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\n# an edit after the interruption\n")
    refused = _run(cmd, copy, work)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    (line,) = [ln for ln in refused.stderr.splitlines() if ln.startswith("gsm: error:")]
    assert f"code {rec.environment.code} →" in line and "files changed: metrics.py" in line and not result.exists()
    anyway = _run([*cmd, "trainer.resume_anyway=true"], copy, work)
    assert anyway.returncode == 0, anyway.stderr[-3000:]
    segments = read_record(result).environment.segments
    assert [s.code for s in segments][0] == rec.environment.code and segments[1].code not in (None, rec.environment.code)


def test_help_says_what_gsm_is_with_groups_keys_and_run_folders(installed):
    """``gsm-train --help`` uses gsm's help template (gsm/configs/hydra/help/gsm.yaml), not Hydra's generic text."""
    _, site, work = installed
    proc = _run([str(site / "bin" / "gsm-train"), "--help", "head=softmax", "output_root=/some/where"], site, work)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("gsm: G-softmax") and "powered by Hydra" not in text
    # the config groups with their options, as Hydra lists them from the packaged configs
    for line in ("dataset: cifar10, cifar100, coco, digits, digits_mosaic, nuswide, tiny_imagenet",
                 "head: gsoftmax, lsoftmax, msml, softmax",
                 "model: convnet, densenet, resnet101, resnet_small, vgg16, vgg16_small, wrn"):  # _small: the smoke profile's
        assert line in text
    assert "experiment/table1: densenet_cifar100_gsoftmax," in text
    for key in ("trainer.epochs=", "trainer.batch_size=", "trainer.device=", "optimizer.lr=", "head.mu=",
                "head.sigma=", "head.lam=", "dataset.root=", "dataset.subset=", "seed=", "trainer.force=true",
                "dry_run=true"):
        assert f"  {key}" in text, key
    # values of the composed config: digits' recipe (12 epochs, lr 0.05); softmax has no μ
    assert "(now 12)" in text and "(now 0.05)" in text and "(now - and -)" in text
    assert "/some/where/runs/<dataset>/" in text


def test_launcher_presets_do_not_shadow_plugin_schemas():
    """A config named like a plugin's ConfigStore entry (the old hydra/launcher/ray.yaml) makes Hydra print a
    deprecation warning on every sweep; gsm's presets have names of their own and extend the plugin schema."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    import warnings

    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from gsm import runs
    from gsm.train import CONFIG_DIR

    runs.register_resolvers()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=["hydra/launcher=gsm_ray"], return_hydra_config=True)
    assert not [w for w in caught if "ConfigStore schema" in str(w.message)]
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    remote = OmegaConf.to_container(launcher.ray.remote, resolve=False)  # the env var is read on the worker
    assert launcher.ray.remote.num_gpus == int(torch.cuda.is_available())
    assert remote == {"num_gpus": "${gsm.gpus_per_job:}", "num_cpus": 1, "max_calls": 1,
                      # each Ray task writes a failed job's note where the sweep's end reads it (gsm.sweeps)
                      "runtime_env": {"env_vars": {"GSM_SWEEP_FAILURES": '${oc.env:GSM_SWEEP_FAILURES,""}'}}}
    hydra_dir = Path(CONFIG_DIR) / "hydra"
    ours = {p.relative_to(hydra_dir).with_suffix("").as_posix() for p in hydra_dir.rglob("*.yaml")}
    assert "launcher/gsm_ray" in ours and "help/gsm" in ours
    store = ConfigStore.instance()
    assert "ray.yaml" in store.list("hydra/launcher")  # the plugin's schema, registered by the compose above
    for rel in ours:
        group, name = rel.rsplit("/", 1)
        try:
            stored = store.list(f"hydra/{group}")
        except OSError:  # no ConfigStore entry in this group at all
            stored = []
        assert f"{name}.yaml" not in stored, f"gsm/configs/hydra/{rel}.yaml shadows a ConfigStore schema"


def test_user_config_dir_on_the_searchpath(installed, tmp_path):
    """A dataset of the user's own next to the packaged ones: hydra.searchpath=[file://DIR]."""
    _, site, work = installed
    user = tmp_path / "my_configs"
    (user / "dataset").mkdir(parents=True)
    (user / "dataset_model").mkdir()
    digits = (site / "gsm" / "configs" / "dataset" / "digits.yaml").read_text()
    assert "subset: null" in digits
    (user / "dataset" / "mydigits.yaml").write_text(digits.replace("subset: null", "subset: 40"))
    # the recipe is looked up as dataset_model/<dataset>_<model>: the user's dataset brings its own
    shutil.copy2(site / "gsm" / "configs" / "dataset_model" / "digits_convnet.yaml",
                 user / "dataset_model" / "mydigits_convnet.yaml")
    cmd = [str(site / "bin" / "gsm-train"), f"hydra.searchpath=[file://{user}]", "dataset=mydigits", "dry_run=true"]
    out = _dry_run_json(_run(cmd, site, work))
    assert (out["train_samples"], out["test_samples"], out["num_classes"]) == (40, 40, 10)  # mydigits' subset
