"""L-BFGS, written by hand: full-batch quasi-Newton descent on the network's parameter vector.

Derivation and discussion: docs/training.md, section "L-BFGS". In one screen (g_k = grad J(x_k)):

    d_k = -H_k g_k                 H_k: the inverse-Hessian estimate built from the last m pairs
                                   s_i = x_{i+1} - x_i, y_i = g_{i+1} - g_i (two-loop recursion)
    x_{k+1} = x_k + a_k d_k        a_k from a line search that satisfies the strong Wolfe conditions
        J(x_k + a d_k) <= J(x_k) + c1 a g_k.d_k                       (sufficient decrease)
        |grad J(x_k + a d_k).d_k| <= c2 |g_k.d_k|                     (curvature)

The line search is Nocedal & Wright's Algorithm 3.5 (bracketing) with Algorithm 3.6 (zoom, by
safeguarded cubic interpolation). The stopping rules are those of scipy's L-BFGS-B, which
scikit-learn's MLP calls with ``maxiter=max_iter, maxfun=max_fun, gtol=tol``:

    converged   max_j |g_j| <= tol,  or  (J_k - J_{k+1}) / max(|J_k|, |J_{k+1}|, 1) <= ftol
    limits      iterations == max_iter,  or  evaluations > max_fun   (both checked after an iteration)

:func:`minimize` works on any function ``x -> (f, grad)``; :func:`minimize_network` runs it on a
network's objective (``net.params`` is x, ``net.backprop`` gives J and ``net.grads``), and :func:`fit`
is what ``training.fit(net, X, T, optimizer="lbfgs")`` calls.
"""

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError, TrainingError, check_count
from .layers import OBJECTIVE, Mode

__all__ = ["LBFGS", "LBFGSResult", "fit", "is_lbfgs", "minimize", "minimize_network", "strong_wolfe"]

_FTOL = 2.220446049250313e-09  # scipy's default: factr 1e7 times float64's epsilon


def _integer(name, value, low=1):
    return check_count(value, low, f"{name} must be an integer >= {low}, got {value!r}.")


def _number(name, value, low=0.0, high=math.inf, low_open=False, high_open=False):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}.") from None
    if (not math.isfinite(value) or value < low or value > high or (low_open and value == low)
            or (high_open and value == high)):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or high == math.inf else ']'}"
        raise ConfigError(f"{name} must be in {interval}, got {value}.")
    return value


class LBFGS:
    """The solver's settings: ``optimizer=LBFGS(...)`` in ``fit`` (``optimizer="lbfgs"`` takes the defaults).

    memory : int, m, the number of (s, y) pairs kept (scipy's maxcor, 10)
    tol : float, stop when the largest gradient entry is <= tol (scipy's gtol; scikit-learn passes its tol)
    ftol : float, stop when the relative decrease of J in an iteration is <= ftol (scipy's default)
    max_fun : int, stop after an iteration once more than max_fun evaluations of (J, grad) were made
    c1, c2 : the strong Wolfe constants, 0 < c1 < c2 < 1 (1e-3 and 0.9: L-BFGS-B's values)
    max_line_search : int, evaluations one line search may take before it gives up
    """

    name = "lbfgs"

    def __init__(self, memory=10, tol=1e-5, ftol=_FTOL, max_fun=15000, c1=1e-3, c2=0.9, max_line_search=20):
        self.memory = _integer("memory", memory)
        self.tol = _number("tol", tol)
        self.ftol = _number("ftol", ftol)
        self.max_fun = _integer("max_fun", max_fun)
        self.c1 = _number("c1", c1, 0.0, 1.0, low_open=True, high_open=True)
        self.c2 = _number("c2", c2, 0.0, 1.0, low_open=True, high_open=True)
        if self.c1 >= self.c2:
            raise ConfigError(f"the Wolfe constants need 0 < c1 < c2 < 1, got c1={self.c1}, c2={self.c2}.")
        self.max_line_search = _integer("max_line_search", max_line_search)

    def hyperparameters(self):
        return {"memory": self.memory, "tol": self.tol, "ftol": self.ftol, "max_fun": self.max_fun,
                "c1": self.c1, "c2": self.c2, "max_line_search": self.max_line_search}

    def __repr__(self):
        return "LBFGS(" + ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items()) + ")"


