"""ONNX export: ``to_onnx(net, path)`` writes a model that onnxruntime (or any ONNX consumer) runs.

The graph is the forward pass written with standard operators, one block per layer k:

    Z_k = MatMul(H_{k-1}, W_k)  [+ Add(., b_k)]        W_k stored (n_in, n_out), as in handgrad
    [Zhat_k = BatchNormalization(Z_k, gamma_k, beta_k, running_mean_k, running_var_k)   batch norm, inference
     or     = LayerNormalization(Z_k, gamma_k, beta_k, axis=-1)   (opset >= 17; composed from ReduceMean,
                                                                   Sub, Mul, Sqrt, Div below 17)]
    H_k = f_k(Z_k or Zhat_k)

    relu -> Relu   leaky_relu -> LeakyRelu(alpha=slope)   sigmoid -> Sigmoid   tanh -> Tanh
    softmax -> Softmax(axis=1) (in any layer)   softplus -> Softplus     elu -> Elu(alpha)    identity -> nothing
    (float64 nets: softplus as Relu(z) + Log(1 + Exp(-Abs(z))) and elu as Relu(z) + alpha (Exp(-Relu(-z)) - 1),
    because onnxruntime has float32 kernels only for Softplus and Elu)
    silu -> z * Sigmoid(z)
    gelu (tanh form) -> 0.5 z (1 + Tanh(c (z + k z^3))), c = sqrt(2/pi), k = 0.044715, from Mul/Add/Tanh
                        (ONNX's own Gelu(approximate='tanh') needs opset 20; composing it works with any opset)

The input "X" has shape (N, n_inputs) with a symbolic batch dimension N; the output "Y" is the network
output A_L (for classifiers: the probabilities, what ``net.predict_proba`` returns). Tensors are in the
network's dtype (float32 -> FLOAT, float64 -> DOUBLE). The file is checked with
``onnx.checker.check_model`` and written atomically. Needs ``pip install handgrad[onnx]``.
"""

import math
import os

import numpy as np

from .errors import ConfigError

DEFAULT_OPSET = 17  # Softmax over one axis exists from 13; 17 is read by every onnxruntime since 1.11
MIN_OPSET = 13


def _import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install handgrad[onnx]") from None
    return onnx, helper, numpy_helper


class _Graph:
    """Collects nodes and initializers, and names intermediate tensors after the layer they belong to."""

    def __init__(self, helper, numpy_helper, dtype):
        self.helper, self.numpy_helper, self.dtype = helper, numpy_helper, dtype
        self.nodes, self.initializers = [], []

    def constant(self, name, value):
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value, dtype=self.dtype), name=name))
        return name

    def node(self, op, inputs, output, **attributes):
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=f"{output}_{op}", **attributes))
        return output


def _activation(graph, activation, Z, k):
    """Nodes computing f(Z) for layer k; returns the name of the output tensor."""
    name = activation.name
    out = f"H{k}"
    if name == "identity":
        return Z
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
    if name in simple:
        return graph.node(simple[name], [Z], out)
    if name == "leaky_relu":
        return graph.node("LeakyRelu", [Z], out, alpha=float(activation.slope))
    double = graph.dtype == np.float64  # onnxruntime has no float64 Softplus or Elu kernels: compose those
    if name == "softplus" and not double:
        return graph.node("Softplus", [Z], out)
    if name == "softplus":  # ln(1 + e^z) = max(z, 0) + ln(1 + e^-|z|), which never overflows
        e = graph.node("Exp", [graph.node("Neg", [graph.node("Abs", [Z], f"abs{k}")], f"negabs{k}")], f"exp{k}")
        log = graph.node("Log", [graph.node("Add", [graph.constant(f"one{k}", 1.0), e], f"onepe{k}")], f"log{k}")
        return graph.node("Add", [graph.node("Relu", [Z], f"relu{k}"), log], out)
    if name == "elu" and not double:
        return graph.node("Elu", [Z], out, alpha=float(activation.alpha))
    if name == "elu":  # max(z, 0) + alpha (e^min(z, 0) - 1), and min(z, 0) = -max(-z, 0)
        negative = graph.node("Neg", [graph.node("Relu", [graph.node("Neg", [Z], f"neg{k}")], f"reluneg{k}")],
                              f"min0{k}")
        em1 = graph.node("Sub", [graph.node("Exp", [negative], f"exp{k}"), graph.constant(f"one{k}", 1.0)], f"em1{k}")
        scaled = graph.node("Mul", [graph.constant(f"alpha{k}", activation.alpha), em1], f"alphaem1{k}")
        return graph.node("Add", [graph.node("Relu", [Z], f"relu{k}"), scaled], out)
    if name == "softmax":
        return graph.node("Softmax", [Z], out, axis=1)
    if name == "silu":  # z * sigmoid(z)
        s = graph.node("Sigmoid", [Z], f"sigmoid{k}")
        return graph.node("Mul", [Z, s], out)
    if name == "gelu":  # 0.5 z (1 + tanh(c (z + k z^3)))
        half, one = graph.constant(f"gelu{k}_half", 0.5), graph.constant(f"gelu{k}_one", 1.0)
        c, kk = graph.constant(f"gelu{k}_c", math.sqrt(2.0 / math.pi)), graph.constant(f"gelu{k}_k", 0.044715)
        z2 = graph.node("Mul", [Z, Z], f"gelu{k}_z2")
        z3 = graph.node("Mul", [z2, Z], f"gelu{k}_z3")
        inner = graph.node("Add", [Z, graph.node("Mul", [kk, z3], f"gelu{k}_kz3")], f"gelu{k}_inner")
        t = graph.node("Tanh", [graph.node("Mul", [c, inner], f"gelu{k}_u")], f"gelu{k}_tanh")
        gate = graph.node("Mul", [half, graph.node("Add", [one, t], f"gelu{k}_1pt")], f"gelu{k}_gate")
        return graph.node("Mul", [Z, gate], out)
    raise ConfigError(f"activation '{name}' cannot be exported to ONNX; supported: identity, relu, leaky_relu, "
                      "sigmoid, tanh, softmax, softplus, elu, gelu, silu.")


