"""Data: generated 2-D sets, the MNIST family (IDX files), CSV/NPY/NPZ files, standardization, splits.

Everything returns NumPy arrays in the library's batch-first layout: ``X`` of shape
(N, n_features) and targets ``y`` of shape (N,) (class ids as int64, regression
targets as float64). Every problem with the input raises :class:`DataError` with a
message that names the problem and the fix.

>>> from handgrad import datasets
>>> X, y = datasets.make_moons(200, noise=0.1, seed=0)
>>> X.shape, y.shape
((200, 2), (200,))
"""

import csv
import gzip
import hashlib
import io as _stdio
import math
import os
import urllib.error
import urllib.request
import zlib
from collections import namedtuple

import numpy as np

from .errors import DataError, check_non_negative, suggest


# ============================================================================ generated data sets
def _check_generator_args(n_samples, noise, seed):
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise DataError(f"n_samples must be a positive integer, got {n_samples!r}.")
    noise = check_non_negative("noise", noise, DataError)  # a data argument: DataError, not ConfigError
    return int(n_samples), noise, np.random.default_rng(seed)


def _split_counts(n_samples, n_classes):
    """How many samples each class gets: as equal as possible, the first classes one more."""
    return [n_samples // n_classes + (k < n_samples % n_classes) for k in range(n_classes)]


def _shuffled(rng, X, y):
    order = rng.permutation(len(y))
    return X[order], y[order]


def make_xor(n_samples=200, noise=0.1, seed=None):
    """Points uniform in [-1, 1]^2, label 1 where exactly one coordinate is positive (x1 * x2 < 0).

    The classic set no single linear boundary separates. Gaussian noise of std ``noise``
    is added to the coordinates after labelling, so labels near the axes overlap.
    """
    n_samples, noise, rng = _check_generator_args(n_samples, noise, seed)
    X = rng.uniform(-1.0, 1.0, size=(n_samples, 2))
    y = ((X[:, 0] > 0) != (X[:, 1] > 0)).astype(np.int64)
    return X + rng.normal(scale=noise, size=X.shape), y


def make_moons(n_samples=200, noise=0.1, seed=None):
    """Two interleaving half circles (class 0 on top, class 1 below and shifted), plus Gaussian noise."""
    n_samples, noise, rng = _check_generator_args(n_samples, noise, seed)
    n0, n1 = _split_counts(n_samples, 2)
    t0, t1 = rng.uniform(0, np.pi, n0), rng.uniform(0, np.pi, n1)
    upper = np.column_stack([np.cos(t0), np.sin(t0)])
    lower = np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)])
    X = np.vstack([upper, lower]) + rng.normal(scale=noise, size=(n_samples, 2))
    y = np.repeat([0, 1], [n0, n1]).astype(np.int64)
    return _shuffled(rng, X, y)


def make_circles(n_samples=200, noise=0.05, factor=0.5, seed=None):
    """An outer circle of radius 1 (class 0) around an inner one of radius ``factor`` (class 1)."""
    n_samples, noise, rng = _check_generator_args(n_samples, noise, seed)
    if not 0 < factor < 1:
        raise DataError(f"factor (the inner radius) must be between 0 and 1, got {factor}.")
    n0, n1 = _split_counts(n_samples, 2)
    angles = rng.uniform(0, 2 * np.pi, n_samples)
    radius = np.repeat([1.0, factor], [n0, n1])
    X = np.column_stack([radius * np.cos(angles), radius * np.sin(angles)])
    X += rng.normal(scale=noise, size=X.shape)
    y = np.repeat([0, 1], [n0, n1]).astype(np.int64)
    return _shuffled(rng, X, y)


def make_spirals(n_samples=300, noise=0.1, n_classes=2, turns=1.5, seed=None):
    """``n_classes`` interleaved spiral arms; class k is arm k, rotated by 2 pi k / n_classes."""
    n_samples, noise, rng = _check_generator_args(n_samples, noise, seed)
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise DataError(f"n_classes must be an integer >= 2, got {n_classes!r}.")
    counts = _split_counts(n_samples, n_classes)
    parts, labels = [], []
    for k, count in enumerate(counts):
        r = np.linspace(0.05, 1.0, count)
        theta = 2 * np.pi * turns * r + 2 * np.pi * k / n_classes
        parts.append(np.column_stack([r * np.cos(theta), r * np.sin(theta)]))
        labels.append(np.full(count, k, np.int64))
    X = np.vstack(parts) + rng.normal(scale=noise * 0.5, size=(n_samples, 2))
    return _shuffled(rng, X, np.concatenate(labels))


