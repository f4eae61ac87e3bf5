"""The computational graph: its structure, DOT text, and PNG/SVG files."""

import re
from pathlib import Path

import pytest

import handgrad as hg
from handgrad.graph import computational_graph, save_graph, to_dot


def test_graph_structure_follows_the_network():
    net = hg.MLP(3, [(4, "tanh"), (2, "softmax")], l2=0.1, dropout=0.5, seed=0)
    graph = computational_graph(net, batch_size=6)
    ids = {node.id for node in graph.nodes}
    assert {"X", "W1", "b1", "Z1", "A1", "Y1", "W2", "b2", "Z2", "A2", "T", "loss", "L", "penalty", "s", "J"} <= ids
    edges = {(edge.source, edge.target): edge.label for edge in graph.edges}
    assert edges[("X", "matmul1")] == "6 x 3"
    assert edges[("W1", "matmul1")] == "3 x 4"
    assert edges[("b2", "add2")] == "2"
    assert edges[("Y1", "matmul2")] == "6 x 4"
    assert ("W1", "penalty") in edges and ("W2", "penalty") in edges
    kinds = {node.id: node.kind for node in graph.nodes}
    assert kinds["matmul1"] == kinds["f2"] == kinds["loss"] == "operator"
    assert kinds["Z1"] == kinds["W1"] == kinds["J"] == "variable"


def test_no_bias_no_penalty():
    net = hg.MLP(2, [(2, "relu"), (2, "relu"), (1, "sigmoid")], loss="half_squared_error", bias=False, seed=0)
    ids = {node.id for node in computational_graph(net).nodes}
    assert not any(i.startswith(("b", "add")) for i in ids) and "penalty" not in ids


def test_dot_text_is_well_formed(tmp_path):
    net = hg.MLP(2, [(3, "relu"), (1, "sigmoid")], l1=0.01, seed=0)
    text = to_dot(net)
    assert text.startswith("digraph") and text.rstrip().endswith("}")
    nodes = set(re.findall(r'^\s+"(\w+)" \[label=', text, re.M))
    for source, target in re.findall(r'^\s+"(\w+)" -> "(\w+)"', text, re.M):
        assert source in nodes and target in nodes
    path = save_graph(net, tmp_path / "graph.dot")
    assert Path(path).read_text() == text


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<svg")])
def test_picture_files(tmp_path, suffix, magic):
    pytest.importorskip("matplotlib")
    net = hg.MLP(2, [(3, "tanh"), (2, "softmax")], l2=0.01, seed=0)
    path = tmp_path / f"graph{suffix}"
    save_graph(net, path)
    data = path.read_bytes()
    assert len(data) > 1000 and magic in data[:400]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_bad_paths(tmp_path):
    net = hg.MLP(2, [(1, "sigmoid")], seed=0)
    with pytest.raises(hg.ConfigError, match=r"\.png, \.svg or \.dot"):
        save_graph(net, tmp_path / "graph.jpg")
    with pytest.raises(hg.ModelFileError, match="does not exist"):  # io.writable_path, as for every output
        save_graph(net, tmp_path / "missing" / "graph.dot")


def test_graph_draws_the_norm_between_the_affine_map_and_the_activation(tmp_path):
    net = hg.MLP(3, ["4:relu:batchnorm", "3:tanh:layernorm", (2, "softmax")], seed=0)
    graph = computational_graph(net, batch_size=5)
    edges = {(edge.source, edge.target): edge.label for edge in graph.edges}
    labels = {node.id: node.label for node in graph.nodes}
    assert "b1" not in labels and "add1" not in labels  # beta replaces the bias
    for k, kind in ((1, "BN"), (2, "LN")):
        assert labels[f"norm{k}"] == kind
        assert edges[(f"Z{k}", f"norm{k}")] == edges[(f"norm{k}", f"Zhat{k}")] == edges[(f"Zhat{k}", f"f{k}")]
        assert edges[(f"gamma{k}", f"norm{k}")] == edges[(f"beta{k}", f"norm{k}")] == str(net.layers[k - 1].n_out)
    assert edges[("Z1", "norm1")] == "5 x 4"
    assert '"Zhat1" -> "f1"' in to_dot(net)
    pytest.importorskip("matplotlib")
    assert Path(save_graph(net, tmp_path / "norm.png")).stat().st_size > 1000
