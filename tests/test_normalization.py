"""Batch and layer normalization (docs/derivations.md, "Normalization layers").

Gradients of generated networks with norms at several depths, in training mode (batch statistics), against
two oracles in float64: fourth-order central differences of the public objective (h = 1e-4: truncation
error ~h^4 f^(5), rounding ~eps/h ~ 1e-12, so a relative error below 1e-10 is a real bound; plain central
differences carry ~1e-9 of rounding at their best h) and PyTorch autograd, written
from the definitions (F.batch_norm, F.layer_norm). Then the running statistics and inference outputs after
k SGD steps against torch.nn.BatchNorm1d, the modes (what changes the running statistics and what does
not), the bad-input errors, and that the common wrong derivations fail.
"""

import numpy as np
import pytest
from conftest import relative_error

import handgrad as hg
from handgrad.errors import ConfigError, DataError
from handgrad.layers import INFERENCE, OBJECTIVE, TRAINING, BatchNorm, Dense, LayerNorm

SMOOTH = ["tanh", "sigmoid", "softplus", "gelu", "silu", "identity"]  # no kink within the stencil's 2h
OUTPUTS = [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"), ("identity", "half_squared_error"),
           ("tanh", "mse")]


# ---------------------------------------------------------------------- generated networks with norms
def make_norm_case(i, activations=SMOOTH):
    """Network number i: depth 2..4, norms ('batch', 'layer', none) at every hidden position in turn,
    every output/loss pair, sample weights on every third case, l2 on every fourth, dropout on every fifth."""
    rng = np.random.default_rng(500 + i)
    depth = 2 + i % 3
    output, loss = OUTPUTS[i % len(OUTPUTS)]
    layers = []
    for j in range(depth - 1):
        norm = ("batch", "layer", None)[(i + j) % 3]
        layer = {"size": int(rng.integers(2, 7)), "activation": activations[(i + j) % len(activations)]}
        if norm:
            layer["norm"] = norm
        layers.append(layer)
    K = int(rng.integers(2, 4))
    layers.append((K, output))
    n_in, N = int(rng.integers(2, 6)), int(rng.integers(4, 9))
    dropout = 0.3 if i % 5 == 4 else 0.0
    net = hg.MLP(n_in, layers, loss=loss, seed=i, l2=0.1 if i % 4 == 1 else 0.0, dropout=dropout)
    for layer in net.layers:  # gamma, beta and biases away from their starting values, so every path carries
        for name, array in layer.parameters():
            if name in ("b", "beta"):
                array[...] = rng.normal(scale=0.5, size=array.shape)
            elif name == "gamma":
                array[...] = rng.uniform(0.5, 1.5, size=array.shape)
    X = rng.normal(size=(N, n_in)) * rng.uniform(0.5, 3) + rng.normal()
    if loss == "cross_entropy":
        T = rng.integers(0, K, size=N)
    elif loss == "binary_cross_entropy":
        T = rng.integers(0, 2, size=(N, K)).astype(float)
    else:
        T = rng.normal(size=(N, K))
    w = rng.uniform(0.2, 2.0, size=N) if i % 3 == 0 else None
    seed = 70 + i if dropout else None
    norms = "".join({"batch": "B", "layer": "L"}.get(spec.get("norm"), "-") for spec in layers[:-1])
    name = f"case{i}-{norms}-{output}-{loss}" + ("-weighted" if w is not None else "") + ("-dropout" if seed else "")
    return {"name": name, "net": net, "X": X, "T": T, "w": w, "seed": seed}


CASES = [make_norm_case(i) for i in range(15)]


def test_cases_cover_norms_at_several_depths():
    positions = {(spec_k, layer.norm.kind) for case in CASES for spec_k, layer in enumerate(case["net"].layers)
                 if layer.norm is not None}
    assert {kind for _, kind in positions} == {"batch", "layer"}
    assert {k for k, _ in positions} == {0, 1, 2}  # first, second and third hidden layer
    assert any(case["w"] is not None for case in CASES) and any(case["seed"] for case in CASES)


def _analytic(case):
    net = case["net"]
    J, _ = net.loss_and_grad(case["X"], case["T"], case["w"], dropout_seed=case["seed"])
    return J, {name: g.copy() for name, g in net.gradients()}


