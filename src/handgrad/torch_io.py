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
    exp -> handgrad.torch_io.Exp()   (PyTorch has no exp module: a two-line one, y = torch.exp(x))

``from_torch`` reads exp back from ``handgrad.torch_io.Exp`` only: a user's own module that may compute
anything cannot be recognized safely by its name or class name, so any other module is refused by name.
``Exp`` is created on first use (``from handgrad.torch_io import Exp``), so importing this module needs no
torch; it pickles with ``torch.save`` like PyTorch's own modules.

A layer with a normalization becomes ``Linear(bias=False)``, then ``BatchNorm1d`` or ``LayerNorm`` (its
``weight`` is gamma, its ``bias`` beta; BatchNorm1d's ``running_mean`` and ``running_var`` copied), then the
activation. Both take eps = 1e-5 and BatchNorm1d momentum = 0.1, PyTorch's defaults and handgrad's; other
values are refused on the way back. A PyTorch ``Linear`` with a bias before ``BatchNorm1d`` is read exactly:
batch statistics subtract the bias, and in eval mode ``(z + b - running_mean)`` is ``z - (running_mean - b)``,
so the bias is folded into the running mean. A bias before ``LayerNorm`` cannot be folded and is refused.

Dropout: handgrad's ``Dropout(p)`` after a hidden layer (in ``net.sequence``) becomes ``nn.Dropout(p)`` after
that layer's activation, and ``from_torch`` reads it back as the layer's rate in ``dropout``. Both are inverted
dropout (docs/derivations.md, "Dropout"): in training a unit is dropped with probability p and a kept one is
scaled by 1/(1 - p); in eval mode (``seq.eval()``) and in handgrad's predict, dropout is the identity. The
masks come from different random streams, so training-mode outputs agree in distribution, not bit for bit.
``nn.Dropout`` must follow a hidden layer's activation (Linear -> [norm] -> [activation] -> Dropout -> Linear):
dropout on the inputs, after the output layer, twice in a row or before an activation is refused.

Softplus: handgrad computes ln(1 + e^z) exactly; PyTorch's ``Softplus(beta=1, threshold=20)``
returns z itself once z > 20, which differs by ln(1 + e^-20) < 2.1e-9. Only beta=1 is accepted.
GELU: handgrad implements the tanh form only, so ``GELU()`` (the exact erf form) is refused.

PyTorch is optional: ``pip install handgrad[torch]``. It is imported only when these functions run.
"""

import numpy as np

from .errors import ConfigError
from .layers import Dropout
from .network import MLP

_TORCH_DTYPES = {"float32": "float32", "float64": "float64"}


def _import_torch():
    try:
        import torch
    except ImportError:
        raise ImportError("handgrad.torch_io needs PyTorch: pip install handgrad[torch]") from None
    return torch


_EXP_CLASS = []


def _exp_class():
    """The ``torch.nn.Module`` computing y = e^x element by element (made once, when first needed)."""
    if not _EXP_CLASS:
        nn = _import_torch().nn

        class Exp(nn.Module):
            """y = e^x, element by element: handgrad's 'exp' activation (the output of a Poisson regression)."""

            def forward(self, x):
                return x.exp()

        Exp.__module__, Exp.__qualname__ = __name__, "Exp"  # pickles as handgrad.torch_io.Exp
        _EXP_CLASS.append(Exp)
    return _EXP_CLASS[0]


def __getattr__(name):  # ``from handgrad.torch_io import Exp`` creates the class on first use (PEP 562)
    if name == "Exp":
        return _exp_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    if name == "exp":
        return _exp_class()()
    simple = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softplus": nn.Softplus, "silu": nn.SiLU}
    if name not in simple:
        raise ConfigError(f"activation '{name}' has no PyTorch counterpart here; use one of "
                          f"identity, relu, leaky_relu, sigmoid, tanh, softmax, softplus, elu, gelu, silu, exp.")
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
    for layer in net.sequence:  # Dense and Dropout layers, in the order forward runs them
        if isinstance(layer, Dropout):
            modules.append(nn.Dropout(p=layer.rate))
            continue
        linear = nn.Linear(layer.n_in, layer.n_out, bias=layer.b is not None, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.W.T)))  # (out, in) = W^T
            if layer.b is not None:
                linear.bias.copy_(torch.from_numpy(layer.b.copy()))
        modules.append(linear)
        if layer.norm is not None:
            modules.append(_norm_module(layer.norm, nn, dtype, torch))
        module = _activation_module(layer.activation, nn)
        if module is not None:
            modules.append(module)
    return nn.Sequential(*modules)


