"""Test accuracy and training time on real MNIST digits: handgrad's recipe next to scikit-learn and PyTorch.

Data: the 10,000-image MNIST test set in ../shared/data/mnist-t10k (gzipped IDX), split with
``p = np.random.default_rng(0).permutation(10000)``: train on p[:8000], test on p[8000:];
pixels scaled to [0, 1]. Contenders, one after the other on the same split and machine:

  handgrad                   the recommended recipe (handgrad.recipes.image_recipe): the training images
                             plus their 1-pixel shifts (shifted_copies, 40,000 rows), 784-512-256-10
                             ReLU, dropout 0.2, AdamW (wd 0.01), one-cycle (peak 2e-3), float32, batch 128
  handgrad_batchnorm         the recipe with batch normalization in both hidden layers (Z = X W, then batch
                             norm, then ReLU; no hidden biases): everything else as the recipe
  handgrad_sklearn_defaults  handgrad with MLPClassifier's defaults: (100,) ReLU, Adam, lr 1e-3,
                             batch 200, l2 = alpha / batch (see below), Glorot-uniform init, float64, up to 200 epochs
                             with scikit-learn's stopping rule (tol 1e-4 on the training loss,
                             n_iter_no_change 10), run as a handgrad callback
  sklearn                    MLPClassifier() with its defaults (random_state=0)
  torch                      a PyTorch CPU loop with the recipe's data, network and settings

The L2 mapping (checked in sklearn/neural_network/_multilayer_perceptron.py, _backprop): for each batch of
n_b samples scikit-learn minimizes (1/n_b) sum_i l_i + (alpha / (2 n_b)) sum_k ||W_k||^2, gradient
(A^T delta + alpha W) / n_b. handgrad's batch objective is (1/n_b) sum_i l_i + (l2 / 2) sum_k ||W_k||^2,
so the two agree with l2 = alpha / n_b = 1e-4 / 200 = 5e-7 (8000 is a multiple of 200: every batch is full).

    python benchmarks/mnist_accuracy.py            # all five, then one JSON line
    python benchmarks/mnist_accuracy.py --only handgrad

The last line of output is one JSON object {name: {"accuracy": ..., "seconds": ...}}; seconds are
training wall time only (data loading and the test-set prediction are not counted).
"""

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import handgrad as hg  # noqa: E402
from handgrad.callbacks import Callback  # noqa: E402
from handgrad.recipes import image_recipe, shifted_copies  # noqa: E402


