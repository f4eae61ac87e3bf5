"""The teaching subcommands of `handgrad`: explain, trace, graph, check-student.

    handgrad explain --layers 2:relu,2:relu,1:sigmoid --loss half_squared_error --no-bias
    handgrad explain --model model.npz --format latex
    handgrad trace --layers 2:relu,2:relu,1:sigmoid --loss half_squared_error --no-bias --batch 4 --weight 1,0,0
    handgrad graph --layers 4:tanh,3:softmax --inputs 3 --l2 0.01 --out graph.svg     (.png, .svg or .dot)
    handgrad check-student my_backprop.py --layers 3:tanh,2:sigmoid --inputs 3

``check-student`` loads FILE.py, which must define
``backprop(weights, biases, activations, X, T, loss) -> [(dW, db), ...]`` (with normalized layers
also ``norms=...``, and ``(dW, None, dgamma, dbeta)`` for such a layer; see handgrad.student), runs it
on a small generated batch and prints the report: exit status 0 when every gradient is right, 1 when
one is wrong, 2 on bad input.
These commands only parse and call the library; the math lives in explain.py,
graph.py and student.py.
"""

import importlib.util
import os

from .cli_args import add_architecture_arguments, network_from_args
from .errors import ConfigError


def _network(args):
    """The network of the flags, or of --model FILE (seed 0 unless --seed is given, so output is reproducible)."""
    if getattr(args, "model", None):
        from .network import load

        return load(args.model)
    if args.seed is None:
        args.seed = 0
    return network_from_args(args)


def _add_common(parser):
    parser.add_argument("--model", metavar="FILE", help="use this saved model instead of the network flags")
    add_architecture_arguments(parser)


def _positive_int(flag, value):
    if value is None or value < 1:
        raise ConfigError(f"{flag} must be a positive integer, got {value}.")
    return value


def cmd_explain(args):
    from .explain import explain

    net = _network(args)
    batch = None if args.batch is None else _positive_int("--batch", args.batch)
    print(explain(net, format=args.format, batch_size=batch), end="")
    return 0


def _parse_weight(text):
    try:
        k, i, j = (int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--weight must look like 1,0,0 (layer from 1, then row i and column j from 0); "
                          f"got '{text}'.") from None
    return k, i, j


def cmd_trace(args):
    from .explain import trace

    net = _network(args)
    result = trace(net, weight=_parse_weight(args.weight), batch_size=_positive_int("--batch", args.batch),
                   seed=args.seed if args.seed is not None else 0)
    print(result.render(precision=args.precision), end="")
    return 0


def cmd_graph(args):
    from .graph import save_graph

    net = _network(args)
    path = save_graph(net, args.out, batch_size=args.batch)
    print(f"wrote the computational graph of {net!r} to {path}")
    return 0


def load_student_function(path):
    """The ``backprop`` function defined in the Python file ``path``."""
    if not os.path.isfile(path):
        raise ConfigError(f"no such file: '{path}'.")
    if not path.endswith(".py"):
        raise ConfigError(f"'{path}' is not a Python file (.py).")
    spec = importlib.util.spec_from_file_location("handgrad_student_code", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the file itself is broken: bad input, one line
        raise ConfigError(f"'{path}' could not be run: {type(error).__name__}: {error}.") from None
    function = getattr(module, "backprop", None)
    if not callable(function):
        raise ConfigError(f"'{path}' must define backprop(weights, biases, activations, X, T, loss) returning "
                          "[(dW, db), ...].")
    return function


def cmd_check_student(args):
    import numpy as np

    from .explain import example_batch
    from .student import check_gradients

    function = load_student_function(args.file)
    if not getattr(args, "model", None) and not args.layers:
        args.layers = "3:tanh,2:sigmoid"  # tanh shows a derivative taken at A; sigmoid + squared error no closed form
        args.inputs = args.inputs or 3
        args.loss = args.loss or "half_squared_error"
    net = _network(args)
    X, T = example_batch(net, _positive_int("--batch", args.batch), args.seed if args.seed is not None else 0)
    report = check_gradients(function, net, np.asarray(X), T)
    print(f"checking {args.file} against handgrad on {net!r}, N = {X.shape[0]} samples")
    print(report)
    if report.error:
        return 1
    return 0 if report.ok else 1


def register(subparsers):
    """Add explain, trace, graph and check-student to the `handgrad` command's subparsers."""
    explain = subparsers.add_parser("explain", help="the forward and backward equations of a network, with shapes",
                                    description="Write out a network's forward and backward equations layer by "
                                                "layer in the code's notation, with every shape filled in.")
    _add_common(explain)
    explain.add_argument("--format", choices=("text", "markdown", "latex"), default="text")
    explain.add_argument("--batch", type=int, help="fill in the batch size N (default: N stays symbolic)")
    explain.set_defaults(func=cmd_explain)

    trace = subparsers.add_parser("trace", help="one forward and backward pass with every number",
                                  description="Run one forward and backward pass on a small generated batch and "
                                              "print every intermediate, and one weight's gradient both element by "
                                              "element (seed 000) and in matrix form.")
    _add_common(trace)
    trace.add_argument("--batch", type=int, default=4, help="samples in the generated batch (default 4)")
    trace.add_argument("--weight", default="1,0,0", metavar="K,I,J",
                       help="the weight W_K[I,J] to follow (layer K from 1, I and J from 0; default 1,0,0)")
    trace.add_argument("--precision", type=int, default=4, help="decimals shown (default 4)")
    trace.set_defaults(func=cmd_trace)

    graph = subparsers.add_parser("graph", help="draw the computational graph (PNG, SVG or Graphviz DOT)",
                                  description="Draw the network's computational graph: variables in boxes, "
                                              "operators in circles, shapes on the edges.")
    _add_common(graph)
    graph.add_argument("--out", required=True, metavar="FILE", help="graph.png, graph.svg or graph.dot")
    graph.add_argument("--batch", type=int, help="fill in the batch size N on the edges")
    graph.set_defaults(func=cmd_graph)

    check = subparsers.add_parser("check-student", help="check your own backprop function against handgrad",
                                  description="Load FILE.py defining backprop(weights, biases, activations, X, T, "
                                              "loss) -> [(dW, db), ...] and compare its gradients with handgrad's. "
                                              "With normalized layers (--layers 3:tanh:batchnorm,...) it is also "
                                              "called with norms=[None or {kind, gamma, beta, eps}, ...] and returns "
                                              "(dW, None, dgamma, dbeta) for a normalized layer. "
                                              "Exit status 0: right; 1: wrong; 2: bad input.")
    check.add_argument("file", metavar="FILE.py")
    _add_common(check)
    check.add_argument("--batch", type=int, default=5, help="samples in the generated batch (default 5)")
    check.set_defaults(func=cmd_check_student)
    return subparsers
