"""Layers: the contract every layer follows, then Dense (the seeds' layer) and Dropout.

Start reading here: :class:`Dense` is the backpropagation of the seeds, one layer at a time
(batch-first, docs/derivations.md sections "One layer" and "The whole network"):

    forward                                   backward, given dA = dJ/dA
    Z = X @ W + b     X (N, n_in)             dZ = dA * f'(Z)       (softmax: its Jacobian, activations.py)
                      W (n_in, n_out)         dW = X^T @ dZ         (n_in, n_out)
                      b (n_out,)              db = column sums of dZ (n_out,)
    A = f(Z)                                  dX = dZ @ W^T         (N, n_in), only when the layer below needs it

The contract (what :class:`handgrad.network.MLP` relies on, and what a new layer type implements):

* ``forward(X, training=False) -> Y`` computes the output and keeps what backward needs.
* ``backward(dY, need_dX=True) -> dX`` writes dJ/d(each of its own parameters) into its gradient
  arrays and returns dJ/dX (None when ``need_dX`` is False). It computes nothing else: no
  learning rate, no penalty, no update. Those are the optimizer's and the network's.
* ``parameter_shapes()`` lists the parameters by name: ``[("W", (n_in, n_out)), ("b", (n_out,))]``.
* ``bind(values, gradients)`` hands the layer its parameter and gradient arrays (name -> array). In a
  network these are views into the network's parameter vector ``net.params`` and gradient vector
  ``net.grads``; ``parameters()`` and ``gradients()`` list them by name.

Arrays returned by forward and backward are buffers owned by the layer (reused for the next batch of
the same size, so a training step allocates almost nothing); copy one to keep it.
"""

from collections import OrderedDict

import numpy as np

from .activations import get_activation
from .errors import check_fraction

_MAX_CACHED_BATCH_SIZES = 4


def allocate(shapes, dtype):
    """A fresh parameter vector and gradient vector for ``[(name, shape)]``, and name -> view of each."""
    sizes = [int(np.prod(shape)) for _, shape in shapes]
    values, gradients = np.zeros(sum(sizes), dtype), np.zeros(sum(sizes), dtype)
    value_views, gradient_views, offset = {}, {}, 0
    for (name, shape), size in zip(shapes, sizes):
        value_views[name] = values[offset:offset + size].reshape(shape)
        gradient_views[name] = gradients[offset:offset + size].reshape(shape)
        offset += size
    return value_views, gradient_views


class Layer:
    """Base class of the layer contract (see the module docstring). A layer without parameters
    (Dropout) inherits the empty parameter list.

    Curvature adds an optional pair, the R-operator (Pearlmutter 1994; docs/derivations.md, "Curvature:
    Hessian-vector products"): R{.} = d/dr (.)(theta + r v) at r = 0, the directional derivative along a
    parameter direction v. A layer that implements both takes part in ``MLP.hessian_vector_product``:

    * ``r_forward(RX, direction) -> RY``: R{Y} from R{X} (None when X is the data, which does not move)
      and ``direction``, {name: array} of this layer's part of v (shapes of ``parameter_shapes()``;
      empty without parameters). Runs after ``forward`` of the same batch; keeps what r_backward needs.
    * ``r_backward(dY, RdY, out, need_dX=True) -> RdX``: after ``backward`` of the same batch, from dY
      (the gradient this layer received, as it was before backward overwrote it) and R{dY}, writes
      R{dJ/d(each parameter)} into ``out[name]`` (this layer's part of H v) and returns R{dJ/dX}
      (None when ``need_dX`` is False). What r_forward kept may be released here.
    """

    def parameter_shapes(self):
        return []

    def bind(self, values, gradients):
        """Use ``values[name]`` and ``gradients[name]`` (arrays of ``parameter_shapes()``) from now on."""

    def parameters(self):
        """[(name, array)] of this layer's parameters."""
        return []

    def gradients(self):
        """[(name, array)]: dJ/d(parameter) of the last backward pass, in the order of ``parameters()``."""
        return []

    def forward(self, X, training=False):
        raise NotImplementedError

    def backward(self, dY, need_dX=True):
        raise NotImplementedError

    _SCRATCH = ("X", "Z", "A", "lse", "dZ", "mask", "_current")

    def __getstate__(self):  # buffers and what they hold are scratch space: a copy or a pickle starts without
        state = dict(self.__dict__)
        state["_buffers"] = OrderedDict()
        state.update((name, None) for name in self._SCRATCH if name in state)
        return state


