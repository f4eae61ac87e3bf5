"""The three engines (scalar graph, seed 003's per-sample loop, the batched MLP) agree to 1e-12 in float64,
with softmax in any position."""

import numpy as np
import pytest
from conftest import LogCosh, Softsign

import handgrad as hg
from handgrad.reference import Value, per_sample_gradients, scalar_gradients

HIDDEN = ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "elu", "gelu", "silu", "exp"]
OUTPUTS = [("sigmoid", "binary_cross_entropy", 2), ("softmax", "cross_entropy", 3),
           ("softmax", "half_squared_error", 3), ("softmax", "mse", 3), ("identity", "mse", 2),
           ("identity", "half_squared_error", 1), ("sigmoid", "half_squared_error", 1), ("tanh", "mse", 2),
           ("exp", "half_poisson_deviance", 2), ("softplus", "half_poisson_deviance", 2), ("exp", "mse", 1)]


def _problem(hidden, output, loss, K, bias, l2=0.0, l1=0.0, seed=0, hidden_layers=None):
    rng = np.random.default_rng(seed)
    hidden_layers = hidden_layers or [(4, hidden), (3, "tanh")]
    net = hg.MLP(3, [*hidden_layers, (K, output)], loss=loss, bias=bias, l2=l2, l1=l1, seed=seed)
    for layer in net.layers:  # non-zero biases, so that their gradient paths are exercised
        if layer.b is not None:
            layer.b[...] = rng.normal(scale=0.3, size=layer.b.shape)
    X = rng.normal(size=(5, 3))
    if loss == "cross_entropy":
        T = rng.integers(0, K, 5)
    elif loss == "binary_cross_entropy":
        T = rng.integers(0, 2, (5, K)).astype(float)
    else:
        T = rng.uniform(0, 1, (5, K))
    return net, X, T


def _assert_agree(first, second, tol=1e-12):
    J1, g1 = first
    J2, g2 = second
    assert abs(J1 - J2) <= tol
    for (dW1, db1), (dW2, db2) in zip(g1, g2, strict=True):
        np.testing.assert_allclose(dW1, dW2, rtol=0, atol=tol)
        if db1 is None:
            assert db2 is None
        else:
            np.testing.assert_allclose(db1, db2, rtol=0, atol=tol)