def make_blobs(n_samples=200, noise=0.5, n_classes=3, seed=None):
    """Gaussian blobs of std ``noise`` around ``n_classes`` centers evenly spaced on a circle of radius 2."""
    n_samples, noise, rng = _check_generator_args(n_samples, noise, seed)
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise DataError(f"n_classes must be an integer >= 2, got {n_classes!r}.")
    angles = 2 * np.pi * np.arange(n_classes) / n_classes
    centers = 2.0 * np.column_stack([np.cos(angles), np.sin(angles)])
    y = np.repeat(np.arange(n_classes), _split_counts(n_samples, n_classes)).astype(np.int64)
    X = centers[y] + rng.normal(scale=noise, size=(n_samples, 2))
    return _shuffled(rng, X, y)


def make_regression1d(n_samples=200, noise=0.1, seed=None):
    """x uniform in [-3, 3], target y = sin(x) + 0.1 x^2 + Gaussian noise; X has shape (N, 1)."""
    n_samples, noise, rng = _check_generator_args(n_samples, noise, seed)
    x = rng.uniform(-3.0, 3.0, n_samples)
    y = np.sin(x) + 0.1 * x ** 2 + rng.normal(scale=noise, size=n_samples)
    return x.reshape(-1, 1), y


GENERATORS = {
    "xor": make_xor,
    "moons": make_moons,
    "circles": make_circles,
    "spirals": make_spirals,
    "blobs": make_blobs,
    "regression1d": make_regression1d,
}
CLASSIFICATION_SETS = ("xor", "moons", "circles", "spirals", "blobs")


def make_dataset(name, n_samples=200, noise=None, seed=None):
    """A generated set by name: one of ``GENERATORS`` (noise None means the generator's default)."""
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key not in GENERATORS:
        raise DataError(f"unknown data set '{name}'.{suggest(key, GENERATORS)} Choose from: {', '.join(GENERATORS)}.")
    options = {} if noise is None else {"noise": noise}
    return GENERATORS[key](n_samples, seed=seed, **options)


# ============================================================================ checks
def check_dataset(X, y=None, *, name="data"):
    """X as a finite float64 (N, d) array (and y as a finite (N,) or (N, k) array), or a DataError."""
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DataError(f"{name}: the features are not numbers ({error}); convert or drop non-numeric columns.") \
            from None
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise DataError(f"{name}: the features must form a 2-D table (samples, features), got shape {X.shape}.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{name}: the data set is empty ({X.shape[0]} samples, {X.shape[1]} features); "
                        "give a file with at least one row of values.")
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        row, column = bad[0]
        raise DataError(f"{name}: NaN or infinity in the features ({len(bad)} values, first at sample {row}, "
                        f"column {column}); remove or impute those values first.")
    if y is None:
        return X
    try:
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            y = y.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise DataError(f"{name}: the targets are not numbers ({error}); encode labels as integers 0..K-1.") \
            from None
    if y.shape[:1] != (X.shape[0],):
        raise DataError(f"{name}: mismatched lengths: {X.shape[0]} samples but {y.shape[0] if y.ndim else 0} "
                        "targets; give one target per sample.")
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y.reshape(len(y), -1)).all(axis=1))
        if bad.size:
            raise DataError(f"{name}: NaN or infinity in the targets (first at sample {bad[0]}); remove those "
                            "samples first.")
        if y.ndim == 1 and np.all(y == np.round(y)) and np.abs(y).max(initial=0) < 2 ** 31:
            y = y.astype(np.int64)  # integer-valued targets are class ids
    elif y.dtype.kind in "biu":
        y = y.astype(np.int64)
    return X, y


def check_labels(y, n_classes, *, name="data"):
    """Class ids must be integers in 0..n_classes-1; otherwise a DataError naming the bad label."""
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "biu":
        raise DataError(f"{name}: class labels must be a 1-D array of integers 0..{n_classes - 1}.")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise DataError(f"{name}: label {bad} is out of range: with {n_classes} classes labels must be in "
                        f"0..{n_classes - 1}; give the output layer more units or fix the labels.")
    return y


