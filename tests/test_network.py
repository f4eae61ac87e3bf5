"""MLP: the five seed networks, dtypes, initialization, reproducibility, input validation,
and numerics at extreme logits."""

import warnings

import numpy as np
import pytest
from conftest import assert_gradients_close

import handgrad as hg


def _trains(net, X, T, epochs=10, learning_rate=0.1, **options):
    """A few full-batch gradient steps lower the objective."""
    before = net.loss(X, T, **options)
    history = net.fit(X, T, epochs=epochs, batch_size=len(X), learning_rate=learning_rate, shuffle=False, **options)
    after = net.loss(X, T, **options)
    assert after < before, f"loss went from {before} to {after}"
    assert len(history.loss) == epochs and np.isfinite(history.loss).all()
    return before, after


def _assert_gradcheck(net, X, T, **options):
    _, grads = net.loss_and_grad(X, T, **options)
    live = [np.any(g) for pair in grads for g in pair if g is not None]
    assert all(live), "a gradient array is all zero (dead units): the check would be vacuous"
    result = hg.gradcheck(net, X, T, **options)
    assert result.passed(1e-6), f"\n{result}"
    assert list(result) == [name for name, _ in net.parameters()]
    return result


# ---------------------------------------------------------------------- the seed networks
def test_seed_000_relu_relu_sigmoid_without_bias():
    """Seed 000: [(2, ReLU), (2, ReLU), (1, Sigmoid)], no biases, half squared error, size-2 inputs."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 2))
    T = (X[:, 0] > X[:, 1]).astype(float)
    net = hg.MLP(2, [(2, "relu"), (2, "relu"), (1, "sigmoid")], loss="half_squared_error", bias=False, seed=0)
    assert [layer.W.shape for layer in net.layers] == [(2, 2), (2, 2), (2, 1)]
    assert not net.closed_form
    result = _assert_gradcheck(net, X, T)
    assert set(result) == {"W1", "W2", "W3"}
    _trains(net, X, T, epochs=20, learning_rate=1.0)
    labels = net.predict(X)
    assert labels.shape == (16,) and set(np.unique(labels)) <= {0, 1}


def test_seed_001_one_hidden_layer_linear_output_with_l2_by_the_tensor_formulas():
    """Seed 001: z = W1 x, h = phi(z), o = W2 h (no biases), J = L + (lambda/2)(||W1||^2 + ||W2||^2);
    dJ/dW2 = dO h^T + lambda W2, dJ/dW1 = dZ x^T + lambda W1 (batch-first here, so transposed)."""
    rng = np.random.default_rng(1)
    N, d, h, q, lam = 6, 5, 7, 3, 0.1
    net = hg.MLP(d, [(h, "tanh"), (q, "identity")], loss="half_squared_error", bias=False, l2=lam, seed=1)
    X, Y = rng.normal(size=(N, d)), rng.normal(size=(N, q))
    W1, W2 = net.layers[0].W, net.layers[1].W
    H = np.tanh(X @ W1)
    O = H @ W2
    J_expected = 0.5 * ((O - Y) ** 2).sum() / N + lam / 2 * ((W1 ** 2).sum() + (W2 ** 2).sum())
    dO = (O - Y) / N
    dW2 = H.T @ dO + lam * W2
    dZ = (dO @ W2.T) * (1 - H ** 2)
    dW1 = X.T @ dZ + lam * W1
    J, grads = net.loss_and_grad(X, Y)
    assert J == pytest.approx(J_expected, rel=1e-13)
    assert_gradients_close(grads, [(dW1, None), (dW2, None)], 1e-12, context="seed 001", expected_name="formula")
    _assert_gradcheck(net, X, Y)
    _trains(net, X, Y, epochs=5, learning_rate=0.2)


def test_seed_002_mnist_shaped_sigmoid_softmax_cross_entropy():
    """Seed 002: 784 -> h (sigmoid) -> 10 (softmax), cross-entropy, biases; h kept small for speed."""
    rng = np.random.default_rng(2)
    N, h = 6, 16
    X = rng.random((N, 784))  # pixel-like values in [0, 1)
    labels = rng.integers(0, 10, size=N)
    one_hot = np.eye(10)[labels]
    net = hg.MLP(784, [(h, "sigmoid"), (10, "softmax")], loss="cross_entropy", seed=2)
    assert net.closed_form and net.is_classifier
    for layer in net.layers:
        layer.b[...] = rng.normal(scale=0.1, size=layer.b.shape)
    J_ids, grads_ids = net.loss_and_grad(X, labels)
    J_hot, grads_hot = net.loss_and_grad(X, one_hot)
    assert J_ids == J_hot
    assert_gradients_close(grads_ids, grads_hot, 1e-15, context="class ids vs one-hot", expected_name="one-hot")
    np.testing.assert_allclose(net.forward(X).sum(axis=1), 1.0, rtol=1e-14)
    assert J_ids == pytest.approx(-np.log(net.forward(X)[np.arange(N), labels]).mean(), rel=1e-12)
    _assert_gradcheck(net, X, labels)
    _trains(net, X, labels, epochs=5, learning_rate=0.5)
    assert net.predict(X).shape == (N,)


def test_seed_003_deeper_leaky_relu_network():
    """Seed 003: a deeper net of leaky ReLUs (slope 0.01) ending in a logistic unit."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(12, 3))
    T = (X ** 2).sum(axis=1, keepdims=True) > 3
    net = hg.MLP(3, [(6, "leaky_relu"), (6, "leaky_relu"), (6, "leaky_relu"), (5, "leaky_relu"), (1, "sigmoid")],
                 loss="binary_cross_entropy", seed=3)
    assert net.layers[0].activation.slope == 0.01
    for layer in net.layers:
        layer.b[...] = rng.normal(scale=0.1, size=layer.b.shape)
    _assert_gradcheck(net, X, T.astype(float))
    _trains(net, X, T.astype(float), epochs=10, learning_rate=0.1)


