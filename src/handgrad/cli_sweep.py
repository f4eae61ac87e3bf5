"""`handgrad sweep`: a hyperparameter sweep on Dask from the command line (the work is handgrad.sweeps').

    handgrad sweep --data moons --layers 16:tanh,1:sigmoid --epochs 27 \\
        --param learning_rate=0.01,0.1,1 --param l2=0,1e-4 --workers 2 --out sweep
    handgrad sweep --config base.toml --param "layers=32:relu,1:sigmoid/64:relu,64:relu,1:sigmoid" \\
        --param learning_rate=0.003,0.01,0.03,0.1 --trials 4 --out sweep
    handgrad sweep --csv houses.csv --target price --param units=16,64 --scheduler tcp://10.0.0.5:8786 --out sweep

The data, network and training flags are `train`'s (and so is ``--config``); each ``--param NAME=V1,V2,...``
names a setting to vary and its values. Values are separated by commas; ``layers`` values, which hold
commas themselves, are separated by ``/`` (so are per-layer dropout lists: ``dropout=0.1,0.2/0.3,0.3``).
--patience N stops a trial whose --metric has not improved for N epochs (per trial, besides the halving).
With --trials, a parameter may be a range instead: ``learning_rate=loguniform:1e-4:0.1``,
``l2=uniform:0:0.001``, ``units=randint:8:128``.
A --param value replaces the flag of the same name. Prints one line per finished trial on stderr, then
the best trials and the best model's score on the test part; writes DIR/results.csv, results.json,
best_model.npz and curves.png. Exit status 0 when at least one trial ended with a metric, 1 when none
did, 2 on bad input, 130 after Ctrl-C (the finished trials are written).
"""

import os
import sys

from .cli_args import add_architecture_arguments
from .errors import ConfigError
from .sweeps import METRICS, PARAMETERS, check_names

DEFAULT_OUT = "sweep"


def add_sweep_parser(subparsers, add_data_arguments):
    """Add `handgrad sweep` (``add_data_arguments`` is cli's, so that the data flags are train's); returns it."""
    sweep = subparsers.add_parser(
        "sweep", help="a hyperparameter sweep on Dask: grid or random search, successive halving",
        description="Train one network per combination of the --param values, as Dask tasks on a local cluster "
                    "(or at --scheduler), stop weak trials early (successive halving) and rank the trials by "
                    "their validation metric. Needs handgrad[dask].")
    add_architecture_arguments(sweep)
    add_data_arguments(sweep, default_help=" (default moons)")
    group = sweep.add_argument_group("training (the base of every trial)")
    group.add_argument("--config", metavar="FILE.toml", help="read the base settings from a TOML file, as train does")
    group.add_argument("--epochs", type=int, help="epochs of a trial that is not stopped early (default 100)")
    group.add_argument("--batch-size", type=int, help="mini-batch size (default 32)")
    group.add_argument("--learning-rate", "--lr", type=float, dest="learning_rate", help="step size (default 0.1)")
    group.add_argument("--optimizer", help="sgd, momentum, nesterov, adam, adamw, rmsprop (default sgd)")
    group.add_argument("--schedule", help="constant, step, exponential, cosine, onecycle, plateau")
    group.add_argument("--clip-norm", type=float, help="clip the gradient's global norm to this value")
    group.add_argument("--validation", type=float, help="fraction held out to rank the trials (default 0.2)")
    group.add_argument("--test", type=float, help="fraction held out to test the best model (default 0.2)")
    group.add_argument("--no-standardize", action="store_const", const=True,
                       help="do not standardize the features (MNIST pixels are always scaled by 1/255)")
    group = sweep.add_argument_group("sweep")
    group.add_argument("--param", action="append", metavar="NAME=V1,V2,...",
                       help=f"a setting to vary and its values (repeatable); names: {', '.join(PARAMETERS)}")
    group.add_argument("--trials", type=int, metavar="N", help="random search: N combinations drawn from the grid "
                                                               "(default: every combination)")
    group.add_argument("--metric", choices=METRICS, help="what ranks the trials (default val_loss)")
    group.add_argument("--no-halving", action="store_const", const=True,
                       help="train every trial to the end (default: successive halving stops weak trials)")
    group.add_argument("--eta", type=float, help="successive halving keeps the best 1/eta at each rung (default 3)")
    group.add_argument("--min-epochs", type=int, metavar="R", help="the first rung, in epochs (default epochs/eta^2)")
    group.add_argument("--patience", type=int, metavar="N",
                       help="per-trial early stopping: a trial whose --metric has not improved for N epochs stops "
                            "(status 'stopped (patience)') and reports its best epoch (default: off)")
    group.add_argument("--workers", type=int, metavar="K", help="worker processes of the local cluster "
                                                                "(default: the number of CPUs)")
    group.add_argument("--scheduler", metavar="ADDRESS", help="run on the Dask cluster at this address "
                                                              "(e.g. tcp://host:8786) instead")
    group.add_argument("--blas-threads", type=int, metavar="N", help="BLAS threads per trial (default 1)")
    group = sweep.add_argument_group("output")
    group.add_argument("--out", metavar="DIR", help=f"results.csv, results.json, best_model.npz, curves.png "
                                                    f"(default ./{DEFAULT_OUT})")
    group.add_argument("--force", action="store_true", help="replace the results of an earlier sweep in --out")
    group.add_argument("--no-plots", action="store_const", const=True, help="skip curves.png")
    group.add_argument("--quiet", action="store_const", const=True, help="print nothing on success")
    return sweep


