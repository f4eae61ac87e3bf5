"""The computational graph of a network, drawn as in seed 001's figure: variables in
boxes, operators in circles, data flowing along arrows, with each edge labelled by
the shape of the array that travels on it.

    X -> (@) <- W1 -> (+) <- b1 -> [Z1] -> (relu) -> [A1] -> ... -> [A_L] -> (loss) <- T -> [L] -> (+) -> [J]
                                                     every W_k -> (l2) -> [s] ---------------------^

A layer with a normalization has no (+) <- b: [Z_k] -> (BN) <- gamma_k, beta_k -> [Zhat_k] -> (f)
(BN: batch norm; LN: layer norm).

:func:`computational_graph` builds the nodes and edges, :func:`to_dot` writes Graphviz
DOT text (no dependency), and :func:`draw_graph` / :func:`save_graph` draw it with
matplotlib (the optional 'plot' extra) as PNG or SVG.
"""

import os
from dataclasses import dataclass, field

from .errors import ConfigError


@dataclass
class Node:
    id: str
    label: str
    kind: str  # "variable" (a box) or "operator" (a circle)
    row: float = 0
    column: float = 0


@dataclass
class Edge:
    source: str
    target: str
    label: str = ""  # the shape of the array on this edge


@dataclass
class Graph:
    nodes: list = field(default_factory=list)
    edges: list = field(default_factory=list)

    def node(self, id, label, kind, row, column):
        self.nodes.append(Node(id, label, kind, row, column))
        return id

    def edge(self, source, target, label=""):
        self.edges.append(Edge(source, target, label))


_SHORT_LOSS_NAMES = {"half_squared_error": "SE/2", "mse": "SE", "binary_cross_entropy": "BCE", "cross_entropy": "CE"}


def _shape(*dims):
    return " x ".join(str(d) for d in dims)


def computational_graph(net, batch_size=None):
    """The graph of ``net``'s objective J as a :class:`Graph`.

    Layout: one row per layer, rows alternating direction (a snake), so each row starts
    right under the previous row's output; parameters sit just above their operator.
    """
    N = "N" if batch_size is None else int(batch_size)
    graph = Graph()
    previous = graph.node("X", "X", "variable", 0, 0)
    previous_shape = _shape(N, net.n_inputs)
    column, direction = 0, 1
    for k, layer in enumerate(net.layers, 1):
        row = k - 1
        if row == 0:
            column = 1
        else:  # turn around: start under the previous row's last node and go the other way
            direction = -direction
        out_shape = _shape(N, layer.n_out)
        parameter_column_shift = 0 if row == 0 else -0.45 * direction

        def place(id, label, kind, row=row, direction=direction):
            nonlocal column
            graph.node(id, label, kind, row, column)
            column += direction
            return id

        matmul = place(f"matmul{k}", "@", "operator")
        graph.node(f"W{k}", f"W{k}", "variable", row - 0.5, column - direction + parameter_column_shift)
        graph.edge(previous, matmul, previous_shape)
        graph.edge(f"W{k}", matmul, _shape(layer.n_in, layer.n_out))
        last = matmul
        if layer.b is not None:
            add = place(f"add{k}", "+", "operator")
            graph.node(f"b{k}", f"b{k}", "variable", row - 0.5, column - direction)
            graph.edge(last, add, out_shape)
            graph.edge(f"b{k}", add, str(layer.n_out))
            last = add
        z = place(f"Z{k}", f"Z{k}", "variable")
        graph.edge(last, z, out_shape)
        if layer.norm is not None:  # Zhat = gamma * (Z - mu) / sqrt(var + eps) + beta, then the activation
            norm = place(f"norm{k}", {"batch": "BN", "layer": "LN"}[layer.norm.kind], "operator")
            graph.edge(z, norm, out_shape)
            for name, shift in (("gamma", -0.35), ("beta", 0.35)):
                graph.node(f"{name}{k}", f"{name}{k}", "variable", row - 0.6, column - direction + shift)
                graph.edge(f"{name}{k}", norm, str(layer.n_out))
            z = place(f"Zhat{k}", f"Zhat{k}", "variable")
            graph.edge(norm, z, out_shape)
        f = place(f"f{k}", layer.activation.name, "operator")
        graph.edge(z, f, out_shape)
        previous = place(f"A{k}", f"A{k}", "variable")
        graph.edge(f, previous, out_shape)
        if net.dropout_rate(k):
            drop = place(f"dropout{k}", "drop", "operator")
            graph.edge(previous, drop, out_shape)
            previous = place(f"Y{k}", f"Y{k}", "variable")
            graph.edge(drop, previous, out_shape)
        column -= direction  # back onto the row's last node
        previous_shape = out_shape

    # The loss row, under the output, going the other way: (loss) <- T, then L, the penalty, J.
    row = len(net.layers)
    direction = -direction
    loss = graph.node("loss", _SHORT_LOSS_NAMES.get(net.loss_fn.name, net.loss_fn.name), "operator", row, column)
    graph.edge(previous, loss, previous_shape)
    graph.node("T", "T", "variable", row + 0.7, column)
    graph.edge("T", loss, _shape(N, net.n_outputs))
    data = graph.node("L", "L", "variable", row, column + direction)
    graph.edge(loss, data, "scalar")
    if net.l2 or net.l1:
        plus = graph.node("plus", "+", "operator", row, column + 2 * direction)
        graph.edge(data, plus, "scalar")
        terms = (["l2"] if net.l2 else []) + (["l1"] if net.l1 else [])  # (l2/2) sum ||W_k||^2 + l1 sum |W_k|
        penalty = graph.node("penalty", "+".join(terms), "operator", row + 0.9, column + direction)
        s = graph.node("s", "s", "variable", row + 0.9, column + 2 * direction)
        for k in range(1, len(net.layers) + 1):
            graph.edge(f"W{k}", penalty, "")  # every weight matrix feeds the penalty (seed 001's l2 branch)
        graph.edge(penalty, s, "scalar")
        graph.edge(s, plus, "scalar")
        graph.node("J", "J", "variable", row, column + 3 * direction)
        graph.edge(plus, "J", "scalar")
    else:
        graph.node("J", "J = L", "variable", row, column + 2 * direction)
        graph.edge(data, "J", "scalar")
    return graph


