"""`handgrad train --block-rows N` (and ``block_rows = N`` in a TOML config): the rows per block of streamed
data (--npy X.npy --npy-targets y.npy), passed to fit's ``block_rows``. The shuffled order of streamed data
is drawn block by block, so the block size changes the training: the flag and the config key give the
weights of ``fit(..., block_rows=N)``, and another N other weights. Refused in one line (exit status 2)
where it does not apply (data in memory, --optimizer lbfgs) and on a resume with another N.
"""

import numpy as np
import pytest

import handgrad as hg
from handgrad.checkpoints import read_checkpoint
from handgrad.cli import main

LAYERS = "8:tanh,3:softmax"
FLAGS = ["--layers", LAYERS, "--optimizer", "adam", "--learning-rate", "0.01", "--batch-size", "50", "--quiet",
         "--seed", "3"]


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1.0)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "data.csv").write_text("a,b,c,d,label\n" + "".join(
        ",".join(repr(v) for v in row) + f",{t}\n" for row, t in zip(X.tolist(), y.tolist())))
    return tmp_path


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(capsys, *argv):
    status, out, err = run(capsys, *argv)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    return err


def streamed(files):
    return ["train", "--npy", files / "X.npy", "--npy-targets", files / "y.npy", *FLAGS]


def test_the_flag_and_the_config_key_train_as_fit_with_block_rows(capsys, files):
    (files / "run.toml").write_text("[training]\nblock_rows = 120\nepochs = 2\n")
    status, _, err = run(capsys, *streamed(files), "--epochs", "2", "--block-rows", "120", "--out",
                         files / "flag.npz", "--checkpoint", files / "flag.ckpt")
    assert status == 0, err
    status, _, err = run(capsys, *streamed(files), "--config", files / "run.toml", "--out", files / "toml.npz")
    assert status == 0, err
    status, _, err = run(capsys, *streamed(files), "--epochs", "2", "--out", files / "default.npz")
    assert status == 0, err
    assert read_checkpoint(files / "flag.ckpt")["block_rows"] == 120
    flag, toml, default = (hg.load(files / f"{name}.npz").params for name in ("flag", "toml", "default"))
    assert np.array_equal(flag, toml)
    assert not np.allclose(flag, default)  # 600 rows: one block by default, five of 120 here
    net = hg.MLP(4, LAYERS, seed=3)
    net.fit(np.load(files / "X.npy", mmap_mode="r"), np.load(files / "y.npy", mmap_mode="r"), epochs=2,
            batch_size=50, optimizer="adam", learning_rate=0.01, seed=3, block_rows=120, verbose=False)
    assert np.array_equal(flag, net.params)


def test_block_rows_is_refused_where_it_does_not_apply(capsys, files):
    csv = ["train", "--csv", files / "data.csv", "--target", "label", *FLAGS, "--epochs", "1"]
    err = one_line_error(capsys, *csv, "--block-rows", "100")
    assert "--block-rows applies to streamed data (--npy X.npy --npy-targets y.npy)" in err and "csv data.csv" in err
    (files / "csv.toml").write_text("block_rows = 100\n")
    assert "--block-rows applies to streamed data" in one_line_error(capsys, *csv, "--config", files / "csv.toml")
    err = one_line_error(capsys, *streamed(files), "--optimizer", "lbfgs", "--block-rows", "100")
    assert "--block-rows does not apply to --optimizer lbfgs" in err
    for bad in ("0", "-5"):
        assert "--block-rows must be a positive whole number" in one_line_error(capsys, *streamed(files),
                                                                                "--block-rows", bad)
    assert list(files.glob("*.npz")) == []


def test_a_resume_with_another_block_rows_is_refused(capsys, files):
    checkpoint = files / "run.ckpt"
    status, _, err = run(capsys, *streamed(files), "--epochs", "1", "--block-rows", "300", "--checkpoint", checkpoint)
    assert status == 0, err
    saved = checkpoint.read_bytes()
    for other, says in ((["--block-rows", "320"], "block_rows=300"),  # as many blocks (2), other rows in them
                        ([], "the same block_rows")):  # the default: one block
        err = one_line_error(capsys, *streamed(files), "--epochs", "2", "--resume", checkpoint, *other,
                             "--out", files / "m.npz")
        assert says in err
        assert checkpoint.read_bytes() == saved and not (files / "m.npz").exists()
    status, _, err = run(capsys, *streamed(files), "--epochs", "2", "--resume", checkpoint, "--block-rows", "300")
    assert status == 0, err
    assert read_checkpoint(checkpoint)["epochs_done"] == 2
