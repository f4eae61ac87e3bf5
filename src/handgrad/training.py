"""The fit loop: mini-batches by shuffled index, one optimizer step per batch.

The seeds' rule, plain gradient descent W <- W - eta dJ/dW after each mini-batch, is
the default (``optimizer="sgd"``, constant learning rate). Everything else is opt-in:

    for epoch in 1..epochs:
        order <- a permutation of 0..N-1 (shuffle=True)          the data set itself is never copied
        for each slice of ``batch_size`` indices (the last one may be shorter, and is used):
            gather X[idx], T[idx], w[idx] into buffers made once (np.take(..., out=))
            J = objective on the batch; dW, db written by net._loss_and_grad
            (optional) clip: g <- g * min(1, c / ||g||), ||g|| the norm of all gradients together
            optimizer.step(params, grads, eta = schedule.rate(step))
            (plain SGD without clipping: the layers take the step inside the backward pass,
             one BLAS call per weight matrix; see Dense.backward_from_dZ)
        validation loss and metrics; callbacks; early stopping; checkpoint

Per-sample weights w_i (``sample_weight`` times ``class_weight[class of i]``) enter the
objective as J = (1/N) sum_i w_i l_i (docs/training.md, "Sample and class weights").
"""

import math
import os
import signal
import sys
import threading
import time

import numpy as np

from .callbacks import Callback, EarlyStopping, as_callback
from .errors import ConfigError, DataError, ModelFileError, TrainingError
from .optimizers import Optimizer, from_state_dict, get_optimizer
from .schedules import get_schedule

CHECKPOINT_KIND = "handgrad-checkpoint"
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
        self.epochs.append(epoch)
        self.seconds.append(seconds)
        for name, value in values.items():
            self.metrics.setdefault(name, []).append(value)

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


# ---------------------------------------------------------------------------- argument checks
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
    K = max(net.n_outputs, 2)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ConfigError(f"class_weight must be a dict or 'balanced', got '{class_weight}'.")
        counts = np.bincount(ids, minlength=K).astype(np.float64)
        present = counts > 0
        table = np.ones(K)
        table[present] = len(ids) / (present.sum() * counts[present])
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
    return table[ids].astype(net.dtype)


def _combined_weights(net, T, sample_weight, class_weight):
    w = net.check_sample_weight(sample_weight, T.shape[0])
    if class_weight is None:
        return w
    cw = class_weights_per_sample(net, T, class_weight)
    return cw if w is None else w * cw


# ---------------------------------------------------------------------------- validation metrics
def _default_metrics(net):
    return ["accuracy"] if net.is_classifier else ["mse", "mae", "r2"]


_METRICS = ("accuracy", "mse", "mae", "r2")


def evaluate(net, X, T, sample_weight=None, metrics=None, out=None):
    """{"loss": J, metric: value} on (X, T) (already checked arrays), computed in chunks of rows.

    loss is the objective J (weighted data loss + regularization); accuracy compares
    argmax (softmax) or A >= 0.5 (sigmoid) with the targets; mse, mae and r2 (the mean
    over outputs of 1 - SS_res/SS_tot) compare the outputs A with T.
    """
    metrics = _default_metrics(net) if metrics is None else metrics
    N = X.shape[0]
    A_all = out if out is not None else np.empty((N, net.n_outputs), net.dtype)
    total = 0.0
    for start in range(0, N, _EVAL_CHUNK):
        stop = min(start + _EVAL_CHUNK, N)
        A = net._forward(X[start:stop])
        total += net._data_total(A, T[start:stop], None if sample_weight is None else sample_weight[start:stop])
        A_all[start:stop] = A
    results = {"loss": total / N + net._regularization()}
    for name in metrics:
        if name == "accuracy":
            if not net.is_classifier:
                raise ConfigError("accuracy needs a classifier (softmax or sigmoid output); use mse, mae or r2.")
            if net.output_activation.name == "softmax":
                results[name] = float(np.mean(A_all.argmax(axis=1) == T.argmax(axis=1)))
            else:
                results[name] = float(np.mean((A_all >= 0.5) == (T >= 0.5)))
        elif name == "mse":
            results[name] = float(np.mean((A_all - T) ** 2))
        elif name == "mae":
            results[name] = float(np.mean(np.abs(A_all - T)))
        elif name == "r2":
            residual = ((T - A_all) ** 2).sum(axis=0)
            spread = ((T - T.mean(axis=0)) ** 2).sum(axis=0)
            safe = np.where(spread > 0, spread, 1.0)
            r2 = np.where(spread > 0, 1.0 - residual / safe, np.where(residual > 0, 0.0, 1.0))
            results[name] = float(r2.mean())
    return results


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


