"""Two deliberately slow engines that compute the same gradients as ``MLP.loss_and_grad``.

They exist for teaching and as independent oracles in the tests. Neither shares any
math with the batched engine: every formula is written out again here.

1. :func:`scalar_gradients`: seed 000's view. The whole objective J is built as an
   explicit graph of scalar nodes (one node per number: every weight, every product
   x_i w_ij, every pre-activation, every activation, every loss term). Each operation
   records, right next to its forward value, its *local derivatives*
   dv_child/dv_parent. Backward then visits the nodes in reverse topological order and
   applies seed 000's rule (its equation (1))

       v_bar_i = sum over children j of v_i:  v_bar_j * dv_j/dv_i,      J_bar = 1.

2. :func:`per_sample_gradients`: seed 003's algorithm. Column vectors, W stored as
   (n_out, n_in) (that is, our W transposed), one sample at a time:

       forward:   h_0 = x;  a_k = W_k h_{k-1} + b_k;  h_k = f_k(a_k)
       backward:  g = dl/dh_L                         (the loss derivative)
                  for k = L, ..., 1:
                      g = f_k'(a_k)^T g                (element-wise: g * f_k'(a_k); softmax: its Jacobian;
                                                        at k = L with a closed form: g = h_L - t directly)
                      b_derivs_k += g;  W_derivs_k += g h_{k-1}^T;  g = W_k^T g

   and the sums over samples are divided by N, as the batched engine's 1/N does.

Softmax may sit in any layer, hidden ones included: the scalar engine expands each row
into exp, sum and divide nodes (so its Jacobian is never written at all), and the
per-sample engine multiplies by the row's Jacobian diag(h) - h h^T, built explicitly.
Neither uses the batched engine's Jacobian-vector product, which they therefore check.

Normalization layers: the scalar engine builds batch norm's and layer norm's mean, variance and
standardization from scalar nodes (so their backward is again never written); because batch norm's
statistics join the samples, its graph is built layer by layer for the whole batch. The per-sample
engine runs layer norm with its Jacobian built explicitly; batch norm has no per-sample algorithm
(docs/derivations.md, "Normalization layers"), so a network with it runs one *loss term* at a time
instead (:func:`per_loss_term_gradients`): the gradient of l_n is carried for every sample of the
batch, and each batch-norm layer spreads it from sample to sample through its explicit N x N Jacobians.

Both return ``(J, [(dW, db or None), ...])`` in the batched layout (dW of shape
(n_in, n_out)), so they compare entry by entry with ``net.loss_and_grad``; the ``*_by_name``
variants return ``{name: gradient}`` for every parameter, gamma and beta included.
Dropout is not modelled (it is off in ``loss_and_grad`` unless a dropout seed is given).
Use small networks: the scalar graph of a batch has about N * (number of weights) nodes.
"""

import math

import numpy as np

from .errors import ConfigError

# ---------------------------------------------------------------------------------------------------------------
# 1. The scalar engine
# ---------------------------------------------------------------------------------------------------------------