def test_seed_004_3_4_2_relu_network_with_biases_under_mse():
    """Seed 004: N=2, D=3, hidden 4 ReLU, K=2 raw outputs, L = (1/N) sum ||y_hat - y||^2;
    its backward: dy = 2 (y_hat - y)/N, dW2 = H1^T dy, dY1 = dy W2^T * [Y1 > 0], dW1 = X^T dY1."""
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(2, 3)), rng.normal(size=(2, 2))
    net = hg.MLP(3, [(4, "relu"), (2, "identity")], loss="mse", seed=4)
    W1, b1, W2, b2 = net.get_weights()
    b1 += rng.normal(scale=0.1, size=4)
    b2 += rng.normal(scale=0.1, size=2)
    net.set_weights([W1, b1, W2, b2])
    Y1 = X @ W1 + b1
    H1 = np.maximum(Y1, 0)
    y_hat = H1 @ W2 + b2
    dy = 2 * (y_hat - y) / 2
    dY1 = (dy @ W2.T) * (Y1 > 0)
    expected = [(X.T @ dY1, dY1.sum(axis=0)), (H1.T @ dy, dy.sum(axis=0))]
    J, grads = net.loss_and_grad(X, y)
    assert J == pytest.approx(((y_hat - y) ** 2).sum() / 2, rel=1e-13)
    assert_gradients_close(grads, expected, 1e-12, context="seed 004", expected_name="formula")
    _assert_gradcheck(net, X, y)
    _trains(net, X, y, epochs=5, learning_rate=0.05)


# ---------------------------------------------------------------------- dtypes
def test_float32_end_to_end_without_upcasts():
    rng = np.random.default_rng(5)
    X, labels = rng.normal(size=(20, 4)), rng.integers(0, 3, size=20)
    net = hg.MLP(4, [(8, "relu"), (6, "gelu"), (3, "softmax")], dtype="float32", l2=1e-3, seed=5)
    assert all(array.dtype == np.float32 for _, array in net.parameters())
    assert net.forward(X).dtype == np.float32  # float64 input, float32 network: no upcast
    J, grads = net.loss_and_grad(X, labels, sample_weight=np.ones(20))
    assert np.isfinite(J)
    assert all(g.dtype == np.float32 for pair in grads for g in pair)
    net.fit(X, labels, epochs=2, batch_size=7, learning_rate=0.1)
    assert all(array.dtype == np.float32 for _, array in net.parameters())
    assert all(layer.dW.dtype == np.float32 and layer.db.dtype == np.float32 for layer in net.layers)
    assert net.predict_proba(X).dtype == np.float32
    # And it computes the same thing as float64, to float32 precision.
    net64 = hg.MLP(4, [(8, "relu"), (6, "gelu"), (3, "softmax")], dtype="float64", l2=1e-3, seed=5)
    net64.set_weights(net.get_weights())
    J64, grads64 = net64.loss_and_grad(X, labels)
    J32, grads32 = net.loss_and_grad(X, labels)
    assert J32 == pytest.approx(J64, rel=1e-5)
    assert_gradients_close(grads32, grads64, 1e-4, context="float32 vs float64", got_name="float32",
                           expected_name="float64")