def _assert_close(got, expected, tol, context, expected_name):
    """Each array's worst entry against its largest, as hg.gradcheck measures. The floor is a thousandth of
    the network's largest gradient entry: an array whose true gradient is zero (a bias below batch norm
    through an identity activation: the mean subtracts it, docs/derivations.md) is held to 1e-13 of that."""
    floor = 1e-3 * max(np.abs(g).max() for g in got.values())
    failures = []
    for name, g in got.items():
        error, index = relative_error(g, expected[name], floor=floor)
        if not error < tol:
            failures.append(f"  {name} {g.shape}: relative error {error:.3e}; worst entry {index}: handgrad "
                            f"{float(g[index])!r} vs {expected_name} {float(expected[name][index])!r}")
    assert not failures, context + "\n" + "\n".join(failures)


def _dropout_masks(net):
    """{k: the scaled mask after layer k} of the last forward pass (None where dropout was off)."""
    masks, k = {}, 0
    for layer in net.sequence:
        if isinstance(layer, Dense):
            k += 1
        else:
            masks[k] = layer.mask
    return masks


# The finite-difference oracle runs in extended precision (x86's 80-bit long double, eps ~1e-19): a float64
# objective has ~eps/h of rounding in a difference quotient, about 1e-10 relative to gradients of 1e-3 at the
# best h, which is no bound at 1e-10. The objective below is written from the definitions (not handgrad's
# code), and the test also checks that it equals net.loss at the point.
EXTENDED = np.finfo(np.longdouble).eps < 1e-18
needs_extended = pytest.mark.skipif(not EXTENDED, reason="long double is plain double on this platform")
LD = np.longdouble


def _ld_activation(name, Z):
    if name == "tanh":
        return np.tanh(Z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-Z))
    if name == "softplus":
        return np.log1p(np.exp(Z))
    if name == "gelu":
        return 0.5 * Z * (1 + np.tanh(np.sqrt(LD(2) / LD(np.pi)) * (Z + LD("0.044715") * Z ** 3)))
    if name == "silu":
        return Z / (1 + np.exp(-Z))
    if name == "softmax":
        E = np.exp(Z - Z.max(axis=1, keepdims=True))
        return E / E.sum(axis=1, keepdims=True)
    assert name == "identity", name
    return Z


def _ld_standardize(Z, axis, eps):
    mean = Z.mean(axis=axis, keepdims=True)
    var = ((Z - mean) ** 2).mean(axis=axis, keepdims=True)
    return (Z - mean) / np.sqrt(var + LD(eps))


def extended_objective(net, X, T, w, masks, params):
    """J in long double from the definitions: Z = H W (+ b), the norm, the activation, dropout's masks."""
    H = X.astype(LD)
    for k, layer in enumerate(net.layers, 1):
        Z = H @ params[f"W{k}"]
        if layer.b is not None:
            Z = Z + params[f"b{k}"]
        if layer.norm is not None:
            xhat = _ld_standardize(Z, 0 if layer.norm.kind == "batch" else 1, layer.norm.eps)
            Z = params[f"gamma{k}"] * xhat + params[f"beta{k}"]
        H = _ld_activation(layer.activation.name, Z)
        if masks.get(k) is not None:
            H = H * masks[k].astype(LD)
    T = net.check_targets(T, X.shape[0]).astype(LD)
    name = net.loss_fn.name
    if name == "cross_entropy":
        per_sample = -(T * np.log(H)).sum(axis=1)
    elif name == "binary_cross_entropy":
        per_sample = -(T * np.log(H) + (1 - T) * np.log(1 - H)).sum(axis=1)
    elif name == "half_squared_error":
        per_sample = ((H - T) ** 2).sum(axis=1) / 2
    else:
        per_sample = ((H - T) ** 2).sum(axis=1)
    if w is not None:
        per_sample = per_sample * w.astype(LD)
    J = per_sample.mean()
    if net.l2:
        J = J + net.l2 / LD(2) * sum((params[f"W{k}"] ** 2).sum() for k in range(1, len(net.layers) + 1))
    return J


H_STEP = LD("1e-5")


def _fourth_order(f, array, h=H_STEP):
    """(-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / 12h for every entry of a long double array (changed in
    place, restored): truncation ~h^4 f^(5), rounding ~eps/h ~ 1e-14."""
    grad = np.zeros(array.shape, LD)
    for index in np.ndindex(array.shape):
        saved = array[index]
        values = []
        for step in (2, 1, -1, -2):
            array[index] = saved + step * h
            values.append(f())
        array[index] = saved
        grad[index] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * h)
    return grad


