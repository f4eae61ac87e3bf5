"""Shared helpers for the core-engine tests: generated architectures, matching data,
an independent central-difference oracle, and a gradient comparison that says where
a mismatch is (layer, parameter, worst entry, both values).

The tests import these with ``from conftest import ...`` (tests/ is on sys.path
under pytest's default import mode).
"""

import numpy as np

import handgrad as hg
from handgrad.activations import ELU, LeakyReLU

# Every activation in every position: softmax in a hidden layer backpropagates through its Jacobian.
HIDDEN_ACTIVATIONS = ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "elu", "gelu", "silu", "softmax",
                      "exp"]
OUTPUT_ACTIVATIONS = list(HIDDEN_ACTIVATIONS)
LOSSES = ["half_squared_error", "mse", "binary_cross_entropy", "cross_entropy", "half_poisson_deviance"]
CROSS_ENTROPIES = ("binary_cross_entropy", "cross_entropy")
PROBABILITY_OUTPUTS = ("sigmoid", "softmax")  # the outputs in (0, 1), the only ones a cross-entropy accepts
# The Poisson deviance takes ln a: outputs that are never 0 (relu's can be, and its loss is then infinite).
POSITIVE_OUTPUTS = ("exp", "softplus", "sigmoid", "softmax")

VALID_PAIRS = [(out, loss) for out in OUTPUT_ACTIVATIONS for loss in LOSSES
               if (loss not in CROSS_ENTROPIES or out in PROBABILITY_OUTPUTS)
               and (loss != "half_poisson_deviance" or out in POSITIVE_OUTPUTS)]
INVALID_PAIRS = [(out, loss) for out in OUTPUT_ACTIVATIONS for loss in CROSS_ENTROPIES
                 if out not in PROBABILITY_OUTPUTS]
# Cases 0-119 draw from the activations and pairs that came before exp and the Poisson deviance (so they stay the
# same networks); the cases after them cover exp (first hidden layer in every other one) and the pairs it brought.
_FIRST_HIDDEN = [name for name in HIDDEN_ACTIVATIONS if name != "exp"]
_FIRST_PAIRS = [(out, loss) for out, loss in VALID_PAIRS if out != "exp" and loss != "half_poisson_deviance"]
_EXP_PAIRS = [pair for pair in VALID_PAIRS if pair not in _FIRST_PAIRS]


# ---------------------------------------------------------------------- comparing gradients
def relative_error(got, expected, floor=1e-8):
    """(error, worst index): max_i |got_i - expected_i| / max(max|got|, max|expected|, floor).

    Measured against the array's largest entry (as hg.gradcheck does), so an entry that
    is legitimately tiny is not judged by round-off; ``floor`` makes an all-zero
    gradient (a dead ReLU layer) compare by absolute error.
    """
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    difference = np.abs(got - expected)
    scale = max(np.abs(got).max(initial=0.0), np.abs(expected).max(initial=0.0), floor)
    worst = np.unravel_index(np.argmax(difference), difference.shape) if difference.size else ()
    return float(difference.max(initial=0.0) / scale), tuple(int(i) for i in worst)


def assert_gradients_close(got, expected, tol, context="", got_name="handgrad", expected_name="reference",
                           floor=1e-8):
    """Compare two gradient lists [(dW, db or None), ...] layer by layer.

    On failure the message names every offending layer and parameter (W1, b2, ...),
    its relative error, the worst entry's index and both values there.
    Returns the largest relative error seen.
    """
    assert len(got) == len(expected), f"{context}: {len(got)} layers of gradients vs {len(expected)}"
    failures, largest = [], 0.0
    for k, (got_pair, expected_pair) in enumerate(zip(got, expected), 1):
        for name, g, e in zip("Wb", got_pair, expected_pair):
            label = f"layer {k} parameter {name}{k}"
            if g is None or e is None:
                assert g is None and e is None, f"{context}: {label} is missing on one side"
                continue
            assert np.shape(g) == np.shape(e), f"{context}: {label} shapes {np.shape(g)} vs {np.shape(e)}"
            error, index = relative_error(g, e, floor)
            largest = max(largest, error)
            if not error < tol:  # also catches NaN
                failures.append(
                    f"  {label} {np.shape(g)}: relative error {error:.3e} (tolerance {tol:g}); worst entry "
                    f"{index}: {got_name} {float(np.asarray(g)[index])!r} vs {expected_name} "
                    f"{float(np.asarray(e)[index])!r}"
                )
    if failures:
        raise AssertionError(f"{context}\n" + "\n".join(failures))
    return largest


# ---------------------------------------------------------------------- the finite-difference oracle
def central_difference(f, x, h=1e-6):
    """(f(x + h e_i) - f(x - h e_i)) / 2h for every entry i of the array x (changed in place, restored).

    Written here rather than taken from hg.gradcheck so the oracle is independent of it.
    """
    grad = np.zeros(x.shape)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + h
        plus = f()
        x[index] = saved - h
        minus = f()
        x[index] = saved
        grad[index] = (plus - minus) / (2 * h)
    return grad


def numeric_gradients(net, objective, eps=1e-6):
    """Central differences (J(theta+h) - J(theta-h)) / 2h of ``objective()`` for every parameter
    entry of ``net``, in the layout of ``loss_and_grad``: [(dW, db or None), ...].
    """
    grads = []
    for layer in net.layers:
        pair = []
        for array in (layer.W, layer.b):
            if array is None:
                pair.append(None)
                continue
            pair.append(central_difference(objective, array, eps))
        grads.append(tuple(pair))
    return grads


