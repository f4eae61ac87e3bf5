"""check_gradients catches the usual mistakes; check_activation/check_loss check user code; the CLI commands."""

import argparse
import textwrap

import numpy as np
import pytest
from conftest import LogCosh, Softsign

import handgrad as hg
from handgrad.activations import Identity, Tanh
from handgrad.student import DerivativeAtActivation, check_activation, check_gradients, check_loss

STUDENT_CODE = textwrap.dedent('''
    import numpy as np

    MISTAKE = {mistake!r}

    def f(name, Z):
        return {{"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
                "tanh": np.tanh, "identity": lambda z: z}}[name](Z)

    def f_prime(name, Z):
        if name == "relu":
            return (Z > 0) * 1.0
        if name == "sigmoid":
            s = 1 / (1 + np.exp(-Z))
            return s * (1 - s)
        if name == "tanh":
            return 1 - np.tanh(Z) ** 2
        return np.ones_like(Z)

    def backprop(weights, biases, activations, X, T, loss):
        assert loss == "half_squared_error"
        N = X.shape[0]
        H, Z = [X], []
        for W, b, name in zip(weights, biases, activations):
            Z.append(H[-1] @ W + (0 if b is None else b))
            H.append(f(name, Z[-1]))
        dA = (H[-1] - T) if MISTAKE == "missing 1/N" else (H[-1] - T) / N
        if MISTAKE == "sign":
            dA = -dA
        grads = []
        for k in reversed(range(len(weights))):
            at = H[k + 1] if MISTAKE == "derivative at activation" else Z[k]
            dZ = dA * f_prime(activations[k], at)
            dW = dZ.T @ H[k] if MISTAKE == "missing transpose" else H[k].T @ dZ
            db = None if biases[k] is None else (dZ if MISTAKE == "bias sum" else dZ.sum(axis=0))
            grads.append((dW, db))
            dA = dZ @ weights[k].T
        return grads[::-1]
''')


def _student(tmp_path, mistake=None):
    path = tmp_path / f"student_{str(mistake).replace(' ', '_').replace('/', '')}.py"
    path.write_text(STUDENT_CODE.format(mistake=mistake))
    from handgrad.cli_teach import load_student_function

    return str(path), load_student_function(str(path))


def _problem():
    net = hg.MLP(3, [(4, "tanh"), (2, "sigmoid")], loss="half_squared_error", seed=0)
    rng = np.random.default_rng(0)
    return net, rng.normal(size=(5, 3)), rng.uniform(size=(5, 2))


def test_right_implementation_passes(tmp_path):
    _, backprop = _student(tmp_path)
    report = check_gradients(backprop, *_problem())
    assert report.ok, str(report)
    assert "PASS" in str(report) and "WRONG" not in str(report)


@pytest.mark.parametrize("mistake,hint,params", [
    ("missing transpose", "missing transpose", ["W1", "W2"]),
    ("missing 1/N", "missing 1/N", ["W1", "b1", "W2", "b2"]),
    ("derivative at activation", "derivative taken at the activation", ["W1", "b1", "W2", "b2"]),
    ("bias sum", "forgotten bias sum", ["b1", "b2"]),
    ("sign", "sign error", ["W1", "b1", "W2", "b2"]),
])
def test_each_planted_mistake_is_caught_and_named(tmp_path, mistake, hint, params):
    _, backprop = _student(tmp_path, mistake)
    report = check_gradients(backprop, *_problem())
    assert not report.ok
    for result in report.results:
        if result.name in params:
            assert not result.ok and hint in result.hint, (result.name, result.hint)
        else:
            assert result.ok
    assert "FAIL" in str(report)


def _backprop_with_f_prime_at_A(at_A):
    """A right backprop for tanh/sigmoid/identity layers, except that the layers in ``at_A`` (numbered from 1) take
    f' at the activation A. With binary cross-entropy after a sigmoid it uses the closed form (A - T)/N."""
    f = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "identity": lambda z: z}
    f_prime = {"tanh": lambda z: 1 - np.tanh(z) ** 2, "sigmoid": lambda z: f["sigmoid"](z) * (1 - f["sigmoid"](z)),
               "identity": np.ones_like}

    def backprop(weights, biases, activations, X, T, loss):
        N, L = X.shape[0], len(weights)
        H, Z = [X], []
        for W, b, name in zip(weights, biases, activations, strict=True):
            Z.append(H[-1] @ W + b)
            H.append(f[name](Z[-1]))
        grads = []
        dA = (H[-1] - T) / N
        for k in reversed(range(L)):
            if k == L - 1 and loss == "binary_cross_entropy":
                dZ = (H[-1] - T) / N  # the closed form: no f' to take anywhere
            else:
                dZ = dA * f_prime[activations[k]](H[k + 1] if k + 1 in at_A else Z[k])
            grads.append((H[k].T @ dZ, dZ.sum(axis=0)))
            dA = dZ @ weights[k].T
        return grads[::-1]

    return backprop


