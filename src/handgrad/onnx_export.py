"""ONNX export: ``to_onnx(net, path)`` writes a model that onnxruntime (or any ONNX consumer) runs.

The graph is the forward pass written with standard operators, one block per layer k:

    Z_k = MatMul(H_{k-1}, W_k)  [+ Add(., b_k)]        W_k stored (n_in, n_out), as in handgrad
    [Zhat_k = BatchNormalization(Z_k, gamma_k, beta_k, running_mean_k, running_var_k)   batch norm, inference
     or     = LayerNormalization(Z_k, gamma_k, beta_k, axis=-1)   (opset >= 17; composed from ReduceMean,
                                                                   Sub, Mul, Sqrt, Div below 17)]
    H_k = f_k(Z_k or Zhat_k)

    relu -> Relu   leaky_relu -> LeakyRelu(alpha=slope)   sigmoid -> Sigmoid   tanh -> Tanh   exp -> Exp
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

The model carries what ``handgrad predict`` does around the network, so that onnxruntime on raw rows
answers as ``handgrad predict --proba`` does:

    input side    X' = Div(Sub(X, mean), scale)   the standardization stored in the model's metadata
                                                  (handgrad train; MNIST: mean 0, scale 255), when present
    output side   Y = Add(Mul(A_L, target_scale), target_mean)   a regressor trained on standardized targets
                                                  (handgrad train --standardize-targets; with "auto")
                  label = Gather(classes, ArgMax(Z_L, axis=1))          softmax
                  label = Gather(classes, Cast(Z_L >= 0))               sigmoid (A >= 1/2 exactly when z >= 0)
                  probabilities = A_L, or Concat(1 - A_L, A_L) for one sigmoid output
    metadata      metadata_props: handgrad_version, loss, output_activation, classes, outputs, preprocessing,
                  target_preprocessing (only for a model trained with --standardize-targets)
"""

import json
import math
import os

import numpy as np

from .errors import ConfigError, HandgradError

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

    def integers(self, name, value):
        """An int64 constant (class labels, axes)."""
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value, dtype=np.int64), name=name))
        return name

    def labels(self, name, classes):
        """The class labels as a constant: int64, STRING for string labels, BOOL for booleans. Returns (name,
        element type)."""
        if classes and isinstance(classes[0], (str, bool)):
            dtype = np.dtype(object if isinstance(classes[0], str) else bool)
            self.initializers.append(self.numpy_helper.from_array(np.array(classes, dtype=dtype), name=name))
            return name, self.helper.np_dtype_to_tensor_dtype(dtype)
        return self.integers(name, classes), self.helper.np_dtype_to_tensor_dtype(np.dtype(np.int64))

    def node(self, op, inputs, output, **attributes):
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=f"{output}_{op}", **attributes))
        return output


def _activation(graph, activation, Z, k):
    """Nodes computing f(Z) for layer k; returns the name of the output tensor."""
    name = activation.name
    out = f"H{k}"
    if name == "identity":
        return Z
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "exp": "Exp"}  # exp: e.g. the poisson output
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
                      "sigmoid, tanh, softmax, softplus, elu, gelu, silu, exp.")


def _standardizer(net, preprocessing):
    """(mean, scale) arrays of the input standardization to put in front of the graph, or None.

    "auto": the one stored in the model's metadata (``handgrad train`` stores it; MNIST's 1/255 is a
    standardization with mean 0 and scale 255); None or False: none; or a Standardizer or its dict."""
    from .datasets import Standardizer

    if preprocessing is None or preprocessing is False:
        return None
    if isinstance(preprocessing, str) and preprocessing == "auto":
        record = (getattr(net, "metadata", None) or {}).get("preprocessing")
        if not record:
            return None
        preprocessing = record
    try:
        standardizer = preprocessing if isinstance(preprocessing, Standardizer) else \
            Standardizer.from_dict(preprocessing)
    except (HandgradError, TypeError, KeyError, ValueError) as error:
        raise ConfigError(f"preprocessing must be 'auto', None, a Standardizer or its to_dict(); {error}") from None
    if standardizer.mean is None or standardizer.mean.size != net.n_inputs:
        raise ConfigError(f"the standardization covers {0 if standardizer.mean is None else standardizer.mean.size} "
                          f"features but the network has {net.n_inputs} inputs.")
    return standardizer.mean, standardizer.scale


