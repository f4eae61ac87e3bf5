"""One BLAS routine for the SGD step: AXPY, ``y <- alpha x + y``, in place, in NumPy's own OpenBLAS.

Why it matters: plain gradient descent changes every parameter by ``-eta g``. With NumPy that is two
passes over the parameter vector on the main thread (``work = eta g``, then ``p -= work``), and the
main thread's writes then have to travel to the BLAS threads on the other cores, which read the
weights in the next forward product. OpenBLAS's AXPY is one pass, run by the same thread pool as the
products: measured on this project's 2-core machine at batch 32 (784-256-128-10, float32), the step
costs ~10 microseconds after a 200-microsecond backward pass instead of ~50 (benchmarks/epoch_speed.py
shows the effect on a whole epoch).

It computes the same formula, p - eta g, entry by entry; OpenBLAS may fuse the multiply and the add
(one rounding instead of two), so the two paths agree to the last bit of each step, not bit for bit
(tests/test_blas.py). ``axpy`` calls the ``cblas_?axpy`` of the OpenBLAS that NumPy's wheels ship,
found with ``ctypes``, used only after it has computed a few small cases correctly; when it cannot be
found (NumPy built against another BLAS, e.g. MKL), fails that check, or the environment variable
``HANDGRAD_BLAS=numpy`` is set, ``axpy`` uses NumPy operations instead.
"""

import ctypes
import glob
import os

import numpy as np


def _library_files():
    """Shared libraries shipped inside the NumPy package whose name says OpenBLAS."""
    root = os.path.dirname(np.__file__)
    patterns = [os.path.join(root, "..", "numpy.libs", "*openblas*"),  # Linux and Windows wheels
                os.path.join(root, ".dylibs", "*openblas*"),  # macOS wheels
                os.path.join(root, "_core", "*openblas*")]
    return sorted({os.path.realpath(path) for pattern in patterns for path in glob.glob(pattern)})


# (symbol pattern, C type of the integer arguments): a "64_" suffix marks the 64-bit-integer (ILP64) build.
_SYMBOLS = (("scipy_cblas_{}axpy64_", ctypes.c_int64), ("cblas_{}axpy64_", ctypes.c_int64),
            ("scipy_cblas_{}axpy", ctypes.c_int), ("cblas_{}axpy", ctypes.c_int))


def _bind(library, letter, scalar):
    for pattern, integer in _SYMBOLS:
        function = getattr(library, pattern.format(letter), None)
        if function is not None:
            function.argtypes = [integer, scalar, ctypes.c_void_p, integer, ctypes.c_void_p, integer]
            function.restype = None
            return function
    return None


def _load():
    """{dtype: cblas axpy function} for float32 and float64, or {} when none passes the check."""
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
    """The library must reproduce NumPy on small vectors (to rounding)."""
    for dtype, function in functions.items():
        x = np.cos(np.arange(37.0)).astype(dtype)
        y = np.sin(np.arange(37.0)).astype(dtype)
        expected = y - 0.75 * x
        function(x.size, -0.75, x.ctypes.data, 1, y.ctypes.data, 1)
        if not np.allclose(y, expected, rtol=1e-6, atol=1e-6):
            return False
    return True


_FUNCTIONS = _load()


def available(dtype):
    """True when axpy runs in BLAS for vectors of this dtype (else it uses NumPy operations)."""
    return np.dtype(dtype) in _FUNCTIONS


def axpy(alpha, x, y, work=None):
    """y <- alpha x + y, in place, for 1-D contiguous x and y of one float dtype; returns y.

    ``work`` (like y) is used by the NumPy path only, so that it allocates nothing.
    """
    function = _FUNCTIONS.get(y.dtype)
    if (function is None or x.dtype != y.dtype or x.shape != y.shape or x.ndim != 1
            or not (x.flags.c_contiguous and y.flags.c_contiguous and y.flags.writeable)):
        product = np.multiply(x, alpha, out=work)
        y += product
        return y
    function(y.size, alpha, x.ctypes.data, 1, y.ctypes.data, 1)
    return y
