"""scikit-learn estimators built on handgrad: ``MLPClassifier`` and ``MLPRegressor``.

They follow the constructor of ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` (same names,
same defaults, same meaning), so one can replace the other in a Pipeline or a grid search::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from handgrad.sklearn import MLPClassifier

    model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), random_state=0))
    model.fit(X_train, y_train).score(X_test, y_test)

Training runs on handgrad's engine: a :class:`handgrad.MLP` (``self.net_``) is trained one epoch at a
time by :func:`handgrad.training.fit` with one optimizer object kept across epochs (and across
``partial_fit`` calls), and scikit-learn's stopping rules are applied between epochs.

How scikit-learn's objective maps onto handgrad's (docs/ecosystem.md, "alpha and l2"):

    scikit-learn, per mini-batch B:  J = [sum_B w_i l_i + (alpha/2) sum_k ||W_k||^2] / sum_B w_i
    handgrad,     per mini-batch B:  J = (1/|B|) sum_B w'_i l_i + (l2/2) sum_k ||W_k||^2

With the weights rescaled to mean 1 over the training set (w'_i = w_i N / sum w) the two agree when
``l2 = alpha / (|B| * mean(w))``, i.e. ``l2 = alpha / batch_size`` without sample weights. This is exact
for every full batch (and so for full-batch training, batch_size >= n_samples); the shorter last batch
of an epoch gets the penalty of a full one. Losses: log-loss is handgrad's cross_entropy (softmax
outputs) or binary_cross_entropy (sigmoid outputs); squared error is handgrad's half_squared_error,
l_i = 1/2 ||y_hat_i - y_i||^2, whose gradient is scikit-learn's (scikit-learn reports its loss divided
by the number of outputs as well, so ``loss_curve_`` differs by that factor for multi-output regression).

Differences from scikit-learn: solvers are 'sgd' and 'adam' (plus handgrad's 'adamw' and 'rmsprop');
'lbfgs' is not available. Weights start from handgrad's initialization (He for the ReLU family, Glorot
otherwise; biases 0). Sparse inputs are accepted and converted to dense arrays (the whole
matrix: mind the memory for very wide data).
"""

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d

from . import metrics
from .errors import ConfigError, DataError
from .network import MLP
from .optimizers import SGD, Adam, AdamW, Momentum, Nesterov, RMSprop

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # older releases: the estimator method
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

__all__ = ["MLPClassifier", "MLPRegressor"]

_SOLVERS = ("sgd", "adam", "adamw", "rmsprop")
_LEARNING_RATES = ("constant", "invscaling", "adaptive")


def _check_number(name, value, low=None, high=None, integer=False, low_open=False, high_open=False):
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not np.isfinite(value):
        raise ConfigError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}.")
    too_low = low is not None and (value < low or (low_open and value == low))
    too_high = high is not None and (value > high or (high_open and value == high))
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low}, {'inf' if high is None else high}{')' if high_open else ']'}"
        raise ConfigError(f"{name} must be in {interval}, got {value!r}.")
    return value