def _three_layers(loss):
    net = hg.MLP(3, [(4, "tanh"), (3, "sigmoid"), (2, "sigmoid")], loss=loss, seed=0)
    rng = np.random.default_rng(0)
    for layer in net.layers:
        layer.b[...] = rng.normal(scale=0.5, size=layer.b.shape)
    return net, rng.normal(size=(5, 3)), rng.integers(0, 2, (5, 2)).astype(float)


# f'(A) planted in some layers -> the hint's location for each layer whose gradient is wrong. Layer k's gradient
# sees the mistakes at and above k only; the layers above the highest mistake stay right.
F_PRIME_AT_A_CASES = [
    ((1, 2), {1: "layers 1 and 2", 2: "layer 2"}),  # every hidden layer
    ((1,), {1: "layer 1"}),
    ((2,), {1: "layer 2", 2: "layer 2"}),
    ((3,), {1: "layer 3", 2: "layer 3", 3: "layer 3"}),
    ((1, 2, 3), {1: "layers 1, 2 and 3", 2: "layers 2 and 3", 3: "layer 3"}),  # every layer
]


@pytest.mark.parametrize("loss,at_A,wrong", [
    (loss, at_A, wrong) for loss in ("half_squared_error", "binary_cross_entropy") for at_A, wrong in F_PRIME_AT_A_CASES
    if loss == "half_squared_error" or 3 not in at_A  # sigmoid + binary cross-entropy: no f' at the output
])
def test_derivative_at_activation_is_named_wherever_it_is_made(loss, at_A, wrong):
    net, X, T = _three_layers(loss)
    assert check_gradients(_backprop_with_f_prime_at_A(()), net, X, T).ok  # the planted student is otherwise right
    report = check_gradients(_backprop_with_f_prime_at_A(at_A), net, X, T)
    assert not report.ok
    for result in report.results:
        k = int(result.name[1:])
        if k in wrong:
            assert not result.ok, result.name
            assert f"derivative taken at the activation instead of the pre-activation (in {wrong[k]})" in result.hint, \
                (result.name, result.hint)
            assert (f"the error reaches it through dA{k}" in result.hint) == (k not in at_A), result.hint
        else:
            assert result.ok, (result.name, result.hint)


def test_planted_mistake_copy_takes_f_prime_at_the_activation():
    """A network built with DerivativeAtActivation computes the mistaken gradient through the engine."""
    net = hg.MLP(2, [(3, "tanh"), (1, "identity")], seed=0)
    X, T = np.random.default_rng(0).normal(size=(4, 2)), np.zeros((4, 1))
    mistaken = hg.MLP(2, [(3, DerivativeAtActivation(Tanh())), (1, DerivativeAtActivation(Identity()))], seed=0)
    mistaken.set_weights(net.get_weights())
    _, right = net.forward_backward(X, T)
    _, wrong = mistaken.forward_backward(X, T)
    assert not np.allclose(right[0]["dW"], wrong[0]["dW"])
    np.testing.assert_allclose(right[1]["dW"], wrong[1]["dW"])  # an identity output has f' = 1 either way
    A1 = wrong[0]["A"]
    np.testing.assert_allclose(wrong[0]["dZ"], wrong[0]["dA"] * (1 - np.tanh(A1) ** 2), rtol=1e-12)  # tanh'(A1)
    _, grads = mistaken.loss_and_grad(X, T)  # the training path agrees with forward_backward
    np.testing.assert_allclose(grads[0][0], wrong[0]["dW"], rtol=1e-12)


def test_first_wrong_entry_and_square_transpose():
    net = hg.MLP(3, [(3, "tanh"), (1, "identity")], loss="half_squared_error", seed=0)
    X, T = np.random.default_rng(1).normal(size=(4, 3)), np.zeros((4, 1))
    _, grads = net.loss_and_grad(X, T)

    def transposed(weights, biases, activations, X, T, loss):
        return [(grads[0][0].T, grads[0][1]), (grads[1][0], grads[1][1])]

    report = check_gradients(transposed, net, X, T)
    assert "missing transpose" in report["W1"].hint
    index, yours, expected = report["W1"].first_wrong
    assert yours == pytest.approx(grads[0][0].T[index]) and expected == pytest.approx(grads[0][0][index])


def test_student_code_errors_are_reported_not_raised():
    net, X, T = _problem()

    def crashes(*args):
        raise IndexError("list index out of range")

    report = check_gradients(crashes, net, X, T)
    assert not report.ok and "IndexError" in str(report)
    assert not check_gradients(lambda *a: [(1, 2)], net, X, T).ok


