import math

import pytest
import torch

from gsm.errors import ConfigError
from gsm.schedules import build_scheduler, epoch_factors, malleable_factors


def test_malleable_paper_setting():
    f = malleable_factors([(1000, 0, -8), (1100, -8, -9)])
    assert f.dtype == torch.float64 and len(f) == 1100
    assert f[0] == 1.0 and math.isclose(f[-1].item(), 1e-9, rel_tol=1e-12)
    assert math.isclose(f[999].item(), 1e-8, rel_tol=1e-12) and math.isclose(f[1000].item(), 1e-8, rel_tol=1e-12)
    # continuous: the boundary step is no larger than the steps next to it (in log space)
    logf = torch.log10(f)
    steps = logf[1:] - logf[:-1]
    assert abs(steps[999]) <= min(abs(steps[998]), abs(steps[1000])), "no jump at the piece boundary"
    assert steps[:999].abs().max() == pytest.approx(8 / 999) and steps[1000:].abs().max() == pytest.approx(1 / 99)
    assert (steps <= 0).all()


def test_malleable_pieces_must_chain():
    with pytest.raises(ConfigError, match="schedule.pieces"):
        malleable_factors([(10, 0, -1), (20, -2, -3)])
    with pytest.raises(ConfigError, match="trainer.epochs"):
        epoch_factors("malleable", 300, pieces=[(1000, 0, -8), (1100, -8, -9)])


def test_staircase_matches_multisteplr():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[60, 120, 160, 220, 260], gamma=0.2)
    expected = []
    for _ in range(300):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    got = epoch_factors("staircase", 300, milestones=[60, 120, 160, 220, 260], gamma=0.2)
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-12)
    assert got[59] == 1.0 and math.isclose(got[60].item(), 0.2)


def test_linspace_logspace_and_scheduler():
    assert torch.equal(epoch_factors("linspace", 5, start=1.0, end=0.0), torch.linspace(1, 0, 5, dtype=torch.float64))
    assert torch.allclose(epoch_factors("logspace", 4, start=0, end=-3), torch.tensor([1, 0.1, 0.01, 0.001], dtype=torch.float64))
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([{"params": [p]}, {"params": [torch.zeros(1, requires_grad=True)], "lr": 10.0}], lr=0.1)
    sched = build_scheduler(opt, epoch_factors("logspace", 3, start=0, end=-2))
    lrs = []
    for _ in range(3):
        lrs.extend(g["lr"] for g in opt.param_groups)
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1, 10.0, 0.01, 1.0, 0.001, 0.1])


def test_bad_schedule_keys():
    with pytest.raises(ConfigError, match="schedule.milestones"):
        epoch_factors("staircase", 10, gamma=0.1)
    with pytest.raises(ConfigError, match="schedule.start"):
        epoch_factors("constant", 10, start=1)
    with pytest.raises(ConfigError, match="schedule.name='cosine'"):
        epoch_factors("cosine", 10)


# --------------------------------------------------------------------------- factors are finite and >= 0


@pytest.mark.parametrize(("name", "params", "key"), [
    ("linspace", {"start": -1.0, "end": 0.01}, "schedule.start"),     # gradient ascent from epoch 1
    ("linspace", {"start": 1.0, "end": -0.5}, "schedule.end"),        # ... from the middle of training
    ("linspace", {"start": float("nan"), "end": 0.0}, "schedule.start"),
    ("linspace", {"start": "abc", "end": 0.0}, "schedule.start"),
    ("staircase", {"milestones": [2, 4], "gamma": -1.0}, "schedule.gamma"),
    ("staircase", {"milestones": [2, 4], "gamma": float("inf")}, "schedule.gamma"),
    ("staircase", {"milestones": "abc", "gamma": 0.1}, "schedule.milestones"),
    ("staircase", {"milestones": [4, 2], "gamma": 0.1}, "schedule.milestones"),
    ("staircase", {"milestones": [0, 2], "gamma": 0.1}, "schedule.milestones[0]"),
    ("staircase", {"milestones": [2, 2.5], "gamma": 0.1}, "schedule.milestones[1]"),
    ("logspace", {"start": 400, "end": 0}, "schedule.start"),         # 10^400 overflows to inf
    ("logspace", {"start": 0, "end": float("nan")}, "schedule.end"),
    ("malleable", {"pieces": [(10, 0, float("nan"))]}, "schedule.pieces[0][2]"),
    ("malleable", {"pieces": [(10, 500, 0)]}, "schedule.pieces[0][1]"),
    ("malleable", {"pieces": [("ten", 0, -1)]}, "schedule.pieces[0][0]"),
    ("malleable", {"pieces": "abc"}, "schedule.pieces"),
])
def test_bad_factors_are_a_config_error_naming_the_key(name, params, key):
    with pytest.raises(ConfigError) as err:
        epoch_factors(name, 10, **params)
    assert str(err.value).startswith(key), str(err.value)


def test_epochs_must_be_a_positive_integer():
    for bad in (0, -3, "abc", 2.5, True):
        with pytest.raises(ConfigError, match="^trainer.epochs"):
            epoch_factors("constant", bad)


@pytest.mark.parametrize(("name", "params"), [
    ("constant", {}),
    ("staircase", {"milestones": [3, 6], "gamma": 0.0}),     # gamma 0 stops training, but is not negative
    ("staircase", {"milestones": [150, 225], "gamma": 0.1}),  # milestones beyond the last epoch have no effect
    ("linspace", {"start": 1.0, "end": 0.0}),
    ("logspace", {"start": 0, "end": -400}),                  # underflows to 0, which is allowed
    ("malleable", {"pieces": [(5, 0, -8), (10, -8, -9)]}),
])
def test_valid_schedules_give_finite_nonnegative_factors(name, params):
    f = epoch_factors(name, 10, **params)
    assert len(f) == 10 and torch.isfinite(f).all() and (f >= 0).all()
    if name == "staircase" and params["milestones"] == [150, 225]:
        assert torch.equal(f, torch.ones(10, dtype=torch.float64))
