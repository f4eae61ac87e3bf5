"""hg.load and read_checkpoint refuse non-finite weights: NaN or infinity in a weight, a bias, gamma, beta,
batch norm's running statistics (a negative running variance too) or a stored standardization is a
ModelFileError naming the array, its layer and the fix. What may be non-finite on purpose in a checkpoint
(a NaN in the history, ReduceOnPlateau's best = inf) still reads, and the run still resumes.
"""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import handgrad as hg  # noqa: E402
from handgrad import io as hio  # noqa: E402
from handgrad.checkpoints import read_checkpoint, write_checkpoint  # noqa: E402
from handgrad.errors import HandgradError, ModelFileError  # noqa: E402


def _net():
    net = hg.MLP(3, [{"size": 4, "activation": "tanh", "norm": "batch"}, (5, "relu"), (2, "softmax")], seed=0)
    rng = np.random.default_rng(1)
    net.fit(rng.normal(size=(40, 3)), rng.integers(0, 2, 40), epochs=2, batch_size=8, verbose=False, seed=0)
    return net


def _write_model(path, net, change=None, preprocessing=None, target_preprocessing=None):
    """A correctly sealed model file of ``net`` whose arrays ``change`` edits (name -> function of the array)."""
    arrays = dict(net.parameters())
    arrays.update(net.running_statistics())
    for name, edit in (change or {}).items():
        arrays[name] = edit(arrays[name].copy())
    record = {"kind": hio.MODEL_KIND, "handgrad_version": hg.__version__, "config": net.config(),
              "user": {"preprocessing": preprocessing, "target_preprocessing": target_preprocessing}}
    hio.write_archive(path, arrays, record)
    return path


def _set(index, value):
    def edit(array):
        array.flat[index] = value
        return array
    return edit


ARRAYS_AND_LAYERS = [("W1", "weights of layer 1"), ("W3", "weights of layer 3"), ("b2", "biases of layer 2"),
                     ("gamma1", "gamma of layer 1"), ("beta1", "beta of layer 1"),
                     ("running_mean1", "running mean of layer 1"), ("running_var1", "running variance of layer 1")]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name, words", ARRAYS_AND_LAYERS, ids=[name for name, _ in ARRAYS_AND_LAYERS])
def test_a_non_finite_array_is_refused_naming_it_and_its_layer(tmp_path, name, words, value):
    net = _net()
    path = _write_model(tmp_path / "m.npz", net, {name: _set(1, value)})
    with pytest.raises(ModelFileError) as raised:
        hg.load(path)
    message = str(raised.value)
    assert f"{name} (" in message and words in message, message
    assert "NaN or infinite" in message and "index [" in message and "retrain" in message


def test_a_negative_running_variance_is_refused(tmp_path):
    path = _write_model(tmp_path / "m.npz", _net(), {"running_var1": _set(2, -1e-3)})
    with pytest.raises(ModelFileError, match=r"running_var1 \(batch norm's running variance of layer 1\).*negative"):
        hg.load(path)


def test_finite_and_extreme_but_finite_weights_load(tmp_path):
    net = _net()
    path = _write_model(tmp_path / "m.npz", net, {"W2": _set(0, 1e308), "running_var1": _set(0, 0.0)},
                        preprocessing={"kind": "standardize", "mean": [0.0, -1e300, 2.0], "scale": [1.0, 5e-300, 3.0]})
    loaded = hg.load(path)
    assert loaded.layers[1].W.flat[0] == 1e308
    np.testing.assert_array_equal(loaded.layers[2].W, net.layers[2].W)
    net.save(tmp_path / "plain.npz")
    np.testing.assert_array_equal(hg.load(tmp_path / "plain.npz").params, net.params)


@pytest.mark.parametrize("key, values, words", [
    ("mean", [0.0, float("nan"), 1.0], "mean must be finite"),
    ("scale", [1.0, 1.0, float("inf")], "scale must be finite and > 0"),
    ("scale", [1.0, 0.0, 2.0], "scale must be finite and > 0"),
])
def test_a_non_finite_stored_standardization_is_refused(tmp_path, key, values, words):
    record = {"kind": "standardize", "mean": [0.0, 0.0, 0.0], "scale": [1.0, 1.0, 1.0], key: values}
    path = _write_model(tmp_path / "m.npz", _net(), preprocessing=record)
    with pytest.raises(ModelFileError, match=words + ".*feature"):
        hg.load(path)


@pytest.mark.parametrize("key, values, words", [
    ("mean", [float("nan"), 0.0], "target standardization's mean must be finite"),
    ("scale", [1.0, 0.0], "target standardization's scale must be finite and > 0"),
])
def test_a_non_finite_stored_target_standardization_is_refused(tmp_path, key, values, words):
    """handgrad train --standardize-targets stores it beside the inputs' (metadata "target_preprocessing")."""
    record = {"kind": "standardize", "mean": [0.0, 0.0], "scale": [1.0, 1.0], key: values}
    path = _write_model(tmp_path / "m.npz", _net(), target_preprocessing=record)
    with pytest.raises(ModelFileError, match=words + ".*output"):
        hg.load(path)


def test_the_command_line_names_the_array_in_one_line(tmp_path, capsys):
    from handgrad.cli import main

    path = _write_model(tmp_path / "m.npz", _net(), {"b3": _set(0, np.nan)})
    csv = tmp_path / "x.csv"
    csv.write_text("a,b,c\n1,2,3\n")
    assert main(["predict", str(path), str(csv)]) == 2
    err = capsys.readouterr().err.strip()
    assert "b3 (the biases of layer 3)" in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------------------- checkpoints
