"""handgrad: multilayer perceptrons whose backpropagation is derived and written by hand.

Public API: MLP, gradcheck, load, sharpness (curvature), sweep, the activations and losses, and the error types.
Every formula is derived in docs/derivations.md.
"""

from . import activations, callbacks, losses, optimizers, schedules
from ._version import __version__
from .activations import Activation, get_activation
from .curvature import SharpnessResult, sharpness
from .errors import ConfigError, DataError, HandgradError, ModelFileError, TrainingError
from .explain import explain, trace
from .gradcheck import gradcheck
from .losses import Loss, get_loss
from .network import MLP, load
from .training import History


def check_gradients(student_fn, net, X, T):
    """Run a user's own backprop function against handgrad's and report, per parameter, what is wrong."""
    from .student import check_gradients as _check

    return _check(student_fn, net, X, T)


def sweep(X, y, params, **options):
    """A hyperparameter sweep on Dask (grid or random search, successive halving); see handgrad.sweeps.sweep.
    Needs handgrad[dask]; Dask is imported only when a sweep runs."""
    from .sweeps import sweep as _sweep

    return _sweep(X, y, params, **options)


def check_activation(activation):
    """Verify a (user-defined) activation's derivative by finite differences."""
    from .student import check_activation as _check

    return _check(activation)


def check_loss(loss):
    """Verify a (user-defined) loss's gradient by finite differences."""
    from .student import check_loss as _check

    return _check(loss)


__all__ = [
    "MLP",
    "Activation",
    "ConfigError",
    "DataError",
    "HandgradError",
    "History",
    "Loss",
    "ModelFileError",
    "SharpnessResult",
    "TrainingError",
    "__version__",
    "activations",
    "callbacks",
    "check_activation",
    "check_gradients",
    "check_loss",
    "explain",
    "get_activation",
    "get_loss",
    "gradcheck",
    "load",
    "losses",
    "optimizers",
    "schedules",
    "sharpness",
    "sweep",
    "trace",
]
