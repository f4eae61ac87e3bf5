"""Check a learner's own backpropagation, activation or loss against handgrad's.

``check_gradients(student_fn, net, X, T)`` calls

    student_fn(weights, biases, activations, X, T, loss) -> [(dW1, db1), (dW2, db2), ...]

with
    weights      list of W_k arrays, shape (n_in, n_out) (batch-first: Z_k = A_{k-1} @ W_k + b_k)
    biases       list of b_k arrays of shape (n_out,), or None for each layer when bias=False
    activations  list of activation names, e.g. ['relu', 'relu', 'sigmoid']
    X            (N, n_inputs) float array
    T            (N, n_outputs) targets as the network prepares them (class ids become one-hot rows)
    loss         the loss name, e.g. 'half_squared_error' (J = (1/N) sum_n l(a_n, t_n), no regularization)

and it must return one (dW, db) pair per layer, db None when the layer has no bias. The
arrays it receives are copies.

A network with normalization layers (Z = H W, Zhat = gamma * xhat + beta, A = f(Zhat); docs/derivations.md,
"Normalization layers") also passes ``norms=[None or {"kind": "batch" or "layer", "gamma": ..., "beta": ...,
"eps": 1e-05}, ...]`` (one entry per layer; batch norm with the batch's own statistics, as in training), and a
normalized layer's item is ``(dW, None, dgamma, dbeta)``. The three common wrong versions there
(docs/derivations.md, "Batch norm, backward, entry by entry") are planted and named in the hint: the mean and
the variance treated as constants (dZ = dZhat * gamma / std, :class:`StatisticsAsConstants`), only the mean's
path (:class:`OnlyMeanPath`) and only the variance's path (:class:`OnlyVariancePath`), for batch and layer norm.
The result is compared, parameter by parameter, with the
gradient of the data loss (l2, l1 and dropout play no part), and each wrong parameter
gets a hint when it matches a usual mistake: a missing transpose, a missing 1/N, f'
taken at the activation instead of the pre-activation (in every layer, in the hidden
layers or in one layer: the hint says which), a bias gradient not summed over the batch,
a flipped sign. The expected gradients and the mistaken ones are all computed by the
engine (``loss_and_grad`` and ``forward_backward``) on copies of the network; the mistake
f'(A) is planted with :class:`DerivativeAtActivation`.

``check_activation(obj)`` and ``check_loss(obj)`` check a user-defined activation's
derivative or loss's gradient (the built-ins' interface: subclass
``handgrad.activations.Activation`` with forward/derivative, or ``handgrad.losses.Loss``
with per_sample/gradient) against central differences, before any training.
"""

import traceback

import numpy as np

from .activations import Activation, get_activation
from .errors import ConfigError
from .gradcheck import numeric_gradient, relative_error
from .losses import Loss, get_loss

TOLERANCE = 1e-6


def _relative_error(given, expected):
    return relative_error(given, expected, floor=1e-12)


def _close(given, expected):
    return given.shape == expected.shape and _relative_error(given, expected) < TOLERANCE


# ------------------------------------------------------------------------------------------------ gradients
class ParameterResult:
    """The verdict on one parameter array (W2, b1...)."""

    def __init__(self, name, ok, relative_error=None, first_wrong=None, hint=""):
        self.name = name
        self.ok = ok
        self.relative_error = relative_error
        self.first_wrong = first_wrong  # (index, yours, expected) or None
        self.hint = hint

    def __str__(self):
        if self.ok:
            return f"{self.name:<5} right   (relative error {self.relative_error:.1e})"
        lines = [f"{self.name:<5} WRONG" + (f"   (relative error {self.relative_error:.1e})"
                                            if self.relative_error is not None else "")]
        if self.first_wrong is not None:
            index, yours, expected = self.first_wrong
            lines.append(f"      first wrong entry {index}: yours {yours:.10g}, expected {expected:.10g}")
        if self.hint:
            lines.append(f"      hint: {self.hint}")
        return "\n".join(lines)


class GradientReport:
    """Per-parameter verdicts; ``ok`` is True when every gradient is right."""

    def __init__(self, results, error=""):
        self.results = results
        self.error = error

    @property
    def ok(self):
        return not self.error and all(result.ok for result in self.results)

    def __getitem__(self, name):
        return next(result for result in self.results if result.name == name)

    def __str__(self):
        if self.error:
            return f"could not check your gradients: {self.error}"
        lines = [str(result) for result in self.results]
        right = sum(result.ok for result in self.results)
        lines.append(f"{right} of {len(self.results)} parameter gradients right: " + ("PASS" if self.ok else "FAIL"))
        return "\n".join(lines)

    __repr__ = __str__