@needs_extended
@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_gradients_match_fourth_order_central_differences(case):
    net = case["net"]
    running = [array.copy() for _, array in net.running_statistics()]
    J, analytic = _analytic(case)
    masks = _dropout_masks(net)
    params = {name: array.astype(LD) for name, array in net.parameters()}

    def objective():
        return extended_objective(net, case["X"], case["T"], case["w"], masks, params)

    assert J == pytest.approx(float(objective()), rel=1e-13)
    numeric = {name: _fourth_order(objective, array).astype(np.float64) for name, array in params.items()}
    assert any(name.startswith("gamma") for name in numeric)
    _assert_close(analytic, numeric, 1e-10, case["name"], "central difference")
    # the analytic side left the running statistics alone: they are changed by training steps only
    for before, (_, after) in zip(running, net.running_statistics()):
        np.testing.assert_array_equal(before, after)


def test_public_gradcheck_covers_gamma_and_beta():
    for case in CASES[:3]:
        result = hg.gradcheck(case["net"], case["X"], case["T"], sample_weight=case["w"], dropout_seed=case["seed"])
        assert any(name.startswith("gamma") for name in result) and any(name.startswith("beta") for name in result)
        assert result.passed(1e-6), str(result)


# ---------------------------------------------------------------------- PyTorch autograd
try:
    import torch
    F = torch.nn.functional
except ImportError:  # the torch tests skip; the rest of the file still runs
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch (pip install handgrad[test])")


def torch_activation(name, Z):
    table = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda z: z, "relu": F.relu,
             "softplus": lambda z: F.softplus(z, threshold=40.0), "gelu": lambda z: F.gelu(z, approximate="tanh"),
             "silu": F.silu, "elu": F.elu, "softmax": lambda z: F.softmax(z, dim=1)}
    return table[name](Z)


def torch_objective(net, X, T, w, masks, params):
    """J from the definitions: Z = H W (+ b), F.batch_norm / F.layer_norm, the activation, dropout's masks."""
    H = torch.tensor(X)
    for k, layer in enumerate(net.layers, 1):
        Z = H @ params[f"W{k}"]
        if layer.b is not None:
            Z = Z + params[f"b{k}"]
        if layer.norm is not None and layer.norm.kind == "batch":
            Z = F.batch_norm(Z, None, None, params[f"gamma{k}"], params[f"beta{k}"], training=True, eps=1e-5)
        elif layer.norm is not None:
            Z = F.layer_norm(Z, (layer.n_out,), params[f"gamma{k}"], params[f"beta{k}"], eps=1e-5)
        H = torch_activation(layer.activation.name, Z)
        if masks.get(k) is not None:
            H = H * torch.tensor(masks[k])
    Tt = torch.tensor(np.asarray(net.check_targets(T, X.shape[0])))
    name = net.loss_fn.name
    if name == "cross_entropy":
        per_sample = -(Tt * torch.log(H)).sum(1)
    elif name == "binary_cross_entropy":
        per_sample = -(Tt * torch.log(H) + (1 - Tt) * torch.log(1 - H)).sum(1)
    elif name == "half_squared_error":
        per_sample = 0.5 * ((H - Tt) ** 2).sum(1)
    else:
        per_sample = ((H - Tt) ** 2).sum(1)
    if w is not None:
        per_sample = per_sample * torch.tensor(w)
    J = per_sample.mean()
    if net.l2:
        J = J + 0.5 * net.l2 * sum((params[f"W{k}"] ** 2).sum() for k in range(1, len(net.layers) + 1))
    return J


TORCH_CASES = CASES + [make_norm_case(i, ["relu", "elu", "tanh", "softmax"]) for i in range(15, 24)]


@needs_torch
@pytest.mark.parametrize("case", TORCH_CASES, ids=[case["name"] for case in TORCH_CASES])
def test_gradients_match_torch_autograd(case):
    net = case["net"]
    J, analytic = _analytic(case)
    params = {name: torch.tensor(array.copy(), requires_grad=True) for name, array in net.parameters()}
    J_torch = torch_objective(net, case["X"], case["T"], case["w"], _dropout_masks(net), params)
    J_torch.backward()
    assert J == pytest.approx(J_torch.item(), rel=1e-12)
    _assert_close(analytic, {name: p.grad.numpy() for name, p in params.items()}, 1e-10, case["name"], "torch")