class Value:
    """One scalar node of the computational graph.

    ``data`` is the forward value, ``grad`` is v_bar = dJ/dv (filled in by :meth:`backward`),
    ``parents`` is a tuple of ``(parent node, dv_self/dv_parent)``: each operation
    stores its local derivative with respect to each input when it computes its value.
    """

    __slots__ = ("data", "grad", "op", "parents")

    def __init__(self, data, parents=(), op=""):
        self.data = float(data)
        self.grad = 0.0
        self.parents = tuple(parents)
        self.op = op

    def __repr__(self):
        return f"Value({self.data:.6g}, grad={self.grad:.6g}, op={self.op!r})"

    # -- arithmetic: forward value, then the local derivative with respect to each input ---------------------
    def __add__(self, other):
        other = _as_value(other)
        # v = x + y;   dv/dx = 1,   dv/dy = 1
        return Value(self.data + other.data, [(self, 1.0), (other, 1.0)], "+")

    __radd__ = __add__

    def __mul__(self, other):
        other = _as_value(other)
        # v = x y;   dv/dx = y,   dv/dy = x
        return Value(self.data * other.data, [(self, other.data), (other, self.data)], "*")

    __rmul__ = __mul__

    def __neg__(self):
        # v = -x;   dv/dx = -1
        return Value(-self.data, [(self, -1.0)], "neg")

    def __sub__(self, other):
        return self + (-_as_value(other))

    def __rsub__(self, other):
        return _as_value(other) + (-self)

    def __truediv__(self, other):
        other = _as_value(other)
        # v = x / y;   dv/dx = 1/y,   dv/dy = -x/y^2
        return Value(self.data / other.data, [(self, 1.0 / other.data), (other, -self.data / other.data**2)], "/")

    def __rtruediv__(self, other):
        return _as_value(other) / self

    def square(self):
        # v = x^2;   dv/dx = 2x
        return Value(self.data**2, [(self, 2.0 * self.data)], "square")

    def abs(self):
        # v = |x|;   dv/dx = sign(x)   (0 at x = 0, the subgradient the batched engine's np.sign uses)
        return Value(abs(self.data), [(self, float(np.sign(self.data)))], "abs")

    def exp(self):
        # v = e^x;   dv/dx = e^x = v
        v = math.exp(self.data)
        return Value(v, [(self, v)], "exp")

    def log(self):
        # v = ln x;   dv/dx = 1/x
        return Value(math.log(self.data), [(self, 1.0 / self.data)], "log")

    def sqrt(self):
        # v = sqrt(x);   dv/dx = 1 / (2 v)
        v = math.sqrt(self.data)
        return Value(v, [(self, 0.5 / v)], "sqrt")

    # -- activations (element-wise) -------------------------------------------------------------------------
    def identity(self):
        # v = x;   dv/dx = 1
        return Value(self.data, [(self, 1.0)], "identity")

    def relu(self):
        # v = max(x, 0);   dv/dx = 1 if x > 0 else 0   (seed 000's Heaviside step)
        return Value(max(self.data, 0.0), [(self, 1.0 if self.data > 0 else 0.0)], "relu")

    def leaky_relu(self, slope):
        # v = x if x > 0 else s x;   dv/dx = 1 if x > 0 else s
        positive = self.data > 0
        return Value(self.data if positive else slope * self.data, [(self, 1.0 if positive else slope)], "leaky_relu")

    def sigmoid(self):
        # v = 1 / (1 + e^-x);   dv/dx = v (1 - v)
        x = self.data
        v = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
        return Value(v, [(self, v * (1.0 - v))], "sigmoid")

    def tanh(self):
        # v = tanh x;   dv/dx = 1 - v^2
        v = math.tanh(self.data)
        return Value(v, [(self, 1.0 - v * v)], "tanh")

    def softplus(self):
        # v = ln(1 + e^x);   dv/dx = 1 / (1 + e^-x)
        x = self.data
        v = max(x, 0.0) + math.log1p(math.exp(-abs(x)))
        return Value(v, [(self, 1.0 / (1.0 + math.exp(-x)))], "softplus")

    def elu(self, alpha):
        # v = x if x > 0 else alpha (e^x - 1);   dv/dx = 1 if x > 0 else alpha e^x
        x = self.data
        if x > 0:
            return Value(x, [(self, 1.0)], "elu")
        return Value(alpha * math.expm1(x), [(self, alpha * math.exp(x))], "elu")

    def gelu(self):
        # v = x/2 (1 + tanh u),  u = c (x + k x^3);   dv/dx = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) c (1 + 3 k x^2)
        x = self.data
        c, k = math.sqrt(2.0 / math.pi), 0.044715
        t = math.tanh(c * (x + k * x**3))
        return Value(0.5 * x * (1 + t), [(self, 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * k * x * x))],
                     "gelu")

    def silu(self):
        # v = x s,  s = 1/(1 + e^-x);   dv/dx = s + x s (1 - s)
        x = self.data
        s = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
        return Value(x * s, [(self, s + x * s * (1 - s))], "silu")

    def apply(self, activation):
        """A user-defined element-wise activation: its own forward and derivative, evaluated on one number."""
        z = np.array([[self.data]])
        a = activation.forward(z.copy())
        return Value(float(a[0, 0]), [(self, float(activation.derivative(z, a)[0, 0]))], activation.name)

    # -- backward: seed 000's rule ---------------------------------------------------------------------------
    def backward(self):
        """Set self.grad = 1 and fill in v_bar = dJ/dv for every node this one depends on.

        Reverse topological order guarantees that when a node is reached, every child has
        already added its share v_bar_child * dv_child/dv_node to it, so its v_bar is complete.
        """
        order = topological_order(self)
        for node in order:
            node.grad = 0.0
        self.grad = 1.0
        for node in reversed(order):
            for parent, local_derivative in node.parents:
                parent.grad += node.grad * local_derivative