def load_split(directory):
    """(X_train, y_train, X_test, y_test) from the gzipped IDX files, pixels in [0, 1] as float64."""
    with gzip.open(os.path.join(directory, "t10k-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(os.path.join(directory, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    p = np.random.default_rng(0).permutation(10000)
    X = images / 255.0
    return X[p[:8000]], labels[p[:8000]], X[p[8000:]], labels[p[8000:]]


def run_handgrad_recipe(X, y, Xt, yt, recipe=None, seed=0, norm=None):
    """The recipe: train on the images and their 1-pixel shifts (5 x 8000), timed from the raw split.
    ``norm`` ('batch' or 'layer') normalizes the hidden layers (predict then uses the running statistics)."""
    recipe = recipe or image_recipe(10)
    layers = recipe["layers"]
    if norm is not None:
        layers = [{"size": size, "activation": activation, "norm": norm} for size, activation in layers[:-1]] + \
            [layers[-1]]
    net = hg.MLP(784, layers, dropout=recipe["dropout"], dtype=recipe["dtype"], seed=seed)
    start = time.perf_counter()
    X5, y5 = shifted_copies(X.astype(net.dtype), y, (28, 28))
    net.fit(X5, y5, seed=seed, verbose=False, **recipe["fit"])
    seconds = time.perf_counter() - start
    return float(np.mean(net.predict(Xt) == yt)), seconds


class SklearnStoppingRule(Callback):
    """scikit-learn's rule for solver='adam' without early_stopping: stop when the training loss has not
    dropped below best - tol for more than n_iter_no_change epochs in a row."""

    def __init__(self, tol=1e-4, n_iter_no_change=10):
        self.tol, self.n_iter_no_change = tol, n_iter_no_change
        self.best, self.count = np.inf, 0

    def on_epoch_end(self, epoch, logs):
        loss = logs["loss"]
        self.count = self.count + 1 if loss > self.best - self.tol else 0
        self.best = min(self.best, loss)
        return self.count > self.n_iter_no_change


def run_handgrad_sklearn_defaults(X, y, Xt, yt, seed=0):
    # MLPClassifier(): hidden_layer_sizes=(100,), relu, adam lr 1e-3 (betas .9/.999, eps 1e-8), batch
    # min(200, n), alpha 1e-4 -> l2 = alpha / batch_size (its penalty is alpha/(2 n_batch) ||W||^2 per batch),
    # Glorot-uniform initialization (scikit-learn uses it for every activation; handgrad's "auto" is He for
    # ReLU), float64 like the data.
    net = hg.MLP(784, [(100, "relu"), (10, "softmax")], l2=1e-4 / 200, init="glorot", seed=seed)
    start = time.perf_counter()
    history = net.fit(X, y, epochs=200, batch_size=200, optimizer="adam", learning_rate=1e-3, seed=seed,
                      callbacks=[SklearnStoppingRule()], verbose=False)
    seconds = time.perf_counter() - start
    return float(np.mean(net.predict(Xt) == yt)), seconds, len(history.epochs)


def run_sklearn(X, y, Xt, yt, seed=0):
    import warnings

    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(random_state=seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    seconds = time.perf_counter() - start
    return float(np.mean(model.predict(Xt) == yt)), seconds, model.n_iter_


def run_torch(X, y, Xt, yt, recipe=None, seed=0):
    import torch

    recipe = recipe or image_recipe(10)
    torch.manual_seed(seed)
    fit = recipe["fit"]
    sizes = [784] + [size for size, _ in recipe["layers"]]
    modules = []
    for k in range(len(sizes) - 1):
        modules.append(torch.nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            modules += [torch.nn.ReLU(), torch.nn.Dropout(recipe["dropout"][k])]
    model = torch.nn.Sequential(*modules)
    start = time.perf_counter()
    X5, y5 = shifted_copies(X.astype(np.float32), y, (28, 28))  # the same data as handgrad's recipe
    Xtr = torch.from_numpy(X5)
    ytr = torch.from_numpy(y5)
    opt = torch.optim.AdamW(model.parameters(), lr=fit["learning_rate"],
                            weight_decay=fit["optimizer"].weight_decay)
    steps_per_epoch = -(-len(X5) // fit["batch_size"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=fit["learning_rate"], epochs=fit["epochs"],
                                                steps_per_epoch=steps_per_epoch)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(fit["epochs"]):
        order = torch.randperm(len(X5), generator=generator)
        for i in range(0, len(X5), fit["batch_size"]):
            index = order[i:i + fit["batch_size"]]
            opt.zero_grad()
            loss = loss_fn(model(Xtr[index]), ytr[index])
            loss.backward()
            opt.step()
            sched.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        predictions = model(torch.tensor(Xt, dtype=torch.float32)).argmax(1).numpy()
    return float(np.mean(predictions == yt)), seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "mnist-t10k"))
    parser.add_argument("--only", nargs="*", default=None,
                        choices=["handgrad", "handgrad_batchnorm", "handgrad_sklearn_defaults", "sklearn", "torch"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        X, y, Xt, yt = load_split(args.data)
    except OSError as error:
        print(f"MNIST not found at {args.data} ({error}); pass --data DIR.", file=sys.stderr)
        return 1
    wanted = args.only or ["handgrad", "handgrad_batchnorm", "handgrad_sklearn_defaults", "sklearn", "torch"]
    results = {}
    for name in wanted:
        extra = ""
        if name == "handgrad":
            accuracy, seconds = run_handgrad_recipe(X, y, Xt, yt, seed=args.seed)
        elif name == "handgrad_batchnorm":
            accuracy, seconds = run_handgrad_recipe(X, y, Xt, yt, seed=args.seed, norm="batch")
        elif name == "handgrad_sklearn_defaults":
            accuracy, seconds, n = run_handgrad_sklearn_defaults(X, y, Xt, yt, seed=args.seed)
            extra = f"  ({n} epochs)"
        elif name == "sklearn":
            try:
                accuracy, seconds, n = run_sklearn(X, y, Xt, yt, seed=args.seed)
            except ImportError:
                print("sklearn: not installed, skipped")
                continue
            extra = f"  ({n} epochs)"
        else:
            try:
                accuracy, seconds = run_torch(X, y, Xt, yt, seed=args.seed)
            except ImportError:
                print("torch: not installed, skipped")
                continue
        results[name] = {"accuracy": round(accuracy, 4), "seconds": round(seconds, 2)}
        print(f"{name:<27} test accuracy {accuracy:.4f}   training {seconds:6.2f} s{extra}", flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
