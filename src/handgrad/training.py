"""The fit loop: mini-batches by shuffled index, one update rule per step.

The seeds' rule is plain gradient descent, W <- W - eta dJ/dW, applied after each
mini-batch; it stays the default. Batches are gathered by index into reused
buffers (the data set is never copied per epoch), and the last short batch is used.
"""

import time

import numpy as np

from .errors import ConfigError, TrainingError


class History:
    """What happened during training: per-epoch curves and timings.

    ``history.loss`` is the mean training objective of each epoch, ``history.epochs``
    the epoch numbers (1-based), ``history.seconds`` the time each took.
    """

    def __init__(self):
        self.epochs = []
        self.metrics = {"loss": []}
        self.seconds = []
        self.stop_reason = None

    def record(self, epoch, seconds, **values):
        self.epochs.append(epoch)
        self.seconds.append(seconds)
        for name, value in values.items():
            self.metrics.setdefault(name, []).append(value)

    def __getattr__(self, name):
        metrics = self.__dict__.get("metrics", {})
        if name in metrics:
            return metrics[name]
        raise AttributeError(name)

    def as_dict(self):
        return {"epoch": list(self.epochs), "seconds": list(self.seconds), **{k: list(v) for k, v in self.metrics.items()}}

    def __repr__(self):
        last = {k: v[-1] for k, v in self.metrics.items() if v}
        return f"History(epochs={len(self.epochs)}, last={last})"


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _positive_float(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive number, got {value!r}.") from None
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value}.")
    return value


def iterate_batches(order, batch_size):
    """Slices of the index array ``order``, ``batch_size`` at a time; the last one may be shorter."""
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def fit(net, X, T, *, epochs=10, batch_size=32, learning_rate=0.1, shuffle=True, sample_weight=None, seed=None,
        verbose=False):
    """Mini-batch gradient descent: for each batch, W <- W - learning_rate * dJ/dW (and the same for b)."""
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    learning_rate = _positive_float("learning_rate", learning_rate)
    X = net.check_inputs(X)
    N = X.shape[0]
    T = net.check_targets(T, N)
    w = net.check_sample_weight(sample_weight, N)
    rng = np.random.default_rng(net.seed if seed is None else seed)
    batch_size = min(batch_size, N)
    X_batch = np.empty((batch_size, X.shape[1]), net.dtype)
    T_batch = np.empty((batch_size, T.shape[1]), net.dtype)
    w_batch = np.empty(batch_size, net.dtype) if w is not None else None
    history = History()
    order = np.arange(N)
    dropout = any(layer.dropout for layer in net.layers)
    for epoch in range(1, epochs + 1):
        start_time = time.perf_counter()
        if shuffle:
            rng.shuffle(order)
        total, seen = 0.0, 0
        for number, index in enumerate(iterate_batches(order, batch_size), 1):
            n = len(index)
            xb = np.take(X, index, axis=0, out=X_batch[:n])
            tb = np.take(T, index, axis=0, out=T_batch[:n])
            wb = np.take(w, index, out=w_batch[:n]) if w is not None else None
            J = net._loss_and_grad(xb, tb, wb, net.rng if dropout else None)
            if not np.isfinite(J):
                history.stop_reason = f"non-finite loss at epoch {epoch}, batch {number}"
                raise TrainingError(
                    f"the loss became {J} at epoch {epoch}, batch {number}; the weights are left at their last "
                    f"finite values. Lower the learning rate (now {learning_rate:g}) or standardize the inputs."
                )
            for layer in net.layers:
                layer.dW *= learning_rate
                layer.W -= layer.dW
                if layer.b is not None:
                    layer.db *= learning_rate
                    layer.b -= layer.db
            total += J * n
            seen += n
        history.record(epoch, time.perf_counter() - start_time, loss=total / seen)
        if verbose:
            print(f"epoch {epoch}/{epochs}  loss {total / seen:.6f}")
    return history


def partial_fit(net, X, T, *, batch_size=32, learning_rate=0.1, sample_weight=None, seed=None):
    """One pass over (X, T) in order."""
    return fit(net, X, T, epochs=1, batch_size=batch_size, learning_rate=learning_rate, shuffle=False,
               sample_weight=sample_weight, seed=seed)
