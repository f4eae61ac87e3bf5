"""Model files: versioned, checksummed, never executing code on load, written atomically.

The format (documented in docs/model-format.md) is an ordinary ``.npz`` zip archive,
so ``numpy.load(path, allow_pickle=False)`` can open it too:

    metadata.json      JSON: format name and version, one entry per array (dtype, shape),
                       a SHA-256 of the content, and the caller's metadata
    <name>.npy         one member per array, in NumPy's .npy format (numeric dtypes only)
    zip comment        "handgrad-sha256:" + SHA-256 (hex) of every byte of the file before it

Two checksums, two jobs. The file digest in the zip comment catches any changed,
missing or added byte (a flipped bit, a truncated copy). The content digest in
``metadata.json`` covers the arrays' names, dtypes, shapes and bytes and the metadata,
so the logical content is verified after decoding as well.

Reading never unpickles: arrays are decoded with ``allow_pickle=False`` and object,
string and structured dtypes are refused both when writing and when reading.
Writing goes to a temporary file in the target's directory, which is flushed,
fsynced and then renamed over the target (``os.replace``), so a crash or a full
disk leaves any earlier file intact.
"""

import contextlib
import hashlib
import io as _stdio
import json
import math
import os
import re
import secrets
import tokenize
import zipfile
import zlib

import numpy as np

from ._version import __version__
from .errors import ConfigError, ModelFileError

ARCHIVE_FORMAT = "handgrad-archive"
FORMAT_VERSION = 1
MODEL_KIND = "handgrad.MLP"
METADATA_MEMBER = "metadata.json"
_SEAL_PREFIX = b"handgrad-sha256:"
_SEAL_LENGTH = len(_SEAL_PREFIX) + 64  # prefix + 64 hex digits
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_ALLOWED_KINDS = "biuf"  # bool, signed and unsigned integers, floats
_MAX_METADATA_BYTES = 64 * 1024 * 1024
# What zipfile raises on a damaged archive: besides BadZipFile, a member may claim an unknown compression
# method or zip version (NotImplementedError), encryption (RuntimeError), or hold broken deflate data
# (zlib.error). Found by tests/test_fuzz.py.
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError, RuntimeError,
               zlib.error)


# ---------------------------------------------------------------------------- atomic writes
def writable_path(path, what=None):
    """``path`` as a string, or a ModelFileError when no file can be written there: its folder does not
    exist, or the path is a folder. ``what`` ("model file") names the file in the message."""
    path = os.fspath(path)
    name = f"{what} '{path}'" if what else f"'{path}'"
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ModelFileError(f"cannot write {name}: the folder '{directory}' does not exist; create it first.")
    if os.path.isdir(path):
        raise ModelFileError(f"cannot write {name}: it is a folder; give a file name.")
    return path


