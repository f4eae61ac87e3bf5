"""Edge cases of curvature and the Poisson deviance found by an audit (issue 13): outputs of exactly 0 under the
Poisson deviance, Hessian-vector products that overflow, and seeds, tolerances and networks that are not ones."""

import warnings

import numpy as np
import pytest

import handgrad as hg
from handgrad.errors import ConfigError, DataError


def _relu_poisson_net():
    """A relu output under the Poisson deviance, with weights that put some outputs at exactly 0."""
    net = hg.MLP(3, [(4, "tanh"), (1, "relu")], loss="poisson", seed=0)
    net.params[:] = -np.abs(net.params)
    net.params[-1] = 0.05  # the output bias: some rows above 0, some at exactly 0
    return net


def _counts_data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 3)), rng.integers(4, 12, size=(16, 1)).astype(float)  # counts >= 4: t/tiny overflows


def test_poisson_gradient_and_hessian_stay_finite_where_a_relu_output_is_zero():
    net, (X, T) = _relu_poisson_net(), _counts_data()
    A = net.forward(X)
    assert (A == 0).any() and (A > 0).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no inf * 0
        net.loss_and_grad(X, T)
        gradient = net.grads.copy()
        v = np.random.default_rng(1).normal(size=net.n_params)
        Hv = net.hessian_vector_product(X, T, v)
    assert np.isfinite(gradient).all() and np.isfinite(Hv).all()
    h, theta = 1e-6, net.params.copy()
    numeric = np.empty_like(theta)
    for i in range(theta.size):  # the loss is flat in the rows whose output is 0: their share is 0
        net.params[i] = theta[i] + h
        up = net.loss(X, T)
        net.params[i] = theta[i] - h
        numeric[i] = (up - net.loss(X, T)) / (2 * h)
        net.params[i] = theta[i]
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-6)  # (J is large: -t ln tiny per zero)

    def grad_at(p):
        net.params[:] = p
        net.loss_and_grad(X, T)
        return net.grads.copy()

    h = 1e-6
    numeric_Hv = (grad_at(theta + h * v) - grad_at(theta - h * v)) / (2 * h)
    net.params[:] = theta
    np.testing.assert_allclose(Hv, numeric_Hv, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow itself
def test_a_hessian_vector_product_that_overflows_is_a_clear_error():
    X, T = _counts_data()
    net = hg.MLP(3, [(4, "identity"), (1, "identity")], seed=0)
    net.params[:] = 1e200  # finite weights whose outputs overflow: the products are NaN
    with pytest.raises(DataError, match="H v came out NaN or infinite"):
        net.hessian_vector_product(X, T, np.ones(net.n_params))
    with pytest.raises(DataError, match="H v came out NaN or infinite"):
        hg.sharpness(net, X, T)


def test_a_direction_beyond_float32_is_refused_without_a_numpy_warning():
    X, T = _counts_data()
    net = hg.MLP(3, [(4, "tanh"), (1, "identity")], seed=0, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="NaN or infinity"):
            net.hessian_vector_product(X, T, np.full(net.n_params, 1e300))


@pytest.mark.parametrize("options, message", [
    ({"tol": "small"}, "tol must be a number"),
    ({"tol": [1e-3]}, "tol must be a number"),
    ({"seed": "x"}, "seed must be a whole number"),
    ({"seed": 1.5}, "seed must be a whole number"),
    ({"dropout_seed": "x"}, "dropout_seed must be a whole number"),
])
def test_sharpness_refuses_bad_options_with_its_own_error(options, message):
    X, T = _counts_data()
    net = hg.MLP(3, [(4, "tanh"), (1, "identity")], seed=0)
    with pytest.raises(ConfigError, match=message):
        hg.sharpness(net, X, T, **options)


def test_seeds_of_the_network_and_its_gradients_are_checked():
    X, T = _counts_data()
    with pytest.raises(ConfigError, match="seed must be a whole number"):
        hg.MLP(3, [(4, "tanh"), (1, "identity")], seed="abc")
    net = hg.MLP(3, [(4, "tanh"), (1, "identity")], seed=0, dropout=0.5)
    for call in (lambda: net.loss_and_grad(X, T, dropout_seed=-1),
                 lambda: net.hessian_vector_product(X, T, np.ones(net.n_params), dropout_seed="x")):
        with pytest.raises(ConfigError, match="dropout_seed must be a whole number"):
            call()


def test_sharpness_of_something_that_is_not_a_network_is_a_clear_error():
    X, T = _counts_data()
    with pytest.raises(ConfigError, match="needs a handgrad MLP"):
        hg.sharpness(None, X, T)
    with pytest.raises(ConfigError, match="pass its net_"):
        hg.sharpness(hg.sklearn.MLPRegressor() if hasattr(hg, "sklearn") else object(), X, T)


@pytest.mark.parametrize("layers", [["--layers", "4:tanh:batchnorm,3:relu:layernorm,1:exp"],
                                    ["--layers", "4:relu,2:softplus", "--loss", "poisson"]])
def test_trace_and_gradcheck_make_count_targets_for_a_poisson_network(tmp_path, capsys, layers):
    """The generated batch of trace and gradcheck has targets the loss accepts: counts >= 0 for the Poisson deviance."""
    from handgrad.cli import main

    model = tmp_path / "m.npz"
    net = hg.MLP(3, [(4, "tanh"), (1, "exp")], seed=0)
    net.save(model)
    for arguments in (["trace", "--inputs", "3", "--batch", "3", *layers], ["gradcheck", "--inputs", "3", *layers],
                      ["trace", "--model", str(model)], ["gradcheck", "--model", str(model)]):
        assert main(arguments) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert ("PASS" in out) if arguments[0] == "gradcheck" else ("per-element sum - matrix form" in out)
    from handgrad.explain import example_batch

    _, T = example_batch(net, 20, seed=0)
    assert (T >= 0).all() and (T == np.round(T)).all() and len(np.unique(T)) > 1


@pytest.mark.parametrize("make, error, message", [
    (lambda X, T: hg.callbacks.Sharpness(X[:, :2], T), DataError, "features"),
    (lambda X, T: hg.callbacks.Sharpness(X, T, k=10_000), ConfigError, "k must be a whole number"),
    (lambda X, T: hg.callbacks.Sharpness(X, T, method="arnoldi"), ConfigError, "method must be one of"),
    (lambda X, T: hg.callbacks.Sharpness(X, T, tol="tight"), ConfigError, "tol must be a number"),
])
def test_the_sharpness_callback_checks_its_probe_set_and_options_before_training(make, error, message):
    X, T = _counts_data()
    net = hg.MLP(3, [(4, "tanh"), (1, "exp")], seed=0)
    before = net.params.copy()
    seen = []
    with pytest.raises(error, match=message):
        net.fit(X, T, epochs=3, verbose=False, callbacks=[make(X, T), lambda epoch, logs: seen.append(epoch)])
    assert seen == [] and np.array_equal(net.params, before)  # refused before the first epoch


def test_the_sharpness_callback_refuses_an_unknown_option():
    X, T = _counts_data()
    with pytest.raises(ConfigError, match=r"unknown option.*tolerance"):
        hg.callbacks.Sharpness(X, T, tolerance=1e-3)


@pytest.mark.parametrize("norm", [["batch"], {"kind": "batch"}, 1.5])
def test_a_norm_that_is_not_a_name_is_a_config_error(norm):
    with pytest.raises(ConfigError, match="unknown norm"):
        hg.MLP(3, [{"size": 4, "activation": "relu", "norm": norm}, (1, "identity")])
    with pytest.raises(ConfigError, match="unknown norm"):
        hg.layers.Dense(3, 4, "relu", norm=norm)


def test_curvature_json_is_strict_json_when_there_is_no_learning_rate_bound(tmp_path, capsys):
    """A model whose Hessian is 0 (every relu dead): lambda_1 = 0, no bound; --json still parses strictly."""
    import json

    from handgrad.cli import main

    net = hg.MLP(2, [(3, "relu"), (1, "relu")], seed=0)
    net.params[:] = -1.0
    model = tmp_path / "dead.npz"
    net.save(model)
    capsys.readouterr()
    assert main(["curvature", str(model), "--data", "moons", "--samples", "40", "--json"]) == 0

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    report = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert report["eigenvalues"] == [0.0] and report["learning_rate_bound"] is None


def test_a_toml_norm_given_as_a_list_is_one_line_and_exit_2(tmp_path, capsys):
    from handgrad.cli import main

    config = tmp_path / "c.toml"
    config.write_text('[model]\nlayers = [{size = 4, activation = "relu", norm = ["batch"]}, '
                      '{size = 1, activation = "sigmoid"}]\n')
    assert main(["train", "--config", str(config), "--epochs", "1", "--no-plots", "--quiet",
                 "--out", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert "unknown norm ['batch']" in err and "Traceback" not in err


def test_a_bad_start_vector_is_named_start():
    X, T = _counts_data()
    net = hg.MLP(3, [(4, "tanh"), (1, "exp")], seed=0)
    with pytest.raises(DataError, match="start must be a vector of 21 numbers"):
        hg.sharpness(net, X, T, start=np.ones(5))
    with pytest.raises(DataError, match="start contains NaN"):
        hg.sharpness(net, X, T, start=np.full(net.n_params, np.nan))


def test_a_resumed_history_keeps_the_runs_column_order(tmp_path):
    """history.csv of a resumed run has the columns of the uninterrupted one, in the same order (the
    checkpoint's JSON sorts keys: val_loss, lr and a callback's column would come back alphabetical)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    T = X[:, :1] - X[:, 1:2]

    def run(epochs, **options):
        net = hg.MLP(3, [{"size": 6, "activation": "relu", "norm": "batch"}, (1, "identity")], seed=0)
        probe = hg.callbacks.Sharpness(X[:20], T[:20])
        return net.fit(X, T, epochs=epochs, batch_size=10, validation_split=0.25, seed=0, verbose=False,
                       callbacks=[probe], **options)

    full = run(4)
    checkpoint = tmp_path / "ck.npz"
    run(2, checkpoint=str(checkpoint))
    resumed = run(4, resume=str(checkpoint))
    assert list(full.metrics) == ["loss", "val_loss", "val_mse", "val_mae", "val_r2", "lr", "sharpness"]
    assert list(resumed.metrics) == list(full.metrics)
    assert resumed.metrics == full.metrics


def test_chunked_products_with_dropout_masks_are_refused_and_without_them_agree():
    """batch_size splits the rows; with dropout_seed each chunk would draw other masks than the whole batch (its
    Hessian was silently another objective's). Without dropout masks the chunks add up to the whole batch."""
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(40, 3)), rng.normal(size=(40, 1))
    net = hg.MLP(3, ["8:tanh:layernorm", (6, "tanh"), (1, "identity")], seed=0, dropout=0.5)
    with pytest.raises(ConfigError, match="dropout_seed"):
        hg.sharpness(net, X, T, dropout_seed=3, batch_size=10)
    whole = hg.sharpness(net, X, T, dropout_seed=3, batch_size=40).eigenvalues  # one chunk: allowed
    np.testing.assert_allclose(whole, hg.sharpness(net, X, T, dropout_seed=3).eigenvalues, rtol=1e-10)
    np.testing.assert_allclose(hg.sharpness(net, X, T, batch_size=10).eigenvalues,
                               hg.sharpness(net, X, T).eigenvalues, rtol=1e-8)


def test_synchronized_batch_norm_needs_a_callable_sum():
    net = hg.MLP(3, ["4:relu:batchnorm", (1, "identity")], seed=0)
    with pytest.raises(ConfigError, match="reduce"), net.synchronized_batch_norm(2):
        pass
    assert net.batch_norms()[0].reduce is None
    X = np.random.default_rng(0).normal(size=(6, 3))
    with net.synchronized_batch_norm(lambda array: array):  # one process: the sum over it is the array itself
        synchronized = net.loss(X, X[:, :1])
    assert synchronized == pytest.approx(net.loss(X, X[:, :1]), rel=1e-13)
