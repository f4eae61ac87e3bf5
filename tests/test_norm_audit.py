"""Issue 13 audit: batch/layer normalization and curvature where they meet the rest of handgrad (the
command line's model-based commands, model files, ...). Each test failed before its fix."""

import numpy as np
import pytest

import handgrad as hg
from handgrad import datasets
from handgrad.cli import main
from handgrad.errors import ConfigError
from handgrad.layers import BatchNorm, LayerNorm


def trained_norm_model(tmp_path):
    X, y = datasets.make_moons(120, seed=0)
    net = hg.MLP(2, ["6:tanh:batchnorm", "5:relu:layernorm", (1, "sigmoid")], seed=0)
    net.fit(X, y, epochs=2, batch_size=16, verbose=False)
    path = tmp_path / "model.npz"
    net.save(path)
    return path


def test_gradcheck_of_a_saved_norm_model_checks_gamma_and_beta(tmp_path, capsys):
    model = trained_norm_model(tmp_path)
    assert main(["gradcheck", "--model", str(model)]) == 0
    out = capsys.readouterr().out
    for name in ("W1", "gamma1", "beta1", "gamma2", "beta2", "W3", "b3"):
        assert f"\n{name} " in out, name
    assert "PASS" in out


@pytest.mark.parametrize("spec", ["1:tanh:layernorm", {"size": 1, "activation": "relu", "norm": "layer"}])
def test_layer_norm_over_a_single_unit_is_refused(spec):
    # The layer's output would be beta for every input (z - mean(z) = 0 over one feature): training it
    # learns nothing below, silently.
    with pytest.raises(ConfigError, match="at least 2 units"):
        hg.MLP(2, [spec, (1, "sigmoid")])
    with pytest.raises(ConfigError, match="at least 2 units"):
        LayerNorm(1)
    assert hg.MLP(2, ["1:tanh:batchnorm", (1, "sigmoid")]).layers[0].norm.kind == "batch"  # varies over the batch


@pytest.mark.parametrize("momentum", [0.0, 0.5, 1.0, 1])
def test_batch_norm_momentum_from_zero_to_one_is_accepted(momentum):
    assert BatchNorm(3, momentum=momentum).momentum == momentum


@pytest.mark.parametrize("momentum", [-0.1, 1.5, float("nan"), "x"])
def test_bad_batch_norm_momentum_names_the_closed_range(momentum):
    with pytest.raises(ConfigError, match=r"momentum must be .*\[0, 1\]"):
        BatchNorm(3, momentum=momentum)


@pytest.mark.parametrize("name, value, words", [
    ("running_var1", np.array([1.0, -0.5, 1.0]), "variance"),
    ("running_var1", np.array([1.0, np.nan, 1.0]), "finite"),
    ("running_mean1", np.array([np.inf, 0.0, 0.0]), "finite"),
    ("running_mean1", np.array(["a", "b", "c"]), "finite"),
])
def test_bad_running_statistics_are_refused_and_nothing_is_copied(name, value, words):
    net = hg.MLP(2, ["3:relu:batchnorm", (1, "identity")], seed=0)
    good = {"running_mean1": np.full(3, 0.25), "running_var1": np.full(3, 2.0)}
    with pytest.raises(ConfigError, match=words):
        net.set_running_statistics({**good, name: value})
    np.testing.assert_array_equal(net.layers[0].norm.running_mean, 0.0)  # untouched, not half copied
    np.testing.assert_array_equal(net.layers[0].norm.running_var, 1.0)
    net.set_running_statistics(good)
    np.testing.assert_array_equal(net.layers[0].norm.running_var, 2.0)


def test_check_student_tells_a_backprop_without_norms_what_a_norm_network_passes():
    def backprop(weights, biases, activations, X, T, loss):  # written for the seeds' networks
        return [(np.zeros_like(W), None if b is None else np.zeros_like(b)) for W, b in zip(weights, biases)]

    net = hg.MLP(3, ["4:tanh:batchnorm", (2, "identity")], seed=0)
    rng = np.random.default_rng(0)
    report = hg.check_gradients(backprop, net, rng.normal(size=(5, 3)), rng.normal(size=(5, 2)))
    assert not report.ok
    text = str(report)
    assert "normalization layers" in text and "norms=" in text and "(dW, None, dgamma, dbeta)" in text


def test_batch_norm_on_one_sample_names_the_way_out_outside_training_too():
    net = hg.MLP(2, ["3:tanh:batchnorm", (1, "sigmoid")], seed=0)
    X, y = np.array([[0.5, -0.2]]), np.array([1])
    with pytest.raises(hg.DataError, match=r"batch_statistics=False"):
        net.loss(X, y)
    assert np.isfinite(net.loss(X, y, batch_statistics=False))  # the way out it names works


def test_a_diverging_batch_leaves_the_running_statistics_as_they_were_before_it():
    # The forward pass of the batch whose loss is not finite has already folded its statistics (inf, NaN)
    # into the running ones: the weights were kept finite, the running statistics were not.
    X, y = datasets.make_regression1d(200, seed=0)
    net = hg.MLP(1, ["8:relu:batchnorm", "8:relu:batchnorm", (1, "identity")], seed=0)
    after_each_batch = []

    class Record(hg.callbacks.Callback):
        def on_batch_end(self, epoch, batch, loss):
            after_each_batch.append({name: array.copy() for name, array in net.running_statistics()})
            return False

    with pytest.raises(hg.TrainingError, match="the loss became"):
        net.fit(X, y * 1e3, epochs=50, batch_size=16, learning_rate=1e3, verbose=False, callbacks=[Record()])
    assert after_each_batch, "the test needs at least one good batch before the diverging one"
    for name, array in net.running_statistics():
        np.testing.assert_array_equal(array, after_each_batch[-1][name], err_msg=name)
        assert np.all(np.isfinite(array)), name
