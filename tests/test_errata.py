"""The seeds' errata, each proved: the formula as the seed writes it disagrees with
central differences (or with the loss it claims to compute), and the corrected
formula agrees. docs/derivations.md, section "Errata", lists each one with the
name of the test below that proves it.

The seeds use several notations; each test builds the seed's quantities from its
own symbols first, then maps them to handgrad's batch-first ones (docs/derivations.md,
"Map to the seeds' notation").
"""

import numpy as np
import pytest
from conftest import central_difference

import handgrad as hg
from handgrad.errors import DataError


# ---------------------------------------------------------------------- helpers
def close(a, b, tol=1e-6):
    """Max abs difference relative to the larger array's scale."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        return False
    scale = max(np.abs(a).max(), np.abs(b).max(), 1e-12)
    return float(np.abs(a - b).max()) / scale < tol


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax_rows(Z):
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def away_from_kinks(*arrays, margin=1e-3):
    """ReLU is not differentiable at 0: central differences straddling 0 are meaningless there."""
    return all(np.abs(a).min() > margin for a in arrays)


# ---------------------------------------------------------------------- seed 000
def seed000_network(rng):
    """Seed 000's network [(2, ReLU), (2, ReLU), (1, Sigmoid)], no biases, one sample, L = 1/2 (a3 - t)^2.

    Returns the seed's per-element weights as lists of rows: w[i][j] is neuron j's weight vector in layer i,
    i.e. seed 000's w_{i j k} = w[i][j][k], and handgrad's W_i = w[i].T (shape (n_in, n_out)).
    """
    while True:
        w = [rng.normal(size=(2, 2)), rng.normal(size=(2, 2)), rng.normal(size=(1, 2))]
        x = rng.normal(size=2)
        t = 1.0
        L1 = w[0] @ x
        a1 = np.maximum(L1, 0)
        L2 = w[1] @ a1
        if (L1 > 0).all() and (L2 > 0).all() and away_from_kinks(L1, L2):
            return w, x, t


def seed000_loss(w, x, t):
    a1 = np.maximum(w[0] @ x, 0)
    a2 = np.maximum(w[1] @ a1, 0)
    a3 = sigmoid(w[2] @ a2)
    return 0.5 * float(((a3 - t) ** 2).sum())


def seed000_bars(w, x, t, seed_bar=1.0):
    """Seed 000's equations (2)-(11), per element, with the backward pass started from L_bar = seed_bar."""
    L1 = w[0] @ x
    a1 = np.maximum(L1, 0)
    L2 = w[1] @ a1
    a2 = np.maximum(L2, 0)
    L3 = w[2] @ a2
    a3 = sigmoid(L3)
    a3_bar = seed_bar * (a3 - t)                       # (2), (3)
    L3_bar = a3_bar * a3 * (1 - a3)                    # (4)
    w3_bar = np.array([[L3_bar[0] * a2[i] for i in range(2)]])            # (5)
    a2_bar = np.array([L3_bar[0] * w[2][0, i] for i in range(2)])          # (6)
    L2_bar = a2_bar * (L2 > 0)                                              # (7)
    w2_bar = np.array([[L2_bar[i] * a1[j] for j in range(2)] for i in range(2)])  # (8), corrected: w2_bar_ij
    a1_bar = np.array([L2_bar[0] * w[1][0, i] + L2_bar[1] * w[1][1, i] for i in range(2)])  # (9)
    L1_bar = a1_bar * (L1 > 0)                                              # (10), corrected: d a_1i / d L_1i
    w1_bar = np.array([[L1_bar[i] * x[j] for j in range(2)] for i in range(2)])   # (11)
    return {"w1": w1_bar, "w2": w2_bar, "w3": w3_bar, "L1": L1, "L2": L2, "L3": L3, "a1": a1, "a2": a2}


def test_seed000_eq8_weight_bar_has_two_indices():
    """Eq. (8) ends with w_bar_2i = L_bar_2i a_1j: the left side must be w_bar_2ij (one entry per weight).

    Finite differences give a different value for each j, so no quantity indexed by i alone can be it.
    """
    rng = np.random.default_rng(0)
    w, x, t = seed000_network(rng)
    bars = seed000_bars(w, x, t)
    numeric = central_difference(lambda: seed000_loss(w, x, t), w[1])
    assert close(bars["w2"], numeric)                        # w_bar_2ij = L_bar_2i a_1j: right
    assert not np.allclose(numeric[:, 0], numeric[:, 1])     # depends on j: w_bar_2i cannot hold it
    # handgrad agrees, with W2 = w[1].T: (dW2)_{ji} = w_bar_2ij
    net = hg.MLP(2, [(2, "relu"), (2, "relu"), (1, "sigmoid")], loss="half_squared_error", bias=False)
    net.set_weights([m.T.copy() for m in w])
    _, grads = net.loss_and_grad(x[None, :], [[t]])
    assert close(grads[1][0], bars["w2"].T)