def _dense(X):
    """A sparse matrix as a dense array: handgrad's layers multiply dense arrays (memory grows to N x n_features)."""
    return X.toarray() if hasattr(X, "toarray") else X


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, the network, the epoch loop."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, dtype=None, init="auto"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.init = init

    # ------------------------------------------------------------------ scikit-learn views of the network
    @property
    def coefs_(self):
        """[W1, W2, ...]: the weight matrices (n_in, n_out), as scikit-learn names them (the arrays themselves)."""
        check_is_fitted(self)
        return [layer.W for layer in self.net_.layers]

    @property
    def intercepts_(self):
        """[b1, b2, ...]: the bias vectors (zeros when the network has none)."""
        check_is_fitted(self)
        return [layer.b if layer.b is not None else np.zeros(layer.n_out, layer.W.dtype) for layer in self.net_.layers]

    # ------------------------------------------------------------------ checks
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        for size in sizes:
            _check_number("each of hidden_layer_sizes", size, low=1, integer=True)
        return [int(size) for size in sizes]

    def _check_params(self):
        if self.solver == "lbfgs":
            raise ConfigError("solver='lbfgs' is not available in handgrad; use 'adam' (the default) or 'sgd'.")
        if self.solver not in _SOLVERS:
            raise ConfigError(f"solver must be one of {', '.join(_SOLVERS)}, got {self.solver!r}.")
        if self.learning_rate not in _LEARNING_RATES:
            raise ConfigError(f"learning_rate must be one of {', '.join(_LEARNING_RATES)}, got {self.learning_rate!r}.")
        if isinstance(self.activation, str) and self.activation.lower() == "softmax":
            raise ConfigError("activation='softmax' is an output activation; choose relu, tanh, logistic, identity...")
        _check_number("alpha", self.alpha, low=0)
        _check_number("learning_rate_init", self.learning_rate_init, low=0, low_open=True)
        _check_number("power_t", self.power_t, low=0)
        _check_number("max_iter", self.max_iter, low=1, integer=True)
        _check_number("tol", self.tol, low=0)
        _check_number("momentum", self.momentum, low=0, high=1)
        _check_number("validation_fraction", self.validation_fraction, low=0, high=1, high_open=True)
        _check_number("beta_1", self.beta_1, low=0, high=1, high_open=True)
        _check_number("beta_2", self.beta_2, low=0, high=1, high_open=True)
        _check_number("epsilon", self.epsilon, low=0, low_open=True)
        _check_number("n_iter_no_change", self.n_iter_no_change, low=1, integer=True)
        if self.batch_size != "auto":
            _check_number("batch_size", self.batch_size, low=1, integer=True)
        if self.dtype not in (None, "float32", "float64", np.float32, np.float64):
            raise ConfigError(f"dtype must be None (follow X), 'float32' or 'float64', got {self.dtype!r}.")

    def _make_optimizer(self):
        if self.solver == "adam":
            return Adam(self.beta_1, self.beta_2, self.epsilon)
        if self.solver == "adamw":
            return AdamW(self.beta_1, self.beta_2, self.epsilon)
        if self.solver == "rmsprop":
            return RMSprop(eps=self.epsilon)
        if self.momentum > 0:
            return Nesterov(self.momentum) if self.nesterovs_momentum else Momentum(self.momentum)
        return SGD()

    # ------------------------------------------------------------------ training
    def _validate_X_y(self, X, y, reset):
        dtype = [np.float64, np.float32] if self.dtype is None else np.dtype(self.dtype)
        X, y = _validate_data(self, X, y, reset=reset, dtype=dtype, multi_output=True, y_numeric=not self._is_clf,
                              accept_sparse=True)
        return _dense(X), y

    def _validate_X(self, X):
        return _dense(_validate_data(self, X, reset=False, dtype=[np.float64, np.float32], accept_sparse=True))

    @staticmethod
    def _checked_sample_weight(sample_weight, n_samples):
        if sample_weight is None:
            return None
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if sample_weight.ndim == 0:
            sample_weight = np.full(n_samples, float(sample_weight))
        if sample_weight.shape != (n_samples,):
            raise DataError(f"sample_weight must have shape ({n_samples},), got {sample_weight.shape}.")
        if not np.isfinite(sample_weight).all() or (sample_weight < 0).any():
            raise DataError("sample_weight must be finite and >= 0.")
        if sample_weight.sum() <= 0:
            raise DataError("sample_weight sums to zero: at least one sample needs a positive weight.")
        return sample_weight

    def _initialize(self, n_features, Y, dtype):
        """A new network and fresh training state (a first fit, or a fit without warm_start)."""
        self._random_state = check_random_state(self.random_state)
        seed = int(self._random_state.randint(np.iinfo(np.int32).max))
        layers = [(size, self.activation) for size in self._hidden_sizes()] + [self._output_layer(Y)]
        self.net_ = MLP(n_features, layers, loss=self._loss_name(), seed=seed, init=self.init,
                        dtype=np.dtype(dtype if self.dtype is None else self.dtype).name)
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(layers) + 1
        self.out_activation_ = {"sigmoid": "logistic"}.get(self.net_.output_activation.name,
                                                           self.net_.output_activation.name)
        self._optimizer = self._make_optimizer()
        self._learning_rate_now = float(self.learning_rate_init)
        self.n_iter_, self.t_ = 0, 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self.best_loss_ = np.inf
        self.validation_scores_ = None
        self.best_validation_score_ = None

    def _validation_split(self, X, Y, y, sample_weight):
        """(X, Y, sample_weight) to train on and (X_val, y_val, w_val) to score, as scikit-learn splits them."""
        stratify = y if self._is_clf and not self._multilabel else None
        arrays = [X, Y, y] + ([sample_weight] if sample_weight is not None else [])
        parts = train_test_split(*arrays, random_state=self._random_state, test_size=self.validation_fraction,
                                 stratify=stratify)
        X, X_val, Y, _, _, y_val = parts[:6]
        w_val = None
        if sample_weight is not None:
            sample_weight, w_val = parts[6], parts[7]
        if X.shape[0] < 2 or X_val.shape[0] < 2:
            raise DataError(f"early_stopping with validation_fraction={self.validation_fraction} leaves too few "
                            f"samples ({X.shape[0]} for training, {X_val.shape[0]} for validation).")
        self.validation_scores_ = self.validation_scores_ or []
        if self.best_validation_score_ is None:
            self.best_validation_score_ = -np.inf
        return (X, Y, sample_weight), (X_val, y_val, w_val)

    def _count_no_improvement(self, validation):
        """scikit-learn's rule: count epochs that improve the monitored number by less than tol. Returns the
        network's weights when the validation score is the best so far, else None."""
        if validation is None:
            loss = self.loss_curve_[-1]
            self._no_improvement_count = self._no_improvement_count + 1 if loss > self.best_loss_ - self.tol else 0
            self.best_loss_ = min(self.best_loss_, loss)
            return None
        score = self._validation_score(*validation)
        self.validation_scores_.append(score)
        if self.verbose:
            print(f"Validation score: {score:f}")
        self._no_improvement_count = (self._no_improvement_count + 1
                                      if score < self.best_validation_score_ + self.tol else 0)
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            return self.net_.get_weights()
        return None

    def _should_stop(self, early_stopping):
        """After an epoch: adapt the learning rate (invscaling, adaptive) and say whether training stops."""
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._learning_rate_now = float(self.learning_rate_init) / (self.t_ + 1) ** float(self.power_t)
        if self._no_improvement_count <= self.n_iter_no_change:
            return False
        if self.solver == "sgd" and self.learning_rate == "adaptive" and self._learning_rate_now > 1e-6:
            self._learning_rate_now /= 5.0
            self._no_improvement_count = 0
            if self.verbose:
                print(f"Setting learning rate to {self._learning_rate_now:f}")
            return False
        if self.verbose:
            what = "Validation score" if early_stopping else "Training loss"
            print(f"{what} did not improve more than tol={self.tol} for {self.n_iter_no_change} consecutive "
                  "epochs. Stopping.")
        return True

    def _fit(self, X, y, sample_weight, incremental):
        """Shared by fit and partial_fit. X, y are validated; y is what _encode turns into network targets."""
        self._check_params()
        Y = self._encode(y)  # (N, n_outputs) float targets
        sample_weight = self._checked_sample_weight(sample_weight, X.shape[0])
        if not (incremental or self.warm_start) or not hasattr(self, "net_"):
            self._initialize(X.shape[1], Y, X.dtype)
        elif Y.shape[1] != self.n_outputs_:
            raise DataError(f"y has {Y.shape[1]} outputs but the estimator was fitted with {self.n_outputs_}.")
        net = self.net_
        X = np.ascontiguousarray(X, dtype=net.dtype)
        Y = np.ascontiguousarray(Y, dtype=net.dtype)
        early_stopping = bool(self.early_stopping) and not incremental
        validation = best_weights = None
        if early_stopping:
            (X, Y, sample_weight), validation = self._validation_split(X, Y, y, sample_weight)
        N = X.shape[0]
        batch_size = min(200, N) if self.batch_size == "auto" else min(int(self.batch_size), N)
        weights = None
        if sample_weight is not None:
            mean = float(sample_weight.mean())
            weights = (sample_weight / mean).astype(net.dtype)  # mean 1 (see the module docstring)
            net.l2 = float(self.alpha) / (batch_size * mean)
        else:
            net.l2 = float(self.alpha) / batch_size

        for _ in range(1 if incremental else int(self.max_iter)):
            history = net.fit(X, Y, epochs=1, batch_size=batch_size, optimizer=self._optimizer,
                              learning_rate=self._learning_rate_now, shuffle=bool(self.shuffle),
                              seed=int(self._random_state.randint(np.iinfo(np.int32).max)),
                              sample_weight=weights, verbose=False)
            self.n_iter_ += 1
            self.t_ += N
            self.loss_curve_.append(float(history.loss[0]))
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_curve_[-1]:.8f}")
            best_weights = self._count_no_improvement(validation) or best_weights
            if self._should_stop(early_stopping) or incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                              "optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        if best_weights is not None:
            net.set_weights(best_weights)
        for layer in net.layers:  # work buffers are rebuilt on demand; no need to keep (or pickle) them
            layer.clear_buffers()
        return self

    def _forward(self, X):
        check_is_fitted(self)
        X = self._validate_X(X)
        return self.net_.forward(np.asarray(X, dtype=self.net_.dtype))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # accepted, and made dense
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier: log-loss, trained by handgrad's hand-written backpropagation.

    Outputs: one sigmoid unit for two classes (binary cross-entropy), K softmax units for K > 2
    classes (cross-entropy), K sigmoid units for a multilabel indicator matrix y (binary
    cross-entropy per label). Labels may be any sortable values (strings, non-contiguous ints);
    ``classes_`` holds them in sorted order and ``predict_proba`` has one column per class.

    Parameters are those of ``sklearn.neural_network.MLPClassifier`` (same defaults), plus
    ``dtype`` (None: float32 inputs train in float32, anything else in float64) and ``init``
    (handgrad's 'auto', 'he', 'glorot', 'lecun'). ``alpha`` becomes handgrad's ``l2`` as the module
    docstring explains.

    Attributes: classes_, n_features_in_, n_outputs_, n_layers_, out_activation_, loss_curve_, best_loss_,
    validation_scores_, best_validation_score_, n_iter_, t_, coefs_, intercepts_, net_ (the handgrad MLP).
    """

    _is_clf = True

    def _output_layer(self, Y):
        if self._multilabel or Y.shape[1] == 1:
            return (Y.shape[1], "sigmoid")
        return (Y.shape[1], "softmax")

    def _loss_name(self):
        return "auto"

    def _encode(self, y):
        Y = self._label_binarizer.transform(y)
        return np.asarray(Y, dtype=np.float64)

    @staticmethod
    def _column_to_1d(y):
        """A column vector (n, 1) of labels becomes (n,), with scikit-learn's DataConversionWarning."""
        return column_or_1d(y, warn=True) if y.ndim == 2 and y.shape[1] == 1 else y

    def _setup_labels(self, y, classes=None):
        target = type_of_target(y)
        self._multilabel = target.startswith("multilabel")
        self._label_binarizer = LabelBinarizer()
        if self._multilabel or classes is None:
            self._label_binarizer.fit(y)
        else:
            self._label_binarizer.fit(classes)
        self.classes_ = self._label_binarizer.classes_
        if not self._multilabel and len(self.classes_) < 2:
            raise DataError(f"the classifier needs samples of at least 2 classes; got 1 class ({self.classes_[0]!r}).")
        self._multiclass = not self._multilabel and len(self.classes_) > 2

    def fit(self, X, y, sample_weight=None):
        """Train on X (n_samples, n_features) and labels y (n_samples,) or an indicator matrix (n_samples, K)."""
        X, y = self._validate_X_y(X, y, reset=not (self.warm_start and hasattr(self, "net_")))
        y = self._column_to_1d(y)
        check_classification_targets(y)
        if not (self.warm_start and hasattr(self, "net_")):
            self._setup_labels(y)
        elif not set(np.unique(y)) <= set(self.classes_) and not self._multilabel:
            raise DataError(f"warm_start: y has labels not seen in the first fit (classes {list(self.classes_)}).")
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state.

        ``classes`` (all labels that will ever appear) is required on the first call, as in scikit-learn.
        """
        first = not hasattr(self, "classes_")
        X, y = self._validate_X_y(X, y, reset=first)
        y = self._column_to_1d(y)
        check_classification_targets(y)
        if first:
            if classes is None and not type_of_target(y).startswith("multilabel"):
                raise ConfigError("the first call to partial_fit needs classes=[...], every label that will appear.")
            self._setup_labels(y, classes)
        else:
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ConfigError(f"classes={list(classes)} differs from the first call's {list(self.classes_)}.")
            if not self._multilabel and not np.isin(np.unique(y), self.classes_).all():
                raise DataError(f"y has labels not in classes_ {list(self.classes_)}.")
        return self._fit(X, y, sample_weight, incremental=True)

    def _validation_score(self, X_val, y_val, w_val):
        return metrics.accuracy(y_val, self._labels(self.net_.forward(X_val)), sample_weight=w_val)

    def score(self, X, y, sample_weight=None):
        """The accuracy of ``predict(X)`` against y (handgrad.metrics.accuracy: subset accuracy for multilabel y)."""
        return metrics.accuracy(y, self.predict(X), sample_weight=sample_weight)

    def _labels(self, P):
        if self._multilabel:
            return (P >= 0.5).astype(int)
        return self._label_binarizer.inverse_transform(P)

    def predict_proba(self, X):
        """Probabilities, (n_samples, n_classes): columns in the order of ``classes_``; two columns for binary."""
        P = self._forward(X)
        if P.shape[1] == 1 and not self._multilabel:
            return np.hstack([1 - P, P])
        return P

    def predict_log_proba(self, X):
        """The log of predict_proba (tiny probabilities clipped, so no -inf)."""
        P = self.predict_proba(X)
        return np.log(np.maximum(P, np.finfo(P.dtype).tiny))

    def predict(self, X):
        """The most probable class of each sample (multilabel: an indicator matrix, probability >= 0.5)."""
        return self._labels(self._forward(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor: identity outputs and squared error, one output per target column.

    Parameters are those of ``sklearn.neural_network.MLPRegressor`` (``loss='squared_error'``, the only
    loss here), plus ``dtype`` and ``init`` as in :class:`MLPClassifier`.
    """

    _is_clf = False

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, dtype=None, init="auto"):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, dtype=dtype, init=init)
        self.loss = loss

    def _output_layer(self, Y):
        return (Y.shape[1], "identity")

    def _loss_name(self):
        if self.loss != "squared_error":
            raise ConfigError(f"loss must be 'squared_error' (the only regression loss here), got {self.loss!r}.")
        return "half_squared_error"

    def _encode(self, y):
        y = np.asarray(y, dtype=np.float64)
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def fit(self, X, y, sample_weight=None):
        """Train on X (n_samples, n_features) and targets y (n_samples,) or (n_samples, n_targets)."""
        X, y = self._validate_X_y(X, y, reset=not (self.warm_start and hasattr(self, "net_")))
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state."""
        X, y = self._validate_X_y(X, y, reset=not hasattr(self, "net_"))
        return self._fit(X, y, sample_weight, incremental=True)

    def _validation_score(self, X_val, y_val, w_val):
        return metrics.r2_score(y_val, self._squeeze(self.net_.forward(X_val)), sample_weight=w_val)

    def score(self, X, y, sample_weight=None):
        """R^2 of ``predict(X)`` against y, averaged uniformly over the targets (handgrad.metrics.r2_score)."""
        return metrics.r2_score(y, self.predict(X), sample_weight=sample_weight)

    @staticmethod
    def _squeeze(Y):
        return Y[:, 0] if Y.shape[1] == 1 else Y

    def predict(self, X):
        """Predicted targets: (n_samples,) for one target, else (n_samples, n_targets)."""
        return self._squeeze(self._forward(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
