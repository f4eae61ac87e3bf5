"""The trainer's end of an epoch and early stopping's copy of the best epoch.

- Callbacks run before the history records the epoch, so what a callback adds to ``logs`` is that epoch's
  row (NaN in the epochs it adds nothing); the checkpoint written after the epoch holds it too.
- EarlyStopping keeps one copy of the parameter vector and of batch norm's running statistics, reused at
  every improvement; its checkpoint state round-trips, and a state of the older form (a list of per-array
  weights, no running statistics) still resumes bit-identically.
"""

import math

import numpy as np
import pytest

import handgrad as hg
from handgrad.callbacks import Callback, EarlyStopping, Sharpness
from handgrad.checkpoints import read_checkpoint, restore_running_statistics, write_checkpoint

LAYERS = ["6:tanh:batchnorm", "3:softmax"]


def blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(np.int64) + (X[:, 2] > 0.8)


def nan_equal(a, b):
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b))


class EveryOther(Callback):
    """Adds ``logs["double"]`` = 2 * epoch on even epochs."""

    def on_epoch_end(self, epoch, logs):
        if epoch % 2 == 0:
            logs["double"] = 2.0 * epoch


class Seen(Callback):
    """What a callback after EveryOther finds in logs."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, epoch, logs):
        self.seen.append(logs.get("double"))


# ---------------------------------------------------------------------------- callbacks add to the epoch's row
def test_what_a_callback_adds_to_logs_is_recorded_in_that_epochs_row():
    X, y = blobs()
    seen = Seen()
    history = hg.MLP(3, LAYERS, seed=0).fit(X, y, epochs=5, batch_size=16, callbacks=[EveryOther(), seen],
                                           verbose=False)
    assert nan_equal(history.double, [math.nan, 4.0, math.nan, 8.0, math.nan])
    assert seen.seen == [None, 4.0, None, 8.0, None]  # later callbacks see it, as before
    assert all(len(column) == len(history.epochs) for column in history.metrics.values())


def test_history_record_keeps_one_value_per_epoch_in_every_column():
    history = hg.History()
    history.record(1, 0.1, loss=1.0)
    history.record(2, 0.1, loss=0.5, extra=3.0)
    history.record(3, 0.1, extra=4.0)
    assert nan_equal(history.extra, [math.nan, 3.0, 4.0])
    assert nan_equal(history.loss, [1.0, 0.5, math.nan])


def test_an_added_column_is_in_the_checkpoint_and_resumes_bit_identically(tmp_path):
    X, y = blobs()
    options = dict(batch_size=16, optimizer="adam", learning_rate=0.02, validation_split=0.25, seed=1, verbose=False)
    straight = hg.MLP(3, LAYERS, seed=0)
    whole = straight.fit(X, y, epochs=4, callbacks=[EveryOther()], **options)
    path = str(tmp_path / "run.ckpt")
    first = hg.MLP(3, LAYERS, seed=0)
    first.fit(X, y, epochs=2, checkpoint=path, callbacks=[EveryOther()], **options)
    assert nan_equal(read_checkpoint(path)["history"]["double"], [math.nan, 4.0])
    again = hg.MLP(3, LAYERS, seed=5)
    resumed = again.fit(X, y, epochs=4, checkpoint=path, resume=path, callbacks=[EveryOther()], **options)
    np.testing.assert_array_equal(again.params, straight.params)
    assert nan_equal(resumed.double, whole.double) and resumed.val_loss == whole.val_loss


def test_sharpness_is_in_the_history_of_every_checkpoint(tmp_path):
    """Sharpness puts its value into logs; the trainer records it (no rewrite of the history at the end), so the
    checkpoint written after epoch 2 already holds epoch 2's sharpness."""
    X, y = blobs()
    path = str(tmp_path / "run.ckpt")
    probe = Sharpness(X[:30], y[:30], every=2)
    history = hg.MLP(3, ["6:tanh", "3:softmax"], seed=0).fit(X, y, epochs=3, batch_size=20, checkpoint=path,
                                                            callbacks=[probe], verbose=False)
    assert nan_equal(history.sharpness, [math.nan, probe.values[0], math.nan])
    saved = read_checkpoint(path)["history"]["sharpness"]
    assert nan_equal(saved, history.sharpness) and probe.values[0] > 0


def test_a_callback_that_fails_still_leaves_the_epoch_in_the_history():
    class Fails(Callback):
        def on_epoch_end(self, epoch, logs):
            logs["reached"] = float(epoch)
            if epoch == 2:
                raise RuntimeError("deliberate")

    class Keep(Callback):
        def on_train_end(self, net, history):
            self.history = history

    X, y = blobs()
    keep = Keep()
    with pytest.raises(RuntimeError, match="deliberate"):
        hg.MLP(3, LAYERS, seed=0).fit(X, y, epochs=4, batch_size=16, callbacks=[Fails(), keep], verbose=False)
    assert keep.history.epochs == [1, 2] and keep.history.reached == [1.0, 2.0]


# ---------------------------------------------------------------------------- early stopping's one copy
class Snapshots(Callback):
    def __init__(self):
        self.params, self.running = {}, {}

    def on_epoch_end(self, epoch, logs):
        self.params[epoch] = self.net.params.copy()
        self.running[epoch] = {name: array.copy() for name, array in self.net.running_statistics()}


