"""Layers: the contract every layer follows, then Dense (the seeds' layer), Dropout, and the normalization layers.

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

Normalization (docs/derivations.md, "Normalization layers"): :class:`BatchNorm` and :class:`LayerNorm`
follow the same contract (parameters ``gamma``, ``beta``), each with its forward and compact backward side
by side. A Dense layer built with ``norm="batch"`` or ``"layer"`` owns one as ``dense.norm`` and runs

    Z = X @ W   ->   Zhat = norm(Z) = gamma * xhat + beta   ->   A = f(Zhat)

(the activation after the norm, no bias). The norm sits inside the Dense layer rather than in the
network's ``sequence``, so that ``net.layers`` keeps one Dense per layer of the spec, with its
activation, for everything that reads it (explain, graph, model files, torch and ONNX export). After a
forward pass a norm keeps ``X`` (= Z), ``mean``, ``var``, ``std``, ``xhat`` and ``Y`` (= Zhat), and the
Dense keeps ``Zhat``: what the norms' R-operator (``r_forward``, ``r_backward``; docs/derivations.md, "Through
a normalization layer") reads when ``MLP.hessian_vector_product`` runs through them.

``training`` in ``forward(X, training)`` is a bool or a :class:`Mode`, three separate switches: batch
statistics (the training objective) or running ones (predict), dropout on or off, and whether batch
norm's running statistics are updated (only by a real training step). See :class:`Mode`.
"""

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .activations import get_activation
from .errors import ConfigError, DataError, check_fraction, check_non_negative, check_positive_int

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


@dataclass(frozen=True)
class Mode:
    """What a forward pass is for: three switches that a plain ``training`` flag would tie together.

    * ``batch_statistics``: batch normalization uses the batch's own mean and variance (the training
      objective J, and everything that differentiates it) instead of its running statistics (predict).
    * ``dropout``: dropout layers draw masks.
    * ``update_running``: batch normalization folds the batch statistics into its running ones, in the
      forward pass. Only a real training step does this; a gradient check, loss_and_grad or a trace leave
      them alone. (The trainer's own step runs OBJECTIVE_WITH_DROPOUT and commits the statistics after its
      loss is known to be finite: ``MLP.update_running_statistics``, training.train_step.)

    ``forward(X, training)`` takes a Mode or a bool: True is :data:`TRAINING` (a trainer's step, torch's
    ``train()``), False is :data:`INFERENCE` (torch's ``eval()``).
    """

    batch_statistics: bool
    dropout: bool
    update_running: bool

    def __bool__(self):  # `if training:` on a Mode would always be true: make that mistake loud
        raise TypeError("a Mode has three switches; test mode.batch_statistics, mode.dropout or mode.update_running.")


TRAINING = Mode(batch_statistics=True, dropout=True, update_running=True)  # a training step in one call (backprop)
OBJECTIVE = Mode(batch_statistics=True, dropout=False, update_running=False)  # J and its gradient, no dropout
OBJECTIVE_WITH_DROPOUT = Mode(batch_statistics=True, dropout=True, update_running=False)  # the same, fixed masks
INFERENCE = Mode(batch_statistics=False, dropout=False, update_running=False)  # predict, validation


def as_mode(training):
    """A :class:`Mode` from a Mode or a bool (True: TRAINING, False: INFERENCE)."""
    if isinstance(training, Mode):
        return training
    return TRAINING if training else INFERENCE


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

    _SCRATCH = ("X", "Z", "A", "lse", "dZ", "mask", "_current", "Zhat", "dZhat", "xhat", "mean", "var", "std", "Y")

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


_DENSE_FIX = ("Pass the number of inputs and of units, e.g. Dense(3, 4, 'relu') for a layer from 3 inputs to "
              "4 units.")


