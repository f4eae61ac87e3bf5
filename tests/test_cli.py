"""The `handgrad` command end to end: every subcommand, and every bad input refused cleanly."""

import gzip
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import handgrad as hg
from handgrad.cli import main

FAST = ["--epochs", "5", "--no-plots"]


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def write_csv(path, X, y, header=True):
    lines = [",".join([f"x{j}" for j in range(X.shape[1])] + ["label"])] if header else []
    lines += [",".join([repr(float(v)) for v in row] + [str(t)]) for row, t in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def blob_csv(tmp_path):
    from handgrad import datasets

    X, y = datasets.make_blobs(90, noise=0.4, n_classes=3, seed=1)
    path = tmp_path / "blobs.csv"
    write_csv(path, X, y)
    return path


@pytest.fixture
def trained(tmp_path, capsys, blob_csv):
    model = tmp_path / "model.npz"
    status, out, err = run(capsys, "train", "--csv", blob_csv, "--target", "label", "--layers", "8:tanh,3:softmax",
                           "--epochs", "30", "--out", model, "--no-plots")
    assert status == 0, err
    return model


def test_default_run_trains_a_2d_set(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys)
    assert status == 0 and err == ""
    accuracy = float(out.split("test accuracy on 80 held-out points: ")[1].split()[0])
    assert accuracy > 0.9
    assert list(tmp_path.iterdir()) == []  # the demo writes no files unless asked


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "info", "gradcheck"])
def test_help_of_every_subcommand(command):
    result = subprocess.run([sys.executable, "-m", "handgrad", command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert f"usage: handgrad {command}" in result.stdout


def test_train_writes_model_and_run_folder_with_pictures(capsys, tmp_path, blob_csv):
    pytest.importorskip("matplotlib")
    model, run_dir = tmp_path / "m.npz", tmp_path / "run"
    status, out, err = run(capsys, "train", "--csv", blob_csv, "--target", "label", "--layers", "8:tanh,3:softmax",
                           "--epochs", "12", "--out", model, "--run-dir", run_dir, "--seed", "2")
    assert status == 0, err
    assert "model written to" in out
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == 12
    csv_lines = (run_dir / "history.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,") and len(csv_lines) == 13
    for picture in ("loss.png", "weights.png", "confusion_matrix.png", "decision_boundary.png"):
        data = (run_dir / picture).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
    loaded = hg.load(model)
    assert loaded.metadata["training"]["epochs"] == 12
    assert loaded.metadata["data"]["source"] == "csv"
    assert loaded.metadata["preprocessing"]["kind"] == "standardize"


def test_evaluate_predict_info_gradcheck_on_a_trained_model(capsys, tmp_path, trained, blob_csv):
    status, out, err = run(capsys, "evaluate", trained, "--csv", blob_csv, "--target", "label", "--json")
    assert status == 0, err
    report = json.loads(out)
    assert report["samples"] == 90 and report["accuracy"] > 0.8
    assert np.sum(report["confusion_matrix"]) == 90

    status, out, err = run(capsys, "evaluate", trained, "--csv", blob_csv, "--target", "label")
    assert status == 0 and "confusion matrix" in out

    predictions = tmp_path / "pred.csv"
    status, out, err = run(capsys, "predict", trained, blob_csv, "--target", "label", "--out", predictions,
                           "--proba")
    assert status == 0, err
    lines = predictions.read_text().splitlines()
    assert lines[0] == "prediction,p_0,p_1,p_2" and len(lines) == 91
    from handgrad import datasets

    X, y = datasets.load_csv(blob_csv, "label")
    net = hg.load(trained)
    expected = net.predict(datasets.Standardizer.from_dict(net.metadata["preprocessing"]).transform(X))
    assert [int(line.split(",")[0]) for line in lines[1:]] == expected.tolist()
    probabilities = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1)

    np.save(tmp_path / "features.npy", X)  # NPY in, CSV on stdout
    status, out, err = run(capsys, "predict", trained, tmp_path / "features.npy")
    assert status == 0 and out.splitlines()[1:] == [str(v) for v in expected]

    status, out, err = run(capsys, "info", trained)
    assert status == 0
    assert "total parameters: 51" in out and "(2, 8)" in out and "epochs: 30" in out

    status, out, err = run(capsys, "gradcheck", "--model", trained)
    assert status == 0 and "PASS" in out and "W2" in out


def test_gradcheck_from_architecture_flags(capsys):
    status, out, err = run(capsys, "gradcheck", "--layers", "2:relu,2:relu,1:sigmoid", "--no-bias",
                           "--loss", "half_squared_error")
    assert status == 0, err
    assert "W3" in out and "b1" not in out and "PASS" in out


@pytest.mark.parametrize("gz", [True, False])
def test_train_on_idx_files_written_by_the_test(capsys, tmp_path, gz):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60).astype(np.uint8)
    images = np.zeros((60, 6, 6), np.uint8)
    for k in range(3):  # class k lights up rows 2k and 2k+1: learnable
        images[labels == k, 2 * k:2 * k + 2, :] = 200
    images += rng.integers(0, 40, images.shape).astype(np.uint8)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, array in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        data = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
        (folder / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)
    model = tmp_path / "mnist.npz"
    status, out, err = run(capsys, "train", "--mnist", folder, "--layers", "16:relu,3:softmax", "--epochs", "40",
                           "--learning-rate", "0.5", "--out", model, "--no-plots")
    assert status == 0, err
    net = hg.load(model)
    assert net.n_inputs == 36 and net.metadata["preprocessing"]["scale"][0] == 255.0
    status, out, err = run(capsys, "evaluate", model, "--mnist", folder, "--json")
    assert status == 0 and json.loads(out)["accuracy"] > 0.9


