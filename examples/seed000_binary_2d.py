"""Seed 000: the network [(2, ReLU), (2, ReLU), (1, Sigmoid)] with no biases and the half squared
error L = 1/2 (a3 - t)^2, trained to classify 2-vectors; the prediction is the output rounded
to {0, 1} (seed 000, section 1.4.1).

First it runs seed 000's per-element equations (3)-(11) by hand on one sample and checks them
against handgrad's batched backward pass; then it trains and prints the accuracy.

Run:  python examples/seed000_binary_2d.py
"""

import numpy as np

import handgrad as hg


def seed000_by_hand(W, x, t):
    """Seed 000's equations for one sample, element by element (bars = d's, docs/derivations.md).

    ``W`` are handgrad's weights (n_in, n_out); seed 000's w_{i j k} (layer i, unit j, input k) is W[i-1][k, j].
    """
    w1, w2, w3 = (M.T for M in W)  # rows: one unit's weight vector, as seed 000 writes them
    L1 = w1 @ x
    a1 = np.maximum(L1, 0)
    L2 = w2 @ a1
    a2 = np.maximum(L2, 0)
    L3 = w3 @ a2
    a3 = 1 / (1 + np.exp(-L3))
    a3_bar = a3 - t                                                   # (3)
    L3_bar = a3_bar * a3 * (1 - a3)                                   # (4)
    w3_bar = np.outer(L3_bar, a2)                                     # (5): w3_bar_1i = L3_bar a2_i
    a2_bar = np.array([L3_bar[0] * w3[0, i] for i in range(2)])       # (6)
    L2_bar = a2_bar * (L2 > 0)                                        # (7): theta(L2)
    w2_bar = np.array([[L2_bar[i] * a1[j] for j in range(2)] for i in range(2)])  # (8), with both indices
    a1_bar = np.array([sum(L2_bar[j] * w2[j, i] for j in range(2)) for i in range(2)])  # (9)
    L1_bar = a1_bar * (L1 > 0)                                        # (10)
    w1_bar = np.array([[L1_bar[i] * x[j] for j in range(2)] for i in range(2)])   # (11)
    return [w1_bar.T, w2_bar.T, w3_bar.T]  # back to handgrad's (n_in, n_out) layout


def make_data(rng, n):
    """Points in the plane, class 1 when the second coordinate exceeds the first: a boundary through the
    origin, which a network without biases can draw (with no biases, relu nets are positively homogeneous)."""
    X = rng.normal(size=(n, 2))
    return X, (X[:, 1] > X[:, 0]).astype(float)


def main():
    rng = np.random.default_rng(0)
    X_train, t_train = make_data(rng, 400)
    X_test, t_test = make_data(rng, 200)

    net = hg.MLP(2, [(2, "relu"), (2, "relu"), (1, "sigmoid")], loss="half_squared_error", bias=False, seed=0)
    print(net.summary())

    # Seed 000's equations, one sample, against handgrad's batched backward pass (N = 1 so no 1/N differs).
    x, t = X_train[0], t_train[0]
    by_hand = seed000_by_hand([layer.W for layer in net.layers], x, t)
    _, grads = net.loss_and_grad(x[None, :], [t])
    worst = max(float(np.abs(g - h).max()) for (g, _), h in zip(grads, by_hand))
    print(f"seed 000 equations (3)-(11) vs handgrad on one sample: max difference {worst:.1e}")
    print("gradient check on 16 samples (relative error per array):",
          {k: f"{v:.1e}" for k, v in hg.gradcheck(net, X_train[:16], t_train[:16]).items()})

    accuracy = np.mean(net.predict(X_test) == t_test)
    print(f"accuracy before training: {accuracy:.3f}")

    # With two ReLU units per layer and no biases, many initializations leave units dead (zero for every
    # input): their gradient is zero and they never recover. The usual remedy is restarts: train from
    # several initializations and keep the one with the lowest training loss.
    best = None
    for seed in range(10):
        candidate = hg.MLP(2, [(2, "relu"), (2, "relu"), (1, "sigmoid")], loss="half_squared_error",
                           bias=False, seed=seed)
        history = candidate.fit(X_train, t_train, epochs=60, batch_size=16, learning_rate=2.0, seed=0)
        print(f"  restart {seed}: training loss {history.loss[0]:.4f} -> {history.loss[-1]:.4f}")
        if best is None or history.loss[-1] < best[1].loss[-1]:
            best = (candidate, history)
        if history.loss[-1] < 0.01:
            break
    net, history = best
    print(f"training loss: {history.loss[0]:.4f} -> {history.loss[-1]:.4f}")
    accuracy = np.mean(net.predict(X_test) == t_test)
    print(f"test accuracy: {accuracy:.3f}")


if __name__ == "__main__":
    main()
