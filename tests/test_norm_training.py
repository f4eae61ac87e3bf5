"""The trainer with batch norm: early stopping restores the best epoch's running statistics, and a lone
last sample joins the batch before it (docs/training.md, "The loop")."""

import numpy as np
import pytest

import handgrad as hg
from handgrad.callbacks import Callback, EarlyStopping

LAYERS = ["6:relu:batchnorm", "5:tanh:layernorm", "2:softmax"]


def problem(N, seed=10):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 3)) * 2 + 1
    return X, (X[:, 0] > X[:, 1]).astype(int)


class Snapshots(Callback):
    """The weights and running statistics at the end of every epoch."""

    def __init__(self):
        self.weights, self.running = {}, {}

    def on_epoch_end(self, epoch, logs):
        self.weights[epoch] = self.net.params.copy()
        self.running[epoch] = {name: array.copy() for name, array in self.net.running_statistics()}


def test_early_stopping_restores_the_best_epochs_running_statistics():
    X, y = problem(80)
    X_val, y_val = problem(40, seed=11)
    net = hg.MLP(3, LAYERS, seed=0)
    snapshots, stopper = Snapshots(), EarlyStopping(patience=2)
    history = net.fit(X, y, epochs=40, batch_size=8, learning_rate=0.5, validation_data=(X_val, y_val),
                      early_stopping=stopper, callbacks=[snapshots], verbose=False)
    best, last = stopper.best_epoch, history.epochs[-1]
    assert "restored the weights of epoch" in history.stop_reason and best < last
    np.testing.assert_array_equal(net.params, snapshots.weights[best])
    for name, array in net.running_statistics():
        assert not np.array_equal(snapshots.running[best][name], snapshots.running[last][name])  # they moved on
        np.testing.assert_array_equal(array, snapshots.running[best][name], err_msg=name)
    # the restored model predicts as it did at its best epoch (validation uses the running statistics)
    assert net.loss(X_val, y_val, batch_statistics=False) == pytest.approx(history.val_loss[best - 1], rel=1e-12)


def test_early_stopping_state_round_trips_the_running_statistics():
    X, y = problem(40)
    net = hg.MLP(3, LAYERS, seed=0)
    stopper = EarlyStopping(patience=1)
    net.fit(X, y, epochs=3, batch_size=8, early_stopping=stopper, verbose=False)
    again = EarlyStopping()
    again.load_state_dict(stopper.state_dict())
    assert set(again.best_running) == {"running_mean1", "running_var1"}
    for name, array in stopper.best_running.items():
        np.testing.assert_array_equal(again.best_running[name], array)
    again.load_state_dict({k: v for k, v in stopper.state_dict().items() if k != "best_running"})  # older state
    assert again.best_running is None


class CountBatches(Callback):
    def __init__(self):
        self.batches = []

    def on_batch_end(self, epoch, batch, loss):
        self.batches.append((epoch, batch))


def test_a_lone_last_sample_joins_the_batch_before_with_batch_norm():
    X, y = problem(9)  # 2 batches of 4 and one sample
    net = hg.MLP(3, LAYERS, seed=0)
    manual = net.copy()
    counter = CountBatches()
    net.fit(X, y, epochs=1, batch_size=4, learning_rate=0.1, shuffle=False, callbacks=[counter], verbose=False)
    assert counter.batches == [(1, 1), (1, 2)]
    T = manual.check_targets(y, 9)
    for rows in (slice(0, 4), slice(4, 9)):  # the second batch holds samples 4..8: five of them
        manual.backprop(X[rows], T[rows], None, training=True)
        manual.params -= 0.1 * manual.grads
    np.testing.assert_allclose(net.params, manual.params, rtol=1e-13, atol=1e-15)
    for (name, a), (_, b) in zip(net.running_statistics(), manual.running_statistics()):
        np.testing.assert_allclose(a, b, rtol=1e-13, err_msg=name)


def test_a_lone_last_sample_is_its_own_batch_without_batch_norm():
    X, y = problem(9)
    counter = CountBatches()
    hg.MLP(3, ["6:relu:layernorm", "2:softmax"], seed=0).fit(X, y, epochs=1, batch_size=4, callbacks=[counter],
                                                           verbose=False)
    assert counter.batches == [(1, 1), (1, 2), (1, 3)]


def test_merged_batches_shuffle_and_resume_bit_identically(tmp_path):
    path = str(tmp_path / "ck.hgz")
    X, y = problem(41)  # 5 batches of 8 and one sample
    args = dict(epochs=3, batch_size=8, optimizer="adam", learning_rate=0.01, seed=7, verbose=False)
    straight = hg.MLP(3, LAYERS, seed=0, dropout=0.2)
    full = straight.fit(X, y, **args)
    first = hg.MLP(3, LAYERS, seed=0, dropout=0.2)

    class StopInside(Callback):
        def on_batch_end(self, epoch, batch, loss):
            return epoch == 2 and batch == 3

    first.fit(X, y, checkpoint=path, callbacks=[StopInside()], **args)
    again = hg.MLP(3, LAYERS, seed=99, dropout=0.2)
    history = again.fit(X, y, checkpoint=path, resume=path, **args)
    np.testing.assert_array_equal(again.params, straight.params)
    for (_, a), (_, b) in zip(again.running_statistics(), straight.running_statistics()):
        np.testing.assert_array_equal(a, b)
    assert history.loss == full.loss


def test_one_sample_in_all_is_still_a_clear_error():
    X, y = problem(1)
    with pytest.raises(hg.DataError, match="at least 2 samples"):
        hg.MLP(3, LAYERS, seed=0).fit(X, y, epochs=1, verbose=False)
