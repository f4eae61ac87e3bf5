"""Rich display in notebooks and the playground: MathML from the TeX that explain writes, SVG pictures.

Jupyter shows an object richly when it has ``_repr_html_`` (or ``_repr_latex_``, ``_repr_markdown_``):
``MLP``, ``History`` and ``explain.Trace`` delegate to the functions here, and ``explained(net)``
(``from handgrad.explain import explained``) returns an :class:`Explanation` whose equations show as math.

The math is MathML, which browsers render natively: no script, no CDN, nothing to install. It is
converted from the TeX that ``explain.Equation.tex`` writes by :func:`tex_to_mathml`, a small
converter for exactly the subset explain uses (``\\frac``, sub- and superscripts, ``\\mathrm``,
``\\text``, sums, norms, the operators). This module imports no other handgrad module: it renders what
it is given (network, history, trace, sections), so anything may use it.
"""

import html
import re

import numpy as np

MATHML = "http://www.w3.org/1998/Math/MathML"

# TeX command -> (MathML element, its text). Commands not listed raise ValueError (a test walks explain's output).
_SYMBOLS = {
    "sum": ("mo", "\u2211"), "odot": ("mo", "\u2299"), "oslash": ("mo", "\u2298"), "times": ("mo", "\u00d7"),
    "top": ("mi", "\u22a4"), "lVert": ("mo", "\u2016"), "rVert": ("mo", "\u2016"), "cdot": ("mo", "\u22c5"),
    "nabla": ("mo", "\u2207"), "sigma": ("mi", "\u03c3"), "delta": ("mi", "\u03b4"), "alpha": ("mi", "\u03b1"),
    "gamma": ("mi", "\u03b3"), "beta": ("mi", "\u03b2"), "mu": ("mi", "\u03bc"), "epsilon": ("mi", "\u03b5"),
    "eta": ("mi", "\u03b7"), "theta": ("mi", "\u03b8"), "lambda": ("mi", "\u03bb"), "ln": ("mi", "ln"),
    "tanh": ("mi", "tanh"), "exp": ("mi", "exp"), "log": ("mi", "log"), "max": ("mi", "max"),
    "partial": ("mo", "\u2202"), "bar": None, "textstyle": None, "displaystyle": None, ",": ("mspace", ""),
    "quad": ("mspace", ""), "_": ("mi", "_"), "{": ("mo", "{"), "}": ("mo", "}"),
}
_ACCENTS = {"hat": "^", "widehat": "^", "overline": "\u203e"}  # \hat X: a mark over the next atom or group
_TOKEN = re.compile(r"\\([A-Za-z]+|.)|(\d+(?:\.\d+)?)|([A-Za-z])|(\s+)|(.)")


def _tokens(tex):
    for match in _TOKEN.finditer(tex):
        command, number, letter, space, other = match.groups()
        if space:
            yield ("space", " ")
        elif command is not None:
            yield ("command", command)
        elif number is not None:
            yield ("number", number)
        elif letter is not None:
            yield ("letter", letter)
        else:
            yield ("char", other)


