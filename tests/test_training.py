import os
import signal

import numpy as np
import pytest

import handgrad as hg
from handgrad.callbacks import Callback, EarlyStopping
from handgrad.errors import ConfigError, DataError, ModelFileError, TrainingError
from handgrad.optimizers import Adam
from handgrad.training import History, class_weights_per_sample, evaluate, fit, partial_fit, train_step


def blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    return X, y


def classifier(seed=0, dropout=0.0, **kw):
    return hg.MLP(4, [(8, "tanh"), (3, "softmax")], seed=seed, dropout=dropout, **kw)


def weights_equal(a, b):
    return all(np.array_equal(p, q) for (_, p), (_, q) in zip(a.parameters(), b.parameters()))


# ---------------------------------------------------------------------------- the default is the seeds' rule
def test_default_fit_is_plain_minibatch_gradient_descent():
    X, y = blobs(10)
    net = classifier()
    by_hand = net.copy()
    fit(net, X, y, epochs=2, batch_size=4, learning_rate=0.3, shuffle=False, verbose=False)
    T = np.eye(3)[y]
    for _ in range(2):
        for start in (0, 4, 8):  # the last batch has 2 samples and is used
            J, grads = by_hand.loss_and_grad(X[start:start + 4], T[start:start + 4])
            for layer, (dW, db) in zip(by_hand.layers, grads):
                layer.W -= 0.3 * dW
                layer.b -= 0.3 * db
    for (_, p), (_, q) in zip(net.parameters(), by_hand.parameters()):
        assert np.allclose(p, q, rtol=1e-12, atol=1e-14)


def test_training_reduces_the_loss_and_records_history():
    X, y = blobs()
    net = classifier()
    history = net.fit(X, y, epochs=15, optimizer="adam", learning_rate=0.02, validation_split=0.25, verbose=False,
                      seed=1)
    assert history.loss[-1] < history.loss[0]
    assert len(history.val_loss) == 15 and len(history.seconds) == 15 and len(history.lr) == 15
    assert 0.0 <= history.val_accuracy[-1] <= 1.0
    assert history.epochs == list(range(1, 16))
    assert history.stop_reason == "completed"
    assert history.as_dict()["val_accuracy"] == history.val_accuracy


def test_regression_metrics():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    T = X @ np.array([[1.0], [-2.0], [0.5]])
    net = hg.MLP(3, [(1, "identity")], seed=0)
    history = net.fit(X, T, epochs=30, learning_rate=0.05, validation_data=(X, T), verbose=False)
    assert set(history.metrics) >= {"val_mse", "val_mae", "val_r2"}
    A = net.forward(X)
    assert history.val_mse[-1] == pytest.approx(np.mean((A - T) ** 2))
    assert history.val_mae[-1] == pytest.approx(np.mean(np.abs(A - T)))
    assert history.val_r2[-1] == pytest.approx(1 - ((T - A) ** 2).sum() / ((T - T.mean()) ** 2).sum())
    assert history.val_r2[-1] > 0.9


def test_evaluate_in_chunks_matches_loss(monkeypatch):
    import handgrad.training as training

    X, y = blobs(50)
    net = classifier(l2=0.01)
    T = net.check_targets(y, 50)
    monkeypatch.setattr(training, "_EVAL_CHUNK", 7)
    result = evaluate(net, net.check_inputs(X), T)
    assert result["loss"] == pytest.approx(net.loss(X, y), rel=1e-12)
    assert result["accuracy"] == pytest.approx(np.mean(net.predict(X) == y))


# ---------------------------------------------------------------------------- sample and class weights
def test_sample_and_class_weight_gradients_by_finite_differences():
    X, y = blobs(12)
    net = classifier()
    w = np.random.default_rng(3).uniform(0.2, 2.0, size=12)
    assert hg.gradcheck(net, X, y, sample_weight=w).max_error < 1e-6
    cw = class_weights_per_sample(net, net.check_targets(y, 12), {0: 3.0, 2: 0.5})
    assert np.allclose(cw, np.array([3.0, 1.0, 0.5])[y])
    assert hg.gradcheck(net, X, y, sample_weight=w * cw).max_error < 1e-6


def test_dropout_gradient_by_finite_differences():
    X, y = blobs(10)
    net = classifier(dropout=0.3)
    assert hg.gradcheck(net, X, y, dropout_seed=5).max_error < 1e-6


