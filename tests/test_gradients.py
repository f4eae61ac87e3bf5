"""loss_and_grad against central differences on many generated architectures, and hg.gradcheck itself.

The oracle (conftest.numeric_gradients) perturbs every parameter entry by +-1e-6 in
float64 and differences the public objective ``net.loss``; the tolerance is 1e-6
relative to each array's largest entry. Data are continuous normals, so no ReLU
pre-activation sits within 1e-6 of its kink.
"""

import numpy as np
import pytest
from conftest import (
    CROSS_ENTROPIES,
    HIDDEN_ACTIVATIONS,
    INVALID_PAIRS,
    LOSSES,
    N_CASES,
    OUTPUT_ACTIVATIONS,
    VALID_PAIRS,
    assert_gradients_close,
    make_case,
    numeric_gradients,
    objective_of,
)

import handgrad as hg

CASES = [make_case(i) for i in range(N_CASES)]


def test_generated_architectures_cover_the_grid():
    """The loop below really covers what it claims: depths 1-5, every activation in hidden and output
    position, every loss, widths up to 20, and each option both on and off."""
    assert {case["depth"] for case in CASES} == {1, 2, 3, 4, 5}
    hidden_names = {getattr(act, "name", act) for case in CASES for act in case["hidden"]}
    assert hidden_names == set(HIDDEN_ACTIVATIONS)
    assert {case["output"] for case in CASES} == set(OUTPUT_ACTIVATIONS)
    assert {case["loss"] for case in CASES} == set(LOSSES)
    assert {(case["output"], case["loss"]) for case in CASES} == set(VALID_PAIRS)
    widths = [layer.n_out for case in CASES for layer in case["net"].layers]
    assert min(widths) == 1 and max(widths) == 20
    for option in ("bias", "l2", "l1", "dropout"):
        assert {bool(case["options"][option]) for case in CASES} == {True, False}, option
    assert {case["sample_weight"] is None for case in CASES} == {True, False}
    assert any(case["dropout_seed"] is not None and case["depth"] >= 3 for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_loss_and_grad_matches_central_differences(case):
    net = case["net"]
    J, grads = net.loss_and_grad(case["X"], case["T"], sample_weight=case["sample_weight"],
                                 dropout_seed=case["dropout_seed"])
    objective = objective_of(case)
    assert J == pytest.approx(objective(), rel=1e-12, abs=1e-14)
    numeric = numeric_gradients(net, objective)
    # floor 1e-3: an array whose entries are all below 1e-3 is held to 1e-9 in absolute terms. Central differences
    # carry ~1e-10 of rounding (J ~ 1, eps ~ 1e-16, h = 1e-6), which a softmax between saturated layers makes
    # comparable to gradients of ~1e-5; a wrong gradient is still off by its own size, far above 1e-9.
    assert_gradients_close(grads, numeric, 1e-6, context=case["name"], expected_name="central difference",
                           floor=1e-3)


@pytest.mark.parametrize("output, loss", INVALID_PAIRS)
def test_cross_entropy_after_an_output_outside_0_1_is_refused(output, loss):
    with pytest.raises(hg.ConfigError, match=loss) as raised:
        hg.MLP(3, [(4, "tanh"), (2, output)], loss=loss)
    assert output in str(raised.value)


@pytest.mark.parametrize("output, loss", [(o, l) for o, l in VALID_PAIRS if l in CROSS_ENTROPIES])
def test_cross_entropy_after_a_probability_output_is_accepted(output, loss):
    net = hg.MLP(3, [(4, "tanh"), (2, output)], loss=loss)
    assert net.loss_fn.name == loss


def test_softmax_in_hidden_layers_backpropagates_through_its_jacobian():
    """Softmax in every position of a deep net, with a non-closed-form loss at the output too: the engine
    (dZ = A * (dA - rowsum(dA * A)) in the hidden layers) against central differences."""
    rng = np.random.default_rng(5)
    X, T = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    for loss, output in (("mse", "identity"), ("half_squared_error", "softmax"), ("cross_entropy", "softmax")):
        net = hg.MLP(3, [(5, "softmax"), (4, "tanh"), (6, "softmax"), (2, output)], loss=loss, seed=3, l2=0.1)
        targets = rng.integers(0, 2, 7) if loss == "cross_entropy" else T
        for layer in net.layers:
            layer.b[...] = rng.normal(size=layer.b.shape)
        J, grads = net.loss_and_grad(X, targets)
        numeric = numeric_gradients(net, lambda net=net, targets=targets: net.loss(X, targets))
        largest = assert_gradients_close(grads, numeric, 1e-6, context=f"hidden softmax, {loss}")
        assert largest < 1e-6 and np.abs(grads[0][0]).max() > 1e-3  # a real, non-vanishing gradient


# ---------------------------------------------------------------------- the options, by independent identities
def _case_data(seed, n_in=4, N=6, K=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, n_in)), rng.normal(size=(N, K))


