"""Show the derivation: a network's equations with their shapes (:func:`explain`) and one
forward and backward pass with every number (:func:`trace`).

Notation is the code's (docs/derivations.md): batch-first, ``Z_k = A_{k-1} W_k + b_k``
with ``A_0 = X``, ``A_k = f_k(Z_k)``, and ``dV`` meaning dJ/dV (seed 000's v_bar).

    >>> import handgrad as hg
    >>> net = hg.MLP(2, [(2, "relu"), (2, "relu"), (1, "sigmoid")], loss="half_squared_error", bias=False, seed=0)
    >>> print(hg.explain(net))                                        # doctest: +SKIP
    >>> print(trace(net, weight=(1, 0, 0)))                           # doctest: +SKIP

The trace computes every intermediate with its own explicit forward and backward and
checks them against ``net.loss_and_grad`` before showing them, so its numbers are the
engine's numbers.
"""

from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError, HandgradError

FORMATS = ("text", "markdown", "latex")

# name: (f in text, f' in text, f in LaTeX, f' in LaTeX). Element-wise unless said otherwise.
_ACTIVATION_FORMULAS = {
    "identity": ("identity(z) = z", "identity'(z) = 1", r"f(z) = z", r"f'(z) = 1"),
    "relu": ("relu(z) = max(z, 0)", "relu'(z) = 1 if z > 0 else 0 (read from A: A > 0)",
             r"\mathrm{relu}(z) = \max(z, 0)", r"\mathrm{relu}'(z) = [z > 0]"),
    "leaky_relu": ("leaky_relu(z) = z if z > 0 else s z", "leaky_relu'(z) = 1 if z > 0 else s",
                   r"f(z) = \max(z, s z)", r"f'(z) = 1 \text{ if } z > 0 \text{ else } s"),
    "sigmoid": ("sigmoid(z) = 1 / (1 + e^-z)", "sigmoid'(z) = A (1 - A)",
                r"\sigma(z) = 1/(1 + e^{-z})", r"\sigma'(z) = A \odot (1 - A)"),
    "tanh": ("tanh(z)", "tanh'(z) = 1 - A^2", r"\tanh(z)", r"\tanh'(z) = 1 - A \odot A"),
    "softplus": ("softplus(z) = ln(1 + e^z)", "softplus'(z) = sigmoid(z) = 1 - e^-A",
                 r"\ln(1 + e^{z})", r"f'(z) = \sigma(z) = 1 - e^{-A}"),
    "elu": ("elu(z) = z if z > 0 else alpha (e^z - 1)", "elu'(z) = 1 if z > 0 else A + alpha",
            r"f(z) = z \text{ if } z > 0 \text{ else } \alpha(e^{z} - 1)",
            r"f'(z) = 1 \text{ if } z > 0 \text{ else } A + \alpha"),
    "gelu": ("gelu(z) = z/2 (1 + tanh(c (z + 0.044715 z^3)))", "gelu'(z) = (1 + tanh u)/2 + z/2 (1 - tanh^2 u) u'",
             r"f(z) = \tfrac{z}{2}(1 + \tanh u)", r"f'(z) = \tfrac{1 + \tanh u}{2} + \tfrac{z}{2}(1 - \tanh^2 u) u'"),
    "silu": ("silu(z) = z sigmoid(z)", "silu'(z) = s + z s (1 - s), s = sigmoid(z)",
             r"f(z) = z \sigma(z)", r"f'(z) = s + z s (1 - s)"),
    "softmax": ("softmax row by row: A[n,k] = e^Z[n,k] / sum_j e^Z[n,j]",
                "Jacobian of one row: da_k/dz_j = a_k (delta_kj - a_j)",
                r"A_{nk} = e^{Z_{nk}} / \sum_j e^{Z_{nj}}", r"\partial a_k / \partial z_j = a_k(\delta_{kj} - a_j)"),
}