def test_float64_end_to_end():
    rng = np.random.default_rng(6)
    X, T = rng.normal(size=(10, 3)).astype(np.float32), rng.normal(size=(10, 2))
    net = hg.MLP(3, [(5, "tanh"), (2, "identity")], seed=6)
    assert net.forward(X).dtype == np.float64
    _, grads = net.loss_and_grad(X, T)
    assert all(g.dtype == np.float64 for pair in grads for g in pair)
    net.fit(X, T, epochs=1)
    assert all(array.dtype == np.float64 for _, array in net.parameters())


def test_dtype_is_validated():
    with pytest.raises(hg.ConfigError, match="dtype"):
        hg.MLP(2, [(1, "sigmoid")], dtype="float16")


# ---------------------------------------------------------------------- initialization and seeds
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu"])
def test_relu_family_gets_he_initialization(activation):
    n_in, n_out = 400, 500
    W = hg.MLP(n_in, [(n_out, activation), (1, "identity")], seed=7).layers[0].W
    assert abs(W.mean()) < 0.01 * np.sqrt(2 / n_in)
    assert W.std() == pytest.approx(np.sqrt(2 / n_in), rel=0.01)
    assert np.abs(W).max() > np.sqrt(6 / (n_in + n_out))  # normal, not bounded by a Glorot limit


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "softmax"])
def test_other_activations_get_glorot_uniform_initialization(activation):
    n_in, n_out = 400, 500
    W = hg.MLP(n_in, [(n_out, activation)], loss="half_squared_error", seed=8).layers[0].W
    limit = np.sqrt(6 / (n_in + n_out))
    assert np.abs(W).max() <= limit and np.abs(W).max() > 0.999 * limit
    assert W.std() == pytest.approx(limit / np.sqrt(3), rel=0.01)  # the std of U(-limit, limit)


def test_biases_start_at_zero():
    net = hg.MLP(3, [(4, "relu"), (2, "softmax")], seed=9)
    assert all((layer.b == 0).all() for layer in net.layers)


def _trained(seed, dropout=0.0):
    rng = np.random.default_rng(10)
    X, labels = rng.normal(size=(30, 4)), rng.integers(0, 3, size=30)
    net = hg.MLP(4, [(8, "relu"), (3, "softmax")], dropout=dropout, seed=seed)
    initial = net.get_weights()
    history = net.fit(X, labels, epochs=3, batch_size=8, learning_rate=0.1)
    return initial, net.get_weights(), history.loss


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_same_seed_gives_bit_identical_weights_and_fits(dropout):
    initial_a, final_a, losses_a = _trained(11, dropout)
    initial_b, final_b, losses_b = _trained(11, dropout)
    assert all(np.array_equal(a, b) for a, b in zip(initial_a, initial_b))
    assert all(np.array_equal(a, b) for a, b in zip(final_a, final_b))
    assert losses_a == losses_b
    initial_c, final_c, losses_c = _trained(12, dropout)
    assert not np.array_equal(initial_a[0], initial_c[0])
    assert not np.array_equal(final_a[0], final_c[0])
    assert losses_a != losses_c


# ---------------------------------------------------------------------- validation
@pytest.fixture
def classifier():
    return hg.MLP(4, [(5, "relu"), (3, "softmax")], seed=13)


def _entry_points(net):
    """Every public method that takes data, each called with (X, T)."""
    return {
        "loss": lambda X, T: net.loss(X, T),
        "loss_and_grad": lambda X, T: net.loss_and_grad(X, T),
        "fit": lambda X, T: net.fit(X, T, epochs=1),
        "gradcheck": lambda X, T: hg.gradcheck(net, X, T),
    }


