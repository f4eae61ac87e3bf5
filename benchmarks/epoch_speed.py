"""How fast is one training epoch, next to the matrix-multiply bound, PyTorch and scikit-learn?

Workloads: 784-256-128-10, ReLU, softmax cross-entropy, MNIST-shaped data (generated, or the shared
MNIST test images tiled), one epoch, with plain SGD (batch 32, 128, 512 in float32, 128 in float64) and
with Adam (batch 128, float32); and a small tabular network, 16-256-128-26 on generated data, batch 128,
Adam. Contenders, interleaved (A B C D, A B C D, ...) so that machine noise hits them alike:

  bound    only the matrix products one epoch needs (forward, weight gradients, input gradients
           except for the first layer), written into preallocated outputs
  handgrad net.fit(epochs=1, optimizer=...)  -- the code users run, no special path
  torch    nn.Sequential + CrossEntropyLoss + optim.SGD / optim.Adam, same thread count
  sklearn  MLPClassifier(solver="sgd", momentum=0 / solver="adam", alpha=0, max_iter=1, shuffle=False)

Reports the minimum and median over the rounds and each contender's ratio to the bound (minimum over
minimum, and the median of the per-round ratios, which cancels slow phases of a shared machine), then
single-sample predict latency and the memory a fit adds (peak RSS during fit - RSS before it,
measured in a fresh process).

    python benchmarks/epoch_speed.py                   # the full run (60,000 samples, 5 rounds)
    python benchmarks/epoch_speed.py --samples 30000 --rounds 3 --batch-sizes 128
"""

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

SIZES = (784, 256, 128, 10)
TABULAR = (16, 256, 128, 26)


def make_tabular(n, dtype, seed=0):
    """Tabular data for the 16-256-128-26 network: standard normal features, 26 classes."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, TABULAR[0])).astype(dtype)
    return X, rng.integers(0, TABULAR[-1], n), "generated"


def make_data(n, dtype, seed=0):
    """MNIST-shaped data: the shared MNIST test images tiled when present, else generated."""
    here = os.path.dirname(os.path.abspath(__file__))
    directory = os.path.join(here, "..", "..", "shared", "data", "mnist-t10k")
    rng = np.random.default_rng(seed)
    from handgrad.datasets import load_mnist
    from handgrad.errors import DataError

    try:
        images, labels = load_mnist(directory)
        images = images.reshape(len(images), -1)
        reps = -(-n // len(images))
        X = (np.tile(images, (reps, 1))[:n] / 255.0).astype(dtype)
        y = np.tile(labels.astype(np.int64), reps)[:n]
        source = "MNIST test images, tiled"
    except DataError:
        X = rng.random((n, 784), dtype=np.float64).astype(dtype)
        y = rng.integers(0, 10, n)
        source = "generated"
    return np.ascontiguousarray(X), y, source


def matmul_bound(X, dtype, batch_size, sizes=SIZES):
    """An epoch's matrix products and nothing else, into preallocated outputs."""
    rng = np.random.default_rng(0)
    W = [rng.normal(size=(a, b)).astype(dtype) * 0.01 for a, b in itertools.pairwise(sizes)]
    n = X.shape[0]

    def buffers(m):
        return ([np.empty((m, s), dtype) for s in sizes[1:]],
                [np.empty_like(w) for w in W],
                [np.empty((m, s), dtype) for s in sizes[1:-1]])

    full, short = buffers(batch_size), buffers(n % batch_size) if n % batch_size else None

    def run():
        start = time.perf_counter()
        for s in range(0, n, batch_size):
            x = X[s:s + batch_size]
            acts, grads, dxs = full if x.shape[0] == batch_size else short
            h = x
            for w, a in zip(W, acts):
                np.matmul(h, w, out=a)
                h = a
            # backward: dW_k = A_{k-1}^T dZ_k for every layer, dA_{k-1} = dZ_k W_k^T except for layer 1
            d = acts[-1]
            for k in range(len(W) - 1, -1, -1):
                inp = x if k == 0 else acts[k - 1]
                np.matmul(inp.T, d, out=grads[k])
                if k > 0:
                    np.matmul(d, W[k].T, out=dxs[k - 1])
                    d = dxs[k - 1]
        return time.perf_counter() - start

    return run


def handgrad_epoch(X, y, dtype, batch_size, optimizer="sgd", sizes=SIZES):
    import handgrad as hg

    layers = [(size, "relu") for size in sizes[1:-1]] + [(sizes[-1], "softmax")]
    net = hg.MLP(sizes[0], layers, loss="cross_entropy", seed=0, dtype=dtype)
    rate = 0.01 if optimizer == "sgd" else 0.001

    def run():
        start = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=batch_size, optimizer=optimizer, learning_rate=rate, shuffle=False,
                verbose=False)
        return time.perf_counter() - start

    return run


def torch_epoch(X, y, dtype, batch_size, optimizer="sgd", sizes=SIZES):
    import torch

    torch.manual_seed(0)
    torch_dtype = torch.float32 if dtype == np.float32 else torch.float64
    modules = []
    for a, b in itertools.pairwise(sizes):
        modules += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*modules[:-1]).to(torch_dtype)
    loss_fn = torch.nn.CrossEntropyLoss()
    if optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

    def run():
        start = time.perf_counter()
        for s in range(0, len(Xt), batch_size):
            optimizer.zero_grad()
            loss = loss_fn(model(Xt[s:s + batch_size]), yt[s:s + batch_size])
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    return run


