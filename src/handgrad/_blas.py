"""One BLAS routine NumPy does not expose: GEMM with beta, ``C <- alpha A B + beta C``, in place.

Why it matters: plain gradient descent changes every weight by ``-eta dW`` with
``dW = X^T dZ``. With ``np.matmul`` that is two passes: the product is written into a
buffer, then ``W -= buffer`` reads it back. On a multi-core machine the product is
written by BLAS threads on every core, so the second pass also drags the buffer across
the cores' caches; for a 784 x 256 float32 layer at batch 32 that pass costs more
than the product. BLAS's GEMM takes ``beta`` and accumulates into ``C`` itself:
``W <- 1 * W + (-1) * X^T (eta dZ)`` is one call and one pass (see
docs/derivations.md, "The SGD step inside the backward pass").

``gemm`` calls the ``cblas_?gemm`` of the OpenBLAS that NumPy's own wheels ship (the
same library, and thread pool, that ``np.matmul`` uses), found with ``ctypes``. The
library is used only after it has computed a few small products correctly; when it
cannot be found (NumPy built against another BLAS, e.g. MKL) or fails that check, or
when the environment variable ``HANDGRAD_BLAS=numpy`` is set, ``gemm`` computes the
same thing with NumPy operations instead. Both paths give the same result up to
floating-point rounding, and the tests run both.

A layer calls GEMM once per weight matrix per training step, always with operands of the
same shapes; :class:`Gemm` is such a call site, with the ctypes arguments converted once
(converting them is most of the cost of calling BLAS through ctypes on small products).
"""

import ctypes
import glob
import os

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _library_files():
    """Shared libraries shipped inside the NumPy package whose name says OpenBLAS."""
    root = os.path.dirname(np.__file__)
    patterns = [os.path.join(root, "..", "numpy.libs", "*openblas*"),  # Linux and Windows wheels
                os.path.join(root, ".dylibs", "*openblas*"),  # macOS wheels
                os.path.join(root, "_core", "*openblas*")]
    return sorted({os.path.realpath(path) for pattern in patterns for path in glob.glob(pattern)})


# (symbol pattern, C type of the integer arguments): a "64_" suffix marks the 64-bit-integer (ILP64) build.
_SYMBOLS = (("scipy_cblas_{}gemm64_", ctypes.c_int64), ("cblas_{}gemm64_", ctypes.c_int64),
            ("scipy_cblas_{}gemm", ctypes.c_int), ("cblas_{}gemm", ctypes.c_int))


def _bind(library, letter, scalar):
    for pattern, integer in _SYMBOLS:
        function = getattr(library, pattern.format(letter), None)
        if function is not None:
            enum, pointer = ctypes.c_int, ctypes.c_void_p
            function.argtypes = [enum, enum, enum, integer, integer, integer, scalar, pointer, integer, pointer,
                                 integer, scalar, pointer, integer]
            function.restype = None
            return function
    return None


def _load():
    """{dtype: cblas gemm function} for float32 and float64, or {} when none passes the check."""
    if os.environ.get("HANDGRAD_BLAS", "").strip().lower() == "numpy":
        return {}
    for path in _library_files():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        functions = {np.dtype(np.float32): _bind(library, "s", ctypes.c_float),
                     np.dtype(np.float64): _bind(library, "d", ctypes.c_double)}
        if all(functions.values()) and _passes_check(functions):
            return functions
    return {}


def _passes_check(functions):
    """The library must reproduce NumPy on small products in every layout gemm uses."""
    for dtype, function in functions.items():
        A, B, C = (np.cos(np.arange(rows * cols) + start).reshape(rows, cols).astype(dtype)
                   for rows, cols, start in ((5, 3, 0), (3, 4, 1), (5, 4, 2)))
        for a, b in ((A, B), (np.asfortranarray(A), B), (A, np.asfortranarray(B)), (A.T.copy().T, B.T.copy().T)):
            expected = 0.5 * C - 2.0 * (a @ b)
            got = C.copy()
            _call(function, -2.0, a, _layout(a), b, _layout(b), 0.5, got, _layout(got))
            if not np.allclose(got, expected, rtol=1e-5, atol=1e-5):
                return False
    return True


def _layout(array):
    """(transpose flag, leading dimension) of a 2-D array as BLAS reads it, or None if BLAS cannot read it."""
    rows, cols = array.shape
    step_row, step_col = array.strides
    size = array.itemsize
    if step_col == size and step_row >= size * cols and step_row > 0:
        return _NO_TRANS, step_row // size  # row-major: each row is contiguous
    if step_row == size and step_col >= size * rows and step_col > 0:
        return _TRANS, step_col // size  # column-major: the transpose of a row-major array
    return None


_BYTE = ctypes.c_char


