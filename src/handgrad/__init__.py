"""handgrad: multilayer perceptrons whose backpropagation is derived and written by hand.

Public API: MLP, gradcheck, load, the activations and losses, and the error types.
Every formula is derived in docs/derivations.md.
"""

from . import activations, losses
from .activations import Activation, get_activation
from .errors import ConfigError, DataError, HandgradError, ModelFileError, TrainingError
from .gradcheck import gradcheck
from .losses import Loss, get_loss
from .network import MLP

__version__ = "0.1.0"


def load(path):
    """Read a network from a model file written by ``net.save`` (no pickle; checksummed)."""
    from .io import load as _load

    return _load(path)


__all__ = [
    "MLP", "gradcheck", "load", "Activation", "Loss", "get_activation", "get_loss", "activations", "losses",
    "HandgradError", "ConfigError", "DataError", "ModelFileError", "TrainingError", "__version__",
]