# ---------------------------------------------------------------------------- --param NAME=V1,V2,...
def _boolean(text):
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise ValueError("not true or false")


def _rates(text):
    """A dropout rate (0.2) or one rate per hidden layer (0.1,0.2)."""
    rates = [float(part) for part in text.split(",")]
    return rates[0] if len(rates) == 1 else rates


_KINDS = {"units": (int, "a whole number"), "seed": (int, "a whole number"), "batch_size": (int, "a whole number"),
          "epochs": (int, "a whole number"), "l2": (float, "a number"), "l1": (float, "a number"),
          "learning_rate": (float, "a number"), "clip_norm": (float, "a number"), "bias": (_boolean, "true or false"),
          "dropout": (_rates, "a rate such as 0.2, or one per hidden layer such as 0.1,0.2")}


def parse_value(name, text):
    """One --param value as the type the setting takes (str for names such as optimizer or layers)."""
    convert, kind = _KINDS.get(name, (str, "text"))
    try:
        return convert(text.strip())
    except ValueError:
        raise ConfigError(f"--param {name}: '{text}' is not {kind}.") from None


RANGES = ("uniform", "loguniform", "randint")


def parse_range(name, text):
    """'loguniform:1e-4:0.1' -> a Range that random search (--trials) draws from."""
    from .sweeps import Range

    parts = [part.strip() for part in text.split(":")]
    if len(parts) != 3:
        raise ConfigError(f"--param {name}: a range looks like {parts[0]}:LOW:HIGH, got '{text}'.")
    try:
        low, high = (float(part) for part in parts[1:])
    except ValueError:
        raise ConfigError(f"--param {name}: the bounds of '{text}' are not numbers.") from None
    try:
        return Range(parts[0], low, high)
    except ConfigError as error:
        raise ConfigError(f"--param {name}: {error}") from None


def parse_params(texts):
    """{name: [value, ...]} from the --param texts, in their order."""
    if not texts:
        raise ConfigError("give at least one --param NAME=V1,V2,..., e.g. --param learning_rate=0.01,0.1,1; names: "
                          f"{', '.join(PARAMETERS)}.")
    params = {}
    for text in texts:
        name, sep, values = text.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not values.strip():
            raise ConfigError(f"--param takes NAME=V1,V2,... (e.g. learning_rate=0.01,0.1), got '{text}'.")
        check_names([name])
        if name in params:
            raise ConfigError(f"--param {name} is given twice; put all its values in one: {name}=V1,V2,...")
        if values.split(":", 1)[0].strip() in RANGES:
            params[name] = parse_range(name, values)
            continue
        separator = "/" if name == "layers" or "/" in values else ","
        parts = [part.strip() for part in values.split(separator)]
        if not all(parts):
            raise ConfigError(f"--param {name}: an empty value in '{values}'; separate values by '{separator}'.")
        params[name] = [parse_value(name, part) for part in parts]
    return params


# ---------------------------------------------------------------------------- the base settings
def _positive(flag, value, kind=int):
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0
                              or (kind is int and value != int(value))):
        raise ConfigError(f"{flag} must be a positive {'whole number' if kind is int else 'number'}, got {value!r}.")
    return value


def base_settings(args):
    """The settings every trial starts from: the network and training flags (or the --config file's)."""
    dropout = args.dropout
    if isinstance(dropout, str):
        dropout = parse_value("dropout", dropout)
    base = {"layers": args.layers, "loss": args.loss, "bias": None if args.no_bias is None else not args.no_bias,
            "l2": args.l2, "l1": args.l1, "dropout": dropout, "init": args.init, "dtype": args.dtype,
            "seed": args.seed, "epochs": _positive("--epochs", args.epochs),
            "batch_size": _positive("--batch-size", args.batch_size),
            "learning_rate": _positive("--learning-rate", args.learning_rate, float), "optimizer": args.optimizer,
            "schedule": args.schedule, "clip_norm": _positive("--clip-norm", args.clip_norm, float)}
    return {name: value for name, value in base.items() if value is not None}


def _output_folder(path, force):
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"--out '{path}' is a file; give a folder name.")
    if os.path.exists(os.path.join(path, "results.json")) and not force:
        raise ConfigError(f"'{path}' already holds a sweep's results; pass --force to replace them, or choose another "
                          "--out.")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConfigError(f"cannot write in '{path}': the folder '{parent}' does not exist; create it first.")
    return path


