"""MLP: a stack of layers, a loss, the objective J they define, and one vector of parameters.

Start reading here: :meth:`MLP.backprop` is the whole training computation (forward through every
layer, the objective, backward through every layer in reverse), and layers.py holds each layer's part.

    J = (1/N) sum_i w_i l(a_i, t_i)  +  (l2/2) sum_k ||W_k||_F^2  +  l1 sum_k sum |W_k|

(biases and the normalization parameters gamma, beta are not regularized; w_i = 1 unless sample
weights are given). Backward runs the layers in
reverse order (docs/derivations.md, section "The whole network"):

    dZ_L = (A_L - T)/N                      when the output activation and loss have a closed form
    dA_L = dJ/dA_L, then the layer's f'     otherwise (the general chain rule)
    dW_k = A_{k-1}^T dZ_k + l2 W_k + l1 sign(W_k),   db_k = column sums of dZ_k
    dA_{k-1} = dZ_k W_k^T                   (never computed for k = 1: nothing consumes dJ/dX)

The parameters live in one vector, ``net.params`` (theta), and the gradient of the last backward
pass in ``net.grads``, with the same layout: every weight matrix first, then every bias and every
normalization layer's gamma and beta, layer by layer,

    theta = [ vec(W_1), vec(W_2), ..., vec(W_L), b_1, b_2, ..., b_L ]     (vec: row-major)
    theta = [ vec(W_1), vec(W_2), vec(W_3), gamma_1, beta_1, b_2, b_3 ]    (layer 1 with a norm: no b_1)

so the regularized entries are one slice, ``params[:net.n_weights]``. Each layer's ``W``, ``b``
are views into ``params`` and its ``dW``, ``db`` views into ``grads`` (``net.layout`` lists the
offsets): writing ``layer.W[...]`` changes ``net.params``, and an optimizer updates every layer at
once with a few operations on the two vectors.

A layer spec may carry a normalization: ``{"size": 64, "activation": "relu", "norm": "batch"}`` (or
"layer"), spelled '64:relu:batchnorm' on the command line; the layer then computes Z = X W,
Zhat = gamma * xhat + beta, A = f(Zhat) (layers.py, Dense and BatchNorm). Batch norm's running
statistics are state beside theta (:meth:`MLP.running_statistics`), changed only by training steps;
which passes use batch statistics, dropout, or update the running ones is a
:class:`handgrad.layers.Mode` (TRAINING for a training step in one call, OBJECTIVE for loss_and_grad and
gradcheck, INFERENCE for predict; the trainer's step runs OBJECTIVE_WITH_DROPOUT and then commits the
batch statistics with :meth:`MLP.update_running_statistics` once its loss is finite).

``predict``, ``predict_proba``, ``forward`` and ``loss`` read a memory-mapped .npy, a Zarr or a Dask array a
block of rows at a time (:meth:`MLP._streamed`), with the same outputs as in memory (docs/scaling.md).
"""

import contextlib
import copy as _copy
import re

import numpy as np

from .activations import Activation, get_activation
from .errors import ConfigError, DataError, check_non_negative, check_seed
from .layers import INFERENCE, NORMS, OBJECTIVE, OBJECTIVE_WITH_DROPOUT, Dense, Dropout, as_mode
from .losses import Loss, default_loss_for, get_loss, weighted_total
from .streaming import Stream, default_block_rows, is_streamed, row_reader

_DTYPES = {"float32": np.float32, "float64": np.float64}
_FORWARD_CHUNK = 4096  # rows per pass in forward/predict, which bounds the memory they use
_SMALL = 1 << 16  # arrays up to this many entries are checked for NaN/inf entry by entry
_SPEC_KEYS = ("size", "activation", "norm", "bias")
_NORM_WORDS = {"batchnorm": "batch", "layernorm": "layer"}  # the string spelling: '256:relu:batchnorm'


def _parse_string(spec, index):
    """'16:relu' or '16:relu:batchnorm' / '16:relu:layernorm' as a layer dict."""
    parts = [part.strip() for part in spec.split(":")]
    if len(parts) not in (2, 3):
        raise ConfigError(f"layer {index + 1}: '{spec}' should look like '16:relu' (size:activation) or "
                          "'16:relu:batchnorm' (size:activation:norm).")
    if len(parts) == 2:
        return {"size": parts[0], "activation": parts[1]}
    if parts[2] not in _NORM_WORDS:
        raise ConfigError(f"layer {index + 1}: unknown normalization '{parts[2]}' in '{spec}'; use "
                          f"{' or '.join(repr(word) for word in _NORM_WORDS)}.")
    return {"size": parts[0], "activation": parts[1], "norm": _NORM_WORDS[parts[2]]}


def layer_dict(spec, index=0):
    """A layer spec as a dict {'size', 'activation'[, 'norm'][, 'bias']}: a 'size:activation[:norm]' string
    parsed, a dict copied, a (size, activation) pair named; the values as given (MLP checks them). For code
    that edits a spec (a sweep replacing sizes or activations) and must keep its norm and bias."""
    if isinstance(spec, str):
        return _parse_string(spec, index)
    if isinstance(spec, dict):
        return dict(spec)
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return {"size": spec[0], "activation": spec[1]}
    raise ConfigError(f"layer {index + 1}: expected (size, activation), e.g. (16, 'relu'); got {spec!r}.")


def _parse_layer(spec, index):
    """(size, activation, norm, bias) from a tuple, a list, a dict or a 'size:activation[:norm]' string.
    ``norm`` is None, 'batch' or 'layer'; ``bias`` None means the network's default."""
    spec = layer_dict(spec, index)
    unknown = sorted(set(spec) - set(_SPEC_KEYS), key=str)
    if unknown:
        raise ConfigError(f"layer {index + 1}: unknown key {unknown[0]!r} in {spec!r}; a layer dict takes "
                          f"{', '.join(repr(key) for key in _SPEC_KEYS)}.")
    size, activation = spec.get("size"), spec.get("activation", "identity")
    norm, bias = spec.get("norm"), spec.get("bias")
    try:
        size_int = int(size)
    except (TypeError, ValueError):
        size_int = None
    if size_int is None or size_int != float(size) or size_int < 1:
        raise ConfigError(f"layer {index + 1}: the size must be a positive integer, got {size!r}.")
    if norm is not None and not (isinstance(norm, str) and norm in NORMS):  # (a list is not hashable)
        raise ConfigError(f"layer {index + 1}: unknown norm {norm!r}; use {', '.join(repr(n) for n in NORMS)} or None.")
    if bias is not None and not isinstance(bias, bool):
        raise ConfigError(f"layer {index + 1}: 'bias' must be True or False, got {bias!r}.")
    if norm is not None and bias:
        raise ConfigError(f"layer {index + 1}: a layer with norm '{norm}' has no bias (the norm's beta replaces it); "
                          "remove 'bias': True, or the norm.")
    return size_int, get_activation(activation), norm, bias


