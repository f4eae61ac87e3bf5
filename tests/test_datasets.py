"""Data: generated sets, IDX files, CSV/NPY/NPZ, standardization, splits, and every bad input."""

import gzip
import os
import struct

import numpy as np
import pytest

import handgrad as hg
from handgrad import datasets

SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist-t10k")


@pytest.mark.parametrize("name", sorted(datasets.GENERATORS))
def test_generated_sets_are_seeded_and_shaped(name):
    X, y = datasets.make_dataset(name, 101, seed=4)
    X2, y2 = datasets.make_dataset(name, 101, seed=4)
    X3, _ = datasets.make_dataset(name, 101, seed=5)
    assert X.shape == (101, 1 if name == "regression1d" else 2) and y.shape == (101,)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(X, X3)
    if name in datasets.CLASSIFICATION_SETS:
        counts = np.bincount(y)
        assert y.dtype == np.int64 and len(counts) >= 2 and counts.max() - counts.min() <= 101 * 0.3


def test_noise_zero_gives_exact_shapes():
    X, y = datasets.make_circles(200, noise=0.0, factor=0.3, seed=0)
    radius = np.hypot(X[:, 0], X[:, 1])
    np.testing.assert_allclose(radius[y == 0], 1.0)
    np.testing.assert_allclose(radius[y == 1], 0.3)
    X, y = datasets.make_xor(300, noise=0.0, seed=0)
    np.testing.assert_array_equal(y, (X[:, 0] * X[:, 1] < 0).astype(int))


@pytest.mark.parametrize("call, message", [
    (lambda: datasets.make_dataset("moon"), "Did you mean 'moons'"),
    (lambda: datasets.make_moons(0), "n_samples must be a positive integer"),
    (lambda: datasets.make_moons(10, noise=-1), "noise must be"),
    (lambda: datasets.make_circles(10, factor=2), "factor"),
])
def test_generator_errors(call, message):
    with pytest.raises(hg.DataError, match=message):
        call()


# ---------------------------------------------------------------- IDX
def write_idx(path, array, gz=False):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    array = np.asarray(array)
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)


def make_mnist_dir(directory, n=12, gz=True, kind="t10k", rows=4, cols=5):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, rows, cols), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(directory / f"{kind}-images-idx3-ubyte{suffix}", images, gz)
    write_idx(directory / f"{kind}-labels-idx1-ubyte{suffix}", labels, gz)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_written_idx_files(tmp_path, gz):
    images, labels = make_mnist_dir(tmp_path, gz=gz, kind="train")
    got_images, got_labels = datasets.load_mnist(tmp_path, "train")
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_read_idx_other_dtypes(tmp_path):
    array = (np.arange(6).reshape(2, 3) - 3).astype(">i4")
    write_idx(tmp_path / "a.idx", array)
    got = datasets.read_idx(tmp_path / "a.idx")
    np.testing.assert_array_equal(got, array)
    assert got.dtype == np.int32


def test_idx_errors(tmp_path):
    with pytest.raises(hg.DataError, match=r"no t10k images file.*download_mnist"):
        datasets.load_mnist(tmp_path)
    with pytest.raises(hg.DataError, match="does not exist"):
        datasets.load_mnist(tmp_path / "absent")
    (tmp_path / "bad.idx").write_bytes(b"\x12\x34\x08\x01")
    with pytest.raises(hg.DataError, match="bad magic number"):
        datasets.read_idx(tmp_path / "bad.idx")
    images, labels = make_mnist_dir(tmp_path, gz=False)
    data = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(data[:-7])
    with pytest.raises(hg.DataError, match="truncated"):
        datasets.load_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:5])
    with pytest.raises(hg.DataError, match=r"mismatched lengths: .* 5 images .* 12 labels"):
        datasets.load_mnist(tmp_path)
    with pytest.raises(hg.DataError, match="kind must be"):
        datasets.load_mnist(tmp_path, "test")


