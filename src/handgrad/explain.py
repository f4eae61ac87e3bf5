"""Show the derivation: a network's equations with their shapes (:func:`explain`) and one
forward and backward pass with every number (:func:`trace`).

Notation is the code's (docs/derivations.md): batch-first, ``Z_k = A_{k-1} W_k + b_k``
with ``A_0 = X``, ``A_k = f_k(Z_k)``, and ``dV`` meaning dJ/dV (seed 000's v_bar).

    >>> import handgrad as hg
    >>> net = hg.MLP(2, [(2, "relu"), (2, "relu"), (1, "sigmoid")], loss="half_squared_error", bias=False, seed=0)
    >>> print(hg.explain(net))                                        # doctest: +SKIP
    >>> print(trace(net, weight=(1, 0, 0)))                           # doctest: +SKIP

This module is a renderer: it computes no gradient of its own. :func:`explain` writes
equations from the network's structure; :func:`trace` shows the numbers of one
``net.forward_backward`` pass (the engine), checked against ``net.loss_and_grad``, and
adds the one computation that is the point of a trace: seed 000's per-element sum for
one weight, next to the engine's number for it.
"""

import re
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError, HandgradError

FORMATS = ("text", "markdown", "latex")

# name: (f in text, f' in text). Element-wise unless said otherwise; <s> is leaky_relu's slope.
_ACTIVATION_FORMULAS = {
    "identity": ("identity(z) = z", "identity'(z) = 1"),
    "relu": ("relu(z) = max(z, 0)", "relu'(z) = 1 if z > 0 else 0 (read from A: A > 0)"),
    "leaky_relu": ("leaky_relu(z) = z if z > 0 else <s> z", "leaky_relu'(z) = 1 if z > 0 else <s>"),
    "sigmoid": ("sigmoid(z) = 1 / (1 + e^-z)", "sigmoid'(z) = A (1 - A)"),
    "tanh": ("tanh(z)", "tanh'(z) = 1 - A^2"),
    "softplus": ("softplus(z) = ln(1 + e^z)", "softplus'(z) = sigmoid(z) = 1 - e^-A"),
    "elu": ("elu(z) = z if z > 0 else alpha (e^z - 1)", "elu'(z) = 1 if z > 0 else A + alpha"),
    "gelu": ("gelu(z) = z/2 (1 + tanh(c (z + 0.044715 z^3)))", "gelu'(z) = (1 + tanh u)/2 + z/2 (1 - tanh^2 u) u'"),
    "silu": ("silu(z) = z sigmoid(z)", "silu'(z) = s + z s (1 - s), s = sigmoid(z)"),
    "exp": ("exp(z) = e^z", "exp'(z) = e^z = A"),
    "softmax": ("softmax row by row: A[n,k] = e^Z[n,k] / sum_j e^Z[n,j]",
                "Jacobian of one row: da_k/dz_j = a_k (delta_kj - a_j)"),
}

# name: (J's data term in text, dJ/dA_L in text, the same two in LaTeX). <A> is the output A_L, <An> its row n.
_LOSS_FORMULAS = {
    "half_squared_error": ("(1/N) sum_n 1/2 ||<An> - T[n]||^2", "(<A> - T) / N",
                           r"\frac{1}{N}\sum_n \tfrac12 \lVert <An> - T_{n} \rVert^2", r"(<A> - T)/N"),
    "mse": ("(1/N) sum_n ||<An> - T[n]||^2", "2 (<A> - T) / N",
            r"\frac{1}{N}\sum_n \lVert <An> - T_{n} \rVert^2", r"2(<A> - T)/N"),
    "binary_cross_entropy": ("-(1/N) sum_n sum_k [T ln <A> + (1 - T) ln(1 - <A>)]",
                             "(<A> - T) / (<A> (1 - <A>)) / N",
                             r"-\frac{1}{N}\sum_{n,k} [T \ln <A> + (1 - T)\ln(1 - <A>)]",
                             r"\frac{<A> - T}{<A> \odot (1 - <A>)} / N"),
    "cross_entropy": ("-(1/N) sum_n sum_k T ln <A>", "-T / (<A> N)",
                      r"-\frac{1}{N}\sum_{n,k} T \ln <A>", r"-T \oslash (N <A>)"),
    "half_poisson_deviance": ("(1/N) sum_n sum_k [T ln(T / <A>) - T + <A>]", "(1 - T / <A>) / N",
                              r"\frac{1}{N}\sum_{n,k} [T \ln(T / <A>) - T + <A>]", r"(1 - T \oslash <A>)/N"),
}

_CLOSED_FORM_REASONS = {
    "exp": ("closed form (exp + half Poisson deviance, the log link): dJ/dA = (1 - T/A)/N and exp'(Z) = A "
            "multiply to (A - T)/N"),
    "sigmoid": ("closed form (sigmoid + binary cross-entropy): dJ/dA = (A - T)/(A (1 - A) N) and "
                "sigmoid'(Z) = A (1 - A) cancel, leaving (A - T)/N"),
    "softmax": ("closed form (softmax + cross-entropy, seed 002): the row Jacobian diag(a) - a a^T times "
                "dJ/da = -t/(a N) gives (a - t)/N, because each target row sums to 1"),
}


