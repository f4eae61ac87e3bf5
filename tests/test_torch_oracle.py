"""The generated architectures of test_gradients.py against PyTorch autograd in float64.

The torch side is written from the definitions, not from handgrad's code: the same
arrays (handgrad's W is (n_in, n_out), so Z = H @ W + b needs no transpose), torch's
own activations, and the objective

    J = (1/N) sum_i w_i l_i + (l2/2) sum_k ||W_k||_F^2 + l1 sum_k |W_k|_1.

Every gradient must agree to a relative error below 1e-10.
"""

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from conftest import N_CASES, assert_gradients_close, make_case  # noqa: E402

import handgrad as hg  # noqa: E402
from handgrad.layers import Dropout  # noqa: E402

CASES = [make_case(i) for i in range(N_CASES)]


def torch_activation(activation, Z):
    name = activation.name
    if name == "identity":
        return Z
    if name == "relu":
        return F.relu(Z)
    if name == "leaky_relu":
        return F.leaky_relu(Z, negative_slope=activation.slope)
    if name == "sigmoid":
        return torch.sigmoid(Z)
    if name == "tanh":
        return torch.tanh(Z)
    if name == "softmax":
        return F.softmax(Z, dim=1)
    if name == "softplus":
        return F.softplus(Z, beta=1.0, threshold=40.0)  # torch's default threshold 20 switches to z itself
    if name == "elu":
        return F.elu(Z, alpha=activation.alpha)
    if name == "gelu":
        return F.gelu(Z, approximate="tanh")
    if name == "silu":
        return F.silu(Z)
    if name == "exp":
        return torch.exp(Z)
    raise AssertionError(f"no torch counterpart for {name}")


def torch_per_sample_loss(loss, output, Z, A, T):
    """l_i for each row, from the logits where torch has the stable form."""
    if loss == "half_squared_error":
        return 0.5 * ((A - T) ** 2).sum(dim=1)
    if loss == "mse":
        return ((A - T) ** 2).sum(dim=1)
    if loss == "binary_cross_entropy":
        if output == "sigmoid":
            return F.binary_cross_entropy_with_logits(Z, T, reduction="none").sum(dim=1)
        return F.binary_cross_entropy(A, T, reduction="none").sum(dim=1)
    if loss == "cross_entropy":
        if output == "softmax":
            return -(T * F.log_softmax(Z, dim=1)).sum(dim=1)
        return -(T * torch.log(A)).sum(dim=1)
    if loss == "half_poisson_deviance":  # sum_k [t ln(t/a) - t + a], ln a = z after exp
        log_a = Z if output == "exp" else torch.log(A)
        return (torch.xlogy(T, T) - T * log_a - T + A).sum(dim=1)
    raise AssertionError(loss)


def torch_loss_and_grad(net, X, T, sample_weight=None, masks=None):
    """J and [(dW, db or None), ...] by torch autograd, for the parameters currently in ``net``."""
    params = []
    for layer in net.layers:
        W = torch.tensor(layer.W, dtype=torch.float64, requires_grad=True)
        b = None if layer.b is None else torch.tensor(layer.b, dtype=torch.float64, requires_grad=True)
        params.append((W, b))
    H = torch.tensor(X, dtype=torch.float64)
    last = len(net.layers) - 1
    for k, (layer, (W, b)) in enumerate(zip(net.layers, params)):
        Z = H @ W
        if b is not None:
            Z = Z + b
        A = torch_activation(layer.activation, Z)
        H = A * torch.tensor(masks[k]) if masks is not None and k < last else A
    T_torch = torch.tensor(T, dtype=torch.float64)
    losses = torch_per_sample_loss(net.loss_fn.name, net.output_activation.name, Z, A, T_torch)
    if sample_weight is not None:
        losses = losses * torch.tensor(sample_weight, dtype=torch.float64)
    J = losses.mean()
    J = J + 0.5 * net.l2 * sum((W ** 2).sum() for W, _ in params) + net.l1 * sum(W.abs().sum() for W, _ in params)
    J.backward()
    grads = [(W.grad.numpy(), None if b is None else b.grad.numpy()) for W, b in params]
    return float(J.detach()), grads


def dropout_masks(net):
    """The inverted-dropout masks of the last training-mode pass (0 or 1/(1-p) per unit), one per Dense layer
    (None where no Dropout layer follows it): each Dropout layer in ``net.sequence`` keeps its ``mask``, and
    reading them lets torch apply the very same masks."""
    masks = [None] * len(net.layers)
    k = -1
    for layer in net.sequence:
        if isinstance(layer, Dropout):
            masks[k] = None if layer.mask is None else layer.mask.copy()
        else:
            k += 1
    return masks


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_loss_and_grad_matches_torch_autograd(case):
    net = case["net"]
    T = net.check_targets(case["T"], case["X"].shape[0])  # class ids -> one-hot, as torch needs
    J, grads = net.loss_and_grad(case["X"], T, sample_weight=case["sample_weight"], dropout_seed=case["dropout_seed"])
    masks = dropout_masks(net) if case["dropout_seed"] is not None else None
    J_torch, grads_torch = torch_loss_and_grad(net, case["X"], T, case["sample_weight"], masks)
    assert J == pytest.approx(J_torch, rel=1e-12, abs=1e-15), case["name"]
    assert_gradients_close(grads, grads_torch, 1e-10, context=case["name"], expected_name="torch")


def test_oracle_is_sensitive_to_a_wrong_regularization_factor():
    """The torch objective is not trivially satisfied: dropping the 1/2 of the l2 term breaks agreement."""
    case = next(c for c in CASES if c["options"]["l2"] and c["dropout_seed"] is None)
    net = case["net"]
    T = net.check_targets(case["T"], case["X"].shape[0])
    _, grads = net.loss_and_grad(case["X"], T, sample_weight=case["sample_weight"])
    doubled = hg.MLP(**{**net.config(), "layers": [(L.n_out, L.activation) for L in net.layers], "l2": 2 * net.l2})
    doubled.set_weights(net.get_weights())
    _, grads_torch = torch_loss_and_grad(doubled, case["X"], T, case["sample_weight"])
    with pytest.raises(AssertionError, match="parameter W"):
        assert_gradients_close(grads, grads_torch, 1e-10, context="l2 doubled on the torch side")
