"""Pictures: each is written as a non-empty PNG; the gradient-norm recorder shows seed 003's vanishing gradients."""

import numpy as np
import pytest

import handgrad as hg
from handgrad import datasets, plotting

pytest.importorskip("matplotlib")


def is_png(path):
    data = path.read_bytes()
    return data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


@pytest.fixture(scope="module")
def moons():
    return datasets.make_moons(120, noise=0.1, seed=0)


def test_history_curves(tmp_path):
    history = {"epoch": [1, 2, 3], "loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.6, 0.4],
               "val_accuracy": [0.5, 0.7, 0.9]}
    figure = plotting.plot_history(history, tmp_path / "loss.png")
    assert is_png(tmp_path / "loss.png")
    assert len(figure.axes) == 2
    labels = [line.get_label() for line in figure.axes[0].lines]
    assert labels == ["loss", "validation loss"]
    with pytest.raises(hg.DataError, match="no 'loss'"):
        plotting.plot_history({"loss": []})


@pytest.mark.parametrize("layers", [[(8, "tanh"), (1, "sigmoid")], [(8, "tanh"), (2, "softmax")],
                                    [(8, "tanh"), (1, "identity")]])
def test_decision_boundary(tmp_path, moons, layers):
    X, y = moons
    net = hg.MLP(2, layers, seed=0)
    scaler = datasets.Standardizer().fit(X)
    plotting.plot_decision_boundary(net, X, y, tmp_path / "b.png", transform=scaler.transform, resolution=40)
    assert is_png(tmp_path / "b.png")
    with pytest.raises(hg.DataError, match="2 input features"):
        plotting.plot_decision_boundary(hg.MLP(3, [(1, "sigmoid")]), np.ones((4, 3)), np.zeros(4))


def test_confusion_matrix_and_weights(tmp_path):
    figure = plotting.plot_confusion_matrix(np.array([[5, 1], [2, 7]]), tmp_path / "c.png")
    assert is_png(tmp_path / "c.png")
    assert sorted(text.get_text() for text in figure.axes[0].texts) == ["1", "2", "5", "7"]
    with pytest.raises(hg.DataError, match="square"):
        plotting.plot_confusion_matrix(np.ones((2, 3)))
    net = hg.MLP(2, [(4, "relu"), (3, "relu"), (1, "sigmoid")], seed=0)
    plotting.plot_weight_histograms(net, tmp_path / "w.png")
    assert is_png(tmp_path / "w.png")


def test_gradient_norms_show_vanishing_gradients_with_the_logistic_function(tmp_path, moons):
    # Seed 003: sigma' <= 1/4, so the error shrinks on its way back through sigmoid layers.
    X, y = moons
    net = hg.MLP(2, [(8, "sigmoid")] * 5 + [(1, "sigmoid")], seed=0)
    recorder = plotting.GradientNormRecorder(X, y)
    net.fit(X, y, epochs=3, batch_size=32, learning_rate=0.1, callbacks=[recorder])
    assert recorder.epochs == [0, 1, 2, 3]
    assert sorted(recorder.norms) == [f"W{k}" for k in range(1, 7)]
    first = np.array(recorder.norms["W1"])
    last = np.array(recorder.norms["W6"])
    assert np.all(first < last / 10)  # the first layer's gradient is orders of magnitude smaller
    plotting.plot_gradient_norms(recorder, tmp_path / "g.png")
    assert is_png(tmp_path / "g.png")
    with pytest.raises(hg.DataError, match="no gradient norms"):
        plotting.plot_gradient_norms({"epoch": []})


def test_recorder_matches_loss_and_grad(moons):
    X, y = moons
    net = hg.MLP(2, [(4, "tanh"), (1, "sigmoid")], seed=1)
    recorder = plotting.GradientNormRecorder(X, y)
    recorder.record(net, 0)
    _, grads = net.loss_and_grad(X, y)
    assert recorder.norms["W2"][0] == pytest.approx(np.linalg.norm(grads[1][0]))


def test_missing_matplotlib_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(plotting.PlottingUnavailable, match=r"pip install handgrad\[plot\]"):
        plotting.plot_confusion_matrix(np.eye(2))


def test_failed_picture_leaves_earlier_file(tmp_path, monkeypatch):
    path = tmp_path / "c.png"
    path.write_bytes(b"old picture")
    figure = plotting.plot_confusion_matrix(np.eye(2))

    def broken(*args, **kwargs):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(figure, "savefig", broken)
    with pytest.raises(RuntimeError):
        plotting.save_figure(figure, path)
    assert path.read_bytes() == b"old picture"
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]