# ------------------------------------------------------------------------------------------------ symbols
_TEX_BASES = {"gamma": r"\gamma", "beta": r"\beta", "mu": r"\mu", "var": r"\sigma^2", "xhat": r"\hat X",
              "Zhat": r"\hat Z", "std": "s", "rmean": r"\mu^{\mathrm{run}}", "rvar": r"\sigma^{2,\mathrm{run}}"}


def _tex(symbol):
    """'dZ12' -> r'\\mathrm{d}Z_{12}', 'db2' -> r'\\mathrm{d}b_{2}', 'W3' -> 'W_{3}', 'X' -> 'X',
    'gamma1' -> r'\\gamma_{1}' (the normalization's names as their symbols)."""
    if ", " in symbol:
        return ", ".join(_tex(part) for part in symbol.split(", "))
    prefix = ""
    if len(symbol) > 1 and symbol[0] == "d" and symbol[1].isalpha():
        prefix, symbol = r"\mathrm{d}", symbol[1:]
    base = symbol.rstrip("0123456789")
    index = symbol[len(base):]
    base = _TEX_BASES.get(base, base)
    return prefix + (f"{base}_{{{index}}}" if index else base)


def _tex_word(name):
    r"""A name as upright text in math: 'leaky_relu' -> r'\mathrm{leaky\_relu}'."""
    escaped = name.replace("_", r"\_")
    return rf"\mathrm{{{escaped}}}"


def _tex_name(activation):
    return {"sigmoid": r"\sigma", "tanh": r"\tanh"}.get(activation.name, _tex_word(activation.name))


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
        shape = re.sub(r"[A-Za-z]{2,}", lambda word: rf"\text{{{word.group()}}}", self.shape)  # 'scalar'
        shape = shape.replace(" x ", r" \times ")
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
    return f"Y{k - 1}" if net.dropout_rate(k - 1) else f"A{k - 1}"


def _is_builtin(obj, table, module):
    return obj.name in table and type(obj).__module__ == module


def _activation_text(activation):
    """(f in text, f' in text) of a layer's activation."""
    if not _is_builtin(activation, _ACTIVATION_FORMULAS, "handgrad.activations"):
        return f"{activation.name}(z) (user-defined forward)", f"{activation.name}'(z) (user-defined derivative)"
    forward, derivative = _ACTIVATION_FORMULAS[activation.name]
    slope = f"{getattr(activation, 'slope', '')}"
    return forward.replace("<s>", slope), derivative.replace("<s>", slope)


def _loss_formulas(net):
    """(J's data term, dJ/dA_L) in text and in LaTeX, with the output's symbol filled in."""
    loss, L = net.loss_fn, len(net.layers)
    if _is_builtin(loss, _LOSS_FORMULAS, "handgrad.losses"):
        formulas = _LOSS_FORMULAS[loss.name]
    else:
        formulas = (f"(1/N) sum_n {loss.name}(<An>, T[n])", f"{loss.name}.gradient(<A>, T)",
                    rf"\frac1N \sum_n {_tex_word(loss.name)}(<An>, T_{{n}})", rf"\nabla {_tex_word(loss.name)}")
    text = [f.replace("<An>", f"A{L}[n]").replace("<A>", f"A{L}") for f in formulas[:2]]
    tex = [f.replace("<An>", f"A_{{{L},n}}").replace("<A>", _tex(f"A{L}")) for f in formulas[2:]]
    return text[0], text[1], tex[0], tex[1]


# ------------------------------------------------------------------------------------------------ derivation
def derivation(net, batch_size=None):
    """The derivation of ``net`` as a list of :class:`Section` (what :func:`explain` renders)."""
    N = "N" if batch_size is None else int(batch_size)
    return [_parameters_section(net), _forward_section(net, N), _backward_section(net, N)]


def _parameters_section(net):
    section = Section("Parameters")
    for k, layer in enumerate(net.layers, 1):
        section.equations.append(Equation(f"W{k}", f"weights of layer {k}", _shape(layer.n_in, layer.n_out),
                                          "row i, column j: from unit i of the layer below to unit j",
                                          r"\text{weights}"))
        if layer.b is not None:
            section.equations.append(Equation(f"b{k}", f"biases of layer {k}", str(layer.n_out),
                                              "added to every row of Z", r"\text{biases}"))
        if layer.norm is not None:
            section.equations += _norm_parameters(layer.norm, k)
    if not net.bias:
        section.notes.append("bias=False: no b terms anywhere, and no db in the backward pass.")
    return section


_NORM_AXES = {"batch": "each column (feature) over the N rows of the batch",
              "layer": "each row (sample) over its features"}


def _norm_parameters(norm, k):
    """gamma_k, beta_k (and batch norm's running statistics) of a normalized layer k."""
    n = str(norm.n_features)
    equations = [Equation(f"gamma{k}", f"scales of layer {k}'s {norm.kind} norm", n, "multiply xhat column by column; "
                          "start at 1; not regularized", r"\text{scales}"),
                 Equation(f"beta{k}", f"shifts of layer {k}'s {norm.kind} norm", n,
                          "added to every row; they replace the bias b (the layer has none)", r"\text{shifts}")]
    if norm.kind == "batch":
        equations.append(Equation(f"rmean{k}, rvar{k}", "running mean and variance (state, not parameters)", n,
                                  f"predict uses them; each training step: r = (1 - {norm.momentum:g}) r + "
                                  f"{norm.momentum:g} (batch value), the variance unbiased",
                                  r"\text{running statistics}"))
    return equations