def _norm_module(norm, nn, dtype, torch):
    """BatchNorm1d (running statistics included) or LayerNorm with the norm's gamma and beta."""
    if norm.kind == "batch":
        module = nn.BatchNorm1d(norm.n_features, eps=norm.eps, momentum=norm.momentum, dtype=dtype)
    else:
        module = nn.LayerNorm(norm.n_features, eps=norm.eps, dtype=dtype)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(norm.gamma.copy()))
        module.bias.copy_(torch.from_numpy(norm.beta.copy()))
        if norm.kind == "batch":
            module.running_mean.copy_(torch.from_numpy(norm.running_mean.copy()))
            module.running_var.copy_(torch.from_numpy(norm.running_var.copy()))
    return module


def _norm_kind(module, index, linear, nn):
    """'batch' or 'layer' for a BatchNorm1d / LayerNorm module after ``linear``, or None for anything else;
    a ConfigError for a norm handgrad cannot represent."""
    if isinstance(module, nn.BatchNorm1d):
        if not module.affine or not module.track_running_stats or module.momentum is None:
            raise ConfigError(f"module {index} ({module!r}): handgrad's batch norm has gamma and beta (affine=True) "
                              "and running statistics with a momentum (track_running_stats=True, momentum a number).")
        kind = "batch"
    elif isinstance(module, nn.LayerNorm):
        if tuple(module.normalized_shape) != (linear.out_features,) or not module.elementwise_affine \
                or module.bias is None:
            raise ConfigError(f"module {index} ({module!r}): handgrad's layer norm normalizes the "
                              f"{linear.out_features} features of the Linear before it, with gamma and beta "
                              "(elementwise_affine=True, bias=True).")
        if linear.bias is not None:
            raise ConfigError(f"module {index}: the Linear before LayerNorm has a bias, which layer norm does not "
                              "cancel; handgrad's normalized layer has none (its beta replaces it). Use "
                              "Linear(bias=False).")
        kind = "layer"
    else:
        return None
    if kind == "batch" and module.num_features != linear.out_features:
        raise ConfigError(f"module {index} ({module!r}) has {module.num_features} features; the Linear before "
                          f"it gives {linear.out_features}.")
    default_momentum = kind == "layer" or float(module.momentum) == 0.1
    if float(module.eps) != 1e-5 or not default_momentum:
        raise ConfigError(f"module {index} ({module!r}): handgrad's norms use eps=1e-5 and momentum=0.1 "
                          "(PyTorch's defaults); rebuild the module with those.")
    return kind


def _norm_arrays(module, linear):
    """gamma, beta (and the running statistics, a Linear bias folded into the mean) of a norm module."""
    arrays = [module.weight.detach().cpu().numpy(), module.bias.detach().cpu().numpy()]
    if getattr(module, "running_mean", None) is not None:  # BatchNorm1d
        mean = module.running_mean.detach().cpu().numpy().copy()
        if linear.bias is not None:
            mean -= linear.bias.detach().cpu().numpy()  # BN(z + b) = BN(z) with running mean m - b
        arrays += [mean, module.running_var.detach().cpu().numpy()]
    return arrays


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
    if isinstance(module, _exp_class()):
        return "exp"
    raise ConfigError(
        f"unsupported module {type(module).__name__} ({module!r}); from_torch reads a Sequential of Linear layers, "
        "each followed by an optional BatchNorm1d or LayerNorm, at most one of ReLU, LeakyReLU, Sigmoid, Tanh, "
        "Softmax(dim=1), Softplus, ELU, GELU(approximate='tanh'), SiLU, handgrad.torch_io.Exp or Identity, and "
        "(hidden layers) an "
        "optional Dropout."
    )


