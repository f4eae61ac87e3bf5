"""Data larger than memory: batches streamed from memory-mapped .npy files, Zarr arrays or Dask arrays.

``fit`` takes such arrays as they are (``np.load("X.npy", mmap_mode="r")``, ``zarr.open(...)``,
``dask.array.from_zarr(...)``) and never loads them whole. The rows are cut into blocks of
``block_rows`` consecutive rows (by default about 64 MiB of X, a whole number of a Zarr or Dask
array's row chunks), and an epoch's order is

    the blocks in a random order, then the rows of each block in a random order

so every read is one block: contiguous rows, read sequentially. The order of an epoch is stored as
the int64 vector [key, b_1, ..., b_m]: the blocks' order, and the key from which each block's own
permutation is drawn (rng([key, b])); key -1 keeps every block in its order (shuffle=False). It takes
m + 1 numbers, not N, and a checkpoint saves it as it saves an in-memory run's order.

Memory: the trainer holds at most ``ceil(B / block_rows) + 1`` blocks (B the batch size; 2 blocks when
block_rows >= B, the default) of X, T and w in the network's dtype, each with its permutation, plus the
batch buffers. A whole-file memory map (np.load's) is read with plain file reads rather than through
the map, so the file's pages stay in the page cache and out of the process's resident memory (not a
copy-on-write map, mmap_mode="c", whose changes live in memory only: it is read through the map).

The input checks (NaN, inf, the labels, the weights) run block by block: a pass over every block
before training (which also counts the classes for class_weight, sums the weights, and keeps the 64
evenly spread rows of :func:`sample_rows` for a checkpoint's fingerprint of the data), and again as each
block is read.
zarr and dask are not imported here: their arrays are recognised by their type's module.
"""

import math
import mmap
from collections import OrderedDict

import numpy as np

from .errors import DataError, check_count

BLOCK_BYTES = 64 * 2 ** 20  # the default block: about this many bytes of X
FINGERPRINT_ROWS = 64  # rows of the training data a checkpoint's fingerprint of it is made from


def kind(array):
    """'memmap', 'zarr' or 'dask' for an array fit streams; None for anything else (read into memory)."""
    if isinstance(array, np.memmap):
        return "memmap"
    module = type(array).__module__.split(".")[0]
    return module if module in ("zarr", "dask") else None


def is_streamed(array):
    return kind(array) is not None


def open_npy(path, what="X"):
    """A .npy file memory-mapped (read-only, no pickle), or a DataError naming ``what`` and the problem."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{what}: the file '{path}' does not exist; check the path.") from None
    except (OSError, ValueError) as error:
        if not _starts_as_npy(path):  # (np.load takes any other file for a pickle, and names that)
            raise DataError(f"{what}: '{path}' is not a .npy file (it does not start as one); give a .npy array.") \
                from None
        raise DataError(f"{what}: '{path}' cannot be memory-mapped as a numeric .npy array ({error}).") from None
    if not isinstance(array, np.memmap):
        raise DataError(f"{what}: '{path}' is not a .npy array (an .npz archive?); give a .npy file.")
    return array


def _starts_as_npy(path):
    """Whether the file begins with .npy's magic string (or cannot be read: then np.load's error says why)."""
    try:
        with open(path, "rb") as file:
            return file.read(6) == b"\x93NUMPY"
    except OSError:
        return True


def sample_rows(n, k=FINGERPRINT_ROWS):
    """k row numbers of 0..n-1 evenly spread, the first and the last included (all n when n <= k)."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))


def _address(array):
    return array.__array_interface__["data"][0]


def _file_position(array):
    """(file name, byte offset of array[0]) for a C-contiguous view of a whole-file memory map such as
    np.load(..., mmap_mode="r") gives (also a slice of it), else None."""
    if not isinstance(array, np.memmap) or not array.flags.c_contiguous or not array.filename:
        return None
    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    if not isinstance(root, np.memmap) or not isinstance(root.base, mmap.mmap):
        return None
    if root.mode == "c":  # copy-on-write: changes made in memory are not in the file, so read through the map
        return None
    return root.filename, root.offset + _address(array) - _address(root)


