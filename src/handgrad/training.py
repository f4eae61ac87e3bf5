"""The trainer: mini-batch gradient descent on the network's parameter vector, in small parts.

Read it in this order: :class:`Settings` (every argument of fit, checked once), :func:`prepare_data`
(checks, sample and class weights, the validation split), :func:`train_step` (one batch),
:func:`end_epoch` (evaluation, history, callbacks, checkpoint), and :func:`fit`, which sets up
(:func:`_set_up`: everything before the first step) and runs the loop that calls them. Checkpoint
files are handgrad.checkpoints; the image recipe is handgrad.recipes.

    for epoch in 1..epochs:
        order <- a permutation of 0..N-1 (shuffle=True)          the data set itself is never copied
        for each slice of ``batch_size`` indices (the last one may be shorter, and is used):
            gather X[idx], T[idx], w[idx] into buffers made once (np.take(..., out=))
            J = net.backprop(batch)          dJ/dtheta in net.grads: every layer's dW, db, visible
            g = net.grads, or (clip_norm) g * min(1, c / ||g||) in a copy: net.grads stays the gradient
            optimizer.step(net.params, g, eta = schedule.rate(step))
        validation loss and metrics; callbacks; early stopping; checkpoint

Per-sample weights w_i (``sample_weight`` times ``class_weight[class of i]``) enter the
objective as J = (1/N) sum_i w_i l_i (docs/training.md, "Sample and class weights").
"""

import copy
import functools
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import distributed as _distributed
from . import lbfgs as _lbfgs
from . import metrics as _metrics
from . import streaming
from .callbacks import Callback, EarlyStopping, as_callback
from .checkpoints import (
    check_same_data,
    data_fingerprint,
    optimizer_state,
    parameter_vector,
    read_checkpoint,
    restore_running_statistics,
    write_checkpoint,
)
from .errors import ConfigError, DataError, TrainingError, check_count, check_fraction, check_seed
from .io import plain_json
from .layers import OBJECTIVE_WITH_DROPOUT
from .optimizers import Optimizer, from_state_dict, get_optimizer
from .schedules import get_schedule

_EVAL_CHUNK = 4096  # rows per forward pass when evaluating validation data (bounds memory)


# ---------------------------------------------------------------------------- History
class History:
    """What happened during training.

    ``history.epochs``: epoch numbers (from 1); ``history.seconds``: time per epoch;
    ``history.metrics``: name -> list, one value per epoch ("loss" = mean training
    objective over the epoch's batches, "val_loss", "val_accuracy", "val_mse", "val_mae",
    "val_r2", "lr" = the learning rate of the epoch's last batch). Each metric is also an
    attribute: ``history.loss``, ``history.val_loss``. ``stop_reason`` says why training
    ended ("completed", "early stopping ...", "interrupted ...", "stopped by callback ...").
    """

    def __init__(self):
        self.epochs = []
        self.metrics = {"loss": []}
        self.seconds = []
        self.stop_reason = None

    def record(self, epoch, seconds, **values):
        """One epoch's row. Every column keeps one value per epoch: a metric missing from this row (a callback
        that measures every other epoch, say) gets NaN, and a new one gets NaN for the epochs before."""
        self.epochs.append(epoch)
        self.seconds.append(seconds)
        for name in self.metrics.keys() - values.keys():
            values[name] = math.nan
        for name, value in values.items():
            column = self.metrics.setdefault(name, [])
            column.extend([math.nan] * (len(self.epochs) - 1 - len(column)))
            column.append(value)

    def __getattr__(self, name):
        metrics = self.__dict__.get("metrics", {})
        if name in metrics:
            return metrics[name]
        raise AttributeError(f"History has no metric '{name}'; it has {', '.join(metrics) or 'none yet'}.")

    def as_dict(self):
        return {"epoch": list(self.epochs), "seconds": list(self.seconds), "stop_reason": self.stop_reason,
                **{k: list(v) for k, v in self.metrics.items()}}

    @classmethod
    def from_dict(cls, d):
        history = cls()
        d = dict(d)
        history.epochs = [int(e) for e in d.pop("epoch", [])]
        history.seconds = [float(s) for s in d.pop("seconds", [])]
        history.stop_reason = d.pop("stop_reason", None)
        history.metrics = {k: list(v) for k, v in d.items()}
        history.metrics.setdefault("loss", [])
        return history

    def __repr__(self):
        last = {k: round(v[-1], 6) for k, v in self.metrics.items() if v}
        return f"History(epochs={len(self.epochs)}, last={last}, stop_reason={self.stop_reason!r})"

    def _repr_html_(self):  # Jupyter: the loss curve (handgrad.display)
        from .display import history_html

        return history_html(self)


# ---------------------------------------------------------------------------- settings
def _positive_int(name, value):
    return check_count(value, 1, f"{name} must be a positive integer, got {value!r}.")


def _positive_float(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive number, got {value!r}.") from None
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value}.")
    return value


@dataclass
class Settings:
    """Every argument of :func:`fit`, checked once (see fit's docstring for their meaning)."""

    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: Optimizer
    schedule: object
    shuffle: bool
    validation_split: float
    metrics: list
    callbacks: list
    stopper: EarlyStopping = None
    clip_norm: float = None
    checkpoint: object = None
    resume: object = None
    verbose: object = "auto"
    seed: object = None
    # what a checkpoint records of the data, so that a resume on other data is refused (_restore):
    block_rows: int = None  # rows per block of streamed data; None in memory
    data_fingerprint: dict = None  # checkpoints.data_fingerprint of the training data
    preprocessing: object = None  # fit's ``preprocessing``: what was done to X before fit

    @classmethod
    def check(cls, net, *, epochs, batch_size, optimizer, learning_rate, schedule, shuffle, validation_split,
              early_stopping, callbacks, checkpoint, resume, verbose, seed, clip_norm, metrics):
        validation_split = check_fraction("validation_split", validation_split)
        hooks = [as_callback(c) for c in (callbacks or ())]
        stopper = None
        if early_stopping is not None and early_stopping is not False:
            if early_stopping is True:
                stopper = EarlyStopping()
            elif isinstance(early_stopping, EarlyStopping):
                stopper = early_stopping
            else:
                stopper = EarlyStopping(early_stopping)
            hooks.append(stopper)
        if resume is True:
            if checkpoint is None:
                raise ConfigError("resume=True resumes from the checkpoint file; pass checkpoint=PATH too.")
            resume = checkpoint if os.path.exists(checkpoint) else None
        return cls(
            epochs=_positive_int("epochs", epochs), batch_size=_positive_int("batch_size", batch_size),
            learning_rate=_positive_float("learning_rate", learning_rate), optimizer=get_optimizer(optimizer),
            schedule=get_schedule(schedule), shuffle=bool(shuffle), validation_split=validation_split,
            metrics=_metrics.default_metrics(net.is_classifier) if metrics is None else _metrics.check_names(metrics),
            callbacks=hooks, stopper=stopper,
            clip_norm=None if clip_norm is None else _positive_float("clip_norm", clip_norm),
            checkpoint=checkpoint, resume=None if resume is False else resume, verbose=verbose,
            seed=check_seed("seed", seed))


