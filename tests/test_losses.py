"""Each loss: value against its formula, gradient against central differences with several
outputs (K > 1), the closed forms (A - T)/N against the general chain rule, and numerics at
probabilities exactly 0 and 1."""

import math
import warnings

import numpy as np
import pytest

import handgrad as hg
from handgrad.activations import Sigmoid, Softmax
from handgrad.losses import get_loss

LOSSES = ["half_squared_error", "mse", "binary_cross_entropy", "cross_entropy"]


def _outputs_and_targets(loss, seed=0, N=5, K=4):
    """Outputs strictly inside (0, 1) for the cross-entropies; soft targets (rows summing to 1 for cross_entropy)."""
    rng = np.random.default_rng(seed)
    if loss == "cross_entropy":
        A = Softmax().forward(rng.normal(size=(N, K)))
        T = rng.random((N, K)) + 0.1
        return A, T / T.sum(axis=1, keepdims=True)
    if loss == "binary_cross_entropy":
        return rng.uniform(0.05, 0.95, size=(N, K)), rng.random((N, K))
    return rng.normal(size=(N, K)), rng.normal(size=(N, K))


def _reference_value(loss, A, T):
    """The per-sample sums written as explicit loops over samples and outputs, then (1/N) sum."""
    N, K = A.shape
    total = 0.0
    for i in range(N):
        for k in range(K):
            a, t = A[i, k], T[i, k]
            if loss == "half_squared_error":
                total += 0.5 * (a - t) ** 2
            elif loss == "mse":
                total += (a - t) ** 2
            elif loss == "binary_cross_entropy":
                total += -(t * np.log(a) + (1 - t) * np.log(1 - a))
            else:
                total += -t * np.log(a)
    return total / N


@pytest.mark.parametrize("name", LOSSES)
def test_value_matches_its_formula(name):
    A, T = _outputs_and_targets(name)
    assert get_loss(name).value(A, T) == pytest.approx(_reference_value(name, A, T), rel=1e-13)


def test_mse_sums_over_outputs_and_averages_over_samples_only():
    """mse = (1/N) sum_i ||a_i - t_i||^2, which is K times np.mean((A - T)**2)."""
    A, T = _outputs_and_targets("mse", seed=1, N=6, K=3)
    value = get_loss("mse").value(A, T)
    assert value == pytest.approx(((A - T) ** 2).sum() / 6, rel=1e-14)
    assert value == pytest.approx(3 * np.mean((A - T) ** 2), rel=1e-14)
    assert get_loss("half_squared_error").value(A, T) == pytest.approx(value / 2, rel=1e-14)


@pytest.mark.parametrize("name", LOSSES)
def test_sample_weight_scales_each_row(name):
    A, T = _outputs_and_targets(name, seed=2)
    w = np.random.default_rng(3).uniform(0, 2, size=A.shape[0])
    loss = get_loss(name)
    expected = np.mean([w[i] * loss.per_sample(A[i:i + 1], T[i:i + 1])[0] for i in range(A.shape[0])])
    assert loss.value(A, T, sample_weight=w) == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("K", [1, 3, 6])
def test_gradient_matches_central_differences_with_several_outputs(name, K):
    """Every entry of dJ/dA, for one and for several outputs (scikit-learn's squared-loss gradient was off
    by a factor K for years because its test covered one output only)."""
    loss = get_loss(name)
    A, T = _outputs_and_targets(name, seed=K, N=4, K=K)
    h = 1e-6
    numeric = np.zeros_like(A)
    for index in np.ndindex(A.shape):
        plus, minus = A.copy(), A.copy()
        plus[index] += h
        minus[index] -= h
        numeric[index] = (loss.value(plus, T) - loss.value(minus, T)) / (2 * h)
    analytic = loss.gradient(A, T)
    worst = np.unravel_index(np.argmax(np.abs(analytic - numeric)), A.shape)
    assert np.allclose(analytic, numeric, rtol=1e-6, atol=1e-9), (
        f"{name}, K={K}: dJ/dA{worst} is {analytic[worst]!r}, central difference {numeric[worst]!r}"
    )


