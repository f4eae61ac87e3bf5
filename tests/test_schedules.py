import math

import pytest

from handgrad.errors import ConfigError
from handgrad.schedules import (Constant, Cosine, Exponential, OneCycle, ReduceOnPlateau, StepDecay,
                                get_schedule)


def started(schedule, base=0.1, total=100, per_epoch=10):
    schedule.start(base, total, per_epoch)
    return schedule


def test_constant_step_and_exponential():
    assert started(Constant()).rate(57) == 0.1
    s = started(StepDecay(step_size=3, gamma=0.5))
    assert s.rate(0) == 0.1 and s.rate(29) == 0.1  # epochs 0..2
    assert s.rate(30) == pytest.approx(0.05)  # epoch 3
    assert s.rate(65) == pytest.approx(0.025)  # epoch 6
    e = started(Exponential(gamma=0.9))
    assert e.rate(9) == pytest.approx(0.1)
    assert e.rate(25) == pytest.approx(0.1 * 0.9 ** 2)


def test_cosine_with_warmup():
    s = started(Cosine(warmup=0.1, min_rate=0.001))  # 10 warm-up steps of 100
    assert s.rate(0) == pytest.approx(0.01)
    assert s.rate(9) == pytest.approx(0.1)
    assert s.rate(10) == pytest.approx(0.1)  # start of the cosine
    assert s.rate(55) == pytest.approx(0.001 + 0.099 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s.rate(100) == pytest.approx(0.001)
    rates = [s.rate(k) for k in range(10, 100)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_one_cycle_matches_torch():
    torch = pytest.importorskip("torch")
    total = 37
    ours = started(OneCycle(pct_start=0.3), base=0.05, total=total, per_epoch=37)
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.05)
    theirs = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=total, cycle_momentum=False)
    for step in range(total):
        assert ours.rate(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15), step
        opt.step()
        theirs.step()


def test_one_cycle_shape():
    s = started(OneCycle(pct_start=0.25, div=10, final_div=100), base=1.0, total=100)
    assert s.rate(0) == pytest.approx(0.1)
    assert max(range(100), key=s.rate) == 24  # pct_start * total - 1
    assert s.rate(24) == pytest.approx(1.0)
    assert s.rate(99) == pytest.approx(0.1 / 100)


def test_reduce_on_plateau_and_its_state():
    s = started(ReduceOnPlateau(factor=0.5, patience=1))
    for value in [1.0, 0.9, 0.95, 0.95]:  # two epochs without improvement -> one reduction
        s.end_epoch(value)
    assert s.rate(0) == pytest.approx(0.05)
    copy = started(ReduceOnPlateau(factor=0.5, patience=1))
    copy.load_state_dict(s.state_dict())
    assert (copy.best, copy.bad_epochs, copy.reductions) == (s.best, s.bad_epochs, s.reductions)
    s.end_epoch(0.5)
    assert s.rate(0) == pytest.approx(0.05) and s.best == 0.5


def test_names_and_errors():
    assert isinstance(get_schedule(None), Constant)
    assert isinstance(get_schedule("one-cycle"), OneCycle)
    assert isinstance(get_schedule("cosine", warmup=0.1), Cosine)
    with pytest.raises(ConfigError, match="Did you mean 'cosine'"):
        get_schedule("cosin")
    with pytest.raises(ConfigError, match="gamma"):
        StepDecay(gamma=-1)
    with pytest.raises(ConfigError, match="load"):
        Constant().load_state_dict({"name": "step"})
