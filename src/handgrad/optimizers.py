"""Optimizers: the update rules, written by hand, on the network's parameter vector.

Every optimizer has one method that matters::

    optimizer.step(params, grads, learning_rate)

``params`` is theta (``net.params``, one 1-D array holding every weight and bias) and ``grads`` the
gradient dJ/dtheta of the same layout (``net.grads``). ``step`` updates ``params`` IN PLACE and only
reads ``grads``: after a step, ``net.grads`` (and each layer's ``dW``, ``db``) still hold the gradient
of the batch. Whatever the depth of the network, a step is the handful of array operations written
in each ``_update`` below. State (momentum buffers, moment estimates) is one vector per name, made on
the first step in the parameters' dtype and then only written into in place, as is one work vector,
so a step allocates nothing.

Notation (g = gradient, p = parameter, eta = learning rate, t = step count from 1).
The formulas are those of ``torch.optim`` with its defaults (dampening 0, no
weight decay inside SGD/Adam: the L2 penalty lives in the objective, see network.py),
and the tests check that both give the same parameters to 1e-12 in float64.

    SGD       p <- p - eta g                                     (the seeds' rule, the default)
    Momentum  b <- mu b + g;            p <- p - eta b
    Nesterov  b <- mu b + g;            p <- p - eta (g + mu b)
    Adam      m <- b1 m + (1-b1) g;     v <- b2 v + (1-b2) g^2
              p <- p - (eta / (1-b1^t)) m / (sqrt(v) / sqrt(1-b2^t) + eps)
    AdamW     p <- p (1 - eta wd), then the Adam step        (decoupled weight decay)
    RMSprop   v <- alpha v + (1-alpha) g^2;  p <- p - eta g / (sqrt(v) + eps)
              (with momentum mu: b <- mu b + g / (sqrt(v) + eps); p <- p - eta b)
"""

import math

import numpy as np

from ._blas import axpy
from .errors import ConfigError, suggest


def _check_number(name, value, low=0.0, high=None, low_open=False, high_open=False):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}.") from None
    bad = not math.isfinite(value) or value < low or (low_open and value == low)
    if high is not None:
        bad = bad or value > high or (high_open and value == high)
    if bad:
        upper = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
        interval = f"{'(' if low_open else '['}{low:g}, {upper}"
        raise ConfigError(f"{name} must be in {interval}, got {value}.")
    return value


