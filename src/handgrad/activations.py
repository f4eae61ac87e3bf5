"""Activation functions: each forward formula with its derivative right below it.

Notation (docs/derivations.md, section "Activations"): a layer computes the
pre-activation ``Z = X @ W + b`` and the activation ``A = f(Z)``. Backward receives
``dA = dJ/dA`` and returns ``dZ = dJ/dZ``. For an element-wise ``f`` that is
``dZ = dA * f'(Z)`` (Hadamard product); softmax acts on whole rows and uses its
Jacobian instead.

Every activation is an object with

* ``forward(Z, out=None) -> A``
* ``derivative(Z, A) -> f'(Z)``            (element-wise activations only)
* ``backward(dA, Z, A, out=None) -> dZ``    (``out`` may be ``dA`` itself: in place)
* ``needs_z``: whether backward needs ``Z``. When it does not, the derivative is
  written from the output ``A`` alone (as scikit-learn does) and the layer may let
  forward overwrite ``Z`` with ``A``, saving a buffer.
* ``output_range``: the open interval the outputs lie in; a cross-entropy needs (0, 1).
* ``derivative_in_forward``: True when ``forward(Z, out, derivative=D)`` also writes
  f'(Z) into D at almost no cost (ReLU: the 0/1 mask it multiplies Z by). A training
  layer then keeps D and computes ``dZ = dA * D`` without calling ``backward``.
* ``row_log_sum_exp``: True when ``forward(Z, out, lse=L)`` also writes each row's
  log-sum-exp into the (N, 1) array L (softmax: its normalizer, which a cross-entropy
  needs). An output layer then keeps L for the loss.

To add your own, subclass :class:`Activation`, implement ``forward`` and
``derivative`` (or ``backward``), and check it with ``handgrad.check_activation``.
"""

import functools
import inspect
import math
import re

import numpy as np

from .errors import ConfigError, suggest


@functools.lru_cache(maxsize=64)
def _ones_column(n, dtype):
    """A read-only (n, 1) column of ones: ``M @ ones`` sums the rows of M with one BLAS call."""
    ones = np.ones((n, 1), dtype)
    ones.flags.writeable = False
    return ones


@functools.lru_cache(maxsize=32)
def _zeros(shape, dtype):
    zeros = np.zeros(shape, dtype)
    zeros.flags.writeable = False
    return zeros


def _zeros_for(Z):
    """Read-only zeros to compare Z against. ``np.maximum(Z, 0)`` with the scalar 0 runs NumPy's slow
    broadcasting loop; against an array of zeros of Z's own shape it runs the vector loop (1.4x faster on
    one row, 3x on 32 rows). Z above 16,384 entries gets one row of zeros, broadcast, so that the cache
    stays small: still 2x faster than the scalar on a 4096 x 256 chunk."""
    return _zeros(Z.shape if Z.size <= 1 << 14 else Z.shape[-1:], Z.dtype)


def _row_max(Z):
    """The maximum of each row, as an (N, 1) array. With few columns (an output layer's K classes)
    NumPy's reduction along a row runs one short loop per row; reducing a transposed copy along its
    first axis runs K long vector loops instead, several times faster at the same result."""
    if Z.shape[1] <= 64:
        return np.maximum.reduce(np.ascontiguousarray(Z.T), axis=0)[:, None]
    return np.maximum.reduce(Z, axis=1, keepdims=True)


class Activation:
    """Base class. Subclasses set ``name`` and implement forward and derivative."""

    name = "activation"
    needs_z = True
    elementwise = True
    output_range = (-math.inf, math.inf)
    init = "glorot"  # the initialization that suits it: "he" for the ReLU family
    derivative_in_forward = False
    row_log_sum_exp = False

    def forward(self, Z, out=None):
        raise NotImplementedError

    def derivative(self, Z, A):
        """f'(Z), element by element. ``A`` is ``forward(Z)``, passed so it need not be recomputed."""
        raise NotImplementedError

    def backward(self, dA, Z, A, out=None):
        """dZ = dA * f'(Z)."""
        return np.multiply(dA, self.derivative(Z, A), out=out)

    def second_derivative(self, Z, A):
        """f''(Z), element by element (curvature only; ``A`` is ``forward(Z)``)."""
        raise NotImplementedError(f"activation '{self.name}' has no second_derivative(Z, A), which Hessian-vector "
                                  "products need.")

    def r_forward(self, RZ, Z, A):
        """R{A} = f'(Z) * R{Z}: how A moves when Z moves by R{Z} (a new array)."""
        return np.multiply(RZ, self.derivative(Z, A))

    def r_backward(self, dA, RdA, RZ, Z, A):
        """R{dZ} = R{dA} * f'(Z) + dA * f''(Z) * R{Z}: the R-operator of dZ = dA * f'(Z) (a new array)."""
        RdZ = np.multiply(RdA, self.derivative(Z, A))
        RdZ += dA * self.second_derivative(Z, A) * RZ
        return RdZ

    def __call__(self, Z):
        return self.forward(np.asarray(Z))

    def __repr__(self):
        return f"{type(self).__name__}()"

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self):
        return hash((type(self), tuple(sorted(vars(self).items()))))

    def config(self):
        """The name and parameters that rebuild this activation (used by model files)."""
        return {"name": self.name, **vars(self)}

    def spec(self):
        """The name as the layer spec writes it, with any parameters: 'relu', 'leaky_relu(slope=0.1)'."""
        params = ", ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value!r}"
                           for key, value in vars(self).items())
        return f"{self.name}({params})" if params else self.name