# ---------------------------------------------------------------------------- data
@dataclass
class Data:
    """Checked training arrays (and validation arrays, or None), all of the network's dtype."""

    X: np.ndarray
    T: np.ndarray
    w: np.ndarray = None
    X_val: np.ndarray = None
    T_val: np.ndarray = None
    w_val: np.ndarray = None


def _class_ids(net, T):
    """The class of each (checked) target row: argmax for softmax outputs, T >= 0.5 for one sigmoid output."""
    if not net.is_classifier:
        raise ConfigError("class_weight needs a classifier (softmax or sigmoid output); use sample_weight instead.")
    if T.shape[1] == 1:
        return (T[:, 0] >= 0.5).astype(np.int64)
    if net.output_activation.name != "softmax":
        raise ConfigError("class_weight needs one label per sample (a softmax output or a single sigmoid output).")
    return T.argmax(axis=1)


def class_weights_per_sample(net, T, class_weight):
    """Per-sample weights from ``class_weight``: a dict {class id: weight} (missing classes weigh 1), or
    "balanced": w_c = N / (K * N_c), which makes every class contribute the same total weight."""
    ids = _class_ids(net, T)
    return class_weight_table(net, np.bincount(ids, minlength=max(net.n_outputs, 2)), class_weight)[ids]


def class_weight_table(net, counts, class_weight):
    """The weight of each class (an array of K numbers, the network's dtype) from the class counts."""
    K = max(net.n_outputs, 2)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ConfigError(f"class_weight must be a dict or 'balanced', got '{class_weight}'.")
        counts = np.asarray(counts, dtype=np.float64)
        present = counts > 0
        table = np.ones(K)
        table[present] = counts.sum() / (present.sum() * counts[present])
    elif isinstance(class_weight, dict):
        table = np.ones(K)
        for label, weight in class_weight.items():
            if not isinstance(label, (int, np.integer)) or not 0 <= label < K:
                raise ConfigError(f"class_weight key {label!r} is not a class id 0..{K - 1}.")
            if not np.isfinite(weight) or weight < 0:
                raise ConfigError(f"class_weight[{label}] must be finite and >= 0, got {weight}.")
            table[int(label)] = weight
    else:
        raise ConfigError(f"class_weight must be a dict {{class: weight}} or 'balanced', got {class_weight!r}.")
    return table.astype(net.dtype)


def prepare_data(net, X, T, sample_weight=None, class_weight=None, validation_data=None, validation_split=0.0,
                 split_seed=0, block_rows=None):
    """Check X, T and the weights; hold out ``validation_data`` or a random ``validation_split`` (from
    ``split_seed``). Per-sample weights are sample_weight times the class weights. Memory-mapped, Zarr
    and Dask training data stay where they are: ``data.X`` is then a handgrad.streaming.Stream."""
    if streaming.is_streamed(X) or streaming.is_streamed(T) or streaming.is_streamed(sample_weight):
        return _prepare_stream(net, X, T, sample_weight, class_weight, validation_data, validation_split, block_rows)
    if block_rows is not None:
        streaming.check_block_rows(block_rows)  # unused for data in memory, but a bad value is still an error
    X = net.check_inputs(X)
    T = net.check_targets(T, X.shape[0])
    w = net.check_sample_weight(sample_weight, T.shape[0])
    if class_weight is not None:
        by_class = class_weights_per_sample(net, T, class_weight)
        w = by_class if w is None else w * by_class
    data = Data(X, T, w)
    if validation_data is not None:
        data.X_val, data.T_val, data.w_val = _validation_arrays(net, validation_data)
    elif validation_split > 0:
        n_val = int(round(validation_split * X.shape[0]))
        if n_val < 1 or n_val >= X.shape[0]:
            raise DataError(f"validation_split={validation_split} leaves {n_val} of {X.shape[0]} samples for "
                            "validation; it needs at least one sample on each side.")
        split = np.random.default_rng([split_seed, 1]).permutation(X.shape[0])
        held, kept = np.sort(split[:n_val]), np.sort(split[n_val:])
        data = Data(X[kept], T[kept], None if w is None else w[kept], X[held], T[held], None if w is None else w[held])
    if data.w is not None:
        _check_some_weight(float(data.w.sum()), sample_weight, class_weight)
    _check_some_validation_weight(data.w_val)
    return data


def _check_some_weight(total, sample_weight, class_weight):
    """A DataError when the training samples' weights sum to zero: every loss term times 0, so training would
    change nothing (or only drift with momentum), silently."""
    if total > 0:
        return
    given = " times ".join(name for name, value in (("sample_weight", sample_weight), ("class_weight", class_weight))
                           if value is not None)
    raise DataError(f"the training samples' weights ({given}) sum to zero, so there is nothing to learn from: every "
                    "loss term is multiplied by 0. Give some samples (or classes present in the data) a positive "
                    "weight.")


def _check_some_validation_weight(w_val):
    """A DataError when the validation samples' weights sum to zero: the validation loss would be the penalty
    alone (every loss term times 0), and early stopping or a plateau schedule would follow it, silently."""
    if w_val is not None and not float(w_val.sum()) > 0:
        raise DataError("the validation samples' weights sum to zero, so the validation loss would be the penalty "
                        "alone (every loss term is multiplied by 0). Give some validation samples a positive weight, "
                        "or pass validation_data without weights.")