def _norm_forward(norm, k, N):
    """mu_k, var_k, xhat_k and Zhat_k = gamma_k * xhat_k + beta_k of a normalized layer."""
    over = _NORM_AXES[norm.kind]
    stat_shape = _shape(1, norm.n_features) if norm.kind == "batch" else _shape(N, 1)
    axis = "column" if norm.kind == "batch" else "row"
    eps = f"{norm.eps:g}"
    return [
        Equation(f"mu{k}", f"{axis} means of Z{k}", stat_shape, f"{norm.kind} norm: {over}",
                 rf"\text{{{axis} means of }} {_tex(f'Z{k}')}"),
        Equation(f"var{k}", f"{axis} means of (Z{k} - mu{k})^2", stat_shape,
                 "the biased variance (divide by the count)",
                 rf"\text{{{axis} means of }} ({_tex(f'Z{k}')} - \mu_{{{k}}})^2"),
        Equation(f"xhat{k}", f"(Z{k} - mu{k}) / sqrt(var{k} + {eps})", _shape(N, norm.n_features),
                 "every entry depends on the whole " + ("batch" if norm.kind == "batch" else "row")
                 + " through mu and var", rf"({_tex(f'Z{k}')} - \mu_{{{k}}}) / \sqrt{{\sigma^2_{{{k}}} + {eps}}}"),
        Equation(f"Zhat{k}", f"gamma{k} * xhat{k} + beta{k}", _shape(N, norm.n_features),
                 "gamma, beta broadcast over the rows",
                 rf"\gamma_{{{k}}} \odot \hat X_{{{k}}} + \beta_{{{k}}}"),
    ]


def _forward_section(net, N):
    section = Section("Forward pass")
    section.equations.append(Equation("X", "the batch, one sample per row", _shape(N, net.n_inputs), "",
                                      r"\text{the batch}"))
    for k in range(1, len(net.layers) + 1):
        section.equations += _layer_forward(net, k, N)
    one_hot = "class ids become one-hot rows" if net.output_activation.name == "softmax" else ""
    section.equations.append(Equation("T", "the targets", _shape(N, net.n_outputs), one_hot, r"\text{the targets}"))
    section.equations.append(_objective(net))
    return section


def _layer_forward(net, k, N):
    """Z_k = H W_k + b_k, A_k = f(Z_k), and Y_k = A_k * M_k / (1 - p) when the layer has dropout."""
    layer = net.layers[k - 1]
    h = _input_name(net, k)
    has_bias = layer.b is not None
    detail = f"({_shape(N, layer.n_in)})({_shape(layer.n_in, layer.n_out)})"
    detail += f" + ({layer.n_out},) broadcast over rows" if has_bias else ""
    tex_bias = f" + {_tex(f'b{k}')}" if has_bias else ""
    f_text, _ = _activation_text(layer.activation)
    where = f_text if layer.activation.name == "softmax" else f"{f_text}, element by element"
    f_input = f"Z{k}" if layer.norm is None else f"Zhat{k}"
    equations = [Equation(f"Z{k}", f"{h} W{k}" + (f" + b{k}" if has_bias else ""), _shape(N, layer.n_out), detail,
                          f"{_tex(h)} {_tex(f'W{k}')}{tex_bias}")]
    if layer.norm is not None:
        equations += _norm_forward(layer.norm, k, N)
    equations.append(Equation(f"A{k}", f"{layer.activation.name}({f_input})", _shape(N, layer.n_out), where,
                              f"{_tex_name(layer.activation)}({_tex(f_input)})"))
    if net.dropout_rate(k):
        p = net.dropout_rate(k)
        equations.append(Equation(
            f"Y{k}", f"A{k} * M{k} / {1 - p:g}", _shape(N, layer.n_out),
            f"dropout p = {p:g}, training only: M{k}[n,j] = 1 with probability {1 - p:g}, else 0",
            rf"{_tex(f'A{k}')} \odot {_tex(f'M{k}')} / {1 - p:g}"))
    return equations


def _objective(net):
    """J: the data term of the loss, then the penalties."""
    data_text, _, data_tex, _ = _loss_formulas(net)
    text, tex = data_text, data_tex
    if net.l2:
        text += f" + ({net.l2:g}/2) sum_k ||W_k||^2"
        tex += rf" + \tfrac{{{net.l2:g}}}{{2}}\sum_k \lVert W_k \rVert_F^2"
    if net.l1:
        text += f" + {net.l1:g} sum_k sum |W_k|"
        tex += rf" + {net.l1:g} \sum_k \sum |W_k|"
    regularized = "; biases (and gamma, beta) are not regularized" if net.l2 or net.l1 else ""
    return Equation("J", text, "scalar", f"loss {net.loss_fn.name}{regularized}", tex)


def _backward_section(net, N):
    section = Section("Backward pass")
    L = len(net.layers)
    section.equations += _output_gradient(net, N)
    if net.closed_form:
        section.notes.append(f"dZ{L} is taken directly: the engine never forms dA{L} (net.closed_form is True).")
    for k in range(L, 0, -1):
        section.equations += _parameter_gradients(net, k, N)
        if k > 1:
            section.equations += _gradient_below(net, k, N)
    section.notes.append("dX = dZ1 W1^T is never computed: nothing consumes dJ/dX.")
    return section