def to_dot(net_or_graph, batch_size=None):
    """Graphviz DOT text of the graph: ``dot -Tpng graph.dot -o graph.png`` draws it."""
    graph = net_or_graph if isinstance(net_or_graph, Graph) else computational_graph(net_or_graph, batch_size)
    lines = ["digraph handgrad {", "  rankdir=LR;", '  node [fontname="Helvetica"];', '  edge [fontsize=10];']
    for node in graph.nodes:
        shape = "box" if node.kind == "variable" else "circle"
        lines.append(f'  "{node.id}" [label="{node.label}", shape={shape}];')
    for edge in graph.edges:
        label = f' [label="{edge.label}"]' if edge.label else ""
        lines.append(f'  "{edge.source}" -> "{edge.target}"{label};')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _matplotlib():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("drawing the graph needs matplotlib: pip install handgrad[plot] "
                          "(or write Graphviz DOT text, which needs nothing: a .dot file).") from None
    return Figure


def draw_graph(net, batch_size=None):
    """A matplotlib Figure of the computational graph (no pyplot: safe without a display)."""
    Figure = _matplotlib()
    graph = computational_graph(net, batch_size)
    positions = {node.id: (node.column * 1.6, -node.row * 1.6) for node in graph.nodes}
    xs = [x for x, _ in positions.values()]
    ys = [y for _, y in positions.values()]
    width, height = max(xs) - min(xs) + 2.4, max(ys) - min(ys) + 2.0
    figure = Figure(figsize=(max(4.0, width * 0.95), max(3.0, height * 0.95)))
    axes = figure.add_axes([0, 0, 1, 1])
    axes.set_xlim(min(xs) - 1.2, max(xs) + 1.2)
    axes.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
    axes.set_aspect("equal")
    axes.axis("off")
    kinds = {node.id: node for node in graph.nodes}

    def radius(node_id):  # points between a node's centre and where an arrow may end
        node = kinds[node_id]
        return 12 + (3.0 * len(node.label) if node.kind == "operator" else 2.0 * len(node.label))

    for edge in graph.edges:
        (x0, y0), (x1, y1) = positions[edge.source], positions[edge.target]
        style = dict(arrowstyle="-|>", color="0.3", lw=1.0, shrinkA=radius(edge.source), shrinkB=radius(edge.target))
        if edge.label == "" and edge.target == "penalty":
            style.update(color="0.65", linestyle="--", connectionstyle="arc3,rad=0.15")
        axes.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=style)
        if edge.label:
            axes.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.18, edge.label, fontsize=7, color="tab:blue",
                      ha="center", va="bottom")
    for node in graph.nodes:
        x, y = positions[node.id]
        if node.kind == "variable":
            box = dict(boxstyle="square,pad=0.35", facecolor="#fff7d6", edgecolor="0.2")
        else:
            box = dict(boxstyle="circle,pad=0.25", facecolor="#dbe9ff", edgecolor="0.2")
        axes.text(x, y, node.label, ha="center", va="center", fontsize=8 if node.kind == "operator" else 10,
                  bbox=box, zorder=3)
    axes.set_title(f"computational graph of {net!r}"[:120], fontsize=8)
    return figure


def save_graph(net, path, batch_size=None):
    """Write the graph to ``path``: .png or .svg (matplotlib) or .dot (Graphviz text). Atomic (handgrad.io)."""
    from .io import atomic_writer, writable_path

    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in (".png", ".svg", ".dot"):
        raise ConfigError(f"the graph file must end in .png, .svg or .dot, got '{path}'.")
    writable_path(path, "graph file")
    figure = None if extension == ".dot" else draw_graph(net, batch_size)  # fail before touching the disk
    with atomic_writer(path, "wb") as stream:
        if figure is None:
            stream.write(to_dot(net, batch_size).encode("utf-8"))
        else:
            figure.savefig(stream, format=extension[1:])
    return path
