"""ONNX models carry their preprocessing: onnxruntime on raw rows answers as `handgrad predict` does.

Each test trains with the command line on a CSV file whose columns have very different means and
scales (so a missing standardization would show), exports with `handgrad export`, and compares
onnxruntime's outputs on the raw CSV rows with what `handgrad predict --proba` printed.
"""

import csv
import gzip
import json
import struct

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import handgrad as hg  # noqa: E402
from handgrad import datasets  # noqa: E402
from handgrad.cli import main  # noqa: E402
from handgrad.errors import ConfigError  # noqa: E402
from handgrad.onnx_export import build_model, to_onnx  # noqa: E402

OFFSET = np.array([50.0, -3.0, 1000.0, 0.0])
SCALE = np.array([10.0, 0.1, 300.0, 1.0])


def _write_csv(path, X, y):
    lines = [",".join([f"f{j}" for j in range(X.shape[1])] + ["target"])]
    lines += [",".join([repr(float(v)) for v in row] + [repr(t.item())]) for row, t in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")


def _data(kind, n=150, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 4))
    X = Z * SCALE + OFFSET
    if kind == "regression":
        return X, np.round(Z[:, 0] - 2 * Z[:, 1] + np.sin(Z[:, 2]), 6) + 0.5  # never integer-valued: a regression
    if kind == "binary":
        return X, (Z[:, 0] + Z[:, 1] > 0).astype(int)
    return X, np.argmax(Z[:, :3] + 0.3 * rng.normal(size=(n, 3)), axis=1)


LAYERS = {"softmax": "12:tanh,3:softmax", "binary": "8:leaky_relu(0.1),1:sigmoid", "regression": "10:tanh,1:identity"}


def _train_and_export(tmp_path, capsys, kind, *flags):
    X, y = _data(kind)
    data = tmp_path / "train.csv"
    _write_csv(data, X, y)
    model, graph = tmp_path / "model.npz", tmp_path / "model.onnx"
    status = main(["train", "--csv", str(data), "--target", "target", "--layers", LAYERS[kind], "--epochs", "15",
                   "--optimizer", "adam", "--learning-rate", "0.01", "--out", str(model), "--quiet", *flags])
    assert status == 0, capsys.readouterr().err
    assert main(["export", str(model), "--onnx", str(graph)]) == 0
    capsys.readouterr()
    return data, model, graph


def _predict(capsys, model, rows, proba=True):
    """`handgrad predict` on a CSV file: (header, columns) of its output."""
    assert main(["predict", str(model), str(rows), "--target", "target"] + (["--proba"] if proba else [])) == 0
    table = list(csv.reader(capsys.readouterr().out.splitlines()))
    return table[0], np.array(table[1:], dtype=np.float64)


def _onnx(graph, X):
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": X})))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["softmax", "binary"])
def test_classifier_on_raw_rows_gives_what_handgrad_predict_gives(tmp_path, capsys, kind, dtype):
    data, model, graph = _train_and_export(tmp_path, capsys, kind, "--dtype", dtype)
    header, printed = _predict(capsys, model, data)
    raw, _ = datasets.load_csv(data, "target")  # the rows as the file holds them, not standardized
    got = _onnx(graph, raw.astype(dtype))
    assert header[0] == "prediction" and header[1:] == [f"p_{j}" for j in range(printed.shape[1] - 1)]
    assert got["label"].dtype == np.int64 and got["label"].shape == (len(raw),)
    np.testing.assert_array_equal(got["label"], printed[:, 0].astype(np.int64))
    np.testing.assert_allclose(got["probabilities"], printed[:, 1:], rtol=1e-5, atol=1e-5)
    assert 0 < got["label"].mean() and len(np.unique(got["label"])) > 1  # a trained model, not a constant one
    # without the standardization in the graph, the same rows give other answers: the test can fail
    plain = _onnx(to_onnx(hg.load(model), tmp_path / "plain.onnx", preprocessing=None), raw.astype(dtype))
    assert np.abs(plain["probabilities"] - printed[:, 1:]).max() > 1e-2


def test_regressor_on_raw_rows_gives_what_handgrad_predict_gives(tmp_path, capsys):
    data, model, graph = _train_and_export(tmp_path, capsys, "regression")
    header, printed = _predict(capsys, model, data, proba=False)
    raw, _ = datasets.load_csv(data, "target")
    got = _onnx(graph, raw)
    assert header == ["prediction"] and sorted(got) == ["Y"]
    np.testing.assert_allclose(got["Y"], printed, rtol=1e-5, atol=1e-5)


