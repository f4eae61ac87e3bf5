"""explain's shapes match the real arrays; trace's numbers are the engine's."""

import re

import numpy as np
import pytest

import handgrad as hg
from handgrad.explain import explain, forward_backward, trace

ARCHITECTURES = [
    dict(n_inputs=2, layers=[(2, "relu"), (2, "relu"), (1, "sigmoid")], loss="half_squared_error", bias=False),
    dict(n_inputs=3, layers=[(5, "tanh"), (4, "softmax")], loss="cross_entropy"),
    dict(n_inputs=4, layers=[(3, "elu"), (2, "softmax")], loss="mse", l2=0.1),
    dict(n_inputs=2, layers=[(6, "gelu"), (3, "silu"), (2, "sigmoid")], loss="binary_cross_entropy", l1=0.01),
    dict(n_inputs=5, layers=[(1, "identity")], loss="half_squared_error"),
    dict(n_inputs=3, layers=[(4, "leaky_relu"), (4, "softplus"), (2, "identity")], dropout=0.25, bias=False),
]


def _shapes(text):
    """{symbol: shape string} parsed from explain's text: '  Z1 = X W1   N x 2   detail'."""
    shapes = {}
    for line in text.splitlines():
        if not line.startswith("  ") or " = " not in line or line.startswith("  note"):
            continue
        columns = re.split(r"\s{3,}", line.strip())
        shapes[columns[0].split(" = ")[0]] = columns[1]
    return shapes


def _as_string(shape):
    return " x ".join(str(d) for d in shape) if len(shape) == 2 else str(shape[0])


@pytest.mark.parametrize("config", ARCHITECTURES)
def test_explain_shapes_match_the_arrays(config):
    net = hg.MLP(seed=0, **config)
    N = 7
    shapes = _shapes(explain(net, batch_size=N))
    tr = trace(net, batch_size=N)
    assert shapes["X"] == _as_string(tr.X.shape)
    assert shapes["T"] == _as_string(tr.T.shape)
    assert shapes["J"] == "scalar"
    L = len(net.layers)
    for k, (layer, record) in enumerate(zip(net.layers, tr.layers), 1):
        assert shapes[f"W{k}"] == _as_string(layer.W.shape)
        assert shapes[f"dW{k}"] == _as_string(record["dW"].shape)
        assert shapes[f"Z{k}"] == _as_string(record["Z"].shape)
        assert shapes[f"A{k}"] == _as_string(record["A"].shape)
        assert shapes[f"dZ{k}"] == _as_string(record["dZ"].shape)
        if layer.b is None:
            assert f"b{k}" not in shapes and f"db{k}" not in shapes
        else:
            assert shapes[f"b{k}"] == shapes[f"db{k}"] == _as_string(record["db"].shape)
        if k < L:
            assert shapes[f"dA{k}"] == _as_string(record["dA"].shape)
        if layer.dropout:
            assert shapes[f"Y{k}"] == _as_string(record["A"].shape)
    assert "dX" not in shapes
    assert (f"dA{L}" in shapes) == (not net.closed_form)


def test_explain_names_closed_form_regularization_and_symbolic_N():
    net = hg.MLP(3, [(4, "tanh"), (2, "softmax")], loss="cross_entropy", l2=0.5, seed=0)
    text = explain(net)
    assert "dZ2 = (A2 - T) / N" in text and "closed form" in text
    assert "+ 0.5 W1" in text and "||W_k||^2" in text
    assert "N x 4" in text
    general = explain(hg.MLP(3, [(4, "tanh"), (2, "softmax")], loss="mse", seed=0))
    assert "general chain rule" in general and "rowsum" in general
    assert "b1" not in explain(hg.MLP(2, [(3, "relu"), (1, "sigmoid")], bias=False))


def test_explain_formats():
    net = hg.MLP(2, [(2, "relu"), (1, "sigmoid")], seed=0)
    markdown = explain(net, format="markdown")
    assert "| `Z1 = X W1 + b1` | N x 2 |" in markdown
    latex = explain(net, format="latex")
    assert r"\begin{align*}" in latex and latex.count(r"\begin{align*}") == latex.count(r"\end{align*}")
    assert r"Z_{1} &= X W_{1} + b_{1} && N \times 2" in latex
    with pytest.raises(hg.ConfigError):
        explain(net, format="html")
    with pytest.raises(hg.ConfigError):
        explain("not a net")


@pytest.mark.parametrize("config", ARCHITECTURES)
def test_trace_numbers_equal_the_engine(config):
    net = hg.MLP(seed=1, **{**config, "dropout": 0.0})
    rng = np.random.default_rng(2)
    X = rng.normal(size=(5, net.n_inputs))
    T = net.check_targets(trace(net, batch_size=5).T, 5)  # targets the loss accepts
    J, grads = net.loss_and_grad(X, T)
    tr = trace(net, X, T, weight=(len(net.layers), 0, 0))
    assert tr.J == pytest.approx(J, rel=1e-12)
    for record, (dW, db) in zip(tr.layers, grads):
        np.testing.assert_allclose(record["dW"], dW, rtol=1e-10, atol=1e-14)
        if db is not None:
            np.testing.assert_allclose(record["db"], db, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(tr.layers[-1]["A"], net.forward(X), rtol=1e-12)
    assert tr.element_sum == pytest.approx(tr.engine_value, rel=1e-10, abs=1e-15)
    assert tr.matrix_value == pytest.approx(tr.engine_value, rel=1e-10, abs=1e-15)


def test_trace_of_seed_000_network_shows_the_per_element_sum():
    net = hg.MLP(2, [(2, "relu"), (2, "relu"), (1, "sigmoid")], loss="half_squared_error", bias=False, seed=0)
    tr = trace(net, weight=(1, 1, 0))
    text = tr.render()
    assert "dW1[1,0] = sum_n X[n,1] dZ1[n,0]" in text
    assert text.count("n = ") >= 4
    _, grads = net.loss_and_grad(tr.X, tr.T)
    assert f"{float(grads[0][0][1, 0]):.12g}" in text
    assert tr.element_sum == pytest.approx(float(grads[0][0][1, 0]), rel=1e-12, abs=1e-16)
    assert tr.render("markdown").startswith("```text")


def test_trace_rejects_bad_weights():
    net = hg.MLP(2, [(3, "relu"), (1, "sigmoid")], seed=0)
    for weight in [(0, 0, 0), (3, 0, 0), (1, 2, 0), (1, 0, 3), "x"]:
        with pytest.raises(hg.ConfigError):
            trace(net, weight=weight)
    with pytest.raises(hg.ConfigError):
        trace(net, X=np.zeros((2, 2)))


def test_forward_backward_derivative_at_activation_differs_for_tanh():
    net = hg.MLP(2, [(3, "tanh"), (1, "identity")], seed=0)
    X, T = np.random.default_rng(0).normal(size=(4, 2)), np.zeros((4, 1))
    _, right = forward_backward(net, X, T)
    _, wrong = forward_backward(net, X, T, derivative_at="A")
    assert not np.allclose(right[0]["dW"], wrong[0]["dW"])
    np.testing.assert_allclose(right[1]["dW"], wrong[1]["dW"])  # an identity output has f' = 1 either way