def _validation_arrays(net, validation_data):
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise DataError("validation_data must be (X_val, T_val) or (X_val, T_val, sample_weight_val).")
    X_val = net.check_inputs(validation_data[0])
    T_val = net.check_targets(validation_data[1], X_val.shape[0])
    w_val = net.check_sample_weight(validation_data[2], X_val.shape[0]) if len(validation_data) == 3 else None
    return X_val, T_val, w_val


def _prepare_stream(net, X, T, sample_weight, class_weight, validation_data, validation_split, block_rows):
    """prepare_data for data read block by block: every block is read and checked once before training."""
    if validation_split > 0:
        raise ConfigError("validation_split needs the data in memory; with memory-mapped, Zarr or Dask data, pass "
                          "validation_data=(X_val, T_val) instead.")
    stream = streaming.Stream(net, X, T, sample_weight, block_rows)
    if class_weight is None:
        sums = []  # each block's sum of sample weights
        stream.scan(None if sample_weight is None else lambda Xb, Tb, wb: sums.append(float(wb.sum())))
        if sample_weight is not None:
            _check_some_weight(math.fsum(sums), sample_weight, class_weight)
    else:
        K = max(net.n_outputs, 2)
        counts, weights = np.zeros(K, np.int64), np.zeros(K)  # per class: samples, and their sample weights' sum

        def count(Xb, Tb, wb):
            ids = _class_ids(net, Tb)
            np.add(counts, np.bincount(ids, minlength=K), out=counts)
            np.add(weights, np.bincount(ids, weights=wb, minlength=K), out=weights)

        stream.scan(count)
        table = class_weight_table(net, counts, class_weight)
        stream.class_weights = lambda Tb: table[_class_ids(net, Tb)]
        _check_some_weight(float(np.dot(table, weights)), sample_weight, class_weight)
    data = Data(stream, None)
    if validation_data is not None:
        data.X_val, data.T_val, data.w_val = _validation_arrays(net, validation_data)
        _check_some_validation_weight(data.w_val)
    return data


class _Batches:
    """The batches of one epoch: slices of the data in the order given, gathered into buffers made once
    (or, without shuffling, views of the data: nothing to copy)."""

    def __init__(self, data, batch_size, dtype, n_batches, shard=None):
        self.data, self.batch_size, self.n_batches = data, batch_size, n_batches
        self.shard = shard or (lambda n: (0, n))  # this process's rows lo..hi of a batch of n (data-parallel)
        rows = max(batch_size, streaming.batch_rows(n_batches, n_batches, batch_size, data.X.shape[0]))
        self.X = np.empty((rows, data.X.shape[1]), dtype)
        self.T = np.empty((rows, data.T.shape[1]), dtype)
        self.w = np.empty(rows, dtype) if data.w is not None else None

    @staticmethod
    def shuffle(order, rng):
        """A new epoch's order, in place."""
        rng.shuffle(order)

    def rows(self, number):
        """The number of rows of batch ``number`` (all processes' together); the last runs to the end of the data."""
        return streaming.batch_rows(number, self.n_batches, self.batch_size, self.data.X.shape[0])

    def get(self, number, order, in_order):
        """Batch ``number`` (from 1), or this process's shard of it: (X, T, w or None)."""
        d = self.data
        lo, hi = self.shard(self.rows(number))
        first, n = (number - 1) * self.batch_size + lo, hi - lo
        if in_order:  # the batch is a contiguous slice, a view with nothing to copy
            return d.X[first:first + n], d.T[first:first + n], None if d.w is None else d.w[first:first + n]
        index = order[first:first + n]  # mode="clip" lets np.take write straight into the buffer (indices are valid)
        xb = np.take(d.X, index, axis=0, out=self.X[:n], mode="clip")
        tb = np.take(d.T, index, axis=0, out=self.T[:n], mode="clip")
        wb = None if d.w is None else np.take(d.w, index, out=self.w[:n], mode="clip")
        return xb, tb, wb


# ---------------------------------------------------------------------------- evaluation
def evaluate(net, X, T, sample_weight=None, metrics=None, out=None):
    """{"loss": J, metric: value} on (X, T) (already checked arrays), computed in chunks of rows.

    loss is the objective J (weighted data loss + regularization); the metrics are handgrad.metrics'
    (accuracy for classifiers, mse, mae and r2 otherwise, by default) of the outputs A against T.
    """
    metrics = _metrics.default_metrics(net.is_classifier) if metrics is None else metrics
    N = X.shape[0]
    A_all = out if out is not None else np.empty((N, net.n_outputs), net.dtype)
    total = 0.0
    for start in range(0, N, _EVAL_CHUNK):
        stop = min(start + _EVAL_CHUNK, N)
        A = net.run_forward(X[start:stop])
        total += net.data_total(A, T[start:stop], None if sample_weight is None else sample_weight[start:stop])
        A_all[start:stop] = A
    return {"loss": total / N + net.regularization(),
            **_metrics.compute(metrics, A_all, T, net.output_activation.name)}