@pytest.mark.parametrize("output,loss,K", OUTPUTS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_three_engines_agree(hidden, output, loss, K):
    for bias in (True, False):
        net, X, T = _problem(hidden, output, loss, K, bias)
        batched = net.loss_and_grad(X, T)
        _assert_agree(batched, scalar_gradients(net, X, T))
        _assert_agree(batched, per_sample_gradients(net, X, T))


@pytest.mark.parametrize("output,loss,K", OUTPUTS[:3])
def test_regularization_and_sample_weights(output, loss, K):
    net, X, T = _problem("tanh", output, loss, K, True, l2=0.3, l1=0.05, seed=3)
    w = np.random.default_rng(1).uniform(0.2, 2.0, 5)
    batched = net.loss_and_grad(X, T, sample_weight=w)
    _assert_agree(batched, scalar_gradients(net, X, T, sample_weight=w))
    _assert_agree(batched, per_sample_gradients(net, X, T, sample_weight=w))


# softmax in hidden positions (first, middle, several in a row) under every kind of output
HIDDEN_SOFTMAX_NETS = [
    ([(4, "softmax"), (3, "tanh")], ("sigmoid", "binary_cross_entropy", 2)),
    ([(4, "tanh"), (3, "softmax")], ("softmax", "cross_entropy", 3)),
    ([(4, "softmax"), (3, "softmax")], ("identity", "mse", 2)),
    ([(3, "softmax"), (4, "relu"), (2, "softmax")], ("softmax", "half_squared_error", 3)),
]


@pytest.mark.parametrize("hidden,output", HIDDEN_SOFTMAX_NETS)
def test_three_engines_agree_with_softmax_in_hidden_layers(hidden, output):
    activation, loss, K = output
    for bias, l2, l1, weighted in [(True, 0.0, 0.0, False), (False, 0.0, 0.0, False), (True, 0.2, 0.05, True)]:
        net, X, T = _problem(None, activation, loss, K, bias, l2=l2, l1=l1, seed=4, hidden_layers=hidden)
        for layer in net.layers:  # larger weights: softmax rows far from uniform, gradients far from 0
            layer.W *= 3.0
        w = np.random.default_rng(7).uniform(0.2, 2.0, 5) if weighted else None
        batched = net.loss_and_grad(X, T, sample_weight=w)
        assert max(float(np.abs(dW).max()) for dW, _ in batched[1]) > 1e-3  # gradients that can disagree
        _assert_agree(batched, scalar_gradients(net, X, T, sample_weight=w))
        _assert_agree(batched, per_sample_gradients(net, X, T, sample_weight=w))
        J, records = net.forward_backward(X, T, sample_weight=w)  # the records that explain and trace show
        _assert_agree((J, [(r["dW"], r["db"]) for r in records]), per_sample_gradients(net, X, T, sample_weight=w))


def test_scalar_rule_on_seed_000_network():
    net = hg.MLP(2, [(2, "relu"), (2, "relu"), (1, "sigmoid")], loss="half_squared_error", bias=False, seed=0)
    X = np.array([[0.5, -1.0], [1.5, 0.25]])
    T = np.array([1.0, 0.0])
    _assert_agree(net.loss_and_grad(X, T), scalar_gradients(net, X, T))


def test_value_local_derivatives_by_hand():
    x, y = Value(3.0), Value(-2.0)
    out = (x * y + x.square()) / y  # (xy + x^2)/y = x + x^2/y
    out.backward()
    assert out.data == pytest.approx(3.0 + 9.0 / -2.0)
    assert x.grad == pytest.approx(1 + 2 * 3.0 / -2.0)  # d/dx = 1 + 2x/y
    assert y.grad == pytest.approx(-9.0 / 4.0)          # d/dy = -x^2/y^2


def test_shared_node_sums_over_children():
    x = Value(2.0)
    out = x * x + x  # x has three uses: seed 000's rule sums them
    out.backward()
    assert x.grad == pytest.approx(2 * 2.0 + 1)


def test_user_defined_activation_and_loss_in_per_sample_engine():
    net = hg.MLP(3, [(4, Softsign()), (2, "identity")], loss=LogCosh(), seed=1)
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    _assert_agree(net.loss_and_grad(X, T), per_sample_gradients(net, X, T))
    # the scalar engine expands the user's activation by its own forward/derivative, but not a user loss
    with pytest.raises(hg.ConfigError):
        scalar_gradients(net, X, T)


# ---------------------------------------------------------------------- normalization layers
@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("output,loss,K", OUTPUTS[:4])
def test_engines_agree_with_normalization_layers(norm, output, loss, K):
    from handgrad.reference import per_sample_gradients_by_name, scalar_gradients_by_name

    rng = np.random.default_rng(3)
    net = hg.MLP(3, [{"size": 4, "activation": "tanh", "norm": norm}, {"size": 3, "activation": "relu", "norm": norm},
                     (K, output)], loss=loss, seed=3, l2=0.1)
    for name, array in net.parameters():
        if name.startswith(("gamma", "beta", "b")):
            array[...] = rng.normal(scale=0.5, size=array.shape) + (1.0 if name.startswith("gamma") else 0.0)
    _, X, T = _problem("tanh", output, loss, K, True, seed=3)
    w = rng.uniform(0.5, 2.0, size=5)
    J, _ = net.loss_and_grad(X, T, sample_weight=w)
    batched = dict((name, g.copy()) for name, g in net.gradients())
    engines = [scalar_gradients_by_name(net, X, T, sample_weight=w), per_sample_gradients_by_name(net, X, T, w)]
    for J_other, grads in engines:
        assert abs(J - J_other) <= 1e-12
        assert set(grads) == set(batched) >= {"gamma1", "beta1", "gamma2", "beta2"}
        for name, g in batched.items():
            np.testing.assert_allclose(grads[name], g, rtol=0, atol=1e-12, err_msg=name)
    _assert_agree((J, [(batched[f"W{k}"], batched.get(f"b{k}")) for k in (1, 2, 3)]), scalar_gradients(net, X, T, w))


@pytest.mark.parametrize("output,loss,K", OUTPUTS[:3])
def test_the_per_loss_term_loop_is_seed_003s_loop_without_batch_norm(output, loss, K):
    """With no batch norm the per-loss-term loop keeps one nonzero row and equals the per-sample engine."""
    from handgrad.reference import per_loss_term_gradients, per_sample_gradients_by_name

    net, X, T = _problem("tanh", output, loss, K, True, l2=0.1, seed=4,
                         hidden_layers=[(4, "softmax"), {"size": 3, "activation": "relu", "norm": "layer"}])
    J1, g1 = per_sample_gradients_by_name(net, X, T)
    J2, g2 = per_loss_term_gradients(net, X, T)
    assert abs(J1 - J2) <= 1e-12
    for name in g1:
        np.testing.assert_allclose(g2[name], g1[name], rtol=0, atol=1e-12, err_msg=name)
