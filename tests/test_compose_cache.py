"""The on-disk cache of composed experiment configs (gsm.compose_cache): a hit is exactly Hydra's composition,
any change to what a composition reads is another key, and a broken cache only costs the composition."""

from __future__ import annotations

import re
import shutil

import pytest

from gsm import compose_cache, grid, runs
from gsm.compose_cache import ComposeCache, _identical
from gsm.errors import ConfigError
from gsm.profiles import PROFILES

JOBS = [("table1/wrn_cifar10_softmax", []), ("table1/wrn_cifar100_gsoftmax@as_written", []),
        ("table3/resnet101_coco_gsoftmax_mu0_sigma1", ["trainer.epochs=3", "seed=4"]),
        ("table2/resnet101_tiny_imagenet_gsoftmax_mu0_sigma1",
         PROFILES["smoke"].overrides("table2/resnet101_tiny_imagenet_gsoftmax_mu0_sigma1", "/fixtures"))]


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty per-process store and a cache folder of this test's own."""
    monkeypatch.setattr(grid, "_COMPOSED", {})
    monkeypatch.setenv("GSM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "compose"


def _no_hydra(*_a, **_k):
    raise AssertionError("composed with Hydra: the cache was not used")


def test_a_hit_is_hydras_composition_itself(fresh, monkeypatch):
    monkeypatch.setenv("GSM_CACHE_DIR", "off")
    composed = grid._compose(JOBS)  # Hydra, no cache
    assert not fresh.exists()
    monkeypatch.setattr(grid, "_COMPOSED", {})
    monkeypatch.setenv("GSM_CACHE_DIR", str(fresh.parent))
    assert _identical(grid._compose(JOBS), composed)  # composed again and stored
    assert len(list(fresh.glob("*.json"))) == len(JOBS)
    monkeypatch.setattr(grid, "_COMPOSED", {})  # a new process: only the disk has them
    monkeypatch.setattr(grid, "_compose_with_hydra", _no_hydra)
    hits = grid._compose(JOBS)
    assert _identical(hits, composed)  # same values, same types, same key order
    assert [grid.row_key(c) for c, _ in hits] == [grid.row_key(c) for c, _ in composed]
    assert [runs.signature({**c, "seed": 0}) for c, _ in hits] == [runs.signature({**c, "seed": 0}) for c, _ in composed]


def test_an_edited_config_file_is_another_key(fresh, monkeypatch, tmp_path):
    configs = tmp_path / "configs"
    shutil.copytree(grid.CONFIG_DIR, configs)
    monkeypatch.setattr(grid, "CONFIG_DIR", configs)
    (exp, ovs), = JOBS[:1]
    before = grid.compose_many([(exp, ovs)])[0]
    path = configs / "experiment" / f"{exp}.yaml"
    assert before["trainer"]["epochs"] != 7
    path.write_text(path.read_text() + "trainer:\n  epochs: 7\n")
    monkeypatch.setattr(grid, "_COMPOSED", {})
    after = grid.compose_many([(exp, ovs)])[0]
    assert after["trainer"]["epochs"] == 7 and {**after, "trainer": before["trainer"]} == before
    assert len(list(fresh.glob("*.json"))) == 2


def test_overrides_of_hydra_keys_and_values_json_would_change_are_not_stored(fresh):
    cache = ComposeCache.open(grid.CONFIG_DIR)
    assert not cache.cacheable(["hydra.searchpath=[file:///elsewhere]"]) and not cache.cacheable(["+hydra.job.x=1"])
    assert cache.cacheable(["experiment=table1/wrn_cifar10_softmax", "head.mu=0.1"])
    cache.put(["hydra.searchpath=[file:///x]"], {"a": 1}, {})
    cache.put(["x=1"], {"milestones": {60: 0.2}}, {})  # an int key would come back a string
    cache.put(["y=1"], {"lr": 1.0, "flag": True}, {"head": "gsoftmax"})
    assert not fresh.exists() or len(list(fresh.glob("*.json"))) == 1
    assert cache.get(["x=1"]) is None and cache.get(["hydra.searchpath=[file:///x]"]) is None
    value = cache.get(["y=1"])
    assert _identical(value, ({"lr": 1.0, "flag": True}, {"head": "gsoftmax"}))


def test_a_damaged_or_unwritable_cache_only_costs_the_composition(fresh, monkeypatch, tmp_path):
    expected = grid._compose(JOBS[:1])
    (entry,) = fresh.glob("*.json")
    entry.write_text('{"overrides": ["truncated')
    monkeypatch.setattr(grid, "_COMPOSED", {})
    assert _identical(grid._compose(JOBS[:1]), expected)  # unreadable: composed again and rewritten
    monkeypatch.setattr(grid, "_COMPOSED", {})
    monkeypatch.setattr(grid, "_compose_with_hydra", _no_hydra)
    assert _identical(grid._compose(JOBS[:1]), expected)
    monkeypatch.undo()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(grid, "_COMPOSED", {})
    monkeypatch.setenv("GSM_CACHE_DIR", str(blocker))  # its compose/ folder cannot be made
    assert _identical(grid._compose(JOBS[:1]), expected)


def test_where_the_cache_lives(monkeypatch, tmp_path):
    monkeypatch.setenv("GSM_CACHE_DIR", str(tmp_path / "c"))
    assert compose_cache.cache_root() == tmp_path / "c"
    monkeypatch.setenv("GSM_CACHE_DIR", "off")
    assert compose_cache.cache_root() is None and ComposeCache.open(grid.CONFIG_DIR) is None
    monkeypatch.delenv("GSM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compose_cache.cache_root() == tmp_path / "xdg" / "gsm"


def test_configs_outside_hydra_interpolate_only_their_own_keys():
    """What the cache stores depends on the files and overrides alone: no value outside ``hydra/`` may read the
    environment, the clock or Hydra's runtime (``${oc.env:...}``, ``${now:...}``, ``${hydra:...}``)."""
    for path in sorted(grid.CONFIG_DIR.rglob("*.yaml")):
        rel = path.relative_to(grid.CONFIG_DIR)
        lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
        if rel.parts[0] == "hydra":
            continue
        if rel.as_posix() == "train.yaml":  # its hydra: node is the one part that may (the sweep folder's date)
            lines = lines[:next((i for i, ln in enumerate(lines) if ln.startswith("hydra:")), len(lines))]
        for ref in re.findall(r"\$\{([^}]*)\}", "\n".join(lines)):
            assert ":" not in ref or ref.startswith("oc.select:"), (rel, ref)


def test_a_failed_write_leaves_no_entry_and_no_temporary_file(fresh, monkeypatch):
    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(compose_cache.os, "replace", full_disk)
    expected = grid._compose(JOBS[:1])  # composed, not stored: no error
    assert list(fresh.iterdir()) == []  # neither the entry nor mkstemp's file
    monkeypatch.undo()
    monkeypatch.setattr(grid, "_COMPOSED", {})
    monkeypatch.setenv("GSM_CACHE_DIR", str(fresh.parent))
    assert _identical(grid._compose(JOBS[:1]), expected)


def test_a_key_that_cannot_be_computed_turns_the_cache_off(fresh, monkeypatch):
    def unreadable(*_a, **_k):
        raise PermissionError(13, "Permission denied", "gsm/configs/train.yaml")

    monkeypatch.setattr(compose_cache, "_tree_digest", unreadable)
    assert ComposeCache.open(grid.CONFIG_DIR) is None
    assert grid._compose(JOBS[:1])[0][0]["dataset"]["name"] == "cifar10" and not fresh.exists()


def test_a_composition_error_names_the_experiment_and_is_not_cached(fresh):
    with pytest.raises(ConfigError) as info:
        grid.compose("table1/wrn_cifar10_nosuchhead")
    assert "experiment=table1/wrn_cifar10_nosuchhead" in str(info.value)
    assert not fresh.exists() or list(fresh.glob("*.json")) == []


def test_identical_is_strict_about_types():
    assert _identical({"a": [1, 2.0, None, "x"]}, {"a": [1, 2.0, None, "x"]})
    assert not _identical([1], (1,)) and not _identical(1, 1.0) and not _identical(True, 1)
    assert not _identical({"a": 1, "b": 2}, {"b": 2, "a": 1})  # key order is part of a config's identity here
    assert _identical(float("nan"), float("nan"))
