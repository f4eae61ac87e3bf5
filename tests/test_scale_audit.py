"""Audit of issue 16 (past one machine): corners found by using the streamed, MPI and Dask paths as a
practitioner would."""

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
