"""The layer contract; Dense: forward Z = X W + b, A = f(Z); backward dW = X^T dZ, db = column sums,
dX = dZ W^T, and nothing else; Dropout (inverted); dtypes."""

import numpy as np
import pytest

import handgrad as hg
from handgrad.layers import Dense, Dropout


def _layer(activation="tanh", bias=True, dtype=np.float64, seed=0, n_in=4, n_out=3):
    rng = np.random.default_rng(seed)
    layer = Dense(n_in, n_out, activation, bias=bias, dtype=dtype)
    layer.W[...] = rng.normal(size=layer.W.shape)
    if bias:
        layer.b[...] = rng.normal(size=n_out)
    return layer, rng


@pytest.mark.parametrize("activation", ["tanh", "gelu", "relu"])  # gelu keeps Z, tanh and relu overwrite it
def test_forward_and_backward_formulas(activation):
    layer, rng = _layer(activation)
    X = rng.normal(size=(5, 4))
    A = layer.forward(X).copy()
    Z = X @ layer.W + layer.b
    np.testing.assert_allclose(A, layer.activation.forward(Z), rtol=1e-14)
    dY = rng.normal(size=A.shape)
    dZ = dY * layer.activation.derivative(Z, layer.activation.forward(Z))
    dX = layer.backward(dY.copy(), need_dX=True)
    np.testing.assert_allclose(layer.dW, X.T @ dZ, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(layer.db, dZ.sum(axis=0), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dX, dZ @ layer.W.T, rtol=1e-13, atol=1e-15)
    assert layer.backward(dY.copy(), need_dX=False) is None


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "softmax"])
def test_backward_writes_the_gradients_and_changes_nothing_else(activation):
    # The contract: backward computes dJ/dW, dJ/db and dJ/dX. The parameters are the optimizer's to change.
    layer, rng = _layer(activation, n_in=6, n_out=5)
    X = rng.normal(size=(7, 6))
    A = layer.forward(X).copy()
    W0, b0 = layer.W.copy(), layer.b.copy()
    dY = rng.normal(size=A.shape)
    dZ = layer.activation.backward(dY.copy(), X @ W0 + b0, A)
    dX = layer.backward(dY.copy(), need_dX=True)
    np.testing.assert_allclose(dX, dZ @ W0.T, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(layer.dW, X.T @ dZ, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(layer.dZ, dZ, rtol=1e-13, atol=1e-15)
    assert np.array_equal(layer.W, W0) and np.array_equal(layer.b, b0)


def test_parameters_are_listed_by_name_and_bound_to_given_arrays():
    layer = Dense(3, 2, "relu")
    assert layer.parameter_shapes() == [("W", (3, 2)), ("b", (2,))]
    theta, grads = np.arange(8.0), np.zeros(8)
    layer.bind({"W": theta[:6].reshape(3, 2), "b": theta[6:]}, {"W": grads[:6].reshape(3, 2), "b": grads[6:]})
    assert [name for name, _ in layer.parameters()] == ["W", "b"] == [name for name, _ in layer.gradients()]
    layer.forward(np.ones((1, 3)))
    layer.backward(np.ones((1, 2)), need_dX=False)
    np.testing.assert_array_equal(grads, [1, 1, 1, 1, 1, 1, 1, 1])  # X = 1, Z > 0: dW = 1, db = 1, in place
    theta[0] = -5.0
    assert layer.W[0, 0] == -5.0


def test_without_bias():
    layer, rng = _layer("identity", bias=False)
    assert layer.b is None and layer.db is None
    assert [name for name, _ in layer.parameters()] == ["W"]
    X = rng.normal(size=(3, 4))
    np.testing.assert_allclose(layer.forward(X), X @ layer.W, rtol=1e-14)


def test_buffers_are_reused_per_batch_size():
    layer, rng = _layer("sigmoid")
    first = layer.forward(rng.normal(size=(5, 4)))
    second = layer.forward(rng.normal(size=(5, 4)))
    assert second is first  # the same buffer, overwritten (documented: copy to keep)
    third = layer.forward(rng.normal(size=(2, 4)))
    assert third.shape == (2, 3)


def test_inverted_dropout_masks_scale_and_backward_uses_the_same_mask():
    p = 0.4
    drop = Dropout(p, np.random.default_rng(1))
    X = np.random.default_rng(0).normal(size=(50, 200))
    Y = drop.forward(X, training=True).copy()
    kept = Y != 0
    assert abs(kept.mean() - (1 - p)) < 0.02
    np.testing.assert_allclose(Y[kept], X[kept] / (1 - p), rtol=1e-13)
    dX = drop.backward(np.ones_like(Y))
    np.testing.assert_allclose(dX, kept / (1 - p), rtol=1e-13)
    assert drop.forward(X) is X  # outside training: no dropout
    assert drop.backward(np.ones_like(Y)) is not None and drop.parameter_shapes() == []


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "x"])
def test_dropout_rate_is_validated(rate):
    with pytest.raises(hg.ConfigError, match="dropout"):
        Dropout(rate)
    with pytest.raises(hg.ConfigError, match="dropout"):
        hg.MLP(2, [(3, "relu"), (1, "sigmoid")], dropout=rate)


@pytest.mark.parametrize("activation", ["relu", "softmax", "gelu"])
def test_float32_layer_keeps_float32(activation):
    layer, rng = _layer(activation, dtype=np.float32)
    X = rng.normal(size=(4, 4)).astype(np.float32)
    Y = layer.forward(X)
    assert Y.dtype == np.float32
    dX = layer.backward(np.ones_like(Y))
    assert dX.dtype == layer.dW.dtype == layer.db.dtype == layer.W.dtype == np.float32