def _as_value(x):
    return x if isinstance(x, Value) else Value(x, (), "const")


def topological_order(root):
    """Every node ``root`` depends on, each after all of its parents (iterative depth-first search)."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for parent, _ in node.parents:
            if id(parent) not in seen:
                stack.append((parent, False))
    return order


def _scalar_activation(activation, z_row):
    """A list of Values f(z_row) for one sample's pre-activations (softmax, in any layer, couples the whole row)."""
    name = activation.name
    if name == "softmax":
        # a_k = e^{z_k - m} / sum_j e^{z_j - m}; m = max z is a constant, which leaves a and its derivatives unchanged
        m = max(z.data for z in z_row)
        exps = [(z - m).exp() for z in z_row]
        total = sum(exps[1:], exps[0])
        return [e / total for e in exps]
    if name == "leaky_relu":
        return [z.leaky_relu(activation.slope) for z in z_row]
    if name == "elu":
        return [z.elu(activation.alpha) for z in z_row]
    builtin = type(activation).__module__ == "handgrad.activations"
    if name in ("identity", "relu", "sigmoid", "tanh", "softplus", "gelu", "silu", "exp") and builtin:
        return [getattr(z, name)() for z in z_row]
    if not getattr(activation, "elementwise", True):
        raise ConfigError(f"the scalar engine cannot expand the non-element-wise activation '{name}'.")
    return [z.apply(activation) for z in z_row]


def _scalar_loss(loss, a_row, t_row):
    """One sample's loss l_n as a Value, built from its per-element terms."""
    name = loss.name
    if name == "half_squared_error":  # 1/2 sum_k (a_k - t_k)^2
        terms = [(a - t).square() for a, t in zip(a_row, t_row, strict=True)]
        return 0.5 * sum(terms[1:], terms[0])
    if name == "mse":  # sum_k (a_k - t_k)^2
        terms = [(a - t).square() for a, t in zip(a_row, t_row, strict=True)]
        return sum(terms[1:], terms[0])
    if name == "binary_cross_entropy":  # -sum_k [t ln a + (1 - t) ln(1 - a)]
        terms = [t * a.log() + (1 - t) * (1 - a).log() for a, t in zip(a_row, t_row, strict=True)]
        return -sum(terms[1:], terms[0])
    if name == "cross_entropy":  # -sum_k t ln a
        terms = [t * a.log() for a, t in zip(a_row, t_row, strict=True)]
        return -sum(terms[1:], terms[0])
    if name == "half_poisson_deviance":  # sum_k [t ln(t/a) - t + a] = sum_k [t ln t - t ln a - t + a]
        terms = [(t * math.log(t) if t > 0 else 0.0) - t * a.log() - t + a for a, t in zip(a_row, t_row, strict=True)]
        return sum(terms[1:], terms[0])
    raise ConfigError(f"the scalar engine knows the built-in losses only, not '{name}'; "
                      "use per_sample_gradients for a user-defined loss.")


