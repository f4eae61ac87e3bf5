"""Model files: round trips, atomic writes, and every kind of damaged file refused."""

import io as stdio
import json
import os
import zipfile

import numpy as np
import pytest

import handgrad as hg
from handgrad import io


def small_net(**options):
    layers = [(4, {"name": "leaky_relu", "slope": 0.2}), (3, "tanh"), (2, "softmax")]
    return hg.MLP(3, layers, seed=3, **options)


def assert_same_weights(a, b):
    names_a = [name for name, _ in a.parameters()]
    names_b = [name for name, _ in b.parameters()]
    assert names_a == names_b
    for (_, x), (_, y) in zip(a.parameters(), b.parameters()):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()  # bit-identical


@pytest.mark.parametrize("options", [{}, {"bias": False}, {"dtype": "float32"}, {"l2": 0.01, "dropout": [0.1, 0.2]}])
def test_save_load_round_trip(tmp_path, options):
    net = small_net(**options)
    # Perturb the weights so the file holds something other than the initialization.
    net.set_weights([w + 0.5 for w in net.get_weights()])
    path = tmp_path / "model.npz"
    net.save(path, training={"epochs": 7, "optimizer": "adam"}, note="hello")
    loaded = hg.load(path)
    assert_same_weights(net, loaded)
    assert loaded.config() == net.config()
    assert loaded.layers[0].activation.slope == 0.2
    assert loaded.metadata == {"training": {"epochs": 7, "optimizer": "adam"}, "note": "hello"}
    X = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))


def test_file_is_a_plain_npz_readable_without_pickle(tmp_path):
    net = small_net()
    path = tmp_path / "model.npz"
    io.save(net, path)
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(["metadata.json", "W1", "b1", "W2", "b2", "W3", "b3"])
        np.testing.assert_array_equal(npz["W2"], net.layers[1].W)


def test_archive_round_trip_and_extra_arrays(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.int32).reshape(2, 3), "flag": np.array([True, False]),
              "x": np.linspace(0, 1, 4, dtype=np.float32)}
    io.write_archive(tmp_path / "a.npz", arrays, {"k": [1, 2.5, "s"], "n": np.int64(3)})
    got, meta = io.read_archive(tmp_path / "a.npz")
    assert meta == {"k": [1, 2.5, "s"], "n": 3}
    for name in arrays:
        assert got[name].dtype == arrays[name].dtype
        np.testing.assert_array_equal(got[name], arrays[name])

    net = small_net()
    io.save(net, tmp_path / "ckpt.npz", extra_arrays={"velocity.W1": np.ones((3, 4))}, epoch=4)
    loaded = hg.load(tmp_path / "ckpt.npz")
    assert loaded.metadata == {"epoch": 4}
    np.testing.assert_array_equal(loaded.extra_arrays["velocity.W1"], np.ones((3, 4)))


def test_read_model_gives_config_arrays_and_metadata_without_building_a_network(tmp_path):
    net = small_net(l2=0.5)
    io.save(net, tmp_path / "m.npz", extra_arrays={"step": np.array([3])}, note="n")
    config, arrays, user, extra = io.read_model(tmp_path / "m.npz")
    assert config == net.config() and config["l2"] == 0.5
    assert sorted(arrays) == ["W1", "W2", "W3", "b1", "b2", "b3"]
    np.testing.assert_array_equal(arrays["W3"], net.layers[2].W)
    assert user == {"note": "n"}
    assert list(extra) == ["step"] and extra["step"].tolist() == [3]


def test_save_is_duck_typed_and_the_network_checks_its_config_rebuilds(tmp_path):
    class Plain:  # anything with config() and parameters(); no MLP needed (io does not import network)
        def __init__(self):
            self.metadata = {"from": "elsewhere"}

        def config(self):
            return small_net().config()

        def parameters(self):
            return small_net().parameters()

    io.save(Plain(), tmp_path / "plain.npz", extra="yes")
    loaded = hg.load(tmp_path / "plain.npz")
    assert_same_weights(loaded, small_net())
    assert loaded.metadata == {"from": "elsewhere", "extra": "yes"}

    class Cube(hg.Activation):  # a user's activation: its name is not one a model file can rebuild
        name = "cube"

        def forward(self, Z, out=None):
            return np.power(Z, 3, out=out)

        def derivative(self, Z, A):
            return 3 * Z ** 2

    net = hg.MLP(2, [(3, Cube()), (1, "identity")], seed=0)
    with pytest.raises(hg.ConfigError, match=r"cannot be saved.*built-in names"):
        net.save(tmp_path / "custom.npz")
    assert not (tmp_path / "custom.npz").exists()