# ---------------------------------------------------------------------------- checkpoints
def _flatten(prefix, value, arrays):
    """Split nested state into arrays (stored as .npy members) and JSON metadata that refers to them."""
    if isinstance(value, np.ndarray):
        arrays[prefix] = value
        return {"__array__": prefix}
    if isinstance(value, dict):
        return {str(k): _flatten(f"{prefix}.{k}", v, arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_flatten(f"{prefix}.{i}", v, arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _unflatten(value, arrays):
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        return {k: _unflatten(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, arrays) for v in value]
    return value


def write_checkpoint(path, state):
    """Write the training state atomically with handgrad.io (a crash mid-write leaves the old file intact)."""
    from .io import write_archive

    arrays = {}
    metadata = _flatten("state", state, arrays)
    write_archive(path, arrays, {"kind": CHECKPOINT_KIND, "state": metadata})


def read_checkpoint(path):
    from .io import read_archive

    arrays, metadata = read_archive(path)
    if metadata.get("kind") != CHECKPOINT_KIND:
        raise ModelFileError(f"'{os.fspath(path)}' is not a training checkpoint (kind {metadata.get('kind')!r}); "
                             "pass a file written by fit(checkpoint=...).")
    return _unflatten(metadata["state"], arrays)


# ---------------------------------------------------------------------------- fit
def fit(net, X, T, *, epochs=10, batch_size=32, optimizer="sgd", learning_rate=0.1, schedule=None, shuffle=True,
        validation_data=None, validation_split=0.0, early_stopping=None, callbacks=(), checkpoint=None,
        resume=None, verbose="auto", seed=None, sample_weight=None, class_weight=None, clip_norm=None,
        metrics=None):
    """Train ``net`` on (X, T) with mini-batches; returns a :class:`History`.

    Parameters
    ----------
    epochs : int
        Total number of passes over the data (also when resuming: a resumed run stops at the same total).
    batch_size : int
        Samples per update; the last batch of an epoch is shorter when N is not a multiple.
    optimizer : str or Optimizer
        'sgd' (default: W <- W - eta dJ/dW), 'momentum', 'nesterov', 'adam', 'adamw', 'rmsprop', or an object
        such as ``AdamW(weight_decay=1e-4)`` (an object keeps its state across calls).
    learning_rate : float
        eta, or the base/peak rate a schedule scales.
    schedule : None, str or Schedule
        None/'constant', 'step', 'exponential', 'cosine', 'one_cycle', 'plateau' or an object from handgrad.schedules.
    shuffle : bool
        Draw a new order of the samples each epoch (from ``seed``).
    validation_data : (X_val, T_val) or (X_val, T_val, w_val), optional
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
        arguments, the result is bit-identical to a run that was never interrupted.
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
    """
    # ---- settings
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    learning_rate = _positive_float("learning_rate", learning_rate)
    clip_norm = None if clip_norm is None else _positive_float("clip_norm", clip_norm)
    try:
        validation_split = float(validation_split)
    except (TypeError, ValueError):
        raise ConfigError(f"validation_split must be a fraction in [0, 1), got {validation_split!r}.") from None
    if not 0.0 <= validation_split < 1.0:
        raise ConfigError(f"validation_split must be a fraction in [0, 1), got {validation_split}.")
    metrics = _default_metrics(net) if metrics is None else list(metrics)
    for name in metrics:
        if name not in _METRICS:
            raise ConfigError(f"unknown metric '{name}'; choose from {', '.join(_METRICS)}.")
    opt = get_optimizer(optimizer)
    sched = get_schedule(schedule)
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

    # ---- resume: read the file first, so that the seed and split come from it
    state = None
    if resume is True:
        if checkpoint is None:
            raise ConfigError("resume=True resumes from the checkpoint file; pass checkpoint=PATH too.")
        resume = checkpoint if os.path.exists(checkpoint) else None
    if resume is not None and resume is not False:
        state = read_checkpoint(resume)
    run_seed = state["seed"] if state is not None else (seed if seed is not None else net.seed)
    if run_seed is None:
        run_seed = int(np.random.SeedSequence().entropy % (2 ** 63))

    # ---- data
    X = net.check_inputs(X)
    T = net.check_targets(T, X.shape[0])
    w = _combined_weights(net, T, sample_weight, class_weight)
    X_val = T_val = w_val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise DataError("validation_data must be (X_val, T_val) or (X_val, T_val, sample_weight_val).")
        X_val = net.check_inputs(validation_data[0])
        T_val = net.check_targets(validation_data[1], X_val.shape[0])
        if len(validation_data) == 3:
            w_val = net.check_sample_weight(validation_data[2], X_val.shape[0])
    elif validation_split > 0:
        n_val = int(round(validation_split * X.shape[0]))
        if n_val < 1 or n_val >= X.shape[0]:
            raise DataError(f"validation_split={validation_split} leaves {n_val} of {X.shape[0]} samples for "
                            "validation; it needs at least one sample on each side.")
        split = np.random.default_rng([run_seed, 1]).permutation(X.shape[0])
        held, kept = np.sort(split[:n_val]), np.sort(split[n_val:])
        X_val, T_val = X[held], T[held]
        w_val = None if w is None else w[held]
        X, T = X[kept], T[kept]
        w = None if w is None else w[kept]
    N = X.shape[0]
    batch_size = min(batch_size, N)
    n_batches = -(-N // batch_size)
    if X_val is not None:
        val_out = np.empty((X_val.shape[0], net.n_outputs), net.dtype)

    # ---- buffers and lists made once: the loop below allocates nothing of the data's size
    X_batch = np.empty((batch_size, X.shape[1]), net.dtype)
    T_batch = np.empty((batch_size, T.shape[1]), net.dtype)
    w_batch = np.empty(batch_size, net.dtype) if w is not None else None
    params = [a for layer in net.layers for a in (layer.W, layer.b) if a is not None]
    grads = [a for layer in net.layers for a in (layer.dW, layer.db) if a is not None]
    dropout_rng = net.rng if any(layer.dropout for layer in net.layers) else None
    batch_hooks = [h for h in hooks if type(h).on_batch_end is not Callback.on_batch_end]
    rng = np.random.default_rng(run_seed)
    order = np.arange(N)
    history = History()
    epochs_done, batch_done, step, epoch_total, epoch_seen = 0, 0, 0, 0.0, 0

    if state is not None:
        if state["n_samples"] != N or state["batch_size"] != batch_size:
            raise ConfigError(f"the checkpoint was made with {state['n_samples']} training samples and batch_size "
                              f"{state['batch_size']}; this call has {N} and {batch_size}. Resume with the same "
                              "data and arguments.")
        saved = state["weights"]
        if [a.shape for a in saved] != [a.shape for _, a in net.parameters()]:
            raise ConfigError("the checkpoint's weights do not fit this network's architecture.")
        net.set_weights(saved)
        opt = from_state_dict(state["optimizer"])
        sched.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["shuffle_rng"]
        net.rng.bit_generator.state = state["net_rng"]
        history = History.from_dict(state["history"])
        epochs_done, batch_done, step = state["epochs_done"], state["batch_done"], state["step"]
        epoch_total, epoch_seen = state["epoch_total"], state["epoch_seen"]
        order = np.array(state["order"], dtype=np.int64)
        for hook, saved_state in zip(hooks, state["callbacks"]):
            hook.load_state_dict(saved_state)
    sched.start(learning_rate, epochs * n_batches, n_batches)

    def snapshot():
        return {
            "seed": run_seed, "n_samples": N, "batch_size": batch_size, "epochs": epochs,
            "epochs_done": epochs_done, "batch_done": batch_done, "step": step,
            "epoch_total": epoch_total, "epoch_seen": epoch_seen, "order": order.copy(),
            "weights": net.get_weights(), "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
            "shuffle_rng": rng.bit_generator.state, "net_rng": net.rng.bit_generator.state,
            "history": history.as_dict(), "callbacks": [h.state_dict() for h in hooks],
            "config": net.config(),
        }

    for hook in hooks:
        hook.on_train_begin(net)
    progress = _Progress(verbose, epochs * n_batches, min(step, epochs * n_batches))
    last_good = [p.copy() for p in params]  # weights at the start of the epoch: known finite
    stop_reason = None
    # Plain gradient descent is taken by the backward pass itself (see SGD); clipping needs the true g.
    descend = opt.descends_in_backward and clip_norm is None
    # Without shuffling (and with the identity order) a batch is a slice of X: no gather, no copy.
    in_order = not shuffle and np.array_equal(order, np.arange(N))
    rate = sched.rate(step) if step < epochs * n_batches else learning_rate
    try:
        # overflow is expected when training diverges; the loop detects it and says so (TrainingError)
        with _InterruptFlag() as interrupt, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            epoch = epochs_done
            while epoch < epochs and stop_reason is None:
                epoch += 1
                started = time.perf_counter()
                if batch_done == 0:
                    if shuffle:
                        rng.shuffle(order)
                    epoch_total, epoch_seen = 0.0, 0
                for saved, current in zip(last_good, params):
                    np.copyto(saved, current)
                for number in range(batch_done + 1, n_batches + 1):
                    first = (number - 1) * batch_size
                    n = min(batch_size, N - first)
                    if in_order:  # the batch is a contiguous slice, a view with nothing to copy
                        xb, tb = X[first:first + n], T[first:first + n]
                        wb = w[first:first + n] if w is not None else None
                    else:  # mode="clip" lets np.take write straight into the buffer (indices are valid)
                        index = order[first:first + n]
                        xb = np.take(X, index, axis=0, out=X_batch[:n], mode="clip")
                        tb = np.take(T, index, axis=0, out=T_batch[:n], mode="clip")
                        wb = np.take(w, index, out=w_batch[:n], mode="clip") if w is not None else None
                    rate = float(sched.rate(step))  # a Python float: a NumPy float64 scalar would upcast float32 work
                    if descend:  # the step is taken inside backward (and skipped when J is not finite)
                        J = net._loss_and_grad(xb, tb, wb, dropout_rng, rate, descend=True)
                        opt.count_backward_step()
                    else:
                        J = net._loss_and_grad(xb, tb, wb, dropout_rng)
                    if not math.isfinite(J):
                        raise _NonFinite(epoch, number, J)
                    if not descend:
                        if clip_norm is not None:
                            norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
                            if norm > clip_norm:
                                scale = clip_norm / norm
                                for g in grads:
                                    g *= scale
                        opt.step(params, grads, rate)
                    step += 1
                    batch_done = number
                    epoch_total += J * n
                    epoch_seen += n
                    progress.batch(J)
                    for hook in batch_hooks:
                        if hook.on_batch_end(epoch, number, J):
                            stop_reason = f"stopped by {type(hook).__name__} at epoch {epoch}, batch {number}"
                    if interrupt.raised:
                        stop_reason = f"interrupted (Ctrl-C) at epoch {epoch}, batch {number}"
                    if stop_reason is not None:
                        break
                if batch_done < n_batches:  # the epoch was cut short: keep its position for a resume
                    if checkpoint is not None:
                        write_checkpoint(checkpoint, snapshot())
                    break
                batch_done = 0
                epochs_done = epoch
                logs = {"loss": epoch_total / epoch_seen}
                if X_val is not None:
                    for name, value in evaluate(net, X_val, T_val, w_val, metrics, out=val_out).items():
                        logs["val_" + name] = value
                logs["lr"] = rate
                sched.end_epoch(logs.get("val_loss", logs["loss"]))
                history.record(epoch, time.perf_counter() - started, **logs)
                progress.epoch(epoch, epochs, logs)
                for hook in hooks:
                    if hook.on_epoch_end(epoch, logs) and stop_reason is None:
                        if hook is stopper:
                            stop_reason = (f"early stopping at epoch {epoch}: {stopper.monitor} has not improved "
                                           f"since epoch {stopper.best_epoch}")
                        else:
                            stop_reason = f"stopped by {type(hook).__name__} at epoch {epoch}"
                if interrupt.raised and stop_reason is None:
                    stop_reason = f"interrupted (Ctrl-C) at epoch {epoch}"
                if checkpoint is not None:
                    write_checkpoint(checkpoint, snapshot())
    except _NonFinite as bad:
        finite = all(np.isfinite(p).all() for p in params)
        if not finite:
            for p, saved in zip(params, last_good):
                np.copyto(p, saved)
        history.stop_reason = f"non-finite loss at epoch {bad.epoch}, batch {bad.batch}"
        progress.close()
        where = "are left at their values before this batch" if finite else \
            f"were restored to their values at the start of epoch {bad.epoch}"
        raise TrainingError(
            f"the loss became {bad.value} at epoch {bad.epoch}, batch {bad.batch}; the weights {where} (all "
            f"finite). Lower the learning rate (now {rate:g}), standardize the inputs, or set clip_norm."
        ) from None
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread: the batch may be unfinished
        stop_reason = "interrupted (Ctrl-C) during a batch"
        if checkpoint is not None:
            write_checkpoint(checkpoint, snapshot())
    finally:
        progress.close()
        net.training_state = {"optimizer": opt, "learning_rate": learning_rate, "step": step}
    if stopper is not None and stopper.restore():
        stop_reason = (stop_reason or "completed") + f"; restored the weights of epoch {stopper.best_epoch}"
    history.stop_reason = stop_reason or "completed"
    for hook in hooks:
        hook.on_train_end(net, history)
    return history


class _NonFinite(Exception):
    def __init__(self, epoch, batch, value):
        super().__init__(epoch, batch, value)
        self.epoch, self.batch, self.value = epoch, batch, value


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


# ---------------------------------------------------------------------------- recipes
def shifted_copies(X, T, image_shape, pixels=1):
    """(X', T'): the images of X (rows of ``image_shape`` pixels) followed by copies shifted by ``pixels``
    up, down, left and right (vacated pixels are 0), with T repeated to match: 5 N samples.

    The image recipe trains on these: digits stay digits when moved by a pixel, and the
    extra variety cuts overfitting more than any regularizer did in our measurements.
    """
    X = np.asarray(X)
    height, width = image_shape
    if X.ndim != 2 or X.shape[1] != height * width:
        raise DataError(f"X must have one row of {height}x{width} = {height * width} pixels per image, "
                        f"got shape {X.shape}.")
    images = X.reshape(-1, height, width)
    out = [images]
    k = int(pixels)
    for dy, dx in ((k, 0), (-k, 0), (0, k), (0, -k)):
        moved = np.zeros_like(images)
        moved[:, max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
            images[:, max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
        out.append(moved)
    T = np.asarray(T)
    return np.concatenate(out).reshape(-1, height * width), np.concatenate([T] * len(out))


def image_recipe(n_classes=10, epochs=6):
    """The recommended settings for image-like classification (MNIST-like: pixels in [0, 1], ~10^4 images).

    Returns fresh objects: ``{"layers", "dropout", "dtype", "fit": keyword arguments for fit}``; train on
    :func:`shifted_copies` of the images::

        recipe = image_recipe(10)
        net = hg.MLP(784, recipe["layers"], dropout=recipe["dropout"], dtype=recipe["dtype"], seed=0)
        X5, y5 = shifted_copies(X, y, (28, 28))
        net.fit(X5, y5, **recipe["fit"])

    Chosen by measurement with benchmarks/mnist_accuracy.py (see docs/training.md, "The image recipe").
    """
    from .optimizers import AdamW
    from .schedules import OneCycle

    return {
        "layers": [(512, "relu"), (256, "relu"), (n_classes, "softmax")],
        "dropout": [0.2, 0.2],
        "dtype": "float32",
        "fit": {"epochs": epochs, "batch_size": 128, "optimizer": AdamW(weight_decay=0.01), "learning_rate": 2e-3,
                "schedule": OneCycle()},
    }
