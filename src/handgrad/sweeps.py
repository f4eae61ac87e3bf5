"""Hyperparameter sweeps on Dask: grid or random search, successive halving, one row per trial.

    import handgrad as hg

    result = hg.sweep(X, y, {"learning_rate": [0.01, 0.1, 1.0], "l2": [0.0, 1e-4]},
                      base={"layers": "32:relu,1:sigmoid", "epochs": 27}, workers=2, out="sweep")
    result.best            # the best trial's row: its parameters, status, metric, epochs, seconds
    result.best_model      # that trial's trained MLP (also in sweep/best_model.npz)

A *trial* is the base settings (``base``: a network spec and training settings) with some of them
replaced by one combination of ``params``. Every name in :data:`PARAMETERS` may be swept: network
options (layers, units, activation, loss, bias, l2, l1, dropout, init, dtype, seed) and training options
(learning_rate, batch_size, optimizer, schedule, clip_norm, epochs). Grid search runs every
combination (in the order of ``params``, the last one changing fastest); ``trials=N`` runs N distinct
combinations drawn from the grid without replacement (seeded by ``seed``), or, where a parameter is a
range (``loguniform(1e-4, 1e-1)``, ``uniform(a, b)``, ``randint(a, b)``), N draws.

How it runs. The data are sent to every worker once (``Client.scatter``); each trial is a Dask task
that builds the network and trains it with :func:`handgrad.training.fit`, its BLAS limited to
``blas_threads`` threads (threadpoolctl) so that K trials on K cores do not fight over them. By default
the tasks run on a LocalCluster of ``workers`` processes started for the sweep; ``scheduler="tcp://..."``
runs them on an existing cluster (whose workers need handgrad installed), ``client=`` on a
``distributed.Client`` you already hold.

Successive halving (Jamieson and Talwalkar 2016; the inner loop of Hyperband). With ``min_epochs`` r and
``eta``, decisions are made at the rungs r, r*eta, r*eta^2, ... below the largest epoch budget:

    every trial trains to the first rung (one Dask task each)
    at a rung: rank the trials that reached it and have epochs left by the validation metric there;
               keep the best ceil(n / eta) (at least one); the others end with status "stopped early"
    the survivors train on to the next rung, the last ones to their full budget

Per-trial early stopping (``patience=N``, independent of the halving): each trial runs ``fit`` with
``early_stopping=EarlyStopping(N, monitor=metric, restore_best=True)``; a trial whose metric has not improved for N
epochs ends with status "stopped (patience)" and frees its worker, and reports its best epoch's metric and
weights (the halving then ranks the trials by their best epochs too).

A trial trains in chunks: the task runs ``fit`` with the trial's full ``epochs`` (so that schedules
see the whole run), a callback stops it at the rung, and the task returns the checkpoint (handgrad's
checkpoint file, as bytes: weights, optimizer state, random streams, history, early stopping's state). The next chunk,
on whichever worker, writes those bytes to a local file and resumes from it, which ``fit`` makes
bit-identical to a run that was never stopped (tests/test_sweep.py checks it). The driver waits for
every trial at a rung before deciding: the decisions depend only on the metrics, never on which
worker was faster, so a sweep gives the same table on 1 worker, 8 workers or a cluster. (ASHA would
decide without waiting, which keeps workers busier, but then the outcome depends on timing.)

Results. After every finished trial ``out/results.csv`` and ``out/results.json`` are rewritten (atomically):
one row per trial with its parameters, status ("ok", "stopped early" by the halving, "stopped (patience)" by
per-trial early stopping, "diverged" when the loss or the metric became NaN or infinite, "failed" with the
error when the trial raised, "cancelled" when Ctrl-C came first), the validation metric at its last epoch
(with ``patience``: at its best epoch), the epochs run (a swept ``epochs`` is the column ``epochs_budget``)
and the seconds spent training, sorted by the metric, best first (rows without a metric last). The best
trial's network is saved as ``out/best_model.npz``, and ``out/curves.png`` shows every trial's validation
curve. A trial that crashes or diverges does not stop the sweep. Ctrl-C cancels the pending trials (the
running ones stop at their next batch: :class:`StopWhenCancelled`), writes the finished ones and returns
(``result.interrupted`` is True).

Needs the ``dask`` extra: ``pip install handgrad[dask]`` (dask[distributed] and threadpoolctl),
imported only when a sweep runs.
"""

import contextlib
import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .callbacks import Callback, EarlyStopping
from .errors import ConfigError, DataError, HandgradError, TrainingError, check_count, suggest
from .io import atomic_write_text, json_safe