def test_balanced_class_weights_give_every_class_equal_total_weight():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2])
    net = classifier()
    w = class_weights_per_sample(net, net.check_targets(y, 12), "balanced")
    totals = [w[y == c].sum() for c in range(3)]
    assert np.allclose(totals, 12 / 3)


def test_class_weight_in_fit_equals_the_same_sample_weight():
    X, y = blobs(40)
    a, b = classifier(), classifier()
    fit(a, X, y, epochs=2, batch_size=8, class_weight={1: 2.5}, verbose=False, seed=0)
    fit(b, X, y, epochs=2, batch_size=8, sample_weight=np.where(y == 1, 2.5, 1.0), verbose=False, seed=0)
    assert weights_equal(a, b)
    c = classifier()
    fit(c, X, y, epochs=2, batch_size=8, verbose=False, seed=0)
    assert not weights_equal(a, c)


# ---------------------------------------------------------------------------- clipping
def test_clip_norm_bounds_the_step():
    X, y = blobs(30)
    net = classifier()
    before = net.get_weights()
    J, grads = net.loss_and_grad(X, y)
    norm = np.sqrt(sum((dW ** 2).sum() + (db ** 2).sum() for dW, db in grads))
    c = norm / 10
    fit(net, X, y, epochs=1, batch_size=30, learning_rate=1.0, clip_norm=c, shuffle=False, verbose=False)
    step = np.sqrt(sum(((p - q) ** 2).sum() for p, q in zip(net.get_weights(), before)))
    assert step == pytest.approx(c, rel=1e-9)
    scaled = [(dW * c / norm, db * c / norm) for dW, db in grads]
    assert np.allclose(net.layers[0].W, before[0] - scaled[0][0])


# ---------------------------------------------------------------------------- early stopping and callbacks
def test_early_stopping_restores_the_best_epoch():
    X, y = blobs(60)
    Xv, yv = blobs(40, seed=9)
    net = classifier()
    snapshots = {}

    class Keep(Callback):
        def on_epoch_end(self, epoch, logs):
            snapshots[epoch] = (logs["val_loss"], self.net.get_weights())

    history = net.fit(X, y, epochs=60, optimizer="adam", learning_rate=0.3, validation_data=(Xv, yv),
                      early_stopping=3, callbacks=[Keep()], verbose=False)
    assert "early stopping" in history.stop_reason
    best_epoch = int(np.argmin(history.val_loss)) + 1
    assert len(history.epochs) == best_epoch + 4  # patience 3: stops on the 4th epoch without improvement
    assert all(np.array_equal(p, q) for p, q in zip(net.get_weights(), snapshots[best_epoch][1]))
    assert net.loss(Xv, yv) == pytest.approx(min(history.val_loss), rel=1e-12)


def test_callbacks_can_stop_and_see_batches():
    X, y = blobs(50)
    seen = []

    class StopAtBatch(Callback):
        def on_batch_end(self, epoch, batch, loss):
            seen.append((epoch, batch))
            return epoch == 2 and batch == 3

    history = classifier().fit(X, y, epochs=5, batch_size=10, callbacks=[StopAtBatch()], verbose=False)
    assert seen[:5] == [(1, 1), (1, 2), (1, 3), (1, 4), (1, 5)] and seen[-1] == (2, 3)
    assert "StopAtBatch" in history.stop_reason and history.epochs == [1]
    epochs = []
    history = classifier().fit(X, y, epochs=5, callbacks=[lambda e, logs: epochs.append(e) or e == 3],
                               verbose=False)
    assert epochs == [1, 2, 3] and history.epochs == [1, 2, 3]


# ---------------------------------------------------------------------------- safety
def test_divergent_learning_rate_stops_with_message_and_finite_weights():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4)) * 100
    T = rng.normal(size=(40, 1)) * 100
    net = hg.MLP(4, [(8, "relu"), (1, "identity")], seed=0)
    with pytest.raises(TrainingError, match=r"epoch \d+, batch \d+"):
        net.fit(X, T, epochs=50, batch_size=8, learning_rate=10.0, verbose=False)
    assert all(np.isfinite(p).all() for _, p in net.parameters())


