"""Curvature: the sharpest directions of the training objective, from Hessian-vector products.

``net.hessian_vector_product(X, T, v)`` gives H v for one direction v (the R-operator,
docs/derivations.md, "Curvature: Hessian-vector products"). H itself is never built: with n
parameters it has n^2 entries, and every method here only multiplies by it.

The *sharpness* is the largest eigenvalue lambda_1 of H. Near a minimum theta*, gradient descent
with step eta sees J(theta) ~ J* + 1/2 (theta - theta*)^T H (theta - theta*), so along the
eigenvector u_i the error is multiplied by (1 - eta lambda_i) at each step. It shrinks for every
i exactly when |1 - eta lambda_i| < 1, that is eta < 2 / lambda_1: the learning-rate bound.

    result = hg.sharpness(net, X, T, k=3)      # Lanczos; method="power" for power iteration
    result.eigenvalues                          # (3,), largest first
    result.eigenvectors                         # (3, n_params), unit rows in the layout of net.params
    result.learning_rate_bound                  # 2 / lambda_1

Two methods, NumPy only:

* ``"power"``: power iteration x <- H x / ||H x||, which converges to the eigenvalue of largest
  magnitude. When that one is negative, a second run on H - mu I (mu that eigenvalue, so every
  eigenvalue of the shifted matrix is >= 0) finds the largest. The next eigenpairs come from
  iterating on the complement of the ones found (deflation by projection).
* ``"lanczos"`` (default): the Lanczos process builds an orthonormal basis Q of the Krylov space
  span{x, Hx, H^2 x, ...} in which H is tridiagonal; the eigenvalues of that small matrix (Ritz
  values) approach H's extreme eigenvalues after far fewer products than power iteration needs.
  Full reorthogonalization keeps Q orthonormal in floating point.

Both stop when the residual ||H u - lambda u|| of every wanted pair is at most ``tol * rho``, rho
the largest |eigenvalue| seen (the scale of H); the result reports the residuals measured with one
more product each, and a warning says when ``max_iter`` ran out first. (An eigenvalue's error is
about residual^2 / gap, far below the residual itself.)
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, check_count, check_seed

METHODS = ("lanczos", "power")


@dataclass
class SharpnessResult:
    """The top-k eigenpairs of the Hessian, largest eigenvalue first.

    ``eigenvalues`` (k,); ``eigenvectors`` (k, n_params), unit rows in the layout of ``net.params``;
    ``residuals`` (k,): ||H u - lambda u|| measured after the iteration; ``iterations``: Hessian-vector
    products used; ``converged``: every residual within the tolerance; ``method``.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residuals: np.ndarray
    iterations: int
    converged: bool
    method: str

    @property
    def sharpness(self):
        """lambda_1, the largest eigenvalue of the Hessian."""
        return float(self.eigenvalues[0])

    @property
    def learning_rate_bound(self):
        """2 / lambda_1: gradient descent near a minimum diverges with a larger step (inf when lambda_1 <= 0)."""
        return 2.0 / self.sharpness if self.sharpness > 0 else math.inf

    def __str__(self):
        values = ", ".join(f"{value:.6g}" for value in self.eigenvalues)
        status = "converged" if self.converged else "NOT converged"
        return (f"top {len(self.eigenvalues)} Hessian eigenvalue(s): {values}\n"
                f"learning-rate bound 2/lambda_1 = {self.learning_rate_bound:.6g}\n"
                f"{self.method}: {self.iterations} Hessian-vector products, {status} "
                f"(largest residual {float(np.max(self.residuals)):.2e})")


def hessian_operator(net, X, T, sample_weight=None, dropout_seed=None, batch_size=None):
    """A function v -> H v (float64) for the objective of ``net`` on (X, T), checked once.

    With ``batch_size``, the product is summed over chunks of at most that many rows, weighted by
    their share of the samples: J = sum_c (N_c/N) J_c, so H v = sum_c (N_c/N) H_c v (each H_c v
    carries l2 v, and the shares sum to 1). That bounds the memory a large X needs. Not with batch
    norm: its batch statistics couple the rows, so chunks would change the objective (a ConfigError). Nor with
    dropout_seed and dropout: each chunk would draw its own masks from the seed (a ConfigError too).
    """
    X = net.check_inputs(X)
    T = net.check_targets(T, X.shape[0])
    w = net.check_sample_weight(sample_weight, X.shape[0])
    check_seed("dropout_seed", dropout_seed)
    N = X.shape[0]
    size = N if batch_size is None else _positive_int("batch_size", batch_size)
    if size < N and any(layer.norm is not None and layer.norm.kind == "batch" for layer in net.layers):
        raise ConfigError(f"batch_size={size} would split the {N} samples into chunks, and batch normalization "
                          "normalizes each batch with its own statistics, so the chunks' Hessians do not add up to "
                          "the whole batch's; drop batch_size (or use a smaller probe set).")
    if size < N and dropout_seed is not None and any(net.dropout_rate(k) > 0 for k in range(1, len(net.layers) + 1)):
        raise ConfigError(f"batch_size={size} with dropout_seed would draw each chunk's dropout masks afresh from the "
                          "seed, so the chunks' Hessians do not add up to the whole batch's (the objective "
                          "loss_and_grad differentiates with that seed); drop batch_size or dropout_seed.")
    chunks = [slice(start, min(start + size, N)) for start in range(0, N, size)]

    def product(v):
        total = np.zeros(net.n_params)
        for rows in chunks:
            part = net.hessian_vector_product(X[rows], T[rows], v, None if w is None else w[rows], dropout_seed)
            total += ((rows.stop - rows.start) / N) * part
        return total

    return product