def _mean(values):
    return sum(values[1:], values[0]) / len(values)


def _scalar_standardize(values, eps):
    """(v - mean) / sqrt(var + eps) for a list of Values, var the biased variance: every output depends on
    every input through the mean and the variance, and the graph records each of those paths."""
    mean = _mean(values)
    centered = [v - mean for v in values]
    std = (_mean([c.square() for c in centered]) + eps).sqrt()
    return [c / std for c in centered]


def _scalar_norm(norm, Z, gamma, beta):
    """Zhat = gamma * xhat + beta for every row of Z (a list of rows of Values): batch norm standardizes
    each column over the batch, layer norm each row over its features."""
    if norm.kind == "batch":
        columns = [_scalar_standardize([row[j] for row in Z], norm.eps) for j in range(len(Z[0]))]
        xhat = [[column[n] for column in columns] for n in range(len(Z))]
    else:
        xhat = [_scalar_standardize(row, norm.eps) for row in Z]
    return [[g * x + b for x, g, b in zip(row, gamma, beta, strict=True)] for row in xhat]


def _leaves(array, name):
    """A nested list of leaf Values for the entries of a 1-D or 2-D array."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1:
        return [Value(v, op=name) for v in array]
    return [[Value(v, op=name) for v in row] for row in array]


def build_scalar_graph(net, X, T, sample_weight=None):
    """The objective J of ``net`` on (X, T) as a graph of scalar :class:`Value` nodes.

    Returns ``(J, leaves)`` where ``leaves`` maps each parameter name of ``net.parameters()``
    (W1, b1, gamma1, beta1, ...) to its nodes: ``leaves["W1"][i][j]`` is the node of W_1[i, j],
    ``leaves["b1"][j]`` that of b_1[j]. The graph is built layer by layer for the whole batch, because
    batch norm's mean and variance join every sample's nodes (the per-sample losses share them).
    """
    X = net.check_inputs(X).astype(np.float64)
    T = net.check_targets(T, X.shape[0]).astype(np.float64)
    w = net.check_sample_weight(sample_weight, X.shape[0])
    N = X.shape[0]
    leaves = {name: _leaves(array, name) for name, array in net.parameters()}

    H = [[Value(x, op="x") for x in X[n]] for n in range(N)]  # h_0 = x: leaves (their v_bar is computed but unused)
    for k, layer in enumerate(net.layers, 1):
        W, b = leaves[f"W{k}"], leaves.get(f"b{k}")
        Z = []
        for h in H:
            z = []
            for j in range(layer.n_out):
                products = [h[i] * W[i][j] for i in range(layer.n_in)]  # z_j = sum_i h_i W[i][j] (+ b_j)
                total = sum(products[1:], products[0])
                z.append(total + b[j] if b is not None else total)
            Z.append(z)
        if layer.norm is not None:  # Zhat = gamma * xhat + beta (docs/derivations.md, "Normalization layers")
            Z = _scalar_norm(layer.norm, Z, leaves[f"gamma{k}"], leaves[f"beta{k}"])
        H = [_scalar_activation(layer.activation, z) for z in Z]
    sample_losses = []
    for n in range(N):
        loss_n = _scalar_loss(net.loss_fn, H[n], T[n])
        sample_losses.append(loss_n * float(w[n]) if w is not None else loss_n)

    J = sum(sample_losses[1:], sample_losses[0]) / N  # the mean over the batch: the 1/N of the batched engine
    every_weight = [wij for name, W in leaves.items() if name.startswith("W") for row in W for wij in row]
    if net.l2:  # + (l2/2) sum ||W_k||_F^2
        squares = [wij.square() for wij in every_weight]
        J = J + 0.5 * net.l2 * sum(squares[1:], squares[0])
    if net.l1:  # + l1 sum |W_k|
        absolutes = [wij.abs() for wij in every_weight]
        J = J + net.l1 * sum(absolutes[1:], absolutes[0])
    return J, leaves


def scalar_gradients_by_name(net, X, T, sample_weight=None):
    """``(J, {name: dJ/d(parameter)})`` for every parameter of ``net.parameters()`` (gamma, beta included),
    computed node by node with seed 000's rule."""
    J, leaves = build_scalar_graph(net, X, T, sample_weight)
    J.backward()
    grads = {}
    for name, nodes in leaves.items():
        grads[name] = np.array([[node.grad for node in row] for row in nodes] if isinstance(nodes[0], list)
                               else [node.grad for node in nodes])
    return J.data, grads