# Every name a sweep can vary, and which object takes it.
NETWORK_PARAMETERS = ("layers", "units", "activation", "loss", "bias", "l2", "l1", "dropout", "init", "dtype", "seed")
TRAINING_PARAMETERS = ("learning_rate", "batch_size", "optimizer", "schedule", "clip_norm", "epochs")
PARAMETERS = NETWORK_PARAMETERS + TRAINING_PARAMETERS
DEFAULT_EPOCHS = 10
METRICS = ("val_loss", "val_accuracy", "val_mse", "val_mae", "val_r2")
PATIENCE_STOPPED = "stopped (patience)"  # the status of a trial that per-trial early stopping ended
FINISHED = ("ok", "stopped early", PATIENCE_STOPPED, "diverged", "failed", "cancelled")
_LARGER_IS_BETTER = ("val_accuracy", "val_r2")


class SweepUnavailable(HandgradError, ImportError):
    """dask.distributed is not installed."""


class ClusterError(HandgradError, RuntimeError):
    """The Dask cluster could not be started or reached, or it has no workers."""


def _distributed():
    try:
        import distributed
    except ImportError:
        raise SweepUnavailable("sweeps run on Dask: pip install handgrad[dask] (dask[distributed] and "
                               "threadpoolctl).") from None
    return distributed


# ---------------------------------------------------------------------------- the trials
def check_names(names, what="parameter"):
    """Each name must be one of :data:`PARAMETERS`; a ConfigError names the valid ones otherwise."""
    for name in names:
        if name not in PARAMETERS:
            raise ConfigError(f"unknown sweep {what} '{name}'.{suggest(name, PARAMETERS)} Valid names: "
                              f"{', '.join(PARAMETERS)}.")


@dataclass(frozen=True)
class Range:
    """Values a random search draws: ``uniform`` in [low, high), ``loguniform`` (uniform in log, for rates and
    penalties, low > 0) or ``randint`` (whole numbers low..high, both included). Make them with
    :func:`uniform`, :func:`loguniform`, :func:`randint`."""

    kind: str
    low: float
    high: float

    def __post_init__(self):
        if self.kind not in ("uniform", "loguniform", "randint"):
            raise ConfigError(f"a range is uniform, loguniform or randint, got '{self.kind}'.")
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise ConfigError(f"a {self.kind} range needs finite low < high, got {self.low!r}, {self.high!r}.")
        if self.kind == "loguniform" and self.low <= 0:
            raise ConfigError(f"a loguniform range needs low > 0, got {self.low!r}.")
        if self.kind == "randint" and (int(self.low) != self.low or int(self.high) != self.high):
            raise ConfigError(f"a randint range needs whole numbers, got {self.low!r}, {self.high!r}.")

    def sample(self, rng):
        if self.kind == "randint":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.kind == "loguniform":
            return float(np.exp(rng.uniform(np.log(self.low), np.log(self.high))))
        return float(rng.uniform(self.low, self.high))


def uniform(low, high):
    """Random search draws this parameter uniformly from [low, high)."""
    return Range("uniform", low, high)


def loguniform(low, high):
    """Random search draws this parameter evenly on a log scale between low and high (e.g. learning rates)."""
    return Range("loguniform", low, high)


def randint(low, high):
    """Random search draws a whole number low..high (both included) for this parameter."""
    return Range("randint", low, high)


def _check_params(params):
    if not isinstance(params, dict) or not params:
        raise ConfigError("params must be a non-empty dict {name: [value, ...]}, e.g. {'learning_rate': [0.01, 0.1]}.")
    check_names(params)
    checked = {}
    for name, values in params.items():
        if isinstance(values, Range):
            checked[name] = values
            continue
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
            raise ConfigError(f"params['{name}'] must be a non-empty list of values or a range such as "
                              f"loguniform(1e-4, 1e-1), got {values!r}.")
        checked[name] = list(values)
    for epochs in checked["epochs"] if isinstance(checked.get("epochs"), list) else ():
        _check_epochs(epochs, "params['epochs']")
    return checked


def _check_optimizer(settings):
    """L-BFGS has no epochs to rank a trial after (every such trial failed, one by one, on the cluster)."""
    from .lbfgs import is_lbfgs

    if is_lbfgs(settings.get("optimizer")):
        raise ConfigError("a sweep ranks its trials on the validation data after each epoch, and L-BFGS (one "
                          "full-batch objective) has no epochs: sweep a stochastic optimizer such as 'adam', and try "
                          "L-BFGS on its own with handgrad train --optimizer lbfgs.")


def _check_epochs(value, where):
    return check_count(value, 1, f"{where} must hold positive whole numbers of epochs, got {value!r}.")


def _check_trials(trials):
    return check_count(trials, 1, f"trials must be a positive whole number, got {trials!r}.")


