"""The run record (gsm.results): the one schema the trainer writes and every reader reads."""

from __future__ import annotations

import json

import pytest
import torch
from synthetic_runs import write_run

from gsm.grid import Grid
from gsm.paper import experiments
from gsm.reproduce import main
from gsm.results import SCHEMA_VERSION, ResultsError, RunRecord, read_record, record_metrics
from gsm.train import EvalOutputs, compute_metrics


def test_synthetic_run_round_trips_through_the_record(tmp_path):
    path = write_run(tmp_path / "runs", "table1/wrn_cifar10_gsoftmax", 3, top1_error=0.25)
    rec = read_record(path)
    assert rec.schema_version == SCHEMA_VERSION == 2 and rec.seed == 3 and rec.top1_error_frac == 0.25
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
                        ({"schema_version": 3}, "schema_version 3"), ({"top1_error_frac": 12.5}, "percent"),
                        ({"top_1_error": 0.1}, "keys this gsm does not know: top_1_error")):
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(ResultsError, match=why) as exc:
            read_record(path)
        assert str(path) in str(exc.value)


def test_schema_v1_is_upgraded_on_read(tmp_path):
    """What the trainer wrote before schema_version (unit-less keys) reads as version 2, same values."""
    v2 = json.loads(write_run(tmp_path / "runs", "table3/resnet101_coco_softmax", 0).read_text())
    v1 = {k: v for k, v in v2.items() if k not in ("schema_version", "run_name", "data_fingerprint", "data_root",
                                                     "environment", "eval_seconds_total", "checkpoint_seconds_total")}
    for k in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1"):
        v1[k] = v1.pop(f"{k}_frac")
    v1["per_class_ap"] = v1.pop("per_class_ap_frac")
    v1["top3"] = {k.removesuffix("_frac"): v for k, v in v1["top3"].items()}
    v1["history"] = [{"epoch": 1, "test_mAP": 0.4, "test_loss": 0.7, "train_loss": 0.9}]
    path = tmp_path / "old-run" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(v1))
    rec = read_record(path)
    assert rec.schema_version == 2 and rec.mAP_frac == v2["mAP_frac"] and rec.per_class_ap_frac == v2["per_class_ap_frac"]
    assert rec.top3 == v2["top3"] and rec.history == [{"epoch": 1, "test_mAP_frac": 0.4, "test_loss": 0.7, "train_loss": 0.9}]
    assert rec.run_name == "old-run" and rec.environment["device"] == "cpu"


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
    assert set(hist) == {f"test_{k}_frac" for k in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")} | {"test_loss"}
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
    assert err.count("warning") == 1 and "skipped 3 unreadable results.json" in err
    assert all(str(p) in err for p in bad)
    assert "| 60.0 |" in (tmp_path / "t" / "table4.md").read_text()
