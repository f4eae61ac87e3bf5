"""exp, a registered activation (f = f' = f'' = e^z, read from A), and the half Poisson deviance, a registered loss
(closed form (A - T)/N with exp): MLPRegressor(loss='poisson')'s network saves, loads, explains, traces, draws,
exports to ONNX (checked by onnxruntime) and goes to PyTorch and back like any other. docs/derivations.md,
"The exp activation". (The generated architectures of conftest.make_case cover exp in hidden and output
positions against central differences, PyTorch autograd and Hessian-vector products.)
"""

import pickle
import warnings

import numpy as np
import pytest

import handgrad as hg
from handgrad.activations import Exp, get_activation
from handgrad.losses import HalfPoissonDeviance, get_loss


def _poisson_data(seed=0, N=60):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 3))
    return X, rng.poisson(np.exp(0.6 * X[:, 0] - 0.4 * X[:, 1] + 0.3)).astype(float)


def _poisson_net(dtype="float64", hidden="tanh"):
    net = hg.MLP(3, [(6, hidden), (1, "exp")], seed=2, dtype=dtype)
    net.layers[0].b[...] = np.linspace(-0.5, 0.5, 6)
    return net


# ---------------------------------------------------------------------------- the activation and the loss
def test_exp_is_registered_with_its_derivatives_read_from_the_output():
    f = get_activation("exp")
    assert isinstance(f, Exp) and f.spec() == "exp" and f.config() == {"name": "exp"}
    assert f.output_range == (0.0, np.inf) and not f.needs_z
    Z = np.random.default_rng(0).normal(scale=3.0, size=(5, 4))
    A = f.forward(Z.copy())
    np.testing.assert_allclose(A, np.exp(Z), rtol=1e-15)
    h = 1e-6
    numeric_first = (f.forward(Z + h) - f.forward(Z - h)) / (2 * h)
    numeric_second = (f.derivative(Z + h, f.forward(Z + h)) - f.derivative(Z - h, f.forward(Z - h))) / (2 * h)
    np.testing.assert_allclose(f.derivative(None, A), numeric_first, rtol=1e-8)  # Z unused: read from A
    np.testing.assert_allclose(f.second_derivative(None, A), numeric_second, rtol=1e-8)
    dA = np.random.default_rng(1).normal(size=Z.shape)
    np.testing.assert_allclose(f.backward(dA.copy(), None, A), dA * np.exp(Z), rtol=1e-15)
    assert f.forward(Z.astype(np.float32)).dtype == np.float32


def test_poisson_loss_is_registered_and_the_natural_loss_after_exp():
    assert isinstance(get_loss("poisson"), HalfPoissonDeviance)
    assert hg.MLP(2, [(3, "relu"), (2, "exp")]).loss_fn.name == "half_poisson_deviance"
    assert hg.MLP(2, [(3, "relu"), (2, "exp")]).closed_form
    loss = get_loss("half_poisson_deviance")
    rng = np.random.default_rng(3)
    A, T = rng.uniform(0.2, 4.0, (6, 2)), rng.poisson(2.0, (6, 2)).astype(float)
    h = 1e-6
    numeric = np.zeros_like(A)
    for index in np.ndindex(A.shape):
        step = np.zeros_like(A)
        step[index] = h
        numeric[index] = (loss.value(A + step, T) - loss.value(A - step, T)) / (2 * h)
    np.testing.assert_allclose(loss.gradient(A, T), numeric, rtol=1e-7, atol=1e-10)
    assert loss.value(T + (T == 0), T + (T == 0)) == pytest.approx(0.0, abs=1e-15)  # zero exactly at a = t


