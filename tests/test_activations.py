"""Each activation: forward against its formula, derivative against central differences
element by element, backward against dA * f'(Z) (softmax: against its explicit Jacobian),
in-place forms, dtype preservation, names and configs."""

import math
import warnings

import numpy as np
import pytest

import handgrad as hg
from handgrad.activations import ELU, LeakyReLU, Softmax, get_activation
from handgrad.layers import Dense

ELEMENTWISE = ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "elu", "gelu", "silu",
               LeakyReLU(slope=0.25), ELU(alpha=0.6)]
ALL = ELEMENTWISE + ["softmax"]


def _id(spec):
    return repr(spec) if not isinstance(spec, str) else spec


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# Written straight from the definitions, for moderate z (|z| < 10).
FORMULAS = {
    "identity": lambda z, act: z,
    "relu": lambda z, act: np.where(z > 0, z, 0.0),
    "leaky_relu": lambda z, act: np.where(z > 0, z, act.slope * z),
    "sigmoid": lambda z, act: _sigmoid(z),
    "tanh": lambda z, act: np.tanh(z),
    "softplus": lambda z, act: np.log1p(np.exp(z)),
    "elu": lambda z, act: np.where(z > 0, z, act.alpha * (np.exp(z) - 1)),
    "gelu": lambda z, act: 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3))),
    "silu": lambda z, act: z * _sigmoid(z),
}


def _pre_activations(seed=0, shape=(7, 5)):
    """Continuous values in +-4, kept at least 1e-3 away from 0 (the ReLU-family kink)."""
    Z = np.random.default_rng(seed).uniform(-4, 4, size=shape)
    Z[np.abs(Z) < 1e-3] = 0.5
    return Z


