"""Losses: each one's value, its gradient with respect to the network output, and
the closed form it has with its natural output activation.

Notation (docs/derivations.md, section "Losses"): the network output is ``A`` of
shape (N, K), the targets ``T`` have the same shape. Every loss is a mean over the
N samples of a per-sample loss ``l_i``:

    J_data = (1/N) sum_i w_i l_i(a_i, t_i)        (w_i = 1 unless sample weights are given)

One interface for all losses:

* ``per_sample(A, T) -> (N,)``      the l_i
* ``value(A, T, sample_weight=None) -> float``
* ``gradient(A, T, out=None) -> dJ/dA`` of shape (N, K), the 1/N included
  (sample weights are applied by the network, row by row: dJ/da_i is scaled by w_i)
* ``pairs_with``: the output activation whose composition with this loss has the
  closed form dJ/dZ = (A - T)/N; ``per_sample_from_logits(Z, T, lse=None)`` evaluates
  the loss from the pre-activation Z, which stays finite for any logits (``lse``: the
  rows' log-sum-exp when the softmax forward pass kept it).
* ``output_range``: the outputs the loss is defined for (a cross-entropy takes logs).
* ``r_gradient(A, T, RA) -> R{dJ/dA}``: the Hessian of J_data with respect to A applied to R{A}
  (every loss here is a sum of per-entry terms, so that Hessian is diagonal), the 1/N included;
  ``r_closed_form(RA) = R{A}/N``: the R-operator of the closed form (A - T)/N. Both serve
  Hessian-vector products (docs/derivations.md, "Curvature: Hessian-vector products").

Closed forms hold for exactly these pairs, and are used only for them:
softmax + cross_entropy (when each target row sums to 1), sigmoid +
binary_cross_entropy, and exp + half_poisson_deviance (the log link). Every other pair goes
through the general chain rule dZ = f'(Z)^T dA (softmax: its full Jacobian).
"""

import math

import numpy as np

from .activations import _ones_column, _row_max
from .errors import ConfigError, suggest


def weighted_total(losses, sample_weight=None):
    """sum_i w_i l_i as a Python float (w_i = 1 without sample weights)."""
    if sample_weight is not None:
        losses = losses * sample_weight
    return float(np.add.reduce(losses))


class Loss:
    """Base class: subclasses implement per_sample and gradient."""

    name = "loss"
    pairs_with = None
    output_range = (-math.inf, math.inf)
    target_range = (-math.inf, math.inf)

    def per_sample(self, A, T):
        raise NotImplementedError

    def gradient(self, A, T, out=None):
        raise NotImplementedError

    def r_gradient(self, A, T, RA):
        """R{dJ/dA}: the Hessian of J_data w.r.t. A applied to R{A} (T does not move), the 1/N included."""
        raise NotImplementedError(f"loss '{self.name}' has no r_gradient(A, T, RA) for Hessian-vector products.")

    def r_closed_form(self, RA):
        """R{dJ/dZ} for the closed form dJ/dZ = (A - T)/N with ``pairs_with``: R{A}/N."""
        return RA * (1.0 / RA.shape[0])

    def value(self, A, T, sample_weight=None):
        losses = self.per_sample(A, T)
        if sample_weight is not None:
            losses = losses * sample_weight
        return float(losses.mean())

    def per_sample_from_logits(self, Z, T, lse=None):
        raise NotImplementedError(f"{self.name} has no closed form from logits")

    def total_from_logits(self, Z, T, lse=None, sample_weight=None):
        """sum_i w_i l_i from the logits (a Python float): what the training objective needs."""
        return weighted_total(self.per_sample_from_logits(Z, T, lse), sample_weight)

    def __call__(self, A, T):
        return self.value(np.asarray(A), np.asarray(T))

    def __repr__(self):
        return f"{type(self).__name__}()"

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))


class HalfSquaredError(Loss):
    """l_i = 1/2 ||a_i - t_i||^2  (seed 000);  dJ/dA = (A - T)/N."""

    name = "half_squared_error"

    def per_sample(self, A, T):
        difference = A - T
        return 0.5 * np.einsum("nk,nk->n", difference, difference)

    def gradient(self, A, T, out=None):
        out = np.subtract(A, T, out=out)
        out *= 1.0 / A.shape[0]
        return out

    def r_gradient(self, A, T, RA):
        """d^2 l/da^2 = I:  R{dJ/dA} = R{A}/N."""
        return RA * (1.0 / A.shape[0])