class _Parser:
    """Recursive descent over the tokens: a sequence of atoms, each with optional _ and ^."""

    def __init__(self, tex):
        self.tokens = list(_tokens(tex))
        self.at = 0
        self.tex = tex

    def peek(self):
        """The next token that is not a space (spaces only matter inside \\text and \\mathrm)."""
        while self.at < len(self.tokens) and self.tokens[self.at][0] == "space":
            self.at += 1
        return self.raw_peek()

    def raw_peek(self):
        return self.tokens[self.at] if self.at < len(self.tokens) else (None, None)

    def take(self):
        token = self.peek()
        self.at += 1
        return token

    def sequence(self, stop=None):
        parts = []
        while True:
            kind, value = self.peek()
            if kind is None or (kind == "char" and value == stop):
                return parts
            atom = self.atom()
            if atom is None:
                continue
            parts.append(self.scripts(atom))

    def group(self):
        """{...} as an mrow, or a single atom."""
        kind, value = self.peek()
        if kind == "char" and value == "{":
            self.take()
            parts = self.sequence("}")
            self.take()
            return _row(parts)
        return self.atom()

    def raw_group(self):
        """The text of {...} without parsing (for \\text and \\mathrm)."""
        kind, value = self.take()
        if not (kind == "char" and value == "{"):
            raise ValueError(f"expected '{{' in {self.tex!r}")
        depth, text = 1, []
        while True:
            kind, value = self.raw_peek()
            self.at += 1
            if kind is None:
                raise ValueError(f"unbalanced braces in {self.tex!r}")
            if kind == "char" and value in "{}":
                depth += 1 if value == "{" else -1
                if depth == 0:
                    return "".join(text)
            text.append(value)  # \\_ -> _

    def scripts(self, base):
        sub = sup = None
        while True:
            kind, value = self.peek()
            if kind == "char" and value in "_^":
                self.take()
                part = self.group()
                if value == "_":
                    sub = part
                else:
                    sup = part
            elif kind == "char" and value == "'":
                self.take()
                sup = "<mo>\u2032</mo>"
            else:
                break
        if sub and sup:
            return f"<msubsup>{base}{sub}{sup}</msubsup>"
        if sub:
            return f"<msub>{base}{sub}</msub>"
        if sup:
            return f"<msup>{base}{sup}</msup>"
        return base

    def atom(self):
        kind, value = self.take()
        if kind == "number":
            return f"<mn>{value}</mn>"
        if kind == "letter":
            return f"<mi>{value}</mi>"
        if kind == "char":
            if value == "{":
                parts = self.sequence("}")
                self.take()
                return _row(parts)
            if value == "&":
                return None
            return f"<mo>{html.escape(value)}</mo>"
        return self.command(value)

    def command(self, name):
        if name in ("frac", "tfrac"):
            return f"<mfrac>{self.group()}{self.group()}</mfrac>"
        if name in ("mathrm", "operatorname"):
            text = self.raw_group()
            return f'<mi mathvariant="normal">{html.escape(text)}</mi>'
        if name == "text":
            return f"<mtext>{html.escape(self.raw_group())}</mtext>"
        if name == "sqrt":
            return f"<msqrt>{self.group()}</msqrt>"
        if name in _ACCENTS:
            return f'<mover accent="true">{self.group()}<mo>{_ACCENTS[name]}</mo></mover>'
        if name not in _SYMBOLS:
            raise ValueError(f"tex_to_mathml does not know \\{name} (in {self.tex!r})")
        symbol = _SYMBOLS[name]
        if symbol is None:
            return None
        element, text = symbol
        if element == "mspace":
            return '<mspace width="0.3em"/>'
        return f"<{element}>{html.escape(text)}</{element}>"


def _row(parts):
    return f"<mrow>{''.join(parts)}</mrow>"


def tex_to_mathml(tex, display=False):
    """A ``<math>`` element for one formula in the TeX subset explain writes.

    >>> tex_to_mathml(r"W_{2}")
    '<math xmlns="http://www.w3.org/1998/Math/MathML"><mrow><msub><mi>W</mi><mrow><mn>2</mn></mrow></msub></mrow></math>'
    """
    parser = _Parser(tex)
    body = _row(parser.sequence())
    mode = ' display="block"' if display else ""
    return f'<math xmlns="{MATHML}"{mode}>{body}</math>'


# ------------------------------------------------------------------------------------------ equations
def equation_parts(equation):
    """(lhs, rhs) of an explain.Equation as MathML, from its TeX (``lhs &= rhs && shape``)."""
    lhs_tex, _, rest = equation.tex().partition("&=")
    rhs_tex = rest.partition("&&")[0]
    return tex_to_mathml(lhs_tex), tex_to_mathml(rhs_tex)


def sections_mathml(sections):
    """explain's sections as plain data with MathML: what the playground's equations panel shows."""
    return [{"title": section.title, "notes": list(section.notes),
             "rows": [dict(zip(("lhs", "rhs"), equation_parts(e)), shape=e.shape, detail=e.detail)
                      for e in section.equations]}
            for section in sections]


