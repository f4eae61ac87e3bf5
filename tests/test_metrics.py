"""handgrad.metrics against scikit-learn's definitions, with and without sample weights."""

import numpy as np
import pytest

from handgrad import metrics
from handgrad.errors import ConfigError, DataError

sk = pytest.importorskip("sklearn.metrics")

RNG = np.random.default_rng(12)
WEIGHTS = [None, RNG.uniform(0.1, 3.0, size=40)]


@pytest.mark.parametrize("w", WEIGHTS, ids=["unweighted", "weighted"])
def test_accuracy_matches_sklearn(w):
    y = RNG.integers(0, 4, 40)
    p = np.where(RNG.random(40) < 0.6, y, RNG.integers(0, 4, 40))
    assert metrics.accuracy(y, p, sample_weight=w) == pytest.approx(sk.accuracy_score(y, p, sample_weight=w),
                                                                    abs=1e-15)
    assert 0 < metrics.accuracy(y, p, sample_weight=w) < 1


@pytest.mark.parametrize("w", WEIGHTS, ids=["unweighted", "weighted"])
def test_subset_accuracy_of_label_rows_and_string_labels_match_sklearn(w):
    Y = RNG.integers(0, 2, (40, 3))
    P = Y.copy()
    P[RNG.random(40) < 0.3, 1] ^= 1  # a row with one wrong label is wrong as a whole
    ours = metrics.accuracy(Y, P, sample_weight=w)
    assert ours == pytest.approx(sk.accuracy_score(Y, P, sample_weight=w), abs=1e-15)
    assert ours < np.average(Y == P) < 1
    names = np.array(["cat", "dog", "eel"])
    y, p = names[Y[:, 0]], names[P[:, 1]]
    assert metrics.accuracy(y, p, w) == pytest.approx(sk.accuracy_score(y, p, sample_weight=w), abs=1e-15)


@pytest.mark.parametrize("w", WEIGHTS, ids=["unweighted", "weighted"])
@pytest.mark.parametrize("k", [1, 3])
def test_regression_metrics_match_sklearn(w, k):
    T = RNG.normal(size=(40, k)) * np.arange(1, k + 1)  # outputs of different scales: the averaging matters
    A = T + RNG.normal(size=(40, k))
    ours = (metrics.mean_squared_error(T, A, w), metrics.mean_absolute_error(T, A, w), metrics.r2_score(T, A, w))
    theirs = (sk.mean_squared_error(T, A, sample_weight=w), sk.mean_absolute_error(T, A, sample_weight=w),
              sk.r2_score(T, A, sample_weight=w))
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-14)


def test_r2_averages_per_output_not_pooled():
    T = np.column_stack([np.linspace(0, 1, 20), 100 * np.linspace(-1, 1, 20)])
    A = T + np.column_stack([np.full(20, 0.3), np.full(20, 0.3)])
    pooled = 1 - np.sum((T - A) ** 2) / np.sum((T - T.mean(axis=0)) ** 2)
    r2 = metrics.r2_score(T, A)
    assert r2 == pytest.approx(sk.r2_score(T, A), abs=1e-14)
    assert abs(r2 - pooled) > 0.1


@pytest.mark.parametrize("w", WEIGHTS[:1] + [np.linspace(0.5, 2.0, 6)], ids=["unweighted", "weighted"])
def test_r2_constant_targets(w):
    T = np.column_stack([np.full(6, 2.0), np.arange(6.0)])
    exact = T.copy()
    exact[:, 1] += 0.5
    off = exact.copy()
    off[0, 0] = 2.5
    for A in (exact, off):
        assert metrics.r2_score(T, A, w) == pytest.approx(sk.r2_score(T, A, sample_weight=w), abs=1e-14)
    # constant column predicted exactly: 1.0; missed: 0.0 (never NaN or -inf)
    assert metrics.r2_score(T[:, :1], exact[:, :1], w) == 1.0
    assert metrics.r2_score(T[:, :1], off[:, :1], w) == 0.0


def test_r2_of_one_sample_is_nan_as_in_sklearn():
    assert np.isnan(metrics.r2_score([1.0], [2.0]))


@pytest.mark.parametrize("w", [None, RNG.integers(1, 4, 50), RNG.uniform(0.1, 2.0, 50)],
                         ids=["unweighted", "integer weights", "float weights"])
def test_confusion_matrix_matches_sklearn(w):
    y = RNG.integers(0, 3, 50)
    p = RNG.integers(0, 3, 50)
    ours = metrics.confusion_matrix(y, p, 4, sample_weight=w)  # class 3 never occurs: a row and column of zeros
    theirs = sk.confusion_matrix(y, p, labels=range(4), sample_weight=w)
    assert ours.shape == (4, 4)
    np.testing.assert_allclose(ours, theirs, rtol=1e-14)
    if w is None:
        assert ours.dtype == np.int64 and ours.sum() == 50


def test_compute_softmax_and_sigmoid_accuracy():
    T = np.eye(3)[[0, 1, 2, 1]]
    A = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    assert metrics.compute(["accuracy"], A, T, "softmax") == {"accuracy": 0.5}
    T = np.array([[1.0, 0.0], [0.0, 0.0]])
    A = np.array([[0.9, 0.6], [0.2, 0.4]])  # entry by entry: 3 of 4 right
    assert metrics.compute(["accuracy"], A, T, "sigmoid") == {"accuracy": 0.75}


def test_compute_regression_and_defaults():
    T = RNG.normal(size=(30, 2))
    A = T + 0.1 * RNG.normal(size=(30, 2))
    names = metrics.default_metrics(False)
    assert names == ["mse", "mae", "r2"] and metrics.default_metrics(True) == ["accuracy"]
    result = metrics.compute(names, A, T, "identity")
    assert list(result) == names
    assert result["r2"] == pytest.approx(sk.r2_score(T, A), abs=1e-14)
    assert result["mse"] == pytest.approx(sk.mean_squared_error(T, A), abs=1e-15)


def test_compute_refuses_accuracy_of_a_regressor_and_unknown_names():
    T = np.zeros((3, 1))
    with pytest.raises(ConfigError, match="accuracy needs a classifier"):
        metrics.compute(["accuracy"], T, T, "identity")
    with pytest.raises(ConfigError, match="accuracy, mse, mae, r2"):
        metrics.compute(["mse", "rmse"], T, T, "identity")


def test_bad_shapes_and_weights_are_data_errors():
    with pytest.raises(DataError, match="do not match"):
        metrics.mean_squared_error(np.zeros((4, 2)), np.zeros((4, 1)))
    with pytest.raises(DataError, match="sample_weight must have shape"):
        metrics.mean_absolute_error(np.zeros(4), np.zeros(4), sample_weight=np.ones(3))
    with pytest.raises(DataError, match="not all zero"):
        metrics.accuracy([0, 1], [0, 1], sample_weight=[0.0, 0.0])
    with pytest.raises(DataError, match="out of range"):
        metrics.confusion_matrix([0, 3], [0, 1], n_classes=3)