def sharpness(net, X, T, k=1, method="lanczos", *, sample_weight=None, dropout_seed=None, tol=None, max_iter=None,
              seed=0, start=None, batch_size=None, warn=True):
    """The top ``k`` eigenvalues and eigenvectors of the Hessian of ``net``'s objective on (X, T).

    Parameters
    ----------
    k : int
        How many of the largest eigenvalues (1 <= k <= n_params).
    method : 'lanczos' or 'power'
        See the module docstring.
    sample_weight, dropout_seed
        As in ``net.loss_and_grad``: the objective whose Hessian is taken (dropout off without a seed).
    tol : float
        Stop when ||H u - lambda u|| <= tol * rho for every wanted pair, rho the largest |eigenvalue| seen
        (default 1e-6; 1e-3 for a float32 network, whose products carry float32 rounding).
    max_iter : int
        The most Hessian-vector products per eigenpair (power, default 1000) or in all (Lanczos, default
        max(100, 4k), at most n_params).
    seed, start
        The start vector: ``start`` (a vector in the layout of ``net.params``, e.g. the previous
        eigenvector, to warm-start) or a random normal one drawn from ``seed``.
    batch_size : int
        Compute each product in chunks of this many rows (see :func:`hessian_operator`).
    warn : bool
        Warn (RuntimeWarning) when the iteration stopped before it converged.

    Returns a :class:`SharpnessResult`; ``result.learning_rate_bound`` is 2 / lambda_1.
    """
    operator, x0, tol, max_iter = _prepare(net, X, T, k, method, sample_weight, dropout_seed, tol, max_iter, seed,
                                           start, batch_size)
    n = net.n_params
    solve = _lanczos if method == "lanczos" else _power
    values, vectors, products, scale = solve(operator, n, int(k), tol, max_iter, x0)
    residuals = np.array([np.linalg.norm(operator(u) - value * u) for value, u in zip(values, vectors)])
    products += len(values)
    # 2 tol: room for the rounding of the product that measures, and for what the projections of the
    # iteration left out; a pair that did not converge is off by far more.
    converged = len(values) == k and bool(np.all(residuals <= 2 * tol * scale))
    result = SharpnessResult(values, vectors, residuals, products, converged, method)
    if warn and not converged:
        warnings.warn(f"sharpness: {method} stopped after {products} Hessian-vector products without reaching "
                      f"tol={tol:g} (largest residual {residuals.max():.2e}); raise max_iter or tol.",
                      RuntimeWarning, stacklevel=2)
    return result


def check_sharpness(net, X, T, k=1, method="lanczos", *, sample_weight=None, dropout_seed=None, tol=None,
                    max_iter=None, seed=0, start=None, batch_size=None, warn=True):
    """Check the arguments of :func:`sharpness` as it would, without computing anything: a ConfigError or
    DataError now (callbacks.Sharpness calls it before training, rather than failing after the first epoch)."""
    _prepare(net, X, T, k, method, sample_weight, dropout_seed, tol, max_iter, seed, start, batch_size)


def _prepare(net, X, T, k, method, sample_weight, dropout_seed, tol, max_iter, seed, start, batch_size):
    """The checked arguments of :func:`sharpness`: (operator, start vector, tol, max_iter)."""
    if not callable(getattr(net, "hessian_vector_product", None)):
        raise ConfigError(f"sharpness needs a handgrad MLP, got {type(net).__name__} (for a fitted scikit-learn "
                          "style estimator, pass its net_).")
    n = net.n_params
    k = check_count(k, 1, f"k must be a whole number from 1 to the number of parameters ({n}), got {k!r}.", high=n)
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    tol = (1e-6 if net.dtype == np.float64 else 1e-3) if tol is None else _number("tol", tol)
    if not 0 < tol < 1:
        raise ConfigError(f"tol must be a number between 0 and 1, got {tol}.")
    if max_iter is None:
        max_iter = 1000 if method == "power" else max(100, 4 * k)
    max_iter = _positive_int("max_iter", max_iter)
    if method == "lanczos" and max_iter < k:
        raise ConfigError(f"Lanczos needs max_iter >= k ({k}), got {max_iter}.")
    operator = hessian_operator(net, X, T, sample_weight, dropout_seed, batch_size)
    x0 = _start_vector(net, start, seed)
    return operator, x0, tol, max_iter


# ---------------------------------------------------------------------------- start vector and checks
def _number(name, value):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}.") from None


def _positive_int(name, value):
    return check_count(value, 1, f"{name} must be a positive whole number, got {value!r}.")