# name: (J's data term in text, dJ/dA_L in text, the same in LaTeX). A is the output A_L.
_LOSS_FORMULAS = {
    "half_squared_error": ("(1/N) sum_n 1/2 ||A[n] - T[n]||^2", "(A - T) / N",
                           r"\frac{1}{N}\sum_n \tfrac12 \lVert A_n - T_n \rVert^2", r"(A - T)/N"),
    "mse": ("(1/N) sum_n ||A[n] - T[n]||^2", "2 (A - T) / N",
            r"\frac{1}{N}\sum_n \lVert A_n - T_n \rVert^2", r"2(A - T)/N"),
    "binary_cross_entropy": ("-(1/N) sum_n sum_k [T ln A + (1 - T) ln(1 - A)]", "(A - T) / (A (1 - A)) / N",
                             r"-\frac{1}{N}\sum_{n,k} [T \ln A + (1 - T)\ln(1 - A)]",
                             r"\frac{A - T}{A \odot (1 - A)} / N"),
    "cross_entropy": ("-(1/N) sum_n sum_k T ln A", "-T / (A N)",
                      r"-\frac{1}{N}\sum_{n,k} T \ln A", r"-T \oslash (N A)"),
}

_CLOSED_FORM_REASONS = {
    "sigmoid": ("closed form (sigmoid + binary cross-entropy): dJ/dA = (A - T)/(A (1 - A) N) and "
                "sigmoid'(Z) = A (1 - A) cancel, leaving (A - T)/N"),
    "softmax": ("closed form (softmax + cross-entropy, seed 002): the row Jacobian diag(a) - a a^T times "
                "dJ/da = -t/(a N) gives (a - t)/N, because each target row sums to 1"),
}


# ------------------------------------------------------------------------------------------------ symbols
def _tex(symbol):
    """'dZ12' -> r'\\mathrm{d}Z_{12}', 'W3' -> 'W_{3}', 'X' -> 'X'."""
    prefix = ""
    if symbol.startswith("d") and len(symbol) > 1 and symbol[1].isupper():
        prefix, symbol = r"\mathrm{d}", symbol[1:]
    base = symbol.rstrip("0123456789")
    index = symbol[len(base):]
    return prefix + (f"{base}_{{{index}}}" if index else base)


def _shape(*dims):
    return " x ".join(str(d) for d in dims)


@dataclass
class Equation:
    """One line of the derivation: ``lhs = rhs``, the shape of lhs, and where it comes from."""

    lhs: str
    rhs: str
    shape: str
    detail: str = ""
    tex_rhs: str = ""

    def tex(self):
        shape = self.shape.replace(" x ", r" \times ")
        return f"{_tex(self.lhs)} &= {self.tex_rhs} && {shape}"


@dataclass
class Section:
    title: str
    equations: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def _input_name(net, k):
    """The symbol of layer k's input (k from 1): X, A_{k-1}, or Y_{k-1} after dropout."""
    if k == 1:
        return "X"
    return f"Y{k - 1}" if net.layers[k - 2].dropout else f"A{k - 1}"


def _activation_text(activation):
    name = activation.name
    if name in _ACTIVATION_FORMULAS and type(activation).__module__ == "handgrad.activations":
        formulas = _ACTIVATION_FORMULAS[name]
        if name == "leaky_relu":
            formulas = tuple(f.replace("s", str(activation.slope)) if i in (0, 1) else f
                             for i, f in enumerate(formulas))
        return formulas
    return (f"{name}(z) (user-defined forward)", f"{name}'(z) (user-defined derivative)",
            rf"\mathrm{{{name}}}(z)", rf"\mathrm{{{name}}}'(z)")


def _tex_name(activation):
    return {"sigmoid": r"\sigma", "tanh": r"\tanh"}.get(activation.name, rf"\mathrm{{{activation.name}}}")


