"""One playground session: the data, the network, the trainer's state, and the frames the page draws.

Pure handgrad and NumPy (no web server here): the server turns the page's messages into calls of
:class:`Session` and sends back what :meth:`Session.frame` returns. Training is the engine's own:
``training.train_step`` (``net.backprop``, then ``optimizer.step(net.params, net.grads, rate)``).
The numbers behind a clicked weight come from ``explain.trace`` on the current batch, which checks
them against ``net.loss_and_grad``.

The current batch is the one the next step trains on: rows ``order[b*B:(b+1)*B]`` of the training
set, in the epoch's permutation. Its gradient is shown at the current weights with dropout off, as
``net.loss_and_grad(X_batch, T_batch)`` computes it; the page can download that batch (network
inputs and targets, as CSV) and the model, so anyone can recompute the number.
"""

import base64
import copy
import functools
import io
import math
import os
import tempfile
import time
import zipfile

import numpy as np

from .. import datasets
from ..display import sections_mathml, tex_to_mathml
from ..errors import ConfigError, DataError, HandgradError
from ..explain import derivation, render_one_weight, trace
from ..network import MLP, load
from ..optimizers import get_optimizer
from ..schedules import get_schedule
from ..training import History, train_step

MAX_UPLOAD_BYTES = 1 << 20  # CSV and model files sent by the page
MAX_SAMPLES = 5000
GRID = 40  # the output heat map is GRID x GRID
NEURON_GRID = 16
SHOWN_ROWS = 6  # rows of Z, A, dA, dZ shown for a clicked neuron
SCHEDULE_HORIZON_EPOCHS = 200  # cosine and one-cycle decay over this many epochs
MAX_CURVE_POINTS = 1000  # the loss curves keep every other point beyond this, so frames stay small
NORMS = ("none", "batch", "layer")  # the layer editor's choice per hidden layer
DTYPES = ("float64", "float32")
INITS = ("auto", "he", "glorot", "lecun")  # the page draws with 'auto'; a model file may bring another
MAX_HIDDEN_LAYERS = 8  # the editor's limit (TensorFlow Playground's is 6): the diagram and the frames stay small

FEATURES = {
    "x1": lambda P: P[:, 0],
    "x2": lambda P: P[:, 1],
    "x1^2": lambda P: P[:, 0] ** 2,
    "x2^2": lambda P: P[:, 1] ** 2,
    "x1x2": lambda P: P[:, 0] * P[:, 1],
    "sin(x1)": lambda P: np.sin(P[:, 0]),
    "sin(x2)": lambda P: np.sin(P[:, 1]),
}
DATA_SETS = (*datasets.GENERATORS, "diagonal")


