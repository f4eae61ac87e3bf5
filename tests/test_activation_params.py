"""Activation parameters written in the name, "leaky_relu(0.1)" or "elu(alpha=0.5)": wherever a name is
accepted (get_activation, layer tuples and strings, dicts, model files), with a ConfigError for a bad one."""

import numpy as np
import pytest

import handgrad as hg
from handgrad.activations import ELU, LeakyReLU, get_activation
from handgrad.errors import ConfigError


@pytest.mark.parametrize("text, expected", [
    ("leaky_relu(0.1)", LeakyReLU(0.1)),
    ("leaky_relu(slope=0.25)", LeakyReLU(0.25)),
    (" Leaky-ReLU( slope = 0.5 ) ", LeakyReLU(0.5)),
    ("leakyrelu(1e-2)", LeakyReLU(0.01)),
    ("elu(0.7)", ELU(0.7)),
    ("elu(alpha=2)", ELU(2.0)),
    ("relu()", get_activation("relu")),
    ("leaky_relu()", LeakyReLU()),
])
def test_parameters_in_the_name(text, expected):
    got = get_activation(text)
    assert got == expected and type(got) is type(expected)


def test_the_parameter_changes_the_function():
    Z = np.array([[-2.0, -0.5, 0.0, 3.0]])
    np.testing.assert_array_equal(get_activation("leaky_relu(0.2)").forward(Z), [[-0.4, -0.1, 0.0, 3.0]])
    np.testing.assert_allclose(get_activation("elu(alpha=0.5)").forward(Z)[0, :2], 0.5 * np.expm1([-2.0, -0.5]))


def test_everywhere_a_name_is_accepted_and_model_files_keep_the_parameters(tmp_path):
    for layers in ("4:leaky_relu(0.3),3:elu(alpha=0.5),1:sigmoid",
                   [(4, "leaky_relu(0.3)"), (3, "elu(alpha=0.5)"), (1, "sigmoid")],
                   [{"size": 4, "activation": "leaky_relu(slope=0.3)"}, (3, {"name": "elu", "alpha": 0.5}),
                    "1:sigmoid"]):
        net = hg.MLP(2, layers, seed=0)
        assert net.layers[0].activation == LeakyReLU(0.3) and net.layers[1].activation == ELU(0.5)
    net.save(tmp_path / "m.npz")
    loaded = hg.load(tmp_path / "m.npz")
    assert loaded.layers[0].activation.slope == 0.3 and loaded.layers[1].activation.alpha == 0.5
    X = np.random.default_rng(0).normal(size=(6, 2))
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))


def test_a_comma_inside_the_parentheses_does_not_split_the_layer_string():
    with pytest.raises(ConfigError, match="takes 1 parameter"):  # one layer spec, read whole
        hg.MLP(2, "4:leaky_relu(0.1, 0.2),1:sigmoid")


@pytest.mark.parametrize("text, message", [
    ("leaky_relu(slop=0.1)", "no parameter 'slop'. Did you mean 'slope'"),
    ("leaky_relu(0.1, 0.2)", "takes 1 parameter(s) (slope), got 2"),
    ("leaky_relu(abc)", "slope must be a finite number, got 'abc'"),
    ("leaky_relu(nan)", "finite number"),
    ("elu(alpha=inf)", "finite number"),
    ("leaky_relu(slope=0.1, slope=0.2)", "given twice"),
    ("leaky_relu(2)", "slope must be in [0, 1]"),
    ("elu(-1)", "alpha must be positive"),
    ("relu(1)", "relu takes 0 parameter(s)"),
    ("leaky_relu(0.1", "Parameters go in parentheses"),
    ("leaky_relux(0.1)", "Did you mean 'leaky_relu'"),
    ("tanh(x=1)", "no parameter 'x'"),
])
def test_bad_parameters_raise_config_error(text, message):
    with pytest.raises(ConfigError) as error:
        get_activation(text)
    assert message in str(error.value)


def test_bad_parameters_in_a_dict_raise_config_error():
    with pytest.raises(ConfigError, match="no parameter 'slop'"):
        get_activation({"name": "leaky_relu", "slop": 0.1})
    with pytest.raises(ConfigError, match="bad parameters for activation 'leaky_relu'"):
        get_activation({"name": "leaky_relu", "slope": "steep"})
    with pytest.raises(ConfigError, match="both in the name and as a key"):
        get_activation({"name": "leaky_relu(0.1)", "slope": 0.2})


def test_summary_and_repr_show_the_parameters_and_the_repr_rebuilds_the_network():
    """An activation's spec() names its parameters ('leaky_relu(slope=0.1)'), which get_activation reads back;
    repr(net) shows them and the dropout rates, and evaluating it builds the same network."""
    net = hg.MLP(2, ["8:leaky_relu(0.1)", "4:elu(alpha=0.5):batchnorm", (1, "sigmoid")], dropout=[0.2, 0.0])
    assert net.layers[0].activation.spec() == "leaky_relu(slope=0.1)"
    assert get_activation(net.layers[1].activation.spec()).alpha == 0.5
    assert net.layers[2].activation.spec() == "sigmoid"
    summary = net.summary()
    assert "leaky_relu(slope=0.1)" in summary and "elu(alpha=0.5)" in summary
    text = repr(net)
    assert "'leaky_relu(slope=0.1)'" in text and "dropout=[0.2, 0.0]" in text
    again = eval(text, {"MLP": hg.MLP})
    assert again.config() == net.config()


@pytest.mark.parametrize("layers, options", [
    ([{"size": 2, "activation": "relu", "bias": False}, (1, "sigmoid")], {}),
    ([{"size": 3, "activation": "tanh", "bias": True}, "3:relu:layernorm", (1, "sigmoid")], {"bias": False}),
])
def test_repr_keeps_a_layer_whose_bias_differs_from_the_network(layers, options):
    net = hg.MLP(2, layers, **options)
    again = eval(repr(net), {"MLP": hg.MLP})
    assert again.config() == net.config()
    assert [layer.has_bias for layer in again.layers] == [layer.has_bias for layer in net.layers]