def scalar_gradients(net, X, T, sample_weight=None):
    """J and every dJ/dW_k, dJ/db_k, computed node by node with seed 000's rule (see the module docstring).
    (A normalized layer's dgamma, dbeta: :func:`scalar_gradients_by_name`.)"""
    J, grads = scalar_gradients_by_name(net, X, T, sample_weight)
    return J, [(grads[f"W{k}"], grads.get(f"b{k}")) for k in range(1, len(net.layers) + 1)]


# ---------------------------------------------------------------------------------------------------------------
# 2. Seed 003's per-sample column-vector algorithm
# ---------------------------------------------------------------------------------------------------------------

def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # = 1/(1 + e^-a), without overflow


# f_k'(a) evaluated at the pre-activation a (seed 003 writes f_deriv_k(a_k)), written out again here.
_DERIVATIVES = {
    "identity": lambda a, act: np.ones_like(a),
    "relu": lambda a, act: (a > 0).astype(float),
    "leaky_relu": lambda a, act: np.where(a > 0, 1.0, act.slope),
    "sigmoid": lambda a, act: _sigmoid(a) * (1 - _sigmoid(a)),
    "tanh": lambda a, act: 1 - np.tanh(a) ** 2,
    "softplus": lambda a, act: _sigmoid(a),
    "elu": lambda a, act: np.where(a > 0, 1.0, act.alpha * np.exp(np.minimum(a, 0))),
    "gelu": lambda a, act: _gelu_derivative(a),
    "silu": lambda a, act: _sigmoid(a) * (1 + a * (1 - _sigmoid(a))),
    "exp": lambda a, act: np.exp(a),
}


def _gelu_derivative(a):
    c, k = math.sqrt(2.0 / math.pi), 0.044715
    t = np.tanh(c * (a + k * a**3))
    return 0.5 * (1 + t) + 0.5 * a * (1 - t * t) * c * (1 + 3 * k * a * a)


# dl/dh_L for one sample (no 1/N: the average over samples is taken at the end).
_LOSS_DERIVATIVES = {
    "half_squared_error": lambda h, t: h - t,
    "mse": lambda h, t: 2 * (h - t),
    "binary_cross_entropy": lambda h, t: (h - t) / (h * (1 - h)),
    "cross_entropy": lambda h, t: -t / h,
    "half_poisson_deviance": lambda h, t: 1 - t / h,
}


def _activation_vector(activation, a):
    """f(a) for one column vector a."""
    return activation.forward(a[None, :].copy())[0]


def _backward_through_activation(activation, a, h, g):
    """f'(a)^T g: element-wise g * f'(a), or for softmax (in any layer) the Jacobian J = diag(h) - h h^T (symmetric)."""
    if activation.name == "softmax":
        jacobian = np.diag(h) - np.outer(h, h)
        return jacobian.T @ g
    if activation.name in _DERIVATIVES and type(activation).__module__ == "handgrad.activations":
        return g * _DERIVATIVES[activation.name](a, activation)
    if not getattr(activation, "elementwise", True):  # a user-defined coupled activation: trust its backward
        return activation.backward(g[None, :].copy(), a[None, :], h[None, :])[0]
    return g * activation.derivative(a[None, :], h[None, :])[0]


