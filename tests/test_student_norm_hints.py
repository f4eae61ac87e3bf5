"""check-student names each of the norms' common wrong backward passes (docs/derivations.md, "Batch norm,
backward, entry by entry", "The common wrong versions") with its own hint, for batch norm and layer norm."""

import numpy as np
import pytest

import handgrad as hg
from handgrad.student import OnlyMeanPath, OnlyVariancePath, StatisticsAsConstants, _data_loss_copy


def _student(mistake):
    """A student's backprop (tanh hidden layers, identity output, half squared error) whose norms' backward
    is right (mistake None) or one of the three wrong versions, written as a student would write them."""

    def backprop(weights, biases, activations, X, T, loss, norms):
        A, kept = [X], []
        for W, b, norm in zip(weights, biases, norms):
            Z = A[-1] @ W + (0 if b is None else b)
            xhat = std = None
            if norm is not None:
                axis = 0 if norm["kind"] == "batch" else 1
                mu = Z.mean(axis, keepdims=True)
                std = np.sqrt(((Z - mu) ** 2).mean(axis, keepdims=True) + norm["eps"])
                xhat = (Z - mu) / std
                Z = norm["gamma"] * xhat + norm["beta"]
            kept.append((Z, xhat, std))
            A.append(np.tanh(Z) if len(A) < len(weights) else Z)
        dA, items = (A[-1] - T) / X.shape[0], []
        for k in reversed(range(len(weights))):
            H, xhat, std = kept[k]
            dH = dA * (1 - np.tanh(H) ** 2) if k < len(weights) - 1 else dA
            if norms[k] is None:
                dZ = dH
                items.append((A[k].T @ dZ, dZ.sum(0)))
            else:
                axis = 0 if norms[k]["kind"] == "batch" else 1
                G = dH * norms[k]["gamma"]
                mean_term = G.mean(axis, keepdims=True)
                variance_term = xhat * (G * xhat).mean(axis, keepdims=True)
                dZ = {None: G - mean_term - variance_term, "constants": G, "mean only": G - mean_term,
                      "variance only": G - variance_term}[mistake] / std
                items.append((A[k].T @ dZ, None, (dH * xhat).sum(0), dH.sum(0)))
            dA = dZ @ weights[k].T
        return items[::-1]

    return backprop


EXPECTED = {  # mistake -> (words of its hint, the missing term by kind)
    "constants": ("mean and variance treated as constants", {"batch": "dZ = dZhat * gamma / std",
                                                             "layer": "dZ = dZhat * gamma / std"}),
    "mean only": ("only the mean path, the variance treated as a constant", {"batch": "the term - xhat * dgamma/N "
                                                                                      "(batch norm) is missing",
                                                                             "layer": "the term - xhat * rowmean(G * "
                                                                                      "xhat) (layer norm) is missing"}),
    "variance only": ("only the variance path, the mean treated as a constant", {"batch": "the term - dbeta/N (batch "
                                                                                          "norm) is missing",
                                                                                 "layer": "the term - rowmean(G) "
                                                                                          "(layer norm) is missing"}),
}


def _problem(kind, seed=0):
    net = hg.MLP(3, [f"4:tanh:{kind}norm", "3:tanh", (2, "identity")], seed=seed)
    rng = np.random.default_rng(seed + 1)
    return net, rng.normal(size=(6, 3)), rng.normal(size=(6, 2))


@pytest.mark.parametrize("kind", ["batch", "layer"])
def test_the_right_student_passes(kind):
    net, X, T = _problem(kind)
    report = hg.check_gradients(_student(None), net, X, T)
    assert report.ok, str(report)