def _data_loss_copy(net, derivative_at_A=(), constant_statistics=(), mistake=None):
    """A float64 copy of ``net`` without regularization or dropout: the function the student differentiates.

    The layers numbered in ``derivative_at_A`` (from 1) make the classic mistake: their
    backward evaluates f' at the activation A instead of at Z (see :class:`DerivativeAtActivation`).
    The normalized layers numbered in ``constant_statistics`` make one of batch norm's common mistakes:
    ``mistake`` (default :class:`StatisticsAsConstants`, mean and variance held fixed; or
    :class:`OnlyMeanPath`, :class:`OnlyVariancePath`).
    """
    from .network import MLP

    specs = []
    for k, layer in enumerate(net.layers, 1):
        activation = DerivativeAtActivation(layer.activation) if k in derivative_at_A else layer.activation
        spec = {"size": layer.n_out, "activation": activation}
        if layer.norm is not None:
            spec["norm"] = layer.norm.kind
        elif layer.has_bias != net.bias:
            spec["bias"] = layer.has_bias
        specs.append(spec)
    copy = MLP(net.n_inputs, specs, loss=net.loss_fn, bias=net.bias, dtype="float64")
    for k in constant_statistics:
        layer = copy.layers[k - 1]
        layer.norm = (mistake or StatisticsAsConstants).wrap(layer.norm)
    copy._bind_layers()
    copy.set_weights(net.get_weights())
    return copy


class _PlantedNormMistake:
    """A norm layer's backward with one of the common wrong versions (docs/derivations.md, "Batch norm, backward,
    entry by entry", "The common wrong versions"). dgamma and dbeta stay right; the mistaken dZ is written with
    G = dY * gamma (that is, dxhat) and mean(.) along the axis the statistics run over (the batch for batch
    norm, the features for layer norm): the right one is dZ = (G - mean(G) - xhat * mean(G * xhat)) / std.
    :meth:`wrap` makes the mistaken copy of a BatchNorm or LayerNorm (forward unchanged)."""

    @classmethod
    def wrap(cls, norm):
        mistaken = type(f"{type(norm).__name__}With{cls.__name__}", (cls, type(norm)), {})
        copy = mistaken.__new__(mistaken)
        copy.__dict__.update(norm.__dict__)
        return copy

    def backward(self, dY, need_dX=True):
        b = self._current
        np.sum(dY, axis=0, out=self.dbeta)
        np.sum(dY * b.xhat, axis=0, out=self.dgamma)
        G = dY * self.gamma
        return self._mistaken_dZ(G, b.xhat, self.axis) / b.std


class StatisticsAsConstants(_PlantedNormMistake):
    """Batch norm's classic mistake, planted in a norm layer: backward treats the mean and the variance as
    constants, dZ = dZhat * gamma / std, forgetting that they depend on Z (on every sample, for batch
    norm)."""

    @staticmethod
    def _mistaken_dZ(G, xhat, axis):
        return G  # the mistake: mu and var held fixed


class OnlyMeanPath(_PlantedNormMistake):
    """The variance treated as a constant: dZ = gamma/std * (dZhat - dbeta/N) for batch norm, the mean's path
    kept and the term - xhat * dgamma/N (through sigma^2 and s) lost."""

    @staticmethod
    def _mistaken_dZ(G, xhat, axis):
        return G - G.mean(axis=axis, keepdims=True)


class OnlyVariancePath(_PlantedNormMistake):
    """The mean treated as a constant in the numerator z - mu: dZ = gamma/std * (dZhat - xhat * dgamma/N) for batch
    norm, the term - dbeta/N (from dmu/dz_m = 1/N) lost."""

    @staticmethod
    def _mistaken_dZ(G, xhat, axis):
        return G - xhat * (G * xhat).mean(axis=axis, keepdims=True)