# ---------------------------------------------------------------------- training steps, running statistics
def _torch_twin(net):
    """torch.nn.Sequential of Linear, BatchNorm1d / LayerNorm and activations with net's weights."""
    modules = []
    for layer in net.layers:
        linear = torch.nn.Linear(layer.n_in, layer.n_out, bias=layer.b is not None).double()
        linear.weight.data = torch.tensor(layer.W.T.copy())
        if layer.b is not None:
            linear.bias.data = torch.tensor(layer.b.copy())
        modules.append(linear)
        if layer.norm is not None:
            norm = (torch.nn.BatchNorm1d if layer.norm.kind == "batch" else torch.nn.LayerNorm)(layer.n_out).double()
            norm.weight.data = torch.tensor(layer.norm.gamma.copy())
            norm.bias.data = torch.tensor(layer.norm.beta.copy())
            modules.append(norm)
        if layer is not net.layers[-1]:
            modules.append({"relu": torch.nn.ReLU(), "tanh": torch.nn.Tanh()}[layer.activation.name])
    return torch.nn.Sequential(*modules)


@needs_torch
@pytest.mark.parametrize("layers", [["6:relu:batchnorm", "5:tanh:batchnorm", "3:softmax"],
                                    ["6:tanh:layernorm", "5:relu:batchnorm", "3:softmax"]])
def test_k_sgd_steps_match_torch_running_statistics_and_eval_outputs(layers):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 4)) * 2 + 1
    y = rng.integers(0, 3, size=40)
    net = hg.MLP(4, layers, seed=1)
    twin = _torch_twin(net)
    sgd = torch.optim.SGD(twin.parameters(), lr=0.1)
    batch, epochs = 8, 3  # k = 15 steps
    net.fit(X, y, epochs=epochs, batch_size=batch, optimizer="sgd", learning_rate=0.1, shuffle=False, verbose=False)
    twin.train()
    for _ in range(epochs):
        for start in range(0, 40, batch):
            sgd.zero_grad()
            F.cross_entropy(twin(torch.tensor(X[start:start + batch])), torch.tensor(y[start:start + batch])).backward()
            sgd.step()
    torch_norms = [m for m in twin if isinstance(m, torch.nn.BatchNorm1d)]
    ours = [layer.norm for layer in net.layers if layer.norm is not None and layer.norm.kind == "batch"]
    assert len(ours) == len(torch_norms) >= 1
    for norm, torch_norm in zip(ours, torch_norms):
        np.testing.assert_allclose(norm.running_mean, torch_norm.running_mean.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(norm.running_var, torch_norm.running_var.numpy(), rtol=1e-10, atol=1e-12)
        assert not np.allclose(norm.running_var, 1.0)  # they did move
    twin.eval()
    X_test = rng.normal(size=(7, 4))
    with torch.no_grad():
        expected = F.softmax(twin(torch.tensor(X_test)), dim=1).numpy()
    np.testing.assert_allclose(net.predict_proba(X_test), expected, rtol=1e-9, atol=1e-12)
    # inference mode does not depend on the batch: one sample alone gives the same output
    np.testing.assert_allclose(net.predict_proba(X_test[:1]), expected[:1], rtol=1e-9, atol=1e-12)


@needs_torch
def test_batch_norm_layer_in_inference_mode_matches_torch_eval_and_its_backward():
    rng = np.random.default_rng(0)
    layer = BatchNorm(5)
    layer.running_mean[...] = rng.normal(size=5)
    layer.running_var[...] = rng.uniform(0.5, 2, size=5)
    layer.gamma[...] = rng.normal(size=5)
    torch_layer = torch.nn.BatchNorm1d(5).double().eval()
    torch_layer.running_mean.data = torch.tensor(layer.running_mean.copy())
    torch_layer.running_var.data = torch.tensor(layer.running_var.copy())
    torch_layer.weight.data = torch.tensor(layer.gamma.copy())
    X, dY = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    Xt = torch.tensor(X, requires_grad=True)
    Yt = torch_layer(Xt)
    Yt.backward(torch.tensor(dY))
    np.testing.assert_allclose(layer.forward(X, INFERENCE), Yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.backward(dY.copy()), Xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.dgamma, torch_layer.weight.grad.numpy(), rtol=1e-12)


# ---------------------------------------------------------------------- modes
def test_only_training_steps_change_the_running_statistics():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(12, 3)), rng.integers(0, 2, size=12)
    net = hg.MLP(3, ["4:relu:batchnorm", "2:softmax"], seed=0)
    saved = [array.copy() for _, array in net.running_statistics()]

    def unchanged():
        return all(np.array_equal(a, b) for a, (_, b) in zip(saved, net.running_statistics()))

    net.loss_and_grad(X, y)
    hg.gradcheck(net, X, y)
    net.forward_backward(X, y)
    net.predict(X)
    net.loss(X, y)
    net.loss(X, y, batch_statistics=False)
    assert unchanged()
    net.backprop(net.check_inputs(X), net.check_targets(y, 12), training=True)  # a training step's pass
    assert not unchanged()


