import math

import numpy as np
import pytest

from handgrad.errors import ConfigError
from handgrad.optimizers import SGD, Adam, AdamW, Momentum, Nesterov, RMSprop, from_state_dict, get_optimizer


def run(optimizer, p0, grads, lr):
    """Apply ``optimizer`` to a copy of p0 with the given gradient sequence; return the parameter after each step."""
    p = np.array(p0, dtype=np.float64)
    out = []
    for g in grads:
        optimizer.step(p, np.array(g, dtype=np.float64), lr)
        out.append(p.copy())
    return out


def test_sgd_first_steps():
    (p1, p2) = run(SGD(), [1.0, -2.0], [[0.5, 1.0], [-1.0, 2.0]], lr=0.1)
    assert np.allclose(p1, [1.0 - 0.05, -2.0 - 0.1])
    assert np.allclose(p2, [0.95 + 0.1, -2.1 - 0.2])


def test_momentum_first_steps():
    mu, lr = 0.9, 0.1
    p1, p2 = run(Momentum(mu), [1.0], [[2.0], [1.0]], lr)
    b1 = 2.0  # b = mu*0 + g
    assert p1[0] == pytest.approx(1.0 - lr * b1)
    b2 = mu * b1 + 1.0
    assert p2[0] == pytest.approx(1.0 - lr * b1 - lr * b2)


def test_nesterov_first_steps():
    mu, lr = 0.9, 0.1
    p1, p2 = run(Nesterov(mu), [1.0], [[2.0], [1.0]], lr)
    b1 = 2.0
    assert p1[0] == pytest.approx(1.0 - lr * (2.0 + mu * b1))
    b2 = mu * b1 + 1.0
    assert p2[0] == pytest.approx(p1[0] - lr * (1.0 + mu * b2))


def test_adam_first_steps():
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.01
    p1, p2 = run(Adam(b1, b2, eps), [0.5], [[2.0], [-1.0]], lr)
    # step 1: m_hat = g, v_hat = g^2, so the step is lr * g/(|g| + eps) ~ lr * sign(g)
    assert p1[0] == pytest.approx(0.5 - lr * 2.0 / (2.0 + eps), rel=1e-12)
    m = (1 - b1) * 2.0 * b1 + (1 - b1) * -1.0
    v = (1 - b2) * 4.0 * b2 + (1 - b2) * 1.0
    m_hat, v_hat = m / (1 - b1 ** 2), v / (1 - b2 ** 2)
    assert p2[0] == pytest.approx(p1[0] - lr * m_hat / (math.sqrt(v_hat) + eps), rel=1e-12)


def test_adamw_decays_before_the_adam_step():
    lr, wd = 0.01, 0.1
    (p1,) = run(AdamW(weight_decay=wd), [0.5], [[2.0]], lr)
    assert p1[0] == pytest.approx(0.5 * (1 - lr * wd) - lr * 2.0 / (2.0 + 1e-8), rel=1e-12)
    # with a zero gradient, only the decay acts
    (q1,) = run(AdamW(weight_decay=wd), [0.5], [[0.0]], lr)
    assert q1[0] == pytest.approx(0.5 * (1 - lr * wd), rel=1e-12)


def test_rmsprop_first_steps():
    alpha, eps, lr = 0.99, 1e-8, 0.01
    p1, p2 = run(RMSprop(alpha, eps), [0.5], [[2.0], [1.0]], lr)
    v1 = (1 - alpha) * 4.0
    assert p1[0] == pytest.approx(0.5 - lr * 2.0 / (math.sqrt(v1) + eps), rel=1e-12)
    v2 = alpha * v1 + (1 - alpha) * 1.0
    assert p2[0] == pytest.approx(p1[0] - lr * 1.0 / (math.sqrt(v2) + eps), rel=1e-12)
    q1, q2 = run(RMSprop(alpha, eps, momentum=0.5), [0.5], [[2.0], [1.0]], lr)
    buf1 = 2.0 / (math.sqrt(v1) + eps)
    buf2 = 0.5 * buf1 + 1.0 / (math.sqrt(v2) + eps)
    assert q2[0] == pytest.approx(0.5 - lr * buf1 - lr * buf2, rel=1e-12)


