"""Validation samples whose weights sum to zero are refused (DataError), as training weights that sum to zero
are: the validation loss would be the penalty alone, and early stopping or a plateau schedule would follow
it silently. In fit (validation_data with weights, validation_split of weighted data, streamed data) and so
in the command line (--sample-weight-column), as one line and exit status 2."""

import numpy as np
import pytest

import handgrad as hg
from handgrad.cli import main
from handgrad.datasets import train_validation_test_split

OPTIONS = dict(epochs=1, batch_size=20, optimizer="adam", learning_rate=0.01, verbose=False, seed=3)


def problem(n=200):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def network():
    return hg.MLP(3, [(6, "tanh"), (1, "sigmoid")], seed=1)


@pytest.mark.parametrize("streamed", [False, True])
def test_validation_data_whose_weights_sum_to_zero_is_a_data_error(tmp_path, streamed):
    X, y = problem()
    if streamed:
        np.save(tmp_path / "X.npy", X)
        np.save(tmp_path / "y.npy", y)
        X, y = np.load(tmp_path / "X.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")
    X_val, y_val = problem(40)
    with pytest.raises(hg.DataError, match="validation samples' weights sum to zero"):
        network().fit(X, y, validation_data=(X_val, y_val, np.zeros(40)), **OPTIONS)
    weights = np.zeros(40)
    weights[7] = 0.5  # one sample with a positive weight is enough
    history = network().fit(X, y, validation_data=(X_val, y_val, weights), **OPTIONS)
    assert np.isfinite(history.val_loss[0])


def test_a_validation_split_whose_weights_sum_to_zero_is_a_data_error():
    X, y = problem()
    held = np.random.default_rng([OPTIONS["seed"], 1]).permutation(200)[:50]  # fit's split (training.prepare_data)
    weights = np.ones(200)
    weights[held] = 0.0
    with pytest.raises(hg.DataError, match="validation samples' weights sum to zero"):
        network().fit(X, y, sample_weight=weights, validation_split=0.25, **OPTIONS)
    weights[held[0]] = 1.0
    network().fit(X, y, sample_weight=weights, validation_split=0.25, **OPTIONS)


def test_the_cli_refuses_validation_weights_that_sum_to_zero_in_one_line(capsys, tmp_path):
    X, y = problem()
    index = np.arange(200, dtype=float)[:, None]  # which rows the command line's split holds out for validation
    validation_rows = train_validation_test_split(index, y, 0.2, 0.2, seed=0).X_val[:, 0].astype(int)
    weights = np.ones(200)
    weights[validation_rows] = 0.0
    path = tmp_path / "weighted.csv"

    def write(w):
        path.write_text("a,b,c,label,weight\n" + "".join(f"{a!r},{b!r},{c!r},{t},{v!r}\n" for (a, b, c), t, v in
                                                         zip(X.tolist(), y.tolist(), w.tolist())))

    argv = ["train", "--csv", str(path), "--target", "label", "--sample-weight-column", "weight", "--layers",
            "6:tanh,1:sigmoid", "--epochs", "1", "--quiet", "--out", str(tmp_path / "m.npz")]
    write(weights)
    status = main(argv)
    _, err = capsys.readouterr()
    assert status == 2 and len(err.splitlines()) == 1 and "validation samples' weights sum to zero" in err, err
    assert not (tmp_path / "m.npz").exists()
    weights[validation_rows[0]] = 2.0
    write(weights)
    assert main(argv) == 0
