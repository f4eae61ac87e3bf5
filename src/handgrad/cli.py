"""The `handgrad` command: parses, validates, calls the library; no math here.

With no arguments it trains seed 000's kind of network, [(2, relu), (2, relu), (1, sigmoid)]
without biases... on generated 2-D data, and prints the result.
"""

import argparse
import sys

import numpy as np

from .errors import HandgradError


def _demo_data(n, seed):
    """Two Gaussian blobs in 2-D, labels 0 and 1: the binary classification of 2-vectors of seed 000."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    centers = np.array([[-1.0, -1.0], [1.0, 1.0]])
    X = centers[labels] + rng.normal(scale=0.6, size=(n, 2))
    return X, labels


def train_default(args):
    from .network import MLP

    X, y = _demo_data(400, args.seed)
    net = MLP(2, [(8, "relu"), (8, "relu"), (1, "sigmoid")], loss="binary_cross_entropy", seed=args.seed)
    history = net.fit(X[:300], y[:300], epochs=args.epochs, batch_size=16, learning_rate=0.1, seed=args.seed)
    accuracy = float((net.predict(X[300:]) == y[300:]).mean())
    print(net.summary())
    print(f"trained {args.epochs} epochs on 300 generated 2-D points: final loss {history.loss[-1]:.4f}")
    print(f"test accuracy on 100 held-out points: {accuracy:.3f}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="handgrad", description="MLPs with hand-derived backpropagation.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train", help="train a network (default: a 2-D binary classifier on generated data)")
    train.add_argument("--epochs", type=int, default=50)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=train_default)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["train"] + ([] if argv is None else list(argv)))
    try:
        return args.func(args)
    except HandgradError as error:
        if args.debug:
            raise
        print(f"handgrad: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
