"""The run record (gsm.results): the one schema the trainer writes and every reader reads."""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from synthetic_runs import V3_FIELDS, write_run

from gsm.grid import Grid
from gsm.paper import experiments
from gsm.reproduce import main
from gsm.results import (SCHEMA_VERSION, EmpiricalSplits, EmpiricalStats, Environment, EnvironmentSegment, LearnedStats,
                         ResultsError, RunRecord, best_epoch, identity_problems, read_record, record_metrics)
from gsm.train import EvalOutputs, compute_metrics


def test_synthetic_run_round_trips_through_the_record(tmp_path):
    path = write_run(tmp_path / "runs", "table1/wrn_cifar10_gsoftmax", 3, top1_error=0.25)
    rec = read_record(path)
    assert rec.schema_version == SCHEMA_VERSION == 5 and rec.seed == 3 and rec.top1_error_frac == 0.25
    assert rec.path == path and rec.run_name == path.parent.name and rec.headline == 0.25
    assert RunRecord.from_dict(rec.to_dict(), path) == rec
    assert "path" not in json.loads(path.read_text())
    rec.write(tmp_path / "copy.json")
    assert json.loads((tmp_path / "copy.json").read_text()) == json.loads(path.read_text())
    assert not list(tmp_path.glob(".copy.json.*"))  # atomic: no temporary file left


@pytest.mark.parametrize("content, why", [
    ('{"dataset": "cifar10", "mod', "not valid JSON"),
    ("", "empty file"),
    ("[]", "expected a JSON object"),
    ("{}", "empty JSON object"),
    ('"results"', "expected a JSON object"),
    ('{"dataset": "cifar10"}', "missing model"),
])
def test_unreadable_results_name_the_file(tmp_path, content, why):
    path = tmp_path / "run" / "results.json"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(ResultsError, match=why) as exc:
        read_record(path)
    assert str(path) in str(exc.value)


def test_wrong_types_other_versions_percent_and_unknown_keys(tmp_path):
    good = json.loads(write_run(tmp_path / "runs", "table1/vgg16_cifar10_softmax", 0).read_text())
    path = tmp_path / "bad.json"
    for change, why in (({"seed": "0"}, "seed = '0' is not int"), ({"class_names": "abc"}, "class_names"),
                        ({"schema_version": 6}, "schema_version 6"), ({"schema_version": "3"}, "schema_version '3'"), ({"top1_error_frac": 12.5}, "percent"),
                        ({"top_1_error": 0.1}, "keys this gsm does not know: top_1_error"),
                        ({"mu": 0.0}, r"keys this gsm does not know: mu \(schema_version 5\)"),
                        ({"schema_version": 4, "mu": 0.0}, r"keys this gsm does not know: mu \(schema_version 4\)"),
                        ({"schema_version": 3, "mu_init": 0.0}, r"keys this gsm does not know: mu_init, sigma_init \(schema_version 3\)"),
                        ({"environment": {"device": "cpu", "gpu": "x"}}, "keys this gsm does not know: environment.gpu"),
                        ({"environment": {"segments": [{"device": "cpu"}]}}, re.escape("missing environment.segments[0].first_epoch")),
                        ({"environment": {"world_size": "1"}}, re.escape("environment.world_size = '1' is not int | None")),
                        ({"empirical": {"train": good["empirical"]["train"]}}, "missing empirical.test"),
                        ({"empirical": {**good["empirical"], "test": {**good["empirical"]["test"], "ratio": "r"}}},
                         re.escape("empirical.test.ratio = 'r' is not list[float]")),
                        ({"learned": [1.0]}, r"learned = \[1.0\] is not LearnedStats \| None"),
                        ({"environment": None}, "environment = None is not Environment")):
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(ResultsError, match=why) as exc:
            read_record(path)
        assert str(path) in str(exc.value)