@contextlib.contextmanager
def atomic_writer(path, mode="wb", encoding="utf-8", newline=None):
    """Open a temporary file next to ``path``; on success fsync it and rename it over ``path``.

    Every file handgrad writes goes through here (model files, checkpoints, pictures, graphs,
    ONNX files, the CLI's CSV and JSON), so all get the permissions an ordinary ``open(path, "w")``
    gives: an existing file keeps its mode, a new one gets 0o666 minus the umask. If the
    ``with`` block raises (or the disk fills up), the temporary file is removed and whatever
    was at ``path`` before is left untouched.

    >>> with atomic_writer("out.csv", "w") as f:   # doctest: +SKIP
    ...     f.write("a,b\\n")
    """
    path = writable_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = _create_temporary(directory, os.path.basename(path))
    binary = "b" in mode
    try:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, os.stat(path).st_mode & 0o777)  # replacing a file keeps its permissions
        with os.fdopen(handle, mode, **({} if binary else {"encoding": encoding, "newline": newline})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        if isinstance(error, OSError) and not isinstance(error, ModelFileError):
            raise ModelFileError(f"could not write '{path}': {error.strerror or error}; the earlier file, if any, "
                                 "is unchanged.") from error
        raise
    _fsync_directory(directory)


def _create_temporary(directory, name):
    """(fd, path) of a new, empty file in ``directory``, created with mode 0o666 so that the kernel applies
    the umask exactly as for open() (tempfile.mkstemp would give 0o600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        temporary = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue
        except OSError as error:
            raise ModelFileError(f"cannot write in '{directory}': {error.strerror or error}.") from None
    raise ModelFileError(f"cannot create a temporary file in '{directory}': every name tried exists.")


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, "wb") as file:
        file.write(data)


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, "w", newline="") as file:
        file.write(text)


# ---------------------------------------------------------------------------- checksums
def _json_default(value):
    """Let NumPy scalars and small arrays inside metadata become plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in _ALLOWED_KINDS:
        return value.tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def plain_json(value, what="metadata"):
    """A JSON-only copy of ``value`` (NumPy scalars and small arrays become numbers and lists), or a ConfigError."""
    try:
        return json.loads(_canonical_json(value))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{what} must be JSON-serializable (numbers, strings, lists, dicts): {error}.") from None


def json_safe(value):
    """A copy that ``json.dumps(..., allow_nan=False)`` accepts: NumPy scalars and arrays become numbers and
    lists, NaN and infinity None (null, as JSON has neither), dict keys strings, other objects their repr
    (for reports such as a sweep's results and the playground's messages; model files use plain_json)."""
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def content_digest(arrays, metadata):
    """SHA-256 over the metadata (canonical JSON) and every array's name, dtype, shape and bytes, by name."""
    digest = hashlib.sha256()
    digest.update(_canonical_json(metadata).encode("utf-8"))
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"\n{name}|{array.dtype.str}|{list(array.shape)}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _check_array(name, array, where):
    if not isinstance(name, str) or not _NAME.match(name) or name + ".npy" == METADATA_MEMBER:
        raise ConfigError(f"array name {name!r} is not allowed {where}; use letters, digits, '_', '.' and '-'.")
    array = np.asarray(array)
    if array.dtype.kind not in _ALLOWED_KINDS:
        raise ConfigError(
            f"array '{name}' has dtype {array.dtype}, which model files do not store {where} (object, string and "
            "structured arrays would need pickle); convert it to a numeric dtype."
        )
    return array


# ---------------------------------------------------------------------------- .npy members and files
# What NumPy's .npy header parser raises on a damaged header (it evaluates the header as a Python literal).
_NPY_HEADER_ERRORS = (ValueError, TypeError, SyntaxError, EOFError, OverflowError, RecursionError, MemoryError,
                      tokenize.TokenError)


_NPY_HEADER_ROOM = 16 + 10000  # magic, version and length, and NumPy's largest header by default


def decode_npy(data, where="array", error=ModelFileError, kinds=_ALLOWED_KINDS):
    """The array stored in the ``.npy`` bytes ``data``, checked before anything is allocated.

    The header is read first (NumPy's own parser, never pickle); its dtype must be numeric (``kinds``)
    and its shape must account for exactly the bytes that follow. A damaged header, or one that
    promises more (or fewer) values than the data holds, raises ``error`` naming ``where`` instead of
    an allocation of the promised size (tests/test_fuzz.py found both)."""
    stream = _stdio.BytesIO(bytes(memoryview(data)[:_NPY_HEADER_ROOM]))  # the header only, not the values
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f".npy format version {version[0]}.{version[1]} (handgrad reads 1.0 and 2.0)")
    except _NPY_HEADER_ERRORS as problem:
        reason = (str(problem).splitlines() or [type(problem).__name__])[0]
        raise error(f"{where} is not a readable .npy array: {reason}.") from None
    if dtype.hasobject or dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        raise error(f"{where} holds dtype {dtype}, which handgrad does not read: pickled object arrays are refused "
                    "(loading them could run code), and so are strings and records; store numbers.")
    count = math.prod(shape)
    available = len(data) - stream.tell()
    if count * dtype.itemsize != available:
        raise error(f"{where} is damaged: its header promises {count} values of {dtype} ({count * dtype.itemsize} "
                    f"bytes) but {available} bytes follow.")
    try:
        flat = np.frombuffer(data, dtype, count=count, offset=stream.tell())
        array = flat.reshape(shape, order="F" if fortran_order else "C")
    except ValueError as problem:  # an empty array whose other dimensions are too large for NumPy
        raise error(f"{where} has a shape {shape} that NumPy cannot represent: {problem}.") from None
    return array if array.flags.writeable else array.copy(order="K")  # a bytearray is used in place