def test_mnist_pixels_are_scaled_by_1_over_255_in_the_graph(tmp_path, capsys):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 4, 4), dtype=np.uint8)
    labels = (images.reshape(40, -1).mean(axis=1) > 127).astype(np.uint8)
    for name, array in (("t10k-images-idx3-ubyte.gz", images), ("t10k-labels-idx1-ubyte.gz", labels)):
        header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
        (tmp_path / name).write_bytes(gzip.compress(header + array.tobytes()))
    model, graph = tmp_path / "m.npz", tmp_path / "m.onnx"
    assert main(["train", "--mnist", str(tmp_path), "--layers", "6:relu,2:softmax", "--epochs", "3", "--out",
                 str(model), "--quiet"]) == 0
    assert main(["export", str(model), "--onnx", str(graph)]) == 0
    net = hg.load(model)
    pixels = images.reshape(40, -1).astype(np.float64)
    got = _onnx(graph, pixels)
    np.testing.assert_allclose(got["probabilities"], net.predict_proba(pixels / 255.0), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got["label"], net.predict(pixels / 255.0))
    scale = onnx.numpy_helper.to_array(next(t for t in onnx.load(str(graph)).graph.initializer
                                            if t.name == "input_scale"))
    np.testing.assert_array_equal(scale, np.full(16, 255.0))


def test_metadata_props_describe_the_model(tmp_path, capsys):
    _, model, graph = _train_and_export(tmp_path, capsys, "softmax")
    props = {p.key: p.value for p in onnx.load(str(graph)).metadata_props}
    stored = hg.load(model).metadata["preprocessing"]
    assert props["handgrad_version"] == hg.__version__
    assert props["loss"] == "cross_entropy" and props["output_activation"] == "softmax"
    assert json.loads(props["classes"]) == [0, 1, 2]
    assert json.loads(props["outputs"]) == ["Y", "label", "probabilities"]
    preprocessing = json.loads(props["preprocessing"])
    assert preprocessing["mean"] == stored["mean"] and preprocessing["scale"] == stored["scale"]
    assert np.allclose(preprocessing["mean"], OFFSET, atol=0.3 * SCALE)  # the training part's own mean


def test_standardization_is_a_sub_and_a_div_before_the_first_layer(tmp_path, capsys):
    _, model, graph = _train_and_export(tmp_path, capsys, "binary")
    nodes = onnx.load(str(graph)).graph.node
    assert [n.op_type for n in nodes[:3]] == ["Sub", "Div", "MatMul"]
    assert nodes[0].input[0] == "X" and nodes[2].input[0] == nodes[1].output[0]
    plain = build_model(hg.load(model), preprocessing=None)
    assert plain.graph.node[0].op_type == "MatMul"
    assert json.loads({p.key: p.value for p in plain.metadata_props}["preprocessing"]) is None
    assert main(["export", str(model), "--onnx", str(tmp_path / "p.onnx"), "--no-preprocessing"]) == 0
    assert onnx.load(str(tmp_path / "p.onnx")).graph.node[0].op_type == "MatMul"


def test_labels_at_the_threshold_follow_predict(tmp_path):
    """Zero weights give logits exactly 0: predict says class 1 for a sigmoid (z >= 0) and class 0 for a
    softmax tie (the first maximum); the exported graph must decide the same way."""
    X = np.random.default_rng(0).normal(size=(5, 3))
    for layers, expected in (([(1, "sigmoid")], 1), ([(4, "softmax")], 0)):
        net = hg.MLP(3, layers, seed=0)
        net.params[...] = 0.0
        got = _onnx(to_onnx(net, tmp_path / "zero.onnx"), X)
        np.testing.assert_array_equal(got["label"], net.predict(X))
        assert (got["label"] == expected).all()