def test_seed000_eq10_uses_the_diagonal_of_the_activation_jacobian():
    """Eq. (10) writes d a_1 / d L_1i; the entry needed is d a_1i / d L_1i = theta(L_1i).

    The Jacobian d a_1 / d L_1 of an element-wise activation is diagonal: the vector d a_1 / d L_1i has one
    nonzero entry, so only a_1i contributes.
    """
    rng = np.random.default_rng(1)
    w, x, t = seed000_network(rng)
    L1 = w[0] @ x
    jacobian = np.stack([central_difference(lambda k=k: float(np.maximum(L1, 0)[k]), L1) for k in range(2)])
    assert close(jacobian, np.diag((L1 > 0).astype(float)))
    assert not close(jacobian, np.ones((2, 2)) * (L1 > 0)[None, :])  # not a full vector per L_1i
    bars = seed000_bars(w, x, t)
    assert close(bars["w1"], central_difference(lambda: seed000_loss(w, x, t), w[0]))


def test_seed000_vectorized_w3_bar_is_an_outer_product():
    """The vectorized w3_bar = L3_bar a2 only typechecks for one output neuron; in general it is the outer
    product L3_bar a2^T (shape n_out x n_in, like w3), which handgrad writes as (A2^T dZ3)^T."""
    rng = np.random.default_rng(2)
    n_out = 3
    w3 = rng.normal(size=(n_out, 2))
    a2 = np.abs(rng.normal(size=2)) + 0.1
    t = np.array([1.0, 0.0, 1.0])

    def loss():
        return 0.5 * float(((sigmoid(w3 @ a2) - t) ** 2).sum())

    a3 = sigmoid(w3 @ a2)
    L3_bar = (a3 - t) * a3 * (1 - a3)
    numeric = central_difference(loss, w3)
    with pytest.raises(ValueError):
        _ = L3_bar * a2                           # as written: shapes (3,) and (2,) do not even combine
    assert close(np.outer(L3_bar, a2), numeric)   # corrected: the outer product
    # and the one-output case of the seed: L3_bar a2 has a2's shape (2,), w3 has (1, 2): a row, L3_bar a2^T
    assert close(np.outer(L3_bar[:1], a2), central_difference(
        lambda: 0.5 * float(((sigmoid(w3[:1] @ a2) - t[:1]) ** 2).sum()), w3[:1]))


def test_seed000_backprop_starts_from_the_bar_of_vN():
    """"Set v_N = 1" must read v_bar_N = 1: the loss value v_N is whatever it is; its derivative with respect
    to itself is 1. Seeding the backward pass with the value v_N instead scales every gradient by it."""
    rng = np.random.default_rng(3)
    w, x, t = seed000_network(rng)
    loss_value = seed000_loss(w, x, t)
    numeric = central_difference(lambda: seed000_loss(w, x, t), w[0])
    assert close(seed000_bars(w, x, t, seed_bar=1.0)["w1"], numeric)
    assert not np.isclose(loss_value, 1.0)
    assert not close(seed000_bars(w, x, t, seed_bar=loss_value)["w1"], numeric)