def _dropout_rate(module, index, linears, rates):
    """The rate p of an ``nn.Dropout`` after the last Linear read so far, or a ConfigError saying where handgrad's
    dropout goes (after a hidden layer's activation, once)."""
    if not linears:
        raise ConfigError(f"module {index} ({module!r}) comes before any Linear layer; handgrad has no dropout on "
                          "the inputs (its dropout follows a hidden layer). Remove it, or drop input columns yourself.")
    if rates[-1] is not None:
        raise ConfigError(f"module {index} ({module!r}) is a second Dropout after Linear layer {len(linears)}; "
                          "handgrad has one dropout rate per hidden layer. Merge them into one Dropout.")
    p = float(module.p)
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"module {index} ({module!r}): handgrad's dropout rate must be in [0, 1), got p={p}.")
    return p


def from_torch(sequential, loss="auto", *, dtype=None):
    """A handgrad MLP from a ``torch.nn.Sequential`` of Linear layers and activation modules, weights copied.

    Each Linear may be followed by one activation module (none means identity), and a hidden one by an
    ``nn.Dropout(p)`` after it (the network's ``dropout`` rate for that layer). ``loss`` is as in
    :class:`handgrad.MLP` ('auto' picks cross_entropy after softmax, binary_cross_entropy after sigmoid).
    ``dtype`` defaults to the Linear weights' dtype (float32 or float64).
    """
    torch = _import_torch()
    nn = torch.nn
    if not isinstance(sequential, nn.Sequential):
        raise ConfigError(f"from_torch needs a torch.nn.Sequential, got {type(sequential).__name__}.")
    linears, activations, norms, rates = [], [], [], []  # rates: None until a Dropout follows the layer
    for index, module in enumerate(sequential):
        if isinstance(module, nn.Linear):
            linears.append(module)
            activations.append("identity")
            norms.append(None)
            rates.append(None)
            continue
        if isinstance(module, nn.Dropout):
            rate = _dropout_rate(module, index, linears, rates)
            rates[-1] = rate
            continue
        if rates and rates[-1] is not None:
            raise ConfigError(f"module {index} ({type(module).__name__}) comes after the Dropout of Linear layer "
                              f"{len(linears)}; handgrad's dropout follows the layer's activation: Linear -> "
                              "[BatchNorm1d/LayerNorm] -> [activation] -> Dropout -> Linear.")
        kind = _norm_kind(module, index, linears[-1], nn) if linears else None
        if kind is not None:
            if norms[-1] is not None or activations[-1] != "identity":
                raise ConfigError(f"module {index} ({type(module).__name__}) must come right after a Linear layer, "
                                  "before its activation: Linear -> BatchNorm1d/LayerNorm -> activation.")
            norms[-1] = module
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
    if rates[-1] is not None:
        raise ConfigError("the Sequential ends with a Dropout after its last Linear layer; handgrad's dropout follows "
                          "hidden layers only (the outputs go to the loss as they are). Remove that Dropout.")
    with_bias = {linear.bias is not None for linear, norm in zip(linears, norms) if norm is None} or {True}
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
    layers = [(linear.out_features, activation) if norm is None else
              {"size": linear.out_features, "activation": activation,
               "norm": "batch" if isinstance(norm, nn.BatchNorm1d) else "layer"}
              for linear, activation, norm in zip(linears, activations, norms)]
    dropout = [rate or 0.0 for rate in rates[:-1]]
    net = MLP(linears[0].in_features, layers, loss=loss, bias=with_bias.pop(), dtype=dtype, dropout=dropout)
    weights, statistics = [], []
    for linear, norm in zip(linears, norms):
        weights.append(linear.weight.detach().cpu().numpy().T)  # W = weight^T, (in, out)
        if norm is not None:
            gamma_beta_stats = _norm_arrays(norm, linear)
            weights += gamma_beta_stats[:2]
            statistics += gamma_beta_stats[2:]
        elif linear.bias is not None:
            weights.append(linear.bias.detach().cpu().numpy())
    net.set_running_statistics({name: value for (name, _), value in zip(net.running_statistics(), statistics)})
    return net.set_weights(weights)
