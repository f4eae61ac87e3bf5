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
    loaded = io.load(tmp_path / "ckpt.npz")
    assert loaded.metadata == {"epoch": 4}
    np.testing.assert_array_equal(loaded.extra_arrays["velocity.W1"], np.ones((3, 4)))


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


def rewrite_members(path, change):
    """Rebuild the zip with ``change(members)`` applied, then reseal it (a forger who knows the format)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    change(members)
    buffer = stdio.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.comment = b"\0" * io._SEAL_LENGTH
    path.write_bytes(io._seal(buffer.getvalue()))


def test_newer_format_version_is_refused(saved, monkeypatch):
    monkeypatch.setattr(io, "FORMAT_VERSION", 2)
    small_net().save(saved)
    monkeypatch.undo()
    with pytest.raises(hg.ModelFileError, match="format version 2.*upgrade handgrad"):
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
