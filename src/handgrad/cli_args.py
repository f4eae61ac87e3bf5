"""The flags both halves of the `handgrad` command share (cli.py and cli_teach.py): the network flags;
and the flags through which `handgrad train` reaches the trainer's options (early stopping, metrics,
clip norm, class weights).

Only parsing and checking here; the network itself is built by :class:`handgrad.MLP`, and the options
go to :func:`handgrad.training.fit` under the same names.
"""

import json
import math
import os

from .errors import ConfigError, check_count, check_non_negative, check_seed

SEED_000_LAYERS = "2:relu,2:relu,1:sigmoid"


def checked_seed(value, where="--seed"):
    """A seed as NumPy's generators take it: a whole number >= 0 (a config's 3.0 is 3), else a ConfigError."""
    if value is None:
        raise ConfigError(f"{where} must be a whole number >= 0, got {value!r}.")
    return check_seed(where, value)


def seed_flag(text):
    """argparse's type for --seed: a usage error (one line, exit status 2) for anything but a whole number >= 0."""
    import argparse

    try:
        return checked_seed(int(text))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got '{text}'") from None


def _number_list(text):
    """'0.2' -> 0.2 and '0.1,0.2' -> [0.1, 0.2] (per-hidden-layer dropout)."""
    if isinstance(text, (int, float, list)):
        return text
    try:
        values = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--dropout must be a rate such as 0.2 or one rate per hidden layer such as 0.1,0.2; "
                          f"got '{text}'.") from None
    return values[0] if len(values) == 1 else values


def add_architecture_arguments(parser):
    """Add the flags that describe a network: --layers, --inputs, --loss, --no-bias, --l2, --l1, --dropout, ...

    Every default is None so that a value from a config file can fill it; see :func:`network_from_args`.
    """
    group = parser.add_argument_group("network")
    group.add_argument("--layers", metavar="SIZE:ACT,...",
                       help="layers as size:activation, comma-separated, e.g. 16:relu,16:relu,1:sigmoid (the input "
                            "size comes from the data); parameters in parentheses: '16:leaky_relu(0.1)', "
                            "'16:elu(alpha=0.5)'; size:activation:batchnorm or :layernorm normalizes a hidden layer")
    group.add_argument("--inputs", type=int, metavar="N", help="number of inputs when there is no data (default 2)")
    group.add_argument("--loss", help="half_squared_error, mse, binary_cross_entropy, cross_entropy, "
                                      "half_poisson_deviance (alias poisson; for counts, after 1:exp) "
                                      "(default: the natural loss of the output activation)")
    group.add_argument("--no-bias", action="store_const", const=True, dest="no_bias", help="layers without biases")
    group.add_argument("--l2", type=float, help="L2 penalty (l2/2) sum ||W||^2")
    group.add_argument("--l1", type=float, help="L1 penalty l1 sum |W|")
    group.add_argument("--dropout", metavar="RATE[,RATE...]",
                       help="inverted dropout after the hidden layers while training: one rate for all (0.2) or one "
                            "per hidden layer (0.1,0.2; 0 for none); rates in [0, 1)")
    group.add_argument("--dtype", choices=("float64", "float32"), help="parameter dtype (default float64)")
    group.add_argument("--init", help="auto, he, glorot or lecun (default auto)")
    group.add_argument("--seed", type=seed_flag, help="seed for initialization, data and shuffling (default 0)")
    return group


def network_from_args(args, n_inputs=None):
    """An MLP from the flags of :func:`add_architecture_arguments` (``n_inputs`` overrides --inputs)."""
    from .network import MLP

    layers = getattr(args, "layers", None) or SEED_000_LAYERS
    if not isinstance(layers, (str, list, tuple)):
        raise ConfigError(f"layers must be a string like '16:relu,1:sigmoid' or a list like [[16, 'relu'], "
                          f"[1, 'sigmoid']], got {layers!r}.")
    if n_inputs is None:
        n_inputs = getattr(args, "inputs", None) or 2
    check_count(n_inputs, 1, f"--inputs must be a positive integer, got {n_inputs!r}.")
    dropout = getattr(args, "dropout", None)
    options = {
        "loss": getattr(args, "loss", None) or "auto",
        "bias": not getattr(args, "no_bias", None),
        "l2": check_non_negative("--l2", getattr(args, "l2", None) or 0.0),
        "l1": check_non_negative("--l1", getattr(args, "l1", None) or 0.0),
        "dropout": 0.0 if dropout is None else _number_list(dropout),
        "seed": getattr(args, "seed", None),
        "dtype": getattr(args, "dtype", None) or "float64",
        "init": getattr(args, "init", None) or "auto",
    }
    if isinstance(layers, (list, tuple)):
        layers = [tuple(item) if isinstance(item, list) else item for item in layers]
    if isinstance(options["dropout"], (int, float)) and not 0 <= options["dropout"] < 1:
        raise ConfigError(f"--dropout must be in [0, 1), got {options['dropout']}.")
    return MLP(int(n_inputs), layers, **options)