class MeanSquaredError(Loss):
    """l_i = ||a_i - t_i||^2, summed over the K outputs and averaged over N (seed 004);
    dJ/dA = 2 (A - T)/N.

    This is not ``np.mean((A - T)**2)``, which also divides by K.
    """

    name = "mse"

    def per_sample(self, A, T):
        difference = A - T
        return np.einsum("nk,nk->n", difference, difference)

    def gradient(self, A, T, out=None):
        out = np.subtract(A, T, out=out)
        out *= 2.0 / A.shape[0]
        return out

    def r_gradient(self, A, T, RA):
        """d^2 l/da^2 = 2I:  R{dJ/dA} = 2 R{A}/N."""
        return RA * (2.0 / A.shape[0])


def _safe_log(P):
    """ln p with p clipped to the smallest positive normal number, so ln 0 is finite (-708 in float64)."""
    return np.log(np.maximum(P, np.finfo(P.dtype).tiny))


class BinaryCrossEntropy(Loss):
    """l_i = -sum_j [t_ij ln a_ij + (1 - t_ij) ln(1 - a_ij)];
    dJ/da = (a - t) / (a (1 - a)) / N.

    With a = sigmoid(z): dJ/dz = dJ/da * a(1 - a) = (a - t)/N, and
    l = sum_j [ln(1 + e^z) - t z] = sum_j [logaddexp(0, z) - t z], finite for any z.
    """

    name = "binary_cross_entropy"
    pairs_with = "sigmoid"
    output_range = (0.0, 1.0)
    target_range = (0.0, 1.0)

    def per_sample(self, A, T):
        return -(T * _safe_log(A) + (1 - T) * _safe_log(1 - A)).sum(axis=1)

    def gradient(self, A, T, out=None):
        tiny = np.finfo(A.dtype).tiny
        denominator = np.maximum(A * (1 - A), tiny)
        out = np.subtract(A, T, out=out)
        out /= denominator
        out *= 1.0 / A.shape[0]
        return out

    def r_gradient(self, A, T, RA):
        """d^2 l/da^2 = t/a^2 + (1 - t)/(1 - a)^2 per entry:  R{dJ/dA} = that * R{A} / N."""
        tiny = np.finfo(A.dtype).tiny
        curvature = T / np.maximum(A * A, tiny) + (1 - T) / np.maximum((1 - A) ** 2, tiny)
        return curvature * RA * (1.0 / A.shape[0])

    def per_sample_from_logits(self, Z, T, lse=None):
        return (np.logaddexp(0, Z) - T * Z).sum(axis=1)


class CrossEntropy(Loss):
    """l_i = -sum_k t_ik ln a_ik  (seed 002);  dJ/da = -t/(a N).

    With a = softmax(z) and rows of T summing to 1: dJ/dz = (a - t)/N (seed 002's
    boxed result), and l = sum_k t_k (logsumexp(z) - z_k), finite for any z.
    Targets may be one-hot rows or integer class ids (the network converts ids).
    """

    name = "cross_entropy"
    pairs_with = "softmax"
    output_range = (0.0, 1.0)
    target_range = (0.0, 1.0)

    def per_sample(self, A, T):
        return -(T * _safe_log(A)).sum(axis=1)

    def gradient(self, A, T, out=None):
        tiny = np.finfo(A.dtype).tiny
        out = np.divide(T, np.maximum(A, tiny), out=out)
        out *= -1.0 / A.shape[0]
        return out

    def r_gradient(self, A, T, RA):
        """d^2 l/da^2 = diag(t/a^2):  R{dJ/dA} = T * R{A} / (A^2 N)."""
        tiny = np.finfo(A.dtype).tiny
        return T / np.maximum(A * A, tiny) * RA * (1.0 / A.shape[0])

    def per_sample_from_logits(self, Z, T, lse=None):
        """l_i = sum_k t_ik (lse_i - z_ik) = lse_i sum_k t_ik - sum_k t_ik z_ik, with
        lse_i = ln sum_k e^{z_ik} = m_i + ln sum_k e^{z_ik - m_i} (m_i the row maximum: no overflow)."""
        if lse is None:
            row_max = _row_max(Z)
            lse = np.log(np.add.reduce(np.exp(Z - row_max), axis=1, keepdims=True)) + row_max
        return lse[:, 0] * np.add.reduce(T, axis=1) - np.einsum("nk,nk->n", T, Z)

    def total_from_logits(self, Z, T, lse=None, sample_weight=None):
        """Unweighted: sum_i l_i = sum_i lse_i (sum_k t_ik) - sum_ik t_ik z_ik, two dot products
        (BLAS) instead of a per-sample vector."""
        if sample_weight is not None or lse is None:
            return super().total_from_logits(Z, T, lse, sample_weight)
        row_sums = np.matmul(T, _ones_column(T.shape[1], T.dtype))
        return float(np.vdot(lse, row_sums)) - float(np.vdot(T, Z))


