"""explain's shapes match the real arrays; trace's numbers are the engine's; the LaTeX is well-formed."""

import re

import numpy as np
import pytest
from conftest import LogCosh, Softsign

import handgrad as hg
from handgrad.explain import explain, trace
from handgrad.layers import OBJECTIVE

ARCHITECTURES = [
    dict(n_inputs=2, layers=[(2, "relu"), (2, "relu"), (1, "sigmoid")], loss="half_squared_error", bias=False),
    dict(n_inputs=3, layers=[(5, "tanh"), (4, "softmax")], loss="cross_entropy"),
    dict(n_inputs=4, layers=[(3, "elu"), (2, "softmax")], loss="mse", l2=0.1),
    dict(n_inputs=2, layers=[(6, "gelu"), (3, "silu"), (2, "sigmoid")], loss="binary_cross_entropy", l1=0.01),
    dict(n_inputs=5, layers=[(1, "identity")], loss="half_squared_error"),
    dict(n_inputs=3, layers=[(4, "leaky_relu"), (4, "softplus"), (2, "identity")], dropout=0.25, bias=False),
    dict(n_inputs=3, layers=[(4, "softmax"), (3, "tanh"), (2, "softmax")], loss="mse"),  # softmax in a hidden layer
    dict(n_inputs=2, layers=[(3, "softmax"), (4, "softmax"), (2, "sigmoid")], loss="binary_cross_entropy", l2=0.1),
    dict(n_inputs=3, layers=["4:tanh:batchnorm", "3:relu:layernorm", (2, "softmax")], dropout=0.2, l2=0.1),
    dict(n_inputs=2, layers=[{"size": 3, "activation": "sigmoid", "norm": "batch"}, (1, "identity")], loss="mse"),
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
    for k, (layer, record) in enumerate(zip(net.layers, tr.layers, strict=True), 1):
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
        if net.dropout_rate(k):
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
    assert pytest.approx(J, rel=1e-12) == tr.J
    for record, (dW, db) in zip(tr.layers, grads, strict=True):
        np.testing.assert_allclose(record["dW"], dW, rtol=1e-10, atol=1e-14)
        if db is not None:
            np.testing.assert_allclose(record["db"], db, rtol=1e-10, atol=1e-14)
    if any(layer.norm is not None and layer.norm.kind == "batch" for layer in net.layers):
        # the trace shows J as loss_and_grad differentiates it: with the batch's statistics, not predict's running ones
        expected = net.run_forward(net.check_inputs(X), OBJECTIVE)
    else:
        expected = net.forward(X)
    np.testing.assert_allclose(tr.layers[-1]["A"], expected, rtol=1e-12)
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
    for batch_size in [0, 2.5, "x", None]:
        with pytest.raises(hg.ConfigError, match="batch_size must be a positive integer"):
            trace(net, batch_size=batch_size)
    with pytest.raises(hg.ConfigError, match="batch_size must be a positive integer"):
        explain(net, batch_size="x")
    with pytest.raises(hg.ConfigError, match="trace needs an MLP"):
        trace("not a net")


def test_trace_renders_the_engines_forward_backward(monkeypatch):
    net = hg.MLP(3, [(4, "tanh"), (2, "sigmoid")], seed=0)
    calls = []
    engine = net.forward_backward

    def spy(X, T, sample_weight=None):
        calls.append(engine(X, T, sample_weight))
        return calls[-1]

    monkeypatch.setattr(net, "forward_backward", spy)
    tr = trace(net, batch_size=3)
    assert len(calls) == 1 and tr.layers is calls[0][1]  # the records shown are the engine's own
    for record, layer in zip(tr.layers, net.layers, strict=True):
        expected_dZ = record["dA"] * (1 - record["A"] ** 2) if layer.activation.name == "tanh" else None
        if expected_dZ is not None:  # the equation shown (dZ = dA * tanh'(Z)) holds for the numbers shown
            np.testing.assert_allclose(record["dZ"], expected_dZ, rtol=1e-12)


def test_hidden_softmax_backward_is_its_jacobian_vector_product():
    net = hg.MLP(3, [(4, "softmax"), (3, "tanh"), (2, "identity")], loss="mse", seed=0)
    rule = "dZ1 = A1 * (dA1 - rowsum(dA1 * A1))"
    text = explain(net)
    assert rule in text and "softmax'(Z1)" not in text and "Jacobian" in text
    assert f"`{rule}`" in explain(net, format="markdown")
    latex = explain(net, format="latex")
    assert (r"\mathrm{d}Z_{1} &= A_{1} \odot (\mathrm{d}A_{1} - \mathrm{rowsum}(\mathrm{d}A_{1} \odot A_{1}))"
            in latex)
    tr = trace(net, weight=(1, 2, 1))
    shown = tr.render()
    assert rule in shown and "dZ1[0,1] = A1[0,1] (dA1[0,1] - sum_q dA1[0,q] A1[0,q])" in shown
    A, dA, dZ = (tr.layers[0][name] for name in ("A", "dA", "dZ"))
    np.testing.assert_allclose(dZ, A * (dA - np.sum(dA * A, axis=1, keepdims=True)), rtol=1e-12, atol=1e-16)
    _, grads = net.loss_and_grad(tr.X, tr.T)
    assert tr.element_sum == pytest.approx(float(grads[0][0][2, 1]), rel=1e-10, abs=1e-15)


def _align_bodies(latex):
    return re.findall(r"\\begin\{align\*\}(.*?)\\end\{align\*\}", latex, re.S)


def _bare_words(body):
    """Alphabetic runs of 2+ letters that are neither a LaTeX command nor inside \\text, \\mathrm, \\operatorname."""
    body = re.sub(r"\\(?:text|mathrm|operatorname)\{[^{}]*\}", " ", body)
    body = re.sub(r"\\[A-Za-z]+", " ", body)
    return re.findall(r"[A-Za-z]{2,}", body)


LATEX_NETS = [
    *ARCHITECTURES,
    dict(n_inputs=2, layers=[(3, Softsign()), (2, "identity")], loss=LogCosh(), l2=0.5, l1=0.25),
    dict(n_inputs=2, layers=[(3, "leaky_relu"), (1, "sigmoid")], loss="half_squared_error"),
]


@pytest.mark.parametrize("config", LATEX_NETS)
@pytest.mark.parametrize("batch_size", [None, 3])
def test_latex_is_well_formed(config, batch_size):
    net = hg.MLP(seed=0, **config)
    latex = explain(net, format="latex", batch_size=batch_size)
    bodies = _align_bodies(latex)
    assert len(bodies) == 3 == latex.count(r"\begin{align*}") == latex.count(r"\end{align*}")
    for body in bodies:
        assert _bare_words(body) == [], body
        for row in body.strip().split("\\\\\n"):
            assert row.count("&=") == 1 and row.count("&&") == 1, row
            assert row.count("{") == row.count("}"), row
            assert not re.search(r"_(\{[^{}]*\}|[^{\s\\])\s*_", row), f"double subscript in {row}"
        for inside in re.findall(r"\\(?:text|mathrm|operatorname)\{([^{}]*)\}", body):
            assert not re.search(r"(?<!\\)_", inside), f"unescaped _ in text: {inside}"
    backward = bodies[2]
    for k, layer in enumerate(net.layers, 1):  # db is written as dW is: \mathrm{d} and the layer as a subscript
        assert rf"\mathrm{{d}}W_{{{k}}} &=" in backward
        assert (rf"\mathrm{{d}}b_{{{k}}} &=" in backward) == (layer.b is not None)
    assert "db_" not in latex


def test_bare_word_check_finds_bare_words():
    assert _bare_words(r"J &= x && scalar") == ["scalar"]
    assert _bare_words(r"J &= \text{the batch} \odot \mathrm{rowsum}(A) && N \times 2") == []
    assert _bare_words(r"db_{2} &= 1") == ["db"]


def test_text_formulas_fill_in_the_leaky_relu_slope():
    text = explain(hg.MLP(2, [(3, hg.activations.LeakyReLU(0.2)), (1, "identity")], seed=0))
    assert "leaky_relu(z) = z if z > 0 else 0.2 z" in text and "leaky_relu'(z) = 1 if z > 0 else 0.2" in text


NORM_NETS = [c for c in ARCHITECTURES if any(isinstance(spec, (str, dict)) for spec in c["layers"])]


@pytest.mark.parametrize("config", NORM_NETS)
def test_explain_and_trace_show_the_norms_with_their_shapes_and_numbers(config):
    net = hg.MLP(seed=0, **config)
    N = 5
    shapes = _shapes(explain(net, batch_size=N))
    tr = trace(net, batch_size=N)
    text = tr.render()
    for k, (layer, record) in enumerate(zip(net.layers, tr.layers, strict=True), 1):
        if layer.norm is None:
            assert f"gamma{k}" not in shapes and "Zhat{k}" not in record
            continue
        for symbol, key in (("mu", "mean"), ("var", "var"), ("xhat", "xhat"), ("Zhat", "Zhat"), ("dZhat", "dZhat")):
            assert shapes[f"{symbol}{k}"] == _as_string(record[key].shape), symbol
        for symbol in ("gamma", "beta", "dgamma", "dbeta"):
            assert shapes[f"{symbol}{k}"] == _as_string(record[symbol].shape), symbol
        assert f"A{k} = {layer.activation.name}(Zhat{k})" in text and f"dgamma{k} = column sums" in text
        np.testing.assert_allclose(record["Zhat"], record["gamma"] * record["xhat"] + record["beta"], rtol=1e-12)
        np.testing.assert_allclose(record["dgamma"], dict(net.gradients())[f"gamma{k}"], rtol=1e-12)
    if any(layer.norm is not None and layer.norm.kind == "batch" for layer in net.layers[tr.weight[0] - 1:]):
        assert f"sums over all {N} samples" in text  # the per-element bars show the batch coupling