# ---------------------------------------------------------------------------- progress
class _Progress:
    """tqdm bar over all batches when tqdm is installed and stderr is a terminal; else epoch lines or nothing."""

    def __init__(self, verbose, total, initial):
        self.bar = None
        self.lines = False
        if verbose is False or verbose == 0:
            return
        if verbose not in (True, 1, "auto"):
            raise ConfigError(f"verbose must be True, False or 'auto', got {verbose!r}.")
        tty = getattr(sys.stderr, "isatty", lambda: False)()
        tqdm = None
        if tty:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
        if tqdm is not None:
            self.bar = tqdm(total=total, initial=initial, unit="batch", dynamic_ncols=True, leave=True)
        elif verbose is True or verbose == 1:
            self.lines = True

    def batch(self, loss):
        if self.bar is not None:
            self.bar.update(1)

    def epoch(self, epoch, epochs, logs):
        text = "  ".join(f"{k} {v:.4g}" for k, v in logs.items() if k != "lr")
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch}/{epochs}", refresh=False)
            self.bar.set_postfix_str(text)
        elif self.lines:
            print(f"epoch {epoch}/{epochs}  {text}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _InterruptFlag:
    """Turns the first Ctrl-C into a flag the loop checks after each batch (a second one interrupts at once)."""

    def __init__(self):
        self.raised = False
        self.previous = None

    def _handler(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


# ---------------------------------------------------------------------------- one step
class _NonFinite(Exception):
    def __init__(self, epoch, batch, value):
        super().__init__(epoch, batch, value)
        self.epoch, self.batch, self.value = epoch, batch, value


def train_step(net, optimizer, X, T, w, rate, clip_norm=None, work=None, group=None, n_total=None):
    """One batch: J and dJ/dtheta (net.backprop), then, when J is finite, batch norm's running statistics
    and one optimizer step on net.params; returns J.

    The forward pass computes batch norm's batch statistics without folding them into the running ones
    (layers.OBJECTIVE_WITH_DROPOUT); net.update_running_statistics() folds them in once J is known to be
    finite, so a diverged batch changes nothing: no step, and running statistics as they were before it.
    With ``clip_norm`` the optimizer gets g * min(1, c / ||g||), ||g|| the norm of the whole gradient
    vector, computed in ``work`` (net.grads keeps the true gradient).
    Data-parallel (``group``, handgrad.distributed): X, T, w are this rank's shard of a batch of
    ``n_total`` rows, and the group sums the shards' J and gradients over the ranks first (and batch
    norm's statistics are the global batch's, the same on every rank).
    """
    if group is None:
        J = net.backprop(X, T, w, training=OBJECTIVE_WITH_DROPOUT)
    else:
        J = group.gradient(net, X, T, w, n_total, training=OBJECTIVE_WITH_DROPOUT)
    if not math.isfinite(J):
        return J
    net.update_running_statistics()  # batch norm: this batch's statistics, now that its loss is finite
    g = net.grads
    if clip_norm is not None:
        norm = math.sqrt(float(np.dot(g, g)))
        if norm > clip_norm:
            g = np.multiply(g, clip_norm / norm, out=work)
    optimizer.step(net.params, g, rate)
    return J


# ---------------------------------------------------------------------------- where a run stands
@dataclass
class Position:
    """Where a run stands: what a checkpoint saves besides the network and the optimizer."""

    order: np.ndarray
    shuffle_rng: np.random.Generator
    history: History = field(default_factory=History)
    epochs_done: int = 0
    batch_done: int = 0
    step: int = 0
    epoch_total: float = 0.0
    epoch_seen: int = 0


def _snapshot(net, settings, position, seed, n_samples):
    p = position
    return {
        "seed": seed, "n_samples": n_samples, "batch_size": settings.batch_size, "epochs": settings.epochs,
        "learning_rate": settings.learning_rate,
        "block_rows": settings.block_rows, "data": settings.data_fingerprint, "preprocessing": settings.preprocessing,
        "epochs_done": p.epochs_done, "batch_done": p.batch_done, "step": p.step, "epoch_total": p.epoch_total,
        "epoch_seen": p.epoch_seen, "order": p.order.copy(), "params": net.params.copy(),
        "running": {name: array.copy() for name, array in net.running_statistics()},
        "optimizer": settings.optimizer.state_dict(), "schedule": settings.schedule.state_dict(),
        "shuffle_rng": p.shuffle_rng.bit_generator.state, "net_rng": net.rng.bit_generator.state,
        "history": p.history.as_dict(),
        "history_columns": list(p.history.metrics),  # (the file's JSON sorts keys: a resume restores this order)
        "callbacks": [{"type": type(h).__name__, "state": h.state_dict()} for h in settings.callbacks],
        "config": net.config(),
    }


def _record_data(settings, data, preprocessing):
    """What a checkpoint keeps of the data, for a resume to compare (_restore): the block size of streamed
    data, a fingerprint of the training data (from handgrad.streaming.sample_rows' few rows; a stream kept
    them as it read its blocks), and the ``preprocessing`` fit was told of."""
    if isinstance(data.X, streaming.Stream):
        settings.block_rows = data.X.block_rows
        rows = data.X.sampled_rows()
    else:
        index = streaming.sample_rows(data.X.shape[0])
        rows = data.X[index], data.T[index], None if data.w is None else data.w[index]
    settings.data_fingerprint = data_fingerprint(data.X.shape[0], *rows)
    settings.preprocessing = None if preprocessing is None else plain_json(preprocessing, "preprocessing")


def _check_resumable(settings, position, state, n_samples, n_batches):
    """Refuse (ConfigError) what the checkpoint's run cannot continue bit for bit, before anything is restored."""
    if state["n_samples"] != n_samples or state["batch_size"] != settings.batch_size:
        raise ConfigError(f"the checkpoint was made with {state['n_samples']} training samples and batch_size "
                          f"{state['batch_size']}; this call has {n_samples} and {settings.batch_size}. Resume with "
                          "the same data and arguments.")
    if np.shape(state["order"]) != position.order.shape:  # N rows in memory; m + 1 numbers for m blocks streamed
        raise ConfigError(f"the checkpoint's order of the data has {np.size(state['order'])} entries, this run's "
                          f"needs {position.order.size}: resume with the data as before (in memory, or memory-mapped/"
                          "Zarr/Dask) and the same block_rows.")
    check_same_data(state, settings.block_rows, settings.data_fingerprint, settings.preprocessing)
    _check_same_rate(settings, state)
    _check_schedule_total(settings, state, n_batches)


_NEW_RUN = ("to train on with another one, start a new run from the trained weights: handgrad train --init-from "
            "MODEL.npz (the run's --out file) on the command line, net.fit(...) on the network fit returned or "
            "handgrad.load(model file).fit(...) in Python.")


def _schedule_text(state, keys):
    """"'cosine'" or "'step' (step_size=10, gamma=0.5)": a schedule's name and its hyperparameters ``keys``."""
    extra = ", ".join(f"{key}={state.get(key)!r}" for key in keys)
    return f"'{state.get('name')}'" + (f" ({extra})" if extra else "")


def _check_same_rate(settings, state):
    """Another learning rate or schedule is another run: refused, naming both and the way to a new run. A
    checkpoint written before the rate was recorded resumes unchecked (the schedule's state always had its name
    and hyperparameters)."""
    rate = state.get("learning_rate")
    if rate is not None and float(rate) != settings.learning_rate:
        raise ConfigError(f"the checkpoint's run trains with learning_rate {rate!r}, this call with "
                          f"{settings.learning_rate!r}; a resumed run goes on as the run it continues. Resume with "
                          f"learning_rate={rate!r} (handgrad train --learning-rate {rate!r}); " + _NEW_RUN)
    saved, mine = state.get("schedule"), settings.schedule.state_dict()
    if not isinstance(saved, dict) or "name" not in saved:
        return
    keys = list(settings.schedule.hyperparameters()) if saved["name"] == mine["name"] else []
    keys = ["name", *keys]
    if [saved.get(key) for key in keys] != json.loads(json.dumps([mine[key] for key in keys])):  # (as the file has it)
        keys = keys[1:]
        raise ConfigError(f"the checkpoint's run has the {_schedule_text(saved, keys)} schedule, this call the "
                          f"{_schedule_text(mine, keys)} schedule; a resumed run goes on as the run it continues. "
                          f"Resume with its schedule (handgrad train --schedule {saved['name']}); "
                          + _NEW_RUN.replace("another one", "another schedule"))


def _check_schedule_total(settings, state, n_batches):
    """Another ``epochs`` changes the total number of steps S; a schedule whose rate depends on S (cosine,
    one_cycle) would then jump to another rate at the resumed step. The two plans' rates are compared at
    up to 64 of the steps still to take (any schedule, also one of the user's)."""
    planned, total = state.get("epochs"), settings.epochs * n_batches
    if planned is None or planned == settings.epochs or state["step"] >= total:
        return
    steps = np.unique(np.linspace(state["step"], total - 1, 64).round().astype(np.int64))
    rates = []
    for epochs in (planned, settings.epochs):
        schedule = copy.deepcopy(settings.schedule)
        schedule.load_state_dict(state["schedule"])
        schedule.start(settings.learning_rate, epochs * n_batches, n_batches)
        rates.append([float(schedule.rate(int(step))) for step in steps])
    changed = [i for i, (old, new) in enumerate(zip(*rates)) if old != new]
    if changed:
        i = changed[0]
        raise ConfigError(
            f"the checkpoint's run was planned for {planned} epochs, and its '{settings.schedule.name}' schedule "
            f"sets the learning rate from the total number of steps: with epochs={settings.epochs} the rate at step "
            f"{steps[i]} would be {rates[1][i]:.6g} instead of {rates[0][i]:.6g}, so the run would not go on as "
            f"planned. Resume with epochs={planned} (handgrad train --epochs {planned}); to train longer, start a "
            "new run from the trained weights, with a schedule of its own: handgrad train --init-from MODEL.npz "
            "(the run's --out file) on the command line, net.fit(...) on the network fit returned or "
            "handgrad.load(model file).fit(...) in Python.")


def _restore(net, settings, position, state):
    """Continue from a checkpoint's state (:func:`_check_resumable` first): weights, optimizer, schedule,
    random streams, position."""
    net.params[...] = parameter_vector(net, state)
    restore_running_statistics(net, state)
    settings.optimizer = from_state_dict(optimizer_state(net, state["optimizer"]))
    settings.schedule.load_state_dict(state["schedule"])
    position.shuffle_rng.bit_generator.state = state["shuffle_rng"]
    net.rng.bit_generator.state = state["net_rng"]
    position.history = History.from_dict(state["history"])
    columns = state.get("history_columns")
    if not isinstance(columns, list):  # (a checkpoint written before it had none)
        columns = []
    columns = [name for name in columns if isinstance(name, str) and name in position.history.metrics]
    position.history.metrics = {name: position.history.metrics[name]
                                for name in [*columns, *position.history.metrics]}  # the run's column order
    for name in ("epochs_done", "batch_done", "step", "epoch_total", "epoch_seen"):
        setattr(position, name, state[name])
    position.order = np.array(state["order"], dtype=np.int64)
    _restore_callbacks(settings.callbacks, state["callbacks"])


def _restore_callbacks(hooks, saved):
    """Give each callback the state its own kind saved: the k-th callback of a type gets the k-th state saved
    by that type. A run resumed with one callback more or fewer (a picture recorder, say) still hands early
    stopping its own state. Checkpoints of 0.2 saved bare states, matched by position."""
    if not all(isinstance(entry, dict) and set(entry) == {"type", "state"} for entry in saved):
        saved = [{"type": type(hook).__name__, "state": entry} for hook, entry in zip(hooks, saved)]
    states = {}
    for entry in saved:
        states.setdefault(entry["type"], []).append(entry["state"])
    for hook in hooks:
        mine = states.get(type(hook).__name__)
        if mine:
            hook.load_state_dict(mine.pop(0))


# ---------------------------------------------------------------------------- end of an epoch
def end_epoch(net, settings, data, position, epoch, seconds, rate, interrupted, val_out=None, group=None):
    """Validation, the schedule's epoch hook, the callbacks, then the history (with what callbacks added to
    ``logs``); returns (a stop reason or None, logs).
    Data-parallel (``group``): rank 0 evaluates and every rank gets its figures, so all decide alike."""
    logs = {"loss": position.epoch_total / position.epoch_seen}
    if data.X_val is not None:
        def validate():
            return evaluate(net, data.X_val, data.T_val, data.w_val, settings.metrics, out=val_out)

        for name, value in (validate() if group is None else group.from_root(validate)).items():
            logs["val_" + name] = value
    if group is not None:
        group.check_same_weights(net, epoch)
    logs["lr"] = rate
    settings.schedule.end_epoch(logs.get("val_loss", logs["loss"]))
    stop_reason = None
    try:
        for hook in settings.callbacks:
            if hook.on_epoch_end(epoch, logs) and stop_reason is None:
                if hook is settings.stopper:
                    stopper = settings.stopper
                    stop_reason = (f"early stopping at epoch {epoch}: {stopper.monitor} has not improved "
                                   f"since epoch {stopper.best_epoch}")
                else:
                    stop_reason = f"stopped by {type(hook).__name__} at epoch {epoch}"
    finally:  # after the callbacks, so that what they add to logs (a "sharpness") is this epoch's row too
        position.history.record(epoch, seconds, **logs)
    if group is not None:  # one decision for every rank, also when a callback stopped on one rank only
        stop_reason = group.agree_to_stop(stop_reason)
    if interrupted and stop_reason is None:
        stop_reason = f"interrupted (Ctrl-C) at epoch {epoch}"
    return stop_reason, logs


def _save_checkpoint(net, settings, position, seed, n_samples, group):
    """Write the checkpoint (rank 0 only, with every rank's dropout stream under data-parallel)."""
    ranks = group.checkpoint_state() if group is not None else None  # every rank takes part
    if group is None or group.is_root:
        state = _snapshot(net, settings, position, seed, n_samples)
        if ranks is not None:
            state["distributed"] = ranks
        write_checkpoint(settings.checkpoint, state)


# ---------------------------------------------------------------------------- fit
@_distributed.ends_job_on_error
def fit(net, X, T, *, epochs=10, batch_size=32, optimizer="sgd", learning_rate=0.1, schedule=None, shuffle=True,
        validation_data=None, validation_split=0.0, early_stopping=None, callbacks=(), checkpoint=None,
        resume=None, verbose="auto", seed=None, sample_weight=None, class_weight=None, clip_norm=None,
        metrics=None, distributed=None, block_rows=None, preprocessing=None):
    """Train ``net`` on (X, T) with mini-batches; returns a :class:`History`.

    Parameters
    ----------
    epochs : int
        Total number of passes over the data (also when resuming: a resumed run stops at this total; another
        total than the run's is refused when the schedule depends on it, as cosine and one_cycle do).
    batch_size : int
        Samples per update; the last batch of an epoch is shorter when N is not a multiple. With batch
        norm, a last batch of one sample (N = k batch_size + 1) is merged into the batch before it, which then
        has batch_size + 1 samples: batch statistics of one sample are meaningless (variance 0), and dropping
        the sample would waste data (docs/training.md, "The loop").
    optimizer : str or Optimizer
        'sgd' (default: W <- W - eta dJ/dW), 'momentum', 'nesterov', 'adam', 'adamw', 'rmsprop', or an object
        such as ``AdamW(weight_decay=1e-4)`` (an object keeps its state across calls). 'lbfgs' (or
        ``handgrad.lbfgs.LBFGS(...)``) trains full batch with L-BFGS for at most ``epochs`` iterations;
        only X, T, sample_weight and class_weight apply then (handgrad.lbfgs).
    learning_rate : float
        eta, or the base/peak rate a schedule scales.
    schedule : None, str or Schedule
        None/'constant', 'step', 'exponential', 'cosine', 'one_cycle', 'plateau' or an object from handgrad.schedules.
    shuffle : bool
        Draw a new order of the samples each epoch (from ``seed``).
    validation_data : (X_val, T_val) or (X_val, T_val, w_val), optional
        Validation weights (these, or the held-out part's under validation_split) must not sum to zero.
    validation_split : float in [0, 1)
        Fraction of (X, T) held out at random (from ``seed``) for validation, if no validation_data.
    early_stopping : None, int (patience), True (patience 5) or EarlyStopping
        Stop when the validation loss (training loss without validation) has not improved for
        ``patience`` epochs, and restore the best epoch's weights.
    callbacks : list of Callback or functions f(epoch, logs)
    checkpoint : path, optional
        Written atomically after every epoch (and on Ctrl-C): weights, optimizer state, schedule
        position, random states, epochs done and the history.
    resume : path or True, optional
        Continue from a checkpoint file (True: from ``checkpoint`` if that file exists). With the same
        arguments, the result is bit-identical to a run that was never interrupted. What cannot be continued
        so is refused (ConfigError): other data (sample count, a fingerprint of a few rows, block_rows,
        preprocessing), another batch_size, or another epochs under a schedule that depends on it.
    verbose : 'auto', True or False
        'auto': a progress bar when tqdm is installed and stderr is a terminal, else quiet.
        True: the bar, or one line per epoch on stderr. False: quiet.
    seed : int, optional
        Seeds the shuffling and the validation split (default: the network's seed). Dropout draws
        from ``net.rng``, which the network's seed sets.
    sample_weight : array (N,), optional;  class_weight : dict or 'balanced', optional
        Per-sample weights w_i; J = (1/N) sum_i w_i l_i. Class weights multiply sample weights.
    clip_norm : float, optional
        Rescale the gradients so that their global norm sqrt(sum ||dW||^2 + ||db||^2) is at most this.
    metrics : list of str, optional
        Validation metrics among 'accuracy', 'mse', 'mae', 'r2' (default: accuracy for classifiers,
        the other three for regression).
    distributed : True or an mpi4py communicator, optional
        Data-parallel training under ``mpiexec -n K`` (handgrad.distributed; True: MPI.COMM_WORLD):
        ``batch_size`` is the global batch, each rank computes the gradient of its shard, one Allreduce
        sums them, every rank takes the same step; the same training as one process, to rounding.
        Rank 0 alone writes checkpoints and shows progress; save the model where ``distributed.is_root()``.
        Bad input found before the first step (settings, a checkpoint of another run or number of ranks, ranks
        holding different data) raises the same error on every rank; a failure while training ends the job.
    block_rows : int, optional
        For memory-mapped, Zarr or Dask X/T (handgrad.streaming): rows per block read from disk
        (default: about 64 MiB of X).
    preprocessing : JSON-like, optional
        What was done to X before fit (the CLI passes its standardization, ``Standardizer.to_dict()``):
        checkpoints record it, and a resume with another one is refused.
    """
    comm = _distributed.communicator(distributed)
    group = _distributed.Group(comm) if comm is not None else None  # data-parallel: the ranks
    if _lbfgs.is_lbfgs(optimizer):  # full batch, quasi-Newton: handgrad.lbfgs (docs/training.md, "L-BFGS")
        if group is not None:  # refused on every rank alike, so that the ranks stop together
            _distributed.together(group, _refuse_distributed_lbfgs)
        if any(streaming.is_streamed(array) for array in (X, T, sample_weight)):
            raise ConfigError("L-BFGS trains on the whole data set at once, so it needs the data in memory: pass "
                              "np.asarray(X) (and T), or use a mini-batch optimizer such as 'adam'.")
        data, history = prepare_data(net, X, T, sample_weight, class_weight), History()
        result = _lbfgs.fit(net, data.X, data.T, data.w, solver=optimizer, max_iter=epochs, record=history.record,
                            unused=dict(validation_data=validation_data, validation_split=validation_split,
                                        early_stopping=early_stopping, callbacks=callbacks, checkpoint=checkpoint,
                                        resume=resume, clip_norm=clip_norm, schedule=schedule,
                                        distributed=distributed, block_rows=block_rows))
        history.stop_reason = result.message
        return history
    settings, data, position, n_batches, run_seed, dropout_streams = _set_up(
        net, group, dict(epochs=epochs, batch_size=batch_size, optimizer=optimizer, learning_rate=learning_rate,
                         schedule=schedule, shuffle=shuffle, validation_split=validation_split,
                         early_stopping=early_stopping, callbacks=callbacks, checkpoint=checkpoint, resume=resume,
                         verbose=verbose, seed=seed, clip_norm=clip_norm, metrics=metrics),
        dict(X=X, T=T, sample_weight=sample_weight, class_weight=class_weight, validation_data=validation_data,
             block_rows=block_rows), preprocessing)
    for hook in settings.callbacks:
        hook.on_train_begin(net)
    try:
        with dropout_streams:
            _train(net, settings, data, position, n_batches, run_seed, group)
    finally:
        net.training_state = {"optimizer": settings.optimizer, "learning_rate": settings.learning_rate,
                              "step": position.step}
        history = position.history
        history.stop_reason = history.stop_reason or "completed"
        for hook in settings.callbacks:  # also after an error, as Callback promises
            hook.on_train_end(net, history)
    return history


def _refuse_distributed_lbfgs():
    raise ConfigError("distributed is not used by L-BFGS (one full-batch objective in one process); train without "
                      "distributed (mpiexec), or choose a mini-batch optimizer such as 'adam'.")


# ---------------------------------------------------------------------------- the set-up
def _set_up(net, group, options, inputs, preprocessing):
    """Everything of :func:`fit` before the first step, in parts: the settings (``options``, checked) and the
    checkpoint to resume from; the data (``inputs``, checked) and the checks that the checkpoint's run can go
    on with them; data-parallel, the check that the ranks hold the same data; the restore of the checkpoint's
    state (a checkpoint of another network is refused there). Returns (settings, data, position, n_batches,
    run_seed, dropout_streams).

    Data-parallel (``group``), each part runs on every rank and the ranks agree on how it ended
    (distributed.together): bad input on any rank stops every rank with the same error, and no rank is
    left waiting for another in a collective call. Alone, ``together`` just calls the part."""
    together = functools.partial(_distributed.together, group)
    settings, state = together(lambda: _settings_and_checkpoint(net, options, group))
    if group is not None:
        state = group.agree(state)  # rank 0 read it: the ranks need no shared file system
    run_seed = _run_seed(net, state, options["seed"], group)  # first: the split and the shuffled order
    data, position, n_batches = together(lambda: _data_and_position(net, settings, inputs, preprocessing, state,
                                                                     run_seed))
    if group is None:
        dropout_streams = _distributed.single_process(state)  # refuses a checkpoint that K > 1 ranks wrote
    else:
        together(lambda: group.check(net, state, data.X.shape[0]))
    if state is not None:
        together(lambda: _restore(net, settings, position, state))
    if group is not None:
        dropout_streams = group.start(net, state)
    settings.schedule.start(settings.learning_rate, settings.epochs * n_batches, n_batches)
    return settings, data, position, n_batches, run_seed, dropout_streams


def _settings_and_checkpoint(net, options, group):
    """The checked Settings, and the state of the checkpoint to resume from (None: a new run; data-parallel,
    rank 0 alone reads it, and None elsewhere: it sends it to the others)."""
    settings = Settings.check(net, **options)
    reads = settings.resume is not None and (group is None or group.is_root)
    return settings, read_checkpoint(settings.resume) if reads else None


def _run_seed(net, state, seed, group):
    """The seed of the validation split and the shuffling: the checkpoint's, else ``seed``, else the network's,
    else drawn at random; data-parallel, rank 0's on every rank (one split and one order)."""
    run_seed = state["seed"] if state is not None else (seed if seed is not None else net.seed)
    if run_seed is None:
        run_seed = int(np.random.SeedSequence().entropy % (2 ** 63))
    return run_seed if group is None else group.agree(run_seed)


def _data_and_position(net, settings, inputs, preprocessing, state, run_seed):
    """The checked data, the number of batches of an epoch and the start of the run; resuming, the checks that
    the checkpoint's run can go on (nothing is restored yet)."""
    data = prepare_data(net, **inputs, validation_split=settings.validation_split, split_seed=run_seed)
    _record_data(settings, data, preprocessing)
    N = data.X.shape[0]
    settings.batch_size = min(settings.batch_size, N)
    if settings.batch_size < 2 and net.running_statistics():  # batch norm: refused here, before any step (and
        # data-parallel on every rank together, rather than in the first step's forward pass, with MPI Abort)
        raise DataError(f"batch normalization needs at least 2 samples per batch (the variance of one sample is 0), "
                        f"and batch_size {settings.batch_size} on {N} training sample(s) makes batches of one; give "
                        "a batch_size of at least 2, and at least 2 training samples.")
    n_batches = -(-N // settings.batch_size)
    if N % settings.batch_size == 1 and N > 1 and net.running_statistics():  # the network has batch norm
        n_batches -= 1  # batch norm cannot train on a lone last sample: it joins the batch before
    streamed = isinstance(data.X, streaming.Stream)
    position = Position(order=data.X.initial_order() if streamed else np.arange(N),
                        shuffle_rng=np.random.default_rng(run_seed))
    if state is not None:
        _check_resumable(settings, position, state, N, n_batches)
    return data, position, n_batches


# The loop reads better whole: its state (epoch, batch, the stop reason, the last finite weights) is what
# the try/except blocks below act on, and splitting it would pass most of it back and forth.
def _train(net, settings, data, position, n_batches, run_seed, group=None):
    """The epoch and batch loops of :func:`fit`; sets ``position.history.stop_reason``.
    Data-parallel (``group``): each rank's batches are its shards, and the ranks agree on every stop."""
    p, opt, N = position, settings.optimizer, data.X.shape[0]
    shard = group.shard if group is not None else None
    if isinstance(data.X, streaming.Stream):
        batches = streaming.StreamBatches(data.X, settings.batch_size, net.dtype, n_batches, shard)
    else:
        batches = _Batches(data, settings.batch_size, net.dtype, n_batches, shard)
    val_out = np.empty((data.X_val.shape[0], net.n_outputs), net.dtype) if data.X_val is not None else None
    batch_hooks = [h for h in settings.callbacks if type(h).on_batch_end is not Callback.on_batch_end]
    total_steps = settings.epochs * n_batches
    progress = _Progress(settings.verbose if group is None or group.is_root else False, total_steps,
                         min(p.step, total_steps))
    last_good = net.params.copy()  # the weights at the start of the epoch: known finite
    work = np.empty_like(net.params) if settings.clip_norm is not None else None
    in_order = not settings.shuffle and isinstance(batches, _Batches) and np.array_equal(p.order, np.arange(N))
    rate = settings.schedule.rate(p.step) if p.step < total_steps else settings.learning_rate
    stop_reason = None
    try:
        # overflow is expected when training diverges; the loop detects it and says so (TrainingError)
        with _InterruptFlag() as interrupt, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if group is not None:  # interrupt.raised: any rank's Ctrl-C, as of the last step's sum
                interrupt = group.agree_on(interrupt)
            epoch = p.epochs_done
            while epoch < settings.epochs and stop_reason is None:
                epoch += 1
                started = time.perf_counter()
                if p.batch_done == 0:
                    if settings.shuffle:
                        batches.shuffle(p.order, p.shuffle_rng)
                    p.epoch_total, p.epoch_seen = 0.0, 0
                np.copyto(last_good, net.params)
                for number in range(p.batch_done + 1, n_batches + 1):
                    xb, tb, wb = batches.get(number, p.order, in_order)
                    rate = float(settings.schedule.rate(p.step))  # a Python float: float64 would upcast float32 work
                    rows = batches.rows(number)
                    J = train_step(net, opt, xb, tb, wb, rate, settings.clip_norm, work, group, rows)
                    if not math.isfinite(J):
                        raise _NonFinite(epoch, number, J)
                    p.step, p.batch_done = p.step + 1, number
                    p.epoch_total += J * rows
                    p.epoch_seen += rows
                    progress.batch(J)
                    for hook in batch_hooks:
                        if hook.on_batch_end(epoch, number, J):
                            stop_reason = f"stopped by {type(hook).__name__} at epoch {epoch}, batch {number}"
                    if interrupt.raised:
                        stop_reason = f"interrupted (Ctrl-C) at epoch {epoch}, batch {number}"
                    if stop_reason is not None:
                        break
                if p.batch_done < n_batches:  # the epoch was cut short: keep its position for a resume
                    break
                p.batch_done, p.epochs_done = 0, epoch
                stop_reason, logs = end_epoch(net, settings, data, p, epoch, time.perf_counter() - started, rate,
                                              interrupt.raised, val_out, group)
                progress.epoch(epoch, settings.epochs, logs)
                if settings.checkpoint is not None:
                    _save_checkpoint(net, settings, p, run_seed, N, group)
        if p.batch_done and settings.checkpoint is not None:  # stopped inside an epoch
            _save_checkpoint(net, settings, p, run_seed, N, group)
    except _NonFinite as bad:
        _after_divergence(net, p, bad, last_good, rate, group)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread: the batch may be unfinished
        if group is not None and group.size > 1:
            raise  # the ranks may be at different steps: the job ends (handgrad.distributed)
        stop_reason = "interrupted (Ctrl-C) during a batch"
        if settings.checkpoint is not None:
            _save_checkpoint(net, settings, p, run_seed, N, group)
    finally:
        progress.close()
    if settings.stopper is not None and settings.stopper.restore():
        stop_reason = (stop_reason or "completed") + f"; restored the weights of epoch {settings.stopper.best_epoch}"
    p.history.stop_reason = stop_reason or "completed"


def _after_divergence(net, position, bad, last_good, rate, group=None):
    """A non-finite loss: keep (or restore) finite weights, record why, and raise TrainingError.
    Data-parallel (``group``): J is the batch's sum over the ranks and the weights are the same on every rank,
    so every rank raises this error at the same step; marked so, it stops the ranks together, without MPI Abort
    (handgrad.distributed.abort_on_error), and a script can catch it on every rank."""
    finite = bool(np.isfinite(net.params).all())
    if not finite:
        np.copyto(net.params, last_good)
    position.history.stop_reason = f"non-finite loss at epoch {bad.epoch}, batch {bad.batch}"
    where = "are left at their values before this batch" if finite else \
        f"were restored to their values at the start of epoch {bad.epoch}"
    error = TrainingError(
        f"the loss became {bad.value} at epoch {bad.epoch}, batch {bad.batch}; the weights {where} (all "
        f"finite). Lower the learning rate (now {rate:g}), standardize the inputs, or set clip_norm.")
    raise (error if group is None else _distributed.on_every_rank(error)) from None


def partial_fit(net, X, T, *, batch_size=32, optimizer=None, learning_rate=None, shuffle=False, sample_weight=None,
                class_weight=None, clip_norm=None, seed=None):
    """One pass over (X, T) (in order unless ``shuffle``), continuing the optimizer kept in ``net.training_state``.

    The first call (or one with a different ``optimizer``) starts a new optimizer ('sgd' by default);
    later calls reuse it, so momentum and Adam's moments carry over between chunks of a stream.
    """
    kept = net.training_state or {}
    opt = kept.get("optimizer")
    if optimizer is not None and not (isinstance(opt, Optimizer) and (optimizer is opt or optimizer == opt.name)):
        opt = get_optimizer(optimizer)
    if opt is None:
        opt = get_optimizer("sgd")
    if learning_rate is None:
        learning_rate = kept.get("learning_rate", 0.1)
    return fit(net, X, T, epochs=1, batch_size=batch_size, optimizer=opt, learning_rate=learning_rate,
               shuffle=shuffle, sample_weight=sample_weight, class_weight=class_weight, clip_norm=clip_norm,
               seed=seed, verbose=False)