def test_loss_uses_batch_statistics_unless_asked_for_the_running_ones():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(10, 3)) + 3, rng.integers(0, 2, size=10)
    net = hg.MLP(3, ["4:tanh:batchnorm", "2:softmax"], seed=0)
    J, _ = net.loss_and_grad(X, y)
    assert net.loss(X, y) == J
    # running statistics still at 0 and 1, while the batch's mean is near 3: a different J
    assert net.loss(X, y, batch_statistics=False) != pytest.approx(J, rel=1e-3)


def test_batch_norm_gradient_is_orthogonal_to_shifts_and_scalings_of_each_column():
    """sum_n dZ_nj = 0 and sum_n dZ_nj xhat_nj = (gamma/s) dgamma eps/(var + eps), zero but for eps
    (derivations.md): the output ignores a column's shift (and, but for eps, its scale), so a bias before the
    norm would get db = 0, which is why the layer drops it."""
    rng = np.random.default_rng(9)
    layer = BatchNorm(4)
    layer.gamma[...] = rng.normal(size=4)
    X = rng.normal(size=(6, 4)) * 2 + 1
    layer.forward(X, OBJECTIVE)
    dZ = layer.backward(rng.normal(size=(6, 4)))
    np.testing.assert_allclose(dZ.sum(axis=0), 0, atol=1e-14)
    eps_part = layer.gamma / layer.std[0] * layer.dgamma * layer.eps / (layer.var[0] + layer.eps)
    np.testing.assert_allclose((dZ * layer.xhat).sum(axis=0), eps_part, rtol=1e-8, atol=1e-16)
    assert np.abs(dZ).max() > 0.1


def test_mode_is_not_a_bool():
    with pytest.raises(TypeError, match="three switches"):
        bool(TRAINING)
    assert OBJECTIVE.batch_statistics and not OBJECTIVE.update_running and not OBJECTIVE.dropout


# ---------------------------------------------------------------------- the wrong derivations fail
def _wrong_backward(version):
    def backward(self, dY, need_dX=True):
        b = self._current
        N = dY.shape[0]
        np.sum(dY, axis=0, out=self.dbeta)
        np.sum(dY * b.xhat, axis=0, out=self.dgamma)
        scale = self.gamma / b.std
        if version == "constants":
            return dY * scale
        if version == "mean only":
            return (dY - self.dbeta / N) * scale
        return (dY - b.xhat * self.dgamma / N) * scale  # variance only
    return backward


@pytest.mark.parametrize("version", ["constants", "mean only", "variance only"])
def test_each_common_wrong_backward_fails_the_gradient_check(monkeypatch, version):
    rng = np.random.default_rng(4)
    net = hg.MLP(3, ["5:tanh:batchnorm", "2:softmax"], seed=0)
    X, y = rng.normal(size=(8, 3)), rng.integers(0, 2, size=8)
    assert hg.gradcheck(net, X, y).max_error < 1e-6
    monkeypatch.setattr(BatchNorm, "backward", _wrong_backward(version))
    result = hg.gradcheck(net, X, y)
    assert result["W1"] > 1e-2  # wrong by the size of the gradient itself
    assert result["gamma1"] < 1e-6 and result["W2"] < 1e-6  # only what lies below the norm is wrong


# ---------------------------------------------------------------------- bad input
def test_batch_norm_in_training_on_one_sample_is_a_clear_error():
    net = hg.MLP(3, ["4:relu:batchnorm", "1:sigmoid"], seed=0)
    with pytest.raises(DataError, match="at least 2 samples per batch"):
        net.loss_and_grad([[1.0, 2.0, 3.0]], [1])
    with pytest.raises(DataError, match="at least 2 samples"):
        BatchNorm(3).forward(np.ones((1, 3)), TRAINING)
    assert np.isfinite(net.predict_proba([[1.0, 2.0, 3.0]])).all()  # inference works on one sample
    layer_net = hg.MLP(3, ["4:relu:layernorm", "1:sigmoid"], seed=0)
    J, _ = layer_net.loss_and_grad([[1.0, 2.0, 3.0]], [1])  # layer norm does not mind
    assert np.isfinite(J)


