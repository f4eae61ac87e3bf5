"""Dense: one fully connected layer, its forward pass and its backward pass.

Forward (batch-first, docs/derivations.md section "One layer"):

    Z = X @ W + b          X: (N, n_in)   W: (n_in, n_out)   b: (n_out,)   Z: (N, n_out)
    A = f(Z)
    Y = A * M / (1 - p)    only with dropout rate p in training (M a 0/1 mask); else Y = A

Backward, given dY = dJ/dY:

    dA = dY * M / (1 - p)  (dropout only)
    dZ = dA * f'(Z)        (softmax: its Jacobian; see activations.py)
    dW = X^T @ dZ          (n_in, n_out)
    db = sum over rows of dZ   (n_out,)
    dX = dZ @ W^T          (N, n_in), only when the layer below needs it

The layer keeps what backward needs from forward (X, Z when the activation needs
it, A, and D = f'(Z) for the activations that get it almost free in forward, such
as ReLU's 0/1 mask) and reuses per-batch-size buffers, so a training step allocates
almost nothing. Gradients are written into ``self.dW`` and ``self.db``; or, for a
plain gradient-descent step, the layer applies the step itself (``descend``):

    W <- decay W - X^T @ dZ - shrink sign(W)      b <- b - sum over rows of dZ

with dZ already carrying the learning rate, as one BLAS call (see _blas.py).
"""

from collections import OrderedDict

import numpy as np

from ._blas import Gemm
from .activations import get_activation
from .errors import ConfigError

_MAX_CACHED_BATCH_SIZES = 4


class _Buffers:
    """Work arrays for one batch size."""

    __slots__ = ("Z", "A", "D", "lse", "Y", "mask", "dX", "dZ", "ones", "step")

    def __init__(self, n, n_in, n_out, dtype, separate_a, dropout, derivative, lse):
        self.Z = np.empty((n, n_out), dtype)
        self.A = np.empty((n, n_out), dtype) if separate_a else self.Z
        self.D = np.empty((n, n_out), dtype) if derivative else None
        self.lse = np.empty((n, 1), dtype) if lse else None
        self.ones = np.ones((1, n), dtype)  # 1^T dZ: the column sums of dZ as one BLAS call
        self.Y = np.empty((n, n_out), dtype) if dropout else None
        self.mask = np.empty((n, n_out), dtype) if dropout else None
        self.dX = np.empty((n, n_in), dtype)
        self.dZ = np.empty((n, n_out), dtype)
        self.step = Gemm()  # W <- decay W - X^T dZ (the gradient-descent step inside backward)