def _target_standardizer(net, preprocessing):
    """(mean, scale) of the target standardization to undo after the output (stored by ``handgrad train
    --standardize-targets``), with preprocessing "auto" only; else None."""
    from .datasets import Standardizer

    if not (isinstance(preprocessing, str) and preprocessing == "auto"):
        return None
    record = (getattr(net, "metadata", None) or {}).get("target_preprocessing")
    if not record:
        return None
    try:
        targets = Standardizer.from_dict(record)
    except HandgradError as error:
        raise ConfigError(f"the model's stored target standardization: {error}") from None
    if targets.mean.size != net.n_outputs:
        raise ConfigError(f"the stored target standardization covers {targets.mean.size} outputs but the network "
                          f"has {net.n_outputs}; save the model again.")
    return targets.mean, targets.scale


def _output_nodes(graph, A, targets):
    """The output side of a regressor trained on standardized targets: Y = A * scale + mean, the original
    units ``handgrad predict`` gives (Mul then Add). A itself when there is no target standardization."""
    if targets is None:
        return A
    mean, scale = targets
    scaled = graph.node("Mul", [A, graph.constant("target_scale", scale)], "Y_scaled")
    return graph.node("Add", [scaled, graph.constant("target_mean", mean)], "Y_original_units")


def _input_nodes(graph, X, standardizer):
    """The input side: X' = (X - mean) / scale, the standardization ``handgrad predict`` applies. Kept as
    Sub and Div nodes rather than folded into W1 and b1: the graph then computes what predict computes,
    in the same order (folding rounds differently), the weights stay those of the model file, and a
    viewer such as Netron shows the preprocessing as a step of its own."""
    if standardizer is None:
        return X
    mean, scale = standardizer
    centered = graph.node("Sub", [X, graph.constant("input_mean", mean)], "X_centered")
    return graph.node("Div", [centered, graph.constant("input_scale", scale)], "X_standardized")


def _check_classes(net, classes):
    """The label of each class: integers (default 0..K-1), strings or booleans (e.g. a scikit-learn estimator's
    classes_). K sigmoid outputs (multi-label) label each output 0 or 1; scikit-learn's multi-label classes_,
    the column numbers 0..K-1, mean just that."""
    count = net.n_outputs if net.output_activation.name == "softmax" else 2
    if classes is None:
        return list(range(count))
    values = list(classes) if isinstance(classes, (list, tuple, np.ndarray)) else None
    if values is not None and net.output_activation.name == "sigmoid" and values == list(range(net.n_outputs)):
        return list(range(count))  # a multi-label estimator's classes_ (its columns): labels 0 and 1
    booleans = values is not None and all(isinstance(v, (bool, np.bool_)) for v in values)
    integers = values is not None and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                                          for v in values)
    strings = values is not None and all(isinstance(v, str) for v in values)
    if values is None or len(values) != count or not (integers or strings or booleans):
        raise ConfigError(f"classes must be a list of {count} labels, all integers or all strings (or all "
                          f"booleans; the label of each class), got {classes!r}.")
    convert = bool if booleans else int if integers else str
    return [convert(v) for v in values]


def _classifier_outputs(graph, net, logits, A, classes):
    """The output side of a classifier, as ``handgrad predict`` (with --proba) gives it: "label" and
    "probabilities". The label is decided from the logits Z_L, as net.predict does: ArgMax for softmax
    (argmax A = argmax Z), Z >= 0 for sigmoid (A >= 1/2 exactly when z >= 0), then looked up in the
    constant tensor of the classes (Gather). One sigmoid output gives the probabilities of both
    classes, (1 - p, p). Returns [(name, elem_type, shape)] of the outputs it wrote."""
    elem, int64 = (graph.helper.np_dtype_to_tensor_dtype(np.dtype(t)) for t in (graph.dtype, np.int64))
    labels, label_type = graph.labels("classes", classes)
    K = net.n_outputs
    if net.output_activation.name == "softmax":
        index = graph.node("ArgMax", [logits], "class_index", axis=1, keepdims=0)
        graph.node("Gather", [labels, index], "label", axis=0)
        graph.node("Identity", [A], "probabilities")
        return [("label", label_type, ["N"]), ("probabilities", elem, ["N", K])]
    positive = graph.node("GreaterOrEqual", [logits, graph.constant("zero", np.zeros(1))], "logit_nonnegative")
    index = graph.node("Cast", [positive], "class_index", to=int64)
    if K == 1:  # one binary classifier: labels (N,), probabilities (1 - p, p)
        index = graph.node("Squeeze", [index, graph.integers("axis1", [1])], "class_index_1d")
        complement = graph.node("Sub", [graph.constant("one", np.ones(1)), A], "probability_0")
        graph.node("Concat", [complement, A], "probabilities", axis=1)
        graph.node("Gather", [labels, index], "label", axis=0)
        return [("label", label_type, ["N"]), ("probabilities", elem, ["N", 2])]
    graph.node("Gather", [labels, index], "label", axis=0)  # K independent sigmoid outputs (multi-label)
    graph.node("Identity", [A], "probabilities")
    return [("label", label_type, ["N", K]), ("probabilities", elem, ["N", K])]


