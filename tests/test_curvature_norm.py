"""Curvature through batch and layer normalization (docs/derivations.md, "Through a normalization layer").

H v on the generated norm networks of test_normalization.py (norms at depths 1-3, every output/loss pair, sample
weights, l2, dropout) against the two oracles of test_curvature.py, float64, relative error below 1e-8: central
differences of the gradient vector along v, and PyTorch's double backward through F.batch_norm / F.layer_norm.
Then the norm layers' R-operators alone (batch statistics and running ones) against directional derivatives of
their forward and backward, symmetry, what a product leaves alone (the running statistics), sharpness against
the full Hessian built column by column, the errors, and the command on a norm model.
"""

import csv
import json
import math

import numpy as np
import pytest
from conftest import relative_error
from test_curvature import assert_close, difference_hvp
from test_normalization import _dropout_masks, make_norm_case

import handgrad as hg
from handgrad import curvature, datasets
from handgrad.layers import INFERENCE, OBJECTIVE, BatchNorm, LayerNorm

KINKED_ACTIVATIONS = ["relu", "elu", "tanh", "softmax"]  # (softmax as a hidden activation, too)


def as_curvature_case(case):
    """test_normalization's case with the keys test_curvature's helpers read."""
    return dict(case, sample_weight=case["w"], dropout_seed=case["seed"])


CASES = [as_curvature_case(make_norm_case(i)) for i in range(15)]
CASES += [as_curvature_case(make_norm_case(i, KINKED_ACTIVATIONS)) for i in range(15, 21)]


def hvp_of(case, v):
    return case["net"].hessian_vector_product(case["X"], case["T"], v, sample_weight=case["sample_weight"],
                                              dropout_seed=case["dropout_seed"])


