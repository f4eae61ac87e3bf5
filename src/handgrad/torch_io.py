"""Exchange networks with PyTorch: ``to_torch(net)`` and ``from_torch(sequential)``.

PyTorch's ``nn.Linear`` computes ``y = x @ weight.T + bias`` with ``weight`` of shape (out, in);
handgrad's layer computes ``Z = X @ W + b`` with ``W`` of shape (in, out). So, at this boundary
and nowhere else::

    linear.weight = W.T        W = linear.weight.T        linear.bias = b

Each handgrad layer becomes ``Linear`` followed by its activation module (none for identity):

    relu -> ReLU()              leaky_relu(slope) -> LeakyReLU(negative_slope=slope)
    sigmoid -> Sigmoid()        tanh -> Tanh()            softmax -> Softmax(dim=1)
    softplus -> Softplus()      elu(alpha) -> ELU(alpha)  gelu -> GELU(approximate='tanh')
    silu -> SiLU()              identity -> (nothing; Identity() is accepted on the way back)

Softplus: handgrad computes ln(1 + e^z) exactly; PyTorch's ``Softplus(beta=1, threshold=20)``
returns z itself once z > 20, which differs by ln(1 + e^-20) < 2.1e-9. Only beta=1 is accepted.
GELU: handgrad implements the tanh form only, so ``GELU()`` (the exact erf form) is refused.

PyTorch is optional: ``pip install handgrad[torch]``. It is imported only when these functions run.
"""

import numpy as np

from .errors import ConfigError
from .network import MLP

_TORCH_DTYPES = {"float32": "float32", "float64": "float64"}


def _import_torch():
    try:
        import torch
    except ImportError:
        raise ImportError("handgrad.torch_io needs PyTorch: pip install handgrad[torch]") from None
    return torch


def _activation_module(activation, nn):
    """The torch.nn module for a handgrad activation, or None for identity."""
    name = activation.name
    if name == "identity":
        return None
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope=activation.slope)
    if name == "elu":
        return nn.ELU(alpha=activation.alpha)
    if name == "gelu":
        return nn.GELU(approximate="tanh")
    if name == "softmax":
        return nn.Softmax(dim=1)
    simple = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softplus": nn.Softplus, "silu": nn.SiLU}
    if name not in simple:
        raise ConfigError(f"activation '{name}' has no PyTorch counterpart here; use one of "
                          f"identity, relu, leaky_relu, sigmoid, tanh, softmax, softplus, elu, gelu, silu.")
    return simple[name]()


def to_torch(net):
    """A ``torch.nn.Sequential`` computing the same function as ``net`` (same dtype, weights copied).

    >>> seq = to_torch(net)                                         # doctest: +SKIP
    >>> seq(torch.as_tensor(X)).detach().numpy()  # == net.forward(X)  # doctest: +SKIP
    """
    if not isinstance(net, MLP):
        raise ConfigError(f"to_torch needs a handgrad MLP, got {type(net).__name__}.")
    torch = _import_torch()
    nn = torch.nn
    dtype = getattr(torch, _TORCH_DTYPES[net.dtype.name])
    modules = []
    for layer in net.layers:
        linear = nn.Linear(layer.n_in, layer.n_out, bias=layer.b is not None, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.W.T)))  # (out, in) = W^T
            if layer.b is not None:
                linear.bias.copy_(torch.from_numpy(layer.b.copy()))
        modules.append(linear)
        module = _activation_module(layer.activation, nn)
        if module is not None:
            modules.append(module)
    return nn.Sequential(*modules)