class DerivativeAtActivation(Activation):
    """The classic mistake, planted in an activation: backward uses f'(A) where it should use f'(Z).

    Forward is the wrapped activation's. Backward calls the wrapped backward with A in the
    place of Z (and f(A) in the place of A), so an element-wise activation gives
    dZ = dA * f'(A), and softmax its Jacobian at softmax(A). The name stays the wrapped one, so
    a network built with it keeps its closed form and its checks, and the engine's own
    backward (``loss_and_grad``, ``forward_backward``) computes the mistaken gradient.
    """

    needs_z = True
    derivative_in_forward = False
    row_log_sum_exp = False

    def __init__(self, activation):
        self.activation = activation
        self.name = activation.name
        self.elementwise = getattr(activation, "elementwise", True)
        self.output_range = activation.output_range
        self.init = activation.init

    def forward(self, Z, out=None):
        return self.activation.forward(Z, out=out)

    def derivative(self, Z, A):
        return self.activation.derivative(A, self.activation.forward(A.copy()))

    def backward(self, dA, Z, A, out=None):
        return self.activation.backward(dA, A.copy(), self.activation.forward(A.copy()), out=out)

    def __repr__(self):
        return f"DerivativeAtActivation({self.activation!r})"


def _layers_text(numbers):
    """[2] -> 'layer 2', [1, 2, 3] -> 'layers 1, 2 and 3'."""
    if len(numbers) == 1:
        return f"layer {numbers[0]}"
    return "layers " + ", ".join(str(k) for k in numbers[:-1]) + f" and {numbers[-1]}"


def _derivative_at_A_variants(reference, X, T):
    """[(layer numbers, [(dW, db), ...])]: the gradients a student gets who takes f'(A) instead of f'(Z), in every
    layer, in every hidden layer, or in one layer. An output layer with a closed form has no f' to get wrong."""
    L = len(reference.layers)
    layers = [k for k in range(1, L + 1) if not (k == L and reference.closed_form)]
    candidates = [tuple(layers), tuple(k for k in layers if k < L)] + [(k,) for k in layers]
    variants = []
    for numbers in dict.fromkeys(c for c in candidates if c):  # in order, without repeats
        _, grads = _data_loss_copy(reference, derivative_at_A=numbers).loss_and_grad(X, T)
        variants.append((numbers, grads))
    return variants


def _mistaken(variants, k, which):
    """[(layers, layer k's dW (which = 0) or db (which = 1))] of each f'(A) variant. Layer k's gradient depends
    on the layers at and above k only, so ``layers`` lists those of the variant's layers."""
    return [([m for m in numbers if m >= k], grads[k - 1][which])
            for numbers, grads in variants["at_A"] if max(numbers) >= k]


_NORM_MISTAKES = (StatisticsAsConstants, OnlyMeanPath, OnlyVariancePath)


def _constant_statistics_variants(reference, X, T):
    """[(mistake class, layer numbers, {name: gradient})]: the gradients of a student who makes one of the norms'
    common mistakes (:data:`_NORM_MISTAKES`), in every normalized layer or in one of them."""
    normed = [k for k, layer in enumerate(reference.layers, 1) if layer.norm is not None]
    variants = []
    for mistake in _NORM_MISTAKES:
        for numbers in dict.fromkeys(c for c in [tuple(normed)] + [(k,) for k in normed] if c):
            copy = _data_loss_copy(reference, constant_statistics=numbers, mistake=mistake)
            copy.loss_and_grad(X, T)
            variants.append((mistake, numbers, {name: g.copy() for name, g in copy.gradients()}))
    return variants


_RIGHT_NORM_BACKWARD = {
    "batch": "dZ = gamma/std * (dZhat - dbeta/N - xhat * dgamma/N) for batch norm (sums over the batch)",
    "layer": "dZ = (G - rowmean(G) - xhat * rowmean(G * xhat)) / std with G = dZhat * gamma for layer norm (means "
             "over each sample's features)",
}
_MISSING_TERM = {  # (mistake, kind) -> the term the student's dZ lacks, in that norm's notation
    (OnlyMeanPath, "batch"): "- xhat * dgamma/N",
    (OnlyMeanPath, "layer"): "- xhat * rowmean(G * xhat)",
    (OnlyVariancePath, "batch"): "- dbeta/N",
    (OnlyVariancePath, "layer"): "- rowmean(G)",
}
_WHERE_TO_READ = {
    "batch": "docs/derivations.md, 'Batch norm, backward, entry by entry', the common wrong versions",
    "layer": "docs/derivations.md, 'Layer norm', and the common wrong versions in 'Batch norm, backward, entry by "
             "entry'",
}