def test_schema_v1_is_upgraded_on_read(tmp_path):
    """What the trainer wrote before schema_version (unit-less keys) reads as version 4, same values."""
    v2 = json.loads(write_run(tmp_path / "runs", "table3/resnet101_coco_gsoftmax_mu0_sigma1", 0, schema_version=2).read_text())
    v1 = {k: v for k, v in v2.items() if k not in ("schema_version", "run_name", "data_fingerprint", "data_root",
                                                     "environment", "eval_seconds_total", "checkpoint_seconds_total",
                                                     *V3_FIELDS)}
    v1["top3"] = {k: v for k, v in v1["top3"].items() if k != "CF1_mean_frac"}
    v2["top3"] = dict(v1["top3"])
    for k in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1"):
        v1[k] = v1.pop(f"{k}_frac")
    v1["per_class_ap"] = v1.pop("per_class_ap_frac")
    v1["top3"] = {k.removesuffix("_frac"): v for k, v in v1["top3"].items()}
    v1["history"] = [{"epoch": 1, "test_mAP": 0.4, "test_loss": 0.7, "train_loss": 0.9}]
    path = tmp_path / "old-run" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(v1))
    rec = read_record(path)
    assert rec.schema_version == 5 and rec.mAP_frac == v2["mAP_frac"] and rec.per_class_ap_frac == v2["per_class_ap_frac"]
    assert rec.top3 == v2["top3"] and rec.history == [{"epoch": 1, "test_mAP_frac": 0.4, "test_loss": 0.7, "train_loss": 0.9}]
    assert rec.run_name == "old-run" and rec.environment == Environment(device="cpu", world_size=1, torch=v1["torch"])
    assert all(getattr(rec, k) is None for k in V3_FIELDS)
    assert (rec.mu_init, rec.sigma_init) == (v1["mu"], v1["sigma"]) == (0.0, 1.0)
    assert rec.learned == LearnedStats(**v1["learned"]) and rec.empirical.test == EmpiricalStats(**v1["empirical"]["test"])
    assert identity_problems(rec) == []


@pytest.mark.parametrize("experiment", ["table3/resnet101_coco_softmax", "table2/resnet101_tiny_imagenet_softmax"])
def test_schema_v2_is_upgraded_on_read_without_warning(tmp_path, experiment):
    """A version-2 results.json (no VOC mAP, per-class mean C-F1 or best epoch) reads as version 4 with those None."""
    path = write_run(tmp_path / "runs", experiment, 0, schema_version=2)
    stored = json.loads(path.read_text())
    assert stored["schema_version"] == 2 and not set(V3_FIELDS) & set(stored) and "mu_init" not in stored
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec = read_record(path)
    assert rec.schema_version == 5 and all(getattr(rec, k) is None for k in V3_FIELDS)
    renamed = {k: v for k, v in stored.items() if k not in ("mu", "sigma", "environment")}
    assert rec.to_dict() == {**renamed, "schema_version": 5, **{k: None for k in V3_FIELDS}, "test_outputs_sha256": None,
                             "mu_init": stored["mu"], "sigma_init": stored["sigma"],
                             "environment": {**{f.name: None for f in fields(Environment)}, **stored["environment"]}}
    new = read_record(write_run(tmp_path / "new", experiment, 0))  # the same run, as schema 4 writes it
    assert (new.mAP_voc_frac is not None) == new.multilabel and (new.best_top1_error_frac is not None) != new.multilabel


# results.json files the trainer wrote at 0edbd66 (schema 3), read as a user's old runs folder holds them: a digits
# G-softmax run resumed with another thread count (environment.segments, no train-split statistics) and a
# digits_mosaic softmax run (multi-label, no learned statistics)
V3_FILES = sorted((Path(__file__).parent / "data").glob("results_v3_*.json"))