def is_lbfgs(optimizer):
    """True for ``"lbfgs"`` (any case) or an :class:`LBFGS` object: the trainer hands those to :func:`fit`."""
    return isinstance(optimizer, LBFGS) or (isinstance(optimizer, str) and optimizer.strip().lower() == "lbfgs")


@dataclass
class LBFGSResult:
    """What :func:`minimize` returns. ``status``: 0 converged, 1 max_iter or max_fun reached, 2 the line
    search failed (no step satisfying the Wolfe conditions was found, even along -g)."""

    x: np.ndarray
    fun: float
    grad: np.ndarray
    n_iter: int
    n_fun: int
    status: int
    message: str
    loss_curve: list = field(default_factory=list)  # J after each iteration
    steps: list = field(default_factory=list)  # (a, J(x), g.d, J(x + a d), grad(x + a d).d) of each accepted step


# ---------------------------------------------------------------------------- the two-loop recursion
def two_loop(g, pairs):
    """H g for the L-BFGS inverse-Hessian estimate of the pairs [(s, y, rho = 1/(y.s)), ...], oldest first.

    First loop (newest to oldest): a_i = rho_i s_i.q,  q <- q - a_i y_i
    Scale:                         r = gamma q,  gamma = s.y / y.y of the newest pair (H_0 = gamma I)
    Second loop (oldest to newest): b = rho_i y_i.r,  r <- r + (a_i - b) s_i
    """
    q = g.copy()
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * float(np.dot(s, q))
        q -= a * y
        alphas.append(a)
    if pairs:
        s, y, _ = pairs[-1]
        q *= float(np.dot(s, y)) / float(np.dot(y, y))
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        b = rho * float(np.dot(y, q))
        q += (a - b) * s
    return q


# ---------------------------------------------------------------------------- the line search
def _cubic_minimizer(a0, f0, d0, a1, f1, d1):
    """The minimizer of the cubic through (a0, f0) and (a1, f1) with slopes d0, d1 (N&W eq. 3.59), or None."""
    if a0 == a1:
        return None
    t1 = d0 + d1 - 3.0 * (f0 - f1) / (a0 - a1)
    radicand = t1 * t1 - d0 * d1
    if radicand < 0 or not math.isfinite(radicand):
        return None
    t2 = math.copysign(math.sqrt(radicand), a1 - a0)
    denominator = d1 - d0 + 2.0 * t2
    if denominator == 0:
        return None
    a = a1 - (a1 - a0) * (d1 + t2 - t1) / denominator
    return a if math.isfinite(a) else None


def _zoom(phi, f0, d0, lo, hi, c1, c2, budget):
    """N&W Algorithm 3.6. lo = (a, f, d, g) satisfies sufficient decrease with the lowest f seen; the
    interval between lo and hi holds a strong-Wolfe step. Returns an accepted (a, f, d, g) or None."""
    for _ in range(budget):
        a_lo, a_hi = lo[0], hi[0]
        width = a_hi - a_lo
        if abs(width) <= 1e-12 * max(abs(a_lo), abs(a_hi), 1e-300):
            return None
        a = _cubic_minimizer(lo[0], lo[1], lo[2], hi[0], hi[1], hi[2])
        low_end, high_end = sorted((a_lo + 0.1 * width, a_hi - 0.1 * width))
        if a is None or not low_end <= a <= high_end:  # safeguard: bisect when the cubic is no help
            a = a_lo + 0.5 * width
        f, d, g = phi(a)
        if not math.isfinite(f) or f > f0 + c1 * a * d0 or f >= lo[1]:
            hi = (a, f, d, g)
        else:
            if abs(d) <= -c2 * d0:
                return (a, f, d, g)
            if d * (a_hi - a_lo) >= 0:
                hi = lo
            lo = (a, f, d, g)
    return None


def _extrapolate(previous, current):
    """A longer step after ``current`` (a, f, d, g) that went down steeply: the cubic's minimizer, kept
    within 1.1 to 4 times the last increase of a (the bounds of Moré and Thuente's line search)."""
    growth = current[0] - previous[0]
    low, high = current[0] + 1.1 * growth, current[0] + 4.0 * growth
    a = _cubic_minimizer(previous[0], previous[1], previous[2], current[0], current[1], current[2])
    return high if a is None else min(max(a, low), high)