class Identity(Activation):
    """f(z) = z;  f'(z) = 1."""

    name = "identity"
    needs_z = False

    def forward(self, Z, out=None):
        if out is None:
            return Z.copy()
        if out is not Z:
            np.copyto(out, Z)
        return out

    def derivative(self, Z, A):
        return np.ones_like(A)

    def second_derivative(self, Z, A):
        return np.zeros_like(A)

    def backward(self, dA, Z, A, out=None):
        return self.forward(dA, out)


class ReLU(Activation):
    """f(z) = max(z, 0);  f'(z) = 1 if z > 0 else 0 (the Heaviside step of seed 000, eq. 7);
    f''(z) = 0 for z != 0 (at the kink f' jumps: its derivative is no number, and a pass never lands on it).

    z > 0 exactly when a = f(z) > 0, so the derivative is read from A.
    """

    name = "relu"
    needs_z = False
    output_range = (0.0, math.inf)
    init = "he"
    derivative_in_forward = True

    def forward(self, Z, out=None, derivative=None):
        if derivative is None:
            return np.maximum(Z, _zeros_for(Z), out=out)
        # With a place for f'(Z): the 0/1 mask first, then f(Z) = Z * f'(Z). Two plain passes are
        # faster than np.maximum against a scalar, and backward gets f'(Z) for free.
        mask = np.greater(Z, 0, out=derivative)
        return np.multiply(Z, mask, out=out)

    def derivative(self, Z, A):
        return (A > 0).astype(A.dtype)

    def second_derivative(self, Z, A):
        return np.zeros_like(A)

    def backward(self, dA, Z, A, out=None):
        return np.multiply(dA, A > 0, out=out)


class LeakyReLU(Activation):
    """f(z) = z if z > 0 else s*z;  f'(z) = 1 if z > 0 else s (seed 003, s = 0.01 by default);
    f''(z) = 0 for z != 0 (as for ReLU).

    For 0 <= s <= 1, f(z) = max(z, s*z), and z > 0 exactly when a > 0.
    """

    name = "leaky_relu"
    needs_z = False
    init = "he"
    derivative_in_forward = True

    def __init__(self, slope=0.01):
        slope = float(slope)
        if not 0.0 <= slope <= 1.0:
            raise ConfigError(f"leaky_relu slope must be in [0, 1], got {slope}; use e.g. LeakyReLU(slope=0.01).")
        self.slope = slope

    def forward(self, Z, out=None, derivative=None):
        if derivative is None:
            return np.maximum(Z, self.slope * Z, out=out)
        D = np.greater(Z, 0, out=derivative)  # 1 where z > 0, else 0
        np.maximum(D, self.slope, out=D)  # f'(Z): 1 where z > 0, else s (exactly: 0 <= s <= 1)
        return np.multiply(Z, D, out=out)  # f(Z) = Z * f'(Z)

    def derivative(self, Z, A):
        return np.where(A > 0, 1.0, self.slope).astype(A.dtype)

    def second_derivative(self, Z, A):
        return np.zeros_like(A)

    def backward(self, dA, Z, A, out=None):
        scale = np.where(A > 0, A.dtype.type(1), A.dtype.type(self.slope))
        return np.multiply(dA, scale, out=out)

    def __repr__(self):
        return f"LeakyReLU(slope={self.slope})"


