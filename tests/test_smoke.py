import numpy as np

import handgrad as hg


def test_seed_000_network_shapes_and_gradient():
    net = hg.MLP(2, [(2, "relu"), (2, "relu"), (1, "sigmoid")], loss="half_squared_error", bias=False, seed=0)
    assert [layer.W.shape for layer in net.layers] == [(2, 2), (2, 2), (2, 1)]
    assert all(layer.b is None for layer in net.layers)
    X = np.random.default_rng(0).normal(size=(6, 2))
    T = np.array([0, 1, 1, 0, 1, 0.0])
    assert hg.gradcheck(net, X, T).max_error < 1e-6


def test_cli_default_run(capsys):
    from handgrad.cli import main

    assert main([]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_explain_is_callable_twice():
    # handgrad.explain is both a module and the function the package exports: the function must win.
    net = hg.MLP(2, [(2, "relu"), (1, "sigmoid")], seed=0)
    assert hg.explain(net) == hg.explain(net)
    assert "dW1" in hg.explain(net)
