"""predict, predict_proba, forward and loss on a memory-mapped .npy, a Zarr or a Dask array read the input
block by block (handgrad.streaming): the same outputs as the in-memory path bit for bit (the blocks are whole
multiples of the forward chunk), the same loss up to the rounding of the sum, and a traced memory peak well
below the file's size."""

import tracemalloc

import numpy as np
import pytest

import handgrad as hg
from handgrad import network, streaming


def problem(n, seed=0, d=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)


def classifier(d=6):
    return hg.MLP(d, [(16, "tanh"), (3, "softmax")], seed=1)


def streamed(kind, X, tmp_path):
    if kind == "memmap":
        np.save(tmp_path / "X.npy", X)
        return np.load(tmp_path / "X.npy", mmap_mode="r")
    if kind == "zarr":
        return pytest.importorskip("zarr").array(X, chunks=(1000,) + X.shape[1:])
    return pytest.importorskip("dask.array").from_array(X, chunks=(1000,) + X.shape[1:])


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 2 forward chunks (8192 rows of 6 float64), so a 20 000-row X is several blocks."""
    monkeypatch.setattr(streaming, "BLOCK_BYTES", 2 * network._FORWARD_CHUNK * 6 * 8)


@pytest.mark.parametrize("kind", ["memmap", "zarr", "dask"])
def test_predictions_on_streamed_arrays_equal_the_in_memory_ones_bit_for_bit(kind, tmp_path, small_blocks):
    X, y = problem(20_000)
    net = classifier()
    S = streamed(kind, X, tmp_path)
    assert np.array_equal(net.predict(S), net.predict(X))
    assert np.array_equal(net.predict_proba(S), net.predict_proba(X))
    assert np.array_equal(net.forward(S), net.forward(X))
    assert net.loss(S, y) == pytest.approx(net.loss(X, y), rel=1e-12)
    w = np.linspace(0.5, 2.0, len(y))
    assert net.loss(S, y, w) == pytest.approx(net.loss(X, y, w), rel=1e-12)


def test_a_small_float32_file_and_a_sigmoid_regressor_also_match(tmp_path):
    X, _ = problem(300)
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    S = np.load(tmp_path / "X.npy", mmap_mode="r")
    for net in (hg.MLP(6, [(5, "relu"), (2, "sigmoid")], seed=2), hg.MLP(6, [(5, "relu"), (1, "linear")], seed=2)):
        assert np.array_equal(net.predict(S), net.predict(X.astype(np.float32)))


def test_bad_values_in_a_later_block_name_the_rows(tmp_path, small_blocks):
    X, _ = problem(20_000)
    X[17_000, 3] = np.nan
    net = classifier()
    with pytest.raises(hg.DataError, match=r"rows 16384\.\.19999 of X: X contains NaN"):
        net.predict(streamed("memmap", X, tmp_path))
    with pytest.raises(hg.DataError, match="X has 6 features but the network expects 5"):
        hg.MLP(5, [(3, "softmax")]).predict(streamed("memmap", X, tmp_path))


def test_predict_and_loss_on_a_memory_mapped_file_stay_well_below_its_size(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "BLOCK_BYTES", 2 ** 20)
    n = 2 ** 15  # 16 MiB of X, 8 blocks of 4096 rows (the output, n x 3, is 0.75 MiB)
    X, y = problem(n, d=64)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    size = (tmp_path / "X.npy").stat().st_size
    net = classifier(64)
    expected = net.predict(X)
    del X
    S, T = np.load(tmp_path / "X.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")
    tracemalloc.start()
    try:
        labels = net.predict(S)
        predict_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        net.loss(S, T)
        loss_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(labels, expected)
    assert predict_peak < size / 4, f"predict used {predict_peak / 2 ** 20:.1f} MiB for {size / 2 ** 20:.0f} MiB"
    assert loss_peak < size / 4, f"loss used {loss_peak / 2 ** 20:.1f} MiB for {size / 2 ** 20:.0f} MiB"


def test_batch_norm_loss_streams_with_the_running_statistics_and_reads_whole_with_the_batchs(tmp_path):
    X, y = problem(5000)
    net = hg.MLP(6, ["8:tanh:batchnorm", (3, "softmax")], seed=1, l2=0.01)
    net.fit(X[:500], y[:500], epochs=1, batch_size=50, verbose=False)  # running statistics that are not 0 and 1
    S = streamed("memmap", X, tmp_path)
    assert net.loss(S, y, batch_statistics=False) == pytest.approx(net.loss(X, y, batch_statistics=False), rel=1e-12)
    assert net.loss(S, y) == net.loss(X, y)  # the batch's statistics: X whole, as before
    assert np.array_equal(net.predict_proba(S), net.predict_proba(X))