def derivation(net, batch_size=None):
    """The derivation of ``net`` as a list of :class:`Section` (what :func:`explain` renders)."""
    N = "N" if batch_size is None else int(batch_size)
    L = len(net.layers)
    K = net.n_outputs

    params = Section("Parameters")
    for k, layer in enumerate(net.layers, 1):
        params.equations.append(Equation(f"W{k}", f"weights of layer {k}", _shape(layer.n_in, layer.n_out),
                                         "row i, column j: from unit i of the layer below to unit j", r"\text{weights}"))
        if layer.b is not None:
            params.equations.append(Equation(f"b{k}", f"biases of layer {k}", str(layer.n_out), "added to every row of Z",
                                             r"\text{biases}"))
    if not net.bias:
        params.notes.append("bias=False: no b terms anywhere, and no db in the backward pass.")

    forward = Section("Forward pass")
    forward.equations.append(Equation("X", "the batch, one sample per row", _shape(N, net.n_inputs), "",
                                      r"\text{the batch}"))
    for k, layer in enumerate(net.layers, 1):
        h = _input_name(net, k)
        bias = f" + b{k}" if layer.b is not None else ""
        detail = f"({_shape(N, layer.n_in)})({_shape(layer.n_in, layer.n_out)})"
        detail += f" + ({layer.n_out},) broadcast over rows" if layer.b is not None else ""
        tex_bias = f" + {_tex(f'b{k}')}" if layer.b is not None else ""
        forward.equations.append(Equation(f"Z{k}", f"{h} W{k}{bias}", _shape(N, layer.n_out), detail,
                                          f"{_tex(h)} {_tex(f'W{k}')}{tex_bias}"))
        f_text, _, f_tex, _ = _activation_text(layer.activation)
        where = f_text if layer.activation.name == "softmax" else f"{f_text}, element by element"
        forward.equations.append(Equation(f"A{k}", f"{layer.activation.name}(Z{k})", _shape(N, layer.n_out), where,
                                          f"{_tex_name(layer.activation)}({_tex(f'Z{k}')})"))
        if layer.dropout:
            p = layer.dropout
            forward.equations.append(Equation(
                f"Y{k}", f"A{k} * M{k} / {1 - p:g}", _shape(N, layer.n_out),
                f"dropout p = {p:g}, training only: M{k}[n,j] = 1 with probability {1 - p:g}, else 0",
                rf"{_tex(f'A{k}')} \odot {_tex(f'M{k}')} / {1 - p:g}"))
    forward.equations.append(Equation("T", "the targets", _shape(N, K),
                                      "class ids become one-hot rows" if net.output_activation.name == "softmax" else "",
                                      r"\text{the targets}"))
    loss = net.loss_fn
    known_loss = loss.name in _LOSS_FORMULAS and type(loss).__module__ == "handgrad.losses"
    data_text, grad_text, data_tex, grad_tex = (
        _LOSS_FORMULAS[loss.name] if known_loss else
        (f"(1/N) sum_n {loss.name}(A[n], T[n])", f"{loss.name}.gradient(A, T)",
         rf"\frac1N \sum_n \mathrm{{{loss.name}}}(A_n, T_n)", rf"\nabla \mathrm{{{loss.name}}}"))
    A_L = f"A{L}"
    J_text = data_text.replace("A", A_L)
    J_tex = data_tex.replace("A", _tex(A_L))
    regularization = ""
    tex_regularization = ""
    if net.l2:
        regularization += f" + ({net.l2:g}/2) sum_k ||W_k||^2"
        tex_regularization += rf" + \tfrac{{{net.l2:g}}}{{2}}\sum_k \lVert W_k \rVert_F^2"
    if net.l1:
        regularization += f" + {net.l1:g} sum_k sum |W_k|"
        tex_regularization += rf" + {net.l1:g} \sum_k \sum |W_k|"
    forward.equations.append(Equation("J", J_text + regularization, "scalar",
                                      f"loss {loss.name}" + ("; biases are not regularized" if regularization else ""),
                                      J_tex + tex_regularization))

    backward = Section("Backward pass")
    out = net.layers[-1]
    if net.closed_form:
        backward.equations.append(Equation(f"dZ{L}", f"(A{L} - T) / N", _shape(N, K),
                                           _CLOSED_FORM_REASONS[out.activation.name],
                                           rf"({_tex(A_L)} - T)/N"))
        backward.notes.append(f"dZ{L} is taken directly: the engine never forms dA{L} (net.closed_form is True).")
    else:
        backward.equations.append(Equation(f"dA{L}", grad_text.replace("A", A_L), _shape(N, K),
                                           f"the gradient of {loss.name} with respect to the output, 1/N included",
                                           grad_tex.replace("A", _tex(A_L))))
        backward.equations.append(_dZ_equation(net, L, N,
                                               general=f"no closed form for {out.activation.name} + {loss.name}: "
                                                       "the general chain rule. "))
    for k in range(L, 0, -1):
        layer = net.layers[k - 1]
        h = _input_name(net, k)
        terms, tex_terms = "", ""
        if net.l2:
            terms += f" + {net.l2:g} W{k}"
            tex_terms += f" + {net.l2:g} {_tex(f'W{k}')}"
        if net.l1:
            terms += f" + {net.l1:g} sign(W{k})"
            tex_terms += rf" + {net.l1:g} \operatorname{{sign}}({_tex(f'W{k}')})"
        backward.equations.append(Equation(
            f"dW{k}", f"{h}^T dZ{k}{terms}", _shape(layer.n_in, layer.n_out),
            f"({_shape(layer.n_in, N)})({_shape(N, layer.n_out)}): entry [i,j] = sum_n {h}[n,i] dZ{k}[n,j]",
            rf"{_tex(h)}^\top {_tex(f'dZ{k}')}{tex_terms}"))
        if layer.b is not None:
            backward.equations.append(Equation(f"db{k}", f"sum over n of dZ{k}[n, :]", str(layer.n_out),
                                               "column sums: b is added to every row, so its bar sums them",
                                               rf"\textstyle\sum_n {_tex(f'dZ{k}')}[n, :]"))
        if k == 1:
            backward.notes.append("dX = dZ1 W1^T is never computed: nothing consumes dJ/dX.")
            continue
        backward.equations.append(Equation(
            f"d{h}", f"dZ{k} W{k}^T", _shape(N, layer.n_in),
            f"({_shape(N, layer.n_out)})({_shape(layer.n_out, layer.n_in)}): entry [n,i] = sum_j dZ{k}[n,j] W{k}[i,j]",
            rf"{_tex(f'dZ{k}')} {_tex(f'W{k}')}^\top"))
        below = net.layers[k - 2]
        if below.dropout:
            p = below.dropout
            backward.equations.append(Equation(f"dA{k - 1}", f"d{h} * M{k - 1} / {1 - p:g}", _shape(N, below.n_out),
                                               "the same mask as the forward pass",
                                               rf"{_tex(f'd{h}')} \odot {_tex(f'M{k - 1}')} / {1 - p:g}"))
        backward.equations.append(_dZ_equation(net, k - 1, N))
    return [params, forward, backward]


