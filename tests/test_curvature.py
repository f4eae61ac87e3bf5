"""Curvature: Hessian-vector products by the R-operator, and sharpness (docs/derivations.md, "Curvature:
Hessian-vector products").

Two oracles for H v, on the generated architectures of test_gradients.py (every activation in every
position, every valid output/loss pair, l2, l1, dropout, sample weights), float64, relative error below
1e-8: central differences of the gradient vector along v, and PyTorch's double backward (the gradient
of <grad J, v>). Then the parts (f'', the losses' second derivatives, softmax's R-operator), the
eigen-solvers on matrices of known spectrum, sharpness on a quadratic model whose Hessian is known in
closed form, the stability bound 2/lambda on a small real problem, bad input, the callback, the picture
and the command.
"""

import json
import math
import warnings

import numpy as np
import pytest
from conftest import N_CASES, make_case, relative_error

import handgrad as hg
from handgrad import curvature, datasets
from handgrad.activations import ACTIVATIONS, ELU, LeakyReLU, Softmax, get_activation
from handgrad.callbacks import Sharpness
from handgrad.layers import Layer
from handgrad.losses import LOSSES, get_loss

CASES = [make_case(i) for i in range(N_CASES)]


def direction(net, seed):
    return np.random.default_rng(seed).standard_normal(net.n_params)


def hvp_of(case, v):
    return case["net"].hessian_vector_product(case["X"], case["T"], v, sample_weight=case["sample_weight"],
                                              dropout_seed=case["dropout_seed"])


KINKED = ("relu", "leaky_relu", "elu")  # f' jumps at z = 0 (ELU's unless alpha = 1): the gradient has a kink there


def gradient_at(case, theta):
    """dJ/dtheta at theta, and which units of kinked activations are on the side z > 0 (a > 0 exactly there)."""
    net = case["net"]
    saved = net.params.copy()
    net.params[...] = theta
    try:
        net.loss_and_grad(case["X"], case["T"], sample_weight=case["sample_weight"], dropout_seed=case["dropout_seed"])
        sides = [layer.A > 0 for layer in net.layers if layer.activation.name in KINKED]
        return net.grads.copy(), sides
    finally:
        net.params[...] = saved


def difference_hvp(case, v, h=1e-5):
    """H v ~ [-g(theta + 2hv) + 8 g(theta + hv) - 8 g(theta - hv) + g(theta - 2hv)] / 12h: the five-point
    central difference of the gradient along v, whose truncation error is O(h^4) (h = 1e-5: ~1e-20 times the
    fifth derivative; rounding ~ eps |g| / h ~ 1e-11).

    The gradient is smooth only where no ReLU/ELU unit changes side: where one does within +-2h (a
    pre-activation closer to 0 than that), the difference measures the jump, not H v, so h shrinks until
    every unit keeps its side over the whole stencil."""
    theta = case["net"].params.copy()
    _, base = gradient_at(case, theta)
    for _ in range(8):
        evaluated = {s: gradient_at(case, theta + s * h * v) for s in (-2, -1, 1, 2)}
        if all(np.array_equal(a, b) for _, sides in evaluated.values() for a, b in zip(sides, base)):
            g = {s: gradient for s, (gradient, _) in evaluated.items()}
            return (-g[2] + 8 * g[1] - 8 * g[-1] + g[-2]) / (12 * h)
        h /= 4
    raise AssertionError(f"{case['name']}: a unit sits on a kink; no step keeps it on one side")


def assert_close(got, expected, tol, context, floor=1e-8):
    error, index = relative_error(got, expected, floor)
    assert error < tol, (f"{context}: relative error {error:.3e} (tolerance {tol:g}); worst entry {index}: "
                         f"handgrad {got[index]!r} vs reference {expected[index]!r}")
    return error


# ---------------------------------------------------------------------- H v against two oracles
@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_hessian_vector_product_matches_central_differences_of_the_gradient(case):
    v = direction(case["net"], 7)
    theta = case["net"].params.copy()
    Hv = hvp_of(case, v)
    np.testing.assert_array_equal(case["net"].params, theta)  # the parameters are not moved
    assert_close(Hv, difference_hvp(case, v), 1e-8, case["name"])