def combinations(params, trials=None, seed=0):
    """The trials' parameter dicts, drawn from ``params`` ({name: list of values or a Range}).

    Lists only: every combination (grid search, the last name changing fastest), or ``trials`` distinct
    combinations drawn from that grid without replacement (random search, seeded by ``seed``). With a
    Range, random search only: for each of the ``trials`` trials, a draw from each range and a value
    picked at random from each list.
    """
    params = _check_params(params)
    names = list(params)
    rng = np.random.default_rng(seed)
    if any(isinstance(values, Range) for values in params.values()):
        if trials is None:
            ranged = [name for name in names if isinstance(params[name], Range)]
            raise ConfigError(f"{', '.join(ranged)} is a range, which a grid cannot enumerate: give trials=N "
                              "(--trials N) for a random search, or a list of values.")
        return [{name: values.sample(rng) if isinstance(values, Range) else values[int(rng.integers(len(values)))]
                 for name, values in params.items()} for _ in range(_check_trials(trials))]
    shape = [len(params[name]) for name in names]
    size = math.prod(shape)
    if trials is None:
        indices = range(size)
    else:
        if _check_trials(trials) > size:
            raise ConfigError(f"trials={trials} but the grid has only {size} combinations; ask for at most {size} "
                              "trials, give more values, or leave trials out to run the whole grid.")
        indices = rng.choice(size, size=int(trials), replace=False)
    chosen = []
    for index in indices:
        position = np.unravel_index(int(index), shape)
        chosen.append({name: params[name][int(i)] for name, i in zip(names, position)})
    return chosen


def _layer_specs(layers):
    """Layer dicts (network.layer_dict: size, activation, and a norm or bias where given) from a
    'size:act[:norm],...' string or a list of strings, pairs or dicts."""
    from .network import layer_dict

    if isinstance(layers, str):
        layers = [part for part in layers.split(",") if part.strip()]
    return [layer_dict(item, index) for index, item in enumerate(layers)]


def build_network(settings, n_inputs):
    """The trial's MLP: ``layers`` with every hidden layer's size replaced by ``units`` and its activation by
    ``activation`` when those are set; the other network options passed to :class:`handgrad.MLP`."""
    from .network import MLP

    if settings.get("layers") is None:
        raise ConfigError("a sweep needs the network's layers: put 'layers' in base (e.g. '32:relu,1:sigmoid') "
                          "or in params.")
    layers = _layer_specs(settings["layers"])
    for spec in layers[:-1]:  # the hidden layers; the output layer is fixed by the data
        if settings.get("units") is not None:
            spec["size"] = settings["units"]
        if settings.get("activation") is not None:
            spec["activation"] = settings["activation"]
    options = {name: settings[name] for name in ("loss", "l2", "l1", "dropout", "init", "dtype", "seed")
               if settings.get(name) is not None}
    options.setdefault("seed", 0)
    return MLP(n_inputs, layers, bias=settings.get("bias", True) is not False, **options)


def fit_options(settings):
    """The arguments of :func:`handgrad.training.fit` among the trial's settings."""
    return {name: settings[name] for name in TRAINING_PARAMETERS if settings.get(name) is not None}