def _dZ_equation(net, k, N, general=""):
    layer = net.layers[k - 1]
    activation = layer.activation
    shape = _shape(N, layer.n_out)
    if activation.name == "softmax":
        return Equation(f"dZ{k}", f"A{k} * (dA{k} - rowsum(dA{k} * A{k}))", shape,
                        general + "softmax couples each row: dZ[n] = J_n^T dA[n] with the Jacobian "
                                  "J_n = diag(a_n) - a_n a_n^T, written without building it",
                        rf"{_tex(f'A{k}')} \odot ({_tex(f'dA{k}')} - \mathrm{{rowsum}}({_tex(f'dA{k}')} "
                        rf"\odot {_tex(f'A{k}')}))")
    if not getattr(activation, "elementwise", True):
        return Equation(f"dZ{k}", f"{activation.name}.backward(dA{k})", shape, general + "user-defined backward",
                        rf"\mathrm{{{activation.name}}}.\mathrm{{backward}}({_tex(f'dA{k}')})")
    _, derivative_text, _, _ = _activation_text(activation)
    return Equation(f"dZ{k}", f"dA{k} * {activation.name}'(Z{k})", shape,
                    general + f"element by element (Hadamard product); {derivative_text}",
                    rf"{_tex(f'dA{k}')} \odot {_tex_name(activation)}'({_tex(f'Z{k}')})")


# ------------------------------------------------------------------------------------------------ rendering
def _header(net, batch_size):
    n = "N samples (any batch size)" if batch_size is None else f"N = {batch_size} samples"
    return (f"{net!r}", f"Batch-first: one sample per row, {n}. dV means dJ/dV (seed 000's bar: V_bar). "
                        "* is the element-wise product.")


def _render_text(net, sections, batch_size):
    title, legend = _header(net, batch_size)
    lines = [title, legend]
    for section in sections:
        lines += ["", section.title]
        width = max(len(f"{e.lhs} = {e.rhs}") for e in section.equations)
        shape_width = max(len(e.shape) for e in section.equations)
        for e in section.equations:
            lines.append(f"  {f'{e.lhs} = {e.rhs}':<{width}}   {e.shape:<{shape_width}}   {e.detail}".rstrip())
        lines += [f"  note: {note}" for note in section.notes]
    return "\n".join(lines) + "\n"