def test_softmax_in_a_hidden_layer_round_trips(tmp_path):
    net = hg.MLP(3, [(4, "softmax"), (5, "tanh"), (2, "softmax")], seed=1)
    net.set_weights([w * 2 + 0.1 for w in net.get_weights()])
    net.save(tmp_path / "m.npz")
    loaded = hg.load(tmp_path / "m.npz")
    assert [layer.activation.name for layer in loaded.layers] == ["softmax", "tanh", "softmax"]
    assert_same_weights(net, loaded)
    X = np.random.default_rng(2).normal(size=(6, 3))
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))


FIXTURE = os.path.join(os.path.dirname(__file__), "data", "model-v0.1.0.npz")


def test_a_file_written_by_handgrad_0_1_0_still_loads():
    """tests/data/model-v0.1.0.npz was written by handgrad 0.1.0's io.save (format version 1):
    MLP(2, [(3, leaky_relu(0.2)), (2, 'softmax')], seed=0, l2=0.01), weights + 0.25, an extra array."""
    net = hg.load(FIXTURE)
    assert net.config()["l2"] == 0.01 and net.layers[0].activation.slope == 0.2
    expected = [[[1.6936909546981256, -0.6459459763857414, 0.985955670177038],
                 [0.2558770404050943, 1.103381789726193, 0.4109480326942554]], [0.25, 0.25, 0.25],
                [[-0.72127149918097, 0.9487122192472515], [-0.25676009503457764, 0.6427112829171531],
                 [1.0270556067778176, -0.6483217478989155]], [0.25, 0.25]]
    assert [w.tolist() for w in net.get_weights()] == expected  # bit for bit
    assert net.metadata == {"note": "written by handgrad 0.1.0"}
    np.testing.assert_array_equal(net.extra_arrays["velocity.W1"], np.arange(6.0).reshape(2, 3))
    np.testing.assert_allclose(net.forward(np.array([[0.5, -1.0], [2.0, 0.25]])),
                               [[0.34603613, 0.65396387], [0.10445037, 0.89554963]], atol=1e-8)
    assert io.read_archive(FIXTURE)[1]["handgrad_version"] == "0.1.0"


def test_object_arrays_refused_on_write(tmp_path):
    path = tmp_path / "a.npz"
    with pytest.raises(hg.ConfigError, match="object"):
        io.write_archive(path, {"bad": np.array([{"x": 1}], dtype=object)}, {})
    with pytest.raises(hg.ConfigError, match="JSON"):
        io.write_archive(path, {}, {"f": object()})
    assert not path.exists()


def test_write_into_missing_folder_is_refused(tmp_path):
    with pytest.raises(hg.ModelFileError, match="does not exist"):
        small_net().save(tmp_path / "nope" / "model.npz")


def test_failed_write_leaves_earlier_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    small_net().save(path)
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    other = hg.MLP(3, [(2, "softmax")], seed=9)
    with pytest.raises(hg.ModelFileError, match="No space left"):
        other.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]  # no temporary file left behind


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(hg.ModelFileError, match="does not exist"):
        hg.load(tmp_path / "absent.npz")
    with pytest.raises(hg.ModelFileError, match="folder"):
        hg.load(tmp_path)


# ---------------------------------------------------------------- corrupted files
@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.npz"
    small_net().save(path, training={"epochs": 2})
    return path


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, -1])
def test_truncated_files_are_refused(saved, keep):
    data = saved.read_bytes()
    keep = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    saved.write_bytes(data[:keep])
    with pytest.raises(hg.ModelFileError):
        hg.load(saved)


def test_every_single_flipped_byte_is_refused(saved):
    data = saved.read_bytes()
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        with pytest.raises(hg.ModelFileError):
            io.decode_archive(bytes(damaged))


def test_flipped_weight_byte_message(saved):
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(hg.ModelFileError, match="checksum"):
        hg.load(saved)