# ---------------------------------------------------------------------- generated architectures
def make_targets(rng, loss, output, N, K):
    """Targets that ``loss`` accepts after an ``output`` activation (continuous where allowed)."""
    if loss == "cross_entropy" and output == "softmax":
        if rng.random() < 0.5:
            return rng.integers(0, K, size=N)  # class ids
        P = rng.random((N, K)) + 0.1
        return P / P.sum(axis=1, keepdims=True)  # soft targets, rows sum to 1
    if loss == "half_poisson_deviance":
        return rng.poisson(1.5, size=(N, K)).astype(float)  # counts, zeros included
    if loss in CROSS_ENTROPIES:
        T = rng.random((N, K))
        T[: N // 2] = np.round(T[: N // 2])  # half hard 0/1 labels, half soft
        return T
    return rng.normal(size=(N, K))


def make_case(i):
    """Architecture number ``i``: a deterministic function of i, so a failure is reproducible.

    Every activation cycles through the first hidden position (the others are drawn at
    random), every valid (output, loss) pair through the output, depth through 1..5,
    widths are drawn from 1..20; bias, l2, l1, dropout and sample weights are switched
    on in interleaved patterns.
    """
    rng = np.random.default_rng(1000 + i)
    depth = 1 + i % 5
    pairs, names = (_FIRST_PAIRS, _FIRST_HIDDEN) if i < _N_FIRST else (_EXP_PAIRS, HIDDEN_ACTIVATIONS)
    output, loss = pairs[i % len(pairs)]
    hidden = []
    for j in range(depth - 1):
        first = names[i % len(names)] if i < _N_FIRST else ("exp" if i % 2 == 0 else names[i % len(names)])
        name = first if j == 0 else str(rng.choice(names))
        if name == "leaky_relu" and (i // 10) % 2:
            name = LeakyReLU(slope=0.2)  # a non-default slope
        if name == "elu" and (i // 10) % 2:
            name = ELU(alpha=0.7)  # a non-default alpha
        hidden.append((int(rng.integers(1, 21)), name))
    K = int(rng.integers(2, 7)) if output == "softmax" else int(rng.integers(1, 7))
    n_in = int(rng.integers(1, 11))
    N = int(rng.integers(3, 9))
    options = {
        "bias": i % 2 == 0,
        "l2": 0.3 if i % 3 == 1 else 0.0,
        "l1": 0.05 if i % 7 == 3 else 0.0,
        "dropout": 0.3 if (i % 4 == 1 and depth > 1) else 0.0,
    }
    layers = hidden + [(K, output)]
    net = hg.MLP(n_in, layers, loss=loss, seed=i, **options)
    # Random biases (they start at zero) so the bias paths carry information.
    for layer in net.layers:
        if layer.b is not None:
            layer.b[...] = rng.normal(scale=0.5, size=layer.b.shape)
        if layer.activation.name == "exp":  # small pre-activations: exp after exp grows as e^(e^z)
            layer.W *= 0.3
            if layer.b is not None:
                layer.b *= 0.3
    X = rng.normal(size=(N, n_in))
    T = make_targets(rng, loss, output, N, K)
    sample_weight = rng.uniform(0.2, 2.0, size=N) if i % 5 == 2 else None
    dropout_seed = 100 + i if options["dropout"] else None
    name = (f"case{i}-{n_in}-" + "-".join(f"{size}{getattr(act, 'name', act)}" for size, act in layers)
            + f"-{loss}" + ("" if options["bias"] else "-nobias") + ("-l2" if options["l2"] else "")
            + ("-l1" if options["l1"] else "") + ("-dropout" if dropout_seed is not None else "")
            + ("-weighted" if sample_weight is not None else ""))
    return {"name": name, "net": net, "X": X, "T": T, "sample_weight": sample_weight,
            "dropout_seed": dropout_seed, "depth": depth, "hidden": [act for _, act in hidden],
            "output": output, "loss": loss, "options": options}


_N_FIRST = 120  # a multiple of len(_FIRST_PAIRS) = 24 and of len(_FIRST_HIDDEN) = 10
N_CASES = _N_FIRST + 12  # and each of the 6 _EXP_PAIRS twice, exp first in the deep ones of every other case


def objective_of(case):
    """J(parameters) for a case, from the public API (dropout masks fixed by the case's seed)."""
    net, X, T, w, seed = case["net"], case["X"], case["T"], case["sample_weight"], case["dropout_seed"]
    if seed is None:
        return lambda: net.loss(X, T, sample_weight=w)
    return lambda: net.loss_and_grad(X, T, sample_weight=w, dropout_seed=seed)[0]


# A user-defined activation and loss (the interface the built-in ones use), shared by the tests of
# check_activation/check_loss and of the reference engines.
class Softsign(hg.Activation):
    name = "softsign"

    def forward(self, Z, out=None):
        return np.divide(Z, 1 + np.abs(Z), out=out)

    def derivative(self, Z, A):
        return 1 / (1 + np.abs(Z)) ** 2


class LogCosh(hg.Loss):
    name = "log_cosh"

    def per_sample(self, A, T):
        return np.log(np.cosh(A - T)).sum(axis=1)

    def gradient(self, A, T, out=None):
        return np.divide(np.tanh(A - T), A.shape[0], out=out)