def _metadata(net, standardizer, classes, outputs, targets=None):
    """The model's metadata_props: what produced it, its loss, classes, preprocessing and outputs (JSON)."""
    from ._version import __version__

    record = {
        "producer": "handgrad", "handgrad_version": __version__, "loss": net.loss_fn.name,
        "output_activation": net.output_activation.name, "n_inputs": str(net.n_inputs),
        "outputs": json.dumps(outputs),
        "preprocessing": json.dumps(None if standardizer is None else
                                    {"kind": "standardize", "mean": standardizer[0].tolist(),
                                     "scale": standardizer[1].tolist(), "formula": "(X - mean) / scale"}),
    }
    if classes is not None:
        record["classes"] = json.dumps(classes)
    if targets is not None:
        record["target_preprocessing"] = json.dumps({"kind": "standardize", "mean": targets[0].tolist(),
                                                     "scale": targets[1].tolist(), "formula": "A * scale + mean"})
    return record


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


def build_model(net, opset=DEFAULT_OPSET, input_name="X", output_name="Y", preprocessing="auto", classes=None):
    """The ``onnx.ModelProto`` of ``net`` (checked with onnx.checker), without writing it.

    ``preprocessing``: "auto" puts the standardization stored in the model (by ``handgrad train``) in
    front of the graph, so the input is raw rows, and a stored target standardization (--standardize-targets)
    after it, so that "Y" is in the original target units; None leaves both out; or give a Standardizer
    (of the inputs; the outputs are then A_L as they are).
    ``classes``: a classifier's label for each class (integers, default 0..K-1, or strings: a scikit-learn
    estimator's ``classes_``).
    """
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
    standardizer = _standardizer(net, preprocessing)
    targets = _target_standardizer(net, preprocessing)
    classes = _check_classes(net, classes) if net.is_classifier else None
    for taken in ("label", "probabilities"):
        if classes is not None and taken in (input_name, output_name):
            raise ConfigError(f"'{taken}' names a classifier's own output; choose other input/output names.")
    H = _input_nodes(graph, input_name, standardizer)
    for k, layer in enumerate(net.layers, 1):
        Z = graph.node("MatMul", [H, graph.constant(f"W{k}", layer.W)], f"XW{k}")
        if layer.b is not None:
            Z = graph.node("Add", [Z, graph.constant(f"b{k}", layer.b)], f"Z{k}")
        if getattr(layer, "norm", None) is not None:
            Z = _normalization(graph, layer.norm, Z, k, int(opset))
        H = _activation(graph, layer.activation, Z, k)
    logits = Z  # Z_L, the last layer's pre-activation: a classifier's labels are decided from it
    graph.nodes.append(helper.make_node("Identity", [_output_nodes(graph, H, targets)], [output_name], name="output"))
    written = [(output_name, elem_type, ["N", net.n_outputs])]
    if classes is not None:
        written += _classifier_outputs(graph, net, logits, H, classes)
    inputs = [helper.make_tensor_value_info(input_name, elem_type, ["N", net.n_inputs])]
    outputs = [helper.make_tensor_value_info(name, kind, shape) for name, kind, shape in written]
    body = helper.make_graph(graph.nodes, "handgrad_mlp", inputs, outputs, initializer=graph.initializers,
                             doc_string=repr(net))
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", int(opset))], producer_name="handgrad")
    model.ir_version = min(model.ir_version, _ir_version_for(onnx, int(opset)))
    helper.set_model_props(model, _metadata(net, standardizer, classes, [name for name, _, _ in written], targets))
    onnx.checker.check_model(model, full_check=True)
    return model


def _ir_version_for(onnx, opset):
    """The IR version that goes with an opset (so older runtimes accept the file), else the library's."""
    for entry in onnx.helper.VERSION_TABLE:  # (release, ir_version, ai.onnx opset, ml opset[, training])
        if entry[2] == opset:
            return entry[1]
    return onnx.IR_VERSION


def to_onnx(net, path, opset=DEFAULT_OPSET, input_name="X", output_name="Y", preprocessing="auto", classes=None):
    """Write ``net`` as an ONNX model to ``path`` (atomically); returns the path.

    >>> net.to_onnx("model.onnx")                                    # doctest: +SKIP
    >>> import onnxruntime as ort                                    # doctest: +SKIP
    >>> ort.InferenceSession("model.onnx").run(None, {"X": X})[0]    # == net.forward(X)  # doctest: +SKIP
    """
    from .io import atomic_write_bytes

    model = build_model(net, opset=opset, input_name=input_name, output_name=output_name,
                        preprocessing=preprocessing, classes=classes)
    path = os.fspath(path)
    atomic_write_bytes(path, model.SerializeToString())
    return path
