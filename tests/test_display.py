"""Rich display (handgrad.display): MathML from explain's TeX, and the notebook reprs of MLP, History,
Trace and explained(). Each MathML block must be well-formed XML in the MathML namespace, and the
pictures must show what they claim (one polyline per curve, one circle per unit)."""

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import handgrad as hg
from handgrad.datasets import make_xor
from handgrad.display import MATHML, network_svg, tex_to_mathml
from handgrad.explain import derivation, explain, explained

NETWORKS = [
    (2, [(2, "relu"), (2, "relu"), (1, "sigmoid")], {"loss": "half_squared_error", "bias": False}),
    (3, [(4, {"name": "leaky_relu", "slope": 0.1}), (3, "softmax")], {"l2": 0.1, "l1": 0.01}),
    (2, [(5, "gelu"), (4, "elu"), (1, "sigmoid")], {"loss": "binary_cross_entropy", "dropout": 0.2}),
    (2, [(4, "softplus"), (4, "silu"), (3, "softmax")], {"loss": "half_squared_error"}),
    (1, [(16, "tanh"), (2, "identity")], {"loss": "mse"}),
    (3, ["4:tanh:batchnorm", "4:relu:layernorm", (1, "sigmoid")], {}),  # gamma, beta, mu, sigma, hat, sqrt
]


def parse(mathml):
    element = ET.fromstring(mathml)
    assert element.tag == f"{{{MATHML}}}math"
    return element


def text_of(element):
    return "".join(element.itertext())


@pytest.mark.parametrize("n_inputs, layers, options", NETWORKS)
def test_every_equation_explain_writes_becomes_well_formed_mathml(n_inputs, layers, options):
    net = hg.MLP(n_inputs, layers, seed=0, **options)
    for section in derivation(net, batch_size=8):
        for equation in section.equations:
            lhs, _, rest = equation.tex().partition("&=")
            rhs = rest.partition("&&")[0]
            parse(tex_to_mathml(lhs))
            parse(tex_to_mathml(rhs))


def test_the_mathml_has_the_structure_of_the_tex():
    fraction = parse(tex_to_mathml(r"\frac{1}{N}\sum_n \tfrac12 x"))
    assert len(fraction.findall(f".//{{{MATHML}}}mfrac")) == 2
    sub = parse(tex_to_mathml(r"\mathrm{d}Z_{12}"))
    (msub,) = sub.findall(f".//{{{MATHML}}}msub")
    assert [text_of(child) for child in msub] == ["Z", "12"]
    assert text_of(parse(tex_to_mathml(r"\mathrm{leaky\_relu}(Z_{1})"))).startswith("leaky_relu(")
    assert text_of(parse(tex_to_mathml(r"A \odot B^\top"))) == "A\u2299B\u22a4"
    assert text_of(parse(tex_to_mathml(r"\text{the batch}"))) == "the batch"  # spaces kept in text only
    assert "<msup><mi>f</mi><mo>\u2032</mo></msup>" in tex_to_mathml("f'(z)")
    hat = parse(tex_to_mathml(r"\hat X_{1} = \gamma_{1} \odot \hat X_{1} / \sqrt{\sigma^2_{1} + 1e-05}"))
    (accent, _) = hat.findall(f".//{{{MATHML}}}mover")
    assert [text_of(child) for child in accent] == ["X", "^"]
    (root,) = hat.findall(f".//{{{MATHML}}}msqrt")
    assert text_of(root).startswith("\u03c3")
    assert "\u03b3" in text_of(hat)
    with pytest.raises(ValueError, match="does not know"):
        tex_to_mathml(r"\unknowncommand x")


def test_an_mlp_shows_a_table_and_a_diagram_of_its_layers():
    net = hg.MLP(3, [(12, "relu"), (4, "tanh"), (2, "softmax")], seed=0)
    page = net._repr_html_()
    for k, layer in enumerate(net.layers, 1):
        assert f"<td>{k}</td><td>{layer.activation.name}</td><td>{layer.W.shape}</td>" in page
    assert f"<td>{net.n_params}</td>" in page
    svg = network_svg([3, 12, 4, 2], ["relu", "tanh", "softmax"])
    assert svg.count("<circle") == 3 + 8 + 4 + 2  # at most 8 units drawn per layer
    assert svg.count("<line") == 3 * 8 + 8 * 4 + 4 * 2
    assert "+4" in svg  # the 4 units not drawn are counted


def test_a_normalized_layer_in_the_table_names_its_norm_and_its_gamma_and_beta():
    """A layer with a norm has no b, but gamma and beta among its params: the table said '-' and left the
    count (W's plus 2 x units) unexplained."""
    net = hg.MLP(2, [{"size": 3, "activation": "relu", "norm": "batch", "bias": False},
                     {"size": 5, "activation": "tanh", "norm": "layer", "bias": False}, (1, "sigmoid")], seed=0)
    page = net._repr_html_()
    assert "<td>(2, 3)</td><td>- (batch norm: \u03b3, \u03b2 (3,))</td><td>0</td><td>12</td>" in page
    assert "<td>(3, 5)</td><td>- (layer norm: \u03b3, \u03b2 (5,))</td><td>0</td><td>25</td>" in page
    assert "<td>(5, 1)</td><td>(1,)</td>" in page


def test_a_history_shows_its_loss_curves():
    X, y = make_xor(80, seed=0)
    net = hg.MLP(2, [(4, "tanh"), (1, "sigmoid")], seed=0)
    history = net.fit(X, y, epochs=7, batch_size=16, validation_split=0.25, seed=0)
    page = history._repr_html_()
    curves = re.findall(r'<polyline class="(\w+)"[^>]*points="([^"]*)"', page)
    assert [name for name, _ in curves] == ["loss", "val_loss"]
    assert all(len(points.split()) == 7 for _, points in curves)
    assert f"{history.loss[-1]:.6g}" in page
    assert "7 epochs" in page


def test_a_trace_and_an_explanation_display_their_numbers_and_math():
    net = hg.MLP(2, [(3, "relu"), (1, "sigmoid")], seed=1)
    tr = hg.trace(net, weight=(2, 1, 0))
    page = tr._repr_html_()
    assert f"{tr.engine_value:.12g}" in page and f"{tr.element_sum:.12g}" in page
    parse(re.search(r"<math.*?</math>", page).group())
    shown = explained(net, batch_size=4)
    assert shown._repr_markdown_() == explain(net, "markdown", batch_size=4)
    assert shown._repr_latex_().startswith("$$\\begin{aligned}")
    maths = re.findall(r"<math.*?</math>", shown._repr_html_())
    assert len(maths) == 2 * sum(len(section.equations) for section in derivation(net, 4))
    for block in maths:
        parse(block)
    assert repr(tr).startswith(f"<Trace of {net!r} on N = {len(tr.X)} samples, J = ") and "array(" not in repr(tr)
    assert f"dW2[1,0] = {tr.engine_value:.6g}" in repr(tr)
    assert repr(shown) == (f"<explained {shown.title}: {len(maths) // 2} equations; print() it, or show it in "
                           "Jupyter>") and " at 0x" not in repr(shown)
    with pytest.raises(hg.ConfigError):
        explained("not a network")
    assert np.isfinite(tr.engine_value)