def _address(array):
    """The address of an array's first element (``array.ctypes.data``, three times faster where it can be)."""
    try:
        return ctypes.addressof(_BYTE.from_buffer(array))  # needs a writable C-contiguous buffer
    except (TypeError, ValueError, BufferError):
        return array.ctypes.data


def _call(function, alpha, A, a, B, b, beta, C, c):
    """cblas gemm, given each operand's ``_layout`` (the load-time check calls candidates this way)."""
    function(*_arguments(alpha, A, a, B, b, beta, C, c))


def _arguments(alpha, A, a, B, b, beta, C, c):
    """The fourteen arguments of cblas gemm: layout, transposes, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc."""
    (trans_a, lda), (trans_b, ldb) = a, b
    return (_ROW_MAJOR, trans_a, trans_b, C.shape[0], C.shape[1], A.shape[1], alpha,
            _address(A if trans_a == _NO_TRANS else A.T), lda, _address(B if trans_b == _NO_TRANS else B.T), ldb,
            beta, _address(C), c[1])


_FUNCTIONS = _load()


def available(dtype):
    """True when gemm runs in BLAS for arrays of this dtype (else it uses NumPy operations)."""
    return np.dtype(dtype) in _FUNCTIONS


def _blas_layouts(A, B, C):
    """The BLAS function and the operands' layouts when BLAS can compute C <- alpha A B + beta C, else None."""
    function = _FUNCTIONS.get(C.dtype)
    if function is None or A.dtype != C.dtype or B.dtype != C.dtype or not (A.size and B.size):
        return None
    a, b, c = _layout(A), _layout(B), _layout(C)
    if a is None or b is None or c is None or c[0] != _NO_TRANS or not C.flags.writeable:
        return None
    return function, a, b, c


def gemm(alpha, A, B, beta, C, work=None):
    """C <- alpha (A @ B) + beta C, in place; returns C.

    A (M, K), B (K, N), C (M, N) are arrays of one float dtype; A and B may be transposed
    views (``X.T``); C must not overlap them. ``work``, an (M, N) array of C's dtype, is
    used by the NumPy path only, so that it allocates nothing.
    """
    return Gemm()(alpha, A, B, beta, C, work)  # a call site used once


def _numpy_gemm(alpha, A, B, beta, C, work):
    product = np.matmul(A, B, out=work)
    if alpha != 1.0:
        product *= alpha
    if beta != 1.0:
        C *= beta
    C += product
    return C


class Gemm:
    """:func:`gemm` for one call site whose operands keep their shapes and layouts from call to call
    (a layer's weight update inside backward): same arguments, same result.

    Converting fourteen Python numbers into C arguments costs ctypes about 2 microseconds, more
    than a small product. A Gemm keeps the converted arguments; a later call with operands of the
    same shapes, strides and dtype only writes alpha and beta, and the address of any operand that
    is a different array object than last time. Anything else prepares the call anew, and operands
    BLAS cannot take go to :func:`gemm`'s NumPy path.
    """

    __slots__ = ("_key", "_function", "_arguments", "_operands")

    def __init__(self):
        self._key = self._function = self._arguments = None
        self._operands = (None, None, None)

    def __call__(self, alpha, A, B, beta, C, work=None):
        key = (A.shape, A.strides, B.shape, B.strides, C.shape, C.strides, A.dtype, B.dtype, C.dtype)
        if key != self._key:
            self._prepare(key, A, B, C)
        arguments = self._arguments
        if arguments is None or not C.flags.writeable:
            return _numpy_gemm(alpha, A, B, beta, C, work)  # (which raises NumPy's error for a read-only C)
        last_a, last_b, last_c = self._operands
        if A is not last_a or B is not last_b or C is not last_c:  # same layout, other arrays: new addresses
            if A is not last_a:
                arguments[7].value = _address(A if arguments[1].value == _NO_TRANS else A.T)
            if B is not last_b:
                arguments[9].value = _address(B if arguments[2].value == _NO_TRANS else B.T)
            if C is not last_c:
                arguments[12].value = _address(C)
            self._operands = (A, B, C)
        arguments[6].value = alpha
        arguments[11].value = beta
        self._function(*arguments)
        return C

    def __reduce__(self):  # a copy or an unpickled one starts unprepared (ctypes pointers do not pickle)
        return Gemm, ()

    def _prepare(self, key, A, B, C):
        self._key, self._function, self._arguments, self._operands = key, None, None, (None, None, None)
        found = _blas_layouts(A, B, C)
        if found is not None:
            self._function, a, b, c = found
            values = _arguments(1.0, A, a, B, b, 0.0, C, c)
            self._arguments = [kind(value) for kind, value in zip(self._function.argtypes, values)]
            self._operands = (A, B, C)