# ---------------------------------------------------------------------------- successive halving
def halving_rungs(max_epochs, min_epochs=None, eta=3):
    """The epochs at which weak trials are stopped: r, r*eta, r*eta^2, ... below ``max_epochs``.

    ``min_epochs`` (r) defaults to max(1, max_epochs // eta^2), which gives about two rungs.
    """
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.integer, np.floating)) or not eta > 1:
        raise ConfigError(f"eta (the halving rate) must be a number > 1, got {eta!r}.")
    r = max(1, int(max_epochs // eta ** 2)) if min_epochs is None else _check_epochs(min_epochs, "min_epochs")
    rungs = []
    while r < max_epochs:
        if not rungs or r > rungs[-1]:
            rungs.append(int(r))
        r = math.ceil(r * eta)
    return rungs


def larger_is_better(metric):
    return metric in _LARGER_IS_BETTER


def _sort_key(goal_sign, metric):
    """Rows with a metric first, best first; then the others, by trial number."""
    def key(row):
        value = row[metric]
        return (1, 0.0, row["trial"]) if value is None else (0, goal_sign * value, row["trial"])
    return key


# ---------------------------------------------------------------------------- the task (runs on a worker)
class StopAtEpoch(Callback):
    """Stops training after epoch ``epoch`` (a rung); the checkpoint written at that epoch is the trial's state."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs):
        return epoch >= self.epoch


class StopWhenCancelled(Callback):
    """Stops a running trial once the sweep has been interrupted: Ctrl-C on the driver sets the Dask Event
    ``name``. Dask cancels queued tasks but cannot stop one that is running, which would otherwise keep its
    worker busy to the end of its epochs. Asks the scheduler between batches, at most once every ``every`` s."""

    def __init__(self, name, every=1.0):
        self.name, self.every, self.event, self.asked = name, every, None, time.monotonic()

    def on_batch_end(self, epoch, batch, loss):
        if time.monotonic() - self.asked < self.every:
            return False
        self.asked = time.monotonic()
        try:
            if self.event is None:
                self.event = _distributed().Event(self.name)
            return self.event.is_set()
        except Exception:  # (no scheduler to ask: the trial goes on, as it would without this callback)
            return False


def _blas_limit(threads):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the workers' environment (OPENBLAS_NUM_THREADS, set by Dask's nanny) still applies
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def run_trial(settings, data, until, state, metric, blas_threads=1, cancel=None, patience=None):
    """Train one trial from ``state`` (checkpoint bytes, or None to start) up to epoch ``until``; ``cancel``
    names the sweep's Dask Event that Ctrl-C sets, to stop a trial that is running (:class:`StopWhenCancelled`).
    ``patience``: early stopping on ``metric`` (:func:`patience_stopper`), its state carried in the checkpoint.

    ``data`` is (X, T, X_val, T_val). Returns a dict: status ("ok" at the end of the budget, "running" at a
    rung, "stopped (patience)", "diverged" or "failed"), error, curve (the metric per epoch so far), epochs,
    best_epoch (with ``patience``: the epoch whose weights are returned, else None), seconds (of this chunk),
    state (checkpoint bytes to continue from, at a rung), the network's params and config, and running (batch
    norm's running statistics, {name: array}).
    """
    started = time.perf_counter()
    outcome = {"status": "failed", "error": "", "curve": [], "epochs": 0, "best_epoch": None, "state": None,
               "params": None, "config": None}
    with _blas_limit(blas_threads), tempfile.TemporaryDirectory(prefix="handgrad-trial-") as folder:
        checkpoint = os.path.join(folder, "trial.ckpt")
        try:
            _train_chunk(settings, data, until, state, metric, checkpoint, outcome, cancel, patience)
        except TrainingError as error:
            outcome.update(status="diverged", error=str(error))
        except Exception as error:  # a crashing trial is recorded, and the sweep goes on
            outcome.update(status="failed", error=f"{type(error).__name__}: {error}")
    outcome["seconds"] = time.perf_counter() - started
    return outcome


def patience_stopper(patience, metric):
    """The EarlyStopping of a trial: ``metric`` (the sweep's) monitored, the best epoch's weights restored.
    A new one in every chunk: the checkpoint gives it the state of the chunks before (fit matches a callback's
    saved state by its type), so that a trial trained in chunks stops where an uninterrupted run would."""
    return None if patience is None else EarlyStopping(patience, monitor=metric, restore_best=True)


def _train_chunk(settings, data, until, state, metric, checkpoint, outcome, cancel=None, patience=None):
    X, T, X_val, T_val = data
    stopper = patience_stopper(patience, metric)
    net = build_network(settings, X.shape[1])
    options = fit_options(settings)
    options.setdefault("epochs", DEFAULT_EPOCHS)
    name = metric[len("val_"):]
    if state is not None:
        with open(checkpoint, "wb") as file:
            file.write(state)
    history_holder = []
    try:
        history = net.fit(X, T, validation_data=(X_val, T_val), metrics=None if name == "loss" else [name],
                          callbacks=[StopAtEpoch(until), _Keep(history_holder)] +
                          ([StopWhenCancelled(cancel)] if cancel is not None else []), checkpoint=checkpoint,
                          resume=checkpoint if state is not None else None, verbose=False,
                          early_stopping=stopper, **options)
    finally:
        if history_holder:  # also after divergence: the epochs that did finish
            done = history_holder[0]
            outcome["curve"] = [float(v) for v in done.metrics.get(metric, [])]
            outcome["epochs"] = len(done.epochs)
    curve = outcome["curve"]
    if metric not in history.metrics:
        raise ConfigError(f"this trial does not compute {metric}; choose one of "
                          f"{', '.join(sorted(k for k in history.metrics if k.startswith('val_')))}.")
    if curve and not math.isfinite(curve[-1]):
        raise TrainingError(f"the validation metric {metric} became {curve[-1]} at epoch {len(curve)}.")
    finished = outcome["epochs"] >= options["epochs"]
    out_of_patience = stopper is not None and stopper.wait > stopper.patience
    status = "ok" if finished else PATIENCE_STOPPED if out_of_patience else "running"
    outcome.update(status=status, params=net.params.copy(), config=net.config(),
                   best_epoch=stopper.best_epoch if stopper is not None and stopper.best_epoch else None,
                   running={name: array.copy() for name, array in net.running_statistics()})  # batch norm's
    if status == "running":
        with open(checkpoint, "rb") as file:
            outcome["state"] = file.read()


class _Keep(Callback):
    """Keeps the History object that fit hands to on_train_end (also when training ends with an error)."""

    def __init__(self, holder):
        self.holder = holder

    def on_train_end(self, net, history):
        self.holder.append(history)


# ---------------------------------------------------------------------------- the driver
@dataclass
class _Trial:
    number: int
    params: dict
    settings: dict
    budget: int
    status: str = "pending"
    value: float = None
    curve: list = field(default_factory=list)
    epochs: int = 0
    seconds: float = 0.0
    error: str = ""
    best_epoch: int = None  # with patience: the epoch whose metric and weights the trial reports
    state: bytes = None  # the checkpoint to continue from (between rungs)
    weights: tuple = None  # (params, config, running statistics) after the last chunk

    def absorb(self, outcome):
        self.status, self.error = outcome["status"], outcome["error"]
        self.curve = outcome["curve"] or self.curve
        self.epochs = outcome["epochs"] or self.epochs
        self.seconds += outcome["seconds"]
        self.state = outcome["state"]
        self.weights = (outcome["params"], outcome["config"], outcome.get("running") or {}) \
            if outcome["params"] is not None else None
        self.best_epoch = outcome.get("best_epoch")
        at = self.best_epoch if self.best_epoch else len(self.curve)  # (patience restored the best epoch's weights)
        finite = self.curve and math.isfinite(self.curve[at - 1])
        self.value = self.curve[at - 1] if finite and self.status in ("ok", "running", PATIENCE_STOPPED) else None

    def end(self, status):
        self.status, self.state = status, None
        if status == "cancelled":
            self.value, self.weights = None, None

    def row(self, metric):
        return {"trial": self.number, **{_column(name): value for name, value in self.params.items()},
                "status": self.status, metric: self.value,
                "epochs": self.epochs, "seconds": round(self.seconds, 3), "error": self.error}


def _column(name):
    """The column (and row key) of the swept parameter ``name``: its name, but a swept ``epochs`` is the column
    ``epochs_budget``, since ``epochs`` is the column of the epochs each trial ran (it overwrote the swept value)."""
    return "epochs_budget" if name == "epochs" else name


def _failed(error):
    return {"status": "failed", "error": f"{type(error).__name__}: {error}", "curve": [], "epochs": 0,
            "best_epoch": None, "seconds": 0.0, "state": None, "params": None, "config": None}


class _Driver:
    """Submits the chunks, applies the halving rule at each rung, keeps the best model, writes the files."""

    def __init__(self, client, data, trials, metric, eta, rungs, blas_threads, report, patience=None):
        self.client, self.data, self.trials, self.patience = client, data, trials, patience
        self.metric, self.eta, self.rungs, self.blas_threads = metric, eta, rungs, blas_threads
        self.report = report  # called with each trial when it ends
        self.sign = -1.0 if larger_is_better(metric) else 1.0  # minimize sign * value
        self.best = None  # (trial, params, config, running): the best ended trial, with its weights
        self.pending = []
        self.cancel_event = f"handgrad-sweep-cancel-{os.urandom(8).hex()}"  # a Dask Event, set on Ctrl-C

    def run(self):
        live = list(self.trials)
        for stop in self.rungs + [max(t.budget for t in self.trials)]:
            self._run_chunks(live, stop)
            live = [t for t in live if t.status == "running"]
            if stop in self.rungs:
                live = self._halve([t for t in live if t.budget > stop])

    def _run_chunks(self, trials, stop):
        distributed = _distributed()
        futures = {}
        for trial in trials:
            key = f"handgrad-trial-{trial.number}-to-{min(stop, trial.budget)}-{os.urandom(4).hex()}"
            future = self.client.submit(run_trial, trial.settings, self.data, min(stop, trial.budget), trial.state,
                                        self.metric, self.blas_threads, self.cancel_event, self.patience,
                                        pure=False, key=key)
            trial.status, trial.state = "running", None
            futures[future] = trial
        self.pending = list(futures)
        for future in distributed.as_completed(futures):
            trial = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # the worker died, or the task could not run there
                outcome = _failed(error)
            self.pending.remove(future)
            trial.absorb(outcome)
            if trial.status != "running":
                self._ended(trial)

    def _halve(self, trials):
        """Keep the best ceil(n / eta) of the trials at this rung; stop the others."""
        keep = max(1, math.ceil(len(trials) / self.eta))
        ranked = sorted(trials, key=lambda t: (self.sign * t.value, t.number))
        for trial in ranked[keep:]:
            trial.end("stopped early")
            self._ended(trial)
        return ranked[:keep]

    def _ended(self, trial):
        if trial.value is not None and trial.weights is not None:
            best = self.best[0] if self.best else None
            if best is None or (self.sign * trial.value, trial.number) < (self.sign * best.value, best.number):
                self.best = (trial, *trial.weights)
        trial.weights = None
        self.report(trial)

    def cancel(self):
        """Ctrl-C: cancel the tasks still queued or running; every unfinished trial is 'cancelled'."""
        if self.pending:
            with contextlib.suppress(Exception):
                _distributed().Event(self.cancel_event, client=self.client).set()  # stops the running ones
            with contextlib.suppress(Exception):
                self.client.cancel(self.pending)  # the queued ones
        for trial in self.trials:
            if trial.status not in FINISHED:
                trial.end("cancelled")

    def result(self, interrupted=False):
        rows = sorted((t.row(self.metric) for t in self.trials), key=_sort_key(self.sign, self.metric))
        return SweepResult(metric=self.metric, goal="max" if self.sign < 0 else "min",
                           parameters=[_column(name) for name in self.trials[0].params], rows=rows,
                           curves={t.number: list(t.curve) for t in self.trials}, rungs=list(self.rungs),
                           interrupted=interrupted)


@dataclass
class SweepResult:
    """What a sweep found. ``rows``: one dict per trial (trial, its parameters, status, the metric, epochs,
    seconds, error), sorted by the metric, best first; ``curves``: trial number -> the metric per epoch;
    ``best``: the best row (None if no trial ended with a metric); ``best_model``: that trial's trained MLP."""

    metric: str
    goal: str
    parameters: list
    rows: list
    curves: dict
    rungs: list
    interrupted: bool = False
    best_model: object = None
    out: str = None
    files: dict = field(default_factory=dict)

    @property
    def best(self):
        return next((row for row in self.rows if row[self.metric] is not None), None)

    def counts(self):
        """{status: number of trials}."""
        counts = {}
        for row in self.rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return counts

    def __repr__(self):
        best = self.best
        text = "no trial ended with a metric" if best is None else \
            f"best trial {best['trial']}: {self.metric} {best[self.metric]:.6g}"
        return f"SweepResult({len(self.rows)} trials {self.counts()}, {text})"


# ---------------------------------------------------------------------------- the sweep
def sweep(X, y, params, *, base=None, trials=None, validation_data=None, validation_split=0.2, metric="val_loss",
          halving=True, eta=3, min_epochs=None, patience=None, workers=None, scheduler=None, client=None,
          blas_threads=1, out=None, seed=0, metadata=None, on_trial_end=None, plot=True):
    """Train one network per combination of ``params`` on Dask and rank them; returns a :class:`SweepResult`.

    Parameters
    ----------
    X, y : arrays
        Training data (features (N, d); class ids or targets), as for ``MLP.fit``.
    params : dict {name: [value, ...]}
        The values to try; names from :data:`PARAMETERS` (network and training options).
    base : dict, optional
        The settings every trial starts from (the same names; ``layers`` is required here or in params;
        ``epochs`` defaults to 10). ``units`` and ``activation`` replace every hidden layer's size and
        activation in ``layers``.
    trials : int, optional
        Random search: this many distinct combinations drawn from the grid (default: the whole grid).
    validation_data : (X_val, y_val), optional
        The data the metric is measured on; else ``validation_split`` of (X, y) is held out (seeded).
    metric : str
        'val_loss' (default, smaller is better), 'val_accuracy', 'val_r2' (larger is better), 'val_mse',
        'val_mae'.
    halving : bool;  eta : number > 1;  min_epochs : int, optional
        Successive halving: at epochs min_epochs * eta^k keep the best 1/eta of the trials (see the
        module's docstring). ``halving=False`` trains every trial to its full budget.
    patience : int >= 0, optional
        Per-trial early stopping (``fit``'s ``early_stopping``): a trial whose ``metric`` has not improved for
        ``patience`` epochs stops by itself, with status "stopped (patience)", and frees its worker; it takes no
        part in later rungs. Each trial then reports its best epoch's metric and weights (restore_best), also at
        the rungs. Its state travels in the trial's checkpoint, so chunks stop where one run would.
    workers : int, optional
        Processes of the LocalCluster started for the sweep (default: the number of CPUs).
    scheduler : str, optional
        Address of a running Dask scheduler ('tcp://host:8786') to run the trials on instead.
    client : distributed.Client, optional
        A client you already hold (the sweep leaves it open); not together with ``scheduler`` or ``workers``.
    blas_threads : int
        BLAS threads per trial (default 1: one trial per core).
    out : folder, optional
        Write results.csv, results.json, best_model.npz and curves.png here (created if needed).
    seed : int
        Seeds the validation split and the random search (each trial's network has its own ``seed``).
    metadata : dict, optional
        Extra metadata stored in best_model.npz (e.g. the preprocessing, as ``handgrad train`` stores it).
    on_trial_end : callable(row, n_trials), optional
        Called in this process whenever a trial ends (e.g. to print progress).
    plot : bool
        Draw curves.png (needs matplotlib; skipped with a warning without it).
    """
    base = _check_base(base)
    metric = _check_metric(metric)
    blas_threads = _check_count("blas_threads", blas_threads)
    patience_stopper(patience, metric)  # checks patience here, not on the cluster
    chosen = combinations(params, trials, seed)
    data = _validation_split(X, y, validation_data, validation_split, seed)
    runs = []
    for number, combination in enumerate(chosen, 1):
        settings = {**base, **combination}
        _check_optimizer(settings)
        runs.append(_Trial(number, combination, settings, _check_epochs(settings.get("epochs", DEFAULT_EPOCHS),
                                                                         "epochs")))
    _check_metric_fits(runs, metric, data[0].shape[1])
    rungs = halving_rungs(max(t.budget for t in runs), min_epochs, eta) if halving else []
    if out is not None:
        out = _output_folder(out)
    with _connect(client, scheduler, workers) as dask_client:
        if out is not None:  # now that there is a cluster: one that cannot be reached leaves no empty folder
            os.makedirs(out, exist_ok=True)
        # The data travel to each worker once, under a key of this sweep's own (hash=False): by default scatter names
        # data by their content, so a second sweep of the same data in one client would reuse the key while the
        # first sweep's release of it may still be on its way to the scheduler, which then forgets the data
        # that the second sweep's tasks need ("computation on lost data").
        shared = dask_client.scatter([data], broadcast=True, hash=False)[0]

        def report(trial):
            if out is not None:
                write_results(out, driver.result(), base)
            if on_trial_end is not None:
                on_trial_end(trial.row(metric), len(runs))

        driver = _Driver(dask_client, shared, runs, metric, eta, rungs, blas_threads, report, patience)
        interrupted = False
        try:
            driver.run()
        except KeyboardInterrupt:  # keep what has finished; the pending trials are cancelled
            driver.cancel()
            interrupted = True
        except BaseException:  # an error in this process (on_trial_end, a full disk): no trial goes on without it
            driver.cancel()
            raise
        finally:
            driver.data = None
            with contextlib.suppress(Exception):  # a cluster that has gone away has nothing left to free
                shared.release()  # free the workers' copies now, not when garbage collection gets to the future
    return _finish(driver, interrupted, out, base, metadata, plot)


def _finish(driver, interrupted, out, base, metadata, plot):
    result = driver.result(interrupted)
    if driver.best is not None:
        trial, params, config, running = driver.best
        result.best_model = _network_from(config, params, running)
    if out is None:
        return result
    result.out = out
    result.files["results.csv"], result.files["results.json"] = write_results(out, result, base)
    if result.best_model is not None:
        trial = driver.best[0]
        record = {"sweep": {"trial": trial.number, "params": json_safe(trial.params), "metric": result.metric,
                            "value": trial.value, "epochs": trial.epochs},
                  "training": json_safe(fit_options(trial.settings))}
        if trial.best_epoch is not None:  # (patience: the weights and value are this epoch's)
            record["sweep"]["best_epoch"] = trial.best_epoch
        path = os.path.join(out, "best_model.npz")
        result.files["best_model.npz"] = result.best_model.save(path, **record, **(metadata or {}))
    if plot:
        from .plotting import PlottingUnavailable

        try:
            result.files["curves.png"] = plot_curves(result, os.path.join(out, "curves.png"))
        except PlottingUnavailable as error:
            warnings.warn(f"curves.png skipped: {error}", stacklevel=3)
    return result


def _network_from(config, params, running=None):
    """The trial's network from its config, parameter vector and batch norm's running statistics."""
    from .network import from_config

    net = from_config(config)
    net.params[...] = params
    if running:
        net.set_running_statistics(running)
    return net


# ---------------------------------------------------------------------------- checks
def _check_base(base):
    base = dict(base or {})
    check_names(base, "setting")
    return base


def _check_metric(metric):
    if metric not in METRICS:
        raise ConfigError(f"unknown metric '{metric}'.{suggest(metric, METRICS)} Choose one of {', '.join(METRICS)}.")
    return metric


def _check_metric_fits(runs, metric, n_inputs):
    """val_accuracy needs classifiers: refused when no trial's network is one (each trial trained an epoch on
    the cluster, then failed on it). A trial whose network cannot be built fails on its own."""
    if metric != "val_accuracy":
        return
    for trial in runs:
        try:
            if build_network(trial.settings, n_inputs).is_classifier:
                return
        except HandgradError:
            return
    raise ConfigError("val_accuracy needs a classifier (softmax or sigmoid output), and no trial's network is one; "
                      "rank the trials by val_loss, val_mse, val_mae or val_r2.")


def _check_count(name, value):
    return check_count(value, 1, f"{name} must be a positive whole number, got {value!r}.")


def _validation_split(X, y, validation_data, validation_split, seed):
    """(X, y, X_val, y_val), checked: the given validation data, or a seeded random ``validation_split``."""
    from .datasets import check_dataset
    from .errors import check_fraction

    X, y = check_dataset(X, y, name="the sweep's data")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise DataError("validation_data must be a pair (X_val, y_val).")
        X_val, y_val = check_dataset(*validation_data, name="the validation data")
        if X_val.shape[1] != X.shape[1]:  # (else every trial failed on it, one by one, on the cluster)
            raise DataError(f"the validation data have {X_val.shape[1]} features but the sweep's data have "
                            f"{X.shape[1]}; give both the same columns.")
        return X, y, X_val, y_val
    fraction = check_fraction("validation_split", validation_split)
    n_val = int(round(fraction * len(X)))
    if n_val < 1 or n_val >= len(X):
        raise DataError(f"validation_split={fraction} leaves {n_val} of {len(X)} samples for validation; a sweep "
                        "ranks trials on validation data: give validation_data or a larger split.")
    order = np.random.default_rng([seed, 2]).permutation(len(X))
    held, kept = np.sort(order[:n_val]), np.sort(order[n_val:])
    return X[kept], y[kept], X[held], y[held]


def _output_folder(out):
    out = os.fspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"the sweep's output folder '{out}' is a file; give a folder name.")
    return out


@contextlib.contextmanager
def _connect(client, scheduler, workers):
    """The Dask client to use: the one given, one connected to ``scheduler``, or a new LocalCluster's."""
    if client is not None:
        given = [name for name, value in (("scheduler", scheduler), ("workers", workers)) if value is not None]
        if given:
            raise ConfigError(f"client runs the trials on the cluster of the client you hold; {' and '.join(given)} "
                              "would choose another one. Give client, scheduler or workers, not two of them.")
        yield client
        return
    distributed = _distributed()
    if scheduler is not None:
        if workers is not None:
            raise ConfigError("workers sets the size of the local cluster; with a scheduler address the trials run "
                              "on that cluster's workers. Give one of the two.")
        try:
            client = distributed.Client(scheduler, timeout=10)
        except (OSError, ValueError, TypeError) as error:
            raise ClusterError(f"cannot reach the Dask scheduler at '{scheduler}' ({error}); check the address "
                               "(e.g. tcp://host:8786) and that the scheduler is running.") from None
        with client:
            try:
                client.wait_for_workers(1, timeout=60)
            except TimeoutError:
                raise ClusterError(f"the Dask scheduler at '{scheduler}' has no workers (waited 60 s); start some "
                                   f"with `dask worker {scheduler}`.") from None
            yield client
        return
    workers = (os.cpu_count() or 1) if workers is None else _check_count("workers", workers)
    with _local_cluster(distributed, workers) as cluster, distributed.Client(cluster) as client:
        client.run(_ignore_ctrl_c)  # Ctrl-C is the driver's to handle (cancel, write the finished trials)
        yield client


def _ignore_ctrl_c():
    """In a local worker process: ignore SIGINT. A terminal's Ctrl-C reaches the whole process group, and the
    workers would otherwise die with tracebacks, losing results the driver had not gathered yet."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _local_cluster(distributed, workers):
    try:
        # no dashboard; its HTTP server on a free port (the default, 8787, may be another cluster's)
        return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        dashboard_address=":0", scheduler_kwargs={"dashboard": False})
    except RuntimeError as error:  # most often: a script without `if __name__ == "__main__":`
        raise ClusterError(f"could not start a local Dask cluster of {workers} worker processes ({error}). The "
                           "workers start by importing your main script: in a script, call the sweep under "
                           "`if __name__ == \"__main__\":`.") from None


# ---------------------------------------------------------------------------- files
def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def write_results(out, result, base=None):
    """Write ``out/results.csv`` (one row per trial, best first) and ``out/results.json`` (the same rows with
    each trial's curve, and the sweep's settings) atomically; returns the two paths."""
    import csv
    import io as _stdio

    header = ["trial", *result.parameters, "status", result.metric, "epochs", "seconds", "error"]
    text = _stdio.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_cell(json_safe(row[name])) for name in header] for row in result.rows])
    csv_path, json_path = os.path.join(out, "results.csv"), os.path.join(out, "results.json")
    atomic_write_text(csv_path, text.getvalue())
    record = {"metric": result.metric, "goal": result.goal, "parameters": result.parameters,
              "base": json_safe(base or {}), "rungs": result.rungs, "interrupted": result.interrupted,
              "counts": result.counts(),
              "trials": [{**json_safe(row), "curve": json_safe(result.curves[row["trial"]])} for row in result.rows]}
    atomic_write_text(json_path, json.dumps(record, indent=1, allow_nan=False, default=str) + "\n")
    return csv_path, json_path


_STYLES = {"ok": "-", "stopped early": "--", PATIENCE_STOPPED: "-.", "diverged": ":", "failed": ":", "cancelled": ":"}


def plot_curves(result, path=None):
    """Every trial's validation curve (the metric per epoch); stopped trials dashed, the rungs as grey lines,
    the best trial drawn thick and named. Returns the path written (or the Figure when ``path`` is None)."""
    from .plotting import PlottingUnavailable, save_figure

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlottingUnavailable("pictures need matplotlib: pip install handgrad[plot]") from None
    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    best = result.best
    values = []
    for row in result.rows:
        curve = [v if math.isfinite(v) else float("nan") for v in result.curves[row["trial"]]]
        if not curve:
            continue
        values += [v for v in curve if math.isfinite(v)]
        is_best = best is not None and row["trial"] == best["trial"]
        label = None
        if is_best:
            label = "best: " + ", ".join(f"{name}={row[name]}" for name in result.parameters)
        style = {"linewidth": 2.5, "color": "black", "zorder": 3} if is_best else {"linewidth": 1, "alpha": 0.6}
        ax.plot(range(1, len(curve) + 1), curve, _STYLES.get(row["status"], "-"), marker=".",
                markersize=4, label=label, **style)
    for rung in result.rungs:
        ax.axvline(rung, color="0.8", linewidth=0.8, zorder=1)
    if values and min(values) > 0 and max(values) > 100 * min(values):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(result.metric)
    ax.set_title(f"{len(result.rows)} trials: {result.metric} per epoch (dashed: stopped early, dash-dot: "
                 "patience; grey: rungs)")
    if best is not None:
        ax.legend(loc="best", fontsize="small")
    if path is None:
        return figure
    return save_figure(figure, path)