@pytest.mark.parametrize("spec", ELEMENTWISE, ids=_id)
def test_forward_matches_the_formula(spec):
    act = get_activation(spec)
    Z = _pre_activations(1)
    np.testing.assert_allclose(act.forward(Z), FORMULAS[act.name](Z, act), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("spec", ELEMENTWISE, ids=_id)
def test_derivative_matches_central_differences_elementwise(spec):
    act = get_activation(spec)
    Z = _pre_activations(2)
    h = 1e-6
    numeric = (act.forward(Z + h) - act.forward(Z - h)) / (2 * h)
    analytic = act.derivative(Z, act.forward(Z))
    worst = np.unravel_index(np.argmax(np.abs(analytic - numeric)), Z.shape)
    assert np.allclose(analytic, numeric, rtol=1e-7, atol=1e-9), (
        f"{act!r}: f'(z) at z={Z[worst]!r} (entry {worst}) is {analytic[worst]!r}, "
        f"central difference {numeric[worst]!r}"
    )


@pytest.mark.parametrize("spec", ELEMENTWISE, ids=_id)
def test_backward_is_dA_times_derivative_also_in_place(spec):
    act = get_activation(spec)
    Z = _pre_activations(3)
    A = act.forward(Z)
    dA = np.random.default_rng(4).normal(size=Z.shape)
    expected = dA * act.derivative(Z, A)
    np.testing.assert_allclose(act.backward(dA, Z, A), expected, rtol=1e-15, atol=0)
    in_place = dA.copy()
    result = act.backward(in_place, Z, A, out=in_place)
    assert result is in_place
    np.testing.assert_allclose(in_place, expected, rtol=1e-15, atol=0)


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_forward_in_place_equals_forward_into_a_new_array(spec):
    act = get_activation(spec)
    Z = _pre_activations(5)
    fresh = act.forward(Z)
    assert fresh is not Z
    np.testing.assert_array_equal(Z, _pre_activations(5))  # out=None leaves Z alone
    buffer = Z.copy()
    result = act.forward(buffer, out=buffer)
    assert result is buffer
    np.testing.assert_array_equal(buffer, fresh)
    other = np.empty_like(Z)
    assert act.forward(Z, out=other) is other
    np.testing.assert_array_equal(other, fresh)


@pytest.mark.parametrize("spec", [spec for spec in ALL if get_activation(spec).derivative_in_forward], ids=_id)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_that_keeps_the_derivative_gives_the_same_output_and_f_prime(spec, dtype):
    # relu and leaky_relu write D = f'(Z) in forward and compute A = Z * D; both must equal
    # the plain forward and the derivative exactly, also at z = 0 (the left derivative) and in place.
    act = get_activation(spec)
    Z = _pre_activations(7).astype(dtype)
    Z[0, :3] = 0.0
    D = np.full_like(Z, np.nan)
    A = act.forward(Z, derivative=D)
    np.testing.assert_array_equal(A, act.forward(Z))
    np.testing.assert_array_equal(D, act.derivative(Z, A))
    assert A.dtype == D.dtype == dtype
    buffer = Z.copy()
    assert act.forward(buffer, out=buffer, derivative=D) is buffer
    np.testing.assert_array_equal(buffer, A)


@pytest.mark.parametrize("shape", [(3,), (1, 256), (7, 5), (300, 200)], ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relu_against_its_shared_zeros_is_max_z_0_at_every_shape(shape, dtype):
    # ReLU compares Z against a cached read-only array of zeros (Z's shape, or one broadcast row for
    # large Z): the result must be max(z, 0) with NaN kept, in place or not, and the zeros untouched.
    relu = get_activation("relu")
    Z = np.random.default_rng(8).normal(size=shape).astype(dtype)
    Z.flat[0], Z.flat[-1] = np.nan, -np.inf
    expected = np.where(np.isnan(Z), np.nan, np.where(Z > 0, Z, 0.0)).astype(dtype)
    for _ in range(2):  # the second call reuses the cached zeros
        np.testing.assert_array_equal(relu.forward(Z), expected)
        buffer = Z.copy()
        assert relu.forward(buffer, out=buffer) is buffer
        np.testing.assert_array_equal(buffer, expected)
    from handgrad.activations import _zeros_for

    zeros = _zeros_for(Z)
    assert not zeros.any() and not zeros.flags.writeable and zeros.dtype == dtype


def test_only_piecewise_constant_derivatives_are_kept_from_forward():
    kept = {get_activation(spec).name for spec in ALL if get_activation(spec).derivative_in_forward}
    assert kept == {"relu", "leaky_relu"}


def test_only_softmax_writes_the_row_log_sum_exp_and_an_output_layer_keeps_it():
    writes = {get_activation(spec).name for spec in ALL if get_activation(spec).row_log_sum_exp}
    assert writes == {"softmax"}
    X = np.random.default_rng(9).normal(size=(5, 3))
    for spec, kept in (("softmax", True), ("sigmoid", False)):
        layer = Dense(3, 4, spec, keep_z=True)
        layer.W[...] = np.random.default_rng(10).normal(size=(3, 4))
        layer.forward(X)
        if kept:
            Z = X @ layer.W + layer.b
            np.testing.assert_allclose(layer.lse[:, 0], np.log(np.exp(Z).sum(axis=1)), rtol=1e-13)
        else:
            assert layer.lse is None


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_float32_stays_float32(spec):
    act = get_activation(spec)
    Z = _pre_activations(6).astype(np.float32)
    A = act.forward(Z)
    dA = np.ones_like(Z)
    assert A.dtype == np.float32
    assert act.backward(dA, Z, A).dtype == np.float32
    if act.elementwise:
        assert act.derivative(Z, A).dtype == np.float32


def test_softmax_rows_are_probabilities_and_shift_invariant():
    Z = _pre_activations(7)
    A = Softmax().forward(Z)
    np.testing.assert_allclose(A.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    assert (A > 0).all()
    np.testing.assert_allclose(Softmax().forward(Z + 123.0), A, rtol=1e-13)
    expected = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(A, expected, rtol=1e-13)


def test_softmax_jacobian_matches_central_differences():
    softmax = Softmax()
    Z = _pre_activations(8, shape=(3, 4))
    jacobian = softmax.jacobian(softmax.forward(Z))
    assert jacobian.shape == (3, 4, 4)
    h = 1e-6
    for j in range(4):
        step = np.zeros_like(Z)
        step[:, j] = h
        column = (softmax.forward(Z + step) - softmax.forward(Z - step)) / (2 * h)  # da_k / dz_j
        np.testing.assert_allclose(jacobian[:, :, j], column, rtol=1e-7, atol=1e-10, err_msg=f"column j={j}")


def test_softmax_backward_is_the_jacobian_transpose_times_dA():
    softmax = Softmax()
    Z = _pre_activations(9, shape=(6, 5))
    A = softmax.forward(Z)
    dA = np.random.default_rng(10).normal(size=Z.shape)
    expected = np.einsum("nkj,nk->nj", softmax.jacobian(A), dA)  # dz_j = sum_k dA_k da_k/dz_j
    np.testing.assert_allclose(softmax.backward(dA, Z, A), expected, rtol=1e-12, atol=1e-15)
    in_place = dA.copy()
    softmax.backward(in_place, Z, A, out=in_place)
    np.testing.assert_allclose(in_place, expected, rtol=1e-12, atol=1e-15)


def test_softmax_has_no_elementwise_derivative():
    with pytest.raises(hg.ConfigError, match="Jacobian"):
        Softmax().derivative(np.zeros((1, 2)), np.full((1, 2), 0.5))


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_extreme_inputs_give_finite_outputs_and_derivatives_without_warnings(spec):
    act = get_activation(spec)
    Z = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]])
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        A = act.forward(Z)
        dZ = act.backward(np.ones_like(Z), Z, A)
    assert np.isfinite(A).all() and np.isfinite(dZ).all(), (A, dZ)


