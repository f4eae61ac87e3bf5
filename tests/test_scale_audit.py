"""Audit of issue 16 (past one machine): corners found by using the streamed, MPI and Dask paths as a
practitioner would."""

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import handgrad as hg
from handgrad import datasets
from handgrad.errors import ConfigError, DataError


def _problem(tmp_path, n=600):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return X, y, np.load(tmp_path / "X.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")


def _net():
    return hg.MLP(3, [(8, "tanh"), (2, "softmax")], seed=0)


@pytest.mark.parametrize("which", ["targets", "X", "sample_weight"])
def test_a_list_beside_a_streamed_array_is_read_into_memory(tmp_path, which):
    """fit takes lists for data in memory; beside a memory-mapped array it took them for arrays without a shape
    ("must be a 1-D or 2-D array, got shape None")."""
    X, y, Xm, ym = _problem(tmp_path)
    w = np.linspace(0.5, 2.0, len(y))
    given = {"X": (Xm, y.tolist(), w), "targets": (Xm, y.tolist(), w), "sample_weight": (Xm, ym, w.tolist())}
    if which == "X":
        given["X"] = (X.tolist(), ym, w)
    streamed, reference = _net(), _net()
    Xs, ys, ws = given[which]
    streamed.fit(Xs, ys, sample_weight=ws, epochs=2, batch_size=64, shuffle=False, block_rows=250)
    reference.fit(X, y, sample_weight=w, epochs=2, batch_size=64, shuffle=False)
    np.testing.assert_array_equal(streamed.params, reference.params)


def test_ragged_list_beside_a_streamed_array_is_a_data_error(tmp_path):
    _, _, Xm, ym = _problem(tmp_path, n=3)
    with pytest.raises(DataError, match="sample_weight must be an array of numbers"):
        _net().fit(Xm, ym, sample_weight=[[1.0, 2.0], [3.0]], epochs=1)


@pytest.mark.parametrize("other", [{"scheduler": "tcp://127.0.0.1:1"}, {"workers": 2}])
def test_sweep_refuses_a_client_together_with_a_scheduler_or_workers(other):
    """hg.sweep(client=c, scheduler=...) ran on c and silently ignored the address (and workers=)."""
    X, y = datasets.make_moons(60, seed=0)
    with pytest.raises(ConfigError, match=f"{next(iter(other))} would choose another one"):
        hg.sweep(X, y, {"units": [4]}, base={"layers": "4:tanh,1:sigmoid", "epochs": 1}, client=object(), **other)


# ---------------------------------------------------------------------------- a diverging loss under mpiexec
MPIEXEC = Path(sys.executable).parent / "mpiexec"
needs_mpi = pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None or not MPIEXEC.exists(),
                               reason="needs mpi4py and mpiexec: pip install handgrad[mpi]")
RETRY = """
import numpy as np, handgrad as hg
from handgrad.errors import TrainingError
from mpi4py import MPI
X = np.linspace(-1, 1, 90)[:, None] * 50
net = hg.MLP(1, [(8, "relu"), (1, "identity")], seed=0)
try:
    net.fit(X, X[:, 0] ** 2, epochs=3, batch_size=16, learning_rate=100.0, distributed=True)
except TrainingError as error:
    caught = str(error)[:15]
    net = hg.MLP(1, [(8, "relu"), (1, "identity")], seed=0)  # the ranks go on together: a new run
    net.fit(X / 50, X[:, 0] / 50, epochs=1, batch_size=16, learning_rate=0.01, distributed=True)
    with open(f"rank{MPI.COMM_WORLD.rank}.txt", "w") as file:
        file.write(f"caught: {caught}; retried")
"""


def _mpiexec(K, command, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(MPIEXEC), "-n", str(K), sys.executable, *command], capture_output=True, text=True,
                          env=env, timeout=120, cwd=cwd)