class _Buffers:
    """Work arrays of a Dense layer for one batch size."""

    __slots__ = ("A", "D", "Z", "dX", "lse", "ones")

    def __init__(self, n, n_in, n_out, dtype, separate_a, derivative, lse):
        self.Z = np.empty((n, n_out), dtype)
        self.A = np.empty((n, n_out), dtype) if separate_a else self.Z
        self.D = np.empty((n, n_out), dtype) if derivative else None  # f'(Z), when forward gets it almost free
        self.lse = np.empty((n, 1), dtype) if lse else None  # each row's log-sum-exp (softmax output)
        self.ones = np.ones((1, n), dtype)  # 1^T dZ: the column sums of dZ as one BLAS call
        self.dX = np.empty((n, n_in), dtype)


class Dense(Layer):
    """A fully connected layer ``A = f(X @ W + b)``.

    Attributes: ``W`` (n_in, n_out) and ``b`` (n_out,) or None; ``dW`` and ``db``, the gradients of
    the last backward pass; ``activation``; and after a forward pass ``X``, ``Z``, ``A`` (after a
    backward pass also ``dZ``). Built alone, a layer owns its arrays; in an MLP they are views into
    the network's vectors ``net.params`` and ``net.grads``.
    """

    def __init__(self, n_in, n_out, activation="identity", *, bias=True, dtype=np.float64, keep_z=False):
        self.n_in = int(n_in)
        self.n_out = int(n_out)
        self.activation = get_activation(activation)
        self.dtype = np.dtype(dtype)
        self.has_bias = bool(bias)
        # Keep Z apart from A even when f' needs only A: the output layer does (losses are evaluated from
        # the logits, with softmax's log-sum-exp), and any layer while a pass is recorded (forward_backward).
        self.keep_z = keep_z
        self._buffers = OrderedDict()
        self.X = self.Z = self.A = self.lse = self.dZ = None
        self.bind(*allocate(self.parameter_shapes(), self.dtype))

    # ------------------------------------------------------------------ parameters
    def parameter_shapes(self):
        return [("W", (self.n_in, self.n_out))] + ([("b", (self.n_out,))] if self.has_bias else [])

    def bind(self, values, gradients):
        self.W, self.dW = values["W"], gradients["W"]
        self.b, self.db = (values["b"], gradients["b"]) if self.has_bias else (None, None)

    def parameters(self):
        return [("W", self.W)] + ([("b", self.b)] if self.has_bias else [])

    def gradients(self):
        return [("W", self.dW)] + ([("b", self.db)] if self.has_bias else [])

    # ------------------------------------------------------------------ forward
    def forward(self, X, training=False):
        """A = f(X @ W + b), keeping X, Z and A (and f'(Z) where forward gets it almost free)."""
        buffers = self._buffers_for(X.shape[0])
        Z = np.matmul(X, self.W, out=buffers.Z)
        if self.b is not None:
            Z += self.b
        if buffers.D is not None:  # ReLU family: f'(Z) (the 0/1 mask) as a by-product of forward
            A = self.activation.forward(Z, out=buffers.A, derivative=buffers.D)
        elif buffers.lse is not None:  # softmax output: each row's log-sum-exp, for the cross-entropy
            A = self.activation.forward(Z, out=buffers.A, lse=buffers.lse)
        else:
            A = self.activation.forward(Z, out=buffers.A)  # buffers.A is Z itself when f' needs only A
        self.X, self.Z, self.A, self.lse, self._current = X, Z, A, buffers.lse, buffers
        return A

    # ------------------------------------------------------------------ backward
    def backward(self, dA, need_dX=True):
        """From dA = dJ/dA (overwritten: it becomes dZ) to dW, db; returns dX = dJ/dX when ``need_dX``."""
        D = self._current.D
        if D is None:
            dZ = self.activation.backward(dA, self.Z, self.A, out=dA)  # dA * f'(Z), or softmax's Jacobian
        else:
            dZ = np.multiply(dA, D, out=dA)  # dZ = dA * f'(Z), f'(Z) kept by forward
        return self.backward_from_dZ(dZ, need_dX)

    def backward_from_dZ(self, dZ, need_dX=True):
        """dW = X^T dZ, db = column sums of dZ, and dX = dZ W^T when ``need_dX``. The network enters
        here directly when the output has a closed form for dZ (softmax + cross-entropy, ...)."""
        self.dZ = dZ
        np.matmul(self.X.T, dZ, out=self.dW)
        if self.b is not None:
            np.matmul(self._current.ones, dZ, out=self.db[None, :])  # 1^T dZ (BLAS, faster than a reduce)
        return np.matmul(dZ, self.W.T, out=self._current.dX) if need_dX else None

    # ------------------------------------------------------------------ R-operator (curvature)
    _SCRATCH = Layer._SCRATCH + ("_r",)

    def r_forward(self, RX, direction):
        """R{Z} = R{X} W + X V_W + V_b and R{A} = f'(Z) * R{Z} (softmax: its Jacobian times R{Z}), along the
        direction {"W": V_W, "b": V_b}; R{X} = None for the data. Returns R{A} (a new array)."""
        RZ = np.matmul(self.X, direction["W"])
        if RX is not None:
            RZ += np.matmul(RX, self.W)
        if self.b is not None:
            RZ += direction["b"]
        self._r = (RX, RZ, direction)
        return self.activation.r_forward(RZ, self.Z, self.A)

    def r_backward(self, dA, RdA, out, need_dX=True):
        """R{dZ} = R{dA} * f'(Z) + dA * f''(Z) * R{Z} (softmax: its own form), then :meth:`r_backward_from_dZ`."""
        RdZ = self.activation.r_backward(dA, RdA, self._r[1], self.Z, self.A)
        return self.r_backward_from_dZ(RdZ, out, need_dX)

    def r_backward_from_dZ(self, RdZ, out, need_dX=True):
        """R{dW} = R{X}^T dZ + X^T R{dZ}, R{db} = column sums of R{dZ}, R{dX} = R{dZ} W^T + dZ V_W^T (the
        product rule on backward_from_dZ). The network enters here when the output has a closed form."""
        (RX, _, direction), self._r = self._r, None  # the R-pass state lives from r_forward to here
        np.matmul(self.X.T, RdZ, out=out["W"])
        if RX is not None:
            out["W"] += np.matmul(RX.T, self.dZ)
        if self.b is not None:
            out["b"][...] = RdZ.sum(axis=0)
        return np.matmul(RdZ, self.W.T) + np.matmul(self.dZ, direction["W"].T) if need_dX else None

    # ------------------------------------------------------------------ buffers
    def _buffers_for(self, n):
        key = (n, self.keep_z)
        buffers = self._buffers.get(key)
        if buffers is None:
            separate_a = self.activation.needs_z or self.keep_z
            buffers = _Buffers(n, self.n_in, self.n_out, self.dtype, separate_a,
                               self.activation.derivative_in_forward, self.keep_z and self.activation.row_log_sum_exp)
            self._buffers[key] = buffers
            if len(self._buffers) > _MAX_CACHED_BATCH_SIZES:
                self._buffers.popitem(last=False)
        else:
            self._buffers.move_to_end(key)
        return buffers

    def clear_buffers(self):
        self._buffers.clear()
        self.X = self.Z = self.A = self.lse = self.dZ = None

    def __repr__(self):
        bias = "" if self.has_bias else ", bias=False"
        return f"Dense({self.n_in} -> {self.n_out}, {self.activation.name}{bias})"