def test_cases_cover_both_norms_at_three_depths_with_weights_l2_and_dropout():
    kinds = {(k, layer.norm.kind) for case in CASES for k, layer in enumerate(case["net"].layers) if layer.norm}
    assert {kind for _, kind in kinds} == {"batch", "layer"} and {k for k, _ in kinds} == {0, 1, 2}
    assert any(case["net"].l2 for case in CASES) and any(case["sample_weight"] is not None for case in CASES)
    assert any(case["dropout_seed"] for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_hessian_vector_product_through_norms_matches_central_differences(case):
    net = case["net"]
    v = np.random.default_rng(3).standard_normal(net.n_params)
    theta, running = net.params.copy(), [array.copy() for _, array in net.running_statistics()]
    Hv = hvp_of(case, v)
    np.testing.assert_array_equal(net.params, theta)
    for before, (name, after) in zip(running, net.running_statistics()):  # a product is not a training step
        np.testing.assert_array_equal(after, before, err_msg=name)
    assert_close(Hv, difference_hvp(case, v), 1e-8, case["name"])


def torch_hvp(case, v):
    """H v by torch's double backward of test_normalization's objective (F.batch_norm, F.layer_norm), on a flat
    theta cut by net.layout; the dropout masks are those of the handgrad pass just run."""
    import torch
    from test_normalization import torch_objective

    net = case["net"]
    masks = {k: None if mask is None else mask.copy() for k, mask in _dropout_masks(net).items()}
    theta = torch.tensor(net.params.copy(), requires_grad=True)
    params = {name: theta[offset:offset + math.prod(shape)].reshape(shape) for name, offset, shape in net.layout}
    J = torch_objective(net, case["X"], case["T"], case["sample_weight"], masks, params)
    (gradient,) = torch.autograd.grad(J, theta, create_graph=True)
    (Hv,) = torch.autograd.grad(gradient @ torch.tensor(v), theta)
    return Hv.numpy()


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_hessian_vector_product_through_norms_matches_torch_double_backward(case):
    pytest.importorskip("torch")
    v = np.random.default_rng(4).standard_normal(case["net"].n_params)
    Hv = hvp_of(case, v)
    assert_close(Hv, torch_hvp(case, v), 1e-8, case["name"])


def test_ignoring_the_norm_would_be_caught():
    """The oracle tells an R-operator that treats the norm's statistics as constants from the right one."""
    case = CASES[0]
    net, v = case["net"], np.random.default_rng(5).standard_normal(case["net"].n_params)
    expected = difference_hvp(case, v)
    norm = next(layer.norm for layer in net.layers if layer.norm is not None and layer.norm.kind == "batch")
    norm.statistics_move = lambda: False  # the "constant statistics" R-operator, on a batch-statistics pass
    try:
        error, _ = relative_error(hvp_of(case, v), expected)
    finally:
        del norm.statistics_move
    assert error > 1e-3
    assert_close(hvp_of(case, v), expected, 1e-8, "restored")


def test_hessian_of_a_norm_network_is_symmetric():
    for case in CASES[:6]:
        rng = np.random.default_rng(6)
        u, v = rng.standard_normal((2, case["net"].n_params))
        assert u @ hvp_of(case, v) == pytest.approx(v @ hvp_of(case, u), rel=1e-10), case["name"]


# ---------------------------------------------------------------------- the norm layers alone
def _layer_functions(norm, X, dY, mode):
    """Y(X, gamma, beta) and dX(X, gamma, beta, dY) of the layer, each as a fresh copy."""
    def at(X_, gamma, beta, dY_):
        saved = norm.gamma.copy(), norm.beta.copy()
        norm.gamma[...], norm.beta[...] = gamma, beta
        try:
            Y = norm.forward(X_, mode).copy()
            dX = norm.backward(dY_.copy()).copy()
            return Y, dX, norm.dgamma.copy(), norm.dbeta.copy()
        finally:
            norm.gamma[...], norm.beta[...] = saved
    return at


@pytest.mark.parametrize("kind, mode", [("batch", OBJECTIVE), ("batch", INFERENCE), ("layer", OBJECTIVE)])
def test_norm_r_operators_are_directional_derivatives_of_forward_and_backward(kind, mode):
    """Move X, gamma, beta along (RX, V_gamma, V_beta) and dY along RdY: the five-point difference of Y, dX,
    dgamma, dbeta equals r_forward's R{Y} and r_backward's R{dX}, R{dgamma}, R{dbeta}."""
    rng = np.random.default_rng(7)
    N, n = 6, 4
    norm = (BatchNorm if kind == "batch" else LayerNorm)(n)
    if kind == "batch":
        norm.running_mean[...], norm.running_var[...] = rng.normal(size=n), rng.uniform(0.5, 2, size=n)
    gamma, beta = rng.uniform(0.5, 1.5, n), rng.normal(size=n)
    X, dY = rng.normal(size=(N, n)) * 2 + 1, rng.normal(size=(N, n))
    RX, RdY, Vg, Vb = rng.normal(size=(N, n)), rng.normal(size=(N, n)), rng.normal(size=n), rng.normal(size=n)
    at = _layer_functions(norm, X, dY, mode)
    h = 1e-4
    points = {s: at(X + s * h * RX, gamma + s * h * Vg, beta + s * h * Vb, dY + s * h * RdY) for s in (-2, -1, 1, 2)}
    expected = [(-points[2][i] + 8 * points[1][i] - 8 * points[-1][i] + points[-2][i]) / (12 * h) for i in range(4)]

    norm.gamma[...], norm.beta[...] = gamma, beta
    norm.forward(X, mode)
    norm.backward(dY.copy())
    RY = norm.r_forward(RX, {"gamma": Vg, "beta": Vb})
    out = {"gamma": np.empty(n), "beta": np.empty(n)}
    RdX = norm.r_backward(dY, RdY, out)
    for name, got, want in zip(("R{Y}", "R{dX}", "R{dgamma}", "R{dbeta}"), (RY, RdX, out["gamma"], out["beta"]),
                               expected):
        error, index = relative_error(got, want)
        assert error < 1e-9, f"{kind} {name}: relative error {error:.2e} at {index}"


# ---------------------------------------------------------------------- sharpness and the full Hessian
def tiny_norm_problem():
    X, y = datasets.make_moons(24, noise=0.2, seed=1)
    net = hg.MLP(2, ["4:tanh:batchnorm", "3:sigmoid:layernorm", (2, "softmax")], seed=2, l2=1e-3)
    net.fit(X, y, epochs=20, batch_size=8, learning_rate=0.1, verbose=False)
    return net, X, y


def test_sharpness_of_a_norm_network_is_the_top_eigenvalue_of_the_full_hessian():
    net, X, y = tiny_norm_problem()
    H = np.stack([net.hessian_vector_product(X, y, e) for e in np.eye(net.n_params)], axis=1)  # column i: H e_i
    np.testing.assert_allclose(H, H.T, atol=1e-10 * np.abs(H).max())
    eigenvalues = np.linalg.eigvalsh((H + H.T) / 2)
    for method in curvature.METHODS:
        result = hg.sharpness(net, X, y, k=2, method=method)
        assert result.converged
        np.testing.assert_allclose(result.eigenvalues, eigenvalues[::-1][:2], rtol=1e-8, err_msg=method)


def test_chunks_are_refused_with_batch_norm_and_exact_with_layer_norm():
    net, X, y = tiny_norm_problem()
    with pytest.raises(hg.ConfigError, match="batch normalization normalizes each batch"):
        curvature.hessian_operator(net, X, y, batch_size=8)
    curvature.hessian_operator(net, X, y, batch_size=len(X))  # one chunk: the whole batch, allowed
    layer_net = hg.MLP(2, ["4:tanh:layernorm", (1, "sigmoid")], seed=0)
    v = np.random.default_rng(8).standard_normal(layer_net.n_params)
    chunked = curvature.hessian_operator(layer_net, X, y, batch_size=5)(v)
    assert_close(chunked, layer_net.hessian_vector_product(X, y, v), 1e-12, "layer norm in chunks")


def test_a_norm_without_its_own_r_operator_is_refused():
    """Nothing silent: a norm of the user's own that inherits batch norm's R-operator but computes something
    else is refused, as is one whose R-operator is gone."""
    class ClippedBatchNorm(BatchNorm):
        def forward(self, X, training=False):
            return np.clip(super().forward(X, training), -1, 1)

    net, X, y = tiny_norm_problem()
    net.loss_and_grad(X, y)
    net.layers[0].norm.__class__ = ClippedBatchNorm
    with pytest.raises(hg.ConfigError, match="ClippedBatchNorm has none of its own"):
        net.hessian_vector_product(X, y, np.zeros(net.n_params))
    net.layers[0].norm.__class__ = BatchNorm
    net.layers[1].norm.r_backward = None
    with pytest.raises(hg.ConfigError, match="LayerNorm has none of its own"):
        net.hessian_vector_product(X, y, np.zeros(net.n_params))


def test_curvature_command_on_a_norm_model(tmp_path, capsys):
    from handgrad.cli import main

    X, y = datasets.make_moons(400, seed=0)
    net = hg.MLP(2, ["6:tanh:batchnorm", (1, "sigmoid")], seed=0)
    net.fit(X, y, epochs=2, verbose=False)
    model = tmp_path / "model.npz"
    net.save(model)
    assert main(["curvature", str(model), "--data", "moons", "--json"]) == 0
    reported = json.loads(capsys.readouterr().out)
    assert reported["eigenvalues"][0] == pytest.approx(hg.sharpness(net, X, y).sharpness, rel=1e-6)
    assert main(["curvature", str(model), "--data", "moons", "--batch-size", "100"]) == 2
    assert "batch normalization normalizes each batch" in capsys.readouterr().err


def test_train_sharpness_flag_logs_writes_and_plots(tmp_path, capsys):
    from handgrad import cli

    train = ["train", "--data", "moons", "--layers", "6:tanh:batchnorm,1:sigmoid", "--epochs", "3", "--seed", "0"]
    run_dir, model = tmp_path / "run", tmp_path / "m.npz"
    assert cli.main(train + ["--sharpness", "--verbose", "--run-dir", str(run_dir), "--out", str(model)]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 3 and all(" sharpness " in line for line in lines)
    rows = list(csv.DictReader((run_dir / "history.csv").read_text().splitlines()))
    values = [float(row["sharpness"]) for row in rows]
    assert json.loads((run_dir / "history.json").read_text())["sharpness"] == values
    assert (run_dir / "sharpness.png").read_bytes().startswith(b"\x89PNG")
    # the last value is the sharpness of the trained model on the probe: the (standardized) training rows
    args = cli.build_parser().parse_args(train)
    cli._training_settings(args)
    _, _, _, split, standardizer, _ = cli._training_data(args)
    probe = slice(0, 1000)
    expected = hg.sharpness(hg.load(model), standardizer.transform(split.X_train[probe]), split.y_train[probe])
    assert values[-1] == pytest.approx(expected.sharpness, rel=1e-6)

    plain = tmp_path / "plain"
    assert cli.main(train + ["--run-dir", str(plain), "--no-plots"]) == 0
    assert "sharpness" not in json.loads((plain / "history.json").read_text())


def test_train_resumes_with_sharpness_bit_identically(tmp_path):
    from handgrad import cli

    train = ["train", "--data", "moons", "--layers", "6:tanh:batchnorm,1:sigmoid", "--seed", "0", "--quiet",
             "--sharpness", "--patience", "5"]
    ck, straight, resumed = tmp_path / "ck", tmp_path / "a.npz", tmp_path / "b.npz"
    assert cli.main(train + ["--epochs", "4", "--out", str(straight)]) == 0
    assert cli.main(train + ["--epochs", "2", "--checkpoint", str(ck)]) == 0
    assert cli.main(train + ["--epochs", "4", "--resume", str(ck), "--out", str(resumed), "--run-dir",
                             str(tmp_path / "run"), "--no-plots"]) == 0
    np.testing.assert_array_equal(hg.load(resumed).params, hg.load(straight).params)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history["sharpness"]) == 4 and all(np.isfinite(history["sharpness"]))