def _norm_mistake_text(mistake, kinds, where):
    """What the student forgot, for one of the :data:`_NORM_MISTAKES`."""
    if mistake is StatisticsAsConstants:
        return (f"mean and variance treated as constants in the {' and '.join(kinds)} norm of {where}: "
                "dZ = dZhat * gamma / std forgets that mu and var depend on Z"
                + (" (on every sample of the batch)" if "batch" in kinds else "")
                + ". Differentiate through them: ")
    n = " or ".join({"batch": "N", "layer": "D"}[kind] for kind in kinds)  # the count the statistics run over
    missing = " and ".join(f"{_MISSING_TERM[mistake, kind]} ({kind} norm)" for kind in kinds)
    if mistake is OnlyMeanPath:
        return (f"only the mean path, the variance treated as a constant in the {' and '.join(kinds)} norm of "
                f"{where}: your dZ follows mu but forgets that sigma^2 (so s) depends on Z too, "
                f"ds/dz_m = xhat_m/{n}; the term {missing} is missing. The right backward: ")
    return (f"only the variance path, the mean treated as a constant in the {' and '.join(kinds)} norm of {where}: "
            f"your dZ follows sigma^2 but forgets dmu/dz_m = 1/{n} in the numerator z_n - mu (the -1/{n} in "
            f"delta_nm - 1/{n}); the term {missing} is missing. The right backward: ")


def _constant_statistics_hint(given, expected, variants, name):
    """The hint for a gradient that matches one of the norms' common mistakes, or ''."""
    for mistake, numbers, grads in variants.get("constants", ()):
        mistaken = grads[name]
        if not _close(mistaken, expected) and _close(given, mistaken):
            kinds = sorted({variants["kinds"][k] for k in numbers})
            return (_norm_mistake_text(mistake, kinds, _layers_text(list(numbers)))
                    + "; ".join(_RIGHT_NORM_BACKWARD[kind] for kind in kinds)
                    + " (" + "; ".join(_WHERE_TO_READ[kind] for kind in kinds) + ").")
    return ""


def _diagnose_W(given, expected, variants, k):
    """A hint for a wrong dW_k, by comparing with the true gradient's usual mutations."""
    N = variants["N"]
    h = "X" if k == 1 else f"A{k - 1}"
    if given.shape == expected.T.shape and given.shape != expected.shape:
        if _close(given.T, expected):
            return (f"missing transpose: you returned dZ{k}^T {h} with shape {given.shape}; "
                    f"dW{k} = {h}^T dZ{k} has W{k}'s shape {expected.shape}.")
        return f"shape {given.shape} is W{k}'s transposed; dW{k} = {h}^T dZ{k} has shape {expected.shape}."
    if given.shape != expected.shape:
        return f"dW{k} must have W{k}'s shape {expected.shape}, got {given.shape}."
    hint = _constant_statistics_hint(given, expected, variants, f"W{k}")
    if hint:
        return hint
    if expected.shape[0] == expected.shape[1] and _close(given, expected.T):
        return f"missing transpose: you returned ({h}^T dZ{k})^T; dW{k}[i, j] = sum_n {h}[n, i] dZ{k}[n, j]."
    return _common_hints(given, expected, _mistaken(variants, k, 0), N, k, "dW")


def _diagnose_b(given, expected, variants, k):
    N = variants["N"]
    dZ = variants["dZ"][k - 1]
    if given.shape == dZ.shape or (given.ndim == 2 and given.shape[1:] == expected.shape):
        return (f"forgotten bias sum over the batch: db{k} has shape {given.shape}; it must be the column sums "
                f"of dZ{k}, dZ{k}.sum(axis=0), shape {expected.shape}.")
    if given.shape != expected.shape:
        return f"db{k} must have b{k}'s shape {expected.shape}, got {given.shape}."
    hint = _constant_statistics_hint(given, expected, variants, f"b{k}")
    if hint:
        return hint
    for n in range(dZ.shape[0]):
        if _close(given, dZ[n]):
            return f"forgotten bias sum over the batch: db{k} equals row {n} of dZ{k}; sum all N rows."
    if _close(given, expected / N):
        return f"db{k} is the mean of dZ{k}'s rows, but dZ{k} already holds the 1/N: sum the rows."
    return _common_hints(given, expected, _mistaken(variants, k, 1), N, k, "db")