# ============================================================================ files: CSV, NPY, NPZ
def _open_check(path, what="data file"):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{what} '{path}' does not exist; check the path.")
    if os.path.isdir(path):
        raise DataError(f"{what} '{path}' is a folder; give a file.")
    return path


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def column_index(target, header, n_columns, path, what="target"):
    """The index of a column (the ``what`` column: the target's) from a name (needs a header row) or an
    integer (negative counts back); None means the last column."""
    if target is None:
        return n_columns - 1
    if isinstance(target, str) and not target.strip().lstrip("-").isdigit():
        if header is None:
            raise DataError(f"'{path}' has no header row, so the {what} column cannot be named '{target}'; "
                            f"give its number instead (0..{n_columns - 1}, or -1 for the last).")
        names = [name.strip() for name in header]
        if target not in names:
            raise DataError(f"'{path}' has no column '{target}'.{suggest(target, names)} Columns: {', '.join(names)}.")
        return names.index(target)
    if isinstance(target, bool) or not isinstance(target, (str, int, np.integer)):
        raise DataError(f"the {what} column must be a column name or number, got {target!r}.")
    index = int(target)
    if not -n_columns <= index < n_columns:
        raise DataError(f"{what} column {index} does not exist: '{path}' has {n_columns} columns "
                        f"(0..{n_columns - 1}).")
    return index % n_columns


def load_csv_table(path, *, delimiter=",", header="auto"):
    """``(names, values)`` of a numeric CSV file: the header row's column names (None without one) and the
    (rows, columns) float64 table. ``header='auto'`` treats the first row as column names when any of its
    fields is not a number. Every row must have the same number of fields."""
    path = _open_check(path, "CSV file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = [row for row in csv.reader(file, delimiter=delimiter) if row and any(f.strip() for f in row)]
    except UnicodeDecodeError:
        raise DataError(f"'{path}' is not a readable text CSV file (it is not UTF-8 text); export it as CSV.") \
            from None
    except (csv.Error, OSError) as error:
        raise DataError(f"'{path}' cannot be read as CSV: {error}.") from None
    names = None
    if rows and (header is True or (header == "auto" and not all(_is_number(f) for f in rows[0]))):
        names, rows = rows[0], rows[1:]
    if not rows:
        raise DataError(f"'{path}' is an empty data set: it has no data rows; give a file with at least one row.")
    n_columns = len(names) if names is not None else len(rows[0])
    values = np.empty((len(rows), n_columns))
    for r, row in enumerate(rows):
        line = r + 1 + (names is not None)
        if len(row) != n_columns:
            raise DataError(f"'{path}' line {line} has {len(row)} fields but the file has {n_columns} columns; "
                            "fix that row (every row needs the same number of fields).")
        for c, field in enumerate(row):
            try:
                values[r, c] = float(field)
            except ValueError:
                raise DataError(f"'{path}' line {line}, column {c + 1}: '{field.strip()}' is not a number; "
                                "handgrad reads numeric CSV only (encode labels as integers 0..K-1).") from None
    return names, values


def load_csv(path, target=None, *, delimiter=",", header="auto"):
    """``(X, y)`` from a CSV file whose column ``target`` (name or number; default the last) holds the targets.

    ``header='auto'`` treats the first row as column names when any of its fields is not
    a number. With ``target=False`` every column is a feature and ``(X, None)`` is returned
    (for prediction inputs).
    """
    path = os.fspath(path)
    names, values = load_csv_table(path, delimiter=delimiter, header=header)
    n_columns = values.shape[1]
    if target is False:
        return check_dataset(values, name=path), None
    if n_columns < 2:
        raise DataError(f"'{path}' has only one column; it needs at least one feature and the target column.")
    column = column_index(target, names, n_columns, path)
    X = np.delete(values, column, axis=1)
    return check_dataset(X, values[:, column], name=path)


def _split_table(table, target, path):
    table = np.asarray(table)
    if target is False:
        return check_dataset(table, name=path), None
    if table.ndim != 2 or table.shape[1] < 2:
        raise DataError(f"'{path}' holds an array of shape {table.shape}; a table with targets needs 2-D data with "
                        "at least 2 columns (features and the target column).")
    column = column_index(target, None, table.shape[1], path)
    return check_dataset(np.delete(table, column, axis=1), table[:, column], name=path)


def _read_bytes(path, what):
    """(path, a bytearray of the file): writable, so that an array decoded from it needs no copy."""
    path = _open_check(path, what)
    try:
        with open(path, "rb") as file:
            data = bytearray(os.fstat(file.fileno()).st_size)
            data[file.readinto(data):] = b""  # (a file that shrank meanwhile)
            return path, data
    except OSError as error:
        raise DataError(f"cannot read '{path}': {error.strerror or error}.") from None


def load_npy(path, target=None):
    """``(X, y)`` from a 2-D ``.npy`` table whose column ``target`` (default the last) holds the targets.

    The header is checked before any array is made (handgrad.io.decode_npy): numeric dtypes only,
    never pickle, and a shape that matches the bytes in the file."""
    from .io import decode_npy

    path, data = _read_bytes(path, "NPY file")
    if data.startswith(b"PK"):
        raise DataError(f"'{path}' is a .npz archive, not a .npy array; use the NPZ loader (--npz).")
    table = decode_npy(data, f"'{path}'", error=DataError)
    return _split_table(table, target, path)


def load_npz(path, target=None, *, x_key="X", y_key="y"):
    """``(X, y)`` from an ``.npz`` file with arrays ``X`` and ``y`` (keys configurable), or one 2-D table.

    Members are read with zipfile and decoded by handgrad.io.decode_npy (checked headers, no pickle)."""
    import zipfile

    from .io import ZIP_ERRORS, decode_npy

    path, data = _read_bytes(path, "NPZ file")
    try:
        with zipfile.ZipFile(_stdio.BytesIO(data)) as archive:
            files = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]

            def member(key):
                return decode_npy(archive.read(key + ".npy"), f"'{path}' array '{key}'", error=DataError)

            if x_key in files:
                if target is False:
                    return check_dataset(member(x_key), name=path), None
                if y_key not in files:
                    raise DataError(f"'{path}' has '{x_key}' but no '{y_key}' array for the targets; arrays: "
                                    f"{', '.join(files)}.")
                return check_dataset(member(x_key), member(y_key), name=path)
            if len(files) == 1:
                return _split_table(member(files[0]), target, path)
    except ZIP_ERRORS as error:
        raise DataError(f"'{path}' is not a readable .npz file: {error}.") from None
    raise DataError(f"'{path}' has arrays {', '.join(files) or 'none'}; it needs '{x_key}' and '{y_key}' (or a "
                    "single 2-D table whose target column you choose).")