@pytest.mark.parametrize("source", V3_FILES, ids=[p.stem for p in V3_FILES])
def test_schema_v3_written_by_the_trainer_is_upgraded_on_read_with_its_values(tmp_path, source):
    """An old file is still read, every value where schema 4 puts it: the initial μ, σ as mu_init, sigma_init, the
    statistics and the environment typed, with the same numbers; its identity still checks (same signature)."""
    path = tmp_path / source.stem / "results.json"
    path.parent.mkdir()
    shutil.copy(source, path)
    old = json.loads(path.read_text())
    assert old["schema_version"] == 3 and {"mu", "sigma"} <= set(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec = read_record(path)
    assert rec.schema_version == 5 and identity_problems(rec) == []
    assert (rec.mu_init, rec.sigma_init, rec.lam) == (old["mu"], old["sigma"], old["lam"])
    assert isinstance(rec.environment, Environment) and isinstance(rec.empirical, EmpiricalSplits)
    assert rec.environment == Environment(**{k: v for k, v in old["environment"].items() if k != "segments"},
                                          segments=[EnvironmentSegment(**s) for s in old["environment"]["segments"]]
                                          if "segments" in old["environment"] else None)
    for split in ("test", "train"):
        block = getattr(rec.empirical, split)
        assert (block is None) == (split not in old["empirical"])
        if block is not None:
            assert block == EmpiricalStats(**old["empirical"][split])
            assert rec.stat(split, "separability") == old["empirical"][split]["separability"]
    if old["learned"] is None:
        assert rec.learned is None and rec.mu_init is None
    else:
        assert rec.learned == LearnedStats(**old["learned"]) and rec.learned.mu != [rec.mu_init] * rec.num_classes
    same = {k: v for k, v in old.items() if k not in ("schema_version", "mu", "sigma", "learned", "empirical", "environment")}
    assert {k: getattr(rec, k) for k in same} == same  # every other field as stored
    again = read_record(rec.write(tmp_path / "v5.json"))  # written back as schema 5: plain JSON, the same record
    stored = json.loads((tmp_path / "v5.json").read_text())
    assert stored["schema_version"] == 5 and "mu" not in stored and stored["mu_init"] == old["mu"]
    assert stored["learned"] == old["learned"] and stored["empirical"] == {"train": None, **old["empirical"]}
    env = {k: v for k, v in stored["environment"].items() if v is not None}
    if env.get("segments"):  # schema 5's segments also say the code hash (None for a run before it)
        env["segments"] = [{k: v for k, v in seg.items() if k != "code"} for seg in env["segments"]]
    assert env == old["environment"]
    assert again.to_dict() == rec.to_dict()


def test_initial_and_learned_mu_sigma_are_named_apart(tmp_path):
    """Issue 17: the record's top level holds the initial μ, σ (the config's head.mu, head.sigma) as mu_init,
    sigma_init; the learned per-class values are learned.mu, learned.sigma. Nothing at the top is called mu or sigma."""
    learned = {"mu": [0.5, -0.25, 1.0], "sigma": [0.9, 1.1, 1.3], "compactness": [1 / 0.9, 1 / 1.1, 1 / 1.3],
               "separability": [0.1, 0.2, 0.3], "ratio": [0.1 / 0.9, 0.2 / 1.1, 0.3 / 1.3]}
    path = write_run(tmp_path / "runs", "table3/resnet101_coco_gsoftmax_mu-0p1_sigma1", 0, learned=learned)
    stored = json.loads(path.read_text())
    assert "mu" not in stored and "sigma" not in stored
    assert (stored["mu_init"], stored["sigma_init"]) == (stored["config"]["head"]["mu"], stored["config"]["head"]["sigma"]) == (-0.1, 1.0)
    assert stored["learned"] == learned
    rec = read_record(path)
    assert (rec.mu_init, rec.sigma_init) == (-0.1, 1.0) and rec.learned.mu == learned["mu"] and rec.learned.sigma == learned["sigma"]
    old = write_run(tmp_path / "old", "table3/resnet101_coco_gsoftmax_mu-0p1_sigma1", 0, learned=learned, schema_version=3)
    assert {"mu", "sigma"} <= set(json.loads(old.read_text()))
    assert read_record(old).to_dict() == {**rec.to_dict(), "schema_version": 5}


def test_typed_parts_nan_and_plain_json(tmp_path):
    """The statistics and the environment are dataclasses in memory; results.json holds them as plain JSON objects,
    a NaN (a class without the statistic) as null, read back as NaN."""
    from gsm.analysis import empirical_stats, learned_stats

    x, y = torch.randn(40, 4, dtype=torch.float64), torch.arange(40) % 3  # class 3 has no image: NaN statistics
    emp = empirical_stats(x, y, multilabel=False)
    learned = learned_stats(torch.tensor([0.0, 0.5, 1.0, 1.5]), torch.tensor([1.0, 1.0, 2.0, 0.5]))
    env = Environment.of_run({"device": "cpu", "world_size": 1, "torch": "2.0", "cpu_threads": 2},
                             [{"first_epoch": 1, "cpu_threads": 1}, {"first_epoch": 3, "cpu_threads": 2}])
    assert env.segments == [EnvironmentSegment(first_epoch=1, cpu_threads=1), EnvironmentSegment(first_epoch=3, cpu_threads=2)]
    assert Environment.of_run({"device": "cpu"}, [{"first_epoch": 1}]).segments is None  # one environment: no segments
    rec = RunRecord(dataset="d", model="m", head="gsoftmax", seed=0, epochs=1, multilabel=False, num_classes=4,
                    class_names=list("abcd"), signature="s", config={}, mu_init=0.0, sigma_init=1.0, learned=learned,
                    empirical=EmpiricalSplits(test=emp), environment=env)
    assert math.isnan(emp.compactness[3]) and math.isnan(rec.stat("test", "ratio")[3]) and rec.stat("train", "ratio") == []
    path = rec.write(tmp_path / "results.json")
    text = path.read_text()
    stored = json.loads(text)  # strict JSON: no NaN literal
    assert "NaN" not in text and stored["empirical"]["test"]["compactness"][3] is None and stored["empirical"]["train"] is None
    assert stored["learned"] == {k: getattr(learned, k) for k in ("mu", "sigma", "compactness", "separability", "ratio")}
    assert stored["environment"]["segments"] == [{"first_epoch": 1, "world_size": None, "device": None, "torch": None,
                                                  "git_rev": None, "git_dirty": None, "cpu_threads": 1, "code": None},
                                                 {"first_epoch": 3, "world_size": None, "device": None, "torch": None,
                                                  "git_rev": None, "git_dirty": None, "cpu_threads": 2, "code": None}]
    back = read_record(path)
    assert isinstance(back.learned, LearnedStats) and isinstance(back.empirical.test, EmpiricalStats)
    assert math.isnan(back.empirical.test.compactness[3]) and back.empirical.test.count_pos == emp.count_pos
    assert back.empirical.test.mu_pos[:3] == emp.mu_pos[:3] and back.learned == learned and back.environment == env
    with pytest.raises(ResultsError, match=r"LearnedStats: mu = 'x' is not list\[float\]"):
        LearnedStats(mu="x", sigma=[], compactness=[], separability=[], ratio=[])
    with pytest.raises(ResultsError, match="keys this gsm does not know: environment.gpu"):
        Environment.of_run({"device": "cpu", "gpu": "a100"}, [])
    with pytest.raises(ValueError, match="no empirical statistic test.recall"):
        rec.stat("test", "recall")


def release_best(history):
    """main_single.lua:65-91 of the authors' release, transcribed: bestErr = 100 (percent), then after each
    epoch's test pass ``if test_top1 < bestErr then bestErr = test_top1; bestEp = epoch``."""
    best_err, best_ep = 100.0, -1
    for row in history:
        top1 = row.get("test_top1_error_frac")
        if top1 is None or math.isnan(top1):
            continue  # an epoch without a test pass (trainer.eval_every)
        if 100 * top1 < best_err:
            best_err, best_ep = 100 * top1, row["epoch"]
    return (None, None) if best_ep < 0 else (best_err / 100, best_ep)


@pytest.mark.parametrize("errors", [
    [0.5, 0.4, 0.45, 0.3, 0.35],
    [0.3, 0.4, 0.3, 0.5],  # a tie: the first epoch wins (strict <)
    [None, 0.6, None, 0.2, None, 0.25],  # eval_every = 2: only evaluated epochs count
    [0.9],
    [None, None],
    [],
    [float("nan"), 0.7, 0.8],
])
def test_best_epoch_is_the_release_selection(errors):
    history = [{"epoch": i + 1, "train_loss": 1.0, **({} if e is None else {"test_top1_error_frac": e})}
               for i, e in enumerate(errors)]
    got = best_epoch(history)
    want = release_best(history)
    assert got == (pytest.approx(want[0]) if want[0] is not None else None, want[1])
    if errors and any(e is not None and not math.isnan(e) for e in errors):
        finite = [e for e in errors if e is not None and not math.isnan(e)]
        assert got[0] == min(finite) and got[1] == errors.index(min(finite)) + 1


def test_record_metrics_maps_the_authors_definitions_and_tolerates_old_callers():
    """mAP_voc, CF1_mean, AP_voc (gsm.metrics since schema 3) land in their record and history keys; a metrics dict
    without them (an older caller) gives None there."""
    base = {"mAP": 0.6, "CP": 0.7, "CR": 0.5, "CF1": 0.58, "OP": 0.8, "OR": 0.6, "OF1": 0.69, "loss": 0.3,
            "AP": [0.5, None, 0.7], "classes_without_positives": [1],
            "top3": {"CP": 0.6, "CR": 0.4, "CF1": 0.48, "OP": 0.7, "OR": 0.5, "OF1": 0.58}}
    new = {**base, "mAP_voc": 0.62, "CF1_mean": 0.55, "AP_voc": [0.52, None, 0.72],
           "top3": {**base["top3"], "CF1_mean": 0.45}}
    rec = record_metrics(new, True)
    assert rec["mAP_voc_frac"] == 0.62 and rec["CF1_mean_frac"] == 0.55 and rec["per_class_ap_voc_frac"] == [0.52, None, 0.72]
    assert rec["mAP_frac"] == 0.6 and rec["CF1_frac"] == 0.58 and rec["per_class_ap_frac"] == [0.5, None, 0.7]
    assert rec["top3"]["CF1_mean_frac"] == 0.45 and rec["top3"]["CF1_frac"] == 0.48
    hist = record_metrics(new, True, history=True)
    assert hist["test_mAP_voc_frac"] == 0.62 and hist["test_CF1_mean_frac"] == 0.55 and hist["test_mAP_frac"] == 0.6
    old = record_metrics(base, True)
    assert old["mAP_voc_frac"] is None and old["CF1_mean_frac"] is None and old["per_class_ap_voc_frac"] is None
    old_hist = record_metrics(base, True, history=True)
    assert old_hist["test_mAP_voc_frac"] is None and old_hist["test_CF1_mean_frac"] is None
    for fields in (rec, old):
        made = RunRecord(dataset="d", model="m", head="h", seed=0, epochs=1, multilabel=True, num_classes=3,
                         class_names=list("abc"), signature="s", config={}, **fields)
        assert RunRecord.from_dict(made.to_dict()) == made
    single = record_metrics({"top1_error": 0.2, "top5_error": 0.05, "loss": 1.0}, False)
    assert set(single) == {"top1_error_frac", "top5_error_frac", "test_loss"}  # best_* come from best_epoch(history)


def test_record_metrics_maps_compute_metrics_for_results_and_history():
    g = torch.Generator().manual_seed(0)
    single = EvalOutputs(torch.randn(40, 10, generator=g), torch.randn(40, 10, generator=g), torch.arange(40) % 10)
    m = compute_metrics(single, False)
    rec = record_metrics(m, False)
    assert rec == {"top1_error_frac": m["top1_error"], "top5_error_frac": m["top5_error"], "test_loss": m["loss"]}
    assert record_metrics(m, False, history=True) == {"test_top1_error_frac": m["top1_error"],
                                                      "test_top5_error_frac": m["top5_error"], "test_loss": m["loss"]}
    targets = (torch.rand(30, 6, generator=g) < 0.4).long()
    targets[:, 5] = 0  # a class without positives
    multi = EvalOutputs(torch.randn(30, 6, 2, generator=g), torch.randn(30, 6, generator=g), targets)
    m = compute_metrics(multi, True)
    rec = record_metrics(m, True)
    assert rec["mAP_frac"] == m["mAP"] and rec["CF1_frac"] == m["CF1"] and rec["per_class_ap_frac"] == m["AP"]
    assert rec["classes_without_positives"] == [5] and rec["top3"] == {f"{k}_frac": v for k, v in m["top3"].items()}
    hist = record_metrics(m, True, history=True)
    authors = ("mAP_authors", "CP_authors", "CR_authors", "CF1_authors", "OP_authors", "OR_authors", "OF1_authors")
    assert set(hist) == {f"test_{k}_frac" for k in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "mAP_voc", "CF1_mean",
                                                    *authors)} | {"test_loss"}
    assert rec["mAP_voc_frac"] == m.get("mAP_voc") and rec["CF1_mean_frac"] == m.get("CF1_mean")
    assert rec["mAP_authors_frac"] is None  # class 5 has no positive: evaluate.m's plain mean is NaN
    assert all(0 < rec[f"{k}_frac"] <= 1 for k in authors[1:]) and rec["CP_authors_frac"] == m["CP_authors"]
    RunRecord(dataset="d", model="m", head="h", seed=0, epochs=1, multilabel=True, num_classes=6,
              class_names=list("abcdef"), signature="s", config={}, **rec)  # the record accepts them as they are