def _layer_norm_jacobian(a, eps):
    """xhat = (a - mean) / s for one sample's vector a, and d xhat / d a = (D I - 1 1^T - xhat xhat^T) / (D s),
    written out as a D x D matrix (docs/derivations.md, "Layer norm"): every feature of the sample moves
    every other one through the mean and the variance."""
    D = a.size
    centered = a - a.mean()
    s = math.sqrt(float(centered @ centered) / D + eps)
    xhat = centered / s
    return xhat, (D * np.eye(D) - np.ones((D, D)) - np.outer(xhat, xhat)) / (D * s)


def per_sample_gradients_by_name(net, X, T, sample_weight=None):
    """``(J, {name: dJ/d(parameter)})`` with seed 003's per-sample algorithm (see the module docstring).

    Layer norm works sample by sample (its Jacobian is built explicitly, as softmax's is). Batch norm
    does not: its mean and variance make every sample's loss depend on every other sample, so a network
    with batch norm goes to :func:`per_loss_term_gradients`, the same loop run one loss term at a time.
    """
    if any(layer.norm is not None and layer.norm.kind == "batch" for layer in net.layers):
        return per_loss_term_gradients(net, X, T, sample_weight)
    X = net.check_inputs(X).astype(np.float64)
    T = net.check_targets(T, X.shape[0]).astype(np.float64)
    weights_per_sample = net.check_sample_weight(sample_weight, X.shape[0])
    N = X.shape[0]
    L = len(net.layers)
    Ws = [layer.W.astype(np.float64).T for layer in net.layers]  # seed 003's W_k: (n_out, n_in)
    bs = [None if layer.b is None else layer.b.astype(np.float64) for layer in net.layers]
    norms = [None if layer.norm is None else (layer.norm.gamma.astype(np.float64), layer.norm.beta.astype(np.float64),
                                              layer.norm.eps) for layer in net.layers]
    derivs = {name: np.zeros(array.shape) for name, array in net.parameters()}
    loss = net.loss_fn
    total = 0.0

    for n in range(N):
        scale = 1.0 if weights_per_sample is None else float(weights_per_sample[n])
        x, t = X[n], T[n]
        # forward: h_0 = x;  a_k = W_k h_{k-1} + b_k  [a_k = gamma xhat(W_k h_{k-1}) + beta];  h_k = f_k(a_k)
        hs, as_, norm_parts = [x], [], []
        for layer, W, b, norm in zip(net.layers, Ws, bs, norms, strict=True):
            a = W @ hs[-1] + (b if b is not None else 0.0)
            if norm is not None:
                xhat, jacobian = _layer_norm_jacobian(a, norm[2])
                norm_parts.append((xhat, jacobian))
                a = norm[0] * xhat + norm[1]
            else:
                norm_parts.append(None)
            as_.append(a)
            hs.append(_activation_vector(layer.activation, a))
        y_est = hs[-1]
        total += scale * float(loss.per_sample(y_est[None, :], t[None, :])[0])

        # backward
        for k in range(L - 1, -1, -1):  # k = L, ..., 1 in seed 003's numbering
            activation = net.layers[k].activation
            if k == L - 1:
                if net.closed_form:
                    g = y_est - t  # dl/da_L: softmax + cross-entropy, sigmoid + binary cross-entropy
                else:
                    if loss.name in _LOSS_DERIVATIVES and type(loss).__module__ == "handgrad.losses":
                        g = _LOSS_DERIVATIVES[loss.name](y_est, t)  # g = est_lossderiv(y_est, y)
                    else:  # a user-defined loss: its gradient for a batch of one sample (1/N with N = 1)
                        g = loss.gradient(y_est[None, :].copy(), t[None, :].copy())[0]
                    g = _backward_through_activation(activation, as_[k], hs[k + 1], g)
            else:
                g = _backward_through_activation(activation, as_[k], hs[k + 1], g)  # g = g * f_deriv_k(a_k)
            if norm_parts[k] is not None:  # through a = gamma xhat + beta, then xhat's Jacobian
                xhat, jacobian = norm_parts[k]
                derivs[f"gamma{k + 1}"] += scale * g * xhat
                derivs[f"beta{k + 1}"] += scale * g
                g = jacobian.T @ (norms[k][0] * g)
            elif bs[k] is not None:
                derivs[f"b{k + 1}"] += scale * g                  # b_derivs_k = g
            derivs[f"W{k + 1}"] += scale * np.outer(hs[k], g)   # W_derivs_k = g h_{k-1}^T, stored transposed
            g = Ws[k].T @ g                                     # g = W_k^T g

    J = total / N
    grads = {name: value / N for name, value in derivs.items()}  # averaged over the N samples
    return _add_penalties(net, J, grads)


