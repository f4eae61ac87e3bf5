"""handgrad.torch_io and dropout: to_torch writes nn.Dropout(p) where net.sequence has a Dropout layer, and
from_torch reads it back as the layer's rate, so a round trip keeps the architecture (norms included).

Eval mode: PyTorch's output equals handgrad's predict. Train mode: both are inverted dropout (docs/derivations.md,
"Dropout"): each unit is dropped independently with probability p and a kept one is scaled by 1/(1 - p). The
masks come from different random streams, so the tests check the structure (every output is 0 or x/(1 - p))
and the rate (the dropped fraction within 5 standard deviations of p), for both libraries alike.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import handgrad as hg  # noqa: E402
from handgrad.errors import ConfigError  # noqa: E402
from handgrad.layers import Dropout  # noqa: E402
from handgrad.torch_io import from_torch, to_torch  # noqa: E402


def _sequence_kinds(net):
    return [("Dropout", layer.rate) if isinstance(layer, Dropout) else ("Dense", layer.n_out, layer.norm and
                                                                           layer.norm.kind, layer.activation.name)
            for layer in net.sequence]


def _trained(net, X, y, epochs=3):
    """A few training steps, so that batch norm's running statistics differ from their start."""
    net.fit(X, y, epochs=epochs, batch_size=16, optimizer="adam", learning_rate=0.01, verbose=False, seed=0)
    return net


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_keeps_dropout_and_norms(dtype):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 5)), rng.integers(0, 3, 64)
    net = hg.MLP(5, [(8, "relu"), {"size": 7, "activation": "tanh", "norm": "batch"},
                     {"size": 6, "activation": "gelu", "norm": "layer"}, (4, "elu"), (3, "softmax")],
                 dropout=[0.25, 0.5, 0.0, 0.1], seed=1, dtype=dtype)
    _trained(net, X.astype(dtype), y)
    seq = to_torch(net)
    assert [type(m).__name__ for m in seq] == [
        "Linear", "ReLU", "Dropout", "Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear", "LayerNorm", "GELU",
        "Linear", "ELU", "Dropout", "Linear", "Softmax"]
    assert [m.p for m in seq if isinstance(m, nn.Dropout)] == [0.25, 0.5, 0.1]
    back = from_torch(seq)
    assert back.dropout == net.dropout == [0.25, 0.5, 0.0, 0.1]
    assert _sequence_kinds(back) == _sequence_kinds(net)
    for (name, a), (_, b) in zip(net.parameters(), back.parameters(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    for (name, a), (_, b) in zip(net.running_statistics(), back.running_statistics(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    X_new = rng.normal(size=(30, 5)).astype(dtype)
    seq.eval()  # dropout off, batch norm on its running statistics: handgrad's predict
    with torch.no_grad():
        torch_side = seq(torch.from_numpy(X_new)).numpy()
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(torch_side, net.predict_proba(X_new), rtol=tolerance, atol=tolerance)
    np.testing.assert_array_equal(back.predict_proba(X_new), net.predict_proba(X_new))
    np.testing.assert_array_equal(back.predict(X_new), net.predict(X_new))


def test_a_model_with_dropout_built_in_pytorch_predicts_as_in_eval_mode():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 8), nn.Tanh(),
                        nn.Dropout(p=0.2, inplace=True), nn.Linear(8, 1)).double()
    net = from_torch(seq, loss="mse")
    assert net.dropout == [0.3, 0.2]
    assert [type(layer).__name__ for layer in net.sequence] == ["Dense", "Dropout", "Dense", "Dropout", "Dense"]
    X = np.random.default_rng(1).normal(size=(25, 6))
    seq.eval()
    with torch.no_grad():
        expected = seq(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(net.predict(X), expected, rtol=1e-12, atol=1e-12)
    seq.train()
    with torch.no_grad():
        dropped = seq(torch.from_numpy(X)).numpy()
    assert not np.allclose(dropped, expected), "train mode should drop units"


def _pass_through(p, width, dtype):
    """An MLP whose two identity layers have W = I and b = 0, so that its output in training is exactly
    Dropout(p) of its input: the mask's structure and scale can be read off the output."""
    net = hg.MLP(width, [(width, "identity"), (width, "identity")], dropout=p, seed=3, dtype=dtype)
    for layer in net.layers:
        layer.W[...] = np.eye(width)
        layer.b[...] = 0
    return net


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_train_mode_drops_at_the_same_rate_with_the_same_scaling(p):
    """Inverted dropout in both: Y/X is 0 (dropped) or 1/(1 - p) (kept), the dropped fraction is p overall and
    in every column, and E[Y] = X. Checked on handgrad's training pass and on to_torch's Sequential in train
    mode alike (the masks differ: different random streams)."""
    N, width = 2000, 40
    rng = np.random.default_rng(4)
    X = rng.uniform(0.5, 2.0, size=(N, width))
    net = _pass_through(p, width, "float64")
    handgrad_side = net.run_forward(net.check_inputs(X), training=True).copy()
    seq = to_torch(net).train()
    with torch.no_grad():
        torch_side = seq(torch.from_numpy(X)).numpy()
    assert isinstance(seq[1], nn.Dropout) and seq[1].p == p
    for name, Y in (("handgrad", handgrad_side), ("torch", torch_side)):
        ratio = Y / X
        kept = ratio != 0
        np.testing.assert_allclose(ratio[kept], 1 / (1 - p), rtol=1e-12, err_msg=f"{name}: kept units' scale")
        overall = 1 - kept.mean()
        sigma = np.sqrt(p * (1 - p) / kept.size)
        assert abs(overall - p) < 5 * sigma, f"{name}: dropped {overall:.4f} of the units, rate {p}"
        per_column = 1 - kept.mean(axis=0)
        assert np.abs(per_column - p).max() < 5 * np.sqrt(p * (1 - p) / N), f"{name}: a column's rate is off"
        mean_ratio = Y.sum() / X.sum()  # E[Y] = X: the expected input of the next layer is unchanged
        assert abs(mean_ratio - 1) < 5 * np.sqrt(p / (1 - p) / kept.size) * 2, f"{name}: E[Y] != X"
    # Element-wise masks in both: within a row, some units are kept and some dropped (not whole rows or columns).
    for Y in (handgrad_side, torch_side):
        kept_per_row = (Y != 0).sum(axis=1)
        assert 0 < kept_per_row.mean() < width and (kept_per_row < width).any() and (kept_per_row > 0).any()
    with torch.no_grad():
        np.testing.assert_array_equal(seq.eval()(torch.from_numpy(X)).numpy(), net.predict(X))


def test_dropout_masks_differ_between_training_passes_in_both():
    net = _pass_through(0.5, 10, "float64")
    X = np.ones((50, 10))
    first = net.run_forward(X, training=True).copy()
    second = net.run_forward(X, training=True).copy()
    assert not np.array_equal(first, second)
    seq = to_torch(net).train()
    with torch.no_grad():
        assert not torch.equal(seq(torch.from_numpy(X)), seq(torch.from_numpy(X)))


@pytest.mark.parametrize("modules, words", [
    (lambda: [nn.Dropout(0.2), nn.Linear(3, 4), nn.Linear(4, 2)], "before any Linear"),
    (lambda: [nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Dropout(0.2)], "ends with a Dropout"),
    (lambda: [nn.Linear(3, 4), nn.Dropout(0.2), nn.Dropout(0.1), nn.Linear(4, 2)], "second Dropout"),
    (lambda: [nn.Linear(3, 4), nn.Dropout(0.2), nn.ReLU(), nn.Linear(4, 2)], "after the Dropout"),
    (lambda: [nn.Linear(3, 4), nn.Dropout(0.2), nn.BatchNorm1d(4), nn.Linear(4, 2)], "after the Dropout"),
    (lambda: [nn.Linear(3, 4), nn.ReLU(), nn.Dropout(1.0), nn.Linear(4, 2)], r"\[0, 1\)"),
    (lambda: [nn.Linear(3, 4), nn.AlphaDropout(0.5), nn.Linear(4, 2)], "AlphaDropout"),
])
def test_dropout_where_handgrad_has_none_is_refused_with_the_reason(modules, words):
    with pytest.raises(ConfigError, match=words):
        from_torch(nn.Sequential(*modules()))


def test_dropout_with_rate_zero_and_identity_layers_read_back():
    seq = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.0), nn.Linear(4, 4), nn.Dropout(0.4), nn.Linear(4, 1))
    net = from_torch(seq)
    assert net.dropout == [0.0, 0.4]
    assert [type(layer).__name__ for layer in net.sequence] == ["Dense", "Dense", "Dropout", "Dense"]
    assert [type(m).__name__ for m in to_torch(net)] == ["Linear", "Linear", "Dropout", "Linear"]
