"""Fuzzing the readers: the model loader, and the CSV, NPY and IDX readers.

Every outcome on arbitrary or mutated input is either a valid result or one of handgrad's own errors
(HandgradError): no other exception, no hang (each example has a deadline), and no file written (the
folder holds only the input afterwards). The numbers of examples are bounded so that the whole file
runs in a few seconds.

Random bytes rarely get past a model file's SHA-256 seal, so the loader is also fed mutated files that
are sealed again (which reaches the zip and .npy decoding), and archives with a correct seal and
content digest whose metadata and arrays are generated (which reaches the network's rebuilding).
"""

import contextlib
import gzip
import io as _stdio
import os
import struct
import tempfile
import zipfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import handgrad as hg  # noqa: E402
from handgrad import datasets  # noqa: E402
from handgrad import io as hio  # noqa: E402
from handgrad.errors import HandgradError  # noqa: E402

# CI runs a fixed, small set of examples (derandomized: the same every run). For a longer hunt, set
# HANDGRAD_FUZZ_EXAMPLES=5000: then the examples are random, different on every run.
_EXAMPLES = os.environ.get("HANDGRAD_FUZZ_EXAMPLES")
FUZZ = settings(max_examples=int(_EXAMPLES or 60), deadline=2000, derandomize=not _EXAMPLES, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@contextlib.contextmanager
def only_input_remains(name, data):
    """A fresh folder holding ``name`` with ``data``; afterwards it must hold that file alone, unchanged."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, name)
        with open(path, "wb") as file:
            file.write(data)
        yield path
        assert os.listdir(folder) == [name], f"a reader wrote files: {os.listdir(folder)}"
        with open(path, "rb") as file:
            assert file.read() == data, "a reader changed its input"


def outcome(read, *args):
    """read(*args), or the HandgradError it raised; any other exception fails the test."""
    try:
        return read(*args)
    except HandgradError as error:
        assert str(error).strip(), "an error without a message"
        return error


def mutate(data, edits):
    """Apply (kind, position, value) edits: flip a byte, insert, delete or truncate."""
    data = bytearray(data)
    for kind, position, value in edits:
        if not data:
            break
        i = position % len(data)
        if kind == "flip":
            data[i] ^= value or 1
        elif kind == "set":
            data[i] = value
        elif kind == "insert":
            data[i:i] = bytes([value])
        elif kind == "delete":
            del data[i]
        else:
            del data[i:]
    return bytes(data)


EDITS = st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
                           st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6)


# ---------------------------------------------------------------------------- the model loader
def _model_bytes():
    net = hg.MLP(3, "4:leaky_relu(0.2),2:softmax", seed=0)
    arrays = dict(net.parameters())
    record = {"kind": hio.MODEL_KIND, "handgrad_version": hg.__version__, "config": net.config(),
              "user": {"preprocessing": None}}
    return hio.encode_archive(arrays, record), arrays, record


VALID_MODEL, VALID_ARRAYS, VALID_RECORD = _model_bytes()


def check_loaded(result):
    if isinstance(result, HandgradError):
        return
    assert isinstance(result, hg.MLP)
    assert result.forward(np.zeros((1, result.n_inputs))).shape == (1, result.n_outputs)  # a working network


def load_bytes(data):
    with only_input_remains("model.npz", data) as path:
        check_loaded(outcome(hg.load, path))


@FUZZ
@given(st.binary(max_size=400))
def test_model_loader_on_arbitrary_bytes(data):
    load_bytes(data)


@FUZZ
@given(EDITS)
def test_model_loader_on_mutated_files(edits):
    load_bytes(mutate(VALID_MODEL, edits))


@FUZZ
@given(EDITS)
def test_model_loader_on_mutated_files_sealed_again(edits):
    """The mutation gets past the file digest: zip structure, JSON and .npy decoding are what refuse it."""
    body = mutate(VALID_MODEL[:-hio._SEAL_LENGTH], edits)
    load_bytes(hio._seal(body + b"\0" * hio._SEAL_LENGTH))


def _rezip(members):
    """An archive with the given member bytes, sealed (content digest not recomputed)."""
    buffer = _stdio.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.comment = b"\0" * hio._SEAL_LENGTH
    return hio._seal(buffer.getvalue())


@FUZZ
@given(st.sampled_from(sorted(VALID_ARRAYS)), EDITS)
def test_model_loader_on_mutated_npy_members(name, edits):
    """An array member's .npy header or data is altered inside an otherwise intact, sealed archive."""
    with zipfile.ZipFile(_stdio.BytesIO(VALID_MODEL)) as archive:
        members = {member: archive.read(member) for member in archive.namelist()}
    members[name + ".npy"] = mutate(members[name + ".npy"][:200], edits)
    load_bytes(_rezip(members))


@FUZZ
@given(st.integers(0, 7), st.sampled_from(["<f8", "<f4", "<i8", "|u1", ">f8"]),
       st.lists(st.integers(0, 1 << 40), max_size=4))
def test_model_loader_on_npy_headers_that_promise_huge_arrays(index, dtype, shape):
    """A header may promise far more data than the member holds: refused before anything is allocated."""
    name = sorted(VALID_ARRAYS)[index % len(VALID_ARRAYS)]
    with zipfile.ZipFile(_stdio.BytesIO(VALID_MODEL)) as archive:
        members = {member: archive.read(member) for member in archive.namelist()}
    header = _stdio.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    members[name + ".npy"] = header.getvalue() + b"\0" * 64
    load_bytes(_rezip(members))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 2 ** 63) | st.floats() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                               max_size=4), max_leaves=12)