GOOD_X = np.random.default_rng(14).normal(size=(5, 4))
GOOD_T = np.array([0, 1, 2, 1, 0])
NAN_X = GOOD_X.copy()
NAN_X[2, 1] = np.nan
BAD_DATA = {
    "wrong feature count": (GOOD_X[:, :3], GOOD_T, r"3 features.*expects 4"),
    "NaN in X": (NAN_X, GOOD_T, "NaN"),
    "label out of range": (GOOD_X, np.array([0, 1, 5, 1, 0]), r"class id 5 is out of range.*0\.\.2"),
    "negative label": (GOOD_X, np.array([0, -1, 2, 1, 0]), "out of range"),
    "mismatched lengths": (GOOD_X, GOOD_T[:4], r"5 samples.*4"),
    "empty X": (np.empty((0, 4)), np.empty(0), "empty"),
    "non-integer labels": (GOOD_X, np.array([0, 1.5, 2, 1, 0]), "integer class ids"),
    "wrong target width": (GOOD_X, np.ones((5, 2)), r"\(5, 3\)"),
}


@pytest.mark.parametrize("problem", list(BAD_DATA))
@pytest.mark.parametrize("entry", ["loss", "loss_and_grad", "fit", "gradcheck"])
def test_bad_data_raises_data_error_naming_the_problem(classifier, problem, entry):
    X, T, message = BAD_DATA[problem]
    with pytest.raises(hg.DataError, match=message):
        _entry_points(classifier)[entry](X, T)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("value, finite", [(np.nan, False), (np.inf, False), (-np.inf, False), (3e38, True),
                                           (None, True)], ids=["nan", "inf", "-inf", "huge", "clean"])