def test_sigmoid_saturates_to_exact_limits():
    A = get_activation("sigmoid").forward(np.array([-1000.0, 1000.0]))
    assert A[0] == 0.0 and A[1] == 1.0


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_config_rebuilds_an_equal_activation(spec):
    act = get_activation(spec)
    rebuilt = get_activation(act.config())
    assert rebuilt == act and type(rebuilt) is type(act)


def test_parameters_are_kept_and_validated():
    assert get_activation({"name": "leaky_relu", "slope": 0.3}).slope == 0.3
    assert get_activation({"name": "elu", "alpha": 2.0}).alpha == 2.0
    assert LeakyReLU(0.3) != LeakyReLU(0.01)
    with pytest.raises(hg.ConfigError, match="slope"):
        LeakyReLU(slope=-0.5)
    with pytest.raises(hg.ConfigError, match="alpha"):
        ELU(alpha=0)
    with pytest.raises(hg.ConfigError, match="leaky_relu"):
        get_activation({"name": "leaky_relu", "slop": 0.3})


def test_aliases():
    assert get_activation("linear").name == "identity"
    assert get_activation("logistic").name == "sigmoid"
    assert get_activation("Leaky-ReLU").name == "leaky_relu"


@pytest.mark.parametrize("typo, meant", [("rleu", "relu"), ("sigmod", "sigmoid"), ("softmx", "softmax")])
def test_unknown_activation_suggests_the_closest_name(typo, meant):
    with pytest.raises(hg.ConfigError, match=f"Did you mean '{meant}'"):
        get_activation(typo)
    with pytest.raises(hg.ConfigError, match=f"unknown activation '{typo}'.*Did you mean '{meant}'"):
        hg.MLP(2, [(3, typo), (1, "identity")])


def test_activation_of_the_wrong_type_is_refused():
    with pytest.raises(hg.ConfigError, match="activation must be a name"):
        get_activation(3.5)