class Dense(Layer):
    """A fully connected layer ``A = f(X @ W + b)``, or with a normalization ``A = f(norm(X @ W))``.

    Attributes: ``W`` (n_in, n_out) and ``b`` (n_out,) or None; ``dW`` and ``db``, the gradients of
    the last backward pass; ``activation``; ``norm`` (None, or the :class:`BatchNorm` or
    :class:`LayerNorm` between the affine map and the activation); and after a forward pass ``X``,
    ``Z``, ``A`` (after a backward pass also ``dZ``). Built alone, a layer owns its arrays; in an MLP
    they are views into the network's vectors ``net.params`` and ``net.grads``.

    With a norm (docs/derivations.md, "Normalization layers") the layer computes

        Z = X @ W   (no bias: beta replaces it)    Zhat = norm(Z) = gamma * xhat + beta    A = f(Zhat)

    and keeps ``Zhat`` (the activation's input) beside ``Z``; backward goes dA -> dZhat = dA * f'(Zhat)
    -> dZ (the norm's backward, which also writes dgamma, dbeta) -> dW, dX. Why the norm lives inside
    Dense rather than as a layer of its own in ``net.sequence``: the issue's layer is "affine map, norm,
    activation", the activation comes after the norm, and every consumer of ``net.layers`` (explain,
    the graph, model files, torch and ONNX export) reads one Dense per layer of the spec with its
    activation. The norm is still a layer of the contract (forward, backward, parameters), owned by the
    Dense as ``dense.norm``, with its own tests; its parameters are named ``gamma``, ``beta`` in the
    Dense's parameter list.
    """

    def __init__(self, n_in, n_out, activation="identity", *, bias=None, norm=None, dtype=np.float64,
                 keep_z=False):
        self.n_in = check_positive_int("Dense: n_in", n_in, fix=_DENSE_FIX)
        self.n_out = check_positive_int("Dense: n_out", n_out, fix=_DENSE_FIX)
        self.activation = get_activation(activation)
        self.dtype = np.dtype(dtype)
        self.norm = make_norm(norm, self.n_out, self.dtype)
        if self.norm is not None and bias:
            raise ConfigError(f"a layer with {self.norm.kind} normalization has no bias (its beta replaces it); "
                              "drop bias=True or the norm.")
        self.has_bias = self.norm is None if bias is None else bool(bias)
        # Keep Z apart from A even when f' needs only A: the output layer does (losses are evaluated from
        # the logits, with softmax's log-sum-exp), and any layer while a pass is recorded (forward_backward).
        self.keep_z = keep_z
        self._buffers = OrderedDict()
        self.X = self.Z = self.Zhat = self.A = self.lse = self.dZ = self.dZhat = None
        self.bind(*allocate(self.parameter_shapes(), self.dtype))
        if self.norm is not None:
            self.norm.reset_parameters()

    # ------------------------------------------------------------------ parameters
    def parameter_shapes(self):
        shapes = [("W", (self.n_in, self.n_out))] + ([("b", (self.n_out,))] if self.has_bias else [])
        return shapes + (self.norm.parameter_shapes() if self.norm is not None else [])

    def bind(self, values, gradients):
        self.W, self.dW = values["W"], gradients["W"]
        self.b, self.db = (values["b"], gradients["b"]) if self.has_bias else (None, None)
        if self.norm is not None:
            self.norm.bind(values, gradients)

    def parameters(self):
        own = [("W", self.W)] + ([("b", self.b)] if self.has_bias else [])
        return own + (self.norm.parameters() if self.norm is not None else [])

    def gradients(self):
        own = [("W", self.dW)] + ([("b", self.db)] if self.has_bias else [])
        return own + (self.norm.gradients() if self.norm is not None else [])

    # ------------------------------------------------------------------ forward
    def forward(self, X, training=False):
        """A = f(X @ W + b) (or f(norm(X @ W))), keeping X, Z (Zhat) and A (and f' where forward gets it
        almost free). ``training`` (a bool or a :class:`Mode`) matters only to the norm."""
        buffers = self._buffers_for(X.shape[0])
        Z = np.matmul(X, self.W, out=buffers.Z)
        if self.b is not None:
            Z += self.b
        H = Z if self.norm is None else self.norm.forward(Z, training)  # the activation's input: Z or Zhat
        if buffers.D is not None:  # ReLU family: f'(Z) (the 0/1 mask) as a by-product of forward
            A = self.activation.forward(H, out=buffers.A, derivative=buffers.D)
        elif buffers.lse is not None:  # softmax output: each row's log-sum-exp, for the cross-entropy
            A = self.activation.forward(H, out=buffers.A, lse=buffers.lse)
        else:
            A = self.activation.forward(H, out=buffers.A)  # buffers.A is Z itself when f' needs only A
        self.X, self.Z, self.A, self.lse, self._current = X, Z, A, buffers.lse, buffers
        self.Zhat = None if self.norm is None else H
        return A

    @property
    def activation_input(self):
        """What f was applied to in the last forward: Z, or Zhat with a norm."""
        return self.Z if self.norm is None else self.Zhat

    # ------------------------------------------------------------------ backward
    def backward(self, dA, need_dX=True):
        """From dA = dJ/dA (overwritten: it becomes dZ, or dZhat) to dW, db (dgamma, dbeta); returns
        dX = dJ/dX when ``need_dX``."""
        D = self._current.D
        H = self.activation_input
        if D is None:
            dH = self.activation.backward(dA, H, self.A, out=dA)  # dA * f'(Z), or softmax's Jacobian
        else:
            dH = np.multiply(dA, D, out=dA)  # dA * f'(Z), f'(Z) kept by forward
        if self.norm is None:
            return self.backward_from_dZ(dH, need_dX)
        self.dZhat = dH
        return self.backward_from_dZ(self.norm.backward(dH), need_dX)  # dZ from dZhat; dgamma, dbeta

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
        direction {"W": V_W, "b": V_b}; R{X} = None for the data. Returns R{A} (a new array). With a norm,
        R{Z} = R{X} W + X V_W, then R{Zhat} from the norm's r_forward (which reads V_gamma, V_beta from the
        same direction), and R{A} = f'(Zhat) * R{Zhat} (docs/derivations.md, "Through a normalization layer")."""
        RZ = np.matmul(self.X, direction["W"])
        if RX is not None:
            RZ += np.matmul(RX, self.W)
        if self.b is not None:
            RZ += direction["b"]
        RH = RZ if self.norm is None else self.norm.r_forward(RZ, direction)  # R{} of the activation's input
        self._r = (RX, RH, direction)
        return self.activation.r_forward(RH, self.activation_input, self.A)

    def r_backward(self, dA, RdA, out, need_dX=True):
        """R{dZ} = R{dA} * f'(Z) + dA * f''(Z) * R{Z} (softmax: its own form), then :meth:`r_backward_from_dZ`.
        With a norm the same gives R{dZhat} (f at Zhat), and the norm's r_backward turns it into R{dZ},
        writing R{dgamma}, R{dbeta} into ``out``."""
        H = self.activation_input
        RdH = self.activation.r_backward(dA, RdA, self._r[1], H, self.A)
        if self.norm is not None:
            RdH = self.norm.r_backward(self.dZhat, RdH, out)  # R{dZ} from R{dZhat}
        return self.r_backward_from_dZ(RdH, out, need_dX)

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
            separate_a = self.activation.needs_z or self.keep_z or self.norm is not None  # (Zhat is the norm's)
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
        self.X = self.Z = self.Zhat = self.A = self.lse = self.dZ = self.dZhat = None
        if self.norm is not None:
            self.norm.clear_buffers()

    def __repr__(self):
        bias = "" if self.has_bias or self.norm is not None else ", bias=False"
        norm = "" if self.norm is None else f", norm={self.norm.kind!r}"
        return f"Dense({self.n_in} -> {self.n_out}, {self.activation.name}{bias}{norm})"