@needs_mpi
def test_a_diverging_loss_stops_every_rank_together_without_abort(tmp_path):
    """The batch's loss is summed over the ranks, so every rank sees it become infinite at the same step. It was
    reported as 'rank r of K failed' by every rank and ended the job with MPI Abort: a script could not catch the
    TrainingError (to retry with a lower rate), and the command line printed several lines."""
    (tmp_path / "retry.py").write_text(RETRY)
    done = _mpiexec(2, ["retry.py"], tmp_path)
    assert done.returncode == 0 and "Abort" not in done.stderr, done.stderr
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}.txt").read_text() == "caught: the loss became; retried"
    tmp_path = tmp_path / "cli"
    tmp_path.mkdir()
    done = _mpiexec(3, ["-m", "handgrad", "train", "--data", "regression1d", "--layers", "8:relu,1:identity",
                        "--learning-rate", "100", "--epochs", "3", "--checkpoint", "run.ckpt", "--out", "m.npz",
                        "--distributed"], tmp_path)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.startswith("handgrad: error: the loss became inf") and len(done.stderr.splitlines()) == 1, \
        done.stderr
    assert list(tmp_path.iterdir()) == []  # no model, no checkpoint


# ---------------------------------------------------------------------------- Ctrl-C stops the running trials
@pytest.mark.parametrize("stop", [KeyboardInterrupt, OSError])
def test_ctrl_c_stops_the_trials_already_running_on_the_workers(stop):
    """Dask cancels queued tasks but cannot stop a running one: after Ctrl-C a running trial kept its worker busy
    to the end of its epochs (minutes here), so the next sweep in the same client, or anyone else's work on the
    cluster, waited for it. The trials now stop when the sweep's cancel Event is set; so they do when the sweep
    ends with an error of its own process (here on_trial_end's; a full disk writing the results, say)."""
    distributed = pytest.importorskip("distributed", reason="needs handgrad[dask]")
    X, y = datasets.make_moons(120, seed=0)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  scheduler_kwargs={"dashboard": False}) as cluster, \
            distributed.Client(cluster) as client:

        def interrupt(row, n_trials):  # trial 1 ended; trial 2 (100,000 epochs) is running on the other worker
            deadline = time.monotonic() + 30
            while not any(client.processing().values()) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            raise stop  # KeyboardInterrupt: what Ctrl-C does in the driver's wait

        args = X, y, {"epochs": [1, 100_000]}
        options = dict(base={"layers": "4:tanh,1:sigmoid", "batch_size": 32}, halving=False, client=client,
                       on_trial_end=interrupt, plot=False)
        if stop is KeyboardInterrupt:
            result = hg.sweep(*args, **options)
            assert result.interrupted and result.counts() == {"ok": 1, "cancelled": 1}
        else:
            with pytest.raises(stop):
                hg.sweep(*args, **options)
        # each worker (one thread) runs a small task soon: none is still busy with the cancelled trial
        probes = [client.submit(time.sleep, 0, workers=[address], pure=False)
                  for address in client.scheduler_info()["workers"]]
        try:
            distributed.wait(probes, timeout=15)
        except TimeoutError:
            pytest.fail("a worker is still running the cancelled trial")