def rewrite_members(path, change, compression=zipfile.ZIP_STORED):
    """Rebuild the zip with ``change(members)`` applied, then reseal it (a forger who knows the format)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    change(members)
    buffer = stdio.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.comment = b"\0" * io._SEAL_LENGTH
    path.write_bytes(io._seal(buffer.getvalue()))


def test_newer_format_version_is_refused(saved, monkeypatch):
    monkeypatch.setattr(io, "FORMAT_VERSION", 2)
    small_net().save(saved)
    monkeypatch.undo()
    with pytest.raises(hg.ModelFileError, match=r"format version 2.*upgrade handgrad"):
        hg.load(saved)


def test_edited_version_in_metadata_is_refused(saved):
    def bump(members):
        header = json.loads(members["metadata.json"])
        header["format_version"] = 99
        members["metadata.json"] = json.dumps(header).encode()

    rewrite_members(saved, bump)
    with pytest.raises(hg.ModelFileError, match="version 99"):
        hg.load(saved)


def test_edited_weights_with_valid_seal_are_refused(saved):
    def edit(members):
        buffer = stdio.BytesIO()
        np.lib.format.write_array(buffer, np.zeros((3, 4)))
        members["W1.npy"] = buffer.getvalue()

    rewrite_members(saved, edit)
    with pytest.raises(hg.ModelFileError, match="content checksum"):
        hg.load(saved)


def test_pickle_inside_is_refused(saved):
    def add_pickle(members):
        buffer = stdio.BytesIO()
        np.lib.format.write_array(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
        members["W1.npy"] = buffer.getvalue()

    rewrite_members(saved, add_pickle)
    with pytest.raises(hg.ModelFileError, match="pickle"):
        hg.load(saved)


def test_a_compressed_member_is_refused_before_it_is_inflated(saved, monkeypatch):
    """A zip bomb: a sealed file whose weights member is deflated (here 8 MB of zeros in a few kB) would
    inflate far past the file's size. handgrad writes members stored, so it refuses compressed ones before
    reading any (a spy on ZipFile.read shows nothing was inflated)."""
    def bomb(members):
        buffer = stdio.BytesIO()
        np.lib.format.write_array(buffer, np.zeros((1000, 1000)))
        members["W1.npy"] = buffer.getvalue()

    rewrite_members(saved, bomb, compression=zipfile.ZIP_DEFLATED)
    assert saved.stat().st_size < 100_000
    reads = []
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, name, pwd=None: reads.append(name))
    with pytest.raises(hg.ModelFileError, match="compressed member"):
        hg.load(saved)
    assert reads == []


def test_extra_member_is_refused(saved):
    rewrite_members(saved, lambda members: members.update({"payload.npy": members["W1.npy"]}))
    with pytest.raises(hg.ModelFileError, match="altered"):
        hg.load(saved)


def test_other_files_are_refused(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, W1=np.ones(3))
    with pytest.raises(hg.ModelFileError, match="checksum"):
        hg.load(plain)
    text = tmp_path / "notes.txt"
    text.write_text("not a model at all, just some words in a file" * 3)
    with pytest.raises(hg.ModelFileError, match="not a handgrad model file"):
        hg.load(text)
    archive = tmp_path / "data.npz"
    io.write_archive(archive, {"X": np.ones((2, 2))}, {"kind": "dataset"})
    with pytest.raises(hg.ModelFileError, match="holds no network"):
        hg.load(archive)


# ---------------------------------------------------------------- one writer, one permission rule
def _write_model(path):
    small_net().save(path / "model.npz")
    return ["model.npz"]


def _write_checkpoint(path):
    X = np.random.default_rng(0).normal(size=(8, 3))
    small_net().fit(X, np.arange(8) % 2, epochs=1, batch_size=4, checkpoint=path / "ckpt.npz", verbose=False)
    return ["ckpt.npz"]


def _write_graphs(path):
    from handgrad.graph import save_graph

    pytest.importorskip("matplotlib")
    for name in ("graph.dot", "graph.svg", "graph.png"):
        save_graph(small_net(), path / name)
    return ["graph.dot", "graph.svg", "graph.png"]


def _write_picture(path):
    pytest.importorskip("matplotlib")
    from handgrad import plotting

    plotting.plot_weight_histograms(small_net(), path / "weights.png")
    return ["weights.png"]


def _write_onnx(path):
    pytest.importorskip("onnx")
    small_net().to_onnx(path / "model.onnx")
    return ["model.onnx"]


def _write_cli_outputs(path):
    from handgrad.cli import main

    assert main(["train", "--data", "xor", "--samples", "40", "--epochs", "2", "--quiet", "--out",
                 str(path / "cli.npz"), "--run-dir", str(path / "run")]) == 0
    np.save(path / "X.npy", np.zeros((3, 2)))
    assert main(["predict", str(path / "cli.npz"), str(path / "X.npy"), "--out", str(path / "p.csv")]) == 0
    run = sorted(os.path.join("run", name) for name in os.listdir(path / "run"))
    assert {"run/history.csv", "run/history.json", "run/metrics.json"} <= set(run)
    return ["cli.npz", "p.csv", *run]


def _write_download(path):
    from handgrad import datasets

    class Response(stdio.BytesIO):
        def __enter__(self):
            return self

    data = b"idx bytes"
    original = datasets.urllib.request.urlopen
    datasets.urllib.request.urlopen = lambda url, timeout: Response(data)
    try:
        import hashlib

        datasets._download("http://example.invalid/f.gz", str(path / "f.gz"), hashlib.md5(data).hexdigest(), 1)
    finally:
        datasets.urllib.request.urlopen = original
    return ["f.gz"]


WRITERS = [_write_model, _write_checkpoint, _write_graphs, _write_picture, _write_onnx, _write_cli_outputs,
           _write_download]


@pytest.fixture
def umask():
    """Set the process umask for one test (restored after it)."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__[len("_write_"):])