def _common_hints(given, expected, at_A, N, k, name):
    if _close(given, N * expected):
        return f"missing 1/N: yours is N = {N} times too large; J is the mean over the batch, so dA = dJ/dA has a 1/N."
    if _close(given, expected / N):
        return f"divided by N twice: yours is N = {N} times too small."
    if _close(given, -expected):
        return "sign error: yours is the negative of the gradient (check a - t versus t - a)."
    for layers, mistaken in at_A:
        if mistaken is not None and not _close(mistaken, expected) and _close(given, mistaken):
            below = "" if k in layers else f" Layer {k}'s own step may be right: the error reaches it through dA{k}."
            return (f"derivative taken at the activation instead of the pre-activation (in {_layers_text(layers)}): "
                    "use f'(Z) there (or the formula in terms of A, such as A (1 - A) for sigmoid), not f'(A)."
                    + below)
    return (f"no usual mistake matches; compare your {name}{k} with handgrad's "
            "(python -c 'import handgrad as hg; print(hg.explain(net))' shows the equations).")


def check_gradients(student_fn, net, X, T):
    """Run ``student_fn`` (see the module docstring for its signature) and compare with handgrad's gradients.

    Returns a :class:`GradientReport`: ``print(report)`` shows each parameter as right or
    wrong with the relative error, the first wrong entry and a hint; ``report.ok`` says
    whether all are right.
    """
    if not callable(student_fn):
        raise ConfigError(f"student_fn must be a function, got {type(student_fn).__name__}.")
    reference = _data_loss_copy(net)
    X = reference.check_inputs(X)
    T = reference.check_targets(T, X.shape[0])
    _, grads = reference.loss_and_grad(X, T)
    _, layers = reference.forward_backward(X, T)
    named = {name: g.copy() for name, g in reference.gradients()}
    variants = {"N": X.shape[0], "dZ": [record["dZ"] for record in layers],
                "at_A": _derivative_at_A_variants(reference, X, T),
                "constants": _constant_statistics_variants(reference, X, T),
                "kinds": {k: layer.norm.kind for k, layer in enumerate(reference.layers, 1) if layer.norm is not None}}

    weights = [layer.W.copy() for layer in reference.layers]
    biases = [None if layer.b is None else layer.b.copy() for layer in reference.layers]
    activations = [layer.activation.name for layer in reference.layers]
    extra = {}
    if variants["kinds"]:
        extra["norms"] = [None if layer.norm is None else {"kind": layer.norm.kind, "gamma": layer.norm.gamma.copy(),
                                                           "beta": layer.norm.beta.copy(), "eps": layer.norm.eps}
                          for layer in reference.layers]
    try:
        returned = student_fn(weights, biases, activations, X.copy(), T.copy(), reference.loss_fn.name, **extra)
    except Exception as error:  # the student's code failed: report where, do not crash the checker
        if extra and isinstance(error, TypeError) and "'norms'" in str(error):
            return GradientReport([], "this network has normalization layers, so your function is called with "
                                      "norms=[None or {'kind', 'gamma', 'beta', 'eps'}, ...] (one entry per layer) "
                                      "and must return (dW, None, dgamma, dbeta) for a normalized layer; add a "
                                      f"'norms' parameter ({type(error).__name__}: {error}).")
        frame = traceback.extract_tb(error.__traceback__)[-1]
        return GradientReport([], f"your function raised {type(error).__name__}: {error} "
                                  f"(line {frame.lineno} of {frame.filename})")
    L = len(reference.layers)
    try:
        returned = list(returned)
    except TypeError:
        returned = None
    if returned is None or len(returned) != L:
        got = "nothing" if returned is None else f"{len(returned)} items"
        return GradientReport([], f"it must return a list of {L} (dW, db) pairs, one per layer; got {got}.")

    results = []
    for k, ((dW, db), item) in enumerate(zip(grads, returned, strict=True), 1):
        normed = k in variants["kinds"]
        try:
            given_W, given_b, *given_norm = item
            if len(given_norm) != (2 if normed else 0):
                raise ValueError
        except (TypeError, ValueError):
            shape = f"(dW{k}, None, dgamma{k}, dbeta{k})" if normed else f"a pair (dW{k}, db{k})"
            return GradientReport([], f"item {k} of the returned list must be {shape}.")
        results.append(_compare(f"W{k}", given_W, dW, lambda g, e, k=k: _diagnose_W(g, e, variants, k)))
        if db is not None:
            results.append(_compare(f"b{k}", given_b, db, lambda g, e, k=k: _diagnose_b(g, e, variants, k)))
        elif given_b is not None:
            why = "its norm's beta replaces the bias" if normed else "the network has no biases"
            results.append(ParameterResult(f"b{k}", False, hint=f"layer {k} has no bias ({why}): return None for db."))
        for name, given in zip(("gamma", "beta"), given_norm):
            results.append(_compare(f"{name}{k}", given, named[f"{name}{k}"],
                                    lambda g, e, key=f"{name}{k}": _diagnose_norm(g, e, variants, key)))
    return GradientReport(results)


