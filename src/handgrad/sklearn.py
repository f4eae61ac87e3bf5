"""scikit-learn estimators built on handgrad: ``MLPClassifier`` and ``MLPRegressor``.

They are drop-in replacements for ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``: the same
parameters and defaults, the same attributes (``coefs_``, ``intercepts_``, ``loss_``, ``loss_curve_``,
``n_iter_``, ``t_``, ``best_loss_``, ``validation_scores_``, ``best_validation_score_``,
``out_activation_`` ...), the same training rules, and scikit-learn's own test file for its MLP passes
against them (tests/test_sklearn_suite.py: every one of its tests; the README has the count)::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from handgrad.sklearn import MLPClassifier

    model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), random_state=0))
    model.fit(X_train, y_train).score(X_test, y_test)

The network is a :class:`handgrad.MLP` (``self.net_``); ``coefs_`` and ``intercepts_`` are lists of views
into its parameter vector ``net_.params`` (assign new arrays to them and the next fit, partial_fit or
predict copies them in). Solvers: 'lbfgs' is handgrad.lbfgs on the full-batch objective; 'sgd' and 'adam'
(and handgrad's 'adamw', 'rmsprop') run scikit-learn's epoch loop below, each batch one ``net_.backprop``
and one ``optimizer.step`` on the parameter vector. 'sgd' with momentum and 'adam' step in scikit-learn's
forms (_SklearnMomentum, _SklearnAdam), so the weights equal scikit-learn's to rounding.

scikit-learn's objective for a batch B (all of the data for lbfgs), with weights w_i (1 by default):

    J_B = [ sum_B w_i l_i + (alpha/2) sum_k ||W_k||^2 ] / sum_B w_i

handgrad's network computes J = (1/|B|) sum_B w'_i l_i + (l2/2) sum_k ||W_k||^2, which is J_B exactly with
w'_i = w_i |B| / sum_B w_i and l2 = alpha / sum_B w_i, set for every batch (the short last batch too); after
fit, ``net_.l2`` is a full batch's, whatever the size of the last one. Losses: log-loss is cross_entropy
after softmax (more than two classes) or binary_cross_entropy after one sigmoid per output (two classes,
multilabel); squared error is half_squared_error, l_i = 1/2 ||y_hat_i - y_i||^2 (scikit-learn's gradient;
scikit-learn *reports* that loss divided by the number of outputs, and so do ``loss_`` and ``loss_curve_``
here); 'poisson' is the half Poisson deviance with an exp output (its log link), dJ/dZ = (exp(Z) - Y)/N.

Beyond scikit-learn, with defaults that change nothing: ``dtype`` (None: float32 data trains in
float32, as scikit-learn's sgd and adam do; its lbfgs ends in float64, this one stays in float32),
``init`` ('sklearn': scikit-learn's Glorot uniform, from the same random draws; or handgrad's 'auto',
'he', 'glorot', 'lecun'), ``dropout`` (0: none; a rate, or one per hidden layer: inverted dropout after
the hidden layers while the stochastic solvers train, masks drawn from random_state), solvers 'adamw'
and 'rmsprop', and any handgrad activation ('gelu', 'elu', ...).
Sparse inputs are accepted and made dense (mind the memory for very wide data).
"""

import math
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d

from . import lbfgs, metrics
from .activations import Exp
from .errors import ConfigError, DataError, TrainingError
from .losses import HalfPoissonDeviance, get_loss
from .network import MLP
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # older releases: the estimator method
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

__all__ = ["MLPClassifier", "MLPRegressor"]

_STOCHASTIC = ("sgd", "adam", "adamw", "rmsprop")
_SOLVERS = ("lbfgs",) + _STOCHASTIC
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
_INITS = ("sklearn", "auto", "he", "glorot", "lecun")
_NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain large values and need "
               "to be preprocessed.")


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


# ---------------------------------------------------------------------------- the poisson output
# exp (activations.Exp) and the half Poisson deviance (losses.HalfPoissonDeviance) are handgrad's own, so a
# poisson regressor's network saves, exports and explains like any other; the old private names remain.
_Exp = Exp
_HalfPoissonDeviance = HalfPoissonDeviance