def _start_vector(net, start, seed):
    """A unit start vector: ``start`` checked like any direction, or a normal draw from ``seed``."""
    if start is None:
        x = np.random.default_rng(check_seed("seed", seed)).standard_normal(net.n_params)
    else:
        x = net.check_direction(start, "start").astype(np.float64)
    norm = np.linalg.norm(x)
    if norm == 0:
        raise ConfigError("the start vector is zero; give a nonzero one.")
    return x / norm


def _orthogonalize(x, basis):
    """x minus its projection on the rows of ``basis`` (orthonormal), twice: once is not enough in floating point."""
    for _ in range(2):
        if len(basis):
            x = x - basis.T @ (basis @ x)
    return x


def _fresh_direction(n, basis, rng):
    """A random unit vector orthogonal to the rows of ``basis``."""
    x = _orthogonalize(rng.standard_normal(n), basis)
    return x / np.linalg.norm(x)


# ---------------------------------------------------------------------------- power iteration
def _power_one(operator, x, basis, tol, max_iter, shift=0.0, scale=0.0):
    """Power iteration on P (H - shift I) P (P: projection away from ``basis``) from x: (lambda, u, products),
    lambda the eigenvalue of H - shift I of largest magnitude on the complement, u its unit eigenvector.
    It stops when ||(H - shift I) u - lambda u|| <= tol * max(|lambda|, scale)."""
    x = _orthogonalize(x, basis)
    x /= np.linalg.norm(x)
    value = 0.0
    for iteration in range(1, max_iter + 1):
        y = _orthogonalize(operator(x) - shift * x, basis)
        value = float(x @ y)  # the Rayleigh quotient x^T (H - shift I) x (x is a unit vector)
        norm = np.linalg.norm(y)
        if np.linalg.norm(y - value * x) <= tol * max(abs(value), scale) or norm == 0:
            return value, x, iteration
        x = y / norm
    return value, x, max_iter


def _power(operator, n, k, tol, max_iter, x0):
    """The k largest eigenpairs, one at a time, each on the complement of those already found."""
    rng = np.random.default_rng(0)
    basis, values, products, scale = np.zeros((0, n)), [], 0, 0.0
    for i in range(k):
        start = x0 if i == 0 else _fresh_direction(n, basis, rng)
        value, u, used = _power_one(operator, start, basis, tol, max_iter, scale=scale)
        products += used
        scale = max(scale, abs(value))
        if value < 0:  # the largest magnitude is negative: on H - value I every eigenvalue is >= 0
            shifted, u, used = _power_one(operator, start, basis, tol, max_iter, shift=value, scale=scale)
            value += shifted
            products += used
        basis = np.vstack([basis, u])
        values.append(value)
    order = np.argsort(values)[::-1]
    return np.array(values)[order], basis[order], products, scale


# ---------------------------------------------------------------------------- Lanczos
def _lanczos(operator, n, k, tol, max_iter, x0):
    """Lanczos with full reorthogonalization: Q^T H Q = tridiagonal(alpha, beta), its top-k eigenpairs
    (theta_i, s_i) give Ritz pairs (theta_i, Q^T s_i), whose residual is |beta_m s_i[m]|. A zero beta means
    the Krylov space is invariant: it restarts from a fresh orthogonal vector (beta stays 0 there), and then
    also waits for the new block's top Ritz pair, which may repeat an eigenvalue already found."""
    steps = min(n, max_iter)
    Q = np.zeros((steps, n))
    alpha, beta = np.zeros(steps), np.zeros(steps)
    rng = np.random.default_rng(1)
    q, block = x0, 0  # block: where the current Krylov sequence started (0, or the step of the last restart)
    for j in range(steps):
        Q[j] = q
        w = operator(q)
        alpha[j] = q @ w
        w = _orthogonalize(w, Q[:j + 1])  # removes alpha_j q_j and beta_{j-1} q_{j-1}, and rounding's leftovers
        beta[j] = np.linalg.norm(w)
        m = j + 1
        theta, S = _ritz(alpha[:m], beta[:m - 1])
        wanted = np.argsort(theta)[::-1][:k]
        scale = max(abs(theta).max(), np.finfo(np.float64).tiny)
        invariant = beta[j] <= 1e-12 * scale
        settled = np.all(beta[j] * np.abs(S[-1, wanted]) <= tol * scale)  # the Ritz pairs' residuals
        if block > 0:  # after a restart: also wait for the new block's top Ritz pair (a repeated eigenvalue?)
            _, block_S = _ritz(alpha[block:m], beta[block:m - 1])
            settled = settled and beta[j] * abs(block_S[-1, -1]) <= tol * scale
        if (m >= k and (m == n or not invariant) and settled) or m == steps:
            break
        if invariant:
            beta[j], block = 0.0, m
            q = _fresh_direction(n, Q[:m], rng)
        else:
            q = w / beta[j]
    vectors = S[:, wanted].T @ Q[:m]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return theta[wanted], vectors, m, scale


def _ritz(alpha, beta):
    """Eigenvalues and eigenvectors of the symmetric tridiagonal matrix with diagonal alpha and off-diagonal beta."""
    T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    return np.linalg.eigh(T)