def test_ctrl_c_stops_after_the_batch_and_writes_the_checkpoint(tmp_path):
    X, y = blobs(50)
    path = tmp_path / "run.ckpt"

    class PressCtrlC(Callback):
        def on_batch_end(self, epoch, batch, loss):
            if epoch == 2 and batch == 2:
                signal.raise_signal(signal.SIGINT)

    net = classifier()
    history = net.fit(X, y, epochs=4, batch_size=10, callbacks=[PressCtrlC()], checkpoint=path, verbose=False)
    assert history.stop_reason.startswith("interrupted") and "epoch 2, batch 2" in history.stop_reason
    assert os.path.exists(path)
    # resuming from the mid-epoch checkpoint finishes bit-identical to a run never interrupted
    reference = classifier()
    reference.fit(X, y, epochs=4, batch_size=10, verbose=False)
    resumed = classifier(seed=123)
    resumed.fit(X, y, epochs=4, batch_size=10, resume=path, verbose=False)
    assert weights_equal(resumed, reference)


# ---------------------------------------------------------------------------- checkpoints and exact resume
def test_resume_is_bit_identical_with_dropout_adam_and_one_cycle(tmp_path):
    X, y = blobs(70)
    path = str(tmp_path / "ck.hgz")
    args = dict(epochs=4, batch_size=16, optimizer="adam", learning_rate=0.01, schedule="one_cycle",
                validation_split=0.2, seed=7, verbose=False)

    straight = classifier(dropout=0.3)
    full = straight.fit(X, y, **args)

    first = classifier(dropout=0.3)
    part = first.fit(X, y, checkpoint=path, callbacks=[lambda epoch, logs: epoch == 2], **args)
    assert part.epochs == [1, 2]
    assert not weights_equal(first, straight)

    again = classifier(dropout=0.3, seed=99)  # different initial weights: all state comes from the file
    history = again.fit(X, y, checkpoint=path, resume=path, **args)
    assert history.epochs == [1, 2, 3, 4]
    assert weights_equal(again, straight)
    assert history.loss == full.loss and history.val_loss == full.val_loss
    assert again.rng.bit_generator.state == straight.rng.bit_generator.state



def test_resume_gives_each_callback_the_state_of_its_own_kind(tmp_path):
    """Callback states are matched by type, not position: a run resumed without the extra callback the first
    part had (here a recorder placed before early stopping) still restores early stopping's best epoch and
    patience count, so it stops where an uninterrupted run stops."""
    from handgrad.callbacks import Callback, EarlyStopping

    class Recorder(Callback):
        def state_dict(self):
            return {"recorded": 1}

        def load_state_dict(self, d):
            raise AssertionError("a Recorder state must not reach another callback")

    X, y = blobs(70)
    path = str(tmp_path / "ck.hgz")
    args = dict(epochs=30, batch_size=16, optimizer="adam", learning_rate=0.05, validation_split=0.3, seed=3,
                verbose=False)
    straight = classifier()
    stopper = EarlyStopping(patience=2)
    full = straight.fit(X, y, early_stopping=stopper, **args)
    assert full.stop_reason.startswith("early stopping")

    first = classifier()
    first.fit(X, y, checkpoint=path, early_stopping=EarlyStopping(patience=2),
              callbacks=[Recorder(), lambda epoch, logs: epoch == stopper.best_epoch + 1], **args)
    again = classifier(seed=99)
    history = again.fit(X, y, checkpoint=path, resume=path, early_stopping=EarlyStopping(patience=2), **args)
    assert history.epochs == full.epochs and history.stop_reason == full.stop_reason
    assert weights_equal(again, straight)


def test_resume_true_starts_fresh_without_a_file_and_finished_runs_do_nothing(tmp_path):
    X, y = blobs(30)
    path = tmp_path / "ck"
    net = classifier()
    history = net.fit(X, y, epochs=2, checkpoint=path, resume=True, verbose=False)
    assert history.epochs == [1, 2]
    weights = net.get_weights()
    history = net.fit(X, y, epochs=2, checkpoint=path, resume=True, verbose=False)
    assert history.epochs == [1, 2]
    assert all(np.array_equal(a, b) for a, b in zip(weights, net.get_weights()))


def test_resume_errors(tmp_path):
    X, y = blobs(30)
    path = tmp_path / "ck"
    classifier().fit(X, y, epochs=1, batch_size=10, checkpoint=path, verbose=False)
    with pytest.raises(ConfigError, match="batch_size"):
        classifier().fit(X, y, epochs=2, batch_size=5, resume=path, verbose=False)
    with pytest.raises(ModelFileError):
        classifier().fit(X, y, epochs=2, resume=tmp_path / "missing", verbose=False)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad").write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        classifier().fit(X, y, epochs=2, batch_size=10, resume=tmp_path / "bad", verbose=False)