class Sigmoid(Activation):
    """f(z) = 1 / (1 + e^-z);  f'(z) = f(z) (1 - f(z)) = a (1 - a);
    f''(z) = (1 - 2a) f'(z) = a (1 - a) (1 - 2a).

    Forward never evaluates e^-z for large negative z (which overflows): with
    e = e^-|z|, f(z) = 1/(1+e) for z >= 0 and e/(1+e) for z < 0.
    """

    name = "sigmoid"
    needs_z = False
    output_range = (0.0, 1.0)

    def forward(self, Z, out=None):
        negative = Z < 0
        if out is None:
            out = np.empty_like(Z)
        np.abs(Z, out=out)
        np.negative(out, out=out)
        np.exp(out, out=out)  # e = exp(-|z|), in (0, 1]
        denominator = out + 1
        np.divide(out, denominator, out=out)  # e / (1 + e): f(z) for z < 0
        np.subtract(1, out, out=out, where=~negative)  # 1 - e/(1+e) = 1/(1+e): f(z) for z >= 0
        return out

    def derivative(self, Z, A):
        return A * (1 - A)

    def second_derivative(self, Z, A):
        return A * (1 - A) * (1 - 2 * A)

    def backward(self, dA, Z, A, out=None):
        one_minus_a = 1 - A
        out = np.multiply(dA, A, out=out)
        return np.multiply(out, one_minus_a, out=out)


class Tanh(Activation):
    """f(z) = tanh z;  f'(z) = 1 - tanh^2 z = 1 - a^2;  f''(z) = -2 a f'(z) = -2 a (1 - a^2)."""

    name = "tanh"
    needs_z = False
    output_range = (-1.0, 1.0)

    def forward(self, Z, out=None):
        return np.tanh(Z, out=out)

    def derivative(self, Z, A):
        return 1 - A * A

    def second_derivative(self, Z, A):
        return -2 * A * (1 - A * A)

    def backward(self, dA, Z, A, out=None):
        return np.multiply(dA, self.derivative(Z, A), out=out)


class Softmax(Activation):
    """Row-wise: a_k = e^{z_k} / sum_j e^{z_j}  (seed 002).

    Jacobian of one row: da_k/dz_j = a_k (delta_kj - a_j). Applied to a row of dA:
    dz_j = sum_k dA_k a_k (delta_kj - a_j) = a_j (dA_j - sum_k dA_k a_k),
    so dZ = A * (dA - rowsum(dA * A)), with no K x K matrix built.
    Forward subtracts each row's maximum first, which changes nothing mathematically
    and keeps e^z from overflowing.
    """

    name = "softmax"
    needs_z = False
    elementwise = False
    output_range = (0.0, 1.0)
    row_log_sum_exp = True

    def forward(self, Z, out=None, lse=None):
        """Row-wise softmax. With ``lse``, an (N, 1) array, also writes each row's log-sum-exp
        ln sum_k e^{z_k} = m + ln sum_k e^{z_k - m} there: a cross-entropy needs exactly that
        (losses.py), and forward has it almost for free."""
        row_max = _row_max(Z)
        out = np.subtract(Z, row_max, out=out)
        np.exp(out, out=out)
        total = np.matmul(out, _ones_column(out.shape[1], out.dtype))  # row sums (BLAS: faster than a reduce)
        out /= total
        if lse is not None:
            np.log(total, out=lse)
            lse += row_max
        return out

    def derivative(self, Z, A):
        raise ConfigError("softmax is not element-wise: it has a Jacobian, see Softmax.jacobian or backward.")

    def jacobian(self, A):
        """The (N, K, K) stack of per-row Jacobians diag(a) - a a^T (for teaching; backward never builds it)."""
        return np.einsum("nk,kj->nkj", A, np.eye(A.shape[1], dtype=A.dtype)) - A[:, :, None] * A[:, None, :]

    def backward(self, dA, Z, A, out=None):
        weighted = np.einsum("nk,nk->n", dA, A)[:, None]  # rowsum(dA * A)
        out = np.subtract(dA, weighted, out=out)
        return np.multiply(out, A, out=out)

    def r_forward(self, RZ, Z, A):
        """R{A} = J R{Z} with J = diag(a) - a a^T per row. J is symmetric, so this is backward's formula
        applied to R{Z}: R{A} = A * (R{Z} - rowsum(R{Z} * A))."""
        return self.backward(RZ, Z, A)

    def r_backward(self, dA, RdA, RZ, Z, A):
        """The R-operator of dZ = A * (dA - s), s = rowsum(dA * A), in any position:
        R{A} = r_forward(R{Z}),  R{s} = rowsum(R{dA} * A + dA * R{A}),
        R{dZ} = R{A} * (dA - s) + A * (R{dA} - R{s})."""
        RA = self.r_forward(RZ, Z, A)
        s = np.einsum("nk,nk->n", dA, A)[:, None]
        Rs = (np.einsum("nk,nk->n", RdA, A) + np.einsum("nk,nk->n", dA, RA))[:, None]
        return RA * (dA - s) + A * (RdA - Rs)