# ---------------------------------------------------------------------------- a train config as the base
# Settings of `handgrad train` that a sweep has no use for, with why (the others are train's outputs or
# progress: out, run_dir, verbose, sharpness, distributed). A train config given to `sweep --config` may hold
# them: they are ignored, and named in one warning line (cli._apply_train_config_to_sweep). A config's
# patience applies (per-trial early stopping), since sweep has the flag --patience.
TRAIN_ONLY = {
    "metrics": "--metric ranks the runs",
    "class_weight": "the sweep trains unweighted",
    "sample_weight_column": "the column is still no feature, but the sweep trains unweighted",
    "checkpoint": "the sweep checkpoints each run between rungs itself",
    "resume": "the sweep checkpoints each run between rungs itself",
    "init_from": "every run of the sweep starts from new weights",
    "block_rows": "a sweep reads its data into memory",
}


def ignored_settings_text(path, keys):
    """The one warning line that names the train settings a sweep ignored, and why where it matters."""
    named = [f"{key} ({TRAIN_ONLY[key.replace('-', '_')]})" if key.replace("-", "_") in TRAIN_ONLY else key
             for key in sorted(keys)]
    return (f"the config '{path}' sets what only 'handgrad train' uses; the sweep ignores it: "
            f"{', '.join(named)}.")


# ---------------------------------------------------------------------------- running it
def run_sweep(args, split, standardizer, description):
    """Run the sweep of the parsed flags on the split data (scaled by ``standardizer``); returns the result."""
    from .sweeps import sweep

    params = parse_params(args.param)
    base = base_settings(args)
    out = _output_folder(args.out or DEFAULT_OUT, args.force)
    for flag, value in (("--trials", args.trials), ("--workers", args.workers), ("--eta", args.eta),
                        ("--min-epochs", args.min_epochs), ("--blas-threads", args.blas_threads)):
        _positive(flag, value, float if flag == "--eta" else int)
    if args.patience is not None and (isinstance(args.patience, bool) or not isinstance(args.patience, int)
                                      or args.patience < 0):
        raise ConfigError(f"--patience must be a whole number of epochs >= 0, got {args.patience!r}.")
    if not len(split.y_val):
        raise ConfigError("a sweep ranks the trials on validation data: --validation must be above 0.")
    prepare = standardizer.transform if standardizer is not None else (lambda X: X)
    metadata = {"data": description, "preprocessing": standardizer.to_dict() if standardizer is not None else None}
    return sweep(prepare(split.X_train), split.y_train, params, base=base, trials=args.trials,
                 validation_data=(prepare(split.X_val), split.y_val), metric=args.metric or "val_loss",
                 halving=not args.no_halving, eta=args.eta or 3, min_epochs=args.min_epochs, patience=args.patience,
                 workers=args.workers,
                 scheduler=args.scheduler, blas_threads=args.blas_threads or 1, out=out, seed=args.seed,
                 metadata=metadata, on_trial_end=None if args.quiet else print_trial, plot=not args.no_plots)


def _describe_params(row, names):
    return " ".join(f"{name}={row[name]}" for name in names)


def print_trial(row, n_trials):
    """One line on stderr for a trial that ended."""
    metric = next(key for key in row if key.startswith("val_"))
    value = "" if row[metric] is None else f"{metric} {row[metric]:.4g}"
    names = [key for key in row if key not in ("trial", "status", metric, "epochs", "seconds", "error")]
    error = f"  {row['error'][:160]}" if row["error"] else ""
    print(f"trial {row['trial']}/{n_trials} {row['status']}: {value} ({row['epochs']} epochs, {row['seconds']:.2f} s)"
          f"  {_describe_params(row, names)}{error}", file=sys.stderr, flush=True)


def print_summary(result, shown=5):
    """The best trials, the counts and the files (stdout)."""
    counts = ", ".join(f"{n} {status}" for status, n in result.counts().items())
    print(f"{len(result.rows)} trials ({counts}), ranked by {result.metric} ({result.goal}imize):")
    for row in result.rows[:shown]:
        value = "-" if row[result.metric] is None else f"{row[result.metric]:.4g}"
        print(f"  trial {row['trial']:>3}  {row['status']:<18} {result.metric} {value:<10} {row['epochs']:>4} epochs  "
              f"{_describe_params(row, result.parameters)}")
    if result.interrupted:
        print("interrupted (Ctrl-C): the trials that had not finished are marked cancelled")
    print(f"results: {', '.join(result.files.get(name) for name in ('results.csv', 'results.json'))}")
    if "best_model.npz" in result.files:
        print(f"best model: {result.files['best_model.npz']}")
    if "curves.png" in result.files:
        print(f"validation curves: {result.files['curves.png']}")


def exit_status(result):
    if result.interrupted:
        return 130
    return 0 if result.best is not None else 1
