"""The `handgrad` command: parses, validates, calls the library; no math here.

    handgrad                                   train on a built-in 2-D set (moons) in seconds, print the result
    handgrad train --data spirals --layers 32:tanh,32:tanh,1:sigmoid --out model.npz --run-dir runs/spirals
    handgrad train --csv houses.csv --target price --layers 32:relu,1:identity --out price.npz
    handgrad train --mnist ../shared/data/mnist-t10k --layers 128:relu,10:softmax --epochs 10 --out mnist.npz
    handgrad train --csv loans.csv --layers "32:leaky_relu(0.1),1:sigmoid" --class-weight balanced --patience 10
        --checkpoint run.ckpt                          (then the same flags with --resume run.ckpt --out loans.npz)
    handgrad train --csv loans_2026.csv --init-from loans.npz --schedule cosine --epochs 20 --out loans2.npz
                                                       (a new run from the model: its network, weights, standardization)
    handgrad export loans.npz --onnx loans.onnx        (the standardization included: the graph takes raw rows)
    handgrad evaluate model.npz --csv test.csv --target label
    handgrad predict model.npz new.csv --out predictions.csv
    handgrad info model.npz
    handgrad gradcheck --layers 2:relu,2:relu,1:sigmoid --no-bias

Every error caused by the input prints one line to stderr and exits with status 2
(``--debug`` shows the traceback instead). Files are written atomically, only after
everything else succeeded, so a failure never damages an earlier model or output
file; an existing model file is replaced only with ``--force``, and no output may be one of the
command's inputs (the model, the data, the config, the resumed checkpoint). See docs/cli.md.
"""

import argparse
import csv
import io as _stdio
import json
import os
import sys

import numpy as np

from . import cli_sweep
from ._version import __version__
from .cli_args import (
    add_architecture_arguments,
    add_trainer_arguments,
    checked_seed,
    network_from_args,
    seed_flag,
    trainer_options,
)
from .cli_curvature import register as register_curvature_command
from .cli_teach import register as register_teaching_commands
from .errors import ConfigError, DataError, HandgradError, suggest
from .io import writable_path
from .playground.command import register as register_playground

DEFAULT_DATA = "moons"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and still exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive(flag, value, kind=int):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and kind is int and not (np.isfinite(value) and float(value) == int(value)):
        ok = False
    if not ok or not np.isfinite(value) or value <= 0:
        what = "a positive integer" if kind is int else "a positive number"
        raise ConfigError(f"{flag} must be {what}, got {value!r}.")
    return kind(value)


def add_data_arguments(parser, default_help=""):
    group = parser.add_argument_group("data (one source)")
    group.add_argument("--data", metavar="NAME", help="generated set: xor, moons, circles, spirals, blobs, "
                                                      "regression1d" + default_help)
    group.add_argument("--samples", type=int, help="number of generated samples (default 400)")
    group.add_argument("--noise", type=float, help="noise of the generated set (default: the set's own)")
    group.add_argument("--csv", metavar="FILE", help="CSV file of numbers (a header row is optional)")
    group.add_argument("--npy", metavar="FILE", help=".npy 2-D table")
    group.add_argument("--npz", metavar="FILE", help=".npz with arrays X and y, or one 2-D table")
    group.add_argument("--target", metavar="COLUMN", help="target column of --csv/--npy/--npz: a name or a number "
                                                          "(default: the last column)")
    group.add_argument("--npy-targets", metavar="FILE",
                       help="with --npy X.npy holding the features only: the targets' .npy file (train memory-maps "
                            "and streams both, never loading them whole: no --validation, --test or standardizing "
                            "by default, held-out parts are the last rows; other commands read them)")
    group.add_argument("--mnist", metavar="DIR", help="folder with the MNIST-family IDX files (gzipped or not)")
    group.add_argument("--mnist-kind", choices=("t10k", "train"), help="which MNIST files to read (default t10k)")
    group.add_argument("--limit", type=int, metavar="N", help="use only the first N samples")
    return group


# ============================================================================ data
def load_data(args, default=None):
    """``(X, y, description)`` from the data flags; ``description`` records where the data came from."""
    from . import datasets

    sources = {flag: getattr(args, flag, None) for flag in ("data", "csv", "npy", "npz", "mnist")}
    given = [flag for flag, value in sources.items() if value is not None]
    if len(given) > 1:
        raise ConfigError(f"give one data source, not {' and '.join('--' + g for g in given)}.")
    if not given:
        if default is None:
            raise ConfigError("no data given: use --data NAME, --csv FILE, --npy FILE, --npz FILE or --mnist DIR.")
        given, sources["data"] = ["data"], default
    source = given[0]
    target = getattr(args, "target", None)
    if target is not None and source not in ("csv", "npy", "npz"):
        raise ConfigError("--target only applies to --csv, --npy and --npz files.")
    seed = 0 if getattr(args, "seed", None) is None else args.seed
    if source == "data":
        samples = 400 if getattr(args, "samples", None) is None else _positive("--samples", args.samples)
        X, y = datasets.make_dataset(sources["data"], samples, noise=getattr(args, "noise", None), seed=seed)
        description = {"source": "generated", "name": str(sources["data"]), "samples": samples,
                       "noise": getattr(args, "noise", None), "seed": seed}
    elif source == "mnist":
        kind = getattr(args, "mnist_kind", None) or "t10k"
        images, labels = datasets.load_mnist(sources["mnist"], kind)
        X, y = images.reshape(len(images), -1), labels.astype(np.int64)
        description = {"source": "mnist", "path": os.path.abspath(sources["mnist"]), "kind": kind}
    elif getattr(args, "npy_targets", None) is not None:
        X, y, description = _npy_pair(args, source, target)
    else:
        loader = {"csv": datasets.load_csv, "npy": datasets.load_npy, "npz": datasets.load_npz}[source]
        X, y = loader(sources[source], target)
        description = {"source": source, "path": os.path.abspath(sources[source]), "target": target}
    limit = getattr(args, "limit", None)
    if limit is not None:
        limit = _positive("--limit", limit)
        X, y = X[:limit], y[:limit]
        description["limit"] = limit
    X, y = datasets.check_dataset(X, y, name=str(sources[source]))
    description["n_samples"], description["n_features"] = int(X.shape[0]), int(X.shape[1])
    return X, y, description


def _npy_pair(args, source, target):
    """--npy X.npy --npy-targets y.npy read into memory (evaluate, predict, curvature, ...; train streams them)."""
    if source != "npy" or target is not None:
        raise ConfigError("--npy-targets goes with --npy X.npy holding the features only (no --target), e.g. "
                          "--npy X.npy --npy-targets y.npy.")
    X, y, description = _mapped_npy_pair(args)
    return np.array(X), np.array(y), description


def _mapped_npy_pair(args):
    """--npy X.npy and --npy-targets y.npy memory-mapped (checked: a 2-D table, one target row per sample),
    and their description."""
    from . import streaming

    X, y = streaming.open_npy(args.npy, "--npy"), streaming.open_npy(args.npy_targets, "--npy-targets")
    if X.ndim != 2 or y.shape[:1] != X.shape[:1]:
        raise DataError(f"--npy must be a 2-D table and --npy-targets have one row per sample; got shapes {X.shape} "
                        f"and {y.shape}.")
    return X, y, {"source": "npy", "path": os.path.abspath(args.npy), "targets": os.path.abspath(args.npy_targets)}


def _default_layers(y, source):
    """A sensible network for the data when --layers is not given."""
    if source == "mnist":
        return "128:relu,10:softmax"
    if y.dtype.kind == "i":
        classes = int(y.max()) + 1
        if y.min() >= 0 and classes <= 50 and len(np.unique(y)) > 1:
            return "16:tanh,16:tanh,1:sigmoid" if classes == 2 else f"32:relu,32:relu,{classes}:softmax"
    return "32:tanh,32:tanh,1:identity"


def _takes_class_ids(net):
    """Whether ``net``'s targets are class ids 0..K-1 (a softmax output, or one sigmoid unit)."""
    return net.output_activation.name == "softmax" or (net.output_activation.name == "sigmoid" and net.n_outputs == 1)


def _check_targets_for(net, y, where):
    """Class ids in range for a classifier, numbers for a regressor, one column per output otherwise."""
    from .datasets import check_labels

    if _takes_class_ids(net):
        if y.dtype.kind != "i":
            raise DataError(f"{where}: a classifier needs integer class labels 0..K-1, got non-integer targets; use "
                            "an identity output (e.g. --layers 32:tanh,1:identity) for regression.")
        check_labels(y, max(net.n_outputs, 2), name=where)
    return y


def _preprocessor(net):
    """The Standardizer stored in a model's metadata, or None."""
    from .datasets import Standardizer

    record = (getattr(net, "metadata", None) or {}).get("preprocessing")
    return Standardizer.from_dict(record) if record else None