def test_sample_weight_column_with_the_streamed_npy_pair_is_refused_not_ignored(tmp_path, capsys, monkeypatch):
    """`train --npy X.npy --npy-targets y.npy --sample-weight-column 1` trained unweighted on every column,
    silently: the streamed pair has no weight column."""
    from handgrad.cli import main

    _problem(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--npy", "X.npy", "--npy-targets", "y.npy", "--sample-weight-column", "1", "--layers",
                 "4:tanh,2:softmax", "--epochs", "1", "--out", "m.npz"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("handgrad: error: --sample-weight-column needs --csv data")
    assert len(err.splitlines()) == 1 and not (tmp_path / "m.npz").exists()


def test_sweep_refuses_validation_data_with_other_columns_before_any_trial():
    """Validation data with another number of features made every trial fail, one by one, on the cluster."""
    X, y = datasets.make_moons(60, seed=0)
    with pytest.raises(DataError, match="the validation data have 1 features but the sweep's data have 2"):
        hg.sweep(X, y, {"units": [4]}, base={"layers": "4:tanh,1:sigmoid", "epochs": 1}, client=object(),
                 validation_data=(X[:20, :1], y[:20]))


@needs_mpi
def test_batch_norm_with_batches_of_one_is_refused_before_the_first_step_on_every_rank(tmp_path):
    """batch_size 1 with batch norm was found in the first step's forward pass: under mpiexec every rank printed
    'rank r of K failed' and the job ended with MPI Abort. It is a setting, refused in fit's set-up."""
    (tmp_path / "d.csv").write_text("a,b,label\n" + "".join(f"{i / 7:.3f},{(i % 5) / 3:.3f},{i % 2}\n"
                                                           for i in range(30)))
    done = _mpiexec(2, ["-m", "handgrad", "train", "--csv", "d.csv", "--layers", "4:tanh:batchnorm,1:sigmoid",
                        "--batch-size", "1", "--epochs", "1", "--out", "m.npz", "--distributed"], tmp_path)
    assert done.returncode == 2 and "Abort" not in done.stderr, done.stderr
    assert done.stderr.startswith("handgrad: error: batch normalization needs at least 2 samples per batch") and \
        len(done.stderr.splitlines()) == 1, done.stderr
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("where", ["base", "params"])
def test_sweep_refuses_lbfgs_before_any_trial(where):
    """Every L-BFGS trial failed on the cluster ('validation_data is not used by L-BFGS')."""
    X, y = datasets.make_moons(60, seed=0)
    params, base = {"units": [4]}, {"layers": "4:tanh,1:sigmoid", "epochs": 1}
    if where == "base":
        base["optimizer"] = "LBFGS"
    else:
        params["optimizer"] = ["adam", "lbfgs"]
    with pytest.raises(ConfigError, match=r"L-BFGS \(one full-batch objective\) has no epochs"):
        hg.sweep(X, y, params, base=base, client=object())


def test_a_zarr_group_instead_of_its_array_is_named(tmp_path):
    zarr = pytest.importorskip("zarr")
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    with pytest.raises(DataError, match=r"X is a zarr Group, not an array; give one of its arrays"):
        _net().fit(group, np.arange(10) % 2, epochs=1)


def test_sweep_refuses_val_accuracy_when_no_trial_is_a_classifier():
    """Every trial of a regression network trained an epoch on the cluster, then failed on 'accuracy needs a
    classifier'. With one classifier among the trials the sweep runs (the others fail on their own)."""
    X, y = datasets.make_regression1d(60, seed=0)
    base = {"layers": "4:tanh,1:identity", "epochs": 1}
    with pytest.raises(ConfigError, match=r"val_accuracy needs a classifier .* no trial.s network is one"):
        hg.sweep(X, y, {"units": [4, 8]}, base=base, metric="val_accuracy", client=object())
    with pytest.raises(AttributeError):  # got past the check, to the (fake) client
        hg.sweep(X, y, {"layers": ["4:tanh,1:identity", "4:tanh,1:sigmoid"]}, base=base, metric="val_accuracy",
                 client=object())


def test_a_sweep_that_cannot_reach_its_scheduler_leaves_no_empty_results_folder(tmp_path):
    pytest.importorskip("distributed", reason="needs handgrad[dask]")
    from handgrad.sweeps import ClusterError

    X, y = datasets.make_moons(60, seed=0)
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler"):
        hg.sweep(X, y, {"units": [4]}, base={"layers": "4:tanh,1:sigmoid", "epochs": 1}, scheduler="bad::",
                 out=tmp_path / "results")
    assert list(tmp_path.iterdir()) == []


@needs_mpi
def test_train_under_mpiexec_without_distributed_says_so_once(tmp_path):
    """`mpiexec -n 2 handgrad train` without --distributed ran two whole trainings that raced on the same files,
    silently (the second often failing on 'already exists')."""
    done = _mpiexec(2, ["-m", "handgrad", "train", "--data", "moons", "--samples", "60", "--layers",
                        "4:tanh,1:sigmoid", "--epochs", "1", "--out", "m.npz", "--force", "--quiet"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("handgrad: warning: this is one of 2 processes that mpiexec started, but without "
                                  "--distributed") and len(done.stderr.splitlines()) == 1, done.stderr