def test_check_activation_and_loss_pass_right_code_and_builtins():
    assert check_activation(Softsign()).ok and check_activation(Softsign).ok
    assert check_loss(LogCosh()).ok
    for name in ["relu", "sigmoid", "tanh", "softmax", "gelu", "silu", "elu", "softplus", "leaky_relu"]:
        assert check_activation(name).ok, name
    for name in ["mse", "half_squared_error", "binary_cross_entropy", "cross_entropy"]:
        assert check_loss(name).ok, name


def test_check_activation_says_where_it_is_wrong():
    class WrongSoftsign(Softsign):
        def derivative(self, Z, A):
            return np.where(Z > 1, 1.0, 1 / (1 + np.abs(Z)) ** 2)  # wrong for z > 1 only

    result = check_activation(WrongSoftsign())
    assert not result.ok and "z = " in str(result)
    wrong_points = int(str(result).split("derivative wrong at ")[1].split(" ")[0])
    assert wrong_points == int((np.linspace(-3, 3, 24) > 1).sum())

    class ReadsZ(Softsign):
        needs_z = False  # a false promise: the derivative reads Z

    assert "needs_z" in str(check_activation(ReadsZ()))


def test_check_loss_names_a_missing_1_over_N():
    class NoMean(LogCosh):
        def gradient(self, A, T, out=None):
            return np.tanh(A - T)

    result = check_loss(NoMean())
    assert not result.ok and "times too large" in str(result)


def test_user_defined_activation_and_loss_plug_in_and_train():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(64, 2))
    T = np.sin(X[:, :1]) + 0.5 * X[:, 1:]
    net = hg.MLP(2, [(8, Softsign()), (1, "identity")], loss=LogCosh(), seed=0)
    assert hg.gradcheck(net, X[:6], T[:6]).max_error < 1e-6
    before = net.loss(X, T)
    net.fit(X, T, epochs=30, batch_size=16, learning_rate=0.2, seed=0)
    assert net.loss(X, T) < 0.7 * before


# ------------------------------------------------------------------------------------------------ command line
def _run(argv, capsys):
    from handgrad.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_check_student_exit_codes(tmp_path, capsys):
    right, _ = _student(tmp_path)
    code, out, _ = _run(["check-student", right], capsys)
    assert code == 0 and "PASS" in out
    for mistake in ["missing transpose", "missing 1/N", "derivative at activation", "bias sum"]:
        wrong, _ = _student(tmp_path, mistake)
        code, out, _ = _run(["check-student", wrong], capsys)
        assert code == 1 and "FAIL" in out
    code, _, err = _run(["check-student", str(tmp_path / "absent.py")], capsys)
    assert code == 2 and err.count("\n") == 1
    bad = tmp_path / "nobackprop.py"
    bad.write_text("x = 1\n")
    code, _, err = _run(["check-student", str(bad)], capsys)
    assert code == 2 and "backprop" in err


def test_cli_explain_trace_graph(tmp_path, capsys):
    seed_000 = ["--layers", "2:relu,2:relu,1:sigmoid", "--loss", "half_squared_error", "--no-bias"]
    code, out, _ = _run(["explain", *seed_000], capsys)
    assert code == 0 and "dW1 = X^T dZ1" in out and "b1" not in out
    code, out, _ = _run(["explain", *seed_000, "--format", "latex"], capsys)
    assert code == 0 and r"\begin{align*}" in out
    code, out, _ = _run(["trace", *seed_000, "--batch", "3", "--weight", "2,1,0"], capsys)
    assert code == 0 and "dW2[1,0] = sum_n A1[n,1] dZ2[n,0]" in out and "n = 2:" in out
    code, _, err = _run(["trace", *seed_000, "--weight", "1,5,0"], capsys)
    assert code == 2 and "W1 has shape" in err
    code, _, err = _run(["trace", *seed_000, "--weight", "a,b"], capsys)
    assert code == 2
    code, out, _ = _run(["graph", *seed_000, "--out", str(tmp_path / "g.dot")], capsys)
    assert code == 0 and (tmp_path / "g.dot").read_text().startswith("digraph")


def test_register_builds_its_own_parser():
    from handgrad.cli_teach import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["trace", "--weight", "2,0,1", "--batch", "3"])
    assert args.weight == "2,0,1" and args.batch == 3 and callable(args.func)