# ---------------------------------------------------------------------------- partial_fit
def test_partial_fit_keeps_optimizer_state_between_calls():
    X, y = blobs(40)
    streamed = classifier()
    partial_fit(streamed, X[:20], y[:20], batch_size=10, optimizer="adam", learning_rate=0.01)
    opt = streamed.training_state["optimizer"]
    assert isinstance(opt, Adam) and opt.t == 2
    partial_fit(streamed, X[20:], y[20:], batch_size=10)
    assert streamed.training_state["optimizer"] is opt and opt.t == 4
    # the same as one pass over all 40 in order with one Adam
    whole = classifier()
    whole.fit(X, y, epochs=1, batch_size=10, optimizer="adam", learning_rate=0.01, shuffle=False, verbose=False)
    assert weights_equal(streamed, whole)


# ---------------------------------------------------------------------------- the loop's mechanics
def test_last_short_batch_is_used_and_data_not_copied(monkeypatch):
    X, y = blobs(23)
    sizes = []
    net = classifier()
    original = net.backprop

    def spy(xb, tb, wb=None, training=True, observe=None):
        sizes.append(xb.shape[0])
        return original(xb, tb, wb, training, observe)

    monkeypatch.setattr(net, "backprop", spy)
    fit(net, X, y, epochs=2, batch_size=10, verbose=False)
    assert sizes == [10, 10, 3, 10, 10, 3]


def test_float32_training_stays_float32():
    X, y = blobs(40)
    net = classifier(dtype="float32")
    net.fit(X, y, epochs=2, optimizer="adamw", schedule="cosine", verbose=False)
    assert all(p.dtype == np.float32 for _, p in net.parameters())
    state = net.training_state["optimizer"].state
    assert state and all(a.dtype == np.float32 for a in state.values())
    assert net.grads.dtype == np.float32


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"])
def test_every_optimizer_trains(optimizer):
    X, y = blobs(80)
    net = classifier()
    rate = {"sgd": 0.3, "momentum": 0.1, "nesterov": 0.1}.get(optimizer, 0.01)
    history = net.fit(X, y, epochs=10, optimizer=optimizer, learning_rate=rate, verbose=False)
    assert history.loss[-1] < 0.8 * history.loss[0]


def test_verbose_true_prints_epoch_lines_when_not_a_terminal(capsys):
    X, y = blobs(20)
    classifier().fit(X, y, epochs=2, verbose=True)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err
    classifier().fit(X, y, epochs=2, verbose="auto")
    assert capsys.readouterr().err == ""


def test_bad_arguments_raise_clear_errors():
    X, y = blobs(20)
    net = classifier()
    with pytest.raises(ConfigError, match="epochs"):
        net.fit(X, y, epochs=0)
    with pytest.raises(ConfigError, match="validation_split"):
        net.fit(X, y, epochs=1, validation_split=1.5)
    with pytest.raises(ConfigError, match="Did you mean 'adam'"):
        net.fit(X, y, epochs=1, optimizer="adamm")
    with pytest.raises(ConfigError, match="metric"):
        net.fit(X, y, epochs=1, metrics=["f1"])
    with pytest.raises(DataError, match="validation_data"):
        net.fit(X, y, epochs=1, validation_data=X)
    with pytest.raises(ConfigError, match="class_weight"):
        net.fit(X, y, epochs=1, class_weight="even")
    with pytest.raises(ConfigError, match="early stopping patience"):
        EarlyStopping(-1)


def test_history_round_trips_through_a_dict():
    h = History()
    h.record(1, 0.5, loss=1.0, val_loss=2.0)
    h.stop_reason = "completed"
    again = History.from_dict(h.as_dict())
    assert again.loss == [1.0] and again.val_loss == [2.0] and again.seconds == [0.5]
    assert again.stop_reason == "completed"


