"""handgrad.torch_io: handgrad -> PyTorch -> handgrad keeps weights and outputs; unsupported modules are named."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import handgrad as hg  # noqa: E402
from handgrad.errors import ConfigError  # noqa: E402
from handgrad.torch_io import from_torch, to_torch  # noqa: E402

HIDDEN = ["identity", "relu", {"name": "leaky_relu", "slope": 0.2}, "sigmoid", "tanh", "softplus",
          {"name": "elu", "alpha": 0.7}, "gelu", "silu"]


def _name(spec):
    return spec if isinstance(spec, str) else spec["name"]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("hidden", HIDDEN, ids=_name)
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
def test_round_trip_keeps_weights_and_outputs(hidden, output, bias):
    net = hg.MLP(5, [(7, hidden), (6, hidden), (3, output)], bias=bias, seed=1, dtype="float32")
    if bias:  # nonzero biases, so that copying them is tested
        rng = np.random.default_rng(2)
        for layer in net.layers:
            layer.b[...] = rng.normal(size=layer.b.shape)
    seq = to_torch(net)
    back = from_torch(seq)
    assert [layer.activation for layer in back.layers] == [layer.activation for layer in net.layers]
    assert back.dtype == np.float32 and back.bias == bias
    for (name, a), (_, b) in zip(net.parameters(), back.parameters()):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b, err_msg=name)
    X = np.random.default_rng(3).normal(size=(40, 5)).astype(np.float32) * 2
    expected = net.forward(X)
    with torch.no_grad():
        from_torch_side = seq(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(from_torch_side, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back.forward(X), expected, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_in_hidden_layers_round_trips(dtype):
    net = hg.MLP(4, [(6, "softmax"), (5, "relu"), (3, "softmax"), (2, "identity")], seed=4, dtype=dtype)
    rng = np.random.default_rng(5)
    for layer in net.layers:
        layer.b[...] = rng.normal(size=layer.b.shape)
    seq = to_torch(net)
    kinds = [type(module).__name__ for module in seq]
    assert kinds == ["Linear", "Softmax", "Linear", "ReLU", "Linear", "Softmax", "Linear"]
    assert seq[1].dim == 1 and seq[5].dim == 1
    back = from_torch(seq)
    assert [layer.activation.name for layer in back.layers] == ["softmax", "relu", "softmax", "identity"]
    assert back.loss_fn.name == net.loss_fn.name
    for (name, a), (_, b) in zip(net.parameters(), back.parameters()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    X = rng.normal(size=(20, 4)).astype(dtype)
    np.testing.assert_array_equal(back.forward(X), net.forward(X))
    with torch.no_grad():
        torch_side = seq(torch.from_numpy(X)).numpy()
    tolerance = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(torch_side, net.forward(X), rtol=tolerance, atol=tolerance)


def test_linear_weight_is_the_transpose():
    net = hg.MLP(3, [(2, "relu")], seed=0)
    linear = to_torch(net)[0]
    assert tuple(linear.weight.shape) == (2, 3)
    np.testing.assert_array_equal(linear.weight.detach().numpy(), net.layers[0].W.T)
    assert linear.weight.dtype == torch.float64


def test_from_a_model_built_in_pytorch():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Identity(),
                        nn.Linear(8, 3), nn.Softmax(dim=-1))
    net = from_torch(seq)
    assert net.loss_fn.name == "cross_entropy" and [layer.activation.name for layer in net.layers] == ["tanh",
                                                                                                     "softmax"]
    X = torch.randn(10, 4)
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(X.numpy()), seq(X).numpy(), atol=1e-6)


def test_float64_models_stay_float64():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ELU(alpha=0.5), nn.Linear(3, 1)).double()
    net = from_torch(seq, loss="mse")
    assert net.dtype == np.float64 and net.loss_fn.name == "mse"
    X = torch.randn(6, 2, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(X.numpy()), seq(X).numpy(), rtol=1e-12)


@pytest.mark.parametrize("module, words", [
    (nn.AlphaDropout(0.5), "AlphaDropout"),  # (nn.Dropout is supported: test_torch_dropout)
    (nn.GELU(), "approximate='tanh'"),
    (nn.Softplus(beta=2.0), "beta"),
    (nn.Softmax(dim=0), "dim=1"),
    (nn.BatchNorm1d(4, affine=False), "BatchNorm1d"),  # (with gamma and beta it is supported: test_normalization)
])
def test_unsupported_modules_are_named(module, words):
    seq = nn.Sequential(nn.Linear(3, 4), module, nn.Linear(4, 2))
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        from_torch(seq)


def test_structural_errors():
    with pytest.raises(ConfigError, match="before any Linear"):
        from_torch(nn.Sequential(nn.ReLU(), nn.Linear(2, 2)))
    with pytest.raises(ConfigError, match="second activation"):
        from_torch(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Tanh()))
    with pytest.raises(ConfigError, match="bias"):
        from_torch(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1, bias=False)))
    with pytest.raises(ConfigError, match="Sequential"):
        from_torch(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="MLP"):
        to_torch(nn.Linear(2, 2))