class Dense:
    """A fully connected layer ``A = f(X @ W + b)``.

    Attributes: ``W`` (n_in, n_out), ``b`` (n_out,) or None, ``activation``,
    ``dropout`` (rate in [0, 1)), and after a backward pass ``dW`` and ``db``.
    """

    def __init__(self, n_in, n_out, activation="identity", *, bias=True, dropout=0.0, dtype=np.float64,
                 keep_z=False):
        self.n_in = int(n_in)
        self.n_out = int(n_out)
        self.activation = get_activation(activation)
        self.dtype = np.dtype(dtype)
        try:
            dropout = float(dropout)
        except (TypeError, ValueError):
            raise ConfigError(f"dropout rate must be a number in [0, 1), got {dropout!r}.") from None
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout rate must be in [0, 1), got {dropout}.")
        self.dropout = dropout
        self.W = np.zeros((self.n_in, self.n_out), self.dtype)
        self.b = np.zeros(self.n_out, self.dtype) if bias else None
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b) if bias else None
        # The output layer keeps Z so that losses can be evaluated from logits.
        self.keep_z = keep_z
        self._buffers = OrderedDict()
        self._dropout_on = False
        self.X = self.Z = self.A = self.lse = None

    # ------------------------------------------------------------------ helpers
    @property
    def has_bias(self):
        return self.b is not None

    def parameters(self):
        """[(name, array)] of this layer's parameters: W, and b when present."""
        return [("W", self.W)] + ([("b", self.b)] if self.b is not None else [])

    def gradients(self):
        return [("W", self.dW)] + ([("b", self.db)] if self.b is not None else [])

    def _buffers_for(self, n, dropout):
        key = (n, dropout)
        buffers = self._buffers.get(key)
        if buffers is None:
            separate_a = self.activation.needs_z or self.keep_z
            buffers = _Buffers(n, self.n_in, self.n_out, self.dtype, separate_a, dropout,
                               self.activation.derivative_in_forward, self.keep_z and self.activation.row_log_sum_exp)
            self._buffers[key] = buffers
            if len(self._buffers) > _MAX_CACHED_BATCH_SIZES:
                self._buffers.popitem(last=False)
        else:
            self._buffers.move_to_end(key)
        return buffers

    def clear_buffers(self):
        self._buffers.clear()
        self.X = self.Z = self.A = self.lse = None

    # ------------------------------------------------------------------ forward
    def forward(self, X, rng=None):
        """Y = f(X @ W + b), with inverted dropout when ``rng`` is given and the rate is > 0.

        Returns a buffer owned by the layer: it is overwritten by the next forward
        pass of the same batch size. Copy it to keep it.
        """
        dropout = rng is not None and self.dropout > 0
        buffers = self._buffers_for(X.shape[0], dropout)
        Z = np.matmul(X, self.W, out=buffers.Z)
        if self.b is not None:
            Z += self.b
        if buffers.D is not None:  # D = f'(Z) as a by-product of forward (ReLU: the mask forward multiplies by)
            A = self.activation.forward(Z, out=buffers.A, derivative=buffers.D)
        elif buffers.lse is not None:  # softmax output: keep each row's log-sum-exp for the cross-entropy
            A = self.activation.forward(Z, out=buffers.A, lse=buffers.lse)
        else:
            A = self.activation.forward(Z, out=buffers.A)  # buffers.A is Z itself when f' needs only A
        self.X, self.Z, self.A, self.lse = X, Z, A, buffers.lse
        self._dropout_on = dropout
        self._current = buffers
        if not dropout:
            return A
        keep = 1.0 - self.dropout
        mask = rng.random(dtype=self.dtype, out=buffers.mask)  # uniform in [0, 1)
        np.less(mask, keep, out=mask)  # 1 where the unit is kept (probability 1 - p), 0 where dropped
        mask *= 1.0 / keep  # inverted dropout: E[mask] = 1, so nothing changes at predict time
        return np.multiply(A, mask, out=buffers.Y)

    # ------------------------------------------------------------------ backward
    def backward(self, dY, need_dX=True, descend=None):
        """From dJ/dY (which may be overwritten) to dW, db; returns dJ/dX when ``need_dX``.
        ``descend``: see :meth:`backward_from_dZ`."""
        buffers = self._current
        if self._dropout_on:
            dY = np.multiply(dY, buffers.mask, out=dY)
        if buffers.D is None:
            dZ = self.activation.backward(dY, self.Z, self.A, out=dY)
        else:
            dZ = np.multiply(dY, buffers.D, out=dY)  # dZ = dA * f'(Z), f'(Z) kept by forward
        return self.backward_from_dZ(dZ, need_dX, descend)

    def backward_from_dZ(self, dZ, need_dX=True, descend=None):
        """dW = X^T dZ, db = column sums of dZ, and dX = dZ W^T when ``need_dX``.

        With ``descend=(decay, shrink)`` the layer takes a gradient-descent step instead of
        keeping dW and db; dZ must then be the gradient of eta*J (the learning rate folded
        in, see MLP._loss_and_grad), and decay = 1 - eta*l2, shrink = eta*l1:

            W <- decay W - X^T dZ - shrink sign(W)        b <- b - column sums of dZ

        which is W <- W - eta (dJ/dW + l2 W + l1 sign W). dX is computed first, from the W
        the forward pass used. ``dW`` and ``db`` are left holding scratch values.
        """
        buffers = self._current
        dX = np.matmul(dZ, self.W.T, out=buffers.dX) if need_dX else None
        ones = buffers.ones
        if descend is None:
            np.matmul(self.X.T, dZ, out=self.dW)
            if self.b is not None:
                np.matmul(ones, dZ, out=self.db[None, :])  # column sums 1^T dZ (BLAS, faster than a reduce)
            return dX
        decay, shrink = descend
        shrinkage = np.sign(self.W) * shrink if shrink else None  # from the W before the step
        buffers.step(-1.0, self.X.T, dZ, decay, self.W, work=self.dW)  # W <- decay W - X^T dZ in one pass over W
        if shrinkage is not None:
            self.W -= shrinkage
        if self.b is not None:
            np.matmul(ones, dZ, out=self.db[None, :])
            self.b -= self.db  # b <- b - 1^T dZ
        return dX

    def __repr__(self):
        bias = "" if self.b is not None else ", bias=False"
        drop = f", dropout={self.dropout}" if self.dropout else ""
        return f"Dense({self.n_in} -> {self.n_out}, {self.activation.name}{bias}{drop})"
