"""explain.render_one_weight: the "One weight:" part of a trace alone (what the playground's weight panel shows)
is exactly the end of the full ``Trace.render()``, for every weight layer, with norms, dropout, penalties,
softmax and the closed form, and for a batch large enough that the full render abbreviates its matrices."""

import numpy as np
import pytest

import handgrad as hg
from handgrad.errors import ConfigError
from handgrad.explain import render_one_weight, trace

NETS = [
    dict(n_inputs=2, layers=[(4, "tanh"), (4, "tanh"), (1, "sigmoid")]),  # the playground's default net
    dict(n_inputs=3, layers=["4:tanh:batchnorm", "3:relu:layernorm", (2, "softmax")], dropout=0.2, l2=0.1),
    dict(n_inputs=2, layers=[{"size": 3, "activation": "sigmoid", "norm": "batch"}, (1, "identity")], loss="mse"),
    dict(n_inputs=3, layers=[(4, "leaky_relu"), (4, "softplus"), (2, "identity")], dropout=0.25, bias=False),
    dict(n_inputs=2, layers=[(6, "gelu"), (3, "silu"), (2, "sigmoid")], loss="binary_cross_entropy", l1=0.01),
    dict(n_inputs=3, layers=[(8, "softmax"), (3, "tanh"), (2, "softmax")], loss="mse"),  # hidden softmax, > 6 units
]


def _batch(net, n, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, net.n_inputs))
    if net.output_activation.name == "softmax":
        T = np.eye(net.n_outputs)[rng.integers(0, net.n_outputs, size=n)]
    elif net.output_activation.name == "sigmoid":
        T = rng.integers(0, 2, size=(n, net.n_outputs)).astype(float)
    else:
        T = rng.normal(size=(n, net.n_outputs))
    return X, T


def _weights(net):
    """The first and the last weight of every layer."""
    return [(k, i, j) for k, layer in enumerate(net.layers, 1)
            for i, j in {(0, 0), (layer.W.shape[0] - 1, layer.W.shape[1] - 1)}]


@pytest.mark.parametrize("config", NETS)
@pytest.mark.parametrize("rows", [5, 1100])  # 1100 rows: NumPy's threshold, the full render abbreviates
def test_one_weight_is_the_end_of_the_full_render(config, rows):
    net = hg.MLP(seed=3, **config)
    X, T = _batch(net, rows, seed=rows)
    for weight in _weights(net):
        tr = trace(net, X, T, weight=weight)
        for precision in (4, 6):
            full = tr.render(precision=precision)
            alone = render_one_weight(tr, precision=precision)
            assert alone.startswith(f"One weight: W{weight[0]}[{weight[1]},{weight[2]}]")
            assert full.endswith("\n\n" + alone)
            assert alone == full[full.index("\nOne weight:") + 1:]
            assert alone.count("\n    n = ") == rows  # every row's term, even where the matrices are abbreviated
        if rows > 1000:
            assert "..." in full[:full.index("\nOne weight:")]  # the full render's matrices are abbreviated


def test_one_weight_rejects_what_is_not_a_trace():
    with pytest.raises(ConfigError, match="takes a Trace"):
        render_one_weight("One weight:")
