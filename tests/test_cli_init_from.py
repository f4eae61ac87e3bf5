"""`handgrad train --init-from MODEL.npz`: a new run from a saved model's network, weights and standardization.

The promise: the command equals ``handgrad.load(MODEL).fit(S(X_train), y_train, ...)`` with S the model's own
stored standardization (not one refitted on the new data), bit for bit; the new model file stores the same S;
what contradicts the model is refused in one line (exit status 2). The data are tiny.
"""

import numpy as np
import pytest

import handgrad as hg
from handgrad import cli, datasets
from handgrad.datasets import Standardizer

FIRST = ["--data", "moons", "--samples", "200", "--layers", "8:tanh,1:sigmoid", "--optimizer", "adam",
         "--learning-rate", "0.01", "--schedule", "cosine", "--epochs", "3", "--quiet"]
NEW_DATA = ["--data", "moons", "--samples", "160", "--noise", "0.3", "--seed", "1"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model trained 3 epochs under a cosine schedule (with its checkpoint), as a user's first run."""
    folder = tmp_path_factory.mktemp("first")
    path, checkpoint = folder / "first.npz", folder / "first.ckpt"
    assert cli.main(["train", *FIRST, "--out", str(path), "--checkpoint", str(checkpoint)]) == 0
    return path, checkpoint


def one_line_error(capsys, argv):
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_init_from_equals_load_and_fit_on_the_data_standardized_by_the_model(model, tmp_path):
    first, _ = model
    out = tmp_path / "second.npz"
    assert cli.main(["train", *NEW_DATA, "--init-from", str(first), "--epochs", "2", "--optimizer", "adam",
                     "--learning-rate", "0.02", "--schedule", "onecycle", "--out", str(out), "--quiet"]) == 0

    # the same in Python: the new data, split as train splits it, standardized by the first model's standardizer
    X, y = datasets.make_dataset("moons", 160, noise=0.3, seed=1)
    split = datasets.train_validation_test_split(X, y, 0.2, 0.2, seed=1)
    reference = hg.load(first)
    S = Standardizer.from_dict(reference.metadata["preprocessing"])
    reference.fit(S.transform(split.X_train), split.y_train, epochs=2, batch_size=32, optimizer="adam",
                  learning_rate=0.02, schedule="onecycle", seed=1,
                  validation_data=(S.transform(split.X_val), split.y_val), preprocessing=S.to_dict())

    second = hg.load(out)
    assert np.array_equal(second.params, reference.params)
    assert not np.array_equal(second.params, hg.load(first).params)  # it did train
    assert second.config() == hg.load(first).config()
    # the standardization is the first model's, not one refitted on the new training rows
    assert second.metadata["preprocessing"] == hg.load(first).metadata["preprocessing"]
    assert second.metadata["preprocessing"] != Standardizer().fit(split.X_train).to_dict()
    assert second.metadata["training"]["init_from"] == str(first.resolve())


def test_a_longer_cosine_run_is_refused_by_resume_naming_init_from_which_then_works(model, tmp_path, capsys):
    first, checkpoint = model
    err = one_line_error(capsys, ["train", *FIRST, "--epochs", "5", "--resume", str(checkpoint),
                                  "--checkpoint", str(tmp_path / "c.ckpt")])
    assert "--init-from MODEL.npz" in err
    err = one_line_error(capsys, ["train", *FIRST, "--noise", "0.3", "--resume", str(checkpoint),
                                  "--checkpoint", str(tmp_path / "c.ckpt")])
    assert "other training data" in err and "--init-from MODEL.npz" in err
    assert cli.main(["train", *FIRST, "--epochs", "2", "--init-from", str(first), "--out",
                     str(tmp_path / "longer.npz")]) == 0


def test_the_toml_key_init_from_and_agreeing_network_flags(model, tmp_path):
    first, _ = model
    config = tmp_path / "run.toml"
    config.write_text(f'[model]\nlayers = "8:tanh,1:sigmoid"\ndtype = "float64"\nloss = "binary_cross_entropy"\n'
                      f'[training]\ninit_from = "{first}"\nepochs = 2\n')
    by_config, by_flags = tmp_path / "a.npz", tmp_path / "b.npz"
    assert cli.main(["train", "--config", str(config), *NEW_DATA, "--out", str(by_config), "--quiet"]) == 0
    assert cli.main(["train", *NEW_DATA, "--init-from", str(first), "--epochs", "2", "--out", str(by_flags),
                     "--quiet"]) == 0
    assert np.array_equal(hg.load(by_config).params, hg.load(by_flags).params)


@pytest.mark.parametrize("extra, message", [
    (["--layers", "8:relu,1:sigmoid"], "--layers does not agree with the model"),
    (["--dtype", "float32"], "--dtype does not agree with the model"),
    (["--init", "he"], "--init does not agree"),
    (["--loss", "half_squared_error"], "--loss does not agree"),
    (["--no-bias"], "--no-bias does not agree"),
    (["--layers", "16:tanh,1:sigmoid", "--dtype", "float32"], "--layers and --dtype do not agree"),
    (["--no-standardize"], "--no-standardize: the model"),
])
def test_flags_that_contradict_the_model_are_refused_in_one_line(model, tmp_path, capsys, extra, message):
    first, _ = model
    err = one_line_error(capsys, ["train", *NEW_DATA, "--init-from", str(first), *extra,
                                  "--out", str(tmp_path / "x.npz")])
    assert message in err and "first.npz" in err
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("data, message", [
    (["--data", "blobs", "--samples", "90"], "the data hold class 2, and the model"),
    (["--data", "regression1d", "--samples", "90"], "has 1 features but the model expects 2"),
])
def test_data_that_do_not_fit_the_model_are_refused_in_one_line(model, tmp_path, capsys, data, message):
    first, _ = model
    err = one_line_error(capsys, ["train", *data, "--init-from", str(first), "--out", str(tmp_path / "x.npz")])
    assert message in err


def test_a_new_class_and_a_missing_file_are_one_line(model, tmp_path, capsys):
    first, _ = model
    table = np.column_stack([np.random.default_rng(0).normal(size=(30, 2)), np.arange(30) % 3])
    np.savetxt(tmp_path / "three.csv", table, delimiter=",")
    err = one_line_error(capsys, ["train", "--csv", str(tmp_path / "three.csv"), "--init-from", str(first)])
    assert "class 2" in err and "knows the classes 0..1" in err
    err = one_line_error(capsys, ["train", "--data", "moons", "--init-from", str(tmp_path / "none.npz")])
    assert "--init-from" in err and "is not a file" in err


def test_l2_and_dropout_may_change_and_the_weights_are_still_the_models(model, tmp_path):
    first, _ = model
    out = tmp_path / "reg.npz"
    assert cli.main(["train", *NEW_DATA, "--init-from", str(first), "--epochs", "1", "--l2", "0.01",
                     "--dropout", "0.1", "--learning-rate", "1e-300", "--out", str(out), "--quiet"]) == 0
    net = hg.load(out)
    assert net.l2 == 0.01 and list(net.dropout) == [0.1]
    # a learning rate of 1e-300 leaves the weights (to rounding) where the model had them
    assert np.allclose(net.params, hg.load(first).params, rtol=0, atol=1e-12)


def test_a_streamed_npy_run_can_start_from_a_model(tmp_path, capsys):
    X, y = datasets.make_dataset("moons", 300, seed=2)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    streamed = ["--npy", str(tmp_path / "X.npy"), "--npy-targets", str(tmp_path / "y.npy"), "--block-rows", "64"]
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    assert cli.main(["train", *streamed, "--layers", "8:tanh,1:sigmoid", "--epochs", "2", "--out", str(first),
                     "--quiet"]) == 0
    assert cli.main(["train", *streamed, "--init-from", str(first), "--epochs", "2", "--optimizer", "adam",
                     "--learning-rate", "0.01", "--out", str(second), "--quiet"]) == 0
    reference = hg.load(first)
    reference.fit(np.load(tmp_path / "X.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r"),
                  epochs=2, batch_size=32, optimizer="adam", learning_rate=0.01, seed=0, block_rows=64)
    assert np.array_equal(hg.load(second).params, reference.params)
    assert hg.load(second).metadata["preprocessing"] is None
    # a model that standardizes cannot be fed streamed (raw) features
    standardized = tmp_path / "standardized.npz"
    assert cli.main(["train", "--data", "moons", "--samples", "100", "--layers", "8:tanh,1:sigmoid", "--epochs", "1",
                     "--out", str(standardized), "--quiet"]) == 0
    err = one_line_error(capsys, ["train", *streamed, "--init-from", str(standardized)])
    assert "standardizes its inputs" in err


def test_an_interrupted_init_from_run_resumes_with_the_same_flags(model, tmp_path):
    first, _ = model
    flags = ["train", *NEW_DATA, "--init-from", str(first), "--optimizer", "adam", "--learning-rate", "0.01",
             "--quiet"]
    whole, resumed, checkpoint = tmp_path / "whole.npz", tmp_path / "resumed.npz", tmp_path / "run.ckpt"
    assert cli.main([*flags, "--epochs", "4", "--out", str(whole)]) == 0
    assert cli.main([*flags, "--epochs", "2", "--checkpoint", str(checkpoint)]) == 0
    assert cli.main([*flags, "--epochs", "4", "--resume", str(checkpoint), "--out", str(resumed)]) == 0
    assert np.array_equal(hg.load(whole).params, hg.load(resumed).params)


def test_targets_of_another_kind_than_the_models_are_refused_in_one_line(model, tmp_path, capsys):
    first, _ = model
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "real.npz", X=rng.normal(size=(40, 2)), y=rng.normal(size=40))
    err = one_line_error(capsys, ["train", "--npz", str(tmp_path / "real.npz"), "--init-from", str(first)])
    assert "non-integer targets" in err and "is a classifier of the classes 0..1" in err
    regressor = tmp_path / "regressor.npz"
    assert cli.main(["train", "--npz", str(tmp_path / "real.npz"), "--layers", "4:tanh,1:identity", "--epochs", "1",
                     "--out", str(regressor), "--quiet"]) == 0
    np.savez(tmp_path / "two.npz", X=rng.normal(size=(40, 2)), y=rng.normal(size=(40, 2)))
    err = one_line_error(capsys, ["train", "--npz", str(tmp_path / "two.npz"), "--init-from", str(regressor)])
    assert "2 target column(s)" in err and "has 1 output(s)" in err