def _batch_norm_jacobians(xhat, s):
    """For each feature j, the N x N matrix d xhat[:, j] / d z[:, j] = (N I - 1 1^T - xhat_j xhat_j^T) / (N s_j),
    written out (docs/derivations.md, "Batch norm, backward, entry by entry"): off the diagonal, sample m's
    z moves sample n's xhat."""
    N = xhat.shape[0]
    return [(N * np.eye(N) - np.ones((N, N)) - np.outer(xhat[:, j], xhat[:, j])) / (N * s[j])
            for j in range(xhat.shape[1])]


def _forward_whole_batch(net, X):
    """Seed 003's forward, layer by layer for the whole batch (batch norm needs every sample's a_k before
    any sample can go on). Returns hs[k][m] (h_k of sample m), as_[k][m] (the activation's input) and
    norm_parts[k]: None, ("batch", xhat (N, n), Jacobians) or ("layer", [(xhat_m, Jacobian_m), ...])."""
    hs, as_, norm_parts = [list(X)], [], []
    for layer in net.layers:
        W = layer.W.astype(np.float64).T  # seed 003's W_k: (n_out, n_in)
        b = 0.0 if layer.b is None else layer.b.astype(np.float64)
        a = np.array([W @ h + b for h in hs[-1]])
        norm, part = layer.norm, None
        if norm is not None and norm.kind == "batch":
            centered = a - a.mean(axis=0)
            s = np.sqrt((centered ** 2).mean(axis=0) + norm.eps)
            xhat = centered / s
            part = ("batch", xhat, _batch_norm_jacobians(xhat, s))
        elif norm is not None:
            part = ("layer", [_layer_norm_jacobian(row, norm.eps) for row in a])
            xhat = np.array([x for x, _ in part[1]])
        if norm is not None:
            a = norm.gamma.astype(np.float64) * xhat + norm.beta.astype(np.float64)
        norm_parts.append(part)
        as_.append(list(a))
        hs.append([_activation_vector(layer.activation, row) for row in a])
    return hs, as_, norm_parts