def test_every_output_gets_the_mode_open_would_give(tmp_path, umask, writer, mask, capsys):
    umask(mask)
    names = writer(tmp_path)
    modes = {name: oct(os.stat(tmp_path / name).st_mode & 0o777) for name in names}
    assert modes == {name: oct(0o666 & ~mask) for name in names}
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]  # no temporary file left


def test_replacing_a_file_keeps_its_mode(tmp_path, umask):
    from handgrad.graph import save_graph

    umask(0o022)
    for name, write in (("model.npz", lambda p: small_net().save(p)),
                        ("graph.dot", lambda p: save_graph(small_net(), p)),
                        ("out.csv", lambda p: io.atomic_write_text(p, "a,b\n"))):
        path = tmp_path / name
        path.write_bytes(b"old")
        os.chmod(path, 0o600)
        write(path)
        assert path.read_bytes() != b"old"
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o600), name
        os.chmod(path, 0o664)
        write(path)
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o664), name


@pytest.mark.parametrize("where", ["layer", "inputs"])
def test_a_sealed_file_with_a_huge_layer_size_is_refused_before_anything_is_allocated(tmp_path, where):
    """A correctly sealed file (damaged before sealing, or crafted) whose config names a layer of 10^12
    units: load used to build that network first and died with MemoryError (36 TiB); a smaller size would
    allocate gigabytes. The weight count is compared with what the file stores before building."""
    net = hg.MLP(4, [(3, "tanh"), (2, "softmax")], seed=0)
    config = json.loads(json.dumps(net.config()))
    if where == "layer":
        config["layers"][0][0] = 10 ** 12
    else:
        config["n_inputs"] = 10 ** 12
    record = {"kind": io.MODEL_KIND, "handgrad_version": hg.__version__, "config": config, "user": {}}
    io.write_archive(tmp_path / "huge.npz", dict(net.parameters()), record)
    with pytest.raises(hg.errors.ModelFileError, match="damaged"):
        hg.load(tmp_path / "huge.npz")
    io.write_archive(tmp_path / "fine.npz", dict(net.parameters()), {**record, "config": net.config()})
    np.testing.assert_array_equal(hg.load(tmp_path / "fine.npz").params, net.params)


def test_json_safe_turns_numpy_values_and_non_finite_numbers_into_plain_json():
    value = {1: np.float32(0.5), "a": [np.inf, float("nan"), np.int64(3)], "m": np.array([[1.0, -np.inf]]),
             "o": hg.activations.LeakyReLU(0.1), "t": (True, None, "x")}
    safe = io.json_safe(value)
    assert safe == {"1": 0.5, "a": [None, None, 3], "m": [[1.0, None]], "o": repr(value["o"]),
                    "t": [True, None, "x"]}
    json.dumps(safe, allow_nan=False)  # accepted as it is