def _torch_pair(name):
    torch = pytest.importorskip("torch")
    ours = {
        "sgd": lambda: SGD(),
        "momentum": lambda: Momentum(0.8),
        "nesterov": lambda: Nesterov(0.8),
        "adam": lambda: Adam(0.85, 0.99, 1e-7),
        "adamw": lambda: AdamW(0.85, 0.99, 1e-7, weight_decay=0.05),
        "rmsprop": lambda: RMSprop(0.9, 1e-7),
        "rmsprop_momentum": lambda: RMSprop(0.9, 1e-7, momentum=0.7),
    }[name]()
    theirs = {
        "sgd": lambda p, lr: torch.optim.SGD(p, lr=lr),
        "momentum": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.8),
        "nesterov": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.8, nesterov=True),
        "adam": lambda p, lr: torch.optim.Adam(p, lr=lr, betas=(0.85, 0.99), eps=1e-7),
        "adamw": lambda p, lr: torch.optim.AdamW(p, lr=lr, betas=(0.85, 0.99), eps=1e-7, weight_decay=0.05),
        "rmsprop": lambda p, lr: torch.optim.RMSprop(p, lr=lr, alpha=0.9, eps=1e-7),
        "rmsprop_momentum": lambda p, lr: torch.optim.RMSprop(p, lr=lr, alpha=0.9, eps=1e-7, momentum=0.7),
    }[name]
    return torch, ours, theirs


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "rmsprop_momentum"])
def test_matches_torch_optim_in_float64(name):
    torch, ours, make_theirs = _torch_pair(name)
    rng = np.random.default_rng(1)
    shapes = [(4, 3), (3,), (3, 2)]  # torch steps three tensors; ours steps one vector holding all three
    params = [rng.normal(size=s) for s in shapes]
    tparams = [torch.tensor(p.copy(), dtype=torch.float64, requires_grad=True) for p in params]
    theta = np.concatenate([p.ravel() for p in params])
    lr = 0.05
    theirs = make_theirs(tparams, lr)
    for step in range(6):
        grads = [rng.normal(size=s) for s in shapes]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g.copy(), dtype=torch.float64)
        theirs.step()
        g = np.concatenate([g.ravel() for g in grads])
        ours.step(theta, g, lr)
        expected = np.concatenate([tp.detach().numpy().ravel() for tp in tparams])
        assert np.max(np.abs(theta - expected)) < 1e-12, f"{name}: step {step + 1} differs"


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"])
def test_step_reads_the_gradient_and_never_writes_it(name):
    rng = np.random.default_rng(3)
    p, g = rng.normal(size=7), rng.normal(size=7)
    kept = g.copy()
    opt = get_optimizer(name)
    for _ in range(3):
        before = p.copy()
        opt.step(p, g, 0.1)
        assert np.array_equal(g, kept), f"{name} changed the gradient vector"
        assert not np.array_equal(p, before)


def test_step_refuses_lists_and_mismatched_vectors():
    with pytest.raises(ConfigError, match=r"net\.params, net\.grads"):
        SGD().step([np.zeros(3)], [np.zeros(3)], 0.1)
    with pytest.raises(ConfigError, match=r"net\.params, net\.grads"):
        SGD().step(np.zeros(3), np.zeros(4), 0.1)
    opt = Adam()
    opt.step(np.zeros(3), np.ones(3), 0.1)
    with pytest.raises(ConfigError, match="fresh optimizer"):
        opt.step(np.zeros(5), np.ones(5), 0.1)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"])
def test_state_dict_round_trip_continues_identically(name):
    rng = np.random.default_rng(2)
    p = rng.normal(size=20)
    a = get_optimizer(name)
    for _ in range(3):
        a.step(p, rng.normal(size=p.shape), 0.01)
    b = from_state_dict(a.state_dict())
    q = p.copy()
    g = rng.normal(size=p.shape)
    a.step(p, g.copy(), 0.01)
    b.step(q, g.copy(), 0.01)
    assert np.array_equal(p, q)
    assert b.t == 4


def test_float32_state_and_parameters_stay_float32():
    p = np.ones(6, np.float32)
    for name in ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"]:
        opt = get_optimizer(name)
        opt.step(p, np.full(6, 0.5, np.float32), 0.01)
        assert p.dtype == np.float32
        assert all(a.dtype == np.float32 for a in opt.state.values())


def test_step_allocates_state_once():
    p = np.zeros(4)
    opt = Adam()
    opt.step(p, np.ones(4), 0.1)
    buffers = [id(a) for a in opt.state.values()] + [id(opt._work)]
    opt.step(p, np.ones(4), 0.1)
    assert [id(a) for a in opt.state.values()] + [id(opt._work)] == buffers


def test_bad_names_and_values_raise_config_errors():
    with pytest.raises(ConfigError, match="Did you mean 'adam'"):
        get_optimizer("adm")
    with pytest.raises(ConfigError, match="momentum"):
        Momentum(1.5)
    with pytest.raises(ConfigError, match="beta1"):
        Adam(beta1=-0.1)
    with pytest.raises(ConfigError):
        get_optimizer("adam", momentum=0.9)