def make_diagonal(n_samples=200, noise=0.0, seed=None):
    """Seed 000's set (examples/seed000_binary_2d.py): standard normal points, class 1 where x2 > x1.
    The boundary passes through the origin, so seed 000's network, which has no biases, can draw it."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 2))
    y = (X[:, 1] > X[:, 0]).astype(np.int64)
    return X + rng.normal(scale=noise, size=X.shape), y


# One preset per seed document: the network each seed derives, on a 2-D set it can learn. Every layer
# says whether it has a bias (seeds 000 and 001 have none at all) and its norm.
def _layer(size, activation, bias=True, norm="none", **more):
    return {"size": size, "activation": activation, "bias": bias, "norm": norm, **more}


PRESETS = {
    "seed000": {"title": "Seed 000: 2-2-1 ReLU/sigmoid, no biases, half squared error",
                "data": {"name": "diagonal", "noise": 0.0}, "features": ["x1", "x2"],
                "hidden": [_layer(2, "relu", bias=False), _layer(2, "relu", bias=False)],
                "output": "sigmoid", "output_bias": False, "loss": "half_squared_error",
                "optimizer": "sgd", "learning_rate": 2.0, "batch_size": 16, "l1": 0.0, "l2": 0.0},
    "seed001": {"title": "Seed 001: one tanh layer of 16, linear output, no biases, L2 0.1",
                "data": {"name": "regression1d", "noise": 0.3}, "features": ["x1"],
                "hidden": [_layer(16, "tanh", bias=False)], "output": "identity", "output_bias": False,
                "loss": "half_squared_error", "optimizer": "sgd", "learning_rate": 0.1,
                "batch_size": 40, "l1": 0.0, "l2": 0.1},
    "seed002": {"title": "Seed 002: sigmoid hidden layer, softmax + cross-entropy (blobs for MNIST)",
                "data": {"name": "blobs", "noise": 0.5}, "features": ["x1", "x2"],
                "hidden": [_layer(16, "sigmoid")], "output": "softmax", "output_bias": True, "loss": "cross_entropy",
                "optimizer": "sgd", "learning_rate": 0.5, "batch_size": 32, "l1": 0.0, "l2": 0.0},
    "seed003": {"title": "Seed 003: three leaky ReLU layers (slope 0.01), sigmoid + binary cross-entropy",
                "data": {"name": "spirals", "noise": 0.1}, "features": ["x1", "x2"],
                "hidden": [_layer(32, "leaky_relu", slope=0.01)] * 3, "output": "sigmoid", "output_bias": True,
                "loss": "binary_cross_entropy", "optimizer": "adam", "learning_rate": 0.01,
                "batch_size": 32, "l1": 0.0, "l2": 0.0},
    "seed004": {"title": "Seed 004: ReLU layer of 4, linear output, mean squared error",
                "data": {"name": "regression1d", "noise": 0.1}, "features": ["x1"],
                "hidden": [_layer(4, "relu")], "output": "identity", "output_bias": True, "loss": "mse",
                "optimizer": "sgd", "learning_rate": 0.05, "batch_size": 16, "l1": 0.0, "l2": 0.0},
}

for _preset in PRESETS.values():  # a preset trains as its seed does, whatever schedule, dtype or init the page had
    _preset.setdefault("schedule", "constant")
    _preset.setdefault("dtype", "float64")
    _preset.setdefault("init", "auto")

DEFAULT_CONFIG = {
    "data": {"name": "xor", "n_samples": 200, "noise": 0.1, "test_fraction": 0.5, "seed": 0},
    "features": ["x1", "x2"],
    "hidden": [_layer(4, "tanh"), _layer(4, "tanh")],
    "output": "sigmoid", "output_bias": True, "loss": "auto", "seed": 0, "dtype": "float64", "init": "auto",
    "optimizer": "sgd", "learning_rate": 1.0, "schedule": "constant", "batch_size": 10, "l1": 0.0, "l2": 0.0,
}
# The learning rate 1.0: the inputs here lie in about [-1, 1] (TensorFlow Playground's in [-6, 6], with 0.03),
# and at 0.3 xor sat on a plateau (three quadrants right) for 40 epochs and more. A sweep (learning rate 0.3, 1, 3;
# batch 5, 10, 20; tanh and relu; init seeds 0-4) found tanh, batch 10 and 1.0 the steadiest: xor and circles
# reach 90% training accuracy within 35 epochs from every seed, moons within 160, and the 1-D regression and
# the blobs train without diverging (tests/test_playground.py checks xor).

# Each optimizer's learning rate on this page: picking an optimizer moves the rate there (unless the user typed
# their own). From a sweep of the default net (two tanh layers of 4, batch 10; rates 0.001 to 3; init seeds 0-7;
# xor, circles, moons, spirals, blobs, the 1-D regression; median epochs to 95% training accuracy): SGD 1.0
# (xor 37, circles 16, moons 52); momentum and Nesterov (0.9) 0.1, the same step as SGD's 1.0 once the velocity
# has built up (1 / (1 - 0.9) = 10): xor 36, circles 14, moons 40; Adam, AdamW and RMSprop 0.03 (xor 31, 18, 38 and
# 23, 14, 46; at 0.01 Adam missed 95% on moons from 4 seeds of 8). At 10 times these rates the runs fail: SGD at 10
# learned nothing from any seed and diverged on the regression, momentum at 1 and Adam, AdamW, RMSprop at 1 stalled
# on xor, circles, moons and spirals from every seed (Adam at 0.3 already missed circles from 4 seeds of 8). So a
# rate RATE_WARNING_FACTOR times the optimizer's or more gets a hint on the page.
OPTIMIZER_RATES = {"sgd": 1.0, "momentum": 0.1, "nesterov": 0.1, "adam": 0.03, "adamw": 0.03, "rmsprop": 0.03}
RATE_WARNING_FACTOR = 10


def _quiet(method):
    """Run ``method`` with NumPy's overflow, invalid-value and divide warnings off: a diverging run computes
    inf and NaN step after step, and the page says so (the loss checks in Session.step and Session._record);
    the RuntimeWarnings would only be noise in the terminal that runs the server. Only here, never globally."""
    @functools.wraps(method)
    def quietly(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return method(*args, **kwargs)

    return quietly


# ---------------------------------------------------------------------------------------- data
def check_config(config):
    """The settings' shape (an object; data an object; features a list of names), so that a malformed
    ``configure`` message gets a message, not an internal error; the values are checked where they are used."""
    if not isinstance(config, dict):
        raise ConfigError(f"the settings must be a JSON object of names and values, got {type(config).__name__}.")
    if not isinstance(config.get("data", {}), dict):
        raise ConfigError("data must be an object like {\"name\": \"xor\", \"noise\": 0.1}.")
    features = config.get("features", [])
    if not isinstance(features, list) or not all(isinstance(name, str) for name in features):
        raise ConfigError(f"features must be a list of names from {', '.join(FEATURES)}.")
    return config


def _number(config, key, default, low, high, kind=float):
    value = config.get(key, default)
    try:
        value = kind(value)
    except (TypeError, ValueError, OverflowError):  # (int of an infinity: JSON's Infinity or 1e999 parse as one)
        raise ConfigError(f"{key} must be a number, got {value!r}.") from None
    if not (low <= value <= high) or (kind is float and not math.isfinite(value)):
        raise ConfigError(f"{key} must be between {low} and {high}, got {value}.")
    return value


def parse_csv_upload(text, filename="upload.csv"):
    """(points, y) from the text of an uploaded CSV: one or two feature columns, then the target.

    The file goes through ``datasets.load_csv`` (the library's one CSV reader), so a bad row gets its
    message, which names the line and the column."""
    if len(text.encode("utf-8")) > MAX_UPLOAD_BYTES:
        raise DataError(f"'{filename}' is larger than {MAX_UPLOAD_BYTES // 1024} KiB; the playground takes "
                        "small CSV files (two feature columns and a target).")
    with tempfile.TemporaryDirectory(prefix="handgrad-upload-") as folder:
        path = os.path.join(folder, "upload.csv")
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
        try:
            points, y = datasets.load_csv(path)
        except DataError as error:
            raise DataError(str(error).replace(path, filename)) from None
    if points.shape[1] not in (1, 2):
        raise DataError(f"'{filename}' has {points.shape[1]} feature columns; the playground needs one or two "
                        "feature columns (x1, x2) and the target in the last column.")
    if len(y) < 4:
        raise DataError(f"'{filename}' has {len(y)} rows; give at least 4 (half of them become the test set).")
    if len(y) > MAX_SAMPLES:
        raise DataError(f"'{filename}' has {len(y)} rows; the playground takes at most {MAX_SAMPLES}.")
    return points, y


class PlayData:
    """The raw points (1 or 2 coordinates), split into train and test, and what kind of task they pose."""

    def __init__(self, points, y, test_fraction, seed):
        order = np.random.default_rng(seed).permutation(len(y))
        n_test = int(round(len(y) * test_fraction))
        n_test = min(max(n_test, 0), len(y) - 1)
        test, train = order[:n_test], order[n_test:]
        self.points, self.y = points[train], y[train]
        self.test_points, self.test_y = points[test], y[test]
        self.dims = points.shape[1]
        whole = np.asarray(y)
        is_integer = bool(np.all(whole == np.round(whole))) and whole.min() >= 0
        self.n_classes = int(whole.max()) + 1 if is_integer and whole.max() < 20 else 0
        self.task = "regression" if self.n_classes < 2 else ("binary" if self.n_classes == 2 else "multiclass")
        low, high = points.min(axis=0), points.max(axis=0)
        pad = 0.1 * np.maximum(high - low, 1e-9)
        self.box = [float(v) for v in np.concatenate([low - pad, high + pad])]  # x1 min, (x2 min), x1 max, (x2 max)


def make_data(config, csv_points=None):
    data = dict(DEFAULT_CONFIG["data"], **config.get("data", {}))
    n = _number(data, "n_samples", 200, 10, MAX_SAMPLES, int)
    noise = _number(data, "noise", 0.1, 0.0, 5.0)
    test_fraction = _number(data, "test_fraction", 0.5, 0.0, 0.9)
    seed = _number(data, "seed", 0, 0, 2**31, int)
    name = data.get("name", "xor")
    if name == "csv":
        if csv_points is None:
            raise DataError("no CSV file is loaded yet: choose a file first.")
        points, y = csv_points
    elif name == "diagonal":
        points, y = make_diagonal(n, noise, seed)
    else:
        points, y = datasets.make_dataset(name, n, noise, seed)
    return PlayData(points, y, test_fraction, seed)


VALUE_OUTPUTS = ("identity", "exp")  # outputs for which integer targets are numbers (exp: counts), not classes


def for_output(data, output):
    """The data as the output reads it: integer targets of three or more values are classes for softmax, but
    numbers for an identity or exp output (counts, with half_poisson_deviance): a regression."""
    if data.task != "multiclass" or output not in VALUE_OUTPUTS:
        return data
    data = copy.copy(data)
    data.task, data.n_classes = "regression", 0
    return data


def feature_names(config, dims):
    names = list(config.get("features") or ["x1", "x2"])
    unknown = [name for name in names if name not in FEATURES]
    if unknown:
        raise ConfigError(f"unknown input feature {unknown[0]!r}; choose from {', '.join(FEATURES)}.")
    if dims == 1:
        names = [name for name in names if "x2" not in name]
    if not names:
        raise ConfigError("choose at least one input feature" + (" (this data set has x1 only)." if dims == 1
                                                                  else "."))
    return names


def features(points, names):
    return np.column_stack([FEATURES[name](points) for name in names])


# ---------------------------------------------------------------------------------------- network
def _flag(config, key, default):
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}.")
    return value


def hidden_layer(spec, default_bias=True):
    """One hidden layer of the editor as the MLP layer dict (size, activation, norm, bias) and its dropout.

    ``norm`` is 'none', 'batch' or 'layer'. A layer that does not say whether it has a bias takes
    ``default_bias`` (the config's old one-checkbox ``bias``), and none when it has a norm; a bias
    switched on together with a norm is refused: the norm's beta is that layer's bias."""
    norm = spec.get("norm") or "none"
    if norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}; choose {', '.join(NORMS)}.")
    bias = _flag(spec, "bias", default_bias and norm == "none")
    if bias and norm != "none":
        raise ConfigError(f"a layer with {norm} norm has no bias (the norm's beta replaces it): switch its bias off, "
                          "or choose norm none.")
    layer = {"size": _number(spec, "size", 4, 1, 64, int), "activation": _activation(spec), "bias": bias}
    if norm != "none":
        layer["norm"] = norm
    return layer, _number(spec, "dropout", 0.0, 0.0, 0.9)


def network_spec(config, output_size):
    """(layers, dropout rates): the MLP's layer dicts for the page's editor, every bias said per layer."""
    default_bias = _flag(config, "bias", True)  # the one checkbox of earlier versions: the default of every layer
    hidden = config.get("hidden", [])
    if not isinstance(hidden, list) or not all(isinstance(spec, dict) for spec in hidden):
        raise ConfigError("hidden must be a list of layers, each like {\"size\": 4, \"activation\": \"tanh\"}.")
    if len(hidden) > MAX_HIDDEN_LAYERS:
        raise ConfigError(f"{len(hidden)} hidden layers: the playground shows at most {MAX_HIDDEN_LAYERS}; remove "
                          f"{len(hidden) - MAX_HIDDEN_LAYERS}.")
    layers, rates = [], []
    for index, spec in enumerate(hidden):
        try:
            layer, rate = hidden_layer(spec, default_bias)
        except ConfigError as error:
            raise ConfigError(f"layer {index + 1}: {error}") from None
        layers.append(layer)
        rates.append(rate)
    output = _activation(config, prefix="output_", name=config.get("output", "sigmoid"))
    layers.append({"size": output_size, "activation": output,
                   "bias": _flag(config, "output_bias", default_bias)})
    return layers, rates


def editor_config(config, layers, rates):
    """The config with every layer's bias and norm written out (what the page's form shows)."""
    hidden = [{**spec, "size": layer["size"], "bias": layer["bias"], "norm": layer.get("norm", "none"),
               "dropout": rate} for spec, layer, rate in zip(config.get("hidden", []), layers, rates)]
    config = {**config, "hidden": hidden, "output_bias": layers[-1]["bias"]}
    config.pop("bias", None)  # said per layer now
    return config


def build_network(config, data, n_inputs):
    """(net, config): the MLP of the page's layer editor (hidden layers, then the output layer sized for
    the task) and the config with every layer's bias and norm written out."""
    output = config.get("output", "sigmoid")
    data = for_output(data, output)
    if output == "softmax" and data.task == "regression":
        raise ConfigError("a softmax output needs class labels; this data set is a regression: use identity.")
    if output != "softmax" and data.task == "multiclass":
        raise ConfigError(f"this data set has {data.n_classes} classes: choose a softmax output (or identity or exp, "
                          "to read its integer targets as numbers, such as counts).")
    layers, rates = network_spec(config, data.n_classes if output == "softmax" else 1)
    plain = [layer["bias"] for layer in layers if "norm" not in layer]
    dtype, init = config.get("dtype") or "float64", config.get("init") or "auto"
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be {' or '.join(DTYPES)}, got {dtype!r}.")
    if init not in INITS:
        raise ConfigError(f"init must be one of {', '.join(INITS)}, got {init!r}.")
    net = MLP(n_inputs, layers, loss=config.get("loss") or "auto", bias=any(plain),  # (the default; each layer says)
              l2=_number(config, "l2", 0.0, 0.0, 10.0), l1=_number(config, "l1", 0.0, 0.0, 10.0),
              dropout=rates, seed=_number(config, "seed", 0, 0, 2**31, int), dtype=dtype, init=init)
    return net, editor_config(config, layers, rates)