def sections_html(sections):
    """A table per section: the equation as math, its shape, where it comes from."""
    out = []
    for section in sections_mathml(sections):
        out.append(f"<h4>{html.escape(section['title'])}</h4>")
        out.append('<table class="handgrad-equations">'
                   "<tr><th>equation</th><th>shape</th><th>where</th></tr>")
        for row in section["rows"]:
            out.append(f"<tr><td style='white-space:nowrap'>{row['lhs']} = {row['rhs']}</td>"
                       f"<td style='white-space:nowrap'>{html.escape(row['shape'])}</td>"
                       f"<td style='text-align:left'>{html.escape(row['detail'])}</td></tr>")
        out.append("</table>")
        out += [f"<p><em>note:</em> {html.escape(note)}</p>" for note in section["notes"]]
    return "\n".join(out)


class Explanation:
    """explain's equations for one network, shown as math in a notebook (``explain.explained(net)``).

    ``_repr_html_`` writes MathML tables, ``_repr_latex_`` an aligned block (for MathJax or LaTeX),
    ``_repr_markdown_`` explain's Markdown; ``str()`` is the Markdown too.
    """

    def __init__(self, title, legend, sections, markdown, latex):
        self.title, self.legend, self.sections = title, legend, sections
        self.markdown, self.latex = markdown, latex

    def _repr_html_(self):
        return (f"<div class='handgrad-explanation'><p><code>{html.escape(self.title)}</code></p>"
                f"<p>{html.escape(self.legend)}</p>{sections_html(self.sections)}</div>")

    def _repr_latex_(self):
        rows = " \\\\\n".join(e.tex() for section in self.sections for e in section.equations)
        return f"$$\\begin{{aligned}}\n{rows}\n\\end{{aligned}}$$"

    def _repr_markdown_(self):
        return self.markdown

    def __str__(self):
        return self.markdown

    def __repr__(self):  # a plain Python prompt: what this is and how to see it (not an object address)
        count = sum(len(section.equations) for section in self.sections)
        return f"<explained {self.title}: {count} equations; print() it, or show it in Jupyter>"


# ------------------------------------------------------------------------------------------ the network
def network_svg(sizes, activations, width=None, height=160, max_units=8):
    """A small diagram: one column of circles per layer (inputs first), every connection drawn.

    Layers wider than ``max_units`` show their first units and a '+n' label."""
    columns = len(sizes)
    width = width or max(120, 90 * columns)
    gap = width / columns
    shown = [min(size, max_units) for size in sizes]

    def y(unit, count):
        return height * (unit + 1) / (count + 1)

    lines, circles = [], []
    for c in range(columns - 1):
        for i in range(shown[c]):
            for j in range(shown[c + 1]):
                lines.append(f'<line x1="{gap * (c + 0.5):.1f}" y1="{y(i, shown[c]):.1f}" '
                             f'x2="{gap * (c + 1.5):.1f}" y2="{y(j, shown[c + 1]):.1f}" stroke="#999" '
                             'stroke-width="0.8"/>')
    for c, count in enumerate(shown):
        x = gap * (c + 0.5)
        for i in range(count):
            circles.append(f'<circle cx="{x:.1f}" cy="{y(i, count):.1f}" r="6" fill="#fff" stroke="#333"/>')
        label = "input" if c == 0 else activations[c - 1]
        more = f" +{sizes[c] - count}" if sizes[c] > count else ""
        circles.append(f'<text x="{x:.1f}" y="{height - 2}" font-size="10" text-anchor="middle">'
                       f"{html.escape(label)} ({sizes[c]}){more}</text>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height + 10}" '
            f'viewBox="0 -6 {width:.0f} {height + 16}">{"".join(lines)}{"".join(circles)}</svg>')


