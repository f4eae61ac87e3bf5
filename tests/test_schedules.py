"""Learning-rate schedules: their formulas, their state, and every one with a torch.optim.lr_scheduler
counterpart checked against it at every step to 1e-12 (relative to the base rate)."""

import math
from itertools import pairwise

import pytest

from handgrad.errors import ConfigError
from handgrad.schedules import (
    Constant,
    Cosine,
    Exponential,
    OneCycle,
    ReduceOnPlateau,
    StepDecay,
    get_schedule,
)


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
    assert all(a >= b for a, b in pairwise(rates))


# ---------------------------------------------------------------- against torch.optim.lr_scheduler
TOLERANCE = 1e-12  # |ours - torch| <= TOLERANCE * base rate, at every step


def compare_with_torch(ours, make_torch, base, epochs, per_epoch, torch_steps_per="epoch", monitored=None):
    """Run ours as the trainer does (start, then rate(step) before each batch, end_epoch after each epoch)
    beside a torch scheduler on an SGD optimizer, stepped per batch or per epoch; return how many rates
    were compared. ``monitored`` gives the value told to both after each epoch (reduce-on-plateau)."""
    torch = pytest.importorskip("torch")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    scheduler = make_torch(torch.optim.lr_scheduler, optimizer)
    ours.start(base, epochs * per_epoch, per_epoch)
    compared = 0
    for epoch in range(epochs):
        for batch in range(per_epoch):
            step = epoch * per_epoch + batch
            theirs = optimizer.param_groups[0]["lr"]
            assert abs(ours.rate(step) - theirs) <= TOLERANCE * base, (step, ours.rate(step), theirs)
            compared += 1
            optimizer.step()
            if torch_steps_per == "batch":
                scheduler.step()
        value = None if monitored is None else monitored[epoch]
        ours.end_epoch(value)
        if torch_steps_per == "epoch":
            scheduler.step() if value is None else scheduler.step(value)
    return compared


@pytest.mark.parametrize("step_size, gamma", [(1, 0.9), (3, 0.5), (4, 0.31)])
def test_step_decay_matches_torch_step_lr(step_size, gamma):
    assert compare_with_torch(StepDecay(step_size=step_size, gamma=gamma),
                              lambda lr, opt: lr.StepLR(opt, step_size=step_size, gamma=gamma),
                              base=0.1, epochs=13, per_epoch=7) == 91


@pytest.mark.parametrize("gamma", [0.95, 0.5, 1.02])
def test_exponential_matches_torch_exponential_lr(gamma):
    assert compare_with_torch(Exponential(gamma=gamma), lambda lr, opt: lr.ExponentialLR(opt, gamma=gamma),
                              base=0.05, epochs=15, per_epoch=4) == 60


@pytest.mark.parametrize("min_rate", [0.0, 1e-3])
def test_cosine_without_warmup_matches_torch_cosine_annealing_lr(min_rate):
    epochs, per_epoch = 9, 11
    assert compare_with_torch(Cosine(min_rate=min_rate),
                              lambda lr, opt: lr.CosineAnnealingLR(opt, T_max=epochs * per_epoch, eta_min=min_rate),
                              base=0.1, epochs=epochs, per_epoch=per_epoch, torch_steps_per="batch") == 99


@pytest.mark.parametrize("warmup, warmup_steps", [(0.1, 10), (2, 16)], ids=["fraction", "epochs"])
def test_cosine_with_warmup_matches_torch_linear_then_cosine(warmup, warmup_steps):
    """Warm-up eta0 (s + 1) / W is LinearLR(1/W -> 1 over W - 1 steps); then CosineAnnealingLR over S - W."""
    epochs, per_epoch, min_rate = 12, 8, 1e-4
    total = epochs * per_epoch

    def make(lr, opt):
        rise = lr.LinearLR(opt, start_factor=1 / warmup_steps, end_factor=1.0, total_iters=warmup_steps - 1)
        fall = lr.CosineAnnealingLR(opt, T_max=total - warmup_steps, eta_min=min_rate)
        return lr.SequentialLR(opt, [rise, fall], milestones=[warmup_steps])

    assert compare_with_torch(Cosine(warmup=warmup, min_rate=min_rate), make, base=0.1, epochs=epochs,
                              per_epoch=per_epoch, torch_steps_per="batch") == total


@pytest.mark.parametrize("pct_start, div, final_div, total", [(0.3, 25.0, 1e4, 37), (0.25, 10.0, 100.0, 100),
                                                              (0.5, 4.0, 1e3, 64)])
def test_one_cycle_matches_torch(pct_start, div, final_div, total):
    def make(lr, opt):
        return lr.OneCycleLR(opt, max_lr=0.05, total_steps=total, pct_start=pct_start, div_factor=div,
                             final_div_factor=final_div, cycle_momentum=False)

    assert compare_with_torch(OneCycle(pct_start=pct_start, div=div, final_div=final_div), make, base=0.05,
                              epochs=1, per_epoch=total, torch_steps_per="batch") == total


@pytest.mark.parametrize("factor, patience, min_delta, min_rate", [(0.5, 1, 0.0, 0.0), (0.1, 0, 0.05, 1e-3),
                                                                   (0.7, 2, 0.01, 0.0)])
def test_plateau_matches_torch_reduce_lr_on_plateau(factor, patience, min_delta, min_rate):
    # a loss that improves, stalls, improves by less than min_delta, and jumps
    monitored = [1.0, 0.8, 0.79, 0.8, 0.81, 0.5, 0.49, 0.495, 0.6, 0.3, 0.3, 0.29, 0.31, 0.32, 0.33, 0.1]
    ours = ReduceOnPlateau(factor=factor, patience=patience, min_delta=min_delta, min_rate=min_rate)

    def make(lr, opt):
        return lr.ReduceLROnPlateau(opt, mode="min", factor=factor, patience=patience, threshold=min_delta,
                                    threshold_mode="abs", min_lr=min_rate, cooldown=0, eps=0.0)

    compare_with_torch(ours, make, base=0.1, epochs=len(monitored), per_epoch=3, monitored=monitored)
    assert ours.reductions >= 2  # the sequence does make it reduce


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
