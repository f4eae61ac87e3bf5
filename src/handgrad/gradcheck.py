"""Central finite differences: the oracle every analytic gradient is tested against.

For each parameter entry theta:  dJ/dtheta ~ (J(theta + h) - J(theta - h)) / (2h),
with an error of order h^2. In float64, h = 1e-6 balances that truncation error
against rounding error (about eps/h).

The relative error of one parameter array is

    max_i |analytic_i - numeric_i| / max(max_i |analytic_i|, max_i |numeric_i|, floor)

that is, the worst entry measured against the array's largest gradient entry, so an
array whose gradient is legitimately tiny is not judged by noise. ``floor`` (1e-8 by
default) keeps an all-zero gradient (a dead ReLU layer) from dividing by zero.
"""

import numpy as np

from .layers import OBJECTIVE_WITH_DROPOUT


class GradcheckResult(dict):
    """``{name: relative error}`` for W1, b1, W2, ...; ``.details[name]`` locates the worst entry."""

    def __init__(self):
        super().__init__()
        self.details = {}

    @property
    def max_error(self):
        return max(self.values()) if self else 0.0

    def passed(self, tolerance=1e-6):
        return self.max_error < tolerance

    def __str__(self):
        rows = [f"{'param':<7}{'shape':<12}{'rel. error':>12}  worst entry: analytic vs numeric"]
        for name, error in self.items():
            d = self.details[name]
            rows.append(f"{name:<7}{d['shape']!s:<12}{error:>12.2e}  {d['index']}: "
                        f"{d['analytic']:.10g} vs {d['numeric']:.10g}")
        return "\n".join(rows)


def numeric_gradient(objective, array, eps=1e-6):
    """Central differences of ``objective()`` with respect to every entry of ``array`` (changed in place, restored)."""
    grad = np.zeros(array.shape, dtype=np.float64)
    flat = array.reshape(-1)  # a view: writing to it changes the parameter
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = objective()
        flat[i] = saved - eps
        minus = objective()
        flat[i] = saved
        grad.reshape(-1)[i] = (plus - minus) / (2 * eps)
    return grad


def relative_error(analytic, numeric, floor=1e-8):
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0), floor)
    return float(np.abs(analytic - numeric).max(initial=0.0) / scale)


def gradcheck(net, X, T, sample_weight=None, eps=1e-6, floor=1e-8, dropout_seed=None):
    """Compare ``net.loss_and_grad`` with central differences for every parameter array.

    Returns a :class:`GradcheckResult`: the max relative error per parameter array
    (W1, b1, W2, ...; a normalized layer's gamma1, beta1). Batch norm uses the batch statistics on
    both sides, and its running statistics are left as they were. Use a float64 network: float32
    rounding swamps differences. With ``dropout_seed``, both sides use the same dropout masks.
    """
    X = net.check_inputs(X)
    T = net.check_targets(T, X.shape[0])
    w = net.check_sample_weight(sample_weight, X.shape[0])
    net.loss_and_grad(X, T, w, dropout_seed=dropout_seed)
    analytic_all = {name: gradient.copy() for name, gradient in net.gradients()}

    def objective():  # the J loss_and_grad differentiates: batch statistics, running statistics untouched
        if dropout_seed is None:
            return net.loss(X, T, w)
        with net.dropout_stream(np.random.default_rng(dropout_seed)):  # the same masks as the analytic side
            return net.objective(net.run_forward(X, OBJECTIVE_WITH_DROPOUT), T, w)

    result = GradcheckResult()
    for key, array in net.parameters():  # W1, b1 (or gamma1, beta1), W2, ...
        analytic = analytic_all[key]
        numeric = numeric_gradient(objective, array, eps)
        result[key] = relative_error(analytic, numeric, floor)
        worst = np.unravel_index(np.argmax(np.abs(analytic - numeric)), array.shape)
        name = key.rstrip("0123456789")
        result.details[key] = {"shape": array.shape, "index": tuple(int(i) for i in worst),
                               "analytic": float(analytic[worst]), "numeric": float(numeric[worst]),
                               "layer": int(key[len(name):]), "parameter": name}
    return result