# ---------------------------------------------------------------------------- archives
def encode_archive(arrays, metadata):
    """The bytes of an archive holding ``arrays`` (name -> numeric ndarray) and JSON-able ``metadata``."""
    if not isinstance(arrays, dict):
        raise ConfigError(f"arrays must be a dict of name -> array, got {type(arrays).__name__}.")
    if not isinstance(metadata, dict):
        raise ConfigError(f"metadata must be a dict, got {type(metadata).__name__}.")
    arrays = {name: np.ascontiguousarray(_check_array(name, array, "in a model file"))
              for name, array in arrays.items()}
    metadata = plain_json(metadata)
    header = {
        "format": ARCHIVE_FORMAT,
        "format_version": FORMAT_VERSION,
        "arrays": {name: {"dtype": array.dtype.str, "shape": list(array.shape)} for name, array in arrays.items()},
        "checksum": {"algorithm": "sha256", "content": content_digest(arrays, metadata)},
        "metadata": metadata,
    }
    buffer = _stdio.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(METADATA_MEMBER, json.dumps(header, indent=1, default=_json_default))
        for name, array in arrays.items():
            member = _stdio.BytesIO()
            np.lib.format.write_array(member, array, allow_pickle=False)
            archive.writestr(name + ".npy", member.getvalue())
        archive.comment = b"\0" * _SEAL_LENGTH  # room for the seal, filled in below
    return _seal(buffer.getvalue())


def _seal(data):
    """Replace the zip comment placeholder (the last bytes) with the SHA-256 of everything before it."""
    body = data[:-_SEAL_LENGTH]
    return body + _SEAL_PREFIX + hashlib.sha256(body).hexdigest().encode("ascii")


def write_archive(path, arrays, metadata):
    """Write ``arrays`` and ``metadata`` to ``path`` atomically, in the format of docs/model-format.md."""
    atomic_write_bytes(path, encode_archive(arrays, metadata))