# ---------------------------------------------------------------------- seed 001 (no errors in its formulas)
def test_seed001_formulas_agree_with_finite_differences():
    """Seed 001 is right: dJ/dW2 = dJ/do h^T + lambda W2, dJ/dW1 = dJ/dz x^T + lambda W1 (column vectors,
    W of shape (n_out, n_in)). handgrad computes the transposes, with l2 = lambda."""
    rng = np.random.default_rng(4)
    d, h, q, lam = 3, 4, 2, 0.3
    W1, W2 = rng.normal(size=(h, d)), rng.normal(size=(q, h))
    x, y = rng.normal(size=d), rng.normal(size=q)
    phi, dphi = np.tanh, lambda z: 1 - np.tanh(z) ** 2

    def J():  # l(o, y) = 1/2 ||o - y||^2, s = lambda/2 (||W1||^2 + ||W2||^2)
        o = W2 @ phi(W1 @ x)
        return 0.5 * float(((o - y) ** 2).sum()) + lam / 2 * (float((W1**2).sum()) + float((W2**2).sum()))

    z = W1 @ x
    hid = phi(z)
    dJ_do = W2 @ hid - y
    dJ_dW2 = np.outer(dJ_do, hid) + lam * W2
    dJ_dz = (W2.T @ dJ_do) * dphi(z)
    dJ_dW1 = np.outer(dJ_dz, x) + lam * W1
    assert close(dJ_dW2, central_difference(J, W2))
    assert close(dJ_dW1, central_difference(J, W1))
    net = hg.MLP(d, [(h, "tanh"), (q, "identity")], loss="half_squared_error", bias=False, l2=lam)
    net.set_weights([W1.T.copy(), W2.T.copy()])
    value, grads = net.loss_and_grad(x[None, :], y[None, :])
    assert np.isclose(value, J())
    assert close(grads[0][0], dJ_dW1.T) and close(grads[1][0], dJ_dW2.T)


# ---------------------------------------------------------------------- seed 002
def seed002_case(rng, m=5, d=4, h=3, K=3):
    X = rng.normal(size=(m, d))
    W1, b1 = rng.normal(size=(d, h)), rng.normal(size=(1, h))
    W2, b2 = rng.normal(size=(h, K)), rng.normal(size=(1, K))
    Y = np.eye(K)[rng.integers(0, K, size=m)]
    return X, Y, W1, b1, W2, b2


def seed002_loss(X, Y, W1, b1, W2, b2):
    A1 = sigmoid(X @ W1 + b1)
    A2 = softmax_rows(A1 @ W2 + b2)
    return -float((Y * np.log(A2)).sum()) / X.shape[0]


def seed002_forward(X, W1, b1, W2, b2):
    Z1 = X @ W1 + b1
    A1 = sigmoid(Z1)
    Z2 = A1 @ W2 + b2
    return Z1, A1, Z2, softmax_rows(Z2)


def test_seed002_output_is_softmax_of_Z2():
    """A^(2) = softmax(Z^(1)) must read softmax(Z^(2)): only then is A^(2) the (m, K) network output, and only
    then does the boxed dL/dZ^(2) = (A^(2) - Y)/m agree with finite differences. A^(2) is an m x K matrix whose
    rows are softmax rows (the seed's "A^(2) is a column vector" is wrong too)."""
    rng = np.random.default_rng(5)
    X, Y, W1, b1, W2, b2 = seed002_case(rng, h=3, K=3)  # h = K, so the typo even typechecks
    Z1, A1, Z2, A2 = seed002_forward(X, W1, b1, W2, b2)
    m = X.shape[0]
    Z2_var = Z2.copy()
    numeric = central_difference(lambda: -float((Y * np.log(softmax_rows(Z2_var))).sum()) / m, Z2_var)
    assert close((A2 - Y) / m, numeric)                           # corrected
    assert not close((softmax_rows(Z1) - Y) / m, numeric, 1e-2)   # as written
    assert A2.shape == (m, 3) and np.allclose(A2.sum(axis=1), 1)
    net = hg.MLP(4, [(3, "sigmoid"), (3, "softmax")])
    net.set_weights([W1, b1[0], W2, b2[0]])
    assert close(net.forward(X), A2)


def test_seed002_dW1_is_XT_dZ1():
    """dL/dW^(1) = X^T dL/dX^T must read X^T dL/dZ^(1)."""
    rng = np.random.default_rng(6)
    X, Y, W1, b1, W2, b2 = seed002_case(rng, m=4, d=4, h=4, K=3)  # m = d = h so the typo's shapes work
    Z1, A1, Z2, A2 = seed002_forward(X, W1, b1, W2, b2)
    m = X.shape[0]
    dZ2 = (A2 - Y) / m
    dZ1 = (dZ2 @ W2.T) * A1 * (1 - A1)
    dX = dZ1 @ W1.T
    numeric = central_difference(lambda: seed002_loss(X, Y, W1, b1, W2, b2), W1)
    assert close(X.T @ dZ1, numeric)               # corrected
    assert not close(X.T @ dX.T, numeric, 1e-2)    # as written
    with pytest.raises(ValueError):                # and for general shapes it does not even typecheck
        X2 = rng.normal(size=(5, 4))
        _ = X2.T @ (rng.normal(size=(5, 4))).T