def torch_objective(net, X, T, sample_weight, masks):
    """J(theta) in torch from the definitions, theta a flat tensor in the layout of net.params."""
    import torch
    from test_torch_oracle import torch_activation, torch_per_sample_loss

    X, T = torch.tensor(X), torch.tensor(T)
    where = {name: (offset, shape) for name, offset, shape in net.layout}

    def J(theta):
        def parameter(name):
            offset, shape = where[name]
            return theta[offset:offset + math.prod(shape)].reshape(shape)

        H, last = X, len(net.layers)
        for k, layer in enumerate(net.layers, 1):
            Z = H @ parameter(f"W{k}") + (parameter(f"b{k}") if layer.b is not None else 0)
            A = torch_activation(layer.activation, Z)
            H = A * torch.tensor(masks[k - 1]) if masks is not None and masks[k - 1] is not None and k < last else A
        losses = torch_per_sample_loss(net.loss_fn.name, net.output_activation.name, Z, A, T)
        if sample_weight is not None:
            losses = losses * torch.tensor(sample_weight)
        weights = theta[:net.n_weights]
        return losses.mean() + 0.5 * net.l2 * (weights ** 2).sum() + net.l1 * weights.abs().sum()

    return J


def torch_hvp(net, X, T, v, sample_weight=None, masks=None):
    """H v by double backward: the gradient of <dJ/dtheta, v> with respect to theta."""
    import torch

    theta = torch.tensor(net.params.copy(), requires_grad=True)
    J = torch_objective(net, X, T, sample_weight, masks)(theta)
    (gradient,) = torch.autograd.grad(J, theta, create_graph=True)
    (Hv,) = torch.autograd.grad(gradient @ torch.tensor(v), theta)
    return Hv.numpy()


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_hessian_vector_product_matches_torch_double_backward(case):
    pytest.importorskip("torch")
    from test_torch_oracle import dropout_masks

    net = case["net"]
    T = net.check_targets(case["T"], case["X"].shape[0])  # class ids -> one-hot, as torch needs
    v = direction(net, 11)
    Hv = hvp_of(case, v)
    masks = dropout_masks(net) if case["dropout_seed"] is not None else None  # the masks of this very pass
    assert_close(Hv, torch_hvp(net, case["X"], T, v, case["sample_weight"], masks), 1e-8, case["name"])


def test_softmax_in_every_position_with_l2_and_sample_weights_against_torch():
    """Softmax in three hidden positions and at the output, with and without its closed form, l2 and weights."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    X, w = rng.normal(size=(7, 3)), rng.uniform(0.2, 2.0, 7)
    for loss in ("mse", "cross_entropy"):
        net = hg.MLP(3, [(5, "softmax"), (4, "tanh"), (6, "softmax"), (3, "softmax")], loss=loss, seed=3, l2=0.1)
        for layer in net.layers:
            layer.b[...] = rng.normal(size=layer.b.shape)
        T = net.check_targets(rng.integers(0, 3, 7), 7) if loss == "cross_entropy" else rng.normal(size=(7, 3))
        v = direction(net, 2)
        Hv = net.hessian_vector_product(X, T, v, sample_weight=w)
        assert_close(Hv, torch_hvp(net, X, T, v, w), 1e-8, f"softmax everywhere, {loss}")
        assert np.abs(Hv[:15]).max() > 1e-3  # the first layer's block is really exercised


def test_the_oracles_notice_a_wrong_second_derivative():
    """A planted bug in f'' (tanh's written as -a(1 - a^2), half its value) breaks agreement by far more than 1e-8."""

    class HalfCurvedTanh(hg.activations.Tanh):
        def second_derivative(self, Z, A):
            return -A * (1 - A * A)

    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    net = hg.MLP(3, [(5, HalfCurvedTanh()), (2, "identity")], loss="half_squared_error", seed=1)
    case = {"net": net, "X": X, "T": T, "sample_weight": None, "dropout_seed": None}
    v = direction(net, 3)
    error, _ = relative_error(hvp_of(case, v), difference_hvp(case, v))
    assert error > 1e-3


def test_hessian_is_symmetric_and_linear_in_v():
    case = CASES[37]
    u, v = direction(case["net"], 1), direction(case["net"], 2)
    Hu, Hv = hvp_of(case, u), hvp_of(case, v)
    assert float(u @ Hv) == pytest.approx(float(v @ Hu), rel=1e-10)
    assert_close(hvp_of(case, 2 * u - 3 * v), 2 * Hu - 3 * Hv, 1e-12, "linearity")


def test_what_it_leaves_behind_is_the_gradient_of_loss_and_grad():
    case = CASES[4]
    net = case["net"]
    net.hessian_vector_product(case["X"], case["T"], direction(net, 0), sample_weight=case["sample_weight"])
    after_hvp = net.grads.copy()
    net.loss_and_grad(case["X"], case["T"], sample_weight=case["sample_weight"])
    np.testing.assert_array_equal(after_hvp, net.grads)


def test_float32_network_gives_float32_products_close_to_float64():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(20, 3)), rng.integers(0, 3, 20)
    net64 = hg.MLP(3, [(8, "tanh"), (3, "softmax")], seed=2)
    net32 = hg.MLP(3, [(8, "tanh"), (3, "softmax")], seed=2, dtype="float32")
    v = direction(net64, 0)
    Hv32 = net32.hessian_vector_product(X.astype(np.float32), y, v)
    assert Hv32.dtype == np.float32
    assert_close(Hv32, net64.hessian_vector_product(X, y, v), 1e-4, "float32")
    top = hg.sharpness(net64, X, y).sharpness
    assert hg.sharpness(net32, X.astype(np.float32), y).sharpness == pytest.approx(top, rel=1e-4)


