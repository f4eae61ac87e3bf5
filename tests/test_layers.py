"""Dense: forward Z = X W + b, A = f(Z); backward dW = X^T dZ, db = column sums, dX = dZ W^T;
inverted dropout; dtypes."""

import numpy as np
import pytest

import handgrad as hg
from handgrad.layers import Dense


def _layer(activation="tanh", bias=True, dropout=0.0, dtype=np.float64, seed=0, n_in=4, n_out=3):
    rng = np.random.default_rng(seed)
    layer = Dense(n_in, n_out, activation, bias=bias, dropout=dropout, dtype=dtype)
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


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
@pytest.mark.parametrize("decay, shrink", [(1.0, 0.0), (0.97, 0.0), (0.97, 0.02)])
def test_descend_takes_the_gradient_step_and_returns_dX_from_the_old_weights(activation, decay, shrink):
    # backward(..., descend=(decay, shrink)): W <- decay W - X^T dZ - shrink sign(W), b <- b - sum_rows dZ,
    # and dX = dZ W^T with the W of the forward pass.
    layer, rng = _layer(activation, n_in=6, n_out=5)
    X = rng.normal(size=(7, 6))
    Z = X @ layer.W + layer.b
    A = layer.forward(X).copy()
    dY = rng.normal(size=A.shape)
    dZ = dY * layer.activation.derivative(Z, A)
    W0, b0 = layer.W.copy(), layer.b.copy()
    dX = layer.backward(dY.copy(), need_dX=True, descend=(decay, shrink))
    np.testing.assert_allclose(dX, dZ @ W0.T, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(layer.W, decay * W0 - X.T @ dZ - shrink * np.sign(W0), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(layer.b, b0 - dZ.sum(axis=0), rtol=1e-13, atol=1e-15)


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
    layer, rng = _layer("identity", dropout=p, n_in=10, n_out=200)
    X = rng.normal(size=(50, 10))
    A = X @ layer.W + layer.b
    Y = layer.forward(X, rng=np.random.default_rng(1)).copy()
    kept = Y != 0
    assert abs(kept.mean() - (1 - p)) < 0.02
    np.testing.assert_allclose(Y[kept], A[kept] / (1 - p), rtol=1e-13)
    dY = np.ones_like(Y)
    layer.backward(dY, need_dX=False)
    np.testing.assert_allclose(layer.db, kept.sum(axis=0) / (1 - p), rtol=1e-13)
    np.testing.assert_allclose(layer.forward(X), A, rtol=1e-13)  # no rng: no dropout


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_dropout_rate_is_validated(rate):
    with pytest.raises(hg.ConfigError, match="dropout"):
        Dense(3, 2, dropout=rate)


@pytest.mark.parametrize("activation", ["relu", "softmax", "gelu"])
def test_float32_layer_keeps_float32(activation):
    layer, rng = _layer(activation, dtype=np.float32)
    X = rng.normal(size=(4, 4)).astype(np.float32)
    Y = layer.forward(X)
    assert Y.dtype == np.float32
    dX = layer.backward(np.ones_like(Y))
    assert dX.dtype == layer.dW.dtype == layer.db.dtype == layer.W.dtype == np.float32