class Optimizer:
    """Base class: subclasses name their state vectors (``state_names``) and write ``_update``."""

    name = "optimizer"
    #: the state vectors this optimizer keeps (saved in checkpoints), each shaped like the parameter vector
    state_names = ()

    def __init__(self):
        self.t = 0  # number of steps taken
        self.state = None  # {name: vector}, created on the first step
        self._work = None  # one work vector: the step's intermediate values (not state)

    def hyperparameters(self):
        """The constructor's arguments, as a JSON-able dict."""
        return {}

    def step(self, params, grads, learning_rate):
        """Update the vector ``params`` in place from the vector ``grads`` (read, never written)."""
        if not (isinstance(params, np.ndarray) and isinstance(grads, np.ndarray) and params.ndim == 1
                and grads.shape == params.shape):
            raise ConfigError(f"{self.name}: step needs the parameter vector and a gradient vector of its shape "
                              "(net.params, net.grads).")
        if self.state is None:
            self.state = {name: np.zeros_like(params) for name in self.state_names}
        elif any(vector.shape != params.shape for vector in self.state.values()):
            raise ConfigError(f"{self.name}: this optimizer holds state for {self._size()} parameters but was "
                              f"given {params.size}; use a fresh optimizer for a different network.")
        if self._work is None or self._work.shape != params.shape or self._work.dtype != params.dtype:
            self._work = np.empty_like(params)
        self.t += 1
        self._update(params, grads, learning_rate, self._work)

    def _size(self):
        return next(iter(self.state.values())).size if self.state else 0

    def _update(self, p, g, learning_rate, work):
        """One step on p (in place) from g (read only); ``work`` is scratch space of p's shape."""
        raise NotImplementedError

    def reset(self):
        """Forget every buffer and the step count (the next step starts from scratch)."""
        self.t = 0
        self.state = None

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """{"name", "t", hyperparameters..., "state": {name: vector} or None}."""
        state = None if self.state is None else {name: vector.copy() for name, vector in self.state.items()}
        return {"name": self.name, "t": self.t, **self.hyperparameters(), "state": state}

    def load_state_dict(self, d):
        """Restore what :meth:`state_dict` returned (the hyperparameters must match this object's)."""
        if d.get("name") != self.name:
            raise ConfigError(f"cannot load '{d.get('name')}' optimizer state into a '{self.name}' optimizer.")
        self.t = int(d["t"])
        state = d.get("state")
        if state is not None and not isinstance(state, dict):
            raise ConfigError(f"{self.name}: this optimizer state is in the per-array form of handgrad 0.1; read it "
                              "through handgrad.checkpoints, which converts it to the parameter vector.")
        if state is not None and set(state) != set(self.state_names):
            raise ConfigError(f"{self.name}: the saved state holds {sorted(state)}, expected {list(self.state_names)}.")
        self.state = None if state is None else {name: np.array(state[name], copy=True) for name in self.state_names}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Plain gradient descent, the seeds' rule: p <- p - eta g. No state.

    The step is one BLAS AXPY (p <- (-eta) g + p) where NumPy's OpenBLAS is found, else NumPy's
    ``work = eta g; p -= work``: the same formula, equal to rounding (see _blas.py, tests/test_blas.py).
    """

    name = "sgd"

    def _update(self, p, g, learning_rate, work):
        axpy(-learning_rate, g, p, work)


class Momentum(Optimizer):
    """Heavy-ball momentum (torch.optim.SGD with momentum, dampening 0):

        b <- mu b + g          (b starts at 0, so the first step is plain SGD)
        p <- p - eta b
    """

    name = "momentum"
    state_names = ("velocity",)

    def __init__(self, momentum=0.9):
        super().__init__()
        self.momentum = _check_number("momentum", momentum, 0.0, 1.0, high_open=True)

    def hyperparameters(self):
        return {"momentum": self.momentum}

    def _update(self, p, g, learning_rate, work):
        b = self.state["velocity"]
        b *= self.momentum
        b += g
        np.multiply(b, learning_rate, out=work)
        p -= work


class Nesterov(Momentum):
    """Nesterov momentum in torch.optim's form (evaluated at the current point):

        b <- mu b + g
        p <- p - eta (g + mu b)
    """

    name = "nesterov"

    def _update(self, p, g, learning_rate, work):
        b = self.state["velocity"]
        b *= self.momentum
        b += g  # b = mu b + g
        np.multiply(b, self.momentum, out=work)
        work += g  # g + mu b: the look-ahead
        work *= learning_rate
        p -= work


class Adam(Optimizer):
    """Adam (Kingma & Ba), with the bias corrections written as torch.optim does:

        m <- b1 m + (1 - b1) g                 first moment
        v <- b2 v + (1 - b2) g^2               second moment
        p <- p - (eta / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    name = "adam"
    state_names = ("m", "v")

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__()
        self.beta1 = _check_number("beta1", beta1, 0.0, 1.0, high_open=True)
        self.beta2 = _check_number("beta2", beta2, 0.0, 1.0, high_open=True)
        self.eps = _check_number("eps", eps, 0.0)

    def hyperparameters(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _update(self, p, g, learning_rate, work):
        m, v = self.state["m"], self.state["v"]
        step_size = learning_rate / (1.0 - self.beta1 ** self.t)  # the bias corrections depend on t only
        sqrt_correction2 = math.sqrt(1.0 - self.beta2 ** self.t)
        np.multiply(g, g, out=work)  # g^2
        work *= 1.0 - self.beta2
        v *= self.beta2
        v += work  # v = b2 v + (1 - b2) g^2
        np.multiply(g, 1.0 - self.beta1, out=work)
        m *= self.beta1
        m += work  # m = b1 m + (1 - b1) g
        np.sqrt(v, out=work)
        work /= sqrt_correction2
        work += self.eps  # denominator sqrt(v_hat) + eps
        np.divide(m, work, out=work)
        work *= step_size
        p -= work


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW:

        p <- p (1 - eta wd)       then the Adam step above.

    Unlike ``l2`` in the network (which adds l2 W to the gradient and is then rescaled
    by Adam's denominator), this shrinks every parameter, biases included, at the same rate.
    """

    name = "adamw"

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(beta1, beta2, eps)
        self.weight_decay = _check_number("weight_decay", weight_decay, 0.0)

    def hyperparameters(self):
        return {**super().hyperparameters(), "weight_decay": self.weight_decay}

    def _update(self, p, g, learning_rate, work):
        if self.weight_decay:
            p *= 1.0 - learning_rate * self.weight_decay
        super()._update(p, g, learning_rate, work)


class RMSprop(Optimizer):
    """RMSprop (Hinton), as torch.optim.RMSprop (eps added after the square root):

        v <- alpha v + (1 - alpha) g^2
        p <- p - eta g / (sqrt(v) + eps)
        with momentum mu > 0:  b <- mu b + g / (sqrt(v) + eps);  p <- p - eta b
    """

    name = "rmsprop"

    def __init__(self, alpha=0.99, eps=1e-8, momentum=0.0):
        super().__init__()
        self.alpha = _check_number("alpha", alpha, 0.0, 1.0, high_open=True)
        self.eps = _check_number("eps", eps, 0.0)
        self.momentum = _check_number("momentum", momentum, 0.0, 1.0, high_open=True)
        self.state_names = ("v", "velocity") if self.momentum else ("v",)

    def hyperparameters(self):
        return {"alpha": self.alpha, "eps": self.eps, "momentum": self.momentum}

    def _update(self, p, g, learning_rate, work):
        v = self.state["v"]
        np.multiply(g, g, out=work)
        work *= 1.0 - self.alpha
        v *= self.alpha
        v += work  # v = alpha v + (1 - alpha) g^2
        np.sqrt(v, out=work)
        work += self.eps
        np.divide(g, work, out=work)  # g / (sqrt(v) + eps)
        if self.momentum:
            b = self.state["velocity"]
            b *= self.momentum
            b += work
            np.multiply(b, learning_rate, out=work)
        else:
            work *= learning_rate
        p -= work


OPTIMIZERS = {cls.name: cls for cls in (SGD, Momentum, Nesterov, Adam, AdamW, RMSprop)}


def get_optimizer(optimizer="sgd", **hyperparameters):
    """An Optimizer from a name ('sgd', 'momentum', 'nesterov', 'adam', 'adamw', 'rmsprop') or an object.

    Extra keyword arguments are the optimizer's hyperparameters, e.g.
    ``get_optimizer("adamw", weight_decay=1e-4)``.
    """
    if isinstance(optimizer, Optimizer):
        if hyperparameters:
            raise ConfigError("pass hyperparameters to the optimizer's constructor, not alongside an object.")
        return optimizer
    if isinstance(optimizer, type) and issubclass(optimizer, Optimizer):
        return optimizer(**hyperparameters)
    if not isinstance(optimizer, str):
        raise ConfigError(f"optimizer must be a name or an Optimizer, got {optimizer!r}.")
    key = optimizer.strip().lower()
    if key not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer '{optimizer}'; choose one of {', '.join(OPTIMIZERS)}."
                          + suggest(key, OPTIMIZERS))
    try:
        return OPTIMIZERS[key](**hyperparameters)
    except TypeError as error:
        raise ConfigError(f"optimizer '{key}': {error}.") from None


def from_state_dict(d):
    """Rebuild an optimizer (hyperparameters and state) from :meth:`Optimizer.state_dict`."""
    cls = OPTIMIZERS.get(d.get("name"))
    if cls is None:
        raise ConfigError(f"unknown optimizer '{d.get('name')}' in saved state.")
    names = cls().hyperparameters()
    optimizer = cls(**{k: d[k] for k in names if k in d})
    optimizer.load_state_dict(d)
    return optimizer