class HalfPoissonDeviance(Loss):
    """l_i = sum_k [t ln(t/a) - t + a] (scikit-learn's 'poisson' loss; t ln t = 0 at t = 0);
    dJ/da = (1 - t/a)/N;  R{dJ/da} = t/a^2 R{a} / N.

    Its natural output is exp (the log link, docs/derivations.md "The exp activation"): with a = e^z,
    dJ/dz = e^z (1 - t/e^z)/N = (A - T)/N, and l = sum_k [t ln t - t z - t + e^z], finite for any z.
    """

    name = "half_poisson_deviance"
    pairs_with = "exp"
    output_range = (0.0, math.inf)
    target_range = (0.0, math.inf)

    @staticmethod
    def _t_ln_t(T):
        return T * np.log(np.where(T > 0, T, 1))

    def per_sample(self, A, T):
        return (self._t_ln_t(T) - T * np.log(np.maximum(A, np.finfo(A.dtype).tiny)) - T + A).sum(axis=1)

    # per_sample takes ln max(a, tiny): below tiny (an output of exactly 0, a relu's say) l is t ln t - t ln tiny
    # - t + a, whose derivatives are 1 and 0. The derivatives below are that function's, so they stay finite
    # there instead of t/0 (inf, and inf * f'(z) = inf * 0 = NaN in backward).
    def gradient(self, A, T, out=None):
        positive = A >= np.finfo(A.dtype).tiny
        out = np.divide(T, A, out=np.zeros_like(A) if out is None else out, where=positive)
        out[~positive] = 0
        np.subtract(1, out, out=out)
        out *= 1.0 / A.shape[0]
        return out

    def r_gradient(self, A, T, RA):
        """d^2 l/da^2 = t/a^2 (0 below tiny, as in gradient):  R{dJ/dA} = T * R{A} / (A^2 N)."""
        positive = A >= np.finfo(A.dtype).tiny
        R = np.divide(T * RA, A, out=np.zeros_like(A), where=positive)
        np.divide(R, A, out=R, where=positive)
        return R * (1.0 / A.shape[0])

    def per_sample_from_logits(self, Z, T, lse=None):
        return (self._t_ln_t(T) - T * Z - T + np.exp(Z)).sum(axis=1)


LOSSES = {
    "half_squared_error": HalfSquaredError,
    "mse": MeanSquaredError,
    "binary_cross_entropy": BinaryCrossEntropy,
    "cross_entropy": CrossEntropy,
    "half_poisson_deviance": HalfPoissonDeviance,
}
ALIASES = {
    "squared_error": "half_squared_error",
    "mean_squared_error": "mse",
    "bce": "binary_cross_entropy",
    "log_loss": "binary_cross_entropy",
    "categorical_cross_entropy": "cross_entropy",
    "ce": "cross_entropy",
    "poisson": "half_poisson_deviance",
}


def get_loss(spec):
    """A loss from its name or a :class:`Loss` object."""
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, type) and issubclass(spec, Loss):
        return spec()
    if isinstance(spec, str):
        key = spec.strip().lower().replace("-", "_")
        key = ALIASES.get(key, key)
        if key not in LOSSES:
            raise ConfigError(f"unknown loss '{spec}'.{suggest(key, LOSSES)} Valid names: {', '.join(LOSSES)}.")
        return LOSSES[key]()
    raise ConfigError(f"a loss must be a name such as 'mse' or a Loss object, got {type(spec).__name__}.")


def default_loss_for(activation_name):
    """The loss users expect after an output activation: the one whose closed form it has."""
    return {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy",
            "exp": "half_poisson_deviance"}.get(activation_name, "half_squared_error")