# The parameters of the activations the editor offers: leaky ReLU's slope and ELU's alpha. A hidden layer says
# them as "slope" and "alpha", the output layer as "output_slope" and "output_alpha".
ACTIVATION_PARAMETERS = {"leaky_relu": ("slope", 0.01, 0.0, 1.0), "elu": ("alpha", 1.0, 1e-6, 100.0)}


def _activation(spec, prefix="", name=None):
    """An activation of the editor: its name, or for leaky ReLU and ELU its config with the slope or alpha."""
    name = spec.get("activation", "tanh") if name is None else name
    if not isinstance(name, str):
        raise ConfigError(f"an activation is a name like 'tanh' or 'leaky_relu', got {name!r}.")
    if name not in ACTIVATION_PARAMETERS:
        return name
    key, default, low, high = ACTIVATION_PARAMETERS[name]
    return {"name": name, key: _number(spec, prefix + key, default, low, high)}


def _activation_settings(activation, prefix=""):
    """The editor's keys for an activation's parameter: {"slope": 0.2} for leaky ReLU(0.2), {} for tanh."""
    if activation.name not in ACTIVATION_PARAMETERS:
        return {}
    key = ACTIVATION_PARAMETERS[activation.name][0]
    return {prefix + key: getattr(activation, key)}