class Dropout(Layer):
    """Inverted dropout with rate p, between two layers, in training only (docs/derivations.md, "Dropout"):

        forward:   Y = X * M / (1 - p),   M_ij = 1 with probability 1 - p, else 0
        backward:  dX = dY * M / (1 - p)

    E[M / (1 - p)] = 1, so nothing changes at predict time: outside training, Y = X. The masks are
    drawn from ``rng`` (the network's dropout stream; a NumPy Generator, or None for an unseeded one).
    """

    def __init__(self, rate, rng=None, dtype=np.float64):
        self.rate = check_fraction("dropout rate", rate)
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise ConfigError(f"Dropout: rng must be a NumPy Generator (np.random.default_rng(seed)) or None, got "
                              f"{type(rng).__name__}.")
        self.rng = np.random.default_rng() if rng is None else rng  # None: unseeded masks
        self.dtype = np.dtype(dtype)
        self._buffers = OrderedDict()
        self.mask = None

    def forward(self, X, training=False):
        if not as_mode(training).dropout or self.rate == 0.0:
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



# ---------------------------------------------------------------------------- normalization
_NORM_EPS = 1e-5  # PyTorch's default


class _Norm(Layer):
    """What BatchNorm and LayerNorm share: gamma and beta (n_features,), eps, the output buffers.

    Both compute Y = gamma * xhat + beta with xhat = (X - mean) / std, std = sqrt(var + eps); they differ
    in the axis the mean and the (biased) variance run over. After a forward pass the layer keeps
    ``X``, ``mean``, ``std``, ``xhat`` and ``Y``; after a backward pass ``dgamma``, ``dbeta`` hold the
    gradients. Each backward uses only what forward kept (docs/derivations.md, "Normalization layers").
    """

    kind = None  # "batch" or "layer": the spec's name

    def __init__(self, n_features, *, eps=_NORM_EPS, dtype=np.float64):
        self.n_features = _check_features(type(self).__name__, n_features)
        self.eps = check_non_negative("eps", eps)
        if self.eps == 0.0:
            raise ConfigError("eps must be > 0: it keeps xhat finite when a feature has zero variance.")
        self.dtype = np.dtype(dtype)
        self._buffers = OrderedDict()
        self.X = self.mean = self.var = self.std = self.xhat = self.Y = None
        self.bind(*allocate(self.parameter_shapes(), self.dtype))
        self.reset_parameters()

    def parameter_shapes(self):
        return [("gamma", (self.n_features,)), ("beta", (self.n_features,))]

    def bind(self, values, gradients):
        self.gamma, self.dgamma = values["gamma"], gradients["gamma"]
        self.beta, self.dbeta = values["beta"], gradients["beta"]

    def parameters(self):
        return [("gamma", self.gamma), ("beta", self.beta)]

    def gradients(self):
        return [("gamma", self.dgamma), ("beta", self.dbeta)]

    def reset_parameters(self):
        """gamma = 1, beta = 0: the layer starts as the plain standardization."""
        self.gamma[...] = 1
        self.beta[...] = 0

    def _buffers_for(self, shape, stat_shape):
        """The work arrays for one batch shape, reused from batch to batch."""
        buffers = self._buffers.get(shape)
        if buffers is None:
            buffers = _NormBuffers(shape, stat_shape, self.dtype)
            self._buffers[shape] = buffers
            if len(self._buffers) > _MAX_CACHED_BATCH_SIZES:
                self._buffers.popitem(last=False)
        else:
            self._buffers.move_to_end(shape)
        return buffers

    def _standardize(self, X, axis, buffers):
        """mean, var (biased), std = sqrt(var + eps) along ``axis`` and xhat = (X - mean) / std, into ``buffers``."""
        np.mean(X, axis=axis, keepdims=True, out=buffers.mean)
        np.subtract(X, buffers.mean, out=buffers.xhat)  # centered
        np.multiply(buffers.xhat, buffers.xhat, out=buffers.G)  # (G as scratch: backward writes it later)
        np.mean(buffers.G, axis=axis, keepdims=True, out=buffers.var)  # biased variance: divide by the count
        np.add(buffers.var, self.eps, out=buffers.std)
        np.sqrt(buffers.std, out=buffers.std)
        buffers.xhat /= buffers.std

    def _keep(self, X, buffers):
        """Keep what backward (and a reader) needs, then Y = gamma * xhat + beta."""
        self._current = buffers
        self.X, self.mean, self.var, self.std, self.xhat = X, buffers.mean, buffers.var, buffers.std, buffers.xhat
        np.multiply(buffers.xhat, self.gamma, out=buffers.Y)
        buffers.Y += self.beta
        self.Y = buffers.Y
        return self.Y

    def clear_buffers(self):
        self._buffers.clear()
        self.X = self.mean = self.var = self.std = self.xhat = self.Y = None

    # ------------------------------------------------------------------ R-operator (curvature)
    # docs/derivations.md, "Through a normalization layer". ``axis`` is the one the statistics run over
    # (0: batch norm, over the batch; 1: layer norm, over the features); mean(.) below is along it.
    axis = None
    _SCRATCH = Layer._SCRATCH + ("_r",)

    def statistics_move(self):
        """Whether the last forward's mean and std depend on X (batch or per-sample statistics), rather
        than being constants (batch norm's running statistics)."""
        return True

    def r_forward(self, RX, direction):
        """R{Y} along {"gamma": V_gamma, "beta": V_beta} (extra names are ignored) from R{X} (an array):

            R{mean} = mean(R{X}),  R{std} = mean(xhat * R{X}),  R{xhat} = (R{X} - R{mean} - xhat R{std}) / std
            R{Y} = V_gamma * xhat + gamma * R{xhat} + V_beta

        With constant statistics (batch norm in inference) R{xhat} = R{X} / std. Returns a new array."""
        xhat, std = self.xhat, self.std
        if self.statistics_move():
            R_mean = RX.mean(axis=self.axis, keepdims=True)
            R_std = (xhat * RX).mean(axis=self.axis, keepdims=True)
            R_xhat = (RX - R_mean - xhat * R_std) / std
        else:
            R_std, R_xhat = None, RX / std
        self._r = (R_xhat, R_std, direction)
        RY = direction["gamma"] * xhat
        RY += self.gamma * R_xhat
        RY += direction["beta"]
        return RY

    def r_backward(self, dY, RdY, out, need_dX=True):
        """After backward: R{dbeta} = sum_i R{dY_i}, R{dgamma} = sum_i (R{dY_i} xhat_i + dY_i R{xhat_i}) into
        ``out``, and R{dX}, the product rule on the compact backward dX = (G - mean(G) - xhat mean(G xhat)) / std,
        G = gamma * dY:

            R{G} = V_gamma * dY + gamma * R{dY}
            R{dX} = (R{G} - mean(R{G}) - R{xhat} mean(G xhat) - xhat mean(R{G} xhat + G R{xhat})) / std
                    - dX * R{std} / std

        (constant statistics: R{dX} = R{G} / std). Returns a new array (None when ``need_dX`` is False)."""
        (R_xhat, R_std, direction), self._r = self._r, None
        xhat, std = self.xhat, self.std
        np.sum(RdY, axis=0, out=out["beta"])
        out["gamma"][...] = (RdY * xhat + dY * R_xhat).sum(axis=0)
        if not need_dX:
            return None
        G, RG = dY * self.gamma, dY * direction["gamma"] + RdY * self.gamma
        if R_std is None:
            return RG / std
        G_xhat = (G * xhat).mean(axis=self.axis, keepdims=True)
        dX = (G - G.mean(axis=self.axis, keepdims=True) - xhat * G_xhat) / std  # backward's dX, recomputed
        RdX = RG - RG.mean(axis=self.axis, keepdims=True) - R_xhat * G_xhat
        RdX -= xhat * (RG * xhat + G * R_xhat).mean(axis=self.axis, keepdims=True)
        RdX /= std
        RdX -= dX * (R_std / std)
        return RdX

    def __repr__(self):
        return f"{type(self).__name__}({self.n_features}, eps={self.eps:g})"