@pytest.mark.parametrize("rows", [3, 2000], ids=["small", "large"])
def test_inputs_are_checked_for_nan_and_infinity(dtype, value, finite, rows):
    # Above 65,536 entries the check is one sum of squares (a BLAS dot product); a huge finite entry overflows that sum
    # and must still be accepted (the entry-by-entry check decides), and any NaN or infinity refused.
    net = hg.MLP(50, [(3, "softmax")], seed=0, dtype=dtype)
    X = np.random.default_rng(15).normal(size=(rows, 50)).astype(dtype)
    if value is not None:
        X[rows // 2, 17] = np.finfo(dtype).max / 1.5 if value == 3e38 else value
    if finite:
        assert net.check_inputs(X) is X  # accepted as is: no copy of a clean C-contiguous array
    else:
        with pytest.raises(hg.DataError, match="NaN or infinity"):
            net.check_inputs(X)


@pytest.mark.parametrize("method", ["forward", "predict", "predict_proba"])
def test_prediction_validates_inputs(classifier, method):
    with pytest.raises(hg.DataError, match="features"):
        getattr(classifier, method)(GOOD_X[:, :2])
    with pytest.raises(hg.DataError, match="NaN"):
        getattr(classifier, method)(NAN_X)
    with pytest.raises(hg.DataError, match="empty"):
        getattr(classifier, method)(np.empty((0, 4)))


def test_sample_weight_is_validated(classifier):
    with pytest.raises(hg.DataError, match="one weight per sample"):
        classifier.loss_and_grad(GOOD_X, GOOD_T, sample_weight=np.ones(3))
    with pytest.raises(hg.DataError, match=">= 0"):
        classifier.loss_and_grad(GOOD_X, GOOD_T, sample_weight=-np.ones(5))


def test_targets_outside_the_loss_range_are_refused():
    net = hg.MLP(2, [(3, "sigmoid")], loss="binary_cross_entropy")
    with pytest.raises(hg.DataError, match=r"targets in \[0, 1\]"):
        net.loss(np.zeros((2, 2)), np.full((2, 3), 2.0))
    softmax = hg.MLP(2, [(3, "softmax")])
    with pytest.raises(hg.DataError, match="sum to 1"):
        softmax.loss(np.zeros((2, 2)), np.full((2, 3), 0.5))


@pytest.mark.parametrize("layers, message", [
    ([], "at least one layer"),
    ([(0, "relu")], "positive integer"),
    ([(2.5, "relu")], "positive integer"),
    ([(3, "relu", "extra")], "expected \\(size, activation\\)"),
])
def test_bad_architectures_raise_config_error(layers, message):
    with pytest.raises(hg.ConfigError, match=message):
        hg.MLP(2, layers)


def test_bad_settings_raise_config_error():
    with pytest.raises(hg.ConfigError, match="n_inputs"):
        hg.MLP(0, [(1, "sigmoid")])
    with pytest.raises(hg.ConfigError, match="l2"):
        hg.MLP(2, [(1, "sigmoid")], l2=-1)
    with pytest.raises(hg.ConfigError, match="one rate per hidden layer"):
        hg.MLP(2, [(3, "relu"), (1, "sigmoid")], dropout=[0.1, 0.2])


# ---------------------------------------------------------------------- numerics at extreme logits
@pytest.fixture
def strict_numerics():
    """Every NumPy floating-point problem that signals (overflow, 0/0, x/0) and every warning become errors."""
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        yield


def test_strict_numerics_is_really_strict(strict_numerics):
    with pytest.raises(FloatingPointError):
        np.exp(np.array([1000.0]))
    with pytest.raises(FloatingPointError):
        np.log(np.array([0.0]))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_cross_entropy_at_logits_of_plus_minus_1000(strict_numerics, dtype):
    net = hg.MLP(2, [(3, "softmax")], loss="cross_entropy", dtype=dtype)
    net.set_weights([np.array([[1000.0, -1000.0, 0.0], [0.0, 0.0, 0.0]]), np.zeros(3)])
    X = np.array([[1.0, 0.0], [1.0, 0.0]])
    labels = np.array([1, 0])  # the first row's target has logit -1000, the second's +1000
    J, [(dW, db)] = net.loss_and_grad(X, labels)
    assert J == pytest.approx((2000.0 + 0.0) / 2, rel=1e-6)  # logsumexp(z) - z_target per row
    assert J == pytest.approx(net.loss(X, labels), rel=1e-6)
    # dZ = (A - T)/N with A = (1, 0, 0) in both rows: row 1 (1, -1, 0)/2, row 2 (0, 0, 0)
    np.testing.assert_allclose(db, [0.5, -0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(dW, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-6)
    assert np.isfinite(net.forward(X)).all()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sigmoid_binary_cross_entropy_at_logits_of_plus_minus_1000(strict_numerics, dtype):
    net = hg.MLP(1, [(2, "sigmoid")], loss="binary_cross_entropy", dtype=dtype)
    net.set_weights([np.array([[-1000.0, 1000.0]]), np.zeros(2)])
    X = np.array([[1.0]])
    T = np.array([[1.0, 0.0]])  # both confidently wrong: sigmoid(-1000) = 0 for target 1, sigmoid(1000) = 1 for 0
    J, [(dW, db)] = net.loss_and_grad(X, T)
    assert J == pytest.approx(2000.0, rel=1e-6)
    np.testing.assert_allclose(db, [-1.0, 1.0], atol=1e-6)  # (A - T)/N
    np.testing.assert_allclose(net.forward(X), [[0.0, 1.0]], atol=0)


@pytest.mark.parametrize("output, loss", [("sigmoid", "cross_entropy"), ("softmax", "binary_cross_entropy"),
                                          ("sigmoid", "mse"), ("softmax", "half_squared_error")])
def test_general_path_stays_finite_at_saturated_outputs(strict_numerics, output, loss):
    net = hg.MLP(1, [(2, output)], loss=loss)
    net.set_weights([np.array([[-1000.0, 1000.0]]), np.zeros(2)])
    T = np.array([[1.0, 0.0]])
    J, [(dW, db)] = net.loss_and_grad(np.array([[1.0]]), T)
    assert np.isfinite(J) and np.isfinite(dW).all() and np.isfinite(db).all()


def test_astype_copies_weights_and_running_statistics_into_another_dtype():
    net = hg.MLP(3, ["5:tanh:batchnorm", "4:leaky_relu(0.2)", (2, "softmax")], seed=1, dtype="float32", l2=0.1)
    X = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    net.fit(X, np.arange(16) % 2, epochs=2, batch_size=8, verbose=False)  # running statistics move
    wide = net.astype("float64")
    assert wide.dtype == np.float64 and wide.params.dtype == np.float64 and wide is not net
    assert wide.config() == {**net.config(), "dtype": "float64"}
    np.testing.assert_array_equal(wide.params, net.params.astype(np.float64))
    for (name, a), (_, b) in zip(wide.running_statistics(), net.running_statistics()):
        assert a.dtype == np.float64 and np.array_equal(a, b.astype(np.float64)), name
    np.testing.assert_allclose(wide.predict_proba(X), net.predict_proba(X), rtol=1e-5)