def model_config(net, config, names):
    """The page's settings for a loaded network: its layers, output, loss, penalties, dtype and init as the
    file has them (each activation's slope or alpha included); the rest (data, training) as ``config`` has it."""
    layers = [{"size": layer.n_out, "activation": layer.activation.name, "slope": 0.01, "alpha": 1.0,
               **_activation_settings(layer.activation), "dropout": rate, "bias": layer.has_bias,
               "norm": "none" if layer.norm is None else layer.norm.kind}
              for layer, rate in zip(net.layers[:-1], net.dropout)]
    output = net.output_activation
    config = {**config, "hidden": layers, "output": output.name, "output_slope": 0.01, "output_alpha": 1.0,
              **_activation_settings(output, "output_"), "loss": net.loss_fn.name,
              "output_bias": net.layers[-1].has_bias, "l1": net.l1, "l2": net.l2, "features": names,
              "dtype": net.dtype.name, "init": net.init if net.init in INITS else "auto"}
    config.pop("bias", None)  # every layer says its own (the file's network-wide flag is only their default)
    return config


def architecture(net):
    """What makes a network the one it is, apart from its weights and seed: the inputs, every layer (size,
    activation with its parameters, bias, norm), the loss, penalties, dropout, dtype and init scheme."""
    layers = [(layer.n_out, layer.activation.config(), layer.has_bias, None if layer.norm is None else layer.norm.kind)
              for layer in net.layers]
    return {"n_inputs": net.n_inputs, "layers": layers, "loss": net.loss_fn.name, "l1": net.l1, "l2": net.l2,
            "dropout": list(net.dropout), "dtype": net.dtype.name, "init": net.init}


def _same_start(origin, net, names, config):
    """Whether a run of ``net`` starts from the loaded file's weights: the same parameter shapes (and batch
    norm's running statistics), the same input features and the same init seed."""
    def shapes(network):
        return [(name, array.shape) for name, array in network.parameters() + network.running_statistics()]

    return (shapes(net) == shapes(origin["net"]) and names == origin["features"]
            and config.get("seed") == origin["seed"])


def has_batch_norm(net):
    return any(layer.norm is not None and layer.norm.kind == "batch" for layer in net.layers)


def network_description(net):
    """What the page draws: sizes, activations, dropout, each layer's bias and norm, and the loss."""
    return {
        "sizes": [net.n_inputs] + [layer.n_out for layer in net.layers],
        "activations": [layer.activation.name for layer in net.layers],
        "dropout": list(net.dropout),
        "biases": [layer.has_bias for layer in net.layers],
        "norms": [None if layer.norm is None else layer.norm.kind for layer in net.layers],
        "loss": net.loss_fn.name,
        "closed_form": net.closed_form,
        "repr": repr(net),
        "summary": net.summary(),
    }


def _layer_outputs(net, X):
    """Every layer's activation A_k on X as predict computes it (dropout off; batch norm with its running
    statistics, through the norm's own ``inference``): fresh arrays, the engine's training buffers untouched."""
    outputs, H = [], X
    for layer in net.layers:
        Z = H @ layer.W + (layer.b if layer.b is not None else 0.0)
        H = layer.activation.forward(Z if layer.norm is None else layer.norm.inference(Z))
        outputs.append(H)
    return outputs


def _file_standardizer(net, filename):
    """The input standardization a model file stores (``handgrad train`` writes its mean and scale unless
    --no-standardize), or None: a run from that file feeds its network standardized features, as it was trained."""
    record = (getattr(net, "metadata", None) or {}).get("preprocessing")
    if not record:
        return None
    try:
        standardizer = datasets.Standardizer.from_dict(record)
    except (HandgradError, TypeError, ValueError, KeyError) as error:
        raise DataError(f"'{filename}' has an input standardization the playground cannot read ({error}).") from None
    if len(np.ravel(standardizer.mean)) != net.n_inputs:
        raise DataError(f"'{filename}' stores a standardization of {len(np.ravel(standardizer.mean))} features for a "
                        f"network of {net.n_inputs} inputs: the file is damaged; save the model again.")
    return standardizer