def _render_markdown(net, sections, batch_size):
    title, legend = _header(net, batch_size)
    lines = [f"**`{title}`**", "", legend]
    for section in sections:
        lines += ["", f"### {section.title}", "", "| equation | shape | where |", "|---|---|---|"]
        for e in section.equations:
            detail = e.detail.replace("|", "\\|")
            lines.append(f"| `{e.lhs} = {e.rhs}` | {e.shape} | {detail} |")
        if section.notes:
            lines.append("")
            lines += [f"- {note}" for note in section.notes]
    return "\n".join(lines) + "\n"


def _render_latex(net, sections, batch_size):
    title, legend = _header(net, batch_size)
    lines = ["% Needs \\usepackage{amsmath}. Generated by handgrad.explain.", f"% {title}",
             r"\noindent " + legend.replace("*", r"$\odot$").replace("V_bar", r"$\bar V$")]
    for section in sections:
        lines += ["", rf"\paragraph{{{section.title}}}", r"\begin{align*}"]
        lines.append(" \\\\\n".join(f"  {e.tex()}" for e in section.equations))
        lines.append(r"\end{align*}")
    return "\n".join(lines) + "\n"


def explain(net, format="text", batch_size=None):
    """The forward and backward equations of ``net``, layer by layer, with every shape filled in.

    ``format`` is 'text' (a terminal), 'markdown' or 'latex' (an amsmath fragment).
    ``batch_size`` fills in N; by default N stays symbolic.
    """
    from .network import MLP

    if not isinstance(net, MLP):
        raise ConfigError(f"explain needs an MLP, got {type(net).__name__}; build one with hg.MLP(...).")
    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}.")
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
    sections = derivation(net, batch_size)
    render = {"text": _render_text, "markdown": _render_markdown, "latex": _render_latex}[format]
    return render(net, sections, batch_size)


# ------------------------------------------------------------------------------------------------ trace
def forward_backward(net, X, T, derivative_at="Z"):
    """One explicit forward and backward pass (no dropout, no sample weights), matrix by matrix.

    Returns ``(J, layers)`` where ``layers[k-1]`` is a dict with the input ``H``
    (X or A_{k-1}), ``Z``, ``A``, ``dA``, ``dZ``, ``dW``, ``db`` of layer k. X and T must
    be prepared (``net.check_inputs``/``check_targets``). ``derivative_at='A'`` evaluates
    every hidden f' at the activation instead of the pre-activation: a classic mistake,
    used by :mod:`handgrad.student` to recognize it.
    """
    N = X.shape[0]
    layers = []
    H = X
    for layer in net.layers:  # forward: Z = H W + b, A = f(Z)
        Z = H @ layer.W
        if layer.b is not None:
            Z = Z + layer.b
        A = layer.activation.forward(Z.copy())
        layers.append({"H": H, "Z": Z, "A": A})
        H = A
    out = layers[-1]
    loss = net.loss_fn
    if net.closed_form:
        losses = loss.per_sample_from_logits(out["Z"], T)
    else:
        losses = loss.per_sample(out["A"], T)
    J = float(losses.mean())
    J += 0.5 * net.l2 * sum(float(np.sum(l.W * l.W)) for l in net.layers) if net.l2 else 0.0
    J += net.l1 * sum(float(np.abs(l.W).sum()) for l in net.layers) if net.l1 else 0.0

    dA = loss.gradient(out["A"], T)  # dJ/dA_L (1/N included); with a closed form only shown, never used
    for k in range(len(net.layers) - 1, -1, -1):
        layer, record = net.layers[k], layers[k]
        record["dA"] = dA
        activation = layer.activation
        if k == len(net.layers) - 1 and net.closed_form:
            dZ = (record["A"] - T) / N
        elif activation.name == "softmax":
            dZ = record["A"] * (dA - np.sum(dA * record["A"], axis=1, keepdims=True))
        elif not getattr(activation, "elementwise", True):
            dZ = activation.backward(dA.copy(), record["Z"], record["A"])
        elif derivative_at == "A":
            A = record["A"]
            dZ = dA * activation.derivative(A, activation.forward(A.copy()))
        else:
            dZ = dA * activation.derivative(record["Z"], record["A"])
        record["dZ"] = dZ
        dW = record["H"].T @ dZ
        if net.l2:
            dW = dW + net.l2 * layer.W
        if net.l1:
            dW = dW + net.l1 * np.sign(layer.W)
        record["dW"] = dW
        record["db"] = dZ.sum(axis=0) if layer.b is not None else None
        dA = dZ @ layer.W.T
    return J, layers