# ---------------------------------------------------------------------------- the image recipe
def test_shifted_copies_moves_each_image_by_one_pixel():
    from handgrad.recipes import shifted_copies

    X = np.arange(2 * 12, dtype=np.float64).reshape(2, 12) + 1  # two 3x4 images, no zero pixel
    y = np.array([4, 7])
    X5, y5 = shifted_copies(X, y, (3, 4))
    assert X5.shape == (10, 12) and list(y5) == [4, 7] * 5
    images = X.reshape(2, 3, 4)
    down = X5[2:4].reshape(2, 3, 4)  # (dy, dx) = (1, 0): row r moves to row r + 1
    assert np.array_equal(down[:, 1:], images[:, :-1]) and not down[:, 0].any()
    left = X5[8:10].reshape(2, 3, 4)  # (0, -1): column c moves to c - 1
    assert np.array_equal(left[:, :, :-1], images[:, :, 1:]) and not left[:, :, -1].any()
    with pytest.raises(DataError, match="3x4"):
        shifted_copies(X[:, :5], y, (3, 4))


def test_image_recipe_runs_on_small_images():
    from handgrad.recipes import image_recipe, shifted_copies

    rng = np.random.default_rng(0)
    X = rng.random((40, 16))
    y = (X[:, :8].sum(axis=1) > X[:, 8:].sum(axis=1)).astype(int)
    recipe = image_recipe(2, epochs=2)
    net = hg.MLP(16, recipe["layers"], dropout=recipe["dropout"], dtype=recipe["dtype"], seed=0)
    history = net.fit(*shifted_copies(X, y, (4, 4)), verbose=False, **recipe["fit"])
    assert len(history.epochs) == 2 and np.isfinite(history.loss).all()
    assert recipe["fit"]["optimizer"] is not image_recipe(2)["fit"]["optimizer"]  # fresh state each call


def test_progress_bar_on_a_terminal(monkeypatch):
    pytest.importorskip("tqdm")
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    X, y = blobs(30)
    classifier().fit(X, y, epochs=2, batch_size=10, validation_split=0.2, verbose="auto")
    text = screen.getvalue()
    assert "epoch 2/2" in text and "val_accuracy" in text and "6/6" in text  # 2 epochs x 3 batches of 24
    screen.truncate(0)
    classifier().fit(X, y, epochs=2, verbose=False)
    assert screen.getvalue().strip("\x00") == ""


def test_l1_l2_gradients_by_finite_differences():
    X, y = blobs(10)
    net = classifier(l2=0.05, l1=0.02)
    assert hg.gradcheck(net, X, y).max_error < 1e-6


def test_a_failed_checkpoint_write_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    import handgrad.io as hio
    from handgrad.checkpoints import read_checkpoint

    X, y = blobs(30)
    path = tmp_path / "ck"
    calls = []
    real = hio.encode_archive

    def crash_on_second_write(arrays, metadata):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(arrays, metadata)

    monkeypatch.setattr(hio, "encode_archive", crash_on_second_write)
    with pytest.raises(OSError, match="disk full"):
        classifier().fit(X, y, epochs=3, batch_size=10, checkpoint=path, verbose=False)
    state = read_checkpoint(path)
    assert state["epochs_done"] == 1 and state["history"]["epoch"] == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temporary file left behind


def test_sgd_with_the_learning_rate_folded_into_backward_equals_the_plain_rule():
    # fit folds eta into dZ_L for plain SGD (the gradient of eta*J); the weights must be those of
    # W <- W - eta dJ/dW computed step by step from loss_and_grad, in order, batch by batch.
    X, y = blobs(30)
    net = hg.MLP(X.shape[1], [(5, "tanh"), (int(y.max()) + 1, "softmax")], l2=0.01, seed=3)
    manual = net.copy()
    net.fit(X, y, epochs=2, batch_size=8, learning_rate=0.2, shuffle=False, verbose=False)
    for _ in range(2):
        for start in range(0, 30, 8):
            _, grads = manual.loss_and_grad(X[start:start + 8], y[start:start + 8])
            for layer, (dW, db) in zip(manual.layers, grads):
                layer.W -= 0.2 * dW
                layer.b -= 0.2 * db
    for (name, a), (_, b) in zip(net.parameters(), manual.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=name)