def sklearn_epoch(X, y, dtype, batch_size, optimizer="sgd", sizes=SIZES):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    def run():
        model = MLPClassifier(hidden_layer_sizes=sizes[1:-1], solver=optimizer, momentum=0, alpha=0, max_iter=1,
                              shuffle=False, batch_size=batch_size,
                              learning_rate_init=0.01 if optimizer == "sgd" else 0.001, random_state=0)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        return time.perf_counter() - start

    return run


def available(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def time_epochs(n, dtype, batch_size, rounds, optimizer="sgd", sizes=SIZES):
    X, y, source = make_data(n, dtype) if sizes == SIZES else make_tabular(n, dtype)
    contenders = {"bound": matmul_bound(X, dtype, batch_size, sizes),
                  "handgrad": handgrad_epoch(X, y, dtype, batch_size, optimizer, sizes)}
    if available("torch"):
        contenders["torch"] = torch_epoch(X, y, dtype, batch_size, optimizer, sizes)
    if available("sklearn"):
        contenders["sklearn"] = sklearn_epoch(X, y, dtype, batch_size, optimizer, sizes)
    for run in contenders.values():  # warm-up: first-touch of buffers, BLAS thread start
        run()
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            times[name].append(run())
    result = {"batch_size": batch_size, "dtype": np.dtype(dtype).name, "samples": n, "data": source,
              "optimizer": optimizer, "network": "-".join(map(str, sizes))}
    bound = min(times["bound"])
    for name, values in times.items():
        # ratio_to_bound: minimum over minimum. paired_ratio: the median over rounds of this round's time over
        # the bound's time in the same round, which cancels slow phases of a shared machine.
        paired = statistics.median(t / b for t, b in zip(values, times["bound"]))
        result[name] = {"min_s": min(values), "median_s": statistics.median(values),
                        "ratio_to_bound": min(values) / bound, "paired_ratio": paired}
    for other in ("torch", "sklearn"):
        if other in times:
            result[f"handgrad_over_{other}"] = min(times["handgrad"]) / min(times[other])
    return result


def predict_latency(dtype, repeats=20000):
    """Microseconds per single-sample ``predict``, and per the three matrix-vector products alone (its floor
    on this machine), timed interleaved: the best of 5 batches of repeats/5 calls each."""
    import handgrad as hg

    net = hg.MLP(784, [(256, "relu"), (128, "relu"), (10, "softmax")], seed=0, dtype=dtype)
    x = np.random.default_rng(0).random((1, 784)).astype(dtype)
    weights = [layer.W for layer in net.layers]

    def products():
        h = x
        for W in weights:
            h = h @ W
        return h

    best = {"predict": float("inf"), "products": float("inf")}
    calls = {"predict": lambda: net.predict(x), "products": products}
    for call in calls.values():
        for _ in range(100):
            call()
    for _ in range(5):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(repeats // 5):
                call()
            best[name] = min(best[name], (time.perf_counter() - start) / (repeats // 5))
    return best["predict"] * 1e6, best["products"] * 1e6


_MEMORY_CHILD = """
import resource, sys, numpy as np
sys.path.insert(0, {bench!r})
from epoch_speed import make_data
import handgrad as hg
X, y, _ = make_data({n}, np.float32)
net = hg.MLP(784, [(256, "relu"), (128, "relu"), (10, "softmax")], seed=0, dtype="float32")
net.predict(X[:10])
def status_mb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS: making the data set's temporaries do not count
before = status_mb("VmRSS:")
net.fit(X, y, epochs=1, batch_size=128, learning_rate=0.01, verbose=False)
peak = status_mb("VmHWM:")
print(before, peak)
"""


def fit_memory(n):
    """Peak RSS during fit minus RSS before it, in a fresh process (MB)."""
    code = _MEMORY_CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)), n=n)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    before, peak = float(out[0]), float(out[1])
    return {"rss_before_mb": before, "peak_mb": peak, "added_mb": peak - before}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-sizes", default="32,128,512")
    parser.add_argument("--cases", default="sgd,adam,tabular",
                        help="which workloads: sgd (the batch sizes above, and 128 in float64), adam (784-256-128-10, "
                             "batch 128), tabular (16-256-128-26, batch 128, Adam)")
    args = parser.parse_args()
    threads = os.cpu_count()
    if available("torch"):
        import torch

        threads = torch.get_num_threads()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {threads}, "
          f"numpy {np.__version__}")
    results = []
    chosen = args.cases.split(",")
    cases = []
    if "sgd" in chosen:
        cases += [(int(b), np.float32, "sgd", SIZES) for b in args.batch_sizes.split(",")]
        cases.append((128, np.float64, "sgd", SIZES))
    if "adam" in chosen:
        cases.append((128, np.float32, "adam", SIZES))
    if "tabular" in chosen:
        cases.append((128, np.float32, "adam", TABULAR))
    for batch_size, dtype, optimizer, sizes in cases:
        r = time_epochs(args.samples, dtype, batch_size, args.rounds, optimizer, sizes)
        results.append(r)
        line = f"{r['network']} {optimizer} batch {batch_size:>4} {r['dtype']}: " + "  ".join(
            f"{name} {r[name]['min_s']:.3f}s (x{r[name]['ratio_to_bound']:.2f}, paired x{r[name]['paired_ratio']:.2f})"
            for name in ("bound", "handgrad", "torch", "sklearn") if name in r)
        print(line, flush=True)
    latency, products = predict_latency(np.float32)
    print(f"single-sample predict: {latency:.1f} us (the three matrix-vector products alone: {products:.1f} us)")
    memory = fit_memory(args.samples)
    print(f"fit memory: +{memory['added_mb']:.1f} MB over {memory['rss_before_mb']:.0f} MB before fit")
    print(json.dumps({"epochs": results, "predict_latency_us": latency, "predict_products_us": products,
                      "fit_memory": memory}))


if __name__ == "__main__":
    main()