def _output_gradient(net, N):
    """dZ_L: the closed form where the output and the loss have one, else dA_L and the chain rule."""
    L, K = len(net.layers), net.n_outputs
    activation = net.output_activation
    if net.closed_form:
        return [Equation(f"dZ{L}", f"(A{L} - T) / N", _shape(N, K), _CLOSED_FORM_REASONS[activation.name],
                         rf"({_tex(f'A{L}')} - T)/N")]
    _, gradient_text, _, gradient_tex = _loss_formulas(net)
    loss = net.loss_fn.name
    return [Equation(f"dA{L}", gradient_text, _shape(N, K),
                     f"the gradient of {loss} with respect to the output, 1/N included", gradient_tex),
            *_dZ_equation(net, L, N, f"no closed form for {activation.name} + {loss}: the general chain rule. ")]


def _parameter_gradients(net, k, N):
    """dW_k = H^T dZ_k (+ the penalties' gradients) and db_k = the column sums of dZ_k."""
    layer = net.layers[k - 1]
    h = _input_name(net, k)
    terms, tex_terms = "", ""
    if net.l2:
        terms += f" + {net.l2:g} W{k}"
        tex_terms += f" + {net.l2:g} {_tex(f'W{k}')}"
    if net.l1:
        terms += f" + {net.l1:g} sign(W{k})"
        tex_terms += rf" + {net.l1:g} \operatorname{{sign}}({_tex(f'W{k}')})"
    equations = [Equation(
        f"dW{k}", f"{h}^T dZ{k}{terms}", _shape(layer.n_in, layer.n_out),
        f"({_shape(layer.n_in, N)})({_shape(N, layer.n_out)}): entry [i,j] = sum_n {h}[n,i] dZ{k}[n,j]",
        rf"{_tex(h)}^\top {_tex(f'dZ{k}')}{tex_terms}")]
    if layer.b is not None:
        equations.append(Equation(f"db{k}", f"sum over n of dZ{k}[n, :]", str(layer.n_out),
                                  "column sums: b is added to every row, so its bar sums them",
                                  rf"\textstyle\sum_n {_tex(f'dZ{k}')}[n, :]"))
    return equations


def _gradient_below(net, k, N):
    """From layer k's dZ down to layer k-1's: dH = dZ_k W_k^T, through dropout's mask, then dZ_{k-1}."""
    layer, below = net.layers[k - 1], net.layers[k - 2]
    h = _input_name(net, k)
    equations = [Equation(
        f"d{h}", f"dZ{k} W{k}^T", _shape(N, layer.n_in),
        f"({_shape(N, layer.n_out)})({_shape(layer.n_out, layer.n_in)}): entry [n,i] = sum_j dZ{k}[n,j] W{k}[i,j]",
        rf"{_tex(f'dZ{k}')} {_tex(f'W{k}')}^\top")]
    if net.dropout_rate(k - 1):
        p = net.dropout_rate(k - 1)
        equations.append(Equation(f"dA{k - 1}", f"d{h} * M{k - 1} / {1 - p:g}", _shape(N, below.n_out),
                                  "the same mask as the forward pass",
                                  rf"{_tex(f'd{h}')} \odot {_tex(f'M{k - 1}')} / {1 - p:g}"))
    equations += _dZ_equation(net, k - 1, N)
    return equations


def _norm_backward(norm, k, N):
    """From dZhat_k to dgamma_k, dbeta_k and dZ_k: the norm's backward (docs/derivations.md)."""
    shape, n = _shape(N, norm.n_features), str(norm.n_features)
    equations = [Equation(f"dgamma{k}", f"sum over n of (dZhat{k} * xhat{k})[n, :]", n, "column sums",
                          rf"\textstyle\sum_n ({_tex(f'dZhat{k}')} \odot \hat X_{{{k}}})[n, :]"),
                 Equation(f"dbeta{k}", f"sum over n of dZhat{k}[n, :]", n, "column sums",
                          rf"\textstyle\sum_n {_tex(f'dZhat{k}')}[n, :]")]
    if norm.kind == "batch":
        equations.append(Equation(
            f"dZ{k}", f"gamma{k} / std{k} * (dZhat{k} - dbeta{k}/N - xhat{k} * dgamma{k}/N)", shape,
            f"std{k} = sqrt(var{k} + eps); the two sums run over the whole batch: every sample's dZ depends on "
            "every other sample through mu and var",
            rf"\frac{{\gamma_{{{k}}}}}{{s_{{{k}}}}} \odot ({_tex(f'dZhat{k}')} - \tfrac{{{_tex(f'dbeta{k}')}}}{{N}}"
            rf" - \hat X_{{{k}}} \odot \tfrac{{{_tex(f'dgamma{k}')}}}{{N}})"))
    else:
        equations.append(Equation(
            f"dZ{k}", f"(G - rowmean(G) - xhat{k} * rowmean(G * xhat{k})) / std{k},  G = dZhat{k} * gamma{k}",
            shape, f"std{k} = sqrt(var{k} + eps) per row; the features of a sample interact, samples do not",
            rf"(G - \overline{{G}} - \hat X_{{{k}}} \odot \overline{{G \odot \hat X_{{{k}}}}}) / s_{{{k}}}"))
    return equations


