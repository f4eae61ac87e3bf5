"""Callbacks: code of yours that the trainer runs at the end of each batch and each epoch.

Write a subclass of :class:`Callback` and override what you need::

    class PrintEvery(Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch % 10 == 0:
                print(epoch, logs["loss"])

    net.fit(X, T, epochs=100, callbacks=[PrintEvery()])

``logs`` is a dict of this epoch's numbers ("loss", "val_loss", "val_accuracy", ...).
Returning True from ``on_epoch_end`` or ``on_batch_end`` stops training (the history's
``stop_reason`` says which callback). A plain function ``f(epoch, logs)`` is accepted
too and runs as ``on_epoch_end``.
"""

import math

import numpy as np

from .errors import ConfigError, check_count


class Callback:
    """Hooks called by :func:`handgrad.training.fit`. ``self.net`` is set before training starts."""

    net = None

    def on_train_begin(self, net):
        self.net = net

    def on_batch_end(self, epoch, batch, loss):
        """After each mini-batch update (``batch`` counts from 1 within the epoch). Return True to stop."""

    def on_epoch_end(self, epoch, logs):
        """After each epoch (``epoch`` counts from 1), with that epoch's metrics. Return True to stop."""

    def on_train_end(self, net, history):
        """Once, when training ends for any reason (also after an error or Ctrl-C)."""

    # Callbacks whose state matters for an exact resume override these two.
    def state_dict(self):
        return {}

    def load_state_dict(self, d):
        pass


class FunctionCallback(Callback):
    """Wraps a function ``f(epoch, logs)`` as ``on_epoch_end``."""

    def __init__(self, function):
        self.function = function

    def on_epoch_end(self, epoch, logs):
        return self.function(epoch, logs)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs,
    and (``restore_best=True``) put back the weights of the best epoch, with batch norm's running
    statistics of that epoch (``net.running_statistics()``: predict uses them, so they belong to the model).

    ``monitor`` defaults to "val_loss" when there is validation data, else "loss". Metrics
    where larger is better (accuracy, r2) are maximized, losses and errors minimized.

    The best epoch is kept as one copy of the parameter vector, ``best_params`` (every layer's W and b
    are views into ``net.params``), and ``best_running`` ({name: array}); each improvement copies into
    them with np.copyto, without allocating.
    """

    def __init__(self, patience=5, monitor=None, min_delta=0.0, restore_best=True):
        self.patience = check_count(patience, 0, "early stopping patience must be a whole number of epochs >= 0, "
                                               f"got {patience!r}.")
        self.monitor = monitor
        self.min_delta = float(min_delta)
        self.restore_best = bool(restore_best)
        self.best = None
        self.best_epoch = 0
        self.wait = 0
        self.best_params = None  # a copy of net.params at the best epoch
        self.best_running = None  # {name: array}: batch norm's running statistics at the best epoch

    def on_train_begin(self, net):
        """Fit a state loaded from a checkpoint to ``net``: checked, in its dtype (and an older checkpoint's list of
        per-array weights laid out as one vector)."""
        super().on_train_begin(net)
        if isinstance(self.best_params, list):
            self.best_params = net.vector_from(self.best_params)
        elif self.best_params is not None:
            if np.shape(self.best_params) != net.params.shape:
                raise ConfigError(f"the early-stopping state holds {np.size(self.best_params)} parameters; this "
                                  f"network has {net.params.size}. Resume with the network it was made with.")
            self.best_params = np.asarray(self.best_params, dtype=net.params.dtype)
        if self.best_running is not None:
            self.best_running = net.check_running_statistics(self.best_running)

    def _larger_is_better(self):
        return self.monitor is not None and self.monitor.split("_")[-1] in ("accuracy", "r2")

    def on_epoch_end(self, epoch, logs):
        if self.monitor is None:
            self.monitor = "val_loss" if "val_loss" in logs else "loss"
        if self.monitor not in logs:
            raise ConfigError(f"early stopping monitors '{self.monitor}', which this run does not compute; "
                              f"choose one of {', '.join(sorted(logs))}.")
        value = float(logs[self.monitor])
        sign = -1.0 if self._larger_is_better() else 1.0  # minimize sign * value
        if math.isfinite(value) and (self.best is None or sign * value < sign * self.best - self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self._keep(self.net)
            return False
        self.wait += 1
        return self.wait > self.patience

    def _keep(self, net):
        """Copy the weights and running statistics of now into the best epoch's arrays (made once)."""
        if self.best_params is None:
            self.best_params = np.empty_like(net.params)
        if self.best_running is None:
            self.best_running = {name: np.empty_like(array) for name, array in net.running_statistics()}
        np.copyto(self.best_params, net.params)
        for name, array in net.running_statistics():
            np.copyto(self.best_running[name], array)

    def restore(self):
        """Put the best epoch's weights back into the network (called by the trainer when training ends)."""
        if not self.restore_best or self.best_params is None:
            return False
        np.copyto(self.net.params, self.best_params)
        if self.best_running is not None:  # (None: a checkpoint from before they were kept)
            for name, array in self.net.running_statistics():
                np.copyto(array, self.best_running[name])
        return True

    def state_dict(self):
        return {"monitor": self.monitor, "best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_params": None if self.best_params is None else self.best_params.copy(),
                "best_running": None if self.best_running is None else
                {name: array.copy() for name, array in self.best_running.items()}}

    def load_state_dict(self, d):
        """A state from :meth:`state_dict`, or from an older checkpoint: "best_weights" (a list of per-array
        weights, laid out as one vector once the network is known) and no "best_running"."""
        self.monitor = d.get("monitor")
        self.best = d.get("best")
        self.best_epoch = int(d.get("best_epoch", 0))
        self.wait = int(d.get("wait", 0))
        params, weights = d.get("best_params"), d.get("best_weights")
        if params is not None:
            self.best_params = np.array(params, copy=True)
        else:
            self.best_params = None if weights is None else [np.array(w, copy=True) for w in weights]
        running = d.get("best_running")
        self.best_running = None if running is None else {name: np.array(a, copy=True) for name, a in running.items()}