def read_archive(path):
    """``(arrays, metadata)`` from a file written by :func:`write_archive`, verified; or a ModelFileError."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise ModelFileError(f"model file '{path}' does not exist; check the path, or train and save a model "
                             "first.") from None
    except IsADirectoryError:
        raise ModelFileError(f"'{path}' is a folder, not a model file.") from None
    except OSError as error:
        raise ModelFileError(f"cannot read '{path}': {error.strerror or error}.") from None
    return decode_archive(data, path)


def decode_archive(data, path="<bytes>"):
    """Verify and decode archive bytes; see :func:`read_archive`."""
    where = f"'{path}'"
    if len(data) < _SEAL_LENGTH + 22 or not data.startswith(b"PK"):
        raise ModelFileError(f"{where} is not a handgrad model file (empty, truncated or another kind of file).")
    seal = data[-_SEAL_LENGTH:]
    if not seal.startswith(_SEAL_PREFIX):
        raise ModelFileError(f"{where} has no handgrad checksum at its end: it is truncated, was modified by "
                             "another program, or is not a handgrad model file. Save the model again.")
    expected = seal[len(_SEAL_PREFIX):]
    if hashlib.sha256(data[:-_SEAL_LENGTH]).hexdigest().encode("ascii") != expected:
        raise ModelFileError(f"{where} is damaged: its SHA-256 checksum does not match its content (tampered with "
                             "or corrupted in transfer). Use an intact copy or save the model again.")
    try:
        archive = zipfile.ZipFile(_stdio.BytesIO(data))
        packed = [info.filename for info in archive.infolist() if info.compress_type != zipfile.ZIP_STORED]
        if packed:  # handgrad stores members as they are; a compressed one could inflate far past the file's size
            raise ModelFileError(f"{where} has a compressed member ({packed[0]!r}); handgrad writes model files "
                                 "uncompressed and refuses compressed ones (they can inflate to far more memory "
                                 "than the file's size). Save the model again with handgrad.")
        names = archive.namelist()
        if METADATA_MEMBER not in names:
            raise ModelFileError(f"{where} has no {METADATA_MEMBER}; it is not a handgrad model file.")
        header = json.loads(archive.read(METADATA_MEMBER).decode("utf-8"))
    except ModelFileError:
        raise
    except (*ZIP_ERRORS, ValueError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{where} cannot be read as a model archive: {error}.") from None
    if not isinstance(header, dict) or header.get("format") != ARCHIVE_FORMAT:
        raise ModelFileError(f"{where} is not a handgrad model file (format {header.get('format')!r} "
                             f"instead of '{ARCHIVE_FORMAT}')." if isinstance(header, dict) else
                             f"{where} has a malformed {METADATA_MEMBER}.")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ModelFileError(
            f"{where} uses model-file format version {version!r}, but this handgrad reads version {FORMAT_VERSION}"
            + ("; upgrade handgrad to read it." if newer else "; re-save the model with a current handgrad.")
        )
    entries = header.get("arrays")
    metadata = header.get("metadata")
    checksum = header.get("checksum")
    if not isinstance(entries, dict) or not isinstance(metadata, dict) or not isinstance(checksum, dict):
        raise ModelFileError(f"{where} has a malformed {METADATA_MEMBER} (missing 'arrays', 'metadata' or "
                             "'checksum').")
    expected_members = {METADATA_MEMBER} | {name + ".npy" for name in entries}
    if set(names) != expected_members or len(names) != len(expected_members):
        raise ModelFileError(f"{where} holds members {sorted(names)} but its metadata lists "
                             f"{sorted(expected_members)}; the file was altered.")
    arrays = {}
    for name, entry in entries.items():
        if not _NAME.match(name):
            raise ModelFileError(f"{where} contains an array with the invalid name {name!r}.")
        try:
            member = archive.read(name + ".npy")  # no larger than the file, which is in memory already
        except ZIP_ERRORS as error:
            raise ModelFileError(f"{where}: array '{name}' cannot be read: {error}.") from None
        array = decode_npy(member, f"{where}: array '{name}'")  # never unpickles: object arrays are refused
        if array.dtype.kind not in _ALLOWED_KINDS:
            raise ModelFileError(f"{where}: array '{name}' has dtype {array.dtype}, which handgrad refuses to load.")
        if not isinstance(entry, dict) or entry.get("dtype") != array.dtype.str or \
                entry.get("shape") != list(array.shape):
            raise ModelFileError(f"{where}: array '{name}' is {array.dtype.str} {list(array.shape)} but the "
                                 f"metadata says {entry}; the file was altered.")
        arrays[name] = array
    if checksum.get("algorithm") != "sha256" or checksum.get("content") != content_digest(arrays, metadata):
        raise ModelFileError(f"{where}: the content checksum does not match the arrays and metadata; the file was "
                             "altered. Use an intact copy or save the model again.")
    return arrays, metadata


# ---------------------------------------------------------------------------- networks
def save(net, path, extra_arrays=None, **metadata):
    """Write ``net`` to ``path``: its architecture (``net.config()``), weights, and any JSON-able ``metadata``.

    >>> net.save("model.npz", training={"epochs": 20, "learning_rate": 0.1})   # doctest: +SKIP

    ``net`` is anything with ``config()`` (the constructor's arguments), ``parameters()``
    ([(name, array)]; for a batch-norm layer k also ``running_statistics()``: running_mean{k},
    running_var{k}, stored beside the parameters) and optionally a ``metadata`` dict, which the new
    ``metadata`` extends.
    ``extra_arrays`` (name -> numeric array) are stored alongside, e.g. optimizer state for a
    checkpoint. :func:`handgrad.load` gives the network back with ``net.metadata`` and
    ``net.extra_arrays``; weights round-trip bit for bit. (``MLP.save`` first checks that the
    configuration rebuilds the network.)
    """
    arrays = dict(net.parameters())
    arrays.update(getattr(net, "running_statistics", list)())  # batch norm's running_mean1, running_var1, ...
    for name, array in arrays.items():  # load would refuse them: such a file is never written
        refuse_non_finite(array, name, f"cannot save to '{os.fspath(path)}'", ConfigError,
                          "Restore finite weights first (e.g. train again with a lower learning rate or clip_norm).")
    for name, array in (extra_arrays or {}).items():
        arrays["extra." + name] = _check_array(name, array, "as an extra array")
    user = dict(getattr(net, "metadata", None) or {})
    user.update(metadata)
    record = {"kind": MODEL_KIND, "handgrad_version": __version__, "config": net.config(), "user": user}
    write_archive(path, arrays, record)
    return os.fspath(path)


def read_model(path):
    """``(config, arrays, user_metadata, extra_arrays)`` of the model file ``path``, verified.

    ``config`` is what ``MLP(**config)`` rebuilds (``layers`` as [size, activation] pairs),
    ``arrays`` maps parameter names (W1, b1, gamma1, beta1, ...) and running statistics
    (running_mean1, running_var1, ...) to arrays, ``user_metadata`` is the metadata
    given to :func:`save`, and ``extra_arrays`` the extra arrays, without their ``extra.`` prefix.
    A ModelFileError if the file is missing, damaged, of another format version or holds no
    network. :func:`handgrad.load` builds the network from these.
    """
    arrays, record = read_archive(path)
    if record.get("kind") != MODEL_KIND or not isinstance(record.get("config"), dict):
        raise ModelFileError(f"'{os.fspath(path)}' is a handgrad archive but holds no network (kind "
                             f"{record.get('kind')!r}); it may be a data or checkpoint file.")
    user = record.get("user") or {}
    if not isinstance(user, dict):
        raise ModelFileError(f"'{os.fspath(path)}' has malformed metadata (a {type(user).__name__} where a dict "
                             "belongs); save the model again.")
    parameters = {name: array for name, array in arrays.items() if not name.startswith("extra.")}
    extra = {name[len("extra."):]: array for name, array in arrays.items() if name.startswith("extra.")}
    _check_weight_count(record["config"], parameters, f"'{os.fspath(path)}'")
    for name, array in parameters.items():
        refuse_non_finite(array, name, f"'{os.fspath(path)}'")
    _check_preprocessing(user.get("preprocessing"), f"'{os.fspath(path)}'")
    _check_preprocessing(user.get("target_preprocessing"), f"'{os.fspath(path)}'", "target", "output")
    return dict(record["config"]), parameters, dict(user), extra


# ---------------------------------------------------------------------------- finite numbers
_ARRAY_ROLES = {"W": "the weights", "b": "the biases", "gamma": "batch/layer norm's gamma",
                "beta": "batch/layer norm's beta", "running_mean": "batch norm's running mean",
                "running_var": "batch norm's running variance"}
_LAYER_ARRAY = re.compile(r"^(W|b|gamma|beta|running_mean|running_var)(\d+)$")


def describe_array(name):
    """'W2' -> 'W2 (the weights of layer 2)'; a name of no layer is returned as it is."""
    match = _LAYER_ARRAY.match(name)
    return f"{name} ({_ARRAY_ROLES[match.group(1)]} of layer {match.group(2)})" if match else name


_FILE_FIX = ("The file was saved from a diverged network or damaged: retrain (e.g. with a lower learning rate or "
             "clip_norm) and save again, or use an intact copy.")


def refuse_non_finite(array, name, where, error=ModelFileError, fix=_FILE_FIX):
    """Raise ``error`` (a ModelFileError by default) when ``array`` holds NaN or infinity, or when a running
    variance is negative, naming the array, its layer, the first bad entry and the fix. Model files and
    checkpoints are written from finite networks only (training stops on a non-finite loss and keeps finite
    weights), so such a file was damaged, crafted, or saved by hand from a diverged network; loading it
    would only give NaN predictions later, far from the cause."""
    array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(array)
    if name.startswith("running_var") and not bad.any():
        bad = array < 0
        problem = "negative values (a variance is >= 0)"
    else:
        problem = "NaN or infinite values"
    if not bad.any():
        return
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise error(f"{where}: {describe_array(name)} holds {int(bad.sum())} {problem}, the first at index "
                f"{list(first)} ({array[first]!r}); a network with them gives NaN predictions. {fix}")


def _check_preprocessing(record, where, what="input", part="feature"):
    """A stored standardization's mean and scale (of the inputs, or of the targets: ``what``) must be finite
    numbers (scale > 0); a record that is not a list of numbers at all is left to
    datasets.Standardizer.from_dict, which names it where it is used."""
    if not isinstance(record, dict):
        return
    for key in ("mean", "scale"):
        try:
            values = np.asarray(record.get(key), dtype=np.float64)
        except (TypeError, ValueError):
            continue
        bad = ~np.isfinite(values) | ((values <= 0) if key == "scale" else False)
        if values.ndim == 1 and bad.any():
            first = int(np.argwhere(bad)[0][0])
            rule = "finite and > 0" if key == "scale" else "finite"
            raise ModelFileError(f"{where}: the stored {what} standardization's {key} must be {rule}, but "
                                 f"{part} {first} has {values[first]!r}. The file is damaged or was edited by "
                                 f"hand: train and save the model again (or fix its {what} preprocessing record).")


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_weight_count(config, parameters, where):
    """Refuse a configuration whose weight matrices alone hold more numbers than the file stores: the
    network is built before its arrays are compared with the file's, so a damaged (or crafted) layer size
    would otherwise make loading allocate gigabytes or terabytes. Layers that do not parse are left to the
    network's own checks."""
    layers, fan_in = config.get("layers"), config.get("n_inputs")
    if not isinstance(layers, list) or not _whole(fan_in) or fan_in < 1:
        return
    needed = 0
    for entry in layers:
        if isinstance(entry, dict):
            size = entry.get("size")
        else:
            size = entry[0] if isinstance(entry, (list, tuple)) and entry else None
        if not _whole(size) or size < 1:
            return
        needed, fan_in = needed + fan_in * size, size
    stored = sum(int(array.size) for array in parameters.values())
    if needed > stored:
        raise ModelFileError(f"{where} describes layers with {needed} weights but stores {stored} numbers; the file "
                             "is damaged. Use an intact copy or save the model again.")