def _diagnose_norm(given, expected, variants, name):
    """A hint for a wrong dgamma or dbeta."""
    if given.shape != expected.shape:
        return f"d{name} must have {name}'s shape {expected.shape}, got {given.shape}."
    hint = _constant_statistics_hint(given, expected, variants, name)
    if hint:
        return hint
    if _close(given, variants["N"] * expected):
        return f"missing 1/N: yours is N = {variants['N']} times too large."
    return (f"d{name} sums over the batch: dgamma = column sums of dZhat * xhat, dbeta = column sums of dZhat "
            "(dZhat = dA * f'(Zhat)).")


def _compare(name, given, expected, diagnose):
    if given is None:
        return ParameterResult(name, False, hint=f"no gradient returned for {name} (got None).")
    try:
        given = np.asarray(given, dtype=np.float64)
    except (TypeError, ValueError):
        return ParameterResult(name, False, hint=f"d{name} is not a numeric array.")
    if given.shape != expected.shape:
        return ParameterResult(name, False, hint=diagnose(given, expected))
    error = _relative_error(given, expected)
    if error < TOLERANCE:
        return ParameterResult(name, True, error)
    wrong = ~np.isclose(given, expected, rtol=1e-6, atol=1e-9 * max(float(np.abs(expected).max()), 1e-12))
    index = tuple(int(i) for i in np.argwhere(wrong)[0]) if wrong.any() else \
        tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(given - expected)), expected.shape))
    return ParameterResult(name, False, error, (index, float(given[index]), float(expected[index])),
                           diagnose(given, expected))


# ------------------------------------------------------------------------------------------------ activations
class CheckResult:
    """The outcome of :func:`check_activation` or :func:`check_loss`: ``ok`` and a list of problems."""

    def __init__(self, what, problems, max_error):
        self.what = what
        self.problems = problems
        self.max_error = max_error

    @property
    def ok(self):
        return not self.problems

    def __bool__(self):
        return self.ok

    def __str__(self):
        if self.ok:
            return f"{self.what}: right (largest relative error {self.max_error:.1e} against central differences)"
        return f"{self.what}: WRONG\n" + "\n".join(f"  - {problem}" for problem in self.problems)

    __repr__ = __str__


def _check_points():
    """Test points away from 0 and from other kinks (z = 0 is where relu-like derivatives jump)."""
    grid = np.linspace(-3.0, 3.0, 24)  # an even count: 0 is not among them
    return grid.reshape(4, 6)