_SHARPNESS_OPTIONS = ("dropout_seed", "tol", "max_iter", "seed", "start", "batch_size", "warn")  # curvature.sharpness's


class Sharpness(Callback):
    """Measure the sharpness lambda_1 (the largest eigenvalue of the Hessian of the objective, see
    handgrad.curvature) on a fixed probe set ``(X, T)`` every ``every`` epochs, and record it.

    Each measured epoch gets ``logs["sharpness"]``: the progress line shows it, callbacks after this
    one see it, and the history records it with the epoch's other figures, so ``history.sharpness``
    holds one value per epoch (NaN where none was measured). ``self.epochs``, ``self.values``
    (lambda_1) and ``self.eigenvalues`` (the top k) keep the measurements. The objective is that of
    ``net.loss_and_grad`` on the probe set, dropout off (batch norm with the probe set's own
    statistics, as one batch; its running statistics are left alone). Gradient descent near a
    minimum diverges when the learning rate exceeds 2 / lambda_1; ``plotting.plot_sharpness(history)``
    draws both.

    It measures with Hessian-vector products on the network itself, so it leaves ``net.grads`` (and
    the layers' buffers) holding the probe set's gradient: the next training step recomputes them.
    """

    def __init__(self, X, T, every=1, k=1, method="lanczos", sample_weight=None, **options):
        check_count(every, 1, f"Sharpness(every=...) must be a whole number of epochs >= 1, got {every!r}.")
        unknown = sorted(set(options) - set(_SHARPNESS_OPTIONS))
        if unknown:
            raise ConfigError(f"Sharpness got unknown option(s) {', '.join(unknown)}; it takes "
                              f"{', '.join(_SHARPNESS_OPTIONS)} (see handgrad.curvature.sharpness).")
        self.X, self.T, self.sample_weight = X, T, sample_weight
        self.every, self.k, self.method, self.options = int(every), k, method, options
        self.epochs, self.values, self.eigenvalues = [], [], []

    def on_train_begin(self, net):
        """Check the probe set and the options against the network now, not after the first epoch."""
        from .curvature import check_sharpness

        super().on_train_begin(net)
        check_sharpness(net, self.X, self.T, self.k, self.method, sample_weight=self.sample_weight, **self.options)

    def measure(self, net):
        """The :class:`handgrad.curvature.SharpnessResult` of ``net`` on the probe set, now."""
        from .curvature import sharpness

        return sharpness(net, self.X, self.T, self.k, self.method, sample_weight=self.sample_weight, **self.options)

    def on_epoch_end(self, epoch, logs):
        if epoch % self.every:
            return False
        result = self.measure(self.net)
        self.epochs.append(int(epoch))
        self.values.append(result.sharpness)
        self.eigenvalues.append([float(value) for value in result.eigenvalues])
        logs["sharpness"] = result.sharpness
        return False

    def state_dict(self):
        return {"epochs": list(self.epochs), "values": list(self.values), "eigenvalues": list(self.eigenvalues)}

    def load_state_dict(self, d):
        self.epochs = [int(e) for e in d.get("epochs", [])]
        self.values = [float(v) for v in d.get("values", [])]
        self.eigenvalues = [list(e) for e in d.get("eigenvalues", [])]


def as_callback(item):
    """A Callback from a Callback or a function f(epoch, logs)."""
    if isinstance(item, Callback):
        return item
    if isinstance(item, type) and issubclass(item, Callback):
        raise ConfigError(f"pass an instance, {item.__name__}(), not the class, as a callback.")
    if callable(item):
        return FunctionCallback(item)
    raise ConfigError(f"a callback must be a Callback or a function f(epoch, logs), got {item!r}.")
