"""Accuracy, MSE, MAE, R^2 and the confusion matrix: one definition each.

The trainer (validation metrics), the CLI (``handgrad evaluate``) and the scikit-learn
estimators all call these functions, so a figure means the same thing wherever it is
printed. Each definition is scikit-learn's (``sklearn.metrics``), and tests/test_metrics.py
checks them against it, sample weights included:

    accuracy          sum_n w_n [y_n == p_n] / sum_n w_n   (a multilabel row counts when all of it matches)
    mse               1/K sum_k  sum_n w_n (t_nk - a_nk)^2 / sum_n w_n
    mae               1/K sum_k  sum_n w_n |t_nk - a_nk|   / sum_n w_n
    r2                1/K sum_k  (1 - SS_res,k / SS_tot,k)
    confusion_matrix  C[i, j] = sum of w_n over the samples of true class i predicted as class j

with ``w_n = 1`` when no weights are given. Targets and outputs are ``(N, K)`` arrays
(1-D arrays are one output). Nothing here does calculus; these only count and average.
"""

import numpy as np

from .errors import ConfigError, DataError

METRICS = ("accuracy", "mse", "mae", "r2")


# ---------------------------------------------------------------------------- argument checks
def _pair(y_true, y_pred, name):
    """Both arrays as float64 (N, K), or a DataError naming the metric and the shapes."""
    T = np.asarray(y_true, dtype=np.float64)
    A = np.asarray(y_pred, dtype=np.float64)
    T = T.reshape(len(T), 1) if T.ndim == 1 else T
    A = A.reshape(len(A), 1) if A.ndim == 1 else A
    if T.ndim != 2 or T.shape != A.shape:
        raise DataError(f"{name}: targets of shape {np.shape(y_true)} and predictions of shape {np.shape(y_pred)} "
                        "do not match; give one prediction per target, (N,) or (N, K) both.")
    if T.shape[0] == 0:
        raise DataError(f"{name} of no samples is undefined; give at least one sample.")
    return T, A


def _weights(sample_weight, n_samples, name):
    """None, or the weights as a float64 (N,) array: finite, >= 0, with a positive sum."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n_samples,):
        raise DataError(f"{name}: sample_weight must have shape ({n_samples},), one weight per sample, "
                        f"got {w.shape}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise DataError(f"{name}: sample weights must be finite, >= 0 and not all zero.")
    return w


def _labels(y, name):
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise DataError(f"{name} counts class ids: give 1-D arrays of labels, got shape {labels.shape}.")
    return labels


# ---------------------------------------------------------------------------- the definitions
def accuracy(y_true, y_pred, sample_weight=None):
    """The (weighted) fraction of samples whose predicted label equals the true one.

    accuracy = sum_n w_n [y_n == p_n] / sum_n w_n, for labels of shape (N,); for label rows
    of shape (N, K) (multilabel indicators) a sample counts only when its whole row matches
    (``sklearn.metrics.accuracy_score``, subset accuracy).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim not in (1, 2) or y_true.shape != y_pred.shape or len(y_true) == 0:
        raise DataError(f"accuracy needs one predicted label per true label, (N,) or (N, K) both with N >= 1; got "
                        f"predictions of shape {y_pred.shape} for labels of shape {y_true.shape}.")
    correct = y_true == y_pred
    if correct.ndim == 2:
        correct = correct.all(axis=1)
    w = _weights(sample_weight, len(y_true), "accuracy")
    return float(np.average(correct, weights=w))


def mean_squared_error(y_true, y_pred, sample_weight=None):
    """Mean squared error, averaged uniformly over the K outputs.

    mse = 1/K sum_k sum_n w_n (t_nk - a_nk)^2 / sum_n w_n  (``sklearn.metrics.mean_squared_error``).
    """
    T, A = _pair(y_true, y_pred, "mse")
    w = _weights(sample_weight, len(T), "mse")
    return float(np.mean(np.average((T - A) ** 2, axis=0, weights=w)))


def mean_absolute_error(y_true, y_pred, sample_weight=None):
    """Mean absolute error, averaged uniformly over the K outputs.

    mae = 1/K sum_k sum_n w_n |t_nk - a_nk| / sum_n w_n  (``sklearn.metrics.mean_absolute_error``).
    """
    T, A = _pair(y_true, y_pred, "mae")
    w = _weights(sample_weight, len(T), "mae")
    return float(np.mean(np.average(np.abs(T - A), axis=0, weights=w)))