CONFIG_KEYS = ["n_inputs", "layers", "loss", "bias", "l2", "l1", "dropout", "seed", "dtype", "init"]


@FUZZ
@given(st.dictionaries(st.sampled_from(CONFIG_KEYS + ["extra"]), JSON, max_size=4),
       st.lists(st.tuples(st.integers(-2, 6), st.sampled_from(["relu", "leaky_relu(0.5)", "softmax", "x(", 3, None,
                                                               {"name": "elu", "alpha": -1}, "sigmoid"])),
                max_size=3),
       st.sampled_from([None, "drop", "reshape", "retype"]))
def test_model_loader_on_well_sealed_files_with_generated_content(changes, layers, array_change):
    """Correct seal and content digest, generated configuration: the network's own checks must refuse it."""
    config = dict(VALID_RECORD["config"], **changes)
    if layers:
        config["layers"] = [list(layer) for layer in layers]
    arrays = dict(VALID_ARRAYS)
    if array_change == "drop":
        arrays.pop("W1")
    elif array_change == "reshape":
        arrays["W1"] = arrays["W1"].reshape(-1)
    elif array_change == "retype":
        arrays["b2"] = arrays["b2"].astype(np.int32)
    try:
        data = hio.encode_archive(arrays, {**VALID_RECORD, "config": config})
    except HandgradError:
        return  # not JSON-able (NaN keys...): such a file cannot be written in the first place
    load_bytes(data)


@FUZZ
@given(JSON)
def test_checkpoint_reader_on_generated_state(state):
    from handgrad.checkpoints import CHECKPOINT_KIND, read_checkpoint

    try:
        data = hio.encode_archive({}, {"kind": CHECKPOINT_KIND, "state": state})
    except HandgradError:
        return
    with only_input_remains("run.ckpt", data) as path:
        outcome(read_checkpoint, path)


# ---------------------------------------------------------------------------- CSV
def check_table(result, n_columns=None):
    if isinstance(result, HandgradError):
        return
    X, y = result
    assert X.dtype == np.float64 and X.ndim == 2 and X.shape[0] >= 1 and X.shape[1] >= 1
    assert np.isfinite(X).all()
    if y is not None:
        assert y.shape[0] == X.shape[0]
        assert y.dtype.kind == "i" or np.isfinite(y).all()


CSV_TEXT = st.lists(st.lists(st.one_of(st.floats(allow_nan=True), st.integers(-10 ** 30, 10 ** 30),
                                       st.sampled_from(["", " ", "x", "1e999", "-inf", "nan", "0x10", "1_0", '"2"',
                                                        "\u00a0", "\t3", "٣", "1,5"]),
                                       st.text(max_size=4)).map(str), max_size=5), max_size=6).map(
    lambda rows: "\n".join(",".join(row) for row in rows))


@FUZZ
@given(st.one_of(CSV_TEXT.map(lambda t: t.encode("utf-8")), st.binary(max_size=200)),
       st.sampled_from([None, False, 0, -1, 5, "x0", "label", "1.5"]))
def test_csv_reader(data, target):
    with only_input_remains("data.csv", data) as path:
        check_table(outcome(datasets.load_csv, path, target))


@FUZZ
@given(CSV_TEXT, st.sampled_from(["a", "0", "-1", "zz"]), st.sampled_from([None, "b", "2"]))
def test_csv_reader_with_a_weight_column_through_the_command_line(text, weight, target):
    from handgrad.cli import main

    with only_input_remains("data.csv", ("a,b,c\n" + text).encode()) as path:
        status = main(["train", "--csv", path, "--sample-weight-column", weight, "--epochs", "1", "--quiet",
                       "--validation", "0", "--test", "0"] + (["--target", target] if target else []))
        assert status in (0, 2)


# ---------------------------------------------------------------------------- NPY
def _npy(array):
    buffer = _stdio.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


VALID_NPY = _npy(np.arange(12.0).reshape(4, 3))
ARRAYS = st.sampled_from([np.arange(12.0).reshape(4, 3), np.ones((2, 2), np.float32), np.array([1, 2, 3]),
                          np.array([[np.nan, 1.0]]), np.zeros((0, 3)), np.zeros((2, 0)), np.ones((2, 2, 2)),
                          np.array(5.0), np.array([[True, False]]), np.array([["a", "b"]]),
                          np.zeros(2, dtype=[("a", "<f8")]), np.array([[1 + 2j, 3]]), np.array([[1e308, -1e308]])])