def load_file(path, target=None):
    """``(X, y)`` from a .csv, .npy or .npz file, chosen by extension (see the loaders for ``target``)."""
    extension = os.path.splitext(os.fspath(path))[1].lower()
    loaders = {".csv": load_csv, ".txt": load_csv, ".npy": load_npy, ".npz": load_npz}
    if extension not in loaders:
        raise DataError(f"'{os.fspath(path)}': unknown data file type '{extension}'; use .csv, .npy or .npz.")
    return loaders[extension](path, target)


# ============================================================================ MNIST family: IDX files
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _gunzip_idx(file):
    """The decompressed bytes of a gzipped IDX file, never more than its header announces plus one byte
    (enough to tell that the data is too long): a small file that inflates to gigabytes (a gzip bomb, or
    damage after the header) is not decompressed whole into memory."""
    with gzip.GzipFile(fileobj=file) as stream:
        data = stream.read(4)
        if len(data) < 4 or data[2] not in _IDX_TYPES:
            return data  # (read_idx names the problem)
        data += stream.read(4 * data[3])
        if len(data) < 4 + 4 * data[3]:
            return data
        shape = np.frombuffer(data, ">u4", count=data[3], offset=4)
        wanted = math.prod(int(v) for v in shape) * np.dtype(_IDX_TYPES[data[2]]).itemsize + 1
        chunks = [data]  # read in chunks: read(n) would reserve n bytes at once, and a damaged header's n is huge
        while wanted > 0:
            chunk = stream.read(min(wanted, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            wanted -= len(chunk)
        return b"".join(chunks)


def read_idx(path):
    """An array from an IDX file (the MNIST format), gzipped or not.

    Layout: two zero bytes, a type code (0x08 = uint8 ...), the number of dimensions d,
    then d big-endian uint32 sizes, then the values in C order.
    """
    path = _open_check(path, "IDX file")
    try:
        with open(path, "rb") as file:
            gzipped = file.read(2) == b"\x1f\x8b"
            file.seek(0)
            data = _gunzip_idx(file) if gzipped else file.read()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as error:  # zlib.error: found by tests/test_fuzz.py
        raise DataError(f"'{path}' cannot be read (a damaged gzip file?): {error}; download it again.") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataError(f"'{path}' is not an IDX file (bad magic number {data[:4].hex() or 'empty'}); MNIST files "
                        "start with 00000801 (labels) or 00000803 (images).")
    dtype, ndim = np.dtype(_IDX_TYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"'{path}' is truncated: its header is incomplete; download it again.")
    shape = tuple(int(v) for v in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize  # Python integers: no overflow for any header
    if len(data) != expected:
        raise DataError(f"'{path}' has {len(data)} bytes but its header ({shape}, {dtype}) needs {expected}; the file "
                        "is truncated or damaged, download it again.")
    try:
        return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
    except ValueError as error:  # an empty array with dimensions too large for NumPy: found by tests/test_fuzz.py
        raise DataError(f"'{path}' has a header ({shape}) that NumPy cannot represent: {error}.") from None


def _find_idx(directory, kind, part, ndim):
    names = [f"{kind}-{part}-idx{ndim}-ubyte", f"{kind}-{part}.idx{ndim}-ubyte"]
    for name in names:
        for candidate in (name, name + ".gz"):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                return path
    raise DataError(f"no {kind} {part} file in '{directory}': expected {names[0]} or {names[0]}.gz. Put the MNIST "
                    "IDX files there, or fetch them with handgrad.datasets.download_mnist(directory).")


def load_mnist(directory, kind="t10k"):
    """``(images, labels)`` of the MNIST family (MNIST, Fashion-MNIST, KMNIST...) from IDX files in ``directory``.

    ``kind`` is 't10k' (test set) or 'train'. Images are uint8 of shape (N, rows, cols),
    labels uint8 of shape (N,). Scale images by 1/255 and flatten them to (N, rows*cols)
    before training a dense network.
    """
    if kind not in ("t10k", "train"):
        raise DataError(f"kind must be 't10k' or 'train', got {kind!r}.{suggest(kind, ('t10k', 'train'))}")
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise DataError(f"MNIST folder '{directory}' does not exist; create it and put the IDX files "
                        f"({kind}-images-idx3-ubyte.gz, {kind}-labels-idx1-ubyte.gz) there.")
    images_path = _find_idx(directory, kind, "images", 3)
    labels_path = _find_idx(directory, kind, "labels", 1)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"'{images_path}' should hold uint8 images of shape (N, rows, cols), got {images.dtype} "
                        f"{images.shape}.")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"'{labels_path}' should hold uint8 labels of shape (N,), got {labels.dtype} {labels.shape}.")
    if len(images) != len(labels):
        raise DataError(f"mismatched lengths: '{images_path}' has {len(images)} images but '{labels_path}' has "
                        f"{len(labels)} labels; use files from the same set.")
    if len(images) == 0:
        raise DataError(f"'{images_path}' holds no images: the data set is empty.")
    return images, labels


MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_MD5 = {  # the checksums published with the files (also used by torchvision)
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url, target, md5, timeout):
    """Copy ``url`` to ``target`` through handgrad.io's atomic writer; a wrong checksum leaves nothing behind."""
    from .io import atomic_writer

    name, cache_dir = os.path.basename(target), os.path.dirname(target)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_writer(target, "wb") as out:
            digest = hashlib.md5()
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
            if digest.hexdigest() != md5:
                raise DataError(f"the download of {url} has the wrong checksum (damaged or changed file); try "
                                f"again, or put a good copy of {name} into '{cache_dir}'.")
    except DataError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error.__cause__ or error  # (the writer wraps what it meets)
        raise DataError(f"could not download {url} ({reason}). Without a network, put {name} (and the matching "
                        f"images/labels file) into '{cache_dir}' by hand, then call load_mnist on it.") from None


def download_mnist(cache_dir, kind="t10k", base_url=MNIST_URL, timeout=30):
    """Download MNIST's IDX files for ``kind`` into ``cache_dir`` (verified by checksum) and load them.

    Files already in ``cache_dir`` with the right checksum are not downloaded again. Without
    a network, a DataError says which files to put where by hand.
    """
    if kind not in ("t10k", "train"):
        raise DataError(f"kind must be 't10k' or 'train', got {kind!r}.")
    cache_dir = os.fspath(cache_dir)
    os.makedirs(cache_dir, exist_ok=True)
    for name in (f"{kind}-images-idx3-ubyte.gz", f"{kind}-labels-idx1-ubyte.gz"):
        target = os.path.join(cache_dir, name)
        if os.path.isfile(target) and _md5(target) == MNIST_MD5[name]:
            continue
        _download(base_url.rstrip("/") + "/" + name, target, MNIST_MD5[name], timeout)
    return load_mnist(cache_dir, kind)


# ============================================================================ standardization and splits
class Standardizer:
    """x' = (x - mean) / scale, per feature, with mean and scale fitted on the training data only.

    A feature that is constant in the training data gets scale 1 (it is only centred).
    ``to_dict()`` / ``from_dict()`` store it in a model file's metadata so that
    prediction applies the same transform.
    """

    def __init__(self, mean=None, scale=None):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64).reshape(-1)
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float64).reshape(-1)
        if (self.mean is None) != (self.scale is None):
            raise DataError("a Standardizer needs both mean and scale, or neither (then call fit).")
        if self.mean is not None:
            if self.mean.shape != self.scale.shape:
                raise DataError(f"mean has {self.mean.size} values but scale has {self.scale.size}.")
            if not (np.isfinite(self.mean).all() and np.isfinite(self.scale).all() and (self.scale > 0).all()):
                raise DataError("a Standardizer's mean must be finite and its scale finite and > 0.")

    @classmethod
    def constant(cls, n_features, scale, mean=0.0):
        """The same mean and scale for every feature (e.g. scale=255 for image pixels)."""
        return cls(np.full(n_features, float(mean)), np.full(n_features, float(scale)))

    def fit(self, X):
        X = check_dataset(X, name="Standardizer.fit")
        self.mean = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale = np.where(std > 0, std, 1.0)
        return self

    def transform(self, X):
        if self.mean is None:
            raise DataError("this Standardizer is not fitted yet; call fit(X_train) first.")
        X = check_dataset(X, name="Standardizer.transform")
        if X.shape[1] != self.mean.size:
            raise DataError(f"X has {X.shape[1]} features but the Standardizer was fitted on {self.mean.size}.")
        return (X - self.mean) / self.scale

    def fit_transform(self, X):
        return self.fit(X).transform(X)

    def inverse_transform(self, X):
        return np.asarray(X, dtype=np.float64) * self.scale + self.mean

    def to_dict(self):
        if self.mean is None:
            raise DataError("this Standardizer is not fitted yet; call fit(X_train) first.")
        return {"kind": "standardize", "mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, record):
        """The Standardizer that :meth:`to_dict` stored; a DataError for anything else (a damaged record)."""
        if not isinstance(record, dict) or record.get("kind") != "standardize":
            raise DataError(f"not a stored Standardizer: {str(record)[:80]}.")
        arrays = []
        for name in ("mean", "scale"):
            values = record.get(name)
            try:
                array = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError):
                array = None
            if array is None or array.ndim != 1 or array.size == 0:
                raise DataError(f"the stored standardization is damaged: its {name} must be a list of numbers, got "
                                f"{str(values)[:80]}. Save the model again.")
            arrays.append(array)
        return cls(*arrays)

    def __repr__(self):
        return "Standardizer(unfitted)" if self.mean is None else f"Standardizer({self.mean.size} features)"