# ---------------------------------------------------------------------- the parts
@pytest.mark.parametrize("activation", [name for name in ACTIVATIONS if name != "softmax"]
                         + [LeakyReLU(slope=0.2), ELU(alpha=0.7)], ids=str)
def test_second_derivative_is_the_derivative_of_the_first(activation):
    f = get_activation(activation)
    Z = np.random.default_rng(0).normal(scale=2.0, size=(6, 5))
    Z[np.abs(Z) < 1e-3] = 0.5  # away from the kinks of the ReLU family and ELU
    h = 1e-6
    derivative = lambda Z: f.derivative(Z, f.forward(Z))  # noqa: E731
    numeric = (derivative(Z + h) - derivative(Z - h)) / (2 * h)
    np.testing.assert_allclose(f.second_derivative(Z, f.forward(Z)), numeric, rtol=1e-7, atol=1e-8)


def test_softmax_r_operators_are_directional_derivatives_of_forward_and_backward():
    rng = np.random.default_rng(1)
    Z, dA, RZ, RdA = (rng.normal(size=(5, 4)) for _ in range(4))
    softmax, h = Softmax(), 1e-6
    A = softmax.forward(Z)
    moved = lambda r: softmax.forward(Z + r * RZ)  # noqa: E731
    np.testing.assert_allclose(softmax.r_forward(RZ, Z, A), (moved(h) - moved(-h)) / (2 * h), atol=1e-9)
    backward = lambda r: softmax.backward(dA + r * RdA, None, moved(r))  # noqa: E731
    np.testing.assert_allclose(softmax.r_backward(dA, RdA, RZ, Z, A), (backward(h) - backward(-h)) / (2 * h),
                               atol=1e-9)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_r_gradient_is_the_directional_derivative_of_the_gradient(name):
    loss = get_loss(name)
    rng = np.random.default_rng(2)
    A = rng.uniform(0.1, 0.9, size=(6, 3))
    T = rng.uniform(0, 1, size=(6, 3))
    RA, h = rng.normal(size=(6, 3)), 1e-6
    numeric = (loss.gradient(A + h * RA, T) - loss.gradient(A - h * RA, T)) / (2 * h)
    np.testing.assert_allclose(loss.r_gradient(A, T, RA), numeric, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(loss.r_closed_form(RA), RA / 6)


# ---------------------------------------------------------------------- the eigen-solvers on known spectra
def matrix_with_spectrum(values, seed):
    Q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(values), len(values))))
    return (Q * np.asarray(values, dtype=float)) @ Q.T


@pytest.mark.parametrize("solve", [curvature._lanczos, curvature._power], ids=["lanczos", "power"])
@pytest.mark.parametrize("spectrum", [
    [5.0, 3.0, 2.0, 1.0, 0.5, -0.5, 0.1, 0.2],             # positive definite-ish, one negative
    [1.0, 0.7, 0.2, -4.0, -3.0, 0.0, 0.05, 0.3],           # the largest magnitude is negative: power must shift
    [2.0, 2.0, 1.5, 1.0, 0.0, 0.0, -1.0, 0.4],             # a repeated top eigenvalue, a repeated zero
], ids=["definite", "negative-dominant", "repeated"])
def test_solvers_find_the_largest_eigenvalues_of_a_known_matrix(solve, spectrum):
    H = matrix_with_spectrum(spectrum, 0)
    x0 = np.random.default_rng(1).standard_normal(len(spectrum))
    values, vectors, _, _ = solve(lambda v: H @ v, len(spectrum), 3, 1e-10, 5000, x0 / np.linalg.norm(x0))
    np.testing.assert_allclose(values, sorted(spectrum, reverse=True)[:3], atol=1e-8)
    for value, u in zip(values, vectors):
        assert np.linalg.norm(H @ u - value * u) < 1e-6
    np.testing.assert_allclose(vectors @ vectors.T, np.eye(3), atol=1e-6)