@pytest.mark.parametrize("spec, message", [
    ({"size": 4, "activation": "relu", "norm": "batch", "bias": True}, "has no bias"),
    ({"size": 4, "activation": "relu", "norm": "group"}, "'batch', 'layer'"),
    ({"size": 4, "activation": "relu", "normalization": "batch"}, "'size', 'activation', 'norm', 'bias'"),
    ({"size": 4, "activation": "relu", "bias": "yes"}, "True or False"),
    ("4:relu:groupnorm", "'batchnorm' or 'layernorm'"),
    ("4:relu:batchnorm:extra", "size:activation:norm"),
])
def test_spec_errors_name_the_valid_choices(spec, message):
    with pytest.raises(ConfigError, match=message):
        hg.MLP(3, [spec, (1, "sigmoid")])


def test_norm_on_the_output_layer_is_refused():
    with pytest.raises(ConfigError, match="output layer"):
        hg.MLP(3, ["4:relu", "2:softmax:batchnorm"])


def test_spellings_build_the_same_network():
    a = hg.MLP(3, ["4:relu:batchnorm", "3:tanh:layernorm", "1:sigmoid"], seed=0)
    b = hg.MLP(3, [{"size": 4, "activation": "relu", "norm": "batch"},
                   {"size": 3, "activation": "tanh", "norm": "layer", "bias": False}, (1, "sigmoid")], seed=0)
    c = hg.MLP(3, "4:relu:batchnorm,3:tanh:layernorm,1:sigmoid", seed=0)
    for net in (b, c):
        assert [name for name, _, _ in net.layout] == [name for name, _, _ in a.layout]
        np.testing.assert_array_equal(net.params, a.params)
    assert [name for name, _, _ in a.layout] == ["W1", "W2", "W3", "gamma1", "beta1", "gamma2", "beta2", "b3"]
    assert a.layers[0].b is None and a.layers[0].norm.kind == "batch" and a.layers[1].norm.kind == "layer"
    assert a.n_weights == 3 * 4 + 4 * 3 + 3
    assert "'4:relu:batchnorm', '3:tanh:layernorm', (1, 'sigmoid')" in repr(a)


def test_gamma_and_beta_are_not_penalized():
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(6, 3)), rng.integers(0, 2, size=6)
    plain = hg.MLP(3, ["4:tanh:batchnorm", "2:softmax"], seed=0)
    penalized = hg.MLP(3, ["4:tanh:batchnorm", "2:softmax"], seed=0, l2=0.5, l1=0.1)
    plain.loss_and_grad(X, y)
    penalized.loss_and_grad(X, y)
    for name in ("gamma1", "beta1"):
        np.testing.assert_array_equal(dict(plain.gradients())[name], dict(penalized.gradients())[name])
    assert penalized.regularization() == pytest.approx(0.25 * np.sum(penalized.params[:penalized.n_weights] ** 2)
                                                       + 0.1 * np.abs(penalized.params[:penalized.n_weights]).sum())


# ---------------------------------------------------------------------- with the rest of the library
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"])
def test_every_optimizer_trains_a_norm_network(optimizer):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(64, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    net = hg.MLP(2, ["16:relu:batchnorm", "8:tanh:layernorm", "2:softmax"], seed=0)
    before = net.loss(X, y)
    history = net.fit(X, y, epochs=15, batch_size=16, optimizer=optimizer, learning_rate=0.01 if "adam" in optimizer
                      or optimizer == "rmsprop" else 0.1, verbose=False, seed=0)
    assert history.stop_reason == "completed"
    assert net.loss(X, y) < before


def test_dropout_and_batch_norm_train_in_float32():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(48, 3)).astype(np.float32)
    y = (X.sum(axis=1) > 0).astype(int)
    net = hg.MLP(3, ["8:relu:batchnorm", "8:relu:layernorm", "1:sigmoid"], dropout=0.2, seed=0, dtype="float32")
    net.fit(X, y, epochs=5, batch_size=16, learning_rate=0.1, verbose=False, seed=0)
    for _, array in list(net.parameters()) + list(net.gradients()) + net.running_statistics():
        assert array.dtype == np.float32
    layer = net.layers[0].norm
    assert layer.xhat.dtype == np.float32 and layer.std.dtype == np.float32
    assert net.predict_proba(X).dtype == np.float32
    assert np.isfinite(net.params).all()


