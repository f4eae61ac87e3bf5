"""handgrad.onnx_export: onnxruntime reproduces forward / predict_proba for every activation, with and without bias."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import handgrad as hg  # noqa: E402
from handgrad.errors import ConfigError, ModelFileError  # noqa: E402
from handgrad.onnx_export import build_model, to_onnx  # noqa: E402

HIDDEN = ["identity", "relu", {"name": "leaky_relu", "slope": 0.2}, "sigmoid", "tanh", "softplus",
          {"name": "elu", "alpha": 0.7}, "gelu", "silu"]


def _name(spec):
    return spec if isinstance(spec, str) else spec["name"]


def _run(path, X, input_name="X"):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {input_name: X})[0]


def _with_random_biases(net, seed=5):
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if layer.b is not None:
            layer.b[...] = rng.normal(size=layer.b.shape)
    return net


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("hidden", HIDDEN, ids=_name)
def test_every_hidden_activation_matches_forward(tmp_path, hidden, bias, dtype):
    net = _with_random_biases(hg.MLP(4, [(6, hidden), (5, hidden), (2, "identity")], bias=bias, seed=0, dtype=dtype))
    X = np.random.default_rng(1).normal(size=(33, 4)).astype(dtype) * 3
    path = to_onnx(net, tmp_path / "model.onnx")
    Y = _run(path, X)
    assert Y.dtype == np.dtype(dtype) and Y.shape == (33, 2)
    np.testing.assert_allclose(Y, net.forward(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("output", ["softmax", "sigmoid"] + HIDDEN, ids=_name)
def test_every_output_activation_matches_predict_proba_or_forward(tmp_path, output, bias):
    net = _with_random_biases(hg.MLP(3, [(8, "tanh"), (4, output)], bias=bias, seed=2, dtype="float32"))
    X = np.random.default_rng(3).normal(size=(17, 3)).astype(np.float32)
    net.to_onnx(tmp_path / "model.onnx")  # the method delegates to to_onnx
    expected = net.predict_proba(X) if net.is_classifier else net.forward(X)
    np.testing.assert_allclose(_run(tmp_path / "model.onnx", X), expected, rtol=1e-5, atol=1e-5)


def test_batch_dimension_is_dynamic_and_names_are_configurable(tmp_path):
    net = hg.MLP(2, [(3, "relu"), (1, "sigmoid")], seed=0)
    model = build_model(net, input_name="features", output_name="probability")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and dims[1].dim_value == 2
    assert [n.op_type for n in model.graph.node][:7] == ["MatMul", "Add", "Relu", "MatMul", "Add", "Sigmoid",
                                                         "Identity"]  # then the label and probabilities outputs
    to_onnx(net, tmp_path / "m.onnx", input_name="features", output_name="probability")
    for n in (1, 7, 100):
        X = np.random.default_rng(n).normal(size=(n, 2))
        np.testing.assert_allclose(_run(tmp_path / "m.onnx", X, "features"), net.forward(X), rtol=1e-12)


def test_uses_the_requested_opset_and_passes_the_checker(tmp_path):
    net = hg.MLP(2, [(3, "gelu"), (2, "softmax")], seed=0, dtype="float32")
    for opset in (13, 17):
        model = build_model(net, opset=opset)
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == opset
    with pytest.raises(ConfigError, match="opset"):
        build_model(net, opset=7)


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    net = hg.MLP(2, [(1, "sigmoid")], seed=0)
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    to_onnx(net, target)
    assert onnx.load(str(target)).producer_name == "handgrad"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_export_command_reads_a_model_file(tmp_path, capsys):
    from handgrad.cli import main

    net = _with_random_biases(hg.MLP(3, [(4, "elu"), (3, "softmax")], seed=0))
    net.save(tmp_path / "model.npz")
    assert main(["export", str(tmp_path / "model.npz"), "--onnx", str(tmp_path / "model.onnx")]) == 0
    message = capsys.readouterr().out
    assert "model.onnx" in message and "(N, 3)" in message
    X = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_allclose(_run(tmp_path / "model.onnx", X), net.predict_proba(X), rtol=1e-12)
    with pytest.raises(ModelFileError):
        main(["export", str(tmp_path / "missing.npz"), "--onnx", str(tmp_path / "x.onnx"), "--debug"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_in_hidden_layers_matches_forward(tmp_path, dtype):
    net = _with_random_biases(hg.MLP(4, [(6, "softmax"), (5, "tanh"), (3, "softmax"), (2, "identity")], seed=0,
                                     dtype=dtype))
    model = build_model(net)
    softmaxes = [node for node in model.graph.node if node.op_type == "Softmax"]
    assert len(softmaxes) == 2  # layers 1 and 3, each over the features of a row
    assert all(attribute.name == "axis" and attribute.i in (1, -1) for node in softmaxes
               for attribute in node.attribute)
    X = np.random.default_rng(1).normal(size=(9, 4)).astype(dtype) * 3
    Y = _run(to_onnx(net, tmp_path / "model.onnx"), X)
    assert Y.dtype == np.dtype(dtype)
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(Y, net.forward(X), rtol=tolerance, atol=tolerance)


def test_rejects_what_is_not_a_network(tmp_path):
    with pytest.raises(ConfigError, match="MLP"):
        to_onnx(object(), tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="differ"):
        build_model(hg.MLP(1, [(1, "identity")]), input_name="X", output_name="X")


def test_handgrad_export_subcommand_writes_an_onnx_file_and_refuses_bad_input(tmp_path, capsys):
    from handgrad.cli import main

    net = hg.MLP(3, [(4, "tanh"), (2, "softmax")], seed=0)
    net.save(tmp_path / "model.npz")
    assert main(["export", str(tmp_path / "model.npz"), "--onnx", str(tmp_path / "model.onnx")]) == 0
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    X = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_allclose(session.run(None, {"X": X})[0], net.forward(X), atol=1e-5)
    assert main(["export", str(tmp_path / "missing.npz"), "--onnx", str(tmp_path / "other.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "other.onnx").exists()


def readme_onnx_snippet():
    """The Python block that follows the README's '**ONNX**' paragraph, as written there."""
    import os
    import re

    with open(os.path.join(os.path.dirname(__file__), os.pardir, "README.md"), encoding="utf-8") as file:
        readme = file.read()
    section = readme[readme.index("**ONNX**"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_readme_onnx_snippet_runs(tmp_path, monkeypatch, dtype):
    code = readme_onnx_snippet()
    assert "to_onnx" in code and "InferenceSession" in code
    monkeypatch.chdir(tmp_path)
    net = hg.MLP(4, [(8, "relu"), (3, "softmax")], seed=0, dtype=dtype)
    X = np.random.default_rng(0).normal(size=(10, 4))  # float64 data, as a user has it
    namespace = {"net": net, "X": X}
    exec(compile(code, "README.md (ONNX snippet)", "exec"), namespace)
    assert namespace["P"].dtype == np.dtype(dtype)
    tolerance = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(namespace["P"], net.predict_proba(X), rtol=tolerance, atol=tolerance)
