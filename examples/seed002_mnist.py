"""Seed 002: a 784-h-10 network, sigmoid hidden layer, softmax output, cross-entropy loss, on MNIST.

    Z1 = X W1 + b1,  A1 = sigmoid(Z1),  Z2 = A1 W2 + b2,  A2 = softmax(Z2),
    L = -(1/m) sum_ij Y_ij ln A2_ij,    dL/dZ2 = (A2 - Y)/m   (seed 002's boxed result)

It reads the MNIST test set (10,000 digits) from ../shared/data/mnist-t10k relative to the repository
root, or from the folder given with --data, and splits it into 8,000 training and 2,000 test digits.
When the files are absent it says so and uses generated 784-feature data instead.

Run:  python examples/seed002_mnist.py [--data FOLDER] [--samples N] [--epochs E]
(HANDGRAD_EXAMPLE_FAST=1 in the environment makes it small, for the tests.)
"""

import argparse
import gzip
import os
from pathlib import Path

import numpy as np

import handgrad as hg

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "mnist-t10k"


def read_idx(path):
    """An IDX file (the MNIST format): big-endian magic 0x0000 08 NDIM, then NDIM uint32 sizes, then uint8 data."""
    with gzip.open(path, "rb") as file:
        data = file.read()
    magic = int.from_bytes(data[:4], "big")
    if magic >> 8 != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x}).")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {int(np.prod(shape))} values for shape {shape}, found {array.size}.")
    return array.reshape(shape)


def load_mnist(folder):
    """(X, labels): X of shape (N, 784) scaled to [0, 1], labels of shape (N,) in 0..9; None when absent."""
    folder = Path(folder)
    images = folder / "t10k-images-idx3-ubyte.gz"
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        return None
    X = read_idx(images).reshape(-1, 28 * 28).astype(np.float64) / 255.0
    return X, read_idx(labels).astype(np.int64)


def generated_digits(rng, n):
    """Stand-in data of MNIST's shape: 10 random 784-pixel prototypes plus noise."""
    prototypes = rng.random((10, 784))
    labels = rng.integers(0, 10, size=n)
    X = np.clip(prototypes[labels] + 0.5 * rng.normal(size=(n, 784)), 0, 1)
    return X, labels


def main(argv=None):
    fast = os.environ.get("HANDGRAD_EXAMPLE_FAST") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding the t10k IDX files")
    parser.add_argument("--samples", type=int, default=1000 if fast else 10000, help="digits to use in all")
    parser.add_argument("--epochs", type=int, default=2 if fast else 15)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    data = load_mnist(args.data)
    if data is None:
        print(f"note: MNIST not found in {args.data}; using generated 784-feature data instead.")
        X, labels = generated_digits(rng, args.samples)
    else:
        X, labels = data
        print(f"MNIST t10k: {X.shape[0]} digits of {X.shape[1]} pixels from {args.data}")
    order = rng.permutation(X.shape[0])[: args.samples]
    X, labels = X[order], labels[order]
    n_train = int(0.8 * len(X))
    X_train, y_train, X_test, y_test = X[:n_train], labels[:n_train], X[n_train:], labels[n_train:]

    net = hg.MLP(784, [(args.hidden, "sigmoid"), (10, "softmax")], loss="cross_entropy", seed=0)
    print(net.summary())
    print(f"closed form dL/dZ2 = (A2 - Y)/m in use: {net.closed_form}")
    # Integer labels are accepted and turned into one-hot rows Y.
    history = net.fit(X_train, y_train, epochs=args.epochs, batch_size=32, learning_rate=0.5, seed=0)
    print("training loss per epoch: " + " ".join(f"{value:.3f}" for value in history.loss))
    train_accuracy = np.mean(net.predict(X_train) == y_train)
    test_accuracy = np.mean(net.predict(X_test) == y_test)
    print(f"train accuracy: {train_accuracy:.3f}")
    print(f"test accuracy: {test_accuracy:.3f} on {len(y_test)} held-out digits")


if __name__ == "__main__":
    main()