class _GradientWitness(Callback):
    """After every batch, compares what a user can read (each layer's dW and db, and net.grads) with
    loss_and_grad on that batch at the weights the step started from (shuffle=False: batch b is a slice)."""

    def __init__(self, X, y, w, batch_size):
        self.X, self.y, self.w, self.batch_size, self.compared = X, y, w, batch_size, 0

    def on_train_begin(self, net):
        super().on_train_begin(net)
        self.start = net.params.copy()

    def on_batch_end(self, epoch, batch, loss):
        net, rows = self.net, slice((batch - 1) * self.batch_size, batch * self.batch_size)
        probe = net.copy()
        probe.params[...] = self.start  # the weights this step started from
        J, expected = probe.loss_and_grad(self.X[rows], self.y[rows], None if self.w is None else self.w[rows])
        tolerance = 1e-12 if net.dtype == np.float64 else 1e-6
        assert loss == pytest.approx(J, rel=tolerance)
        for layer, (dW, db) in zip(net.layers, expected):
            np.testing.assert_allclose(layer.dW, dW, rtol=tolerance, atol=tolerance)
            np.testing.assert_allclose(layer.db, db, rtol=tolerance, atol=tolerance)
        flat = probe.grads.copy()  # the same gradient, laid out as theta
        np.testing.assert_allclose(net.grads, flat, rtol=tolerance, atol=tolerance)
        assert not np.array_equal(net.params, self.start)  # a step was taken, and it did not touch the gradient
        self.start = net.params.copy()
        self.compared += 1


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"])
def test_every_layer_shows_the_true_gradient_after_every_batch(optimizer, dtype):
    X, y = blobs(30)
    X = X.astype(dtype)
    w = np.random.default_rng(5).uniform(0.5, 2.0, size=30)
    net = hg.MLP(4, [(6, "relu"), (5, "leaky_relu"), (3, "softmax")], seed=3, l2=0.05, l1=0.01, dtype=dtype)
    witness = _GradientWitness(X, y, w, batch_size=8)
    net.fit(X, y, epochs=2, batch_size=8, optimizer=optimizer, learning_rate=0.05, sample_weight=w, shuffle=False,
            callbacks=[witness], verbose=False)
    assert witness.compared == 8  # 4 batches (8, 8, 8, 6) in each of 2 epochs


def test_clipping_scales_what_the_optimizer_sees_not_the_gradient():
    X, y = blobs(16)
    net = hg.MLP(4, [(8, "relu"), (3, "softmax")], seed=0)
    before = net.params.copy()
    J0, _ = net.copy().loss_and_grad(X, y)
    J = train_step(net, hg.optimizers.SGD(), net.check_inputs(X), net.check_targets(y, 16), None, 0.1,
                   clip_norm=1e-3, work=np.empty_like(net.params))
    probe = net.copy()
    probe.params[...] = before
    probe.loss_and_grad(X, y)
    assert J == pytest.approx(J0, rel=1e-12)
    np.testing.assert_allclose(net.grads, probe.grads, rtol=1e-12)  # net.grads kept the unclipped gradient
    assert np.linalg.norm(probe.grads) > 1e-3  # so clipping acted: the step is eta * c * g / ||g||
    np.testing.assert_allclose(before - net.params, 0.1 * 1e-3 * probe.grads / np.linalg.norm(probe.grads),
                               rtol=1e-9, atol=1e-15)


def test_a_non_finite_loss_takes_no_step():
    X, y = blobs(16)
    net = hg.MLP(4, [(8, "relu"), (3, "softmax")], seed=0)
    before = net.params.copy()
    X_bad = X.copy()
    X_bad[3] = 1e308  # finite input, but the products overflow and J is not finite
    with np.errstate(all="ignore"):
        J = train_step(net, hg.optimizers.SGD(), net.check_inputs(X_bad), net.check_targets(y, 16), None, 0.1)
    assert not np.isfinite(J)
    assert np.array_equal(net.params, before)


def test_layer_arrays_are_views_into_the_parameter_and_gradient_vectors():
    net = hg.MLP(3, [(4, "tanh"), (2, "identity")], loss="mse", seed=0)
    for name, offset, shape in net.layout:
        k, kind = int(name[1:]) - 1, name[0]
        layer = net.layers[k]
        value, gradient = (layer.W, layer.dW) if kind == "W" else (layer.b, layer.db)
        assert value.shape == shape and np.shares_memory(value, net.params) and np.shares_memory(gradient, net.grads)
        size = int(np.prod(shape))
        np.testing.assert_array_equal(value.ravel(), net.params[offset:offset + size])
    assert [name for name, _, _ in net.layout] == ["W1", "W2", "b1", "b2"]  # weights first: one penalized slice
    assert net.n_weights == 3 * 4 + 4 * 2
    net.params[0] = 42.0
    assert net.layers[0].W[0, 0] == 42.0

