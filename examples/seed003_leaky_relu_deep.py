"""Seed 003: a deeper network of leaky ReLU layers, f(u) = u for u > 0 and 0.01 u otherwise.

It runs seed 003's Algorithm 2 (column vectors, W_k of shape (n_out, n_in), a_k = W_k h_{k-1} + b_k,
h_k = f_k(a_k)) on one sample and compares it with handgrad's batched backward pass, transposed. The
pseudocode skips f_L' at the output layer; that is right for a matched pair (here sigmoid + binary
cross-entropy, where est_lossderiv = y_est - y is already dLoss/da_L) and wrong otherwise (sigmoid +
squared error), which this shows. Then it trains the network on two interleaved spirals.

Run:  python examples/seed003_leaky_relu_deep.py
"""

import numpy as np

import handgrad as hg


def leaky(u):
    return np.where(u > 0, u, 0.01 * u)


def leaky_deriv(u):
    return np.where(u > 0, 1.0, 0.01)


def sigmoid(u):
    return 1 / (1 + np.exp(-u))


def algorithm2(Ws, bs, x, y, skip_output_derivative, loss_deriv):
    """Seed 003's backprop for one sample; returns (W_derivs, b_derivs) in its (n_out, n_in) layout."""
    fs = [leaky] * (len(Ws) - 1) + [sigmoid]
    f_derivs = [leaky_deriv] * (len(Ws) - 1) + [lambda u: sigmoid(u) * (1 - sigmoid(u))]
    hs, as_ = [x], []
    for W, b, f in zip(Ws, bs, fs):
        as_.append(W @ hs[-1] + b)       # linear step
        hs.append(f(as_[-1]))           # nonlinear step
    L = len(Ws)
    g = loss_deriv(hs[-1], y)           # est_lossderiv(y_est, y)
    W_derivs, b_derivs = [None] * L, [None] * L
    for k in range(L, 0, -1):
        if k < L or not skip_output_derivative:
            g = g * f_derivs[k - 1](as_[k - 1])     # step 1
        b_derivs[k - 1] = g                         # step 2
        W_derivs[k - 1] = np.outer(g, hs[k - 1])
        g = Ws[k - 1].T @ g                         # step 3
    return W_derivs, b_derivs


def spirals(rng, n):
    """Two interleaved spirals in the plane, labels 0 and 1."""
    labels = rng.integers(0, 2, size=n)
    radius = rng.uniform(0.2, 1.0, size=n)
    angle = 3 * np.pi * radius + np.pi * labels
    X = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)]) + 0.03 * rng.normal(size=(n, 2))
    return X, labels.astype(float)


def compare(net, x, y, skip):
    Ws = [layer.W.T for layer in net.layers]
    bs = [layer.b for layer in net.layers]
    W_derivs, _ = algorithm2(Ws, bs, x, y, skip, lambda h, t: h - t)
    _, grads = net.loss_and_grad(x[None, :], y[None, :])
    return max(float(np.abs(gW - dW.T).max()) for (gW, _), dW in zip(grads, W_derivs))


def main():
    rng = np.random.default_rng(0)
    X_train, y_train = spirals(rng, 1000)
    X_test, y_test = spirals(rng, 1000)
    layers = [(32, "leaky_relu"), (32, "leaky_relu"), (32, "leaky_relu"), (1, "sigmoid")]

    bce = hg.MLP(2, layers, loss="binary_cross_entropy", seed=0)
    squared = hg.MLP(2, layers, loss="half_squared_error", seed=0)
    x, y = X_train[0], y_train[:1]
    print("Algorithm 2 vs handgrad, one sample (max |difference| over all dW):")
    print(f"  sigmoid + binary cross-entropy, f_L' skipped as written: {compare(bce, x, y, True):.1e}")
    print(f"  sigmoid + squared error,        f_L' skipped as written: {compare(squared, x, y, True):.1e}  (wrong)")
    print(f"  sigmoid + squared error,        f_L' applied (fixed):    {compare(squared, x, y, False):.1e}")

    print(bce.summary())
    history = bce.fit(X_train, y_train, epochs=300, batch_size=32, learning_rate=0.1, seed=0)
    print(f"training loss: {history.loss[0]:.4f} -> {history.loss[-1]:.4f}")
    print(f"train accuracy: {np.mean(bce.predict(X_train) == y_train):.3f}")
    print(f"test accuracy: {np.mean(bce.predict(X_test) == y_test):.3f}")


if __name__ == "__main__":
    main()
