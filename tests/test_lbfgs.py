"""handgrad.lbfgs against scipy.optimize's L-BFGS-B on the same objectives, and its own promises."""

import numpy as np
import pytest

import handgrad as hg
from handgrad import lbfgs
from handgrad.errors import ConfigError, TrainingError

scipy_optimize = pytest.importorskip("scipy.optimize")


def _data(seed=0, n=60):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X @ [1.0, -2.0, 0.5, 0.0] + 0.3 * rng.normal(size=n) > 0).astype(float)[:, None]
    return X, y


def _objective(net, X, T):
    def fun_and_grad(x):
        net.params[...] = x
        return net.backprop(X, T, None, training=False), net.grads.copy()
    return fun_and_grad


def _scipy(net, X, T, **options):
    x0 = net.params.copy()
    found = scipy_optimize.minimize(_objective(net, X, T), x0, jac=True, method="L-BFGS-B", options=options)
    net.params[...] = x0
    return found


@pytest.mark.parametrize("layers", [[(1, "sigmoid")], [(5, "tanh"), (1, "sigmoid")], [(3, "tanh"), (1, "identity")]],
                         ids=["logistic_regression", "tanh_hidden", "tanh_regression"])
def test_same_minimum_as_scipy_with_comparable_evaluations(layers):
    X, y = _data()
    net = hg.MLP(4, layers, l2=1e-2, seed=0)
    theirs = _scipy(net, X, y, gtol=1e-9, ftol=0, maxiter=3000)
    ours = lbfgs.minimize_network(net, X, y, max_iter=3000, solver=lbfgs.LBFGS(tol=1e-9, ftol=0))
    assert ours.status == 0 and theirs.status == 0, (ours.message, theirs.message)
    assert ours.fun == pytest.approx(theirs.fun, abs=1e-10)
    assert np.abs(ours.grad).max() <= 1e-8  # tol, or no decrease left in float64 (ftol=0), as scipy stops
    if layers[-1][1] == "sigmoid":  # the regression net has sign symmetries: equal minima at other points
        np.testing.assert_allclose(ours.x, theirs.x, atol=1e-6)
    np.testing.assert_array_equal(net.params, ours.x)  # the network holds the minimum, and its gradient
    np.testing.assert_array_equal(net.grads, ours.grad)
    assert ours.n_fun <= 1.3 * theirs.nfev + 5, (ours.n_fun, theirs.nfev)


def test_rosenbrock_as_scipy_does():
    from scipy.optimize import rosen, rosen_der

    x0 = np.linspace(-1, 1, 10)
    ours = lbfgs.minimize(lambda x: (rosen(x), rosen_der(x)), x0, tol=1e-10, ftol=0.0)
    theirs = scipy_optimize.minimize(lambda x: (rosen(x), rosen_der(x)), x0, jac=True, method="L-BFGS-B",
                                     options=dict(gtol=1e-10, ftol=0))
    np.testing.assert_allclose(ours.x, np.ones(10), atol=1e-8)
    np.testing.assert_allclose(ours.x, theirs.x, atol=1e-8)
    assert ours.n_fun <= 1.3 * theirs.nfev + 5


def test_every_accepted_step_satisfies_the_strong_wolfe_conditions():
    X, y = _data(1)
    net = hg.MLP(4, [(8, "tanh"), (1, "sigmoid")], l2=1e-3, seed=1)
    solver = lbfgs.LBFGS(tol=1e-8)
    result = lbfgs.minimize_network(net, X, y, max_iter=200, solver=solver)
    assert len(result.steps) == result.n_iter > 10
    for a, f0, d0, f, d in result.steps:
        assert a > 0 and d0 < 0
        assert f <= f0 + solver.c1 * a * d0  # sufficient decrease
        assert abs(d) <= solver.c2 * abs(d0)  # curvature, strong form
    assert all(later <= earlier for earlier, later in zip(result.loss_curve, result.loss_curve[1:]))


def test_line_search_alone_on_a_quadratic():
    # phi(a) = (a - 3)^2: phi'(0) = -6; the exact minimizer a = 3 is found by the cubic in one zoom
    phi = lambda a: ((a - 3.0) ** 2, 2 * (a - 3.0), None)  # noqa: E731
    a, f, d, _ = lbfgs.strong_wolfe(phi, 9.0, -6.0, a1=10.0, c1=1e-4, c2=0.1)
    assert f <= 9.0 + 1e-4 * a * -6.0 and abs(d) <= 0.1 * 6.0
    assert a == pytest.approx(3.0)


def test_two_loop_is_the_bfgs_inverse_for_one_pair():
    # with one pair, H = (I - rho s y^T) gamma I (I - rho y s^T) + rho s s^T (N&W eq. 7.19)
    rng = np.random.default_rng(0)
    s, y, g = rng.normal(size=(3, 5))
    y = y + 2 * s  # s.y > 0
    rho = 1.0 / (s @ y)
    gamma = (s @ y) / (y @ y)
    V = np.eye(5) - rho * np.outer(y, s)
    H = gamma * V.T @ V + rho * np.outer(s, s)
    np.testing.assert_allclose(lbfgs.two_loop(g, [(s, y, rho)]), H @ g, rtol=1e-12)
    np.testing.assert_allclose(lbfgs.two_loop(g, []), g)