def test_train_from_toml_config_with_list_layers(capsys, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[model]\nlayers = [[6, "tanh"], [1, "sigmoid"]]\n\n[training]\nepochs = 3\nlr = 0.05\n\n'
                      '[data]\ndata = "xor"\nsamples = 50\n')
    model = tmp_path / "m.npz"
    status, out, err = run(capsys, "train", "--config", config, "--out", model, "--epochs", "4")
    assert status == 0, err
    net = hg.load(model)
    assert [layer.n_out for layer in net.layers] == [6, 1]
    assert net.metadata["training"]["epochs"] == 4  # the command line wins over the file
    assert net.metadata["training"]["learning_rate"] == 0.05
    assert net.metadata["data"]["name"] == "xor"


def test_train_regression_from_npz_and_npy(capsys, tmp_path):
    from handgrad import datasets

    X, y = datasets.make_regression1d(80, seed=0)
    np.savez(tmp_path / "r.npz", X=X, y=y)
    np.save(tmp_path / "r.npy", np.column_stack([y, X]))
    for flags in (["--npz", tmp_path / "r.npz"], ["--npy", tmp_path / "r.npy", "--target", "0"]):
        status, out, err = run(capsys, "train", *flags, *FAST, "--out", tmp_path / "reg.npz", "--force")
        assert status == 0, err
        assert "mse" in out
    assert hg.load(tmp_path / "reg.npz").output_activation.name == "identity"


# ---------------------------------------------------------------- bad input: one line, status 2, files untouched
@pytest.fixture
def existing(tmp_path):
    """A model file and a predictions file that no failing command may touch."""
    model = tmp_path / "keep.npz"
    hg.MLP(2, [(3, "tanh"), (1, "sigmoid")], seed=0).save(model)
    output = tmp_path / "keep.csv"
    output.write_text("precious\n")
    return model, output, model.read_bytes(), output.read_bytes()


def bad_files(tmp_path):
    (tmp_path / "nan.csv").write_text("a,b,label\n1,2,0\nnan,3,1\n")
    (tmp_path / "empty.csv").write_text("a,b,label\n")
    (tmp_path / "text.csv").write_text("a,b,label\n1,two,0\n")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x81\x00\x9c")
    (tmp_path / "labels.csv").write_text("a,b,label\n1,2,0\n3,4,5\n")
    (tmp_path / "three.csv").write_text("a,b,c\n1,2,3\n")
    np.savez(tmp_path / "mismatch.npz", X=np.ones((5, 2)), y=np.zeros(4))