def _target_preprocessor(net):
    """The target Standardizer stored in a model's metadata (train --standardize-targets), or None."""
    from .datasets import model_standardizers

    return model_standardizers(net)[1]


def _in_target_units(net, prediction):
    """A regressor's outputs in the original target units: the stored target standardization undone."""
    targets = _target_preprocessor(net)
    return prediction if targets is None else targets.inverse_transform(prediction)


def _curvature_data(args):
    """curvature's data: for a model trained on standardized targets (--standardize-targets) the targets are
    standardized as in training, so that the Hessian is the one of the objective the trainer minimized."""
    X, y, description = load_data(args)
    targets = _target_preprocessor(_load_model(args.model))
    if targets is not None:
        y = targets.transform(np.reshape(y, (len(y), -1))).reshape(np.shape(y))
    return X, y, description


def _check_feature_count(net, n_features, where):
    if n_features != net.n_inputs:
        raise DataError(f"{where} has {n_features} features but the model expects {net.n_inputs}; give data with "
                        "the same columns the model was trained on (use --target to drop the target column).")


def _features_for(net, X, where):
    _check_feature_count(net, X.shape[1], where)
    standardizer = _preprocessor(net)
    return standardizer.transform(X) if standardizer is not None else X


# ============================================================================ metrics (handgrad.metrics)
def evaluate_network(net, X, y, targets=None):
    """Loss, then handgrad.metrics' figures: accuracy and the confusion matrix for classifiers, MSE, MAE and R^2
    for regressors. The same definitions as the trainer's validation metrics, on the same outputs: computed
    by training.evaluate, a few thousand rows at a time, from X in memory or a memory-mapped file's rows
    (:class:`_MappedRows`), with batch norm's running statistics (as predict).

    ``targets``: the target Standardizer of a network trained on standardized targets (--standardize-targets):
    the loss is then the training objective on the standardized targets, and MSE, MAE and R^2 are in the
    original units of ``y`` (the outputs mapped back, as predict does)."""
    from . import metrics, training

    given = y if targets is None else targets.transform(np.reshape(y, (len(y), -1))).reshape(np.shape(y))
    T = net.check_targets(given, len(y))  # one-hot rows for a softmax output
    A = np.empty((len(y), net.n_outputs), net.dtype)
    figures = training.evaluate(net, X if isinstance(X, _MappedRows) else net.check_inputs(X), T, out=A)
    if targets is not None:  # the figures in the original units
        original = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        figures.update(metrics.compute(list(figures.keys() - {"loss"}), targets.inverse_transform(A), original,
                                       net.output_activation.name))
    report = {"samples": len(y), "loss": float(figures.pop("loss")), **figures}
    name = net.output_activation.name
    if name == "softmax" or (name == "sigmoid" and net.n_outputs == 1):  # one class per sample
        if name == "softmax":
            true, predicted = T.argmax(axis=1), A.argmax(axis=1)
        else:
            true, predicted = (T[:, 0] >= 0.5).astype(np.int64), (A[:, 0] >= 0.5).astype(np.int64)
        report["confusion_matrix"] = metrics.confusion_matrix(true, predicted, max(net.n_outputs, 2)).tolist()
    return report


def format_report(report):
    rows = [f"{key:<10}{value:.4f}" if isinstance(value, float) else f"{key:<10}{value}"
            for key, value in report.items() if key != "confusion_matrix"]
    matrix = report.get("confusion_matrix")
    if matrix is not None:
        width = max(5, len(str(max(max(row) for row in matrix))) + 1)
        rows.append("confusion matrix (rows: true class, columns: predicted class)")
        rows.append(" " * 6 + "".join(f"{j:>{width}}" for j in range(len(matrix))))
        rows.extend(f"{i:>6}" + "".join(f"{v:>{width}}" for v in row) for i, row in enumerate(matrix))
    return "\n".join(rows)


# ============================================================================ train
TRAIN_DEFAULTS = {
    "epochs": 100, "batch_size": 32, "learning_rate": 0.1, "validation": 0.2, "test": 0.2, "seed": 0,
}
# Config file keys: every train flag's dest, and a few aliases the seeds use.
_CONFIG_ALIASES = {"lr": "learning_rate", "bias": "bias", "n_epochs": "epochs", "batch": "batch_size"}
_CONFIG_SECTIONS = ("model", "network", "training", "data", "output")