def test_seed002_dW2_is_A1T_dZ2():
    """The seed never states dL/dW^(2); it is A^(1)T dL/dZ^(2) (the derivative of Z^(2) = A^(1) W^(2) + b^(2))."""
    rng = np.random.default_rng(7)
    X, Y, W1, b1, W2, b2 = seed002_case(rng)
    _, A1, _, A2 = seed002_forward(X, W1, b1, W2, b2)
    dZ2 = (A2 - Y) / X.shape[0]
    assert close(A1.T @ dZ2, central_difference(lambda: seed002_loss(X, Y, W1, b1, W2, b2), W2))


def test_seed002_dZ2_db2_is_m_stacked_identities():
    """dZ^(2)/db^(2) = I_{h x K} is wrong: dZ2_{ik}/db2_j = delta_kj for every row i, an (m, K, K) stack of
    K x K identities (h, the hidden width, has nothing to do with it). Contracting it with dL/dZ^(2) gives the
    seed's (right) column sums."""
    rng = np.random.default_rng(8)
    X, Y, W1, b1, W2, b2 = seed002_case(rng, m=5, h=3, K=4)
    m, h, K = 5, 3, 4
    A1 = sigmoid(X @ W1 + b1)
    jacobian = np.zeros((m, K, K))
    for i in range(m):
        for k in range(K):
            jacobian[i, k] = central_difference(lambda i=i, k=k: float((A1 @ W2 + b2)[i, k]), b2)[0]
    assert close(jacobian, np.broadcast_to(np.eye(K), (m, K, K)))
    assert np.eye(h, K).shape != jacobian.shape
    _, _, _, A2 = seed002_forward(X, W1, b1, W2, b2)
    dZ2 = (A2 - Y) / m
    assert close(np.einsum("ik,ikj->j", dZ2, jacobian), dZ2.sum(axis=0))
    assert close(dZ2.sum(axis=0)[None, :], central_difference(lambda: seed002_loss(X, Y, W1, b1, W2, b2), b2))


def test_seed002_closed_form_needs_target_rows_summing_to_one():
    """The step sum_k y_k a_j = a_j needs sum_k y_k = 1 (true for one-hot rows, which is why the seed's answer
    is right); the seed's reason ("y_k = 1 only when j = k") is not the condition. In general
    dL/dz_j = (a_j sum_k y_k - y_j)/m."""
    rng = np.random.default_rng(9)
    m, K = 4, 3
    Z = rng.normal(size=(m, K))
    Y = rng.random((m, K))  # rows do not sum to 1
    A = softmax_rows(Z)
    numeric = central_difference(lambda: -float((Y * np.log(softmax_rows(Z))).sum()) / m, Z)
    assert not close((A - Y) / m, numeric, 1e-2)
    assert close((A * Y.sum(axis=1, keepdims=True) - Y) / m, numeric)
    Y_normalized = Y / Y.sum(axis=1, keepdims=True)
    numeric = central_difference(lambda: -float((Y_normalized * np.log(softmax_rows(Z))).sum()) / m, Z)
    assert close((A - Y_normalized) / m, numeric)
    # handgrad uses the closed form only where it holds: it refuses such targets instead of a wrong gradient
    net = hg.MLP(2, [(K, "softmax")])
    with pytest.raises(DataError):
        net.loss_and_grad(rng.normal(size=(m, 2)), Y)


# ---------------------------------------------------------------------- seed 003
def seed003_backprop(Ws, bs, fs, dfs, x, g_out, skip_output_derivative):
    """Seed 003's Algorithm 2 for one column-vector sample; W_k of shape (n_out, n_in).

    ``g_out`` is est_lossderiv(y_est, y). With ``skip_output_derivative`` it is used as written ("if k < L");
    otherwise f_L' is applied at the output layer like at every other layer.
    """
    hs, as_ = [x], []
    for W, b, f in zip(Ws, bs, fs):
        as_.append(W @ hs[-1] + b)
        hs.append(f(as_[-1]))
    L = len(Ws)
    g = g_out(hs[-1])
    W_derivs, b_derivs = [None] * L, [None] * L
    for k in range(L, 0, -1):
        if k < L or not skip_output_derivative:
            g = g * dfs[k - 1](as_[k - 1])
        b_derivs[k - 1] = g
        W_derivs[k - 1] = np.outer(g, hs[k - 1])
        g = Ws[k - 1].T @ g
    return W_derivs, b_derivs


def leaky(u):
    return np.where(u > 0, u, 0.01 * u)


def dleaky(u):
    return np.where(u > 0, 1.0, 0.01)


