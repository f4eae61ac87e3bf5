"""Layers built directly (not through MLP's spec) check their sizes: handgrad's ConfigError naming the argument
and what to pass, never a raw NumPy ValueError/TypeError or a layer of zero units."""

import numpy as np
import pytest

from handgrad.errors import ConfigError
from handgrad.layers import BatchNorm, Dense, Dropout, LayerNorm

BAD_SIZES = [0, -1, -3, 2.5, "4", "abc", None, True, float("nan"), float("inf"), [4]]


@pytest.mark.parametrize("size", BAD_SIZES)
@pytest.mark.parametrize("argument", ["n_in", "n_out"])
def test_dense_refuses_a_size_that_is_not_a_positive_integer(argument, size):
    args = {"n_in": 3, "n_out": 4, argument: size}
    with pytest.raises(ConfigError, match=rf"Dense: {argument} must be a positive integer") as info:
        Dense(args["n_in"], args["n_out"], "relu")
    assert "Dense(3, 4, 'relu')" in str(info.value)  # the fix, with an example


@pytest.mark.parametrize("size", BAD_SIZES)
@pytest.mark.parametrize("layer", [BatchNorm, LayerNorm])
def test_norms_refuse_a_width_that_is_not_a_positive_integer(layer, size):
    with pytest.raises(ConfigError, match=rf"{layer.__name__}: n_features must be a positive integer") as info:
        layer(size)
    assert f"{layer.__name__}(4) after Dense(3, 4)" in str(info.value)


def test_layer_norm_of_one_unit_keeps_its_own_message():
    with pytest.raises(ConfigError, match="at least 2 units"):
        LayerNorm(1)


@pytest.mark.parametrize("n_in, n_out", [(1, 1), (3, 4), (np.int64(3), np.int32(2)), (3.0, 2.0)])
def test_valid_sizes_still_build_a_working_layer(n_in, n_out):
    layer = Dense(n_in, n_out, "tanh")
    assert layer.W.shape == (int(n_in), int(n_out)) and isinstance(layer.n_in, int)
    A = layer.forward(np.ones((2, int(n_in))))
    assert A.shape == (2, int(n_out))
    assert BatchNorm(np.int64(4)).gamma.shape == (4,) and LayerNorm(2.0).beta.shape == (2,)


@pytest.mark.parametrize("rng", [0, "seed", np.random.RandomState(0)])
def test_dropout_refuses_an_rng_that_is_not_a_generator(rng):
    with pytest.raises(ConfigError, match="Dropout: rng must be a NumPy Generator"):
        Dropout(0.5, rng)


def test_dropout_without_an_rng_draws_masks_in_training():
    """It used to fail with AttributeError on None at the first training pass."""
    drop = Dropout(0.5)
    Y = drop.forward(np.ones((50, 40)), training=True)
    assert set(np.unique(Y)) == {0.0, 2.0}
    np.testing.assert_array_equal(drop.forward(np.ones((2, 3))), np.ones((2, 3)))  # not in training: identity


@pytest.mark.parametrize("rate", [-0.1, 1.0, "half", None])
def test_dropout_rate_is_still_checked(rate):
    with pytest.raises(ConfigError, match="dropout rate must be a fraction"):
        Dropout(rate, np.random.default_rng(0))