def _dZ_equation(net, k, N, general=""):
    """dZ_k from dA_k: softmax's Jacobian-vector product (in any layer), a user's backward, or dA * f'(Z).
    With a norm: dZhat_k = dA_k * f'(Zhat_k), then the norm's backward to dZ_k (a list of equations)."""
    layer = net.layers[k - 1]
    if layer.norm is not None:
        dZhat = _dZ_equation_plain(net, k, N, general)
        dZhat = Equation(f"dZhat{k}", dZhat.rhs.replace(f"Z{k}", f"Zhat{k}"), dZhat.shape, dZhat.detail,
                         dZhat.tex_rhs.replace(_tex(f"Z{k}"), _tex(f"Zhat{k}")))
        return [dZhat, *_norm_backward(layer.norm, k, N)]
    return [_dZ_equation_plain(net, k, N, general)]


def _dZ_equation_plain(net, k, N, general=""):
    activation = net.layers[k - 1].activation
    shape = _shape(N, net.layers[k - 1].n_out)
    dA, A, Z = _tex(f"dA{k}"), _tex(f"A{k}"), _tex(f"Z{k}")
    if activation.name == "softmax":
        return Equation(f"dZ{k}", f"A{k} * (dA{k} - rowsum(dA{k} * A{k}))", shape,
                        general + "softmax couples each row: dZ[n] = J_n^T dA[n] with the Jacobian "
                                  "J_n = diag(a_n) - a_n a_n^T, written without building it",
                        rf"{A} \odot ({dA} - \mathrm{{rowsum}}({dA} \odot {A}))")
    if not getattr(activation, "elementwise", True):
        return Equation(f"dZ{k}", f"{activation.name}.backward(dA{k})", shape, general + "user-defined backward",
                        rf"{_tex_word(activation.name)}.\mathrm{{backward}}({dA})")
    _, derivative_text = _activation_text(activation)
    return Equation(f"dZ{k}", f"dA{k} * {activation.name}'(Z{k})", shape,
                    general + f"element by element (Hadamard product); {derivative_text}",
                    rf"{dA} \odot {_tex_name(activation)}'({Z})")


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
    _check_network(net, "explain")
    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}.")
    if batch_size is not None:
        batch_size = _positive_int("batch_size", batch_size)
    sections = derivation(net, batch_size)
    render = {"text": _render_text, "markdown": _render_markdown, "latex": _render_latex}[format]
    return render(net, sections, batch_size)


def explained(net, batch_size=None):
    """:func:`explain`'s equations as an object a notebook shows as math (MathML; see handgrad.display)."""
    from .display import Explanation

    _check_network(net, "explained")
    title, legend = _header(net, batch_size)
    return Explanation(title, legend, derivation(net, batch_size), explain(net, "markdown", batch_size),
                       explain(net, "latex", batch_size))


def _check_network(net, what):
    from .network import MLP

    if not isinstance(net, MLP):
        raise ConfigError(f"{what} needs an MLP, got {type(net).__name__}; build one with hg.MLP(...).")


def _positive_int(name, value):
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number != value or number < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
    return number


# ------------------------------------------------------------------------------------------------ trace
def example_batch(net, batch_size, seed):
    """A small batch (X, T): standard normal inputs and targets the network's loss accepts."""
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
    elif low >= 0:  # counts (the Poisson deviance), zeros included
        T = rng.poisson(1.5, (batch_size, K)).astype(float)
    else:
        T = rng.normal(size=(batch_size, K))
    return X, T


_default_data = example_batch  # the name cli_teach imports (until it switches to example_batch)