class Identity(Callback):
    """The identity of the stopper's arrays at every epoch (they must be made once)."""

    def __init__(self, stopper):
        self.stopper, self.ids = stopper, set()

    def on_epoch_end(self, epoch, logs):
        if self.stopper.best_params is not None:
            running = self.stopper.best_running
            self.ids.add((id(self.stopper.best_params), *sorted(id(a) for a in running.values())))


def test_early_stopping_keeps_one_parameter_vector_reused_at_every_improvement():
    X, y = blobs(80)
    X_val, y_val = blobs(40, seed=3)
    net = hg.MLP(3, LAYERS, seed=0)
    snapshots, stopper = Snapshots(), EarlyStopping(patience=2)
    identity = Identity(stopper)
    history = net.fit(X, y, epochs=40, batch_size=8, learning_rate=0.5, validation_data=(X_val, y_val),
                      early_stopping=stopper, callbacks=[snapshots, identity], verbose=False)
    best = stopper.best_epoch
    assert 1 < best < history.epochs[-1] and "restored the weights of epoch" in history.stop_reason
    assert stopper.best_params.shape == net.params.shape and not np.shares_memory(stopper.best_params, net.params)
    assert len(identity.ids) == 1  # improvements at several epochs, the same arrays
    np.testing.assert_array_equal(net.params, snapshots.params[best])
    for name, array in net.running_statistics():
        np.testing.assert_array_equal(array, snapshots.running[best][name])
    # the layers' W and b are still views into params (restored in place, not rebound)
    assert all(np.shares_memory(layer.W, net.params) for layer in net.layers)


def test_early_stopping_state_round_trips_and_restores():
    X, y = blobs(40)
    net = hg.MLP(3, LAYERS, seed=0)
    stopper = EarlyStopping(patience=1)
    net.fit(X, y, epochs=3, batch_size=8, early_stopping=stopper, verbose=False)
    state = stopper.state_dict()
    other = hg.MLP(3, LAYERS, seed=9)
    again = EarlyStopping()
    again.load_state_dict(state)
    again.on_train_begin(other)
    assert again.restore()
    np.testing.assert_array_equal(other.params, stopper.best_params)
    for name, array in other.running_statistics():
        np.testing.assert_array_equal(array, stopper.best_running[name])
    smaller = hg.MLP(3, ["4:tanh:batchnorm", "3:softmax"], seed=0)
    with pytest.raises(hg.ConfigError, match="early-stopping state holds"):
        _begin(state, smaller)
    with pytest.raises(hg.ConfigError, match="expected running statistics"):
        _begin({**state, "best_running": {"running_mean1": np.zeros(6)}}, other)


def _begin(state, net):
    stopper = EarlyStopping()
    stopper.load_state_dict(state)
    stopper.on_train_begin(net)
    return stopper


def test_an_older_checkpoints_early_stopping_state_resumes_bit_identically(tmp_path):
    """Checkpoints written before the one-vector copy hold "best_weights" (a list of W1, b1, ...) and, before batch
    norm, no "best_running": rewritten in that form, the checkpoint resumes to the uninterrupted run."""
    X, y = blobs(70)
    layers = ["8:tanh", "3:softmax"]
    options = dict(batch_size=16, optimizer="adam", learning_rate=0.05, validation_split=0.3, seed=3, verbose=False)
    straight = hg.MLP(3, layers, seed=0)
    whole = straight.fit(X, y, epochs=30, early_stopping=EarlyStopping(patience=2), **options)
    assert whole.stop_reason.startswith("early stopping") and "restored" in whole.stop_reason
    path = str(tmp_path / "run.ckpt")
    first = hg.MLP(3, layers, seed=0)
    first.fit(X, y, epochs=len(whole.epochs) - 1, checkpoint=path, early_stopping=EarlyStopping(patience=2),
              **options)
    state = read_checkpoint(path)
    entry = next(e for e in state["callbacks"] if e["type"] == "EarlyStopping")
    saved = entry["state"]
    best = hg.MLP(3, layers, seed=0)
    best.params[...] = saved.pop("best_params")
    saved.pop("best_running")
    saved["best_weights"] = best.get_weights()
    write_checkpoint(path, state)
    again = hg.MLP(3, layers, seed=7)
    history = again.fit(X, y, epochs=30, checkpoint=path, resume=path, early_stopping=EarlyStopping(patience=2),
                        **options)
    assert history.epochs == whole.epochs and history.stop_reason == whole.stop_reason
    np.testing.assert_array_equal(again.params, straight.params)


# ---------------------------------------------------------------------------- running statistics, one check
def test_a_checkpoints_running_statistics_are_checked_by_the_network_once():
    net = hg.MLP(3, LAYERS, seed=0)
    with pytest.raises(hg.ConfigError, match=r"does not fit this network: expected running statistics "
                                             r"\['running_mean1', 'running_var1'\], got \[\]"):
        restore_running_statistics(net, {})
    bad = {"running_mean1": np.zeros(6), "running_var1": -np.ones(6)}
    with pytest.raises(hg.ConfigError, match="running_var1 must hold finite real numbers >= 0"):
        restore_running_statistics(net, {"running": bad})
    good = {"running_mean1": np.arange(6.0), "running_var1": np.full(6, 2.0)}
    restore_running_statistics(net, {"running": good})
    np.testing.assert_array_equal(dict(net.running_statistics())["running_mean1"], np.arange(6.0))
    checked = net.check_running_statistics(good)
    assert checked["running_var1"] is not good["running_var1"] and checked["running_var1"].dtype == net.dtype