# ---------------------------------------------------------------------------- the trainer's options
def add_trainer_arguments(group):
    """The flags of `handgrad train` that reach :func:`handgrad.training.fit` beyond the basic ones.
    Their names are also the keys of a TOML config (patience, metrics, class_weight, ...)."""
    group.add_argument("--patience", type=int, metavar="N",
                       help="early stopping: stop when the validation loss (the training loss with --validation 0) "
                            "has not improved for N epochs, and keep the best epoch's weights")
    group.add_argument("--metrics", metavar="LIST",
                       help="validation metrics, comma-separated: accuracy, mse, mae, r2 (default: accuracy for "
                            "classifiers, mse,mae,r2 for regression)")
    group.add_argument("--class-weight", metavar="balanced|FILE",
                       help="weigh the loss of each class: 'balanced' (N / (K N_c)) or a .json ({\"0\": 1, \"1\": 5}) "
                            "or .csv (class,weight rows) file; classes not listed weigh 1")
    group.add_argument("--sample-weight-column", metavar="COLUMN",
                       help="a column of the --csv file (name or number) holding a weight >= 0 per sample; it is "
                            "not a feature")
    group.add_argument("--checkpoint", metavar="FILE",
                       help="write the whole training state here after every epoch (and on Ctrl-C), atomically")
    group.add_argument("--resume", metavar="FILE",
                       help="continue the run saved in this checkpoint, bit for bit, with the same data and "
                            "settings (--epochs is the total); it keeps checkpointing into FILE unless "
                            "--checkpoint names another file")
    group.add_argument("--init-from", metavar="MODEL.npz",
                       help="start a new run from this model file: its network (layers, dtype, activations, norms, "
                            "running statistics) and weights, and its stored standardization of features and "
                            "targets (reused, not refitted); "
                            "the data's targets must be the model's; --layers, --loss, --no-bias, --dtype and --init "
                            "must agree with it or be left out (--l1, --l2, --dropout may change)")
    group.add_argument("--block-rows", type=int, metavar="N",
                       help="streamed data (--npy X.npy --npy-targets y.npy): rows per block read from disk and "
                            "shuffled together (default: about 64 MiB of X); a resume needs the run's N")


def trainer_options(args):
    """The fit options from --patience, --metrics, --clip-norm, --class-weight and --block-rows (command line or
    config): {"early_stopping": N, "metrics": [...], "clip_norm": c, "class_weight": "balanced" or {class: weight},
    "block_rows": N};
    options not given are left out. A ConfigError names the flag of a bad value."""
    options = {}
    patience = getattr(args, "patience", None)
    if patience is not None:
        options["early_stopping"] = check_count(patience, 0, f"--patience must be a whole number of epochs >= 0, "
                                                         f"got {patience!r}.")
    metrics = getattr(args, "metrics", None)
    if metrics is not None:
        options["metrics"] = _metric_names(metrics)
    clip_norm = getattr(args, "clip_norm", None)
    if clip_norm is not None:
        if isinstance(clip_norm, bool) or not isinstance(clip_norm, (int, float)) or not math.isfinite(clip_norm) \
                or clip_norm <= 0:
            raise ConfigError(f"--clip-norm must be a positive number (the largest gradient norm), got {clip_norm!r}.")
        options["clip_norm"] = float(clip_norm)
    class_weight = getattr(args, "class_weight", None)
    if class_weight is not None:
        options["class_weight"] = read_class_weight(class_weight)
    block_rows = getattr(args, "block_rows", None)
    if block_rows is not None:
        options["block_rows"] = check_count(block_rows, 1, f"--block-rows must be a positive whole number of rows, "
                                                           f"got {block_rows!r}.")
    return options


def _metric_names(metrics):
    from .metrics import METRICS

    names = [part.strip() for part in metrics.split(",") if part.strip()] if isinstance(metrics, str) else metrics
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(name, str) for name in names):
        raise ConfigError(f"--metrics must be names such as accuracy,mse; got {metrics!r}.")
    for name in names:
        if name not in METRICS:
            from .errors import suggest

            raise ConfigError(f"--metrics: unknown metric '{name}'.{suggest(name, METRICS)} The metrics are "
                              f"{', '.join(METRICS)}.")
    return list(names)


def read_class_weight(value):
    """'balanced', or {class id: weight} from a dict (a TOML table), a .json file (an object {"0": 1.0, ...}
    or a list [w_0, w_1, ...]) or a .csv file (rows class,weight; a header row is optional)."""
    if isinstance(value, dict):
        return _class_weight_table(value.items(), "class_weight")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"--class-weight must be 'balanced' or a CSV/JSON file of class -> weight, got {value!r}.")
    if value.strip().lower() == "balanced":
        return "balanced"
    if not os.path.isfile(value):
        raise ConfigError(f"--class-weight must be 'balanced' or a CSV/JSON file of class -> weight; '{value}' is "
                          "neither (no such file).")
    extension = os.path.splitext(value)[1].lower()
    if extension == ".json":
        return _class_weight_table(_json_pairs(value), f"'{value}'")
    if extension in (".csv", ".txt"):
        from .datasets import load_csv_table

        _, table = load_csv_table(value)
        if table.shape[1] != 2:
            raise ConfigError(f"'{value}' has {table.shape[1]} columns; a class weight file has two: class,weight.")
        return _class_weight_table(table.tolist(), f"'{value}'")
    raise ConfigError(f"--class-weight file '{value}' has the unknown type '{extension}'; use .json or .csv.")


def _json_pairs(path):
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"cannot read class weights from '{path}': {error}.") from None
    if isinstance(document, dict):
        return list(document.items())
    if isinstance(document, list):
        return list(enumerate(document))
    raise ConfigError(f"'{path}' must hold an object {{\"0\": 1.0, \"1\": 2.0}} or a list of weights, got "
                      f"{type(document).__name__}.")


def _class_weight_table(pairs, where):
    """{int class: float weight} from (class, weight) pairs; classes are whole numbers >= 0, weights >= 0."""
    table = {}
    for label, weight in pairs:
        try:
            number = float(label)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(label, bool) or not math.isfinite(number) or number != int(number) or number < 0:
            raise ConfigError(f"{where}: class {label!r} is not a class id 0, 1, 2, ...")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"{where}: the weight of class {int(number)} must be a finite number >= 0, got "
                              f"{weight!r}.")
        if int(number) in table:
            raise ConfigError(f"{where}: class {int(number)} is listed twice.")
        table[int(number)] = float(weight)
    return table