class _Reader:
    """Rows a..b of one array as a new in-memory ndarray (:func:`row_reader`)."""

    def __init__(self, array, name):
        if not hasattr(array, "shape") and kind(array) is not None:  # e.g. a zarr Group
            raise DataError(f"{name} is a {type(array).__module__.split('.')[0]} {type(array).__name__}, not an "
                            "array; give one of its arrays (for a Zarr group: group['X']).")
        if not hasattr(array, "shape"):  # a list beside a streamed array: read into memory, as fit does without one
            try:
                array = np.asarray(array)
            except (TypeError, ValueError):
                raise DataError(f"{name} must be an array of numbers, one row per sample.") from None
        self.array, self.name = array, name
        shape = getattr(array, "shape", None)
        if shape is None or len(shape) not in (1, 2):
            raise DataError(f"{name} must be a 1-D or 2-D array, got shape {shape}.")
        if not all(isinstance(size, (int, np.integer)) for size in shape):  # Dask after a filter: NaN sizes
            raise DataError(f"{name} has unknown chunk sizes (shape {shape}); call .compute_chunk_sizes() on the "
                            "Dask array first.")
        self.file = _file_position(array)

    def read(self, a, b):
        if self.file is not None:  # plain reads: the pages stay out of this process's resident memory
            name, offset = self.file
            array = self.array
            out = np.empty((b - a,) + array.shape[1:], array.dtype)
            row_bytes = out.itemsize * math.prod(array.shape[1:])
            with open(name, "rb") as file:
                file.seek(offset + a * row_bytes)
                if file.readinto(out.reshape(-1).view(np.uint8)) != out.nbytes:
                    raise DataError(f"{self.name}: the file '{name}' is shorter than its header says.")
            return out
        return np.asarray(self.array[a:b])  # Zarr reads the chunks, Dask computes them


def row_reader(array, name="X"):
    """An object whose ``read(a, b)`` gives rows a..b of a 1-D or 2-D ``array`` as a new in-memory ndarray:
    a whole-file memory map with plain file reads (its pages stay out of resident memory), anything else
    by slicing (a Zarr or Dask array reads or computes its chunks). ``name`` names the array in errors."""
    return _Reader(array, name)


