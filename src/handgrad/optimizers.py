"""Optimizers: the update rules, written by hand, with their state kept in plain arrays.

Every optimizer has one method that matters::

    optimizer.step(params, grads, learning_rate)

``params`` and ``grads`` are parallel lists of arrays ([W1, b1, W2, ...] and
[dW1, db1, dW2, ...]). ``step`` changes each parameter IN PLACE and may overwrite
the gradient arrays (they are recomputed for the next batch anyway). State (momentum
buffers, moment estimates) is allocated on the first step, in the parameters'
dtype, and then only ever written into with ``out=``/in-place operations, so a
step allocates nothing the size of a parameter.

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
        interval = f"{'(' if low_open else '['}{low:g}, {'inf)' if high is None else f'{high:g}' + (')' if high_open else ']')}"
        raise ConfigError(f"{name} must be in {interval}, got {value}.")
    return value


class Optimizer:
    """Base class: subclasses define ``_init_state`` (the arrays they keep) and ``_update`` (one parameter)."""

    name = "optimizer"
    #: names of the per-parameter state arrays, in the order ``_init_state`` returns them
    state_names = ()
    # True when the step is p <- p - eta g with no state, which the network can take itself inside
    # the backward pass (MLP._loss_and_grad(descend=True)): see SGD.
    descends_in_backward = False

    def __init__(self):
        self.t = 0  # number of steps taken
        self.state = None  # list (one entry per parameter) of tuples of arrays, created on the first step

    def hyperparameters(self):
        """The constructor's arguments, as a JSON-able dict."""
        return {}

    def _init_state(self, param):
        return ()

    def step(self, params, grads, learning_rate):
        """Update every array in ``params`` in place from ``grads`` (which may be overwritten)."""
        if self.state is None:
            self.state = [self._init_state(p) for p in params]
        elif len(self.state) != len(params):
            raise ConfigError(f"{self.name}: this optimizer holds state for {len(self.state)} parameter arrays "
                              f"but was given {len(params)}; use a fresh optimizer for a different network.")
        self.t += 1
        for p, g, s in zip(params, grads, self.state):
            self._update(p, g, s, learning_rate)

    def _update(self, p, g, state, learning_rate):
        raise NotImplementedError

    def count_backward_step(self):
        """Count a step the network took itself inside its backward pass (``descends_in_backward``)."""
        self.t += 1

    def reset(self):
        """Forget every buffer and the step count (the next step starts from scratch)."""
        self.t = 0
        self.state = None

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """{"name", "t", hyperparameters..., "state": [[array, ...] per parameter] or None}."""
        state = None if self.state is None else [[a.copy() for a in s] for s in self.state]
        return {"name": self.name, "t": self.t, **self.hyperparameters(), "state": state}

    def load_state_dict(self, d):
        """Restore what :meth:`state_dict` returned (the hyperparameters must match this object's)."""
        if d.get("name") != self.name:
            raise ConfigError(f"cannot load '{d.get('name')}' optimizer state into a '{self.name}' optimizer.")
        self.t = int(d["t"])
        state = d.get("state")
        self.state = None if state is None else [tuple(np.array(a, copy=True) for a in s) for s in state]

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Plain gradient descent, the seeds' rule: p <- p - eta g. No state.

    The trainer lets the network take this step inside the backward pass
    (``descends_in_backward``): backward computes the gradient of eta J, and each layer
    applies W <- W - X^T (eta dZ) as one BLAS call, without writing dW (Dense.backward_from_dZ).
    ``step`` below is the same rule for callers that hold the gradients.
    """

    name = "sgd"
    descends_in_backward = True

    def _update(self, p, g, state, learning_rate):
        if learning_rate != 1.0:
            g *= learning_rate
        p -= g


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

    def _init_state(self, param):
        return (np.zeros_like(param),)

    def _update(self, p, g, state, learning_rate):
        (b,) = state
        b *= self.momentum
        b += g
        np.multiply(b, learning_rate, out=g)
        p -= g


class Nesterov(Momentum):
    """Nesterov momentum in torch.optim's form (evaluated at the current point):

        b <- mu b + g
        p <- p - eta (g + mu b)
    """

    name = "nesterov"
    state_names = ("velocity", "scratch")

    def _init_state(self, param):
        return (np.zeros_like(param), np.zeros_like(param))

    def _update(self, p, g, state, learning_rate):
        b, scratch = state
        b *= self.momentum
        b += g  # b = mu b + g
        np.multiply(b, self.momentum, out=scratch)
        g += scratch  # g + mu b: the look-ahead
        g *= learning_rate
        p -= g


class Adam(Optimizer):
    """Adam (Kingma & Ba), with the bias corrections written as torch.optim does:

        m <- b1 m + (1 - b1) g                 first moment
        v <- b2 v + (1 - b2) g^2               second moment
        p <- p - (eta / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    name = "adam"
    state_names = ("m", "v", "scratch")

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__()
        self.beta1 = _check_number("beta1", beta1, 0.0, 1.0, high_open=True)
        self.beta2 = _check_number("beta2", beta2, 0.0, 1.0, high_open=True)
        self.eps = _check_number("eps", eps, 0.0)

    def hyperparameters(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _init_state(self, param):
        # scratch is a work array (not state in the mathematical sense); kept so a step allocates nothing
        return (np.zeros_like(param), np.zeros_like(param), np.zeros_like(param))

    def step(self, params, grads, learning_rate):
        # the bias corrections depend on t only: compute them once per step, not per parameter
        t = self.t + 1
        self._step_size = learning_rate / (1.0 - self.beta1 ** t)
        self._sqrt_correction2 = math.sqrt(1.0 - self.beta2 ** t)
        super().step(params, grads, learning_rate)

    def _update(self, p, g, state, learning_rate):
        m, v, scratch = state
        np.multiply(g, g, out=scratch)  # g^2
        scratch *= 1.0 - self.beta2
        v *= self.beta2
        v += scratch  # v = b2 v + (1 - b2) g^2
        g *= 1.0 - self.beta1
        m *= self.beta1
        m += g  # m = b1 m + (1 - b1) g
        np.sqrt(v, out=scratch)
        scratch /= self._sqrt_correction2
        scratch += self.eps  # denominator sqrt(v_hat) + eps
        np.divide(m, scratch, out=g)
        g *= self._step_size
        p -= g


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

    def _update(self, p, g, state, learning_rate):
        if self.weight_decay:
            p *= 1.0 - learning_rate * self.weight_decay
        super()._update(p, g, state, learning_rate)


class RMSprop(Optimizer):
    """RMSprop (Hinton), as torch.optim.RMSprop (eps added after the square root):

        v <- alpha v + (1 - alpha) g^2
        p <- p - eta g / (sqrt(v) + eps)
        with momentum mu > 0:  b <- mu b + g / (sqrt(v) + eps);  p <- p - eta b
    """

    name = "rmsprop"
    state_names = ("v", "scratch", "velocity")

    def __init__(self, alpha=0.99, eps=1e-8, momentum=0.0):
        super().__init__()
        self.alpha = _check_number("alpha", alpha, 0.0, 1.0, high_open=True)
        self.eps = _check_number("eps", eps, 0.0)
        self.momentum = _check_number("momentum", momentum, 0.0, 1.0, high_open=True)

    def hyperparameters(self):
        return {"alpha": self.alpha, "eps": self.eps, "momentum": self.momentum}

    def _init_state(self, param):
        state = (np.zeros_like(param), np.zeros_like(param))
        return state + ((np.zeros_like(param),) if self.momentum else ())

    def _update(self, p, g, state, learning_rate):
        v, scratch = state[0], state[1]
        np.multiply(g, g, out=scratch)
        scratch *= 1.0 - self.alpha
        v *= self.alpha
        v += scratch  # v = alpha v + (1 - alpha) g^2
        np.sqrt(v, out=scratch)
        scratch += self.eps
        g /= scratch  # g / (sqrt(v) + eps)
        if self.momentum:
            b = state[2]
            b *= self.momentum
            b += g
            np.multiply(b, learning_rate, out=g)
        else:
            g *= learning_rate
        p -= g


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