def _all_finite(array):
    """True when no entry of a C-contiguous float array is NaN or infinite. Small arrays are checked entry
    by entry. For large ones a NaN or infinity makes the sum of squares non-finite, so one pass with no
    temporary array decides the common case: a dot product of the array with itself, which BLAS runs on
    every core (about 20% faster than a sum on two). Only a non-finite result (which overflow of finite
    entries can also cause) is checked entry by entry."""
    if array.size > _SMALL:
        flat = array.reshape(-1)  # a view: the array is C-contiguous
        with np.errstate(over="ignore", invalid="ignore"):  # (costs a microsecond: not worth it on small arrays)
            if np.isfinite(np.dot(flat, flat)):
                return True
    return bool(np.isfinite(array).all())


def _initial_weights(rng, n_in, n_out, scheme):
    """He (normal, variance 2/n_in) for the ReLU family, Glorot (uniform, limit sqrt(6/(n_in+n_out))) otherwise."""
    if callable(scheme):
        return np.asarray(scheme(n_in, n_out, rng), dtype=np.float64)
    if scheme == "he":
        return rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_in, n_out))
    if scheme == "glorot":
        limit = np.sqrt(6.0 / (n_in + n_out))
        return rng.uniform(-limit, limit, size=(n_in, n_out))
    if scheme == "lecun":
        return rng.normal(0.0, np.sqrt(1.0 / n_in), size=(n_in, n_out))
    raise ConfigError(f"unknown init '{scheme}'; use 'auto', 'he', 'glorot', 'lecun' or a function (n_in, n_out, rng).")