def r2_score(y_true, y_pred, sample_weight=None):
    """The coefficient of determination, per output, averaged uniformly over the K outputs.

    r2_k = 1 - SS_res,k / SS_tot,k  with  SS_res,k = sum_n w_n (t_nk - a_nk)^2,
    SS_tot,k = sum_n w_n (t_nk - tbar_k)^2 and tbar_k the (weighted) mean of column k;
    r2 = 1/K sum_k r2_k. A constant target column (SS_tot,k = 0) scores 1.0 when it is
    predicted exactly and 0.0 otherwise, never NaN or -inf. With fewer than two samples R^2
    is undefined: NaN. This is ``sklearn.metrics.r2_score`` (``force_finite=True``).
    """
    T, A = _pair(y_true, y_pred, "r2")
    if len(T) < 2:
        return float("nan")
    w = _weights(sample_weight, len(T), "r2")
    weight = 1.0 if w is None else w[:, None]
    residual = np.sum(weight * (T - A) ** 2, axis=0)
    spread = np.sum(weight * (T - np.average(T, axis=0, weights=w)) ** 2, axis=0)
    scores = np.ones(T.shape[1])
    defined = (spread != 0) & (residual != 0)
    scores[defined] = 1.0 - residual[defined] / spread[defined]
    scores[(residual != 0) & (spread == 0)] = 0.0
    return float(np.mean(scores))


def confusion_matrix(y_true, y_pred, n_classes=None, sample_weight=None):
    """C[i, j] = the number (or total weight) of samples of true class i predicted as class j.

    Labels are class ids 0..n_classes-1 (``n_classes`` defaults to the largest id + 1).
    Integer counts without weights; float sums with non-integer weights
    (``sklearn.metrics.confusion_matrix(labels=range(n_classes))``).
    """
    y_true, y_pred = _labels(y_true, "confusion_matrix"), _labels(y_pred, "confusion_matrix")
    if y_true.shape != y_pred.shape:
        raise DataError(f"confusion_matrix needs as many predictions as labels, got {y_pred.shape[0]} predictions "
                        f"for {y_true.shape[0]} labels.")
    for labels in (y_true, y_pred):
        if labels.size and (labels.dtype.kind not in "iub" or labels.min() < 0):
            raise DataError("confusion_matrix needs class ids 0, 1, 2, ... (non-negative integers).")
    ids_true, ids_pred = y_true.astype(np.int64), y_pred.astype(np.int64)
    largest = int(max(ids_true.max(initial=-1), ids_pred.max(initial=-1)))
    n_classes = largest + 1 if n_classes is None else int(n_classes)
    if largest >= n_classes:
        raise DataError(f"class id {largest} is out of range for a {n_classes}-class confusion matrix.")
    w = _weights(sample_weight, len(ids_true), "confusion_matrix") if len(ids_true) else None
    integer = w is None or np.all(w == np.round(w))
    matrix = np.zeros((n_classes, n_classes), np.int64 if integer else np.float64)
    np.add.at(matrix, (ids_true, ids_pred), 1 if w is None else w.astype(matrix.dtype))
    return matrix


# ---------------------------------------------------------------------------- on a network's outputs
def default_metrics(is_classifier):
    """The metrics reported when none are asked for: accuracy for classifiers, else mse, mae and r2."""
    return ["accuracy"] if is_classifier else ["mse", "mae", "r2"]


def check_names(names):
    """``names`` as a list, or a ConfigError naming the unknown one and the valid ones."""
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        if name not in METRICS:
            raise ConfigError(f"unknown metric {name!r}; the metrics are {', '.join(METRICS)}.")
    return names


def classifier_accuracy(A, T, output_activation):
    """Accuracy from a classifier's outputs A and its (one-hot or 0/1) targets T, both (N, K).

    'softmax': the argmax class of each row of A against that of T. 'sigmoid': each
    output on its own, (A >= 0.5) == (T >= 0.5), averaged over all N*K entries.
    """
    if output_activation == "softmax":
        return accuracy(np.asarray(T).argmax(axis=1), np.asarray(A).argmax(axis=1))
    if output_activation == "sigmoid":
        return accuracy(np.ravel(np.asarray(T) >= 0.5), np.ravel(np.asarray(A) >= 0.5))
    raise ConfigError("accuracy needs a classifier (softmax or sigmoid output); use mse, mae or r2.")


def compute(names, A, T, output_activation):
    """{name: value} for the metrics ``names`` (from :data:`METRICS`) of outputs A against targets T.

    A is the network's output (N, K) and T the checked targets (N, K), one-hot rows for a
    softmax output; ``output_activation`` is the output activation's name, which decides
    what accuracy compares (see :func:`classifier_accuracy`).
    """
    functions = {"mse": mean_squared_error, "mae": mean_absolute_error, "r2": r2_score}
    results = {}
    for name in check_names(names):
        if name == "accuracy":
            results[name] = classifier_accuracy(A, T, output_activation)
        else:
            results[name] = functions[name](T, A)
    return results
