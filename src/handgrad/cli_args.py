"""The flags both halves of the `handgrad` command share (cli.py and cli_teach.py): the network flags.

Only parsing and checking here; the network itself is built by :class:`handgrad.MLP`.
"""

import numpy as np

from .errors import ConfigError, check_non_negative

SEED_000_LAYERS = "2:relu,2:relu,1:sigmoid"


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
                       help="layers as size:activation, comma-separated, e.g. 16:relu,16:relu,1:sigmoid "
                            "(the input size comes from the data); size:activation:batchnorm or :layernorm "
                            "normalizes a hidden layer")
    group.add_argument("--inputs", type=int, metavar="N", help="number of inputs when there is no data (default 2)")
    group.add_argument("--loss", help="half_squared_error, mse, binary_cross_entropy, cross_entropy "
                                      "(default: the natural loss of the output activation)")
    group.add_argument("--no-bias", action="store_const", const=True, dest="no_bias", help="layers without biases")
    group.add_argument("--l2", type=float, help="L2 penalty (l2/2) sum ||W||^2")
    group.add_argument("--l1", type=float, help="L1 penalty l1 sum |W|")
    group.add_argument("--dropout", help="dropout rate after each hidden layer, or one per hidden layer: 0.1,0.2")
    group.add_argument("--dtype", choices=("float64", "float32"), help="parameter dtype (default float64)")
    group.add_argument("--init", help="auto, he, glorot or lecun (default auto)")
    group.add_argument("--seed", type=int, help="seed for initialization, data and shuffling (default 0)")
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
    if isinstance(n_inputs, bool) or not isinstance(n_inputs, (int, np.integer)) or n_inputs < 1:
        raise ConfigError(f"--inputs must be a positive integer, got {n_inputs!r}.")
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
