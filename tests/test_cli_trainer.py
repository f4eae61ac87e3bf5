"""`handgrad train` reaches the whole trainer: early stopping, metrics, checkpoint and resume, class and
sample weights, clip norm, dropout per layer, activation parameters; the same names work as TOML keys,
and every bad value prints one line and exits 2."""

import json

import numpy as np
import pytest

import handgrad as hg
from handgrad.cli import main


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _write(path, X, w, y):
    lines = ["a,b,c,w,label"] + [",".join([repr(float(v)) for v in row] + [repr(float(s)), str(int(t))])
                                 for row, s, t in zip(X, w, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def weighted_csv(tmp_path):
    """Two unbalanced classes; column w holds 5 for class 1 and 1 for class 0 (the class weights {0: 1, 1: 5}).
    ones.csv beside it has the same rows with w = 1."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, 50.0]
    y = (X[:, 0] + X[:, 1] / 10 > 1.2).astype(int)
    assert 0.1 < y.mean() < 0.4
    _write(tmp_path / "ones.csv", X, np.ones(len(y)), y)
    return _write(tmp_path / "data.csv", X, np.where(y == 1, 5.0, 1.0), y)


BASE = ["--target", "label", "--layers", "8:tanh,8:tanh,1:sigmoid", "--optimizer", "adam", "--learning-rate", "0.01",
        "--quiet", "--no-plots"]


def train(capsys, csv, out, *flags):
    status, _, err = run(capsys, "train", "--csv", csv, *BASE, "--out", out, *flags)
    assert status == 0, err
    return hg.load(out)


# ---------------------------------------------------------------- checkpoint and resume
@pytest.mark.parametrize("extra", [[], ["--patience", "2", "--dropout", "0.3", "--clip-norm", "0.5"]],
                         ids=["plain", "dropout-patience-clip"])
def test_an_interrupted_run_resumed_gives_the_same_weights_bit_for_bit(capsys, tmp_path, weighted_csv, extra):
    flags = ["--sample-weight-column", "w", "--batch-size", "16", *extra]
    whole = train(capsys, weighted_csv, tmp_path / "whole.npz", "--epochs", "7", *flags)
    checkpoint = tmp_path / "run.ckpt"
    first = train(capsys, weighted_csv, tmp_path / "first.npz", "--epochs", "3", "--checkpoint", checkpoint, *flags)
    # resumed twice: 3 -> 5 -> 7 epochs; --resume keeps checkpointing into the same file
    train(capsys, weighted_csv, tmp_path / "middle.npz", "--epochs", "5", "--resume", checkpoint, *flags)
    resumed = train(capsys, weighted_csv, tmp_path / "resumed.npz", "--epochs", "7", "--resume", checkpoint, *flags)
    assert np.array_equal(resumed.params, whole.params)
    assert not np.array_equal(first.params, whole.params)  # the resumed run did train on
    assert resumed.metadata["stop_reason"] == whole.metadata["stop_reason"]


def test_resume_without_the_pictures_of_the_first_part_keeps_early_stopping_exact(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    flags = ["--data", "xor", "--noise", "0.6", "--samples", "100", "--layers", "32:tanh,32:tanh,1:sigmoid",
             "--optimizer", "adam", "--learning-rate", "0.05", "--patience", "2", "--quiet"]
    checkpoint, whole, resumed = tmp_path / "run.ckpt", tmp_path / "whole.npz", tmp_path / "resumed.npz"
    assert main(["train", *flags, "--epochs", "30", "--out", str(whole)]) == 0
    # the first part draws pictures (a gradient-norm recorder among the callbacks), the resumed part does not
    assert main(["train", *flags, "--epochs", "4", "--checkpoint", str(checkpoint), "--run-dir",
                 str(tmp_path / "pictures")]) == 0
    assert main(["train", *flags, "--epochs", "30", "--resume", str(checkpoint), "--out", str(resumed)]) == 0
    whole, resumed = hg.load(whole), hg.load(resumed)
    assert "early stopping at epoch" in whole.metadata["stop_reason"]
    assert resumed.metadata["stop_reason"] == whole.metadata["stop_reason"]
    assert np.array_equal(resumed.params, whole.params)


def test_resume_refuses_another_network_and_checkpoint_needs_force(capsys, tmp_path, weighted_csv):
    checkpoint = tmp_path / "run.ckpt"
    train(capsys, weighted_csv, tmp_path / "a.npz", "--epochs", "2", "--checkpoint", checkpoint)
    status, _, err = run(capsys, "train", "--csv", weighted_csv, *BASE, "--epochs", "4", "--resume", checkpoint,
                         "--layers", "4:relu,1:sigmoid")
    assert status == 2 and "another network" in err and err.count("\n") == 1
    # another optimizer: the trainer would silently go on with the checkpoint's Adam
    status, _, err = run(capsys, "train", "--csv", weighted_csv, *BASE, "--epochs", "4", "--resume", checkpoint,
                         "--optimizer", "sgd")
    assert status == 2 and "made with --optimizer adam, not sgd" in err and err.count("\n") == 1
    before = checkpoint.read_bytes()
    status, _, err = run(capsys, "train", "--csv", weighted_csv, *BASE, "--epochs", "2", "--checkpoint", checkpoint)
    assert status == 2 and "--force" in err and checkpoint.read_bytes() == before
    status, _, err = run(capsys, "train", "--csv", weighted_csv, *BASE, "--epochs", "2", "--checkpoint", checkpoint,
                         "--force")
    assert status == 0, err
    status, _, err = run(capsys, "train", "--csv", weighted_csv, *BASE, "--epochs", "2", "--resume", tmp_path / "a.npz")
    assert status == 2 and "not a training checkpoint" in err


# ---------------------------------------------------------------- early stopping and metrics
def test_patience_stops_early_and_metrics_choose_the_validation_figures(capsys, tmp_path):
    run_dir, out = tmp_path / "run", tmp_path / "m.npz"
    status, _, err = run(capsys, "train", "--data", "xor", "--noise", "0.6", "--samples", "100", "--layers",
                         "32:tanh,32:tanh,1:sigmoid", "--optimizer", "adam", "--learning-rate", "0.05", "--epochs",
                         "300", "--patience", "2", "--metrics", "mse,mae", "--quiet", "--no-plots", "--run-dir",
                         run_dir, "--out", out)
    assert status == 0, err
    net = hg.load(out)
    history = json.loads((run_dir / "history.json").read_text())
    assert "early stopping" in net.metadata["stop_reason"] and len(history["epoch"]) < 300
    assert "restored the weights of epoch" in net.metadata["stop_reason"]
    assert "val_mse" in history and "val_mae" in history and "val_accuracy" not in history
    assert net.metadata["training"]["early_stopping"] == 2 and net.metadata["training"]["metrics"] == ["mse", "mae"]


# ---------------------------------------------------------------- class and sample weights
def test_class_weights_from_json_csv_and_toml_equal_the_same_sample_weights(capsys, tmp_path, weighted_csv):
    (tmp_path / "weights.json").write_text('{"0": 1, "1": 5}')
    (tmp_path / "list.json").write_text("[1, 5]")
    (tmp_path / "weights.csv").write_text("class,weight\n0,1\n1,5\n")
    (tmp_path / "c.toml").write_text('[training]\nclass_weight = {"0" = 1.0, "1" = 5.0}\nepochs = 6\n')
    ones = tmp_path / "ones.csv"  # w = 1 everywhere
    by_json = train(capsys, ones, tmp_path / "j.npz", "--epochs", "6", "--class-weight", tmp_path / "weights.json")
    by_list = train(capsys, ones, tmp_path / "l.npz", "--epochs", "6", "--class-weight", tmp_path / "list.json")
    by_csv = train(capsys, ones, tmp_path / "c.npz", "--epochs", "6", "--class-weight", tmp_path / "weights.csv")
    by_toml = train(capsys, ones, tmp_path / "t.npz", "--config", tmp_path / "c.toml")
    for other in (by_list, by_csv, by_toml):
        assert np.array_equal(by_json.params, other.params)
    assert by_json.metadata["training"]["class_weight"] == {"0": 1.0, "1": 5.0}
    # class weights {0: 1, 1: 5} and a weight column holding 5 for class 1 are the same objective
    by_class = train(capsys, ones, tmp_path / "k.npz", "--epochs", "6", "--sample-weight-column", "w",
                     "--class-weight", tmp_path / "weights.json")
    by_column = train(capsys, weighted_csv, tmp_path / "s.npz", "--epochs", "6", "--sample-weight-column", "w")
    unweighted = train(capsys, ones, tmp_path / "u.npz", "--epochs", "6", "--sample-weight-column", "w")
    assert by_json.n_inputs == 4 and by_column.n_inputs == 3  # without --sample-weight-column, w is a feature
    assert np.array_equal(by_class.params, by_column.params)
    assert np.abs(unweighted.params - by_column.params).max() > 1e-3


def test_balanced_class_weights_raise_the_rare_class_recall(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] + rng.normal(size=200) > 1.5).astype(int)  # overlapping classes, 9% of class 1
    path = tmp_path / "rare.csv"
    path.write_text("a,b,label\n" + "".join(f"{a!r},{b!r},{t}\n" for (a, b), t in zip(X.tolist(), y)))
    recall = []
    for extra in ([], ["--class-weight", "balanced"]):
        status, _, err = run(capsys, "train", "--csv", path, "--layers", "8:tanh,1:sigmoid", "--optimizer", "adam",
                             "--learning-rate", "0.01", "--epochs", "10", "--validation", "0", "--test", "0",
                             "--quiet", "--force", "--out", tmp_path / "m.npz", *extra)
        assert status == 0, err
        status, out, err = run(capsys, "predict", tmp_path / "m.npz", path, "--target", "label")
        predicted = np.array(out.split()[1:], dtype=int)
        recall.append(predicted[y == 1].mean())
    assert recall[0] < 0.3 < 0.6 < recall[1]  # the rare class is found far more often with balanced weights


# ---------------------------------------------------------------- clip norm, dropout, activation parameters
def test_clip_norm_dropout_and_activation_parameters_reach_the_model(capsys, tmp_path, weighted_csv):
    free = train(capsys, weighted_csv, tmp_path / "f.npz", "--epochs", "3")
    clipped = train(capsys, weighted_csv, tmp_path / "c.npz", "--epochs", "3", "--clip-norm", "0.001")
    assert clipped.metadata["training"]["clip_norm"] == 0.001
    assert np.abs(clipped.params - free.params).max() > 1e-3
    net = train(capsys, weighted_csv, tmp_path / "d.npz", "--epochs", "2", "--layers",
                "8:leaky_relu(0.3),6:elu(alpha=0.5),1:sigmoid", "--dropout", "0.1,0.2")
    assert net.dropout == [0.1, 0.2]
    assert net.layers[0].activation.slope == 0.3 and net.layers[1].activation.alpha == 0.5
    (tmp_path / "a.toml").write_text('layers = [[8, "leaky_relu(slope=0.25)"], [1, "sigmoid"]]\nepochs = 2\n'
                                     'dropout = [0.5]\n')
    status, _, err = run(capsys, "train", "--csv", weighted_csv, "--target", "label", "--quiet", "--config",
                         tmp_path / "a.toml", "--out", tmp_path / "t.npz")
    assert status == 0, err
    net = hg.load(tmp_path / "t.npz")
    assert net.layers[0].activation.slope == 0.25 and net.dropout == [0.5]


def test_trainer_settings_from_a_config_file(capsys, tmp_path, weighted_csv):
    (tmp_path / "c.toml").write_text(f'[training]\npatience = 0\nmetrics = ["accuracy", "r2"]\nclip_norm = 2.0\n'
                                     f'epochs = 50\ncheckpoint = "{tmp_path / "c.ckpt"}"\n'
                                     f'[data]\nsample_weight_column = "w"\n')
    net = train(capsys, weighted_csv, tmp_path / "m.npz", "--config", tmp_path / "c.toml")
    training = net.metadata["training"]
    assert training["early_stopping"] == 0 and training["metrics"] == ["accuracy", "r2"]
    assert training["clip_norm"] == 2.0 and (tmp_path / "c.ckpt").is_file()
    assert net.n_inputs == 3 and net.metadata["data"]["sample_weight_column"] == "w"


def test_help_documents_the_trainer_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--patience", "--metrics", "--checkpoint", "--resume", "--class-weight", "--sample-weight-column",
                 "--clip-norm", "--dropout", "leaky_relu(0.1)"):
        assert flag in text


# ---------------------------------------------------------------- bad values: one line, status 2
BAD = [
    (["--patience", "-1"], "--patience must be a whole number"),
    (["--metrics", "acc"], "Did you mean 'accuracy'"),
    (["--metrics", ","], "--metrics must be names"),
    (["--class-weight", "heavy"], "--class-weight must be 'balanced' or a CSV/JSON file"),
    (["--class-weight", "{tmp}/bad.json"], "cannot read class weights"),
    (["--class-weight", "{tmp}/neg.json"], "must be a finite number >= 0"),
    (["--class-weight", "{tmp}/frac.json"], "is not a class id"),
    (["--class-weight", "{tmp}/three.csv"], "a class weight file has two"),
    (["--class-weight", "{tmp}/w.txt.yaml"], "unknown type"),
    (["--class-weight", "{tmp}/big.json"], "class_weight key 7 is not a class id 0..1"),
    (["--sample-weight-column", "weight"], "has no column 'weight'. Columns: a, b, c, w, label"),
    (["--sample-weight-column", "label"], "the same column"),
    (["--sample-weight-column", "w", "--csv", "{tmp}/negw.csv"], "weights must be finite numbers >= 0"),
    (["--sample-weight-column", "w", "--data", "xor"], "--sample-weight-column needs --csv"),
    (["--clip-norm", "0"], "--clip-norm must be a positive number"),
    (["--clip-norm", "nan"], "--clip-norm must be a positive number"),
    (["--resume", "{tmp}/absent.ckpt"], "--resume"),
    (["--checkpoint", "{tmp}/no/such/dir/c.ckpt"], "does not exist"),
    (["--dropout", "0.1,1.5"], "dropout rate must be a fraction in [0, 1)"),
    (["--dropout", "0.1,0.2,0.3"], "one rate per hidden layer"),
    (["--layers", "8:leaky_relu(slop=0.1),1:sigmoid"], "Did you mean 'slope'"),
    (["--layers", "8:leaky_relu(2),1:sigmoid"], "slope must be in [0, 1]"),
    (["--layers", "8:relu(1),1:sigmoid"], "relu takes 0 parameter"),
    (["--layers", "8:leaky_relu(0.1,1:sigmoid"], "Parameters go in parentheses"),
    (["--config", "{tmp}/bad.toml"], "--patience must be a whole number"),
    (["--sample-weight-column", "w", "--csv", "{tmp}/zerow.csv"], "are all zero"),
    (["--optimizer", "lbfgs", "--patience", "3"], "--patience does not apply to --optimizer lbfgs"),
    (["--optimizer", "lbfgs", "--dropout", "0.2"], "--dropout does not apply to --optimizer lbfgs"),
    (["--optimizer", "lbfgs", "--metrics", "accuracy", "--clip-norm", "1"], "--metrics, --clip-norm do not apply"),
    (["--optimizer", "LBFGS", "--schedule", "cosine"], "--schedule does not apply"),
]


@pytest.mark.parametrize("flags, message", BAD, ids=[" ".join(f)[:40] for f, _ in BAD])
def test_bad_trainer_values_print_one_line_and_exit_2(capsys, tmp_path, weighted_csv, flags, message):
    (tmp_path / "bad.json").write_text("{1: 2")
    (tmp_path / "neg.json").write_text('{"0": -1}')
    (tmp_path / "frac.json").write_text('{"0.5": 1}')
    (tmp_path / "big.json").write_text('{"7": 1}')
    (tmp_path / "three.csv").write_text("0,1,2\n")
    (tmp_path / "w.txt.yaml").write_text("0: 1\n")
    (tmp_path / "negw.csv").write_text("a,w,label\n1,1,0\n2,-1,1\n3,1,0\n4,1,1\n5,1,0\n")
    (tmp_path / "bad.toml").write_text('patience = "soon"\n')
    (tmp_path / "zerow.csv").write_text("a,w,label\n" + "".join(f"{i},0,{i % 2}\n" for i in range(20)))
    flags = [flag.replace("{tmp}", str(tmp_path)) for flag in flags]
    out = tmp_path / "model.npz"
    status, _, err = run(capsys, "train", "--csv", weighted_csv, "--target", "label", "--epochs", "2", "--quiet",
                         "--out", out, *flags)
    assert status == 2, err
    assert message in err and err.startswith("handgrad: error: ") and err.count("\n") == 1
    assert not out.exists()


# ---------------------------------------------------------------- L-BFGS
def test_lbfgs_from_the_command_line_trains_full_batch_and_evaluates_validation_after(capsys, tmp_path, weighted_csv):
    """--optimizer lbfgs: the same full-batch minimization as fit(optimizer="lbfgs") on the training part (the
    validation part is evaluated after training, not passed to it); --epochs bounds the iterations."""
    out = tmp_path / "lbfgs.npz"
    status, printed, err = run(capsys, "train", "--csv", weighted_csv, "--target", "label", "--layers",
                               "8:tanh,1:sigmoid", "--optimizer", "lbfgs", "--epochs", "40", "--no-plots",
                               "--run-dir", tmp_path / "run", "--out", out, "--seed", "3")
    assert status == 0, err
    assert "L-BFGS iterations" in printed and "validation (" in printed
    model = hg.load(out)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert 1 <= len(history["epoch"]) <= 40
    assert history["loss"][-1] < 0.5 * history["loss"][0]  # J(theta) after each iteration, going down
    assert model.metadata["metrics"]["validation"]["samples"] > 0
    status, _, err = run(capsys, "train", "--csv", weighted_csv, "--target", "label", "--optimizer", "lbfgs",
                         "--sharpness", "--quiet")
    assert status == 2 and "L-BFGS has none" in err and len(err.strip().splitlines()) == 1