@dataclass
class Trace:
    """Every intermediate of one forward and backward pass of the engine, and one weight's gradient both ways.

    ``layers[k-1]`` holds H (the input), Z, A, dA, dZ, dW, db of layer k, as
    ``net.forward_backward`` returned them; ``weight`` is the chosen (k, i, j) with
    ``element_sum`` the per-element sum of seed 000, ``matrix_value`` the entry of the
    engine's matrix product and ``engine_value`` that of ``net.loss_and_grad``;
    :meth:`render` writes it all out.
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

    def __repr__(self):  # a plain Python prompt: a summary, not every array of the dataclass
        k, i, j = self.weight
        return (f"<Trace of {self.net!r} on N = {len(self.X)} samples, J = {self.J:.6g}, dW{k}[{i},{j}] = "
                f"{self.engine_value:.6g}; print() it, or show it in Jupyter>")

    def render(self, format="text", precision=4):
        """The trace as terminal text ('text') or a Markdown code block ('markdown')."""
        if format not in ("text", "markdown"):
            raise ConfigError(f"a trace renders as 'text' or 'markdown', got {format!r}.")
        text = _render_trace(self, precision)
        return f"```text\n{text}```\n" if format == "markdown" else text

    def _repr_html_(self):  # Jupyter (handgrad.display)
        from .display import trace_html

        return trace_html(self)


def trace(net, X=None, T=None, weight=(1, 0, 0), batch_size=4, seed=0):
    """One forward and backward pass on a small batch with every number, and one weight's gradient both ways.

    ``weight = (k, i, j)`` names W_k[i, j]: layer k counted from 1, row i and column j
    counted from 0 as in NumPy. Without X and T a batch of ``batch_size`` samples is drawn
    from ``seed``. Dropout is off, as in ``net.loss_and_grad``.
    """
    _check_network(net, "trace")
    k, i, j = _check_weight(net, weight)
    X, T = _trace_batch(net, X, T, batch_size, seed)
    J, layers = net.forward_backward(X, T)
    J_engine, grads = net.loss_and_grad(X, T)
    _check_against_loss_and_grad(net, J, layers, J_engine, grads)
    named = dict(net.gradients())
    for number, record in enumerate(layers, 1):
        if "dgamma" in record:
            for name in ("dgamma", "dbeta"):
                _assert_close(f"{name}{number}", record[name], named[f"{name[1:]}{number}"], 1e-10)

    H, dZ = layers[k - 1]["H"], layers[k - 1]["dZ"]
    terms = [(n, float(H[n, i]) + 0.0, float(dZ[n, j]) + 0.0) for n in range(X.shape[0])]  # + 0.0: no -0.0
    element_sum = sum(h * g for _, h, g in terms)  # seed 000 eqs (5), (8), (11), summed over the batch
    W = net.layers[k - 1].W
    penalties = (net.l2 * float(W[i, j]) if net.l2 else 0.0) + (net.l1 * float(np.sign(W[i, j])) if net.l1 else 0.0)
    return Trace(net, X, T, J_engine, layers, (k, i, j), terms, element_sum + penalties,
                 float(layers[k - 1]["dW"][i, j]), float(grads[k - 1][0][i, j]))


def render_one_weight(tr, precision=4):
    """Only the "One weight:" part of ``tr.render()``: the chosen weight's bars, per-element sum, matrix form and
    engine number, without writing out every matrix of the pass (what the playground's weight panel shows).

    The text is exactly the end of ``tr.render(precision=precision)`` from its line "One weight:" on
    (tests/test_explain_one_weight.py); its cost grows with the batch's rows, not with the whole pass's matrices.
    """
    if not isinstance(tr, Trace):
        raise ConfigError(f"render_one_weight takes a Trace (tr = hg.trace(net, X, T)), got {type(tr).__name__}.")
    return "\n".join(_trace_one_weight(tr, precision)) + "\n"


def _check_weight(net, weight):
    """(k, i, j) as integers naming an existing weight, or a ConfigError that says which range is valid."""
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
    return k, i, j


def _trace_batch(net, X, T, batch_size, seed):
    """The given (X, T), checked and prepared by the network, or an example batch."""
    if (X is None) != (T is None):
        raise ConfigError("give both X and T, or neither (a small batch is then generated).")
    if X is None:
        X, T = example_batch(net, _positive_int("batch_size", batch_size), seed)
    X = net.check_inputs(X)
    return X, net.check_targets(T, X.shape[0])


def _check_against_loss_and_grad(net, J, layers, J_engine, grads):
    """forward_backward and loss_and_grad are two doors into one engine: what the trace shows must agree."""
    tolerance = 1e-10 if net.dtype == np.float64 else 1e-4
    _assert_close("J", J, J_engine, tolerance)
    for number, (record, (dW, db)) in enumerate(zip(layers, grads, strict=True), 1):
        _assert_close(f"dW{number}", record["dW"], dW, tolerance)
        if db is not None:
            _assert_close(f"db{number}", record["db"], db, tolerance)


def _assert_close(name, shown, engine, tolerance):
    shown, engine = np.asarray(shown, dtype=np.float64), np.asarray(engine, dtype=np.float64)
    scale = max(float(np.abs(engine).max(initial=0.0)), 1.0)
    if np.abs(shown - engine).max(initial=0.0) > tolerance * scale:
        raise HandgradError(f"trace: {name} from net.forward_backward differs from net.loss_and_grad's; this is a "
                            "bug in handgrad, please report it.")


# ------------------------------------------------------------------------------------------------ trace rendering
def _matrix(array, precision, indent="      "):
    text = np.array2string(np.asarray(array) + 0.0, precision=precision, suppress_small=True, max_line_width=100,
                           floatmode="fixed", sign=" ")
    return "\n".join(indent + line for line in text.splitlines())


def _fmt(value, precision):
    value = value + 0.0  # no "-0.0"
    return f"{value:.{precision}f}" if abs(value) >= 10 ** -precision or value == 0 else f"{value:.{precision}e}"


def _render_trace(tr, p):
    N = tr.X.shape[0]
    lines = [f"{tr.net!r}", f"One forward and backward pass on N = {N} samples (dropout off). dV means dJ/dV."]
    lines += ["", "Forward pass", *_trace_forward(tr, p)]
    lines += ["", "Backward pass", *_trace_backward(tr, p)]
    lines += ["", *_trace_one_weight(tr, p)]
    return "\n".join(lines) + "\n"


def _trace_forward(tr, p):
    net = tr.net
    lines = [f"  X  ({_shape(*tr.X.shape)})", _matrix(tr.X, p)]
    for number, record in enumerate(tr.layers, 1):
        layer = net.layers[number - 1]
        h = "X" if number == 1 else f"A{number - 1}"
        bias = f" + b{number}" if layer.b is not None else ""
        lines += [f"  Z{number} = {h} W{number}{bias}  ({_shape(*record['Z'].shape)})", _matrix(record["Z"], p)]
        if layer.norm is not None:
            lines += _trace_norm_forward(record, number, layer.norm, p)
        f_input = f"Z{number}" if layer.norm is None else f"Zhat{number}"
        lines += [f"  A{number} = {layer.activation.name}({f_input})  ({_shape(*record['A'].shape)})",
                  _matrix(record["A"], p)]
    penalties = (" + l2" if net.l2 else "") + (" + l1" if net.l1 else "")
    lines += [f"  T  ({_shape(*tr.T.shape)})", _matrix(tr.T, p),
              f"  J = {_fmt(tr.J, p + 2)}  ({net.loss_fn.name}{penalties})"]
    return lines


def _trace_norm_forward(record, k, norm, p):
    """mu, std, xhat and Zhat of a normalized layer, with their numbers."""
    axis = "column" if norm.kind == "batch" else "row"
    return [f"  mu{k} = {axis} means of Z{k}  ({_shape(*record['mean'].shape)}; {norm.kind} norm)",
            _matrix(record["mean"], p),
            f"  std{k} = sqrt({axis} means of (Z{k} - mu{k})^2 + {norm.eps:g})  ({_shape(*record['std'].shape)})",
            _matrix(record["std"], p),
            f"  xhat{k} = (Z{k} - mu{k}) / std{k}  ({_shape(*record['xhat'].shape)})", _matrix(record["xhat"], p),
            f"  gamma{k}, beta{k}", _matrix(record["gamma"], p), _matrix(record["beta"], p),
            f"  Zhat{k} = gamma{k} * xhat{k} + beta{k}  ({_shape(*record['Zhat'].shape)})", _matrix(record["Zhat"], p)]


def _trace_norm_backward(record, k, norm, rule, p):
    """dZhat, dgamma, dbeta and dZ of a normalized layer, with their numbers."""
    if norm.kind == "batch":
        dZ_rule = (f"gamma{k} / std{k} * (dZhat{k} - dbeta{k}/N - xhat{k} * dgamma{k}/N)  "
                   "(every row uses the batch's sums)")
    else:
        dZ_rule = f"(G - rowmean(G) - xhat{k} * rowmean(G * xhat{k})) / std{k},  G = dZhat{k} * gamma{k}"
    return [f"  dZhat{k} = {rule.replace(f'Z{k}', f'Zhat{k}')}", _matrix(record["dZhat"], p),
            f"  dgamma{k} = column sums of dZhat{k} * xhat{k}", _matrix(record["dgamma"], p),
            f"  dbeta{k} = column sums of dZhat{k}", _matrix(record["dbeta"], p),
            f"  dZ{k} = {dZ_rule}", _matrix(record["dZ"], p)]


def _trace_backward(tr, p):
    net, L = tr.net, len(tr.net.layers)
    lines = []
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
            lines += [f"  dA{number} = {how}", _matrix(record["dA"], p)]
            if layer.norm is not None:
                lines += _trace_norm_backward(record, number, layer.norm, rule, p)
            else:
                lines += [f"  dZ{number} = {rule}", _matrix(record["dZ"], p)]
        extra = (f" + {net.l2:g} W{number}" if net.l2 else "") + (f" + {net.l1:g} sign(W{number})" if net.l1 else "")
        lines += [f"  dW{number} = {h}^T dZ{number}{extra}  ({_shape(*record['dW'].shape)})", _matrix(record["dW"], p)]
        if record["db"] is not None:
            lines += [f"  db{number} = column sums of dZ{number}", _matrix(record["db"], p)]
    norms = ", every dgamma and dbeta net.gradients()'s" if any(layer.norm is not None for layer in net.layers) else ""
    lines.append(f"  (every dW and db above equals net.loss_and_grad's{norms})")
    return lines


def _trace_one_weight(tr, p):
    """One weight, element by element (seed 000), next to the matrix form and the engine's number."""
    net = tr.net
    k, i, j = tr.weight
    h_name = _input_name(net, k).replace("Y", "A")
    lines = [f"One weight: W{k}[{i},{j}] (layer {k}, from unit {i} below to unit {j}; "
             f"seed 000 writes w_{{{k},{j + 1},{i + 1}}})",
             f"  The bars of sample n = 0, from the loss back to layer {k} (seed 000, eqs (3)-(10)):"]
    lines += _bar_chain(tr, p, sample=0)
    lines.append(f"  Per element (seed 000, eqs (5), (8), (11), summed over the batch): "
                 f"dW{k}[{i},{j}] = sum_n {h_name}[n,{i}] dZ{k}[n,{j}]")
    for n, h, g in tr.terms:
        lines.append(f"    n = {n}:  {h_name}[{n},{i}] dZ{k}[{n},{j}] = {_fmt(h, p)} * {_fmt(g, p)} = "
                     f"{_fmt(h * g, p + 2)}")
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
    return lines


def _bar_chain(tr, p, sample):
    """The per-element bars of one sample, layer by layer from the output down to the chosen weight's layer."""
    net, L = tr.net, len(tr.net.layers)
    k, _, j = tr.weight
    max_units = 6
    lines = []
    for number in range(L, k - 1, -1):
        n_out = net.layers[number - 1].n_out
        units = [j] if number == k else list(range(min(n_out, max_units)))
        for m in units:
            lines += _unit_bars(tr, p, number, sample, m)
        if number > k and n_out > max_units:
            lines.append(f"    ... ({n_out - max_units} more units of layer {number})")
    return lines


def _unit_bars(tr, p, number, n, m):
    """dA and dZ of unit m of layer ``number`` for sample n, each written as the sum or product it is."""
    net, L = tr.net, len(tr.net.layers)
    record, activation, norm = tr.layers[number - 1], net.layers[number - 1].activation, net.layers[number - 1].norm
    z_name, dz_name = ("Z", "dZ") if norm is None else ("Zhat", "dZhat")  # the activation's input and its bar
    a, z, dA, dZ = (float(record[name][n, m]) for name in ("A", z_name, "dA", dz_name))
    at = f"[{n},{m}]"
    if number == L and net.closed_form:
        return [f"    dZ{number}{at} = (A{number}{at} - T{at}) / N = "
                f"({_fmt(a, p)} - {_fmt(float(tr.T[n, m]), p)}) / {tr.X.shape[0]} = {_fmt(dZ, p + 2)}"]
    if number == L:
        lines = [f"    dA{number}{at} = dJ/dA{number}{at} ({net.loss_fn.name}) = {_fmt(dA, p + 2)}"]
    else:
        above, W = tr.layers[number], net.layers[number].W
        width = above["dZ"].shape[1]
        products = " + ".join(f"{_fmt(float(above['dZ'][n, q]), p)} * {_fmt(float(W[m, q]), p)}"
                              for q in range(min(width, 4))) + (" + ..." if width > 4 else "")
        lines = [f"    dA{number}{at} = sum_q dZ{number + 1}[{n},q] W{number + 1}[{m},q] = "
                 f"{products} = {_fmt(dA, p + 2)}"]
    dz, zz = f"{dz_name}{number}", f"{z_name}{number}"
    if activation.name == "softmax":  # the row's Jacobian-vector product, entry m
        row_sum = float(np.dot(record["dA"][n], record["A"][n]))
        subtracted = _fmt(row_sum, p) if row_sum >= 0 else f"({_fmt(row_sum, p)})"
        lines.append(f"    {dz}{at} = A{number}{at} (dA{number}{at} - sum_q dA{number}[{n},q] A{number}[{n},q])"
                     f" = {_fmt(a, p)} * ({_fmt(dA, p)} - {subtracted}) = {_fmt(dZ, p + 2)}")
    elif not getattr(activation, "elementwise", True):
        lines.append(f"    {dz}{at} = {activation.name}.backward(dA{number})[{n},{m}] = {_fmt(dZ, p + 2)}")
    else:
        slope = float(activation.derivative(record[z_name][n:n + 1, m:m + 1], record["A"][n:n + 1, m:m + 1])[0, 0])
        lines.append(f"    {dz}{at} = dA{number}{at} * {activation.name}'({zz}{at} = {_fmt(z, p)}) = "
                     f"{_fmt(dA, p)} * {_fmt(slope, p)} = {_fmt(dZ, p + 2)}")
    if norm is not None:
        lines.append(_unit_norm_bar(record, number, norm, n, m, p))
    return lines


def _paren(value, precision):
    """A number to subtract or multiply by: negative ones in parentheses."""
    return _fmt(value, precision) if value >= 0 else f"({_fmt(value, precision)})"


def _unit_norm_bar(record, k, norm, n, m, p):
    """dZ_k[n, m] from dZhat_k through the norm, with the batch's (or the row's) sums that couple it."""
    at, dZ, xhat = f"[{n},{m}]", float(record["dZ"][n, m]), float(record["xhat"][n, m])
    if norm.kind == "batch":
        N = record["dZhat"].shape[0]
        gamma, std = float(record["gamma"][m]), float(record["std"][0, m])
        dbeta, dgamma = float(record["dbeta"][m]), float(record["dgamma"][m])
        return (f"    dZ{k}{at} = gamma{k}[{m}] / std{k}[{m}] * (dZhat{k}{at} - dbeta{k}[{m}]/N - xhat{k}{at} "
                f"dgamma{k}[{m}]/N) = {_fmt(gamma, p)} / {_fmt(std, p)} * ({_fmt(float(record['dZhat'][n, m]), p)} - "
                f"{_paren(dbeta, p)}/{N} - {_paren(xhat, p)} * {_paren(dgamma, p)}/{N}) = {_fmt(dZ, p + 2)}"
                f"  (dbeta, dgamma: sums over all {N} samples)")
    G = record["dZhat"][n] * record["gamma"]
    return (f"    dZ{k}{at} = (G[{m}] - mean_q G[q] - xhat{k}{at} mean_q G[q] xhat{k}[{n},q]) / std{k}[{n}], "
            f"G = dZhat{k}[{n}] * gamma{k} = ({_fmt(float(G[m]), p)} - {_paren(float(G.mean()), p)} - "
            f"{_paren(xhat, p)} * {_paren(float((G * record['xhat'][n]).mean()), p)}) / "
            f"{_fmt(float(record['std'][n, 0]), p)} = "
            f"{_fmt(dZ, p + 2)}  (sums over the {G.size} features of sample {n})")