def test_max_iter_and_max_fun_are_honored():
    X, y = _data(2)
    net = hg.MLP(4, [(8, "tanh"), (1, "sigmoid")], seed=2)
    x0 = net.params.copy()
    result = lbfgs.minimize_network(net, X, y, max_iter=5)
    assert result.n_iter == 5 and result.status == 1 and "max_iter" in result.message
    assert len(result.loss_curve) == 5
    net.params[...] = x0
    result = lbfgs.minimize_network(net, X, y, max_iter=1000, solver=lbfgs.LBFGS(max_fun=10))
    # as scipy: the limit is checked after each iteration, so the last line search may pass it
    assert result.status == 1 and "max_fun" in result.message
    assert result.n_fun > 10 and result.n_fun <= 10 + 20 and result.n_iter <= 10
    net.params[...] = x0
    theirs = _scipy(net, X, y, maxfun=10, maxiter=1000)
    assert theirs.status == 1 and abs(theirs.nit - result.n_iter) <= 2


def test_fit_with_lbfgs_records_each_iteration():
    X, y = _data(3)
    net = hg.MLP(4, [(6, "tanh"), (1, "sigmoid")], seed=3)
    history = net.fit(X, y, optimizer="lbfgs", epochs=15)
    assert len(history.loss) == 15 == len(history.epochs) and history.epochs[-1] == 15
    assert history.loss[-1] < history.loss[0] and "max_iter" in history.stop_reason
    assert net.loss(X, y) == pytest.approx(history.loss[-1])
    net2 = hg.MLP(4, [(6, "tanh"), (1, "sigmoid")], seed=3)
    history2 = net2.fit(X, y, optimizer=lbfgs.LBFGS(tol=1e-3), epochs=500)
    assert history2.stop_reason.startswith("converged") and np.abs(net2.grads).max() <= 1e-3


def test_bad_arguments_raise_handgrad_errors():
    X, y = _data()
    net = hg.MLP(4, [(1, "sigmoid")], seed=0)
    for bad in (dict(memory=0), dict(tol=-1), dict(max_fun=0), dict(c1=0.95, c2=0.9), dict(c2=1.0),
                dict(max_fun=2.5), dict(tol="x")):
        with pytest.raises(ConfigError):
            lbfgs.LBFGS(**bad)
    with pytest.raises(ConfigError, match="max_iter"):
        lbfgs.minimize_network(net, X, y, max_iter=0)
    with pytest.raises(ConfigError, match="x0"):
        lbfgs.minimize(lambda x: (0.0, x), [np.nan])
    with pytest.raises(ConfigError, match="validation_split"):
        net.fit(X, y, optimizer="lbfgs", validation_split=0.2)
    with pytest.raises(ConfigError, match="solver"):
        lbfgs.minimize(lambda x: (float(x @ x), 2 * x), [1.0], solver="adam")
    with pytest.raises(TrainingError, match="starting point"):
        lbfgs.minimize(lambda x: (np.inf, x), [1.0])


def test_batch_norm_minimizes_the_full_batch_objective_and_keeps_the_data_statistics():
    """With batch norm, L-BFGS differentiates the objective with the whole data set's statistics (batch
    statistics, never the running ones), and ends with the running statistics set to the data's: the mean
    and unbiased variance of Z = X W of the final weights."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)
    net = hg.MLP(3, ["8:tanh:batchnorm", "1:sigmoid"], seed=0)
    start = net.loss(X, y, batch_statistics=True)
    history = net.fit(X, y, optimizer="lbfgs", epochs=60)
    assert history.loss[-1] < 0.5 * start
    assert history.loss[-1] == pytest.approx(net.loss(X, y, batch_statistics=True), rel=1e-9)
    Z = X @ net.layers[0].W
    norm = net.layers[0].norm
    np.testing.assert_allclose(norm.running_mean, Z.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(norm.running_var, Z.var(axis=0, ddof=1), rtol=1e-12)
    assert norm.momentum == 0.1  # restored after the pass that set the statistics


def test_streamed_data_is_refused_with_a_message_in_python_and_on_the_command_line(tmp_path, capsys):
    """Memory-mapped files are streamed block by block by the stochastic optimizers; L-BFGS needs the whole
    data set at every evaluation, and used to crash inside the first matmul (an object array)."""
    from handgrad.cli import main

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, size=40)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    net = hg.MLP(3, [(4, "tanh"), (1, "sigmoid")], seed=0)
    with pytest.raises(ConfigError, match="in memory"):
        net.fit(np.load(tmp_path / "X.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r"),
                optimizer="lbfgs", epochs=3)
    status = main(["train", "--npy", str(tmp_path / "X.npy"), "--npy-targets", str(tmp_path / "y.npy"), "--layers",
                   "4:tanh,1:sigmoid", "--optimizer", "lbfgs", "--epochs", "3", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("handgrad: error:") and err.count("\n") == 1, err
    net.fit(np.load(tmp_path / "X.npy"), y, optimizer="lbfgs", epochs=3)  # the same data in memory trains