BAD_TRAIN = [
    (["--csv", "{tmp}/absent.csv"], "does not exist"),
    (["--csv", "{tmp}/binary.csv"], "not a readable text CSV"),
    (["--csv", "{tmp}/text.csv"], "'two' is not a number"),
    (["--csv", "{tmp}/nan.csv"], "NaN or infinity"),
    (["--csv", "{tmp}/empty.csv"], "empty data set"),
    (["--csv", "{tmp}/labels.csv", "--layers", "4:tanh,3:softmax"], "label 5 is out of range"),
    (["--npz", "{tmp}/mismatch.npz"], "mismatched lengths"),
    (["--layers", "4:relux,1:sigmoid"], "unknown activation 'relux'. Did you mean 'relu'"),
    (["--loss", "cross_entropi"], "Did you mean 'cross_entropy'"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--learning-rate", "-0.1"], "--learning-rate must be a positive number"),
    (["--epochs", "0"], "--epochs must be a positive integer"),
    (["--data", "moon"], "Did you mean 'moons'"),
    (["--data", "xor", "--csv", "{tmp}/nan.csv"], "give one data source"),
    (["--mnist", "{tmp}"], "no t10k images file"),
    (["--config", "{tmp}/absent.toml"], "config file"),
]


@pytest.mark.parametrize("flags, message", BAD_TRAIN)
def test_bad_train_input(capsys, tmp_path, existing, flags, message):
    bad_files(tmp_path)
    model, _, model_bytes, _ = existing
    flags = [flag.replace("{tmp}", str(tmp_path)) for flag in flags]
    status, out, err = run(capsys, "train", *FAST, *flags, "--out", model, "--force")
    assert status == 2
    assert message in err
    assert err.startswith("handgrad: error: ") and err.count("\n") == 1  # one line, no traceback
    assert model.read_bytes() == model_bytes


def test_bad_config_setting(capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("epoch = 3\n")
    status, out, err = run(capsys, "train", "--config", config)
    assert status == 2 and "unknown setting 'epoch'. Did you mean 'epochs'" in err
    config.write_text("epochs = \n")
    status, out, err = run(capsys, "train", "--config", config)
    assert status == 2 and "not valid TOML" in err


def test_switches_in_a_config_file_apply_and_the_command_line_still_wins(capsys, tmp_path):
    """--quiet, --verbose (and --distributed) are switches: a config's `quiet = true` used to be dropped silently,
    because the parser's False default looked like a value given on the command line."""
    config = tmp_path / "c.toml"
    config.write_text('data = "xor"\nsamples = 40\nepochs = 3\nquiet = true\n')
    status, out, err = run(capsys, "train", "--config", config, "--out", tmp_path / "a.npz")
    assert status == 0 and out == "" and err == ""
    config.write_text('data = "xor"\nsamples = 40\nepochs = 3\nverbose = true\n')
    status, out, err = run(capsys, "train", "--config", config, "--out", tmp_path / "b.npz")
    assert status == 0 and "epoch 3" in err and "model written to" in out
    status, out, err = run(capsys, "train", "--config", config, "--quiet", "--out", tmp_path / "c.npz")
    assert status == 0 and out == ""  # the command line's --quiet next to the file's verbose
    config.write_text('data = "xor"\nquiet = "yes"\n')
    status, out, err = run(capsys, "train", "--config", config)
    assert status == 2 and "'quiet' is a switch; write quiet = true or quiet = false" in err
    config.write_text('data = "xor"\nbias = 0\n')
    status, out, err = run(capsys, "train", "--config", config)
    assert status == 2 and "'bias' is a switch" in err


def test_existing_model_is_not_overwritten_without_force(capsys, existing):
    model, _, model_bytes, _ = existing
    status, out, err = run(capsys, "train", *FAST, "--out", model)
    assert status == 2 and "already exists; pass --force" in err
    assert model.read_bytes() == model_bytes
    status, out, err = run(capsys, "train", *FAST, "--out", model, "--force")
    assert status == 0 and model.read_bytes() != model_bytes


def test_predict_on_a_table_like_the_training_one_leaves_the_models_target_out(capsys, tmp_path, trained, blob_csv):
    from handgrad import datasets

    names, table = datasets.load_csv_table(blob_csv)
    features = tmp_path / "features.csv"
    rows = [",".join(names[:-1])] + [",".join(repr(float(v)) for v in row[:-1]) for row in table]
    features.write_text("\n".join(rows) + "\n")
    status, expected, err = run(capsys, "predict", trained, features, "--proba")
    assert status == 0 and err == ""
    status, out, err = run(capsys, "predict", trained, blob_csv, "--proba")  # its header has the target, 'label'
    assert status == 0 and out == expected
    assert err.count("\n") == 1 and "column 'label' is the model's target, left out" in err
    status, out, err = run(capsys, "predict", trained, blob_csv, "--proba", "--target", "label")
    assert status == 0 and out == expected and err == ""
    renamed = tmp_path / "renamed.csv"  # another name: every column is a feature, and one too many is an error
    renamed.write_text(blob_csv.read_text().replace("label", "y", 1))
    status, out, err = run(capsys, "predict", trained, renamed)
    assert status == 2 and "has 3 features but the model expects 2" in err


def test_predict_on_the_table_of_a_model_trained_on_a_csvs_last_column(capsys, tmp_path, blob_csv):
    """train's default target is a CSV's last column (the model stores no name); predict on that table leaves the
    last column out, as evaluate reads it as the target."""
    model = tmp_path / "last.npz"
    status, out, err = run(capsys, "train", "--csv", blob_csv, "--layers", "5:tanh,3:softmax", *FAST, "--out", model)
    assert status == 0, err
    status, with_target, err = run(capsys, "predict", model, blob_csv)
    assert status == 0 and "the last column is left out" in err and err.count("\n") == 1
    status, expected, err = run(capsys, "predict", model, blob_csv, "--target", "label")
    assert status == 0 and with_target == expected and err == ""


def test_info_shows_the_models_regularization(capsys, tmp_path, blob_csv):
    model = tmp_path / "reg.npz"
    status, out, err = run(capsys, "train", "--csv", blob_csv, "--target", "label", "--layers",
                           "8:tanh,6:tanh,3:softmax", "--l2", "0.001", "--dropout", "0.25,0", *FAST, "--out", model)
    assert status == 0, err
    status, out, err = run(capsys, "info", model)
    assert status == 0 and "regularization: l2 0.001, dropout 0.25 after layer 1\n" in out
    status, out, err = run(capsys, "train", "--csv", blob_csv, "--target", "label", *FAST, "--out", model, "--force")
    status, out, err = run(capsys, "info", model)
    assert status == 0 and "regularization" not in out  # nothing to say for a plain network


def test_bad_predict_and_evaluate_input(capsys, tmp_path, existing):
    bad_files(tmp_path)
    model, output, model_bytes, output_bytes = existing
    cases = [
        (["predict", model, tmp_path / "three.csv", "--out", output], "has 3 features but the model expects 2"),
        (["predict", model, tmp_path / "nan.csv", "--target", "label", "--out", output], "NaN or infinity"),
        (["predict", model, tmp_path / "absent.csv", "--out", output], "does not exist"),
        (["predict", tmp_path / "absent.npz", tmp_path / "three.csv", "--out", output], "does not exist"),
        (["evaluate", model, "--csv", tmp_path / "labels.csv", "--target", "label"], "label 5 is out of range"),
        (["evaluate", model], "no data given"),
        (["info", tmp_path / "three.csv"], "not a handgrad model file"),
        (["gradcheck", "--layers", "2:tanh,1:sigmoid", "--samples", "0"], "--samples must be a positive integer"),
    ]
    for argv, message in cases:
        status, out, err = run(capsys, *argv)
        assert status == 2, argv
        assert message in err and err.count("\n") == 1, (argv, err)
        assert model.read_bytes() == model_bytes and output.read_bytes() == output_bytes


def test_corrupted_model_refused_on_the_command_line(capsys, existing, tmp_path):
    model, _, model_bytes, _ = existing
    damaged = tmp_path / "damaged.npz"
    data = bytearray(model_bytes)
    data[len(data) // 3] ^= 0x10
    damaged.write_bytes(bytes(data))
    for argv in (["info", damaged], ["predict", damaged, tmp_path / "x.csv"], ["gradcheck", "--model", damaged]):
        status, out, err = run(capsys, *argv)
        assert status == 2 and "damaged" in err


def test_usage_errors_exit_2_on_one_line():
    result = subprocess.run([sys.executable, "-m", "handgrad", "train", "--epochs", "many"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "invalid int value: 'many'" in result.stderr and result.stderr.count("\n") == 1


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(hg.ConfigError, match="--epochs"):
        main(["--debug", "train", "--epochs", "0"])
    with pytest.raises(hg.ConfigError, match="--epochs"):
        main(["train", "--epochs", "0", "--debug"])


# ---------------------------------------------------------------- evaluate uses handgrad.metrics
def test_evaluate_agrees_with_metrics_where_it_used_to_disagree(capsys, tmp_path):
    """Two outputs of different scales, the second constant: the old command pooled R^2 over the outputs
    (0.0915 here where the trainer said 0.0279) and gave NaN for constant targets."""
    from handgrad import metrics

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    Y = np.column_stack([X[:, 0] + rng.normal(size=50), np.full(50, 2.0)])
    net = hg.MLP(3, [(8, "tanh"), (2, "identity")], seed=0)
    net.fit(X, Y, epochs=5, verbose=False)
    net.save(tmp_path / "model.npz")
    np.savez(tmp_path / "data.npz", X=X, y=Y)
    status, out, err = run(capsys, "evaluate", tmp_path / "model.npz", "--npz", tmp_path / "data.npz", "--json")
    assert status == 0, err
    report = json.loads(out)
    A = net.forward(X)
    expected = metrics.compute(["mse", "mae", "r2"], A, Y, "identity")
    assert {key: report[key] for key in expected} == pytest.approx(expected, rel=1e-12)
    per_output = [metrics.r2_score(Y[:, 0], A[:, 0]), metrics.r2_score(Y[:, 1], A[:, 1])]
    assert per_output[1] == 0.0 and np.isfinite(report["r2"])  # a constant column missed: 0.0, never NaN
    assert report["r2"] == pytest.approx(np.mean(per_output), rel=1e-12)
    pooled = 1 - np.sum((A - Y) ** 2) / np.sum((Y - Y.mean(axis=0)) ** 2)  # the old command's formula
    assert abs(report["r2"] - pooled) > 1e-3


def test_evaluate_confusion_matrix_and_accuracy_come_from_the_same_outputs(capsys, trained, blob_csv):
    from handgrad import datasets, metrics

    status, out, err = run(capsys, "evaluate", trained, "--csv", blob_csv, "--target", "label", "--json")
    report = json.loads(out)
    X, y = datasets.load_csv(blob_csv, "label")
    net = hg.load(trained)
    A = net.forward(datasets.Standardizer.from_dict(net.metadata["preprocessing"]).transform(X))
    assert report["accuracy"] == metrics.accuracy(y, A.argmax(axis=1))
    matrix = np.array(report["confusion_matrix"])
    assert matrix.tolist() == metrics.confusion_matrix(y, A.argmax(axis=1), 3).tolist()
    assert np.trace(matrix) / matrix.sum() == pytest.approx(report["accuracy"], abs=1e-15)


# ---------------------------------------------------------------- a closed pipe is not an error
def _handgrad(*argv):
    return [sys.executable, "-m", "handgrad", *[str(a) for a in argv]]


def test_reader_closing_the_pipe_early_is_not_an_error(tmp_path):
    """`handgrad predict ... | head -1`: far more output than a pipe holds, and the reader leaves after a line."""
    net = hg.MLP(2, [(1, "identity")], seed=0)
    net.save(tmp_path / "model.npz")
    np.save(tmp_path / "X.npy", np.random.default_rng(0).normal(size=(20000, 2)))
    process = subprocess.Popen(_handgrad("predict", tmp_path / "model.npz", tmp_path / "X.npy"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline() == b"prediction\n"
    process.stdout.close()  # what head does after its line
    status = process.wait(timeout=60)
    error = process.stderr.read().decode()
    process.stderr.close()
    assert status == 0 and error == ""


def test_writing_into_an_already_closed_pipe_is_not_an_error(tmp_path):
    """`handgrad info model.npz | head -1` where head is gone before handgrad writes its first byte."""
    net = hg.MLP(2, [(3, "tanh"), (1, "sigmoid")], seed=0)
    net.save(tmp_path / "model.npz", note="x" * 100)
    np.save(tmp_path / "X.npy", np.zeros((3, 2)))
    for argv in (["info", tmp_path / "model.npz"], ["predict", tmp_path / "model.npz", tmp_path / "X.npy"]):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            result = subprocess.run(_handgrad(*argv), stdout=write_end, stderr=subprocess.PIPE, timeout=60)
        finally:
            os.close(write_end)
        assert result.returncode == 0 and result.stderr == b"", (argv, result.stderr)