def _checkpoint(tmp_path):
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    net = hg.MLP(3, [{"size": 4, "activation": "tanh", "norm": "batch"}, (2, "softmax")], seed=0)
    path = str(tmp_path / "run.ckpt")
    args = dict(epochs=2, batch_size=8, optimizer="adam", learning_rate=0.01, schedule="plateau",
                validation_split=0.25, seed=3, verbose=False)
    net.fit(X, y, checkpoint=path, **args)
    return path, X, y, args


def _edit_checkpoint(path, edit):
    state = read_checkpoint(path)
    edit(state)
    write_checkpoint(path, state)


def test_a_checkpoint_with_a_nan_history_and_an_infinite_best_still_reads_and_resumes(tmp_path):
    """A diverged epoch's NaN (history) and ReduceOnPlateau's best = inf are legitimate, and are not checked."""
    path, X, y, args = _checkpoint(tmp_path)

    def edit(state):
        state["history"]["val_loss"][0] = float("nan")
        state["history"]["loss"][0] = float("inf")
        state["schedule"]["best"] = float("inf")
    _edit_checkpoint(path, edit)
    state = read_checkpoint(path)
    assert np.isnan(state["history"]["val_loss"][0]) and state["schedule"]["best"] == float("inf")
    again = hg.MLP(3, [{"size": 4, "activation": "tanh", "norm": "batch"}, (2, "softmax")], seed=5)
    history = again.fit(X, y, checkpoint=path, resume=path, **{**args, "epochs": 3})
    assert history.epochs == [1, 2, 3] and np.isnan(history.val_loss[0])
    assert np.isfinite(again.params).all()


@pytest.mark.parametrize("where, words", [
    (lambda s: s["params"], "params"),
    (lambda s: s["running"]["running_var1"], "running_var1 (batch norm's running variance of layer 1)"),
    (lambda s: s["optimizer"]["state"]["m"], "optimizer state 'm'"),
], ids=["params", "running", "optimizer"])
def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path, where, words):
    path, X, y, args = _checkpoint(tmp_path)
    _edit_checkpoint(path, lambda state: where(state).__setitem__(0, np.nan))
    with pytest.raises(ModelFileError) as raised:
        read_checkpoint(path)
    assert words in str(raised.value) and "NaN or infinite" in str(raised.value)
    again = hg.MLP(3, [{"size": 4, "activation": "tanh", "norm": "batch"}, (2, "softmax")], seed=5)
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        again.fit(X, y, checkpoint=path, resume=path, **args)


def test_a_checkpoint_whose_early_stopping_best_weights_are_not_finite_is_refused(tmp_path):
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    path = str(tmp_path / "run.ckpt")
    hg.MLP(3, [(4, "tanh"), (2, "softmax")], seed=0).fit(X, y, epochs=2, batch_size=8, early_stopping=3,
                                                         checkpoint=path, seed=1, verbose=False)
    (stopper,) = [c["state"] for c in read_checkpoint(path)["callbacks"] if "best_params" in c.get("state", {})]
    assert np.isfinite(stopper["best_params"]).all()

    def edit(state):
        for callback in state["callbacks"]:
            if "best_params" in callback.get("state", {}):
                callback["state"]["best_params"][1] = np.inf
    _edit_checkpoint(path, edit)
    with pytest.raises(ModelFileError, match=r"best_params.*NaN or infinite"):
        read_checkpoint(path)


# ---------------------------------------------------------------------------- fuzzing
VALUES = st.sampled_from([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e308, -1e-320, 2.0, -5.0])
NET = _net()
NAMES = [name for name, _ in NET.parameters()] + [name for name, _ in NET.running_statistics()]


@settings(max_examples=40, deadline=2000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(NAMES), st.integers(0, 100), VALUES), max_size=4))
def test_a_loaded_model_is_finite_or_refused(tmp_path, edits):
    """Any mix of edited entries: hg.load either refuses the file with a HandgradError, or gives a network
    whose parameters and running statistics are all finite (and running variances >= 0)."""
    change = {}
    for name, index, value in edits:
        previous = change.get(name, lambda a: a)
        size = dict(NET.parameters() + NET.running_statistics())[name].size
        change[name] = (lambda prev, i, v: lambda a: _set(i, v)(prev(a)))(previous, index % size, value)
    path = _write_model(tmp_path / "fuzz.npz", NET, change)
    try:
        loaded = hg.load(path)
    except HandgradError:
        bad = [value for _, _, value in edits if not np.isfinite(value)]
        negative_variance = [n for n, _, v in edits if n.startswith("running_var") and v < 0]
        assert bad or negative_variance, "a finite file was refused"
        return
    assert np.isfinite(loaded.params).all()
    assert all(np.isfinite(a).all() for _, a in loaded.running_statistics())
    assert all((a >= 0).all() for name, a in loaded.running_statistics() if name.startswith("running_var"))


def test_save_refuses_a_network_that_load_would_refuse(tmp_path):
    net = _net()
    net.layers[1].W[0, 0] = np.inf
    with pytest.raises(hg.ConfigError, match=r"W2 \(the weights of layer 2\).*Restore finite weights"):
        net.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
    net.layers[1].W[0, 0] = 0.5
    net.layers[0].norm.running_var[1] = -1.0
    with pytest.raises(hg.ConfigError, match="running_var1"):
        net.save(tmp_path / "m.npz")
    net.layers[0].norm.running_var[1] = 1.0
    assert np.array_equal(hg.load(net.save(tmp_path / "m.npz")).params, net.params)
