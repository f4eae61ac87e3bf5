"""`handgrad curvature`: the sharpest directions of a saved model's training objective on data.

    handgrad curvature model.npz --data moons
    handgrad curvature model.npz --mnist ../shared/data/mnist-t10k --limit 1000 --k 3 --method power

It prints the top eigenvalue(s) of the Hessian of the objective the trainer differentiates (the
model's loss and its l2/l1 terms, dropout off) and the learning-rate bound 2/lambda_1: plain gradient
descent near a minimum diverges with a larger step. The data flags are those of `handgrad evaluate`;
features are standardized as the model's file says. The math lives in handgrad.curvature; this module
only parses and calls it. cli.py registers it with its own data helpers (passed in, so that this module
does not import cli.py, which imports it).
"""

import json
import sys

from .cli_args import seed_flag
from .curvature import METHODS
from .io import json_safe


def register(subparsers, add_data_arguments, load_data, features_for):
    """Add the `curvature` subcommand; ``load_data(args)`` and ``features_for(net, X, where)`` come from cli.py."""
    parser = subparsers.add_parser(
        "curvature", help="top Hessian eigenvalues of a saved model on data, and the learning-rate bound 2/lambda",
        description="The largest eigenvalues of the Hessian of a saved model's training objective on the data, "
                    "by Hessian-vector products (Pearlmutter's R-operator), and the learning-rate bound 2/lambda_1 "
                    "beyond which gradient descent diverges near a minimum.")
    parser.add_argument("model", help="model file written by 'handgrad train --out' or net.save()")
    add_data_arguments(parser)
    parser.add_argument("--seed", type=seed_flag,
                        help="seed of a generated --data set and of the start vector (default 0)")
    parser.add_argument("--k", type=int, default=1, help="how many of the largest eigenvalues (default 1)")
    parser.add_argument("--method", choices=METHODS, default="lanczos", help="lanczos (default) or power iteration")
    parser.add_argument("--tol", type=float, help="relative residual to stop at (default 1e-6)")
    parser.add_argument("--max-iter", type=int, help="most Hessian-vector products (per eigenvalue for power)")
    parser.add_argument("--batch-size", type=int, help="rows per chunk of each product (bounds memory)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=lambda args: cmd_curvature(args, load_data, features_for))
    return parser


def cmd_curvature(args, load_data, features_for):
    from .curvature import sharpness
    from .network import load

    saved = load(args.model)
    X, y, description = load_data(args)
    source = description.get("name") or description.get("path") or description["source"]
    X = features_for(saved, X, f"the data ({source})")
    net = saved.astype("float64")  # float32 rounding would blur the eigenvalues
    result = sharpness(net, X, y, args.k, args.method, tol=args.tol, max_iter=args.max_iter,
                       seed=0 if args.seed is None else args.seed, batch_size=args.batch_size, warn=False)
    rate = (saved.metadata.get("training") or {}).get("learning_rate")
    if args.json:
        report = {"eigenvalues": result.eigenvalues.tolist(), "learning_rate_bound": result.learning_rate_bound,
                  "residuals": result.residuals.tolist(), "hessian_vector_products": result.iterations,
                  "converged": result.converged, "method": result.method, "samples": int(len(X)),
                  "trained_learning_rate": rate}
        # strict JSON: no bound (lambda_1 <= 0, 2/lambda_1 = inf) is null, not the non-standard Infinity
        print(json.dumps(json_safe(report), indent=1, allow_nan=False))
    else:
        print(f"{args.model} on {len(X)} samples of {source}: objective {net.loss(X, y):.6g} "
              f"({net.loss_fn.name}{f', l2={net.l2:g}' if net.l2 else ''}{f', l1={net.l1:g}' if net.l1 else ''})")
        print(result)
        if isinstance(rate, (int, float)) and rate > 0:
            print(f"trained with learning rate eta = {rate:g}: eta * lambda_1 / 2 = {rate * result.sharpness / 2:.3g} "
                  "(full-batch gradient descent settles near a minimum only below 1)")
    if not result.converged:
        print(f"handgrad: note: not converged; raise --max-iter (used {result.iterations} products) or --tol.",
              file=sys.stderr)
    return 0