def test_multilabel_sigmoid_and_custom_classes(tmp_path):
    net = hg.MLP(3, [(5, "tanh"), (3, "sigmoid")], seed=1)
    rng = np.random.default_rng(1)
    net.params[...] = rng.normal(size=net.params.shape)
    X = rng.normal(size=(20, 3))
    got = _onnx(to_onnx(net, tmp_path / "multi.onnx"), X)
    assert got["label"].shape == (20, 3)
    np.testing.assert_array_equal(got["label"], net.predict(X))
    np.testing.assert_allclose(got["probabilities"], net.predict_proba(X), rtol=1e-12)

    binary = hg.MLP(3, [(1, "sigmoid")], seed=2)
    got = _onnx(to_onnx(binary, tmp_path / "named.onnx", classes=[-1, 7]), X)
    np.testing.assert_array_equal(got["label"], np.where(binary.predict(X) == 1, 7, -1))
    with pytest.raises(ConfigError, match="classes"):
        build_model(binary, classes=[1, 2, 3])
    with pytest.raises(ConfigError, match="features"):
        build_model(binary, preprocessing=datasets.Standardizer.constant(5, 2.0))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_scikit_learn_estimators_string_classes_become_the_onnx_labels(tmp_path, n_classes):
    """handgrad.sklearn's classes_ may be strings: the graph's label output is then a STRING tensor, and
    onnxruntime gives what the estimator's predict gives (predict_proba for the probabilities)."""
    pytest.importorskip("sklearn")
    import warnings

    from handgrad.sklearn import MLPClassifier

    X, y = _data("softmax")
    X = (X - OFFSET) / SCALE
    names = np.array(["cat", "dog", "emu"])[:n_classes]
    labels = names[np.minimum(y, n_classes - 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a ConvergenceWarning at 30 epochs)
        model = MLPClassifier(hidden_layer_sizes=(6,), max_iter=30, random_state=0).fit(X, labels)
    path = to_onnx(model.net_, tmp_path / "strings.onnx", classes=model.classes_)
    got = _onnx(path, X)
    np.testing.assert_array_equal(got["label"].astype(str), model.predict(X))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), rtol=1e-10, atol=1e-12)
    metadata = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(metadata["classes"]) == list(names)
    with pytest.raises(ConfigError, match="all integers or all strings"):
        build_model(model.net_, classes=[0, "dog", "emu"][:n_classes])


DAMAGED_PREPROCESSING = {
    "no-scale": {"kind": "standardize", "mean": [0.0, 0.0, 0.0, 0.0]},
    "words": {"kind": "standardize", "mean": [0.0, 0.0, 0.0, 0.0], "scale": ["a", 1, 1, 1]},
    "nested": {"kind": "standardize", "mean": [[0, 0], [0, 0]], "scale": [[1, 1], [1, 1]]},
    "text": {"kind": "standardize", "mean": "0", "scale": "1"},
    "a-list": [1, 2],
    "a-string": "yes",
}


@pytest.mark.parametrize("record", DAMAGED_PREPROCESSING.values(), ids=DAMAGED_PREPROCESSING.keys())
def test_a_damaged_preprocessing_record_is_a_one_line_error(tmp_path, capsys, record):
    """A model file whose stored standardization is damaged (sealed again, or saved with odd metadata):
    predict, export and info print one line and exit 2, and Standardizer.from_dict raises a DataError."""
    from handgrad.errors import DataError

    with pytest.raises(DataError):
        datasets.Standardizer.from_dict(record)
    net = hg.MLP(4, [(3, "tanh"), (2, "softmax")], seed=0)
    model = tmp_path / "damaged.npz"
    net.save(model, preprocessing=record)
    rows = tmp_path / "rows.csv"
    rows.write_text("1,2,3,4\n5,6,7,8\n")
    for argv in (["predict", model, rows], ["export", model, "--onnx", tmp_path / "m.onnx"], ["info", model]):
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("handgrad: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "m.onnx").exists()


def test_a_poisson_regressors_exp_output_is_exported(tmp_path):
    """MLPRegressor(loss='poisson') ends in exp (the log link): the graph ends in an Exp node, and
    onnxruntime gives the estimator's predictions (the export used to refuse the activation)."""
    pytest.importorskip("sklearn")
    import warnings

    from handgrad.sklearn import MLPRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    counts = rng.poisson(np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a ConvergenceWarning at 30 epochs)
        model = MLPRegressor(loss="poisson", hidden_layer_sizes=(5,), max_iter=30, random_state=0).fit(X, counts)
    graph = to_onnx(model.net_, tmp_path / "poisson.onnx")
    assert "Exp" in {node.op_type for node in onnx.load(graph).graph.node}
    np.testing.assert_allclose(_onnx(graph, X)["Y"][:, 0], model.predict(X), rtol=1e-12)