def _normalization(graph, norm, Z, k, opset):
    """Nodes computing a norm layer's Zhat = gamma * xhat + beta in inference mode; returns its tensor name."""
    gamma, beta = graph.constant(f"gamma{k}", norm.gamma), graph.constant(f"beta{k}", norm.beta)
    out = f"Zhat{k}"
    if norm.kind == "batch":  # with the running statistics, as predict
        mean = graph.constant(f"running_mean{k}", norm.running_mean)
        var = graph.constant(f"running_var{k}", norm.running_var)
        return graph.node("BatchNormalization", [Z, gamma, beta, mean, var], out, epsilon=float(norm.eps))
    if opset >= 17:
        return graph.node("LayerNormalization", [Z, gamma, beta], out, axis=-1, epsilon=float(norm.eps))
    # opsets 13-16 have no LayerNormalization: (Z - mean) / sqrt(var + eps) per row (ReduceMean's axes attribute)
    centered = graph.node("Sub", [Z, graph.node("ReduceMean", [Z], f"mean{k}", axes=[1], keepdims=1)], f"centered{k}")
    var = graph.node("ReduceMean", [graph.node("Mul", [centered, centered], f"sq{k}")], f"var{k}", axes=[1], keepdims=1)
    std = graph.node("Sqrt", [graph.node("Add", [var, graph.constant(f"eps{k}", norm.eps)], f"vareps{k}")], f"std{k}")
    xhat = graph.node("Div", [centered, std], f"xhat{k}")
    return graph.node("Add", [graph.node("Mul", [xhat, gamma], f"gxhat{k}"), beta], out)


def build_model(net, opset=DEFAULT_OPSET, input_name="X", output_name="Y"):
    """The ``onnx.ModelProto`` of ``net`` (checked with onnx.checker), without writing it."""
    onnx, helper, numpy_helper = _import_onnx()
    if not all(hasattr(net, name) for name in ("layers", "n_inputs", "n_outputs", "dtype")):
        raise ConfigError(f"to_onnx needs a handgrad MLP (layers, n_inputs, n_outputs, dtype), got "
                          f"{type(net).__name__}.")
    highest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= highest:
        raise ConfigError(f"opset must be an integer from {MIN_OPSET} to {highest} (this onnx package's newest), "
                          f"got {opset!r}.")
    for label, text in (("input_name", input_name), ("output_name", output_name)):
        if not isinstance(text, str) or not text:
            raise ConfigError(f"{label} must be a non-empty string, got {text!r}.")
    if input_name == output_name:
        raise ConfigError("input_name and output_name must differ.")
    elem_type = helper.np_dtype_to_tensor_dtype(net.dtype)
    graph = _Graph(helper, numpy_helper, net.dtype)
    H = input_name
    for k, layer in enumerate(net.layers, 1):
        Z = graph.node("MatMul", [H, graph.constant(f"W{k}", layer.W)], f"XW{k}")
        if layer.b is not None:
            Z = graph.node("Add", [Z, graph.constant(f"b{k}", layer.b)], f"Z{k}")
        if getattr(layer, "norm", None) is not None:
            Z = _normalization(graph, layer.norm, Z, k, int(opset))
        H = _activation(graph, layer.activation, Z, k)
    graph.nodes.append(helper.make_node("Identity", [H], [output_name], name="output"))
    inputs = [helper.make_tensor_value_info(input_name, elem_type, ["N", net.n_inputs])]
    outputs = [helper.make_tensor_value_info(output_name, elem_type, ["N", net.n_outputs])]
    body = helper.make_graph(graph.nodes, "handgrad_mlp", inputs, outputs, initializer=graph.initializers,
                             doc_string=repr(net))
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", int(opset))], producer_name="handgrad")
    model.ir_version = min(model.ir_version, _ir_version_for(onnx, int(opset)))
    onnx.checker.check_model(model, full_check=True)
    return model


def _ir_version_for(onnx, opset):
    """The IR version that goes with an opset (so older runtimes accept the file), else the library's."""
    for entry in onnx.helper.VERSION_TABLE:  # (release, ir_version, ai.onnx opset, ml opset[, training])
        if entry[2] == opset:
            return entry[1]
    return onnx.IR_VERSION


def to_onnx(net, path, opset=DEFAULT_OPSET, input_name="X", output_name="Y"):
    """Write ``net`` as an ONNX model to ``path`` (atomically); returns the path.

    >>> net.to_onnx("model.onnx")                                    # doctest: +SKIP
    >>> import onnxruntime as ort                                    # doctest: +SKIP
    >>> ort.InferenceSession("model.onnx").run(None, {"X": X})[0]    # == net.forward(X)  # doctest: +SKIP
    """
    from .io import atomic_write_bytes

    model = build_model(net, opset=opset, input_name=input_name, output_name=output_name)
    path = os.fspath(path)
    atomic_write_bytes(path, model.SerializeToString())
    return path
