"""Data larger than memory (handgrad.streaming): memory-mapped .npy, Zarr and Dask arrays, read block by block.

The same weights as in memory without shuffling (the batches hold the same rows in the same order);
the same accuracy with block-wise shuffling; every row once per epoch, each block's rows together;
at most the stated number of blocks in memory; bad data in a late block stops fit before any step.
"""

import numpy as np
import pytest

import handgrad as hg
from handgrad.checkpoints import read_checkpoint
from handgrad.cli import main
from handgrad.streaming import Stream, StreamBatches, _file_position


def problem(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1.0)
    return X, y


def network(dtype="float64"):
    return hg.MLP(4, [(12, "tanh"), (3, "softmax")], seed=1, l2=1e-3, dtype=dtype)


@pytest.fixture
def files(tmp_path):
    X, y = problem()
    w = np.random.default_rng(2).uniform(0.5, 2.0, size=len(y))
    for name, array in (("X", X), ("y", y), ("w", w)):
        np.save(tmp_path / f"{name}.npy", array)
    return tmp_path, X, y, w


def mapped(tmp_path, name):
    return np.load(tmp_path / f"{name}.npy", mmap_mode="r")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_memory_mapped_training_equals_in_memory_without_shuffling(files, dtype):
    tmp_path, X, y, w = files
    options = dict(epochs=2, batch_size=64, optimizer="adam", learning_rate=0.01, shuffle=False, verbose=False,
                   class_weight="balanced")
    in_memory, streamed = network(dtype), network(dtype)
    in_memory.fit(X, y, sample_weight=w, **options)
    # 1500 rows in blocks of 333: the batches of 64 straddle the blocks' ends
    streamed.fit(mapped(tmp_path, "X"), mapped(tmp_path, "y"), sample_weight=mapped(tmp_path, "w"), block_rows=333,
                 **options)
    assert np.array_equal(in_memory.params, streamed.params)



def test_batch_norm_with_a_lone_last_sample_streams_as_in_memory(files):
    """1500 = 23 * 65 + 5 would be fine; 1473 = 23 * 64 + 1 leaves a batch of one sample, which batch norm
    cannot train on: fit merges it into the batch before, and the streamed batches do the same."""
    tmp_path, X, y, _ = files
    n = 23 * 64 + 1
    np.save(tmp_path / "Xs.npy", X[:n])
    np.save(tmp_path / "ys.npy", y[:n])
    options = dict(epochs=2, batch_size=64, optimizer="sgd", learning_rate=0.05, shuffle=False, verbose=False)

    def norm_network():
        return hg.MLP(4, ["12:tanh:batchnorm", (3, "softmax")], seed=1)

    in_memory, streamed = norm_network(), norm_network()
    in_memory.fit(X[:n], y[:n], **options)
    streamed.fit(mapped(tmp_path, "Xs"), mapped(tmp_path, "ys"), block_rows=100, **options)
    assert np.array_equal(in_memory.params, streamed.params)
    for (name, a), (_, b) in zip(in_memory.running_statistics(), streamed.running_statistics()):
        assert np.array_equal(a, b), name


@pytest.mark.parametrize("library", ["zarr", "dask"])
def test_zarr_and_dask_arrays_train_as_in_memory(library):
    X, y = problem(600)
    if library == "zarr":
        zarr = pytest.importorskip("zarr")
        X_s, y_s = zarr.array(X, chunks=(128, 4)), zarr.array(y, chunks=(128,))
    else:
        dask_array = pytest.importorskip("dask.array")
        X_s, y_s = dask_array.from_array(X, chunks=(100, 4)), dask_array.from_array(y, chunks=(100,))
    a, b = network(), network()
    a.fit(X, y, epochs=2, batch_size=50, shuffle=False, verbose=False)
    b.fit(X_s, y_s, epochs=2, batch_size=50, shuffle=False, verbose=False, block_rows=256)
    assert np.array_equal(a.params, b.params)


def test_shuffled_blocks_reach_the_same_accuracy(files):
    tmp_path, X, y, _ = files
    X_test, y_test = problem(1000, seed=5)
    accuracy = {}
    for name, (Xs, ys) in {"memory": (X, y), "streamed": (mapped(tmp_path, "X"), mapped(tmp_path, "y"))}.items():
        net = network()
        net.fit(Xs, ys, epochs=8, batch_size=32, optimizer="adam", learning_rate=0.01, verbose=False,
                block_rows=200, seed=4)
        accuracy[name] = float(np.mean(net.predict(X_test) == y_test))
    assert accuracy["memory"] > 0.9
    assert abs(accuracy["memory"] - accuracy["streamed"]) < 0.03, accuracy