def _refuse_compressed_members(raw, filename):
    """handgrad writes model files uncompressed (ZIP_STORED); a member that is compressed could inflate a
    1 MiB upload to a gigabyte inside the reader, so the page's files must be stored, and small, as written."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a zip at all: hg.load says what it is
    if any(member.compress_type != zipfile.ZIP_STORED or member.file_size > MAX_UPLOAD_BYTES for member in members):
        raise DataError(f"'{filename}' has compressed members; handgrad's model files are stored uncompressed, so "
                        "this one was not written by handgrad (save the model again with handgrad).")


def _fmt(value):
    return format(float(value) + 0.0, ".6g")


def _codes(array, per_row=False):
    """An array as int8 codes for drawing, base64 (row after row), and its scale: code = 127 |a| / scale
    rounded up, with a's sign, so code / 127 * scale is a to within scale / 127 and no nonzero value becomes 0
    (it keeps its colour). scale is the largest |a|, or with ``per_row`` each row's own (a unit's heat map is
    coloured by its own largest value). Not finite values (a diverged run) are drawn as 0."""
    a = np.where(np.isfinite(array), array, 0.0).astype(np.float64)
    scale = np.abs(a).max(axis=1 if per_row else None, keepdims=True, initial=0.0) if a.size else np.zeros((1, 1))
    codes = np.sign(a) * np.minimum(np.ceil(127 * np.abs(a) / np.where(scale > 0, scale, 1.0)), 127)  # (rounding)
    data = base64.b64encode(codes.astype(np.int8).tobytes()).decode("ascii")
    return {"codes": data, "scale": scale.ravel().tolist() if per_row else float(scale.ravel()[0])}


def neuron_grid(net):
    """The side of the units' heat maps: NEURON_GRID, or half that when a layer has more than 16 units (the
    page then draws each unit in 7 to 20 pixels, and the frames of a 64-unit layer stay small)."""
    widest = max(layer.n_out for layer in net.layers)
    return NEURON_GRID if widest <= 16 else NEURON_GRID // 2


def _check_weight(net, k, i, j):
    """A ConfigError unless W_k[i, j] exists."""
    k, i, j = int(k), int(i), int(j)
    if not 1 <= k <= len(net.layers):
        raise ConfigError(f"there is no layer {k}; the network has layers 1 to {len(net.layers)}.")
    rows, columns = net.layers[k - 1].W.shape
    if not (0 <= i < rows and 0 <= j < columns):
        raise ConfigError(f"W{k} has shape ({rows}, {columns}): there is no W{k}[{i},{j}].")


# ---------------------------------------------------------------------------------------- the session
class Session:
    """The state behind one open page. Nothing here blocks for long: one call does a step, an epoch or
    a frame's worth of steps on a small network."""

    def __init__(self, config=None):
        self.csv_points = None
        self.selected_weight = None
        self.selected_neuron = None
        self.hovered_weight = None
        self.playing = False
        self.origin = None  # a loaded model file's network, its features and the init seed then (see configure)
        self.configure(config or {})

    # ------------------------------------------------------------------ building
    def configure(self, config, origin=None):
        """Rebuild data, network, optimizer and schedule from the page's settings (a ConfigError or
        DataError leaves the session as it was). Without ``learning_rate`` the optimizer's own rate
        (OPTIMIZER_RATES).

        The run starts from the seed's weights, or from a loaded model file's (``origin``, kept from
        load_model) as long as the network has the same parameters (every W, b, gamma, beta of the same
        shape), the same input features and the same init seed: so reset, or a new optimizer, learning
        rate, batch size, schedule, penalty or data set, starts again from the file's weights; a new layer
        size, bias, norm, feature or init seed draws fresh ones (and the file is left behind)."""
        config = check_config(config)
        if "learning_rate" not in config:
            config = {**config, "learning_rate": OPTIMIZER_RATES.get(str(config.get("optimizer", "sgd")), 1.0)}
        config = {**DEFAULT_CONFIG, **config}
        data = for_output(make_data(config, self.csv_points), config.get("output"))
        names = feature_names(config, data.dims)
        net, config = build_network(config, data, len(names))
        origin = self.origin if origin is None else origin
        if origin is not None and not _same_start(origin, net, names, config):
            origin = None
        standardizer = None if origin is None else origin.get("standardizer")
        if origin is not None:
            net.params[...] = origin["net"].params  # (converted to this dtype)
            net.set_running_statistics(dict(origin["net"].running_statistics()))
        try:
            self._start(config, data, names, net, standardizer)
        except DataError as error:  # the targets do not suit the output: say which output suits the task
            if data.task != "regression" or net.output_activation.name == "identity":
                raise
            raise DataError(f"{error} This data set is a regression: choose the identity output (loss auto).") \
                from None
        self.origin = origin

    def _start(self, config, data, names, net, standardizer=None):
        batch_size = _number(config, "batch_size", 10, 1, MAX_SAMPLES, int)
        rate = _number(config, "learning_rate", 0.1, 1e-6, 100.0)
        optimizer = get_optimizer(str(config.get("optimizer", "sgd")))
        schedule = get_schedule(str(config.get("schedule") or "constant"))
        if has_batch_norm(net) and min(batch_size, len(data.y)) < 2:
            raise ConfigError("batch norm needs at least 2 samples per batch (the variance of one sample is 0): "
                              "set the batch size to 2 or more (and keep 2 or more training samples), or "
                              "choose norm none or layer.")
        # the features chosen, in use (self.feature_names) but for those a 1-D set lacks: x2's stay chosen, so that a
        # 2-D set after it (a CSV, reset, the next configure) has them again instead of x1 alone
        config = {**config, "features": list(config.get("features") or names)}
        T = net.check_targets(data.y, len(data.y))  # a DataError here leaves the session as it was
        T_test = net.check_targets(data.test_y, len(data.test_y)) if len(data.test_y) else None
        self.config, self.data, self.feature_names, self.net = config, data, names, net
        self.standardizer = standardizer  # a loaded file's input standardization (see load_model), else None
        self.X, self.T = self._inputs(data.points), T
        self.X_test, self.T_test = (self._inputs(data.test_points) if len(data.test_y) else None), T_test
        self.batch_size = min(batch_size, len(self.X))
        self.steps_per_epoch = -(-len(self.X) // self.batch_size)
        if has_batch_norm(net) and len(self.X) % self.batch_size == 1:
            self.steps_per_epoch -= 1  # as training.fit does: a lone last sample joins the batch before
        self.optimizer, self.schedule, self.learning_rate = optimizer, schedule, rate
        schedule.start(rate, SCHEDULE_HORIZON_EPOCHS * self.steps_per_epoch, self.steps_per_epoch)
        self.rng = np.random.default_rng(_number(config, "seed", 0, 0, 2**31, int))
        self.epoch, self.step_count, self.batch_index = 0, 0, 0
        self.order = self.rng.permutation(len(self.X))
        self.history = {"x": [], "loss": [], "test_loss": []}  # the curves: a point per frame
        self.epochs = History()  # one entry per finished epoch: what "download history" saves
        self.epoch_started = time.perf_counter()
        self.selected_weight = self.selected_neuron = self.hovered_weight = None  # the new network's lines are new
        self.playing = False
        self._record()

    def reset(self):
        """The same settings, epoch 0, the weights the run started from: the seed's, or a loaded model
        file's (see configure), in the network's own dtype and settings."""
        self.configure(self.config)

    def load_csv(self, text, filename):
        """Train on an uploaded CSV. When the network's output cannot read its targets (classes 0..K-1 with K > 2
        for a sigmoid, numbers for a sigmoid or softmax), the output becomes the natural one for them (softmax,
        identity; the loss auto), so the file is in use and the form says which output it got: a count data set
        can then switch to exp, say, on this file (before, the file was left unused behind a message)."""
        points = parse_csv_upload(text, filename)
        config = {**self.config, "data": {**self.config.get("data", {}), "name": "csv"}}
        previous, self.csv_points = self.csv_points, points
        try:
            try:
                self.configure(config)
            except HandgradError:
                task = PlayData(*points, 0.0, 0).task
                natural = {"multiclass": "softmax", "regression": "identity"}.get(task)
                if natural is None or natural == config.get("output"):
                    raise
                self.configure({**config, "output": natural, "loss": "auto"})
        except HandgradError:
            self.csv_points = previous  # (the session as it was)
            raise

    def load_model(self, raw, filename):
        """Train a model file from here on (handgrad's format: checked, no code runs on load)."""
        if len(raw) > MAX_UPLOAD_BYTES:
            raise DataError(f"'{filename}' is larger than {MAX_UPLOAD_BYTES // 1024} KiB.")
        _refuse_compressed_members(raw, filename)
        with tempfile.TemporaryDirectory(prefix="handgrad-upload-") as folder:
            path = os.path.join(folder, "model.npz")
            with open(path, "wb") as file:
                file.write(raw)
            try:
                net = load(path)
            except HandgradError as error:
                raise type(error)(str(error).replace(path, filename)) from None
        names = self._model_features(net, filename)
        net.check_targets(self.data.y, len(self.data.y))  # its output must suit the data
        config = model_config(net, self.config, names)
        try:  # the editor must be able to show it, and reset must rebuild it
            built, _ = build_network(config, self.data, len(names))
        except ConfigError as error:
            raise ConfigError(f"'{filename}' is a network the playground's editor cannot show: {error}") from None
        wanted, got = architecture(net), architecture(built)
        differ = [key for key in wanted if wanted[key] != got[key]]
        if differ:  # a setting the editor has no place for: the file is refused, not changed
            raise ConfigError(f"'{filename}' has settings the playground's editor has no place for (its "
                              f"{', '.join(differ)}); look at it with handgrad info or handgrad explain, or in a "
                              "notebook.")
        self.configure(config, origin={"net": net, "features": names, "seed": config["seed"],
                                       "standardizer": _file_standardizer(net, filename)})

    def _inputs(self, points):
        """The network's inputs for raw points: the input features, standardized as a loaded file's network was
        trained (``handgrad train`` standardizes by default and stores the mean and scale in the file)."""
        X = features(points, self.feature_names)
        return X if self.standardizer is None else self.standardizer.transform(X)

    def _model_features(self, net, filename):
        """The input features of a model file: those the playground saved in it (download model), else the
        ones selected now, when their number matches its inputs."""
        saved = net.metadata.get("playground") if isinstance(getattr(net, "metadata", None), dict) else None
        saved = saved.get("features") if isinstance(saved, dict) else None
        if isinstance(saved, list) and all(name in FEATURES for name in saved) and len(saved) == net.n_inputs:
            names = feature_names({"features": saved}, self.data.dims)
            if len(names) == net.n_inputs:
                return names
        if net.n_inputs == len(self.feature_names):
            return self.feature_names
        usable = feature_names({"features": list(FEATURES)}, self.data.dims)
        if net.n_inputs > len(usable):
            raise ConfigError(f"'{filename}' takes {net.n_inputs} inputs, more than the {len(usable)} input features "
                              f"the playground has for this data set ({', '.join(usable)}). Look at this network "
                              "with handgrad info or handgrad explain, or in a notebook.")
        raise ConfigError(f"'{filename}' takes {net.n_inputs} inputs, but {len(self.feature_names)} input features "
                          f"are selected ({', '.join(self.feature_names)}): select {net.n_inputs} of "
                          f"{', '.join(usable)}, then load it again.")

    def model_bytes(self):
        with tempfile.TemporaryDirectory(prefix="handgrad-download-") as folder:
            path = os.path.join(folder, "model.npz")
            kept = {} if self.standardizer is None else {"preprocessing": self.standardizer.to_dict()}
            self.net.save(path, playground={"epoch": self.epoch, "features": self.feature_names}, **kept)
            with open(path, "rb") as file:
                return file.read()

    # ------------------------------------------------------------------ training
    def current_batch(self):
        """(rows, X, T): the training-set rows the next step trains on, and their inputs and targets."""
        start = self.batch_index * self.batch_size
        last = self.batch_index == self.steps_per_epoch - 1  # the last batch takes the rest (see _start)
        rows = self.order[start:] if last else self.order[start:start + self.batch_size]
        return rows, self.X[rows], self.T[rows]

    @_quiet
    def step(self):
        """One optimizer step on the current batch; returns J of that batch (before the step)."""
        _, X, T = self.current_batch()
        rate = self.schedule.rate(self.step_count)
        J = train_step(self.net, self.optimizer, X, T, None, rate)
        if not math.isfinite(J):
            self.playing = False
            raise HandgradError(f"the loss became {J} at epoch {self.epoch + 1}: lower the learning rate and reset.")
        self.step_count += 1
        self.batch_index += 1
        if self.batch_index == self.steps_per_epoch:
            self._end_epoch(rate)
        return J

    def _end_epoch(self, rate):
        self.epoch += 1
        self.batch_index = 0
        self.order = self.rng.permutation(len(self.X))
        loss = self.loss()
        test = {} if self.X_test is None else {"test_loss": self.test_loss()}
        now = time.perf_counter()
        self.epochs.record(self.epoch, now - self.epoch_started, loss=loss, lr=rate, **test)
        self.epoch_started = now
        self.schedule.end_epoch(loss)

    def run_epoch(self):
        """Steps until the current epoch ends (a whole epoch from its start): :meth:`advance` without a deadline."""
        self.advance(math.inf)

    def advance(self, seconds=0.03):
        """Play: steps for about ``seconds``, at most to the end of the epoch; then a history point."""
        deadline, epoch = time.perf_counter() + seconds, self.epoch
        while self.epoch == epoch and time.perf_counter() < deadline:
            self.step()
        self._record()

    def one_step(self):
        self.step()
        self._record()

    def loss(self):
        """J on the whole training set as predict computes it (batch norm: its running statistics, as
        training.fit evaluates); without batch norm the same as the objective."""
        return float(self.net.loss(self.X, self.T, batch_statistics=False))

    def test_loss(self):
        return None if self.X_test is None else float(self.net.loss(self.X_test, self.T_test, batch_statistics=False))

    @_quiet
    def _record(self):
        curves, loss = self.history, self.loss()
        test = self.test_loss()
        if not (math.isfinite(loss) and (test is None or math.isfinite(test))):
            self.playing = False
            raise HandgradError(f"the loss on the whole training or test set became {loss} / {test} at epoch "
                                f"{self.epoch}: lower the learning rate and reset.")
        curves["x"].append(self.step_count / self.steps_per_epoch)
        curves["loss"].append(loss)
        curves["test_loss"].append(test)
        if len(curves["x"]) > MAX_CURVE_POINTS:
            for name, values in curves.items():
                curves[name] = values[:-1:2] + values[-1:]  # every other point, and always the last one

    # ------------------------------------------------------------------ what the page shows
    def network_message(self):
        """What changes only with a new run: the network, the settings, the equations, and the data's points
        (train and test, with their box), which the frames then draw over."""
        return {"type": "network", "network": network_description(self.net), "features": self.feature_names,
                "config": self.config, "task": self.data.task, "dims": self.data.dims,
                "points": self._points(), "box": self.data.box, "standardized": self._standardized_note(),
                "equations": sections_mathml(derivation(self.net, self.batch_size))}

    def _standardized_note(self):
        """What the page says under the input features when a loaded file standardizes them, else None."""
        if self.standardizer is None:
            return None
        terms = [f"({name} - {_fmt(mean)}) / {_fmt(scale)}" for name, mean, scale in
                 zip(self.feature_names, np.ravel(self.standardizer.mean), np.ravel(self.standardizer.scale))]
        return ("The loaded model was trained on standardized inputs, so its network gets " + ", ".join(terms)
                + " (the file's mean and scale), as handgrad predict gives them.")

    @_quiet
    def frame(self):
        """Everything that changes while training: numbers, weights, pictures, and the open panels.

        Kept small for big networks (docs/playground.md, "Frames"): the weights come as int8 codes for
        the connections' thickness and colour, the units' heat maps as int8 codes on a grid that shrinks
        for wide layers, the curves to 5 significant digits. The numbers a person reads (the weight and
        neuron panels, the connection under the pointer, the biases, the losses) are exact."""
        rows, _, _ = self.current_batch()
        frame = {
            "type": "frame", "epoch": self.epoch, "step": self.step_count, "playing": self.playing,
            "loss": _fmt(self.history["loss"][-1]), "test_loss": None if self.X_test is None else
            _fmt(self.history["test_loss"][-1]), "history": self._curves(),
            "learning_rate": _fmt(self.schedule.rate(self.step_count)),
            "weights": [{"shape": list(layer.W.shape), **_codes(layer.W)} for layer in self.net.layers],
            "biases": [None if layer.b is None else layer.b.tolist() for layer in self.net.layers],
            "batch": {"rows": rows.tolist(), "index": self.batch_index, "of": self.steps_per_epoch},
            **self._pictures(),
        }
        if self.selected_weight is not None:
            frame["weight"] = self.weight_detail(*self.selected_weight)
        if self.selected_neuron is not None:
            frame["neuron"] = self.neuron_detail(*self.selected_neuron)
        if self.hovered_weight is not None:
            frame["hover"] = self.hover_detail(*self.hovered_weight)
        return frame

    def _curves(self):
        """The loss curves for drawing: every point, to 5 significant digits."""
        def short(values):
            return [None if v is None else float(f"{v:.5g}") for v in values]

        return {name: short(values) for name, values in self.history.items()}

    def hover_weight(self, k, i, j):
        """The connection under the pointer: its exact numbers come with every frame (hover_detail)."""
        _check_weight(self.net, k, i, j)
        self.hovered_weight = (int(k), int(i), int(j))

    @_quiet
    def hover_detail(self, k, i, j):
        """W_k[i, j] and dJ/dW_k[i, j] on the current batch at the current weights (dropout off), exact,
        as net.loss_and_grad gives them: what the box under the pointer shows."""
        _, X, T = self.current_batch()
        _, grads = self.net.loss_and_grad(X, T)
        return {"layer": k, "i": i, "j": j, "value": float(self.net.layers[k - 1].W[i, j]),
                "grad": float(grads[k - 1][0][i, j])}

    def _points(self):
        d = self.data
        return {"train": np.column_stack([d.points, d.y]).round(4).tolist(),
                "test": np.column_stack([d.test_points, d.test_y]).round(4).tolist() if len(d.test_y) else []}

    def _grid(self, size):
        """The input points of a size x size picture over the data's box (a line of points for 1-D data)."""
        box = self.data.box
        if self.data.dims == 1:
            return np.linspace(box[0], box[1], size * 4).reshape(-1, 1)
        x1 = np.linspace(box[0], box[2], size)
        x2 = np.linspace(box[3], box[1], size)  # top row first
        g1, g2 = np.meshgrid(x1, x2)
        return np.column_stack([g1.ravel(), g2.ravel()])

    def _pictures(self):
        """The output over the plane (probability of class 1, the class and its probability, or the value)
        and every unit's activation on a coarser grid, as int8 codes per layer (unit after unit, each scaled
        to its own largest value, as the page colours it)."""
        outputs = _layer_outputs(self.net, self._inputs(self._grid(GRID)))
        A = outputs[-1]
        if self.net.output_activation.name == "softmax":
            output = {"kind": "class", "class": A.argmax(axis=1).tolist(), "value": A.max(axis=1).round(3).tolist()}
        else:
            output = {"kind": "probability" if self.data.task == "binary" else "value",
                      "value": A[:, 0].round(4).tolist()}
        grid = neuron_grid(self.net)
        units = _layer_outputs(self.net, self._inputs(self._grid(grid)))
        neurons = [_codes(H.T, per_row=True)["codes"] for H in units]
        return {"output": output, "neurons": neurons, "grid": GRID, "neuron_grid": grid}

    def weight_detail(self, k, i, j):
        """W_k[i, j] and dJ/dW_k[i, j] on the current batch, with the per-element sum that makes it (trace)."""
        rows, X, T = self.current_batch()
        tr = trace(self.net, X, T, weight=(k, i, j))
        h = "X" if k == 1 else f"A_{{{k - 1}}}"
        formula = tex_to_mathml(rf"\mathrm{{d}}W_{{{k}}}[{i},{j}] = \sum_n {h}[n,{i}] \, \mathrm{{d}}Z_{{{k}}}[n,{j}]"
                                rf" = ({h}^\top \mathrm{{d}}Z_{{{k}}})[{i},{j}]")
        return {"layer": k, "i": i, "j": j, "value": _fmt(self.net.layers[k - 1].W[i, j]),
                "grad": _fmt(tr.engine_value), "element_sum": _fmt(tr.element_sum),
                "matrix": _fmt(tr.matrix_value), "rows": rows.tolist(), "formula": formula,
                "norm_notes": self._norm_notes(k), "trace": render_one_weight(tr, precision=4)}

    def _norm_notes(self, k):
        """What a norm in layer k or above changes in the weight's sum (the sum itself stays the same)."""
        notes, layers = [], self.net.layers
        if layers[k - 1].norm is not None:
            kind = layers[k - 1].norm.kind
            notes.append(f"Layer {k} has {kind} norm: dZ{k} comes out of the norm's backward (from dZhat{k}), "
                         + ("which mixes every row of the batch: each dZ{k}[n,j] uses the batch's sums dbeta, "
                            "dgamma." if kind == "batch" else "which mixes the units of each row.").format(k=k))
        if k < len(layers) and layers[k].norm is not None:
            notes.append(f"Layer {k + 1} has {layers[k].norm.kind} norm: dA{k} = dZ{k + 1} W{k + 1}^T still holds "
                         f"(Z{k + 1} = A{k} W{k + 1}, no bias), with dZ{k + 1} from that norm's backward.")
        return notes

    @_quiet
    def neuron_detail(self, k, j):
        """Z, A, dA, dZ of unit j of layer k on the current batch (first rows), and f' at the activation's
        input; for a normalized layer also xhat, Zhat = gamma xhat + beta, dZhat, and the unit's gamma, beta
        and statistics. Every number is the engine's (net.forward_backward, through trace)."""
        rows, X, T = self.current_batch()
        tr = trace(self.net, X, T, weight=(1, 0, 0))
        record, layer = tr.layers[k - 1], self.net.layers[k - 1]
        activation, shown = layer.activation, slice(0, SHOWN_ROWS)
        names = ("Z", "xhat", "Zhat", "A", "dA", "dZhat", "dZ") if layer.norm is not None else ("Z", "A", "dA", "dZ")
        column = {name: [_fmt(v) for v in record[name][shown, j]] for name in names}
        f_input = record["Z" if layer.norm is None else "Zhat"]
        if getattr(activation, "elementwise", True) and activation.name != "softmax":
            slope = activation.derivative(f_input[shown], record["A"][shown])[:, j]
            column["fprime"] = [_fmt(v) for v in slope]
        detail = {"layer": k, "unit": j, "activation": activation.name, "rows": rows[shown].tolist(),
                  "n_rows": len(rows), "norm": None, **column}
        if layer.norm is not None:
            detail.update(norm=layer.norm.kind, gamma=_fmt(record["gamma"][j]), beta=_fmt(record["beta"][j]))
            if layer.norm.kind == "batch":  # statistics of the unit's column over the batch
                detail.update(mean=_fmt(record["mean"][0, j]), std=_fmt(record["std"][0, j]))
            else:  # statistics of each row over the layer's units
                detail.update(row_mean=[_fmt(v) for v in record["mean"][shown, 0]],
                              row_std=[_fmt(v) for v in record["std"][shown, 0]])
        return detail

    @_quiet
    def select_weight(self, k, i, j):
        self.weight_detail(k, i, j)  # trace checks (k, i, j) names a weight: a ConfigError says which exist
        self.selected_weight = (k, i, j)

    def select_neuron(self, k, j):
        if not (1 <= int(k) <= len(self.net.layers) and 0 <= int(j) < self.net.layers[int(k) - 1].n_out):
            raise ConfigError(f"there is no unit {j} in layer {k}.")
        self.selected_neuron = (int(k), int(j))

    def batch_csv(self):
        """The current batch as the network sees it: the input features, then the target column(s)."""
        _, X, T = self.current_batch()
        if self.net.output_activation.name == "softmax":
            T = T.argmax(axis=1)[:, None]  # class ids, as load_csv and check_targets read them
        header = ",".join([*self.feature_names, "target"])
        lines = [",".join(repr(float(v)) for v in row) for row in np.column_stack([X, T])]
        return "\n".join([header, *lines]) + "\n"

    def history_json(self):
        """The finished epochs as training.History writes them, with what the run was."""
        self.epochs.stop_reason = f"playground, {self.epoch} epochs so far"
        return {"network": repr(self.net), "features": self.feature_names, "config": self.config,
                **self.epochs.as_dict()}
