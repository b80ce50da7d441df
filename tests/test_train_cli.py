"""The real CLI (python train.py …) end to end on the embedded digits data."""

import json

import pytest

from conftest import run_cli


def test_dry_run_prints_counts(cli):
    out = cli("dry_run=true")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info == {**info, "train_samples": 1347, "test_samples": 450, "num_classes": 10, "multilabel": False,
                    "input_shape": [1, 32, 32]}
    assert info["params"] > 10_000


@pytest.mark.slow
def test_train_digits_writes_results_and_skips_finished(cli):
    args = ("trainer.epochs=2", "dataset.subset=256", "head=gsoftmax")
    out = cli(*args)
    assert out.returncode == 0, out.stderr
    results = list(cli.root.rglob("results.json"))
    assert len(results) == 1
    run_dir = results[0].parent
    res = json.loads(results[0].read_text())
    for key in ("dataset", "model", "head", "mu_init", "sigma_init", "lam", "seed", "epochs", "top1_error_frac", "learned",
                "empirical", "wall_time_s", "git_rev", "history", "schema_version", "data_fingerprint", "environment"):
        assert key in res, key
    assert res["head"] == "gsoftmax" and res["epochs"] == 2 and 0 <= res["top1_error_frac"] <= 1
    assert (res["mu_init"], res["sigma_init"]) == (0.0, 1.0) and "mu" not in res and "sigma" not in res  # initial ...
    assert len(res["learned"]["sigma"]) == 10 and all(s > 0 for s in res["learned"]["sigma"])  # ... and learned
    assert res["learned"]["mu"] != [0.0] * 10
    assert len(res["empirical"]["test"]["compactness"]) == 10 and "train" in res["empirical"]
    assert (run_dir / "train.log").stat().st_size > 0 and (run_dir / ".hydra" / "config.yaml").exists()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("train/loss_step")]  # per-step curves: ~10 points per epoch
    per_epoch = -(-256 // 64)  # 4 batches: every step and the last one
    assert steps == list(range(1, 2 * per_epoch + 1)) and len(events.Scalars("time/images_per_second_step")) == len(steps)
    assert len((run_dir / "summary.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    assert (run_dir / "checkpoints" / "last.pt").exists() and (run_dir / "test_outputs.pt").exists()
    mtime = results[0].stat().st_mtime
    again = cli(*args)
    assert again.returncode == 0 and "this run is finished" in again.stdout and str(results[0]) in again.stdout
    assert results[0].stat().st_mtime == mtime


@pytest.mark.slow
def test_train_mosaic_multilabel_metrics(cli):
    out = cli("dataset=digits_mosaic", "head=softmax", "trainer.epochs=1", "dataset.subset=200")
    assert out.returncode == 0, out.stderr
    res = json.loads(next(cli.root.rglob("results.json")).read_text())
    for key in ("mAP_frac", "CP_frac", "CR_frac", "CF1_frac", "OP_frac", "OR_frac", "OF1_frac", "per_class_ap_frac", "top3"):
        assert key in res
    assert len(res["per_class_ap_frac"]) == 10 and res["learned"] is None


def test_bad_head_config_names_key_without_traceback(cli):
    for args, key in ((("head.sigma=-1",), "head.sigma"), (("head=lsoftmax", "dataset=digits_mosaic"), "head=lsoftmax"),
                      (("head.lam=nan",), "head.lam"), (("head=lsoftmax", "head.margin=0"), "head.margin")):
        out = cli("dry_run=true", *args)
        assert out.returncode != 0, args
        assert key in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr, out.stderr


def test_unknown_key_is_a_clear_hydra_error(cli):
    out = cli("dry_run=true", "head=softmax", "head.lam=0.5")
    assert out.returncode != 0 and "lam" in out.stderr and "Traceback" not in out.stderr


def test_console_script_and_lsoftmax(cli, tmp_path):
    out = run_cli(f"output_root={tmp_path}", "head=lsoftmax", "trainer.epochs=1", "dataset.subset=128", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads(next(tmp_path.rglob("results.json")).read_text())
    assert res["head"] == "lsoftmax" and 0 <= res["top1_error_frac"] <= 1


@pytest.mark.slow
def test_eval_every_skips_test_passes_without_changing_training_or_the_result(tmp_path):
    """trainer.eval_every=2 over 3 epochs evaluates epochs 2 and 3 (the last, always); training, the final
    result and the run's identity equal those of evaluating every epoch."""
    import csv

    args = ("trainer.epochs=3", "dataset.subset=128", "head=gsoftmax", "trainer.analyze_train=false")
    runs = {}
    for every in (1, 2):
        out = run_cli(f"output_root={tmp_path / str(every)}", *args, f"trainer.eval_every={every}")
        assert out.returncode == 0, out.stderr[-3000:]
        found = list((tmp_path / str(every)).rglob("results.json"))
        assert len(found) == 1
        runs[every] = (found[0].parent, json.loads(found[0].read_text()))
    (dir1, every1), (dir2, every2) = runs[1], runs[2]
    assert dir1.name == dir2.name  # eval_every is not part of the run's identity
    assert every2["top1_error_frac"] == every1["top1_error_frac"] and every2["learned"] == every1["learned"]
    assert [r["train_loss"] for r in every2["history"]] == [r["train_loss"] for r in every1["history"]]
    evaluated = ["test_top1_error_frac" in r for r in every2["history"]]
    assert evaluated == [False, True, True] and all("test_top1_error_frac" in r for r in every1["history"])
    assert every2["history"][0]["eval_seconds"] == 0.0 and every2["history"][1]["eval_seconds"] > 0
    assert every2["history"][1]["test_top1_error_frac"] == every1["history"][1]["test_top1_error_frac"]
    rows = list(csv.DictReader((dir2 / "summary.csv").open()))
    assert [r["test_top1_error_frac"] == "" for r in rows] == [True, False, False]


@pytest.mark.slow
def test_help_does_not_import_torch_and_a_bad_key_is_one_line():
    import subprocess
    import sys

    from conftest import REPO

    code = ("import sys; sys.argv = ['train.py', '--help', 'head=softmax']\n"
            "from gsm.cli import train\n"
            "try:\n    train()\nexcept SystemExit as e:\n    print('EXIT', e.code, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("gsm: G-softmax") and "head: gsoftmax, lsoftmax, msml, softmax" in out.stdout
    assert out.stdout.strip().endswith("EXIT 0 False"), out.stdout[-500:] + out.stderr[-2000:]
    for bad, says in (("trainer.epoch=3", "did you mean trainer.epochs?"), ("dataset=cifar1000", "cifar100")):
        for entry in ("train.py", "python -m gsm.train"):
            proc = run_cli("--help", bad, entry=entry)
            assert proc.returncode == 2 and proc.stderr.startswith("gsm: error:") and says in proc.stderr, proc.stderr
            assert "Traceback" not in proc.stderr


def test_run_returns_the_record_that_results_json_holds(tmp_path, capsys):
    """``gsm.train.run(cfg)`` returns the typed record: the one it wrote, and on a rerun the one it skipped to."""
    from conftest import run_dir_of, train

    import json

    from gsm.results import RunRecord, read_record

    args = ("dataset=digits", "head=gsoftmax", "trainer.epochs=1", "dataset.subset=64", "trainer.analyze_train=false")
    first = train(tmp_path, *args)
    assert isinstance(first, RunRecord)
    written = read_record(run_dir_of(tmp_path) / "results.json")
    same = lambda a, b: json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)  # NaN too
    assert same(first, written)
    assert first.mu_init == 0.0 and first.learned is not None and len(first.learned.mu) == 10
    again = train(tmp_path, *args)  # finished: skipped, the recorded record comes back
    assert "this run is finished" in capsys.readouterr().out
    assert isinstance(again, RunRecord) and same(again, written)
    assert train(tmp_path, *args, "dry_run=true") is None


@pytest.mark.parametrize("args", [(), ("head=softmax", "output_root=/some/where"),
                                  ("experiment=table3/resnet101_coco_gsoftmax_mu0_sigma1",)])
def test_gsm_renders_the_same_help_as_hydra_without_its_compositions(args):
    """``--help`` is rendered by gsm (gsm.cli.gsm_help: the template with the composed values and the config groups)
    in a fraction of Hydra's time; a hydra.* override sends it through Hydra's own app_help, the oracle: the two
    texts are the same, byte for byte."""
    ours = run_cli("--help", *args)
    hydras = run_cli("--help", *args, "hydra.job.name=train")  # Hydra's path (the same config)
    assert ours.returncode == hydras.returncode == 0, (ours.stderr, hydras.stderr)
    assert ours.stdout == hydras.stdout and "== Config groups (group=option) ==" in ours.stdout
    assert "experiment/table3: resnet101_coco_gsoftmax_empirical," in ours.stdout


# --------------------------------------------------------------------------- gsm.cli in this process


def _train_exit(monkeypatch, *args: str) -> int:
    """``python train.py ARGS`` through gsm.cli.train in this process: its exit code."""
    import sys

    from gsm import cli

    monkeypatch.setattr(sys, "argv", ["train.py", *args])
    with pytest.raises(SystemExit) as info:
        cli.train()
    return info.value.code


class _TrainerImport:
    """What ``from gsm.train import main`` finds: a module whose ``main`` arrives with ``signum`` (a Ctrl-C or a
    SIGTERM while torch and the trainer are imported), delivered only to a handler gsm installed."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __getattr__(self, name: str):
        import signal

        if name != "main":
            raise AttributeError(name)
        assert callable(signal.getsignal(self.signum)), "no handler holds the signal during the import"
        signal.raise_signal(self.signum)
        return lambda: pytest.fail("the trainer ran after the signal")


@pytest.mark.parametrize("signame, code, line", [("SIGINT", 130, "INTERRUPTED"), ("SIGTERM", 143, "TERMINATED")])
def test_a_signal_while_the_trainer_is_imported_is_one_line_and_the_handlers_are_restored(monkeypatch, capsys,
                                                                                          signame, code, line):
    import signal
    import sys

    from gsm import cli

    signum = getattr(signal, signame)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    monkeypatch.setitem(sys.modules, "gsm.train", _TrainerImport(signum))
    assert _train_exit(monkeypatch, "dry_run=true") == code
    assert capsys.readouterr().err.splitlines() == [getattr(cli, line)]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_process_started_with_ctrl_c_ignored_keeps_ignoring_it_while_the_trainer_is_imported(monkeypatch, capsys):
    """A shell starts a background job (``python train.py ... &``) with SIGINT ignored: a SIGINT during the imports
    neither stops the run nor leaves a handler behind."""
    import signal
    import sys

    from gsm import cli

    ran = []

    class IgnoredCtrlC:
        def __getattr__(self, name: str):
            if name != "main":
                raise AttributeError(name)
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
            return lambda: ran.append("trainer")

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        monkeypatch.setitem(sys.modules, "gsm.train", IgnoredCtrlC())
        monkeypatch.setattr(sys, "argv", ["train.py", "dry_run=true"])
        cli.train()
        assert ran == ["trainer"] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capsys.readouterr().err == ""


def test_ctrl_c_before_the_trainers_own_handler_is_one_line(monkeypatch, capsys):
    import gsm.train
    from gsm import cli

    def interrupted():
        raise KeyboardInterrupt  # Hydra composing, before a run's handler is in place

    monkeypatch.setattr(gsm.train, "main", interrupted)
    assert _train_exit(monkeypatch, "dry_run=true") == 130
    assert capsys.readouterr().err.splitlines() == [cli.INTERRUPTED]


def test_the_entry_from_another_thread_checks_the_command_line_and_leaves_signals_alone(monkeypatch, capsys):
    import signal
    import sys
    import threading

    from gsm import cli

    monkeypatch.setattr(sys, "argv", ["train.py", "head.sigma=-1"])
    before = signal.getsignal(signal.SIGTERM)
    ended = []

    def entry():
        try:
            cli.train()
        except SystemExit as exc:
            ended.append(exc.code)

    thread = threading.Thread(target=entry)
    thread.start()
    thread.join()
    assert ended == [2] and signal.getsignal(signal.SIGTERM) is before
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("gsm: error: ") and "head.sigma" in err[0]


def test_what_hydra_reports_itself_is_left_to_hydra_by_the_early_checks(capsys):
    """The checks before torch answer what they know in one line; a usage error or a config Hydra cannot compose is
    Hydra's own message (the checks return without a word)."""
    from gsm import cli
    from gsm.errors import ConfigError

    for check in (cli.check_sweep_needs_multirun, cli.check_values, cli.gsm_help):
        assert check(["--help", "--no-such-flag"]) is None  # argparse's usage error: Hydra prints it
    capsys.readouterr()
    assert cli.check_values(["dataset=nonesuch"]) is None  # no such option: Hydra's error names the choices
    with pytest.raises(ConfigError, match="head.sigma"):
        cli.check_values(["head.sigma=-1"])
    assert "== Config groups (group=option) ==" in cli.gsm_help(["--help"])