def seed003_case(rng):
    sizes = [3, 5, 4, 2]
    Ws = [rng.normal(size=(sizes[k + 1], sizes[k])) for k in range(3)]
    bs = [rng.normal(size=sizes[k + 1]) for k in range(3)]
    return Ws, bs, rng.normal(size=3), np.array([1.0, 0.0])


def test_seed003_skipping_output_derivative_is_wrong_for_unmatched_pairs():
    """Algorithm 2 skips f_L' at k = L. That is right only when est_lossderiv already is dLoss/da_L, i.e. for a
    matched pair (sigmoid + binary cross-entropy, identity + squared error). For sigmoid + squared error (seed
    000's pair) the corrected step g = dLoss/dh_L * f_L'(a_L) is needed."""
    rng = np.random.default_rng(10)
    Ws, bs, x, y = seed003_case(rng)
    fs, dfs = [leaky, leaky, sigmoid], [dleaky, dleaky, lambda a: sigmoid(a) * (1 - sigmoid(a))]

    def loss():
        h = x
        for W, b, f in zip(Ws, bs, fs):
            h = f(W @ h + b)
        return 0.5 * float(((h - y) ** 2).sum())

    numeric = central_difference(loss, Ws[0])
    written, _ = seed003_backprop(Ws, bs, fs, dfs, x, lambda h: h - y, skip_output_derivative=True)
    corrected, _ = seed003_backprop(Ws, bs, fs, dfs, x, lambda h: h - y, skip_output_derivative=False)
    assert not close(written[0], numeric, 1e-2)
    assert close(corrected[0], numeric)
    # handgrad (general chain rule for this unmatched pair) gives the corrected gradient, transposed
    net = hg.MLP(3, [(5, "leaky_relu"), (4, "leaky_relu"), (2, "sigmoid")], loss="half_squared_error")
    net.set_weights([p for W, b in zip(Ws, bs) for p in (W.T.copy(), b.copy())])
    _, grads = net.loss_and_grad(x[None, :], y[None, :])
    assert close(grads[0][0], corrected[0].T)


def test_seed003_skipping_output_derivative_is_right_for_matched_pairs():
    """The other side of the same erratum: with sigmoid + binary cross-entropy, g = y_est - y is already
    dLoss/da_L, so skipping f_L' is correct (handgrad's closed form, (A - T)/N with N = 1)."""
    rng = np.random.default_rng(11)
    Ws, bs, x, y = seed003_case(rng)
    fs, dfs = [leaky, leaky, sigmoid], [dleaky, dleaky, None]

    def loss():
        h = x
        for W, b, f in zip(Ws, bs, fs):
            h = f(W @ h + b)
        return -float((y * np.log(h) + (1 - y) * np.log(1 - h)).sum())

    written, b_written = seed003_backprop(Ws, bs, fs, dfs, x, lambda h: h - y, skip_output_derivative=True)
    assert close(written[0], central_difference(loss, Ws[0]))
    assert close(b_written[2], central_difference(loss, bs[2]))


# ---------------------------------------------------------------------- seed 004
def seed004_case(rng, N=5, D=3, K=2):
    while True:
        X = rng.normal(size=(N, D))
        W1, b1 = rng.normal(size=(D, 4)), rng.normal(size=(1, 4)) * 0.1
        W2, b2 = rng.normal(size=(4, K)), rng.normal(size=(1, K)) * 0.1
        y = rng.normal(size=(N, K))
        if away_from_kinks(X @ W1 + b1):
            return X, y, W1, b1, W2, b2


def seed004_forward(X, W1, b1, W2, b2):
    Y1 = X.dot(W1) + b1
    H1 = np.maximum(Y1, 0)
    return Y1, H1, H1.dot(W2) + b2


def mse(X, y, W1, b1, W2, b2):
    """The loss seed 004 defines: L = (1/N) sum_ij (y_pred_ij - y_ij)^2."""
    y_pred = seed004_forward(X, W1, b1, W2, b2)[2]
    return float(((y_pred - y) ** 2).sum()) / X.shape[0]


