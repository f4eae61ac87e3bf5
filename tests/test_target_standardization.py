"""`handgrad train --standardize-targets`: a regressor trained on standardized targets answers in the original units.

The data is a price in the hundreds (docs/cli.md's case): plain SGD at the default rate 0.1 ends at a huge
loss on it, and with the flag it fits. The target mean and scale are the training rows' own; predict,
evaluate, the train report and the ONNX export (judged by onnxruntime) all give answers in the original
units, equal to a computation by hand from the stored records; the refusals are one line, exit status 2.
"""

import json

import numpy as np
import pytest

import handgrad as hg
from handgrad import datasets
from handgrad.cli import main

FAST = ["--epochs", "30", "--no-plots"]
LAYERS = "32:relu,32:relu,1:identity"  # docs/cli.md's network for a price


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _houses(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5] + [0.0, 5.0, -1.0]
    Z = (X - [0.0, 5.0, -1.0]) / [1.0, 2.0, 0.5]
    price = 300 + 80 * Z[:, 0] - 50 * Z[:, 1] + 20 * np.sin(Z[:, 2]) + rng.normal(0, 5, n) + 0.25
    return X, np.round(price, 6) + 1e-3  # never integer-valued: a regression


def _write_csv(path, X, y):
    lines = ["a,b,c,price"] + [",".join(repr(float(v)) for v in [*row, t]) for row, t in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def houses(tmp_path):
    X, y = _houses()
    return X, y, _write_csv(tmp_path / "houses.csv", X, y)


@pytest.fixture
def trained(tmp_path, capsys, houses):
    X, y, path = houses
    out = tmp_path / "price.npz"
    status, _, err = run(capsys, "train", "--csv", path, "--target", "price", "--layers", LAYERS, *FAST,
                         "--standardize-targets", "--out", out)
    assert status == 0, err
    return X, y, path, out


def _by_hand(model, X):
    """The model's answer in the original units, from its stored records (not through handgrad's helpers)."""
    net = hg.load(model)
    features, targets = net.metadata["preprocessing"], net.metadata["target_preprocessing"]
    standardized = (X - np.array(features["mean"])) / np.array(features["scale"])
    return net.predict(standardized).reshape(len(X), -1) * np.array(targets["scale"]) + np.array(targets["mean"])


def _predicted(capsys, model, path):
    status, out, err = run(capsys, "predict", model, path, "--target", "price")
    assert status == 0, err
    return np.array([float(line) for line in out.split()[1:]])


def test_the_flag_fits_a_price_that_plain_sgd_does_not(tmp_path, capsys, houses, trained):
    _, _, path = houses
    plain = tmp_path / "plain.npz"
    status, _, err = run(capsys, "train", "--csv", path, "--target", "price", "--layers", LAYERS, *FAST,
                         "--out", plain)
    assert status == 0, err
    assert hg.load(plain).metadata["metrics"]["test"]["r2"] < 0.5  # the huge-loss case of docs/cli.md
    assert hg.load(trained[3]).metadata["metrics"]["test"]["r2"] > 0.9


def test_the_target_scaling_is_the_training_rows_own(trained):
    X, y, _, model = trained
    record = hg.load(model).metadata["target_preprocessing"]
    y_train = datasets.train_validation_test_split(X, y, 0.2, 0.2, seed=0).y_train
    assert record["kind"] == "standardize"
    np.testing.assert_allclose(record["mean"], [y_train.mean()], rtol=1e-12)
    np.testing.assert_allclose(record["scale"], [y_train.std()], rtol=1e-12)
    assert abs(record["mean"][0] - y.mean()) > 1e-9  # not the whole data's mean
    assert hg.load(model).metadata["training"]["standardize_targets"] is True


def test_predict_answers_in_the_original_units(capsys, trained):
    X, y, path, model = trained
    predicted = _predicted(capsys, model, path)
    np.testing.assert_allclose(predicted, _by_hand(model, X)[:, 0], rtol=1e-12)
    assert 150 < predicted.mean() < 450  # prices, not standardized values
    features, targets = datasets.model_standardizers(hg.load(model))  # the Python helper agrees
    again = targets.inverse_transform(hg.load(model).predict(features.transform(X)).reshape(-1, 1))[:, 0]
    np.testing.assert_allclose(again, predicted, rtol=1e-12)


def test_evaluate_reports_original_units(capsys, trained):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    X, y, path, model = trained
    status, out, err = run(capsys, "evaluate", model, "--csv", path, "--target", "price", "--json")
    assert status == 0, err
    report = json.loads(out)
    A = _by_hand(model, X)[:, 0]
    assert report["mse"] == pytest.approx(sklearn_metrics.mean_squared_error(y, A), rel=1e-9)
    assert report["mae"] == pytest.approx(sklearn_metrics.mean_absolute_error(y, A), rel=1e-9)
    assert report["r2"] == pytest.approx(sklearn_metrics.r2_score(y, A), rel=1e-9)
    targets = hg.load(model).metadata["target_preprocessing"]  # the loss: the objective on standardized targets
    assert report["loss"] == pytest.approx(0.5 * report["mse"] / targets["scale"][0] ** 2, rel=1e-9)


def test_the_train_report_equals_evaluate_on_the_same_rows(tmp_path, capsys, houses):
    X, y, path = houses
    out = tmp_path / "price.npz"
    status, printed, err = run(capsys, "train", "--csv", path, "--target", "price", "--layers", LAYERS, *FAST,
                               "--standardize-targets", "--out", out)
    assert status == 0, err
    split = datasets.train_validation_test_split(X, y, 0.2, 0.2, seed=0)
    test_csv = _write_csv(tmp_path / "test_rows.csv", split.X_test, split.y_test)
    status, text, err = run(capsys, "evaluate", out, "--csv", test_csv, "--target", "price", "--json")
    assert status == 0, err
    evaluated, stored = json.loads(text), hg.load(out).metadata["metrics"]["test"]
    for key in ("samples", "loss", "mse", "mae", "r2"):
        assert stored[key] == pytest.approx(evaluated[key], rel=1e-9), key
    assert f"mse {evaluated['mse']:.4f}, r2 {evaluated['r2']:.4f}" in printed


def test_onnx_export_answers_as_predict_on_raw_rows(tmp_path, capsys, trained):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    X, _, path, model = trained
    onnx_path = tmp_path / "price.onnx"
    status, printed, err = run(capsys, "export", model, "--onnx", onnx_path)
    assert status == 0, err
    assert "original target units" in printed
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    dtype = np.float32 if session.get_inputs()[0].type == "tensor(float)" else np.float64
    Y = session.run(["Y"], {"X": X.astype(dtype)})[0]
    np.testing.assert_allclose(Y[:, 0], _predicted(capsys, model, path), rtol=1e-5)
    import onnx

    graph = onnx.load(str(onnx_path))
    kinds = [node.op_type for node in graph.graph.node]
    assert kinds[-3:] == ["Mul", "Add", "Identity"]
    props = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(props["target_preprocessing"])["mean"] == hg.load(model).metadata["target_preprocessing"]["mean"]


def test_export_without_preprocessing_leaves_the_outputs_standardized(tmp_path, capsys, trained):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    X, _, _, model = trained
    net = hg.load(model)
    onnx_path = tmp_path / "bare.onnx"
    assert run(capsys, "export", model, "--onnx", onnx_path, "--no-preprocessing")[0] == 0
    features = net.metadata["preprocessing"]
    rows = (X - np.array(features["mean"])) / np.array(features["scale"])
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    dtype = np.float32 if session.get_inputs()[0].type == "tensor(float)" else np.float64
    Y = session.run(["Y"], {"X": rows.astype(dtype)})[0]
    np.testing.assert_allclose(Y[:, 0], net.predict(rows).reshape(-1), rtol=1e-5, atol=1e-6)


def test_init_from_reuses_the_stored_target_scaling(tmp_path, capsys, trained):
    X, y, _, model = trained
    shifted = _write_csv(tmp_path / "shifted.csv", X, y + 1000.0)  # a refit would move the mean by 1000
    out = tmp_path / "again.npz"
    status, _, err = run(capsys, "train", "--csv", shifted, "--target", "price", "--init-from", model,
                         "--epochs", "1", "--no-plots", "--out", out)
    assert status == 0, err
    assert hg.load(out).metadata["target_preprocessing"] == hg.load(model).metadata["target_preprocessing"]


def test_a_config_file_sets_it(tmp_path, capsys, houses):
    _, _, path = houses
    config = tmp_path / "run.toml"
    config.write_text("standardize_targets = true\nepochs = 2\n")
    out = tmp_path / "m.npz"
    status, _, err = run(capsys, "train", "--config", config, "--csv", path, "--target", "price", "--layers",
                         "4:tanh,1:identity", "--no-plots", "--out", out)
    assert status == 0, err
    assert "target_preprocessing" in hg.load(out).metadata


def test_a_model_without_the_flag_is_written_as_before(tmp_path, capsys, houses):
    _, _, path = houses
    paths = {}
    for name, extra in (("plain", []), ("flag", ["--standardize-targets"])):
        paths[name] = tmp_path / f"{name}.npz"
        status, _, err = run(capsys, "train", "--csv", path, "--target", "price", "--layers", "4:tanh,1:identity",
                             "--epochs", "2", "--no-plots", "--out", paths[name], *extra)
        assert status == 0, err
    plain, flag = (dict(hg.load(paths[name]).metadata) for name in ("plain", "flag"))
    assert "target" not in json.dumps(sorted(plain)) and "standardize_targets" not in plain["training"]
    flag.pop("target_preprocessing")
    flag["training"].pop("standardize_targets")
    for record in (plain, flag):
        record.pop("metrics")
        record["training"].pop("init_from", None)
    assert plain == flag  # the flag adds its two keys and changes nothing else in the metadata
    assert json.dumps(plain, sort_keys=True) == json.dumps(flag, sort_keys=True)


def _one_line_refusal(capsys, *argv):
    status, out, err = run(capsys, *argv)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--standardize-targets" in lines[0], err
    return lines[0]


def test_classifiers_are_refused(tmp_path, capsys):
    X, y = datasets.make_blobs(60, noise=0.4, n_classes=3, seed=1)
    path = tmp_path / "blobs.csv"
    path.write_text("\n".join(["a,b,label"] + [f"{float(a)!r},{float(b)!r},{t}" for (a, b), t in zip(X, y)]) + "\n")
    line = _one_line_refusal(capsys, "train", "--csv", path, "--layers", "4:tanh,3:softmax", "--no-plots",
                             "--epochs", "1", "--standardize-targets")
    assert "softmax" in line


def test_poisson_outputs_are_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    counts = rng.poisson(np.exp(0.5 * X[:, 0]))
    path = tmp_path / "counts.csv"
    path.write_text("\n".join(["a,b,n"] + [f"{float(a)!r},{float(b)!r},{c}" for (a, b), c in zip(X, counts)]) + "\n")
    line = _one_line_refusal(capsys, "train", "--csv", path, "--layers", "4:tanh,1:exp", "--no-plots",
                             "--epochs", "1", "--standardize-targets")
    assert "exp" in line


def test_streamed_targets_are_refused(tmp_path, capsys):
    X, y = _houses(40)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    line = _one_line_refusal(capsys, "train", "--npy", tmp_path / "X.npy", "--npy-targets", tmp_path / "y.npy",
                             "--layers", "4:tanh,1:identity", "--no-plots", "--epochs", "1", "--standardize-targets")
    assert "--npy-targets" in line


def test_init_from_a_model_trained_on_raw_targets_is_refused(tmp_path, capsys, houses):
    _, _, path = houses
    plain = tmp_path / "plain.npz"
    assert run(capsys, "train", "--csv", path, "--target", "price", "--layers", "4:tanh,1:identity",
               "--epochs", "1", "--no-plots", "--out", plain)[0] == 0
    _one_line_refusal(capsys, "train", "--csv", path, "--target", "price", "--init-from", plain, "--epochs", "1",
                      "--no-plots", "--standardize-targets")


def test_a_resumed_run_is_the_uninterrupted_one(tmp_path, capsys, houses):
    _, _, path = houses
    common = ["train", "--csv", path, "--target", "price", "--layers", "8:tanh,1:identity", "--no-plots",
              "--standardize-targets"]
    whole, resumed, checkpoint = tmp_path / "whole.npz", tmp_path / "resumed.npz", tmp_path / "run.ckpt"
    assert run(capsys, *common, "--epochs", "4", "--out", whole)[0] == 0
    assert run(capsys, *common, "--epochs", "2", "--checkpoint", checkpoint)[0] == 0
    status, _, err = run(capsys, *common, "--epochs", "4", "--resume", checkpoint, "--out", resumed)
    assert status == 0, err
    a, b = hg.load(whole), hg.load(resumed)
    np.testing.assert_array_equal(a.params, b.params)
    assert a.metadata["target_preprocessing"] == b.metadata["target_preprocessing"]
    assert a.metadata["metrics"] == b.metadata["metrics"]


def test_a_resume_without_the_flag_is_refused_naming_it(tmp_path, capsys, houses):
    _, _, path = houses
    common = ["train", "--csv", path, "--target", "price", "--layers", "8:tanh,1:identity", "--no-plots"]
    checkpoint = tmp_path / "run.ckpt"
    assert run(capsys, *common, "--standardize-targets", "--epochs", "2", "--checkpoint", checkpoint)[0] == 0
    before = checkpoint.read_bytes()
    status, out, err = run(capsys, *common, "--epochs", "4", "--resume", checkpoint)
    assert status == 2 and err.count("\n") == 1
    assert "and a standardization of the targets (--standardize-targets)" in err
    assert checkpoint.read_bytes() == before


def test_curvature_measures_the_objective_trained_on(capsys, trained):
    from handgrad.curvature import sharpness

    X, y, path, model = trained
    status, out, err = run(capsys, "curvature", model, "--csv", path, "--target", "price", "--json")
    assert status == 0, err
    net = hg.load(model)
    features, targets = datasets.model_standardizers(net)
    by_hand = sharpness(net.astype("float64"), features.transform(X), targets.transform(y.reshape(-1, 1))[:, 0], 1,
                        "lanczos", seed=0, warn=False)
    assert json.loads(out)["eigenvalues"][0] == pytest.approx(by_hand.eigenvalues[0], rel=1e-6)
    raw = sharpness(net.astype("float64"), features.transform(X), y, 1, "lanczos", seed=0, warn=False)
    assert abs(raw.eigenvalues[0] - by_hand.eigenvalues[0]) > 0.5 * by_hand.eigenvalues[0]  # the targets matter