def test_download_offline_message(tmp_path):
    # A closed local port: refused at once, no network traffic.
    with pytest.raises(hg.DataError, match=r"could not download .*put t10k-images-idx3-ubyte\.gz .*by hand"):
        datasets.download_mnist(tmp_path / "cache", base_url="http://127.0.0.1:9/", timeout=2)
    assert os.listdir(tmp_path / "cache") == []  # no partial files left


def test_download_checks_checksums(tmp_path, monkeypatch):
    class FakeResponse:
        def __init__(self, url):
            self.data = b"not the real file"

        def read(self, n=-1):
            data, self.data = self.data, b""
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(datasets.urllib.request, "urlopen", lambda url, timeout: FakeResponse(url))
    with pytest.raises(hg.DataError, match="wrong checksum"):
        datasets.download_mnist(tmp_path)
    assert not any(name.endswith(".gz") for name in os.listdir(tmp_path))


@pytest.mark.skipif(not os.path.isdir(SHARED_MNIST), reason="real MNIST not available")
def test_real_mnist_t10k():
    images, labels = datasets.load_mnist(SHARED_MNIST)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert labels.max() == 9 and images.max() == 255


# ---------------------------------------------------------------- CSV, NPY, NPZ
def test_csv_with_header_and_named_target(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,label,b\n1,0,2.5\n3,1,4\n\n5,1,6\n")
    X, y = datasets.load_csv(path, "label")
    np.testing.assert_array_equal(X, [[1, 2.5], [3, 4], [5, 6]])
    np.testing.assert_array_equal(y, [0, 1, 1])
    assert y.dtype == np.int64
    X, y = datasets.load_csv(path)  # default: the last column
    np.testing.assert_array_equal(y, [2.5, 4, 6])
    X, y = datasets.load_csv(path, 0)
    np.testing.assert_array_equal(y, [1, 3, 5])


def test_npy_and_npz(tmp_path):
    table = np.column_stack([np.arange(5.0), np.arange(5.0) * 2, [0, 1, 0, 1, 1]])
    np.save(tmp_path / "t.npy", table)
    X, y = datasets.load_npy(tmp_path / "t.npy")
    np.testing.assert_array_equal(X, table[:, :2])
    np.testing.assert_array_equal(y, [0, 1, 0, 1, 1])
    np.savez(tmp_path / "xy.npz", X=table[:, :2], y=table[:, 2])
    X, y = datasets.load_file(tmp_path / "xy.npz")
    np.testing.assert_array_equal(X, table[:, :2])
    np.savez(tmp_path / "one.npz", data=table)
    X, y = datasets.load_npz(tmp_path / "one.npz", target=0)
    np.testing.assert_array_equal(y, np.arange(5))


@pytest.mark.parametrize("content, target, message", [
    ("", None, "empty data set"),
    ("a,b\n", None, "empty data set"),
    ("1,2\n3\n", None, "line 2 has 1 fields but the file has 2 columns"),
    ("1,2\n3,x\n", None, "line 2, column 2: 'x' is not a number"),
    ("1,2\nnan,1\n", None, "NaN or infinity in the features"),
    ("1,2\n3,inf\n", None, "NaN or infinity in the targets"),
    ("a,b\n1,2\n", "c", "no column 'c'"),
    ("a,bb\n1,2\n", "b", "Did you mean 'bb'"),
    ("1,2\n", "x", "no header row"),
    ("1,2\n", 5, "target column 5 does not exist"),
    ("1\n2\n", None, "only one column"),
])
def test_csv_errors(tmp_path, content, target, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(hg.DataError, match=message):
        datasets.load_csv(path, target)


def test_file_errors(tmp_path):
    with pytest.raises(hg.DataError, match="does not exist"):
        datasets.load_csv(tmp_path / "absent.csv")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(hg.DataError, match="not a readable text CSV"):
        datasets.load_csv(tmp_path / "binary.csv")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(hg.DataError, match="pickled object arrays are refused"):
        datasets.load_npy(tmp_path / "obj.npy")
    with pytest.raises(hg.DataError, match="unknown data file type"):
        datasets.load_file(tmp_path / "data.xlsx")
    np.savez(tmp_path / "noy.npz", X=np.ones((3, 2)))
    with pytest.raises(hg.DataError, match="no 'y' array"):
        datasets.load_npz(tmp_path / "noy.npz")


def test_check_dataset_and_labels():
    with pytest.raises(hg.DataError, match="mismatched lengths: 3 samples but 2 targets"):
        datasets.check_dataset(np.ones((3, 2)), [0, 1])
    with pytest.raises(hg.DataError, match="empty"):
        datasets.check_dataset(np.ones((0, 2)), [])
    with pytest.raises(hg.DataError, match=r"label 3 is out of range.*0\.\.2"):
        datasets.check_labels(np.array([0, 1, 3]), 3)
    with pytest.raises(hg.DataError, match="label -1 is out of range"):
        datasets.check_labels(np.array([0, -1]), 2)


# ---------------------------------------------------------------- standardization and splits
def test_standardizer_fits_training_data_only_and_round_trips():
    rng = np.random.default_rng(0)
    X_train = rng.normal(3.0, 2.0, size=(200, 3))
    X_train[:, 2] = 7.0  # a constant column is only centred
    scaler = datasets.Standardizer().fit(X_train)
    Z = scaler.transform(X_train)
    np.testing.assert_allclose(Z[:, :2].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z[:, :2].std(axis=0), 1)
    np.testing.assert_array_equal(Z[:, 2], 0)
    X_test = rng.normal(size=(5, 3))
    np.testing.assert_allclose(scaler.transform(X_test), (X_test - X_train.mean(0)) / scaler.scale)
    restored = datasets.Standardizer.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(restored.transform(X_test), scaler.transform(X_test))
    np.testing.assert_allclose(scaler.inverse_transform(Z), X_train)
    with pytest.raises(hg.DataError, match="fitted on 3"):
        scaler.transform(np.ones((2, 4)))
    with pytest.raises(hg.DataError, match="not fitted"):
        datasets.Standardizer().transform(X_test)


def test_split_is_seeded_and_disjoint():
    X = np.arange(100.0).reshape(50, 2)
    y = np.arange(50)
    a = datasets.train_validation_test_split(X, y, 0.2, 0.1, seed=3)
    b = datasets.train_validation_test_split(X, y, 0.2, 0.1, seed=3)
    c = datasets.train_validation_test_split(X, y, 0.2, 0.1, seed=4)
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (35, 10, 5)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train)
    assert sorted(np.concatenate([a.y_train, a.y_val, a.y_test]).tolist()) == list(range(50))
    np.testing.assert_array_equal(a.X_train[:, 0], a.y_train * 2)  # rows stay with their targets
    with pytest.raises(hg.DataError, match="leave no training data"):
        datasets.train_validation_test_split(X, y, 0.5, 0.5)


def test_a_gzipped_idx_file_is_never_inflated_past_what_its_header_announces(tmp_path):
    """A 0.25 MB gzip file whose header announces 3 bytes of labels but which inflates to 256 MB (a gzip
    bomb, or damage after the header): the reader stops one byte past the announced size and reports the
    file as damaged, instead of decompressing it whole into memory first."""
    import tracemalloc
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip format
    zeros = bytes(1 << 24)
    parts = [compressor.compress(struct.pack(">BBBBI", 0, 0, 0x08, 1, 3))]
    parts += [compressor.compress(zeros) for _ in range(16)]
    bomb = tmp_path / "labels-idx1-ubyte.gz"
    bomb.write_bytes(b"".join(parts) + compressor.flush())
    del zeros, parts
    tracemalloc.start()
    try:
        with pytest.raises(hg.errors.DataError, match="damaged"):
            datasets.read_idx(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2 ** 20, f"reading used {peak / 2 ** 20:.0f} MiB"
    good = tmp_path / "good.gz"
    good.write_bytes(gzip.compress(struct.pack(">BBBBI", 0, 0, 0x08, 1, 3) + b"\x01\x02\x03"))
    np.testing.assert_array_equal(datasets.read_idx(good), [1, 2, 3])