def test_an_epoch_reads_every_row_once_block_by_block(tmp_path):
    N, block = 1000, 128
    X = np.arange(N, dtype=np.float64).reshape(-1, 1) * np.ones((1, 4))  # row i holds i
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.zeros(N, np.int64))
    stream = Stream(network(), mapped(tmp_path, "X"), mapped(tmp_path, "y"), block_rows=block)
    batches = StreamBatches(stream, 50, np.float64, -(-N // 50))
    order = stream.initial_order()
    stream.shuffle(order, np.random.default_rng(0))
    seen, most_in_memory = [], 0
    for number in range(1, -(-N // 50) + 1):
        xb, _, _ = batches.get(number, order)
        seen.extend(xb[:, 0].astype(int))
        most_in_memory = max(most_in_memory, len(batches.cache))
    assert sorted(seen) == list(range(N))  # every row once
    assert seen != sorted(seen)  # shuffled...
    blocks = [row // block for row in seen]
    runs = [b for i, b in enumerate(blocks) if i == 0 or b != blocks[i - 1]]
    assert len(runs) == stream.n_blocks and runs == list(order[1:])  # ...one block after another, in the drawn order
    assert most_in_memory <= 2  # ceil(50 / 128) + 1 blocks
    assert _file_position(mapped(tmp_path, "X")[300:]) is not None  # read with file reads, not through the map


def test_bad_data_in_a_late_block_stops_fit_before_any_step(files):
    tmp_path, X, y, _ = files
    X_bad = X.copy()
    X_bad[1400, 2] = np.inf
    np.save(tmp_path / "Xbad.npy", X_bad)
    y_bad = y.copy()
    y_bad[1250] = 7
    np.save(tmp_path / "ybad.npy", y_bad)
    net = network()
    before = net.params.copy()
    with pytest.raises(hg.DataError, match=r"rows 1332\.\.1499 \(block 5 of 5\): X contains NaN or infinity"):
        net.fit(mapped(tmp_path, "Xbad"), y, block_rows=333, verbose=False)
    with pytest.raises(hg.DataError, match=r"rows 999\.\.1331 \(block 4 of 5\): class id 7 is out of range"):
        net.fit(X, mapped(tmp_path, "ybad"), block_rows=333, verbose=False)
    assert np.array_equal(net.params, before)


def test_resuming_a_streamed_run_is_bit_identical(files):
    tmp_path, X, y, _ = files
    options = dict(batch_size=100, optimizer="adam", learning_rate=0.01, verbose=False, block_rows=256, seed=3)
    whole = network()
    whole.fit(mapped(tmp_path, "X"), mapped(tmp_path, "y"), epochs=3, **options)
    path = tmp_path / "run.ckpt"
    network().fit(mapped(tmp_path, "X"), mapped(tmp_path, "y"), epochs=2, checkpoint=path, **options)
    assert len(read_checkpoint(path)["order"]) == 1 + 6  # the key and the blocks' order, not N rows
    resumed = network()
    resumed.fit(mapped(tmp_path, "X"), mapped(tmp_path, "y"), epochs=3, checkpoint=path, resume=True, **options)
    assert np.array_equal(whole.params, resumed.params)


def test_resuming_with_other_blocks_or_from_memory_is_a_clear_error(files):
    tmp_path, X, y, _ = files
    path = str(tmp_path / "run.ckpt")
    network().fit(mapped(tmp_path, "X"), mapped(tmp_path, "y"), epochs=1, block_rows=300, checkpoint=path,
                  verbose=False)
    for data, options in (((mapped(tmp_path, "X"), mapped(tmp_path, "y")), {"block_rows": 200}), ((X, y), {})):
        with pytest.raises(hg.ConfigError, match=r"resume with the data as before .* and the same block_rows"):
            network().fit(*data, epochs=2, checkpoint=path, resume=True, verbose=False, **options)


def test_a_copy_on_write_map_changed_in_memory_trains_on_the_changed_values(files):
    """mmap_mode="c": changes stay in this process's memory, so the file's bytes are not the array's."""
    tmp_path, X, y, _ = files
    changed = np.load(tmp_path / "X.npy", mmap_mode="c")
    changed *= -1.0  # in memory only; the file still holds X
    streamed, loaded = network(), network()
    streamed.fit(changed, y, epochs=1, shuffle=False, block_rows=500, verbose=False)
    loaded.fit(-X, y, epochs=1, shuffle=False, verbose=False)
    assert np.array_equal(streamed.params, loaded.params)


def test_validation_split_needs_data_in_memory(files):
    tmp_path, *_ = files
    with pytest.raises(hg.ConfigError, match="validation_data"):
        network().fit(mapped(tmp_path, "X"), mapped(tmp_path, "y"), validation_split=0.2, verbose=False)


def test_streamed_data_that_cannot_stream_is_a_clear_error(files, capsys):
    """L-BFGS (full batch) refuses data on disk; a Dask array of unknown chunk sizes and a bad block_rows (also
    with data in memory, where it is unused) are DataErrors, not NumPy's errors."""
    tmp_path, X, y, _ = files
    with pytest.raises(hg.ConfigError, match=r"L-BFGS .* needs the data in memory"):
        network().fit(mapped(tmp_path, "X"), mapped(tmp_path, "y"), optimizer="lbfgs", epochs=2)
    status = main(["train", "--npy", str(tmp_path / "X.npy"), "--npy-targets", str(tmp_path / "y.npy"), "--layers",
                   "12:tanh,3:softmax", "--optimizer", "lbfgs", "--epochs", "2", "--quiet"])
    error = capsys.readouterr().err
    assert status == 2 and "L-BFGS" in error and len(error.strip().splitlines()) == 1
    with pytest.raises(hg.DataError, match="block_rows must be a positive integer"):
        network().fit(X, y, epochs=1, block_rows=0, verbose=False)
    da = pytest.importorskip("dask.array")
    X_d, y_d = da.from_array(X, chunks=(500, 4)), da.from_array(y, chunks=500)
    keep = X_d[:, 3] > 0  # a filter: Dask no longer knows how many rows each chunk has
    with pytest.raises(hg.DataError, match=r"unknown chunk sizes.*compute_chunk_sizes\(\)"):
        network().fit(X_d[keep], y_d[keep], epochs=1, verbose=False)


def test_cli_trains_from_npy_files_without_loading_them(files, capsys):
    tmp_path, *_ = files
    out = tmp_path / "model.npz"
    flags = ["train", "--npy", str(tmp_path / "X.npy"), "--npy-targets", str(tmp_path / "y.npy"), "--layers",
             "12:tanh,3:softmax", "--epochs", "3", "--optimizer", "adam", "--learning-rate", "0.01"]
    status = main([*flags, "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0 and out.exists()
    assert "trained 3 epochs on 1500 samples" in printed and "samples):" not in printed  # nothing held out
    status = main([*flags, "--validation", "0.2", "--test", "0.2", "--quiet"])
    assert status == 0
    status = main([*flags, "--validation", "0.2", "--test", "0.2"])
    printed = capsys.readouterr().out
    assert "trained 3 epochs on 900 samples" in printed  # the files' last 40% held out
    assert "validation (300 samples)" in printed and "test (300 samples)" in printed
    status = main(["train", "--npy", str(tmp_path / "X.npy"), "--npy-targets", str(tmp_path / "y.npy")])
    error = capsys.readouterr().err
    assert status == 2 and "needs --layers" in error and len(error.strip().splitlines()) == 1


def test_the_model_commands_read_npy_features_and_targets_files(files, capsys):
    """evaluate (and every command with the data flags) takes the same --npy X.npy --npy-targets y.npy as train,
    reading both into memory: the figures are those of the loaded arrays."""
    tmp_path, X, y, _ = files
    out = tmp_path / "model.npz"
    pair = ["--npy", str(tmp_path / "X.npy"), "--npy-targets", str(tmp_path / "y.npy")]
    assert main(["train", *pair, "--layers", "12:tanh,3:softmax", "--epochs", "2", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), *pair]) == 0
    printed = capsys.readouterr().out
    accuracy = float(printed.split("accuracy")[1].split()[0])
    assert accuracy == pytest.approx(np.mean(hg.load(out).predict(X) == y), abs=1e-4)
    status = main(["evaluate", str(out), "--npy", str(tmp_path / "X.npy"), "--target", "0", "--npy-targets",
                   str(tmp_path / "y.npy")])
    error = capsys.readouterr().err
    assert status == 2 and "--npy-targets goes with --npy" in error and len(error.strip().splitlines()) == 1