# ---------------------------------------------------------------------------- the stochastic solvers
class _Solver:
    """A handgrad optimizer with scikit-learn's learning-rate rules around it (its SGDOptimizer and
    AdamOptimizer): ``learning_rate`` is the current rate; ``iteration_ends(t)`` applies 'invscaling'
    (eta = learning_rate_init / (t + 1)^power_t, t the samples seen so far), ``trigger_stopping`` applies
    'adaptive' (divide by 5 when an epoch fails to improve, stop below 1e-6)."""

    def __init__(self, rule, learning_rate_init, schedule="constant", power_t=0.5):
        self.rule = rule
        self.learning_rate_init = float(learning_rate_init)
        self.learning_rate = float(learning_rate_init)
        self.schedule = schedule
        self.power_t = float(power_t)

    def step(self, params, grads):
        self.rule.step(params, grads, self.learning_rate)

    def iteration_ends(self, time_step):
        if self.schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (time_step + 1) ** self.power_t

    def trigger_stopping(self, message, verbose):
        if self.schedule != "adaptive":
            if verbose:
                print(message + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(message + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(message + f" Setting learning rate to {self.learning_rate:f}")
        return False


class _SklearnMomentum(Optimizer):
    """SGD with momentum as scikit-learn's SGDOptimizer writes it, the velocity holding steps:

        v <- mu v - eta g;     p <- p + v                (classical)
                               p <- p + mu v - eta g     (Nesterov, with the new v)

    handgrad's Momentum and Nesterov (torch's form) keep b <- mu b + g and step by eta b: the same steps
    while eta is constant, but when 'adaptive' or 'invscaling' changes eta, torch's form rescales the
    momentum already gathered and scikit-learn's keeps its old size. This one reproduces scikit-learn's."""

    name = "sklearn_momentum"
    state_names = ("velocity",)

    def __init__(self, momentum=0.9, nesterov=True):
        super().__init__()
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self._step = None  # the Nesterov step mu v - eta g (scratch, as _work)

    def hyperparameters(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov}

    def _update(self, p, g, learning_rate, work):
        v = self.state["velocity"]
        np.multiply(g, learning_rate, out=work)  # eta g
        v *= self.momentum
        v -= work  # v = mu v - eta g
        if not self.nesterov:
            p += v
            return
        if self._step is None or self._step.shape != p.shape or self._step.dtype != p.dtype:
            self._step = np.empty_like(p)
        np.multiply(v, self.momentum, out=self._step)
        self._step -= work  # mu v - eta g
        p += self._step


class _SklearnAdam(Adam):
    """Adam with epsilon where scikit-learn's AdamOptimizer puts it, outside the bias correction:

        p <- p - eta sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

    handgrad's Adam (torch's form) divides by sqrt(v / (1 - b2^t)) + eps instead: the same step with
    eps / sqrt(1 - b2^t) in place of eps, so this runs it with that epsilon. The two differ most in the
    first steps (sqrt(1 - b2) = 0.03 at t = 1), where small gradients make the difference visible: on
    iris the weights of the two forms part by 0.06 within 50 epochs. This one reproduces scikit-learn's."""

    def _update(self, p, g, learning_rate, work):
        eps = self.eps
        self.eps = eps / math.sqrt(1.0 - self.beta2 ** self.t)
        try:
            super()._update(p, g, learning_rate, work)
        finally:
            self.eps = eps


def _partial_fit_available(estimator):
    if estimator.solver not in _STOCHASTIC:
        raise AttributeError(f"partial_fit is only available for stochastic optimizers. {estimator.solver} is not "
                             "stochastic.")
    return True


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, the network, the solvers."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype=None, init="sklearn",
                 dropout=0.0):
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
        self.max_fun = max_fun
        self.dtype = dtype
        self.init = init
        self.dropout = dropout

    # ------------------------------------------------------------------ checks
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, (str, bytes)) or not (isinstance(sizes, numbers.Integral) or np.iterable(sizes)):
            raise ConfigError(f"hidden_layer_sizes must be an integer or a sequence of integers such as (100,) or "
                              f"[64, 32], got {sizes!r}.")
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        for size in sizes:
            if isinstance(size, numbers.Integral) and not isinstance(size, bool) and size <= 0:
                raise ConfigError(f"hidden_layer_sizes must be > 0, got {sizes}.")
            _check_number("each of hidden_layer_sizes", size, low=1, integer=True)
        return [int(size) for size in sizes]

    def _dropout_rates(self, n_hidden):
        """``dropout`` as one rate per hidden layer (a number is every hidden layer's rate)."""
        rates = self.dropout
        if isinstance(rates, numbers.Real) and not isinstance(rates, bool):
            rates = [rates] * n_hidden
        elif isinstance(rates, (str, bytes)) or not np.iterable(rates):
            raise ConfigError(f"dropout must be a rate in [0, 1) or one rate per hidden layer, got {rates!r}.")
        rates = list(rates)
        if len(rates) != n_hidden:
            raise ConfigError(f"dropout needs one rate per hidden layer ({n_hidden}), got {len(rates)}.")
        for rate in rates:
            _check_number("each dropout rate", rate, low=0, high=1, high_open=True)
        return [float(rate) for rate in rates]

    def _check_params(self):
        if self.solver not in _SOLVERS:
            raise ConfigError(f"solver must be one of {', '.join(_SOLVERS)}, got {self.solver!r}.")
        if any(self._dropout_rates(len(self._hidden_sizes()))) and self.solver == "lbfgs":
            raise ConfigError("dropout applies to the stochastic solvers (sgd, adam, ...): solver='lbfgs' minimizes "
                              "one deterministic full-batch objective; set dropout=0 or choose another solver.")
        if self.learning_rate not in _LEARNING_RATES:
            raise ConfigError(f"learning_rate must be one of {', '.join(_LEARNING_RATES)}, got {self.learning_rate!r}.")
        if isinstance(self.activation, str) and self.activation.lower() == "softmax":
            raise ConfigError("activation='softmax' is an output activation; choose relu, tanh, logistic, identity...")
        if self.init not in _INITS:
            raise ConfigError(f"init must be one of {', '.join(_INITS)}, got {self.init!r}.")
        _check_number("alpha", self.alpha, low=0)
        _check_number("learning_rate_init", self.learning_rate_init, low=0, low_open=True)
        _check_number("power_t", self.power_t, low=0)
        _check_number("max_iter", self.max_iter, low=1, integer=True)
        _check_number("max_fun", self.max_fun, low=1, integer=True)
        _check_number("tol", self.tol, low=0)
        _check_number("momentum", self.momentum, low=0, high=1)
        _check_number("validation_fraction", self.validation_fraction, low=0, high=1, high_open=True)
        _check_number("beta_1", self.beta_1, low=0, high=1, high_open=True)
        _check_number("beta_2", self.beta_2, low=0, high=1, high_open=True)
        _check_number("epsilon", self.epsilon, low=0, low_open=True)
        if self.n_iter_no_change != np.inf:
            _check_number("n_iter_no_change", self.n_iter_no_change, low=1, integer=True)
        if self.batch_size != "auto":
            _check_number("batch_size", self.batch_size, low=1, integer=True)
        if self.dtype not in (None, "float32", "float64", np.float32, np.float64):
            raise ConfigError(f"dtype must be None (follow X), 'float32' or 'float64', got {self.dtype!r}.")

    # ------------------------------------------------------------------ the network and scikit-learn's views of it
    def _new_network(self, layer_units, Y, dtype):
        """A handgrad MLP for layer_units [n_features, hidden..., n_outputs], initialized as ``init`` says."""
        hidden = [(size, self.activation) for size in layer_units[1:-1]]
        output = self._output_layer(Y)
        rates = self._dropout_rates(len(hidden))
        options = dict(loss=self._loss(), dtype=dtype, dropout=rates if any(rates) else 0.0)
        if self.init == "sklearn":  # scikit-learn's draws: W and b ~ U(-r, r), r = sqrt(factor / (fan_in + fan_out))
            net = MLP(layer_units[0], hidden + [output], seed=0, init="glorot", **options)
            factor = 2.0 if str(self.activation).lower() in ("logistic", "sigmoid") else 6.0
            for layer in net.layers:
                bound = np.sqrt(factor / (layer.n_in + layer.n_out))
                layer.W[...] = self._random_state.uniform(-bound, bound, (layer.n_in, layer.n_out))
                layer.b[...] = self._random_state.uniform(-bound, bound, layer.n_out)
            if any(net.dropout):  # the masks' stream from random_state too (drawn only then: without dropout
                # the draws stay scikit-learn's)
                seed = int(self._random_state.randint(np.iinfo(np.int32).max))
                net.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        else:
            seed = int(self._random_state.randint(np.iinfo(np.int32).max))
            net = MLP(layer_units[0], hidden + [output], seed=seed, init=self.init, **options)
        return net

    def _bind_views(self):
        """coefs_ and intercepts_ become lists of views into ``net_.params``."""
        self.coefs_ = [layer.W for layer in self.net_.layers]
        self.intercepts_ = [layer.b for layer in self.net_.layers]

    def _synced_network(self):
        """``net_``, with any array assigned to coefs_ or intercepts_ (or copied by a pickle) copied into it."""
        net = self.net_
        if not net.params.flags.writeable:  # unpickled from a read-only memory map (joblib): a writable copy
            self.net_ = net = net.copy()
        arrays = list(self.coefs_) + list(self.intercepts_)
        views = [layer.W for layer in net.layers] + [layer.b for layer in net.layers]
        if len(arrays) != len(views) or any(a is not v for a, v in zip(arrays, views)):
            if len(arrays) != len(views):
                raise ConfigError(f"coefs_ and intercepts_ need {len(net.layers)} arrays each.")
            for array, view in zip(arrays, views):
                array = np.asarray(array)
                if array.shape != view.shape and array.size == view.size:  # e.g. a bias given as a scalar array
                    array = array.reshape(view.shape)
                if array.shape != view.shape:
                    raise ConfigError(f"an array of coefs_/intercepts_ has shape {array.shape}; the network "
                                      f"needs {view.shape}.")
                view[...] = array
            self._bind_views()
        return net

    def _network_from_attributes(self, Y, dtype):
        """A network for coefs_ and intercepts_ that were assigned before any fit (scikit-learn allows it)."""
        units = [np.shape(W)[0] for W in self.coefs_] + [np.shape(self.coefs_[-1])[1]]
        self.net_ = self._new_network(units, Y, dtype)
        self._synced_network()

    def _start(self, X, Y):
        """A first fit: a new network and fresh training state (scikit-learn's _initialize)."""
        dtype = np.dtype(X.dtype if self.dtype is None else self.dtype).name
        self.n_iter_, self.t_ = 0, 0
        self.n_outputs_ = Y.shape[1]
        self.net_ = self._new_network([X.shape[1]] + self._hidden_sizes() + [Y.shape[1]], Y, dtype)
        self.n_layers_ = len(self.net_.layers) + 1
        self.out_activation_ = {"sigmoid": "logistic"}.get(self.net_.output_activation.name,
                                                           self.net_.output_activation.name)
        self._bind_views()
        self._best_params = self.net_.params.copy()
        if self.solver in _STOCHASTIC:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
            else:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf

    # ------------------------------------------------------------------ fit
    def _validate_X_y(self, X, y, reset):
        dtype = [np.float64, np.float32] if self.dtype is None else np.dtype(self.dtype)
        X, y = _validate_data(self, X, y, reset=reset, dtype=dtype, multi_output=True, y_numeric=not self._is_clf,
                              accept_sparse=["csr", "csc"])
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return _dense(X), y

    def _checked_sample_weight(self, sample_weight, n_samples):
        if sample_weight is None:
            return None
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if sample_weight.ndim == 0:
            sample_weight = np.full(n_samples, float(sample_weight))
        if sample_weight.shape != (n_samples,):
            raise DataError(f"sample_weight.shape == {sample_weight.shape}, expected ({n_samples},)!")
        if not np.isfinite(sample_weight).all() or (sample_weight < 0).any():
            raise DataError("sample_weight must be finite and >= 0.")
        if sample_weight.sum() <= 0:
            raise DataError("sample_weight sums to zero: at least one sample needs a positive weight.")
        return sample_weight

    def _fit(self, X, y, sample_weight, incremental):
        """Shared by fit and partial_fit (scikit-learn's _fit): X, y validated; y what _encode makes targets of."""
        self._check_params()
        hidden = self._hidden_sizes()
        Y = self._encode(y)
        sample_weight = self._checked_sample_weight(sample_weight, X.shape[0])
        self._random_state = check_random_state(self.random_state)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if first_pass:
            self._start(X, Y)
        elif not hasattr(self, "net_"):
            self._network_from_attributes(Y, np.dtype(X.dtype if self.dtype is None else self.dtype).name)
        elif Y.shape[1] != self.net_.n_outputs:
            raise DataError(f"y has {Y.shape[1]} outputs but the estimator was fitted with {self.net_.n_outputs}.")
        elif [layer.n_out for layer in self.net_.layers[:-1]] != hidden and not incremental:
            raise ConfigError(f"warm_start: hidden_layer_sizes changed to {hidden} from "
                              f"{[layer.n_out for layer in self.net_.layers[:-1]]}; fit without warm_start.")
        elif self._dropout_rates(len(hidden)) != list(self.net_.dropout):
            raise ConfigError(f"dropout changed to {self.dropout!r} since the network was built with "
                              f"{list(self.net_.dropout)}; fit without warm_start.")
        net = self._synced_network()
        self.n_outputs_ = Y.shape[1]
        X = np.ascontiguousarray(X, dtype=net.dtype)
        Y = np.ascontiguousarray(Y, dtype=net.dtype)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a diverging fit goes on, as in sklearn
            if self.solver == "lbfgs":
                self._fit_lbfgs(net, X, Y, sample_weight)
            else:
                self._fit_stochastic(net, X, Y, y, sample_weight, incremental)
        if not np.isfinite(net.params).all():
            raise DataError(_NON_FINITE)
        for layer in net.layers:  # work buffers are rebuilt on demand; no need to keep (or pickle) them
            layer.clear_buffers()
        return self

    def _report(self, J, net, penalty=None):
        """J as scikit-learn reports it: the squared error divided by the number of outputs."""
        K = net.n_outputs
        if K == 1 or net.loss_fn.name != "half_squared_error":
            return float(J)
        if penalty is None:
            penalty = net.regularization()
        return float((J - penalty) / K + penalty)

    def _fit_lbfgs(self, net, X, Y, sample_weight):
        """handgrad.lbfgs on the full-batch objective, with scikit-learn's max_iter, max_fun and tol."""
        weights = None
        if sample_weight is None:
            net.l2 = float(self.alpha) / X.shape[0]
        else:
            net.l2 = float(self.alpha) / float(sample_weight.sum())
            weights = (sample_weight * (X.shape[0] / sample_weight.sum())).astype(net.dtype)
        self.loss_curve_ = []

        def after_iteration(k, x, f):
            penalty = 0.5 * net.l2 * float(np.dot(x[:net.n_weights], x[:net.n_weights]))
            self.loss_curve_.append(self._report(f, net, penalty))
            if self.verbose:
                print(f"Iteration {k}, loss = {self.loss_curve_[-1]:.8f}")

        solver = lbfgs.LBFGS(tol=float(self.tol), max_fun=int(self.max_fun))
        try:
            result = lbfgs.minimize_network(net, X, Y, weights, max_iter=int(self.max_iter), solver=solver,
                                            callback=after_iteration)
        except TrainingError as error:  # J not finite at the start: scikit-learn's error, and handgrad's reason
            raise DataError(f"{_NON_FINITE} ({error})") from None
        self.n_iter_ = min(result.n_iter, int(self.max_iter))
        self.loss_ = self._report(result.fun, net)
        if result.status != 0:
            advice = (f"\nIncrease the number of iterations to improve the convergence (max_iter={self.max_iter})."
                      if result.n_iter >= self.max_iter else "")
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iteration(s) (status={result.status}):\n"
                          f"{result.message}\n{advice}", ConvergenceWarning, stacklevel=4)

    def _validation_split(self, X, Y, y, sample_weight):
        """(X, Y, w) to train on and (X_val, y_val, w_val) to score, split as scikit-learn splits them."""
        stratify = Y.astype(bool) if self._is_clf and Y.shape[1] == 1 else None  # binary only, as scikit-learn
        arrays = [X, Y, y] + ([sample_weight] if sample_weight is not None else [])
        try:
            parts = train_test_split(*arrays, random_state=self._random_state, test_size=self.validation_fraction,
                                     stratify=stratify)
        except ValueError as error:  # too few samples of a class for a stratified split, ...
            raise DataError(str(error)) from None
        X, X_val, Y, _, _, y_val = parts[:6]
        w, w_val = (parts[6], parts[7]) if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise DataError("The validation set is too small. Increase 'validation_fraction' or the size of your "
                            "dataset.")
        return (X, Y, w), (X_val, y_val, w_val)

    def _make_solver(self):
        if self.solver == "adam":
            rule = _SklearnAdam(self.beta_1, self.beta_2, self.epsilon)
        elif self.solver == "adamw":
            rule = AdamW(self.beta_1, self.beta_2, self.epsilon)
        elif self.solver == "rmsprop":
            rule = RMSprop(eps=self.epsilon)
        elif self.momentum > 0:  # scikit-learn's v <- mu v - eta g form (the learning-rate modes change eta)
            rule = _SklearnMomentum(self.momentum, self.nesterovs_momentum)
        else:
            rule = SGD()
        schedule = self.learning_rate if self.solver == "sgd" else "constant"
        return _Solver(rule, self.learning_rate_init, schedule, self.power_t)

    def _fit_stochastic(self, net, X, Y, y, sample_weight, incremental):
        """scikit-learn's epoch loop (_fit_stochastic), each batch one backprop and one optimizer step."""
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._make_solver()
        state = self._optimizer.rule.state or {}
        for name, vector in state.items():  # (read-only after a joblib memory-mapped load)
            if not vector.flags.writeable:
                state[name] = np.array(vector)
        for scratch in ("_work", "_step"):  # the optimizer's scratch vectors: read-only too
            vector = getattr(self._optimizer.rule, scratch, None)
            if vector is not None and not vector.flags.writeable:
                setattr(self._optimizer.rule, scratch, None)  # (made anew by the next step)
        if self.early_stopping and incremental:
            raise ConfigError("partial_fit does not support early_stopping=True")
        validation = None
        if self.early_stopping:
            (X, Y, sample_weight), validation = self._validation_split(X, Y, y, sample_weight)
        N = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, N)
        else:
            if self.batch_size > N:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                              stacklevel=4)
            batch_size = int(np.clip(self.batch_size, 1, N))
        for name, default in (("n_iter_", 0), ("t_", 0), ("loss_curve_", []), ("_no_improvement_count", 0),
                              ("best_loss_", np.inf), ("validation_scores_", None), ("best_validation_score_", None)):
            if not hasattr(self, name):  # coefs_ assigned by hand before the first partial_fit
                setattr(self, name, default)
        if validation is not None and self.validation_scores_ is None:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
        if not hasattr(self, "_best_params"):
            self._best_params = net.params.copy()
        self._epochs(net, X, Y, sample_weight, batch_size, validation, incremental)
        if validation is not None:  # the weights of the best validation score
            net.params[...] = self._best_params
        # net_ keeps the l2 of a full batch (of the mean weight), not that of the last one: a short last batch (201
        # samples in batches of 200: one sample) left an l2 200 times larger in net_, its model file and its fits
        mean_weight = 1.0 if sample_weight is None else float(np.mean(sample_weight))
        if mean_weight > 0:
            net.l2 = float(self.alpha) / (batch_size * mean_weight)

    def _epochs(self, net, X, Y, sample_weight, batch_size, validation, incremental):
        N = X.shape[0]
        order = np.arange(N)
        buffers = (np.empty((batch_size, X.shape[1]), net.dtype), np.empty((batch_size, Y.shape[1]), net.dtype))
        self.n_iter_ = 0
        for _ in range(int(self.max_iter)):
            if self.shuffle:
                permutation = np.arange(N)
                self._random_state.shuffle(permutation)
                order = order[permutation]
            total = 0.0
            for start in range(0, N, batch_size):
                total += self._batch(net, X, Y, sample_weight, order[start:start + batch_size], buffers)
            self.n_iter_ += 1
            self.loss_ = total / N
            self.t_ += N
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            self._count_no_improvement(net, validation)
            self._optimizer.iteration_ends(self.t_)
            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if validation is not None else "Training loss"
                message = (f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} "
                           "consecutive epochs.")
                if self._optimizer.trigger_stopping(message, self.verbose):
                    break
                self._no_improvement_count = 0
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                              "optimization hasn't converged yet.", ConvergenceWarning, stacklevel=5)

    def _batch(self, net, X, Y, sample_weight, index, buffers):
        """One step on the samples ``index``; returns the batch's loss (scikit-learn's units) times its size."""
        n = index.shape[0]
        if n == X.shape[0]:  # the whole training set: its rows in any order give the same gradient
            xb, yb = X, Y
            wb = sample_weight
        else:
            xb = np.take(X, index, axis=0, out=buffers[0][:n], mode="clip")
            yb = np.take(Y, index, axis=0, out=buffers[1][:n], mode="clip")
            wb = None if sample_weight is None else sample_weight[index]
        if wb is None:
            net.l2 = float(self.alpha) / n
        else:
            total_weight = float(wb.sum())
            if total_weight <= 0:  # nothing to learn from in this batch (scikit-learn would divide by zero)
                return 0.0
            net.l2 = float(self.alpha) / total_weight
            wb = (wb * (n / total_weight)).astype(net.dtype)
        # training mode draws dropout masks (the only thing it changes here); J is before the step changes the weights
        J = self._report(net.backprop(xb, yb, wb, training=any(net.dropout)), net)
        self._optimizer.step(net.params, net.grads)
        return J * n

    def _count_no_improvement(self, net, validation):
        """scikit-learn's rule: count the epochs that improve the monitored number by less than tol."""
        if validation is None:
            loss = self.loss_curve_[-1]
            self._no_improvement_count = self._no_improvement_count + 1 if loss > self.best_loss_ - self.tol else 0
            self.best_loss_ = min(self.best_loss_, loss)
            return
        score = self._validation_score(net, *validation)
        self.validation_scores_.append(score)
        if self.verbose:
            print(f"Validation score: {score:f}")
        self._no_improvement_count = (self._no_improvement_count + 1
                                      if score < self.best_validation_score_ + self.tol else 0)
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_params = net.params.copy()

    def _validation_score(self, net, X_val, y_val, w_val):
        P = net.forward(X_val)
        if not np.isfinite(P).all():
            return float("nan")
        return float(self._score_outputs(P, y_val, w_val))

    # ------------------------------------------------------------------ scikit-learn's gradient interface
    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight=None, *buffers):
        """(J, dJ/dtheta) at theta = packed_coef_inter on (X, y), as scikit-learn's method of this name:
        theta is coefs_ then intercepts_, flattened (handgrad's layout); J the full-batch objective."""
        net = self._synced_network()
        X = np.ascontiguousarray(_dense(X), dtype=net.dtype)
        Y = np.asarray(y, dtype=net.dtype).reshape(X.shape[0], -1)
        net.params[...] = packed_coef_inter
        weights = None
        if sample_weight is None:
            net.l2 = float(self.alpha) / X.shape[0]
        else:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            net.l2 = float(self.alpha) / float(sample_weight.sum())
            weights = (sample_weight * (X.shape[0] / sample_weight.sum())).astype(net.dtype)
        J = net.backprop(X, Y, weights, training=False)
        return J, net.grads.copy()

    # ------------------------------------------------------------------ prediction
    def _forward(self, X):
        check_is_fitted(self)
        X = _dense(_validate_data(self, X, reset=False, dtype=[np.float64, np.float32], accept_sparse=["csr", "csc"]))
        return self._synced_network().forward(X)

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

    Parameters are those of ``sklearn.neural_network.MLPClassifier`` (same defaults), plus ``dtype``
    (None: float32 inputs train in float32, anything else in float64), ``init`` ('sklearn' or handgrad's
    'auto', 'he', 'glorot', 'lecun'), ``dropout`` (a rate, or one per hidden layer; stochastic solvers),
    solvers 'adamw' and 'rmsprop', and handgrad's other activations.

    Attributes: classes_, n_features_in_, n_outputs_, n_layers_, out_activation_, loss_, loss_curve_,
    best_loss_, validation_scores_, best_validation_score_, n_iter_, t_, coefs_, intercepts_ (views into
    the network's parameter vector), net_ (the handgrad MLP).
    """

    _is_clf = True  # (its parameters and __init__ are _BaseMLP's, scikit-learn's MLPClassifier's)

    def _output_layer(self, Y):
        if self._label_binarizer.y_type_ == "multiclass":
            return (Y.shape[1], "softmax")
        return (Y.shape[1], "sigmoid")  # two classes, one class, multilabel

    def _loss(self):
        return get_loss("cross_entropy" if self._label_binarizer.y_type_ == "multiclass" else "binary_cross_entropy")

    @property
    def _multilabel(self):
        return self._label_binarizer.y_type_.startswith("multilabel")

    def _encode(self, y):
        return np.asarray(self._label_binarizer.transform(y), dtype=np.float64)

    def _check_labels(self, y, incremental):
        """scikit-learn's rules: a first fit (or a fit without warm_start) defines classes_; a warm start
        needs the same classes; a partial_fit only classes from classes_."""
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
            return
        classes = unique_labels(y)
        if self.warm_start:
            if set(classes) != set(self.classes_):
                raise DataError("warm_start can only be used where `y` has the same classes as in the previous call "
                                f"to fit. Previously got {self.classes_}, `y` has {classes}")
        elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
            raise DataError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                            f"'y' has {classes}.")

    def fit(self, X, y, sample_weight=None):
        """Train on X (n_samples, n_features) and labels y (n_samples,) or an indicator matrix (n_samples, K)."""
        first_pass = not hasattr(self, "coefs_") or not self.warm_start
        X, y = self._validate_X_y(X, y, reset=first_pass)
        check_classification_targets(y)
        self._check_labels(y, incremental=False)
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_partial_fit_available)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state.

        ``classes`` (all labels that will ever appear) is required on the first call, as in scikit-learn.
        """
        if getattr(self, "classes_", None) is None:
            if classes is None:
                raise ConfigError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ConfigError(f"`classes={list(classes)!r}` is not the same as on last call to partial_fit, "
                              f"was: {self.classes_!r}")
        X, y = self._validate_X_y(X, y, reset=not hasattr(self, "coefs_"))
        check_classification_targets(y)
        self._check_labels(y, incremental=True)
        return self._fit(X, y, sample_weight, incremental=True)

    def _score_outputs(self, P, y_val, w_val):
        return metrics.accuracy(y_val, self._labels(P), sample_weight=w_val)

    def score(self, X, y, sample_weight=None):
        """The accuracy of ``predict(X)`` against y (handgrad.metrics.accuracy: subset accuracy for multilabel y)."""
        return metrics.accuracy(y, self.predict(X), sample_weight=sample_weight)

    def _labels(self, P):
        if P.shape[1] == 1:
            P = P.ravel()
        return self._label_binarizer.inverse_transform(P)

    def predict_proba(self, X):
        """Probabilities, (n_samples, n_classes): columns in the order of ``classes_``; two columns for binary."""
        P = self._forward(X)
        if P.shape[1] == 1:
            return np.hstack([1 - P, P])
        return P

    def predict_log_proba(self, X):
        """The log of predict_proba."""
        P = self.predict_proba(X)
        return np.log(P, out=P)

    def predict(self, X):
        """The most probable class of each sample (multilabel: an indicator matrix, probability > 0.5)."""
        return self._labels(self._forward(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor: identity outputs and squared error (or exp outputs and the
    Poisson deviance, ``loss='poisson'``), one output per target column.

    Parameters are those of ``sklearn.neural_network.MLPRegressor``, plus ``dtype``, ``init`` and ``dropout``
    as in :class:`MLPClassifier`.
    """

    _is_clf = False

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype=None, init="sklearn",
                 dropout=0.0):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun, dtype=dtype, init=init,
            dropout=dropout)
        self.loss = loss

    def _output_layer(self, Y):
        return (Y.shape[1], "exp" if self.loss == "poisson" else "identity")

    def _loss(self):
        if self.loss == "poisson":
            return get_loss("half_poisson_deviance")
        if self.loss != "squared_error":
            raise ConfigError(f"loss must be 'squared_error' or 'poisson', got {self.loss!r}.")
        return get_loss("half_squared_error")

    def _encode(self, y):
        y = np.asarray(y, dtype=np.float64)
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def fit(self, X, y, sample_weight=None):
        """Train on X (n_samples, n_features) and targets y (n_samples,) or (n_samples, n_targets)."""
        self._loss()
        X, y = self._validate_X_y(X, y, reset=not hasattr(self, "coefs_") or not self.warm_start)
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_partial_fit_available)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state."""
        self._loss()
        X, y = self._validate_X_y(X, y, reset=not hasattr(self, "coefs_"))
        return self._fit(X, y, sample_weight, incremental=True)

    def _score_outputs(self, P, y_val, w_val):
        return metrics.r2_score(y_val, self._squeeze(P), sample_weight=w_val)

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
