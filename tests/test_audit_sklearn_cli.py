"""Found by auditing issue 15 as a practitioner would (each test failed before its fix)."""

import json

import numpy as np
import pytest

import handgrad as hg
from handgrad.cli import main


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def weighted_model(tmp_path, capsys):
    """A model trained with --sample-weight-column w on data.csv (columns a, b, w, label)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2)) * [1.0, 10.0]
    y = (X[:, 0] + X[:, 1] / 10 > 0).astype(int)
    w = rng.uniform(0.5, 2.0, size=len(y))
    lines = ["a,b,w,label"] + [f"{float(a)!r},{float(b)!r},{float(s)!r},{t}" for (a, b), s, t in zip(X, w, y)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "features.csv").write_text("a,b\n" + "\n".join(f"{float(a)!r},{float(b)!r}" for a, b in X) + "\n")
    status, _, err = run(capsys, "train", "--csv", tmp_path / "data.csv", "--target", "label", "--sample-weight-column",
                         "w", "--layers", "4:tanh,1:sigmoid", "--epochs", "3", "--quiet", "--no-plots", "--out",
                         tmp_path / "m.npz")
    assert status == 0, err
    return tmp_path


def test_evaluate_on_the_weighted_training_table_leaves_the_weight_column_out(capsys, weighted_model):
    status, out, err = run(capsys, "evaluate", weighted_model / "m.npz", "--csv", weighted_model / "data.csv",
                           "--target", "label", "--json")
    assert status == 0, err
    assert "column 'w' is the model's sample weight column" in err
    net = hg.load(weighted_model / "m.npz")
    table = np.loadtxt(weighted_model / "data.csv", delimiter=",", skiprows=1)
    X = hg.datasets.Standardizer.from_dict(net.metadata["preprocessing"]).transform(table[:, :2])
    accuracy = float(np.mean(net.predict(X).ravel() == table[:, 3]))
    assert abs(json.loads(out)["accuracy"] - accuracy) < 1e-12


def test_predict_on_the_weighted_training_table_leaves_target_and_weight_out(capsys, weighted_model):
    status, out, err = run(capsys, "predict", weighted_model / "m.npz", weighted_model / "data.csv", "--proba")
    assert status == 0, err
    assert "'label' is the model's target" in err and "'w' is the model's sample weight column" in err
    status, expected, _ = run(capsys, "predict", weighted_model / "m.npz", weighted_model / "features.csv", "--proba")
    assert status == 0 and out == expected


def test_init_from_a_model_with_dropout_names_the_layers_that_disagree(capsys, tmp_path):
    """The model's per-layer dropout rates fit its own hidden layers: --layers with fewer hidden layers was refused
    for the dropout ('one rate per hidden layer'), not for the layers that disagree with the model."""
    flags = ["--data", "moons", "--samples", "60", "--epochs", "1", "--quiet", "--no-plots"]
    status, _, err = run(capsys, "train", *flags, "--layers", "4:tanh,4:tanh,1:sigmoid", "--dropout", "0.1,0.2",
                         "--out", tmp_path / "m.npz")
    assert status == 0, err
    status, _, err = run(capsys, "train", *flags, "--layers", "4:tanh,1:sigmoid", "--init-from", tmp_path / "m.npz",
                         "--out", tmp_path / "n.npz")
    assert status == 2 and err.count("\n") == 1
    assert "--layers does not agree with the model" in err and "4:tanh,4:tanh,1:sigmoid" in err
    assert not (tmp_path / "n.npz").exists()


def _estimator_onnx(tmp_path, X, y):
    import warnings

    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from handgrad.onnx_export import to_onnx
    from handgrad.sklearn import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a ConvergenceWarning at 30 epochs)
        model = MLPClassifier(hidden_layer_sizes=(6,), max_iter=30, random_state=0).fit(X, y)
    path = to_onnx(model.net_, tmp_path / "m.onnx", classes=model.classes_)
    label, probabilities = ort.InferenceSession(str(path)).run(["label", "probabilities"], {"X": X})
    return model, label, probabilities


@pytest.mark.parametrize("kind", ["multilabel", "boolean"])
def test_onnx_of_a_multilabel_or_boolean_estimator_with_its_classes_gives_its_predict(tmp_path, kind):
    """to_onnx(model.net_, path, classes=model.classes_) was refused for a multi-label estimator (classes_ are
    its columns 0..K-1) and for boolean labels; the docs promise a label equal to model.predict."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = X[:, :3] > 0 if kind == "multilabel" else X[:, 0] + X[:, 1] > 0
    model, label, probabilities = _estimator_onnx(tmp_path, X, y.astype(int) if kind == "multilabel" else y)
    assert label.dtype == model.predict(X).dtype
    np.testing.assert_array_equal(label, model.predict(X))
    np.testing.assert_allclose(probabilities, model.predict_proba(X), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("argv", [["train", "--data", "xor", "--seed", "-3"], ["gradcheck", "--seed", "-1"],
                                  ["evaluate", "m.npz", "--data", "xor", "--seed", "-1"],
                                  ["curvature", "m.npz", "--data", "xor", "--seed", "-2"]])
def test_a_negative_seed_is_a_usage_error(capsys, argv):
    """NumPy refused it with a traceback (exit status 1)."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "--seed: must be a whole number >= 0" in err


@pytest.mark.parametrize("setting, message", [("seed = -3", "seed must be a whole number >= 0"),
                                              ("seed = 1.5", "seed must be a whole number >= 0"),
                                              ("seed = inf", "seed must be a whole number >= 0"),
                                              ("epochs = inf", "--epochs must be a positive integer"),
                                              ("batch_size = 1e9999", "--batch-size must be a positive integer"),
                                              ("limit = inf", "--limit must be a positive integer")])
def test_a_seed_or_infinite_count_in_a_config_is_one_line(capsys, tmp_path, setting, message):
    """An infinite count overflowed int() and a bad seed reached NumPy: tracebacks with exit status 1."""
    config = tmp_path / "run.toml"
    config.write_text(f'data = "xor"\n{setting}\n')
    status, _, err = run(capsys, "train", "--config", config, "--quiet", "--no-plots", "--out", tmp_path / "m.npz")
    assert status == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_the_library_refuses_a_bad_seed_with_its_own_error(seed):
    with pytest.raises(hg.errors.ConfigError, match="seed must be a whole number >= 0"):
        hg.MLP(2, [(2, "relu"), (1, "sigmoid")], seed=seed)
    net = hg.MLP(2, [(2, "relu"), (1, "sigmoid")], seed=0)
    with pytest.raises(hg.errors.ConfigError, match="seed must be a whole number >= 0"):
        net.fit(np.zeros((4, 2)), np.array([0, 1, 0, 1]), epochs=1, seed=seed, verbose=False)


def test_predict_and_export_do_not_write_over_their_own_inputs(capsys, weighted_model):
    """predict m.npz x.csv --out m.npz replaced the model by its predictions (and export --onnx m.npz by a graph)."""
    model, features = weighted_model / "m.npz", weighted_model / "features.csv"
    before = model.read_bytes(), features.read_bytes()
    for argv in (["predict", model, features, "--out", model], ["predict", model, features, "--out", features],
                 ["export", model, "--onnx", weighted_model / "." / "m.npz"]):
        status, _, err = run(capsys, *argv)
        assert status == 2 and err.count("\n") == 1 and "is this command's input file" in err
    assert (model.read_bytes(), features.read_bytes()) == before


@pytest.mark.parametrize("flags, message", [
    (["--out", "data.csv", "--force"], "--out 'data.csv' is this command's input file"),
    (["--checkpoint", "data.csv", "--force"], "--checkpoint 'data.csv' is this command's input file"),
    (["--out", "run.npz", "--checkpoint", "run.npz"], "are one file"),
    (["--resume", "old.ckpt", "--checkpoint", "new.ckpt", "--out", "old.ckpt", "--force"],
     "--out 'old.ckpt' is this command's input file"),
])
def test_train_keeps_its_data_and_checkpoint_apart_from_its_outputs(capsys, weighted_model, monkeypatch, flags,
                                                                    message):
    """With --force, a training table given as --out was replaced by the model; one name for --out and
    --checkpoint ended as whichever was written last."""
    monkeypatch.chdir(weighted_model)
    (weighted_model / "old.ckpt").write_bytes(b"a checkpoint")
    before = (weighted_model / "data.csv").read_bytes()
    status, _, err = run(capsys, "train", "--csv", "data.csv", "--target", "label", "--sample-weight-column", "w",
                         "--epochs", "1", "--quiet", "--no-plots", *flags)
    assert status == 2 and err.count("\n") == 1 and message in err
    assert (weighted_model / "data.csv").read_bytes() == before and not (weighted_model / "run.npz").exists()
    assert (weighted_model / "old.ckpt").read_bytes() == b"a checkpoint"


def test_lbfgs_from_a_model_with_dropout_says_how_to_turn_it_off(capsys, tmp_path):
    """--init-from a model with dropout and --optimizer lbfgs told the user to remove a --dropout they never gave."""
    flags = ["--data", "moons", "--samples", "60", "--epochs", "2", "--quiet", "--no-plots"]
    status, _, err = run(capsys, "train", *flags, "--layers", "4:tanh,1:sigmoid", "--dropout", "0.2",
                         "--out", tmp_path / "m.npz")
    assert status == 0, err
    lbfgs = [*flags, "--init-from", tmp_path / "m.npz", "--optimizer", "lbfgs"]
    status, _, err = run(capsys, "train", *lbfgs, "--out", tmp_path / "n.npz")
    assert status == 2 and err.count("\n") == 1 and "has dropout" in err and "pass --dropout 0" in err
    status, _, err = run(capsys, "train", *lbfgs, "--dropout", "0", "--out", tmp_path / "n.npz")
    assert status == 0, err
    assert hg.load(tmp_path / "n.npz").dropout == [0.0]


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_the_estimators_network_keeps_the_l2_of_a_full_batch(solver):
    """net_.l2 was the last batch's alpha / |B|: with 201 samples in batches of 200, alpha / 1, so the saved
    model, handgrad info and any further net_.fit had a penalty 200 times the one trained with."""
    import warnings

    from handgrad.sklearn import MLPClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(201, 3))
    y = (X[:, 0] > 0).astype(int)
    alpha = 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a ConvergenceWarning at 2 epochs)
        for n in (200, 201):
            model = MLPClassifier(hidden_layer_sizes=(4,), alpha=alpha, solver=solver, max_iter=2, random_state=0)
            assert model.fit(X[:n], y[:n]).net_.l2 == pytest.approx(alpha / 200)
        weighted = MLPClassifier(hidden_layer_sizes=(4,), alpha=alpha, solver=solver, max_iter=2, random_state=0)
        assert weighted.fit(X, y, sample_weight=np.full(201, 2.0)).net_.l2 == pytest.approx(alpha / 400)