class Softplus(Activation):
    """f(z) = ln(1 + e^z);  f'(z) = sigmoid(z) = 1 - e^-a  (since e^-a = 1/(1+e^z));
    f''(z) = sigmoid(z) (1 - sigmoid(z)) = (1 - e^-a) e^-a."""

    name = "softplus"
    needs_z = False
    output_range = (0.0, math.inf)

    def forward(self, Z, out=None):
        return np.logaddexp(0, Z, out=out)

    def derivative(self, Z, A):
        return -np.expm1(-A)

    def second_derivative(self, Z, A):
        return -np.expm1(-A) * np.exp(-A)

    def backward(self, dA, Z, A, out=None):
        return np.multiply(dA, self.derivative(Z, A), out=out)


class ELU(Activation):
    """f(z) = z if z > 0 else alpha (e^z - 1);  f'(z) = 1 if z > 0 else alpha e^z = a + alpha;
    f''(z) = 0 if z > 0 else alpha e^z = a + alpha (f' jumps at 0 unless alpha = 1)."""

    name = "elu"
    needs_z = False
    init = "he"

    def __init__(self, alpha=1.0):
        alpha = float(alpha)
        if not alpha > 0:
            raise ConfigError(f"elu alpha must be positive, got {alpha}.")
        self.alpha = alpha

    def forward(self, Z, out=None):
        negative_part = np.expm1(np.minimum(Z, 0))  # never exponentiates a large positive z
        negative_part *= self.alpha
        result = np.where(Z > 0, Z, negative_part)
        if out is None:
            return result
        np.copyto(out, result)
        return out

    def derivative(self, Z, A):
        return np.where(A > 0, A.dtype.type(1), A + A.dtype.type(self.alpha))

    def second_derivative(self, Z, A):
        return np.where(A > 0, A.dtype.type(0), A + A.dtype.type(self.alpha))

    def backward(self, dA, Z, A, out=None):
        return np.multiply(dA, self.derivative(Z, A), out=out)

    def __repr__(self):
        return f"ELU(alpha={self.alpha})"


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715


class GELU(Activation):
    """The tanh form (PyTorch ``GELU(approximate='tanh')``):

    f(z) = z/2 (1 + tanh u),  u = c (z + k z^3),  c = sqrt(2/pi), k = 0.044715
    f'(z) = (1 + tanh u)/2 + z/2 (1 - tanh^2 u) c (1 + 3 k z^2)
    f''(z) = (1 - tanh^2 u) (u' - z tanh(u) u'^2 + 3 c k z^2),   u' = c (1 + 3 k z^2)
    """

    name = "gelu"
    init = "he"

    def forward(self, Z, out=None):
        t = np.tanh(_GELU_C * (Z + _GELU_K * Z**3))
        t += 1
        t *= 0.5
        return np.multiply(Z, t, out=out)

    def derivative(self, Z, A):
        t = np.tanh(_GELU_C * (Z + _GELU_K * Z**3))
        return 0.5 * (1 + t) + 0.5 * Z * (1 - t * t) * _GELU_C * (1 + 3 * _GELU_K * Z * Z)

    def second_derivative(self, Z, A):
        t = np.tanh(_GELU_C * (Z + _GELU_K * Z**3))
        du = _GELU_C * (1 + 3 * _GELU_K * Z * Z)  # u'(z); u''(z) = 6 c k z, and z u''/2 = 3 c k z^2
        return (1 - t * t) * (du - Z * t * du * du + 3 * _GELU_C * _GELU_K * Z * Z)


class SiLU(Activation):
    """f(z) = z sigmoid(z) (also called swish);  f'(z) = s + z s (1 - s),  s = sigmoid(z);
    f''(z) = s (1 - s) (2 + z (1 - 2 s))."""

    name = "silu"
    init = "he"

    def forward(self, Z, out=None):
        return np.multiply(Z, Sigmoid().forward(Z), out=out)

    def derivative(self, Z, A):
        s = Sigmoid().forward(Z)
        return s * (1 + Z * (1 - s))

    def second_derivative(self, Z, A):
        s = Sigmoid().forward(Z)
        return s * (1 - s) * (2 + Z * (1 - 2 * s))