def test_seed004_loss_line_is_not_the_mse():
    """``L = 2 * np.mean(y_pred - y)`` is not the MSE the post defines. Corrected:
    ``L = np.sum((y_pred - y) ** 2) / N``, which is handgrad's "mse" (note: not np.mean of the squares, which
    also divides by K). The written line can be negative, and its gradient is the constant 2/(N K)."""
    rng = np.random.default_rng(12)
    X, y, W1, b1, W2, b2 = seed004_case(rng)
    N, K = y.shape
    y_pred = seed004_forward(X, W1, b1, W2, b2)[2]
    written = 2 * np.mean(y_pred - y)
    correct = mse(X, y, W1, b1, W2, b2)
    assert not np.isclose(written, correct)
    assert np.isclose(hg.get_loss("mse").value(y_pred, y), correct)
    net = hg.MLP(3, [(4, "relu"), (2, "identity")], loss="mse")
    net.set_weights([W1, b1[0], W2, b2[0]])
    assert np.isclose(net.loss(X, y), correct)
    y_var = y_pred.copy()
    assert close(central_difference(lambda: 2 * np.mean(y_var - y), y_var), np.full((N, K), 2 / (N * K)))
    assert 2 * np.mean(y - y_pred - 10) < 0  # the written line is not even a non-negative loss


def test_seed004_dy_pred_needs_the_1_over_N():
    """``dy_pred = 2*(y_pred - y)`` is N times dL/dy_pred for L = (1/N) sum (y_pred - y)^2; the derivation in
    the post has the 2/N, the code drops the 1/N. Corrected: ``dy_pred = 2 * (y_pred - y) / N``, which is
    handgrad's mse gradient."""
    rng = np.random.default_rng(13)
    X, y, W1, b1, W2, b2 = seed004_case(rng, N=5)
    N = X.shape[0]
    y_pred = seed004_forward(X, W1, b1, W2, b2)[2]
    y_var = y_pred.copy()
    numeric = central_difference(lambda: float(((y_var - y) ** 2).sum()) / N, y_var)
    written = 2 * (y_pred - y)
    assert close(written, N * numeric)
    assert not close(written, numeric, 1e-2)
    assert close(2 * (y_pred - y) / N, numeric)
    assert close(hg.get_loss("mse").gradient(y_pred, y), numeric)


def test_seed004_code_with_fixes_matches_finite_differences_and_handgrad():
    """Seed 004's backward code with the corrected dy_pred gives all four gradients of the MSE; its boxed
    results dL/dH1 = dL/dy_pred W2^T, dL/dW2 = H1^T dL/dy_pred, dL/db2 = column sums, are right."""
    rng = np.random.default_rng(14)
    X, y, W1, b1, W2, b2 = seed004_case(rng, N=6)
    N = X.shape[0]
    Y1, H1, y_pred = seed004_forward(X, W1, b1, W2, b2)
    dy_pred = 2 * (y_pred - y) / N           # corrected line 6
    dH1 = dy_pred.dot(W2.T)
    dW2 = H1.T.dot(dy_pred)
    db2 = dy_pred.sum(axis=0)
    dY1 = dH1 * (H1 > 0)
    dW1 = X.T.dot(dY1)
    db1 = dY1.sum(axis=0)

    def loss():
        return mse(X, y, W1, b1, W2, b2)

    for analytic, param in ((dW1, W1), (db1, b1), (dW2, W2), (db2, b2)):
        assert close(np.reshape(analytic, param.shape), central_difference(loss, param))
    net = hg.MLP(3, [(4, "relu"), (2, "identity")], loss="mse")
    net.set_weights([W1, b1[0], W2, b2[0]])
    _, grads = net.loss_and_grad(X, y)
    for (gW, gb), (dW, db) in zip(grads, ((dW1, db1), (dW2, db2))):
        assert close(gW, dW) and close(gb, db)


def test_seed004_targets_need_N_rows():
    """``y = np.random.randn(2, K)`` must be ``(N, K)``: it only works because N = 2 in the post. With any other
    batch size y_pred - y does not broadcast; handgrad says so with a DataError."""
    rng = np.random.default_rng(15)
    N, D, K = 5, 3, 2
    X = rng.normal(size=(N, D))
    y = rng.normal(size=(2, K))        # as written
    y_pred = rng.normal(size=(N, K))
    with pytest.raises(ValueError):
        _ = y_pred - y
    net = hg.MLP(D, [(4, "relu"), (K, "identity")], loss="mse")
    with pytest.raises(DataError):
        net.loss(X, y)
    assert np.isfinite(net.loss(X, rng.normal(size=(N, K))))  # corrected: y of shape (N, K)


def test_seed004_learning_rate_literal():
    """``lr = le-6`` (letter l) is a NameError in Python; ``lr = 1e-6`` is meant."""
    with pytest.raises(NameError):
        exec("lr = le-6", {})
    namespace = {}
    exec("lr = 1e-6", namespace)
    assert namespace["lr"] == 1e-6