def test_l2_adds_exactly_l2_w_to_each_weight_gradient_and_nothing_to_biases():
    X, T = _case_data(0)
    plain = hg.MLP(4, [(5, "tanh"), (3, "identity")], loss="mse", seed=1)
    regularized = hg.MLP(4, [(5, "tanh"), (3, "identity")], loss="mse", seed=1, l2=0.7)
    J0, g0 = plain.loss_and_grad(X, T)
    J1, g1 = regularized.loss_and_grad(X, T)
    penalty = 0.35 * sum(float((layer.W ** 2).sum()) for layer in plain.layers)
    assert J1 - J0 == pytest.approx(penalty, rel=1e-12)
    for layer, (dW0, db0), (dW1, db1) in zip(plain.layers, g0, g1):
        np.testing.assert_allclose(dW1 - dW0, 0.7 * layer.W, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(db1, db0)


def test_l1_adds_l1_sign_w_to_each_weight_gradient():
    X, T = _case_data(1)
    plain = hg.MLP(4, [(5, "relu"), (3, "identity")], loss="half_squared_error", seed=2)
    regularized = hg.MLP(4, [(5, "relu"), (3, "identity")], loss="half_squared_error", seed=2, l1=0.2)
    J0, g0 = plain.loss_and_grad(X, T)
    J1, g1 = regularized.loss_and_grad(X, T)
    assert J1 - J0 == pytest.approx(0.2 * sum(float(np.abs(layer.W).sum()) for layer in plain.layers), rel=1e-12)
    for layer, (dW0, _), (dW1, _) in zip(plain.layers, g0, g1):
        np.testing.assert_allclose(dW1 - dW0, 0.2 * np.sign(layer.W), rtol=1e-12, atol=1e-15)


def test_integer_sample_weight_equals_repeating_the_sample():
    """J = (1/N) sum w_i l_i: weight 2 on row 0 of N rows equals row 0 twice in N+1 rows, times (N+1)/N."""
    X, T = _case_data(2)
    N = X.shape[0]
    net = hg.MLP(4, [(6, "sigmoid"), (3, "softmax")], loss="cross_entropy", seed=3)
    labels = T.argmax(axis=1)
    weights = np.ones(N)
    weights[0] = 2.0
    J_weighted, g_weighted = net.loss_and_grad(X, labels, sample_weight=weights)
    J_repeated, g_repeated = net.loss_and_grad(np.vstack([X, X[:1]]), np.append(labels, labels[0]))
    scale = (N + 1) / N
    assert J_weighted == pytest.approx(scale * J_repeated, rel=1e-12)
    scaled = [(scale * dW, scale * db) for dW, db in g_repeated]
    assert_gradients_close(g_weighted, scaled, 1e-12, context="weight 2 vs repeated row", expected_name="repeated")


def test_dropout_seed_fixes_the_masks_and_no_seed_means_no_dropout():
    X, T = _case_data(3)
    net = hg.MLP(4, [(16, "relu"), (16, "relu"), (3, "identity")], loss="mse", dropout=0.5, seed=4)
    J_a, g_a = net.loss_and_grad(X, T, dropout_seed=7)
    J_b, g_b = net.loss_and_grad(X, T, dropout_seed=7)
    J_c, _ = net.loss_and_grad(X, T, dropout_seed=8)
    J_off, _ = net.loss_and_grad(X, T)
    assert J_a == J_b and all(np.array_equal(x, y) for p, q in zip(g_a, g_b) for x, y in zip(p, q))
    assert J_c != J_a
    assert J_off == pytest.approx(net.loss(X, T), rel=1e-14)
    assert J_off != J_a


# ---------------------------------------------------------------------- hg.gradcheck itself
def test_gradcheck_agrees_with_the_independent_oracle():
    case = CASES[13]
    result = hg.gradcheck(case["net"], case["X"], case["T"], sample_weight=case["sample_weight"],
                          dropout_seed=case["dropout_seed"])
    expected_names = [name for name, _ in case["net"].parameters()]
    assert list(result) == expected_names
    assert result.passed(1e-6), str(result)
    assert result.max_error == max(result.values())


class _WrongTanh(hg.activations.Tanh):
    """A planted bug: f'(z) written as 1 - a instead of 1 - a^2."""

    def derivative(self, Z, A):
        return 1 - A

    def backward(self, dA, Z, A, out=None):
        return np.multiply(dA, self.derivative(Z, A), out=out)


def test_gradcheck_catches_a_wrong_derivative_and_says_where():
    rng = np.random.default_rng(5)
    X, T = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    net = hg.MLP(3, [(4, "tanh"), (4, _WrongTanh()), (2, "identity")], loss="half_squared_error", seed=6)
    result = hg.gradcheck(net, X, T)
    assert not result.passed(1e-6)
    assert result["W3"] < 1e-6 and result["b3"] < 1e-6  # above the bug: still right
    assert result["W2"] > 1e-3 and result["W1"] > 1e-3  # at and below it: wrong
    worst = result.details["W2"]
    assert worst["layer"] == 2 and worst["parameter"] == "W"
    assert worst["analytic"] != pytest.approx(worst["numeric"], rel=1e-3)
    assert "W2" in str(result)


def test_comparison_helper_message_locates_the_bug():
    good = [(np.ones((2, 3)), np.zeros(3)), (np.ones((3, 1)), None)]
    bad = [(np.ones((2, 3)), np.zeros(3)), (np.array([[1.0], [1.5], [1.0]]), None)]
    with pytest.raises(AssertionError) as raised:
        assert_gradients_close(bad, good, 1e-6, context="planted")
    message = str(raised.value)
    assert "layer 2 parameter W2" in message and "(1, 0)" in message
    assert "1.5" in message and "1.0" in message and "W1" not in message