@pytest.mark.parametrize("kind", ["batch", "layer"])
@pytest.mark.parametrize("mistake", ["constants", "mean only", "variance only"])
def test_each_wrong_version_gets_its_own_hint(kind, mistake):
    net, X, T = _problem(kind)
    report = hg.check_gradients(_student(mistake), net, X, T)
    assert not report.ok
    assert report["W1"].ok is False
    assert report["gamma1"].ok and report["beta1"].ok and report["W2"].ok and report["W3"].ok  # above the norm
    hint = report["W1"].hint
    words, missing = EXPECTED[mistake]
    assert words in hint and missing[kind] in hint, hint
    for other, (other_words, _) in EXPECTED.items():  # and no other mistake's words
        assert other == mistake or other_words not in hint, hint
    assert "no usual mistake matches" not in str(report)
    section = "'Batch norm, backward, entry by entry'" if kind == "batch" else "'Layer norm'"
    assert f"docs/derivations.md, {section}" in hint
    if mistake == "variance only":  # in the norm's own notation: N samples (batch) or D features (layer)
        assert ("dmu/dz_m = 1/N" if kind == "batch" else "dmu/dz_m = 1/D") in hint, hint


@pytest.mark.parametrize("mistake", [StatisticsAsConstants, OnlyMeanPath, OnlyVariancePath])
@pytest.mark.parametrize("kind", ["batch", "layer"])
def test_each_planted_mistake_is_a_wrong_gradient(mistake, kind):
    """The planted versions are wrong (central differences disagree) while the unplanted copy is right."""
    net, X, T = _problem(kind, seed=2)
    assert hg.gradcheck(_data_loss_copy(net, constant_statistics=(1,), mistake=mistake), X, T)["W1"] > 1e-3
    assert hg.gradcheck(_data_loss_copy(net), X, T).max_error < 1e-6


@pytest.mark.parametrize("mistake", ["constants", "mean only", "variance only"])
def test_the_planted_mistakes_equal_the_formulas_in_the_derivation(mistake):
    """The engine's planted batch-norm backward is exactly the wrong version the student wrote."""
    net, X, T = _problem("batch", seed=3)
    planted = {"constants": StatisticsAsConstants, "mean only": OnlyMeanPath,
               "variance only": OnlyVariancePath}[mistake]
    _, grads = _data_loss_copy(net, constant_statistics=(1,), mistake=planted).loss_and_grad(X, T)
    student = _student(mistake)(*_student_arguments(net), X, T, "half_squared_error", _norms(net))
    np.testing.assert_allclose(student[0][0], grads[0][0], rtol=1e-9, atol=1e-12)


def _student_arguments(net):
    return ([layer.W.copy() for layer in net.layers], [None if layer.b is None else layer.b.copy()
                                                       for layer in net.layers],
            [layer.activation.name for layer in net.layers])


def _norms(net):
    return [None if layer.norm is None else {"kind": layer.norm.kind, "gamma": layer.norm.gamma.copy(),
                                             "beta": layer.norm.beta.copy(), "eps": layer.norm.eps}
            for layer in net.layers]


def test_cli_check_student_names_the_mean_only_mistake(tmp_path, capsys):
    import inspect
    import textwrap

    from handgrad.cli import main

    source = textwrap.dedent(inspect.getsource(_student))
    path = tmp_path / "mean_only.py"
    path.write_text("import numpy as np\n\n" + source + "\n\nbackprop = _student('mean only')\n")
    code = main(["check-student", str(path), "--layers", "4:tanh:batchnorm,2:identity", "--inputs", "3"])
    out = capsys.readouterr().out
    assert code == 1 and "only the mean path" in out and "- xhat * dgamma/N" in out, out


@pytest.mark.parametrize("kind, right, wrong", [
    ("layer", "rowmean(G * xhat)", "dbeta/N"),
    ("batch", "dbeta/N", "rowmean"),
])
def test_the_constant_statistics_hint_gives_the_right_backward_of_the_norm_it_found(kind, right, wrong):
    net = hg.MLP(3, [f"4:tanh:{kind}norm", (2, "identity")], seed=0)
    rng = np.random.default_rng(1)
    report = hg.check_gradients(_student("constants"), net, rng.normal(size=(6, 3)), rng.normal(size=(6, 2)))
    text = str(report)
    assert "mean and variance treated as constants" in text and right in text and wrong not in text, text