def read_config(path):
    """The flat settings of a TOML config file (sections [model], [training], [data], [output] are merged)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ConfigError("reading TOML needs Python 3.11+ or the tomli package: pip install handgrad[toml].") \
                from None
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist; check the path.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file '{path}': {error}.") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file '{path}' is not valid TOML: {error}.") from None
    flat = {}
    for key, value in document.items():
        if key in _CONFIG_SECTIONS and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


# Settings that name a file or folder. Written in a config file, a relative one is relative to the file's folder
# (the command line's stay relative to the current folder), so a config works from wherever it is run.
_CONFIG_PATHS = frozenset({"csv", "npy", "npz", "npy_targets", "mnist", "class_weight", "checkpoint", "resume",
                           "init_from", "out", "run_dir"})


def _config_path(dest, value, path):
    """A path-valued setting ``value`` of the config file ``path``, relative to that file's folder; anything else
    (another setting, an absolute path, class_weight = "balanced" or a table, a value of the wrong type, which
    the setting's own check reports) as it is."""
    if dest not in _CONFIG_PATHS or not isinstance(value, str) or not value or os.path.isabs(value):
        return value
    if dest == "class_weight" and value == "balanced":
        return value
    return os.path.join(os.path.dirname(os.fspath(path)), value)


def _apply_config(args, parser, path, ignore=(), accept=()):
    """Set the unset flags of ``args`` from the config file; ``ignore``: settings skipped, ``accept``: settings
    set although ``parser`` has no flag for them. Returns the keys ignored, as the file writes them."""
    settings = read_config(path)
    # --force and --debug are not accepted from a file: replacing files is decided on the command line.
    known = {action.dest for action in parser._actions if action.dest not in ("help", "debug", "config", "force")}
    known |= set(accept)
    switches = {action.dest for action in parser._actions if action.const is True and action.nargs == 0}
    ignored = []
    for key, value in settings.items():
        dest = _CONFIG_ALIASES.get(key, key).replace("-", "_")
        if (dest in switches or dest == "bias") and not isinstance(value, bool):
            raise ConfigError(f"config file '{path}': '{key}' is a switch; write {key} = true or {key} = false.")
        if dest == "bias":
            dest, value = "no_bias", (not value)
        if dest == "seed":
            value = checked_seed(value, f"config file '{path}': seed")
        if dest in ignore:  # e.g. train's output settings, read by a sweep
            ignored.append(key)
            continue
        if dest not in known:
            raise ConfigError(f"config file '{path}': unknown setting '{key}'.{suggest(dest, known | set(ignore))}")
        if getattr(args, dest, None) is None:  # the command line wins over the file (switches: None when not given)
            setattr(args, dest, _config_path(dest, value, path))
    return ignored


def _config_switch(args, key):
    """Whether --config sets the switch ``key`` (read ahead of the other settings, for a switch that decides how
    train runs, such as distributed). A config that cannot be read says so later, where every setting is read."""
    if not args.config:
        return False
    try:
        return read_config(args.config).get(key) is True
    except HandgradError:
        return False


def _training_settings(args):
    """Fill the unset flags from --config and the defaults, check them; the output paths are checked too.
    Data-parallel, a rank other than 0 (``args.writes`` False) then prints and writes nothing."""
    if args.config:
        _apply_config(args, args.command_parser, args.config)
    for key, value in TRAIN_DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if not getattr(args, "writes", True):
        args.quiet, args.out, args.run_dir = True, None, None
    options = {"epochs": _positive("--epochs", args.epochs), "batch_size": _positive("--batch-size", args.batch_size),
               "learning_rate": _positive("--learning-rate", args.learning_rate, float), "seed": args.seed}
    for name in ("optimizer", "schedule"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    options.update(trainer_options(args))  # --patience, --metrics, --clip-norm, --class-weight
    for flag, value in (("--validation", args.validation), ("--test", args.test)):
        if not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ConfigError(f"{flag} must be a fraction in [0, 1), got {value!r}.")
    options.update(_checkpoint_options(args))
    out = _check_output_path(args.out, args.force, "model file") if args.out else None
    _outputs_apart(args, out, options.get("checkpoint"))
    run_dir = _check_run_dir(args.run_dir, args.force) if args.run_dir else None
    return options, out, run_dir


def _checkpoint_options(args):
    """{"checkpoint": path, "resume": path} from --checkpoint and --resume. A resumed run keeps checkpointing
    into its file unless --checkpoint names another; an existing checkpoint file is replaced only with --force
    or when it is the one resumed from."""
    resume, checkpoint = getattr(args, "resume", None), getattr(args, "checkpoint", None)
    for flag, value in (("--resume", resume), ("--checkpoint", checkpoint)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{flag} must be a file name, got {value!r}.")
    options = {}
    if resume is not None:
        if not os.path.isfile(resume):
            raise ConfigError(f"--resume '{resume}' is not a file; give a checkpoint written by --checkpoint.")
        options["resume"] = resume
        checkpoint = checkpoint or resume
    if checkpoint is not None:
        checkpoint = writable_path(checkpoint, "checkpoint file")
        resumed = resume is not None and os.path.exists(checkpoint) and os.path.samefile(checkpoint, resume)
        if os.path.exists(checkpoint) and not (args.force or resumed):
            raise ConfigError(f"checkpoint file '{checkpoint}' already exists; pass --force to replace it, --resume "
                              "it to continue that run, or choose another name.")
        options["checkpoint"] = checkpoint
    return options


# ---------------------------------------------------------------------------- --init-from MODEL.npz
# The flags that define the network, by the key of MLP.config() they set: with --init-from they must agree with
# the model (or be left out). --l1, --l2 and --dropout are the new run's regularization and may change; --seed
# seeds the split and the shuffling as always (the weights, and the dropout stream, are the model's).
_MODEL_FLAGS = (("layers", "--layers"), ("loss", "--loss"), ("bias", "--no-bias"), ("dtype", "--dtype"),
                ("init", "--init"))


def _init_model(args):
    """The model file of --init-from, loaded (verified as every model file is), or None without the flag."""
    path = getattr(args, "init_from", None)
    if path is None:
        return None
    if not isinstance(path, str) or not path:
        raise ConfigError(f"--init-from must be a model file name, got {path!r}.")
    if not os.path.isfile(path):
        raise ConfigError(f"--init-from '{path}' is not a file; give a model written by 'handgrad train --out' or "
                          "net.save().")
    return _load_model(path)


def _model_standardizer(args, model):
    """The model's stored standardization (or None), which --init-from reuses so that its weights keep their
    meaning; --no-standardize contradicts a model that has one."""
    standardizer = _preprocessor(model)
    if standardizer is not None and args.no_standardize:
        raise ConfigError(f"--no-standardize: the model '{args.init_from}' standardizes its inputs, and --init-from "
                          "reuses that standardization so that its weights keep their meaning; remove "
                          "--no-standardize.")
    return standardizer


def _target_standardizer(args, init, net, split, description):
    """--standardize-targets: the regression targets' mean and scale, fitted on the training rows only (with
    --init-from: the model's own, reused, whether or not the flag is given), or None."""
    from . import datasets

    reused = _target_preprocessor(init) if init is not None else None
    if reused is not None:
        return reused
    if not args.standardize_targets:
        return None
    if init is not None:
        raise ConfigError(f"--standardize-targets: the model '{args.init_from}' was trained on the targets as given, "
                          "and --init-from keeps its weights' meaning; remove --standardize-targets.")
    if description.get("streamed"):
        raise ConfigError("--standardize-targets needs the data in memory (--csv, --npz, --npy with --target); "
                          "streamed --npy-targets are used as they are: write y.npy standardized yourself.")
    name = net.output_activation.name
    if net.is_classifier or name != "identity":
        why = ("class labels are not scaled" if net.is_classifier else
               f"the {name} output's targets are used as they are (counts or positive values, not centred)")
        raise ConfigError(f"--standardize-targets applies to regressors with an identity output, and this network's "
                          f"output is {name} ({why}); remove --standardize-targets.")
    return datasets.Standardizer().fit(np.reshape(split.y_train, (len(split.y_train), -1)))


def _targets_standardized(split, targets):
    """The split with its targets standardized (what the network is trained on), or the split itself."""
    if targets is None:
        return split
    scale = lambda y: targets.transform(np.reshape(y, (len(y), -1))).reshape(np.shape(y))  # noqa: E731
    return split._replace(y_train=scale(split.y_train), y_val=scale(split.y_val), y_test=scale(split.y_test))


def _layers_text(net):
    return ",".join(f"{layer.n_out}:{layer.activation.spec()}" + (f":{layer.norm.kind}" if layer.norm else "")
                    for layer in net.layers)


def _network_from_model(args, model):
    """The network of --init-from: the model's architecture, weights and running statistics. A network flag
    given must build what the model is (a ConfigError names the flags that do not); --l1, --l2 and --dropout
    given set the new run's regularization."""
    from types import SimpleNamespace

    saved = model.config()
    init = saved["init"] if saved["init"] in ("auto", "he", "glorot", "lecun") else "auto"
    own = {"l2": args.l2, "l1": args.l1, "dropout": args.dropout}
    flags = SimpleNamespace(layers=args.layers or saved["layers"], loss=args.loss or saved["loss"],
                            no_bias=(not saved["bias"]) if args.no_bias is None else args.no_bias,
                            dtype=args.dtype or saved["dtype"], init=args.init or init, seed=saved["seed"],
                            **{key: saved[key] if value is None else value for key, value in own.items()})
    # compared without the model's dropout rates, which fit its own hidden layers only
    probe = SimpleNamespace(**{**vars(flags), "dropout": 0.0 if args.dropout is None else args.dropout})
    built = network_from_args(probe, n_inputs=model.n_inputs).config()
    given = {"layers": args.layers, "loss": args.loss, "bias": args.no_bias, "dtype": args.dtype, "init": args.init}
    differ = [(flag, key) for key, flag in _MODEL_FLAGS if given[key] is not None and built[key] != saved[key]]
    if differ:
        model_values = {"layers": _layers_text(model), "loss": saved["loss"], "bias": saved["bias"],
                        "dtype": saved["dtype"], "init": saved["init"]}
        names = " and ".join(flag for flag, _ in differ)
        theirs = ", ".join(f"{key} {model_values[key]}" for _, key in differ)
        raise ConfigError(f"{names} {'does' if len(differ) == 1 else 'do'} not agree with the model "
                          f"'{args.init_from}' ({theirs}), and --init-from takes the network from the model; remove "
                          f"{'it' if len(differ) == 1 else 'them'}, or train a new network without --init-from.")
    net = network_from_args(flags, n_inputs=model.n_inputs)
    if all(net.config()[key] == saved[key] for key in own):
        return model
    # the model's network with the new run's l1, l2 or dropout
    net.params[...] = model.params
    net.set_running_statistics(dict(model.running_statistics()))
    net.metadata = model.metadata
    return net


def _check_targets_for_model(net, y, path):
    """--init-from: the data's targets must be the model's: class ids 0..K-1 of its output layer for a
    classifier (a new class cannot be learned by the model's output layer), one number per output otherwise."""
    if _takes_class_ids(net):
        classes = max(net.n_outputs, 2)
        if y.dtype.kind != "i":
            raise DataError(f"the data have non-integer targets, and the model '{path}' is a classifier of the "
                            f"classes 0..{classes - 1}; --init-from needs targets of the model's kind.")
        outside = y[(y < 0) | (y >= classes)]
        if outside.size:
            raise DataError(f"the data hold class {int(outside[0])}, and the model '{path}' knows the classes "
                            f"0..{classes - 1} only; --init-from keeps the model's output layer, so train a new "
                            "model (without --init-from) for other classes.")
        return y
    columns = 1 if y.ndim == 1 else y.shape[1]
    if columns != net.n_outputs:
        raise DataError(f"the data have {columns} target column(s), and the model '{path}' has {net.n_outputs} "
                        "output(s); --init-from needs targets of the model's kind.")
    return y


def _check_resume(net, path, optimizer="sgd"):
    """The checkpoint must hold this network (the same layers, loss, dropout and dtype as the flags build)
    and this optimizer: the trainer would go on with the checkpoint's own, whatever --optimizer says."""
    from .checkpoints import read_checkpoint
    from .io import plain_json

    state = read_checkpoint(path)
    saved = state.get("config")
    if saved is not None and saved != plain_json(net.config()):
        different = sorted(key for key in set(saved) | set(net.config())
                           if saved.get(key) != plain_json(net.config()).get(key))
        raise ConfigError(f"the checkpoint '{path}' was made for another network ({', '.join(different)} differ); "
                          "resume with the flags (or --config) of the run that wrote it.")
    used = (state.get("optimizer") or {}).get("name") if isinstance(state.get("optimizer"), dict) else None
    if isinstance(optimizer, str) and used is not None and used != optimizer.strip().lower():
        raise ConfigError(f"the checkpoint '{path}' was made with --optimizer {used}, not {optimizer.strip()}; resume "
                          "with the flags (or --config) of the run that wrote it.")


def _csv_with_weights(args):
    """(X, y, w, description) of --csv with --sample-weight-column: the weight column is no feature."""
    from . import datasets

    others = [flag for flag in ("data", "npy", "npz", "mnist") if getattr(args, flag, None) is not None]
    if args.csv is None or others:
        raise ConfigError("--sample-weight-column needs --csv data (a column of the CSV file holds the weights).")
    path = args.csv
    names, table = datasets.load_csv_table(path)
    n_columns = table.shape[1]
    target = datasets.column_index(args.target, names, n_columns, path)
    column = datasets.column_index(args.sample_weight_column, names, n_columns, path, what="sample weight")
    if column == target:
        raise ConfigError(f"--sample-weight-column and the target are the same column ({column}) of '{path}'; name "
                          "the target with --target.")
    if n_columns < 3:
        raise DataError(f"'{path}' has {n_columns} columns; with sample weights it needs a feature, the target and "
                        "the weight column.")
    limit = None if args.limit is None else _positive("--limit", args.limit)
    table = table[:limit]
    X, y = datasets.check_dataset(np.delete(table, [target, column], axis=1), table[:, target], name=path)
    weights = table[:, column]
    bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if bad.size:
        raise DataError(f"'{path}': sample weight column {args.sample_weight_column!r} holds {weights[bad[0]]} at "
                        f"data row {bad[0] + 1}; weights must be finite numbers >= 0.")
    description = {"source": "csv", "path": os.path.abspath(path), "target": args.target,
                   "sample_weight_column": args.sample_weight_column, "n_samples": int(X.shape[0]),
                   "n_features": int(X.shape[1])}
    if limit is not None:
        description["limit"] = limit
    return X, y, weights, description


def _streamed_training_data(args, init=None):
    """--npy X.npy --npy-targets y.npy: both memory-mapped and streamed by the trainer (handgrad.streaming).
    The validation and test parts (none by default) are the files' last rows, read into memory; the
    features are used as they are (no standardization; with --init-from the model ``init`` must have none)."""
    from . import datasets

    if args.npy is None:
        raise ConfigError("--npy-targets goes with --npy X.npy (the features), e.g. --npy X.npy --npy-targets y.npy.")
    if args.target is not None or args.limit is not None:
        raise ConfigError("--target and --limit do not apply to --npy-targets: the targets are their own file.")
    if getattr(args, "sample_weight_column", None) is not None:  # (it was ignored: the run trained unweighted)
        raise ConfigError("--sample-weight-column needs --csv data (a column of the CSV file holds the weights); the "
                          "--npy X.npy --npy-targets y.npy pair has no weights. In Python, fit takes them "
                          "memory-mapped too: sample_weight=np.load('w.npy', mmap_mode='r').")
    if args.layers is None and init is None:
        raise ConfigError("--npy-targets needs --layers: the network is not guessed from data that stays on disk.")
    if init is not None and _preprocessor(init) is not None:
        raise ConfigError(f"--init-from '{args.init_from}': the model standardizes its inputs, and streamed data "
                          "(--npy-targets) are used as they are; write the .npy features standardized with the "
                          "model's mean and scale ('handgrad info --json'), or give the data in memory (--npz, --csv).")
    X, y, description = _mapped_npy_pair(args)
    if init is not None:
        _check_feature_count(init, X.shape[1], "--npy")
    N = X.shape[0]
    n_test, n_val = int(round(N * args.test)), int(round(N * args.validation))
    n_train = N - n_val - n_test
    if n_train < 1:
        raise DataError(f"{N} samples leave no training data after the validation and test parts; use more data.")
    val, test = slice(n_train, n_train + n_val), slice(n_train + n_val, N)  # held out: read into memory
    split = datasets.Split(X[:n_train], y[:n_train], np.asarray(X[val]), np.asarray(y[val]), np.asarray(X[test]),
                           np.asarray(y[test]))
    description.update(streamed=True, n_samples=int(N), n_features=int(X.shape[1]))
    return X, y, description, split, None, None  # (no standardizer, no sample weights)


def _training_data(args, init=None):
    """(X, y, description, split, standardizer, weights): the data, its train/validation/test split, the
    feature scaling fitted on the training part only (with --init-from: the model ``init``'s own, reused),
    and (with --sample-weight-column) the sample weights of the three parts, else None."""
    from . import datasets

    if getattr(args, "npy_targets", None) is not None:
        return _streamed_training_data(args, init)
    weights = None
    if getattr(args, "sample_weight_column", None) is not None:
        X, y, w, description = _csv_with_weights(args)
        X = np.column_stack([X, w])  # split as one more column, so each part keeps its rows' weights
    else:
        X, y, description = load_data(args, default=DEFAULT_DATA)
    split = datasets.train_validation_test_split(X, y, args.validation, args.test, seed=args.seed)
    if "sample_weight_column" in description:
        weights = (split.X_train[:, -1], split.X_val[:, -1], split.X_test[:, -1])
        if not weights[0].sum() > 0:  # every loss term times 0: training would change nothing, silently
            raise DataError(f"the sample weights (column {args.sample_weight_column!r}) of the training rows are all "
                            "zero, so there is nothing to learn from; give some rows a positive weight.")
        split = split._replace(X_train=split.X_train[:, :-1], X_val=split.X_val[:, :-1], X_test=split.X_test[:, :-1])
        X = X[:, :-1]
    if init is not None:
        _check_feature_count(init, X.shape[1], "the data")
        standardizer = _model_standardizer(args, init)
    elif description["source"] == "mnist":
        standardizer = datasets.Standardizer.constant(X.shape[1], 255.0)  # pixels 0..255 -> 0..1
    elif args.no_standardize:
        standardizer = None
    else:
        standardizer = datasets.Standardizer().fit(split.X_train)
    return X, y, description, split, standardizer, weights


def _print_evaluation(evaluation):
    for part, report in evaluation.items():
        headline = ", ".join(f"{k} {v:.4f}" for k, v in report.items() if k in ("loss", "accuracy", "mse", "r2"))
        print(f"{part} ({report['samples']} samples): {headline}")
    if "test" in evaluation and "accuracy" in evaluation["test"]:
        print(f"test accuracy on {evaluation['test']['samples']} held-out points: "
              f"{evaluation['test']['accuracy']:.3f}")


def cmd_train(args):
    """train; with --distributed every rank runs it, rank 0 alone prints and writes (handgrad.distributed)."""
    if getattr(args, "npy_targets", None) is not None:  # held-out rows are read into memory: none unless asked
        args.validation = 0.0 if args.validation is None else args.validation
        args.test = 0.0 if args.test is None else args.test
    from . import distributed

    if not (args.distributed or _config_switch(args, "distributed")):
        rank, size = distributed.launched_by_mpiexec()
        if size > 1 and rank == 0:  # each of the processes would train the whole run alone, writing the same files
            print(f"handgrad: warning: this is one of {size} processes that mpiexec started, but without --distributed "
                  "each of them trains the whole run alone and writes the same files; add --distributed for one "
                  "data-parallel run.", file=sys.stderr, flush=True)
        return _train_and_write(args, _prepare_training(args))

    comm = distributed.communicator(True)
    args.writes = comm.Get_rank() == 0  # rank 0 alone prints and writes (once the config is read: _training_settings)
    if comm.Get_size() == 1:
        return _train_and_write(args, _prepare_training(args))
    # Every rank prepares; one allgather tells all whether any rank's input was bad. Then all stop together
    # (rank 0 prints the one error line, every rank exits with status 2), or all train.
    run, failure = distributed.prepare_together(comm, lambda: _prepare_training(args))
    if failure is not None:
        if comm.Get_rank() == 0:
            raise failure
        return 2
    try:
        with distributed.abort_on_error(comm):  # from here on, a failing rank ends the job (MPI Abort),
            return _train_and_write(args, run)
    except (HandgradError, OSError) as error:  # but not bad input that fit finds before its first step: every
        if comm.Get_rank() == 0 or not distributed.raised_on_every_rank(error):  # rank raises it, rank 0 prints
            raise
        return 2


def _prepare_training(args):
    """The checks and the set-up of train, before any step: flags, output paths, data, network, callbacks.
    Every error of the user's input is raised here."""
    from types import SimpleNamespace

    options, out, run_dir = _training_settings(args)
    init = _init_model(args)  # --init-from: the model a new run starts from, or None
    X, y, description, split, standardizer, weights = _training_data(args, init)
    prepare = standardizer.transform if standardizer is not None else (lambda A: A)
    if init is not None:
        net = _network_from_model(args, init)
    else:
        if args.layers is None:
            args.layers = _default_layers(y, description["source"])
        net = network_from_args(args, n_inputs=X.shape[1])
    if init is not None and not description.get("streamed"):
        _check_targets_for_model(net, y, args.init_from)
    elif not description.get("streamed"):  # streamed targets are checked block by block by the trainer
        _check_targets_for(net, y, "the data")
    if "block_rows" in options and not description.get("streamed"):
        raise ConfigError(f"--block-rows applies to streamed data (--npy X.npy --npy-targets y.npy), and this run's "
                          f"data ({_describe(description)}) is read into memory; remove --block-rows.")
    if "resume" in options:
        _check_resume(net, options["resume"], options.get("optimizer", "sgd"))
    targets = _target_standardizer(args, init, net, split, description)
    fit_split = _targets_standardized(split, targets)  # what the network is trained on

    fit_options = dict(options)
    # L-BFGS minimizes one full-batch objective: no epochs to validate or record (the validation part is
    # evaluated after training, as the test part is), and no per-epoch sharpness.
    lbfgs = str(options.get("optimizer", "")).strip().lower() == "lbfgs"
    if lbfgs:
        inherited = args.init_from if init is not None and args.dropout is None else None
        _refuse_per_epoch_flags(options, net, getattr(args, "sharpness", None), inherited)
    if weights is not None:
        fit_options["sample_weight"] = weights[0]
    if standardizer is not None:  # checkpoints record it: a resume with another standardization is refused
        fit_options["preprocessing"] = standardizer.to_dict()
    if targets is not None:  # (and the targets': a resume without --standardize-targets names it)
        features = fit_options.get("preprocessing") or {"kind": "none"}
        fit_options["preprocessing"] = {**features, "targets": targets.to_dict()}
    if len(split.y_val) and not lbfgs:
        fit_options["validation_data"] = (prepare(split.X_val), fit_split.y_val) + ((weights[1],) if weights else ())
    recorder = None
    if run_dir and not args.no_plots and not lbfgs:
        from .plotting import GradientNormRecorder

        probe = slice(0, min(256, len(split.y_train)))
        recorder = GradientNormRecorder(prepare(split.X_train[probe]), fit_split.y_train[probe])
    sharpness = _sharpness_callback(fit_split, prepare) if getattr(args, "sharpness", None) else None
    fit_options["callbacks"] = [hook for hook in (recorder, sharpness) if hook is not None]
    if args.verbose:
        fit_options["verbose"] = True
    if getattr(args, "distributed", False):
        fit_options["distributed"] = True
    return SimpleNamespace(options=options, out=out, run_dir=run_dir, description=description, split=split,
                           standardizer=standardizer, prepare=prepare, net=net, fit_options=fit_options,
                           recorder=recorder, lbfgs=lbfgs, targets=targets, fit_split=fit_split)


def _train_and_write(args, run):
    """Train the prepared network, print the evaluation, write the model and the run folder."""
    options, out, run_dir, description, split = run.options, run.out, run.run_dir, run.description, run.split
    standardizer, prepare, net, recorder, lbfgs = run.standardizer, run.prepare, run.net, run.recorder, run.lbfgs
    targets, fit_split = run.targets, run.fit_split
    history = net.fit(prepare(fit_split.X_train), fit_split.y_train, **run.fit_options)

    losses = history.metrics.get("loss", [])
    if not args.quiet:
        print(net.summary())
        final = f"final training loss {losses[-1]:.4f}" if losses else "no epoch completed"
        steps = "L-BFGS iterations" if lbfgs else "epochs"
        print(f"trained {len(losses)} {steps} on {len(split.y_train)} samples ({_describe(description)}): {final}")
    evaluation = {part: evaluate_network(net, prepare(Xp), yp, targets)
                  for part, Xp, yp in (("validation", split.X_val, split.y_val), ("test", split.X_test, split.y_test))
                  if len(yp)}
    if not args.quiet:
        _print_evaluation(evaluation)

    metadata = {
        "training": {**options, "validation": args.validation, "test": args.test,
                     "standardize": standardizer is not None,
                     **({"standardize_targets": True} if targets is not None else {}),
                     **({"init_from": os.path.abspath(args.init_from)} if getattr(args, "init_from", None) else {})},
        "data": description,
        "preprocessing": standardizer.to_dict() if standardizer is not None else None,
        "metrics": {part: {k: v for k, v in report.items() if k != "confusion_matrix"}
                    for part, report in evaluation.items()},
        "stop_reason": history.stop_reason,
    }
    if targets is not None:  # (absent otherwise: a model trained without it is written as before)
        metadata["target_preprocessing"] = targets.to_dict()
    if out:
        net.save(out, **metadata)
        if not args.quiet:
            print(f"model written to {out}")
    if run_dir:
        _write_run(run_dir, net, history, evaluation, metadata, fit_split, prepare, recorder, args)
        if not args.quiet:
            print(f"history and pictures written to {run_dir}")
    return 0


# The trainer's options that L-BFGS refuses, by the flag a command-line user gave (fit names the option).
_PER_EPOCH_FLAGS = {"early_stopping": "--patience", "metrics": "--metrics", "clip_norm": "--clip-norm",
                    "checkpoint": "--checkpoint", "resume": "--resume", "schedule": "--schedule",
                    "block_rows": "--block-rows"}


def _refuse_per_epoch_flags(options, net, sharpness, init_from=None):
    """--optimizer lbfgs: one full-batch objective, without epochs, batches or dropout; name the flag that
    does not apply (the trainer would name its option, or, for --metrics and --dropout, ignore it).
    ``init_from``: the --init-from model whose dropout the network took, when no --dropout was given."""
    if init_from is not None and any(getattr(layer, "rate", 0) for layer in net.sequence):
        raise ConfigError(f"the --init-from model '{init_from}' has dropout, which --optimizer lbfgs does not apply "
                          "(one full-batch objective); pass --dropout 0 to train it without, or choose a stochastic "
                          "optimizer such as adam.")
    if sharpness:
        raise ConfigError("--sharpness measures after every epoch, and L-BFGS has none; run 'handgrad curvature' on "
                          "the trained model instead.")
    given = [flag for name, flag in _PER_EPOCH_FLAGS.items() if options.get(name) is not None]
    if any(getattr(layer, "rate", 0) for layer in net.sequence):
        given.append("--dropout")
    if given:
        raise ConfigError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to --optimizer lbfgs "
                          "(one full-batch objective: no epochs, batches or dropout); remove "
                          f"{'it' if len(given) == 1 else 'them'}, or choose a stochastic optimizer such as adam.")


_SHARPNESS_PROBE = 1000  # rows of the training data the sharpness is measured on


def _sharpness_callback(split, prepare):
    """--sharpness: callbacks.Sharpness on the first 1000 training rows (fixed; the split is already shuffled),
    every epoch, to a relative residual of 1e-4 (the eigenvalue's own error is about its square)."""
    from .callbacks import Sharpness

    probe = slice(0, min(_SHARPNESS_PROBE, len(split.y_train)))
    return Sharpness(prepare(split.X_train[probe]), split.y_train[probe], tol=1e-4, warn=False)


def _describe(description):
    if description["source"] == "generated":
        return f"generated '{description['name']}'"
    return f"{description['source']} {os.path.basename(description.get('path', ''))}"


def _check_output_path(path, force, what):
    """Fail before any work if ``path`` cannot be written or would overwrite a file without --force."""
    path = writable_path(path, what)  # the check the atomic write makes, done before training
    if os.path.exists(path) and not force:
        raise ConfigError(f"{what} '{path}' already exists; pass --force to replace it, or choose another name.")
    return path


def _same_file(a, b):
    a, b = os.fspath(a), os.fspath(b)
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def _not_an_input(out, flag, *inputs):
    """``out``, unless it is one of the command's own input files (``predict m.npz x.csv --out m.npz`` replaced
    the model by its predictions, and --force is for replacing an earlier output, not the data)."""
    for given in inputs:
        if out is not None and isinstance(given, (str, os.PathLike)) and given and _same_file(out, given):
            raise ConfigError(f"{flag} '{out}' is this command's input file '{given}', which writing would replace; "
                              "choose another name.")
    return out


def _outputs_apart(args, out, checkpoint):
    """train's model file and checkpoint are neither its data nor its config nor each other (with --force, a
    training table given as --out was replaced by the model; one file as --out and --checkpoint held one of
    the two at the end)."""
    inputs = [getattr(args, key, None) for key in ("csv", "npy", "npz", "npy_targets", "config")]
    for flag, path in (("--out", out), ("--checkpoint", checkpoint)):
        _not_an_input(path, flag, *inputs)
    _not_an_input(out, "--out", getattr(args, "resume", None))  # (the checkpoint continues in the resumed file)
    if out is not None and checkpoint is not None and _same_file(out, checkpoint):
        raise ConfigError(f"--out '{out}' and the checkpoint '{checkpoint}' are one file, and each would replace "
                          "the other; give them different names.")


def _check_run_dir(path, force):
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"--run-dir '{path}' is a file; give a folder name.")
    if os.path.isdir(path) and os.listdir(path) and not force:
        raise ConfigError(f"run folder '{path}' is not empty; pass --force to overwrite its files, or choose "
                          "another --run-dir.")
    return path  # created (with its parents) after training succeeded


def history_table(history):
    """The history as (header, rows), one row per epoch; shorter metric lists are padded with ''."""
    record = {key: value for key, value in history.as_dict().items() if isinstance(value, (list, tuple))}
    length = max((len(value) for value in record.values()), default=0)
    header = list(record)
    rows = [[record[key][i] if i < len(record[key]) else "" for key in header] for i in range(length)]
    return header, rows


def _write_run(run_dir, net, history, evaluation, metadata, split, prepare, recorder, args):
    from .io import atomic_write_text

    os.makedirs(run_dir, exist_ok=True)
    header, rows = history_table(history)
    text = _stdio.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(os.path.join(run_dir, "history.csv"), text.getvalue())
    record = history.as_dict()
    if recorder is not None:
        record["gradient_norms"] = recorder.norms
    atomic_write_text(os.path.join(run_dir, "history.json"), json.dumps(record, indent=1, default=float))
    atomic_write_text(os.path.join(run_dir, "metrics.json"),
                      json.dumps({"evaluation": evaluation, **metadata}, indent=1, default=float))
    if args.no_plots:
        return
    try:
        from . import plotting

        plotting.plot_history(history, os.path.join(run_dir, "loss.png"))
        plotting.plot_weight_histograms(net, os.path.join(run_dir, "weights.png"))
        if recorder is not None:
            plotting.plot_gradient_norms(recorder, os.path.join(run_dir, "gradient_norms.png"))
        if np.isfinite(history.metrics.get("sharpness", [np.nan])).any():  # --sharpness
            plotting.plot_sharpness(history, os.path.join(run_dir, "sharpness.png"))
        test = "test" if "test" in evaluation else ("validation" if "validation" in evaluation else None)
        if test and "confusion_matrix" in evaluation[test]:
            plotting.plot_confusion_matrix(np.array(evaluation[test]["confusion_matrix"]),
                                           os.path.join(run_dir, "confusion_matrix.png"),
                                           title=f"confusion matrix ({test} set)")
        if net.n_inputs == 2:
            plotting.plot_decision_boundary(net, split.X_train, split.y_train,
                                            os.path.join(run_dir, "decision_boundary.png"), transform=prepare)
    except plotting.PlottingUnavailable as error:
        print(f"handgrad: note: pictures skipped: {error}", file=sys.stderr)


# ============================================================================ evaluate, predict, info, gradcheck
def _load_model(path):
    from .network import load

    return load(path)


# A memory-mapped .npy is read this many rows at a time by evaluate and predict: the network's own forward chunk
# (network.MLP.forward, training.evaluate), so each pass sees the rows it sees with the whole table in memory.
_READ_ROWS = 4096


class _MappedRows:
    """The features of a memory-mapped .npy table for ``net``, read a slice of rows at a time (with plain file
    reads, handgrad.streaming.row_reader) and prepared as the in-memory path prepares the whole table: the
    column ``drop`` (the target's, or None) taken out, checked as datasets.check_dataset checks (finite
    float64), standardized as in training, in the model's dtype. ``shape`` and row slices are what
    training.evaluate asks of its X; :meth:`blocks` gives them all in order."""

    def __init__(self, net, table, drop, where):
        from . import streaming

        if table.dtype.kind not in "biuf" or table.ndim not in (1, 2):
            raise DataError(f"{where} holds a {table.ndim}-D array of dtype {table.dtype}; give a 2-D table of "
                            "numbers.")
        if table.shape[0] == 0:
            raise DataError(f"{where}: the data set is empty (0 samples); give a file with at least one row of values.")
        _check_feature_count(net, 1 if table.ndim == 1 else table.shape[1] - (drop is not None), where)
        self.net, self.reader, self.drop, self.where = net, streaming.row_reader(table, where), drop, where
        self.shape = (int(table.shape[0]), net.n_inputs)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        from . import datasets

        a, b = rows.start, min(rows.stop, self.shape[0])
        block = self.reader.read(a, b)
        if self.drop is not None:
            block = np.delete(block, self.drop, axis=1)
        try:
            X = datasets.check_dataset(block, name=self.where)
        except DataError:
            bad = np.argwhere(~np.isfinite(block.reshape(len(block), -1)))
            if not bad.size:
                raise
            raise DataError(f"{self.where}: NaN or infinity in the features (first at sample {a + bad[0][0]}, column "
                            f"{bad[0][1]}); remove or impute those values first.") from None
        return self.net.check_inputs(_features_for(self.net, X, self.where))

    def blocks(self):
        for a in range(0, self.shape[0], _READ_ROWS):
            yield self[a:a + _READ_ROWS]


def _mapped_targets(y, where):
    """Targets read from a .npy (in memory: one value or row per sample), converted as datasets.check_dataset
    converts them (integer-valued floats become class ids); a zero-width stand-in for X costs no memory."""
    from . import datasets

    return datasets.check_dataset(np.broadcast_to(0.0, (len(y), 1)), y, name=where)[1]


def _mapped_table(args, net):
    """evaluate's --npy, memory-mapped: (rows, y, description), with --npy-targets or the table's --target column
    (default the last); --limit keeps the first rows."""
    from . import datasets, streaming

    limit = None if args.limit is None else _positive("--limit", args.limit)
    if args.npy_targets is not None:
        if args.target is not None:
            raise ConfigError("--npy-targets goes with --npy X.npy holding the features only (no --target), e.g. "
                              "--npy X.npy --npy-targets y.npy.")
        X, y, description = _mapped_npy_pair(args)
        where = _describe(description)
        return _MappedRows(net, X[:limit], None, where), _mapped_targets(np.array(y[:limit]), where), description
    table = streaming.open_npy(args.npy, "--npy")[:limit]
    description = {"source": "npy", "path": os.path.abspath(args.npy), "target": args.target}
    where = _describe(description)
    if table.ndim != 2 or table.shape[1] < 2:
        raise DataError(f"'{args.npy}' holds an array of shape {table.shape}; a table with targets needs 2-D data with "
                        "at least 2 columns (features and the target column).")
    column = datasets.column_index(args.target, None, table.shape[1], args.npy)
    rows = _MappedRows(net, table, column, where)
    reader = streaming.row_reader(table, where)
    y = np.concatenate([reader.read(a, min(a + _READ_ROWS, len(table)))[:, column]
                        for a in range(0, len(table), _READ_ROWS)])
    return rows, _mapped_targets(y, where), description


def _row_blocks(X):
    """X's rows a few thousand at a time from a memory-mapped file (:class:`_MappedRows`), else X whole."""
    return X.blocks() if isinstance(X, _MappedRows) else iter([X])


def _without_weight_column(args, net, X):
    """evaluate on the training table of a model trained with --sample-weight-column: that column (found as
    train found it) is no feature, and evaluate is unweighted, so it is left out, with a note on stderr. X as it
    is for any other table."""
    column = ((getattr(net, "metadata", None) or {}).get("data") or {}).get("sample_weight_column")
    if column is None or args.csv is None or X.shape[1] != net.n_inputs + 1:
        return X
    try:
        X = _csv_with_weights(argparse.Namespace(**{**vars(args), "sample_weight_column": column}))[0]
    except (ConfigError, DataError):  # not the training table's layout: the feature count error says so
        return X
    print(f"handgrad: note: column {column!r} is the model's sample weight column, left out of the features "
          "(evaluate is unweighted).", file=sys.stderr)
    return X


def cmd_evaluate(args):
    """evaluate; a --npy table is memory-mapped and read block by block (with any other data source, or none,
    load_data names the problem)."""
    net = _load_model(args.model)
    others = [flag for flag in ("data", "csv", "npz", "mnist") if getattr(args, flag, None) is not None]
    if args.npy is not None and not others:
        X, y, description = _mapped_table(args, net)
        _check_targets_for(net, y, _describe(description))
    else:
        X, y, description = load_data(args)
        X = _without_weight_column(args, net, X)
        _check_targets_for(net, y, _describe(description))
        X = _features_for(net, X, _describe(description))
    report = evaluate_network(net, X, y, _target_preprocessor(net))
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


def _read_features(net, path, target):
    """predict's input, prepared for ``net``: a .npy memory-mapped (:class:`_MappedRows`, read block by block),
    a .csv or .npz read whole."""
    from . import datasets, streaming

    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension not in (".csv", ".txt", ".npy", ".npz"):
        raise DataError(f"'{path}': unknown input file type '{extension}'; use .csv, .npy or .npz.")
    where = f"'{path}'"
    if extension == ".npy":
        table = streaming.open_npy(path, "the input")
        if target is None:
            return _MappedRows(net, table, None, where)
        if table.ndim != 2 or table.shape[1] < 2:
            raise DataError(f"{where} holds an array of shape {table.shape}; a table with a --target column needs 2-D "
                            "data with at least 2 columns.")
        return _MappedRows(net, table, datasets.column_index(target, None, table.shape[1], path), where)
    if target is None and extension in (".csv", ".txt"):
        return _features_for(net, _csv_features(net, path), where)
    X, _ = datasets.load_file(path, target if target is not None else False)
    return _features_for(net, X, where)


def _csv_features(net, path):
    """predict's features from a CSV without --target: every column, except the model's own target column when
    the header has it and the table has one column more than the model's inputs (a table like the training one;
    said on stderr)."""
    from . import datasets

    names, values = datasets.load_csv_table(path)
    data = (getattr(net, "metadata", None) or {}).get("data") or {}
    stripped = [name.strip() for name in names] if names is not None else []
    found = {what: data.get(key) for what, key in (("target", "target"), ("sample weight column",
                                                                          "sample_weight_column"))
             if isinstance(data.get(key), str) and data.get(key) in stripped}
    if found and values.shape[1] == net.n_inputs + len(found):
        values = np.delete(values, [stripped.index(name) for name in found.values()], axis=1)
        for what, name in found.items():
            print(f"handgrad: note: column '{name}' is the model's {what}, left out of the features (--target names "
                  "another column to leave out).", file=sys.stderr)
    elif (data.get("source") == "csv" and data.get("target") is None and not data.get("sample_weight_column")
          and values.shape[1] == net.n_inputs + 1):  # trained on a CSV's last column, train's default target
        values = values[:, :-1]
        print("handgrad: note: the last column is left out of the features: the model was trained with a CSV's "
              "last column as its target (--target names another column to leave out).", file=sys.stderr)
    return datasets.check_dataset(values, name=os.fspath(path))


def _warn_infinite_predictions(net, prediction):
    """One 'handgrad: warning:' line on stderr when some predicted values are infinite (written as inf)."""
    if prediction.dtype.kind != "f":
        return
    infinite = int(np.isinf(prediction).sum())
    if not infinite:
        return
    if net.output_activation.name == "exp":
        limit = float(np.log(np.finfo(net.dtype).max))
        why = (f"e^z overflows above z = {limit:.2f} in {net.dtype.name}: the model's output z is that large "
               "there (inputs far from the training data, or a diverged model)")
    else:
        why = f"the output layer's values exceed the {net.dtype.name} range (inputs far from the training data?)"
    print(f"handgrad: warning: {infinite} of {prediction.size} predicted values are infinite (written as inf): "
          f"{why}.", file=sys.stderr)


def cmd_predict(args):
    net = _load_model(args.model)
    out = _not_an_input(_check_output_path(args.out, True, "output file"), "--out", args.model, args.input) \
        if args.out else None
    if args.proba and not net.is_classifier:
        raise ConfigError("--proba needs a classifier (sigmoid or softmax output); this model is a regressor.")
    X = _read_features(net, args.input, args.target)
    parts = [(_in_target_units(net, net.predict(Xb).reshape(len(Xb), -1)),
              net.predict_proba(Xb) if args.proba else None)
             for Xb in _row_blocks(X)]  # a memory-mapped .npy: a few thousand rows at a time
    prediction = np.concatenate([part[0] for part in parts])
    header = ["prediction"] if prediction.shape[1] == 1 else [f"prediction_{j}" for j in range(prediction.shape[1])]
    columns = [prediction]
    if args.proba:
        probabilities = np.concatenate([part[1] for part in parts])
        if probabilities.shape[1] == 1:
            probabilities = np.column_stack([1 - probabilities[:, 0], probabilities[:, 0]])
        header += [f"p_{j}" for j in range(probabilities.shape[1])]
        columns.append(probabilities)
    _warn_infinite_predictions(net, prediction)
    table = np.column_stack(columns)
    integer = prediction.dtype.kind in "iu"
    text = _stdio.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for row in table:
        writer.writerow([f"{int(v)}" if integer and j < prediction.shape[1] else repr(float(v))
                         for j, v in enumerate(row)])
    if out:
        from .io import atomic_write_text

        atomic_write_text(out, text.getvalue())
        print(f"{len(X)} predictions written to {out}", file=sys.stderr)
    else:
        sys.stdout.write(text.getvalue())
    return 0


def cmd_export(args):
    from .onnx_export import to_onnx

    net = _load_model(args.model)
    out = _not_an_input(writable_path(args.onnx, "ONNX file"), "--onnx", args.model)
    standardized = _preprocessor(net) is not None and not args.no_preprocessing
    try:
        to_onnx(net, out, opset=args.opset, preprocessing=None if args.no_preprocessing else "auto")
    except ImportError as error:  # the onnx extra is not installed
        raise HandgradError(str(error)) from None
    outputs = f"output 'Y' (N, {net.n_outputs})"
    if _target_preprocessor(net) is not None and not args.no_preprocessing:
        outputs += " in the original target units"
    if net.is_classifier:
        outputs += ", 'label' and 'probabilities' (as handgrad predict --proba)"
    print(f"wrote {out}: ONNX opset {args.opset}, input 'X' (N, {net.n_inputs}) of "
          f"{'raw features (standardized in the graph)' if standardized else 'features'}, {outputs}, "
          f"{net.dtype.name}")
    return 0


def cmd_info(args):
    from .io import FORMAT_VERSION

    net = _load_model(args.model)
    metadata = dict(net.metadata)
    if args.json:
        print(json.dumps({"config": net.config(), "parameters": net.n_params,
                          "shapes": {name: list(a.shape) for name, a in net.parameters()}, "metadata": metadata},
                         indent=1))
        return 0
    print(f"{args.model}: handgrad model file, format version {FORMAT_VERSION}, "
          f"{os.path.getsize(args.model)} bytes")
    print(net.summary())
    preprocessing = metadata.pop("preprocessing", None)
    if preprocessing:
        _preprocessor(net)  # a damaged record is a one-line error, as in evaluate and predict
        print(f"preprocessing: {preprocessing.get('kind')} over {len(preprocessing.get('mean', []))} features "
              "(applied automatically by evaluate and predict)")
    targets = metadata.pop("target_preprocessing", None)
    if targets:
        _target_preprocessor(net)
        print(f"target standardization over {len(targets.get('mean', []))} outputs (undone automatically by "
              "evaluate, predict and export)")
    for key, value in metadata.items():
        if value in (None, {}, []):
            continue
        if isinstance(value, dict):
            print(f"{key}:")
            for inner, item in value.items():
                print(f"  {inner}: {json.dumps(item) if isinstance(item, (dict, list)) else item}")
        else:
            print(f"{key}: {value}")
    return 0


def cmd_gradcheck(args):
    from .gradcheck import gradcheck

    if args.model:
        net = _load_model(args.model).astype("float64")  # float32 rounding would swamp the differences
    else:
        net = network_from_args(args)
    samples = _positive("--samples", args.samples)
    eps = _positive("--eps", args.eps, float)
    rng = np.random.default_rng(0 if args.seed is None else args.seed)
    X = rng.normal(size=(samples, net.n_inputs))
    if net.output_activation.name == "softmax":
        T = rng.integers(0, net.n_outputs, samples)
    elif net.output_activation.name == "sigmoid":
        T = rng.integers(0, 2, (samples, net.n_outputs)).astype(float)
    elif net.loss_fn.target_range[0] >= 0:  # counts (the Poisson deviance)
        T = rng.poisson(1.5, (samples, net.n_outputs)).astype(float)
    else:
        T = rng.normal(size=(samples, net.n_outputs))
    result = gradcheck(net, X, T, eps=eps)
    print(f"gradient check of {net!r} on {samples} random samples (central differences, eps={eps:g})")
    print(result)
    passed = result.passed(args.tolerance)
    print(f"largest relative error {result.max_error:.2e}: "
          + ("PASS" if passed else f"FAIL (tolerance {args.tolerance:g})"))
    return 0 if passed else 1


def cmd_sweep(args):
    """`handgrad sweep`: train's data, split and scaling, then the sweep of cli_sweep (on Dask, handgrad.sweeps)."""
    if args.config:  # a train config works as the base: what only train uses is ignored, with one warning line
        _apply_train_config_to_sweep(args)
    for key, value in TRAIN_DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    X, y, description, split, standardizer, _ = _training_data(args)  # (sample weights: not swept)
    if args.layers is None:
        args.layers = _default_layers(y, description["source"])
    _check_targets_for(network_from_args(args, n_inputs=X.shape[1]), y, "the data")
    result = cli_sweep.run_sweep(args, split, standardizer, description)
    if not args.quiet:
        cli_sweep.print_summary(result)
        if result.best_model is not None and len(split.y_test):
            prepare = standardizer.transform if standardizer is not None else (lambda A: A)
            _print_evaluation({"test": evaluate_network(result.best_model, prepare(split.X_test), split.y_test)})
    return cli_sweep.exit_status(result)


def _train_only_settings(sweep_parser):
    """The dests of train's flags that the sweep has no flag for, plus train's outputs (its --out is a model
    file, the sweep's a folder): a sweep ignores them in a train config (cli_sweep.TRAIN_ONLY says why)."""
    train = _Parser(prog="handgrad").add_subparsers()
    _add_train_parser(train)
    sweep = {action.dest for action in sweep_parser._actions}
    return {action.dest for action in train.choices["train"]._actions if action.dest not in sweep} | {"out"}


def _apply_train_config_to_sweep(args):
    """--config of a sweep: the settings both commands have apply; train's --sample-weight-column still takes
    its column out of the features (so that the features are train's), though the sweep trains unweighted;
    the rest of train's settings are ignored, named in one warning line on stderr, never silently."""
    ignore = _train_only_settings(args.command_parser) - {"sample_weight_column"}
    ignored = _apply_config(args, args.command_parser, args.config, ignore=ignore, accept=("sample_weight_column",))
    if getattr(args, "sample_weight_column", None) is not None:
        ignored.append("sample_weight_column")
    if ignored:
        print(f"handgrad: warning: {cli_sweep.ignored_settings_text(args.config, ignored)}", file=sys.stderr)


# ============================================================================ the parser
def _add_train_parser(sub):
    train = sub.add_parser("train", help="train a network and save it (default: moons, a 2-D binary set)",
                           description="Train a network. Flags override the --config file; the input size comes "
                                       "from the data; unset options use the trainer's defaults.")
    add_architecture_arguments(train)
    add_data_arguments(train, default_help=f" (default {DEFAULT_DATA})")
    group = train.add_argument_group("training")
    group.add_argument("--config", metavar="FILE.toml", help="read settings from a TOML file ([model], [training], "
                                                            "[data] sections or flat keys named like the flags)")
    group.add_argument("--epochs", type=int, help=f"passes over the data (default {TRAIN_DEFAULTS['epochs']})")
    group.add_argument("--batch-size", type=int, help=f"mini-batch size (default {TRAIN_DEFAULTS['batch_size']})")
    group.add_argument("--learning-rate", "--lr", type=float, dest="learning_rate",
                       help=f"step size (default {TRAIN_DEFAULTS['learning_rate']})")
    group.add_argument("--optimizer", help="sgd, momentum, nesterov, adam, adamw, rmsprop, or lbfgs (full batch; "
                                             "--epochs is then its iteration limit) (default sgd)")
    group.add_argument("--schedule", help="constant, step, exponential, cosine, onecycle, plateau")
    group.add_argument("--clip-norm", type=float, metavar="C",
                       help="rescale each batch's gradient so that its global norm (over all parameters) is at most C")
    group.add_argument("--validation", type=float, help="fraction held out for validation (default 0.2)")
    group.add_argument("--test", type=float, help="fraction held out for the final test (default 0.2)")
    group.add_argument("--no-standardize", action="store_const", const=True,
                       help="do not standardize the features (MNIST pixels are always scaled by 1/255)")
    group.add_argument("--standardize-targets", action="store_const", const=True,
                       help="regression (identity output): train on targets standardized with the training rows' "
                            "mean and scale, stored in the model; predict, evaluate and export answer in the "
                            "original units")
    add_trainer_arguments(group)  # --patience, --metrics, --class-weight, --sample-weight-column, --checkpoint, ...
    group.add_argument("--distributed", action="store_const", const=True,
                       help="data-parallel training under 'mpiexec -n K handgrad train ...': --batch-size is the "
                            "global batch; rank 0 writes (pip install handgrad[mpi]; docs/scaling.md)")
    group.add_argument("--sharpness", action="store_const", const=True,
                       help="measure the top Hessian eigenvalue lambda_1 on up to 1000 training rows after every "
                            "epoch (history column 'sharpness'; sharpness.png in --run-dir)")
    group = train.add_argument_group("output")
    group.add_argument("--out", metavar="FILE", help="write the trained model here (e.g. model.npz)")
    group.add_argument("--run-dir", metavar="DIR", help="write history.csv, history.json, metrics.json and PNG "
                                                        "pictures here")
    group.add_argument("--force", action="store_true", help="replace an existing --out file or non-empty --run-dir")
    group.add_argument("--no-plots", action="store_const", const=True, help="skip the pictures in --run-dir")
    group.add_argument("--verbose", action="store_const", const=True, help="print the loss of every epoch")
    group.add_argument("--quiet", action="store_const", const=True, help="print nothing on success")
    train.set_defaults(func=cmd_train, command_parser=train)


def _add_model_parsers(sub):
    """evaluate, predict, info, gradcheck and export: the commands that read a model file."""
    evaluate = sub.add_parser("evaluate", help="metrics of a saved model on data (confusion matrix for classifiers)",
                              description="Evaluate a saved model: loss, accuracy and confusion matrix for "
                                          "classifiers; MSE, MAE and R^2 for regressors.")
    evaluate.add_argument("model", help="model file written by 'handgrad train --out' or net.save()")
    add_data_arguments(evaluate)
    evaluate.add_argument("--seed", type=seed_flag, help="seed of a generated --data set (default 0)")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.set_defaults(func=cmd_evaluate)

    predict = sub.add_parser("predict", help="predict with a saved model: CSV/NPY in, CSV out",
                             description="Predict with a saved model. The input holds one row per sample with the "
                                         "model's features (standardized automatically as in training).")
    predict.add_argument("model", help="model file")
    predict.add_argument("input", help="features: .csv, .npy or .npz (X)")
    predict.add_argument("--target", metavar="COLUMN", help="a column of the input to ignore (e.g. the labels)")
    predict.add_argument("--out", metavar="FILE", help="write the CSV here (atomically) instead of to stdout")
    predict.add_argument("--proba", action="store_true", help="add class probability columns p_0, p_1, ...")
    predict.set_defaults(func=cmd_predict)

    info = sub.add_parser("info", help="layers, shapes, parameter count and training settings of a model file",
                          description="Describe a model file without running it.")
    info.add_argument("model", help="model file")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(func=cmd_info)

    check = sub.add_parser("gradcheck", help="compare backprop with central differences, per parameter",
                           description="Check the hand-derived gradients of an architecture (the network flags) or "
                                       "of a model file against central differences; exit status 1 if any "
                                       "relative error exceeds --tolerance.")
    check.add_argument("--model", metavar="FILE", help="check this saved model instead of --layers")
    add_architecture_arguments(check)
    check.add_argument("--samples", type=int, default=8, help="random samples in the batch (default 8)")
    check.add_argument("--eps", type=float, default=1e-6, help="finite-difference step (default 1e-6)")
    check.add_argument("--tolerance", type=float, default=1e-6, help="largest relative error that passes")
    check.set_defaults(func=cmd_gradcheck)

    export = sub.add_parser("export", help="export a model file to ONNX (needs handgrad[onnx])",
                            description="Write a saved model as an ONNX graph (MatMul, Add and standard activation "
                                        "ops, dynamic batch size) that onnxruntime or any ONNX consumer runs. "
                                        "The input standardization stored in the model file (by handgrad train) "
                                        "is part of the graph (Sub and Div nodes), so the graph takes raw rows "
                                        "and answers as handgrad predict does: output 'Y' (the network output) "
                                        "and, for classifiers, 'label' and 'probabilities'. The model's "
                                        "metadata_props hold the handgrad version, loss, classes and "
                                        "preprocessing.")
    export.add_argument("model", help="model file")
    export.add_argument("--onnx", metavar="FILE", required=True, help="the ONNX file to write (atomically)")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    export.add_argument("--no-preprocessing", action="store_true",
                        help="leave the stored standardization out of the graph (then feed standardized rows)")
    export.set_defaults(func=cmd_export)


def build_parser():
    parser = _Parser(prog="handgrad", description="Multilayer perceptrons with hand-derived backpropagation. "
                     "Run with no arguments to train a small network on a built-in 2-D data set.")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"handgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_train_parser(sub)
    _add_model_parsers(sub)
    register_teaching_commands(sub)  # explain, trace, graph, check-student
    register_curvature_command(sub, add_data_arguments, _curvature_data, _features_for)  # (cli_curvature.py)
    sweep = cli_sweep.add_sweep_parser(sub, add_data_arguments)  # handgrad sweep: cli_sweep.py
    sweep.set_defaults(func=cmd_sweep, command_parser=sweep)
    register_playground(sub)  # handgrad.playground.command
    for command in sub.choices.values():  # --debug is accepted after the subcommand too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    return parser


def main(argv=None):
    """Entry point of the `handgrad` command; returns the exit status."""
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows up here, inside the handler, and not at interpreter exit
    except BrokenPipeError:
        return _stdout_closed()


def _run(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not [arg for arg in argv if arg != "--debug"]:
        argv.append("train")  # plain `handgrad`: the built-in demo run
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except BrokenPipeError:
        raise  # the reader of stdout went away: see main
    except (HandgradError, OSError) as error:
        if args.debug:
            raise
        message = str(error) if isinstance(error, HandgradError) else f"{error.strerror or error}: " \
                                                                      f"{error.filename or ''}"
        print(f"handgrad: error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("handgrad: interrupted; no file was written.", file=sys.stderr)
        return 130


def _stdout_closed():
    """The program reading our output stopped early (`handgrad info model.npz | head -1`). That is how head,
    grep -q and pagers work, so it is no error: exit status 0, nothing on stderr. As Python's documentation
    advises (signal module, "Note on SIGPIPE"), stdout is pointed at devnull so that the flush at exit cannot
    fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # stdout is no file descriptor (an embedding program's)
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