def model_standardizers(net):
    """(features, targets): the Standardizers that ``handgrad train`` stored in a model's metadata, each or None.

    ``features`` is the input standardization (metadata "preprocessing"), ``targets`` the regression target
    standardization of ``handgrad train --standardize-targets`` (metadata "target_preprocessing"). A network
    trained with both answers in the original target units as
    ``targets.inverse_transform(net.predict(features.transform(X)))``; ``net.predict`` alone answers in
    standardized target units. A damaged record is a DataError.
    """
    metadata = getattr(net, "metadata", None) or {}
    return tuple(Standardizer.from_dict(metadata[key]) if metadata.get(key) else None
                 for key in ("preprocessing", "target_preprocessing"))


Split = namedtuple("Split", "X_train y_train X_val y_val X_test y_test")


def train_validation_test_split(X, y, validation=0.1, test=0.2, seed=None, shuffle=True):
    """A seeded split into training, validation and test parts (fractions of N); returns a :class:`Split`.

    The same seed always gives the same split. A fraction of 0 gives an empty part.
    """
    X, y = check_dataset(X, y, name="split")
    for name, fraction in (("validation", validation), ("test", test)):
        if not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
            raise DataError(f"the {name} fraction must be in [0, 1), got {fraction!r}.")
    if validation + test >= 1:
        raise DataError(f"validation ({validation}) + test ({test}) leave no training data; keep their sum below 1.")
    N = len(y)
    order = np.random.default_rng(seed).permutation(N) if shuffle else np.arange(N)
    n_test = int(round(N * test))
    n_val = int(round(N * validation))
    n_train = N - n_test - n_val
    if n_train < 1:
        raise DataError(f"{N} samples leave no training data after the validation and test parts; use more data.")
    train, val, test_index = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
    return Split(X[train], y[train], X[val], y[val], X[test_index], y[test_index])