@needs_torch
def test_layer_norm_layer_alone_against_torch():
    rng = np.random.default_rng(8)
    layer = LayerNorm(6)
    layer.gamma[...] = rng.normal(size=6)
    layer.beta[...] = rng.normal(size=6)
    X, dY = rng.normal(size=(4, 6)) * 3, rng.normal(size=(4, 6))
    torch_layer = torch.nn.LayerNorm(6).double()
    torch_layer.weight.data = torch.tensor(layer.gamma.copy())
    torch_layer.bias.data = torch.tensor(layer.beta.copy())
    Xt = torch.tensor(X, requires_grad=True)
    Yt = torch_layer(Xt)
    Yt.backward(torch.tensor(dY))
    np.testing.assert_allclose(layer.forward(X), Yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.backward(dY.copy()), Xt.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(layer.inference(X), Yt.detach().numpy(), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------- model files and checkpoints
def _trained_norm_net(**options):
    rng = np.random.default_rng(10)
    X = rng.normal(size=(60, 3)) * 2 + 1
    y = (X[:, 0] > X[:, 1]).astype(int)
    net = hg.MLP(3, ["6:relu:batchnorm", "5:tanh:layernorm", "2:softmax"], seed=0, **options)
    return net, X, y


def test_model_file_round_trip_keeps_gamma_beta_and_running_statistics(tmp_path):
    net, X, y = _trained_norm_net()
    net.fit(X, y, epochs=3, batch_size=12, verbose=False, seed=0)
    path = tmp_path / "norm.npz"
    net.save(path)
    stored = np.load(path, allow_pickle=False)  # plain .npy members, nothing to unpickle
    assert {"gamma1", "beta1", "gamma2", "beta2", "running_mean1", "running_var1"} <= set(stored.files)
    assert "running_mean2" not in stored.files  # layer norm keeps no running statistics
    loaded = hg.load(path)
    np.testing.assert_array_equal(loaded.params, net.params)
    for (name, a), (other, b) in zip(loaded.running_statistics(), net.running_statistics()):
        assert name == other
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
    assert loaded.layers[0].norm.kind == "batch" and loaded.layers[1].norm.kind == "layer"


def test_model_file_without_the_running_statistics_is_refused(tmp_path):
    from handgrad.errors import ModelFileError
    from handgrad.io import write_archive

    net, _, _ = _trained_norm_net()
    record = {"kind": "handgrad.MLP", "handgrad_version": hg.__version__, "config": net.config(), "user": {}}
    write_archive(tmp_path / "partial.npz", dict(net.parameters()), record)
    with pytest.raises(ModelFileError, match="lacks parameter running_mean1"):
        hg.load(tmp_path / "partial.npz")


def test_resume_with_batch_norm_is_bit_identical(tmp_path):
    path = str(tmp_path / "ck.hgz")
    args = dict(epochs=4, batch_size=16, optimizer="adam", learning_rate=0.01, validation_split=0.2, seed=7,
                verbose=False)
    straight, X, y = _trained_norm_net(dropout=0.2)
    full = straight.fit(X, y, **args)
    first, _, _ = _trained_norm_net(dropout=0.2)
    first.fit(X, y, checkpoint=path, callbacks=[lambda epoch, logs: epoch == 2], **args)
    again = hg.MLP(3, ["6:relu:batchnorm", "5:tanh:layernorm", "2:softmax"], seed=99, dropout=0.2)
    history = again.fit(X, y, checkpoint=path, resume=path, **args)
    np.testing.assert_array_equal(again.params, straight.params)
    for (_, a), (_, b) in zip(again.running_statistics(), straight.running_statistics()):
        np.testing.assert_array_equal(a, b)
    assert history.loss == full.loss and history.val_loss == full.val_loss


# ---------------------------------------------------------------------- PyTorch exchange
@needs_torch
def test_to_torch_and_back_with_norms_in_eval_and_train_mode():
    from handgrad.torch_io import from_torch, to_torch

    net, X, y = _trained_norm_net()
    net.fit(X, y, epochs=2, batch_size=12, verbose=False, seed=0)
    seq = to_torch(net)
    kinds = [type(module).__name__ for module in seq]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "LayerNorm", "Tanh", "Linear", "Softmax"]
    assert seq[0].bias is None and seq[3].bias is None
    np.testing.assert_array_equal(seq[1].running_var.numpy(), net.layers[0].norm.running_var)
    seq.eval()
    np.testing.assert_allclose(seq(torch.tensor(X)).detach().numpy(), net.predict_proba(X), rtol=1e-12, atol=1e-15)
    seq.train()  # batch statistics: the objective J of loss_and_grad
    J, _ = net.loss_and_grad(X, y)
    J_torch = F.nll_loss(torch.log(seq(torch.tensor(X))), torch.tensor(y)).item()
    assert J == pytest.approx(J_torch, rel=1e-12)
    back = from_torch(to_torch(net))
    np.testing.assert_array_equal(back.params, net.params)
    for (_, a), (_, b) in zip(back.running_statistics(), net.running_statistics()):
        np.testing.assert_array_equal(a, b)


@needs_torch
def test_from_torch_folds_a_linear_bias_into_the_running_mean():
    from handgrad.torch_io import from_torch

    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)).double()
    model.train()
    for _ in range(4):
        model(torch.randn(8, 3, dtype=torch.float64) * 2 + 1)  # running statistics move
    model.eval()
    net = from_torch(model)
    assert net.layers[0].b is None and net.layers[0].norm.kind == "batch"
    X = np.random.default_rng(0).normal(size=(6, 3))
    np.testing.assert_allclose(net.forward(X), model(torch.tensor(X)).detach().numpy(), rtol=1e-12, atol=1e-14)