class BatchNorm(_Norm):
    """Batch normalization (Ioffe and Szegedy 2015): each feature standardized over the batch (N rows).

        forward (training)                         backward, given dY = dJ/dY  (N, n)
        mean = (1/N) sum_i X_i       (1, n)        dbeta  = sum_i dY_i
        var  = (1/N) sum_i (X_i - mean)^2          dgamma = sum_i dY_i * xhat_i
        std  = sqrt(var + eps)                     dX = (gamma / std) * (dY - dbeta/N - xhat * dgamma/N)
        xhat = (X - mean) / std                       = (1/N) gamma/std (N dY - sum dY - xhat sum(dY xhat))
        Y    = gamma * xhat + beta

    Every sample's dX depends on the whole batch through mean and var (docs/derivations.md,
    "Normalization layers"). Running statistics, updated by training steps only (PyTorch's rule):

        running_mean = (1 - momentum) running_mean + momentum mean
        running_var  = (1 - momentum) running_var  + momentum var * N/(N-1)   (the unbiased variance)

    In inference (``batch_statistics`` off) mean and std come from the running statistics, constants,
    and backward is dX = dY * gamma / std.

    The running statistics are updated in the forward pass when the Mode says so (``update_running``), or
    later by :meth:`update_running`, from the statistics the last forward kept: the trainer's step commits
    them only once its loss is known to be finite (training.train_step).

    Data-parallel training (handgrad.distributed, docs/derivations.md "Batch norm over K processes"): each
    process holds a shard of the batch, and ``reduce`` (None in one process) sums an array over the
    processes. With it, the mean and variance are the global batch's (two sums: [sum_i z_i, N], then
    sum_i (z_i - mean)^2), and backward's dbeta/N and dgamma/N are the global batch's too (one sum); the
    layer's own dgamma, dbeta stay this shard's part, which the network's gradient sum completes.
    """

    kind = "batch"
    axis = 0  # statistics over the batch, per feature
    _SCRATCH = _Norm._SCRATCH + ("reduce",)  # a copy or a pickle never carries a communicator's sum

    def __init__(self, n_features, *, eps=_NORM_EPS, momentum=0.1, dtype=np.float64):
        super().__init__(n_features, eps=eps, dtype=dtype)
        self.momentum = _check_momentum(momentum)
        self.running_mean = np.zeros(self.n_features, self.dtype)
        self.running_var = np.ones(self.n_features, self.dtype)
        self.batch_statistics = None  # whether the last forward used the batch's statistics
        self.count = None  # N, the rows the last batch statistics ran over (data-parallel: every process's)
        self.reduce = None  # data-parallel: array -> its sum over the processes (handgrad.distributed sets it)

    def forward(self, X, training=False):
        mode = as_mode(training)
        buffers = self._buffers_for(X.shape, (1, self.n_features))
        if mode.batch_statistics:
            if self.reduce is None:
                self.count = _check_batch_rows(X.shape[0])
                self._standardize(X, 0, buffers)
            else:  # data-parallel: the global batch's statistics
                self.count = self._standardize_over_processes(X, buffers)
        else:  # the running statistics, constants
            np.copyto(buffers.mean[0], self.running_mean)
            np.copyto(buffers.var[0], self.running_var)
            np.add(buffers.var, self.eps, out=buffers.std)
            np.sqrt(buffers.std, out=buffers.std)
            np.subtract(X, buffers.mean, out=buffers.xhat)
            buffers.xhat /= buffers.std
        self.batch_statistics = mode.batch_statistics
        Y = self._keep(X, buffers)
        if mode.batch_statistics and mode.update_running:
            self.update_running()
        return Y

    def _standardize_over_processes(self, X, buffers):
        """Data-parallel: mean and biased variance over every process's rows, as :meth:`_standardize` computes
        them over one batch: two sums over the processes, accumulated in float64. Returns the global N."""
        n = self.n_features
        sums = np.empty(n + 1)  # [sum_i z_i over this process's rows, its number of rows]
        np.sum(X, axis=0, dtype=np.float64, out=sums[:n])
        sums[n] = X.shape[0]
        sums = self.reduce(sums)  # sum 1: the global batch's column sums and N
        N = _check_batch_rows(int(sums[n]))  # (a process may hold no rows of this batch)
        buffers.mean[0] = sums[:n] / N
        np.subtract(X, buffers.mean, out=buffers.xhat)  # centered on the global mean
        np.multiply(buffers.xhat, buffers.xhat, out=buffers.G)  # (G as scratch, as in _standardize)
        squares = self.reduce(np.sum(buffers.G, axis=0, dtype=np.float64))  # sum 2: sum_i (z_i - mean)^2
        buffers.var[0] = squares / N  # biased variance of the global batch
        np.add(buffers.var, self.eps, out=buffers.std)
        np.sqrt(buffers.std, out=buffers.std)
        buffers.xhat /= buffers.std
        return N

    def update_running(self):
        """Fold the batch statistics of the last forward pass into the running ones, PyTorch's rule:
        running = (1 - m) running + m batch, with the unbiased variance var * N/(N-1) (N: ``count``)."""
        if not self.batch_statistics:
            raise ConfigError("update_running folds in the batch statistics of the last forward pass, and it used "
                              "the running statistics; run a forward pass with batch statistics first.")
        m, N = self.momentum, self.count
        self.running_mean *= 1 - m
        self.running_mean += m * self.mean[0]
        self.running_var *= 1 - m
        self.running_var += (m * N / (N - 1)) * self.var[0]

    def backward(self, dY, need_dX=True):
        b = self._current
        np.sum(dY, axis=0, out=self.dbeta)  # dbeta = sum_i dY_i  (data-parallel: this shard's part)
        np.multiply(dY, b.xhat, out=b.dX)
        np.sum(b.dX, axis=0, out=self.dgamma)  # dgamma = sum_i dY_i * xhat_i  (idem)
        if not need_dX:
            return None
        np.divide(self.gamma, b.std, out=b.scratch)  # gamma / std  (1, n)
        if not self.batch_statistics:  # constant mean and std: a per-feature scaling
            return np.multiply(dY, b.scratch, out=b.dX)
        N, dbeta, dgamma = self.count, self.dbeta, self.dgamma
        if self.reduce is not None:  # data-parallel: the global batch's dbeta and dgamma (one sum)
            dbeta, dgamma = self._sums_over_processes(dbeta, dgamma)
        np.multiply(b.xhat, dgamma / N, out=b.dX)  # xhat * dgamma/N
        np.subtract(dY, b.dX, out=b.dX)
        b.dX -= dbeta / N  # dY - dbeta/N - xhat * dgamma/N
        b.dX *= b.scratch
        return b.dX

    def _sums_over_processes(self, dbeta, dgamma):
        """(sum of dbeta, sum of dgamma) over the processes, in float64, returned in the layer's dtype."""
        total = self.reduce(np.concatenate([dbeta, dgamma]).astype(np.float64))
        return total[:self.n_features].astype(self.dtype), total[self.n_features:].astype(self.dtype)

    def statistics_move(self):
        """True after a forward with batch statistics; False with the running ones (constants)."""
        return bool(self.batch_statistics)

    def inference(self, X):
        """Y for X with the running statistics, in a new array; nothing is kept (the network's predict)."""
        return (X - self.running_mean) * (self.gamma / np.sqrt(self.running_var + self.eps)) + self.beta

    def __repr__(self):
        return f"BatchNorm({self.n_features}, eps={self.eps:g}, momentum={self.momentum:g})"