# ---------------------------------------------------------------------- sharpness on a quadratic model
def quadratic_problem(seed=0, N=30, n_in=4, K=2, bias=True):
    """One identity layer with half squared error: J = 1/(2N) sum_i ||x_i W + b - t_i||^2 is quadratic, with
    Hessian kron(X~^T X~ / N, I_K) over (vec W, b) for X~ = [X, 1] (W row-major, so entry (j, k) sits at
    j K + k and b_k after all of W). Returns (net, X, T, H) with H in the layout of net.params."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, n_in)) * np.linspace(0.5, 2.0, n_in)
    T = rng.normal(size=(N, K))
    net = hg.MLP(n_in, [(K, "identity")], loss="half_squared_error", bias=bias, seed=seed)
    Xt = np.hstack([X, np.ones((N, 1))]) if bias else X
    H = np.kron(Xt.T @ Xt / N, np.eye(K))  # rows/columns: (j, k) -> j K + k; the bias row j = n_in comes last
    return net, X, T, H


def test_quadratic_model_hessian_vector_product_is_the_closed_form():
    net, X, T, H = quadratic_problem()
    v = direction(net, 0)
    assert_close(net.hessian_vector_product(X, T, v), H @ v, 1e-12, "quadratic model")


@pytest.mark.parametrize("method", curvature.METHODS)
def test_quadratic_model_sharpness_is_the_known_top_eigenvalue(method):
    net, X, T, H = quadratic_problem(K=1)
    expected = np.linalg.eigvalsh(H)[::-1]
    result = hg.sharpness(net, X, T, k=3, method=method)
    assert result.converged
    np.testing.assert_allclose(result.eigenvalues, expected[:3], rtol=1e-9)
    assert result.learning_rate_bound == pytest.approx(2 / expected[0], rel=1e-9)
    assert result.eigenvectors.shape == (3, net.n_params)
    for value, u, residual in zip(result.eigenvalues, result.eigenvectors, result.residuals):
        assert np.linalg.norm(H @ u - value * u) == pytest.approx(residual, rel=1e-6, abs=1e-14)
        assert residual < 2e-6 * expected[0]  # 2 tol * lambda_1


def test_quadratic_model_with_l2_and_repeated_eigenvalues():
    """Two outputs repeat every eigenvalue of X^T X / N twice; l2 adds l2 to every eigenvalue (no bias here)."""
    net, X, T, H = quadratic_problem(K=2, bias=False)
    net.l2 = 0.25
    expected = np.linalg.eigvalsh(H + 0.25 * np.eye(len(H)))[::-1]
    assert expected[0] == pytest.approx(expected[1])
    for method in curvature.METHODS:
        result = hg.sharpness(net, X, T, k=3, method=method)
        np.testing.assert_allclose(result.eigenvalues, expected[:3], rtol=1e-9, err_msg=method)


def test_chunked_products_equal_the_whole_batch():
    case = CASES[22]
    v = direction(case["net"], 5)
    operator = curvature.hessian_operator(case["net"], case["X"], case["T"], case["sample_weight"], batch_size=2)
    assert_close(operator(v), hvp_of(case, v), 1e-12, "batch_size=2")


def test_sharpness_warns_when_it_stops_before_converging():
    net, X, T, _ = quadratic_problem(K=1)
    with pytest.warns(RuntimeWarning, match="max_iter"):
        result = hg.sharpness(net, X, T, method="power", max_iter=2)
    assert not result.converged and result.iterations == 3  # two iterations and the measuring product
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hg.sharpness(net, X, T, method="power", max_iter=2, warn=False).converged is False


def test_start_vector_and_seed_give_the_same_answer():
    net, X, T, H = quadratic_problem(K=1)
    top = np.linalg.eigvalsh(H)[-1]
    for options in ({"seed": 3}, {"start": np.ones(net.n_params)}):
        assert hg.sharpness(net, X, T, **options).sharpness == pytest.approx(top, rel=1e-10)


# ---------------------------------------------------------------------- the stability bound on a real problem
@pytest.fixture(scope="module")
def minimum():
    """A 1-3-1 tanh regressor at a true minimum of J (l2 = 0.01) on 40 points of regression1d: Adam, then Newton
    steps with the full Hessian built from n products. The premises are checked, not assumed."""
    X, y = datasets.make_regression1d(40, seed=0)
    net = hg.MLP(1, [(3, "tanh"), (1, "identity")], loss="half_squared_error", l2=1e-2, seed=0)
    net.fit(X, y, epochs=5000, batch_size=40, optimizer="adam", learning_rate=0.01, verbose=False, shuffle=False)

    def hessian():
        return np.stack([net.hessian_vector_product(X, y, e) for e in np.eye(net.n_params)])

    for _ in range(5):
        net.loss_and_grad(X, y)
        net.params -= np.linalg.solve(hessian(), net.grads)
    net.loss_and_grad(X, y)
    assert np.linalg.norm(net.grads) < 1e-12  # a stationary point
    eigenvalues = np.linalg.eigvalsh(hessian())
    assert eigenvalues[0] > 0  # ... and a minimum
    return net, X, y, eigenvalues


def test_sharpness_at_the_minimum_is_the_top_eigenvalue_of_the_full_hessian(minimum):
    net, X, y, eigenvalues = minimum
    for method in curvature.METHODS:
        assert hg.sharpness(net, X, y, method=method).sharpness == pytest.approx(eigenvalues[-1], rel=1e-9)


@pytest.mark.parametrize("factor", [0.95, 1.05])
def test_gradient_descent_diverges_just_above_2_over_lambda_and_converges_just_below(minimum, factor):
    """Start at theta* + delta u_1 and run full-batch gradient descent (the trainer, one batch per epoch). Along
    u_1 the error is multiplied by 1 - eta lambda_1 per step: by -0.9 at eta = 0.95 * 2/lambda (it shrinks), by
    -1.1 at eta = 1.05 * 2/lambda (it grows)."""
    net, X, y, _ = minimum
    theta_star, J_star = net.params.copy(), net.loss(X, y)
    result = hg.sharpness(net, X, y)
    net = net.copy()
    delta = 1e-4
    net.params[...] = theta_star + delta * result.eigenvectors[0]
    excess = net.loss(X, y) - J_star  # ~ lambda delta^2 / 2
    steps = 300 if factor < 1 else 60
    history = net.fit(X, y, epochs=steps, batch_size=len(X), optimizer="sgd", shuffle=False, verbose=False,
                      learning_rate=factor * 2 / result.sharpness)
    assert history.stop_reason == "completed"
    distance = np.linalg.norm(net.params - theta_star)
    if factor < 1:
        assert distance < 1e-2 * delta
        assert net.loss(X, y) - J_star < 1e-3 * excess
    else:
        assert distance > 100 * delta
        assert net.loss(X, y) - J_star > 1e4 * excess


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("v, match", [
    (np.ones(5), "vector of 33 numbers"),
    (np.ones((33, 1)), "vector of 33 numbers"),
    (np.array(["a"] * 33), "real numbers"),
    (np.ones(33) * 1j, "real numbers"),
    (np.r_[np.ones(32), np.nan], "NaN or infinity"),
    (np.r_[np.ones(32), np.inf], "NaN or infinity"),
])
def test_bad_v_is_refused_with_a_clear_error(v, match):
    net = hg.MLP(2, [(8, "tanh"), (1, "sigmoid")], seed=0)
    with pytest.raises(hg.DataError, match=match):
        net.hessian_vector_product(np.ones((3, 2)), np.array([0, 1, 1]), v)


def test_a_layer_without_the_r_operator_is_named():
    class Scale(Layer):
        def forward(self, X, training=False):
            return 2 * X

        def backward(self, dY, need_dX=True):
            return 2 * dY if need_dX else None

    net = hg.MLP(2, [(4, "tanh"), (1, "identity")], seed=0)
    net.sequence.insert(1, Scale())
    X, T = np.ones((3, 2)), np.ones((3, 1))
    net.loss_and_grad(X, T)  # an ordinary layer: training works
    with pytest.raises(hg.ConfigError, match="Scale has none"):
        net.hessian_vector_product(X, T, np.zeros(net.n_params))


def test_an_activation_or_loss_without_a_second_derivative_is_named():
    from conftest import LogCosh, Softsign

    net = hg.MLP(2, [(4, Softsign()), (1, "identity")], seed=0)
    with pytest.raises(hg.ConfigError, match="'softsign' has no second_derivative"):
        net.hessian_vector_product(np.ones((3, 2)), np.ones((3, 1)), np.zeros(net.n_params))
    net = hg.MLP(2, [(4, "tanh"), (1, "identity")], loss=LogCosh(), seed=0)
    with pytest.raises(hg.ConfigError, match="'log_cosh' has no r_gradient"):
        net.hessian_vector_product(np.ones((3, 2)), np.ones((3, 1)), np.zeros(net.n_params))


@pytest.mark.parametrize("options, match", [({"k": 0}, "k must be"), ({"k": 34}, "k must be"),
                                            ({"method": "qr"}, "method must be"), ({"tol": 0}, "tol must be"),
                                            ({"max_iter": 0}, "max_iter"), ({"start": np.zeros(33)}, "zero"),
                                            ({"batch_size": -1}, "batch_size")])
def test_bad_sharpness_settings_are_refused(options, match):
    net = hg.MLP(2, [(8, "tanh"), (1, "sigmoid")], seed=0)
    with pytest.raises(hg.ConfigError, match=match):
        hg.sharpness(net, np.ones((3, 2)), np.array([0, 1, 1]), **options)


# ---------------------------------------------------------------------- the callback, the picture, the command
def test_sharpness_callback_records_every_measured_epoch(tmp_path):
    X, y = datasets.make_moons(60, noise=0.1, seed=0)
    net = hg.MLP(2, [(6, "tanh"), (1, "sigmoid")], seed=0)
    recorder = Sharpness(X, y, every=2)
    history = net.fit(X, y, epochs=5, batch_size=60, learning_rate=0.5, callbacks=[recorder], verbose=False)
    assert recorder.epochs == [2, 4]
    assert len(history.sharpness) == 5 and np.isnan(history.sharpness[0]) and np.isnan(history.sharpness[4])
    assert history.sharpness[1] == recorder.values[0] and history.sharpness[3] == recorder.values[1]
    # measured on the weights of that epoch: train 4 epochs afresh and measure directly
    again = hg.MLP(2, [(6, "tanh"), (1, "sigmoid")], seed=0)
    again.fit(X, y, epochs=4, batch_size=60, learning_rate=0.5, verbose=False)
    assert recorder.values[1] == pytest.approx(hg.sharpness(again, X, y).sharpness, rel=1e-9)
    with pytest.raises(hg.ConfigError, match="every"):
        Sharpness(X, y, every=0)

    pytest.importorskip("matplotlib")
    from handgrad import plotting

    figure = plotting.plot_sharpness(history, tmp_path / "sharpness.png")
    assert (tmp_path / "sharpness.png").read_bytes().startswith(b"\x89PNG")
    right = figure.axes[1]
    labels = [line.get_label() for line in right.lines]
    assert labels == ["sharpness lambda_1", "2/eta"]
    np.testing.assert_allclose(right.lines[1].get_ydata(), 2 / 0.5)  # the learning rate of every epoch
    np.testing.assert_allclose(right.lines[0].get_ydata(), recorder.values)
    figure = plotting.plot_sharpness(history.as_dict(), learning_rate=0.1)
    assert figure.axes[1].lines[1].get_ydata()[0] == pytest.approx(20.0)
    with pytest.raises(hg.DataError, match="no 'sharpness'"):
        plotting.plot_sharpness({"loss": [1.0]})


def test_curvature_command(tmp_path, capsys):
    from handgrad.cli import main

    X, y = datasets.make_moons(400, seed=0)
    net = hg.MLP(2, [(6, "tanh"), (1, "sigmoid")], seed=0)
    net.fit(X, y, epochs=3, verbose=False)
    model = tmp_path / "model.npz"
    net.save(model)
    expected = hg.sharpness(net, X, y, k=2).eigenvalues

    assert main(["curvature", str(model), "--data", "moons", "--k", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(report["eigenvalues"], expected, rtol=1e-8)
    assert report["learning_rate_bound"] == pytest.approx(2 / expected[0])
    assert report["converged"] and report["samples"] == 400

    assert main(["curvature", str(model), "--data", "moons", "--method", "power"]) == 0
    out = capsys.readouterr().out
    assert f"{expected[0]:.6g}" in out and f"2/lambda_1 = {2 / expected[0]:.6g}" in out

    assert main(["curvature", str(model), "--data", "moons", "--k", "0"]) == 2
    assert "k must be" in capsys.readouterr().err
    assert main(["curvature", str(model), "--data", "blobs"]) == 2  # 3 classes for a 1-output sigmoid model
    assert capsys.readouterr().err.startswith("handgrad: error:")