class Dropout(Layer):
    """Inverted dropout with rate p, between two layers, in training only (docs/derivations.md, "Dropout"):

        forward:   Y = X * M / (1 - p),   M_ij = 1 with probability 1 - p, else 0
        backward:  dX = dY * M / (1 - p)

    E[M / (1 - p)] = 1, so nothing changes at predict time: outside training, Y = X. The masks are
    drawn from ``rng`` (the network's dropout stream).
    """

    def __init__(self, rate, rng=None, dtype=np.float64):
        self.rate = check_fraction("dropout rate", rate)
        self.rng = rng
        self.dtype = np.dtype(dtype)
        self._buffers = OrderedDict()
        self.mask = None

    def forward(self, X, training=False):
        if not training or self.rate == 0.0:
            self.mask = None
            return X
        mask, Y = self._buffers_for(X.shape)
        keep = 1.0 - self.rate
        self.rng.random(dtype=self.dtype, out=mask)  # uniform in [0, 1)
        np.less(mask, keep, out=mask)  # 1 where the unit is kept (probability 1 - p), 0 where dropped
        mask *= 1.0 / keep
        self.mask = mask
        return np.multiply(X, mask, out=Y)

    def backward(self, dY, need_dX=True):
        if not need_dX:
            return None
        return dY if self.mask is None else np.multiply(dY, self.mask, out=dY)

    def r_forward(self, RX, direction):
        """R{Y} = R{X} * M / (1 - p): the mask is fixed during a pass, so dropout is linear in X."""
        return RX if self.mask is None or RX is None else RX * self.mask

    def r_backward(self, dY, RdY, out, need_dX=True):
        """R{dX} = R{dY} * M / (1 - p) (no parameters: nothing goes into ``out``)."""
        if not need_dX:
            return None
        return RdY if self.mask is None else RdY * self.mask

    def _buffers_for(self, shape):
        buffers = self._buffers.get(shape)
        if buffers is None:
            buffers = (np.empty(shape, self.dtype), np.empty(shape, self.dtype))
            self._buffers[shape] = buffers
            if len(self._buffers) > _MAX_CACHED_BATCH_SIZES:
                self._buffers.popitem(last=False)
        return buffers

    def __repr__(self):
        return f"Dropout({self.rate})"
