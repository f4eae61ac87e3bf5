"""Seed 004: the 3-4-2 network X -> (Y1 = X W1 + b1 -> H1 = ReLU(Y1)) -> y_pred = H1 W2 + b2 -> L,
with the MSE L = (1/N) sum_ij (y_pred_ij - y_ij)^2, worked through with numbers.

The post computes everything on random data and leaves the numbers out; here the batch and the weights
are small fixed decimals, so every value below can be checked by hand. It prints the forward values, the
loss, and every gradient of the backward pass (with the post's two code errata fixed:
L = sum((y_pred - y)^2)/N, and dy_pred = 2 (y_pred - y)/N), then compares them with handgrad
(loss="mse") and with central differences, and takes a few gradient steps.

Run:  python examples/seed004_two_layer_mse.py
"""

import numpy as np

import handgrad as hg

np.set_printoptions(precision=4, suppress=True, floatmode="fixed")

# N = 2 samples, D = 3 features, 4 hidden units, K = 2 outputs (the post's sizes).
X = np.array([[1.0, 2.0, -1.0],
              [0.5, -1.0, 2.0]])
y = np.array([[1.0, 0.0],
              [0.0, 1.0]])
W1 = np.array([[0.1, -0.2, 0.3, 0.4],
               [0.5, 0.1, -0.3, 0.2],
               [-0.4, 0.3, 0.2, -0.1]])
b1 = np.array([0.1, 0.0, -0.1, 0.05])
W2 = np.array([[0.2, -0.5],
               [0.4, 0.1],
               [-0.3, 0.6],
               [0.5, 0.2]])
b2 = np.array([0.0, 0.1])


def show(name, value, note=""):
    text = np.array2string(np.asarray(value) + 0.0, prefix=" " * 12)  # + 0.0 turns -0.0 into 0.0
    print(f"{name:<10}= {text}" + (f"   {note}" if note else ""))


def main():
    N = X.shape[0]
    print("forward pass")
    Y1 = X @ W1 + b1
    H1 = np.maximum(Y1, 0)
    y_pred = H1 @ W2 + b2
    L = float(np.sum((y_pred - y) ** 2)) / N
    show("Y1", Y1, "X W1 + b1")
    show("H1", H1, "max(Y1, 0)")
    show("y_pred", y_pred, "H1 W2 + b2")
    show("L", L, "sum((y_pred - y)^2) / N")
    print(f"(the post's line 2 * np.mean(y_pred - y) would give {2 * np.mean(y_pred - y):.4f})")

    print("\nbackward pass")
    dy_pred = 2 * (y_pred - y) / N
    dH1 = dy_pred @ W2.T
    dW2 = H1.T @ dy_pred
    db2 = dy_pred.sum(axis=0)
    dY1 = dH1 * (Y1 > 0)
    dW1 = X.T @ dY1
    db1 = dY1.sum(axis=0)
    show("dy_pred", dy_pred, "2 (y_pred - y) / N   (the post's code omits the / N)")
    show("dH1", dH1, "dy_pred W2^T")
    show("dW2", dW2, "H1^T dy_pred")
    show("db2", db2, "column sums of dy_pred")
    show("dY1", dY1, "dH1 * 1(Y1 > 0)")
    show("dW1", dW1, "X^T dY1")
    show("db1", db1, "column sums of dY1")

    net = hg.MLP(3, [(4, "relu"), (2, "identity")], loss="mse")
    net.set_weights([W1, b1, W2, b2])
    J, grads = net.loss_and_grad(X, y)
    by_hand = [(dW1, db1), (dW2, db2)]
    worst = max(float(np.abs(g - h).max()) for pair, hand in zip(grads, by_hand) for g, h in zip(pair, hand))
    print(f"\nhandgrad: loss {J:.6f}; max |handgrad - by hand| over all gradients: {worst:.1e}")
    check = hg.gradcheck(net, X, y)
    print("central differences, relative error per array:", {k: f"{v:.1e}" for k, v in check.items()})

    print("\nfive gradient steps, learning rate 0.1 (the post's 1e-6 would barely move)")
    for step in range(1, 6):
        J, grads = net.loss_and_grad(X, y)
        for layer, (dW, db) in zip(net.layers, grads):
            layer.W -= 0.1 * dW
            layer.b -= 0.1 * db
        print(f"  step {step}: loss before the step {J:.6f}")
    print(f"  after: loss {net.loss(X, y):.6f}")


if __name__ == "__main__":
    main()