def _activation_spec(module, nn):
    """The handgrad activation for a torch.nn activation module, or a ConfigError naming the module."""
    if isinstance(module, nn.Identity):
        return "identity"
    if isinstance(module, nn.ReLU):
        return "relu"
    if isinstance(module, nn.LeakyReLU):
        slope = float(module.negative_slope)
        if not 0.0 <= slope <= 1.0:
            raise ConfigError(f"LeakyReLU(negative_slope={slope}) is not supported: handgrad needs a slope in [0, 1].")
        return {"name": "leaky_relu", "slope": slope}
    if isinstance(module, nn.Sigmoid):
        return "sigmoid"
    if isinstance(module, nn.Tanh):
        return "tanh"
    if isinstance(module, nn.Softmax):
        if module.dim not in (1, -1):
            raise ConfigError(f"Softmax(dim={module.dim}) is not supported: use Softmax(dim=1) (over the features).")
        return "softmax"
    if isinstance(module, nn.Softplus):
        if float(module.beta) != 1.0:
            raise ConfigError(f"Softplus(beta={module.beta}) is not supported: handgrad's softplus has beta=1.")
        return "softplus"
    if isinstance(module, nn.ELU):
        return {"name": "elu", "alpha": float(module.alpha)}
    if isinstance(module, nn.GELU):
        if module.approximate != "tanh":
            raise ConfigError("GELU() (the exact erf form) is not supported: handgrad implements "
                              "GELU(approximate='tanh'); replace the module with that one.")
        return "gelu"
    if isinstance(module, nn.SiLU):
        return "silu"
    raise ConfigError(
        f"unsupported module {type(module).__name__} ({module!r}); from_torch reads a Sequential of Linear layers, "
        "each followed by at most one of ReLU, LeakyReLU, Sigmoid, Tanh, Softmax(dim=1), Softplus, ELU, "
        "GELU(approximate='tanh'), SiLU or Identity."
    )


def from_torch(sequential, loss="auto", *, dtype=None):
    """A handgrad MLP from a ``torch.nn.Sequential`` of Linear layers and activation modules, weights copied.

    Each Linear may be followed by one activation module (none means identity). ``loss`` is as in
    :class:`handgrad.MLP` ('auto' picks cross_entropy after softmax, binary_cross_entropy after sigmoid).
    ``dtype`` defaults to the Linear weights' dtype (float32 or float64).
    """
    torch = _import_torch()
    nn = torch.nn
    if not isinstance(sequential, nn.Sequential):
        raise ConfigError(f"from_torch needs a torch.nn.Sequential, got {type(sequential).__name__}.")
    linears, activations = [], []
    for index, module in enumerate(sequential):
        if isinstance(module, nn.Linear):
            linears.append(module)
            activations.append("identity")
            continue
        spec = _activation_spec(module, nn)
        if not linears:
            raise ConfigError(f"module {index} ({type(module).__name__}) comes before any Linear layer; a handgrad "
                              "network starts with a Linear layer.")
        if spec == "identity":
            continue
        if activations[-1] != "identity":
            raise ConfigError(f"module {index} ({type(module).__name__}) is a second activation after Linear layer "
                              f"{len(linears)}; each layer has one activation.")
        activations[-1] = spec
    if not linears:
        raise ConfigError("the Sequential has no Linear layer.")
    with_bias = {linear.bias is not None for linear in linears}
    if len(with_bias) > 1:
        raise ConfigError("some Linear layers have a bias and some do not; a handgrad MLP has biases in every "
                          "layer or in none (bias=False).")
    for k in range(1, len(linears)):
        if linears[k].in_features != linears[k - 1].out_features:
            raise ConfigError(f"Linear layer {k + 1} takes {linears[k].in_features} inputs but layer {k} gives "
                              f"{linears[k - 1].out_features}.")
    if dtype is None:
        dtype = str(linears[0].weight.dtype).replace("torch.", "")
        if dtype not in _TORCH_DTYPES:
            raise ConfigError(f"Linear weights of dtype {dtype} are not supported; pass dtype='float32' or "
                              "'float64' (or convert the model with .float() / .double()).")
    layers = [(linear.out_features, activation) for linear, activation in zip(linears, activations)]
    net = MLP(linears[0].in_features, layers, loss=loss, bias=with_bias.pop(), dtype=dtype)
    weights = []
    for linear in linears:
        weights.append(linear.weight.detach().cpu().numpy().T)  # W = weight^T, (in, out)
        if linear.bias is not None:
            weights.append(linear.bias.detach().cpu().numpy())
    return net.set_weights(weights)