class Exp(Activation):
    """f(z) = e^z;  f'(z) = e^z = a;  f''(z) = e^z = a (docs/derivations.md, "The exp activation").

    The output of a Poisson regression (the log link: MLPRegressor(loss='poisson') pairs it with the half
    Poisson deviance, whose closed form is dJ/dZ = (A - T)/N). Every derivative is the output itself, read
    from A. e^z overflows to inf above z = ln(max float) (709.78 in float64, 88.72 in float32): a loss on
    such an output is infinite and the trainer stops (it never takes that step). inf is then the value of e^z
    (predict returns it; the command line says how many overflowed), so forward raises no NumPy warning.
    """

    name = "exp"
    needs_z = False
    output_range = (0.0, math.inf)

    def forward(self, Z, out=None):
        with np.errstate(over="ignore"):  # e^z above the float range is inf, the documented value
            return np.exp(Z, out=out)

    def derivative(self, Z, A):
        return A

    def second_derivative(self, Z, A):
        return A

    def backward(self, dA, Z, A, out=None):
        return np.multiply(dA, A, out=out)


ACTIVATIONS = {
    "identity": Identity,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "softmax": Softmax,
    "softplus": Softplus,
    "elu": ELU,
    "gelu": GELU,
    "silu": SiLU,
    "exp": Exp,
}
ALIASES = {"linear": "identity", "logistic": "sigmoid", "swish": "silu", "leakyrelu": "leaky_relu", "none": "identity"}


def get_activation(spec):
    """An activation from its name (``"relu"``), a name with parameters (``"leaky_relu(0.1)"``,
    ``"elu(alpha=0.5)"``), a config dict (``{"name": "leaky_relu", "slope": 0.1}``), or an
    :class:`Activation` object."""
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, dict):
        params = dict(spec)
        name = params.pop("name", None)
        return _by_name(name, params)
    if isinstance(spec, type) and issubclass(spec, Activation):
        return spec()
    if isinstance(spec, str):
        return _by_name(spec, {})
    raise ConfigError(
        f"an activation must be a name such as 'relu' or an Activation object, got {type(spec).__name__}."
    )


_CALL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_\-]*)\s*\((.*)\)\s*$", re.DOTALL)


def _parameter_names(cls):
    """The constructor's parameter names, in order: ("slope",) for LeakyReLU, () for ReLU."""
    if cls.__init__ is object.__init__:
        return ()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(name for name, parameter in inspect.signature(cls.__init__).parameters.items()
                 if name != "self" and parameter.kind in kinds)


def _number(key, text, written):
    """A parameter value written in a spec: a finite number, or a ConfigError quoting the spec."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"activation '{written}': parameter {key} must be a finite number, got '{text.strip()}'.")
    return value


def _parse_call(text, cls, key):
    """The parameters written as in a call, ``leaky_relu(0.1)`` or ``leaky_relu(slope=0.1)``, as a dict."""
    names = _parameter_names(cls)
    arguments = _CALL.match(text).group(2).strip()
    parts = [part.strip() for part in arguments.split(",")] if arguments else []
    params = {}
    for position, part in enumerate(parts):
        name, equals, value = part.partition("=")
        if equals:
            name = name.strip()
            if name not in names:
                raise ConfigError(f"activation '{text}': {key} has no parameter '{name}'.{suggest(name, names)} "
                                  f"Its parameters: {', '.join(names) or 'none'}.")
        else:
            if position >= len(names):
                raise ConfigError(f"activation '{text}': {key} takes {len(names)} parameter(s) "
                                  f"({', '.join(names) or 'none'}), got {len(parts)}.")
            name, value = names[position], part
        if name in params:
            raise ConfigError(f"activation '{text}': parameter {name} is given twice.")
        params[name] = _number(name, value, text)
    return params


def _by_name(name, params):
    text = str(name)
    call = _CALL.match(text)
    key = (call.group(1) if call else text).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in ACTIVATIONS:
        hint = " Parameters go in parentheses, e.g. 'leaky_relu(0.1)'." if "(" in text or ")" in text else ""
        raise ConfigError(
            f"unknown activation '{name}'.{suggest(key, ACTIVATIONS)} Valid names: {', '.join(ACTIVATIONS)}.{hint}"
        )
    cls = ACTIVATIONS[key]
    if call:
        written = _parse_call(text, cls, key)
        twice = sorted(set(written) & set(params))
        if twice:
            raise ConfigError(f"activation '{text}': parameter {twice[0]} is given both in the name and as a key.")
        params = {**params, **written}
    names = _parameter_names(cls)
    unknown = sorted(str(p) for p in params if p not in names)
    if unknown:
        raise ConfigError(f"bad parameters for activation '{key}': it has no parameter '{unknown[0]}'."
                          f"{suggest(unknown[0], names)} Its parameters: {', '.join(names) or 'none'}.")
    try:
        return cls(**params)
    except (TypeError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"bad parameters for activation '{key}': {error}.") from None