def _default_data(net, batch_size, seed):
    """A small batch: standard normal inputs and targets the loss accepts."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(batch_size, net.n_inputs))
    K = net.n_outputs
    low, high = net.loss_fn.target_range
    if net.output_activation.name == "softmax" and net.closed_form:
        T = rng.integers(0, K, batch_size)
    elif net.output_activation.name in ("sigmoid", "softmax") or (low, high) == (0.0, 1.0):
        T = (np.arange(batch_size * K) % 2)[rng.permutation(batch_size * K)].reshape(batch_size, K)  # both labels
        T = T.astype(float)
    elif net.output_activation.name == "tanh":
        T = rng.uniform(-0.9, 0.9, (batch_size, K))
    else:
        T = rng.normal(size=(batch_size, K))
    return X, T


@dataclass
class Trace:
    """Every intermediate of one forward and backward pass, checked against the engine.

    ``layers[k-1]`` holds H (the input), Z, A, dA, dZ, dW, db of layer k; ``weight`` is the
    chosen (k, i, j) with ``element_sum`` the per-element sum of seed 000 and ``matrix_value``
    the matrix form's entry; :meth:`render` writes it all out.
    """

    net: object
    X: np.ndarray
    T: np.ndarray
    J: float
    layers: list
    weight: tuple
    terms: list
    element_sum: float
    matrix_value: float
    engine_value: float

    def __str__(self):
        return self.render()

    def render(self, format="text", precision=4):
        """The trace as terminal text ('text') or a Markdown code block ('markdown')."""
        if format not in ("text", "markdown"):
            raise ConfigError(f"a trace renders as 'text' or 'markdown', got {format!r}.")
        text = _render_trace(self, precision)
        return f"```text\n{text}```\n" if format == "markdown" else text


def trace(net, X=None, T=None, weight=(1, 0, 0), batch_size=4, seed=0):
    """One forward and backward pass on a small batch with every number, and one weight's gradient both ways.

    ``weight = (k, i, j)`` names W_k[i, j]: layer k counted from 1, row i and column j
    counted from 0 as in NumPy. Without X and T a batch of ``batch_size`` samples is drawn
    from ``seed``. Dropout is off, as in ``net.loss_and_grad``.
    """
    L = len(net.layers)
    try:
        k, i, j = (int(v) for v in weight)
    except (TypeError, ValueError):
        raise ConfigError(f"weight must be (layer, i, j), e.g. (1, 0, 0); got {weight!r}.") from None
    if not 1 <= k <= L:
        raise ConfigError(f"weight layer {k} does not exist: the network has layers 1..{L}.")
    n_in, n_out = net.layers[k - 1].W.shape
    if not (0 <= i < n_in and 0 <= j < n_out):
        raise ConfigError(f"W{k} has shape ({n_in}, {n_out}): i must be in 0..{n_in - 1} and j in 0..{n_out - 1}, "
                          f"got ({i}, {j}).")
    if (X is None) != (T is None):
        raise ConfigError("give both X and T, or neither (a small batch is then generated).")
    if X is None:
        if int(batch_size) != batch_size or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
        X, T = _default_data(net, int(batch_size), seed)
    X = net.check_inputs(X)
    T = net.check_targets(T, X.shape[0])

    J, layers = forward_backward(net, X, T)
    J_engine, grads = net.loss_and_grad(X, T)
    tolerance = 1e-10 if net.dtype == np.float64 else 1e-4
    _assert_close("J", J, J_engine, tolerance)
    for number, (record, (dW, db)) in enumerate(zip(layers, grads), 1):
        _assert_close(f"dW{number}", record["dW"], dW, tolerance)
        if db is not None:
            _assert_close(f"db{number}", record["db"], db, tolerance)

    H, dZ = layers[k - 1]["H"], layers[k - 1]["dZ"]
    terms = [(n, float(H[n, i]) + 0.0, float(dZ[n, j]) + 0.0) for n in range(X.shape[0])]  # + 0.0: no -0.0
    element_sum = sum(h * g for _, h, g in terms)  # seed 000 eqs (5), (8), (11), summed over the batch
    W = net.layers[k - 1].W
    regularization = (net.l2 * float(W[i, j]) if net.l2 else 0.0) + (net.l1 * float(np.sign(W[i, j]))
                                                                      if net.l1 else 0.0)
    matrix_value = float((H.T @ dZ)[i, j]) + regularization
    return Trace(net, X, T, J_engine, layers, (k, i, j), terms, element_sum + regularization, matrix_value,
                 float(grads[k - 1][0][i, j]))


def _assert_close(name, mine, engine, tolerance):
    mine, engine = np.asarray(mine, dtype=np.float64), np.asarray(engine, dtype=np.float64)
    scale = max(float(np.abs(engine).max(initial=0.0)), 1.0)
    if np.abs(mine - engine).max(initial=0.0) > tolerance * scale:
        raise HandgradError(f"trace: the explicit {name} differs from net.loss_and_grad's; this is a bug in "
                            "handgrad, please report it.")


def _matrix(array, precision, indent="      "):
    text = np.array2string(np.asarray(array) + 0.0, precision=precision, suppress_small=True, max_line_width=100,
                           floatmode="fixed", sign=" ")
    return "\n".join(indent + line for line in text.splitlines())


def _fmt(value, precision):
    value = value + 0.0  # no "-0.0"
    return f"{value:.{precision}f}" if abs(value) >= 10 ** -precision or value == 0 else f"{value:.{precision}e}"


def _render_trace(tr, p):
    net, L = tr.net, len(tr.net.layers)
    N = tr.X.shape[0]
    k, i, j = tr.weight
    h_name = _input_name(net, k).replace("Y", "A")
    lines = [f"{net!r}", f"One forward and backward pass on N = {N} samples (dropout off). dV means dJ/dV.", "",
             "Forward pass", f"  X  ({_shape(*tr.X.shape)})", _matrix(tr.X, p)]
    for number, record in enumerate(tr.layers, 1):
        layer = net.layers[number - 1]
        h = "X" if number == 1 else f"A{number - 1}"
        bias = f" + b{number}" if layer.b is not None else ""
        lines += [f"  Z{number} = {h} W{number}{bias}  ({_shape(*record['Z'].shape)})", _matrix(record["Z"], p),
                  f"  A{number} = {layer.activation.name}(Z{number})  ({_shape(*record['A'].shape)})",
                  _matrix(record["A"], p)]
    lines += [f"  T  ({_shape(*tr.T.shape)})", _matrix(tr.T, p), f"  J = {_fmt(tr.J, p + 2)}  ({net.loss_fn.name}"
              + (" + l2" if net.l2 else "") + (" + l1" if net.l1 else "") + ")", "", "Backward pass"]
    for number in range(L, 0, -1):
        record, layer = tr.layers[number - 1], net.layers[number - 1]
        h = "X" if number == 1 else f"A{number - 1}"
        if number == L and net.closed_form:
            lines += [f"  dA{L} = dJ/dA{L}  (shown only: the closed form skips it)", _matrix(record["dA"], p),
                      f"  dZ{L} = (A{L} - T) / N", _matrix(record["dZ"], p)]
        else:
            how = f"dZ{number + 1} W{number + 1}^T" if number < L else f"gradient of {net.loss_fn.name}"
            rule = (f"A{number} * (dA{number} - rowsum(dA{number} * A{number}))"
                    if layer.activation.name == "softmax" else f"dA{number} * {layer.activation.name}'(Z{number})")
            lines += [f"  dA{number} = {how}", _matrix(record["dA"], p), f"  dZ{number} = {rule}",
                      _matrix(record["dZ"], p)]
        extra = (f" + {net.l2:g} W{number}" if net.l2 else "") + (f" + {net.l1:g} sign(W{number})" if net.l1 else "")
        lines += [f"  dW{number} = {h}^T dZ{number}{extra}  ({_shape(*record['dW'].shape)})", _matrix(record["dW"], p)]
        if record["db"] is not None:
            lines += [f"  db{number} = column sums of dZ{number}", _matrix(record["db"], p)]
    lines.append("  (every dW and db above equals net.loss_and_grad's)")

    # -- one weight, element by element (seed 000) next to the matrix form
    lines += ["", f"One weight: W{k}[{i},{j}] (layer {k}, from unit {i} below to unit {j}; "
                  f"seed 000 writes w_{{{k},{j + 1},{i + 1}}})",
              f"  The bars of sample n = 0, from the loss back to layer {k} (seed 000, eqs (3)-(10)):"]
    lines += _bar_chain(tr, p, sample=0)
    lines.append(f"  Per element (seed 000, eqs (5), (8), (11), summed over the batch): "
                 f"dW{k}[{i},{j}] = sum_n {h_name}[n,{i}] dZ{k}[n,{j}]")
    for n, h, g in tr.terms:
        lines.append(f"    n = {n}:  {h_name}[{n},{i}] dZ{k}[{n},{j}] = {_fmt(h, p)} * {_fmt(g, p)} = {_fmt(h * g, p + 2)}")
    W = net.layers[k - 1].W
    if net.l2:
        lines.append(f"    + l2 W{k}[{i},{j}] = {net.l2:g} * {_fmt(float(W[i, j]), p)} = "
                     f"{_fmt(net.l2 * float(W[i, j]), p + 2)}")
    if net.l1:
        lines.append(f"    + l1 sign(W{k}[{i},{j}]) = {_fmt(net.l1 * float(np.sign(W[i, j])), p + 2)}")
    lines += [f"    sum = {tr.element_sum:.12g}",
              f"  Matrix form: dW{k} = {h_name}^T dZ{k}" + (" + ..." if net.l2 or net.l1 else "")
              + f", entry [{i},{j}] = {tr.matrix_value:.12g}",
              f"  Engine (net.loss_and_grad): dW{k}[{i},{j}] = {tr.engine_value:.12g}",
              f"  per-element sum - matrix form = {tr.element_sum - tr.matrix_value:.1e}"]
    return "\n".join(lines) + "\n"


def _bar_chain(tr, p, sample):
    """The per-element bars of one sample, layer by layer from the output down to the chosen weight's layer."""
    net, L = tr.net, len(tr.net.layers)
    k, _, j = tr.weight
    n = sample
    lines = []
    max_units = 6
    for number in range(L, k - 1, -1):
        record, layer = tr.layers[number - 1], net.layers[number - 1]
        units = [j] if number == k else list(range(min(layer.n_out, max_units)))
        for m in units:
            a, z = float(record["A"][n, m]), float(record["Z"][n, m])
            dA, dZ = float(record["dA"][n, m]), float(record["dZ"][n, m])
            if number == L and net.closed_form:
                t = float(tr.T[n, m])
                lines.append(f"    dZ{number}[{n},{m}] = (A{number}[{n},{m}] - T[{n},{m}]) / N = "
                             f"({_fmt(a, p)} - {_fmt(t, p)}) / {tr.X.shape[0]} = {_fmt(dZ, p + 2)}")
                continue
            if number == L:
                lines.append(f"    dA{number}[{n},{m}] = dJ/dA{number}[{n},{m}] ({net.loss_fn.name}) = {_fmt(dA, p + 2)}")
            else:
                above, W = tr.layers[number], net.layers[number].W
                width = above["dZ"].shape[1]
                products = " + ".join(f"{_fmt(float(above['dZ'][n, q]), p)} * {_fmt(float(W[m, q]), p)}"
                                      for q in range(min(width, 4))) + (" + ..." if width > 4 else "")
                lines.append(f"    dA{number}[{n},{m}] = sum_q dZ{number + 1}[{n},q] W{number + 1}[{m},q] = "
                             f"{products} = {_fmt(dA, p + 2)}")
            if layer.activation.name == "softmax":
                lines.append(f"    dZ{number}[{n},{m}] = A[{n},{m}] (dA[{n},{m}] - sum_q dA[{n},q] A[{n},q]) = "
                             f"{_fmt(dZ, p + 2)}")
            else:
                slope = float(layer.activation.derivative(record["Z"][n:n + 1, m:m + 1],
                                                          record["A"][n:n + 1, m:m + 1])[0, 0])
                lines.append(f"    dZ{number}[{n},{m}] = dA{number}[{n},{m}] * {layer.activation.name}'(Z{number}"
                             f"[{n},{m}] = {_fmt(z, p)}) = {_fmt(dA, p)} * {_fmt(slope, p)} = {_fmt(dZ, p + 2)}")
        if number > k and layer.n_out > max_units:
            lines.append(f"    ... ({layer.n_out - max_units} more units of layer {number})")
    return lines