def default_block_rows(X):
    """About BLOCK_BYTES of X per block, a whole number of its row chunks (Zarr, Dask)."""
    row_bytes = max(1, np.dtype(X.dtype).itemsize * math.prod(X.shape[1:]))
    rows = max(1, BLOCK_BYTES // row_bytes)
    chunks = getattr(X, "chunks", None)
    if chunks:
        chunk = chunks[0] if isinstance(chunks[0], (int, np.integer)) else max(chunks[0])  # Zarr: ints; Dask: tuples
        rows = max(1, rows // int(chunk)) * int(chunk)
    return int(rows)


def check_block_rows(block_rows):
    """block_rows as an int, or a DataError (also for in-memory data, where it is not used)."""
    return check_count(block_rows, 1, f"block_rows must be a positive integer, got {block_rows!r}.", DataError)


class Stream:
    """Training data read block by block: X (N, n_inputs), T and the sample weights w (optional), checked
    with the network's own checks as each block is read. ``shape`` is X's (what the trainer asks of X)."""

    def __init__(self, net, X, T, sample_weight=None, block_rows=None):
        self.net = net
        self.readers = [_Reader(X, "X"), _Reader(T, "the targets")]
        if sample_weight is not None:
            self.readers.append(_Reader(sample_weight, "sample_weight"))
        X = self.readers[0].array  # (a list is now an array)
        N = int(X.shape[0])
        for reader in self.readers[1:]:
            if int(reader.array.shape[0]) != N:
                raise DataError(f"X has {N} samples but {reader.name} has {reader.array.shape[0]}.")
        if N == 0:
            raise DataError("X is empty: it has no samples.")
        self.shape = (N, net.n_inputs)  # each block's X is checked against it as it is read
        block_rows = default_block_rows(X) if block_rows is None else check_block_rows(block_rows)
        self.block_rows = int(min(block_rows, N))
        self.n_blocks = -(-N // self.block_rows)
        self.block_sizes = np.full(self.n_blocks, self.block_rows, np.int64)
        self.block_sizes[-1] = N - (self.n_blocks - 1) * self.block_rows
        self.class_weights = None  # set by the trainer: a function T_block -> per-sample class weights
        self.sample = None  # the rows at sample_rows(N) as scan read them: X, T, w or None, and whether w has
        # the class weights

    @property
    def weighted(self):
        return len(self.readers) == 3 or self.class_weights is not None

    def bounds(self, block):
        a = block * self.block_rows
        return a, min(a + self.block_rows, self.shape[0])

    def block(self, block):
        """Block ``block``'s (X, T, w or None), checked, in the network's dtype; a DataError names its rows."""
        a, b = self.bounds(block)
        raw = [reader.read(a, b) for reader in self.readers]
        net = self.net
        try:
            X = net.check_inputs(raw[0])
            T = net.check_targets(raw[1], b - a)
            w = net.check_sample_weight(raw[2], b - a) if len(raw) == 3 else None
            if self.class_weights is not None:
                by_class = self.class_weights(T)
                w = by_class if w is None else w * by_class
        except DataError as error:
            raise DataError(f"rows {a}..{b - 1} (block {block + 1} of {self.n_blocks}): {error}") from None
        return X, T, w

    def scan(self, each=None):
        """Read and check every block in order, before training; ``each(X, T, w)`` sees each one. Keeps the
        rows at sample_rows(N) in ``sample`` (for the checkpoint's fingerprint of the data)."""
        wanted, parts = sample_rows(self.shape[0]), []
        for block in range(self.n_blocks):
            X, T, w = self.block(block)
            a, b = self.bounds(block)
            mine = wanted[(wanted >= a) & (wanted < b)] - a
            parts.append((X[mine], T[mine], None if w is None else w[mine]))
            if each is not None:
                each(X, T, w)
        X, T, w = (np.concatenate(part) if part[0] is not None else None for part in zip(*parts))
        self.sample = X, T, w, self.class_weights is not None

    def sampled_rows(self):
        """The rows at sample_rows(N) as the trainer sees them: (X, T, w), w with the class weights (or None)."""
        X, T, w, with_class_weights = self.sample
        if self.class_weights is not None and not with_class_weights:
            by_class = self.class_weights(T)
            w = by_class if w is None else w * by_class
        return X, T, w

    # ------------------------------------------------------------------ an epoch's order
    def initial_order(self):
        """[-1, 0, 1, ..., m-1]: the blocks in their order, each block's rows in theirs."""
        return np.arange(-1, self.n_blocks, dtype=np.int64)

    @staticmethod
    def shuffle(order, rng):
        """A new epoch's order in place: the blocks' order, and a fresh key for the rows inside each block."""
        order[0] = rng.integers(2 ** 62)
        rng.shuffle(order[1:])


def batch_rows(number, n_batches, batch_size, n):
    """Rows of batch ``number`` (from 1) of n_batches over n samples, for the in-memory batches
    (training._Batches) and these alike: batch_size, except the last, which runs to the end of the data
    (shorter, or one longer when fit merged a lone last sample into it)."""
    first = (number - 1) * batch_size
    return n - first if number == n_batches else min(batch_size, n - first)


class StreamBatches:
    """The batches of one epoch of a :class:`Stream`, as training._Batches gives them for in-memory data:
    ``get(number, order)`` gathers this process's rows of batch ``number`` into buffers made once."""

    def __init__(self, stream, batch_size, dtype, n_batches, shard=None):
        self.stream, self.batch_size, self.n_batches = stream, batch_size, n_batches
        self.shard = shard or (lambda n: (0, n))
        self.n = stream.shape[0]
        rows = max(batch_size, batch_rows(n_batches, n_batches, batch_size, self.n))  # the last may hold one more
        self.X = np.empty((rows, stream.shape[1]), dtype)
        self.T = np.empty((rows, stream.net.n_outputs), dtype)
        self.w = np.empty(rows, dtype) if stream.weighted else None
        self.cache = OrderedDict()  # (block, key) -> (X, T, w, rows order): the blocks in memory
        self.cache_size = -(-batch_size // stream.block_rows) + 1

    def shuffle(self, order, rng):
        self.stream.shuffle(order, rng)

    def rows(self, number):
        return batch_rows(number, self.n_batches, self.batch_size, self.n)

    def _block(self, block, key):
        entry = self.cache.get((block, key))
        if entry is None:
            while len(self.cache) >= self.cache_size:
                self.cache.popitem(last=False)  # drop the oldest before reading: at most cache_size in memory
            X, T, w = self.stream.block(block)
            rows = np.arange(X.shape[0]) if key < 0 else np.random.default_rng([key, block]).permutation(X.shape[0])
            entry = self.cache[(block, key)] = (X, T, w, rows)
        return entry

    def get(self, number, order, in_order=False):
        """This process's rows of batch ``number`` (from 1) in the epoch's ``order``: (X, T, w or None)."""
        lo, hi = self.shard(self.rows(number))
        start, stop = (number - 1) * self.batch_size + lo, (number - 1) * self.batch_size + hi
        sizes = self.stream.block_sizes[order[1:]]
        ends = np.cumsum(sizes)
        filled, position = 0, start
        while position < stop:
            j = int(np.searchsorted(ends, position, side="right"))  # the j-th block of this epoch's order
            X, T, w, rows = self._block(int(order[1 + j]), int(order[0]))
            first = position - (ends[j] - sizes[j])
            take = min(stop, ends[j]) - position
            index = rows[first:first + take]
            part = slice(filled, filled + take)
            np.take(X, index, axis=0, out=self.X[part], mode="clip")
            np.take(T, index, axis=0, out=self.T[part], mode="clip")
            if w is not None:
                np.take(w, index, out=self.w[part], mode="clip")
            filled, position = filled + take, position + take
        n = stop - start
        return self.X[:n], self.T[:n], None if self.w is None else self.w[:n]