class MLP:
    """A multilayer perceptron with hand-derived backpropagation.

    >>> import handgrad as hg
    >>> net = hg.MLP(2, [(2, "relu"), (2, "relu"), (1, "sigmoid")], loss="half_squared_error", bias=False, seed=0)
    >>> net.layers[0].W.shape
    (2, 2)

    Parameters
    ----------
    n_inputs : int
        Number of input features.
    layers : list of (size, activation)
        One entry per layer (seed 000's spec). An activation is a name
        ('relu', 'sigmoid', ...) or an Activation object; 'size:activation'
        strings are accepted too.
    loss : str or Loss, default 'auto'
        'half_squared_error', 'mse', 'binary_cross_entropy', 'cross_entropy'.
        'auto' picks cross_entropy after softmax, binary_cross_entropy after
        sigmoid, half_squared_error otherwise.
    bias : bool
        Whether the layers have biases.
    l2, l1 : float
        Regularization strengths: J += (l2/2) sum ||W||_F^2 + l1 sum |W| (biases excluded).
    dropout : float or list of float
        Inverted-dropout rate after each hidden layer (one number for all, or one per hidden layer).
    seed : int or None
        Seeds initialization and dropout; the same seed gives bit-identical runs.
    dtype : 'float64' or 'float32'
        The dtype of every parameter, buffer and gradient.
    init : 'auto', 'he', 'glorot', 'lecun' or callable(n_in, n_out, rng)
        'auto' is He for the ReLU family and Glorot otherwise.
    """

    def __init__(self, n_inputs, layers, loss="auto", *, bias=True, l2=0.0, l1=0.0, dropout=0.0, seed=None,
                 dtype="float64", init="auto"):
        try:
            n_inputs_int = int(n_inputs)
        except (TypeError, ValueError):
            n_inputs_int = None
        if n_inputs_int is None or n_inputs_int < 1 or n_inputs_int != n_inputs:
            raise ConfigError(f"n_inputs must be a positive integer, got {n_inputs!r}.")
        if isinstance(layers, str):  # "16:relu,1:sigmoid", the command line's form
            layers = [part for part in re.split(r",(?![^()]*\))", layers) if part.strip()]  # not inside (...)
        layers = list(layers)
        if not layers:
            raise ConfigError("an MLP needs at least one layer, e.g. [(1, 'sigmoid')].")
        key = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype
        if key not in _DTYPES:
            raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
        self.dtype = np.dtype(_DTYPES[key])
        self.n_inputs = n_inputs_int
        self.l2 = check_non_negative("l2", l2)
        self.l1 = check_non_negative("l1", l1)
        self.bias = bool(bias)
        self.seed = check_seed("seed", seed)
        self.init = init
        specs = [_parse_layer(spec, i) for i, spec in enumerate(layers)]
        if specs[-1][2] is not None:
            raise ConfigError(f"the output layer cannot take norm '{specs[-1][2]}': a normalization goes between a "
                              "hidden layer's affine map and its activation; the outputs' scale is the loss's.")

        hidden = len(specs) - 1
        if dropout is None:
            dropout = 0.0
        rates = [dropout] * hidden if np.isscalar(dropout) else list(dropout)
        if len(rates) != hidden:
            raise ConfigError(f"dropout needs one rate per hidden layer ({hidden}), got {len(rates)}.")
        rates = [check_non_negative("dropout", rate) for rate in rates] + [0.0]

        self.loss_fn = get_loss(default_loss_for(specs[-1][1].name) if loss in ("auto", None) else loss)
        output_activation = specs[-1][1]
        low, high = output_activation.output_range
        need_low, need_high = self.loss_fn.output_range
        if low < need_low or high > need_high:
            raise ConfigError(
                f"loss '{self.loss_fn.name}' needs outputs in ({need_low:g}, {need_high:g}) but a "
                f"'{output_activation.name}' output can be {low:g}..{high:g}; use a 'sigmoid' output for "
                f"binary_cross_entropy, 'softmax' for cross_entropy, or a squared error."
            )

        # Independent random streams from one seed: initial weights and dropout masks (fit shuffles with its own).
        self._init_seed, dropout_seed = np.random.SeedSequence(self.seed).spawn(2)
        self.rng = np.random.default_rng(dropout_seed)
        self.layers = []  # the Dense layers, numbered 1..L in the seeds' notation
        self.sequence = []  # every layer in the order forward runs them: Dense, Dropout (rate > 0), Dense, ...
        n_in = self.n_inputs
        for i, ((size, activation, norm, bias), rate) in enumerate(zip(specs, rates)):
            bias = bias if bias is not None else (None if norm else self.bias)  # a norm drops the bias
            dense = Dense(n_in, size, activation, bias=bias, norm=norm, dtype=self.dtype,
                          keep_z=(i == len(specs) - 1))
            self.layers.append(dense)
            self.sequence.append(dense)
            if rate > 0:
                self.sequence.append(Dropout(rate, self.rng, self.dtype))
            n_in = size
        self.dropout = rates[:-1]
        self._allocate_vectors()
        self.initialize(init)
        # Training state owned by the trainer (optimizer, epochs done...); kept here so partial_fit can resume.
        self.training_state = None

    def _allocate_vectors(self):
        """Lay every parameter out in ``params`` (weights first, then biases) and bind the layers' views."""
        shapes = [[(f"{name}{k}", shape) for name, shape in layer.parameter_shapes()]
                  for k, layer in enumerate(self.layers, 1)]
        ordered = [item for entries in shapes for item in entries if item[0].startswith("W")]
        ordered += [item for entries in shapes for item in entries if not item[0].startswith("W")]
        self.layout, offset = [], 0
        for name, shape in ordered:
            size = int(np.prod(shape))
            self.layout.append((name, offset, tuple(shape)))
            offset += size
        self.n_weights = sum(int(np.prod(shape)) for name, _, shape in self.layout if name.startswith("W"))
        self.params = np.zeros(offset, self.dtype)
        self.grads = np.zeros(offset, self.dtype)
        self._penalty_scratch = None
        self._output_buffers = {}
        self._bind_layers()

    def _bind_layers(self):
        """Give each layer its views into ``params`` and ``grads`` (after allocation and after unpickling)."""
        for layer, values, gradients in zip(self.layers, self._cut(self.params), self._cut(self.grads)):
            layer.bind(values, gradients)

    def _cut(self, vector):
        """A vector in the layout of ``params`` cut as each layer's parameters are: one {name: view} per layer
        of ``layers`` (``W``, ``b``, ``gamma``, ``beta`` as the layer names them)."""
        where = {name: (offset, shape) for name, offset, shape in self.layout}
        cuts = []
        for k, layer in enumerate(self.layers, 1):
            views = {}
            for name, _ in layer.parameter_shapes():
                offset, shape = where[f"{name}{k}"]
                views[name] = vector[offset:offset + int(np.prod(shape))].reshape(shape)
            cuts.append(views)
        return cuts

    def __setstate__(self, state):  # pickle and deepcopy copy each view on its own: make them views again
        self.__dict__.update(state)
        self._bind_layers()

    # ------------------------------------------------------------------ structure
    @property
    def n_outputs(self):
        return self.layers[-1].n_out

    @property
    def output_activation(self):
        return self.layers[-1].activation

    @property
    def closed_form(self):
        """True when the output activation and the loss give dJ/dZ = (A - T)/N (see losses.py)."""
        return self.loss_fn.pairs_with is not None and self.loss_fn.pairs_with == self.output_activation.name

    @property
    def is_classifier(self):
        return self.output_activation.name in ("sigmoid", "softmax")

    @property
    def n_params(self):
        return self.params.size

    def parameters(self):
        """[(name, array)]: W1, b1, W2, ... numbered from 1 as in the seeds; the arrays themselves (views into
        ``params``; ``get_weights`` and model files use this order, ``params`` its own: see the module docstring)."""
        return [(f"{name}{k + 1}", array) for k, layer in enumerate(self.layers) for name, array in layer.parameters()]

    def initialize(self, init="auto"):
        """(Re)draw every weight from the network's seed; biases start at zero, a norm's gamma at one and
        beta at zero (its running statistics at mean 0, variance 1)."""
        rng = np.random.default_rng(self._init_seed)
        for layer in self.layers:
            scheme = layer.activation.init if init in ("auto", None) else init
            layer.W[...] = _initial_weights(rng, layer.n_in, layer.n_out, scheme)
            if layer.b is not None:
                layer.b[...] = 0
            if layer.norm is not None:
                layer.norm.reset_parameters()
        for name, array in self.running_statistics():
            array[...] = 0 if name.startswith("running_mean") else 1
        return self

    def running_statistics(self):
        """[(name, array)]: ``running_mean{k}``, ``running_var{k}`` of every batch-norm layer k (the arrays
        themselves). They are state, not parameters: no gradient, not in ``params``; only a training step
        (:data:`handgrad.layers.TRAINING`, or the trainer's :meth:`update_running_statistics`) changes them.
        Model files and checkpoints store them."""
        return [(f"{name}{k}", getattr(layer.norm, name)) for k, layer in enumerate(self.layers, 1)
                if layer.norm is not None and layer.norm.kind == "batch" for name in ("running_mean", "running_var")]

    def batch_norms(self):
        """The BatchNorm layers, in order (the norms whose statistics run over the batch)."""
        return [layer.norm for layer in self.layers if layer.norm is not None and layer.norm.kind == "batch"]

    def update_running_statistics(self):
        """Fold every batch norm's statistics of the last forward pass into its running ones (BatchNorm.update_running).
        The trainer calls it once per step, after the step's loss is known to be finite (training.train_step),
        having run the pass without updating them (layers.OBJECTIVE_WITH_DROPOUT)."""
        for norm in self.batch_norms():
            norm.update_running()

    @contextlib.contextmanager
    def synchronized_batch_norm(self, reduce):
        """Inside the block, every batch norm takes its statistics and backward sums over the global batch:
        ``reduce(array)`` returns the sum of ``array`` over the processes (handgrad.distributed's Allreduce;
        docs/derivations.md, "Batch norm over K processes"). ``reduce=None``: the batch is this process's."""
        if reduce is not None and not callable(reduce):
            raise ConfigError(f"synchronized_batch_norm needs reduce(array) -> its sum over the processes, or None; "
                              f"got {reduce!r}.")
        norms = self.batch_norms()
        for norm in norms:
            norm.reduce = reduce
        try:
            yield self
        finally:
            for norm in norms:
                norm.reduce = None

    def check_running_statistics(self, arrays):
        """``{name: array}`` checked against :meth:`running_statistics`: every name, shape and value (finite; a
        variance >= 0). Returns copies in the network's dtype, or raises a ConfigError naming what does not fit."""
        targets = dict(self.running_statistics())
        if set(arrays) != set(targets):
            raise ConfigError(f"expected running statistics {sorted(targets)}, got {sorted(arrays)}.")
        checked = {}
        for name, target in targets.items():
            value = np.asarray(arrays[name])
            if value.shape != target.shape:
                raise ConfigError(f"{name} has shape {target.shape}, got an array of shape {value.shape}.")
            variance = name.startswith("running_var")
            if value.dtype.kind not in "iuf" or not np.all(np.isfinite(value)) or (variance and np.any(value < 0)):
                rule = "finite real numbers" + (" >= 0 (it is a variance)" if variance else "")
                raise ConfigError(f"{name} must hold {rule}, got {value!r}.")
            checked[name] = value.astype(target.dtype)
        return checked

    def set_running_statistics(self, arrays):
        """Copy ``{name: array}`` (names of :meth:`running_statistics`) into the layers, checking every name,
        shape and value (:meth:`check_running_statistics`) before any is copied."""
        checked = self.check_running_statistics(arrays)
        for name, target in self.running_statistics():
            np.copyto(target, checked[name])
        return self

    def config(self):
        """The arguments that rebuild this network (JSON-serializable for built-in activations and losses)."""
        return {
            "n_inputs": self.n_inputs,
            "layers": [self._layer_config(layer) for layer in self.layers],
            "loss": self.loss_fn.name,
            "bias": self.bias,
            "l2": self.l2,
            "l1": self.l1,
            "dropout": list(self.dropout),
            "seed": self.seed if isinstance(self.seed, (int, type(None))) else None,
            "dtype": self.dtype.name,
            "init": self.init if isinstance(self.init, str) else "custom",
        }

    def _layer_config(self, layer):
        """[size, activation], or a layer dict when the layer has a norm or a bias unlike the network's."""
        if layer.norm is None and layer.has_bias == self.bias:
            return [layer.n_out, layer.activation.config()]
        entry = {"size": layer.n_out, "activation": layer.activation.config()}
        if layer.norm is not None:
            entry["norm"] = layer.norm.kind
        else:
            entry["bias"] = layer.has_bias
        return entry

    def get_weights(self):
        """A list [W1, b1, W2, b2, ...] of copies (b omitted when bias=False)."""
        return [array.copy() for _, array in self.parameters()]

    def set_weights(self, weights):
        """Set every parameter from a list in the order of :meth:`get_weights` (shapes must match)."""
        targets = self.parameters()
        weights = list(weights)
        if len(weights) != len(targets):
            raise ConfigError(f"set_weights needs {len(targets)} arrays, got {len(weights)}.")
        for (name, target), value in zip(targets, weights):
            value = np.asarray(value)
            if value.shape != target.shape:
                raise ConfigError(f"{name} has shape {target.shape}, got an array of shape {value.shape}.")
            target[...] = value
        return self

    def dropout_rate(self, k):
        """The dropout rate after layer k (from 1; 0 for none, and for the output layer)."""
        return self.dropout[k - 1] if 1 <= k <= len(self.dropout) else 0.0

    def gradients(self):
        """[(name, array)]: dW1, db1, dW2, ... of the last backward pass (views into ``grads``), named as
        :meth:`parameters` names the parameters."""
        return [(f"{name}{k + 1}", array) for k, layer in enumerate(self.layers) for name, array in layer.gradients()]

    def vector_from(self, arrays):
        """A parameter vector (``params``' layout) from arrays in the order of :meth:`parameters`
        (W1, b1, W2, ...; shapes must match): how a list of per-array values maps onto theta."""
        arrays = list(arrays)
        names = self.parameters()
        if len(arrays) != len(names):
            raise ConfigError(f"expected {len(names)} arrays (one per parameter array), got {len(arrays)}.")
        vector = np.empty_like(self.params)
        views = [view for cut in self._cut(vector) for view in cut.values()]  # in the order of parameters()
        for (name, _), view, array in zip(names, views, arrays):
            array = np.asarray(array)
            if array.shape != view.shape:
                raise ConfigError(f"{name} has shape {view.shape}, got an array of shape {array.shape}.")
            view[...] = array
        return vector

    def astype(self, dtype):
        """An independent network in ``dtype`` ("float32" or "float64") with these weights and batch norm's
        running statistics (no training state, no metadata): e.g. a float64 copy for gradient checks and
        curvature, where float32 rounding would swamp what is measured."""
        copy = from_config({**self.config(), "dtype": np.dtype(dtype).name})
        copy.params[...] = self.params
        return copy.set_running_statistics(dict(self.running_statistics()))

    def copy(self):
        """An independent network with the same architecture, weights and dropout stream (no training state)."""
        state, self.training_state = self.training_state, None
        try:
            return _copy.deepcopy(self)
        finally:
            self.training_state = state

    def __repr__(self):
        layers = ", ".join(self._layer_repr(layer) for layer in self.layers)
        extras = "" if self.bias else ", bias=False"
        extras += f", dropout={self.dropout}" if any(self.dropout_rate(k) for k in range(1, len(self.layers))) else ""
        extras += f", l2={self.l2}" if self.l2 else ""
        extras += f", l1={self.l1}" if self.l1 else ""
        return f"MLP({self.n_inputs}, [{layers}], loss={self.loss_fn.name!r}{extras}, dtype={self.dtype.name!r})"

    def _layer_repr(self, layer):
        """One layer as the spec writes it: (size, activation), 'size:activation:batchnorm', or a dict when its
        bias differs from the network's ``bias``."""
        if layer.norm is not None:
            return f"'{layer.n_out}:{layer.activation.spec()}:{layer.norm.kind}norm'"
        if layer.has_bias != self.bias:
            return repr({"size": layer.n_out, "activation": layer.activation.spec(), "bias": layer.has_bias})
        return f"({layer.n_out}, {layer.activation.spec()!r})"

    def summary(self):
        """A table of layers, shapes and parameter counts."""
        rows = [f"MLP: {self.n_inputs} inputs, loss {self.loss_fn.name}, {self.dtype.name}"]
        width = max(14, *(len(layer.activation.spec()) + 2 for layer in self.layers))
        rows.append(f"{'layer':<7}{'activation':<{width}}{'W':<14}{'b':<10}{'params':>8}")
        for k, layer in enumerate(self.layers, 1):
            b = f"({layer.n_out},)" if layer.has_bias else (f"{layer.norm.kind}norm" if layer.norm is not None else "-")
            count = sum(array.size for _, array in layer.parameters())
            rows.append(f"{k:<7}{layer.activation.spec():<{width}}{layer.W.shape!s:<14}{b:<10}{count:>8}")
        rows.append(f"total parameters: {self.n_params}")
        parts = [f"{name} {value:g}" for name, value in (("l2", self.l2), ("l1", self.l1)) if value]
        dropped = [f"{self.dropout_rate(k):g} after layer {k}" for k in range(1, len(self.layers))
                   if self.dropout_rate(k)]
        if dropped:
            parts.append("dropout " + ", ".join(dropped))
        if parts:  # what training adds to the objective (the penalties) and to the forward pass (dropout)
            rows.append("regularization: " + ", ".join(parts))
        return "\n".join(rows)

    # ------------------------------------------------------------------ data checks
    def check_inputs(self, X):
        """X as a C-contiguous (N, n_inputs) array of the network's dtype, or a DataError saying what is wrong."""
        if (type(X) is np.ndarray and X.dtype == self.dtype and X.ndim == 2 and X.shape[1] == self.n_inputs
                and X.shape[0] > 0 and X.flags.c_contiguous):
            if not _all_finite(X):  # the common case, checked with as little Python as possible
                raise DataError("X contains NaN or infinity; remove or impute those values first.")
            return X
        try:
            X = np.asarray(X)
        except Exception as error:  # ragged lists and the like
            raise DataError(f"X could not be read as an array: {error}.") from None
        if X.dtype.kind not in "biuf":
            raise DataError(f"X must be numeric, got dtype {X.dtype}; convert or drop non-numeric columns.")
        if X.ndim == 1:
            if self.n_inputs == 1:
                X = X.reshape(-1, 1)
            elif X.shape[0] == self.n_inputs:
                X = X.reshape(1, -1)
        if X.ndim != 2:
            raise DataError(f"X must be a 2-D array (samples, features), got shape {X.shape}.")
        if X.shape[0] == 0:
            raise DataError("X is empty: it has no samples.")
        if X.shape[1] != self.n_inputs:
            raise DataError(f"X has {X.shape[1]} features but the network expects {self.n_inputs}.")
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if not _all_finite(X):
            raise DataError("X contains NaN or infinity; remove or impute those values first.")
        return X

    def check_targets(self, T, n_samples):
        """T as an (N, n_outputs) array of the network's dtype; integer class ids become one-hot rows."""
        try:
            T = np.asarray(T)
        except Exception as error:
            raise DataError(f"T could not be read as an array: {error}.") from None
        if T.dtype.kind not in "biuf":
            raise DataError(f"targets must be numeric, got dtype {T.dtype}; encode labels as integers 0..K-1.")
        K = self.n_outputs
        if T.ndim == 2 and T.shape[1] == 1 and K > 1:
            T = T[:, 0]
        if T.shape[:1] != (n_samples,):
            raise DataError(f"X has {n_samples} samples but the targets have {T.shape[0] if T.ndim else 0}.")
        if not np.isfinite(T).all():
            raise DataError("the targets contain NaN or infinity.")
        if T.ndim == 1 and K > 1:
            if not np.all(T == np.round(T)):
                raise DataError(f"1-D targets for {K} outputs must be integer class ids 0..{K - 1}.")
            ids = T.astype(np.int64)
            if ids.min() < 0 or ids.max() >= K:
                raise DataError(f"class id {ids.max() if ids.max() >= K else ids.min()} is out of range: "
                                f"the network has {K} outputs, so labels must be in 0..{K - 1}.")
            one_hot = np.zeros((n_samples, K), self.dtype)
            one_hot[np.arange(n_samples), ids] = 1
            return one_hot
        if T.ndim == 1:
            T = T.reshape(-1, 1)
        if T.ndim != 2 or T.shape[1] != K:
            raise DataError(f"targets must have shape ({n_samples}, {K}) or be class ids, got {T.shape}.")
        T = np.ascontiguousarray(T, dtype=self.dtype)
        low, high = self.loss_fn.target_range
        if (low > -np.inf and T.min() < low) or (high < np.inf and T.max() > high):
            raise DataError(f"loss '{self.loss_fn.name}' needs targets in [{low:g}, {high:g}], "
                            f"got values from {T.min():g} to {T.max():g}.")
        if (self.closed_form and self.output_activation.name == "softmax"
                and not np.allclose(T.sum(axis=1), 1, atol=1e-6)):
            raise DataError("cross_entropy after softmax needs each target row to sum to 1 (one-hot or "
                            "probabilities), or integer class ids.")
        return T

    def check_sample_weight(self, sample_weight, n_samples):
        if sample_weight is None:
            return None
        try:
            w = np.asarray(sample_weight, dtype=self.dtype).reshape(-1)
        except (TypeError, ValueError):
            raise DataError("sample_weight must be a 1-D array of numbers, one per sample.") from None
        if w.shape != (n_samples,):
            raise DataError(f"sample_weight needs one weight per sample ({n_samples}), got {w.shape[0]}.")
        if not np.isfinite(w).all() or (w < 0).any():
            raise DataError("sample_weight must be finite and >= 0.")
        return w

    # ------------------------------------------------------------------ forward
    def run_forward(self, X, training=False):
        """Forward through every layer of ``sequence`` for a prepared X (see :meth:`check_inputs`); each
        layer keeps what backward needs. Returns the output layer's buffer A_L (overwritten by the next
        pass of the same batch size). ``training`` is a bool or a :class:`handgrad.layers.Mode`: True (a
        training step) turns dropout on, makes batch norm use and update the batch statistics; False
        (inference) uses the running statistics; :data:`handgrad.layers.OBJECTIVE` uses the batch statistics
        without dropout and without updating anything (what loss_and_grad differentiates)."""
        H, mode = X, as_mode(training)
        for layer in self.sequence:
            H = layer.forward(H, mode)
        return H

    def _inference(self, X, output_activation=True):
        """Forward for prediction: fresh arrays, each activation applied in place, no dropout, and the
        training buffers left alone. Without ``output_activation`` it returns the output logits Z_L.
        (Written out flat: a single-sample predict is three matrix-vector products and little else.)"""
        H = X
        *hidden, output = self.layers
        for layer in hidden:
            H = np.matmul(H, layer.W)
            if layer.b is not None:
                H += layer.b
            if layer.norm is not None:  # batch norm with its running statistics
                H = layer.norm.inference(H)
            H = layer.activation.forward(H, out=H)  # (a user-defined activation may return a new array)
        Z = np.matmul(H, output.W)
        if output.b is not None:
            Z += output.b
        return output.activation.forward(Z, out=Z) if output_activation else Z

    def _chunked(self, X, output_activation=True):
        N = X.shape[0]
        if N <= _FORWARD_CHUNK:
            return self._inference(X, output_activation)
        out = np.empty((N, self.n_outputs), self.dtype)
        for start in range(0, N, _FORWARD_CHUNK):
            out[start:start + _FORWARD_CHUNK] = self._inference(X[start:start + _FORWARD_CHUNK], output_activation)
        return out

    def _streamed(self, X, output_activation=True):
        """_chunked for a memory-mapped .npy, Zarr or Dask X (handgrad.streaming), read a block of rows at a
        time: whole multiples of _FORWARD_CHUNK (about streaming.BLOCK_BYTES of X each), so every pass sees the
        rows it sees with X in memory and the outputs are the same bit for bit. Memory: one block and the output."""
        N = X.shape[0] if getattr(X, "ndim", None) == 2 else 0
        if not isinstance(N, (int, np.integer)) or N == 0:  # 1-D, empty, or Dask's unknown sizes: as before
            return self._chunked(self.check_inputs(X), output_activation)
        if X.shape[1] != self.n_inputs:
            raise DataError(f"X has {X.shape[1]} features but the network expects {self.n_inputs}.")
        reader, N = row_reader(X), int(N)
        step = max(1, default_block_rows(X) // _FORWARD_CHUNK) * _FORWARD_CHUNK
        out = np.empty((N, self.n_outputs), self.dtype)
        for a in range(0, N, step):
            b = min(a + step, N)
            try:
                block = self.check_inputs(reader.read(a, b))
            except DataError as error:
                raise DataError(f"rows {a}..{b - 1} of X: {error}") from None
            out[a:b] = self._chunked(block, output_activation)
            del block  # (before the next block is read: one in memory at a time)
        return out

    def forward(self, X):
        """The network output A_L for inputs X of shape (N, n_inputs): a new (N, n_outputs) array. A
        memory-mapped .npy, Zarr or Dask X is read block by block (:meth:`_streamed`), never whole."""
        if type(X) is not np.ndarray and is_streamed(X):
            return self._streamed(X)
        return self._chunked(self.check_inputs(X))

    __call__ = forward

    def predict_proba(self, X):
        """Class probabilities: the softmax rows, or for a sigmoid output the probability of each output being 1."""
        if not self.is_classifier:
            raise ConfigError("predict_proba needs a sigmoid or softmax output; use forward() for a regressor.")
        return self.forward(X)

    def predict(self, X):
        """Sigmoid output: outputs rounded to {0, 1} (seed 000, 1.4.1), shape (N,) for one output.
        Softmax output: the argmax class id, shape (N,). Any other output: the outputs themselves.

        Classifiers decide from the logits Z_L: softmax is increasing in each z_k along a row, so
        argmax A = argmax Z; and sigmoid(z) >= 1/2 exactly when z >= 0. That skips the exponentials.
        """
        name = self.output_activation.name
        if name not in ("sigmoid", "softmax"):
            return self.forward(X)
        if type(X) is not np.ndarray and is_streamed(X):
            Z = self._streamed(X, output_activation=False)
        else:
            Z = self._chunked(self.check_inputs(X), output_activation=False)
        if name == "softmax":
            return Z.argmax(axis=1)
        labels = (Z >= 0).astype(np.int64)
        return labels[:, 0] if labels.shape[1] == 1 else labels

    # ------------------------------------------------------------------ objective and gradient
    def regularization(self):
        """(l2/2) sum_k ||W_k||^2 + l1 sum_k sum |W_k|: the penalty part of J (the weights: ``params[:n_weights]``)."""
        weights = self.params[:self.n_weights]
        penalty = 0.0
        if self.l2:
            penalty += 0.5 * self.l2 * float(np.dot(weights, weights))
        if self.l1:
            penalty += self.l1 * float(np.abs(weights).sum())
        return penalty

    def data_total(self, A, T, sample_weight=None):
        """sum_i w_i l_i for the forward pass just run (A its output). With a closed-form output the l_i
        come from the logits Z_L (and the rows' log-sum-exp the softmax kept), finite for any logits."""
        if self.closed_form:
            output = self.layers[-1]
            return self.loss_fn.total_from_logits(output.Z, T, output.lse, sample_weight)
        return weighted_total(self.loss_fn.per_sample(A, T), sample_weight)

    def objective(self, A, T, sample_weight=None):
        """J from the output A of the forward pass just run: (1/N) sum_i w_i l_i plus the regularization."""
        J = self.data_total(A, T, sample_weight) / A.shape[0]
        if self.l2 or self.l1:
            J += self.regularization()
        return J

    def backprop(self, X, T, sample_weight=None, training=True, observe=None, *, n_total=None, penalty=True):
        """J on a prepared batch, and its gradient dJ/dtheta written into ``grads`` (every layer's dW, db).

        X, T and sample_weight must be checked arrays of the network's dtype (:meth:`check_inputs`,
        :meth:`check_targets`, :meth:`check_sample_weight`); ``training`` (a bool or a Mode, see
        :meth:`run_forward`) turns dropout on and makes batch norm update its running statistics: True is
        a training step's pass (the trainer runs it without the update, which it commits after checking J:
        :meth:`update_running_statistics`); only a training step should pass True. ``observe(layer, dY)``, if
        given, is called with the gradient each layer receives, before the layer's backward overwrites it
        (explain uses it).

        Data-parallel training (handgrad.distributed) runs it on one shard of a batch of ``n_total``
        rows: the data term is divided by n_total instead of the shard's N, and ``penalty=False`` leaves
        the regularization out (one shard adds it), so that the shards' J and gradients sum to the
        batch's (docs/scaling.md, "What every rank does").
        """
        A = self.run_forward(X, training)
        N = X.shape[0]
        n = N if n_total is None else n_total  # the N of J = (1/N) sum_i w_i l_i
        regularize = penalty and (self.l2 or self.l1)
        J = self.data_total(A, T, sample_weight) / n
        if regularize:
            J += self.regularization()
        buffer = self._output_buffers.get(N)
        if buffer is None:
            buffer = self._output_buffers[N] = np.empty((N, self.n_outputs), self.dtype)
        if self.closed_form:  # dJ/dZ_L = (A - T)/N: softmax + CE, sigmoid + binary CE, exp + Poisson deviance
            dY = np.subtract(A, T, out=buffer)
            dY *= 1.0 / n
        else:  # dJ/dA_L; the output layer multiplies by f'(Z_L) (or softmax's Jacobian)
            dY = self.loss_fn.gradient(A, T, out=buffer) if N else buffer  # divided by the shard's N (if any rows)
            if n != N:
                dY *= N / n
        if sample_weight is not None:
            dY *= sample_weight[:, None]
        last = len(self.sequence) - 1
        for i in range(last, -1, -1):
            layer = self.sequence[i]
            if observe is not None:
                observe(layer, dY)
            if i == last and self.closed_form:
                dY = layer.backward_from_dZ(dY, i > 0)
            else:
                dY = layer.backward(dY, i > 0)
        if regularize:
            self._add_penalty_gradient()
        return J

    def _add_penalty_gradient(self):
        """dW_k += l2 W_k + l1 sign(W_k), for every layer at once on the weight slice of the vectors."""
        weights, scratch = self.params[:self.n_weights], self._penalty_scratch
        if scratch is None:  # (l1 or l2 may be set after construction)
            scratch = self._penalty_scratch = np.empty_like(weights)
        dweights = self.grads[:self.n_weights]
        if self.l2:
            np.multiply(weights, self.l2, out=scratch)
            dweights += scratch
        if self.l1:
            np.sign(weights, out=scratch)
            scratch *= self.l1
            dweights += scratch

    @contextlib.contextmanager
    def dropout_stream(self, rng):
        """Draw the dropout masks from ``rng`` inside the ``with`` block (the network's own stream after it)."""
        layers = [layer for layer in self.sequence if isinstance(layer, Dropout)]
        for layer in layers:
            layer.rng = rng
        try:
            yield
        finally:
            for layer in layers:
                layer.rng = self.rng

    def loss(self, X, T, sample_weight=None, batch_statistics=True):
        """The objective J (data loss averaged over the N samples plus the regularization terms).

        With batch normalization, J is computed as in training, from the statistics of the batch X (the J
        whose gradient loss_and_grad returns); ``batch_statistics=False`` uses the running statistics, as
        predict does (an evaluation loss). Without batch norm the two are the same. Dropout is off.

        A memory-mapped .npy, Zarr or Dask X, T or sample_weight is read block by block (equal to the in-memory
        J up to the rounding of the sum), except with batch norm's batch statistics, which need the whole X.
        """
        if ((not batch_statistics or not self.batch_norms())
                and (is_streamed(X) or is_streamed(T) or is_streamed(sample_weight))):
            return self._streamed_loss(X, T, sample_weight)
        X = self.check_inputs(X)
        T = self.check_targets(T, X.shape[0])
        w = self.check_sample_weight(sample_weight, X.shape[0])
        return self.objective(self.run_forward(X, OBJECTIVE if batch_statistics else INFERENCE), T, w)

    def _streamed_loss(self, X, T, sample_weight):
        """J over data read block by block (handgrad.streaming.Stream: each block checked as it is read), the
        forward pass _FORWARD_CHUNK rows at a time with the running statistics (:meth:`_inference`: fresh
        arrays, not the training buffers, which a layer keeps for each batch size)."""
        stream = Stream(self, X, T, sample_weight)
        total = 0.0
        for block in range(stream.n_blocks):
            Xb, Tb, wb = stream.block(block)
            for a in range(0, Xb.shape[0], _FORWARD_CHUNK):
                rows = slice(a, a + _FORWARD_CHUNK)
                total += self._inference_total(Xb[rows], Tb[rows], None if wb is None else wb[rows])
            del Xb, Tb, wb  # (before the next block is read)
        return total / stream.shape[0] + self.regularization()

    def _inference_total(self, X, T, sample_weight):
        """sum_i w_i l_i of a prepared chunk, as :meth:`data_total` gives it (from the logits when closed-form)."""
        if self.closed_form:
            return self.loss_fn.total_from_logits(self._inference(X, False), T, None, sample_weight)
        return weighted_total(self.loss_fn.per_sample(self._inference(X), T), sample_weight)

    def loss_and_grad(self, X, T, sample_weight=None, dropout_seed=None):
        """J and its gradient: ``grads[k] = (dJ/dW_k, dJ/db_k or None)``, new arrays of the parameters' shapes.

        With ``dropout_seed``, dropout is applied with masks drawn from that seed (the same
        seed gives the same masks, which makes dropout's gradient testable); without it,
        dropout is off. Batch norm uses the batch's statistics (J as in training) and leaves its
        running statistics alone. The norms' dJ/dgamma_k, dJ/dbeta_k are in ``net.gradients()``
        (and the whole gradient in ``net.grads``) after the call.
        """
        X = self.check_inputs(X)
        T = self.check_targets(T, X.shape[0])
        w = self.check_sample_weight(sample_weight, X.shape[0])
        check_seed("dropout_seed", dropout_seed)
        if dropout_seed is None:
            J = self.backprop(X, T, w, training=OBJECTIVE)
        else:
            with self.dropout_stream(np.random.default_rng(dropout_seed)):
                J = self.backprop(X, T, w, training=OBJECTIVE_WITH_DROPOUT)
        grads = [(layer.dW.copy(), None if layer.db is None else layer.db.copy()) for layer in self.layers]
        return J, grads

    # ------------------------------------------------------------------ curvature
    def hessian_vector_product(self, X, T, v, sample_weight=None, dropout_seed=None):
        """H v, where H = d^2 J / d theta^2 is the Hessian of the objective :meth:`loss_and_grad` differentiates
        (same X, T, sample weights and dropout), and v a vector in the layout of ``params``; returns a new
        vector in that layout. Exact up to rounding, at the cost of about two gradients, by Pearlmutter's
        R-operator (docs/derivations.md, "Curvature: Hessian-vector products"):

            forward, backward             the ordinary pass (it leaves dJ/dtheta in ``grads``, as loss_and_grad)
            R-forward, layer by layer     R{Z} = R{X} W + X V_W + V_b,  R{A} = f'(Z) R{Z}
            output                        R{dZ_L} = R{A_L}/N (closed forms), else R{dA_L} = loss Hessian R{A_L}
            R-backward, in reverse        R{dW} = R{X}^T dZ + X^T R{dZ},  R{dX} = R{dZ} W^T + dZ V_W^T
            penalty                       H v += l2 v on the weights (l1 adds nothing: |w|'' = 0 for w != 0)

        A layer with a norm runs R{Z} through the norm's R-operator to R{Zhat}, and R{dZhat} back to R{dZ},
        with the direction's V_gamma, V_beta (docs/derivations.md, "Through a normalization layer"). The
        objective is the one loss_and_grad differentiates: batch norm uses the batch's own statistics (every
        row of X moves the mean and variance, and H has those terms); its running statistics are neither
        used nor changed.

        Afterwards ``grads`` holds dJ/dtheta at the current parameters on this batch and the layers' buffers
        that pass (exactly what :meth:`loss_and_grad` leaves); ``params`` is unchanged.
        """
        X = self.check_inputs(X)
        T = self.check_targets(T, X.shape[0])
        w = self.check_sample_weight(sample_weight, X.shape[0])
        v = self.check_direction(v)
        check_seed("dropout_seed", dropout_seed)
        self._check_r_operator()
        received = {}  # the gradient each layer received, before its backward overwrote it in place

        def keep(layer, dY):
            received[id(layer)] = dY.copy()

        if dropout_seed is None:  # batch norm: the batch's statistics, running ones untouched (as loss_and_grad)
            self.backprop(X, T, w, training=OBJECTIVE, observe=keep)
        else:
            with self.dropout_stream(np.random.default_rng(dropout_seed)):
                self.backprop(X, T, w, training=OBJECTIVE_WITH_DROPOUT, observe=keep)
        Hv = np.zeros_like(self.params)
        directions, outputs = self._views_by_layer(v), self._views_by_layer(Hv)
        R = None  # R{X} of the data: it does not depend on theta
        for layer in self.sequence:
            R = layer.r_forward(R, directions[id(layer)])
        R = self._output_r_gradient(R, T, w)
        last = len(self.sequence) - 1
        for i in range(last, -1, -1):
            layer = self.sequence[i]
            if i == last and self.closed_form:
                R = layer.r_backward_from_dZ(R, outputs[id(layer)], i > 0)
            else:
                R = layer.r_backward(received[id(layer)], R, outputs[id(layer)], i > 0)
        if self.l2:
            Hv[:self.n_weights] += self.l2 * v[:self.n_weights]
        if not _all_finite(Hv):
            raise DataError("H v came out NaN or infinite: the objective's second derivatives overflow at these "
                            "parameters on this data (check that net.params and the loss are finite, or use "
                            "float64 and a smaller v).")
        return Hv

    def _output_r_gradient(self, RA, T, sample_weight):
        """R{dJ/dZ_L} = R{A_L}/N for a closed-form output, else R{dJ/dA_L}; rows scaled by w_i."""
        if self.closed_form:
            R = self.loss_fn.r_closed_form(RA)
        else:
            R = self.loss_fn.r_gradient(self.layers[-1].A, T, RA)
        if sample_weight is not None:
            R *= sample_weight[:, None]
        return R

    def check_direction(self, v, name="v"):
        """v as a new vector of the network's dtype in the layout of ``params``, or a DataError saying what is wrong."""
        try:
            v = np.asarray(v)
        except Exception as error:  # ragged lists and the like
            raise DataError(f"{name} could not be read as an array: {error}.") from None
        if v.dtype.kind not in "iuf":
            raise DataError(f"{name} must be a vector of real numbers, got dtype {v.dtype}.")
        if v.shape != self.params.shape:
            raise DataError(f"{name} must be a vector of {self.n_params} numbers in the layout of net.params (see "
                            f"net.layout), got shape {v.shape}.")
        with np.errstate(over="ignore"):  # a float64 entry beyond float32's range becomes inf: refused below
            v = v.astype(self.dtype)
        if not np.isfinite(v).all():
            raise DataError(f"{name} contains NaN or infinity; a direction must be finite.")
        return v

    def _check_r_operator(self):
        """A ConfigError naming the first layer or activation that has no R-operator (see layers.Layer)."""
        for layer in self.sequence:
            if not (callable(getattr(layer, "r_forward", None)) and callable(getattr(layer, "r_backward", None))):
                raise ConfigError(f"Hessian-vector products need the R-operator of every layer, and "
                                  f"{type(layer).__name__} has none: give it r_forward and r_backward "
                                  "(see handgrad.layers.Layer).")
            norm = getattr(layer, "norm", None)
            if norm is not None and not self._r_operator_proven(norm):
                raise ConfigError(f"Hessian-vector products need the R-operator of every normalization layer, and "
                                  f"{type(norm).__name__} has none of its own: give it r_forward and r_backward "
                                  "(see handgrad.layers.BatchNorm).")
            activation = getattr(layer, "activation", None)
            if activation is not None and all(getattr(type(activation), name) is getattr(Activation, name)
                                              for name in ("second_derivative", "r_backward")):
                raise ConfigError(f"Hessian-vector products need f''(Z), and activation '{activation.name}' has no "
                                  "second_derivative(Z, A) (see handgrad.activations).")
        if type(self.loss_fn).r_gradient is Loss.r_gradient and not self.closed_form:
            raise ConfigError(f"Hessian-vector products need the loss's second derivative, and loss "
                              f"'{self.loss_fn.name}' has no r_gradient(A, T, RA) (see handgrad.losses).")

    @staticmethod
    def _r_operator_proven(norm):
        """Batch and layer norm have a tested R-operator; any other norm (a subclass with its own forward, say)
        must define r_forward and r_backward itself: inheriting theirs would silently differentiate theirs."""
        names = ("r_forward", "r_backward")
        if not all(callable(getattr(norm, name, None)) for name in names):
            return False
        return type(norm) in NORMS.values() or all(name in vars(type(norm)) for name in names)

    def _views_by_layer(self, vector):
        """id(layer) -> {name: view into ``vector``} for every layer of ``sequence`` (empty without parameters)."""
        views = {id(layer): {} for layer in self.sequence}
        views.update((id(layer), cut) for layer, cut in zip(self.layers, self._cut(vector)))
        return views

    def forward_backward(self, X, T, sample_weight=None):
        """One forward and backward pass of the engine with every intermediate kept: ``(J, records)``.

        ``records[k-1]`` is a dict of new arrays for layer k: ``H`` (its input: X or A_{k-1}), ``Z``,
        ``A``, ``dA`` (dJ/dA_k; for the output layer the loss gradient, shown even where the closed
        form gives dZ_L directly), ``dZ``, ``dW``, ``db`` (None without a bias). A layer with a norm
        (``Z = H W``, ``Zhat = gamma * xhat + beta``, ``A = f(Zhat)``) adds ``norm`` ('batch' or
        'layer'), ``mean``, ``var``, ``std``, ``xhat``, ``Zhat``, ``dZhat``, ``gamma``, ``beta``,
        ``dgamma``, ``dbeta``. Dropout is off; batch norm uses the batch statistics, as loss_and_grad.
        X, T and sample_weight are checked as in :meth:`loss_and_grad`. (explain, trace and the student
        checker render these numbers; they compute none of their own.)
        """
        X = self.check_inputs(X)
        T = self.check_targets(T, X.shape[0])
        w = self.check_sample_weight(sample_weight, X.shape[0])
        received, kept = {}, [layer.keep_z for layer in self.layers]
        for layer in self.layers:
            layer.keep_z = True  # Z in its own buffer, not overwritten by A
        try:
            J = self.backprop(X, T, w, training=OBJECTIVE,
                              observe=lambda layer, dY: received.__setitem__(id(layer), dY.copy()))
        finally:
            for layer, keep in zip(self.layers, kept):
                layer.keep_z = keep
        output = self.layers[-1]
        if self.closed_form:  # the engine went straight to dZ_L; dJ/dA_L for the record
            received[id(output)] = self.loss_fn.gradient(output.A, T)
            if w is not None:
                received[id(output)] *= w[:, None]
        records = []
        for layer in self.layers:
            record = {"H": layer.X.copy(), "Z": layer.Z.copy(), "A": layer.A.copy(), "dA": received[id(layer)],
                      "dZ": layer.dZ.copy(), "dW": layer.dW.copy(), "db": None if layer.db is None else layer.db.copy()}
            if layer.norm is not None:
                norm = layer.norm
                record.update(norm=norm.kind, mean=norm.mean.copy(), var=norm.var.copy(), std=norm.std.copy(),
                              xhat=norm.xhat.copy(), Zhat=layer.Zhat.copy(), dZhat=layer.dZhat.copy(),
                              gamma=norm.gamma.copy(), beta=norm.beta.copy(), dgamma=norm.dgamma.copy(),
                              dbeta=norm.dbeta.copy())
            records.append(record)
        return J, records

    # ------------------------------------------------------------------ training and files
    def fit(self, X, T, **options):
        """Train with mini-batch gradient descent; see :func:`handgrad.training.fit` for every option."""
        from .training import fit

        return fit(self, X, T, **options)

    def partial_fit(self, X, T, **options):
        """One pass over (X, T), keeping the optimizer state between calls (streaming data)."""
        from .training import partial_fit

        return partial_fit(self, X, T, **options)

    def save(self, path, **metadata):
        """Write the network to a model file (see handgrad.io; no pickle, atomic); :func:`load` reads it back."""
        from .io import plain_json, save

        try:  # a file that cannot be read back is refused before anything is written
            from_config(plain_json(self.config(), "the network's configuration"))
        except (ConfigError, TypeError, ValueError) as error:
            raise ConfigError(f"this network cannot be saved: its configuration does not rebuild it ({error}). "
                              "Custom activation or loss objects cannot be stored; use built-in names.") from None
        return save(self, path, **metadata)

    def to_onnx(self, path, **options):
        """Export to an ONNX model file (needs the 'onnx' extra); see handgrad.onnx_export."""
        from .onnx_export import to_onnx

        return to_onnx(self, path, **options)

    def _repr_html_(self):  # Jupyter: a table of layers and a small diagram (handgrad.display)
        from .display import mlp_html

        return mlp_html(self)


# ---------------------------------------------------------------------------- model files
def from_config(config):
    """An MLP from :meth:`MLP.config` (freshly initialized: the caller copies the weights in)."""
    config = dict(config)
    if config.get("init") not in ("auto", "he", "glorot", "lecun"):
        config["init"] = "auto"  # a custom initializer is not stored; the weights come from the file anyway
    layers = [entry if isinstance(entry, dict) else tuple(entry) for entry in config.pop("layers")]
    return MLP(layers=layers, **config)


def load(path):
    """The MLP stored in ``path`` by ``net.save``, with ``net.metadata`` and ``net.extra_arrays`` set.

    The file is verified (checksums, format version, no pickle; see handgrad.io.read_model),
    the network rebuilt from its configuration, and every parameter (and batch norm's running
    statistics) checked by name, shape and dtype before it is copied in.
    """
    import os

    from .errors import ModelFileError
    from .io import read_model

    config, arrays, user_metadata, extra_arrays = read_model(path)
    where = f"'{os.fspath(path)}'"
    try:
        net = from_config(config)
    except (ConfigError, TypeError, ValueError, KeyError) as error:
        raise ModelFileError(f"{where} describes a network this handgrad cannot build: {error}.") from None
    expected = dict(net.parameters())
    expected.update(net.running_statistics())  # batch norm's running_mean{k}, running_var{k}
    unknown = [name for name in arrays if name not in expected]
    if unknown:
        raise ModelFileError(f"{where} holds arrays {unknown} that the architecture has no place for.")
    for name, target in expected.items():
        if name not in arrays:
            raise ModelFileError(f"{where} lacks parameter {name}.")
        if arrays[name].shape != target.shape or arrays[name].dtype != target.dtype:
            raise ModelFileError(f"{where}: {name} is {arrays[name].dtype} {arrays[name].shape}, but the "
                                 f"architecture needs {target.dtype} {target.shape}.")
        target[...] = arrays[name]
    net.metadata = user_metadata
    net.extra_arrays = extra_arrays
    return net