def per_loss_term_gradients(net, X, T, sample_weight=None):
    """``(J, {name: gradient})`` with seed 003's loop run one loss term at a time, for networks with batch norm.

    J = (1/N) sum_n w_n l_n, and with batch norm l_n depends on every sample's input. So for each n the
    backward carries G, the gradient of l_n with respect to every sample's vector at the current layer (an
    N x width array, one row per sample): it starts with row n only, and a batch-norm layer spreads it to
    all rows through its N x N Jacobians (built explicitly). Everything else is the per-sample step,
    applied row by row: g = f'(a)^T g, W_derivs += g h^T, g = W^T g. Without batch norm G keeps one
    nonzero row and this is :func:`per_sample_gradients_by_name` exactly.
    """
    X = net.check_inputs(X).astype(np.float64)
    T = net.check_targets(T, X.shape[0]).astype(np.float64)
    weights_per_sample = net.check_sample_weight(sample_weight, X.shape[0])
    N, L, loss = X.shape[0], len(net.layers), net.loss_fn
    hs, as_, norm_parts = _forward_whole_batch(net, X)
    derivs = {name: np.zeros(array.shape) for name, array in net.parameters()}
    total = 0.0
    for n in range(N):  # one loss term l_n at a time
        scale = 1.0 if weights_per_sample is None else float(weights_per_sample[n])
        y_est, t = hs[L][n], T[n]
        total += scale * float(loss.per_sample(y_est[None, :], t[None, :])[0])
        G = np.zeros((N, y_est.size))
        if net.closed_form:
            G[n] = y_est - t  # dl_n/da_L (softmax + cross-entropy, sigmoid + binary cross-entropy)
        elif loss.name in _LOSS_DERIVATIVES and type(loss).__module__ == "handgrad.losses":
            G[n] = _LOSS_DERIVATIVES[loss.name](y_est, t)
        else:
            G[n] = loss.gradient(y_est[None, :].copy(), t[None, :].copy())[0]
        for k in range(L - 1, -1, -1):
            layer = net.layers[k]
            if not (k == L - 1 and net.closed_form):  # g = f_k'(a_k)^T g, sample by sample
                G = np.array([_backward_through_activation(layer.activation, as_[k][m], hs[k + 1][m], G[m])
                              for m in range(N)])
            G = _backward_through_norm(layer, k, norm_parts[k], G, derivs, scale)
            derivs[f"W{k + 1}"] += scale * sum(np.outer(hs[k][m], G[m]) for m in range(N))  # stored (n_in, n_out)
            G = G @ layer.W.astype(np.float64).T  # each row: g = W_k^T g
    J = total / N
    grads = {name: value / N for name, value in derivs.items()}
    return _add_penalties(net, J, grads)


def _backward_through_norm(layer, k, part, G, derivs, scale):
    """From dl_n/d(a = gamma xhat + beta) for every sample to dl_n/dz, adding to dgamma, dbeta (or db)."""
    if part is None:
        if layer.b is not None:
            derivs[f"b{k + 1}"] += scale * G.sum(axis=0)
        return G
    gamma = layer.norm.gamma.astype(np.float64)
    if part[0] == "batch":
        xhat, jacobians = part[1], part[2]
        derivs[f"gamma{k + 1}"] += scale * (G * xhat).sum(axis=0)
        derivs[f"beta{k + 1}"] += scale * G.sum(axis=0)
        dxhat = G * gamma
        return np.stack([jacobians[j].T @ dxhat[:, j] for j in range(G.shape[1])], axis=1)  # couples the rows
    rows = []
    for m, (xhat_m, jacobian_m) in enumerate(part[1]):
        derivs[f"gamma{k + 1}"] += scale * G[m] * xhat_m
        derivs[f"beta{k + 1}"] += scale * G[m]
        rows.append(jacobian_m.T @ (gamma * G[m]))
    return np.array(rows)


def _add_penalties(net, J, grads):
    for k, layer in enumerate(net.layers, 1):
        W = layer.W.astype(np.float64)
        if net.l2:
            grads[f"W{k}"] = grads[f"W{k}"] + net.l2 * W
            J += 0.5 * net.l2 * float(np.sum(W * W))
        if net.l1:
            grads[f"W{k}"] = grads[f"W{k}"] + net.l1 * np.sign(W)
            J += net.l1 * float(np.abs(W).sum())
    return J, grads


def per_sample_gradients(net, X, T, sample_weight=None):
    """J and every dJ/dW_k, dJ/db_k with seed 003's per-sample algorithm (see the module docstring).
    (A layer-normalized layer's dgamma, dbeta: :func:`per_sample_gradients_by_name`.)"""
    J, grads = per_sample_gradients_by_name(net, X, T, sample_weight)
    return J, [(grads[f"W{k}"], grads.get(f"b{k}")) for k in range(1, len(net.layers) + 1)]