@pytest.mark.parametrize("name", LOSSES)
def test_gradient_into_a_given_buffer_and_in_float32(name):
    loss = get_loss(name)
    A, T = _outputs_and_targets(name, seed=4)
    expected = loss.gradient(A, T)
    buffer = np.empty_like(A)
    assert loss.gradient(A, T, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, expected)
    A32, T32 = A.astype(np.float32), T.astype(np.float32)
    assert loss.gradient(A32, T32).dtype == np.float32
    assert loss.per_sample(A32, T32).dtype == np.float32
    np.testing.assert_allclose(loss.gradient(A32, T32), expected, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("soft", [False, True], ids=["one-hot", "soft-targets"])
def test_softmax_cross_entropy_closed_form_equals_the_general_chain_rule(soft):
    rng = np.random.default_rng(5)
    N, K = 7, 5
    Z = rng.normal(scale=3, size=(N, K))
    T = rng.random((N, K)) if soft else np.eye(K)[rng.integers(0, K, size=N)]
    T = T / T.sum(axis=1, keepdims=True)
    softmax, loss = Softmax(), get_loss("cross_entropy")
    A = softmax.forward(Z)
    general = softmax.backward(loss.gradient(A, T), Z, A)  # dJ/dA, then the Jacobian
    np.testing.assert_allclose((A - T) / N, general, rtol=1e-12, atol=1e-12)
    assert loss.pairs_with == "softmax"
    np.testing.assert_allclose(loss.per_sample_from_logits(Z, T), loss.per_sample(A, T), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_keeps_the_log_sum_exp_that_the_cross_entropy_uses(dtype):
    # Softmax.forward(Z, lse=...) writes ln sum_k e^{z_k} per row; the training pass hands it to
    # per_sample_from_logits, which must then give the same losses as when it computes lse itself,
    # also for logits far beyond exp's range.
    rng = np.random.default_rng(7)
    Z = rng.normal(scale=3, size=(6, 4))
    Z[0] = [1000.0, -1000.0, 999.0, 0.0]
    Z[1] = [-800.0, -805.0, -900.0, -801.0]
    T = np.eye(4)[rng.integers(0, 4, size=6)]
    expected = np.array([z.max() + math.log(sum(math.exp(v - z.max()) for v in z)) for z in Z])
    Z, T = Z.astype(dtype), T.astype(dtype)
    lse = np.full((6, 1), np.nan, dtype)
    A = Softmax().forward(Z, lse=lse)
    np.testing.assert_allclose(A, Softmax().forward(Z), rtol=0, atol=0)
    tolerance = 1e-13 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(lse[:, 0], expected, rtol=tolerance)
    loss = get_loss("cross_entropy")
    kept, computed = loss.per_sample_from_logits(Z, T, lse), loss.per_sample_from_logits(Z, T)
    np.testing.assert_allclose(kept, computed, rtol=tolerance, atol=tolerance)
    assert np.isfinite(kept).all() and kept.dtype == dtype


def test_sigmoid_binary_cross_entropy_closed_form_equals_the_general_chain_rule():
    rng = np.random.default_rng(6)
    N, K = 6, 3
    Z = rng.normal(scale=3, size=(N, K))
    T = rng.random((N, K))
    sigmoid, loss = Sigmoid(), get_loss("binary_cross_entropy")
    A = sigmoid.forward(Z)
    general = sigmoid.backward(loss.gradient(A, T), Z, A)
    np.testing.assert_allclose((A - T) / N, general, rtol=1e-12, atol=1e-12)
    assert loss.pairs_with == "sigmoid"
    np.testing.assert_allclose(loss.per_sample_from_logits(Z, T), loss.per_sample(A, T), rtol=1e-12)


@pytest.mark.parametrize("output, loss", [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy")])
def test_network_uses_the_closed_form_and_it_matches_the_general_path(output, loss):
    """One layer, so dW = X^T dZ: the network's dW against dZ from loss.gradient then activation.backward."""
    rng = np.random.default_rng(7)
    N, n_in, K = 6, 4, 3
    net = hg.MLP(n_in, [(K, output)], loss=loss, seed=8)
    net.layers[0].b[...] = rng.normal(size=K)
    assert net.closed_form
    X = rng.normal(size=(N, n_in))
    T = np.eye(K)[rng.integers(0, K, size=N)] if output == "softmax" else rng.random((N, K))
    _, [(dW, db)] = net.loss_and_grad(X, T)
    layer = net.layers[0]
    Z = X @ layer.W + layer.b
    A = layer.activation.forward(Z)
    dZ = layer.activation.backward(net.loss_fn.gradient(A, T), Z, A)
    np.testing.assert_allclose(dW, X.T @ dZ, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(db, dZ.sum(axis=0), rtol=1e-12, atol=1e-14)


def test_other_pairs_use_the_general_path():
    assert not hg.MLP(2, [(3, "softmax")], loss="binary_cross_entropy").closed_form
    assert not hg.MLP(2, [(3, "sigmoid")], loss="cross_entropy").closed_form
    assert not hg.MLP(2, [(3, "sigmoid")], loss="mse").closed_form


# ---------------------------------------------------------------------- stable numerics
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["binary_cross_entropy", "cross_entropy"])
def test_probabilities_of_exactly_0_and_1_give_finite_values_and_gradients(name, dtype):
    A = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], dtype=dtype)
    T = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=dtype)
    loss = get_loss(name)
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        per_sample = loss.per_sample(A, T)
        value = loss.value(A, T)
        gradient = loss.gradient(A, T)
    assert np.isfinite(per_sample).all() and np.isfinite(value) and np.isfinite(gradient).all()
    assert per_sample[0] == 0.0  # a perfect prediction costs nothing
    assert per_sample[1] > 50  # a confident wrong one costs a lot (ln of the smallest normal)
    assert gradient.dtype == dtype


@pytest.mark.parametrize("name", ["binary_cross_entropy", "cross_entropy"])
def test_loss_from_logits_of_plus_minus_1000_is_finite_and_right(name):
    Z = np.array([[1000.0, -1000.0]])
    T = np.array([[0.0, 1.0]])
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        per_sample = get_loss(name).per_sample_from_logits(Z, T)
    # bce: ln(1 + e^1000) + ln(1 + e^1000) = 2000; ce: logsumexp(z) - z_2 = 1000 + 1000 = 2000
    assert per_sample[0] == pytest.approx(2000.0, rel=1e-12)


# ---------------------------------------------------------------------- names
@pytest.mark.parametrize("typo, meant", [("msee", "mse"), ("cross_entropie", "cross_entropy"),
                                         ("half_squared_eror", "half_squared_error")])
def test_unknown_loss_suggests_the_closest_name(typo, meant):
    with pytest.raises(hg.ConfigError, match=f"unknown loss '{typo}'.*Did you mean '{meant}'"):
        get_loss(typo)
    with pytest.raises(hg.ConfigError, match=f"Did you mean '{meant}'"):
        hg.MLP(2, [(1, "sigmoid")], loss=typo)


def test_loss_aliases_and_objects():
    assert get_loss("bce").name == "binary_cross_entropy"
    assert get_loss("mean_squared_error").name == "mse"
    assert get_loss(get_loss("mse")) == get_loss("mse")
    with pytest.raises(hg.ConfigError, match="loss must be a name"):
        get_loss(42)


@pytest.mark.parametrize("K", [3, 100])  # few columns take the transposed reduction, many the plain one
def test_total_from_logits_is_the_weighted_sum_of_the_per_sample_losses(K):
    from handgrad.activations import _row_max

    rng = np.random.default_rng(8)
    Z = rng.normal(scale=4, size=(9, K))
    T = rng.random((9, K))
    T /= T.sum(axis=1, keepdims=True)
    w = rng.uniform(0, 2, size=9)
    np.testing.assert_array_equal(_row_max(Z), Z.max(axis=1, keepdims=True))
    lse = np.empty((9, 1))
    Softmax().forward(Z, lse=lse)
    loss = get_loss("cross_entropy")
    per_sample = loss.per_sample_from_logits(Z, T)
    for kept in (None, lse):
        assert loss.total_from_logits(Z, T, kept) == pytest.approx(per_sample.sum(), rel=1e-12)
        assert loss.total_from_logits(Z, T, kept, w) == pytest.approx((w * per_sample).sum(), rel=1e-12)
    bce = get_loss("binary_cross_entropy")
    P = rng.random((9, K))
    expected = (w * bce.per_sample_from_logits(Z, P)).sum()
    assert bce.total_from_logits(Z, P, None, w) == pytest.approx(expected, rel=1e-12)