def check_activation(obj, eps=1e-6, tolerance=1e-5):
    """Check an activation's derivative (and backward) against central differences of its forward.

    Accepts a name, an :class:`~handgrad.activations.Activation` subclass or instance.
    Returns a :class:`CheckResult` whose problems say at which z the derivative is wrong.
    """
    activation = get_activation(obj)
    Z = _check_points()
    name = f"activation '{activation.name}'"
    problems = []
    try:
        A = np.asarray(activation.forward(Z.copy()), dtype=np.float64)
    except Exception as error:
        return CheckResult(name, [f"forward(Z) raised {type(error).__name__}: {error}"], np.inf)
    if A.shape != Z.shape:
        return CheckResult(name, [f"forward must return an array of Z's shape {Z.shape}, got {A.shape}"], np.inf)
    buffer = np.empty_like(Z)
    if not np.allclose(activation.forward(Z.copy(), out=buffer), A):
        problems.append("forward(Z, out=buffer) returns something different from forward(Z): write into out and "
                        "return it (the layer passes a buffer)")

    rng = np.random.default_rng(0)
    dA = rng.normal(size=Z.shape)
    numeric = np.zeros_like(Z)  # dJ/dz for J = sum(dA * f(Z)): the backward pass applied to dA
    for index in np.ndindex(Z.shape):
        plus, minus = Z.copy(), Z.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = np.sum(dA * (activation.forward(plus) - activation.forward(minus))) / (2 * eps)
    try:
        backward = np.asarray(activation.backward(dA.copy(), Z.copy(), A.copy()), dtype=np.float64)
    except Exception as error:
        return CheckResult(name, [*problems, f"backward raised {type(error).__name__}: {error}"], np.inf)
    error = _relative_error(backward, numeric)
    if backward.shape != Z.shape or error > tolerance:
        if getattr(activation, "elementwise", True) and backward.shape == Z.shape:
            slope = backward / dA
            true_slope = numeric / dA
            wrong = np.argwhere(~np.isclose(slope, true_slope, rtol=tolerance, atol=tolerance))
            where = ", ".join(f"z = {Z[tuple(i)]:.3f}: yours {slope[tuple(i)]:.6g}, numeric "
                              f"{true_slope[tuple(i)]:.6g}" for i in wrong[:3])
            problems.append(f"derivative wrong at {len(wrong)} of {Z.size} points, e.g. {where}")
        else:
            problems.append(f"backward(dA, Z, A) differs from central differences (relative error {error:.2e})")
    if not activation.needs_z and backward.shape == Z.shape:
        # With needs_z = False the layer may overwrite Z with A, so backward gets A in place of Z.
        reused = np.asarray(activation.backward(dA.copy(), A.copy(), A.copy()), dtype=np.float64)
        if not np.allclose(reused, backward, rtol=1e-9, atol=1e-12):
            problems.append("needs_z is False but the derivative reads Z: set needs_z = True, or write the "
                            "derivative from A alone")
    return CheckResult(name, problems, error)


def check_loss(obj, eps=1e-6, tolerance=1e-5):
    """Check a loss's gradient dJ/dA (the 1/N included) against central differences of its value.

    Accepts a name, a :class:`~handgrad.losses.Loss` subclass or instance. Returns a :class:`CheckResult`.
    """
    loss = get_loss(obj)
    name = f"loss '{loss.name}'"
    rng = np.random.default_rng(0)
    N, K = 5, 3
    probabilities = (0.0, 1.0)
    A = rng.uniform(0.1, 0.9, (N, K)) if tuple(loss.output_range) == probabilities else rng.normal(size=(N, K))
    # one-hot rows: right for every cross-entropy
    T = np.eye(K)[rng.integers(0, K, N)] if tuple(loss.target_range) == probabilities else rng.normal(size=(N, K))
    if tuple(loss.output_range) == (0.0, np.inf):  # positive outputs and counts (the Poisson deviance)
        A, T = rng.uniform(0.2, 3.0, (N, K)), rng.integers(0, 4, (N, K)).astype(np.float64)
    problems = []
    try:
        per_sample = np.asarray(loss.per_sample(A.copy(), T.copy()))
        gradient = np.asarray(loss.gradient(A.copy(), T.copy()), dtype=np.float64)
    except Exception as error:
        return CheckResult(name, [f"per_sample or gradient raised {type(error).__name__}: {error}"], np.inf)
    if per_sample.shape != (N,):
        problems.append(f"per_sample must return one loss per sample, shape ({N},), got {per_sample.shape}")
        return CheckResult(name, problems, np.inf)
    if gradient.shape != A.shape:
        return CheckResult(name, [f"gradient must have A's shape {A.shape}, got {gradient.shape}"], np.inf)
    shifted = A.copy()
    numeric = numeric_gradient(lambda: loss.value(shifted, T), shifted, eps)
    error = _relative_error(gradient, numeric)
    if error > tolerance:
        if _relative_error(gradient, N * numeric) < tolerance:
            problems.append(f"gradient is N = {N} times too large: J is the mean over the batch, so divide by N")
        elif _relative_error(gradient, -numeric) < tolerance:
            problems.append("gradient has the wrong sign")
        else:
            index = np.unravel_index(np.argmax(np.abs(gradient - numeric)), A.shape)
            problems.append(f"gradient differs from central differences (relative error {error:.2e}); worst at "
                            f"A{list(index)} = {A[index]:.4f}, T = {T[index]:.4f}: yours {gradient[index]:.6g}, "
                            f"numeric {numeric[index]:.6g}")
    return CheckResult(name, problems, error)


__all__ = [
    "Activation",
    "CheckResult",
    "DerivativeAtActivation",
    "GradientReport",
    "Loss",
    "OnlyMeanPath",
    "OnlyVariancePath",
    "StatisticsAsConstants",
    "check_activation",
    "check_gradients",
    "check_loss",
]