def strong_wolfe(phi, f0, d0, a1, c1=1e-3, c2=0.9, max_evaluations=20, a_max=1e20):
    """A step a > 0 satisfying the strong Wolfe conditions for phi(a) = J(x + a d) (N&W Algorithm 3.5).

    ``phi(a)`` returns (J(x + a d), grad J(x + a d).d, grad J(x + a d)); f0 = phi(0), d0 = phi'(0) < 0.
    Returns (a, f, d, g) of the accepted step, or None when ``max_evaluations`` did not find one.
    """
    previous = (0.0, f0, d0, None)
    a = a1
    for i in range(max_evaluations):
        f, d, g = phi(a)
        current = (a, f, d, g)
        if not math.isfinite(f) or f > f0 + c1 * a * d0 or (i > 0 and f >= previous[1]):
            return _zoom(phi, f0, d0, previous, current, c1, c2, max_evaluations - i - 1)
        if abs(d) <= -c2 * d0:
            return current
        if d >= 0:
            return _zoom(phi, f0, d0, current, previous, c1, c2, max_evaluations - i - 1)
        previous, a = current, min(_extrapolate(previous, current), a_max)  # still going down steeply
    return None


# ---------------------------------------------------------------------------- the iteration
def _check_call(fun_and_grad, x0, max_iter, solver):
    if not callable(fun_and_grad):
        raise ConfigError("minimize needs a function x -> (f, grad).")
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.ndim != 1 or x0.size == 0 or not np.isfinite(x0).all():
        raise ConfigError("x0 must be a non-empty 1-D vector of finite numbers.")
    if solver is None or (isinstance(solver, str) and is_lbfgs(solver)):
        solver = LBFGS()
    if not isinstance(solver, LBFGS):
        raise ConfigError(f"solver must be 'lbfgs' or an LBFGS object, got {solver!r}.")
    return x0, _integer("max_iter", max_iter), solver


def minimize(fun_and_grad, x0, *, max_iter=15000, solver=None, callback=None, **settings):
    """Minimize f from x0 with L-BFGS; ``fun_and_grad(x) -> (f, grad)`` (f a float, grad a vector like x).

    Settings are :class:`LBFGS`'s (pass ``solver=LBFGS(...)`` or them by name: tol, max_fun, memory...).
    ``callback(k, x, f)`` runs after iteration k (from 1). Returns an :class:`LBFGSResult`; x is the last
    accepted iterate, so f(x) never increases from one iteration to the next.
    """
    x, max_iter, solver = _check_call(fun_and_grad, x0, max_iter, LBFGS(**settings) if settings else solver)
    evaluations = 0

    def evaluate(point):
        nonlocal evaluations
        evaluations += 1
        f, g = fun_and_grad(point)
        return float(f), np.array(g, dtype=np.float64).reshape(-1)

    f, g = evaluate(x)
    if not (math.isfinite(f) and np.isfinite(g).all()):
        raise TrainingError(f"the objective is {f} (or its gradient not finite) at the starting point; "
                            "standardize the inputs or start from other weights.")
    result = LBFGSResult(x, f, g, 0, evaluations, 0, "")
    pairs = []
    while True:
        if float(np.max(np.abs(g))) <= solver.tol:
            return _finish(result, x, f, g, evaluations, 0, "converged: the largest gradient entry is <= tol")
        step = _search(evaluate, x, f, g, two_loop(g, pairs), first=not result.n_iter, solver=solver)
        if step is None and pairs:  # the quasi-Newton direction failed: forget the pairs, try steepest descent
            pairs = []
            step = _search(evaluate, x, f, g, g.copy(), first=True, solver=solver)
        if step is None:
            return _finish(result, x, f, g, evaluations, 2, "the line search found no step satisfying the "
                           "strong Wolfe conditions (the objective may be noisy at this scale: float32?)")
        a, direction, f_new, d_new, g_new = step
        result.steps.append((a, f, float(np.dot(g, direction)), f_new, d_new))
        s = a * direction
        y = g_new - g
        sy = float(np.dot(s, y))
        if sy > np.finfo(np.float64).eps * float(np.dot(y, y)):  # keep the pair only with positive curvature
            pairs = (pairs + [(s, y, 1.0 / sy)])[-solver.memory:]
        x, f_old, f, g = x + s, f, f_new, g_new
        result.n_iter += 1
        result.loss_curve.append(f)
        if callback is not None:
            callback(result.n_iter, x, f)
        if result.n_iter >= max_iter:
            return _finish(result, x, f, g, evaluations, 1, f"max_iter: {max_iter} iterations reached")
        if evaluations > solver.max_fun:
            return _finish(result, x, f, g, evaluations, 1, f"max_fun: more than {solver.max_fun} evaluations")
        if f_old - f <= solver.ftol * max(abs(f_old), abs(f), 1.0):
            return _finish(result, x, f, g, evaluations, 0, "converged: the relative decrease of J is <= ftol")