def mlp_html(net):
    """MLP in a notebook: its repr, a table of layers and a small diagram."""
    rows = []
    for k, layer in enumerate(net.layers, 1):
        count = sum(array.size for _, array in layer.parameters())
        b = f"({layer.n_out},)" if layer.b is not None else "-"
        if layer.norm is not None:  # its gamma and beta (beta in place of b) are among the layer's params
            b = f"- ({layer.norm.kind} norm: \u03b3, \u03b2 ({layer.n_out},))"
        rate = net.dropout_rate(k)
        rows.append(f"<tr><td>{k}</td><td>{html.escape(layer.activation.name)}</td><td>{layer.W.shape}</td>"
                    f"<td>{b}</td><td>{rate:g}</td><td>{count}</td></tr>")
    sizes = [net.n_inputs] + [layer.n_out for layer in net.layers]
    table = ("<table><tr><th>layer</th><th>activation</th><th>W</th><th>b</th><th>dropout</th><th>params</th></tr>"
             + "".join(rows) + f"<tr><td colspan='5'>total, loss {html.escape(net.loss_fn.name)}</td>"
             f"<td>{net.n_params}</td></tr></table>")
    diagram = network_svg(sizes, [layer.activation.name for layer in net.layers])
    return (f"<div class='handgrad-mlp'><p><code>{html.escape(repr(net))}</code></p>"
            f"<div style='display:flex;gap:1em;align-items:center'>{table}{diagram}</div></div>")


# ------------------------------------------------------------------------------------------ history
def history_svg(history, width=360, height=200):
    """The loss per epoch (and val_loss when recorded) as an SVG line chart with its range on the axis."""
    series = {name: np.asarray(history.metrics[name], dtype=float) for name in ("loss", "val_loss")
              if history.metrics.get(name)}
    if not series:
        return "<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'></svg>"
    values = np.concatenate([v[np.isfinite(v)] for v in series.values()]) if series else np.zeros(1)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    high = high if high > low else low + 1.0
    left, bottom = 48, 24
    colours = {"loss": "#1f77b4", "val_loss": "#d62728"}
    paths = []
    for name, v in series.items():
        n = max(len(v) - 1, 1)
        xs = left + (width - left - 8) * np.arange(len(v)) / n
        ys = 8 + (height - bottom - 8) * (high - v) / (high - low)
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y, ok in zip(xs, ys, np.isfinite(v)) if ok)
        paths.append(f'<polyline class="{name}" fill="none" stroke="{colours[name]}" stroke-width="1.5" '
                     f'points="{points}"/>')
    legend = "".join(f'<text x="{width - 8}" y="{16 + 14 * k}" font-size="11" text-anchor="end" '
                     f'fill="{colours[name]}">{name}</text>' for k, name in enumerate(series))
    axes = (f'<line x1="{left}" y1="8" x2="{left}" y2="{height - bottom}" stroke="#333"/>'
            f'<line x1="{left}" y1="{height - bottom}" x2="{width - 8}" y2="{height - bottom}" stroke="#333"/>'
            f'<text x="{left - 4}" y="12" font-size="10" text-anchor="end">{high:.3g}</text>'
            f'<text x="{left - 4}" y="{height - bottom}" font-size="10" text-anchor="end">{low:.3g}</text>'
            f'<text x="{(width + left) / 2:.0f}" y="{height - 6}" font-size="10" text-anchor="middle">'
            f"epoch (1..{len(history.epochs)})</text>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f"{axes}{''.join(paths)}{legend}</svg>")


def history_html(history):
    """History in a notebook: the loss curve and the last value of every metric."""
    last = "".join(f"<tr><td>{html.escape(name)}</td><td>{values[-1]:.6g}</td></tr>"
                   for name, values in history.metrics.items() if values)
    reason = html.escape(str(history.stop_reason))
    return (f"<div class='handgrad-history'><p>{len(history.epochs)} epochs; stop reason: {reason}</p>"
            f"<div style='display:flex;gap:1em;align-items:center'>{history_svg(history)}"
            f"<table><tr><th>metric</th><th>last</th></tr>{last}</table></div></div>")


# ------------------------------------------------------------------------------------------ trace
def trace_html(tr, precision=4):
    """A trace in a notebook: the chosen weight's gradient both ways as math, then every number."""
    k, i, j = tr.weight
    formula = tex_to_mathml(rf"\mathrm{{d}}W_{{{k}}}[{i},{j}] = \sum_n H[n,{i}] \, \mathrm{{d}}Z_{{{k}}}[n,{j}]")
    return (f"<div class='handgrad-trace'><p>{formula} = {tr.element_sum:.12g} (per element, seed 000); "
            f"matrix form {tr.matrix_value:.12g}; engine (loss_and_grad) {tr.engine_value:.12g}</p>"
            f"<pre>{html.escape(tr.render(precision=precision))}</pre></div>")