# ---------------------------------------------------------------------- normalization layers
NORM_STUDENT_CODE = textwrap.dedent('''
    import numpy as np

    MISTAKE = {mistake!r}

    def f(name, Z):
        return {{"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
                "tanh": np.tanh, "identity": lambda z: z}}[name](Z)

    def f_prime(name, Z):
        if name == "sigmoid":
            s = 1 / (1 + np.exp(-Z))
            return s * (1 - s)
        if name == "tanh":
            return 1 - np.tanh(Z) ** 2
        return (Z > 0) * 1.0 if name == "relu" else np.ones_like(Z)

    def backprop(weights, biases, activations, X, T, loss, norms):
        N = X.shape[0]
        H, Zhat, kept = [X], [], []
        for W, b, name, norm in zip(weights, biases, activations, norms):
            Z = H[-1] @ W + (0 if b is None else b)
            if norm is not None:
                axis = 0 if norm["kind"] == "batch" else 1
                mean = Z.mean(axis=axis, keepdims=True)
                std = np.sqrt(((Z - mean) ** 2).mean(axis=axis, keepdims=True) + norm["eps"])
                xhat = (Z - mean) / std
                kept.append((xhat, std))
                Z = norm["gamma"] * xhat + norm["beta"]
            else:
                kept.append(None)
            Zhat.append(Z)
            H.append(f(name, Z))
        dA = (H[-1] - T) / N
        grads = []
        for k in reversed(range(len(weights))):
            dZ = dA * f_prime(activations[k], Zhat[k])
            if norms[k] is not None:
                xhat, std = kept[k]
                gamma = norms[k]["gamma"]
                dgamma, dbeta = (dZ * xhat).sum(axis=0), dZ.sum(axis=0)
                if MISTAKE == "constants":
                    dZ = dZ * gamma / std
                elif norms[k]["kind"] == "batch":
                    dZ = gamma / std * (dZ - dbeta / N - xhat * dgamma / N)
                else:
                    G = dZ * gamma
                    dZ = (G - G.mean(axis=1, keepdims=True) - xhat * (G * xhat).mean(axis=1, keepdims=True)) / std
                grads.append((H[k].T @ dZ, None, dgamma, dbeta))
            else:
                grads.append((H[k].T @ dZ, None if biases[k] is None else dZ.sum(axis=0)))
            dA = dZ @ weights[k].T
        return grads[::-1]
''')


def _norm_student(tmp_path, mistake=None):
    path = tmp_path / f"norm_student_{mistake}.py"
    path.write_text(NORM_STUDENT_CODE.format(mistake=mistake))
    from handgrad.cli_teach import load_student_function

    return str(path), load_student_function(str(path))


@pytest.mark.parametrize("layers", [["4:tanh:batchnorm", "3:relu:layernorm", "2:sigmoid"],
                                    ["3:tanh", "4:sigmoid:batchnorm", "2:sigmoid"]])
def test_norm_student_right_passes_and_constant_statistics_are_named(tmp_path, layers):
    net = hg.MLP(3, layers, loss="half_squared_error", seed=0)
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(6, 3)), rng.uniform(size=(6, 2))
    _, right = _norm_student(tmp_path)
    report = check_gradients(right, net, X, T)
    assert report.ok, str(report)
    normed = [k for k, layer in enumerate(net.layers, 1) if layer.norm is not None]
    assert {f"gamma{k}" for k in normed} <= {result.name for result in report.results}
    _, wrong = _norm_student(tmp_path, "constants")
    report = check_gradients(wrong, net, X, T)
    assert not report.ok
    top = max(normed)
    assert report[f"W{top}"].ok is False and "mean and variance treated as constants" in report[f"W{top}"].hint
    assert report[f"gamma{top}"].ok and report[f"beta{top}"].ok  # right above the mistake
    assert "W3" not in [result.name for result in report.results if not result.ok]  # the output layer is untouched
    if net.layers[top - 1].norm.kind == "batch":
        assert "every sample of the batch" in report[f"W{top}"].hint


def test_planted_constant_statistics_is_the_inference_formula_and_fails_gradcheck():
    from handgrad.student import _data_loss_copy

    net = hg.MLP(3, ["5:tanh:batchnorm", "2:sigmoid"], loss="half_squared_error", seed=0)
    rng = np.random.default_rng(1)
    X, T = rng.normal(size=(6, 3)), rng.uniform(size=(6, 2))
    mistaken = _data_loss_copy(net, constant_statistics=(1,))
    assert hg.gradcheck(mistaken, X, T)["W1"] > 1e-3  # the planted mistake is a wrong gradient
    assert hg.gradcheck(_data_loss_copy(net), X, T).max_error < 1e-6


def test_cli_check_student_with_a_batch_norm_network(tmp_path, capsys):
    right, _ = _norm_student(tmp_path)
    layers = ["--layers", "3:tanh:batchnorm,2:sigmoid", "--inputs", "3", "--loss", "half_squared_error"]
    code, out, _ = _run(["check-student", right, *layers], capsys)
    assert code == 0 and "PASS" in out and "gamma1" in out
    wrong, _ = _norm_student(tmp_path, "constants")
    code, out, _ = _run(["check-student", wrong, *layers], capsys)
    assert code == 1 and "treated as constants" in out