@FUZZ
@given(st.one_of(st.binary(max_size=200), EDITS.map(lambda edits: mutate(VALID_NPY, edits)), ARRAYS.map(_npy)),
       st.sampled_from([None, False, 0, -1, 7, "a"]))
def test_npy_reader(data, target):
    with only_input_remains("data.npy", data) as path:
        check_table(outcome(datasets.load_npy, path, target))


@FUZZ
@given(st.sampled_from(["<f8", "<i4", "|u1", "<c16", "O", "|S3", ">f4"]),
       st.lists(st.integers(0, 1 << 40), max_size=3), st.booleans())
@example("<f8", [0, 1 << 40, 1 << 40], False)  # no bytes needed, yet too large for NumPy
def test_npy_reader_on_headers_that_promise_huge_arrays(dtype, shape, fortran):
    header = _stdio.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": fortran, "shape": tuple(shape)})
    with only_input_remains("data.npy", header.getvalue() + b"\0" * 48) as path:
        check_table(outcome(datasets.load_npy, path, None))


@pytest.mark.parametrize("array", [np.asfortranarray(np.arange(12.0).reshape(4, 3)),
                                   np.arange(12, dtype=">i4").reshape(3, 4), np.ones((2, 5), np.float32) / 3,
                                   np.array([[True, False], [False, True]]),
                                   np.arange(6, dtype=np.uint8).reshape(3, 2)],
                         ids=["fortran", "big-endian", "float32", "bool", "uint8"])
def test_npy_and_npz_readers_give_what_numpy_reads(tmp_path, array):
    """The checked decoder (handgrad.io.decode_npy) reads valid files exactly as numpy.load does."""
    np.save(tmp_path / "t.npy", array)
    np.savez(tmp_path / "t.npz", X=array, y=np.arange(len(array)))
    X, _ = datasets.load_npy(tmp_path / "t.npy", False)
    np.testing.assert_array_equal(X, np.load(tmp_path / "t.npy").astype(np.float64))
    X, y = datasets.load_npz(tmp_path / "t.npz")
    np.testing.assert_array_equal(X, array.astype(np.float64))
    np.testing.assert_array_equal(y, np.arange(len(array)))


@FUZZ
@given(st.one_of(st.binary(max_size=200), EDITS.map(lambda edits: mutate(VALID_NPY, edits))))
def test_npz_reader(data):
    buffer = _stdio.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("X.npy", data)
        archive.writestr("y.npy", _npy(np.arange(4)))
    with only_input_remains("data.npz", buffer.getvalue()) as path:
        check_table(outcome(datasets.load_npz, path, None))


# ---------------------------------------------------------------------------- IDX (MNIST)
def _idx(array, code=0x08):
    return struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.tobytes()


VALID_IDX = _idx(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


def check_idx(result):
    if isinstance(result, HandgradError):
        return
    assert isinstance(result, np.ndarray) and result.dtype.isnative


IDX_HEADERS = st.tuples(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x07]), st.integers(0, 6),
                        st.lists(st.integers(0, 2 ** 32 - 1), max_size=6), st.binary(max_size=64)).map(
    lambda t: struct.pack(">BBBB", 0, 0, t[0], t[1]) + struct.pack(f">{len(t[2])}I", *t[2]) + t[3])


@FUZZ
@given(st.one_of(st.binary(max_size=100), EDITS.map(lambda edits: mutate(VALID_IDX, edits)), IDX_HEADERS),
       st.booleans())
def test_idx_reader(data, gzipped):
    data = gzip.compress(data) if gzipped else data
    with only_input_remains("images-idx3-ubyte", data) as path:
        check_idx(outcome(datasets.read_idx, path))


@FUZZ
@given(EDITS)
def test_idx_reader_on_damaged_gzip(edits):
    with only_input_remains("images.gz", mutate(gzip.compress(VALID_IDX), edits)) as path:
        check_idx(outcome(datasets.read_idx, path))


@FUZZ
@given(IDX_HEADERS, IDX_HEADERS)
@example(struct.pack(">BBBB6I", 0, 0, 8, 6, 0, 0, 0, 4, 1 << 31, 1 << 31), b"\0\0\x08\0")  # found by this test
def test_mnist_loader_on_generated_files(images, labels):
    with tempfile.TemporaryDirectory() as folder:
        for name, data in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
            with open(os.path.join(folder, name), "wb") as file:
                file.write(data)
        result = outcome(datasets.load_mnist, folder, "t10k")
        if not isinstance(result, HandgradError):
            images_array, labels_array = result
            assert images_array.ndim == 3 and len(images_array) == len(labels_array) > 0
        assert sorted(os.listdir(folder)) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