def test_the_closed_form_equals_the_general_chain_rule():
    """exp + Poisson uses dZ = (A - T)/N; the same activation under another name takes the general path
    dZ = dA * f'(Z) with dA = (1 - T/A)/N: both give the same gradient and the same Hessian-vector product."""

    class GeneralExp(Exp):
        name = "exp_general"

    X, y = _poisson_data()
    closed = _poisson_net()
    general = hg.MLP(3, [(6, "tanh"), (1, GeneralExp())], loss="poisson", seed=2)
    general.params[...] = closed.params
    assert closed.closed_form and not general.closed_form
    J1, g1 = closed.loss_and_grad(X, y)
    J2, g2 = general.loss_and_grad(X, y)
    assert J1 == pytest.approx(J2, rel=1e-12)
    for (dW1, db1), (dW2, db2) in zip(g1, g2):
        np.testing.assert_allclose(dW1, dW2, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(db1, db2, rtol=1e-10, atol=1e-14)
    v = np.random.default_rng(4).normal(size=closed.n_params)
    np.testing.assert_allclose(closed.hessian_vector_product(X, y, v), general.hessian_vector_product(X, y, v),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("hidden", ["tanh", "exp", "softplus"])
def test_gradient_and_hessian_vector_product_against_finite_differences(hidden):
    X, y = _poisson_data(5, N=12)
    net = _poisson_net(hidden=hidden)
    grads = net.loss_and_grad(X, y)[1]
    g = np.concatenate([dW.ravel() for dW, _ in grads] + [db.ravel() for _, db in grads])
    theta, h = net.params.copy(), 1e-6
    numeric = np.zeros_like(theta)
    for i in range(theta.size):
        for sign in (1, -1):
            net.params[...] = theta
            net.params[i] += sign * h
            numeric[i] += sign * net.loss(X, y) / (2 * h)
    net.params[...] = theta
    np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-8)
    v = np.random.default_rng(6).normal(size=theta.size)

    def gradient_at(params):
        net.params[...] = params
        net.loss_and_grad(X, y)
        return net.grads.copy()

    differences = (gradient_at(theta + 1e-5 * v) - gradient_at(theta - 1e-5 * v)) / 2e-5
    net.params[...] = theta
    Hv = net.hessian_vector_product(X, y, v)
    assert np.abs(Hv - differences).max() / np.abs(differences).max() < 1e-7


def test_torch_autograd_gradient_and_double_backward():
    torch = pytest.importorskip("torch")
    X, y = _poisson_data(7, N=20)
    net = _poisson_net(hidden="exp")
    v = np.random.default_rng(8).normal(size=net.n_params)
    theta = torch.tensor(net.params.copy(), requires_grad=True)

    def J(theta):
        views = {}
        for name, start, shape in net.layout:
            views[name] = theta[start:start + int(np.prod(shape))].reshape(shape)
        Z1 = torch.tensor(X) @ views["W1"] + views["b1"]
        Z2 = torch.exp(Z1) @ views["W2"] + views["b2"]
        T = torch.tensor(y[:, None])
        loss = (torch.xlogy(T, T) - T * Z2 - T + torch.exp(Z2)).sum(dim=1).mean()  # ln a = z after exp
        return loss + 0.5 * net.l2 * ((views["W1"] ** 2).sum() + (views["W2"] ** 2).sum())

    value = J(theta)
    (gradient,) = torch.autograd.grad(value, theta, create_graph=True)
    (Hv,) = torch.autograd.grad(gradient @ torch.tensor(v), theta)
    assert net.loss_and_grad(X, y)[0] == pytest.approx(float(value.detach()), rel=1e-13)
    np.testing.assert_allclose(net.grads, gradient.detach().numpy(), rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(net.hessian_vector_product(X, y, v), Hv.numpy(), rtol=1e-10, atol=1e-13)


def test_a_diverging_exp_output_stops_training_with_a_clear_error():
    X, y = _poisson_data()
    net = _poisson_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(hg.TrainingError, match="loss became"):
            net.fit(X * 1e3, y, epochs=50, learning_rate=50.0, verbose=False)
    assert np.isfinite(net.params).all()


# ---------------------------------------------------------------------------- where every activation goes
def _fitted_poisson_regressor():
    pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning

    from handgrad.sklearn import MLPRegressor

    X, y = _poisson_data(9, N=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPRegressor(loss="poisson", hidden_layer_sizes=(5,), max_iter=40, random_state=0).fit(X, y)
    return model, X


def test_the_poisson_regressors_network_saves_loads_and_explains(tmp_path):
    model, X = _fitted_poisson_regressor()
    net = model.net_
    assert isinstance(net.output_activation, Exp) and net.loss_fn.name == "half_poisson_deviance"
    net.save(tmp_path / "poisson.npz")
    loaded = hg.load(tmp_path / "poisson.npz")
    assert isinstance(loaded.output_activation, Exp) and loaded.loss_fn.name == "half_poisson_deviance"
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))
    np.testing.assert_allclose(loaded.predict(X)[:, 0], model.predict(X), rtol=1e-12)
    text = hg.explain(loaded)
    assert "exp(z) = e^z" in text and "closed form (exp + half Poisson deviance" in text
    assert "user-defined" not in text
    assert "A2 = exp(Z2)" in str(hg.trace(loaded, X[:2], np.array([[1.0], [0.0]])))
    from handgrad.graph import to_dot

    assert "exp" in to_dot(loaded)
    assert pickle.loads(pickle.dumps(loaded)).output_activation == Exp()


def test_exp_through_onnxruntime(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from handgrad.onnx_export import to_onnx

    X, _ = _poisson_data(10, N=15)
    for dtype in ("float32", "float64"):
        net = hg.MLP(3, [(4, "exp"), (3, "tanh"), (2, "exp")], seed=3, dtype=dtype)
        path = tmp_path / f"exp-{dtype}.onnx"
        to_onnx(net, path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(["Y"], {"X": X.astype(dtype)})[0]
        np.testing.assert_allclose(got, net.forward(X.astype(dtype)), rtol=1e-5 if dtype == "float32" else 1e-12)


def test_exp_to_torch_and_back(tmp_path):
    torch = pytest.importorskip("torch")
    from handgrad.torch_io import Exp as TorchExp
    from handgrad.torch_io import from_torch, to_torch

    X, _ = _poisson_data(11, N=15)
    net = hg.MLP(3, [(4, "exp"), (3, "relu"), (2, "exp")], seed=3)
    seq = to_torch(net)
    assert [type(m).__name__ for m in seq] == ["Linear", "Exp", "Linear", "ReLU", "Linear", "Exp"]
    assert isinstance(seq[1], TorchExp)
    with torch.no_grad():
        np.testing.assert_allclose(seq(torch.from_numpy(X)).numpy(), net.forward(X), rtol=1e-13)
    back = from_torch(seq)
    assert [layer.activation.name for layer in back.layers] == ["exp", "relu", "exp"]
    assert back.loss_fn.name == "half_poisson_deviance"
    np.testing.assert_array_equal(back.forward(X), net.forward(X))
    torch.save(seq, tmp_path / "seq.pt")  # the module pickles by its name, handgrad.torch_io.Exp
    again = torch.load(tmp_path / "seq.pt", weights_only=False)
    np.testing.assert_array_equal(from_torch(again).forward(X), net.forward(X))


def test_from_torch_reads_only_handgrads_own_exp_module():
    torch = pytest.importorskip("torch")
    from handgrad.torch_io import from_torch

    class Exp(torch.nn.Module):  # same name, but it may compute anything: refused by name
        def forward(self, x):
            return x.exp() + 1

    with pytest.raises(hg.ConfigError, match=r"unsupported module Exp.*handgrad\.torch_io\.Exp"):
        from_torch(torch.nn.Sequential(torch.nn.Linear(2, 3), Exp()))


def test_the_command_line_trains_and_predicts_with_an_exp_output(tmp_path, capsys):
    from handgrad.cli import main

    X, y = _poisson_data(12, N=80)
    csv = tmp_path / "counts.csv"
    np.savetxt(csv, np.column_stack([X, y]), delimiter=",", header="a,b,c,count", comments="")
    model = tmp_path / "m.npz"
    assert main(["train", "--csv", str(csv), "--target", "count", "--layers", "6:tanh,1:exp", "--epochs", "3",
                 "--quiet", "--out", str(model)]) == 0
    net = hg.load(model)
    assert net.output_activation.name == "exp" and net.loss_fn.name == "half_poisson_deviance"
    assert main(["train", "--csv", str(csv), "--target", "count", "--layers", "6:tanh,1:exp", "--loss", "poisson",
                 "--epochs", "1", "--quiet", "--out", str(tmp_path / "m2.npz")]) == 0
    capsys.readouterr()
    assert main(["predict", str(model), str(csv), "--target", "count"]) == 0
    predictions = np.array(capsys.readouterr().out.split()[1:], dtype=float)
    assert predictions.shape == (80,) and (predictions > 0).all()
    assert main(["explain", "--layers", "4:relu,2:exp", "--inputs", "3"]) == 0
    assert "A2 = exp(Z2)" in capsys.readouterr().out
    assert main(["train", "--csv", str(csv), "--target", "count", "--layers", "6:tanh,1:exp",
                 "--loss", "cross_entropy", "--epochs", "1", "--quiet"]) == 2


def test_check_activation_and_check_loss_judge_exp_and_the_poisson_deviance():
    """The checkers feed a positive-output loss positive outputs and counts: the built-in ones are right, and a
    planted mistake (the 2 of a wrong derivative of t ln(t/a)) is caught."""

    class WrongPoisson(HalfPoissonDeviance):
        name = "wrong_poisson"

        def gradient(self, A, T, out=None):
            return (1 - 2 * T / A) / A.shape[0]

    assert hg.check_activation("exp").ok and hg.check_loss("poisson").ok
    assert not hg.check_loss(WrongPoisson()).ok
