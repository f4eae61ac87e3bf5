"""Seed 001: a one-hidden-layer network without biases, z = W1 x, h = phi(z), o = W2 h (linear output),
with L2 regularization s = lambda/2 (||W1||_F^2 + ||W2||_F^2), trained by gradient descent.

It checks seed 001's column-vector gradients dJ/dW2 = dJ/do h^T + lambda W2 and
dJ/dW1 = dJ/dz x^T + lambda W1 against handgrad's (transposed: handgrad stores W as (n_in, n_out)),
then fits a noisy 1-D regression with several lambdas: a larger lambda gives smaller weights.

Run:  python examples/seed001_l2_regression.py
"""

import numpy as np

import handgrad as hg


def seed001_gradients(W1, W2, x, y, lam):
    """Seed 001's backward pass for one example (column vectors, W of shape (n_out, n_in)), l = 1/2 ||o - y||^2."""
    z = W1 @ x
    h = np.tanh(z)
    o = W2 @ h
    dJ_do = o - y
    dJ_dW2 = np.outer(dJ_do, h) + lam * W2
    dJ_dh = W2.T @ dJ_do
    dJ_dz = dJ_dh * (1 - h**2)            # phi = tanh, phi'(z) = 1 - tanh^2 z
    dJ_dW1 = np.outer(dJ_dz, x) + lam * W1
    return dJ_dW1, dJ_dW2


def make_data(rng, n):
    x = rng.uniform(-3, 3, size=(n, 1))
    y = np.sin(x) + 0.3 * rng.normal(size=(n, 1))
    return x, y


def main():
    rng = np.random.default_rng(0)
    X_train, y_train = make_data(rng, 40)
    X_test, y_test = make_data(rng, 400)

    # One example, seed 001's formulas vs handgrad (l2 is seed 001's lambda).
    net = hg.MLP(1, [(16, "tanh"), (1, "identity")], loss="half_squared_error", bias=False, l2=0.1, seed=0)
    W1, W2 = net.layers[0].W.T, net.layers[1].W.T   # seed 001's (h, d) and (q, h)
    dW1, dW2 = seed001_gradients(W1, W2, X_train[0], y_train[0], lam=0.1)
    _, grads = net.loss_and_grad(X_train[:1], y_train[:1])
    worst = max(float(np.abs(grads[0][0] - dW1.T).max()), float(np.abs(grads[1][0] - dW2.T).max()))
    print(f"seed 001 gradients vs handgrad (transposed): max difference {worst:.1e}")

    print(f"{'lambda':>8} {'||W1||_F':>9} {'||W2||_F':>9} {'train MSE':>10} {'test MSE':>9}")
    for lam in (0.0, 0.001, 0.01, 0.1):
        net = hg.MLP(1, [(16, "tanh"), (1, "identity")], loss="half_squared_error", bias=False, l2=lam, seed=0)
        net.fit(X_train, y_train, epochs=1500, batch_size=40, learning_rate=0.1, seed=0)
        train = float(np.mean((net.forward(X_train) - y_train) ** 2))
        test = float(np.mean((net.forward(X_test) - y_test) ** 2))
        norms = [np.linalg.norm(layer.W) for layer in net.layers]
        print(f"{lam:>8g} {norms[0]:>9.3f} {norms[1]:>9.3f} {train:>10.4f} {test:>9.4f}")
    print("(noise variance 0.09: a test MSE near it is as good as a fit can be)")


if __name__ == "__main__":
    main()