@needs_torch
@pytest.mark.parametrize("modules, words", [
    (lambda nn: [nn.Linear(3, 4), nn.BatchNorm1d(4, eps=1e-3), nn.ReLU(), nn.Linear(4, 1)], "eps=1e-5"),
    (lambda nn: [nn.Linear(3, 4), nn.BatchNorm1d(4, affine=False), nn.ReLU(), nn.Linear(4, 1)], "affine=True"),
    (lambda nn: [nn.Linear(3, 4), nn.LayerNorm(4), nn.ReLU(), nn.Linear(4, 1)], "Linear\\(bias=False\\)"),
    (lambda nn: [nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 1)], "before its activation"),
])
def test_from_torch_refuses_norms_it_cannot_represent(modules, words):
    from handgrad.torch_io import from_torch

    with pytest.raises(ConfigError, match=words):
        from_torch(torch.nn.Sequential(*modules(torch.nn)).double())


# ---------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("dtype, opset", [("float64", 17), ("float64", 13), ("float32", 17)])
def test_onnx_export_with_norms_equals_predict_in_onnxruntime(dtype, opset):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from handgrad.onnx_export import build_model

    net, X, y = _trained_norm_net(dtype=dtype)
    net.fit(X, y, epochs=2, batch_size=12, verbose=False, seed=0)
    model = build_model(net, opset=opset)
    ops = [node.op_type for node in model.graph.node]
    assert "BatchNormalization" in ops
    assert ("LayerNormalization" in ops) == (opset >= 17)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    X_test = np.random.default_rng(1).normal(size=(9, 3)).astype(dtype)
    out = session.run(None, {"X": X_test})[0]
    tolerance = 1e-10 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(out, net.predict_proba(X_test), rtol=tolerance, atol=tolerance)
    np.testing.assert_array_equal(out.argmax(axis=1), net.predict(X_test))


def test_copy_and_pickle_keep_the_views_and_the_running_statistics():
    import pickle

    net, X, y = _trained_norm_net()
    net.fit(X, y, epochs=2, batch_size=12, verbose=False, seed=0)
    for other in (net.copy(), pickle.loads(pickle.dumps(net))):
        np.testing.assert_array_equal(other.predict_proba(X), net.predict_proba(X))
        assert np.shares_memory(other.layers[0].norm.gamma, other.params)
        other.layers[0].norm.gamma[...] = 2.0  # a view: the vector changes, the original does not
        offset = {name: start for name, start, _ in other.layout}["gamma1"]
        assert other.params[offset] == 2.0 and net.params[offset] != 2.0
        assert not np.shares_memory(other.params, net.params)
        assert other.running_statistics()[0][1] is not net.running_statistics()[0][1]