def test_unreadable_results_are_skipped_with_one_warning(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "table4/resnet101_nuswide_softmax", 0, mAP=0.6)
    bad = []
    for name, text in (("a", ""), ("b", "[]"), ("c", '{"mAP": 0.5')):
        p = runs / "nuswide" / name / "results.json"
        p.parent.mkdir(parents=True)
        p.write_text(text)
        bad.append(p)
    grid = Grid(experiments(4), "full", runs)
    assert sorted(p for p, _ in grid.unreadable) == sorted(bad)
    assert grid.rows["table4/resnet101_nuswide_softmax"].seeds == [0]
    capsys.readouterr()
    assert main(["table4", "--runs", str(runs), "--out", str(tmp_path / "t"), "--no-run"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "skipped 3 unreadable or foreign results.json" in err
    assert all(str(p) in err for p in bad)
    assert "| 60.0 |" in (tmp_path / "t" / "table4.md").read_text()


# --------------------------------------------------------------------------- identity against the config

# (field edits, the text the warning must hold): each edit contradicts the record's own config
CONTRADICTIONS = [
    ({"head": "gsoftmax"}, "head = 'gsoftmax' but its config has head.name = 'softmax'"),
    ({"dataset": "cifar100"}, "dataset = 'cifar100' but its config has dataset.name = 'tiny_imagenet'"),
    ({"model": "wrn"}, "model = 'wrn' but its config has model.name = 'resnet101'"),
    ({"mu_init": 0.3}, "mu_init = 0.3 but its config has head.mu = None"),
    ({"seed": 5}, "seed = 5 but its config has seed = 0"),
    ({"epochs": 7}, "epochs = 7 but its config has trainer.epochs = "),
    ({"signature": "0123456789"}, "signature = '0123456789' but its config's signature is "),
    ({"multilabel": True}, "multilabel = true but it holds top1_error_frac, top5_error_frac, best_top1_error_frac"),
    ({"num_classes": 199}, "num_classes = 199 but class_names has 200 entries"),
]


@pytest.mark.parametrize("edit, why", CONTRADICTIONS, ids=[next(iter(e)) for e, _ in CONTRADICTIONS])
def test_records_contradicting_their_config_are_skipped_naming_the_field(tmp_path, capsys, edit, why):
    """A hand-edited or foreign results.json whose identity fields contradict its own config is left out of the
    tables with one warning naming the file and the field; the honest run of the row is still shown."""
    runs = tmp_path / "runs"
    exp = "table2/resnet101_tiny_imagenet_softmax"
    write_run(runs, exp, 0, top1_error=0.2)
    tampered = write_run(runs / "copy", exp, 0, top1_error=0.4321)
    data = json.loads(tampered.read_text())
    tampered.write_text(json.dumps({**data, **edit}))
    read_record(tampered)  # still a well-formed record: only its identity is wrong
    capsys.readouterr()
    assert main(["table2", "--runs", str(runs), "--out", str(tmp_path / "t"), "--no-run"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "skipped 1 unreadable or foreign results.json" in err
    (line,) = [ln for ln in err.splitlines() if str(tampered) in ln]
    assert f"{tampered}: contradicts its own config: " in line and why in line, line
    md = (tmp_path / "t" / "table2.md").read_text()
    assert "| 20.00 |" in md and "43.21" not in md
    sweep = main(["sweep", "--runs", str(runs), "--out", str(tmp_path / "s")])
    assert sweep == 0 and "43.21" not in (tmp_path / "s" / "sweep.md").read_text()
    assert str(tampered) in capsys.readouterr().err


def test_records_as_written_agree_with_their_config(tmp_path):
    """Every synthetic record (built as gsm.train.build_results builds them) passes the identity check, whatever its
    experiment, variant, profile or overrides."""
    from gsm.results import identity_problems, load_records

    runs = tmp_path / "runs"
    for exp, kw in (("table1/wrn_cifar10_gsoftmax", {}), ("table3/resnet101_coco_gsoftmax_mu0_sigma1@as_written", {}),
                    ("table4/resnet101_nuswide_softmax", {"profile": "smoke"}),
                    ("table2/resnet101_tiny_imagenet_gsoftmax_mu0_sigma2", {"overrides": ("dataset.subset=160",)})):
        write_run(runs, exp, 1, **kw)
    good, bad = load_records(runs)
    assert len(good) == 4 and bad == [] and all(identity_problems(r) == [] for r in good)


# --------------------------------------------------------------------------- test_outputs.pt


def _outputs(multilabel: bool, n: int = 12, m: int = 5):
    g = torch.Generator().manual_seed(0)
    if multilabel:
        x, t = torch.randn(n, m, 2, generator=g), (torch.rand(n, m, generator=g) < 0.4).long()
        return x, torch.sigmoid(x[..., 0] - x[..., 1]), t
    x = torch.randn(n, m, generator=g)
    return x, torch.softmax(x, 1), torch.randint(0, m, (n,), generator=g)


@pytest.mark.parametrize("multilabel", [False, True])
def test_test_outputs_round_trip_and_the_file_before_schema_version(tmp_path, multilabel):
    from gsm.results import OUTPUTS_SCHEMA_VERSION, read_test_outputs, write_test_outputs

    x, p, t = _outputs(multilabel)
    path = write_test_outputs(tmp_path / "test_outputs.pt", x, p, t, multilabel=multilabel)
    blob = torch.load(path, weights_only=True)
    assert blob["schema_version"] == OUTPUTS_SCHEMA_VERSION == 2 and set(blob) == {"schema_version", "x", "p", "targets", "signature"}
    assert blob["x"].dtype == torch.float32 and blob["p"].dtype == torch.float16
    assert blob["targets"].dtype == (torch.uint8 if multilabel else torch.int16)  # as the trainer has always stored them
    out = read_test_outputs(path, multilabel=multilabel, num_classes=5, samples=12)
    assert out.schema_version == 2 and out.multilabel == multilabel
    assert torch.equal(torch.from_numpy(out.x), x) and torch.equal(torch.from_numpy(out.targets), t)
    assert torch.allclose(torch.from_numpy(out.p), p, atol=1e-3)
    assert torch.equal(torch.from_numpy(out.x_pos), x[..., 0] if multilabel else x)
    legacy = tmp_path / "legacy.pt"  # what gsm.train.save_outputs wrote before the version key: the same less the key
    torch.save({k: v for k, v in blob.items() if k not in ("schema_version", "signature")}, legacy)
    old = read_test_outputs(legacy, multilabel=multilabel, num_classes=5, samples=12)
    assert old.schema_version == 0 and (old.x == out.x).all() and (old.p == out.p).all() and (old.targets == out.targets).all()


def test_test_outputs_reader_names_the_file_and_what_is_wrong(tmp_path):
    from gsm.results import OutputsError, read_test_outputs, write_test_outputs

    x, p, t = _outputs(False)
    cases = [
        ({"schema_version": 3, "x": x, "p": p, "targets": t}, {}, "schema_version 3; this gsm reads test outputs of version 2"),
        ({"schema_version": 1, "x": x, "p": p, "targets": t, "signature": "0123456789"}, {}, "keys this gsm does not know: signature (schema_version 1)"),
        ({"schema_version": 2, "x": x, "p": p, "targets": t, "signature": 7}, {}, "signature is a int, not a run signature"),
        ({"schema_version": 2, "x": x, "p": p, "targets": t, "signature": "aaaaaaaaaa"}, {"signature": "bbbbbbbbbb"},
         "belongs to another run: it carries signature 'aaaaaaaaaa', the run's is 'bbbbbbbbbb'"),
        ({"x": x, "p": p, "targets": t, "logits": x}, {}, "keys this gsm does not know: logits"),
        ({"x": x, "p": p}, {}, "not test outputs: no targets (keys: x, p)"),
        ([x, p, t], {}, "a list, not test outputs"),
        ({"x": x, "p": p, "targets": t.float()}, {}, "targets must be integers"),
        ({"x": x[:, :4], "p": p, "targets": t}, {}, "x has shape (12, 4), expected (12, 5) or (12, 5, 2)"),
        ({"x": x, "p": p, "targets": t + 5}, {}, "targets must be class indices in 0..4"),
        ({"x": x, "p": p * 3, "targets": t}, {}, "p must be probabilities in [0, 1]"),
        ({"x": x, "p": p, "targets": t}, {"num_classes": 6}, "outputs of 5 classes, but the run has 6"),
        ({"x": x, "p": p, "targets": t}, {"samples": 13}, "outputs of 12 test images, but the run evaluated 13"),
        ({"x": x, "p": p, "targets": t}, {"multilabel": True}, "are single-label, but the run is multi-label"),
        ({"x": x, "p": p, "targets": torch.full((12, 5), 2)}, {}, "multi-label targets must be 0 or 1"),
    ]
    path = tmp_path / "test_outputs.pt"
    for blob, expect, why in cases:
        torch.save(blob, path)
        with pytest.raises(OutputsError, match=re.escape(why)) as exc:
            read_test_outputs(path, **expect)
        assert str(exc.value).startswith(f"{path}: ")
    with pytest.raises(OutputsError, match="p has shape"):  # the writer validates before writing
        write_test_outputs(tmp_path / "w.pt", x, p[0], t, multilabel=False)
    assert not (tmp_path / "w.pt").exists()
    with pytest.raises(OutputsError, match="cannot read"):
        read_test_outputs(tmp_path / "missing.pt")


@pytest.mark.slow
def test_a_real_run_passes_the_identity_check_and_its_outputs_read(cli):
    """A real trainer run (digits, 1 epoch): its record agrees with its config and its test_outputs.pt reads."""
    from gsm.results import identity_problems, load_records, read_test_outputs

    proc = cli("dataset=digits", "head=gsoftmax", "trainer.epochs=1", "dataset.subset=64", "trainer.device=cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (rec,), bad = load_records(cli.root / "runs")
    assert bad == [] and identity_problems(rec) == []
    out = read_test_outputs(rec.run_dir / "test_outputs.pt", multilabel=False, num_classes=10, samples=rec.test_samples)
    assert out.p.shape == (rec.test_samples, 10)