def _search(evaluate, x, f, g, Hg, first, solver):
    """The Wolfe line search along d = -Hg: (a, d, f, grad.d, grad) of the accepted step, or None."""
    direction = -Hg
    d0 = float(np.dot(g, direction))
    if not d0 < 0:  # not a descent direction (rounding in H): the caller falls back to -g
        return None
    # the first step has no curvature information: scale it to length 1, as L-BFGS-B does; then a = 1
    a1 = 1.0 / float(np.linalg.norm(direction)) if first else 1.0

    def phi(a):
        f_a, g_a = evaluate(x + a * direction)
        return f_a, float(np.dot(g_a, direction)), g_a

    with np.errstate(over="ignore", invalid="ignore"):
        found = strong_wolfe(phi, f, d0, a1, solver.c1, solver.c2, solver.max_line_search)
    if found is None:
        return None
    a, f_a, d_a, g_a = found
    return a, direction, f_a, d_a, g_a


def _finish(result, x, f, g, evaluations, status, message):
    result.x, result.fun, result.grad, result.n_fun = x, f, g, evaluations
    result.status, result.message = status, message
    return result


# ---------------------------------------------------------------------------- on a network
def minimize_network(net, X, T, sample_weight=None, *, max_iter=200, solver=None, callback=None):
    """Train ``net`` with L-BFGS on the full-batch objective J of ``net.backprop`` (X, T, sample_weight:
    checked arrays of the network's dtype). Leaves the last iterate in ``net.params`` and its gradient in
    ``net.grads``; returns the result.

    Dropout, if the network has any, is off: L-BFGS needs one deterministic objective. Batch norm
    normalizes with the statistics of the whole data set (the one batch), and its running statistics are
    set to them at the end (:func:`data_statistics`), so that predict uses what J was minimized with.
    """
    x0 = net.params.astype(np.float64)

    def fun_and_grad(x):
        net.params[...] = x  # (cast to the network's dtype; the L-BFGS algebra stays in float64)
        return net.backprop(X, T, sample_weight, training=OBJECTIVE), net.grads

    try:
        result = minimize(fun_and_grad, x0, max_iter=max_iter, solver=solver, callback=callback)
    finally:
        net.params[...] = x0  # on an error the weights are the ones training started from
    net.params[...] = result.x
    data_statistics(net, X)
    net.grads[...] = result.grad  # the gradient at the result, not at the last trial point of the line search
    return result


def data_statistics(net, X):
    """Set every batch-norm layer's running mean and variance to those of the whole of X (the unbiased
    variance, as the running rule uses): one forward pass that updates them with momentum 1."""
    norms = [layer.norm for layer in net.layers if layer.norm is not None and layer.norm.kind == "batch"]
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    try:
        for norm in norms:
            norm.momentum = 1.0
        net.run_forward(X, Mode(batch_statistics=True, dropout=False, update_running=True))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum


def fit(net, X, T, w=None, *, solver="lbfgs", max_iter=200, record=None, unused=None):
    """What ``training.fit(..., optimizer="lbfgs", epochs=max_iter)`` runs: L-BFGS on the checked arrays
    (in memory: training.fit refuses streamed data before it reads any);
    ``record(iteration, seconds, loss=J)`` is called after each iteration (the trainer's History.record).
    ``unused``: the trainer's options that have no meaning here; any that is set is refused."""
    for name, value in (unused or {}).items():
        if value is not None and value is not False and not (isinstance(value, (int, float)) and value == 0) \
                and not (isinstance(value, (list, tuple)) and not value):
            raise ConfigError(f"{name} is not used by L-BFGS (one full-batch objective, no epochs or batches); "
                              "remove it, or choose a stochastic optimizer such as 'adam'.")
    started = [time.perf_counter()]

    def callback(k, x, f):
        now = time.perf_counter()
        if record is not None:
            record(k, now - started[0], loss=f)
        started[0] = now

    return minimize_network(net, X, T, w, max_iter=max_iter, solver=LBFGS() if isinstance(solver, str) else solver,
                            callback=callback)