def _check_features(layer, n_features):
    """n_features as an int >= 1, or a ConfigError naming the layer's argument and what to pass."""
    return check_positive_int(f"{layer}: n_features", n_features,
                              fix=f"Pass the width of the layer it normalizes, e.g. {layer}(4) after Dense(3, 4).")


def _check_batch_rows(N):
    """N, or a DataError when a batch of N < 2 rows would be standardized over itself (variance 0)."""
    if N < 2:
        raise DataError("batch normalization with batch statistics (training, loss_and_grad, curvature) needs "
                        "at least 2 samples per batch: the variance of one sample is 0, so its normalized "
                        "value carries nothing. Give at least 2 samples (in training, a batch_size that leaves "
                        "no batch of one sample), or use the running statistics (predict, or "
                        "loss(X, T, batch_statistics=False)).")
    return N


def _check_momentum(momentum):
    """momentum as a float in [0, 1] (1: the running statistics are the last batch's), or a ConfigError."""
    try:
        value = float(momentum)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(momentum, bool) or not 0.0 <= value <= 1.0:  # (NaN fails both comparisons)
        raise ConfigError(f"momentum must be a number in [0, 1] (the weight of each batch in the running "
                          f"statistics), got {momentum!r}.")
    return value


class LayerNorm(_Norm):
    """Layer normalization (Ba, Kiros and Hinton 2016): each sample standardized over its n features.

        forward                                    backward, given dY = dJ/dY  (N, n); G = dY * gamma
        mean_i = (1/n) sum_j X_ij    (N, 1)        dbeta  = sum_i dY_i,   dgamma = sum_i dY_i * xhat_i
        var_i  = (1/n) sum_j (X_ij - mean_i)^2     dX_i = (1/std_i) (G_i - mean_j G_ij - xhat_i mean_j(G_ij xhat_ij))
        xhat = (X - mean) / std,  Y = gamma * xhat + beta

    The same in training and inference: no running statistics, and samples do not interact.
    """

    kind = "layer"
    axis = 1  # statistics over the features, per sample

    def __init__(self, n_features, *, eps=_NORM_EPS, dtype=np.float64):
        # one feature: xhat = (z - z) / s = 0 for every sample, so Y = beta whatever X
        if _check_features("LayerNorm", n_features) < 2:
            raise ConfigError(f"layer normalization needs at least 2 units in its layer, got {int(n_features)}: a "
                              "single feature standardized over itself is always 0, so the layer's output would be "
                              "beta whatever its input. Widen the layer, or use batch norm or no norm there.")
        super().__init__(n_features, eps=eps, dtype=dtype)

    def forward(self, X, training=False):
        buffers = self._buffers_for(X.shape, (X.shape[0], 1))
        self._standardize(X, 1, buffers)
        return self._keep(X, buffers)

    def backward(self, dY, need_dX=True):
        b = self._current
        np.sum(dY, axis=0, out=self.dbeta)
        np.multiply(dY, b.xhat, out=b.dX)
        np.sum(b.dX, axis=0, out=self.dgamma)
        if not need_dX:
            return None
        G = np.multiply(dY, self.gamma, out=b.G)  # G = dY * gamma
        np.multiply(G, b.xhat, out=b.dX)
        np.mean(b.dX, axis=1, keepdims=True, out=b.scratch)  # mean_j G_ij xhat_ij   (N, 1)
        np.multiply(b.xhat, b.scratch, out=b.dX)
        np.mean(G, axis=1, keepdims=True, out=b.scratch)  # mean_j G_ij
        np.subtract(G, b.dX, out=b.dX)
        b.dX -= b.scratch
        b.dX /= b.std
        return b.dX

    def inference(self, X):
        """Y for X in a new array; nothing is kept (the network's predict)."""
        mean = X.mean(axis=1, keepdims=True)
        std = np.sqrt(((X - mean) ** 2).mean(axis=1, keepdims=True) + self.eps)
        return (X - mean) / std * self.gamma + self.beta


class _NormBuffers:
    """Work arrays of a normalization layer for one batch shape: full (N, n) ones and per-statistic ones."""

    __slots__ = ("G", "Y", "dX", "mean", "scratch", "std", "var", "xhat")

    def __init__(self, shape, stat_shape, dtype):
        self.xhat, self.Y, self.dX, self.G = (np.empty(shape, dtype) for _ in range(4))
        self.mean, self.var, self.std, self.scratch = (np.empty(stat_shape, dtype) for _ in range(4))


NORMS = {"batch": BatchNorm, "layer": LayerNorm}


def make_norm(norm, n_features, dtype):
    """None, or a normalization layer from "batch", "layer" or a layer object."""
    if norm is None or isinstance(norm, _Norm):
        return norm
    if not (isinstance(norm, str) and norm in NORMS):
        raise ConfigError(f"unknown norm {norm!r}; use 'batch', 'layer' or None.")
    return NORMS[norm](n_features, dtype=dtype)
